// Checks of the incremental conv stage op, and its GPU-style glue for the CUDA build and the emulator.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "sparse_conv_gpu.h"

namespace pyadv {
namespace sparse_conv {

struct StageArgs {
  at::Tensor delta, slots, outpos, base, weight;  // contiguous
  SparseConvGeometry g;
  int64_t G, N, A, Q;
};

StageArgs check_stage(const at::Tensor& delta, const at::Tensor& slots, const at::Tensor& outpos,
                      const at::Tensor& base, const at::Tensor& weight, int64_t in_w, int64_t pad_h, int64_t pad_w,
                      int64_t pool, bool relu);

// Launch(T*...) forwards to pyadv::cuda::sparse_conv::stage or pyadv::emulated::sparse_conv::stage.
template <typename Launch>
at::Tensor stage_gpu(const at::Tensor& delta, const at::Tensor& slots, const at::Tensor& outpos, const at::Tensor& base,
                     const at::Tensor& weight, int64_t in_w, int64_t pad_h, int64_t pad_w, int64_t pool, bool relu,
                     void* stream, Launch launch) {
  const StageArgs a = check_stage(delta, slots, outpos, base, weight, in_w, pad_h, pad_w, pool, relu);
  at::Tensor out = at::empty({a.G, a.N, a.Q, a.g.Cout}, a.delta.options());
  AT_DISPATCH_FLOATING_TYPES(a.delta.scalar_type(), "sparse_conv_stage_gpu", [&] {
    const int err = launch(a.g, a.slots.const_data_ptr<int32_t>(), a.outpos.const_data_ptr<int32_t>(),
                           a.delta.const_data_ptr<scalar_t>(), a.base.const_data_ptr<scalar_t>(),
                           a.weight.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), a.G, a.N, a.A, a.Q,
                           stream);
    TORCH_CHECK(err == 0, "sparse_conv_stage failed to launch (error ", err, ")");
  });
  return out;
}

}  // namespace sparse_conv
}  // namespace pyadv
