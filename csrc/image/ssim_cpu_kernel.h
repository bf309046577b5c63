// CPU SSIM kernels over raw pointers, one image plane [H, W] at a time; compiled once per
// instruction set. g[win] is the normalised 1-D Gaussian; valid output [Hv, Wv] = [H - win + 1,
// W - win + 1]. Each call needs a scratch buffer of ssim_cpu_workspace<T>(W, win) elements.
#pragma once

#include <cstdint>

namespace pyadv {
namespace ssim_cpu {

// The kernels work on 32-byte vectors of columns: 8 floats or 4 doubles. Wider vectors pad
// the short rows of small images (Wv = 18 at 28 px) more than they gain.
constexpr int64_t kCpuVectorBytes = 32;

constexpr int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Scratch elements of T for one plane, forward or backward (the larger of the two; the
// backward runs the forward's rows too, plus a ring of win rows of partials).
template <typename T>
constexpr int64_t ssim_cpu_workspace(int64_t W, int64_t win) {
  const int64_t L = kCpuVectorBytes / int64_t(sizeof(T));
  const int64_t Wv = W - win + 1, Wp = round_up(Wv, L), Wq = round_up(W, L);
  const int64_t fwd = round_up(win, L) + 5 * (Wp + win - 1) + win * 5 * Wp + 6 * Wp;
  const int64_t bwd = win * 5 * Wp + 2 * round_up(win, L) + 5 * (Wq + win - 1) + 4 * Wq;
  return fwd + bwd;
}

}  // namespace ssim_cpu
}  // namespace pyadv

#define PYADV_DECLARE_SSIM_CPU_KERNELS(TAG)                                                                       \
  namespace pyadv {                                                                                               \
  namespace TAG {                                                                                                 \
  namespace ssim {                                                                                                \
  /* Fused forward: horizontal filtering of x, y, x^2, y^2, xy (centred on the plane's means) into \
     a ring of win rows, vertical filtering per output row, SSIM per pixel; no full-size           \
     intermediate. Returns the sum of S over valid pixels; map [Hv, Wv] and partials [5, Hv, Wv]  \
     (dS/dmoments) are written when non-null. */                                                  \
  template <typename T>                                                                                           \
  double forward_plane(const T* x, const T* y, int64_t H, int64_t W, const double* g, int win, T C1, T C2, T* map, \
                       T* partials, T* work);                                                                     \
  /* Backward: dx, dy [H, W] = scale * d(sum of S)/d(x, y), recomputing the forward row by row (no \
     saved partials). */                                                                          \
  template <typename T>                                                                                           \
  void backward_plane(const T* x, const T* y, int64_t H, int64_t W, const double* g, int win, T C1, T C2,          \
                      double scale, T* dx, T* dy, T* work);                                                       \
  }                                                                                                               \
  }                                                                                                               \
  }
