// The SSIM CUDA kernels compiled by g++ under the emulator (pyadv::emulated::ssim).
#include "../image/ssim_cuda.cu"
