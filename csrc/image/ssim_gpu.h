// Launchers of the SSIM CUDA kernels (ssim_cuda.cu), raw pointers only; planes are the B*C
// image channels, each [H, W]; g is the 1-D window (win <= kMaxWin) in device memory.
#pragma once

#include <cstdint>

#define PYADV_DECLARE_SSIM_GPU_LAUNCHERS(NS)                                                                       \
  namespace pyadv {                                                                                                \
  namespace NS {                                                                                                   \
  namespace ssim {                                                                                                 \
  /* Writes the SSIM map [planes, Hv, Wv] and, when partials is non-null, dS/dmoments [planes, 5, Hv, Wv]. */      \
  /* centers [planes, 2]: the constants subtracted from x and y before filtering (their means). */               \
  template <typename T>                                                                                            \
  int forward(const T* x, const T* y, const T* centers, int64_t planes, int64_t H, int64_t W, const double* g, int win, T C1, T C2,  \
              T* map, T* partials, void* stream);                                                                  \
  /* dx, dy [planes, H, W] = scale[plane] * d(sum of S)/d(x, y). */                                                \
  template <typename T>                                                                                            \
  int backward(const T* x, const T* y, const T* partials, const double* scale, int64_t planes, int64_t H,          \
               int64_t W, const double* g, int win, T* dx, T* dy, void* stream);                                   \
  }                                                                                                                \
  }                                                                                                                \
  }

PYADV_DECLARE_SSIM_GPU_LAUNCHERS(cuda)
PYADV_DECLARE_SSIM_GPU_LAUNCHERS(emulated)
