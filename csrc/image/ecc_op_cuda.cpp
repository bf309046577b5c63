// CUDA implementations of the ECC ops, the inner step and the whole alignment (built only with a
// CUDA torch and nvcc).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "ecc_op.h"

namespace pyadv {
namespace ecc {
namespace {

at::Tensor ecc_moments_cuda(const at::Tensor& img, const at::Tensor& tmpl, const at::Tensor& M, int64_t motion,
                            int64_t margin, const std::optional<at::Tensor>& ids) {
  const c10::cuda::CUDAGuard guard(img.device());
  return ecc_moments_gpu(img, tmpl, M, motion, margin, ids,
                         c10::cuda::getCurrentCUDAStream(img.device().index()).stream(),
                         [](auto... a) { return ::pyadv::cuda::ecc::moments(a...); });
}

SolveOutputs ecc_solve_cuda(const at::Tensor& img, const at::Tensor& tmpl, const at::Tensor& M, int64_t motion,
                            int64_t margin, int64_t iters, double eps, bool safeguards, bool from_identity,
                            bool coarse) {
  const c10::cuda::CUDAGuard guard(img.device());
  return ecc_solve_gpu(img, tmpl, M, motion, margin, iters, eps, safeguards, from_identity, coarse,
                       c10::cuda::getCurrentCUDAStream(img.device().index()).stream(),
                       [](auto... a) { return ::pyadv::cuda::ecc::solve(a...); });
}

}  // namespace

TORCH_LIBRARY_IMPL(pyadv, CUDA, m) {
  m.impl("ecc_moments", &ecc_moments_cuda);
  m.impl("ecc_solve", &ecc_solve_cuda);
}

}  // namespace ecc
}  // namespace pyadv
