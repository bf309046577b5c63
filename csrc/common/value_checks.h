// Checks of input values (finite, in range) read the values, which for CUDA tensors means a copy
// to the host and a stream synchronisation on every op call (and no CUDA-graph capture). They
// always run on CPU tensors (the emulator's included); on CUDA tensors only when switched on,
// process-wide: pyadv.ops.set_check_inputs(True). Shapes, dtypes and devices are checked
// always (host metadata, no synchronisation).
#pragma once

#include <ATen/ATen.h>

#include <atomic>

namespace pyadv {

inline std::atomic<bool>& cuda_value_checks() {
  static std::atomic<bool> on{false};
  return on;
}

// Whether the value checks of an op whose tensors are on t's device run.
inline bool check_values_of(const at::Tensor& t) {
  return !t.is_cuda() || cuda_value_checks().load(std::memory_order_relaxed);
}

}  // namespace pyadv
