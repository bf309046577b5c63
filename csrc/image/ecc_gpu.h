// Launcher of the ECC inner-step CUDA kernel (ecc_cuda.cu), raw pointers only: img [B, 3, H, W]
// (image, x-gradient, y-gradient), tmpl [B, H, W]; for the N pairs ids[0..N) (or 0..N when ids
// is null) with warps M [N, 3, 3] double -> out [N, K] double, the sums of ecc_math.h.
#pragma once

#include <cstdint>

#define PYADV_DECLARE_ECC_GPU_LAUNCHERS(NS)                                                                       \
  namespace pyadv {                                                                                               \
  namespace NS {                                                                                                  \
  namespace ecc {                                                                                                 \
  template <typename T>                                                                                           \
  int moments(const T* img, const T* tmpl, const double* M, const int64_t* ids, int64_t N, int64_t H, int64_t W,   \
              int motion, int64_t margin, double* out, void* stream);                                            \
  }                                                                                                               \
  }                                                                                                               \
  }

PYADV_DECLARE_ECC_GPU_LAUNCHERS(cuda)
PYADV_DECLARE_ECC_GPU_LAUNCHERS(emulated)
