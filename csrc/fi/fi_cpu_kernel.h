// CPU FI kernels over raw pointers. fi_cpu_kernel.cpp is compiled once per instruction set
// (baseline, AVX2, AVX-512), each copy in its own namespace pyadv::<isa tag>::fi; the op
// picks one at run time (common/cpu_isa.h). No torch header: parallelism is the caller's,
// which hands each thread a range of work items.
//
// A work item is one image b and one tile of kTile pixels: item = b * tiles(P) + tile.
#pragma once

#include <cstdint>

namespace pyadv {
namespace fi_cpu {
constexpr int64_t kTile = 1024;
inline int64_t tiles(int64_t P) { return (P + kTile - 1) / kTile; }
}  // namespace fi_cpu
}  // namespace pyadv

// Declares the kernels of one instruction-set variant.
#define PYADV_DECLARE_FI_CPU_KERNELS(TAG)                                                                          \
  namespace pyadv {                                                                                                \
  namespace TAG {                                                                                                  \
  namespace fi {                                                                                                   \
  /* FI of items [begin, end) in one pass over J; returns the first image whose J or P gave a non-finite value, \
     or -1. */                                                                                                     \
  template <typename T>                                                                                            \
  int64_t pixel_fi_items(const T* jac, const T* probs, const int64_t* target, T* out, int64_t K, int64_t P, T eps, \
                         T rank_tol, int64_t begin, int64_t end);                                                  \
  /* Adds classes [k0, k0 + Kc) of a chunk jac [B, Kc, P] to the accumulators num (scaled target gradient) and   \
     den (the metric G), both [B, P]. */                                                                           \
  template <typename T>                                                                                            \
  void accumulate_items(const T* jac, const T* probs, const int64_t* target, T* num, T* den, int64_t Kc,          \
                        int64_t K, int64_t k0, int64_t P, T eps, int64_t begin, int64_t end);                      \
  /* FI from finished accumulators, elements [begin, end) of B*P; returns the first bad image or -1. */           \
  template <typename T>                                                                                            \
  int64_t finish_elems(const T* num, const T* den, T* out, int64_t P, T rank_tol, int64_t begin, int64_t end);     \
  }                                                                                                                \
  }                                                                                                                \
  }
