// CPU SSIM kernels; compiled once per instruction set (PYADV_ISA_TAG). Filter sums accumulate
// in double, as scipy.ndimage does under scikit-image.
#include "ssim_cpu_kernel.h"

#include "ssim_math.h"

PYADV_DECLARE_SSIM_CPU_KERNELS(PYADV_ISA_TAG)

namespace pyadv {
namespace PYADV_ISA_TAG {
namespace ssim {

template <typename T>
double forward_plane(const T* x, const T* y, int64_t H, int64_t W, const double* g, int win, T C1, T C2, T* map,
                     T* partials, double* ring) {
  const int64_t Hv = H - win + 1, Wv = W - win + 1;
  // ring: win rows x 5 quantities x Wv, the horizontally filtered rows of x, y, x^2, y^2, xy.
  auto hrow = [&](int64_t r, double* out) {
    const T* xr = x + r * W;
    const T* yr = y + r * W;
    for (int64_t c = 0; c < Wv; ++c) {
      double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
      for (int k = 0; k < win; ++k) {
        const double a = xr[c + k], b = yr[c + k], w = g[k];
        sx += w * a;
        sy += w * b;
        sxx += w * a * a;
        syy += w * b * b;
        sxy += w * a * b;
      }
      out[c] = sx;
      out[Wv + c] = sy;
      out[2 * Wv + c] = sxx;
      out[3 * Wv + c] = syy;
      out[4 * Wv + c] = sxy;
    }
  };
  for (int k = 0; k < win - 1; ++k) hrow(k, ring + k * 5 * Wv);
  double total = 0;
  T d[5];
  for (int64_t r = 0; r < Hv; ++r) {
    hrow(r + win - 1, ring + ((r + win - 1) % win) * 5 * Wv);
    for (int64_t c = 0; c < Wv; ++c) {
      double m[5] = {0, 0, 0, 0, 0};
      for (int k = 0; k < win; ++k) {
        const double* row = ring + ((r + k) % win) * 5 * Wv;
        for (int q = 0; q < 5; ++q) m[q] += g[k] * row[q * Wv + c];
      }
      const T S = ssim_point(T(m[0]), T(m[1]), T(m[2]), T(m[3]), T(m[4]), C1, C2, partials ? d : nullptr);
      total += S;
      if (map) map[r * Wv + c] = S;
      if (partials)
        for (int q = 0; q < 5; ++q) partials[(q * Hv + r) * Wv + c] = d[q];
    }
  }
  return total;
}

template <typename T>
void backward_plane(const T* x, const T* y, const T* partials, int64_t H, int64_t W, const double* g, int win,
                    double scale, T* dx, T* dy, double* tmp) {
  const int64_t Hv = H - win + 1, Wv = W - win + 1;
  // Transposed (full) filtering of each partial map back onto the input grid: vertical first
  // into tmp [5, H, Wv], then horizontal. F(q) = sum_p w(p - q) P(p) over valid p.
  for (int q = 0; q < 5; ++q) {
    double* t = tmp + q * H * Wv;
    for (int64_t i = 0; i < H * Wv; ++i) t[i] = 0;
    for (int64_t r = 0; r < Hv; ++r)
      for (int k = 0; k < win; ++k) {
        const double w = g[k] * scale;
        const T* p = partials + (q * Hv + r) * Wv;
        double* o = t + (r + k) * Wv;
        for (int64_t c = 0; c < Wv; ++c) o[c] += w * p[c];
      }
  }
  for (int64_t r = 0; r < H; ++r)
    for (int64_t c = 0; c < W; ++c) {
      double f[5] = {0, 0, 0, 0, 0};
      const int64_t k0 = c - (Wv - 1) > 0 ? c - (Wv - 1) : 0, k1 = c < win - 1 ? c : win - 1;
      for (int64_t k = k0; k <= k1; ++k)
        for (int q = 0; q < 5; ++q) f[q] += g[k] * tmp[(q * H + r) * Wv + (c - k)];
      const double a = x[r * W + c], b = y[r * W + c];
      dx[r * W + c] = T(f[0] + 2 * a * f[2] + b * f[4]);
      dy[r * W + c] = T(f[1] + 2 * b * f[3] + a * f[4]);
    }
}

#define PYADV_INSTANTIATE(T)                                                                                     \
  template double forward_plane<T>(const T*, const T*, int64_t, int64_t, const double*, int, T, T, T*, T*,      \
                                   double*);                                                                     \
  template void backward_plane<T>(const T*, const T*, const T*, int64_t, int64_t, const double*, int, double, T*, \
                                  T*, double*);
PYADV_INSTANTIATE(float)
PYADV_INSTANTIATE(double)
#undef PYADV_INSTANTIATE

}  // namespace ssim
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
