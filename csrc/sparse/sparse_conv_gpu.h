// Launcher of the incremental conv stage CUDA kernel (sparse_conv_cuda.cu): G groups of N
// candidates; slots [G, Hin * Win], outpos [G, Q], delta [G, N, A, Cin], base [G, Hc * Wc, Cout],
// weight [kh, kw, Cin, Cout] -> out [G, N, Q, Cout].
#pragma once

#include <cstdint>

#include "sparse_conv_math.h"

#define PYADV_DECLARE_SPARSE_CONV_GPU_LAUNCHERS(NS)                                                               \
  namespace pyadv {                                                                                               \
  namespace NS {                                                                                                  \
  namespace sparse_conv {                                                                                         \
  template <typename T>                                                                                           \
  int stage(const ::pyadv::SparseConvGeometry& g, const int32_t* slots, const int32_t* outpos, const T* delta,   \
            const T* base, const T* weight, T* out, int64_t G, int64_t N, int64_t A, int64_t Q, void* stream);    \
  }                                                                                                               \
  }                                                                                                               \
  }

PYADV_DECLARE_SPARSE_CONV_GPU_LAUNCHERS(cuda)
PYADV_DECLARE_SPARSE_CONV_GPU_LAUNCHERS(emulated)
