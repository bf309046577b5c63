// Launchers of the emulator self-test kernels (emu_selftest.cu); raw pointers only.
#pragma once

namespace pyadv {
#if defined(__CUDACC__)
namespace cuda {
#else
namespace emulated {
#endif
namespace selftest {

// variant: 0 static shared, 1 dynamic shared, 2 the reduction missing its first barrier.
int launch_block_sum(const float* x, long long n, float* out, int variant, void* stream);
// butterfly: false writes one sum per warp (shfl_down), true one per lane (shfl_xor).
int launch_warp_sum(const float* x, long long n, float* out, bool butterfly, int threads, void* stream);
int launch_grid_stride_axpy(const float* x, long long n, float a, float* y, int blocks, int threads, void* stream);
int launch_coordinates(int* out, const unsigned* grid, const unsigned* block, void* stream);
int launch_divergent_barrier(float* out, void* stream);

}  // namespace selftest
}
}  // namespace pyadv
