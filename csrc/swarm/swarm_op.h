// Argument checks of the swarm ops, shared by the CPU, CUDA and emulated implementations.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <optional>

namespace pyadv {
namespace swarm {

struct Dims {
  int64_t B, N, D;
};

// ids, when defined, is an int64 [B] tensor of problem ids (returned contiguous).
at::Tensor check_ids(const std::optional<at::Tensor>& ids, int64_t B, const at::Tensor& like);
// An out= buffer: this shape, like's dtype and device, contiguous.
void check_out(const at::Tensor& out, at::IntArrayRef shape, const at::Tensor& like);

// pos, vel, pbest [B, N, D]; gbest, lo, hi [B, D]; one floating dtype, one device, contiguous
// where written in place; lo <= hi.
Dims check_pso_step(const at::Tensor& pos, const at::Tensor& vel, const at::Tensor& pbest, const at::Tensor& gbest,
                    const at::Tensor& lo, const at::Tensor& hi, int64_t boundary, double vmax_frac, int64_t seed,
                    int64_t step);
Dims check_swarm_best(const at::Tensor& pos, const at::Tensor& fit, const at::Tensor& pbest,
                      const at::Tensor& pbest_fit, const at::Tensor& gbest, const at::Tensor& gbest_fit);
// int_mask, when defined, is a bool [B, D] tensor (returned as uint8).
Dims check_de_trial(const at::Tensor& pop, const at::Tensor& best, const at::Tensor& lo, const at::Tensor& hi,
                    const at::Tensor& int_mask, int64_t strategy, int64_t bounds, int64_t seed, int64_t step);
// check_de_trial and check_ids, then the tensors as the kernels read them (contiguous; the
// mask as uint8 or undefined; ids undefined when not given).
struct DeTrialArgs {
  Dims d;
  at::Tensor pop, best, lo, hi, mask, ids;
};
DeTrialArgs prepare_de_trial(const at::Tensor& pop, const at::Tensor& best, const at::Tensor& lo, const at::Tensor& hi,
                             const std::optional<at::Tensor>& int_mask, const std::optional<at::Tensor>& ids,
                             int64_t strategy, int64_t bounds, int64_t seed, int64_t step);
Dims check_de_select(const at::Tensor& trial, const at::Tensor& trial_fit, const at::Tensor& pop,
                     const at::Tensor& fit);
// Returns (B, N, m, P).
std::array<int64_t, 4> check_sparse_perturb(const at::Tensor& base, const at::Tensor& idx, const at::Tensor& values,
                                            int64_t n_begin, int64_t n_end);
// Returns (B, N, m, C, H, W).
std::array<int64_t, 6> check_pixel_replace(const at::Tensor& base, const at::Tensor& cand, int64_t n_begin,
                                           int64_t n_end);

}  // namespace swarm
}  // namespace pyadv
