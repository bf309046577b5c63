// Launcher of the ECC inner-step CUDA kernel (ecc_cuda.cu), raw pointers only: img [B, 3, H, W]
// (image, x-gradient, y-gradient), tmpl [B, H, W]; for the N pairs ids[0..N) (or 0..N when ids
// is null) with warps M [N, 3, 3] double -> out [N, K] double, the sums of ecc_math.h. With
// split > 1 each pair's pixels are shared by `split` blocks, whose sums go to scratch
// [N, split, K] and are then added in block order (deterministic).
#pragma once

#include <algorithm>
#include <cstdint>

namespace pyadv {
namespace ecc {

// Blocks per pair: one when the pairs alone fill a GPU (kFillBlocks blocks), more when there are
// few pairs (an ECC alignment of one large image would otherwise run on one SM), each block
// keeping at least kMinPixelsPerBlock template pixels.
constexpr int64_t kFillBlocks = 256;
constexpr int64_t kMinPixelsPerBlock = 1024;
inline int64_t blocks_per_pair(int64_t N, int64_t pixels) {
  if (N <= 0) return 1;
  const int64_t fill = kFillBlocks / N, most = (pixels + kMinPixelsPerBlock - 1) / kMinPixelsPerBlock;
  return std::max<int64_t>(1, std::min(fill, most));
}

}  // namespace ecc
}  // namespace pyadv

#define PYADV_DECLARE_ECC_GPU_LAUNCHERS(NS)                                                                       \
  namespace pyadv {                                                                                               \
  namespace NS {                                                                                                  \
  namespace ecc {                                                                                                 \
  template <typename T>                                                                                           \
  int moments(const T* img, const T* tmpl, const double* M, const int64_t* ids, int64_t N, int64_t H, int64_t W,   \
              int motion, int64_t margin, int64_t split, double* scratch, double* out, void* stream);             \
  /* The whole alignment of pair b from warp M0[b] (ecc_solve_math.h's solve_pair), a block per pair. */          \
  template <typename T>                                                                                           \
  int solve(const T* img, const T* tmpl, const double* M0, int64_t N, int64_t H, int64_t W, int motion,          \
            int64_t margin, int64_t iters, double eps, bool safeguards, bool from_identity, bool coarse,           \
            double* W_out,                                                                                        \
            double* rho, int64_t* its, bool* converged, bool* failed, bool* rejected, void* stream);              \
  }                                                                                                               \
  }                                                                                                               \
  }

PYADV_DECLARE_ECC_GPU_LAUNCHERS(cuda)
PYADV_DECLARE_ECC_GPU_LAUNCHERS(emulated)
