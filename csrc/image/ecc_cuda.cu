// ECC inner-step CUDA kernel: one block per pair; each thread sums its strided share of the
// template pixels (ecc_math.h), then the block reduces the sums in a fixed order (warp shuffles,
// then the warps' partials in index order), so the result does not depend on scheduling.
#include "../common/cuda_compat.h"
#include "ecc_gpu.h"
#include "ecc_math.h"

namespace pyadv {
namespace PYADV_GPU_NS {
namespace ecc {

namespace em = ::pyadv::ecc_math;
constexpr unsigned kThreads = 128;
constexpr unsigned kWarps = kThreads / 32;

// Templated on the motion: K and the loops over it are compile-time constants, so each thread's
// K sums stay in registers (a runtime K kept them in 528 B of local memory per thread) and the
// shared partials take only the motion's K columns.
template <typename T, int Motion>
__global__ void moments_kernel(const T* img, const T* tmpl, const double* M, const int64_t* ids, int64_t N, int64_t H,
                               int64_t W, int64_t margin, double* out) {
  constexpr int K = em::n_stats(Motion);
  __shared__ double partial[kWarps][K];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int64_t P = H * W;
  for (int64_t b = blockIdx.x; b < N; b += gridDim.x) {
    const int64_t pair = ids ? ids[b] : b;
    double acc[K];
#pragma unroll
    for (int k = 0; k < K; ++k) acc[k] = 0.0;
    const T* ib = img + pair * 3 * P;
    for (int64_t e = tid; e < P; e += blockDim.x) {
      const int64_t x = e % W, y = e / W;
      if (em::inside_margin(x, y, H, W, margin))
        em::add_pixel(ib, ib + P, ib + 2 * P, H, W, x, y, double(tmpl[pair * P + e]), M + 9 * b, Motion, acc);
    }
#pragma unroll
    for (int k = 0; k < K; ++k) {
      double v = acc[k];
      for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xFFFFFFFFu, v, offset);
      if (lane == 0) partial[warp][k] = v;
    }
    __syncthreads();
    for (int k = tid; k < K; k += blockDim.x) {
      double s = 0.0;
      for (unsigned w = 0; w < kWarps; ++w) s += partial[w][k];
      out[b * K + k] = s;
    }
    __syncthreads();  // partial is reused by the next pair
  }
}

template <typename T>
int moments(const T* img, const T* tmpl, const double* M, const int64_t* ids, int64_t N, int64_t H, int64_t W, int motion,
            int64_t margin, double* out, void* stream) {
  if (N <= 0) return 0;
  const unsigned blocks = loop_blocks(N);
  switch (motion) {
    case em::kTranslation:
      return launch_kernel(moments_kernel<T, em::kTranslation>, blocks, kThreads, 0, stream, img, tmpl, M, ids, N, H,
                           W, margin, out);
    case em::kEuclidean:
      return launch_kernel(moments_kernel<T, em::kEuclidean>, blocks, kThreads, 0, stream, img, tmpl, M, ids, N, H, W,
                           margin, out);
    case em::kAffine:
      return launch_kernel(moments_kernel<T, em::kAffine>, blocks, kThreads, 0, stream, img, tmpl, M, ids, N, H, W,
                           margin, out);
    default:
      return launch_kernel(moments_kernel<T, em::kHomography>, blocks, kThreads, 0, stream, img, tmpl, M, ids, N, H,
                           W, margin, out);
  }
}

template int moments<float>(const float*, const float*, const double*, const int64_t*, int64_t, int64_t, int64_t, int,
                            int64_t, double*, void*);
template int moments<double>(const double*, const double*, const double*, const int64_t*, int64_t, int64_t, int64_t,
                             int, int64_t, double*, void*);

}  // namespace ecc
}  // namespace PYADV_GPU_NS
}  // namespace pyadv
