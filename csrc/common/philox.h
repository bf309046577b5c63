// Counter-based Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC'11), the generator of the swarm kernels. A draw is a pure function of (seed, step,
// element index, stream), so the same seed gives the same numbers on the CPU (any thread
// count), under the emulator and on CUDA.
#pragma once

#include <cstdint>

#include "macros.h"

namespace pyadv {
inline namespace PYADV_ISA_TAG {
namespace philox {

struct U4 {
  uint32_t v[4];
};

PYADV_HD inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// Ten rounds of Philox4x32 on counter c with key k.
PYADV_HD inline U4 philox4x32_10(U4 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo(M0, c.v[0], &hi0);
    const uint32_t lo1 = mulhilo(M1, c.v[2], &hi1);
    c = U4{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
    k0 += W0;
    k1 += W1;
  }
  return c;
}

// The four words for (seed, step, index, stream): counter = (index lo, index hi, step, stream),
// key = (seed lo, seed hi).
PYADV_HD inline U4 draw(uint64_t seed, uint32_t step, uint64_t index, uint32_t stream) {
  return philox4x32_10(U4{{static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), step, stream}},
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// Uniform in [0, 1): 24 bits for float, 53 bits (two words) for double.
PYADV_HD inline float to_unit_float(uint32_t a) { return static_cast<float>(a >> 8) * (1.0f / 16777216.0f); }
PYADV_HD inline double to_unit_double(uint32_t a, uint32_t b) {
  const uint64_t x = (static_cast<uint64_t>(a) << 21) ^ (static_cast<uint64_t>(b) >> 11);
  return static_cast<double>(x & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// Two uniforms of type T from one draw (words 0,1 for float; 0-1 and 2-3 for double).
template <typename T>
struct Uniform2;
template <>
struct Uniform2<float> {
  PYADV_HD static void get(const U4& u, float* a, float* b) {
    *a = to_unit_float(u.v[0]);
    *b = to_unit_float(u.v[1]);
  }
};
template <>
struct Uniform2<double> {
  PYADV_HD static void get(const U4& u, double* a, double* b) {
    *a = to_unit_double(u.v[0], u.v[1]);
    *b = to_unit_double(u.v[2], u.v[3]);
  }
};

// An integer uniform in [0, n) from one word (n small: the bias, below n / 2^32, is negligible).
PYADV_HD inline uint32_t below(uint32_t word, uint32_t n) {
  return static_cast<uint32_t>((static_cast<uint64_t>(word) * n) >> 32);
}

}  // namespace philox
}  // namespace PYADV_ISA_TAG
}  // namespace pyadv
