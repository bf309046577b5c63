// Launchers of the swarm CUDA kernels (swarm_cuda.cu); layouts as swarm_cpu_kernel.h.
// Built by nvcc into pyadv::cuda and by g++ under the emulator into pyadv::emulated.
#pragma once

#include <cstdint>

#define PYADV_DECLARE_SWARM_GPU_LAUNCHERS(NS)                                                                      \
  namespace pyadv {                                                                                                \
  namespace NS {                                                                                                   \
  namespace swarm {                                                                                                \
  template <typename T>                                                                                            \
  int pso_step(T* pos, T* vel, const T* pbest, const T* gbest, const T* lo, const T* hi, const int64_t* ids,       \
               int64_t B, int64_t N, int64_t D, T w, T c1, T c2, uint64_t seed, uint32_t step, int boundary,       \
               T vmax_frac, void* stream);                                                                         \
  template <typename T>                                                                                            \
  int swarm_best(const T* pos, const T* fit, T* pbest, T* pbest_fit, T* gbest, T* gbest_fit, int64_t B, int64_t N, \
                 int64_t D, void* stream);                                                                         \
  template <typename T>                                                                                            \
  int de_trial(const T* pop, const int64_t* best, const T* lo, const T* hi, const uint8_t* int_mask,               \
               const int64_t* ids, T* trial, int64_t B, int64_t N, int64_t D, T F, T CR, int strategy, int bounds, \
               uint64_t seed, uint32_t step, void* stream);                                                        \
  template <typename T>                                                                                            \
  int de_select(const T* trial, const T* trial_fit, T* pop, T* fit, int64_t B, int64_t N, int64_t D,               \
                void* stream);                                                                                     \
  template <typename T>                                                                                            \
  int sparse_perturb(const T* base, const int64_t* idx, const T* values, T* out, int64_t B, int64_t N, int64_t m,  \
                     int64_t P, int64_t n0, int64_t n1, void* stream);                                             \
  template <typename T>                                                                                            \
  int pixel_replace(const T* base, const T* cand, T* out, int64_t B, int64_t N, int64_t m, int64_t C, int64_t H,   \
                    int64_t W, int64_t n0, int64_t n1, void* stream);                                              \
  }                                                                                                                \
  }                                                                                                                \
  }

PYADV_DECLARE_SWARM_GPU_LAUNCHERS(cuda)
PYADV_DECLARE_SWARM_GPU_LAUNCHERS(emulated)
