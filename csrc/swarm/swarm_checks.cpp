#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <initializer_list>
#include <utility>

#include "../common/value_checks.h"
#include "swarm_op.h"

namespace pyadv {
namespace swarm {
namespace {

using Named = std::pair<const at::Tensor*, const char*>;

void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
                   " must be float32 or float64, got ", t.scalar_type());
}

void same_dtype_device(const at::Tensor& ref, const char* ref_name, std::initializer_list<Named> others) {
  for (const auto& [t, name] : others) {
    TORCH_CHECK_TYPE(t->scalar_type() == ref.scalar_type(), name, " must have ", ref_name, "'s dtype ",
                     ref.scalar_type(), ", got ", t->scalar_type());
    TORCH_CHECK_VALUE(t->device() == ref.device(), name, " is on ", t->device(), " but ", ref_name, " is on ",
                      ref.device(), "; all tensors must be on one device");
  }
}

void shape(const at::Tensor& t, const char* name, std::initializer_list<int64_t> dims, const char* pattern) {
  TORCH_CHECK_VALUE(t.sizes() == at::IntArrayRef(dims), name, " must have shape ", pattern, " = ",
                    at::IntArrayRef(dims), ", got ", t.sizes());
}

void contiguous(std::initializer_list<Named> ts) {
  for (const auto& [t, name] : ts)
    TORCH_CHECK_VALUE(t->is_contiguous(), name, " is updated in place and must be contiguous");
}

void check_bounds(const at::Tensor& lo, const at::Tensor& hi) {
  if (lo.numel() == 0 || !check_values_of(lo)) return;
  const at::Tensor bad = lo.gt(hi).logical_or(lo.isnan()).logical_or(hi.isnan());
  if (bad.any().item<bool>()) {
    const at::Tensor where = bad.nonzero()[0];
    TORCH_CHECK_VALUE(false, "bounds must satisfy lo <= hi (and not NaN); problem ", where[0].item<int64_t>(),
                      ", dimension ", where[1].item<int64_t>(), " has lo = ", lo.index({where[0], where[1]}).item<double>(),
                      " > hi = ", hi.index({where[0], where[1]}).item<double>());
  }
}

void check_seed_step(int64_t seed, int64_t step) {
  TORCH_CHECK_VALUE(seed >= 0, "seed must be >= 0, got ", seed);
  TORCH_CHECK_VALUE(step >= 0 && step <= 0xFFFFFFFFll, "step must be in [0, 2^32), got ", step);
}

}  // namespace

void check_out(const at::Tensor& out, at::IntArrayRef shape, const at::Tensor& like) {
  TORCH_CHECK_VALUE(out.sizes() == shape, "out must have shape ", shape, ", got ", out.sizes());
  TORCH_CHECK_TYPE(out.scalar_type() == like.scalar_type(), "out must have base's dtype ", like.scalar_type(),
                   ", got ", out.scalar_type());
  TORCH_CHECK_VALUE(out.device() == like.device() && out.is_contiguous(), "out must be a contiguous tensor on ",
                    like.device());
}

at::Tensor check_ids(const std::optional<at::Tensor>& ids, int64_t B, const at::Tensor& like) {
  if (!ids.has_value()) return at::Tensor();
  const at::Tensor& t = *ids;
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == B, "ids must have shape [B] = [", B, "], got ", t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, "ids must be int64 problem ids, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == like.device(), "ids is on ", t.device(), " but the swarm is on ", like.device());
  if (B && check_values_of(t)) TORCH_CHECK_VALUE(t.ge(0).all().item<bool>(), "ids must be >= 0");
  return t.contiguous();
}

Dims check_pso_step(const at::Tensor& pos, const at::Tensor& vel, const at::Tensor& pbest, const at::Tensor& gbest,
                    const at::Tensor& lo, const at::Tensor& hi, int64_t boundary, double vmax_frac, int64_t seed,
                    int64_t step) {
  TORCH_CHECK_VALUE(pos.dim() == 3, "pos must have shape [B, N, D], got ", pos.sizes());
  check_float(pos, "pos");
  const Dims d{pos.size(0), pos.size(1), pos.size(2)};
  shape(vel, "vel", {d.B, d.N, d.D}, "[B, N, D]");
  shape(pbest, "pbest", {d.B, d.N, d.D}, "[B, N, D]");
  shape(gbest, "gbest", {d.B, d.D}, "[B, D]");
  shape(lo, "lo", {d.B, d.D}, "[B, D]");
  shape(hi, "hi", {d.B, d.D}, "[B, D]");
  same_dtype_device(pos, "pos", {{&vel, "vel"}, {&pbest, "pbest"}, {&gbest, "gbest"}, {&lo, "lo"}, {&hi, "hi"}});
  contiguous({{&pos, "pos"}, {&vel, "vel"}});
  TORCH_CHECK_VALUE(boundary == 0 || boundary == 1, "boundary must be 0 (clip) or 1 (reflect), got ", boundary);
  TORCH_CHECK_VALUE(vmax_frac >= 0, "vmax_frac must be >= 0 (0: no velocity clamp), got ", vmax_frac);
  check_seed_step(seed, step);
  check_bounds(lo, hi);
  return d;
}

Dims check_swarm_best(const at::Tensor& pos, const at::Tensor& fit, const at::Tensor& pbest,
                      const at::Tensor& pbest_fit, const at::Tensor& gbest, const at::Tensor& gbest_fit) {
  TORCH_CHECK_VALUE(pos.dim() == 3, "pos must have shape [B, N, D], got ", pos.sizes());
  check_float(pos, "pos");
  const Dims d{pos.size(0), pos.size(1), pos.size(2)};
  shape(fit, "fitness", {d.B, d.N}, "[B, N]");
  shape(pbest, "pbest", {d.B, d.N, d.D}, "[B, N, D]");
  shape(pbest_fit, "pbest_fit", {d.B, d.N}, "[B, N]");
  shape(gbest, "gbest", {d.B, d.D}, "[B, D]");
  shape(gbest_fit, "gbest_fit", {d.B}, "[B]");
  same_dtype_device(pos, "pos", {{&fit, "fitness"}, {&pbest, "pbest"}, {&pbest_fit, "pbest_fit"}, {&gbest, "gbest"},
                                 {&gbest_fit, "gbest_fit"}});
  contiguous({{&pbest, "pbest"}, {&pbest_fit, "pbest_fit"}, {&gbest, "gbest"}, {&gbest_fit, "gbest_fit"}});
  return d;
}

Dims check_de_trial(const at::Tensor& pop, const at::Tensor& best, const at::Tensor& lo, const at::Tensor& hi,
                    const at::Tensor& int_mask, int64_t strategy, int64_t bounds, int64_t seed, int64_t step) {
  TORCH_CHECK_VALUE(pop.dim() == 3, "pop must have shape [B, N, D], got ", pop.sizes());
  check_float(pop, "pop");
  const Dims d{pop.size(0), pop.size(1), pop.size(2)};
  TORCH_CHECK_VALUE(strategy == 0 || strategy == 1, "strategy must be 0 (rand/1) or 1 (best/1), got ", strategy);
  TORCH_CHECK_VALUE(bounds == 0 || bounds == 1, "bounds must be 0 (clip) or 1 (resample), got ", bounds);
  const int64_t need = strategy == 0 ? 4 : 3;
  TORCH_CHECK_VALUE(d.B == 0 || d.N >= need, "differential evolution ", strategy == 0 ? "rand/1" : "best/1",
                    " needs a population of at least ", need, " (the member and its distinct partners), got N = ",
                    d.N);
  shape(best, "best", {d.B}, "[B]");
  TORCH_CHECK_TYPE(best.scalar_type() == at::kLong, "best must be int64 member indices, got ", best.scalar_type());
  TORCH_CHECK_VALUE(best.device() == pop.device(), "best is on ", best.device(), " but pop is on ", pop.device());
  if (strategy == 1 && d.B > 0 && check_values_of(best)) {
    TORCH_CHECK_VALUE(best.ge(0).logical_and(best.lt(d.N)).all().item<bool>(), "best must hold indices in [0, ", d.N,
                      ")");
  }
  shape(lo, "lo", {d.B, d.D}, "[B, D]");
  shape(hi, "hi", {d.B, d.D}, "[B, D]");
  same_dtype_device(pop, "pop", {{&lo, "lo"}, {&hi, "hi"}});
  if (int_mask.defined()) {
    shape(int_mask, "int_mask", {d.B, d.D}, "[B, D]");
    TORCH_CHECK_TYPE(int_mask.scalar_type() == at::kBool, "int_mask must be bool, got ", int_mask.scalar_type());
    TORCH_CHECK_VALUE(int_mask.device() == pop.device(), "int_mask is on ", int_mask.device(), " but pop is on ",
                      pop.device());
  }
  check_seed_step(seed, step);
  check_bounds(lo, hi);
  return d;
}

DeTrialArgs prepare_de_trial(const at::Tensor& pop, const at::Tensor& best, const at::Tensor& lo, const at::Tensor& hi,
                             const std::optional<at::Tensor>& int_mask, const std::optional<at::Tensor>& ids,
                             int64_t strategy, int64_t bounds, int64_t seed, int64_t step) {
  const at::Tensor mask = int_mask.has_value() ? *int_mask : at::Tensor();
  DeTrialArgs a;
  a.d = check_de_trial(pop, best, lo, hi, mask, strategy, bounds, seed, step);
  a.ids = check_ids(ids, a.d.B, pop);
  a.pop = pop.contiguous();
  a.best = best.contiguous();
  a.lo = lo.contiguous();
  a.hi = hi.contiguous();
  if (mask.defined()) a.mask = mask.to(at::kByte).contiguous();
  return a;
}

Dims check_de_select(const at::Tensor& trial, const at::Tensor& trial_fit, const at::Tensor& pop,
                     const at::Tensor& fit) {
  TORCH_CHECK_VALUE(pop.dim() == 3, "pop must have shape [B, N, D], got ", pop.sizes());
  check_float(pop, "pop");
  const Dims d{pop.size(0), pop.size(1), pop.size(2)};
  shape(trial, "trial", {d.B, d.N, d.D}, "[B, N, D]");
  shape(trial_fit, "trial_fitness", {d.B, d.N}, "[B, N]");
  shape(fit, "fitness", {d.B, d.N}, "[B, N]");
  same_dtype_device(pop, "pop", {{&trial, "trial"}, {&trial_fit, "trial_fitness"}, {&fit, "fitness"}});
  contiguous({{&pop, "pop"}, {&fit, "fitness"}});
  return d;
}

std::array<int64_t, 4> check_sparse_perturb(const at::Tensor& base, const at::Tensor& idx, const at::Tensor& values,
                                            int64_t n_begin, int64_t n_end) {
  TORCH_CHECK_VALUE(base.dim() == 2, "base must have shape [B, P], got ", base.sizes());
  check_float(base, "base");
  const int64_t B = base.size(0), P = base.size(1);
  TORCH_CHECK_VALUE(idx.dim() == 2 && idx.size(0) == B, "idx must have shape [B, m] with B = ", B, ", got ",
                    idx.sizes());
  TORCH_CHECK_TYPE(idx.scalar_type() == at::kLong, "idx must be int64 pixel indices, got ", idx.scalar_type());
  const int64_t m = idx.size(1);
  TORCH_CHECK_VALUE(values.dim() == 3 && values.size(0) == B && values.size(2) == m,
                    "values must have shape [B, N, m] = [", B, ", N, ", m, "], got ", values.sizes());
  const int64_t N = values.size(1);
  same_dtype_device(base, "base", {{&values, "values"}});
  TORCH_CHECK_VALUE(idx.device() == base.device(), "idx is on ", idx.device(), " but base is on ", base.device());
  TORCH_CHECK_VALUE(0 <= n_begin && n_begin <= n_end && n_end <= N, "the candidate range [", n_begin, ", ", n_end,
                    ") must lie in [0, N = ", N, "]");
  if (idx.numel() && check_values_of(idx)) {
    TORCH_CHECK_VALUE(idx.ge(0).logical_and(idx.lt(P)).all().item<bool>(), "idx must hold pixel indices in [0, ", P,
                      ")");
  }
  return {B, N, m, P};
}

std::array<int64_t, 6> check_pixel_replace(const at::Tensor& base, const at::Tensor& cand, int64_t n_begin,
                                           int64_t n_end) {
  TORCH_CHECK_VALUE(base.dim() == 4, "base must have shape [B, C, H, W], got ", base.sizes());
  check_float(base, "base");
  const int64_t B = base.size(0), C = base.size(1), H = base.size(2), W = base.size(3);
  TORCH_CHECK_VALUE(cand.dim() == 4 && cand.size(0) == B && cand.size(3) == 2 + C,
                    "candidates must have shape [B, N, m, 2 + C] = [", B, ", N, m, ", 2 + C,
                    "] (row, column, one value per channel), got ", cand.sizes());
  same_dtype_device(base, "base", {{&cand, "candidates"}});
  const int64_t N = cand.size(1), m = cand.size(2);
  TORCH_CHECK_VALUE(0 <= n_begin && n_begin <= n_end && n_end <= N, "the candidate range [", n_begin, ", ", n_end,
                    ") must lie in [0, N = ", N, "]");
  TORCH_CHECK_VALUE(B == 0 || (H > 0 && W > 0), "base must have a non-empty image plane");
  return {B, N, m, C, H, W};
}

}  // namespace swarm
}  // namespace pyadv
