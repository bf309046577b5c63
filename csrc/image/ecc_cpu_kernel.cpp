// CPU kernel of the ECC inner step, over blocks of kLanes pixels of a row: everything but the
// corner gathers (row loads where the block's corners are neighbours: bilinear_lanes.h)
// vectorises, and the 6 + 3n + n(n+1)/2 sums run on independent lanes that stay
// in L1 (one accumulator per sum and lane), added in a fixed order at the end.
#include "ecc_cpu_kernel.h"

#include <cmath>
#include <cstring>
#include <utility>

#include "bilinear_lanes.h"
#include "ecc_math.h"

PYADV_DECLARE_ECC_CPU_KERNELS(PYADV_ISA_TAG)

namespace pyadv {
namespace PYADV_ISA_TAG {
namespace ecc {

namespace em = ecc_math;
namespace bl = bilinear_lanes;
using bl::kLanes;
using bl::V8;

namespace {

constexpr int kBlocks = 8;                     // blocks of kLanes pixels per chunk
constexpr int kChunk = kBlocks * kLanes;

PYADV_FORCEINLINE V8 load8(const double* p) {
  V8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The per-pixel terms of a chunk of pixels (zero where a pixel does not count).
template <int n>
struct Chunk {
  alignas(64) double c[kChunk], t[kChunk], v[kChunk], J[n][kChunk];
};

PYADV_FORCEINLINE void add_to(double* acc_row, V8 x) {
  const V8 r = load8(acc_row) + x;
  std::memcpy(acc_row, &r, sizeof r);
}

// Row i of the sums that involve J_i: sum J_i, sum J_i t, sum J_i v and sum J_i J_j for j >= i.
// i is a template parameter so that every index is a constant and the n - i + 3 running sums
// live in registers across the chunk's blocks.
template <int n, int i>
PYADV_FORCEINLINE void accumulate_row(double (*acc)[kLanes], const Chunk<n>& b, int blocks) {
  constexpr int row = 6 + 3 * n + i * n - i * (i - 1) / 2;  // index of sum J_i J_i
  V8 sj = {}, sjt = {}, sjv = {}, sjj[n - i] = {};
  for (int k = 0; k < blocks; ++k) {
    const V8 Ji = load8(b.J[i] + k * kLanes), t = load8(b.t + k * kLanes), v = load8(b.v + k * kLanes);
    sj += Ji;
    sjt += Ji * t;
    sjv += Ji * v;
#pragma GCC unroll 8
    for (int j = 0; j < n - i; ++j) sjj[j] += Ji * load8(b.J[i + j] + k * kLanes);
  }
  add_to(acc[6 + i], sj);
  add_to(acc[6 + n + i], sjt);
  add_to(acc[6 + 2 * n + i], sjv);
#pragma GCC unroll 8
  for (int j = 0; j < n - i; ++j) add_to(acc[row + j], sjj[j]);
}

template <int n, int... I>
PYADV_FORCEINLINE void accumulate_rows(double (*acc)[kLanes], const Chunk<n>& b, int blocks,
                                       std::integer_sequence<int, I...>) {
  (accumulate_row<n, I>(acc, b, blocks), ...);
}

// Adds a chunk's sums to acc [K][kLanes]. Each sum stays in a register across the chunk's blocks
// (one load of each operand per block), and FMA contraction is allowed here: these are plain
// sums whose order differs from any reference anyway.
template <int n>
__attribute__((noinline, optimize("fp-contract=fast"))) void accumulate(double (*acc)[kLanes], const Chunk<n>& b,
                                                                         int blocks) {
  V8 s0 = {}, s1 = {}, s2 = {}, s3 = {}, s4 = {}, s5 = {};
  for (int k = 0; k < blocks; ++k) {
    const V8 c = load8(b.c + k * kLanes), t = load8(b.t + k * kLanes), v = load8(b.v + k * kLanes);
    s0 += c;
    s1 += t;
    s2 += v;
    s3 += t * t;
    s4 += v * v;
    s5 += t * v;
  }
  add_to(acc[0], s0);
  add_to(acc[1], s1);
  add_to(acc[2], s2);
  add_to(acc[3], s3);
  add_to(acc[4], s4);
  add_to(acc[5], s5);
  accumulate_rows<n>(acc, b, blocks, std::make_integer_sequence<int, n>{});
}

// Sums of rows [r0, r1) of one pair, for one motion model. Each block of kLanes pixels of a row
// goes through: the warp and the corner offsets (vectorised, divisions included), the corners
// (row loads or gathers), the bilinear blends and the Jacobian (vectorised) into a chunk of
// terms; chunks are summed by accumulate(). Pixels whose four neighbours are not all inside take
// warp_math's general path, one by one. The warp, blends and Jacobian use the same operations, in
// the same order, as ecc_math's pixel_terms (FMA contraction is off for this file), and the
// blends are bilinear_lanes.h's (tests/test_ecc_pass.py checks the samples against the
// reference bit for bit).
template <typename T, int kMotion, bool kInterleaved>
void moments_rows_motion(const T* img, const T* tmpl, int64_t H, int64_t W, int64_t r0, int64_t r1, const double* M,
                         int64_t margin, double* out) {
  // Planar img: [3, H, W]; interleaved: [H, W, 3] (the three values of a pixel side by side).
  constexpr int64_t S = kInterleaved ? 3 : 1;
  const int64_t PS = kInterleaved ? 1 : H * W;  // from one plane to the next
  constexpr int n = kMotion == em::kTranslation ? 2 : kMotion == em::kEuclidean ? 3 : kMotion == em::kAffine ? 6 : 8;
  constexpr int K = 6 + 3 * n + n * (n + 1) / 2;
  alignas(64) double acc[K][kLanes] = {};
  Chunk<n> chunk;
  alignas(64) double ax[kLanes], ay[kLanes], ins[kLanes];
  alignas(64) int64_t off[kLanes];
  const int64_t x_end = W - margin;
  const bool big = H >= 2 && W >= 2;
  for (int64_t y = r0; y < r1; ++y) {
    const double yd = double(y);
    int blocks = 0;
    for (int64_t x0 = margin; x0 < x_end; x0 += kLanes) {
      const int m = x_end - x0 < kLanes ? int(x_end - x0) : kLanes;
      const double x0d = double(x0);
      warp_math::source_block<kLanes>(M, x0, y, m, H, W, ax, ay, ins, off);
      const int base = blocks * kLanes;
      const bool row_run = !kInterleaved && big && bl::is_row_run(ins, off, m);
      V8 ax_v, ay_v, in, v[3];
      std::memcpy(&ax_v, ax, sizeof ax_v);
      std::memcpy(&ay_v, ay, sizeof ay_v);
      std::memcpy(&in, ins, sizeof in);
      for (int c = 0; c < 3; ++c) v[c] = bl::sample(img + c * PS, W, S, off, m, row_run, big, ax_v, ay_v);
      V8 X, J[n];
      for (int l = 0; l < kLanes; ++l) X[l] = x0d + double(l);
      em::jacobian_of<kMotion, V8>(X, V8{} + yd, v[1], v[2], M, J);
      const V8 zero = {};
      for (int i = 0; i < n; ++i) {
        const V8 Ji = in != 0.0 ? J[i] : zero;
        std::memcpy(chunk.J[i] + base, &Ji, sizeof Ji);
      }
      const V8 val = in != 0.0 ? v[0] : zero, t = in != 0.0 ? bl::load(tmpl + y * W + x0, m) : zero;
      std::memcpy(chunk.c + base, &in, sizeof in);
      std::memcpy(chunk.v + base, &val, sizeof val);
      std::memcpy(chunk.t + base, &t, sizeof t);
      for (int l = 0; l < m && !row_run; ++l) {  // the border cases, through the general path
        if (ins[l] != 0.0) continue;
        double pv, pJ[em::kMaxParams];
        if (!em::pixel_terms(img, img + PS, img + 2 * PS, H, W, x0 + l, y, M, kMotion, &pv, pJ, S)) continue;
        chunk.c[base + l] = 1.0;
        chunk.v[base + l] = pv;
        chunk.t[base + l] = double(tmpl[y * W + x0 + l]);
        for (int i = 0; i < n; ++i) chunk.J[i][base + l] = pJ[i];
      }
      if (++blocks == kBlocks) {
        accumulate<n>(acc, chunk, blocks);
        blocks = 0;
      }
    }
    if (blocks) accumulate<n>(acc, chunk, blocks);
  }
  for (int k = 0; k < K; ++k) {
    double s = 0.0;
    for (int l = 0; l < kLanes; ++l) s += acc[k][l];
    out[k] += s;
  }
}

}  // namespace

template <typename T>
void moments_rows(const T* img, const T* tmpl, int64_t H, int64_t W, int64_t y0, int64_t y1, const double* M,
                  int motion, int64_t margin, bool interleaved, double* out) {
  const int64_t r0 = y0 > margin ? y0 : margin, r1 = y1 < H - margin ? y1 : H - margin;
#define PYADV_ECC_CASE(MOTION)                                                                              \
  case MOTION:                                                                                              \
    return interleaved ? moments_rows_motion<T, MOTION, true>(img, tmpl, H, W, r0, r1, M, margin, out)     \
                       : moments_rows_motion<T, MOTION, false>(img, tmpl, H, W, r0, r1, M, margin, out);
  switch (motion) {
    PYADV_ECC_CASE(em::kTranslation)
    PYADV_ECC_CASE(em::kEuclidean)
    PYADV_ECC_CASE(em::kAffine)
    default:
    PYADV_ECC_CASE(em::kHomography)
  }
#undef PYADV_ECC_CASE
}

namespace {

// Reflect-101 (OpenCV's default border): ... 2 1 | 0 1 2 ... n-1 | n-2 n-3 ...
inline int64_t reflect101(int64_t i, int64_t n) {
  if (n == 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
  return i;
}

}  // namespace

// The pre-filter of one plane, each pass as long runs over the whole plane (on small images a
// row is too short for the vector loops): the taps of a pixel at least r columns (rows) from the
// border never leave its row (column), so every such pixel is one element of a single run, and
// the few border pixels are computed again with reflect-101. Each output adds the same terms in
// the same order as a row-by-row filter.
void prefilter_plane(const float* src, int64_t H, int64_t W, const float* k, int64_t r, float* out, float* gx,
                     float* gy, float* work) {
  float* tmp = work;  // [H, W], horizontally filtered
  const int64_t P = H * W;
  const int64_t taps = 2 * r + 1;
  for (int64_t i = 0; i < P; ++i) tmp[i] = 0.f;
  for (int64_t q = 0; q < taps; ++q) {
    const float w = k[q];
    const float* p = src + (q - r);
    for (int64_t i = r; i < P - r; ++i) tmp[i] += w * p[i];
  }
  auto row_border = [&](int64_t y, int64_t x) {  // tmp at (y, x) with the reflected columns
    const float* srow = src + y * W;
    float o = 0.f;
    for (int64_t q = 0; q < taps; ++q) o += k[q] * srow[reflect101(x + q - r, W)];
    tmp[y * W + x] = o;
  };
  for (int64_t y = 0; y < H; ++y) {
    for (int64_t x = 0; x < r && x < W; ++x) row_border(y, x);
    for (int64_t x = W - r > r ? W - r : r; x < W; ++x) row_border(y, x);
  }
  const int64_t i0 = r * W, i1 = (H - r) * W;  // the rows whose taps stay inside
  for (int64_t i = 0; i < P; ++i) out[i] = 0.f;
  for (int64_t q = 0; q < taps; ++q) {
    const float w = k[q];
    const float* p = tmp + (q - r) * W;
    for (int64_t i = i0; i < i1; ++i) out[i] += w * p[i];
  }
  for (int64_t y = 0; y < H; ++y) {
    if (y >= r && y < H - r) continue;
    float* o = out + y * W;
    for (int64_t q = 0; q < taps; ++q) {
      const float w = k[q];
      const float* row = tmp + reflect101(y + q - r, H) * W;
      for (int64_t x = 0; x < W; ++x) o[x] += w * row[x];
    }
  }
  if (!gx) return;
  for (int64_t i = 1; i + 1 < P; ++i) gx[i] = 0.5f * (out[i + 1] - out[i - 1]);
  for (int64_t y = 0; y < H; ++y) {  // first and last columns (0 from reflect-101), after the run
    const float* row = out + y * W;
    gx[y * W] = 0.5f * (row[reflect101(1, W)] - row[reflect101(-1, W)]);
    gx[y * W + W - 1] = 0.5f * (row[reflect101(W, W)] - row[reflect101(W - 2, W)]);
  }
  for (int64_t i = W; i < P - W; ++i) gy[i] = 0.5f * (out[i + W] - out[i - W]);
  for (int64_t y = 0; y < H; ++y) {
    if (y >= 1 && y < H - 1) continue;
    const float* up = out + reflect101(y - 1, H) * W;
    const float* down = out + reflect101(y + 1, H) * W;
    float* oy = gy + y * W;
    for (int64_t x = 0; x < W; ++x) oy[x] = 0.5f * (down[x] - up[x]);
  }
}

template void moments_rows<float>(const float*, const float*, int64_t, int64_t, int64_t, int64_t, const double*, int,
                                  int64_t, bool, double*);
template void moments_rows<double>(const double*, const double*, int64_t, int64_t, int64_t, int64_t, const double*,
                                   int, int64_t, bool, double*);

}  // namespace ecc
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
