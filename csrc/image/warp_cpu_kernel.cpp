// CPU kernel of the perspective warp: blocks of kLanes output pixels of a row take the
// vectorised source_block(); pixels with all four neighbours inside are blended without bounds
// checks, the others go through warp_math's general path. Same arithmetic as the CUDA kernel
// (FMA contraction is off for this file), so the results are the same.
#include "warp_cpu_kernel.h"

#include "warp_math.h"

PYADV_DECLARE_WARP_CPU_KERNELS(PYADV_ISA_TAG)

namespace pyadv {
namespace PYADV_ISA_TAG {
namespace warp {

constexpr int kLanes = 8;

template <typename T>
void warp_row(const T* img, int64_t C, int64_t H, int64_t W, const double* M, T* out, int64_t Ho, int64_t Wo,
              int64_t y) {
  alignas(64) double ax[kLanes], ay[kLanes], in[kLanes], a[4][kLanes];
  alignas(64) int64_t off[kLanes];
  const int64_t P = H * W;
  const bool big = H >= 2 && W >= 2;
  for (int64_t x0 = 0; x0 < Wo; x0 += kLanes) {
    const int m = Wo - x0 < kLanes ? int(Wo - x0) : kLanes;
    warp_math::source_block<kLanes>(M, x0, y, m, H, W, ax, ay, in, off);
    for (int64_t c = 0; c < C; ++c) {
      const T* p = img + c * P;
      T* o = out + (c * Ho + y) * Wo + x0;
      if (big)  // out-lanes read offset 0, whose neighbours exist from 2 x 2 on (else no lane is in)
        for (int l = 0; l < kLanes; ++l) {
          a[0][l] = double(p[off[l]]);
          a[1][l] = double(p[off[l] + 1]);
          a[2][l] = double(p[off[l] + W]);
          a[3][l] = double(p[off[l] + W + 1]);
        }
      for (int l = 0; l < m; ++l) {
        if (in[l] != 0.0) {
          o[l] = warp_math::blend<T>(ax[l], ay[l], a[0][l], a[1][l], a[2][l], a[3][l]);
        } else {
          int64_t ix, iy;
          double fx, fy;
          o[l] = warp_math::source(M, x0 + l, y, &ix, &iy, &fx, &fy) ? warp_math::sample(p, H, W, ix, iy, fx, fy)
                                                                      : T(0);
        }
      }
    }
  }
}

template void warp_row<float>(const float*, int64_t, int64_t, int64_t, const double*, float*, int64_t, int64_t,
                              int64_t);
template void warp_row<double>(const double*, int64_t, int64_t, int64_t, const double*, double*, int64_t, int64_t,
                               int64_t);

}  // namespace warp
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
