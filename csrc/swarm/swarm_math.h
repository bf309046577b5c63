// The math of the swarm kernels (paper 000 eq. (2)-(4) for PSO; Storn and Price's rand/1 and
// best/1 differential evolution with binomial crossover, as used by Su et al.'s one-pixel
// attack), shared by the CPU kernels, the CUDA kernels and the emulator.
//
// Every random number comes from Philox keyed by (seed, step, element, stream), and the
// files that include this header are compiled without floating-point contraction (no FMA),
// so the CPU, the emulator, CUDA and the numpy reference produce bit-identical swarms.
#pragma once

#include <cstdint>

#include "../common/philox.h"

namespace pyadv {
inline namespace PYADV_ISA_TAG {
namespace swarm {

enum Boundary : int { kClip = 0, kReflect = 1 };
enum Strategy : int { kRand1 = 0, kBest1 = 1 };
enum DeBounds : int { kDeClip = 0, kDeResample = 1 };
enum Stream : uint32_t { kPsoStream = 0, kDeIndexStream = 1, kDeCrossStream = 2, kDeBoundStream = 3 };

// One coordinate of one particle:
//   v <- w v + c1 r1 (pbest - x) + c2 r2 (gbest - x),  optionally |v| <= vmax_frac (hi - lo),
//   x <- x + v, then the boundary: clip (x onto the bound, that velocity component zeroed) or
//   reflect (mirrored back inside, velocity reversed; clipped if the overshoot exceeds the range).
// A degenerate coordinate (lo = hi) is pinned: x = lo, v = 0, under either rule.
template <typename T>
PYADV_HD inline void pso_coord(T& x, T& v, T pb, T gb, T lo, T hi, T w, T c1, T c2, T r1, T r2, int boundary,
                               T vmax_frac) {
  // Selects rather than branches, so the CPU loop over coordinates vectorises.
  T nv = w * v;
  nv = nv + c1 * r1 * (pb - x);
  nv = nv + c2 * r2 * (gb - x);
  const T vm = vmax_frac * (hi - lo);
  const bool clamp = vmax_frac > T(0);
  nv = clamp && nv > vm ? vm : (clamp && nv < -vm ? -vm : nv);
  const T nx = x + nv;
  const bool below = nx < lo, above = nx > hi, out = below || above;
  T rx;
  if (boundary == kClip) {
    rx = below ? lo : (above ? hi : nx);
    nv = out ? T(0) : nv;
  } else {
    rx = below ? lo + (lo - nx) : (above ? hi - (nx - hi) : nx);
    rx = rx < lo ? lo : (rx > hi ? hi : rx);
    nv = out ? -nv : nv;
  }
  const bool pinned = !(hi > lo);
  x = pinned ? lo : rx;
  v = pinned ? T(0) : nv;
}

// The two uniforms (r1, r2) of PSO stream element e. float: one Philox draw feeds two
// consecutive elements (words 0-1 for the even one, 2-3 for the odd one), halving the cost of
// the generator, which dominates the update; double: one draw per element (53-bit uniforms
// take two words each).
template <typename T>
PYADV_HD inline void pso_uniforms(uint64_t seed, uint32_t step, uint64_t e, T* r1, T* r2);
template <>
PYADV_HD inline void pso_uniforms<float>(uint64_t seed, uint32_t step, uint64_t e, float* r1, float* r2) {
  const philox::U4 u = philox::draw(seed, step, e >> 1, kPsoStream);
  const bool odd = e & 1u;
  *r1 = philox::to_unit_float(odd ? u.v[2] : u.v[0]);
  *r2 = philox::to_unit_float(odd ? u.v[3] : u.v[1]);
}
template <>
PYADV_HD inline void pso_uniforms<double>(uint64_t seed, uint32_t step, uint64_t e, double* r1, double* r2) {
  const philox::U4 u = philox::draw(seed, step, e, kPsoStream);
  *r1 = philox::to_unit_double(u.v[0], u.v[1]);
  *r2 = philox::to_unit_double(u.v[2], u.v[3]);
}

// NaN fitness counts as +inf: it never enters a best.
template <typename T>
PYADV_HD inline T sane_fitness(T f) {
  return f != f ? T(1) / T(0) : f;
}

// An index uniform over [0, n) minus the sorted set excl[0..k) (n > k), from one word.
PYADV_HD inline uint32_t pick_excluding(uint32_t word, uint32_t n, const uint32_t* excl_sorted, int k) {
  uint32_t r = philox::below(word, n - static_cast<uint32_t>(k));
  for (int j = 0; j < k; ++j)
    if (r >= excl_sorted[j]) ++r;
  return r;
}

PYADV_HD inline void insert_sorted(uint32_t* a, int k, uint32_t v) {
  int j = k;
  while (j > 0 && a[j - 1] > v) {
    a[j] = a[j - 1];
    --j;
  }
  a[j] = v;
}

struct DeIndices {
  uint32_t r1, r2, r3, jrand;
};

// The distinct partners r1, r2 (, r3) of member i (all != i) and the coordinate jrand that
// always crosses over, for one member of one problem.
PYADV_HD inline DeIndices de_indices(uint64_t seed, uint32_t step, uint64_t member, uint32_t i, uint32_t n,
                                     uint32_t d) {
  const philox::U4 u = philox::draw(seed, step, member, kDeIndexStream);
  uint32_t excl[4] = {i, 0, 0, 0};
  DeIndices r;
  r.r1 = pick_excluding(u.v[0], n, excl, 1);
  insert_sorted(excl, 1, r.r1);
  r.r2 = pick_excluding(u.v[1], n, excl, 2);
  insert_sorted(excl, 2, r.r2);
  r.r3 = n > 3 ? pick_excluding(u.v[2], n, excl, 3) : 0;
  r.jrand = philox::below(u.v[3], d);
  return r;
}

// The crossover uniform of coordinate `elem` (= member * D + d).
template <typename T>
PYADV_HD inline T de_cross_uniform(uint64_t seed, uint32_t step, uint64_t elem) {
  const philox::U4 u = philox::draw(seed, step, elem, kDeCrossStream);
  T a, b;
  philox::Uniform2<T>::get(u, &a, &b);
  return a;
}

template <typename T>
PYADV_HD inline T round_half_up(T x) {
  const T f = static_cast<T>(static_cast<int64_t>(x + T(0.5)));
  return f > x + T(0.5) ? f - T(1) : f;  // floor(x + 0.5) for negative values too
}

// A trial coordinate t made valid: rounded if it is an integer coordinate; if it left [lo, hi],
// clipped onto the bound (kDeClip) or redrawn uniformly inside (kDeResample, scipy's choice,
// which keeps the population from piling up on the bounds).
template <typename T>
PYADV_HD inline T de_bound(T t, T lo, T hi, bool integer, int mode, uint64_t seed, uint32_t step, uint64_t elem) {
  if (integer) t = round_half_up(t);
  if (mode == kDeResample && (t < lo || t > hi)) {
    const philox::U4 u = philox::draw(seed, step, elem, kDeBoundStream);
    T a, b;
    philox::Uniform2<T>::get(u, &a, &b);
    t = lo + a * (hi - lo);
    if (integer) t = round_half_up(t);
  }
  return t < lo ? lo : (t > hi ? hi : t);
}

}  // namespace swarm
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
