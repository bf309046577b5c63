// CPU kernel of the incremental conv stage (sparse_conv_math.h), compiled once per instruction set.
#pragma once

#include <cstdint>

#include "sparse_conv_math.h"

#define PYADV_DECLARE_SPARSE_CONV_CPU_KERNELS(TAG)                                                                 \
  namespace pyadv {                                                                                                \
  namespace TAG {                                                                                                  \
  namespace sparse_conv {                                                                                          \
  /* Candidates n0..n1-1 of one group: delta [N, A, Cin], out [N, Q, Cout] (the group's rows), */                 \
  /* outpos [Q] pooled positions (-1: a padding row, written as 0). */                                            \
  template <typename T>                                                                                            \
  void stage_rows(const ::pyadv::SparseConvGeometry& g, const int32_t* slots,                                 \
                  const int32_t* outpos, int64_t Q, const T* delta, int64_t A, const T* base, const T* weight,    \
                  T* out, int64_t n0, int64_t n1);                                                                 \
  }                                                                                                                \
  }                                                                                                                \
  }
