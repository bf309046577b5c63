// Perspective warp with an inverse map (OpenCV's warpPerspective with WARP_INVERSE_MAP):
// output pixel (x, y) samples the input at (X / Z, Y / Z), (X, Y, Z) = M (x, y, 1), bilinearly,
// each of the four neighbours outside the image counting as 0 (BORDER_CONSTANT, value 0), at
// the exact position (OpenCV 5.0's float warp does the same: the tests agree to float32
// rounding, below 2e-5). Shared
// by the CPU kernel, the CUDA kernel and the emulator.
#pragma once

#include <cmath>
#include <cstdint>

#include "../common/macros.h"

namespace pyadv {
inline namespace PYADV_ISA_TAG {
namespace warp_math {

PYADV_HD inline double hd_floor(double v) {
#if defined(__CUDA_ARCH__)
  return ::floor(v);
#else
  return std::floor(v);
#endif
}

// Source position of output pixel (x, y): integer corner (ix, iy) and fractions (ax, ay).
// Returns false where the map sends the pixel to infinity (Z = 0).
PYADV_HD inline bool source(const double* M, int64_t x, int64_t y, int64_t* ix, int64_t* iy, double* ax, double* ay) {
  const double X = M[0] * x + M[1] * y + M[2];
  const double Y = M[3] * x + M[4] * y + M[5];
  const double Z = M[6] * x + M[7] * y + M[8];
  if (Z == 0.0) return false;
  const double iz = 1.0 / Z;  // one division, two products
  const double sx = X * iz, sy = Y * iz;
  if (!(sx > -2.0e9 && sx < 2.0e9 && sy > -2.0e9 && sy < 2.0e9)) return false;
  const double fx = hd_floor(sx), fy = hd_floor(sy);
  *ix = static_cast<int64_t>(fx);
  *iy = static_cast<int64_t>(fy);
  *ax = sx - fx;
  *ay = sy - fy;
  return true;
}

// stride: elements between neighbouring pixels of the plane (1, or the channel count when the
// channels are interleaved).
template <typename T>
PYADV_HD inline T sample(const T* plane, int64_t H, int64_t W, int64_t ix, int64_t iy, double ax, double ay,
                         int64_t stride = 1) {
  auto at = [&](int64_t r, int64_t c) -> double {
    return (r >= 0 && r < H && c >= 0 && c < W) ? double(plane[(r * W + c) * stride]) : 0.0;
  };
  return T((1 - ay) * ((1 - ax) * at(iy, ix) + ax * at(iy, ix + 1)) + ay * ((1 - ax) * at(iy + 1, ix) + ax * at(iy + 1, ix + 1)));
}

// The CPU kernels' form of source() for kLanes consecutive pixels (x0 + l, y), l < m, written
// so that the loop vectorises: per lane the fractions (ax, ay), whether all four neighbours lie
// inside an [H, W] image (in: 1 or 0; always 0 from lane m on, or when the image is smaller
// than 2 x 2) and then the offset of the top-left one (off, else 0). The arithmetic is
// source()'s, operation for operation.
template <int kLanes>
inline void source_block(const double* M, int64_t x0, int64_t y, int m, int64_t H, int64_t W, double* ax, double* ay,
                         double* in, int64_t* off) {
  const double x0d = double(x0), yd = double(y), Wd = double(W), Hd = double(H), md = double(m);
  const bool big = H >= 2 && W >= 2;  // else no lane is inside, and offset 0 + W + 1 may not exist
  for (int l = 0; l < kLanes; ++l) {
    const double xd = x0d + double(l);
    const double X = M[0] * xd + M[1] * yd + M[2];
    const double Y = M[3] * xd + M[4] * yd + M[5];
    const double Z = M[6] * xd + M[7] * yd + M[8];
    const double iz = 1.0 / (Z == 0.0 ? 1.0 : Z);
    double sx = X * iz, sy = Y * iz;
    const bool fin = (Z != 0.0) & (sx > -2.0e9) & (sx < 2.0e9) & (sy > -2.0e9) & (sy < 2.0e9);
    sx = fin ? sx : 0.0;
    sy = fin ? sy : 0.0;
    const double fx = hd_floor(sx), fy = hd_floor(sy);
    ax[l] = sx - fx;
    ay[l] = sy - fy;
    const bool inside = big & fin & (fx >= 0.0) & (fy >= 0.0) & (fx + 1.0 < Wd) & (fy + 1.0 < Hd) & (double(l) < md);
    in[l] = inside ? 1.0 : 0.0;
    off[l] = inside ? int64_t(fy) * W + int64_t(fx) : 0;
  }
}

// The bilinear blend of sample(), for four corners known to be inside.
template <typename T>
PYADV_HD inline T blend(double ax, double ay, double a00, double a01, double a10, double a11) {
  return T((1 - ay) * ((1 - ax) * a00 + ax * a01) + ay * ((1 - ax) * a10 + ax * a11));
}

}  // namespace warp_math
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
