// Incremental conv stage CUDA kernel: one thread per (group, candidate, pooled position,
// channel), neighbouring threads on neighbouring channels (coalesced weight and base reads).
#include "../common/cuda_compat.h"
#include "sparse_conv_gpu.h"

namespace pyadv {
namespace PYADV_GPU_NS {
namespace sparse_conv {

namespace scm = ::pyadv::sparse_conv_math;
constexpr unsigned kThreads = 256;

template <typename T>
__global__ void stage_kernel(const ::pyadv::SparseConvGeometry g, const int32_t* slots, const int32_t* outpos,
                             const T* delta, const T* base, const T* weight, T* out, int64_t G, int64_t N, int64_t A,
                             int64_t Q) {
  const int64_t n_out = G * N * Q * g.Cout;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n_out; e += int64_t(blockDim.x) * gridDim.x) {
    const int64_t c = e % g.Cout, j = (e / g.Cout) % Q, row = e / (g.Cout * Q), grp = row / N;
    out[e] = scm::stage_at(g, slots + grp * g.Hin * g.Win, delta + row * A * g.Cin, base + grp * g.Hc * g.Wc * g.Cout,
                           weight, outpos[grp * Q + j], c);
  }
}

template <typename T>
int stage(const ::pyadv::SparseConvGeometry& g, const int32_t* slots, const int32_t* outpos, const T* delta,
          const T* base, const T* weight, T* out, int64_t G, int64_t N, int64_t A, int64_t Q, void* stream) {
  const int64_t n = G * N * Q * g.Cout;
  if (n == 0) return 0;
  return launch_kernel(stage_kernel<T>, grid_for(n, kThreads), kThreads, 0, stream, g, slots, outpos, delta, base,
                       weight, out, G, N, A, Q);
}

template int stage<float>(const ::pyadv::SparseConvGeometry&, const int32_t*, const int32_t*, const float*,
                          const float*, const float*, float*, int64_t, int64_t, int64_t, int64_t, void*);
template int stage<double>(const ::pyadv::SparseConvGeometry&, const int32_t*, const int32_t*, const double*,
                           const double*, const double*, double*, int64_t, int64_t, int64_t, int64_t, void*);

}  // namespace sparse_conv
}  // namespace PYADV_GPU_NS
}  // namespace pyadv
