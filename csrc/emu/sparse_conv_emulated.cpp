// The incremental conv stage CUDA kernel compiled by g++ under the emulator (pyadv::emulated::sparse_conv).
#include "../sparse/sparse_conv_cuda.cu"
