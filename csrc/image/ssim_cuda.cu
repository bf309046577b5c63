// SSIM CUDA kernels on square tiles with their halo in shared memory, one fused pass each way
// (like the fused-ssim kernel). Both filter in the image's precision; the forward pass centres
// each plane on its mean first (as the CPU kernels do), which keeps float32 variances accurate.
#include "../common/cuda_compat.h"
#include "ssim_gpu.h"
#include "ssim_math.h"

namespace pyadv {
namespace PYADV_GPU_NS {
namespace ssim {

namespace sm = ::pyadv::ssim;

// A block's place in the image: kTile x kTile threads on the tile at (r0, c0), which reads
// span = kTile + win - 1 rows and columns with its halo.
template <int kTile>
struct Tile {
  int64_t Hv, Wv, r0, c0;
  int span, tx, ty, tid;
  PYADV_DEVICE Tile(int64_t H, int64_t W, int win)
      : Hv(H - win + 1), Wv(W - win + 1), r0(int64_t(blockIdx.y) * kTile), c0(int64_t(blockIdx.x) * kTile),
        span(kTile + win - 1), tx(int(threadIdx.x)), ty(int(threadIdx.y)), tid(int(threadIdx.y) * kTile + int(threadIdx.x)) {}
};

// The block copies the 1-D window into shared memory (the caller synchronises before use).
template <typename T>
PYADV_DEVICE inline void load_window(const double* g, int win, int tid, int threads, T* sg) {
  for (int k = tid; k < win; k += threads) sg[k] = T(g[k]);
}

// Forward, one kTile x kTile tile of outputs per block: the block loads its input tile plus
// halo into shared memory, filters it horizontally into shared memory (five moments), then each
// thread filters its column vertically and evaluates SSIM. Grid: x, y over tiles, z over planes
// (looping when there are more than 65535). Windows up to kMaxW.
template <typename T, int kTile, int kMaxW>
__global__ void forward_kernel(const T* x, const T* y, const T* centers, int64_t planes, int64_t H, int64_t W,
                               const double* g, int win, T C1, T C2, T* map, T* partials) {
  constexpr int kSpan = kTile + kMaxW - 1;  // input rows/cols a tile reads, halo included
  __shared__ T sx[kSpan][kSpan];
  __shared__ T sy[kSpan][kSpan];
  __shared__ T sh[5][kSpan][kTile];
  __shared__ T sg[kMaxW];
  const Tile<kTile> t(H, W, win);
  const int64_t Hv = t.Hv, Wv = t.Wv, r0 = t.r0, c0 = t.c0;
  const int span = t.span, tx = t.tx, ty = t.ty, tid = t.tid;
  load_window(g, win, tid, kTile * kTile, sg);
  for (int64_t p = blockIdx.z; p < planes; p += gridDim.z) {
    const T* xp = x + p * H * W;
    const T* yp = y + p * H * W;
    const T cx = centers[2 * p], cy = centers[2 * p + 1];
    for (int i = tid; i < span * span; i += kTile * kTile) {
      const int rr = i / span, cc = i % span;
      const int64_t r = r0 + rr, c = c0 + cc;
      const bool in = r < H && c < W;
      sx[rr][cc] = in ? xp[r * W + c] - cx : T(0);
      sy[rr][cc] = in ? yp[r * W + c] - cy : T(0);
    }
    __syncthreads();
    for (int i = tid; i < span * kTile; i += kTile * kTile) {
      const int rr = i / kTile, cc = i % kTile;
      T h0 = 0, h1 = 0, h2 = 0, h3 = 0, h4 = 0;
      for (int k = 0; k < win; ++k) {
        const T a = sx[rr][cc + k], b = sy[rr][cc + k], w = sg[k];
        h0 += w * a;
        h1 += w * b;
        h2 += w * (a * a);
        h3 += w * (b * b);
        h4 += w * (a * b);
      }
      sh[0][rr][cc] = h0;
      sh[1][rr][cc] = h1;
      sh[2][rr][cc] = h2;
      sh[3][rr][cc] = h3;
      sh[4][rr][cc] = h4;
    }
    __syncthreads();
    const int64_t r = r0 + ty, c = c0 + tx;
    if (r < Hv && c < Wv) {
      T m[5] = {0, 0, 0, 0, 0};
      for (int k = 0; k < win; ++k)
        for (int q = 0; q < 5; ++q) m[q] += sg[k] * sh[q][ty + k][tx];
      T d[5];
      const T S = sm::ssim_stats(m[0] + cx, m[1] + cy, m[2] - m[0] * m[0], m[3] - m[1] * m[1], m[4] - m[0] * m[1],
                                 C1, C2, partials ? d : nullptr);
      map[(p * Hv + r) * Wv + c] = S;
      if (partials)
        for (int q = 0; q < 5; ++q) partials[((p * 5 + q) * Hv + r) * Wv + c] = d[q];
    }
    __syncthreads();  // the tile buffers are reused by the next plane
  }
}

// Backward, one kTile x kTile tile of input pixels per block: the transpose of the forward's
// filtering, F(q) = sum_p w(p - q) P(p). For each of the five partial maps the block loads the
// partials of every window covering its tile (tile plus halo, zero outside the valid region),
// filters them vertically into shared memory, and each thread filters its row horizontally.
template <typename T, int kTile, int kMaxW>
__global__ void backward_kernel(const T* x, const T* y, const T* partials, const double* scale, int64_t planes,
                                int64_t H, int64_t W, const double* g, int win, T* dx, T* dy) {
  constexpr int kSpan = kTile + kMaxW - 1;
  __shared__ T sp[kSpan][kSpan];
  __shared__ T sv[kTile][kSpan];
  __shared__ T sg[kMaxW];
  const Tile<kTile> t(H, W, win);
  const int64_t Hv = t.Hv, Wv = t.Wv, r0 = t.r0, c0 = t.c0;
  const int span = t.span, tx = t.tx, ty = t.ty, tid = t.tid;
  load_window(g, win, tid, kTile * kTile, sg);
  for (int64_t p = blockIdx.z; p < planes; p += gridDim.z) {
    T f[5];
    for (int q = 0; q < 5; ++q) {
      const T* pq = partials + (p * 5 + q) * Hv * Wv;
      for (int i = tid; i < span * span; i += kTile * kTile) {
        const int rr = i / span, cc = i % span;
        const int64_t pr = r0 - (win - 1) + rr, pc = c0 - (win - 1) + cc;
        sp[rr][cc] = (pr >= 0 && pr < Hv && pc >= 0 && pc < Wv) ? pq[pr * Wv + pc] : T(0);
      }
      __syncthreads();
      for (int i = tid; i < kTile * span; i += kTile * kTile) {
        const int tr = i / span, cc = i % span;
        T v = 0;
        for (int k = 0; k < win; ++k) v += sg[k] * sp[tr + win - 1 - k][cc];
        sv[tr][cc] = v;
      }
      __syncthreads();
      T acc = 0;
      for (int k = 0; k < win; ++k) acc += sg[k] * sv[ty][tx + win - 1 - k];
      f[q] = acc;
      // No barrier here: the next map's load writes sp, which nobody reads after the barrier
      // above, and its vertical pass writes sv only after the next barrier.
    }
    const int64_t r = r0 + ty, c = c0 + tx;
    if (r < H && c < W) {
      const int64_t e = (p * H + r) * W + c;
      const T s = T(scale[p]), a = x[e], b = y[e];
      dx[e] = s * (f[0] + T(2) * a * f[2] + b * f[4]);
      dy[e] = s * (f[1] + T(2) * b * f[3] + a * f[4]);
    }
  }
}

template <typename T>
int forward(const T* x, const T* y, const T* centers, int64_t planes, int64_t H, int64_t W, const double* g, int win,
            T C1, T C2, T* map, T* partials, void* stream) {
  const int64_t Hv = H - win + 1, Wv = W - win + 1;
  if (planes <= 0 || Hv <= 0 || Wv <= 0) return 0;
  const unsigned z = loop_blocks(planes);
  if (win <= 15) {  // the usual 11 x 11 window: 16 x 16 tiles
    const dim3 grid(static_cast<unsigned>((Wv + 15) / 16), static_cast<unsigned>((Hv + 15) / 16), z);
    return launch_kernel(forward_kernel<T, 16, 15>, grid, dim3(16, 16), 0, stream, x, y, centers, planes, H, W, g,
                         win, C1, C2, map, partials);
  }
  const dim3 grid(static_cast<unsigned>((Wv + 7) / 8), static_cast<unsigned>((Hv + 7) / 8), z);
  return launch_kernel(forward_kernel<T, 8, sm::kMaxWin>, grid, dim3(8, 8), 0, stream, x, y, centers, planes, H, W, g,
                       win, C1, C2, map, partials);
}

template <typename T>
int backward(const T* x, const T* y, const T* partials, const double* scale, int64_t planes, int64_t H, int64_t W,
             const double* g, int win, T* dx, T* dy, void* stream) {
  if (planes <= 0 || H <= 0 || W <= 0) return 0;
  const unsigned z = loop_blocks(planes);
  if (win <= 15) {
    const dim3 grid(static_cast<unsigned>((W + 15) / 16), static_cast<unsigned>((H + 15) / 16), z);
    return launch_kernel(backward_kernel<T, 16, 15>, grid, dim3(16, 16), 0, stream, x, y, partials, scale, planes, H,
                         W, g, win, dx, dy);
  }
  const dim3 grid(static_cast<unsigned>((W + 7) / 8), static_cast<unsigned>((H + 7) / 8), z);
  return launch_kernel(backward_kernel<T, 8, sm::kMaxWin>, grid, dim3(8, 8), 0, stream, x, y, partials, scale, planes,
                       H, W, g, win, dx, dy);
}

#define PYADV_INSTANTIATE(T)                                                                                      \
  template int forward<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t, const double*, int, T, T, T*, T*, void*); \
  template int backward<T>(const T*, const T*, const T*, const double*, int64_t, int64_t, int64_t, const double*,  \
                           int, T*, T*, void*);
PYADV_INSTANTIATE(float)
PYADV_INSTANTIATE(double)
#undef PYADV_INSTANTIATE

}  // namespace ssim
}  // namespace PYADV_GPU_NS
}  // namespace pyadv
