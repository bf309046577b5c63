// The FI CUDA kernels compiled by g++ under the CUDA-on-CPU emulator (pyadv::emulated::fi).
#include "../fi/fi_cuda.cu"
