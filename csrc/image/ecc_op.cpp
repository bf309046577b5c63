// The ECC ops: checks, and the CPU implementations of the inner step (ecc_moments, the math of
// ecc_math.h), of the whole alignment (ecc_solve, ecc_solve_math.h) and of the pre-filter. Each
// pair's rows are summed in row bands whose number depends only on the image size, and the bands are
// added in order, so the sums are the same for any thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <optional>
#include <tuple>
#include <vector>

#include "../common/value_checks.h"
#include "../common/cpu_isa.h"
#include "../common/huge_pages.h"
#include "../common/parallel_dynamic.h"
#include "ecc_cpu_kernel.h"
#include "ecc_math.h"
#include "ecc_op.h"
#include "ecc_solve_math.h"

PYADV_DECLARE_ECC_CPU_KERNELS(isa_baseline)
#if defined(PYADV_HAVE_AVX2)
PYADV_DECLARE_ECC_CPU_KERNELS(isa_avx2)
#endif
#if defined(PYADV_HAVE_AVX512)
PYADV_DECLARE_ECC_CPU_KERNELS(isa_avx512)
#endif

namespace pyadv {
namespace ecc {

EccArgs check_ecc(const at::Tensor& img, const at::Tensor& tmpl, const at::Tensor& M, int64_t motion, int64_t margin,
                  const std::optional<at::Tensor>& ids_in, bool keep_channels_last) {
  TORCH_CHECK_VALUE(motion >= 0 && motion <= 3,
                    "motion must be 0 (translation), 1 (euclidean), 2 (affine) or 3 (homography), got ", motion);
  TORCH_CHECK_VALUE(margin >= 0, "margin must be >= 0, got ", margin);
  TORCH_CHECK_VALUE(img.dim() == 4 && img.size(1) == 3,
                    "img must be [B, 3, H, W] (image, x-gradient, y-gradient), got ", img.sizes());
  TORCH_CHECK_TYPE(img.scalar_type() == at::kFloat || img.scalar_type() == at::kDouble,
                   "img must be float32 or float64, got ", img.scalar_type());
  TORCH_CHECK_VALUE(tmpl.dim() == 3 && tmpl.size(0) == img.size(0) && tmpl.size(1) == img.size(2) &&
                        tmpl.size(2) == img.size(3),
                    "tmpl must be [B, H, W] = [", img.size(0), ", ", img.size(2), ", ", img.size(3), "], got ",
                    tmpl.sizes());
  TORCH_CHECK_TYPE(tmpl.scalar_type() == img.scalar_type(), "tmpl must have img's dtype ", img.scalar_type(),
                   ", got ", tmpl.scalar_type());
  at::Tensor ids;
  int64_t N = img.size(0);
  if (ids_in.has_value() && ids_in->defined()) {
    TORCH_CHECK_VALUE(ids_in->dim() == 1, "ids must be 1-D, got ", ids_in->sizes());
    TORCH_CHECK_TYPE(ids_in->scalar_type() == at::kLong, "ids must be int64, got ", ids_in->scalar_type());
    TORCH_CHECK_VALUE(ids_in->device() == img.device(), "ids is on ", ids_in->device(), " but img is on ",
                      img.device());
    ids = ids_in->contiguous();
    N = ids.numel();
    if (N && check_values_of(ids)) {
      const auto lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
      TORCH_CHECK_VALUE(lo >= 0 && hi < img.size(0), "ids must lie in [0, ", img.size(0), "), got values in [", lo,
                        ", ", hi, "]");
    }
  }
  TORCH_CHECK_VALUE(M.dim() == 3 && M.size(0) == N && M.size(1) == 3 && M.size(2) == 3,
                    "M must have shape [N, 3, 3] with N = ", N, " (the pairs computed), got ", M.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(M.scalar_type()), "M must be floating point, got ", M.scalar_type());
  TORCH_CHECK_VALUE(M.device() == img.device() && tmpl.device() == img.device(),
                    "img, tmpl and M must be on one device, got ", img.device(), ", ", tmpl.device(), ", ",
                    M.device());
  const bool cl = keep_channels_last && img.is_contiguous(at::MemoryFormat::ChannelsLast);
  return {cl ? img : img.contiguous(), tmpl.contiguous(), M.to(at::kDouble).contiguous(), ids, img.size(0), N, img.size(2),
          img.size(3), ecc_math::n_stats(static_cast<int>(motion))};
}

SolveOutputs empty_solve_outputs(const EccArgs& a) {
  const auto f64 = a.img.options().dtype(at::kDouble);
  at::Tensor converged = at::empty({a.N}, f64.dtype(at::kBool));
  return {at::empty({a.N, 3, 3}, f64), at::empty({a.N}, f64), at::empty({a.N}, f64.dtype(at::kLong)), converged,
          at::empty_like(converged), at::empty_like(converged)};
}

void check_solve_args(const EccArgs& a, int64_t iters, double eps) {
  TORCH_CHECK_VALUE(iters >= 1, "iters must be >= 1, got ", iters);
  TORCH_CHECK_VALUE(eps >= 0, "eps must be >= 0, got ", eps);
  TORCH_CHECK_VALUE(a.N == a.B, "M must hold one warp per pair, [", a.B, ", 3, 3]");
}

namespace {

constexpr int64_t kBands = 16;
constexpr int64_t kBandPixels = 4096;

// Row bands of at least kBandPixels pixels (the per-band set-up costs about a microsecond), at
// most kBands; the count depends on the image size only.
int64_t bands_for(int64_t H, int64_t W) {
  int64_t bands = (H * W) / kBandPixels;
  bands = bands < 1 ? 1 : bands > kBands ? kBands : bands;
  return bands > H ? (H > 0 ? H : 1) : bands;
}

at::Tensor ecc_moments_cpu(const at::Tensor& img_in, const at::Tensor& tmpl_in, const at::Tensor& M_in,
                           int64_t motion, int64_t margin, const std::optional<at::Tensor>& ids) {
  // A channels-last img ([B, H, W, 3] in memory, as ecc_prefilter writes it) is read in place:
  // a pixel's three values share a cache line, which the corner reads of the warp favour.
  const EccArgs a = check_ecc(img_in, tmpl_in, M_in, motion, margin, ids, /*keep_channels_last=*/true);
  const bool interleaved = !a.img.is_contiguous();
  const int64_t bands = bands_for(a.H, a.W), rows = (a.H + bands - 1) / bands;
  std::vector<double> part(a.N * bands * a.K, 0.0);
  const int64_t* idp = a.ids.defined() ? a.ids.const_data_ptr<int64_t>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES(a.img.scalar_type(), "ecc_moments_cpu", [&] {
    const scalar_t* img = a.img.const_data_ptr<scalar_t>();
    const scalar_t* tmpl = a.tmpl.const_data_ptr<scalar_t>();
    const double* M = a.M.const_data_ptr<double>();
    const int64_t P = a.H * a.W;
    at::parallel_for(0, a.N * bands, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t b = i / bands, y0 = (i % bands) * rows, y1 = y0 + rows < a.H ? y0 + rows : a.H;
        const int64_t pair = idp ? idp[b] : b;
        PYADV_ISA_DISPATCH(isa_ns::ecc::moments_rows<scalar_t>(img + pair * 3 * P, tmpl + pair * P, a.H, a.W, y0, y1,
                                                               M + 9 * b, static_cast<int>(motion), margin,
                                                               interleaved, part.data() + i * a.K));
      }
    });
  });
  at::Tensor out = at::zeros({a.N, a.K}, a.img.options().dtype(at::kDouble));
  double* o = out.mutable_data_ptr<double>();
  for (int64_t b = 0; b < a.N; ++b)
    for (int64_t j = 0; j < bands; ++j)
      for (int64_t k = 0; k < a.K; ++k) o[b * a.K + k] += part[(b * bands + j) * a.K + k];
  return out;
}

// ECC alignment of every pair, the iterations and the safeguards of ecc_solve_math.h's
// solve_pair in one call, in parallel over the pairs. A pair's sums are ecc_moments' own (the
// same bands, added in the same order), so each iteration sees what the torch loop in ecc.py
// would; only the small solves differ in rounding (LU here, LAPACK's inverse there).
SolveOutputs ecc_solve_cpu(
    const at::Tensor& img_in, const at::Tensor& tmpl_in, const at::Tensor& M_in, int64_t motion, int64_t margin,
    int64_t iters, double eps, bool safeguards, bool from_identity, bool coarse) {
  const EccArgs a = check_ecc(img_in, tmpl_in, M_in, motion, margin, std::nullopt, /*keep_channels_last=*/true);
  check_solve_args(a, iters, eps);
  const bool interleaved = !a.img.is_contiguous();
  const int64_t bands = bands_for(a.H, a.W), rows = (a.H + bands - 1) / bands;
  SolveOutputs outs = empty_solve_outputs(a);
  auto& [W, rho, its, converged, failed, rejected] = outs;
  AT_DISPATCH_FLOATING_TYPES(a.img.scalar_type(), "ecc_solve_cpu", [&] {
    const scalar_t* img = a.img.const_data_ptr<scalar_t>();
    const scalar_t* tmpl = a.tmpl.const_data_ptr<scalar_t>();
    const double* M = a.M.const_data_ptr<double>();
    const int64_t P = a.H * a.W;
    double* Wo = W.mutable_data_ptr<double>();
    double* ro = rho.mutable_data_ptr<double>();
    int64_t* io = its.mutable_data_ptr<int64_t>();
    bool* co = converged.mutable_data_ptr<bool>();
    bool* fo = failed.mutable_data_ptr<bool>();
    bool* jo = rejected.mutable_data_ptr<bool>();
    // pairs take 2 to 50 steps: blocks of a few pairs go to whichever thread is free
    parallel_for_dynamic(0, a.N, 4, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        auto sums_at = [&](const double* Wp, int mot, double* S) {
          const int K = ecc_math::n_stats(mot);
          double part[ecc_math::kMaxStats];
          for (int k = 0; k < K; ++k) S[k] = 0.0;
          for (int64_t j = 0; j < bands; ++j) {
            const int64_t y0 = j * rows, y1 = y0 + rows < a.H ? y0 + rows : a.H;
            for (int k = 0; k < K; ++k) part[k] = 0.0;
            PYADV_ISA_DISPATCH(isa_ns::ecc::moments_rows<scalar_t>(img + b * 3 * P, tmpl + b * P, a.H, a.W, y0, y1,
                                                                   Wp, mot, margin, interleaved, part));
            for (int k = 0; k < K; ++k) S[k] += part[k];
          }
        };
        ecc_solve::PairResult r;
        ecc_solve::solve_pair(sums_at, static_cast<int>(motion), M + 9 * b, from_identity, iters, eps, safeguards,
                              coarse, &r);
        ecc_solve::store(r, b, Wo, ro, io, co, fo, jo);
      }
    });
  });
  return outs;
}

// The pre-filtering of ECC (as cv::findTransformECC): both images through the separable
// Gaussian k with reflect-101 borders, and the image's central-difference gradients (0 on the
// edges under reflect-101). template, image [B, H, W] float32 -> T [B, H, W], stack [B, 3, H, W]
// (image, x-gradient, y-gradient). CPU only: on CUDA the torch ops do this step.
std::tuple<at::Tensor, at::Tensor> ecc_prefilter_cpu(const at::Tensor& tmpl_in, const at::Tensor& img_in,
                                                     const at::Tensor& k_in) {
  TORCH_CHECK_VALUE(tmpl_in.dim() == 3 && img_in.sizes() == tmpl_in.sizes(),
                    "template and image must both be [B, H, W], got ", tmpl_in.sizes(), " and ", img_in.sizes());
  TORCH_CHECK_TYPE(tmpl_in.scalar_type() == at::kFloat && img_in.scalar_type() == at::kFloat,
                   "template and image must be float32");
  TORCH_CHECK_VALUE(k_in.dim() == 1 && k_in.numel() % 2 == 1, "kernel must be 1-D of odd length, got ", k_in.sizes());
  const at::Tensor t = tmpl_in.contiguous(), im = img_in.contiguous();
  const at::Tensor kf = k_in.to(at::kFloat).contiguous();
  const int64_t B = t.size(0), H = t.size(1), W = t.size(2), r = kf.numel() / 2, P = H * W;
  at::Tensor T = at::empty({B, H, W}, t.options()), S = at::empty({B, 3, H, W}, t.options());
  advise_huge_pages(T.data_ptr(), T.nbytes());  // fresh outputs of several MB: fewer page faults
  advise_huge_pages(S.data_ptr(), S.nbytes());
  const float* k = kf.const_data_ptr<float>();
  const float* tp = t.const_data_ptr<float>();
  const float* ip = im.const_data_ptr<float>();
  float* To = T.mutable_data_ptr<float>();
  float* So = S.mutable_data_ptr<float>();
  at::parallel_for(0, 2 * B, 1, [&](int64_t j0, int64_t j1) {
    std::vector<float> work(ecc_prefilter_workspace(H, W, r));
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t b = j / 2;
      const bool image = j % 2;
      const float* src = (image ? ip : tp) + b * P;
      float* out = image ? So + b * 3 * P : To + b * P;
      PYADV_ISA_DISPATCH(isa_ns::ecc::prefilter_plane(src, H, W, k, r, out, image ? out + P : nullptr,
                                                      image ? out + 2 * P : nullptr, work.data()));
    }
  });
  return {T, S};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyadv, CPU, m) {
  m.impl("ecc_moments", &ecc_moments_cpu);
  m.impl("ecc_prefilter", &ecc_prefilter_cpu);
  m.impl("ecc_solve", &ecc_solve_cpu);
}

}  // namespace ecc
}  // namespace pyadv
