// CPU kernel of the perspective warp (warp_math.h), compiled once per instruction set.
#pragma once

#include <cstdint>

#define PYADV_DECLARE_WARP_CPU_KERNELS(TAG)                                                                        \
  namespace pyadv {                                                                                                \
  namespace TAG {                                                                                                  \
  namespace warp {                                                                                                 \
  /* Output row y [C, Wo] of one image: img [C, H, W], M its 3 x 3 inverse map, out [C, Ho, Wo]. */              \
  template <typename T>                                                                                            \
  void warp_row(const T* img, int64_t C, int64_t H, int64_t W, const double* M, T* out, int64_t Ho, int64_t Wo,    \
                int64_t y);                                                                                        \
  }                                                                                                                \
  }                                                                                                                \
  }
