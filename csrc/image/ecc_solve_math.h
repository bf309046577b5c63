// One pair's ECC alignment after the sums (ecc_math.h): the Gauss-Newton step of OpenCV's
// findTransformECC from one iteration's sums, the warp update per motion, and the small dense
// algebra they need (n <= 8). Shared by the CPU op, the CUDA kernel and the emulator; the torch
// composition in pyadv/metrics/ecc.py (_ecc_loop) is the reference it is tested against.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>

#include "../common/hd_math.h"
#include "../common/macros.h"
#include "ecc_math.h"

namespace pyadv {
inline namespace PYADV_ISA_TAG {
namespace ecc_solve {

namespace em = ecc_math;
constexpr int kN = em::kMaxParams;
// A converged pair whose correlation beats the identity's by this much is not re-measured at
// its returned warp (ecc.py's _SAFETY).
constexpr double kSafety = 1e-3;

PYADV_HD inline bool finite(double x) { return x == x && x <= DBL_MAX && x >= -DBL_MAX; }

// NaN stays NaN (torch's clamp_min), unlike fmax.
PYADV_HD inline double clamp_min(double x, double lo) { return x < lo ? lo : x; }

// The correlation coefficient of one iteration's sums S (ecc_math.h's order) and the norms and
// covariance it comes from, as ecc.py's _Sums.
struct Correlation {
  double tnorm, inorm, corr, rho;
};

PYADV_HD inline Correlation correlation(const double* S) {
  const double count = clamp_min(S[0], 1.0), mt = S[1] / count, mi = S[2] / count;
  Correlation c;
  c.tnorm = hd_sqrt(clamp_min(S[3] - count * mt * mt, 0.0));
  c.inorm = hd_sqrt(clamp_min(S[4] - count * mi * mi, 0.0));
  c.corr = S[5] - count * mt * mi;
  c.rho = c.corr / clamp_min(c.inorm * c.tnorm, 1e-30);
  return c;
}

PYADV_HD inline double rho_of(const double* S) { return correlation(S).rho; }

// The centred quantities of one Gauss-Newton step: the correlation, and from the sums over the
// Jacobian J (T - mean T), J (I - mean I) and the Hessian J J^T.
struct Centred : Correlation {
  double tp[kN], ip[kN];
  double H[kN * kN];  // full
};

PYADV_HD inline void centre(const double* S, int n, Centred* c) {
  static_cast<Correlation&>(*c) = correlation(S);
  const double count = clamp_min(S[0], 1.0), mt = S[1] / count, mi = S[2] / count;
  const double* sj = S + 6;
  for (int i = 0; i < n; ++i) {
    c->tp[i] = S[6 + n + i] - mt * sj[i];
    c->ip[i] = S[6 + 2 * n + i] - mi * sj[i];
  }
  const double* hu = S + 6 + 3 * n;
  for (int i = 0, k = 0; i < n; ++i)
    for (int j = i; j < n; ++j, ++k) c->H[i * n + j] = c->H[j * n + i] = hu[k];
}

// In-place LU with partial pivoting of A [n, n]; false at an exactly zero pivot (LAPACK's getrf
// reports those, and ecc.py then takes the pseudo-inverse).
PYADV_HD inline bool lu_factor(double* A, int n, int* piv) {
  for (int k = 0; k < n; ++k) {
    int p = k;
    double best = hd_fabs(A[k * n + k]);
    for (int i = k + 1; i < n; ++i) {
      const double v = hd_fabs(A[i * n + k]);
      if (v > best) best = v, p = i;
    }
    piv[k] = p;
    if (!(best != 0.0)) return false;
    if (p != k)
      for (int j = 0; j < n; ++j) {
        const double t = A[k * n + j];
        A[k * n + j] = A[p * n + j];
        A[p * n + j] = t;
      }
    const double d = A[k * n + k];
    for (int i = k + 1; i < n; ++i) {
      const double f = A[i * n + k] / d;
      A[i * n + k] = f;
      for (int j = k + 1; j < n; ++j) A[i * n + j] -= f * A[k * n + j];
    }
  }
  return true;
}

PYADV_HD inline void lu_solve(const double* LU, const int* piv, int n, const double* b, double* x) {
  for (int i = 0; i < n; ++i) x[i] = b[i];
  for (int k = 0; k < n; ++k)
    if (piv[k] != k) {
      const double t = x[k];
      x[k] = x[piv[k]];
      x[piv[k]] = t;
    }
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < i; ++j) x[i] -= LU[i * n + j] * x[j];
  for (int i = n - 1; i >= 0; --i) {
    for (int j = i + 1; j < n; ++j) x[i] -= LU[i * n + j] * x[j];
    x[i] /= LU[i * n + i];
  }
}

// Pseudo-inverse P [n, n] of the symmetric A [n, n] by cyclic Jacobi rotations: singular values
// |lambda| at most max(n, n) eps times the largest are dropped (torch.linalg.pinv's default).
PYADV_HD inline void sym_pinv(const double* A, int n, double* P) {
  double a[kN * kN], v[kN * kN];
  for (int i = 0; i < n * n; ++i) a[i] = A[i], v[i] = 0.0;
  for (int i = 0; i < n; ++i) v[i * n + i] = 1.0;
  for (int sweep = 0; sweep < 64; ++sweep) {
    double off = 0.0;
    for (int p = 0; p < n; ++p)
      for (int q = p + 1; q < n; ++q) off += a[p * n + q] * a[p * n + q];
    if (!(off > 0.0)) break;
    for (int p = 0; p < n; ++p)
      for (int q = p + 1; q < n; ++q) {
        const double apq = a[p * n + q];
        if (apq == 0.0) continue;
        const double theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (hd_fabs(theta) + hd_sqrt(theta * theta + 1.0));
        const double c = 1.0 / hd_sqrt(t * t + 1.0), s = t * c;
        for (int k = 0; k < n; ++k) {  // columns p, q
          const double akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (int k = 0; k < n; ++k) {  // rows p, q
          const double apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (int k = 0; k < n; ++k) {
          const double vkp = v[k * n + p], vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
  }
  double top = 0.0;
  for (int i = 0; i < n; ++i) top = hd_fabs(a[i * n + i]) > top ? hd_fabs(a[i * n + i]) : top;
  const double cut = n * DBL_EPSILON * top;
  for (int i = 0; i < n * n; ++i) P[i] = 0.0;
  for (int k = 0; k < n; ++k) {
    const double lam = a[k * n + k];
    if (!(hd_fabs(lam) > cut)) continue;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) P[i * n + j] += v[i * n + k] * v[j * n + k] / lam;
  }
}

// OpenCV's parameter update of warp W (row-major 3 x 3) by dp, per motion (ecc.py's _update):
// each parameter adds to one entry of W, in OpenCV's order, but the euclidean angle.
PYADV_HD inline void update_warp(int motion, double* W, const double* dp) {
  if (motion == em::kEuclidean) {
    const double s = W[3] < -1.0 ? -1.0 : W[3] > 1.0 ? 1.0 : W[3];
    const double theta = hd_asin(s) + dp[0];
    W[2] += dp[1];
    W[5] += dp[2];
    W[0] = hd_cos(theta);
    W[1] = -hd_sin(theta);
    W[3] = hd_sin(theta);
    W[4] = hd_cos(theta);
    return;
  }
  const int translation[2] = {2, 5}, affine[6] = {0, 3, 1, 4, 2, 5}, homography[8] = {0, 3, 6, 1, 4, 7, 2, 5};
  const int* entry = motion == em::kTranslation ? translation : motion == em::kAffine ? affine : homography;
  for (int i = 0; i < em::n_params(motion); ++i) W[entry[i]] += dp[i];
}

// y = A x for A [n, n].
PYADV_HD inline void matvec(const double* A, int n, const double* x, double* y) {
  for (int i = 0; i < n; ++i) {
    y[i] = 0.0;
    for (int j = 0; j < n; ++j) y[i] += A[i * n + j] * x[j];
  }
}

// One Gauss-Newton step from the sums S at warp W: returns the correlation measured at W in
// *rho; writes the updated warp to W_new and returns true when the step is good (the
// correlation is being maximised, it and the new warp are finite), false when the pair fails
// (ecc.py: OpenCV would raise). Solves with the Hessian by LU; a singular one (no texture)
// through its pseudo-inverse, as ecc.py's _inverse.
PYADV_HD inline bool gauss_newton(const double* S, int motion, const double* W, double* W_new, double* rho) {
  const int n = em::n_params(motion);
  Centred c;
  centre(S, n, &c);
  *rho = c.rho;
  bool h_finite = true;
  for (int i = 0; i < n * n; ++i) h_finite = h_finite && finite(c.H[i]);
  if (!h_finite) return false;
  double LU[kN * kN], iph[kN], rhs[kN], dp[kN];
  int piv[kN];
  for (int i = 0; i < n * n; ++i) LU[i] = c.H[i];
  bool ok = lu_factor(LU, n, piv);
  if (ok) {
    lu_solve(LU, piv, n, c.ip, iph);
    for (int i = 0; i < n; ++i) ok = ok && finite(iph[i]);
  }
  double P[kN * kN];
  if (!ok) {
    sym_pinv(c.H, n, P);
    matvec(P, n, c.ip, iph);
  }
  double ip_iph = 0.0, tp_iph = 0.0;
  for (int i = 0; i < n; ++i) ip_iph += c.ip[i] * iph[i], tp_iph += c.tp[i] * iph[i];
  const double lam_n = c.inorm * c.inorm - ip_iph;
  const double lam_d = c.corr - tp_iph;
  const bool bad = !(lam_d > 0) || !(c.rho == c.rho);
  const double lam = lam_n / (bad ? 1.0 : lam_d);
  for (int i = 0; i < n; ++i) rhs[i] = lam * c.tp[i] - c.ip[i];
  if (ok)
    lu_solve(LU, piv, n, rhs, dp);
  else
    matvec(P, n, rhs, dp);
  for (int i = 0; i < 9; ++i) W_new[i] = W[i];
  update_warp(motion, W_new, dp);
  bool good = !bad;
  for (int i = 0; i < 9; ++i) good = good && finite(W_new[i]);
  return good;
}

// What align_pair returns for one pair (ecc.py's ECCResult, one row).
struct PairResult {
  double W[9];
  double rho;
  int64_t iterations;
  bool converged, failed, rejected;
  bool stepped;      // at least one step was taken
  double first_rho;  // the correlation the first step measured, at W0
};

// Row b of the op's outputs: W [N, 3, 3], rho, iterations and the three flags [N].
PYADV_HD inline void store(const PairResult& r, int64_t b, double* W, double* rho, int64_t* its, bool* converged,
                           bool* failed, bool* rejected) {
  for (int i = 0; i < 9; ++i) W[9 * b + i] = r.W[i];
  rho[b] = r.rho;
  its[b] = r.iterations;
  converged[b] = r.converged;
  failed[b] = r.failed;
  rejected[b] = r.rejected;
}

// One pair's whole alignment, ecc.py's _ecc_loop for one row: Gauss-Newton steps from W0 until
// the correlation changes by less than eps, `iters` steps, or a step fails; then, with
// `safeguards`, a final warp that correlates worse than the identity is replaced by it.
// from_identity: W0 is the identity, so the first step's correlation is the identity's;
// identity_rho, when not null, is the identity's correlation measured already.
// sums_at(W, motion, S) writes the sums of ecc_math.h at warp W to S; on a GPU it is a block's
// collective call, and every thread runs this same scalar code on the same sums, so the
// control flow stays uniform across the block.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable  // sums_at is a __device__ lambda in the CUDA kernel
#endif
template <typename SumsAt>
PYADV_HD inline void align_pair(SumsAt& sums_at, int motion, const double* W0, bool from_identity, int64_t iters,
                                double eps, bool safeguards, const double* identity_rho, PairResult* out) {
  double W[9], S[em::kMaxStats], Wn[9];
  for (int i = 0; i < 9; ++i) W[i] = W0[i];
  double rho = -1.0, last = -eps, first_rho = 0.0;
  bool have_first = false, failed = false;
  int64_t its = 0;
  for (int64_t it = 0; it < iters; ++it) {
    if (failed || !(hd_fabs(rho - last) >= eps)) break;
    sums_at(W, motion, S);
    double r;
    const bool good = gauss_newton(S, motion, W, Wn, &r);
    last = rho;
    rho = r;
    if (it == 0) first_rho = r, have_first = true;
    if (good)
      for (int i = 0; i < 9; ++i) W[i] = Wn[i];
    ++its;
    failed = failed || !good;
  }
  const bool converged = !failed && hd_fabs(rho - last) < eps;
  bool rejected = false;
  if (safeguards) {
    const double eye[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    bool fin = true;
    for (int i = 0; i < 9; ++i) fin = fin && finite(W[i]);
    double ident;
    if (from_identity && have_first) {
      ident = first_rho;
    } else if (identity_rho) {
      ident = *identity_rho;
    } else {
      sums_at(eye, em::kTranslation, S);
      ident = rho_of(S);
    }
    // The returned warp is one update past the last measured correlation: a converged pair
    // clearly above the identity stays above it after that small step; the others are measured.
    double final_rho = rho;
    if (!converged || rho < ident + kSafety || !fin) {
      sums_at(fin ? W : eye, em::kTranslation, S);
      final_rho = rho_of(S);
    }
    rejected = !(final_rho >= ident) || !fin;
    if (rejected) {
      for (int i = 0; i < 9; ++i) W[i] = eye[i];
      rho = ident;
    }
  }
  for (int i = 0; i < 9; ++i) out->W[i] = W[i];
  out->rho = rho;
  out->iterations = its;
  out->converged = converged;
  out->failed = failed;
  out->rejected = rejected;
  out->stepped = have_first;
  out->first_rho = first_rho;
}

// align_pair, or with `coarse` (from the identity) ecc.py's coarse-to-fine path for small
// images in one go: a translation fit first, without safeguards, then the motion from it,
// whose identity check takes the correlation the translation fit's first step measured at the
// identity (the same sums a separate measurement would add up).
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <typename SumsAt>
PYADV_HD inline void solve_pair(SumsAt& sums_at, int motion, const double* W0, bool from_identity, int64_t iters,
                                double eps, bool safeguards, bool coarse, PairResult* out) {
  if (!coarse) return align_pair(sums_at, motion, W0, from_identity, iters, eps, safeguards, nullptr, out);
  PairResult t;
  align_pair(sums_at, em::kTranslation, W0, from_identity, iters, eps, false, nullptr, &t);
  const bool known = from_identity && t.stepped;
  align_pair(sums_at, motion, t.W, false, iters, eps, safeguards, known ? &t.first_rho : nullptr, out);
}

}  // namespace ecc_solve
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
