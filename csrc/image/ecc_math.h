// The inner step of ECC alignment (Evangelidis and Psarakis 2008; OpenCV's findTransformECC),
// per template pixel: warp the pixel into the image, sample the pre-filtered image and its
// gradients bilinearly (warp_math.h, the perspective warp's own rule), and add the pixel's
// contribution to the sums that the Gauss-Newton step needs. One pass over the template gives
// everything; the tiny solves are ecc_solve_math.h's. Shared by the CPU op, the CUDA kernel and
// the emulator.
//
// Sums over the template pixels that are at least `margin` pixels inside the template and whose
// source lies inside the image (the bilinear coverage of an all-ones image > 0.999, as OpenCV's
// warped mask), in this order (K = 6 + 3n + n(n+1)/2 values, n the motion's parameters):
//   count, sum T, sum I, sum T^2, sum I^2, sum T I,
//   sum J [n], sum J T [n], sum J I [n], sum J J^T (upper triangle, row by row) [n(n+1)/2],
// with J the Jacobian of the warped image with respect to the motion's parameters, in OpenCV's
// order. Means are removed afterwards: J (T - mean T) = sum J T - mean T * sum J, and so on.
#pragma once

#include <cstdint>

#include "../common/macros.h"
#include "warp_math.h"

namespace pyadv {
inline namespace PYADV_ISA_TAG {
namespace ecc_math {

enum Motion : int { kTranslation = 0, kEuclidean = 1, kAffine = 2, kHomography = 3 };  // OpenCV's codes
constexpr int kMaxParams = 8;
constexpr int kMaxStats = 6 + 3 * kMaxParams + kMaxParams * (kMaxParams + 1) / 2;  // 66

PYADV_HD constexpr inline int n_params(int motion) {
  return motion == kTranslation ? 2 : motion == kEuclidean ? 3 : motion == kAffine ? 6 : 8;
}
PYADV_HD constexpr inline int n_stats(int motion) {
  const int n = n_params(motion);
  return 6 + 3 * n + n * (n + 1) / 2;
}

// Bilinear weight of the in-image neighbours, computed as warp_math::sample would on an all-ones
// image (so the mask is the one warping a ones channel gives).
PYADV_HD inline double coverage(int64_t H, int64_t W, int64_t ix, int64_t iy, double ax, double ay) {
  auto at = [&](int64_t r, int64_t c) -> double { return (r >= 0 && r < H && c >= 0 && c < W) ? 1.0 : 0.0; };
  return (1 - ay) * ((1 - ax) * at(iy, ix) + ax * at(iy, ix + 1)) + ay * ((1 - ax) * at(iy + 1, ix) + ax * at(iy + 1, ix + 1));
}

// J [n_params(kMotion)]: the Jacobian at template point (X, Y) from the warped image's
// gradients (gx, gy), in OpenCV's parameter order. V is double, or on the CPU a GCC vector of
// doubles (one pixel per lane).
template <int kMotion, typename V>
PYADV_HD inline void jacobian_of(V X, V Y, V gx, V gy, const double* M, V* J) {
  if (kMotion == kTranslation) {
    J[0] = gx;
    J[1] = gy;
  } else if (kMotion == kAffine) {
    J[0] = gx * X;
    J[1] = gy * X;
    J[2] = gx * Y;
    J[3] = gy * Y;
    J[4] = gx;
    J[5] = gy;
  } else if (kMotion == kEuclidean) {
    const double c = M[0], s = M[3];
    const V hx = -(X * s) - (Y * c), hy = (X * c) - (Y * s);
    J[0] = gx * hx + gy * hy;
    J[1] = gx;
    J[2] = gy;
  } else {
    const V iden = 1.0 / (X * M[6] + Y * M[7] + 1.0);  // one division, products after
    const V hx = (-X * M[0] - Y * M[1] - M[2]) * iden;
    const V hy = (-X * M[3] - Y * M[4] - M[5]) * iden;
    gx *= iden;
    gy *= iden;
    const V tt = hx * gx + hy * gy;
    J[0] = gx * X;
    J[1] = gy * X;
    J[2] = tt * X;
    J[3] = gx * Y;
    J[4] = gy * Y;
    J[5] = tt * Y;
    J[6] = gx;
    J[7] = gy;
  }
}

PYADV_HD inline void jacobian(int motion, double X, double Y, double gx, double gy, const double* M, double* J) {
  switch (motion) {
    case kTranslation: jacobian_of<kTranslation, double>(X, Y, gx, gy, M, J); break;
    case kEuclidean: jacobian_of<kEuclidean, double>(X, Y, gx, gy, M, J); break;
    case kAffine: jacobian_of<kAffine, double>(X, Y, gx, gy, M, J); break;
    default: jacobian_of<kHomography, double>(X, Y, gx, gy, M, J); break;
  }
}

// The terms of template pixel (x, y): the image sample v and the Jacobian J [n_params(motion)].
// Returns false when the pixel does not count (its source is outside the image). img: the image,
// x- and y-gradient planes, each [H, W] with neighbouring pixels `stride` elements apart; M: the
// warp (template -> image), row-major 3 x 3.
template <typename T>
PYADV_HD inline bool pixel_terms(const T* img, const T* gx_plane, const T* gy_plane, int64_t H, int64_t W, int64_t x,
                                 int64_t y, const double* M, int motion, double* v, double* J, int64_t stride = 1) {
  int64_t ix, iy;
  double ax, ay;
  if (!warp_math::source(M, x, y, &ix, &iy, &ax, &ay)) return false;
  double gx, gy;
  if (ix >= 0 && iy >= 0 && ix + 1 < W && iy + 1 < H) {
    // All four neighbours inside (the common case): warp_math::sample's arithmetic without its
    // bounds checks, the coverage being 1.
    const int64_t o = (iy * W + ix) * stride, dx = stride, dy = W * stride;
    auto lerp = [&](const T* p) -> T {
      return warp_math::blend<T>(ax, ay, double(p[o]), double(p[o + dx]), double(p[o + dy]), double(p[o + dy + dx]));
    };
    *v = double(lerp(img));
    gx = double(lerp(gx_plane));
    gy = double(lerp(gy_plane));
  } else {
    if (!(coverage(H, W, ix, iy, ax, ay) > 0.999)) return false;
    *v = double(warp_math::sample(img, H, W, ix, iy, ax, ay, stride));
    gx = double(warp_math::sample(gx_plane, H, W, ix, iy, ax, ay, stride));
    gy = double(warp_math::sample(gy_plane, H, W, ix, iy, ax, ay, stride));
  }
  jacobian(motion, double(x), double(y), gx, gy, M, J);
  return true;
}

// Adds template pixel (x, y) with template value t to acc [n_stats(motion)].
template <typename T>
PYADV_HD inline void add_pixel(const T* img, const T* gx_plane, const T* gy_plane, int64_t H, int64_t W, int64_t x,
                               int64_t y, double t, const double* M, int motion, double* acc) {
  double v, J[kMaxParams];
  if (!pixel_terms(img, gx_plane, gy_plane, H, W, x, y, M, motion, &v, J)) return;
  const int n = n_params(motion);
  acc[0] += 1.0;
  acc[1] += t;
  acc[2] += v;
  acc[3] += t * t;
  acc[4] += v * v;
  acc[5] += t * v;
  double* sj = acc + 6;
  double* sjt = sj + n;
  double* sji = sjt + n;
  double* sjj = sji + n;
  for (int i = 0; i < n; ++i) {
    sj[i] += J[i];
    sjt[i] += J[i] * t;
    sji[i] += J[i] * v;
  }
  for (int i = 0, k = 0; i < n; ++i)
    for (int j = i; j < n; ++j, ++k) sjj[k] += J[i] * J[j];
}

// Whether template pixel (x, y) of an [H, W] template lies at least `margin` pixels inside.
PYADV_HD inline bool inside_margin(int64_t x, int64_t y, int64_t H, int64_t W, int64_t margin) {
  return x >= margin && y >= margin && x < W - margin && y < H - margin;
}

}  // namespace ecc_math
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
