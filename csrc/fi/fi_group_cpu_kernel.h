// CPU kernels of grouped FI (fi_group_math.h) over raw pointers, compiled once per
// instruction set like fi_cpu_kernel.h. Layout: jac [B, Kc, C, HW]; num [B, C, HW];
// den [B, C(C+1)/2, HW] (the packed metric, planar so the accumulation vectorises over HW).
// Work items for the accumulation are (image, tile of HW) pairs as in fi_cpu_kernel.h.
#pragma once

#include <cstdint>

#include "fi_cpu_kernel.h"

#define PYADV_DECLARE_FI_GROUP_CPU_KERNELS(TAG)                                                                   \
  namespace pyadv {                                                                                               \
  namespace TAG {                                                                                                 \
  namespace fi {                                                                                                  \
  template <typename T>                                                                                           \
  void group_accumulate_items(const T* jac, const T* probs, const int64_t* target, T* num, T* den, int64_t Kc,   \
                              int64_t K, int64_t k0, int64_t C, int64_t HW, T eps, int64_t begin, int64_t end);   \
  /* FI of elements [begin, end) of B*HW; returns the first image with a non-finite value, or -1. */            \
  template <typename T>                                                                                           \
  int64_t group_finish_elems(const T* num, const T* den, T* out, int64_t C, int64_t HW, T rank_tol,              \
                             int64_t begin, int64_t end);                                                         \
  }                                                                                                               \
  }                                                                                                               \
  }
