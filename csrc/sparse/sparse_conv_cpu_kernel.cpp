// CPU kernel of the incremental conv stage: register blocks of 4 candidates x 64 channels (GCC
// vector types, one 64-byte vector per 16 floats, lowered to what each instruction set has),
// so that each weight row loaded from cache feeds four candidates' multiply-adds. The order of
// the sums per output is sparse_conv_math::conv_at's (base, then taps, then input channels).
#include "sparse_conv_cpu_kernel.h"

#include <cstring>

PYADV_DECLARE_SPARSE_CONV_CPU_KERNELS(PYADV_ISA_TAG)

namespace pyadv {
namespace PYADV_ISA_TAG {
namespace sparse_conv {

using sparse_conv_math::Geometry;

template <typename T>
struct Vec;
template <>
struct Vec<float> {
  typedef float type __attribute__((vector_size(64)));
};
template <>
struct Vec<double> {
  typedef double type __attribute__((vector_size(64)));
};

// NB candidates x KV vectors of channels (from channel c0) of pooled position q.
template <typename T, int NB, int KV>
inline void pooled_block(const Geometry& g, const int32_t* slots, const T* delta, int64_t dstride, const T* base,
                         const T* weight, int32_t q, int64_t c0, T* out, int64_t ostride) {
  using V = typename Vec<T>::type;
  constexpr int L = int(sizeof(V) / sizeof(T));
  V res[NB][KV];
  const int64_t qy = q / g.Wp, qx = q % g.Wp;
  for (int64_t dy = 0; dy < g.pool; ++dy)
    for (int64_t dx = 0; dx < g.pool; ++dx) {
      const int64_t oy = qy * g.pool + dy, ox = qx * g.pool + dx;
      V acc[NB][KV];
      const T* b = base + (oy * g.Wc + ox) * g.Cout + c0;
      for (int k = 0; k < KV; ++k) {
        V bv;
        std::memcpy(&bv, b + k * L, sizeof(V));
        for (int p = 0; p < NB; ++p) acc[p][k] = bv;
      }
      sparse_conv_math::changed_taps(g, slots, oy, ox, [&](int32_t a, int64_t tap) {
        const T* d = delta + int64_t(a) * g.Cin;
        const T* w = weight + tap * g.Cin * g.Cout + c0;
        // Unrolled by 4: the loop's own increments and branch cost a fifth of the time (FIPSO's
        // incremental pass 19-21k -> 25k candidates/s, benchmarks/attacks_sparse.py; by 8: no better).
#pragma GCC unroll 4
        for (int64_t ci = 0; ci < g.Cin; ++ci) {
          V wv[KV];
          std::memcpy(wv, w + ci * g.Cout, sizeof(wv));
          for (int p = 0; p < NB; ++p) {
            const T dv = d[p * dstride + ci];
            for (int k = 0; k < KV; ++k) acc[p][k] += dv * wv[k];
          }
        }
      });
      const bool first = dy == 0 && dx == 0;
      for (int p = 0; p < NB; ++p)
        for (int k = 0; k < KV; ++k) {
          V v = acc[p][k];
          if (g.relu) v = v > V{} ? v : V{};
          res[p][k] = first ? v : (v > res[p][k] ? v : res[p][k]);
        }
    }
  for (int p = 0; p < NB; ++p) std::memcpy(out + p * ostride + c0, res[p], sizeof(res[p]));
}

// The channels from c0 on that fill no whole vector: the per-output formula.
template <typename T>
inline void pooled_tail(const Geometry& g, const int32_t* slots, const T* delta, int64_t dstride, const T* base,
                        const T* weight, int32_t q, int64_t c0, T* out, int64_t ostride, int64_t nb) {
  for (int64_t p = 0; p < nb; ++p)
    for (int64_t c = c0; c < g.Cout; ++c)
      out[p * ostride + c] = sparse_conv_math::stage_at(g, slots, delta + p * dstride, base, weight, q, c);
}

template <typename T, int NB>
inline void pooled_row(const Geometry& g, const int32_t* slots, const T* delta, int64_t dstride, const T* base,
                       const T* weight, int32_t q, T* out, int64_t ostride) {
  constexpr int L = int(64 / sizeof(T));
  int64_t c = 0;
  for (; c + 4 * L <= g.Cout; c += 4 * L) pooled_block<T, NB, 4>(g, slots, delta, dstride, base, weight, q, c, out, ostride);
  for (; c + 2 * L <= g.Cout; c += 2 * L) pooled_block<T, NB, 2>(g, slots, delta, dstride, base, weight, q, c, out, ostride);
  for (; c + L <= g.Cout; c += L) pooled_block<T, NB, 1>(g, slots, delta, dstride, base, weight, q, c, out, ostride);
  if (c < g.Cout) pooled_tail(g, slots, delta, dstride, base, weight, q, c, out, ostride, NB);
}

template <typename T>
void stage_rows(const Geometry& g, const int32_t* slots, const int32_t* outpos, int64_t Q, const T* delta, int64_t A,
                const T* base, const T* weight, T* out, int64_t n0, int64_t n1) {
  constexpr int NB = 4;
  const int64_t dstride = A * g.Cin, ostride = Q * g.Cout;
  for (int64_t n = n0; n < n1;) {
    const int64_t nb = n1 - n >= NB ? NB : 1;
    const T* d = delta + n * dstride;
    for (int64_t j = 0; j < Q; ++j) {
      T* o = out + n * ostride + j * g.Cout;
      const int32_t q = outpos[j];
      if (q < 0) {
        for (int64_t p = 0; p < nb; ++p) std::memset(o + p * ostride, 0, sizeof(T) * g.Cout);
      } else if (nb == NB) {
        pooled_row<T, NB>(g, slots, d, dstride, base, weight, q, o, ostride);
      } else {
        pooled_row<T, 1>(g, slots, d, dstride, base, weight, q, o, ostride);
      }
    }
    n += nb;
  }
}

template void stage_rows<float>(const Geometry&, const int32_t*, const int32_t*, int64_t, const float*, int64_t,
                                const float*, const float*, float*, int64_t, int64_t);
template void stage_rows<double>(const Geometry&, const int32_t*, const int32_t*, int64_t, const double*, int64_t,
                                 const double*, const double*, double*, int64_t, int64_t);

}  // namespace sparse_conv
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
