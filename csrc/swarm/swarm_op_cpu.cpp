// CPU implementations of the swarm ops: checks, then the active instruction-set variant over
// rows in parallel. Every row's random numbers depend only on (seed, step, element), so the
// result is the same for any thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../common/cpu_isa.h"
#include "../common/huge_pages.h"
#include "swarm_cpu_kernel.h"
#include "swarm_op.h"

PYADV_DECLARE_SWARM_CPU_KERNELS(isa_baseline)
#if defined(PYADV_HAVE_AVX2)
PYADV_DECLARE_SWARM_CPU_KERNELS(isa_avx2)
#endif
#if defined(PYADV_HAVE_AVX512)
PYADV_DECLARE_SWARM_CPU_KERNELS(isa_avx512)
#endif

namespace pyadv {
namespace swarm {
namespace {

int64_t grain(int64_t per_row) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, per_row)); }

void pso_step_cpu(const at::Tensor& pos, const at::Tensor& vel, const at::Tensor& pbest_in,
                  const at::Tensor& gbest_in, const at::Tensor& lo_in, const at::Tensor& hi_in,
                  const std::optional<at::Tensor>& ids_in, double w, double c1, double c2, int64_t seed, int64_t step,
                  int64_t boundary, double vmax_frac) {
  const Dims d = check_pso_step(pos, vel, pbest_in, gbest_in, lo_in, hi_in, boundary, vmax_frac, seed, step);
  const at::Tensor ids = check_ids(ids_in, d.B, pos);
  const at::Tensor pbest = pbest_in.contiguous(), gbest = gbest_in.contiguous(), lo = lo_in.contiguous(),
                   hi = hi_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "pso_step_cpu", [&] {
    scalar_t* x = pos.mutable_data_ptr<scalar_t>();
    scalar_t* v = vel.mutable_data_ptr<scalar_t>();
    const scalar_t *pb = pbest.const_data_ptr<scalar_t>(), *gb = gbest.const_data_ptr<scalar_t>(),
                   *l = lo.const_data_ptr<scalar_t>(), *h = hi.const_data_ptr<scalar_t>();
    at::parallel_for(0, d.B * d.N, grain(d.D), [&](int64_t b0, int64_t b1) {
      PYADV_ISA_DISPATCH(isa_ns::swarm::pso_step_rows<scalar_t>(
          x, v, pb, gb, l, h, ids.defined() ? ids.const_data_ptr<int64_t>() : nullptr, d.N, d.D, scalar_t(w), scalar_t(c1), scalar_t(c2), static_cast<uint64_t>(seed),
          static_cast<uint32_t>(step), static_cast<int>(boundary), scalar_t(vmax_frac), b0, b1));
    });
  });
}

void swarm_best_cpu(const at::Tensor& pos_in, const at::Tensor& fit_in, const at::Tensor& pbest,
                    const at::Tensor& pbest_fit, const at::Tensor& gbest, const at::Tensor& gbest_fit) {
  const Dims d = check_swarm_best(pos_in, fit_in, pbest, pbest_fit, gbest, gbest_fit);
  const at::Tensor pos = pos_in.contiguous(), fit = fit_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "swarm_best_cpu", [&] {
    at::parallel_for(0, d.B, grain(d.N * d.D), [&](int64_t b0, int64_t b1) {
      PYADV_ISA_DISPATCH(isa_ns::swarm::swarm_best_problems<scalar_t>(
          pos.const_data_ptr<scalar_t>(), fit.const_data_ptr<scalar_t>(), pbest.mutable_data_ptr<scalar_t>(),
          pbest_fit.mutable_data_ptr<scalar_t>(), gbest.mutable_data_ptr<scalar_t>(),
          gbest_fit.mutable_data_ptr<scalar_t>(), d.N, d.D, b0, b1));
    });
  });
}

at::Tensor de_trial_cpu(const at::Tensor& pop_in, const at::Tensor& best_in, const at::Tensor& lo_in,
                        const at::Tensor& hi_in, const std::optional<at::Tensor>& int_mask,
                        const std::optional<at::Tensor>& ids, double F, double CR, int64_t strategy, int64_t bounds,
                        int64_t seed, int64_t step) {
  const DeTrialArgs a = prepare_de_trial(pop_in, best_in, lo_in, hi_in, int_mask, ids, strategy, bounds, seed, step);
  at::Tensor trial = at::empty_like(a.pop);
  AT_DISPATCH_FLOATING_TYPES(a.pop.scalar_type(), "de_trial_cpu", [&] {
    const uint8_t* m = a.mask.defined() ? a.mask.const_data_ptr<uint8_t>() : nullptr;
    const int64_t* id = a.ids.defined() ? a.ids.const_data_ptr<int64_t>() : nullptr;
    at::parallel_for(0, a.d.B * a.d.N, grain(a.d.D), [&](int64_t b0, int64_t b1) {
      PYADV_ISA_DISPATCH(isa_ns::swarm::de_trial_rows<scalar_t>(
          a.pop.const_data_ptr<scalar_t>(), a.best.const_data_ptr<int64_t>(), a.lo.const_data_ptr<scalar_t>(),
          a.hi.const_data_ptr<scalar_t>(), m, id, trial.mutable_data_ptr<scalar_t>(), a.d.N, a.d.D, scalar_t(F),
          scalar_t(CR), static_cast<int>(strategy), static_cast<int>(bounds), static_cast<uint64_t>(seed),
          static_cast<uint32_t>(step), b0, b1));
    });
  });
  return trial;
}

void de_select_cpu(const at::Tensor& trial_in, const at::Tensor& trial_fit_in, const at::Tensor& pop,
                   const at::Tensor& fit) {
  const Dims d = check_de_select(trial_in, trial_fit_in, pop, fit);
  const at::Tensor trial = trial_in.contiguous(), trial_fit = trial_fit_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES(pop.scalar_type(), "de_select_cpu", [&] {
    at::parallel_for(0, d.B * d.N, grain(d.D), [&](int64_t b0, int64_t b1) {
      PYADV_ISA_DISPATCH(isa_ns::swarm::de_select_rows<scalar_t>(
          trial.const_data_ptr<scalar_t>(), trial_fit.const_data_ptr<scalar_t>(), pop.mutable_data_ptr<scalar_t>(),
          fit.mutable_data_ptr<scalar_t>(), d.D, b0, b1));
    });
  });
}

void sparse_perturb_out_cpu(const at::Tensor& base_in, const at::Tensor& idx_in, const at::Tensor& values_in,
                            int64_t n_begin, int64_t n_end, const at::Tensor& out) {
  const auto [B, N, m, P] = check_sparse_perturb(base_in, idx_in, values_in, n_begin, n_end);
  const at::Tensor base = base_in.contiguous(), idx = idx_in.contiguous(), values = values_in.contiguous();
  const int64_t rows = B * (n_end - n_begin);
  check_out(out, {rows, P}, base);
  AT_DISPATCH_FLOATING_TYPES(base.scalar_type(), "sparse_perturb_cpu", [&] {
    at::parallel_for(0, rows, grain(P), [&](int64_t r0, int64_t r1) {
      PYADV_ISA_DISPATCH(isa_ns::swarm::sparse_perturb_rows<scalar_t>(
          base.const_data_ptr<scalar_t>(), idx.const_data_ptr<int64_t>(), values.const_data_ptr<scalar_t>(),
          out.mutable_data_ptr<scalar_t>(), N, m, P, n_begin, n_end, r0, r1));
    });
  });
}

at::Tensor sparse_perturb_cpu(const at::Tensor& base, const at::Tensor& idx, const at::Tensor& values,
                              int64_t n_begin, int64_t n_end) {
  const auto dims = check_sparse_perturb(base, idx, values, n_begin, n_end);
  at::Tensor out = at::empty({dims[0] * (n_end - n_begin), dims[3]}, base.options());
  advise_huge_pages(out.data_ptr(), out.nbytes());
  sparse_perturb_out_cpu(base, idx, values, n_begin, n_end, out);
  return out;
}

void pixel_replace_out_cpu(const at::Tensor& base_in, const at::Tensor& cand_in, int64_t n_begin, int64_t n_end,
                           const at::Tensor& out) {
  const auto [B, N, m, C, H, W] = check_pixel_replace(base_in, cand_in, n_begin, n_end);
  const at::Tensor base = base_in.contiguous(), cand = cand_in.contiguous();
  const int64_t rows = B * (n_end - n_begin);
  check_out(out, {rows, C, H, W}, base);
  AT_DISPATCH_FLOATING_TYPES(base.scalar_type(), "pixel_replace_cpu", [&] {
    at::parallel_for(0, rows, grain(C * H * W), [&](int64_t r0, int64_t r1) {
      PYADV_ISA_DISPATCH(isa_ns::swarm::pixel_replace_rows<scalar_t>(
          base.const_data_ptr<scalar_t>(), cand.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), N, m,
          C, H, W, n_begin, n_end, r0, r1));
    });
  });
}

at::Tensor pixel_replace_cpu(const at::Tensor& base, const at::Tensor& cand, int64_t n_begin, int64_t n_end) {
  const auto d = check_pixel_replace(base, cand, n_begin, n_end);
  at::Tensor out = at::empty({d[0] * (n_end - n_begin), d[3], d[4], d[5]}, base.options());
  advise_huge_pages(out.data_ptr(), out.nbytes());
  pixel_replace_out_cpu(base, cand, n_begin, n_end, out);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyadv, CPU, m) {
  m.impl("pso_step", &pso_step_cpu);
  m.impl("swarm_best", &swarm_best_cpu);
  m.impl("de_trial", &de_trial_cpu);
  m.impl("de_select", &de_select_cpu);
  m.impl("sparse_perturb", &sparse_perturb_cpu);
  m.impl("pixel_replace", &pixel_replace_cpu);
  m.impl("sparse_perturb_out", &sparse_perturb_out_cpu);
  m.impl("pixel_replace_out", &pixel_replace_out_cpu);
}

}  // namespace swarm
}  // namespace pyadv
