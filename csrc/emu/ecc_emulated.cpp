// The ECC inner-step CUDA kernel compiled by g++ under the emulator (pyadv::emulated::ecc).
#include "../image/ecc_cuda.cu"
