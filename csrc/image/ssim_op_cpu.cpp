// CPU implementations of the SSIM ops: planes (image, channel) in parallel, the active
// instruction-set variant of the fused kernels in each.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "../common/cpu_isa.h"
#include "../common/huge_pages.h"
#include "ssim_cpu_kernel.h"
#include "ssim_op.h"

PYADV_DECLARE_SSIM_CPU_KERNELS(isa_baseline)
#if defined(PYADV_HAVE_AVX2)
PYADV_DECLARE_SSIM_CPU_KERNELS(isa_avx2)
#endif
#if defined(PYADV_HAVE_AVX512)
PYADV_DECLARE_SSIM_CPU_KERNELS(isa_avx512)
#endif

namespace pyadv {
namespace ssim {
namespace {

// (score [B], map [B, C, Hv, Wv] or empty, partials [B, C, 5, Hv, Wv] or empty).
std::tuple<at::Tensor, at::Tensor, at::Tensor> ssim_forward_cpu(const at::Tensor& x_in, const at::Tensor& y_in,
                                                                int64_t win, double sigma, double K1, double K2,
                                                                double data_range, bool want_map,
                                                                bool want_partials) {
  const SsimDims d = check_ssim(x_in, y_in, win, sigma, K1, K2, data_range);
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous();
  const std::vector<double> g = gaussian_window(win, sigma);
  at::Tensor map = want_map ? at::empty({d.B, d.C, d.Hv, d.Wv}, x.options()) : at::Tensor();
  at::Tensor partials = want_partials ? at::empty({d.B, d.C, 5, d.Hv, d.Wv}, x.options()) : at::Tensor();
  std::vector<double> sums(d.B * d.C, 0.0);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ssim_forward_cpu", [&] {
    const scalar_t C1 = scalar_t((K1 * data_range) * (K1 * data_range));
    const scalar_t C2 = scalar_t((K2 * data_range) * (K2 * data_range));
    at::parallel_for(0, d.B * d.C, 1, [&](int64_t p0, int64_t p1) {
      std::vector<scalar_t> work(ssim_cpu::ssim_cpu_workspace<scalar_t>(d.W, win));
      for (int64_t p = p0; p < p1; ++p) {
        const scalar_t* xp = x.const_data_ptr<scalar_t>() + p * d.H * d.W;
        const scalar_t* yp = y.const_data_ptr<scalar_t>() + p * d.H * d.W;
        scalar_t* mp = want_map ? map.mutable_data_ptr<scalar_t>() + p * d.Hv * d.Wv : nullptr;
        scalar_t* pp = want_partials ? partials.mutable_data_ptr<scalar_t>() + p * 5 * d.Hv * d.Wv : nullptr;
        PYADV_ISA_DISPATCH(sums[p] = isa_ns::ssim::forward_plane<scalar_t>(xp, yp, d.H, d.W, g.data(),
                                                                           static_cast<int>(win), C1, C2, mp, pp,
                                                                           work.data()));
      }
    });
  });
  at::Tensor score = at::empty({d.B}, x.options().dtype(at::kDouble));
  double* s = score.mutable_data_ptr<double>();
  for (int64_t b = 0; b < d.B; ++b) {
    double t = 0;
    for (int64_t c = 0; c < d.C; ++c) {
      // S is finite for finite images (both denominators are at least C1 and C2), so a
      // non-finite sum means NaN or Inf in the plane: found at no extra cost.
      TORCH_CHECK_VALUE(std::isfinite(sums[b * d.C + c]), "x and y must be finite: image ", b, ", channel ", c,
                        " holds NaN or Inf");
      t += sums[b * d.C + c];
    }
    s[b] = t / double(d.C * d.Hv * d.Wv);
  }
  return {score.to(x.scalar_type()), map.defined() ? map : at::empty({0}, x.options()),
          partials.defined() ? partials : at::empty({0}, x.options())};
}

// d(score)/d(x, y) weighted by grad [B], the forward recomputed inside (nothing saved).
std::tuple<at::Tensor, at::Tensor> ssim_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                     const at::Tensor& y_in, int64_t win, double sigma, double K1,
                                                     double K2, double data_range) {
  const SsimDims d = check_ssim(x_in, y_in, win, sigma, K1, K2, data_range);
  TORCH_CHECK_VALUE(grad_in.dim() == 1 && grad_in.size(0) == d.B, "grad must have shape [B], got ", grad_in.sizes());
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous();
  const at::Tensor grad = grad_in.to(at::kDouble).contiguous();
  const std::vector<double> g = gaussian_window(win, sigma);
  at::Tensor dx = at::empty_like(x), dy = at::empty_like(y);
  advise_huge_pages(dx.data_ptr(), dx.nbytes());
  advise_huge_pages(dy.data_ptr(), dy.nbytes());
  const double* gr = grad.const_data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ssim_backward_cpu", [&] {
    const scalar_t C1 = scalar_t((K1 * data_range) * (K1 * data_range));
    const scalar_t C2 = scalar_t((K2 * data_range) * (K2 * data_range));
    at::parallel_for(0, d.B * d.C, 1, [&](int64_t p0, int64_t p1) {
      std::vector<scalar_t> work(ssim_cpu::ssim_cpu_workspace<scalar_t>(d.W, win));
      for (int64_t p = p0; p < p1; ++p) {
        const double scale = gr[p / d.C] / double(d.C * d.Hv * d.Wv);
        const int64_t off = p * d.H * d.W;
        PYADV_ISA_DISPATCH(isa_ns::ssim::backward_plane<scalar_t>(
            x.const_data_ptr<scalar_t>() + off, y.const_data_ptr<scalar_t>() + off, d.H, d.W, g.data(),
            static_cast<int>(win), C1, C2, scale, dx.mutable_data_ptr<scalar_t>() + off,
            dy.mutable_data_ptr<scalar_t>() + off, work.data()));
      }
    });
  });
  return {dx, dy};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyadv, CPU, m) {
  m.impl("ssim_forward", &ssim_forward_cpu);
  m.impl("ssim_backward", &ssim_backward_cpu);
}

}  // namespace ssim
}  // namespace pyadv
