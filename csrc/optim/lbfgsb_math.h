// L-BFGS-B (Byrd, Lu, Nocedal and Zhu 1995; version 3.0 of Morales and Nocedal 2011) on one
// box-constrained problem, as a reverse-communication state machine whose whole state lives in
// two flat arrays (one row of the op's workspace tensors), so that many problems advance side by
// side and a problem can be paused between two evaluations of its objective for as long as the
// caller likes.
//
// The algorithm is the published one, step for step: the generalized Cauchy point along the
// projected steepest descent path through its breakpoints in increasing order; the direct primal subspace
// minimisation over the free variables with the 2m x 2m middle matrix factorised incrementally
// (only the rows of variables that entered or left the free set are summed again), then the
// projection of the subspace step and its backtracking when the projected step is not a
// descent direction (v3.0); the Moré-Thuente line search (MINPACK-2 dcsrch / dcstep) with
// ftol 1e-3, gtol 0.9, xtol 0.1; memory refreshed (col = 0) on a singular factorisation or a
// failed line search; the same stopping rules (projected gradient <= pgtol, relative reduction
// of f <= factr * eps, the caller's iteration and evaluation limits checked at each new iterate
// as scipy.optimize.minimize does). Every variable has finite bounds l <= u (the box the
// attacks search), so the code keeps only the two-sided branch of each bound test. Its sums and
// scans over the variables are written as branch-free dense loops that the compiler vectorises
// (compiled once per instruction set, lbfgsb_cpu_kernel.cpp): sums over the free set through a
// 0/1 mask, in an order that differs from the published code's at rounding level.
//
// Indices follow the paper's 1-based notation (at(a, ld, i, j) is a(i, j) of a column-major
// array) so that each formula can be checked against its statement; matrices are column-major:
// ws(i, k) / wy(i, k) is variable i of correction k (each correction's n values contiguous).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "../common/macros.h"
#include "lbfgsb_layout.h"

namespace pyadv {
inline namespace PYADV_ISA_TAG {
namespace lbfgsb_math {

using namespace ::pyadv::lbfgsb;

// Breakpoints of the Cauchy search kept in order by its first scan (see cauchy()).
constexpr int64_t kFewBreakpoints = 16;

inline double& at(double* a, int64_t ld, int64_t i, int64_t j) { return a[(i - 1) + (j - 1) * ld]; }

// op(init, entry(0), ..., entry(n - 1)) over eight independent lanes, combined pairwise, then the
// last n % 8 entries in turn: the form the compiler vectorises (one running sum would make every
// addition wait for the previous one), and the same order of operations on every ISA.
template <typename Op, typename Entry>
inline double over_lanes(int64_t n, double init, Op op, Entry entry) {
  double s[8] = {init, init, init, init, init, init, init, init};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) s[k] = op(s[k], entry(i + k));
  double t = op(op(op(s[0], s[1]), op(s[2], s[3])), op(op(s[4], s[5]), op(s[6], s[7])));
  for (; i < n; ++i) t = op(t, entry(i));
  return t;
}

constexpr auto kPlus = [](double a, double b) { return a + b; };
constexpr auto kMin = [](double a, double b) { return std::min(a, b); };
constexpr auto kMax = [](double a, double b) { return std::max(a, b); };

// The sums over n variables are most of an iteration's arithmetic.
inline double dot(int64_t n, const double* a, const double* b) {
  return over_lanes(n, 0.0, kPlus, [&](int64_t i) { return a[i] * b[i]; });
}

// sum over k < cnt of a[idx[k] - 1] * b[idx[k] - 1] (idx 1-based, as the index sets are kept).
inline double dot_at(int64_t cnt, const int32_t* idx, const double* a, const double* b) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  int64_t k = 0;
  for (; k + 4 <= cnt; k += 4) {
    const int64_t i0 = idx[k] - 1, i1 = idx[k + 1] - 1, i2 = idx[k + 2] - 1, i3 = idx[k + 3] - 1;
    s0 += a[i0] * b[i0];
    s1 += a[i1] * b[i1];
    s2 += a[i2] * b[i2];
    s3 += a[i3] * b[i3];
  }
  for (; k < cnt; ++k) s0 += a[idx[k] - 1] * b[idx[k] - 1];
  return (s0 + s1) + (s2 + s3);
}

// sum over i < n of mask[i] * a[i] * b[i], mask 1 on a set of variables and 0 elsewhere: a sum
// over the free set in the dense form the compiler vectorises (the free set is most of the
// variables in the attacks' problems, and the gathered form runs one scalar load at a time).
inline double dot_masked(int64_t n, const double* mask, const double* a, const double* b) {
  return over_lanes(n, 0.0, kPlus, [&](int64_t i) { return mask[i] * a[i] * b[i]; });
}

// The largest entry of the projected gradient, |P(x - g) - x| (the maximum does not depend on the
// order of the lanes).
inline double projected_gradient_max(int64_t n, const double* PYADV_RESTRICT g, const double* PYADV_RESTRICT x,
                                     const double* PYADV_RESTRICT l, const double* PYADV_RESTRICT u) {
  return over_lanes(n, 0.0, kMax, [&](int64_t i) {
    const double gi = g[i];
    const double up = std::max(x[i] - u[i], gi), down = std::min(x[i] - l[i], gi);
    return std::fabs(gi < 0.0 ? up : down);
  });
}

// The largest step s <= s0 along d from x that keeps every variable in [l, u] (0 when one at
// its bound would leave it): the least of the ratios, each written to `ratio` first (so that
// both loops vectorise). The published code tests each bound as a product with the
// step so far before it divides; the two can differ in the last bit of the line search's upper
// limit, nowhere else.
inline double step_to_box(int64_t n, const double* PYADV_RESTRICT d, const double* PYADV_RESTRICT x,
                          const double* PYADV_RESTRICT l, const double* PYADV_RESTRICT u, double s0,
                          double* PYADV_RESTRICT ratio) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    const double a1 = d[i], r = (a1 < 0.0 ? l[i] - x[i] : u[i] - x[i]) / a1;
    ratio[i] = a1 == 0.0 ? kInf : r > 0.0 ? r : 0.0;
  }
  return over_lanes(n, s0, kMin, [&](int64_t i) { return ratio[i]; });
}

// The Cauchy search's first pass: each variable's state at x along -g (iwhere: 0 moving, 1 / 2
// at its lower / upper bound and pushed out of the box, -3 inside with a zero gradient, 3 fixed
// by its bounds, which stays), d = -g on the moving ones (0 elsewhere) and every variable's
// breakpoint, the step at which it meets its bound (inf for one that does not move). Without
// branches (& not &&), so the compiler vectorises it. A moving variable has g != 0, and every
// variable is boxed, so the published code's unbounded branch has no case here.
inline void cauchy_scan(int64_t n, const double* PYADV_RESTRICT g, const double* PYADV_RESTRICT x,
                        const double* PYADV_RESTRICT l, const double* PYADV_RESTRICT u, int32_t* PYADV_RESTRICT iwhere,
                        double* PYADV_RESTRICT d, double* PYADV_RESTRICT brk) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    const double neggi = -g[i];
    const double tl = x[i] - l[i], tu = u[i] - x[i];
    const bool at_l = tl <= 0.0, at_u = !at_l & (tu <= 0.0), inside = !at_l & !at_u;
    const int32_t w = (at_l & (neggi <= 0.0)) + 2 * (at_u & (neggi >= 0.0)) - 3 * (inside & (neggi == 0.0));
    const int32_t where = iwhere[i] == 3 ? 3 : w;
    iwhere[i] = where;
    d[i] = where == 0 ? neggi : 0.0;
    brk[i] = where == 0 ? (neggi < 0.0 ? tl : tu) / std::fabs(neggi) : kInf;
  }
}

// LINPACK dpofa: Cholesky factor R (upper, A = R'R) of the leading n x n block, in place.
// Returns 0, or the order of the first non-positive leading minor.
inline int dpofa(double* a, int64_t lda, int64_t n) {
  for (int64_t j = 1; j <= n; ++j) {
    double s = 0.0;
    for (int64_t k = 1; k <= j - 1; ++k) {
      double t = at(a, lda, k, j) - dot(k - 1, &at(a, lda, 1, k), &at(a, lda, 1, j));
      t /= at(a, lda, k, k);
      at(a, lda, k, j) = t;
      s += t * t;
    }
    s = at(a, lda, j, j) - s;
    if (s <= 0.0) return static_cast<int>(j);
    at(a, lda, j, j) = std::sqrt(s);
  }
  return 0;
}

// LINPACK dtrsl for an upper triangular T: job 1 solves T x = b, job 11 solves T' x = b; b is
// overwritten. Returns 0, or the index of a zero diagonal entry.
inline int dtrsl_upper(double* t, int64_t ldt, int64_t n, double* b, int job) {
  for (int64_t j = 1; j <= n; ++j)
    if (at(t, ldt, j, j) == 0.0) return static_cast<int>(j);
  if (job == 1) {
    b[n - 1] /= at(t, ldt, n, n);
    for (int64_t jj = 2; jj <= n; ++jj) {
      const int64_t j = n - jj + 1;
      const double temp = -b[j];  // b(j + 1)
      for (int64_t i = 1; i <= j; ++i) b[i - 1] += temp * at(t, ldt, i, j + 1);
      b[j - 1] /= at(t, ldt, j, j);
    }
  } else {
    b[0] /= at(t, ldt, 1, 1);
    for (int64_t j = 2; j <= n; ++j) {
      b[j - 1] -= dot(j - 1, &at(t, ldt, 1, j), b);
      b[j - 1] /= at(t, ldt, j, j);
    }
  }
  return 0;
}

class Problem {
 public:
  Problem(const Layout& L, double* x, const double* l, const double* u, double* dbl, int32_t* in)
      : n_(L.n), m_(L.m), x_(x), l_(l), u_(u), s_(dbl), i_(in),
        ws_(dbl + L.ws), wy_(dbl + L.wy), sy_(dbl + L.sy), ss_(dbl + L.ss), wt_(dbl + L.wt), wn_(dbl + L.wn),
        snd_(dbl + L.snd), g_(dbl + L.g), z_(dbl + L.z), r_(dbl + L.r), d_(dbl + L.d), t_(dbl + L.t),
        xp_(dbl + L.xp), brk_(dbl + L.brk), wa_(dbl + L.wa), index_(in + L.index), indx2_(in + L.indx2),
        iwhere_(in + L.iwhere), free_(t_), dense_(brk_) {}

  // A new solve from x0: x0 projected onto the box, the memory empty; then x awaits evaluation.
  void start(const double* x0) {
    for (int64_t i = 0; i < n_; ++i) {
      x_[i] = std::min(std::max(x0[i], l_[i]), u_[i]);
      iwhere_[i] = u_[i] - l_[i] <= 0.0 ? 3 : 0;  // 3: a variable fixed by its bounds
    }
    for (int k = 0; k < kNumIntSlots; ++k) i_[k] = 0;
    for (int k = 0; k < kNumDoubleSlots; ++k) s_[k] = 0.0;
    i_[kStatus] = kEvaluate;
    i_[kPhase] = kPhaseStart;
    i_[kNfree] = static_cast<int32_t>(n_);
    refresh();
  }

  // f and g at x (the point it asked for): runs on to the next point to evaluate or to the end.
  void answer(double f, const double* g, const Settings& st) {
    s_[kF] = f;
    std::memcpy(g_, g, sizeof(double) * n_);
    ++i_[kEvaluations];
    bool searching = i_[kPhase] == kPhaseLineSearch;
    if (!searching) {  // the starting point
      s_[kSbgnrm] = projected_gradient_norm();
      if (s_[kSbgnrm] <= st.pgtol) return finish(kConvergedPgtol, true);
    }
    for (;;) {
      if (!searching) {
        search_direction();
        line_search_begin();
      }
      searching = false;
      const int ls = line_search_advance();
      if (ls < 0 || i_[kIback] >= st.max_ls) {  // the search failed: back to the last iterate
        std::memcpy(x_, t_, sizeof(double) * n_);
        std::memcpy(g_, r_, sizeof(double) * n_);
        s_[kF] = s_[kFold];
        if (i_[kCol] == 0) {  // even steepest descent failed
          ++i_[kIterations];
          return finish(kAbnormal, false);
        }
        refresh();  // try again from the same point with steepest descent
        continue;
      }
      if (ls == kTrial) {
        i_[kPhase] = kPhaseLineSearch;
        i_[kStatus] = kEvaluate;
        return;
      }
      // a new iterate (x is the last point evaluated): the caller's limits first, as
      // scipy.optimize.minimize checks them, then the algorithm's own stopping rules
      ++i_[kIterations];
      s_[kSbgnrm] = projected_gradient_norm();
      if (i_[kIterations] >= st.max_iter) return finish(kMaxIter, true);
      if (i_[kEvaluations] > st.max_eval) return finish(kMaxEval, true);
      if (s_[kSbgnrm] <= st.pgtol) return finish(kConvergedPgtol, true);
      const double fold = s_[kFold], fx = s_[kF];
      if (fold - fx <= st.factr * kEps * std::max({std::abs(fold), std::abs(fx), 1.0}))
        return finish(kConvergedFtol, true);
      update_memory();
    }
  }

 private:
  static constexpr double kEps = std::numeric_limits<double>::epsilon();
  enum LineSearch { kTrial = 0, kAccepted = 1 };

  void finish(Status s, bool at_evaluated) {
    i_[kStatus] = s;
    i_[kAtEvaluated] = at_evaluated;
  }

  // The memory forgotten: B = theta I with theta = 1.
  void refresh() {
    i_[kCol] = 0;
    i_[kHead] = 1;
    s_[kTheta] = 1.0;
    i_[kIupdat] = 0;
    i_[kUpdatd] = 0;
  }

  double projected_gradient_norm() const { return projected_gradient_max(n_, g_, x_, l_, u_); }

  // z: the generalized Cauchy point, then the subspace minimiser from it; d = z - x. A singular
  // system on the way forgets the memory and starts again (with B = I it cannot fail).
  void search_direction() {
    for (;;) {
      if (cauchy() != 0) {
        refresh();
        continue;
      }
      free_variables();
      if (i_[kNfree] != 0 && i_[kCol] != 0) {
        int info = i_[kWrk] ? formk() : 0;
        if (info == 0) info = reduced_gradient();
        if (info == 0) info = subspace_minimisation();
        if (info != 0) {
          refresh();
          continue;
        }
      }
      break;
    }
    for (int64_t i = 0; i < n_; ++i) d_[i] = z_[i] - x_[i];
  }

  // y = g_new - g_old, s = stp d; the pair is kept when s'y > eps |s'g_old| (the curvature test).
  void update_memory() {
    const double stp = s_[kStp];
    for (int64_t i = 0; i < n_; ++i) r_[i] = g_[i] - r_[i];
    const double rr = dot(n_, r_, r_);
    double dr, ddum;
    if (stp == 1.0) {
      dr = s_[kGd] - s_[kGdold];
      ddum = -s_[kGdold];
    } else {
      dr = (s_[kGd] - s_[kGdold]) * stp;
      for (int64_t i = 0; i < n_; ++i) d_[i] *= stp;
      ddum = -s_[kGdold] * stp;
    }
    if (dr <= kEps * ddum) {
      i_[kUpdatd] = 0;
      return;
    }
    i_[kUpdatd] = 1;
    ++i_[kIupdat];
    matupd(rr, dr);
    if (formt() != 0) refresh();
  }

  // ---- the generalized Cauchy point -------------------------------------------------------
  int cauchy() {
    const int64_t n = n_, m = m_, col = i_[kCol], col2 = 2 * col;
    const double theta = s_[kTheta];
    double* p = wa_;
    double* c = wa_ + 2 * m;
    double* wbp = wa_ + 4 * m;
    double* v = wa_ + 6 * m;
    if (s_[kSbgnrm] <= 0.0) {
      std::memcpy(z_, x_, sizeof(double) * n);
      return 0;
    }
    // The search usually stops within its first dozen breakpoints of the ~n: the smallest few
    // are kept in order during the scan (ties in the order of the variables), and a heap is
    // built over the rest only when the search runs past them.
    double few_t[kFewBreakpoints];
    int32_t few_i[kFewBreakpoints];
    int64_t nbreak = 0, nfew = 0;
    double f1 = 0.0;
    // each variable's state and breakpoint (cauchy_scan),
    cauchy_scan(n, g_, x_, l_, u_, iwhere_, d_, brk_);
    // then the moving ones in order: f1, the compact breakpoint list, the smallest few
    for (int64_t i = 1; i <= n; ++i) {
      if (iwhere_[i - 1] != 0) continue;
      const double neggi = d_[i - 1], tb = brk_[i - 1];
      f1 -= neggi * neggi;
      indx2_[nbreak] = static_cast<int32_t>(i);
      brk_[nbreak++] = tb;
      if (nfew < kFewBreakpoints || tb < few_t[kFewBreakpoints - 1]) {
        int64_t k = nfew < kFewBreakpoints ? nfew++ : kFewBreakpoints - 1;
        for (; k > 0 && few_t[k - 1] > tb; --k) {
          few_t[k] = few_t[k - 1];
          few_i[k] = few_i[k - 1];
        }
        few_t[k] = tb;
        few_i[k] = static_cast<int32_t>(i);
      }
    }
    // p = W'd (d is 0 where a variable does not move)
    for (int64_t j = 1, pointr = i_[kHead]; j <= col; ++j, pointr = pointr % m + 1) {
      p[j - 1] = dot(n, &at(wy_, n, 1, pointr), d_);
      p[col + j - 1] = dot(n, &at(ws_, n, 1, pointr), d_);
    }
    if (theta != 1.0)
      for (int64_t j = 0; j < col; ++j) p[col + j] *= theta;
    std::memcpy(z_, x_, sizeof(double) * n);
    if (nbreak == 0) return 0;  // d = 0: x is the Cauchy point
    for (int64_t j = 0; j < col2; ++j) c[j] = 0.0;
    double f2 = -theta * f1;
    const double f2_org = f2;
    if (col > 0) {
      if (bmv(p, v) != 0) return -1;
      f2 -= dot(col2, v, p);
    }
    double dtm = -f1 / f2, tsum = 0.0;
    int64_t nleft = nbreak, used = 0;
    bool heap = false;
    double tj = 0.0;
    for (;;) {
      const double tj0 = tj;
      int64_t ibp;
      if (!heap && used < nfew) {
        tj = few_t[used];
        ibp = few_i[used++];
      } else {
        const bool build = !heap;
        if (build) {  // past the few: the breakpoints after them (in the same order) into a heap
          const double t_last = few_t[used - 1];
          const int32_t i_last = few_i[used - 1];
          int64_t kept = 0;
          for (int64_t k = 0; k < nbreak; ++k) {
            if (brk_[k] < t_last || (brk_[k] == t_last && indx2_[k] <= i_last)) continue;
            brk_[kept] = brk_[k];
            indx2_[kept++] = indx2_[k];
          }
          heap = true;
        }
        heap_pop(nleft, build);
        tj = brk_[nleft - 1];
        ibp = indx2_[nleft - 1];
      }
      const double dt = tj - tj0;
      if (dtm < dt) break;  // the minimiser lies in this segment
      tsum += dt;
      --nleft;
      const double dibp = d_[ibp - 1];
      d_[ibp - 1] = 0.0;
      double zibp;
      if (dibp > 0.0) {
        zibp = u_[ibp - 1] - x_[ibp - 1];
        z_[ibp - 1] = u_[ibp - 1];
        iwhere_[ibp - 1] = 2;
      } else {
        zibp = l_[ibp - 1] - x_[ibp - 1];
        z_[ibp - 1] = l_[ibp - 1];
        iwhere_[ibp - 1] = 1;
      }
      if (nleft == 0 && nbreak == n) {  // every variable is at a bound
        dtm = dt;
        if (col > 0)
          for (int64_t j = 0; j < col2; ++j) c[j] += dtm * p[j];
        return 0;
      }
      const double dibp2 = dibp * dibp;
      f1 = f1 + dt * f2 + dibp2 - theta * dibp * zibp;
      f2 -= theta * dibp2;
      if (col > 0) {
        for (int64_t j = 0; j < col2; ++j) c[j] += dt * p[j];
        int64_t pointr = i_[kHead];
        for (int64_t j = 1; j <= col; ++j) {
          wbp[j - 1] = at(wy_, n, ibp, pointr);
          wbp[col + j - 1] = theta * at(ws_, n, ibp, pointr);
          pointr = pointr % m + 1;
        }
        if (bmv(wbp, v) != 0) return -1;
        const double wmc = dot(col2, c, v), wmp = dot(col2, p, v), wmw = dot(col2, wbp, v);
        for (int64_t j = 0; j < col2; ++j) p[j] -= dibp * wbp[j];
        f1 += dibp * wmc;
        f2 += 2.0 * dibp * wmp - dibp2 * wmw;
      }
      f2 = std::max(kEps * f2_org, f2);
      if (nleft > 0) {
        dtm = -f1 / f2;
        continue;
      }
      dtm = 0.0;  // past the last breakpoint: every moving variable is at a bound
      break;
    }
    if (dtm <= 0.0) dtm = 0.0;
    tsum += dtm;
    for (int64_t i = 0; i < n; ++i) z_[i] += tsum * d_[i];
    if (col > 0)
      for (int64_t j = 0; j < col2; ++j) c[j] += dtm * p[j];
    return 0;
  }

  // Breakpoints brk(1..len) with their variables in indx2: builds the min-heap first when
  // `build`, then moves the least to position len and restores the heap on 1..len-1.
  void heap_pop(int64_t len, bool build) {
    double* t = brk_ - 1;      // 1-based views
    int32_t* ord = indx2_ - 1;
    if (build) {
      for (int64_t k = 2; k <= len; ++k) {
        const double v = t[k];
        const int32_t idx = ord[k];
        int64_t i = k;
        while (i > 1) {
          const int64_t j = i / 2;
          if (!(v < t[j])) break;
          t[i] = t[j];
          ord[i] = ord[j];
          i = j;
        }
        t[i] = v;
        ord[i] = idx;
      }
    }
    if (len > 1) {
      int64_t i = 1;
      const double out = t[1];
      const int32_t idx_out = ord[1];
      const double v = t[len];
      const int32_t idx_in = ord[len];
      for (;;) {
        int64_t j = i + i;
        if (j > len - 1) break;
        if (t[j + 1] < t[j]) ++j;
        if (!(t[j] < v)) break;
        t[i] = t[j];
        ord[i] = ord[j];
        i = j;
      }
      t[i] = v;
      ord[i] = idx_in;
      t[len] = out;
      ord[len] = idx_out;
    }
  }

  // v = M w for the 2col vector w, M the middle matrix of B's compact form, through the
  // Cholesky factor of T = theta S'S + L D^-1 L' kept in wt.
  int bmv(const double* w, double* v) {
    const int64_t m = m_, col = i_[kCol];
    if (col == 0) return 0;
    double* sy = sy_;
    v[col] = w[col];
    for (int64_t i = 2; i <= col; ++i) {
      double sum = 0.0;
      for (int64_t k = 1; k <= i - 1; ++k) sum += at(sy, m, i, k) * w[k - 1] / at(sy, m, k, k);
      v[col + i - 1] = w[col + i - 1] + sum;
    }
    if (dtrsl_upper(wt_, m, col, v + col, 11) != 0) return -1;
    for (int64_t i = 1; i <= col; ++i) v[i - 1] = w[i - 1] / std::sqrt(at(sy, m, i, i));
    if (dtrsl_upper(wt_, m, col, v + col, 1) != 0) return -1;
    for (int64_t i = 1; i <= col; ++i) v[i - 1] = -v[i - 1] / std::sqrt(at(sy, m, i, i));
    for (int64_t i = 1; i <= col; ++i) {
      double sum = 0.0;
      for (int64_t k = i + 1; k <= col; ++k) sum += at(sy, m, k, i) * v[col + k - 1] / at(sy, m, i, i);
      v[i - 1] += sum;
    }
    return 0;
  }

  // ---- the free set at the Cauchy point ---------------------------------------------------
  void free_variables() {
    const int64_t n = n_;
    int64_t nfree = i_[kNfree], nenter = 0, ileave = n + 1;
    if (i_[kIterations] > 0) {  // variables that left / entered the free set since the last iteration
      for (int64_t i = 1; i <= nfree; ++i) {
        const int32_t k = index_[i - 1];
        if (iwhere_[k - 1] > 0) indx2_[--ileave - 1] = k;
      }
      for (int64_t i = nfree + 1; i <= n; ++i) {
        const int32_t k = index_[i - 1];
        if (iwhere_[k - 1] <= 0) indx2_[nenter++] = k;
      }
    }
    i_[kWrk] = ileave < n + 1 || nenter > 0 || i_[kUpdatd];
    nfree = 0;
    int64_t iact = n + 1;
    for (int64_t i = 1; i <= n; ++i) {
      if (iwhere_[i - 1] <= 0)
        index_[nfree++] = static_cast<int32_t>(i);
      else
        index_[--iact - 1] = static_cast<int32_t>(i);
    }
    for (int64_t i = 0; i < n; ++i) free_[i] = iwhere_[i] <= 0 ? 1.0 : 0.0;
    i_[kNfree] = static_cast<int32_t>(nfree);
    i_[kNenter] = static_cast<int32_t>(nenter);
    i_[kIleave] = static_cast<int32_t>(ileave);
  }

  // ---- the subspace minimisation ----------------------------------------------------------
  // The LEL' factorisation of K = [-D - Y'ZZ'Y/theta, L_a' - R_z'; L_a - R_z, theta S'AA'S] in wn,
  // from wn1 = [Y'ZZ'Y, L_a' + R_z'; L_a + R_z, S'AA'S] (kept in snd) updated for the new
  // correction and the variables that entered or left the free set.
  int formk() {
    const int64_t n = n_, m = m_, col = i_[kCol], head = i_[kHead], nsub = i_[kNfree];
    const int64_t nenter = i_[kNenter], ileave = i_[kIleave], m2 = 2 * m;
    double* wn1 = snd_;
    double* wn = wn_;
    const int32_t* ind = index_;
    int64_t upcl;
    if (i_[kUpdatd]) {
      if (i_[kIupdat] > m) {  // the oldest correction dropped: shift the old parts
        for (int64_t jy = 1; jy <= m - 1; ++jy) {
          const int64_t js = m + jy;
          std::memmove(&at(wn1, m2, jy, jy), &at(wn1, m2, jy + 1, jy + 1), sizeof(double) * (m - jy));
          std::memmove(&at(wn1, m2, js, js), &at(wn1, m2, js + 1, js + 1), sizeof(double) * (m - jy));
          std::memmove(&at(wn1, m2, m + 1, jy), &at(wn1, m2, m + 2, jy + 1), sizeof(double) * (m - 1));
        }
      }
      // the new rows of blocks (1,1), (2,1) and (2,2)
      const int64_t iy = col, is = m + col;
      int64_t ipntr = head + col - 1;
      if (ipntr > m) ipntr -= m;
      int64_t jpntr = head;
      for (int64_t jy = 1; jy <= col; ++jy) {
        const int64_t js = m + jy;
        const double* wyi = &at(wy_, n, 1, ipntr);
        const double* wyj = &at(wy_, n, 1, jpntr);
        const double* wsi = &at(ws_, n, 1, ipntr);
        const double* wsj = &at(ws_, n, 1, jpntr);
        at(wn1, m2, iy, jy) = dot_masked(n, free_, wyi, wyj);           // over the free variables
        at(wn1, m2, is, js) = dot_at(n - nsub, ind + nsub, wsi, wsj);  // over the active ones
        at(wn1, m2, is, jy) = dot_at(n - nsub, ind + nsub, wsi, wyj);
        jpntr = jpntr % m + 1;
      }
      // the new column of block (2,1)
      const int64_t jy = col;
      jpntr = head + col - 1;
      if (jpntr > m) jpntr -= m;
      ipntr = head;
      for (int64_t i = 1; i <= col; ++i) {
        at(wn1, m2, m + i, jy) = dot_masked(n, free_, &at(ws_, n, 1, ipntr), &at(wy_, n, 1, jpntr));
        ipntr = ipntr % m + 1;
      }
      upcl = col - 1;
    } else {
      upcl = col;
    }
    // the old parts of blocks (1,1) and (2,2), for the changes of the free set
    int64_t ipntr = head;
    for (int64_t iy = 1; iy <= upcl; ++iy) {
      const int64_t is = m + iy;
      int64_t jpntr = head;
      const double* wyi = &at(wy_, n, 1, ipntr);
      const double* wsi = &at(ws_, n, 1, ipntr);
      for (int64_t jy = 1; jy <= iy; ++jy) {
        const int64_t js = m + jy;
        const double* wyj = &at(wy_, n, 1, jpntr);
        const double* wsj = &at(ws_, n, 1, jpntr);
        const int32_t* entered = indx2_;
        const int32_t* left = indx2_ + ileave - 1;
        const double temp1 = dot_at(nenter, entered, wyi, wyj), temp2 = dot_at(nenter, entered, wsi, wsj);
        const double temp3 = dot_at(n + 1 - ileave, left, wyi, wyj), temp4 = dot_at(n + 1 - ileave, left, wsi, wsj);
        at(wn1, m2, iy, jy) = at(wn1, m2, iy, jy) + temp1 - temp3;
        at(wn1, m2, is, js) = at(wn1, m2, is, js) - temp2 + temp4;
        jpntr = jpntr % m + 1;
      }
      ipntr = ipntr % m + 1;
    }
    // the old part of block (2,1)
    ipntr = head;
    for (int64_t is = m + 1; is <= m + upcl; ++is) {
      int64_t jpntr = head;
      const double* wsi = &at(ws_, n, 1, ipntr);
      for (int64_t jy = 1; jy <= upcl; ++jy) {
        const double* wyj = &at(wy_, n, 1, jpntr);
        const double temp1 = dot_at(nenter, indx2_, wsi, wyj);
        const double temp3 = dot_at(n + 1 - ileave, indx2_ + ileave - 1, wsi, wyj);
        if (is <= jy + m)
          at(wn1, m2, is, jy) = at(wn1, m2, is, jy) + temp1 - temp3;
        else
          at(wn1, m2, is, jy) = at(wn1, m2, is, jy) - temp1 + temp3;
        jpntr = jpntr % m + 1;
      }
      ipntr = ipntr % m + 1;
    }
    // the upper triangle of wn = [D + Y'ZZ'Y/theta, -L_a' + R_z'; -L_a + R_z, theta S'AA'S]
    const double theta = s_[kTheta];
    for (int64_t iy = 1; iy <= col; ++iy) {
      const int64_t is = col + iy, is1 = m + iy;
      for (int64_t jy = 1; jy <= iy; ++jy) {
        const int64_t js = col + jy, js1 = m + jy;
        at(wn, m2, jy, iy) = at(wn1, m2, iy, jy) / theta;
        at(wn, m2, js, is) = at(wn1, m2, is1, js1) * theta;
      }
      for (int64_t jy = 1; jy <= iy - 1; ++jy) at(wn, m2, jy, is) = -at(wn1, m2, is1, jy);
      for (int64_t jy = iy; jy <= col; ++jy) at(wn, m2, jy, is) = at(wn1, m2, is1, jy);
      at(wn, m2, iy, iy) += at(sy_, m, iy, iy);
    }
    // LL' of block (1,1), L^-1(-L_a' + R_z') in block (1,2), then the Cholesky factor of
    // theta S'AA'S + (L^-1(-L_a' + R_z'))' L^-1(-L_a' + R_z') in block (2,2)
    if (dpofa(wn, m2, col) != 0) return -1;
    const int64_t col2 = 2 * col;
    for (int64_t js = col + 1; js <= col2; ++js)
      if (dtrsl_upper(wn, m2, col, &at(wn, m2, 1, js), 11) != 0) return -1;
    for (int64_t is = col + 1; is <= col2; ++is)
      for (int64_t js = is; js <= col2; ++js) at(wn, m2, is, js) += dot(col, &at(wn, m2, 1, is), &at(wn, m2, 1, js));
    if (dpofa(&at(wn, m2, col + 1, col + 1), m2, col) != 0) return -2;
    return 0;
  }

  // r = -Z'(B (z - x) + g) on the free variables, B (z - x) from c = W'(z - x) of the Cauchy step.
  int reduced_gradient() {
    const int64_t n = n_, m = m_, col = i_[kCol], nfree = i_[kNfree];
    const double theta = s_[kTheta];
    for (int64_t i = 0; i < nfree; ++i) {
      const int64_t k = index_[i] - 1;
      r_[i] = -theta * (z_[k] - x_[k]) - g_[k];
    }
    double* v = wa_;  // M c over p, which the Cauchy step no longer needs
    if (bmv(wa_ + 2 * m, v) != 0) return -8;
    for (int64_t j = 0; j < col; ++j) v[col + j] *= theta;
    add_w_times(nfree, v, v + col, r_);
    return 0;
  }

  // out[i] += sum_j wy(k, j) a[j] + ws(k, j) b[j] for the first cnt free variables k = index(i),
  // the corrections j in the memory's order; one pass over out, each entry summed in order.
  void add_w_times(int64_t cnt, const double* a, const double* b, double* out) const {
    const int64_t n = n_, m = m_, col = i_[kCol];
    const double* wyc[kMaxCorrections];
    const double* wsc[kMaxCorrections];
    for (int64_t j = 0, pointr = i_[kHead]; j < col; ++j, pointr = pointr % m + 1) {
      wyc[j] = &at(wy_, n, 1, pointr);
      wsc[j] = &at(ws_, n, 1, pointr);
    }
    // over every variable, a correction at a time (vector operations; the free set is most of
    // them), each free entry summed in the same order as one entry at a time would be
    double* dense = dense_;
    std::memset(dense, 0, sizeof(double) * n);
    for (int64_t i = 0; i < cnt; ++i) dense[index_[i] - 1] = out[i];
    for (int64_t j = 0; j < col; ++j) {
      const double aj = a[j], bj = b[j];
      const double* y = wyc[j];
      const double* s = wsc[j];
      for (int64_t k = 0; k < n; ++k) dense[k] += y[k] * aj + s[k] * bj;
    }
    for (int64_t i = 0; i < cnt; ++i) out[i] = dense[index_[i] - 1];
  }

  // The Newton step of the quadratic model on the free variables from the Cauchy point z,
  // projected onto the box; when that projection is not a descent direction from x, the step
  // is instead cut back to the box along its direction (Morales and Nocedal 2011).
  int subspace_minimisation() {
    const int64_t n = n_, m = m_, col = i_[kCol], nsub = i_[kNfree], m2 = 2 * m, col2 = 2 * col;
    const double theta = s_[kTheta];
    if (nsub <= 0) return 0;
    double* wv = wa_;
    double* dd = r_;  // the reduced gradient, then the step
    // W'Z dd as dense sums: dd spread over the variables, 0 on the active ones
    double* dense = dense_;
    std::memset(dense, 0, sizeof(double) * n);
    for (int64_t i = 0; i < nsub; ++i) dense[index_[i] - 1] = dd[i];
    int64_t pointr = i_[kHead];
    for (int64_t i = 1; i <= col; ++i) {
      wv[i - 1] = dot(n, &at(wy_, n, 1, pointr), dense);
      wv[col + i - 1] = theta * dot(n, &at(ws_, n, 1, pointr), dense);
      pointr = pointr % m + 1;
    }
    if (dtrsl_upper(wn_, m2, col2, wv, 11) != 0) return -1;
    for (int64_t i = 0; i < col; ++i) wv[i] = -wv[i];
    if (dtrsl_upper(wn_, m2, col2, wv, 1) != 0) return -1;
    for (int64_t j = 0; j < col; ++j) wv[j] /= theta;
    add_w_times(nsub, wv, wv + col, dd);
    for (int64_t i = 0; i < nsub; ++i) dd[i] *= 1.0 / theta;
    // the projected Newton point
    bool at_bound = false;
    std::memcpy(xp_, z_, sizeof(double) * n);
    for (int64_t i = 0; i < nsub; ++i) {
      const int64_t k = index_[i] - 1;
      const double xk = std::max(l_[k], z_[k] + dd[i]);
      z_[k] = std::min(u_[k], xk);
      if (z_[k] == l_[k] || z_[k] == u_[k]) at_bound = true;
    }
    if (!at_bound) return 0;
    double dd_p = 0.0;
    for (int64_t i = 0; i < n; ++i) dd_p += (z_[i] - x_[i]) * g_[i];
    if (!(dd_p > 0.0)) return 0;
    // not a descent direction: from the Cauchy point along the Newton step, cut at the box
    std::memcpy(z_, xp_, sizeof(double) * n);
    int64_t ibd;
    const double alpha = largest_step(
        nsub, [&](int64_t i) { return index_[i] - 1; }, dd, z_, 1.0, &ibd);
    if (alpha < 1.0) {
      const double dk = dd[ibd];
      const int64_t k = index_[ibd] - 1;
      if (dk > 0.0) {
        z_[k] = u_[k];
        dd[ibd] = 0.0;
      } else if (dk < 0.0) {
        z_[k] = l_[k];
        dd[ibd] = 0.0;
      }
    }
    for (int64_t i = 0; i < nsub; ++i) {
      const int64_t k = index_[i] - 1;
      z_[k] += alpha * dd[i];
    }
    return 0;
  }

  // The largest step s <= s0 along dir from p that keeps variables var(k), k < cnt, in the box
  // (0 where one at its bound would leave it), each bound tested as a product with the step so
  // far, as the published code does; *limit: the k that set it, or -1.
  template <typename Var>
  double largest_step(int64_t cnt, Var var, const double* dir, const double* p, double s0, int64_t* limit) const {
    double s = s0, cand = s0;
    *limit = -1;
    for (int64_t k = 0; k < cnt; ++k) {
      const int64_t i = var(k);
      const double a1 = dir[k];
      if (a1 < 0.0) {
        const double a2 = l_[i] - p[i];
        if (a2 >= 0.0)
          cand = 0.0;
        else if (a1 * s < a2)
          cand = a2 / a1;
      } else if (a1 > 0.0) {
        const double a2 = u_[i] - p[i];
        if (a2 <= 0.0)
          cand = 0.0;
        else if (a1 * s > a2)
          cand = a2 / a1;
      }
      if (cand < s) {
        s = cand;
        *limit = k;
      }
    }
    return s;
  }

  // ---- the BFGS memory ----------------------------------------------------------------------
  // Appends s (in d) and y (in r) to the limited memory, dropping the oldest pair when full,
  // and the new row of S'Y's lower triangle and column of S'S's upper triangle.
  void matupd(double rr, double dr) {
    const int64_t n = n_, m = m_;
    int64_t c = i_[kCol], head = i_[kHead], itail = i_[kItail];
    const int64_t iupdat = i_[kIupdat];
    if (iupdat <= m) {
      c = iupdat;
      itail = (head + iupdat - 2) % m + 1;
    } else {
      itail = itail % m + 1;
      head = head % m + 1;
    }
    std::memcpy(&at(ws_, n, 1, itail), d_, sizeof(double) * n);
    std::memcpy(&at(wy_, n, 1, itail), r_, sizeof(double) * n);
    s_[kTheta] = rr / dr;
    if (iupdat > m) {  // shift the old entries
      for (int64_t j = 1; j <= c - 1; ++j) {
        std::memmove(&at(ss_, m, 1, j), &at(ss_, m, 2, j + 1), sizeof(double) * j);
        std::memmove(&at(sy_, m, j, j), &at(sy_, m, j + 1, j + 1), sizeof(double) * (c - j));
      }
    }
    int64_t pointr = head;
    for (int64_t j = 1; j <= c - 1; ++j) {
      at(sy_, m, c, j) = dot(n, d_, &at(wy_, n, 1, pointr));
      at(ss_, m, j, c) = dot(n, &at(ws_, n, 1, pointr), d_);
      pointr = pointr % m + 1;
    }
    const double stp = s_[kStp];
    at(ss_, m, c, c) = stp == 1.0 ? s_[kDtd] : stp * stp * s_[kDtd];
    at(sy_, m, c, c) = dr;
    i_[kCol] = static_cast<int32_t>(c);
    i_[kHead] = static_cast<int32_t>(head);
    i_[kItail] = static_cast<int32_t>(itail);
  }

  // T = theta S'S + L D^-1 L' (upper triangle in wt), then its Cholesky factor in place.
  int formt() {
    const int64_t m = m_, col = i_[kCol];
    const double theta = s_[kTheta];
    for (int64_t j = 1; j <= col; ++j) at(wt_, m, 1, j) = theta * at(ss_, m, 1, j);
    for (int64_t i = 2; i <= col; ++i) {
      for (int64_t j = i; j <= col; ++j) {
        const int64_t k1 = std::min(i, j) - 1;
        double ddum = 0.0;
        for (int64_t k = 1; k <= k1; ++k) ddum += at(sy_, m, i, k) * at(sy_, m, j, k) / at(sy_, m, k, k);
        at(wt_, m, i, j) = ddum + theta * at(ss_, m, i, j);
      }
    }
    return dpofa(wt_, m, col) != 0 ? -3 : 0;
  }

  // ---- the line search --------------------------------------------------------------------
  void line_search_begin() {
    const int64_t n = n_;
    const double dtd = dot(n, d_, d_);
    s_[kDtd] = dtd;
    s_[kDnorm] = std::sqrt(dtd);
    s_[kStpmx] = i_[kIterations] == 0 ? 1.0 : step_to_box(n, d_, x_, l_, u_, 1e10, dense_);
    s_[kStp] = 1.0;  // every variable is boxed: the unit step first, even on the first iteration
    std::memcpy(t_, x_, sizeof(double) * n);
    std::memcpy(r_, g_, sizeof(double) * n);
    s_[kFold] = s_[kF];
    i_[kIfun] = 0;
    i_[kIback] = 0;
  }

  // One call of the line search with f and g at the current trial: kTrial with x set to the
  // next trial, kAccepted when the current one satisfies the search, negative when d is not a
  // descent direction or the search refused its input.
  int line_search_advance() {
    const int64_t n = n_;
    const double gd = dot(n, g_, d_);
    s_[kGd] = gd;
    const bool first = i_[kIfun] == 0;
    if (first) {
      s_[kGdold] = gd;
      if (gd >= 0.0) return -4;  // an ascent direction: no line search possible
    }
    const int task = dcsrch(s_[kF], gd, first);
    if (task != kTrial) return task < 0 ? -5 : kAccepted;
    ++i_[kIfun];
    i_[kIback] = i_[kIfun] - 1;
    const double stp = s_[kStp];
    if (stp == 1.0) {
      std::memcpy(x_, z_, sizeof(double) * n);
    } else {
      for (int64_t i = 0; i < n; ++i)  // rounding must not take a trial out of the box (as scipy >= 1.15)
        x_[i] = std::min(std::max(stp * d_[i] + t_[i], l_[i]), u_[i]);
    }
    return kTrial;
  }

  // Moré and Thuente's line search (MINPACK-2 dcsrch) for phi(stp) = f(t + stp d) with
  // ftol 1e-3, gtol 0.9, xtol 0.1 on [0, stpmx]. Returns kTrial (stp is the next trial),
  // kAccepted (converged or warned: accept stp), or -1 for an input error.
  int dcsrch(double f, double g, bool start) {
    constexpr double ftol = 1e-3, gtol = 0.9, xtol = 0.1, xtrapl = 1.1, xtrapu = 4.0;
    double& stp = s_[kStp];
    const double stpmin = 0.0, stpmax = s_[kStpmx];
    if (start) {
      if (stp < stpmin || stp > stpmax || g >= 0.0) return -1;
      i_[kBrackt] = 0;
      i_[kStage] = 1;
      s_[kFinit] = f;
      s_[kGinit] = g;
      s_[kGtest] = ftol * g;
      s_[kWidth] = stpmax - stpmin;
      s_[kWidth1] = s_[kWidth] / 0.5;
      s_[kStx] = 0.0;
      s_[kFx] = f;
      s_[kGx] = g;
      s_[kSty] = 0.0;
      s_[kFy] = f;
      s_[kGy] = g;
      s_[kStmin] = 0.0;
      s_[kStmax] = stp + xtrapu * stp;
      return kTrial;
    }
    bool brackt = i_[kBrackt];
    const double finit = s_[kFinit], ginit = s_[kGinit], gtest = s_[kGtest];
    double stx = s_[kStx], fx = s_[kFx], gx = s_[kGx], sty = s_[kSty], fy = s_[kFy], gy = s_[kGy];
    double stmin = s_[kStmin], stmax = s_[kStmax];
    const double ftest = finit + stp * gtest;
    if (i_[kStage] == 1 && f <= ftest && g >= 0.0) i_[kStage] = 2;
    bool done = false;
    if (brackt && (stp <= stmin || stp >= stmax)) done = true;  // rounding errors prevent progress
    if (brackt && stmax - stmin <= xtol * stmax) done = true;   // the xtol test
    if (stp == stpmax && f <= ftest && g <= gtest) done = true;
    if (stp == stpmin && (f > ftest || g >= gtest)) done = true;
    if (f <= ftest && std::abs(g) <= gtol * (-ginit)) done = true;  // converged
    if (done) return kAccepted;
    if (i_[kStage] == 1 && f <= fx && f > ftest) {  // the modified function while the decrease is not sufficient
      const double fm = f - stp * gtest;
      double fxm = fx - stx * gtest, fym = fy - sty * gtest;
      const double gm = g - gtest;
      double gxm = gx - gtest, gym = gy - gtest;
      dcstep(stx, fxm, gxm, sty, fym, gym, stp, fm, gm, brackt, stmin, stmax);
      fx = fxm + stx * gtest;
      fy = fym + sty * gtest;
      gx = gxm + gtest;
      gy = gym + gtest;
    } else {
      dcstep(stx, fx, gx, sty, fy, gy, stp, f, g, brackt, stmin, stmax);
    }
    if (brackt) {  // bisect when the interval did not shrink enough
      if (std::abs(sty - stx) >= 0.66 * s_[kWidth1]) stp = stx + 0.5 * (sty - stx);
      s_[kWidth1] = s_[kWidth];
      s_[kWidth] = std::abs(sty - stx);
    }
    if (brackt) {
      stmin = std::min(stx, sty);
      stmax = std::max(stx, sty);
    } else {
      stmin = stp + xtrapl * (stp - stx);
      stmax = stp + xtrapu * (stp - stx);
    }
    stp = std::max(stp, stpmin);
    stp = std::min(stp, stpmax);
    if ((brackt && (stp <= stmin || stp >= stmax)) || (brackt && stmax - stmin <= xtol * stmax)) stp = stx;
    i_[kBrackt] = brackt;
    s_[kStx] = stx; s_[kFx] = fx; s_[kGx] = gx;
    s_[kSty] = sty; s_[kFy] = fy; s_[kGy] = gy;
    s_[kStmin] = stmin; s_[kStmax] = stmax;
    return kTrial;
  }

  // MINPACK-2 dcstep: a safeguarded step (cubic, quadratic or secant) for the interval
  // [stx, sty] that contains a step satisfying the search's conditions, updating the interval.
  static void dcstep(double& stx, double& fx, double& dx, double& sty, double& fy, double& dy, double& stp,
                     double fp, double dp, bool& brackt, double stpmin, double stpmax) {
    const double sgnd = dp * (dx / std::abs(dx));
    double stpf;
    if (fp > fx) {  // a higher value: the minimum is bracketed
      const double theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp;
      const double s = std::max({std::abs(theta), std::abs(dx), std::abs(dp)});
      double gamma = s * std::sqrt((theta / s) * (theta / s) - (dx / s) * (dp / s));
      if (stp < stx) gamma = -gamma;
      const double p = (gamma - dx) + theta, q = ((gamma - dx) + gamma) + dp, r = p / q;
      const double stpc = stx + r * (stp - stx);
      const double stpq = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2.0) * (stp - stx);
      stpf = std::abs(stpc - stx) < std::abs(stpq - stx) ? stpc : stpc + (stpq - stpc) / 2.0;
      brackt = true;
    } else if (sgnd < 0.0) {  // a lower value, derivatives of opposite sign: bracketed
      const double theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp;
      const double s = std::max({std::abs(theta), std::abs(dx), std::abs(dp)});
      double gamma = s * std::sqrt((theta / s) * (theta / s) - (dx / s) * (dp / s));
      if (stp > stx) gamma = -gamma;
      const double p = (gamma - dp) + theta, q = ((gamma - dp) + gamma) + dx, r = p / q;
      const double stpc = stp + r * (stx - stp);
      const double stpq = stp + (dp / (dp - dx)) * (stx - stp);
      stpf = std::abs(stpc - stp) > std::abs(stpq - stp) ? stpc : stpq;
      brackt = true;
    } else if (std::abs(dp) < std::abs(dx)) {  // lower, same sign, the derivative's magnitude decreases
      const double theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp;
      const double s = std::max({std::abs(theta), std::abs(dx), std::abs(dp)});
      double gamma = s * std::sqrt(std::max(0.0, (theta / s) * (theta / s) - (dx / s) * (dp / s)));
      if (stp > stx) gamma = -gamma;
      const double p = (gamma - dp) + theta, q = (gamma + (dx - dp)) + gamma, r = p / q;
      double stpc;
      if (r < 0.0 && gamma != 0.0)
        stpc = stp + r * (stx - stp);
      else if (stp > stx)
        stpc = stpmax;
      else
        stpc = stpmin;
      const double stpq = stp + (dp / (dp - dx)) * (stx - stp);
      if (brackt) {
        stpf = std::abs(stpc - stp) < std::abs(stpq - stp) ? stpc : stpq;
        stpf = stp > stx ? std::min(stp + 0.66 * (sty - stp), stpf) : std::max(stp + 0.66 * (sty - stp), stpf);
      } else {
        stpf = std::abs(stpc - stp) > std::abs(stpq - stp) ? stpc : stpq;
        stpf = std::min(stpmax, stpf);
        stpf = std::max(stpmin, stpf);
      }
    } else {  // lower, same sign, the derivative's magnitude does not decrease
      if (brackt) {
        const double theta = 3.0 * (fp - fy) / (sty - stp) + dy + dp;
        const double s = std::max({std::abs(theta), std::abs(dy), std::abs(dp)});
        double gamma = s * std::sqrt((theta / s) * (theta / s) - (dy / s) * (dp / s));
        if (stp > sty) gamma = -gamma;
        const double p = (gamma - dp) + theta, q = ((gamma - dp) + gamma) + dy, r = p / q;
        stpf = stp + r * (sty - stp);
      } else {
        stpf = stp > stx ? stpmax : stpmin;
      }
    }
    if (fp > fx) {
      sty = stp;
      fy = fp;
      dy = dp;
    } else {
      if (sgnd < 0.0) {
        sty = stx;
        fy = fx;
        dy = dx;
      }
      stx = stp;
      fx = fp;
      dx = dp;
    }
    stp = stpf;
  }

  const int64_t n_, m_;
  double* x_;
  const double* l_;
  const double* u_;
  double* s_;
  int32_t* i_;
  double *ws_, *wy_, *sy_, *ss_, *wt_, *wn_, *snd_, *g_, *z_, *r_, *d_, *t_, *xp_, *brk_, *wa_;
  int32_t *index_, *indx2_, *iwhere_;
  // Scratch of the search direction, in arrays it leaves unused: the free set as 1.0 / 0.0 per
  // variable (t holds the last iterate only during the line search), and n dense values (the
  // breakpoints are spent once the Cauchy point is found).
  double *free_, *dense_;
};

}  // namespace lbfgsb_math
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
