// Checks of the perspective-warp op, and its GPU-style glue for the CUDA build and the emulator.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "warp_gpu.h"

namespace pyadv {
namespace warp {

struct WarpArgs {
  at::Tensor img, M;  // contiguous; M as double
  int64_t B, C, H, W;
};

WarpArgs check_warp(const at::Tensor& img, const at::Tensor& M, int64_t out_h, int64_t out_w);

// Launch(T*...) forwards to pyadv::cuda::warp::warp or pyadv::emulated::warp::warp.
template <typename Launch>
at::Tensor warp_gpu(const at::Tensor& img, const at::Tensor& M, int64_t out_h, int64_t out_w, void* stream,
                    Launch launch) {
  const WarpArgs a = check_warp(img, M, out_h, out_w);
  at::Tensor out = at::empty({a.B, a.C, out_h, out_w}, a.img.options());
  AT_DISPATCH_FLOATING_TYPES(a.img.scalar_type(), "warp_perspective_gpu", [&] {
    const int err = launch(a.img.const_data_ptr<scalar_t>(), a.M.const_data_ptr<double>(),
                           out.mutable_data_ptr<scalar_t>(), a.B, a.C, a.H, a.W, out_h, out_w, stream);
    TORCH_CHECK(err == 0, "warp_perspective failed to launch (error ", err, ")");
  });
  return out;
}

}  // namespace warp
}  // namespace pyadv
