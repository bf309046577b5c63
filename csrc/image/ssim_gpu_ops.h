// The torch side of the SSIM ops on a GPU-style backend, written once for the CUDA launchers
// (ssim_op_cuda.cpp) and the emulated ones (emu/emu_module.cpp). L forwards to
// pyadv::cuda::ssim or pyadv::emulated::ssim.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "../common/value_checks.h"
#include "ssim_gpu.h"
#include "ssim_op.h"

namespace pyadv {
namespace ssim {

#define PYADV_SSIM_GPU_POLICY(NAME, NS)                                       \
  struct NAME {                                                               \
    template <typename T, typename... A>                                      \
    static int forward(A... a) { return NS::ssim::forward<T>(a...); }         \
    template <typename T, typename... A>                                      \
    static int backward(A... a) { return NS::ssim::backward<T>(a...); }       \
  }

// The Gaussian window on a device, uploaded once per (window, sigma, device) and kept: a copy
// from pageable host memory on every call would synchronise with the stream. Deliberately never
// freed (a static CUDA tensor destroyed after the CUDA runtime at exit is a crash).
inline at::Tensor device_window(int64_t win, double sigma, const at::Device& device) {
  static std::mutex mu;
  static auto* cache = new std::map<std::tuple<int64_t, double, int, int>, at::Tensor>();
  const auto key = std::make_tuple(win, sigma, static_cast<int>(device.type()), static_cast<int>(device.index()));
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(key);
  if (it == cache->end())
    it = cache->emplace(key, at::tensor(gaussian_window(win, sigma), at::TensorOptions().dtype(at::kDouble)).to(device))
             .first;
  return it->second;
}

template <class L>
std::tuple<at::Tensor, at::Tensor, at::Tensor> ssim_forward_gpu(const at::Tensor& x_in, const at::Tensor& y_in,
                                                                int64_t win, double sigma, double K1, double K2,
                                                                double data_range, bool want_map, bool want_partials,
                                                                void* stream) {
  const SsimDims d = check_ssim(x_in, y_in, win, sigma, K1, K2, data_range);
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous();
  const at::Tensor g = device_window(win, sigma, x.device());
  at::Tensor map = at::empty({d.B, d.C, d.Hv, d.Wv}, x.options());
  at::Tensor partials = want_partials ? at::empty({d.B, d.C, 5, d.Hv, d.Wv}, x.options()) : at::empty({0}, x.options());
  // Per-plane means, the centring constants (summed in double like the CPU kernels').
  const at::Tensor centers = at::stack({at::mean(x.reshape({d.B * d.C, d.H * d.W}), {1}, false, at::kDouble),
                                        at::mean(y.reshape({d.B * d.C, d.H * d.W}), {1}, false, at::kDouble)},
                                       1)
                                 .to(x.scalar_type())
                                 .contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ssim_forward_gpu", [&] {
    const scalar_t C1 = scalar_t((K1 * data_range) * (K1 * data_range));
    const scalar_t C2 = scalar_t((K2 * data_range) * (K2 * data_range));
    const int err = L::template forward<scalar_t>(
        x.const_data_ptr<scalar_t>(), y.const_data_ptr<scalar_t>(), centers.const_data_ptr<scalar_t>(), d.B * d.C, d.H,
        d.W, g.const_data_ptr<double>(),
        static_cast<int>(win), C1, C2, map.mutable_data_ptr<scalar_t>(),
        want_partials ? partials.mutable_data_ptr<scalar_t>() : nullptr, stream);
    TORCH_CHECK(err == 0, "ssim forward failed to launch (error ", err, ")");
  });
  const at::Tensor score = map.to(at::kDouble).mean({1, 2, 3}).to(x.scalar_type());
  // S is finite for finite images, so this finds NaN or Inf in x or y (one device sync).
  TORCH_CHECK_VALUE(d.B == 0 || !check_values_of(score) || at::isfinite(score).all().item<bool>(),
                    "x and y must be finite: image ",
                    at::isfinite(score).logical_not().nonzero().min().item<int64_t>(), " holds NaN or Inf");
  return {score, want_map ? map : at::empty({0}, x.options()), partials};
}

// The GPU backward keeps the forward's partials for the duration of the call only: the forward
// kernel writes them, the tiled backward kernel reads them.
template <class L>
std::tuple<at::Tensor, at::Tensor> ssim_backward_gpu(const at::Tensor& grad, const at::Tensor& x_in,
                                                     const at::Tensor& y_in, int64_t win, double sigma, double K1,
                                                     double K2, double data_range, void* stream) {
  const SsimDims d = check_ssim(x_in, y_in, win, sigma, K1, K2, data_range);
  TORCH_CHECK_VALUE(grad.dim() == 1 && grad.size(0) == d.B, "grad must have shape [B], got ", grad.sizes());
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous();
  const at::Tensor partials =
      std::get<2>(ssim_forward_gpu<L>(x, y, win, sigma, K1, K2, data_range, false, true, stream));
  const at::Tensor g = device_window(win, sigma, x.device());
  const at::Tensor scale =
      (grad.to(at::kDouble) / double(d.C * d.Hv * d.Wv)).repeat_interleave(d.C).contiguous();
  at::Tensor dx = at::empty_like(x), dy = at::empty_like(y);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ssim_backward_gpu", [&] {
    const int err = L::template backward<scalar_t>(
        x.const_data_ptr<scalar_t>(), y.const_data_ptr<scalar_t>(), partials.const_data_ptr<scalar_t>(),
        scale.const_data_ptr<double>(), d.B * d.C, d.H, d.W, g.const_data_ptr<double>(), static_cast<int>(win),
        dx.mutable_data_ptr<scalar_t>(), dy.mutable_data_ptr<scalar_t>(), stream);
    TORCH_CHECK(err == 0, "ssim backward failed to launch (error ", err, ")");
  });
  return {dx, dy};
}

}  // namespace ssim
}  // namespace pyadv
