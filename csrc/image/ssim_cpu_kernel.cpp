// CPU SSIM kernels; compiled once per instruction set (PYADV_ISA_TAG). The filters run on
// 32-byte vectors of columns in the image's own precision. float32 stays accurate because the
// planes are centred on their means first: the variances E[x^2] - E[x]^2 then cancel far less
// than on raw [0, 1] data (what scikit-image computes in float32 cancels more than this does).
#include "ssim_cpu_kernel.h"

#include <cstring>

#include "ssim_math.h"

PYADV_DECLARE_SSIM_CPU_KERNELS(PYADV_ISA_TAG)

namespace pyadv {
namespace PYADV_ISA_TAG {
namespace ssim {
namespace {

using ::pyadv::ssim_cpu::kCpuVectorBytes;
using ::pyadv::ssim_cpu::round_up;

// GCC vector types (lowered to SSE, AVX2 or AVX-512 by the variant's flags).
template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(kCpuVectorBytes)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(kCpuVectorBytes)));
};
template <typename T>
using Vec = typename VecOf<T>::type;
template <typename T>
constexpr int64_t kLanes = kCpuVectorBytes / int64_t(sizeof(T));

template <typename T>
PYADV_FORCEINLINE Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
PYADV_FORCEINLINE void store(T* p, Vec<T> v) {
  std::memcpy(p, &v, sizeof v);
}

// Mean of n values, summed in double on independent lanes (so the loop vectorises).
template <typename T>
double plane_mean(const T* x, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += x[i + l];
  double s = 0;
  for (; i < n; ++i) s += x[i];
  for (int l = 0; l < 8; ++l) s += acc[l];
  return n > 0 ? s / double(n) : 0.0;
}

}  // namespace

template <typename T>
double forward_plane(const T* x, const T* y, int64_t H, int64_t W, const double* g, int win, T C1, T C2, T* map,
                     T* partials, T* work) {
  using V = Vec<T>;
  constexpr int64_t L = kLanes<T>;
  const int64_t Hv = H - win + 1, Wv = W - win + 1, Wp = round_up(Wv, L), Wx = Wp + win - 1;
  T* gw = work;                                    // the window in T
  T* rows = gw + 2 * round_up(win, L);             // 5 x Wx: one input row of x, y, xx, yy, xy
  T* ring = rows + 5 * Wx;                         // win x 5 x Wp: horizontally filtered rows
  T* mom = ring + win * 5 * Wp;                    // 5 x Wp: the moments of one output row
  T* srow = mom + 5 * Wp;                          // Wp: S of one output row
  for (int k = 0; k < win; ++k) gw[k] = T(g[k]);
  const T cx = T(plane_mean(x, H * W)), cy = T(plane_mean(y, H * W));
  std::memset(static_cast<void*>(rows), 0, sizeof(T) * 5 * Wx);

  auto hrow = [&](int64_t r, T* out) {
    const T* xr = x + r * W;
    const T* yr = y + r * W;
    T *b0 = rows, *b1 = rows + Wx, *b2 = rows + 2 * Wx, *b3 = rows + 3 * Wx, *b4 = rows + 4 * Wx;
    for (int64_t c = 0; c < W; ++c) {
      const T a = xr[c] - cx, b = yr[c] - cy;
      b0[c] = a;
      b1[c] = b;
      b2[c] = a * a;
      b3[c] = b * b;
      b4[c] = a * b;
    }
    for (int64_t c0 = 0; c0 < Wp; c0 += L) {
      V s0 = {}, s1 = {}, s2 = {}, s3 = {}, s4 = {};
      for (int k = 0; k < win; ++k) {
        const V w = V{} + gw[k];
        const int64_t o = c0 + k;
        s0 += w * load(b0 + o);
        s1 += w * load(b1 + o);
        s2 += w * load(b2 + o);
        s3 += w * load(b3 + o);
        s4 += w * load(b4 + o);
      }
      store(out + c0, s0);
      store(out + Wp + c0, s1);
      store(out + 2 * Wp + c0, s2);
      store(out + 3 * Wp + c0, s3);
      store(out + 4 * Wp + c0, s4);
    }
  };

  for (int k = 0; k < win - 1; ++k) hrow(k, ring + k * 5 * Wp);
  double lanes[kLanes<T>] = {};
  for (int64_t r = 0; r < Hv; ++r) {
    hrow(r + win - 1, ring + ((r + win - 1) % win) * 5 * Wp);
    const int64_t first = r % win;
    for (int64_t c0 = 0; c0 < Wp; c0 += L) {
      V m0 = {}, m1 = {}, m2 = {}, m3 = {}, m4 = {};
      int64_t slot = first;
      for (int k = 0; k < win; ++k) {
        const V w = V{} + gw[k];
        const T* src = ring + slot * 5 * Wp + c0;
        m0 += w * load(src);
        m1 += w * load(src + Wp);
        m2 += w * load(src + 2 * Wp);
        m3 += w * load(src + 3 * Wp);
        m4 += w * load(src + 4 * Wp);
        slot = slot + 1 == win ? 0 : slot + 1;
      }
      store(mom + c0, m0);
      store(mom + Wp + c0, m1);
      store(mom + 2 * Wp + c0, m2);
      store(mom + 3 * Wp + c0, m3);
      store(mom + 4 * Wp + c0, m4);
    }
    const T *e0 = mom, *e1 = mom + Wp, *e2 = mom + 2 * Wp, *e3 = mom + 3 * Wp, *e4 = mom + 4 * Wp;
    if (partials) {
      T* p = partials + r * Wv;
      const int64_t ps = Hv * Wv;
      for (int64_t c = 0; c < Wv; ++c) {
        T d[5];
        srow[c] = ssim_stats(e0[c] + cx, e1[c] + cy, e2[c] - e0[c] * e0[c], e3[c] - e1[c] * e1[c],
                             e4[c] - e0[c] * e1[c], C1, C2, d);
        p[c] = d[0];
        p[ps + c] = d[1];
        p[2 * ps + c] = d[2];
        p[3 * ps + c] = d[3];
        p[4 * ps + c] = d[4];
      }
    } else {
      for (int64_t c = 0; c < Wv; ++c)
        srow[c] = ssim_stats(e0[c] + cx, e1[c] + cy, e2[c] - e0[c] * e0[c], e3[c] - e1[c] * e1[c],
                             e4[c] - e0[c] * e1[c], C1, C2, static_cast<T*>(nullptr));
    }
    for (int64_t c = Wv; c < Wp; ++c) srow[c] = T(0);
    if (map) std::memcpy(map + r * Wv, srow, sizeof(T) * Wv);
    for (int64_t c0 = 0; c0 < Wp; c0 += L)
      for (int64_t l = 0; l < L; ++l) lanes[l] += srow[c0 + l];
  }
  double total = 0;
  for (int64_t l = 0; l < L; ++l) total += lanes[l];
  return total;
}

template <typename T>
void backward_plane(const T* x, const T* y, const T* partials, int64_t H, int64_t W, const double* g, int win,
                    double scale, T* dx, T* dy, T* work) {
  using V = Vec<T>;
  constexpr int64_t L = kLanes<T>;
  const int64_t Hv = H - win + 1, Wv = W - win + 1, Wq = round_up(W, L), Tl = Wq + win - 1;
  // The transpose of the forward's filtering: each partial map is spread back over the window
  // of every valid pixel, F(q) = sum_p w(p - q) P(p), vertically into a zero-padded row t,
  // then horizontally, one input row at a time.
  T* gv = work;                          // scale * window (vertical)
  T* gh = gv + round_up(win, L);         // window (horizontal)
  T* t = gh + round_up(win, L);          // 5 x Tl
  T* xr = t + 5 * Tl;                    // 4 x Wq: x, y, dx, dy of one row
  T *yr = xr + Wq, *dxr = yr + Wq, *dyr = dxr + Wq;
  for (int k = 0; k < win; ++k) {
    gv[k] = T(g[k] * scale);
    gh[k] = T(g[k]);
  }
  std::memset(static_cast<void*>(t), 0, sizeof(T) * 5 * Tl);
  std::memset(static_cast<void*>(xr), 0, sizeof(T) * 2 * Wq);
  const int64_t ps = Hv * Wv;
  for (int64_t r = 0; r < H; ++r) {
    const int64_t k0 = r - (Hv - 1) > 0 ? r - (Hv - 1) : 0, k1 = r < win - 1 ? r : win - 1;
    for (int q = 0; q < 5; ++q) {
      T* tq = t + q * Tl + (win - 1);
      for (int64_t c = 0; c < Wv; ++c) tq[c] = T(0);
      for (int64_t k = k0; k <= k1; ++k) {
        const T w = gv[k];
        const T* p = partials + q * ps + (r - k) * Wv;
        for (int64_t c = 0; c < Wv; ++c) tq[c] += w * p[c];
      }
    }
    std::memcpy(xr, x + r * W, sizeof(T) * W);
    std::memcpy(yr, y + r * W, sizeof(T) * W);
    for (int64_t c0 = 0; c0 < Wq; c0 += L) {
      V f0 = {}, f1 = {}, f2 = {}, f3 = {}, f4 = {};
      for (int k = 0; k < win; ++k) {
        const V w = V{} + gh[k];
        const T* src = t + c0 + (win - 1 - k);
        f0 += w * load(src);
        f1 += w * load(src + Tl);
        f2 += w * load(src + 2 * Tl);
        f3 += w * load(src + 3 * Tl);
        f4 += w * load(src + 4 * Tl);
      }
      const V a = load(xr + c0), b = load(yr + c0);
      store(dxr + c0, f0 + T(2) * a * f2 + b * f4);
      store(dyr + c0, f1 + T(2) * b * f3 + a * f4);
    }
    std::memcpy(dx + r * W, dxr, sizeof(T) * W);
    std::memcpy(dy + r * W, dyr, sizeof(T) * W);
  }
}

#define PYADV_INSTANTIATE(T)                                                                                     \
  template double forward_plane<T>(const T*, const T*, int64_t, int64_t, const double*, int, T, T, T*, T*, T*); \
  template void backward_plane<T>(const T*, const T*, const T*, int64_t, int64_t, const double*, int, double, T*, \
                                  T*, T*);
PYADV_INSTANTIATE(float)
PYADV_INSTANTIATE(double)
#undef PYADV_INSTANTIATE

}  // namespace ssim
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
