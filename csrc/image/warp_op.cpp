// The perspective-warp op: checks, the CPU loop over output rows (warp_cpu_kernel.cpp),
// and, on a CUDA build, the CUDA implementation; the emulator reuses run_warp_gpu.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../common/value_checks.h"
#include "../common/cpu_isa.h"
#include "../common/huge_pages.h"
#include "warp_cpu_kernel.h"
#include "warp_gpu.h"
#include "warp_math.h"
#include "warp_op.h"

PYADV_DECLARE_WARP_CPU_KERNELS(isa_baseline)
#if defined(PYADV_HAVE_AVX2)
PYADV_DECLARE_WARP_CPU_KERNELS(isa_avx2)
#endif
#if defined(PYADV_HAVE_AVX512)
PYADV_DECLARE_WARP_CPU_KERNELS(isa_avx512)
#endif

namespace pyadv {
namespace warp {

WarpArgs check_warp(const at::Tensor& img, const at::Tensor& M, int64_t out_h, int64_t out_w) {
  TORCH_CHECK_VALUE(img.dim() == 4, "img must be an image batch [B, C, H, W], got ", img.sizes());
  TORCH_CHECK_TYPE(img.scalar_type() == at::kFloat || img.scalar_type() == at::kDouble,
                   "img must be float32 or float64, got ", img.scalar_type());
  TORCH_CHECK_VALUE(M.dim() == 3 && M.size(0) == img.size(0) && M.size(1) == 3 && M.size(2) == 3,
                    "M must have shape [B, 3, 3] with B = ", img.size(0), ", got ", M.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(M.scalar_type()), "M must be floating point, got ", M.scalar_type());
  TORCH_CHECK_VALUE(M.device() == img.device(), "M is on ", M.device(), " but img is on ", img.device());
  TORCH_CHECK_VALUE(out_h >= 0 && out_w >= 0, "the output size must be >= 0, got ", out_h, " x ", out_w);
  if (M.numel() && check_values_of(M)) TORCH_CHECK_VALUE(at::isfinite(M).all().item<bool>(), "M holds NaN or Inf");
  return {img.contiguous(), M.to(at::kDouble).contiguous(), img.size(0), img.size(1), img.size(2), img.size(3)};
}

namespace {

at::Tensor warp_perspective_cpu(const at::Tensor& img_in, const at::Tensor& M_in, int64_t out_h, int64_t out_w) {
  const WarpArgs a = check_warp(img_in, M_in, out_h, out_w);
  at::Tensor out = at::empty({a.B, a.C, out_h, out_w}, a.img.options());
  advise_huge_pages(out.data_ptr(), out.nbytes());
  AT_DISPATCH_FLOATING_TYPES(a.img.scalar_type(), "warp_perspective_cpu", [&] {
    const scalar_t* img = a.img.const_data_ptr<scalar_t>();
    const double* M = a.M.const_data_ptr<double>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, a.B * out_h, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row) {
        const int64_t b = row / out_h, y = row % out_h;
        PYADV_ISA_DISPATCH(isa_ns::warp::warp_row<scalar_t>(img + b * a.C * a.H * a.W, a.C, a.H, a.W, M + 9 * b,
                                                             o + b * a.C * out_h * out_w, out_h, out_w, y));
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyadv, CPU, m) { m.impl("warp_perspective", &warp_perspective_cpu); }

}  // namespace warp
}  // namespace pyadv
