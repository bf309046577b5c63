// Qualifiers shared by the CPU build, the CUDA build and the CUDA-on-CPU emulator.
//
// A math core is written once as `PYADV_HD inline` functions. nvcc sees them as
// __host__ __device__; g++ (CPU kernels and the emulator) sees plain inline functions.
#pragma once

#if defined(__CUDACC__)
#define PYADV_HD __host__ __device__
#define PYADV_DEVICE __device__
#define PYADV_FORCEINLINE __forceinline__
#else
#define PYADV_HD
#define PYADV_DEVICE
#define PYADV_FORCEINLINE inline __attribute__((always_inline))
#endif

#if defined(__CUDACC__) || defined(__GNUC__)
#define PYADV_RESTRICT __restrict__
#else
#define PYADV_RESTRICT
#endif

// Math headers put their functions in pyadv::PYADV_ISA_TAG (an inline namespace). CPU
// kernel files compiled once per instruction set define a different tag each, so an inline
// function emitted out of line by the AVX-512 build can never be picked by the linker for
// the baseline build (the classic multi-versioning ODR trap).
#ifndef PYADV_ISA_TAG
#define PYADV_ISA_TAG isa_generic
#endif
