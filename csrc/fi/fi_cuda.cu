// FI CUDA kernels: one thread per (image, pixel), a loop over classes. Consecutive threads
// read consecutive pixels of the same class row, so every load of J is coalesced and J is
// read exactly once; the reduction is bandwidth-bound and needs no shared memory.
#include "../common/cuda_compat.h"
#include "fi_gpu.h"
#include "fi_math.h"

namespace pyadv {
namespace PYADV_GPU_NS {
namespace fi {

constexpr unsigned kThreads = 256;

template <typename T>
__global__ void pixel_fi_kernel(const T* __restrict__ jac, const T* __restrict__ probs,
                                const int64_t* __restrict__ target, T* __restrict__ out, int* bad_image, int64_t B,
                                int64_t K, int64_t P, T eps, T rank_tol) {
  const int64_t n = B * P;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(blockDim.x) * gridDim.x) {
    const int64_t b = e / P, i = e - b * P;
    const T* pb = probs + b * K;
    const T* jb = jac + b * K * P + i;
    T G = T(0);
    for (int64_t k = 0; k < K; ++k) {
      const T j = jb[k * P];
      G += ::pyadv::fi::class_weight(pb[k], eps) * j * j;
    }
    const int64_t t = target[b];
    const T g = ::pyadv::fi::target_scale(pb[t], eps) * jb[t * P];
    out[e] = ::pyadv::fi::finish(g, G, rank_tol * rank_tol);
    if (::pyadv::fi::non_finite(g, G)) atomicMin(bad_image, static_cast<int>(b));
  }
}

template <typename T>
__global__ void accumulate_kernel(const T* __restrict__ jac, const T* __restrict__ probs,
                                  const int64_t* __restrict__ target, T* __restrict__ num, T* __restrict__ den,
                                  int64_t B, int64_t Kc, int64_t K, int64_t k0, int64_t P, T eps) {
  const int64_t n = B * P;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(blockDim.x) * gridDim.x) {
    const int64_t b = e / P, i = e - b * P;
    const T* pb = probs + b * K + k0;
    const T* jb = jac + b * Kc * P + i;
    T G = den[e];
    for (int64_t k = 0; k < Kc; ++k) {
      const T j = jb[k * P];
      G += ::pyadv::fi::class_weight(pb[k], eps) * j * j;
    }
    den[e] = G;
    const int64_t t = target[b] - k0;
    if (t >= 0 && t < Kc) num[e] = ::pyadv::fi::target_scale(pb[t], eps) * jb[t * P];
  }
}

template <typename T>
__global__ void finish_kernel(const T* __restrict__ num, const T* __restrict__ den, T* __restrict__ out,
                              int* bad_image, int64_t B, int64_t P, T rank_tol) {
  const int64_t n = B * P;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(blockDim.x) * gridDim.x) {
    out[e] = ::pyadv::fi::finish(num[e], den[e], rank_tol * rank_tol);
    if (::pyadv::fi::non_finite(num[e], den[e])) atomicMin(bad_image, static_cast<int>(e / P));
  }
}

template <typename T>
int pixel_fi(const T* jac, const T* probs, const int64_t* target, T* out, int* bad_image, int64_t B, int64_t K,
             int64_t P, T eps, T rank_tol, void* stream) {
  if (B * P == 0) return 0;
  return launch_kernel(pixel_fi_kernel<T>, grid_for(B * P, kThreads), kThreads, 0, stream, jac, probs, target, out,
                       bad_image, B, K, P, eps, rank_tol);
}

template <typename T>
int accumulate(const T* jac, const T* probs, const int64_t* target, T* num, T* den, int64_t B, int64_t Kc,
               int64_t K, int64_t k0, int64_t P, T eps, void* stream) {
  if (B * P == 0) return 0;
  return launch_kernel(accumulate_kernel<T>, grid_for(B * P, kThreads), kThreads, 0, stream, jac, probs, target,
                       num, den, B, Kc, K, k0, P, eps);
}

template <typename T>
int finish(const T* num, const T* den, T* out, int* bad_image, int64_t B, int64_t P, T rank_tol, void* stream) {
  if (B * P == 0) return 0;
  return launch_kernel(finish_kernel<T>, grid_for(B * P, kThreads), kThreads, 0, stream, num, den, out, bad_image,
                       B, P, rank_tol);
}

#define PYADV_INSTANTIATE(T)                                                                                       \
  template int pixel_fi<T>(const T*, const T*, const int64_t*, T*, int*, int64_t, int64_t, int64_t, T, T, void*); \
  template int accumulate<T>(const T*, const T*, const int64_t*, T*, T*, int64_t, int64_t, int64_t, int64_t,       \
                             int64_t, T, void*);                                                                   \
  template int finish<T>(const T*, const T*, T*, int*, int64_t, int64_t, T, void*);
PYADV_INSTANTIATE(float)
PYADV_INSTANTIATE(double)
#undef PYADV_INSTANTIATE

}  // namespace fi
}  // namespace PYADV_GPU_NS
}  // namespace pyadv
