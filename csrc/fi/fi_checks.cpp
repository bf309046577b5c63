#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>

#include "../common/value_checks.h"
#include "fi_op.h"

namespace pyadv {
namespace fi {

namespace {

void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), name, " must be a floating-point tensor, got ",
                   t.scalar_type());
}

void check_guard(double v, const char* name) {
  TORCH_CHECK_VALUE(std::isfinite(v) && v >= 0, name, " must be a finite number >= 0, got ", v);
}

[[noreturn]] void fail_probs(const FiInputs& in, int64_t b) {
  TORCH_CHECK_VALUE(false, "probs must be finite and in [0, 1]; image ", b, " has ", in.probs[b]);
  __builtin_unreachable();
}

[[noreturn]] void fail_target(const FiInputs& in, int64_t b) {
  TORCH_CHECK_VALUE(false, "target must hold class indices in [0, ", in.K, "); image ", b, " has ",
                    in.target[b].item<int64_t>());
  __builtin_unreachable();
}

// probs in [0, 1] (NaN fails) and target in [0, K). On the CPU a plain loop: a handful of
// ATen ops would cost more than the FI kernel itself on small batches.
void check_values(const FiInputs& in) {
  if (in.probs.device().is_cpu()) {
    const int64_t* t = in.target.const_data_ptr<int64_t>();
    for (int64_t b = 0; b < in.B; ++b)
      if (t[b] < 0 || t[b] >= in.K) fail_target(in, b);
    AT_DISPATCH_FLOATING_TYPES(in.probs.scalar_type(), "check_probs", [&] {
      const scalar_t* p = in.probs.const_data_ptr<scalar_t>();
      for (int64_t b = 0; b < in.B; ++b)
        for (int64_t k = 0; k < in.K; ++k)
          if (!(p[b * in.K + k] >= 0 && p[b * in.K + k] <= 1)) fail_probs(in, b);
    });
    return;
  }
  if (!check_values_of(in.probs)) return;  // CUDA without pyadv.ops.set_check_inputs(True): no sync
  const at::Tensor ok = in.probs.ge(0).logical_and(in.probs.le(1)).all(1);
  if (!ok.all().item<bool>()) fail_probs(in, ok.logical_not().nonzero().select(1, 0).min().item<int64_t>());
  const at::Tensor bad_t = in.target.lt(0).logical_or(in.target.ge(in.K));
  if (bad_t.any().item<bool>()) fail_target(in, bad_t.nonzero().select(1, 0).min().item<int64_t>());
}

}  // namespace

void check_rank_tol(double rank_tol) { check_guard(rank_tol, "rank_tol"); }

FiInputs check_inputs(const at::Tensor& jac, const at::Tensor& probs, const at::Tensor& target, int64_t k_offset,
                      bool full, double eps, double rank_tol) {
  TORCH_CHECK_VALUE(jac.dim() == 3, "jac must have shape [B, K, P] (3 dims), got ", jac.dim(), " dims ", jac.sizes());
  TORCH_CHECK_VALUE(probs.dim() == 2, "probs must have shape [B, K] (2 dims), got ", probs.dim(), " dims ",
                    probs.sizes());
  TORCH_CHECK_VALUE(target.dim() == 1, "target must have shape [B] (1 dim), got ", target.dim(), " dims ",
                    target.sizes());
  check_float(jac, "jac");
  check_float(probs, "probs");
  TORCH_CHECK_TYPE(jac.scalar_type() == at::kFloat || jac.scalar_type() == at::kDouble,
                   "jac must be float32 or float64, got ", jac.scalar_type());
  TORCH_CHECK_TYPE(at::isIntegralType(target.scalar_type(), /*includeBool=*/false),
                   "target must be an integer tensor of class indices, got ", target.scalar_type());
  TORCH_CHECK_VALUE(probs.device() == jac.device(), "probs is on ", probs.device(), " but jac is on ", jac.device(),
                    "; all tensors must be on one device");
  TORCH_CHECK_VALUE(target.device() == jac.device(), "target is on ", target.device(), " but jac is on ",
                    jac.device(), "; all tensors must be on one device");
  check_guard(eps, "eps");
  check_guard(rank_tol, "rank_tol");

  FiInputs in;
  in.B = jac.size(0);
  in.Kc = jac.size(1);
  in.P = jac.size(2);
  in.K = probs.size(1);
  TORCH_CHECK_VALUE(probs.size(0) == in.B, "probs has batch size ", probs.size(0), " but jac has ", in.B);
  TORCH_CHECK_VALUE(target.size(0) == in.B, "target has batch size ", target.size(0), " but jac has ", in.B);
  if (full) {
    TORCH_CHECK_VALUE(in.Kc == in.K, "jac has ", in.Kc, " classes but probs has ", in.K);
    TORCH_CHECK_VALUE(in.K >= 1, "jac must hold at least one class, got K = 0");
  } else {
    TORCH_CHECK_VALUE(k_offset >= 0 && k_offset + in.Kc <= in.K, "k_offset ", k_offset, " with a chunk of ", in.Kc,
                      " classes does not fit in probs' K = ", in.K, "; need 0 <= k_offset <= K - chunk");
  }
  in.probs = probs.to(jac.scalar_type()).contiguous();
  in.target = target.to(at::kLong).contiguous();
  in.jac = jac.contiguous();
  if (in.B > 0 && in.K > 0) check_values(in);
  return in;
}

void check_accumulators(const FiInputs& in, const at::Tensor& num, const at::Tensor& den) {
  for (const auto& [t, name] : {std::pair<const at::Tensor&, const char*>{num, "num"}, {den, "den"}}) {
    TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == in.B && t.size(1) == in.P, name, " must have shape [B, P] = [",
                      in.B, ", ", in.P, "], got ", t.sizes());
    TORCH_CHECK_TYPE(t.scalar_type() == in.jac.scalar_type(), name, " must have jac's dtype ", in.jac.scalar_type(),
                     ", got ", t.scalar_type());
    TORCH_CHECK_VALUE(t.device() == in.jac.device(), name, " is on ", t.device(), " but jac is on ", in.jac.device());
    TORCH_CHECK_VALUE(t.is_contiguous(), name, " is updated in place and must be contiguous");
  }
}

void check_finish_inputs(const at::Tensor& num, const at::Tensor& den) {
  TORCH_CHECK_VALUE(num.dim() == 2, "num must have shape [B, P], got ", num.sizes());
  TORCH_CHECK_VALUE(den.sizes() == num.sizes(), "den must have num's shape ", num.sizes(), ", got ", den.sizes());
  TORCH_CHECK_TYPE(num.scalar_type() == at::kFloat || num.scalar_type() == at::kDouble,
                   "num must be float32 or float64, got ", num.scalar_type());
  TORCH_CHECK_TYPE(den.scalar_type() == num.scalar_type(), "den must have num's dtype ", num.scalar_type(), ", got ",
                   den.scalar_type());
  TORCH_CHECK_VALUE(den.device() == num.device(), "den is on ", den.device(), " but num is on ", num.device());
}

GroupInputs check_group_inputs(const at::Tensor& jac, const at::Tensor& probs, const at::Tensor& target,
                               int64_t k_offset, double eps, const at::Tensor& num, const at::Tensor& den) {
  TORCH_CHECK_VALUE(jac.dim() == 4, "jac must have shape [B, K, C, HW] (4 dims) for grouped FI, got ", jac.dim(),
                    " dims ", jac.sizes());
  const int64_t C = jac.size(2), HW = jac.size(3);
  TORCH_CHECK_VALUE(C >= 1 && C <= 4, "grouped FI needs 1 to 4 channels per pixel, got C = ", C);
  GroupInputs g{check_inputs(jac.reshape({jac.size(0), jac.size(1), C * HW}), probs, target, k_offset, false, eps,
                             0.0),
                C, HW};
  const int64_t B = g.base.B, T3 = C * (C + 1) / 2;
  const auto check_acc = [&](const at::Tensor& t, const char* name, int64_t rows) {
    TORCH_CHECK_VALUE(t.dim() == 3 && t.size(0) == B && t.size(1) == rows && t.size(2) == HW, name,
                      " must have shape [", B, ", ", rows, ", ", HW, "], got ", t.sizes());
    TORCH_CHECK_TYPE(t.scalar_type() == g.base.jac.scalar_type(), name, " must have jac's dtype ",
                     g.base.jac.scalar_type(), ", got ", t.scalar_type());
    TORCH_CHECK_VALUE(t.device() == jac.device(), name, " is on ", t.device(), " but jac is on ", jac.device());
    TORCH_CHECK_VALUE(t.is_contiguous(), name, " is updated in place and must be contiguous");
  };
  check_acc(num, "num", C);
  check_acc(den, "den", T3);
  return g;
}

void check_group_finish_inputs(const at::Tensor& num, const at::Tensor& den) {
  TORCH_CHECK_VALUE(num.dim() == 3, "num must have shape [B, C, HW], got ", num.sizes());
  const int64_t C = num.size(1);
  TORCH_CHECK_VALUE(C >= 1 && C <= 4, "grouped FI needs 1 to 4 channels per pixel, got C = ", C);
  TORCH_CHECK_VALUE(den.dim() == 3 && den.size(0) == num.size(0) && den.size(1) == C * (C + 1) / 2 &&
                        den.size(2) == num.size(2),
                    "den must have shape [B, C(C+1)/2, HW] = [", num.size(0), ", ", C * (C + 1) / 2, ", ",
                    num.size(2), "], got ", den.sizes());
  TORCH_CHECK_TYPE(num.scalar_type() == at::kFloat || num.scalar_type() == at::kDouble,
                   "num must be float32 or float64, got ", num.scalar_type());
  TORCH_CHECK_TYPE(den.scalar_type() == num.scalar_type(), "den must have num's dtype ", num.scalar_type(), ", got ",
                   den.scalar_type());
  TORCH_CHECK_VALUE(den.device() == num.device(), "den is on ", den.device(), " but num is on ", num.device());
}

void fail_non_finite(const char* what, int64_t b) {
  TORCH_CHECK_VALUE(false, what, " holds NaN or Inf (or values whose squares overflow) for image ", b,
                    "; FI is undefined there");
  __builtin_unreachable();
}

}  // namespace fi
}  // namespace pyadv
