// CPU swarm kernels over raw pointers, compiled once per instruction set (like
// fi_cpu_kernel.h) and without floating-point contraction. `ids` [B] (nullable: 0..B-1) names
// each problem in the random streams, so a problem's draws do not depend on which other
// problems share its batch (chunking and compaction leave trajectories unchanged). Each processes a range of rows:
// (problem, member) pairs for the PSO/DE updates, problems for swarm_best, output images for
// the renderers. Layouts: pos/vel/pbest/pop/trial [B, N, D]; gbest/lo/hi/int_mask [B, D];
// fitness [B, N]; gbest_fit [B].
#pragma once

#include <cstdint>

#define PYADV_DECLARE_SWARM_CPU_KERNELS(TAG)                                                                       \
  namespace pyadv {                                                                                                \
  namespace TAG {                                                                                                  \
  namespace swarm {                                                                                                \
  template <typename T>                                                                                            \
  void pso_step_rows(T* pos, T* vel, const T* pbest, const T* gbest, const T* lo, const T* hi, const int64_t* ids, \
                     int64_t N, int64_t D, T w, T c1, T c2, uint64_t seed, uint32_t step, int boundary,            \
                     T vmax_frac, int64_t begin, int64_t end);                                                     \
  template <typename T>                                                                                            \
  void swarm_best_problems(const T* pos, const T* fit, T* pbest, T* pbest_fit, T* gbest, T* gbest_fit,             \
                           int64_t N, int64_t D, int64_t begin, int64_t end);                                      \
  template <typename T>                                                                                            \
  void de_trial_rows(const T* pop, const int64_t* best, const T* lo, const T* hi, const uint8_t* int_mask,         \
                     const int64_t* ids, T* trial, int64_t N, int64_t D, T F, T CR, int strategy, int bounds,      \
                     uint64_t seed, uint32_t step, int64_t begin, int64_t end);                                    \
  template <typename T>                                                                                            \
  void de_select_rows(const T* trial, const T* trial_fit, T* pop, T* fit, int64_t D, int64_t begin, int64_t end);  \
  template <typename T>                                                                                            \
  void sparse_perturb_rows(const T* base, const int64_t* idx, const T* values, T* out, int64_t N, int64_t m,       \
                           int64_t P, int64_t n0, int64_t n1, int64_t begin, int64_t end);                         \
  template <typename T>                                                                                            \
  void pixel_replace_rows(const T* base, const T* cand, T* out, int64_t N, int64_t m, int64_t C, int64_t H,        \
                          int64_t W, int64_t n0, int64_t n1, int64_t begin, int64_t end);                          \
  }                                                                                                                \
  }                                                                                                                \
  }
