// The perspective-warp CUDA kernel compiled by g++ under the emulator (pyadv::emulated::warp).
#include "../image/warp_cuda.cu"
