// The CPU ops of the batched L-BFGS-B (lbfgsb_math.h): lbfgsb_start restarts some problems from
// given points, lbfgsb_step hands some problems f and g at the points they asked for and runs
// each on to its next point or its end. Problems are independent: one at::parallel_for over the
// rows given, each range run by the CPU kernel of the active instruction set
// (lbfgsb_cpu_kernel.cpp). All state is in the caller's tensors (x, ws, iws), so a step never
// allocates.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "../common/cpu_isa.h"
#include "lbfgsb_cpu_kernel.h"
#include "lbfgsb_layout.h"
#include "lbfgsb_op.h"

PYADV_DECLARE_LBFGSB_CPU_KERNELS(isa_baseline)
#if defined(PYADV_HAVE_AVX2)
PYADV_DECLARE_LBFGSB_CPU_KERNELS(isa_avx2)
#endif
#if defined(PYADV_HAVE_AVX512)
PYADV_DECLARE_LBFGSB_CPU_KERNELS(isa_avx512)
#endif

namespace pyadv {

std::pair<int64_t, int64_t> lbfgsb_workspace(int64_t n, int64_t m) {
  TORCH_CHECK_VALUE(n >= 1, "lbfgsb: n (variables per problem) must be >= 1, got ", n);
  TORCH_CHECK_VALUE(m >= 1 && m <= lbfgsb::kMaxCorrections, "lbfgsb: m (corrections kept) must be in [1, ",
                    lbfgsb::kMaxCorrections, "], got ", m);
  TORCH_CHECK_VALUE(n < (int64_t(1) << 30), "lbfgsb: n must be < 2^30, got ", n);
  const lbfgsb::Layout L(n, m);
  return {L.doubles, L.ints};
}

namespace {

// Whether every value is finite (its exponent bits not all set), over the CPU's threads: an OR
// of integer tests the compiler vectorises, without the boolean tensor of at::isfinite (which
// cost more than a tenth of a step's time on 256 problems of 784 variables).
bool all_finite(const double* v, int64_t count) {
  std::atomic<bool> ok{true};
  at::parallel_for(0, count, 1 << 15, [&](int64_t a, int64_t b) {
    constexpr uint64_t kExponent = 0x7ff0000000000000ULL;
    uint64_t bad = 0;
    for (int64_t i = a; i < b; ++i) {
      uint64_t bits;
      std::memcpy(&bits, v + i, sizeof(bits));
      bad |= (bits & kExponent) == kExponent;
    }
    if (bad) ok = false;
  });
  return ok;
}

struct State {
  int64_t B, n;
  lbfgsb::Layout L;
};

State check_state(const at::Tensor& x, const at::Tensor& ws, const at::Tensor& iws, const at::Tensor& lower,
                  const at::Tensor& upper, const at::Tensor& rows, int64_t m) {
  TORCH_CHECK_VALUE(x.dim() == 2, "lbfgsb: x must be [B, n], got ", x.sizes());
  const int64_t B = x.size(0), n = x.size(1);
  const auto [nd, ni] = lbfgsb_workspace(n, m);
  for (const auto& [t, name] : {std::pair{&x, "x"}, {&ws, "ws"}, {&lower, "lower"}, {&upper, "upper"}}) {
    TORCH_CHECK_TYPE(t->scalar_type() == at::kDouble, "lbfgsb: ", name, " must be float64, got ", t->scalar_type());
    TORCH_CHECK_VALUE(t->device().is_cpu() && t->is_contiguous(), "lbfgsb: ", name, " must be a contiguous CPU tensor");
  }
  TORCH_CHECK_VALUE(lower.sizes() == x.sizes() && upper.sizes() == x.sizes(), "lbfgsb: lower and upper must be [B, n] = ",
                    x.sizes(), ", got ", lower.sizes(), " and ", upper.sizes());
  TORCH_CHECK_VALUE(ws.dim() == 2 && ws.size(0) == B && ws.size(1) == nd, "lbfgsb: ws must be [", B, ", ", nd,
                    "] for n = ", n, " and m = ", m, ", got ", ws.sizes());
  TORCH_CHECK_TYPE(iws.scalar_type() == at::kInt, "lbfgsb: iws must be int32, got ", iws.scalar_type());
  TORCH_CHECK_VALUE(iws.device().is_cpu() && iws.is_contiguous() && iws.dim() == 2 && iws.size(0) == B &&
                        iws.size(1) == ni,
                    "lbfgsb: iws must be a contiguous CPU tensor [", B, ", ", ni, "], got ", iws.sizes());
  TORCH_CHECK_TYPE(rows.scalar_type() == at::kLong, "lbfgsb: rows must be int64, got ", rows.scalar_type());
  TORCH_CHECK_VALUE(rows.dim() == 1 && rows.device().is_cpu(), "lbfgsb: rows must be a 1-D CPU tensor, got ",
                    rows.sizes());
  const at::Tensor r = rows.contiguous();
  const int64_t* rp = r.const_data_ptr<int64_t>();
  std::vector<char> seen(B, 0);
  for (int64_t k = 0; k < r.numel(); ++k) {
    TORCH_CHECK_INDEX(rp[k] >= 0 && rp[k] < B, "lbfgsb: rows[", k, "] = ", rp[k], " is outside [0, ", B, ")");
    TORCH_CHECK_VALUE(!seen[rp[k]], "lbfgsb: row ", rp[k], " appears twice in rows");
    seen[rp[k]] = 1;
  }
  return {B, n, lbfgsb::Layout(n, m)};
}

void lbfgsb_start_cpu(at::Tensor x, at::Tensor ws, at::Tensor iws, const at::Tensor& lower, const at::Tensor& upper,
                      const at::Tensor& rows, const at::Tensor& x0, int64_t m) {
  const State s = check_state(x, ws, iws, lower, upper, rows, m);
  const int64_t R = rows.numel();
  TORCH_CHECK_VALUE(x0.dim() == 2 && x0.size(0) == R && x0.size(1) == s.n, "lbfgsb_start: x0 must be [len(rows), n] = [",
                    R, ", ", s.n, "], got ", x0.sizes());
  const at::Tensor xs = x0.to(at::kDouble).contiguous(), r = rows.contiguous();
  const double* lp = lower.const_data_ptr<double>();
  const double* up = upper.const_data_ptr<double>();
  const double* xsp = xs.const_data_ptr<double>();
  const int64_t* rp = r.const_data_ptr<int64_t>();
  for (int64_t k = 0; k < R; ++k) {
    const int64_t b = rp[k];
    for (int64_t i = 0; i < s.n; ++i) {
      const double v = xsp[k * s.n + i], lo = lp[b * s.n + i], hi = up[b * s.n + i];
      TORCH_CHECK_VALUE(std::isfinite(v), "lbfgsb_start: x0[", k, ", ", i, "] is not finite");
      TORCH_CHECK_VALUE(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, "lbfgsb_start: the bounds of row ", b,
                        ", variable ", i, " must be finite with lower <= upper, got [", lo, ", ", hi, "]");
    }
  }
  double* xp = x.mutable_data_ptr<double>();
  double* wp = ws.mutable_data_ptr<double>();
  int32_t* ip = iws.mutable_data_ptr<int32_t>();
  at::parallel_for(0, R, 1, [&](int64_t k0, int64_t k1) {
    PYADV_ISA_DISPATCH(isa_ns::lbfgsb_kernel::start_rows(s.L, rp, k0, k1, xp, lp, up, wp, ip, xsp));
  });
}

void lbfgsb_step_cpu(at::Tensor x, at::Tensor ws, at::Tensor iws, const at::Tensor& lower, const at::Tensor& upper,
                     const at::Tensor& rows, const at::Tensor& f, const at::Tensor& g, int64_t m, int64_t max_iter,
                     int64_t max_eval, int64_t max_ls, double factr, double pgtol) {
  const State s = check_state(x, ws, iws, lower, upper, rows, m);
  const int64_t R = rows.numel();
  TORCH_CHECK_VALUE(f.dim() == 1 && f.size(0) == R, "lbfgsb_step: f must be [len(rows)] = [", R, "], got ", f.sizes());
  TORCH_CHECK_VALUE(g.dim() == 2 && g.size(0) == R && g.size(1) == s.n, "lbfgsb_step: g must be [len(rows), n] = [", R,
                    ", ", s.n, "], got ", g.sizes());
  TORCH_CHECK_VALUE(max_iter >= 1 && max_eval >= 1 && max_ls >= 1, "lbfgsb_step: max_iter, max_eval and max_ls must be "
                    ">= 1, got ", max_iter, ", ", max_eval, ", ", max_ls);
  TORCH_CHECK_VALUE(factr >= 0.0 && pgtol >= 0.0, "lbfgsb_step: factr and pgtol must be >= 0, got ", factr, " and ",
                    pgtol);
  const at::Tensor fs = f.to(at::kDouble).contiguous(), gs = g.to(at::kDouble).contiguous(), r = rows.contiguous();
  const int64_t* rp = r.const_data_ptr<int64_t>();
  const double* fp = fs.const_data_ptr<double>();
  const double* gp = gs.const_data_ptr<double>();
  int32_t* ip = iws.mutable_data_ptr<int32_t>();
  for (int64_t k = 0; k < R; ++k) {
    const int64_t b = rp[k];
    TORCH_CHECK_VALUE(ip[b * s.L.ints + lbfgsb::kStatus] == lbfgsb::kEvaluate, "lbfgsb_step: row ", b,
                      " is not waiting for an evaluation (status ", ip[b * s.L.ints + lbfgsb::kStatus], ")");
    TORCH_CHECK_VALUE(std::isfinite(fp[k]), "lbfgsb_step: f[", k, "] (row ", b, ") is not finite: ", fp[k]);
  }
  TORCH_CHECK_VALUE(all_finite(gs.const_data_ptr<double>(), gs.numel()), "lbfgsb_step: g has entries that are not finite");
  const lbfgsb::Settings st{m, max_iter, max_eval, max_ls, factr, pgtol};
  double* xp = x.mutable_data_ptr<double>();
  double* wp = ws.mutable_data_ptr<double>();
  const double* lp = lower.const_data_ptr<double>();
  const double* up = upper.const_data_ptr<double>();
  at::parallel_for(0, R, 1, [&](int64_t k0, int64_t k1) {
    PYADV_ISA_DISPATCH(isa_ns::lbfgsb_kernel::step_rows(s.L, st, rp, k0, k1, xp, lp, up, wp, ip, fp, gp));
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(pyadv, CPU, m) {
  m.impl("lbfgsb_start", &lbfgsb_start_cpu);
  m.impl("lbfgsb_step", &lbfgsb_step_cpu);
}

}  // namespace pyadv
