// Perspective warp CUDA kernel: one thread per output pixel and channel plane.
#include "../common/cuda_compat.h"
#include "warp_gpu.h"
#include "warp_math.h"

namespace pyadv {
namespace PYADV_GPU_NS {
namespace warp {

namespace wm = ::pyadv::warp_math;
constexpr unsigned kThreads = 256;

template <typename T>
__global__ void warp_kernel(const T* img, const double* M, T* out, int64_t B, int64_t C, int64_t H, int64_t W,
                            int64_t Ho, int64_t Wo) {
  const int64_t n = B * C * Ho * Wo;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(blockDim.x) * gridDim.x) {
    const int64_t x = e % Wo, y = (e / Wo) % Ho, plane = e / (Ho * Wo), b = plane / C;
    int64_t ix, iy;
    double ax, ay;
    out[e] = wm::source(M + 9 * b, x, y, &ix, &iy, &ax, &ay)
                 ? wm::sample(img + plane * H * W, H, W, ix, iy, ax, ay)
                 : T(0);
  }
}

template <typename T>
int warp(const T* img, const double* M, T* out, int64_t B, int64_t C, int64_t H, int64_t W, int64_t Ho, int64_t Wo,
         void* stream) {
  const int64_t n = B * C * Ho * Wo;
  if (n == 0) return 0;
  return launch_kernel(warp_kernel<T>, grid_for(n, kThreads), kThreads, 0, stream, img, M, out, B, C, H, W, Ho, Wo);
}

template int warp<float>(const float*, const double*, float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                         void*);
template int warp<double>(const double*, const double*, double*, int64_t, int64_t, int64_t, int64_t, int64_t,
                          int64_t, void*);

}  // namespace warp
}  // namespace PYADV_GPU_NS
}  // namespace pyadv
