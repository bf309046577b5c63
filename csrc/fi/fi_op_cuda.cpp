// CUDA implementations of the FI ops (built only when torch has CUDA and nvcc exists):
// the shared checks, then the raw-pointer launchers of fi_cuda.cu on torch's current stream.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <climits>

#include "../common/value_checks.h"
#include "fi_gpu.h"
#include "fi_group_gpu.h"
#include "fi_op.h"

namespace pyadv {
namespace fi {
namespace {

void check_launch(int err, const char* what) {
  TORCH_CHECK(err == 0, what, " failed to launch: ", cudaGetErrorString(static_cast<cudaError_t>(err)));
}

// Reading the flag synchronises with the stream: the price of a clear error for NaN input.
void raise_if_bad(const at::Tensor& bad_image, const char* what) {
  if (!check_values_of(bad_image)) return;  // NaN in, NaN out, unless set_check_inputs(True)
  const int b = bad_image.item<int>();
  if (b != INT_MAX) fail_non_finite(what, b);
}

at::Tensor pixel_fi_cuda(const at::Tensor& jac_in, const at::Tensor& probs_in, const at::Tensor& target_in, double eps,
                         double rank_tol) {
  const FiInputs in = check_inputs(jac_in, probs_in, target_in, 0, true, eps, rank_tol);
  const c10::cuda::CUDAGuard guard(in.jac.device());
  at::Tensor out = at::empty({in.B, in.P}, in.jac.options());
  at::Tensor bad = at::full({1}, INT_MAX, in.jac.options().dtype(at::kInt));
  void* stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(in.jac.scalar_type(), "pixel_fi_cuda", [&] {
    check_launch(cuda::fi::pixel_fi<scalar_t>(in.jac.const_data_ptr<scalar_t>(), in.probs.const_data_ptr<scalar_t>(),
                                              in.target.const_data_ptr<int64_t>(), out.mutable_data_ptr<scalar_t>(),
                                              bad.mutable_data_ptr<int>(), in.B, in.K, in.P, scalar_t(eps),
                                              scalar_t(rank_tol), stream),
                 "pixel_fi");
  });
  raise_if_bad(bad, "jac");
  return out;
}

void fi_accumulate_cuda(const at::Tensor& jac_in, const at::Tensor& probs_in, const at::Tensor& target_in,
                        int64_t k_offset, double eps, const at::Tensor& num, const at::Tensor& den) {
  const FiInputs in = check_inputs(jac_in, probs_in, target_in, k_offset, false, eps, 0.0);
  check_accumulators(in, num, den);
  if (in.Kc == 0) return;
  const c10::cuda::CUDAGuard guard(in.jac.device());
  void* stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(in.jac.scalar_type(), "fi_accumulate_cuda", [&] {
    check_launch(cuda::fi::accumulate<scalar_t>(in.jac.const_data_ptr<scalar_t>(), in.probs.const_data_ptr<scalar_t>(),
                                                in.target.const_data_ptr<int64_t>(), num.mutable_data_ptr<scalar_t>(),
                                                den.mutable_data_ptr<scalar_t>(), in.B, in.Kc, in.K, k_offset, in.P,
                                                scalar_t(eps), stream),
                 "fi_accumulate");
  });
}

at::Tensor fi_finish_cuda(const at::Tensor& num_in, const at::Tensor& den_in, double rank_tol) {
  check_finish_inputs(num_in, den_in);
  check_rank_tol(rank_tol);
  const at::Tensor num = num_in.contiguous(), den = den_in.contiguous();
  const c10::cuda::CUDAGuard guard(num.device());
  at::Tensor out = at::empty_like(num);
  at::Tensor bad = at::full({1}, INT_MAX, num.options().dtype(at::kInt));
  void* stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(num.scalar_type(), "fi_finish_cuda", [&] {
    check_launch(cuda::fi::finish<scalar_t>(num.const_data_ptr<scalar_t>(), den.const_data_ptr<scalar_t>(),
                                            out.mutable_data_ptr<scalar_t>(), bad.mutable_data_ptr<int>(),
                                            num.size(0), num.size(1), scalar_t(rank_tol), stream),
                 "fi_finish");
  });
  raise_if_bad(bad, "the accumulated jac");
  return out;
}

void fi_group_accumulate_cuda(const at::Tensor& jac, const at::Tensor& probs, const at::Tensor& target,
                              int64_t k_offset, double eps, const at::Tensor& num, const at::Tensor& den) {
  const GroupInputs in = check_group_inputs(jac, probs, target, k_offset, eps, num, den);
  const FiInputs& b = in.base;
  const c10::cuda::CUDAGuard guard(b.jac.device());
  void* stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(b.jac.scalar_type(), "fi_group_accumulate_cuda", [&] {
    check_launch(cuda::fi::group_accumulate<scalar_t>(
                     b.jac.const_data_ptr<scalar_t>(), b.probs.const_data_ptr<scalar_t>(),
                     b.target.const_data_ptr<int64_t>(), num.mutable_data_ptr<scalar_t>(),
                     den.mutable_data_ptr<scalar_t>(), b.B, b.Kc, b.K, k_offset, in.C, in.HW, scalar_t(eps), stream),
                 "fi_group_accumulate");
  });
}

at::Tensor fi_group_finish_cuda(const at::Tensor& num_in, const at::Tensor& den_in, double rank_tol) {
  check_group_finish_inputs(num_in, den_in);
  check_rank_tol(rank_tol);
  const at::Tensor num = num_in.contiguous(), den = den_in.contiguous();
  const c10::cuda::CUDAGuard guard(num.device());
  at::Tensor out = at::empty({num.size(0), num.size(2)}, num.options());
  at::Tensor bad = at::full({1}, INT_MAX, num.options().dtype(at::kInt));
  void* stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(num.scalar_type(), "fi_group_finish_cuda", [&] {
    check_launch(cuda::fi::group_finish<scalar_t>(num.const_data_ptr<scalar_t>(), den.const_data_ptr<scalar_t>(),
                                                  out.mutable_data_ptr<scalar_t>(), bad.mutable_data_ptr<int>(),
                                                  num.size(0), num.size(1), num.size(2), scalar_t(rank_tol), stream),
                 "fi_group_finish");
  });
  raise_if_bad(bad, "the accumulated jac");
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyadv, CUDA, m) {
  m.impl("pixel_fi", &pixel_fi_cuda);
  m.impl("fi_accumulate", &fi_accumulate_cuda);
  m.impl("fi_finish", &fi_finish_cuda);
  m.impl("fi_group_accumulate", &fi_group_accumulate_cuda);
  m.impl("fi_group_finish", &fi_group_finish_cuda);
}

}  // namespace fi
}  // namespace pyadv
