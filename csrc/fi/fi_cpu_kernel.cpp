// CPU FI kernels. Compiled once per instruction set with PYADV_ISA_TAG naming the variant;
// plain loops over contiguous tiles that the compiler vectorises for that set.
#include "fi_cpu_kernel.h"

#include "fi_math.h"

PYADV_DECLARE_FI_CPU_KERNELS(PYADV_ISA_TAG)

namespace pyadv {
namespace PYADV_ISA_TAG {
namespace fi {

using fi_cpu::kTile;

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
    for (int64_t k = 0; k < K; ++k) {
      const T w = class_weight(pb[k], eps);
      const T* PYADV_RESTRICT row = jb + k * P;
      for (int64_t i = 0; i < n; ++i) G[i] += w * row[i] * row[i];
    }
    const int64_t t = target[b];
    const T c = target_scale(pb[t], eps);
    const T* PYADV_RESTRICT rt = jb + t * P;
    T* PYADV_RESTRICT o = out + b * P + i0;
    bool bad = false;
    for (int64_t i = 0; i < n; ++i) {
      const T g = c * rt[i];
      o[i] = finish(g, G[i], rank_tol);
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
    T* PYADV_RESTRICT G = den + b * P + i0;
    for (int64_t k = 0; k < Kc; ++k) {
      const T w = class_weight(pb[k0 + k], eps);
      const T* PYADV_RESTRICT row = jb + k * P;
      for (int64_t i = 0; i < n; ++i) G[i] += w * row[i] * row[i];
    }
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
  bool bad = false;
  int64_t first_bad = -1;
  // Row by row so the first bad image is known without a second pass.
  for (int64_t row_start = begin; row_start < end;) {
    const int64_t b = row_start / P;
    const int64_t row_end = ((b + 1) * P < end) ? (b + 1) * P : end;
    bad = false;
    for (int64_t e = row_start; e < row_end; ++e) {
      out[e] = finish(num[e], den[e], rank_tol);
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
