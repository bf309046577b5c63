// CPU kernel of the perspective warp: blocks of kLanes output pixels of a row take the
// vectorised source_block(); pixels with all four neighbours inside are blended as whole vectors
// without bounds checks (bilinear_lanes.h: row loads where the block's corners are neighbours),
// the others go through warp_math's general path. Same arithmetic as the CUDA kernel
// (FMA contraction is off for this file), so the results are the same.
#include "warp_cpu_kernel.h"

#include <cstring>

#include "bilinear_lanes.h"
#include "warp_math.h"

PYADV_DECLARE_WARP_CPU_KERNELS(PYADV_ISA_TAG)

namespace pyadv {
namespace PYADV_ISA_TAG {
namespace warp {

namespace bl = bilinear_lanes;
using bl::kLanes;
using bl::V8;

template <typename T>
void warp_row(const T* img, int64_t C, int64_t H, int64_t W, const double* M, T* out, int64_t Ho, int64_t Wo,
              int64_t y) {
  alignas(64) double ax[kLanes], ay[kLanes], in[kLanes];
  alignas(64) int64_t off[kLanes];
  const int64_t P = H * W;
  const bool big = H >= 2 && W >= 2;
  for (int64_t x0 = 0; x0 < Wo; x0 += kLanes) {
    const int m = Wo - x0 < kLanes ? int(Wo - x0) : kLanes;
    warp_math::source_block<kLanes>(M, x0, y, m, H, W, ax, ay, in, off);
    const bool row_run = big && bl::is_row_run(in, off, m);
    V8 ax_v, ay_v;
    std::memcpy(&ax_v, ax, sizeof ax_v);
    std::memcpy(&ay_v, ay, sizeof ay_v);
    for (int64_t c = 0; c < C; ++c) {
      const T* p = img + c * P;
      T* o = out + (c * Ho + y) * Wo + x0;
      const V8 v = bl::sample(p, W, 1, off, m, row_run, big, ax_v, ay_v);
      if (row_run) {  // every lane below m is inside
        alignas(64) T r[kLanes];
        for (int l = 0; l < kLanes; ++l) r[l] = T(v[l]);  // exact: v holds T values
        std::memcpy(o, r, sizeof(T) * m);
        continue;
      }
      for (int l = 0; l < m; ++l) {
        if (in[l] != 0.0) {
          o[l] = T(v[l]);
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
