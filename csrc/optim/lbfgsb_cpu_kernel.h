// CPU kernel of the batched L-BFGS-B (lbfgsb_math.h), compiled once per instruction set: runs
// problems rows[k0..k1) of a batch whose arrays are x [B, n], lower / upper [B, n], ws [B, doubles]
// and iws [B, ints] (lbfgsb_layout.h).
#pragma once

#include <cstdint>

#include "lbfgsb_layout.h"

#define PYADV_DECLARE_LBFGSB_CPU_KERNELS(TAG)                                                                      \
  namespace pyadv {                                                                                                \
  namespace TAG {                                                                                                  \
  namespace lbfgsb_kernel {                                                                                        \
  /* A new solve of each row from x0 [len(rows), n] (row k of x0 for rows[k]). */                                  \
  void start_rows(const lbfgsb::Layout& L, const int64_t* rows, int64_t k0, int64_t k1, double* x,                 \
                  const double* lower, const double* upper, double* ws, int32_t* iws, const double* x0);            \
  /* f [len(rows)] and g [len(rows), n] at each row's x: each runs on to its next point or its end. */             \
  void step_rows(const lbfgsb::Layout& L, const lbfgsb::Settings& st, const int64_t* rows, int64_t k0, int64_t k1, \
                 double* x, const double* lower, const double* upper, double* ws, int32_t* iws, const double* f,    \
                 const double* g);                                                                                 \
  }                                                                                                                \
  }                                                                                                                \
  }
