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

}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
