// The swarm CUDA kernels compiled by g++ under the emulator (pyadv::emulated::swarm), without
// floating-point contraction, like the CPU kernels.
#include "../swarm/swarm_cuda.cu"
