// The batched L-BFGS-B's state layout and settings, shared by the op (lbfgsb_op.cpp), which
// checks input and hands rows to the CPU kernel, and the math (lbfgsb_math.h), compiled once
// per instruction set (lbfgsb_cpu_kernel.cpp).
#pragma once

#include <cstdint>

namespace pyadv {
namespace lbfgsb {

// The public part of a problem's integer row (read by Python; see pyadv/optim/lbfgsb.py).
enum Status : int32_t {
  kIdle = -1,            // never started
  kEvaluate = 0,         // x awaits f(x) and g(x)
  kConvergedPgtol = 1,   // the projected gradient's largest entry <= pgtol
  kConvergedFtol = 2,    // (f_old - f) / max(|f_old|, |f|, 1) <= factr * eps
  kMaxIter = 3,          // the iteration limit
  kMaxEval = 4,          // the evaluation limit
  kAbnormal = 5,         // the line search failed with no memory to refresh: x is the last iterate
};

enum IntSlot : int {
  kStatus = 0, kIterations, kEvaluations, kAtEvaluated,  // public
  kPhase, kCol, kHead, kItail, kIupdat, kUpdatd, kNfree, kNenter, kIleave, kIfun, kIback, kWrk, kBrackt, kStage,
  kNumIntSlots
};

enum DoubleSlot : int {
  kF = 0, kFold, kTheta, kStp, kGd, kGdold, kDnorm, kDtd, kStpmx, kSbgnrm,
  kStx, kFx, kGx, kSty, kFy, kGy, kStmin, kStmax, kWidth, kWidth1, kFinit, kGinit, kGtest,
  kNumDoubleSlots
};

enum Phase : int32_t { kPhaseStart = 0, kPhaseLineSearch = 1 };

// The memory's largest size (scipy's default is 10; beyond a few dozen corrections L-BFGS-B
// stops paying for its O(m^2 n) work).
constexpr int64_t kMaxCorrections = 64;

struct Settings {
  int64_t m, max_iter, max_eval, max_ls;
  double factr, pgtol;
};

// Where each array of a problem lies in its rows of the workspaces.
struct Layout {
  int64_t n, m;
  int64_t ws, wy, sy, ss, wt, wn, snd, g, z, r, d, t, xp, brk, wa, doubles;  // offsets in the double row
  int64_t index, indx2, iwhere, ints;                                         // offsets in the int row
  Layout(int64_t n_, int64_t m_) : n(n_), m(m_) {
    int64_t o = kNumDoubleSlots;
    auto take = [&](int64_t len) { const int64_t at = o; o += len; return at; };
    ws = take(n * m); wy = take(n * m);
    sy = take(m * m); ss = take(m * m); wt = take(m * m);
    wn = take(4 * m * m); snd = take(4 * m * m);
    g = take(n); z = take(n); r = take(n); d = take(n); t = take(n); xp = take(n); brk = take(n);
    wa = take(8 * m);
    doubles = o;
    index = kNumIntSlots; indx2 = index + n; iwhere = indx2 + n; ints = iwhere + n;
  }
};

}  // namespace lbfgsb
}  // namespace pyadv
