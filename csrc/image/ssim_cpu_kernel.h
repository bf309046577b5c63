// CPU SSIM kernels over raw pointers, one image plane [H, W] at a time; compiled once per
// instruction set. g[win] is the normalised 1-D Gaussian; valid output [Hv, Wv] = [H - win + 1,
// W - win + 1].
#pragma once

#include <cstdint>

#define PYADV_DECLARE_SSIM_CPU_KERNELS(TAG)                                                                       \
  namespace pyadv {                                                                                               \
  namespace TAG {                                                                                                 \
  namespace ssim {                                                                                                \
  /* Fused forward: horizontal filtering of x, y, x^2, y^2, xy into a ring of win rows, vertical  \
     filtering per output row, SSIM per pixel; no full-size intermediate. Returns the sum of S over \
     valid pixels; map [Hv, Wv] and partials [5, Hv, Wv] (dS/dmoments) are written when non-null. */ \
  template <typename T>                                                                                           \
  double forward_plane(const T* x, const T* y, int64_t H, int64_t W, const double* g, int win, T C1, T C2, T* map, \
                       T* partials, double* ring);                                                                \
  /* Backward: dx, dy [H, W] = scale * d(sum of S)/d(x, y) from partials [5, Hv, Wv]; tmp: 5 * H * Wv. */     \
  template <typename T>                                                                                           \
  void backward_plane(const T* x, const T* y, const T* partials, int64_t H, int64_t W, const double* g, int win,   \
                      double scale, T* dx, T* dy, double* tmp);                                                   \
  }                                                                                                               \
  }                                                                                                               \
  }
