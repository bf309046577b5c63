// CUDA implementations of the SSIM ops (built only with a CUDA torch and nvcc).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "ssim_gpu_ops.h"

namespace pyadv {
namespace ssim {
namespace {

PYADV_SSIM_GPU_POLICY(CudaSsim, ::pyadv::cuda);

std::tuple<at::Tensor, at::Tensor, at::Tensor> ssim_forward_cuda(const at::Tensor& x, const at::Tensor& y,
                                                                 int64_t win, double sigma, double K1, double K2,
                                                                 double data_range, bool want_map,
                                                                 bool want_partials) {
  const c10::cuda::CUDAGuard guard(x.device());
  return ssim_forward_gpu<CudaSsim>(x, y, win, sigma, K1, K2, data_range, want_map, want_partials,
                                    c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
}

std::tuple<at::Tensor, at::Tensor> ssim_backward_cuda(const at::Tensor& grad, const at::Tensor& x,
                                                      const at::Tensor& y, int64_t win, double sigma, double K1,
                                                      double K2, double data_range) {
  const c10::cuda::CUDAGuard guard(x.device());
  return ssim_backward_gpu<CudaSsim>(grad, x, y, win, sigma, K1, K2, data_range,
                                     c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
}

}  // namespace

TORCH_LIBRARY_IMPL(pyadv, CUDA, m) {
  m.impl("ssim_forward", &ssim_forward_cuda);
  m.impl("ssim_backward", &ssim_backward_cuda);
}

}  // namespace ssim
}  // namespace pyadv
