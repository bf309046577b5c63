// CUDA implementations of the swarm ops (built only with a CUDA torch and nvcc): the shared
// glue of swarm_gpu_ops.h with the real launchers on torch's current stream.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "swarm_gpu_ops.h"

namespace pyadv {
namespace swarm {
namespace {

PYADV_SWARM_GPU_POLICY(CudaLaunch, ::pyadv::cuda);

void* stream_of(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

void pso_step_cuda(const at::Tensor& pos, const at::Tensor& vel, const at::Tensor& pbest, const at::Tensor& gbest,
                   const at::Tensor& lo, const at::Tensor& hi, const std::optional<at::Tensor>& ids, double w,
                   double c1, double c2, int64_t seed, int64_t step, int64_t boundary, double vmax_frac) {
  const c10::cuda::CUDAGuard guard(pos.device());
  pso_step_gpu<CudaLaunch>(pos, vel, pbest, gbest, lo, hi, ids, w, c1, c2, seed, step, boundary, vmax_frac,
                           stream_of(pos));
}

void swarm_best_cuda(const at::Tensor& pos, const at::Tensor& fit, const at::Tensor& pbest,
                     const at::Tensor& pbest_fit, const at::Tensor& gbest, const at::Tensor& gbest_fit) {
  const c10::cuda::CUDAGuard guard(pos.device());
  swarm_best_gpu<CudaLaunch>(pos, fit, pbest, pbest_fit, gbest, gbest_fit, stream_of(pos));
}

at::Tensor de_trial_cuda(const at::Tensor& pop, const at::Tensor& best, const at::Tensor& lo, const at::Tensor& hi,
                         const std::optional<at::Tensor>& int_mask, const std::optional<at::Tensor>& ids, double F,
                         double CR, int64_t strategy, int64_t bounds, int64_t seed, int64_t step) {
  const c10::cuda::CUDAGuard guard(pop.device());
  return de_trial_gpu<CudaLaunch>(pop, best, lo, hi, int_mask, ids, F, CR, strategy, bounds, seed, step,
                                  stream_of(pop));
}

void de_select_cuda(const at::Tensor& trial, const at::Tensor& trial_fit, const at::Tensor& pop,
                    const at::Tensor& fit) {
  const c10::cuda::CUDAGuard guard(pop.device());
  de_select_gpu<CudaLaunch>(trial, trial_fit, pop, fit, stream_of(pop));
}

at::Tensor sparse_perturb_cuda(const at::Tensor& base, const at::Tensor& idx, const at::Tensor& values,
                               int64_t n_begin, int64_t n_end) {
  const c10::cuda::CUDAGuard guard(base.device());
  return sparse_perturb_gpu<CudaLaunch>(base, idx, values, n_begin, n_end, stream_of(base));
}

at::Tensor pixel_replace_cuda(const at::Tensor& base, const at::Tensor& cand, int64_t n_begin, int64_t n_end) {
  const c10::cuda::CUDAGuard guard(base.device());
  return pixel_replace_gpu<CudaLaunch>(base, cand, n_begin, n_end, stream_of(base));
}

// The runner renders candidates into one reused buffer: the out= forms write there directly.
void sparse_perturb_out_cuda(const at::Tensor& base, const at::Tensor& idx, const at::Tensor& values, int64_t n_begin,
                             int64_t n_end, const at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(base.device());
  sparse_perturb_gpu<CudaLaunch>(base, idx, values, n_begin, n_end, stream_of(base), &out);
}

void pixel_replace_out_cuda(const at::Tensor& base, const at::Tensor& cand, int64_t n_begin, int64_t n_end,
                            const at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(base.device());
  pixel_replace_gpu<CudaLaunch>(base, cand, n_begin, n_end, stream_of(base), &out);
}

}  // namespace

TORCH_LIBRARY_IMPL(pyadv, CUDA, m) {
  m.impl("pso_step", &pso_step_cuda);
  m.impl("swarm_best", &swarm_best_cuda);
  m.impl("de_trial", &de_trial_cuda);
  m.impl("de_select", &de_select_cuda);
  m.impl("sparse_perturb", &sparse_perturb_cuda);
  m.impl("pixel_replace", &pixel_replace_cuda);
  m.impl("sparse_perturb_out", &sparse_perturb_out_cuda);
  m.impl("pixel_replace_out", &pixel_replace_out_cuda);
}

}  // namespace swarm
}  // namespace pyadv
