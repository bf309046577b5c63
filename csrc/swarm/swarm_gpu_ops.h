// The torch side of the swarm ops on a GPU-style backend, written once for the real CUDA
// launchers (swarm_op_cuda.cpp) and the emulated ones (emu/emu_module.cpp). L is a policy
// whose static templates forward to pyadv::cuda::swarm or pyadv::emulated::swarm.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <optional>

#include "swarm_gpu.h"
#include "swarm_op.h"

namespace pyadv {
namespace swarm {

#define PYADV_SWARM_GPU_POLICY(NAME, NS)                                        \
  struct NAME {                                                                 \
    template <typename T, typename... A>                                        \
    static int pso_step(A... a) { return NS::swarm::pso_step<T>(a...); }        \
    template <typename T, typename... A>                                        \
    static int swarm_best(A... a) { return NS::swarm::swarm_best<T>(a...); }    \
    template <typename T, typename... A>                                        \
    static int de_trial(A... a) { return NS::swarm::de_trial<T>(a...); }        \
    template <typename T, typename... A>                                        \
    static int de_select(A... a) { return NS::swarm::de_select<T>(a...); }      \
    template <typename T, typename... A>                                        \
    static int sparse_perturb(A... a) { return NS::swarm::sparse_perturb<T>(a...); } \
    template <typename T, typename... A>                                        \
    static int pixel_replace(A... a) { return NS::swarm::pixel_replace<T>(a...); } \
  }

inline void check_launch(int err, const char* what) { TORCH_CHECK(err == 0, what, " failed to launch (error ", err, ")"); }

template <class L>
void pso_step_gpu(const at::Tensor& pos, const at::Tensor& vel, const at::Tensor& pbest_in, const at::Tensor& gbest_in,
                  const at::Tensor& lo_in, const at::Tensor& hi_in, const std::optional<at::Tensor>& ids_in, double w,
                  double c1, double c2, int64_t seed, int64_t step, int64_t boundary, double vmax_frac, void* stream) {
  const Dims d = check_pso_step(pos, vel, pbest_in, gbest_in, lo_in, hi_in, boundary, vmax_frac, seed, step);
  const at::Tensor ids = check_ids(ids_in, d.B, pos);
  const at::Tensor pbest = pbest_in.contiguous(), gbest = gbest_in.contiguous(), lo = lo_in.contiguous(),
                   hi = hi_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "pso_step_gpu", [&] {
    check_launch(L::template pso_step<scalar_t>(
                     pos.mutable_data_ptr<scalar_t>(), vel.mutable_data_ptr<scalar_t>(), pbest.const_data_ptr<scalar_t>(),
                     gbest.const_data_ptr<scalar_t>(), lo.const_data_ptr<scalar_t>(), hi.const_data_ptr<scalar_t>(),
                     ids.defined() ? ids.const_data_ptr<int64_t>() : nullptr, d.B, d.N, d.D, scalar_t(w), scalar_t(c1), scalar_t(c2), static_cast<uint64_t>(seed),
                     static_cast<uint32_t>(step), static_cast<int>(boundary), scalar_t(vmax_frac), stream),
                 "pso_step");
  });
}

template <class L>
void swarm_best_gpu(const at::Tensor& pos_in, const at::Tensor& fit_in, const at::Tensor& pbest,
                    const at::Tensor& pbest_fit, const at::Tensor& gbest, const at::Tensor& gbest_fit, void* stream) {
  const Dims d = check_swarm_best(pos_in, fit_in, pbest, pbest_fit, gbest, gbest_fit);
  const at::Tensor pos = pos_in.contiguous(), fit = fit_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "swarm_best_gpu", [&] {
    check_launch(L::template swarm_best<scalar_t>(pos.const_data_ptr<scalar_t>(), fit.const_data_ptr<scalar_t>(),
                                                   pbest.mutable_data_ptr<scalar_t>(),
                                                   pbest_fit.mutable_data_ptr<scalar_t>(),
                                                   gbest.mutable_data_ptr<scalar_t>(),
                                                   gbest_fit.mutable_data_ptr<scalar_t>(), d.B, d.N, d.D, stream),
                 "swarm_best");
  });
}

template <class L>
at::Tensor de_trial_gpu(const at::Tensor& pop_in, const at::Tensor& best_in, const at::Tensor& lo_in,
                        const at::Tensor& hi_in, const std::optional<at::Tensor>& int_mask,
                        const std::optional<at::Tensor>& ids, double F, double CR, int64_t strategy, int64_t bounds,
                        int64_t seed, int64_t step, void* stream) {
  const DeTrialArgs a = prepare_de_trial(pop_in, best_in, lo_in, hi_in, int_mask, ids, strategy, bounds, seed, step);
  at::Tensor trial = at::empty_like(a.pop);
  AT_DISPATCH_FLOATING_TYPES(a.pop.scalar_type(), "de_trial_gpu", [&] {
    check_launch(L::template de_trial<scalar_t>(
                     a.pop.const_data_ptr<scalar_t>(), a.best.const_data_ptr<int64_t>(),
                     a.lo.const_data_ptr<scalar_t>(), a.hi.const_data_ptr<scalar_t>(),
                     a.mask.defined() ? a.mask.const_data_ptr<uint8_t>() : nullptr,
                     a.ids.defined() ? a.ids.const_data_ptr<int64_t>() : nullptr, trial.mutable_data_ptr<scalar_t>(),
                     a.d.B, a.d.N, a.d.D, scalar_t(F), scalar_t(CR), static_cast<int>(strategy),
                     static_cast<int>(bounds), static_cast<uint64_t>(seed), static_cast<uint32_t>(step), stream),
                 "de_trial");
  });
  return trial;
}

template <class L>
void de_select_gpu(const at::Tensor& trial_in, const at::Tensor& trial_fit_in, const at::Tensor& pop,
                   const at::Tensor& fit, void* stream) {
  const Dims d = check_de_select(trial_in, trial_fit_in, pop, fit);
  const at::Tensor trial = trial_in.contiguous(), trial_fit = trial_fit_in.contiguous();
  AT_DISPATCH_FLOATING_TYPES(pop.scalar_type(), "de_select_gpu", [&] {
    check_launch(L::template de_select<scalar_t>(trial.const_data_ptr<scalar_t>(),
                                                  trial_fit.const_data_ptr<scalar_t>(),
                                                  pop.mutable_data_ptr<scalar_t>(), fit.mutable_data_ptr<scalar_t>(),
                                                  d.B, d.N, d.D, stream),
                 "de_select");
  });
}

template <class L>
at::Tensor sparse_perturb_gpu(const at::Tensor& base_in, const at::Tensor& idx_in, const at::Tensor& values_in,
                              int64_t n_begin, int64_t n_end, void* stream, const at::Tensor* out_given = nullptr) {
  const auto [B, N, m, P] = check_sparse_perturb(base_in, idx_in, values_in, n_begin, n_end);
  const at::Tensor base = base_in.contiguous(), idx = idx_in.contiguous(), values = values_in.contiguous();
  if (out_given) check_out(*out_given, {B * (n_end - n_begin), P}, base);
  at::Tensor out = out_given ? *out_given : at::empty({B * (n_end - n_begin), P}, base.options());
  AT_DISPATCH_FLOATING_TYPES(base.scalar_type(), "sparse_perturb_gpu", [&] {
    check_launch(L::template sparse_perturb<scalar_t>(base.const_data_ptr<scalar_t>(), idx.const_data_ptr<int64_t>(),
                                                       values.const_data_ptr<scalar_t>(),
                                                       out.mutable_data_ptr<scalar_t>(), B, N, m, P, n_begin, n_end,
                                                       stream),
                 "sparse_perturb");
  });
  return out;
}

template <class L>
at::Tensor pixel_replace_gpu(const at::Tensor& base_in, const at::Tensor& cand_in, int64_t n_begin, int64_t n_end,
                             void* stream, const at::Tensor* out_given = nullptr) {
  const auto [B, N, m, C, H, W] = check_pixel_replace(base_in, cand_in, n_begin, n_end);
  const at::Tensor base = base_in.contiguous(), cand = cand_in.contiguous();
  if (out_given) check_out(*out_given, {B * (n_end - n_begin), C, H, W}, base);
  at::Tensor out = out_given ? *out_given : at::empty({B * (n_end - n_begin), C, H, W}, base.options());
  AT_DISPATCH_FLOATING_TYPES(base.scalar_type(), "pixel_replace_gpu", [&] {
    check_launch(L::template pixel_replace<scalar_t>(base.const_data_ptr<scalar_t>(), cand.const_data_ptr<scalar_t>(),
                                                      out.mutable_data_ptr<scalar_t>(), B, N, m, C, H, W, n_begin,
                                                      n_end, stream),
                 "pixel_replace");
  });
  return out;
}

}  // namespace swarm
}  // namespace pyadv
