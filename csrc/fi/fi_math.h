// Per-pixel First-order Influence (paper 000, eq. (1) with omega = delta x_i), the math core
// shared by the CPU kernel, the CUDA kernel and the emulator.
//
// For one image and one pixel i, with J_k the gradient of log P_k with respect to x_i:
//   G   = sum_k P_k J_k^2                      (a 1x1 Fisher metric)
//   FI  = J_t^2 / G,   and 0 where G = 0.
// The authors' code (shu-hai/SA_DNN) works with probability gradients and two guards:
// with eps > 0 the scaled gradients become P_k J_k / (sqrt(P_k) + eps) in G and
// P_t J_t / (P_t + eps) in the numerator; with rank_tol > 0, FI is 0 where sqrt(G) <=
// rank_tol, their singular-value cut-off. eps = rank_tol = 0 is the exact formula.
//
// The reduction over classes is split in three steps so that a caller can stream classes in
// chunks: class_weight / target_scale per class, accumulate, then finish.
#pragma once

#include "../common/hd_math.h"

namespace pyadv {
inline namespace PYADV_ISA_TAG {
namespace fi {

// Weight of class k's squared gradient in G.
template <typename T>
PYADV_HD inline T class_weight(T p, T eps) {
  if (eps == T(0)) return p;
  const T s = hd_sqrt(p) + eps;
  return (p * p) / (s * s);
}

// Factor applied to the target class's gradient in the numerator.
template <typename T>
PYADV_HD inline T target_scale(T p_t, T eps) {
  return eps == T(0) ? T(1) : p_t / (p_t + eps);
}

// FI from the scaled target gradient g and the metric G of one pixel. The cut-off
// sqrt(G) <= rank_tol is tested as G <= rank_tol^2 (G >= 0): no square root per pixel.
template <typename T>
PYADV_HD inline T finish(T g, T G, T rank_tol_sq) {
  return G > rank_tol_sq ? (g * g) / G : T(0);
}

// 1 when g or G is NaN or infinite (x * 0 is 0 only for finite x), else 0. An int, not a
// bool, and branch-free, so the CPU loop that ORs it over a tile still vectorises.
template <typename T>
PYADV_HD inline int non_finite(T g, T G) {
  return static_cast<int>(!(g * T(0) == T(0))) | static_cast<int>(!(G * T(0) == T(0)));
}

}  // namespace fi
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
