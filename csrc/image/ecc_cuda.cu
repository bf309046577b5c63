// ECC CUDA kernels. moments_kernel, the inner step: one block per pair; each thread sums its
// strided share of the template pixels (ecc_math.h), then the block reduces the sums in a fixed
// order (warp shuffles, then the warps' partials in index order), so the result does not depend
// on scheduling. solve_kernel, the whole alignment (ecc_solve_math.h): one block per pair, the
// same sums as a block-collective call each iteration, the small solves run by every thread
// alike on the shared sums.
#include "../common/cuda_compat.h"
#include "ecc_gpu.h"
#include "ecc_math.h"
#include "ecc_solve_math.h"

namespace pyadv {
namespace PYADV_GPU_NS {
namespace ecc {

namespace em = ::pyadv::ecc_math;
constexpr unsigned kThreads = 128;
constexpr unsigned kWarps = kThreads / 32;

// Templated on the motion: K and the loops over it are compile-time constants, so each thread's
// K sums stay in registers (a runtime K kept them in 528 B of local memory per thread) and the
// shared partials take only the motion's K columns. Block t works on pair t / split, pixels
// tid + blockDim (t % split + split j): with split == 1 a block per pair, writing out [N, K];
// with more, `split` blocks per pair writing [N, split, K] for reduce_kernel.
// out [K] = the block's threads' acc [K] added in a fixed order: warp shuffles, then the warps'
// partials in index order. Every thread calls it; out may be shared or global memory, and is
// complete when it returns.
template <int K, int Cols>
__device__ void block_reduce(const double* acc, double (*partial)[Cols], double* out) {
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
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
    out[k] = s;
  }
  __syncthreads();  // partial is reused by the next call; out is complete
}

template <typename T, int Motion>
__global__ void moments_kernel(const T* img, const T* tmpl, const double* M, const int64_t* ids, int64_t N, int64_t H,
                               int64_t W, int64_t margin, int64_t split, double* dst) {
  constexpr int K = em::n_stats(Motion);
  __shared__ double partial[kWarps][K];
  const int tid = threadIdx.x;
  const int64_t P = H * W;
  for (int64_t t = blockIdx.x; t < N * split; t += gridDim.x) {
    const int64_t b = t / split, part = t % split;
    const int64_t pair = ids ? ids[b] : b;
    double acc[K];
#pragma unroll
    for (int k = 0; k < K; ++k) acc[k] = 0.0;
    const T* ib = img + pair * 3 * P;
    for (int64_t e = part * blockDim.x + tid; e < P; e += int64_t(blockDim.x) * split) {
      const int64_t x = e % W, y = e / W;
      if (em::inside_margin(x, y, H, W, margin))
        em::add_pixel(ib, ib + P, ib + 2 * P, H, W, x, y, double(tmpl[pair * P + e]), M + 9 * b, Motion, acc);
    }
    block_reduce<K>(acc, partial, dst + t * K);
  }
}

// out [N, K] = the split blocks' sums of each pair, added in block order.
__global__ void reduce_kernel(const double* scratch, int64_t N, int64_t split, int K, double* out) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < N * K; i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t b = i / K, k = i % K;
    double s = 0.0;
    for (int64_t g = 0; g < split; ++g) s += scratch[(b * split + g) * K + k];
    out[i] = s;
  }
}

// The sums of one pair at warp M (the same for every thread of the block) into S [K], every
// thread's copy, reduced as moments_kernel reduces (warp shuffles, then warps in order).
template <typename T, int Motion>
__device__ void block_sums(const T* ib, const T* tb, int64_t H, int64_t W, int64_t margin, const double* M,
                           double (*partial)[em::kMaxStats], double* shared_sums, double* S) {
  constexpr int K = em::n_stats(Motion);
  const int64_t P = H * W;
  double acc[K];
#pragma unroll
  for (int k = 0; k < K; ++k) acc[k] = 0.0;
  for (int64_t e = threadIdx.x; e < P; e += blockDim.x) {
    const int64_t x = e % W, y = e / W;
    if (em::inside_margin(x, y, H, W, margin))
      em::add_pixel(ib, ib + P, ib + 2 * P, H, W, x, y, double(tb[e]), M, Motion, acc);
  }
  block_reduce<K>(acc, partial, shared_sums);
  for (int k = 0; k < K; ++k) S[k] = shared_sums[k];
  __syncthreads();  // shared_sums is reused by the next call
}

template <typename T, int Motion>
__global__ void solve_kernel(const T* img, const T* tmpl, const double* M0, int64_t N, int64_t H, int64_t W,
                             int64_t margin, int64_t iters, double eps, bool safeguards, bool from_identity, bool coarse,
                             double* W_out, double* rho, int64_t* its, bool* converged, bool* failed, bool* rejected) {
  __shared__ double partial[kWarps][em::kMaxStats];
  __shared__ double shared_sums[em::kMaxStats];
  const int64_t P = H * W;
  for (int64_t b = blockIdx.x; b < N; b += gridDim.x) {
    const T* ib = img + b * 3 * P;
    const T* tb = tmpl + b * P;
    auto sums_at = [&](const double* M, int motion, double* S) {
      if (motion == em::kTranslation)
        block_sums<T, em::kTranslation>(ib, tb, H, W, margin, M, partial, shared_sums, S);
      else
        block_sums<T, Motion>(ib, tb, H, W, margin, M, partial, shared_sums, S);
    };
    ::pyadv::ecc_solve::PairResult r;
    ::pyadv::ecc_solve::solve_pair(sums_at, Motion, M0 + 9 * b, from_identity, iters, eps, safeguards, coarse, &r);
    if (threadIdx.x == 0) ::pyadv::ecc_solve::store(r, b, W_out, rho, its, converged, failed, rejected);
  }
}

template <typename T>
int solve(const T* img, const T* tmpl, const double* M0, int64_t N, int64_t H, int64_t W, int motion, int64_t margin,
          int64_t iters, double eps, bool safeguards, bool from_identity, bool coarse, double* W_out, double* rho,
          int64_t* its,
          bool* converged, bool* failed, bool* rejected, void* stream) {
  if (N <= 0) return 0;
#define PYADV_ECC_SOLVE(MOTION)                                                                                    \
  return launch_kernel(solve_kernel<T, MOTION>, loop_blocks(N), kThreads, 0, stream, img, tmpl, M0, N, H, W, margin, \
                       iters, eps, safeguards, from_identity, coarse, W_out, rho, its, converged, failed, rejected)
  switch (motion) {
    case em::kTranslation: PYADV_ECC_SOLVE(em::kTranslation);
    case em::kEuclidean: PYADV_ECC_SOLVE(em::kEuclidean);
    case em::kAffine: PYADV_ECC_SOLVE(em::kAffine);
    default: PYADV_ECC_SOLVE(em::kHomography);
  }
#undef PYADV_ECC_SOLVE
}

template int solve<float>(const float*, const float*, const double*, int64_t, int64_t, int64_t, int, int64_t, int64_t,
                          double, bool, bool, bool, double*, double*, int64_t*, bool*, bool*, bool*, void*);
template int solve<double>(const double*, const double*, const double*, int64_t, int64_t, int64_t, int, int64_t,
                           int64_t, double, bool, bool, bool, double*, double*, int64_t*, bool*, bool*, bool*, void*);

template <typename T, int Motion>
int launch_moments(const T* img, const T* tmpl, const double* M, const int64_t* ids, int64_t N, int64_t H, int64_t W,
                   int64_t margin, int64_t split, double* scratch, double* out, void* stream) {
  constexpr int K = em::n_stats(Motion);
  double* dst = split > 1 ? scratch : out;
  const int err = launch_kernel(moments_kernel<T, Motion>, loop_blocks(N * split), kThreads, 0, stream, img, tmpl, M,
                                ids, N, H, W, margin, split, dst);
  if (err != 0 || split <= 1) return err;
  return launch_kernel(reduce_kernel, grid_for(N * K, kThreads), kThreads, 0, stream, scratch, N, split, K, out);
}

template <typename T>
int moments(const T* img, const T* tmpl, const double* M, const int64_t* ids, int64_t N, int64_t H, int64_t W, int motion,
            int64_t margin, int64_t split, double* scratch, double* out, void* stream) {
  if (N <= 0) return 0;
  if (split < 1) split = 1;
  switch (motion) {
    case em::kTranslation:
      return launch_moments<T, em::kTranslation>(img, tmpl, M, ids, N, H, W, margin, split, scratch, out, stream);
    case em::kEuclidean:
      return launch_moments<T, em::kEuclidean>(img, tmpl, M, ids, N, H, W, margin, split, scratch, out, stream);
    case em::kAffine:
      return launch_moments<T, em::kAffine>(img, tmpl, M, ids, N, H, W, margin, split, scratch, out, stream);
    default:
      return launch_moments<T, em::kHomography>(img, tmpl, M, ids, N, H, W, margin, split, scratch, out, stream);
  }
}

template int moments<float>(const float*, const float*, const double*, const int64_t*, int64_t, int64_t, int64_t, int,
                            int64_t, int64_t, double*, double*, void*);
template int moments<double>(const double*, const double*, const double*, const int64_t*, int64_t, int64_t, int64_t,
                             int, int64_t, int64_t, double*, double*, void*);

}  // namespace ecc
}  // namespace PYADV_GPU_NS
}  // namespace pyadv
