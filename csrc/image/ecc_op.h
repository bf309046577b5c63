// Checks of the ECC ops (ecc_moments, ecc_solve), and their GPU-style glue for the CUDA build and
// the emulator.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <optional>
#include <tuple>

#include "ecc_gpu.h"

namespace pyadv {
namespace ecc {

struct EccArgs {
  at::Tensor img, tmpl, M, ids;  // contiguous; M as double; ids int64 or undefined
  int64_t B, N, H, W, K;         // N pairs computed: ids' length, or B
};

// img comes back contiguous, or kept as it is when keep_channels_last and it is channels-last
// contiguous ([B, H, W, 3] in memory).
EccArgs check_ecc(const at::Tensor& img, const at::Tensor& tmpl, const at::Tensor& M, int64_t motion, int64_t margin,
                  const std::optional<at::Tensor>& ids, bool keep_channels_last = false);

// ecc_solve's own arguments: iters >= 1, eps >= 0, a warp per pair.
void check_solve_args(const EccArgs& a, int64_t iters, double eps);

// ecc_solve's outputs for a.N pairs, uninitialised: W [N, 3, 3] and rho [N] (float64), iterations
// [N] (int64), converged, failed, rejected [N] (bool).
using SolveOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
SolveOutputs empty_solve_outputs(const EccArgs& a);

// Launch(T*...) forwards to pyadv::cuda::ecc::moments or pyadv::emulated::ecc::moments.
template <typename Launch>
at::Tensor ecc_moments_gpu(const at::Tensor& img, const at::Tensor& tmpl, const at::Tensor& M, int64_t motion,
                           int64_t margin, const std::optional<at::Tensor>& ids, void* stream, Launch launch) {
  const EccArgs a = check_ecc(img, tmpl, M, motion, margin, ids);
  at::Tensor out = at::empty({a.N, a.K}, a.img.options().dtype(at::kDouble));
  const int64_t split = blocks_per_pair(a.N, a.H * a.W);
  at::Tensor scratch = at::empty({split > 1 ? a.N * split * a.K : 0}, out.options());
  AT_DISPATCH_FLOATING_TYPES(a.img.scalar_type(), "ecc_moments_gpu", [&] {
    const int err = launch(a.img.const_data_ptr<scalar_t>(), a.tmpl.const_data_ptr<scalar_t>(),
                           a.M.const_data_ptr<double>(), a.ids.defined() ? a.ids.const_data_ptr<int64_t>() : nullptr,
                           a.N, a.H, a.W, static_cast<int>(motion), margin, split,
                           split > 1 ? scratch.mutable_data_ptr<double>() : nullptr, out.mutable_data_ptr<double>(),
                           stream);
    TORCH_CHECK(err == 0, "ecc_moments failed to launch (error ", err, ")");
  });
  return out;
}

// Launch(T*...) forwards to pyadv::cuda::ecc::solve or pyadv::emulated::ecc::solve.
template <typename Launch>
SolveOutputs ecc_solve_gpu(const at::Tensor& img, const at::Tensor& tmpl, const at::Tensor& M, int64_t motion,
                           int64_t margin, int64_t iters, double eps, bool safeguards, bool from_identity, bool coarse,
                           void* stream, Launch launch) {
  const EccArgs a = check_ecc(img, tmpl, M, motion, margin, std::nullopt);
  check_solve_args(a, iters, eps);
  SolveOutputs outs = empty_solve_outputs(a);
  auto& [W, rho, its, converged, failed, rejected] = outs;
  AT_DISPATCH_FLOATING_TYPES(a.img.scalar_type(), "ecc_solve_gpu", [&] {
    const int err = launch(a.img.const_data_ptr<scalar_t>(), a.tmpl.const_data_ptr<scalar_t>(),
                           a.M.const_data_ptr<double>(), a.N, a.H, a.W, static_cast<int>(motion), margin, iters, eps,
                           safeguards, from_identity, coarse, W.mutable_data_ptr<double>(), rho.mutable_data_ptr<double>(),
                           its.mutable_data_ptr<int64_t>(), converged.mutable_data_ptr<bool>(),
                           failed.mutable_data_ptr<bool>(), rejected.mutable_data_ptr<bool>(), stream);
    TORCH_CHECK(err == 0, "ecc_solve failed to launch (error ", err, ")");
  });
  return outs;
}

}  // namespace ecc
}  // namespace pyadv
