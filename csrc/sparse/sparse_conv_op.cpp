// The incremental conv stage op: checks, the CPU loop over (group, block of candidates)
// (sparse_conv_cpu_kernel.cpp); the CUDA build and the emulator reuse check_stage.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../common/cpu_isa.h"
#include "../common/huge_pages.h"
#include "../common/value_checks.h"
#include "sparse_conv_cpu_kernel.h"
#include "sparse_conv_op.h"

PYADV_DECLARE_SPARSE_CONV_CPU_KERNELS(isa_baseline)
#if defined(PYADV_HAVE_AVX2)
PYADV_DECLARE_SPARSE_CONV_CPU_KERNELS(isa_avx2)
#endif
#if defined(PYADV_HAVE_AVX512)
PYADV_DECLARE_SPARSE_CONV_CPU_KERNELS(isa_avx512)
#endif

namespace pyadv {
namespace sparse_conv {

namespace {

void check_index(const at::Tensor& t, const char* name, int64_t G, int64_t hi, const at::Tensor& like) {
  TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == G, name, " must have shape [G, ...] with G = ", G, " (delta's "
                    "groups), got ", t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == at::kInt, name, " must be int32, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == like.device(), name, " is on ", t.device(), " but delta is on ", like.device());
  if (t.numel() && check_values_of(t)) {
    const auto [mn, mx] = at::aminmax(t);
    TORCH_CHECK_VALUE(mn.item<int>() >= -1 && mx.item<int64_t>() < hi, name, " must hold -1 or indices in [0, ", hi,
                      "), got values in [", mn.item<int>(), ", ", mx.item<int>(), "]");
  }
}

}  // namespace

StageArgs check_stage(const at::Tensor& delta, const at::Tensor& slots, const at::Tensor& outpos,
                      const at::Tensor& base, const at::Tensor& weight, int64_t in_w, int64_t pad_h, int64_t pad_w,
                      int64_t pool, bool relu) {
  TORCH_CHECK_VALUE(delta.dim() == 4, "delta must be [G, N, A, Cin] (groups, candidates, changed positions, "
                    "channels), got ", delta.sizes());
  TORCH_CHECK_TYPE(delta.scalar_type() == at::kFloat || delta.scalar_type() == at::kDouble,
                   "delta must be float32 or float64, got ", delta.scalar_type());
  const int64_t G = delta.size(0), N = delta.size(1), A = delta.size(2), Cin = delta.size(3);
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(2) == Cin && weight.size(0) >= 1 && weight.size(1) >= 1,
                    "weight must be [kh, kw, Cin, Cout] with Cin = ", Cin, " (delta's channels), got ", weight.sizes());
  for (const auto& [t, name] : {std::pair<const at::Tensor&, const char*>{base, "base"}, {weight, "weight"}}) {
    TORCH_CHECK_TYPE(t.scalar_type() == delta.scalar_type(), name, " must have delta's dtype ", delta.scalar_type(),
                     ", got ", t.scalar_type());
    TORCH_CHECK_VALUE(t.device() == delta.device(), name, " is on ", t.device(), " but delta is on ", delta.device());
  }
  TORCH_CHECK_VALUE(in_w >= 1, "in_w (the input width) must be >= 1, got ", in_w);
  TORCH_CHECK_VALUE(pad_h >= 0 && pad_w >= 0, "pad_h and pad_w must be >= 0, got ", pad_h, " and ", pad_w);
  TORCH_CHECK_VALUE(pool >= 1, "pool (the max-pool kernel and stride; 1: none) must be >= 1, got ", pool);
  TORCH_CHECK_VALUE(slots.dim() == 2 && slots.size(1) % in_w == 0 && slots.size(1) >= in_w,
                    "slots must be [G, Hin * Win] with Win = in_w = ", in_w, ", got ", slots.sizes());
  SparseConvGeometry g{};
  g.Hin = slots.size(1) / in_w;
  g.Win = in_w;
  g.Cin = Cin;
  g.kh = weight.size(0);
  g.kw = weight.size(1);
  g.ph = pad_h;
  g.pw = pad_w;
  g.Cout = weight.size(3);
  g.Hc = g.Hin + 2 * pad_h - g.kh + 1;
  g.Wc = g.Win + 2 * pad_w - g.kw + 1;
  g.pool = pool;
  g.Wp = g.Wc / pool;
  g.relu = relu;
  TORCH_CHECK_VALUE(g.Hc >= pool && g.Wc >= pool, "the conv output (", g.Hc, " x ", g.Wc, ") must hold at least one ",
                    pool, " x ", pool, " pool window");
  TORCH_CHECK_VALUE(base.dim() == 3 && base.size(0) == G && base.size(1) == g.Hc * g.Wc && base.size(2) == g.Cout,
                    "base must be [G, Hc * Wc, Cout] = [", G, ", ", g.Hc * g.Wc, ", ", g.Cout, "], got ", base.sizes());
  check_index(slots, "slots", G, A, delta);
  check_index(outpos, "outpos", G, (g.Hc / pool) * g.Wp, delta);
  return {delta.contiguous(), slots.contiguous(), outpos.contiguous(), base.contiguous(), weight.contiguous(), g,
          G, N, A, outpos.size(1)};
}

namespace {

at::Tensor sparse_conv_stage_cpu(const at::Tensor& delta, const at::Tensor& slots, const at::Tensor& outpos,
                                 const at::Tensor& base, const at::Tensor& weight, int64_t in_w, int64_t pad_h,
                                 int64_t pad_w, int64_t pool, bool relu) {
  const StageArgs a = check_stage(delta, slots, outpos, base, weight, in_w, pad_h, pad_w, pool, relu);
  at::Tensor out = at::empty({a.G, a.N, a.Q, a.g.Cout}, a.delta.options());
  advise_huge_pages(out.data_ptr(), out.nbytes());
  constexpr int64_t kBlock = 4;  // the kernel's candidate block: a work item never splits one
  const int64_t blocks = (a.N + kBlock - 1) / kBlock;
  AT_DISPATCH_FLOATING_TYPES(a.delta.scalar_type(), "sparse_conv_stage_cpu", [&] {
    const scalar_t* d = a.delta.const_data_ptr<scalar_t>();
    const scalar_t* b = a.base.const_data_ptr<scalar_t>();
    const scalar_t* w = a.weight.const_data_ptr<scalar_t>();
    const int32_t* sl = a.slots.const_data_ptr<int32_t>();
    const int32_t* op = a.outpos.const_data_ptr<int32_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, a.G * blocks, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t grp = i / blocks, n0 = (i % blocks) * kBlock, n1 = std::min(a.N, n0 + kBlock);
        PYADV_ISA_DISPATCH(isa_ns::sparse_conv::stage_rows<scalar_t>(
            a.g, sl + grp * a.g.Hin * a.g.Win, op + grp * a.Q, a.Q, d + grp * a.N * a.A * a.g.Cin, a.A,
            b + grp * a.g.Hc * a.g.Wc * a.g.Cout, w, o + grp * a.N * a.Q * a.g.Cout, n0, n1));
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyadv, CPU, m) { m.impl("sparse_conv_stage", &sparse_conv_stage_cpu); }

}  // namespace sparse_conv
}  // namespace pyadv
