// Launchers of the grouped-FI CUDA kernels (fi_group_cuda.cu); layout as fi_group_cpu_kernel.h.
#pragma once

#include <cstdint>

#define PYADV_DECLARE_FI_GROUP_GPU_LAUNCHERS(NS)                                                                   \
  namespace pyadv {                                                                                                \
  namespace NS {                                                                                                   \
  namespace fi {                                                                                                   \
  template <typename T>                                                                                            \
  int group_accumulate(const T* jac, const T* probs, const int64_t* target, T* num, T* den, int64_t B, int64_t Kc, \
                       int64_t K, int64_t k0, int64_t C, int64_t HW, T eps, void* stream);                         \
  template <typename T>                                                                                            \
  int group_finish(const T* num, const T* den, T* out, int* bad_image, int64_t B, int64_t C, int64_t HW,          \
                   T rank_tol, void* stream);                                                                      \
  }                                                                                                                \
  }                                                                                                                \
  }

PYADV_DECLARE_FI_GROUP_GPU_LAUNCHERS(cuda)
PYADV_DECLARE_FI_GROUP_GPU_LAUNCHERS(emulated)
