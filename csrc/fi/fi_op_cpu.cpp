// CPU implementations of the FI ops: checks, then the active instruction-set variant of the
// kernels over (image, tile) work items in parallel.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <limits>

#include "../common/cpu_isa.h"
#include "fi_cpu_kernel.h"
#include "fi_group_cpu_kernel.h"
#include "fi_op.h"

PYADV_DECLARE_FI_CPU_KERNELS(isa_baseline)
PYADV_DECLARE_FI_GROUP_CPU_KERNELS(isa_baseline)
#if defined(PYADV_HAVE_AVX2)
PYADV_DECLARE_FI_CPU_KERNELS(isa_avx2)
PYADV_DECLARE_FI_GROUP_CPU_KERNELS(isa_avx2)
#endif
#if defined(PYADV_HAVE_AVX512)
PYADV_DECLARE_FI_CPU_KERNELS(isa_avx512)
PYADV_DECLARE_FI_GROUP_CPU_KERNELS(isa_avx512)
#endif

namespace pyadv {
namespace fi {
namespace {

// Work items per task so each task streams at least ~64 KiB of J.
int64_t grain_for(int64_t classes, int64_t elem_size) {
  return std::max<int64_t>(1, (64 * 1024) / std::max<int64_t>(1, classes * fi_cpu::kTile * elem_size));
}

// Keeps the smallest non-negative image index reported by any task.
struct FirstBad {
  std::atomic<int64_t> v{std::numeric_limits<int64_t>::max()};
  void offer(int64_t b) {
    if (b < 0) return;
    int64_t cur = v.load();
    while (b < cur && !v.compare_exchange_weak(cur, b)) {
    }
  }
  bool any() const { return v.load() != std::numeric_limits<int64_t>::max(); }
};

at::Tensor pixel_fi_cpu(const at::Tensor& jac_in, const at::Tensor& probs_in, const at::Tensor& target_in, double eps,
                        double rank_tol) {
  const FiInputs in = check_inputs(jac_in, probs_in, target_in, 0, /*full=*/true, eps, rank_tol);
  at::Tensor out = at::empty({in.B, in.P}, in.jac.options());
  const int64_t items = in.B * fi_cpu::tiles(in.P);
  FirstBad bad;
  AT_DISPATCH_FLOATING_TYPES(in.jac.scalar_type(), "pixel_fi_cpu", [&] {
    const scalar_t* jac = in.jac.const_data_ptr<scalar_t>();
    const scalar_t* probs = in.probs.const_data_ptr<scalar_t>();
    const int64_t* target = in.target.const_data_ptr<int64_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, items, grain_for(in.K, sizeof(scalar_t)), [&](int64_t begin, int64_t end) {
      int64_t r;
      PYADV_ISA_DISPATCH(r = isa_ns::fi::pixel_fi_items<scalar_t>(jac, probs, target, o, in.K, in.P, scalar_t(eps),
                                                                    scalar_t(rank_tol), begin, end));
      bad.offer(r);
    });
  });
  if (bad.any()) fail_non_finite("jac", bad.v.load());
  return out;
}

void fi_accumulate_cpu(const at::Tensor& jac_in, const at::Tensor& probs_in, const at::Tensor& target_in,
                       int64_t k_offset, double eps, const at::Tensor& num, const at::Tensor& den) {
  const FiInputs in = check_inputs(jac_in, probs_in, target_in, k_offset, /*full=*/false, eps, 0.0);
  check_accumulators(in, num, den);
  if (in.Kc == 0) return;
  const int64_t items = in.B * fi_cpu::tiles(in.P);
  AT_DISPATCH_FLOATING_TYPES(in.jac.scalar_type(), "fi_accumulate_cpu", [&] {
    const scalar_t* jac = in.jac.const_data_ptr<scalar_t>();
    const scalar_t* probs = in.probs.const_data_ptr<scalar_t>();
    const int64_t* target = in.target.const_data_ptr<int64_t>();
    scalar_t* pnum = num.mutable_data_ptr<scalar_t>();
    scalar_t* pden = den.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, items, grain_for(in.Kc, sizeof(scalar_t)), [&](int64_t begin, int64_t end) {
      PYADV_ISA_DISPATCH(isa_ns::fi::accumulate_items<scalar_t>(jac, probs, target, pnum, pden, in.Kc, in.K,
                                                                k_offset, in.P, scalar_t(eps), begin, end));
    });
  });
}

at::Tensor fi_finish_cpu(const at::Tensor& num_in, const at::Tensor& den_in, double rank_tol) {
  check_finish_inputs(num_in, den_in);
  check_rank_tol(rank_tol);
  const at::Tensor num = num_in.contiguous(), den = den_in.contiguous();
  at::Tensor out = at::empty_like(num);
  const int64_t P = num.size(1), n = num.numel();
  FirstBad bad;
  AT_DISPATCH_FLOATING_TYPES(num.scalar_type(), "fi_finish_cpu", [&] {
    const scalar_t* pn = num.const_data_ptr<scalar_t>();
    const scalar_t* pd = den.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, 16384, [&](int64_t begin, int64_t end) {
      int64_t r;
      PYADV_ISA_DISPATCH(r = isa_ns::fi::finish_elems<scalar_t>(pn, pd, o, P, scalar_t(rank_tol), begin, end));
      bad.offer(r);
    });
  });
  if (bad.any()) fail_non_finite("the accumulated jac", bad.v.load());
  return out;
}

void fi_group_accumulate_cpu(const at::Tensor& jac, const at::Tensor& probs, const at::Tensor& target,
                             int64_t k_offset, double eps, const at::Tensor& num, const at::Tensor& den) {
  const GroupInputs in = check_group_inputs(jac, probs, target, k_offset, eps, num, den);
  const FiInputs& b = in.base;
  if (b.Kc == 0) return;
  const int64_t items = b.B * fi_cpu::tiles(in.HW);
  AT_DISPATCH_FLOATING_TYPES(b.jac.scalar_type(), "fi_group_accumulate_cpu", [&] {
    const scalar_t* pj = b.jac.const_data_ptr<scalar_t>();
    const scalar_t* pp = b.probs.const_data_ptr<scalar_t>();
    const int64_t* pt = b.target.const_data_ptr<int64_t>();
    scalar_t* pnum = num.mutable_data_ptr<scalar_t>();
    scalar_t* pden = den.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, items, grain_for(b.Kc * in.C * in.C, sizeof(scalar_t)), [&](int64_t begin, int64_t end) {
      PYADV_ISA_DISPATCH(isa_ns::fi::group_accumulate_items<scalar_t>(pj, pp, pt, pnum, pden, b.Kc, b.K, k_offset,
                                                                      in.C, in.HW, scalar_t(eps), begin, end));
    });
  });
}

at::Tensor fi_group_finish_cpu(const at::Tensor& num_in, const at::Tensor& den_in, double rank_tol) {
  check_group_finish_inputs(num_in, den_in);
  check_rank_tol(rank_tol);
  const at::Tensor num = num_in.contiguous(), den = den_in.contiguous();
  const int64_t B = num.size(0), C = num.size(1), HW = num.size(2);
  at::Tensor out = at::empty({B, HW}, num.options());
  FirstBad bad;
  AT_DISPATCH_FLOATING_TYPES(num.scalar_type(), "fi_group_finish_cpu", [&] {
    const scalar_t* pn = num.const_data_ptr<scalar_t>();
    const scalar_t* pd = den.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, B * HW, 2048, [&](int64_t begin, int64_t end) {
      int64_t r;
      PYADV_ISA_DISPATCH(r = isa_ns::fi::group_finish_elems<scalar_t>(pn, pd, o, C, HW, scalar_t(rank_tol), begin,
                                                                      end));
      bad.offer(r);
    });
  });
  if (bad.any()) fail_non_finite("the accumulated jac", bad.v.load());
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyadv, CPU, m) {
  m.impl("pixel_fi", &pixel_fi_cpu);
  m.impl("fi_accumulate", &fi_accumulate_cpu);
  m.impl("fi_finish", &fi_finish_cpu);
  m.impl("fi_group_accumulate", &fi_group_accumulate_cpu);
  m.impl("fi_group_finish", &fi_group_finish_cpu);
}

}  // namespace fi
}  // namespace pyadv
