// Launchers of the FI CUDA kernels (fi_cuda.cu), raw pointers only. The same source is
// built by nvcc into pyadv::cuda and by g++ under the emulator into pyadv::emulated.
// Each returns the launch's cudaError_t as an int (0 on success).
//
// bad_image: one int on the device, set by the caller to INT_MAX; a kernel lowers it to the
// first image whose J or P gave a non-finite value.
#pragma once

#include <cstdint>

#define PYADV_DECLARE_FI_GPU_LAUNCHERS(NS)                                                                         \
  namespace pyadv {                                                                                                \
  namespace NS {                                                                                                   \
  namespace fi {                                                                                                   \
  template <typename T>                                                                                            \
  int pixel_fi(const T* jac, const T* probs, const int64_t* target, T* out, int* bad_image, int64_t B, int64_t K, \
               int64_t P, T eps, T rank_tol, void* stream);                                                        \
  template <typename T>                                                                                            \
  int accumulate(const T* jac, const T* probs, const int64_t* target, T* num, T* den, int64_t B, int64_t Kc,      \
                 int64_t K, int64_t k0, int64_t P, T eps, void* stream);                                           \
  template <typename T>                                                                                            \
  int finish(const T* num, const T* den, T* out, int* bad_image, int64_t B, int64_t P, T rank_tol, void* stream); \
  }                                                                                                                \
  }                                                                                                                \
  }

PYADV_DECLARE_FI_GPU_LAUNCHERS(cuda)
PYADV_DECLARE_FI_GPU_LAUNCHERS(emulated)
