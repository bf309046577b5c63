// SSIM (Wang et al. 2004; paper 001 eq. (2)-(4) with alpha = beta = gamma = 1) with the
// semantics of scikit-image's structural_similarity(gaussian_weights=True,
// use_sample_covariance=False): Gaussian-weighted moments over a win x win window, the mean
// over the pixels whose window lies inside the image. Shared by the CPU kernels, the CUDA
// kernels and the emulator.
//
// Per valid pixel, from the moments Ex, Ey, Exx, Eyy, Exy:
//   vx = max(Exx - Ex^2, 0) (float32 cancellation can make it negative and SSIM exceed 1; the
//   gradient is zero where the clamp acts), likewise vy; vxy = Exy - Ex Ey;
//   S = (2 Ex Ey + C1)(2 vxy + C2) / ((Ex^2 + Ey^2 + C1)(vx + vy + C2)).
// ssim_stats also returns dS/d(Ex, Ey, Exx, Eyy, Exy), which the backward pass spreads back
// over each window (the moments are linear in x, x^2, y, y^2, xy).
#pragma once

#include "../common/macros.h"

namespace pyadv {
inline namespace PYADV_ISA_TAG {
namespace ssim {

constexpr int kMaxWin = 31;

// SSIM from the means and the (co)variances; d (5 or nullptr) receives dS/d(Ex, Ey, Exx, Eyy,
// Exy). The variances may come from centred data (the CPU kernels subtract a per-plane constant
// before filtering, which keeps float32 cancellation small): they are shift-invariant, and ex, ey
// here are the uncentred means, so the partials are the same either way.
template <typename T>
PYADV_HD inline T ssim_stats(T ex, T ey, T vx, T vy, T vxy, T C1, T C2, T* d /* 5 or nullptr */) {
  const bool cx = vx < T(0), cy = vy < T(0);
  vx = cx ? T(0) : vx;
  vy = cy ? T(0) : vy;
  const T A1 = T(2) * ex * ey + C1, A2 = T(2) * vxy + C2;
  const T B1 = ex * ex + ey * ey + C1, B2 = vx + vy + C2;
  const T D = B1 * B2;
  const T S = (A1 * A2) / D;
  if (d) {
    const T dmx = T(2) * ey * A2 / D - S * T(2) * ex / B1;
    const T dmy = T(2) * ex * A2 / D - S * T(2) * ey / B1;
    const T dvx = cx ? T(0) : -S / B2;
    const T dvy = cy ? T(0) : -S / B2;
    const T dvxy = T(2) * A1 / D;
    d[0] = dmx - T(2) * ex * dvx - ey * dvxy;  // through vx = Exx - Ex^2 and vxy = Exy - Ex Ey
    d[1] = dmy - T(2) * ey * dvy - ex * dvxy;
    d[2] = dvx;
    d[3] = dvy;
    d[4] = dvxy;
  }
  return S;
}

}  // namespace ssim
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
