// Run-time choice among the instruction-set variants of the CPU kernels.
//
// Hot CPU kernel files are compiled once per variant (CMakeLists.txt: pyadv_cpu_kernels),
// never tuned to the build machine, so one build runs on any x86-64 and still uses AVX2 or AVX-512
// where the machine has them. PYADV_CPU_ISA=baseline|avx2|avx512 caps the choice.
#pragma once

#include <string>
#include <vector>

namespace pyadv {

enum class CpuIsa : int { baseline = 0, avx2 = 1, avx512 = 2 };

const char* cpu_isa_name(CpuIsa isa);
// Variants compiled into this build, lowest first.
std::vector<CpuIsa> cpu_isa_compiled();
// Whether this CPU (and its OS) can run a variant.
bool cpu_isa_supported(CpuIsa isa);
// The variant the kernels use now.
CpuIsa cpu_isa();
// Selects a variant by name; throws std::invalid_argument naming the allowed values when the
// name is unknown, not compiled in, or not supported by this CPU.
void set_cpu_isa(const std::string& name);

}  // namespace pyadv

#if defined(PYADV_HAVE_AVX512)
#define PYADV_ISA_CASE_AVX512(...)               \
  case ::pyadv::CpuIsa::avx512: {               \
    namespace isa_ns = ::pyadv::isa_avx512;     \
    __VA_ARGS__;                                \
    break;                                      \
  }
#else
#define PYADV_ISA_CASE_AVX512(...)
#endif
#if defined(PYADV_HAVE_AVX2)
#define PYADV_ISA_CASE_AVX2(...)                 \
  case ::pyadv::CpuIsa::avx2: {                 \
    namespace isa_ns = ::pyadv::isa_avx2;       \
    __VA_ARGS__;                                \
    break;                                      \
  }
#else
#define PYADV_ISA_CASE_AVX2(...)
#endif

// Runs a statement with `isa_ns` naming the namespace of the active variant, e.g.
//   PYADV_ISA_DISPATCH(return isa_ns::fi::pixel_fi_items<T>(...));
#define PYADV_ISA_DISPATCH(...)                  \
  switch (::pyadv::cpu_isa()) {                 \
    PYADV_ISA_CASE_AVX512(__VA_ARGS__)          \
    PYADV_ISA_CASE_AVX2(__VA_ARGS__)            \
    default: {                                  \
      namespace isa_ns = ::pyadv::isa_baseline; \
      __VA_ARGS__;                              \
      break;                                    \
    }                                           \
  }
