// Grouped-FI CUDA kernels: one thread per (image, pixel); the packed C x C metric of the
// pixel lives in registers while the thread loops over the chunk's classes.
#include "../common/cuda_compat.h"
#include "fi_group_gpu.h"
#include "fi_group_math.h"

namespace pyadv {
namespace PYADV_GPU_NS {
namespace fi {

constexpr unsigned kGroupThreads = 128;
using ::pyadv::fi::kMaxGroup;

template <typename T>
__global__ void group_accumulate_kernel(const T* __restrict__ jac, const T* __restrict__ probs,
                                        const int64_t* __restrict__ target, T* __restrict__ num,
                                        T* __restrict__ den, int64_t B, int64_t Kc, int64_t K, int64_t k0, int C,
                                        int64_t HW, T eps) {
  const int T3 = ::pyadv::fi::tri_size(C);
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < B * HW; e += int64_t(blockDim.x) * gridDim.x) {
    const int64_t b = e / HW, i = e - b * HW;
    T G[::pyadv::fi::tri_size(kMaxGroup)];
    for (int j = 0; j < T3; ++j) G[j] = den[(b * T3 + j) * HW + i];
    for (int64_t k = 0; k < Kc; ++k) {
      const T w = ::pyadv::fi::class_weight(probs[b * K + k0 + k], eps);
      const T* a = jac + ((b * Kc + k) * C) * HW + i;
      T v[kMaxGroup];
      for (int c = 0; c < C; ++c) v[c] = a[c * HW];
      for (int c1 = 0, j = 0; c1 < C; ++c1)
        for (int c2 = c1; c2 < C; ++c2, ++j) G[j] += w * (v[c1] * v[c2]);
    }
    for (int j = 0; j < T3; ++j) den[(b * T3 + j) * HW + i] = G[j];
    const int64_t t = target[b] - k0;
    if (t >= 0 && t < Kc) {
      const T scale = ::pyadv::fi::target_scale(probs[b * K + k0 + t], eps);
      for (int c = 0; c < C; ++c) num[(b * C + c) * HW + i] = scale * jac[((b * Kc + t) * C + c) * HW + i];
    }
  }
}

template <typename T>
__global__ void group_finish_kernel(const T* __restrict__ num, const T* __restrict__ den, T* __restrict__ out,
                                    int* bad_image, int64_t B, int C, int64_t HW, T rank_tol) {
  const int T3 = ::pyadv::fi::tri_size(C);
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < B * HW; e += int64_t(blockDim.x) * gridDim.x) {
    const int64_t b = e / HW, i = e - b * HW;
    T g[kMaxGroup], Gp[::pyadv::fi::tri_size(kMaxGroup)];
    int bad = 0;
    for (int c = 0; c < C; ++c) {
      g[c] = num[(b * C + c) * HW + i];
      bad |= ::pyadv::fi::non_finite(g[c], T(0));
    }
    for (int j = 0; j < T3; ++j) {
      Gp[j] = den[(b * T3 + j) * HW + i];
      bad |= ::pyadv::fi::non_finite(Gp[j], T(0));
    }
    out[e] = bad ? T(0) : ::pyadv::fi::group_fi(Gp, g, C, rank_tol * rank_tol);
    if (bad) atomicMin(bad_image, static_cast<int>(b));
  }
}

template <typename T>
int group_accumulate(const T* jac, const T* probs, const int64_t* target, T* num, T* den, int64_t B, int64_t Kc,
                     int64_t K, int64_t k0, int64_t C, int64_t HW, T eps, void* stream) {
  if (B * HW == 0 || Kc == 0) return 0;
  return launch_kernel(group_accumulate_kernel<T>, grid_for(B * HW, kGroupThreads), kGroupThreads, 0, stream, jac,
                       probs, target, num, den, B, Kc, K, k0, static_cast<int>(C), HW, eps);
}

template <typename T>
int group_finish(const T* num, const T* den, T* out, int* bad_image, int64_t B, int64_t C, int64_t HW, T rank_tol,
                 void* stream) {
  if (B * HW == 0) return 0;
  return launch_kernel(group_finish_kernel<T>, grid_for(B * HW, kGroupThreads), kGroupThreads, 0, stream, num, den,
                       out, bad_image, B, static_cast<int>(C), HW, rank_tol);
}

#define PYADV_INSTANTIATE(T)                                                                                       \
  template int group_accumulate<T>(const T*, const T*, const int64_t*, T*, T*, int64_t, int64_t, int64_t, int64_t, \
                                   int64_t, int64_t, T, void*);                                                    \
  template int group_finish<T>(const T*, const T*, T*, int*, int64_t, int64_t, int64_t, T, void*);
PYADV_INSTANTIATE(float)
PYADV_INSTANTIATE(double)
#undef PYADV_INSTANTIATE

}  // namespace fi
}  // namespace PYADV_GPU_NS
}  // namespace pyadv
