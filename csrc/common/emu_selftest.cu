// Kernels with known answers that test the CUDA-on-CPU emulator itself. They are valid
// CUDA (the nvcc compile check builds them too) and use each emulated primitive once.
#include "cuda_compat.h"
#include "emu_selftest.h"

namespace pyadv {
namespace PYADV_GPU_NS {
namespace selftest {

constexpr int kBlock = 128;

// Tree reduction in static shared memory; one atomicAdd per block.
__global__ void block_sum_static(const float* x, long long n, float* out) {
  __shared__ float s[kBlock];
  const int t = threadIdx.x;
  const long long i = 1LL * blockIdx.x * blockDim.x + t;
  s[t] = i < n ? x[i] : 0.f;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (t < stride) s[t] += s[t + stride];
    __syncthreads();
  }
  if (t == 0) atomicAdd(out, s[0]);
}

// The same reduction in dynamic shared memory, sized at launch.
__global__ void block_sum_dynamic(const float* x, long long n, float* out) {
  PYADV_DYNAMIC_SHARED(float, s);
  const int t = threadIdx.x;
  const long long i = 1LL * blockIdx.x * blockDim.x + t;
  s[t] = i < n ? x[i] : 0.f;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (t < stride) s[t] += s[t + stride];
    __syncthreads();
  }
  if (t == 0) atomicAdd(out, s[0]);
}

// Deliberately wrong: no barrier between filling shared memory and reducing it.
__global__ void block_sum_missing_sync(const float* x, long long n, float* out) {
  __shared__ float s[kBlock];
  const int t = threadIdx.x;
  const long long i = 1LL * blockIdx.x * blockDim.x + t;
  s[t] = i < n ? x[i] : 0.f;
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (t < stride) s[t] += s[t + stride];
    __syncthreads();
  }
  if (t == 0) atomicAdd(out, s[0]);
}

// Warp reduction with __shfl_down_sync; lane 0 of each warp writes its warp's sum.
__global__ void warp_sum_down(const float* x, long long n, float* warp_sums) {
  const long long i = 1LL * blockIdx.x * blockDim.x + threadIdx.x;
  float v = i < n ? x[i] : 0.f;
  for (int offset = warpSize / 2; offset > 0; offset >>= 1) v += __shfl_down_sync(0xFFFFFFFFu, v, offset);
  if ((threadIdx.x & (warpSize - 1)) == 0 && i < n) warp_sums[i / warpSize] = v;
}

// Butterfly reduction with __shfl_xor_sync: every lane ends with the warp's sum.
__global__ void warp_sum_xor(const float* x, long long n, float* all_lanes) {
  const long long i = 1LL * blockIdx.x * blockDim.x + threadIdx.x;
  float v = i < n ? x[i] : 0.f;
  for (int m = warpSize / 2; m > 0; m >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, m);
  if (i < n) all_lanes[i] = v;
}

// Grid-stride loop: a grid smaller than the data covers all of it.
__global__ void grid_stride_axpy(const float* x, long long n, float a, float* y) {
  for (long long i = 1LL * blockIdx.x * blockDim.x + threadIdx.x; i < n; i += 1LL * blockDim.x * gridDim.x)
    y[i] = a * x[i] + y[i];
}

// Writes each thread's coordinates: out[linear global id][0..11].
__global__ void coordinates(int* out) {
  const long long block = blockIdx.x + 1LL * gridDim.x * (blockIdx.y + 1LL * gridDim.y * blockIdx.z);
  const long long thread = threadIdx.x + 1LL * blockDim.x * (threadIdx.y + 1LL * blockDim.y * threadIdx.z);
  int* o = out + 12 * (block * blockDim.x * blockDim.y * blockDim.z + thread);
  o[0] = threadIdx.x; o[1] = threadIdx.y; o[2] = threadIdx.z;
  o[3] = blockIdx.x;  o[4] = blockIdx.y;  o[5] = blockIdx.z;
  o[6] = blockDim.x;  o[7] = blockDim.y;  o[8] = blockDim.z;
  o[9] = gridDim.x;   o[10] = gridDim.y;  o[11] = gridDim.z;
}

// Undefined on a GPU: some threads return before a barrier the others wait in.
__global__ void divergent_barrier(float* out) {
  if (threadIdx.x < 5) return;
  __syncthreads();
  out[threadIdx.x] = 1.f;
}

int launch_block_sum(const float* x, long long n, float* out, int variant, void* stream) {
  const unsigned blocks = static_cast<unsigned>((n + kBlock - 1) / kBlock);
  if (blocks == 0) return 0;
  switch (variant) {
    case 0: return launch_kernel(block_sum_static, blocks, kBlock, 0, stream, x, n, out);
    case 1: return launch_kernel(block_sum_dynamic, blocks, kBlock, kBlock * sizeof(float), stream, x, n, out);
    default: return launch_kernel(block_sum_missing_sync, blocks, kBlock, 0, stream, x, n, out);
  }
}

int launch_warp_sum(const float* x, long long n, float* out, bool butterfly, int threads, void* stream) {
  const unsigned blocks = static_cast<unsigned>((n + threads - 1) / threads);
  if (blocks == 0) return 0;
  if (butterfly) return launch_kernel(warp_sum_xor, blocks, threads, 0, stream, x, n, out);
  return launch_kernel(warp_sum_down, blocks, threads, 0, stream, x, n, out);
}

int launch_grid_stride_axpy(const float* x, long long n, float a, float* y, int blocks, int threads, void* stream) {
  return launch_kernel(grid_stride_axpy, blocks, threads, 0, stream, x, n, a, y);
}

int launch_coordinates(int* out, const unsigned* grid, const unsigned* block, void* stream) {
  return launch_kernel(coordinates, dim3(grid[0], grid[1], grid[2]), dim3(block[0], block[1], block[2]), 0, stream, out);
}

int launch_divergent_barrier(float* out, void* stream) {
  return launch_kernel(divergent_barrier, 1, 32, 0, stream, out);
}

}  // namespace selftest
}  // namespace PYADV_GPU_NS
}  // namespace pyadv
