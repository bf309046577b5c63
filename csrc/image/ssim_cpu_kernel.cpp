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

// The forward pass, one valid output row at a time, in order: row(r) filters the input rows it
// needs into the ring and returns S of output row r in srow [Wp] (zero past Wv), and the
// partials dS/dmoments of the row into d[5] (row-major [5][dstride]) when d is non-null. The
// forward op and the fused backward both run it.
template <typename T>
class ForwardRows {
 public:
  using V = Vec<T>;
  static constexpr int64_t L = kLanes<T>;

  // work: workspace(W, win) elements.
  ForwardRows(const T* x, const T* y, int64_t H, int64_t W, const double* g, int win, T C1, T C2, T* work)
      : x_(x), y_(y), W_(W), win_(win), C1_(C1), C2_(C2), Wv_(W - win + 1), Wp_(round_up(W - win + 1, L)),
        Wx_(round_up(W - win + 1, L) + win - 1) {
    gw_ = work;                           // the window in T
    rows_ = gw_ + round_up(win, L);       // 5 x Wx: one input row of x, y, xx, yy, xy (centred)
    ring_ = rows_ + 5 * Wx_;              // win x 5 x Wp: horizontally filtered rows
    mom_ = ring_ + win * 5 * Wp_;         // 5 x Wp: the moments of one output row
    srow = mom_ + 5 * Wp_;                // Wp: S of the current output row
    for (int k = 0; k < win; ++k) gw_[k] = T(g[k]);
    cx_ = T(plane_mean(x, H * W));
    cy_ = T(plane_mean(y, H * W));
    std::memset(static_cast<void*>(rows_), 0, sizeof(T) * 5 * Wx_);
    for (int k = 0; k < win - 1; ++k) hrow(k, ring_ + k * 5 * Wp_);
  }

  static constexpr int64_t workspace(int64_t W, int64_t win) {
    const int64_t Wp = round_up(W - win + 1, L);
    return round_up(win, L) + 5 * (Wp + win - 1) + win * 5 * Wp + 6 * Wp;
  }

  void row(int64_t r, T* d, int64_t dstride) {
    hrow(r + win_ - 1, ring_ + ((r + win_ - 1) % win_) * 5 * Wp_);
    const int64_t first = r % win_;
    for (int64_t c0 = 0; c0 < Wp_; c0 += L) {
      V m0 = {}, m1 = {}, m2 = {}, m3 = {}, m4 = {};
      int64_t slot = first;
      for (int k = 0; k < win_; ++k) {
        const V w = V{} + gw_[k];
        const T* src = ring_ + slot * 5 * Wp_ + c0;
        m0 += w * load(src);
        m1 += w * load(src + Wp_);
        m2 += w * load(src + 2 * Wp_);
        m3 += w * load(src + 3 * Wp_);
        m4 += w * load(src + 4 * Wp_);
        slot = slot + 1 == win_ ? 0 : slot + 1;
      }
      store(mom_ + c0, m0);
      store(mom_ + Wp_ + c0, m1);
      store(mom_ + 2 * Wp_ + c0, m2);
      store(mom_ + 3 * Wp_ + c0, m3);
      store(mom_ + 4 * Wp_ + c0, m4);
    }
    const T *e0 = mom_, *e1 = mom_ + Wp_, *e2 = mom_ + 2 * Wp_, *e3 = mom_ + 3 * Wp_, *e4 = mom_ + 4 * Wp_;
    const T cx = cx_, cy = cy_, C1 = C1_, C2 = C2_;
    if (d) {
      for (int64_t c = 0; c < Wv_; ++c) {
        T q[5];
        srow[c] = ssim_stats(e0[c] + cx, e1[c] + cy, e2[c] - e0[c] * e0[c], e3[c] - e1[c] * e1[c],
                             e4[c] - e0[c] * e1[c], C1, C2, q);
        d[c] = q[0];
        d[dstride + c] = q[1];
        d[2 * dstride + c] = q[2];
        d[3 * dstride + c] = q[3];
        d[4 * dstride + c] = q[4];
      }
    } else {
      for (int64_t c = 0; c < Wv_; ++c)
        srow[c] = ssim_stats(e0[c] + cx, e1[c] + cy, e2[c] - e0[c] * e0[c], e3[c] - e1[c] * e1[c],
                             e4[c] - e0[c] * e1[c], C1, C2, static_cast<T*>(nullptr));
    }
    for (int64_t c = Wv_; c < Wp_; ++c) srow[c] = T(0);
  }

  T* srow;

 private:
  // Horizontal filtering of input row r (x, y, x^2, y^2, xy, centred) into out [5][Wp].
  void hrow(int64_t r, T* out) {
    const T* xr = x_ + r * W_;
    const T* yr = y_ + r * W_;
    T *b0 = rows_, *b1 = rows_ + Wx_, *b2 = rows_ + 2 * Wx_, *b3 = rows_ + 3 * Wx_, *b4 = rows_ + 4 * Wx_;
    const T cx = cx_, cy = cy_;
    for (int64_t c = 0; c < W_; ++c) {
      const T a = xr[c] - cx, b = yr[c] - cy;
      b0[c] = a;
      b1[c] = b;
      b2[c] = a * a;
      b3[c] = b * b;
      b4[c] = a * b;
    }
    for (int64_t c0 = 0; c0 < Wp_; c0 += L) {
      V s0 = {}, s1 = {}, s2 = {}, s3 = {}, s4 = {};
      for (int k = 0; k < win_; ++k) {
        const V w = V{} + gw_[k];
        const int64_t o = c0 + k;
        s0 += w * load(b0 + o);
        s1 += w * load(b1 + o);
        s2 += w * load(b2 + o);
        s3 += w * load(b3 + o);
        s4 += w * load(b4 + o);
      }
      store(out + c0, s0);
      store(out + Wp_ + c0, s1);
      store(out + 2 * Wp_ + c0, s2);
      store(out + 3 * Wp_ + c0, s3);
      store(out + 4 * Wp_ + c0, s4);
    }
  }

  const T *x_, *y_;
  int64_t W_;
  int win_;
  T C1_, C2_, cx_, cy_;
  int64_t Wv_, Wp_, Wx_;
  T *gw_, *rows_, *ring_, *mom_;
};

template <typename T>
double forward_plane(const T* x, const T* y, int64_t H, int64_t W, const double* g, int win, T C1, T C2, T* map,
                     T* partials, T* work) {
  constexpr int64_t L = kLanes<T>;
  const int64_t Hv = H - win + 1, Wv = W - win + 1, Wp = round_up(Wv, L);
  ForwardRows<T> fw(x, y, H, W, g, win, C1, C2, work);
  double lanes[L] = {};
  for (int64_t r = 0; r < Hv; ++r) {
    fw.row(r, partials ? partials + r * Wv : nullptr, Hv * Wv);
    if (map) std::memcpy(map + r * Wv, fw.srow, sizeof(T) * Wv);
    for (int64_t c0 = 0; c0 < Wp; c0 += L)
      for (int64_t l = 0; l < L; ++l) lanes[l] += fw.srow[c0 + l];
  }
  double total = 0;
  for (int64_t l = 0; l < L; ++l) total += lanes[l];
  return total;
}

template <typename T>
void backward_plane(const T* x, const T* y, int64_t H, int64_t W, const double* g, int win, T C1, T C2,
                    double scale, T* dx, T* dy, T* work) {
  using V = Vec<T>;
  constexpr int64_t L = kLanes<T>;
  const int64_t Hv = H - win + 1, Wv = W - win + 1, Wq = round_up(W, L), Tl = Wq + win - 1;
  // The forward is recomputed row by row, its partials kept in a ring of the last win rows: no
  // partial maps are saved between the passes. Gradient row r needs the partials of output rows
  // r - win + 1 .. r, which are exactly the ring's rows once output row r (if valid) is done.
  // Each partial map is spread back over the window of every valid pixel, F(q) = sum_p
  // w(p - q) P(p): vertically into a zero-padded row t, then horizontally.
  ForwardRows<T> fw(x, y, H, W, g, win, C1, C2, work);
  const int64_t Wp = round_up(Wv, L);
  T* pring = work + ForwardRows<T>::workspace(W, win);  // win x 5 x Wp: partials of recent rows
  T* gv = pring + win * 5 * Wp;                         // scale * window (vertical)
  T* gh = gv + round_up(win, L);                        // window (horizontal)
  T* t = gh + round_up(win, L);                         // 5 x Tl
  T* xr = t + 5 * Tl;                                   // 4 x Wq: x, y, dx, dy of one row
  T *yr = xr + Wq, *dxr = yr + Wq, *dyr = dxr + Wq;
  for (int k = 0; k < win; ++k) {
    gv[k] = T(g[k] * scale);
    gh[k] = T(g[k]);
  }
  // Zero padding: partial rows past Wv and t outside [win - 1, win - 1 + Wp) are never written.
  std::memset(static_cast<void*>(pring), 0, sizeof(T) * win * 5 * Wp);
  std::memset(static_cast<void*>(t), 0, sizeof(T) * 5 * Tl);
  std::memset(static_cast<void*>(xr), 0, sizeof(T) * 2 * Wq);
  for (int64_t r = 0; r < H; ++r) {
    if (r < Hv) fw.row(r, pring + (r % win) * 5 * Wp, Wp);
    const int64_t k0 = r - (Hv - 1) > 0 ? r - (Hv - 1) : 0, k1 = r < win - 1 ? r : win - 1;
    for (int64_t c0 = 0; c0 < Wp; c0 += L) {  // vertical, sums in registers
      V s0 = {}, s1 = {}, s2 = {}, s3 = {}, s4 = {};
      for (int64_t k = k0; k <= k1; ++k) {
        const V w = V{} + gv[k];
        const T* p = pring + ((r - k) % win) * 5 * Wp + c0;
        s0 += w * load(p);
        s1 += w * load(p + Wp);
        s2 += w * load(p + 2 * Wp);
        s3 += w * load(p + 3 * Wp);
        s4 += w * load(p + 4 * Wp);
      }
      T* o = t + (win - 1) + c0;
      store(o, s0);
      store(o + Tl, s1);
      store(o + 2 * Tl, s2);
      store(o + 3 * Tl, s3);
      store(o + 4 * Tl, s4);
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
  template void backward_plane<T>(const T*, const T*, int64_t, int64_t, const double*, int, T, T, double, T*, T*, \
                                  T*);
PYADV_INSTANTIATE(float)
PYADV_INSTANTIATE(double)
#undef PYADV_INSTANTIATE

}  // namespace ssim
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
