// CPU kernel of the ECC inner step (ecc_math.h), compiled once per instruction set.
#pragma once

#include <cstdint>

#define PYADV_DECLARE_ECC_CPU_KERNELS(TAG)                                                                         \
  namespace pyadv {                                                                                                \
  namespace TAG {                                                                                                  \
  namespace ecc {                                                                                                  \
  /* Adds to out [n_stats(motion)] the sums of template rows [y0, y1) of one pair: img [3, H, W], tmpl [H, W]. */  \
  template <typename T>                                                                                            \
  void moments_rows(const T* img, const T* tmpl, int64_t H, int64_t W, int64_t y0, int64_t y1, const double* M,    \
                    int motion, int64_t margin, double* out);                                                      \
  }                                                                                                                \
  }                                                                                                                \
  }
