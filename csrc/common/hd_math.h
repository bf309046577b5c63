// Scalar helpers callable from host and device code with one spelling.
#pragma once

#include <cmath>

#include "macros.h"

namespace pyadv {
inline namespace PYADV_ISA_TAG {

template <typename T>
PYADV_HD PYADV_FORCEINLINE T hd_sqrt(T x) {
#if defined(__CUDA_ARCH__)
  return ::sqrt(x);  // CUDA overloads sqrt for float and double
#else
  return std::sqrt(x);
#endif
}

// fabs, asin, sin and cos of a double, the same way (the ECC solver's warp update).
#if defined(__CUDA_ARCH__)
#define PYADV_HD_UNARY(NAME, FN) \
  PYADV_HD PYADV_FORCEINLINE double NAME(double x) { return ::FN(x); }
#else
#define PYADV_HD_UNARY(NAME, FN) \
  PYADV_HD PYADV_FORCEINLINE double NAME(double x) { return std::FN(x); }
#endif
PYADV_HD_UNARY(hd_fabs, fabs)
PYADV_HD_UNARY(hd_asin, asin)
PYADV_HD_UNARY(hd_sin, sin)
PYADV_HD_UNARY(hd_cos, cos)
#undef PYADV_HD_UNARY

}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
