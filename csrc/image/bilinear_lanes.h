// Bilinear sampling of kLanes consecutive output pixels as whole vectors, for the CPU kernels
// that sample images (ECC's inner step, the perspective warp). Near the identity a block's
// top-left corners are neighbours in one row (a "row run"): the four corners are then plain row
// loads instead of gathers. The blend is warp_math::blend's, operation for operation (the
// kernels compile without FMA contraction), rounded to T as whole vectors: per-lane scalar code
// let GCC 12 keep some float32 results in double.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "../common/macros.h"

namespace pyadv {
inline namespace PYADV_ISA_TAG {
namespace bilinear_lanes {

constexpr int kLanes = 8;
// One pixel per lane (lowered to SSE, AVX2 or AVX-512 by the variant's flags).
typedef double V8 __attribute__((vector_size(kLanes * sizeof(double))));

// Whether lanes [0, m) all have their four neighbours inside (in, from source_block) at
// consecutive offsets: then lane l's top-left corner is off[0] + l.
PYADV_FORCEINLINE bool is_row_run(const double* in, const int64_t* off, int m) {
#if defined(__AVX512F__)
  const __m512i want = _mm512_add_epi64(_mm512_set1_epi64(off[0]), _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
  const __mmask8 ok = _mm512_cmpeq_epi64_mask(_mm512_loadu_si512(off), want) &
                      _mm512_cmpneq_pd_mask(_mm512_loadu_pd(in), _mm512_setzero_pd());
  const unsigned live = m >= kLanes ? 0xFFu : (1u << m) - 1u;
  return (unsigned(ok) & live) == live;
#else
  bool run = true;
  for (int l = 0; l < kLanes; ++l) run = run & ((l >= m) | ((in[l] != 0.0) & (off[l] == off[0] + l)));
  return run;
#endif
}

// kLanes values from p as doubles, of which the first `count` are read (the rest 0): a partial
// block must not read past the pixels it owns.
template <typename T>
PYADV_FORCEINLINE V8 load(const T* p, int count) {
#if defined(__AVX512F__) && defined(__AVX512VL__)
  // A masked load reads only the lanes asked for (no fault past them).
  const __mmask8 k = count >= kLanes ? __mmask8(0xFF) : __mmask8((1u << count) - 1);
  if constexpr (std::is_same<T, float>::value) return V8(_mm512_cvtps_pd(_mm256_maskz_loadu_ps(k, p)));
  else return V8(_mm512_maskz_loadu_pd(k, p));
#else
  V8 v;
  if (count == kLanes) {
    alignas(64) T tmp[kLanes];
    std::memcpy(tmp, p, sizeof tmp);
    for (int l = 0; l < kLanes; ++l) v[l] = double(tmp[l]);
  } else {  // lane by lane: a vector load of lanes stored one by one would stall on the stores
    for (int l = 0; l < kLanes; ++l) v[l] = l < count ? double(p[l]) : 0.0;
  }
  return v;
#endif
}

// warp_math::blend on every lane, rounded to T as it rounds (returned as doubles).
template <typename T>
PYADV_FORCEINLINE V8 blend(V8 ax, V8 ay, V8 a00, V8 a01, V8 a10, V8 a11) {
  const V8 r = (1 - ay) * ((1 - ax) * a00 + ax * a01) + ay * ((1 - ax) * a10 + ax * a11);
  if constexpr (std::is_same<T, float>::value) {
#if defined(__AVX512F__)
    return V8(_mm512_cvtps_pd(_mm512_cvtpd_ps(__m512d(r))));
#else
    typedef float F8 __attribute__((vector_size(kLanes * sizeof(float))));
    return __builtin_convertvector(__builtin_convertvector(r, F8), V8);
#endif
  } else {
    return r;
  }
}

// The bilinear samples of lanes [0, m) of plane p at fractions (ax, ay), rounded to T: the
// corners by row loads for a row run (which needs stride 1), else gathered at off (in units of
// `stride` elements between neighbouring pixels; out-lanes read offset 0, whose neighbours exist
// from 2 x 2 images on, so `big` says whether the image has them). Lanes from m on are 0 in a
// row run.
template <typename T>
PYADV_FORCEINLINE V8 sample(const T* p, int64_t W, int64_t stride, const int64_t* off, int m, bool row_run, bool big,
                            V8 ax, V8 ay) {
  if (row_run) {
    const T* p0 = p + off[0];
    return blend<T>(ax, ay, load(p0, m), load(p0 + 1, m), load(p0 + W, m), load(p0 + W + 1, m));
  }
  V8 a[4] = {};
  if (big) {
    alignas(64) double g[4][kLanes];
    for (int l = 0; l < kLanes; ++l) {
      const int64_t o = off[l] * stride;
      g[0][l] = double(p[o]);
      g[1][l] = double(p[o + stride]);
      g[2][l] = double(p[o + W * stride]);
      g[3][l] = double(p[o + W * stride + stride]);
    }
    std::memcpy(a, g, sizeof a);
  }
  return blend<T>(ax, ay, a[0], a[1], a[2], a[3]);
}

}  // namespace bilinear_lanes
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
