#include "cpu_isa.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace pyadv {

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::avx512: return "avx512";
    case CpuIsa::avx2: return "avx2";
    default: return "baseline";
  }
}

std::vector<CpuIsa> cpu_isa_compiled() {
  std::vector<CpuIsa> v{CpuIsa::baseline};
#if defined(PYADV_HAVE_AVX2)
  v.push_back(CpuIsa::avx2);
#endif
#if defined(PYADV_HAVE_AVX512)
  v.push_back(CpuIsa::avx512);
#endif
  return v;
}

bool cpu_isa_supported(CpuIsa isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  switch (isa) {
    case CpuIsa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CpuIsa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    default: return true;
  }
#else
  return isa == CpuIsa::baseline;
#endif
}

namespace {

bool parse(const std::string& name, CpuIsa* out) {
  for (CpuIsa isa : {CpuIsa::baseline, CpuIsa::avx2, CpuIsa::avx512})
    if (name == cpu_isa_name(isa)) {
      *out = isa;
      return true;
    }
  return false;
}

bool usable(CpuIsa isa) {
  for (CpuIsa c : cpu_isa_compiled())
    if (c == isa) return cpu_isa_supported(isa);
  return false;
}

CpuIsa best_usable(CpuIsa cap) {
  CpuIsa best = CpuIsa::baseline;
  for (CpuIsa c : cpu_isa_compiled())
    if (static_cast<int>(c) <= static_cast<int>(cap) && cpu_isa_supported(c)) best = c;
  return best;
}

std::atomic<int>& active() {
  static std::atomic<int> isa([] {
    CpuIsa cap = CpuIsa::avx512;
    if (const char* env = std::getenv("PYADV_CPU_ISA")) parse(env, &cap);  // unknown names leave no cap
    return static_cast<int>(best_usable(cap));
  }());
  return isa;
}

}  // namespace

CpuIsa cpu_isa() { return static_cast<CpuIsa>(active().load(std::memory_order_relaxed)); }

void set_cpu_isa(const std::string& name) {
  CpuIsa isa;
  std::string allowed;
  for (CpuIsa c : cpu_isa_compiled())
    if (cpu_isa_supported(c)) allowed += (allowed.empty() ? "" : ", ") + std::string(cpu_isa_name(c));
  if (!parse(name, &isa) || !usable(isa))
    throw std::invalid_argument("cpu isa '" + name + "' is not usable here; allowed: " + allowed);
  active().store(static_cast<int>(isa));
}

}  // namespace pyadv
