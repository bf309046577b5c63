// CPU FI kernels. Compiled once per instruction set with PYADV_ISA_TAG naming the variant;
// plain loops over contiguous tiles that the compiler vectorises for that set.
#include "fi_cpu_kernel.h"

#include "fi_math.h"

PYADV_DECLARE_FI_CPU_KERNELS(PYADV_ISA_TAG)

namespace pyadv {
namespace PYADV_ISA_TAG {
namespace fi {

using fi_cpu::kTile;

// G[0, n) += sum over the K rows (stride P) of w_k * row^2. Four classes per pass over G,
// so the tile of G is loaded and stored a quarter as often as one class per pass would.
template <typename T>
inline void accumulate_tile(T* PYADV_RESTRICT G, const T* PYADV_RESTRICT jb, const T* pb, int64_t K, int64_t P,
                            int64_t n, T eps) {
  int64_t k = 0;
  for (; k + 4 <= K; k += 4) {
    const T w0 = class_weight(pb[k], eps), w1 = class_weight(pb[k + 1], eps);
    const T w2 = class_weight(pb[k + 2], eps), w3 = class_weight(pb[k + 3], eps);
    const T* PYADV_RESTRICT r0 = jb + k * P;
    const T* PYADV_RESTRICT r1 = r0 + P;
    const T* PYADV_RESTRICT r2 = r1 + P;
    const T* PYADV_RESTRICT r3 = r2 + P;
    // Each element is loaded once and squared first (written as w * r * r, the compiler
    // loads r twice, and the load ports become the bottleneck).
    for (int64_t i = 0; i < n; ++i) {
      const T a0 = r0[i], a1 = r1[i], a2 = r2[i], a3 = r3[i];
      T g = G[i];  // classes added in order, as the CUDA kernel adds them
      g += w0 * (a0 * a0);
      g += w1 * (a1 * a1);
      g += w2 * (a2 * a2);
      g += w3 * (a3 * a3);
      G[i] = g;
    }
  }
  for (; k < K; ++k) {
    const T w = class_weight(pb[k], eps);
    const T* PYADV_RESTRICT row = jb + k * P;
    for (int64_t i = 0; i < n; ++i) {
      const T a = row[i];
      G[i] += w * (a * a);
    }
  }
}

template <typename T>
int64_t pixel_fi_items(const T* PYADV_RESTRICT jac, const T* PYADV_RESTRICT probs, const int64_t* target,
                       T* PYADV_RESTRICT out, int64_t K, int64_t P, T eps, T rank_tol, int64_t begin, int64_t end) {
  const int64_t ntiles = fi_cpu::tiles(P);
  int64_t first_bad = -1;
  alignas(64) T G[kTile];
  for (int64_t item = begin; item < end; ++item) {
    const int64_t b = item / ntiles;
    const int64_t i0 = (item % ntiles) * kTile;
    const int64_t n = (P - i0 < kTile) ? P - i0 : kTile;
    const T* pb = probs + b * K;
    const T* jb = jac + b * K * P + i0;
    for (int64_t i = 0; i < n; ++i) G[i] = T(0);
    accumulate_tile(G, jb, pb, K, P, n, eps);
    const int64_t t = target[b];
    const T c = target_scale(pb[t], eps);
    const T* PYADV_RESTRICT rt = jb + t * P;
    T* PYADV_RESTRICT o = out + b * P + i0;
    int bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      const T g = c * rt[i];
      o[i] = finish(g, G[i], rank_tol * rank_tol);
      bad |= non_finite(g, G[i]);
    }
    if (bad && (first_bad < 0 || b < first_bad)) first_bad = b;
  }
  return first_bad;
}

template <typename T>
void accumulate_items(const T* PYADV_RESTRICT jac, const T* PYADV_RESTRICT probs, const int64_t* target,
                      T* PYADV_RESTRICT num, T* PYADV_RESTRICT den, int64_t Kc, int64_t K, int64_t k0, int64_t P,
                      T eps, int64_t begin, int64_t end) {
  const int64_t ntiles = fi_cpu::tiles(P);
  for (int64_t item = begin; item < end; ++item) {
    const int64_t b = item / ntiles;
    const int64_t i0 = (item % ntiles) * kTile;
    const int64_t n = (P - i0 < kTile) ? P - i0 : kTile;
    const T* pb = probs + b * K;
    const T* jb = jac + b * Kc * P + i0;
    accumulate_tile(den + b * P + i0, jb, pb + k0, Kc, P, n, eps);
    const int64_t t = target[b] - k0;
    if (t >= 0 && t < Kc) {
      const T c = target_scale(pb[k0 + t], eps);
      const T* PYADV_RESTRICT rt = jb + t * P;
      T* PYADV_RESTRICT g = num + b * P + i0;
      for (int64_t i = 0; i < n; ++i) g[i] = c * rt[i];
    }
  }
}

template <typename T>
int64_t finish_elems(const T* PYADV_RESTRICT num, const T* PYADV_RESTRICT den, T* PYADV_RESTRICT out, int64_t P,
                     T rank_tol, int64_t begin, int64_t end) {
  int64_t first_bad = -1;
  // Row by row so the first bad image is known without a second pass.
  for (int64_t row_start = begin; row_start < end;) {
    const int64_t b = row_start / P;
    const int64_t row_end = ((b + 1) * P < end) ? (b + 1) * P : end;
    int bad = 0;
    for (int64_t e = row_start; e < row_end; ++e) {
      out[e] = finish(num[e], den[e], rank_tol * rank_tol);
      bad |= non_finite(num[e], den[e]);
    }
    if (bad && first_bad < 0) first_bad = b;
    row_start = row_end;
  }
  return first_bad;
}

#define PYADV_INSTANTIATE(T)                                                                                     \
  template int64_t pixel_fi_items<T>(const T*, const T*, const int64_t*, T*, int64_t, int64_t, T, T, int64_t,    \
                                     int64_t);                                                                   \
  template void accumulate_items<T>(const T*, const T*, const int64_t*, T*, T*, int64_t, int64_t, int64_t,       \
                                    int64_t, T, int64_t, int64_t);                                               \
  template int64_t finish_elems<T>(const T*, const T*, T*, int64_t, T, int64_t, int64_t);
PYADV_INSTANTIATE(float)
PYADV_INSTANTIATE(double)
#undef PYADV_INSTANTIATE

}  // namespace fi
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
