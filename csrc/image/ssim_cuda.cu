// SSIM CUDA kernels: the forward pass works on 16 x 16 output tiles with their halo in shared
// memory (one fused pass, like the fused-ssim kernel); the backward pass uses one thread per
// input pixel, gathering the partials of the windows that contain it.
#include "../common/cuda_compat.h"
#include "ssim_gpu.h"
#include "ssim_math.h"

namespace pyadv {
namespace PYADV_GPU_NS {
namespace ssim {

namespace sm = ::pyadv::ssim;
constexpr unsigned kThreads = 256;

// Forward, one 16 x 16 tile of outputs per block, as the fused-ssim kernel does: the block loads
// its input tile plus halo into shared memory, filters it horizontally into shared memory
// (five moments, double), then each thread filters its column vertically and evaluates SSIM.
// Grid: x, y over tiles, z over planes (looping when there are more than 65535). kTile x kTile
// threads; windows up to kMaxW (the static shared memory must stay under 48 KiB in double).
template <typename T, int kTile, int kMaxW>
__global__ void forward_kernel(const T* x, const T* y, int64_t planes, int64_t H, int64_t W, const double* g, int win,
                               T C1, T C2, T* map, T* partials) {
  constexpr int kSpan = kTile + kMaxW - 1;  // input rows/cols a tile reads, halo included
  __shared__ T sx[kSpan][kSpan];
  __shared__ T sy[kSpan][kSpan];
  __shared__ double sh[5][kSpan][kTile];
  __shared__ double sg[kMaxW];
  const int64_t Hv = H - win + 1, Wv = W - win + 1;
  const int span = kTile + win - 1;
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * kTile + tx;
  const int64_t r0 = int64_t(blockIdx.y) * kTile, c0 = int64_t(blockIdx.x) * kTile;
  for (int k = tid; k < win; k += kTile * kTile) sg[k] = g[k];
  for (int64_t p = blockIdx.z; p < planes; p += gridDim.z) {
    const T* xp = x + p * H * W;
    const T* yp = y + p * H * W;
    for (int i = tid; i < span * span; i += kTile * kTile) {
      const int rr = i / span, cc = i % span;
      const int64_t r = r0 + rr, c = c0 + cc;
      const bool in = r < H && c < W;
      sx[rr][cc] = in ? xp[r * W + c] : T(0);
      sy[rr][cc] = in ? yp[r * W + c] : T(0);
    }
    __syncthreads();
    for (int i = tid; i < span * kTile; i += kTile * kTile) {
      const int rr = i / kTile, cc = i % kTile;
      double h0 = 0, h1 = 0, h2 = 0, h3 = 0, h4 = 0;
      for (int k = 0; k < win; ++k) {
        const double a = sx[rr][cc + k], b = sy[rr][cc + k], w = sg[k];
        h0 += w * a;
        h1 += w * b;
        h2 += w * a * a;
        h3 += w * b * b;
        h4 += w * a * b;
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
      double m[5] = {0, 0, 0, 0, 0};
      for (int k = 0; k < win; ++k)
        for (int q = 0; q < 5; ++q) m[q] += sg[k] * sh[q][ty + k][tx];
      T d[5];
      const T S = sm::ssim_point(T(m[0]), T(m[1]), T(m[2]), T(m[3]), T(m[4]), C1, C2, partials ? d : nullptr);
      map[(p * Hv + r) * Wv + c] = S;
      if (partials)
        for (int q = 0; q < 5; ++q) partials[((p * 5 + q) * Hv + r) * Wv + c] = d[q];
    }
    __syncthreads();  // the tile buffers are reused by the next plane
  }
}

template <typename T>
__global__ void backward_kernel(const T* x, const T* y, const T* partials, const double* scale, int64_t planes,
                                int64_t H, int64_t W, const double* g, int win, T* dx, T* dy) {
  const int64_t Hv = H - win + 1, Wv = W - win + 1, n = planes * H * W;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(blockDim.x) * gridDim.x) {
    const int64_t p = e / (H * W), r = (e / W) % H, c = e % W;
    double f[5] = {0, 0, 0, 0, 0};
    for (int i = 0; i < win; ++i) {
      const int64_t rr = r - i;
      if (rr < 0 || rr >= Hv) continue;
      for (int j = 0; j < win; ++j) {
        const int64_t cc = c - j;
        if (cc < 0 || cc >= Wv) continue;
        const double w = g[i] * g[j];
        for (int q = 0; q < 5; ++q) f[q] += w * partials[((p * 5 + q) * Hv + rr) * Wv + cc];
      }
    }
    const double s = scale[p], a = x[e], b = y[e];
    dx[e] = T(s * (f[0] + 2 * a * f[2] + b * f[4]));
    dy[e] = T(s * (f[1] + 2 * b * f[3] + a * f[4]));
  }
}

template <typename T>
int forward(const T* x, const T* y, int64_t planes, int64_t H, int64_t W, const double* g, int win, T C1, T C2,
            T* map, T* partials, void* stream) {
  const int64_t Hv = H - win + 1, Wv = W - win + 1;
  if (planes <= 0 || Hv <= 0 || Wv <= 0) return 0;
  const unsigned z = static_cast<unsigned>(planes < 65535 ? planes : 65535);
  if (win <= 15) {  // the usual 11 x 11 window: 16 x 16 tiles
    const dim3 grid(static_cast<unsigned>((Wv + 15) / 16), static_cast<unsigned>((Hv + 15) / 16), z);
    return launch_kernel(forward_kernel<T, 16, 15>, grid, dim3(16, 16), 0, stream, x, y, planes, H, W, g, win, C1, C2,
                         map, partials);
  }
  const dim3 grid(static_cast<unsigned>((Wv + 7) / 8), static_cast<unsigned>((Hv + 7) / 8), z);
  return launch_kernel(forward_kernel<T, 8, sm::kMaxWin>, grid, dim3(8, 8), 0, stream, x, y, planes, H, W, g, win, C1,
                       C2, map, partials);
}

template <typename T>
int backward(const T* x, const T* y, const T* partials, const double* scale, int64_t planes, int64_t H, int64_t W,
             const double* g, int win, T* dx, T* dy, void* stream) {
  const int64_t n = planes * H * W;
  if (n <= 0) return 0;
  return launch_kernel(backward_kernel<T>, grid_for(n, kThreads), kThreads, 0, stream, x, y, partials, scale, planes,
                       H, W, g, win, dx, dy);
}

#define PYADV_INSTANTIATE(T)                                                                                      \
  template int forward<T>(const T*, const T*, int64_t, int64_t, int64_t, const double*, int, T, T, T*, T*, void*); \
  template int backward<T>(const T*, const T*, const T*, const double*, int64_t, int64_t, int64_t, const double*,  \
                           int, T*, T*, void*);
PYADV_INSTANTIATE(float)
PYADV_INSTANTIATE(double)
#undef PYADV_INSTANTIATE

}  // namespace ssim
}  // namespace PYADV_GPU_NS
}  // namespace pyadv
