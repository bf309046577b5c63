// CPU swarm kernels; compiled once per instruction set (PYADV_ISA_TAG), with
// -ffp-contract=off so results match the CUDA kernels and the numpy reference bit for bit.
#include "swarm_cpu_kernel.h"

#include <cstring>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "swarm_math.h"

PYADV_DECLARE_SWARM_CPU_KERNELS(PYADV_ISA_TAG)

namespace pyadv {
namespace PYADV_ISA_TAG {
namespace swarm {

#if defined(__AVX2__)
// Eight consecutive Philox4x32-10 draws (indices first .. first + 7) in AVX2 registers: the
// 32x32->64 multiplies of even and odd lanes go through vpmuludq separately and are blended
// back. Identical words to philox::draw (tested through the kernels' bit-exactness tests).
inline void philox8_avx2(uint64_t seed, uint32_t step, uint64_t first, uint32_t stream, uint32_t (&w)[4][8]) {
  alignas(32) uint32_t lo[8], hi[8];
  for (int j = 0; j < 8; ++j) {
    const uint64_t idx = first + static_cast<uint64_t>(j);
    lo[j] = static_cast<uint32_t>(idx);
    hi[j] = static_cast<uint32_t>(idx >> 32);
  }
  __m256i c0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(lo));
  __m256i c1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(hi));
  __m256i c2 = _mm256_set1_epi32(static_cast<int>(step));
  __m256i c3 = _mm256_set1_epi32(static_cast<int>(stream));
  const __m256i m0 = _mm256_set1_epi64x(0xD2511F53u), m1 = _mm256_set1_epi64x(0xCD9E8D57u);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    const __m256i pe0 = _mm256_mul_epu32(c0, m0), po0 = _mm256_mul_epu32(_mm256_srli_epi64(c0, 32), m0);
    const __m256i pe1 = _mm256_mul_epu32(c2, m1), po1 = _mm256_mul_epu32(_mm256_srli_epi64(c2, 32), m1);
    const __m256i lo0 = _mm256_blend_epi32(pe0, _mm256_slli_epi64(po0, 32), 0xAA);
    const __m256i hi0 = _mm256_blend_epi32(_mm256_srli_epi64(pe0, 32), po0, 0xAA);
    const __m256i lo1 = _mm256_blend_epi32(pe1, _mm256_slli_epi64(po1, 32), 0xAA);
    const __m256i hi1 = _mm256_blend_epi32(_mm256_srli_epi64(pe1, 32), po1, 0xAA);
    const __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(static_cast<int>(k0)));
    const __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(static_cast<int>(k1)));
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(w[0]), c0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(w[1]), c1);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(w[2]), c2);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(w[3]), c3);
}
#endif

#if defined(__AVX512F__)
// Sixteen consecutive Philox4x32-10 draws in AVX-512 registers, as philox8_avx2 does eight.
inline void philox16_avx512(uint64_t seed, uint32_t step, uint64_t first, uint32_t stream, __m512i (&w)[4]) {
  alignas(64) uint32_t lo[16], hi[16];
  for (int j = 0; j < 16; ++j) {
    const uint64_t idx = first + static_cast<uint64_t>(j);
    lo[j] = static_cast<uint32_t>(idx);
    hi[j] = static_cast<uint32_t>(idx >> 32);
  }
  __m512i c0 = _mm512_load_si512(lo), c1 = _mm512_load_si512(hi);
  __m512i c2 = _mm512_set1_epi32(static_cast<int>(step)), c3 = _mm512_set1_epi32(static_cast<int>(stream));
  const __m512i m0 = _mm512_set1_epi64(0xD2511F53u), m1 = _mm512_set1_epi64(0xCD9E8D57u);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    const __m512i pe0 = _mm512_mul_epu32(c0, m0), po0 = _mm512_mul_epu32(_mm512_srli_epi64(c0, 32), m0);
    const __m512i pe1 = _mm512_mul_epu32(c2, m1), po1 = _mm512_mul_epu32(_mm512_srli_epi64(c2, 32), m1);
    const __m512i lo0 = _mm512_mask_blend_epi32(0xAAAA, pe0, _mm512_slli_epi64(po0, 32));
    const __m512i hi0 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe0, 32), po0);
    const __m512i lo1 = _mm512_mask_blend_epi32(0xAAAA, pe1, _mm512_slli_epi64(po1, 32));
    const __m512i hi1 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe1, 32), po1);
    c0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32(static_cast<int>(k0)));
    c1 = lo1;
    c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32(static_cast<int>(k1)));
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  w[0] = c0;
  w[1] = c1;
  w[2] = c2;
  w[3] = c3;
}

// philox::to_unit_float on sixteen words: (a >> 8) * 2^-24, exact in float.
inline __m512 unit_float16(__m512i a) {
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(a, 8)), _mm512_set1_ps(1.0f / 16777216.0f));
}
#endif

// pso_uniforms for the n consecutive stream elements first .. first + n - 1; for float one draw
// serves each aligned pair. The generator runs in registers, one draw at a time: a version
// vectorised across draws was slower on AVX2 and AVX-512 (the 32x32->64 multiplies need
// lane shuffles) than this scalar loop.
template <typename T>
inline void pso_uniform_range(uint64_t seed, uint32_t step, uint64_t first, int64_t n, T* r1, T* r2) {
  if constexpr (sizeof(T) == 4) {
    int64_t j = 0;
    if (n > 0 && (first & 1u)) {
      pso_uniforms<T>(seed, step, first, r1, r2);
      j = 1;
    }
#if defined(__AVX512F__)
    {
      // Sixteen draws, thirty-two elements: element 2k takes words 0-1 of draw k, 2k + 1 words 2-3.
      const __m512i even = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
      const __m512i odd = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
      __m512i w[4];
      for (; j + 32 <= n; j += 32) {
        philox16_avx512(seed, step, (first + static_cast<uint64_t>(j)) >> 1, kPsoStream, w);
        const __m512 f0 = unit_float16(w[0]), f1 = unit_float16(w[1]), f2 = unit_float16(w[2]),
                     f3 = unit_float16(w[3]);
        _mm512_storeu_ps(r1 + j, _mm512_permutex2var_ps(f0, even, f2));
        _mm512_storeu_ps(r1 + j + 16, _mm512_permutex2var_ps(f0, odd, f2));
        _mm512_storeu_ps(r2 + j, _mm512_permutex2var_ps(f1, even, f3));
        _mm512_storeu_ps(r2 + j + 16, _mm512_permutex2var_ps(f1, odd, f3));
      }
    }
#endif
#if defined(__AVX2__)
    uint32_t w[4][8];
    for (; j + 16 <= n; j += 16) {  // eight draws, sixteen elements
      philox8_avx2(seed, step, (first + static_cast<uint64_t>(j)) >> 1, kPsoStream, w);
      for (int k = 0; k < 8; ++k) {
        r1[j + 2 * k] = philox::to_unit_float(w[0][k]);
        r2[j + 2 * k] = philox::to_unit_float(w[1][k]);
        r1[j + 2 * k + 1] = philox::to_unit_float(w[2][k]);
        r2[j + 2 * k + 1] = philox::to_unit_float(w[3][k]);
      }
    }
#endif
    for (; j + 1 < n; j += 2) {
      const philox::U4 u = philox::draw(seed, step, (first + static_cast<uint64_t>(j)) >> 1, kPsoStream);
      r1[j] = philox::to_unit_float(u.v[0]);
      r2[j] = philox::to_unit_float(u.v[1]);
      r1[j + 1] = philox::to_unit_float(u.v[2]);
      r2[j + 1] = philox::to_unit_float(u.v[3]);
    }
    if (j < n) pso_uniforms<T>(seed, step, first + static_cast<uint64_t>(j), r1 + j, r2 + j);
  } else {
    int64_t j = 0;
#if defined(__AVX2__)
    uint32_t w[4][8];
    for (; j + 8 <= n; j += 8) {
      philox8_avx2(seed, step, first + static_cast<uint64_t>(j), kPsoStream, w);
      for (int k = 0; k < 8; ++k) {
        r1[j + k] = philox::to_unit_double(w[0][k], w[1][k]);
        r2[j + k] = philox::to_unit_double(w[2][k], w[3][k]);
      }
    }
#endif
    for (; j < n; ++j) pso_uniforms<T>(seed, step, first + static_cast<uint64_t>(j), r1 + j, r2 + j);
  }
}

template <typename T>
void pso_step_rows(T* PYADV_RESTRICT pos, T* PYADV_RESTRICT vel, const T* PYADV_RESTRICT pbest,
                   const T* PYADV_RESTRICT gbest, const T* PYADV_RESTRICT lo, const T* PYADV_RESTRICT hi,
                   const int64_t* ids, int64_t N, int64_t D, T w, T c1, T c2, uint64_t seed, uint32_t step,
                   int boundary, T vmax_frac, int64_t begin, int64_t end) {
  // The rows of one problem are consecutive in the random stream (element id * N * D + local
  // index): their uniforms are drawn for a chunk of rows at a time, then the update runs over
  // the chunk as a plain, vectorisable loop.
  constexpr int64_t kChunk = 1024;
  alignas(64) T r1[kChunk], r2[kChunk];
  // A problem's gbest, lo and hi repeated row after row over a chunk, so that the update is one
  // flat loop over the chunk's elements (short rows, D = 20, would leave a vector remainder per row).
  alignas(64) T gbt[kChunk], lot[kChunk], hit[kChunk];
  int64_t tiled = -1;  // the problem gbt/lot/hit hold
  const int64_t rows_per_chunk = D >= kChunk ? 1 : kChunk / D;
  for (int64_t r0 = begin; r0 < end;) {
    const int64_t b = r0 / N;
    const int64_t r1_end = (b + 1) * N < end ? (b + 1) * N : end;
    const int64_t r_end = r0 + rows_per_chunk < r1_end ? r0 + rows_per_chunk : r1_end;
    const T *gb = gbest + b * D, *l = lo + b * D, *h = hi + b * D;
    const uint64_t first = static_cast<uint64_t>(((ids ? ids[b] : b) * N + (r0 - b * N)) * D);
    for (int64_t d0 = 0; d0 < (r_end - r0) * D; d0 += kChunk) {
      // (one row wider than the chunk: D > kChunk) draws its coordinates a chunk at a time
      const int64_t n = (r_end - r0) * D - d0 < kChunk ? (r_end - r0) * D - d0 : kChunk;
      pso_uniform_range<T>(seed, step, first + static_cast<uint64_t>(d0), n, r1, r2);
      T* PYADV_RESTRICT x = pos + r0 * D + d0;
      T* PYADV_RESTRICT v = vel + r0 * D + d0;
      const T* pb = pbest + r0 * D + d0;
      if (D >= kChunk) {
        for (int64_t j = 0; j < n; ++j)
          pso_coord(x[j], v[j], pb[j], gb[d0 + j], l[d0 + j], h[d0 + j], w, c1, c2, r1[j], r2[j], boundary,
                    vmax_frac);
      } else {
        if (tiled != b) {
          for (int64_t row = 0; row < rows_per_chunk; ++row) {
            std::memcpy(gbt + row * D, gb, sizeof(T) * D);
            std::memcpy(lot + row * D, l, sizeof(T) * D);
            std::memcpy(hit + row * D, h, sizeof(T) * D);
          }
          tiled = b;
        }
        if (boundary == kReflect)
          for (int64_t j = 0; j < n; ++j)
            pso_coord(x[j], v[j], pb[j], gbt[j], lot[j], hit[j], w, c1, c2, r1[j], r2[j], kReflect, vmax_frac);
        else
          for (int64_t j = 0; j < n; ++j)
            pso_coord(x[j], v[j], pb[j], gbt[j], lot[j], hit[j], w, c1, c2, r1[j], r2[j], kClip, vmax_frac);
      }
    }
    r0 = r_end;
  }
}

template <typename T>
void swarm_best_problems(const T* pos, const T* fit, T* pbest, T* pbest_fit, T* gbest, T* gbest_fit, int64_t N,
                         int64_t D, int64_t begin, int64_t end) {
  for (int64_t b = begin; b < end; ++b) {
    int64_t arg = -1;
    T best = gbest_fit[b];
    for (int64_t n = 0; n < N; ++n) {
      const int64_t row = b * N + n;
      const T f = sane_fitness(fit[row]);
      if (f < pbest_fit[row]) {
        pbest_fit[row] = f;
        std::memcpy(pbest + row * D, pos + row * D, sizeof(T) * D);
      }
      if (pbest_fit[row] < best) {  // strict: ties keep the lowest index
        best = pbest_fit[row];
        arg = n;
      }
    }
    if (arg >= 0) {
      gbest_fit[b] = best;
      std::memcpy(gbest + b * D, pbest + (b * N + arg) * D, sizeof(T) * D);
    }
  }
}

template <typename T>
void de_trial_rows(const T* PYADV_RESTRICT pop, const int64_t* best, const T* lo, const T* hi,
                   const uint8_t* int_mask, const int64_t* ids, T* PYADV_RESTRICT trial, int64_t N, int64_t D, T F,
                   T CR, int strategy, int bounds, uint64_t seed, uint32_t step, int64_t begin, int64_t end) {
  for (int64_t row = begin; row < end; ++row) {
    const int64_t b = row / N, i = row - b * N;
    const int64_t stream_row = (ids ? ids[b] : b) * N + i;
    const DeIndices r = de_indices(seed, step, static_cast<uint64_t>(stream_row), static_cast<uint32_t>(i),
                                   static_cast<uint32_t>(N), static_cast<uint32_t>(D));
    const T* x = pop + b * N * D;
    const T* a = x + (strategy == kBest1 ? best[b] : int64_t(r.r1)) * D;
    const T* p = x + (strategy == kBest1 ? int64_t(r.r1) : int64_t(r.r2)) * D;
    const T* q = x + (strategy == kBest1 ? int64_t(r.r2) : int64_t(r.r3)) * D;
    for (int64_t d = 0; d < D; ++d) {
      const bool take = CR >= T(1) || d == int64_t(r.jrand) ||
                        de_cross_uniform<T>(seed, step, static_cast<uint64_t>(stream_row * D + d)) < CR;
      const T t = take ? a[d] + F * (p[d] - q[d]) : x[i * D + d];
      trial[row * D + d] = de_bound(t, lo[b * D + d], hi[b * D + d], int_mask && int_mask[b * D + d], bounds, seed,
                                    step, static_cast<uint64_t>(stream_row * D + d));
    }
  }
}

template <typename T>
void de_select_rows(const T* trial, const T* trial_fit, T* pop, T* fit, int64_t D, int64_t begin, int64_t end) {
  for (int64_t row = begin; row < end; ++row) {
    const T f = sane_fitness(trial_fit[row]);
    if (f <= fit[row]) {
      fit[row] = f;
      std::memcpy(pop + row * D, trial + row * D, sizeof(T) * D);
    }
  }
}

template <typename T>
void sparse_perturb_rows(const T* base, const int64_t* idx, const T* values, T* out, int64_t N, int64_t m,
                         int64_t P, int64_t n0, int64_t n1, int64_t begin, int64_t end) {
  const int64_t per = n1 - n0;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t b = row / per, n = n0 + row % per;
    T* o = out + row * P;
    std::memcpy(o, base + b * P, sizeof(T) * P);
    const int64_t* ix = idx + b * m;
    const T* v = values + (b * N + n) * m;
    for (int64_t j = 0; j < m; ++j) o[ix[j]] += v[j];
    for (int64_t j = 0; j < m; ++j) {
      const T t = o[ix[j]];
      o[ix[j]] = t < T(0) ? T(0) : (t > T(1) ? T(1) : t);
    }
  }
}

template <typename T>
void pixel_replace_rows(const T* base, const T* cand, T* out, int64_t N, int64_t m, int64_t C, int64_t H, int64_t W,
                        int64_t n0, int64_t n1, int64_t begin, int64_t end) {
  const int64_t per = n1 - n0, P = C * H * W, S = 2 + C;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t b = row / per, n = n0 + row % per;
    T* o = out + row * P;
    std::memcpy(o, base + b * P, sizeof(T) * P);
    const T* c = cand + (b * N + n) * m * S;
    for (int64_t j = 0; j < m; ++j, c += S) {
      int64_t y = static_cast<int64_t>(round_half_up(c[0])), x = static_cast<int64_t>(round_half_up(c[1]));
      y = y < 0 ? 0 : (y >= H ? H - 1 : y);
      x = x < 0 ? 0 : (x >= W ? W - 1 : x);
      for (int64_t ch = 0; ch < C; ++ch) {
        const T v = c[2 + ch];
        o[(ch * H + y) * W + x] = v < T(0) ? T(0) : (v > T(1) ? T(1) : v);
      }
    }
  }
}

#define PYADV_INSTANTIATE(T)                                                                                       \
  template void pso_step_rows<T>(T*, T*, const T*, const T*, const T*, const T*, const int64_t*, int64_t, int64_t,  \
                                 T, T, T, uint64_t, uint32_t, int, T, int64_t, int64_t);                           \
  template void swarm_best_problems<T>(const T*, const T*, T*, T*, T*, T*, int64_t, int64_t, int64_t, int64_t);    \
  template void de_trial_rows<T>(const T*, const int64_t*, const T*, const T*, const uint8_t*, const int64_t*, T*,  \
                                 int64_t, int64_t, T, T, int, int, uint64_t, uint32_t, int64_t, int64_t);          \
  template void de_select_rows<T>(const T*, const T*, T*, T*, int64_t, int64_t, int64_t);                          \
  template void sparse_perturb_rows<T>(const T*, const int64_t*, const T*, T*, int64_t, int64_t, int64_t, int64_t, \
                                       int64_t, int64_t, int64_t);                                                 \
  template void pixel_replace_rows<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, int64_t, int64_t,         \
                                      int64_t, int64_t, int64_t, int64_t);
PYADV_INSTANTIATE(float)
PYADV_INSTANTIATE(double)
#undef PYADV_INSTANTIATE

}  // namespace swarm
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
