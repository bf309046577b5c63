// CUDA implementation of the perspective warp (built only with a CUDA torch and nvcc).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "warp_op.h"

namespace pyadv {
namespace warp {
namespace {

at::Tensor warp_perspective_cuda(const at::Tensor& img, const at::Tensor& M, int64_t out_h, int64_t out_w) {
  const c10::cuda::CUDAGuard guard(img.device());
  return warp_gpu(img, M, out_h, out_w, c10::cuda::getCurrentCUDAStream(img.device().index()).stream(),
                  [](auto... a) { return ::pyadv::cuda::warp::warp(a...); });
}

}  // namespace

TORCH_LIBRARY_IMPL(pyadv, CUDA, m) { m.impl("warp_perspective", &warp_perspective_cuda); }

}  // namespace warp
}  // namespace pyadv
