// Incremental convolution stage: one output of conv -> [ReLU] -> [max-pool] for an input that
// differs from a base input at a few positions only. conv(base + delta) = conv(base) + conv(delta)
// (the convolution is linear), and conv(delta) at an output needs only the changed inputs in its
// window: with 69 of 196 positions changed (20 pixels of a 28 x 28 digit after the first pool),
// a 5 x 5 layer does a third of its multiply-adds. Shared by the CPU kernel's reference path,
// the CUDA kernel and the emulator.
//
// Geometry (stride 1, dilation 1, zero padding, pool kernel = pool stride, floor):
//   input  Hin x Win, Cin channels; conv kernel kh x kw, padding (ph, pw), Cout channels;
//   conv output Hc = Hin + 2 ph - kh + 1 (Wc alike); pooled Hp = Hc / pool (Wp alike).
// Per group g (an image whose candidates share the changed positions):
//   slots [Hin * Win]: the row of delta holding a changed input position, -1 where unchanged;
//   delta [A, Cin] per candidate; base [Hc * Wc, Cout]: the base input's conv output (bias in).
#pragma once

#include <cstdint>

#include "../common/macros.h"

namespace pyadv {

// Plain data, outside the per-ISA namespace: the op passes it to every variant.
struct SparseConvGeometry {
  int64_t Hin, Win, Cin, kh, kw, ph, pw, Cout, Hc, Wc, pool, Wp;
  bool relu;
};

inline namespace PYADV_ISA_TAG {
namespace sparse_conv_math {

using Geometry = ::pyadv::SparseConvGeometry;

// Calls f(a, tap) for each kernel tap (ky * kw + kx) of conv output (oy, ox) whose input is a
// changed one (row a of delta), taps in (ky, kx) order.
template <typename F>
PYADV_HD inline void changed_taps(const Geometry& g, const int32_t* slots, int64_t oy, int64_t ox, F&& f) {
  for (int64_t ky = 0; ky < g.kh; ++ky) {
    const int64_t iy = oy + ky - g.ph;
    if (iy < 0 || iy >= g.Hin) continue;
    for (int64_t kx = 0; kx < g.kw; ++kx) {
      const int64_t ix = ox + kx - g.pw;
      if (ix < 0 || ix >= g.Win) continue;
      const int32_t a = slots[iy * g.Win + ix];
      if (a >= 0) f(a, ky * g.kw + kx);
    }
  }
}

// Pre-activation conv output channel c at conv position (oy, ox): base plus the changed
// inputs' contributions, taps in changed_taps' order, input channels in order.
template <typename T>
PYADV_HD inline T conv_at(const Geometry& g, const int32_t* slots, const T* delta, const T* base, const T* weight,
                          int64_t oy, int64_t ox, int64_t c) {
  T acc = base[(oy * g.Wc + ox) * g.Cout + c];
  changed_taps(g, slots, oy, ox, [&](int32_t a, int64_t tap) {
    const T* d = delta + int64_t(a) * g.Cin;
    const T* w = weight + tap * g.Cin * g.Cout + c;
    for (int64_t ci = 0; ci < g.Cin; ++ci) acc += w[ci * g.Cout] * d[ci];
  });
  return acc;
}

// Output channel c of pooled position q (index into Hp x Wp): the max over the pool window of
// the (rectified, when relu) conv outputs. q < 0 (a padding row) gives 0.
template <typename T>
PYADV_HD inline T stage_at(const Geometry& g, const int32_t* slots, const T* delta, const T* base, const T* weight,
                           int32_t q, int64_t c) {
  if (q < 0) return T(0);
  const int64_t qy = q / g.Wp, qx = q % g.Wp;
  T best = T(0);
  for (int64_t dy = 0; dy < g.pool; ++dy)
    for (int64_t dx = 0; dx < g.pool; ++dx) {
      T v = conv_at(g, slots, delta, base, weight, qy * g.pool + dy, qx * g.pool + dx, c);
      if (g.relu && v < T(0)) v = T(0);
      if ((dy == 0 && dx == 0) || v > best) best = v;
    }
  return best;
}

}  // namespace sparse_conv_math
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
