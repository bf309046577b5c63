// Argument checks of the FI ops, shared by the CPU and CUDA implementations.
#pragma once

#include <ATen/core/Tensor.h>

namespace pyadv {
namespace fi {

struct FiInputs {
  at::Tensor jac, probs, target;  // contiguous; probs in jac's dtype; target int64
  int64_t B, Kc, K, P;
};

// Validates jac [B, Kc, P], probs [B, K], target [B] and the guards; k_offset is the first
// class of the chunk (0 and Kc == K for the full op).
FiInputs check_inputs(const at::Tensor& jac, const at::Tensor& probs, const at::Tensor& target, int64_t k_offset,
                      bool full, double eps, double rank_tol);
void check_rank_tol(double rank_tol);
void check_accumulators(const FiInputs& in, const at::Tensor& num, const at::Tensor& den);
void check_finish_inputs(const at::Tensor& num, const at::Tensor& den);
// Grouped FI: jac [B, Kc, C, HW] (C <= 4), num [B, C, HW], den [B, C(C+1)/2, HW].
struct GroupInputs {
  FiInputs base;  // base.jac is [B, Kc, C * HW]
  int64_t C, HW;
};
GroupInputs check_group_inputs(const at::Tensor& jac, const at::Tensor& probs, const at::Tensor& target,
                               int64_t k_offset, double eps, const at::Tensor& num, const at::Tensor& den);
void check_group_finish_inputs(const at::Tensor& num, const at::Tensor& den);

// Raises the error for a J or accumulator that produced a non-finite value in image b.
[[noreturn]] void fail_non_finite(const char* what, int64_t b);

}  // namespace fi
}  // namespace pyadv
