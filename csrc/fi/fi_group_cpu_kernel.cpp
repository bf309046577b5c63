// CPU kernels of grouped FI; compiled once per instruction set (PYADV_ISA_TAG).
#include "fi_group_cpu_kernel.h"

#include "fi_group_math.h"

PYADV_DECLARE_FI_GROUP_CPU_KERNELS(PYADV_ISA_TAG)

namespace pyadv {
namespace PYADV_ISA_TAG {
namespace fi {

using fi_cpu::kTile;

template <typename T>
void group_accumulate_items(const T* PYADV_RESTRICT jac, const T* PYADV_RESTRICT probs, const int64_t* target,
                            T* PYADV_RESTRICT num, T* PYADV_RESTRICT den, int64_t Kc, int64_t K, int64_t k0,
                            int64_t C, int64_t HW, T eps, int64_t begin, int64_t end) {
  const int64_t ntiles = fi_cpu::tiles(HW);
  const int64_t T3 = tri_size(static_cast<int>(C));
  for (int64_t item = begin; item < end; ++item) {
    const int64_t b = item / ntiles;
    const int64_t i0 = (item % ntiles) * kTile;
    const int64_t n = (HW - i0 < kTile) ? HW - i0 : kTile;
    const T* pb = probs + b * K;
    for (int64_t k = 0; k < Kc; ++k) {
      const T w = class_weight(pb[k0 + k], eps);
      const T* a = jac + ((b * Kc + k) * C) * HW + i0;
      for (int64_t c1 = 0; c1 < C; ++c1)
        for (int64_t c2 = c1; c2 < C; ++c2) {
          T* PYADV_RESTRICT d = den + (b * T3 + tri(int(c1), int(c2), int(C))) * HW + i0;
          const T* PYADV_RESTRICT r1 = a + c1 * HW;
          const T* PYADV_RESTRICT r2 = a + c2 * HW;
          for (int64_t i = 0; i < n; ++i) d[i] += w * (r1[i] * r2[i]);
        }
    }
    const int64_t t = target[b] - k0;
    if (t >= 0 && t < Kc) {
      const T scale = target_scale(pb[k0 + t], eps);
      for (int64_t c = 0; c < C; ++c) {
        const T* PYADV_RESTRICT r = jac + ((b * Kc + t) * C + c) * HW + i0;
        T* PYADV_RESTRICT g = num + (b * C + c) * HW + i0;
        for (int64_t i = 0; i < n; ++i) g[i] = scale * r[i];
      }
    }
  }
}

template <typename T>
int64_t group_finish_elems(const T* PYADV_RESTRICT num, const T* PYADV_RESTRICT den, T* PYADV_RESTRICT out,
                           int64_t C, int64_t HW, T rank_tol, int64_t begin, int64_t end) {
  const int64_t T3 = tri_size(static_cast<int>(C));
  int64_t first_bad = -1;
  T g[kMaxGroup], Gp[tri_size(kMaxGroup)];
  for (int64_t e = begin; e < end; ++e) {
    const int64_t b = e / HW, i = e - b * HW;
    int bad = 0;
    for (int64_t c = 0; c < C; ++c) {
      g[c] = num[(b * C + c) * HW + i];
      bad |= non_finite(g[c], T(0));
    }
    for (int64_t j = 0; j < T3; ++j) {
      Gp[j] = den[(b * T3 + j) * HW + i];
      bad |= non_finite(Gp[j], T(0));
    }
    out[e] = bad ? T(0) : group_fi(Gp, g, static_cast<int>(C), rank_tol * rank_tol);
    if (bad && (first_bad < 0 || b < first_bad)) first_bad = b;
  }
  return first_bad;
}

#define PYADV_INSTANTIATE(T)                                                                                      \
  template void group_accumulate_items<T>(const T*, const T*, const int64_t*, T*, T*, int64_t, int64_t, int64_t,  \
                                          int64_t, int64_t, T, int64_t, int64_t);                                 \
  template int64_t group_finish_elems<T>(const T*, const T*, T*, int64_t, int64_t, T, int64_t, int64_t);
PYADV_INSTANTIATE(float)
PYADV_INSTANTIATE(double)
#undef PYADV_INSTANTIATE

}  // namespace fi
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
