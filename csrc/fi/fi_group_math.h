// Per-pixel FI with the C channel components of one pixel as one C-dimensional perturbation
// (paper 000, eq. (1) with omega = the pixel's C components), the math core shared by the
// CPU kernel, the CUDA kernel and the emulator.
//
// For one image and one pixel, with a_k the C-vector of gradients of log P_k:
//   G  = sum_k w_k a_k a_k^T   (C x C; w_k as in fi_math.h)
//   FI = g^T G^+ g,  g = c_t a_t,
// with the pseudo-inverse taken over the eigenvalues lambda > max(rank_tol^2, C eps lambda_max)
// (eps: the machine epsilon of T, the default cut-off of torch.linalg.pinv). The authors' code
// (shu-hai/SA_DNN) takes the SVD of the C x K matrix [sqrt(w_k) a_k]; its singular values are
// sqrt(lambda), so rank_tol is their singular-value cut-off, as for single pixels.
//
// The eigen-decomposition is cyclic Jacobi with a fixed number of sweeps: for C = 2 one
// rotation diagonalises exactly (a closed form); for C = 3 the trigonometric closed form was
// not used because its eigenvectors lose accuracy when eigenvalues cluster, which is exactly
// where the rank cut-off acts; five sweeps reach double precision for C <= 4.
//
// G is stored packed: the upper triangle row by row, index tri(i, j) for i <= j.
#pragma once

#include <cfloat>

#include "../common/hd_math.h"
#include "fi_math.h"

namespace pyadv {
inline namespace PYADV_ISA_TAG {
namespace fi {

constexpr int kMaxGroup = 4;

PYADV_HD constexpr int tri_size(int C) { return C * (C + 1) / 2; }
PYADV_HD constexpr int tri(int i, int j, int C) { return i * C - i * (i - 1) / 2 + (j - i); }

template <typename T>
struct Eps;
template <>
struct Eps<float> {
  static constexpr float value = FLT_EPSILON;
};
template <>
struct Eps<double> {
  static constexpr double value = DBL_EPSILON;
};

template <typename T>
PYADV_HD inline T hd_abs(T x) {
  return x < T(0) ? -x : x;
}

// g^T G^+ g for one pixel; Gp packed (tri_size(C) values), g[C].
template <typename T>
PYADV_HD inline T group_fi(const T* Gp, const T* g, int C, T rank_tol_sq) {
  if (C == 1) return finish(g[0], Gp[0], rank_tol_sq);
  T A[kMaxGroup][kMaxGroup], V[kMaxGroup][kMaxGroup];
  for (int i = 0; i < C; ++i)
    for (int j = 0; j < C; ++j) {
      A[i][j] = i <= j ? Gp[tri(i, j, C)] : Gp[tri(j, i, C)];
      V[i][j] = i == j ? T(1) : T(0);
    }
  const int sweeps = C == 2 ? 1 : 5;
  for (int s = 0; s < sweeps; ++s)
    for (int p = 0; p < C - 1; ++p)
      for (int q = p + 1; q < C; ++q) {
        const T apq = A[p][q];
        if (apq == T(0)) continue;
        // Rotation that zeroes A[p][q] (the smaller of the two angles, for stability).
        const T theta = (A[q][q] - A[p][p]) / (T(2) * apq);
        const T t = (theta >= T(0) ? T(1) : T(-1)) / (hd_abs(theta) + hd_sqrt(theta * theta + T(1)));
        const T c = T(1) / hd_sqrt(t * t + T(1)), sn = t * c;
        for (int k = 0; k < C; ++k) {
          const T akp = A[k][p], akq = A[k][q];
          A[k][p] = c * akp - sn * akq;
          A[k][q] = sn * akp + c * akq;
        }
        for (int k = 0; k < C; ++k) {
          const T apk = A[p][k], aqk = A[q][k];
          A[p][k] = c * apk - sn * aqk;
          A[q][k] = sn * apk + c * aqk;
        }
        A[p][q] = A[q][p] = T(0);
        for (int k = 0; k < C; ++k) {
          const T vkp = V[k][p], vkq = V[k][q];
          V[k][p] = c * vkp - sn * vkq;
          V[k][q] = sn * vkp + c * vkq;
        }
      }
  T lmax = T(0);
  for (int j = 0; j < C; ++j) lmax = A[j][j] > lmax ? A[j][j] : lmax;
  T cut = T(C) * Eps<T>::value * lmax;
  cut = cut > rank_tol_sq ? cut : rank_tol_sq;
  T fi = T(0);
  for (int j = 0; j < C; ++j) {
    const T lam = A[j][j];
    if (!(lam > cut)) continue;
    T proj = T(0);
    for (int k = 0; k < C; ++k) proj += V[k][j] * g[k];
    fi += proj * proj / lam;
  }
  return fi;
}

}  // namespace fi
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
