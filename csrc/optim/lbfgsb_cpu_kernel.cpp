// CPU kernel of the batched L-BFGS-B: each row's problem (lbfgsb_math.h) in turn. Compiled per
// instruction set without FMA contraction, so every variant computes the same bits (the dense
// sums over the variables are what the wider vectors speed up: 1.13x with AVX2 over SSE2 on the
// L-BFGS attack's problems).
#include "lbfgsb_cpu_kernel.h"

#include "lbfgsb_math.h"

PYADV_DECLARE_LBFGSB_CPU_KERNELS(PYADV_ISA_TAG)

namespace pyadv {
namespace PYADV_ISA_TAG {
namespace lbfgsb_kernel {

void start_rows(const lbfgsb::Layout& L, const int64_t* rows, int64_t k0, int64_t k1, double* x, const double* lower,
                const double* upper, double* ws, int32_t* iws, const double* x0) {
  const int64_t n = L.n;
  for (int64_t k = k0; k < k1; ++k) {
    const int64_t b = rows[k];
    lbfgsb_math::Problem p(L, x + b * n, lower + b * n, upper + b * n, ws + b * L.doubles, iws + b * L.ints);
    p.start(x0 + k * n);
  }
}

void step_rows(const lbfgsb::Layout& L, const lbfgsb::Settings& st, const int64_t* rows, int64_t k0, int64_t k1,
               double* x, const double* lower, const double* upper, double* ws, int32_t* iws, const double* f,
               const double* g) {
  const int64_t n = L.n;
  for (int64_t k = k0; k < k1; ++k) {
    const int64_t b = rows[k];
    lbfgsb_math::Problem p(L, x + b * n, lower + b * n, upper + b * n, ws + b * L.doubles, iws + b * L.ints);
    p.answer(f[k], g + k * n, st);
  }
}

}  // namespace lbfgsb_kernel
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
