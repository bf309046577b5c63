// SSIM CUDA kernels: one thread per valid output pixel (forward: the five moments over its
// window, then ssim_point) and one per input pixel (backward: the windows that contain it).
// A shared-memory tile with halo, as in the fused-ssim kernel, is the next step; this direct
// form is the reference the emulator checks against the CPU kernels.
#include "../common/cuda_compat.h"
#include "ssim_gpu.h"
#include "ssim_math.h"

namespace pyadv {
namespace PYADV_GPU_NS {
namespace ssim {

namespace sm = ::pyadv::ssim;
constexpr unsigned kThreads = 256;

template <typename T>
__global__ void forward_kernel(const T* x, const T* y, int64_t planes, int64_t H, int64_t W, const double* g, int win,
                               T C1, T C2, T* map, T* partials) {
  const int64_t Hv = H - win + 1, Wv = W - win + 1, n = planes * Hv * Wv;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(blockDim.x) * gridDim.x) {
    const int64_t p = e / (Hv * Wv), r = (e / Wv) % Hv, c = e % Wv;
    const T* xp = x + p * H * W;
    const T* yp = y + p * H * W;
    double m[5] = {0, 0, 0, 0, 0};
    for (int i = 0; i < win; ++i) {
      double h[5] = {0, 0, 0, 0, 0};  // the horizontal pass first, as the CPU kernel sums
      for (int j = 0; j < win; ++j) {
        const double a = xp[(r + i) * W + c + j], b = yp[(r + i) * W + c + j], w = g[j];
        h[0] += w * a;
        h[1] += w * b;
        h[2] += w * a * a;
        h[3] += w * b * b;
        h[4] += w * a * b;
      }
      for (int q = 0; q < 5; ++q) m[q] += g[i] * h[q];
    }
    T d[5];
    const T S = sm::ssim_point(T(m[0]), T(m[1]), T(m[2]), T(m[3]), T(m[4]), C1, C2, partials ? d : nullptr);
    map[e] = S;
    if (partials)
      for (int q = 0; q < 5; ++q) partials[((p * 5 + q) * Hv + r) * Wv + c] = d[q];
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
  const int64_t n = planes * (H - win + 1) * (W - win + 1);
  if (n <= 0) return 0;
  return launch_kernel(forward_kernel<T>, grid_for(n, kThreads), kThreads, 0, stream, x, y, planes, H, W, g, win, C1,
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
