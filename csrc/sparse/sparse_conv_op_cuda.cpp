// CUDA implementation of the incremental conv stage (built only with a CUDA torch and nvcc).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "sparse_conv_op.h"

namespace pyadv {
namespace sparse_conv {
namespace {

at::Tensor sparse_conv_stage_cuda(const at::Tensor& delta, const at::Tensor& slots, const at::Tensor& outpos,
                                  const at::Tensor& base, const at::Tensor& weight, int64_t in_w, int64_t pad_h,
                                  int64_t pad_w, int64_t pool, bool relu) {
  const c10::cuda::CUDAGuard guard(delta.device());
  return stage_gpu(delta, slots, outpos, base, weight, in_w, pad_h, pad_w, pool, relu,
                   c10::cuda::getCurrentCUDAStream(delta.device().index()).stream(),
                   [](auto... a) { return ::pyadv::cuda::sparse_conv::stage(a...); });
}

}  // namespace

TORCH_LIBRARY_IMPL(pyadv, CUDA, m) { m.impl("sparse_conv_stage", &sparse_conv_stage_cuda); }

}  // namespace sparse_conv
}  // namespace pyadv
