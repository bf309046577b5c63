// CPU kernel of the ECC inner step (ecc_math.h), compiled once per instruction set.
#pragma once

#include <cstdint>

// Scratch floats prefilter_plane needs for an [H, W] plane and a kernel of radius r.
inline int64_t ecc_prefilter_workspace(int64_t H, int64_t W, int64_t r) { return H * W + W + 2 * r; }

#define PYADV_DECLARE_ECC_CPU_KERNELS(TAG)                                                                         \
  namespace pyadv {                                                                                                \
  namespace TAG {                                                                                                  \
  namespace ecc {                                                                                                  \
  /* Adds to out [n_stats(motion)] the sums of template rows [y0, y1) of one pair: img [3, H, W] (or [H, W, 3]  \
     when interleaved), tmpl [H, W]. */                                                                            \
  template <typename T>                                                                                            \
  void moments_rows(const T* img, const T* tmpl, int64_t H, int64_t W, int64_t y0, int64_t y1, const double* M,    \
                    int motion, int64_t margin, bool interleaved, double* out);                                    \
  /* One plane through the separable kernel k [2r + 1] with reflect-101 borders into out; when gx  \
     is non-null also the central-difference gradients of the result (OpenCV's ECC pre-filter). */ \
  void prefilter_plane(const float* src, int64_t H, int64_t W, const float* k, int64_t r, float* out, float* gx,   \
                       float* gy, float* work);                                                                    \
  }                                                                                                                \
  }                                                                                                                \
  }
