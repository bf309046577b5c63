// The FI CUDA kernels (per pixel and grouped) compiled by g++ under the CUDA-on-CPU emulator (pyadv::emulated::fi).
#include "../fi/fi_cuda.cu"
#include "../fi/fi_group_cuda.cu"
