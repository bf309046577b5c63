// Launcher of the perspective-warp CUDA kernel (warp_cuda.cu): img [B, C, H, W], M [B, 3, 3]
// (double, the inverse map) -> out [B, C, Ho, Wo].
#pragma once

#include <cstdint>

#define PYADV_DECLARE_WARP_GPU_LAUNCHERS(NS)                                                                      \
  namespace pyadv {                                                                                               \
  namespace NS {                                                                                                  \
  namespace warp {                                                                                                \
  template <typename T>                                                                                           \
  int warp(const T* img, const double* M, T* out, int64_t B, int64_t C, int64_t H, int64_t W, int64_t Ho,         \
           int64_t Wo, void* stream);                                                                  \
  }                                                                                                               \
  }                                                                                                               \
  }

PYADV_DECLARE_WARP_GPU_LAUNCHERS(cuda)
PYADV_DECLARE_WARP_GPU_LAUNCHERS(emulated)
