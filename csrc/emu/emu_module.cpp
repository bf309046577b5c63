// pyadv._C.emulated: runs the CUDA kernels on the CPU through the emulator, for tests.
// Tensors are CPU tensors standing in for device memory; argument checks are the ops' own.
#include <torch/extension.h>

#include <climits>

#include "../common/cuda_emu.h"
#include "../common/emu_selftest.h"
#include "../fi/fi_gpu.h"
#include "../fi/fi_group_gpu.h"
#include "../fi/fi_op.h"
#include "../image/ecc_op.h"
#include "../image/ssim_gpu_ops.h"
#include "../image/warp_op.h"
#include "../sparse/sparse_conv_op.h"
#include "../swarm/swarm_gpu_ops.h"
#include "emu_module.h"

namespace pyadv {
namespace {

namespace py = pybind11;

PYADV_SWARM_GPU_POLICY(EmulatedSwarm, ::pyadv::emulated);
PYADV_SSIM_GPU_POLICY(EmulatedSsim, ::pyadv::emulated);

void check(int err, const char* what) { TORCH_CHECK(err == 0, "emulated ", what, " returned error ", err); }

at::Tensor cpu_contiguous(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.device().is_cpu(), name, " must be a CPU tensor for the emulator, got ", t.device());
  return t.contiguous();
}

at::Tensor emulated_pixel_fi(const at::Tensor& jac, const at::Tensor& probs, const at::Tensor& target, double eps,
                             double rank_tol) {
  const fi::FiInputs in = fi::check_inputs(cpu_contiguous(jac, "jac"), probs, target, 0, true, eps, rank_tol);
  at::Tensor out = at::empty({in.B, in.P}, in.jac.options());
  int bad = INT_MAX;
  AT_DISPATCH_FLOATING_TYPES(in.jac.scalar_type(), "emulated_pixel_fi", [&] {
    check(emulated::fi::pixel_fi<scalar_t>(in.jac.const_data_ptr<scalar_t>(), in.probs.const_data_ptr<scalar_t>(),
                                           in.target.const_data_ptr<int64_t>(), out.mutable_data_ptr<scalar_t>(),
                                           &bad, in.B, in.K, in.P, scalar_t(eps), scalar_t(rank_tol), nullptr),
          "pixel_fi");
  });
  if (bad != INT_MAX) fi::fail_non_finite("jac", bad);
  return out;
}

void emulated_fi_accumulate(const at::Tensor& jac, const at::Tensor& probs, const at::Tensor& target,
                            int64_t k_offset, double eps, at::Tensor& num, at::Tensor& den) {
  const fi::FiInputs in = fi::check_inputs(cpu_contiguous(jac, "jac"), probs, target, k_offset, false, eps, 0.0);
  fi::check_accumulators(in, num, den);
  if (in.Kc == 0) return;
  AT_DISPATCH_FLOATING_TYPES(in.jac.scalar_type(), "emulated_fi_accumulate", [&] {
    check(emulated::fi::accumulate<scalar_t>(in.jac.const_data_ptr<scalar_t>(), in.probs.const_data_ptr<scalar_t>(),
                                             in.target.const_data_ptr<int64_t>(), num.mutable_data_ptr<scalar_t>(),
                                             den.mutable_data_ptr<scalar_t>(), in.B, in.Kc, in.K, k_offset, in.P,
                                             scalar_t(eps), nullptr),
          "fi_accumulate");
  });
}

at::Tensor emulated_fi_finish(const at::Tensor& num_in, const at::Tensor& den_in, double rank_tol) {
  fi::check_finish_inputs(num_in, den_in);
  fi::check_rank_tol(rank_tol);
  const at::Tensor num = cpu_contiguous(num_in, "num"), den = cpu_contiguous(den_in, "den");
  at::Tensor out = at::empty_like(num);
  int bad = INT_MAX;
  AT_DISPATCH_FLOATING_TYPES(num.scalar_type(), "emulated_fi_finish", [&] {
    check(emulated::fi::finish<scalar_t>(num.const_data_ptr<scalar_t>(), den.const_data_ptr<scalar_t>(),
                                         out.mutable_data_ptr<scalar_t>(), &bad, num.size(0), num.size(1),
                                         scalar_t(rank_tol), nullptr),
          "fi_finish");
  });
  if (bad != INT_MAX) fi::fail_non_finite("the accumulated jac", bad);
  return out;
}

void emulated_fi_group_accumulate(const at::Tensor& jac, const at::Tensor& probs, const at::Tensor& target,
                                  int64_t k_offset, double eps, at::Tensor& num, at::Tensor& den) {
  const fi::GroupInputs in = fi::check_group_inputs(cpu_contiguous(jac, "jac"), probs, target, k_offset, eps, num, den);
  const fi::FiInputs& b = in.base;
  AT_DISPATCH_FLOATING_TYPES(b.jac.scalar_type(), "emulated_fi_group_accumulate", [&] {
    check(emulated::fi::group_accumulate<scalar_t>(b.jac.const_data_ptr<scalar_t>(), b.probs.const_data_ptr<scalar_t>(),
                                                   b.target.const_data_ptr<int64_t>(), num.mutable_data_ptr<scalar_t>(),
                                                   den.mutable_data_ptr<scalar_t>(), b.B, b.Kc, b.K, k_offset, in.C,
                                                   in.HW, scalar_t(eps), nullptr),
          "fi_group_accumulate");
  });
}

at::Tensor emulated_fi_group_finish(const at::Tensor& num_in, const at::Tensor& den_in, double rank_tol) {
  fi::check_group_finish_inputs(num_in, den_in);
  fi::check_rank_tol(rank_tol);
  const at::Tensor num = cpu_contiguous(num_in, "num"), den = cpu_contiguous(den_in, "den");
  at::Tensor out = at::empty({num.size(0), num.size(2)}, num.options());
  int bad = INT_MAX;
  AT_DISPATCH_FLOATING_TYPES(num.scalar_type(), "emulated_fi_group_finish", [&] {
    check(emulated::fi::group_finish<scalar_t>(num.const_data_ptr<scalar_t>(), den.const_data_ptr<scalar_t>(),
                                               out.mutable_data_ptr<scalar_t>(), &bad, num.size(0), num.size(1),
                                               num.size(2), scalar_t(rank_tol), nullptr),
          "fi_group_finish");
  });
  if (bad != INT_MAX) fi::fail_non_finite("the accumulated jac", bad);
  return out;
}

at::Tensor float_input(const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.dim() == 1 && x.scalar_type() == at::kFloat && x.device().is_cpu(),
                    "x must be a 1-D float32 CPU tensor");
  return x.contiguous();
}

}  // namespace

void register_emulated(py::module_& parent) {
  py::module_ m = parent.def_submodule(
      "emulated", "CUDA kernels run on the CPU by the emulator (csrc/common/cuda_emu.h); for tests, tiny sizes.");
  m.def("set_schedule", [](const std::string& order) {
    TORCH_CHECK_VALUE(order == "forward" || order == "reverse" || order == "warp_ahead",
                      "order must be 'forward', 'reverse' or 'warp_ahead', got '", order, "'");
    emu::schedule_order() = order == "forward" ? emu::Schedule::forward
                            : order == "reverse" ? emu::Schedule::reverse : emu::Schedule::warp_ahead;
  }, py::arg("order"), "Order in which the threads of a block run between barriers.");
  m.def("set_block_order", [](const std::string& order) {
    TORCH_CHECK_VALUE(order == "forward" || order == "reverse", "order must be 'forward' or 'reverse', got '", order,
                      "'");
    emu::block_order() = order == "forward" ? emu::Schedule::forward : emu::Schedule::reverse;
  }, py::arg("order"), "Order in which the blocks of a grid run.");
  m.def("set_loop_grid_cap", [](int64_t cap) {
    TORCH_CHECK_VALUE(cap >= 0 && cap <= 65535, "cap must be in [0, 65535] (0: no cap), got ", cap);
    emu::loop_grid_cap() = static_cast<unsigned>(cap);
  }, py::arg("cap"),
        "The most blocks a looped grid dimension gets (0: no cap); small values make every grid-stride and "
        "per-block loop run several passes.");
  m.def("pixel_fi", &emulated_pixel_fi, py::arg("jac"), py::arg("probs"), py::arg("target"), py::arg("eps") = 0.0,
        py::arg("rank_tol") = 0.0);
  m.def("fi_accumulate", &emulated_fi_accumulate, py::arg("jac"), py::arg("probs"), py::arg("target"),
        py::arg("k_offset"), py::arg("eps"), py::arg("num"), py::arg("den"));
  m.def("fi_finish", &emulated_fi_finish, py::arg("num"), py::arg("den"), py::arg("rank_tol") = 0.0);
  m.def("fi_group_accumulate", &emulated_fi_group_accumulate, py::arg("jac"), py::arg("probs"), py::arg("target"),
        py::arg("k_offset"), py::arg("eps"), py::arg("num"), py::arg("den"));
  m.def("fi_group_finish", &emulated_fi_group_finish, py::arg("num"), py::arg("den"), py::arg("rank_tol") = 0.0);

  // The swarm ops on the emulator: the same glue as the CUDA build, CPU tensors as device memory.
  m.def("pso_step", [](const at::Tensor& pos, const at::Tensor& vel, const at::Tensor& pbest, const at::Tensor& gbest,
                       const at::Tensor& lo, const at::Tensor& hi, std::optional<at::Tensor> ids, double w, double c1,
                       double c2, int64_t seed, int64_t step, int64_t boundary, double vmax_frac) {
    swarm::pso_step_gpu<EmulatedSwarm>(cpu_contiguous(pos, "pos"), vel, pbest, gbest, lo, hi, ids, w, c1, c2, seed,
                                       step, boundary, vmax_frac, nullptr);
  });
  m.def("swarm_best", [](const at::Tensor& pos, const at::Tensor& fit, const at::Tensor& pbest,
                         const at::Tensor& pbest_fit, const at::Tensor& gbest, const at::Tensor& gbest_fit) {
    swarm::swarm_best_gpu<EmulatedSwarm>(cpu_contiguous(pos, "pos"), fit, pbest, pbest_fit, gbest, gbest_fit, nullptr);
  });
  m.def("de_trial", [](const at::Tensor& pop, const at::Tensor& best, const at::Tensor& lo, const at::Tensor& hi,
                       std::optional<at::Tensor> int_mask, std::optional<at::Tensor> ids, double F, double CR,
                       int64_t strategy, int64_t bounds, int64_t seed, int64_t step) {
    return swarm::de_trial_gpu<EmulatedSwarm>(cpu_contiguous(pop, "pop"), best, lo, hi, int_mask, ids, F, CR,
                                              strategy, bounds, seed, step, nullptr);
  });
  m.def("de_select", [](const at::Tensor& trial, const at::Tensor& trial_fit, const at::Tensor& pop,
                        const at::Tensor& fit) {
    swarm::de_select_gpu<EmulatedSwarm>(trial, trial_fit, cpu_contiguous(pop, "pop"), fit, nullptr);
  });
  m.def("sparse_perturb", [](const at::Tensor& base, const at::Tensor& idx, const at::Tensor& values, int64_t n0,
                             int64_t n1) {
    return swarm::sparse_perturb_gpu<EmulatedSwarm>(cpu_contiguous(base, "base"), idx, values, n0, n1, nullptr);
  });
  m.def("pixel_replace", [](const at::Tensor& base, const at::Tensor& cand, int64_t n0, int64_t n1) {
    return swarm::pixel_replace_gpu<EmulatedSwarm>(cpu_contiguous(base, "base"), cand, n0, n1, nullptr);
  });
  m.def("sparse_perturb_out", [](const at::Tensor& base, const at::Tensor& idx, const at::Tensor& values, int64_t n0,
                                 int64_t n1, const at::Tensor& out) {
    swarm::sparse_perturb_gpu<EmulatedSwarm>(cpu_contiguous(base, "base"), idx, values, n0, n1, nullptr, &out);
  });
  m.def("pixel_replace_out", [](const at::Tensor& base, const at::Tensor& cand, int64_t n0, int64_t n1,
                                const at::Tensor& out) {
    swarm::pixel_replace_gpu<EmulatedSwarm>(cpu_contiguous(base, "base"), cand, n0, n1, nullptr, &out);
  });

  m.def("ssim_forward", [](const at::Tensor& x, const at::Tensor& y, int64_t win, double sigma, double K1, double K2,
                           double data_range, bool want_map, bool want_partials) {
    return ssim::ssim_forward_gpu<EmulatedSsim>(cpu_contiguous(x, "x"), y, win, sigma, K1, K2, data_range, want_map,
                                                want_partials, nullptr);
  });
  m.def("ssim_backward", [](const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, int64_t win,
                            double sigma, double K1, double K2, double data_range) {
    return ssim::ssim_backward_gpu<EmulatedSsim>(grad, cpu_contiguous(x, "x"), y, win, sigma, K1, K2, data_range,
                                                 nullptr);
  });

  m.def("warp_perspective", [](const at::Tensor& img, const at::Tensor& M, int64_t out_h, int64_t out_w) {
    return warp::warp_gpu(cpu_contiguous(img, "img"), M, out_h, out_w, nullptr,
                          [](auto... a) { return emulated::warp::warp(a...); });
  });

  m.def("sparse_conv_stage", [](const at::Tensor& delta, const at::Tensor& slots, const at::Tensor& outpos,
                                const at::Tensor& base, const at::Tensor& weight, int64_t in_w, int64_t pad_h,
                                int64_t pad_w, int64_t pool, bool relu) {
    return sparse_conv::stage_gpu(cpu_contiguous(delta, "delta"), slots, outpos, base, weight, in_w, pad_h, pad_w,
                                  pool, relu, nullptr, [](auto... a) { return emulated::sparse_conv::stage(a...); });
  });

  m.def(
      "ecc_moments",
      [](const at::Tensor& img, const at::Tensor& tmpl, const at::Tensor& M, int64_t motion, int64_t margin,
         const std::optional<at::Tensor>& ids) {
        return ecc::ecc_moments_gpu(cpu_contiguous(img, "img"), tmpl, M, motion, margin, ids, nullptr,
                                    [](auto... a) { return emulated::ecc::moments(a...); });
      },
      py::arg("img"), py::arg("tmpl"), py::arg("M"), py::arg("motion"), py::arg("margin"), py::arg("ids") = py::none());

  m.def("ecc_solve", [](const at::Tensor& img, const at::Tensor& tmpl, const at::Tensor& M, int64_t motion,
                        int64_t margin, int64_t iters, double eps, bool safeguards, bool from_identity, bool coarse) {
    return ecc::ecc_solve_gpu(cpu_contiguous(img, "img"), tmpl, M, motion, margin, iters, eps, safeguards,
                              from_identity, coarse, nullptr, [](auto... a) { return emulated::ecc::solve(a...); });
  }, py::arg("img"), py::arg("tmpl"), py::arg("M"), py::arg("motion"), py::arg("margin"), py::arg("iters"),
     py::arg("eps"), py::arg("safeguards"), py::arg("from_identity"), py::arg("coarse") = false);

  m.def("selftest_block_sum", [](const at::Tensor& x_in, int variant) {
    const at::Tensor x = float_input(x_in);
    at::Tensor out = at::zeros({1}, x.options());
    check(emulated::selftest::launch_block_sum(x.const_data_ptr<float>(), x.numel(), out.mutable_data_ptr<float>(),
                                                variant, nullptr), "block_sum");
    return out;
  }, py::arg("x"), py::arg("variant"), "Shared-memory block reduction; variant 0 static, 1 dynamic, 2 missing barrier.");
  m.def("selftest_warp_sum", [](const at::Tensor& x_in, bool butterfly, int threads) {
    const at::Tensor x = float_input(x_in);
    const int64_t n = x.numel();
    at::Tensor out = at::full({butterfly ? n : (n + 31) / 32}, std::nanf(""), x.options());
    check(emulated::selftest::launch_warp_sum(x.const_data_ptr<float>(), n, out.mutable_data_ptr<float>(), butterfly,
                                               threads, nullptr), "warp_sum");
    return out;
  }, py::arg("x"), py::arg("butterfly"), py::arg("threads"), "Warp-shuffle reduction (shfl_down, or shfl_xor).");
  m.def("selftest_grid_stride_axpy", [](const at::Tensor& x_in, double a, const at::Tensor& y_in, int blocks,
                                        int threads) {
    const at::Tensor x = float_input(x_in);
    at::Tensor y = float_input(y_in).clone();
    check(emulated::selftest::launch_grid_stride_axpy(x.const_data_ptr<float>(), x.numel(), float(a),
                                                      y.mutable_data_ptr<float>(), blocks, threads, nullptr), "axpy");
    return y;
  }, py::arg("x"), py::arg("a"), py::arg("y"), py::arg("blocks"), py::arg("threads"));
  m.def("selftest_coordinates", [](std::array<unsigned, 3> grid, std::array<unsigned, 3> block) {
    const int64_t n = int64_t(grid[0]) * grid[1] * grid[2] * block[0] * block[1] * block[2];
    at::Tensor out = at::full({n, 12}, -1, at::kInt);
    check(emulated::selftest::launch_coordinates(out.mutable_data_ptr<int>(), grid.data(), block.data(), nullptr),
          "coordinates");
    return out;
  }, py::arg("grid"), py::arg("block"), "Each thread's (threadIdx, blockIdx, blockDim, gridDim), one row per thread.");
  m.def("selftest_divergent_barrier", [] {
    at::Tensor out = at::zeros({32}, at::kFloat);
    check(emulated::selftest::launch_divergent_barrier(out.mutable_data_ptr<float>(), nullptr), "divergent_barrier");
    return out;
  }, "A kernel whose threads do not all reach __syncthreads(); the emulator must raise.");
}

}  // namespace pyadv
