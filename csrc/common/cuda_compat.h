// The one header a .cu file includes to be compiled either by nvcc (real CUDA) or by g++
// under the CUDA-on-CPU emulator. It also holds the launch helper, the only place in the
// project where <<<>>> is written.
//
// .cu files include no torch header: they hold kernels and raw-pointer launchers, so
// plain nvcc compiles them on a machine whose torch has no CUDA.
#pragma once

#include "macros.h"

#if defined(__CUDACC__)
#include <cuda_runtime.h>
// Launchers of the real build live in pyadv::cuda, those of the emulated build in
// pyadv::emulated, so both can be linked into one module.
#define PYADV_GPU_NS cuda
#define PYADV_DYNAMIC_SHARED(T, name)                       \
  extern __shared__ __align__(16) unsigned char name##_raw[]; \
  T* name = reinterpret_cast<T*>(name##_raw)
#else
#include "cuda_emu.h"
#define PYADV_GPU_NS emulated
#define PYADV_DYNAMIC_SHARED(T, name) T* name = static_cast<T*>(::pyadv::emu::dynamic_shared())
#endif

namespace pyadv {

// Launches kernel<<<grid, block, shared_bytes, stream>>>(args...) and returns the launch
// error (cudaSuccess = 0). Arguments convert to the kernel's parameter types.
template <typename... KArgs, typename... Args>
inline int launch_kernel(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t shared_bytes, void* stream,
                         Args&&... args) {
#if defined(__CUDACC__)
  kernel<<<grid, block, shared_bytes, static_cast<cudaStream_t>(stream)>>>(static_cast<KArgs>(args)...);
  return static_cast<int>(cudaGetLastError());
#else
  (void)stream;
  return ::pyadv::emu::launch(kernel, grid, block, shared_bytes, std::forward<Args>(args)...);
#endif
}

// Blocks along a looped grid dimension (a grid-stride loop, or each block looping over planes,
// pairs or problems with stride gridDim): min(n, limit), at least 1; under the emulator also at
// most emu::loop_grid_cap() when set, so that tests run every such loop more than once.
inline unsigned int loop_blocks(long long n, unsigned int limit = 65535) {
  long long blocks = n < 1 ? 1 : n;
  if (blocks > limit) blocks = limit;
#if !defined(__CUDACC__)
  const unsigned cap = ::pyadv::emu::loop_grid_cap();
  if (cap > 0 && blocks > cap) blocks = cap;
#endif
  return static_cast<unsigned int>(blocks);
}

// Blocks for a grid-stride loop over n items: enough to fill the device, never more
// than the work needs, never more than gridDim.x allows.
inline unsigned int grid_for(long long n, unsigned int threads, unsigned int max_blocks = 4096) {
  return loop_blocks((n + threads - 1) / threads, max_blocks);
}

}  // namespace pyadv
