// CUDA-on-CPU emulator: lets g++ compile and run a .cu kernel on the CPU, on tiny grids.
//
// Why: this project builds CUDA code on machines without a GPU. Compiling with nvcc proves
// the source is valid CUDA; running it here under g++ proves the kernel computes the right
// thing. The emulator executes every CUDA thread for real, each on its own stack (a ucontext
// fiber), so shared memory, barriers and warp shuffles behave as written, not as intended.
//
// Scheduling is cooperative and deterministic: the threads of a block run one at a time,
// each until it reaches a barrier or returns. A kernel that forgets a __syncthreads()
// therefore reads shared memory its neighbours have not written yet. Shared memory (static
// and dynamic) is filled with 0xFF bytes (NaN for floats, -1 for ints) at the start of every
// block, so such a read gives a visibly wrong answer instead of a lucky stale value.
// Misuse that real hardware leaves undefined (a barrier not reached by every thread, a
// shuffle naming an exited lane) is reported as an error.
//
// Blocks run one after another on the calling OS thread (forward or reversed, block_order());
// atomics are therefore plain read-modify-writes. Only this header and cuda_compat.h know about
// the emulator.
//
// What it still cannot see: lost updates of atomics and races between blocks (blocks never
// overlap), the GPU memory model (fences, visibility between blocks, caching), the static
// shared-memory limit per kernel (every static __shared__ lands in one section), register
// pressure (a 1024-thread block of an 80-register kernel launches here and fails on a GPU),
// and out-of-bounds global accesses, which tests catch with NaN-guarded buffers
// (tests/cuda_harness.py) rather than here.
#pragma once

#if defined(__CUDACC__)
#error "cuda_emu.h is for g++ builds only; nvcc uses the real CUDA runtime"
#endif

#include <ucontext.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
using cudaStream_t = void*;
using cudaError_t = int;
constexpr cudaError_t cudaSuccess = 0;
constexpr int warpSize = 32;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __align__(n) alignas(n)
// Every static __shared__ variable lands in one linker section, which the emulator poisons
// at the start of each block (the linker defines __start_/__stop_ symbols for it).
#define __shared__ __attribute__((section("pyadv_emu_shared"), aligned(16))) static

// Per-fiber builtins. All fibers of a launch run on one OS thread, and the scheduler sets
// these before switching into a fiber; thread_local keeps concurrent launches from
// different host threads apart.
inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace pyadv {
namespace emu {

// forward / reverse: the threads of a block take turns between barriers, in that order, and a
// warp operation completes once every thread has had its turn. warp_ahead: each warp runs on
// by itself (through its warp operations) until it waits at a __syncthreads() or returns,
// before the next warp starts, as when one warp gets far ahead of the others on a GPU; a
// missing barrier between two passes of a loop over shared memory shows there.
enum class Schedule { forward, reverse, warp_ahead };

// Order in which the threads of a block are visited between barriers. Running the same
// kernel under both orders exposes races whose outcome depends on which thread goes first.
inline Schedule& schedule_order() {
  static thread_local Schedule order = Schedule::forward;
  return order;
}

// Order in which the blocks of a grid run (one after another). Reversed, a kernel whose result
// depends on block order (a block reading what an earlier block wrote) changes its answer.
inline Schedule& block_order() {
  static thread_local Schedule order = Schedule::forward;
  return order;
}

// The most blocks a launcher may give a looped grid dimension (a grid-stride loop, or a loop
// of each block over planes, pairs or problems; see loop_blocks in cuda_compat.h); 0: no cap.
// Tests set it small so that every such loop runs at least twice, which a missing barrier at
// the end of one pass needs to show.
inline unsigned& loop_grid_cap() {
  static thread_local unsigned cap = 0;
  return cap;
}

constexpr std::size_t kFiberStack = 64 * 1024;
constexpr unsigned kMaxThreadsPerBlock = 1024;
// Dynamic shared memory above 48 KiB needs cudaFuncSetAttribute(MaxDynamicSharedMemorySize) on
// a GPU, which no kernel here does: the emulator refuses what the launch would refuse.
constexpr std::size_t kMaxDynamicShared = 48 * 1024;

enum class Status { ready, at_block_barrier, at_warp_barrier, done };

struct Fiber {
  ucontext_t ctx;
  dim3 tid;
  Status status = Status::ready;
  unsigned warp_mask = 0;  // the mask it passed to the warp operation it waits in
};

struct BlockState {
  std::vector<Fiber> fibers;
  std::unique_ptr<unsigned char[]> stacks;
  ucontext_t scheduler;
  int current = -1;
  std::vector<uint64_t> warp_slots;  // one 8-byte exchange slot per thread
  std::vector<unsigned char> dynamic_shared;
  std::string error;
  void (*body)(void*) = nullptr;
  void* body_arg = nullptr;
};

inline thread_local BlockState* g_block = nullptr;

[[noreturn]] inline void fail(const std::string& what) { throw std::runtime_error("CUDA emulator: " + what); }

// Called from inside a fiber when the kernel misuses a primitive: records the error and
// parks the fiber for good (an exception cannot cross a context switch).
inline void fiber_abort(const std::string& what) {
  BlockState& b = *g_block;
  if (b.error.empty()) b.error = what;
  b.fibers[b.current].status = Status::done;
  swapcontext(&b.fibers[b.current].ctx, &b.scheduler);
  __builtin_unreachable();
}

inline void yield_to_scheduler() {
  BlockState& b = *g_block;
  swapcontext(&b.fibers[b.current].ctx, &b.scheduler);
}

inline void fiber_entry() {
  BlockState& b = *g_block;
  try {
    b.body(b.body_arg);
  } catch (const std::exception& e) {
    if (b.error.empty()) b.error = std::string("kernel threw: ") + e.what();
  }
  b.fibers[b.current].status = Status::done;
  // uc_link returns to the scheduler.
}

inline unsigned linear_tid(const dim3& t, const dim3& d) { return t.x + d.x * (t.y + d.y * t.z); }

extern "C" {
extern unsigned char __start_pyadv_emu_shared[] __attribute__((weak));
extern unsigned char __stop_pyadv_emu_shared[] __attribute__((weak));
}

inline void poison_shared(BlockState& b) {
  if (__start_pyadv_emu_shared && __stop_pyadv_emu_shared)
    std::memset(__start_pyadv_emu_shared, 0xFF, __stop_pyadv_emu_shared - __start_pyadv_emu_shared);
  if (!b.dynamic_shared.empty()) std::memset(b.dynamic_shared.data(), 0xFF, b.dynamic_shared.size());
}

inline void resume(BlockState& b, int i) {
  b.current = i;
  threadIdx = b.fibers[i].tid;
  swapcontext(&b.scheduler, &b.fibers[i].ctx);
}

// Releases the lanes of each warp whose warp operation every participant has reached.
inline bool release_warps(BlockState& b) {
  bool released = false;
  const unsigned n = b.fibers.size();
  for (unsigned w0 = 0; w0 < n; w0 += warpSize) {
    const unsigned lanes = (n - w0 < unsigned(warpSize)) ? n - w0 : warpSize;
    unsigned waiting = 0, mask = 0;
    for (unsigned l = 0; l < lanes; ++l)
      if (b.fibers[w0 + l].status == Status::at_warp_barrier) {
        waiting |= 1u << l;
        mask = b.fibers[w0 + l].warp_mask;
      }
    if (!waiting) continue;
    const unsigned existing = lanes == 32 ? 0xFFFFFFFFu : ((1u << lanes) - 1u);
    const unsigned need = mask & existing;
    for (unsigned l = 0; l < lanes; ++l) {
      if (!(need >> l & 1u)) continue;
      const Status s = b.fibers[w0 + l].status;
      if (s == Status::done) {
        b.error = "warp operation's mask names lane " + std::to_string(l) + " of warp " +
                  std::to_string(w0 / warpSize) + ", which has exited";
        return false;
      }
    }
    if ((waiting & need) == need) {
      for (unsigned l = 0; l < lanes; ++l)
        if (need >> l & 1u) b.fibers[w0 + l].status = Status::ready;
      released = true;
    }
  }
  return released;
}

inline void run_block(BlockState& b) {
  const int n = static_cast<int>(b.fibers.size());
  poison_shared(b);
  for (int i = 0; i < n; ++i) {
    Fiber& f = b.fibers[i];
    f.status = Status::ready;
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = b.stacks.get() + static_cast<std::size_t>(i) * kFiberStack;
    f.ctx.uc_stack.ss_size = kFiberStack;
    f.ctx.uc_link = &b.scheduler;
    makecontext(&f.ctx, fiber_entry, 0);
  }
  const bool reverse = schedule_order() == Schedule::reverse;
  const bool warp_ahead = schedule_order() == Schedule::warp_ahead;
  for (;;) {
    bool ran = false;
    if (warp_ahead) {
      for (int w0 = 0; w0 < n && b.error.empty(); w0 += warpSize) {
        const int w1 = n - w0 < warpSize ? n : w0 + warpSize;
        for (bool progress = true; progress && b.error.empty();) {
          progress = false;
          for (int i = w0; i < w1 && b.error.empty(); ++i) {
            if (b.fibers[i].status != Status::ready) continue;
            resume(b, i);
            ran = progress = true;
          }
          // this warp's shuffle is complete: it goes on before any other warp moves
          if (b.error.empty() && release_warps(b)) progress = true;
        }
      }
    }
    for (int k = 0; k < n && b.error.empty(); ++k) {
      const int i = reverse ? n - 1 - k : k;
      if (b.fibers[i].status != Status::ready) continue;
      resume(b, i);
      ran = true;
    }
    if (!b.error.empty()) return;
    if (release_warps(b)) continue;
    if (!b.error.empty()) return;
    int at_barrier = 0, done = 0, at_warp = 0;
    for (const Fiber& f : b.fibers) {
      at_barrier += f.status == Status::at_block_barrier;
      done += f.status == Status::done;
      at_warp += f.status == Status::at_warp_barrier;
    }
    if (done == n) return;
    if (at_barrier > 0 && at_barrier + done == n) {
      if (done > 0) {
        b.error = "__syncthreads() reached by " + std::to_string(at_barrier) + " of " + std::to_string(n) +
                  " threads of block (" + std::to_string(blockIdx.x) + "," + std::to_string(blockIdx.y) + "," +
                  std::to_string(blockIdx.z) + "); the others have returned (undefined behaviour on a GPU)";
        return;
      }
      for (Fiber& f : b.fibers) f.status = Status::ready;
      continue;
    }
    if (!ran) {
      b.error = "deadlock: " + std::to_string(at_barrier) + " thread(s) wait in __syncthreads() while " +
                std::to_string(at_warp) + " wait in a warp operation that cannot complete";
      return;
    }
  }
}

template <typename... KArgs>
struct Invocation {
  void (*kernel)(KArgs...);
  std::tuple<KArgs...> args;
  static void run(void* self) {
    auto* inv = static_cast<Invocation*>(self);
    std::apply(inv->kernel, inv->args);
  }
};

// Runs kernel<<<grid, block, shared_bytes>>>(args...) on the CPU, blocks in order.
template <typename... KArgs, typename... Args>
cudaError_t launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, std::size_t shared_bytes, Args&&... args) {
  static_assert(sizeof...(KArgs) == sizeof...(Args), "kernel launched with the wrong number of arguments");
  const unsigned long long nthreads = 1ull * block.x * block.y * block.z;
  if (nthreads == 0 || nthreads > kMaxThreadsPerBlock)
    fail("block of " + std::to_string(nthreads) + " threads; a block holds 1 to 1024");
  if (block.z > 64) fail("blockDim.z must be at most 64");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) fail("empty grid");
  if (grid.y > 65535 || grid.z > 65535) fail("gridDim.y and gridDim.z must be at most 65535");
  if (shared_bytes > kMaxDynamicShared)
    fail("dynamic shared memory of " + std::to_string(shared_bytes) +
         " bytes; above 48 KiB a GPU launch needs the cudaFuncSetAttribute opt-in");
  if (g_block != nullptr) fail("nested launch from inside a kernel is not supported");

  Invocation<KArgs...> inv{kernel, std::tuple<KArgs...>(static_cast<KArgs>(std::forward<Args>(args))...)};
  BlockState b;
  b.fibers.resize(nthreads);
  b.stacks.reset(new unsigned char[nthreads * kFiberStack]);
  b.warp_slots.assign(nthreads, 0);
  b.dynamic_shared.assign(shared_bytes, 0);
  b.body = &Invocation<KArgs...>::run;
  b.body_arg = &inv;
  for (unsigned z = 0, i = 0; z < block.z; ++z)
    for (unsigned y = 0; y < block.y; ++y)
      for (unsigned x = 0; x < block.x; ++x, ++i) b.fibers[i].tid = dim3(x, y, z);

  g_block = &b;
  blockDim = block;
  gridDim = grid;
  struct Reset {
    ~Reset() { g_block = nullptr; }
  } reset;
  const unsigned long long nblocks = 1ull * grid.x * grid.y * grid.z;
  const bool reverse = block_order() == Schedule::reverse;
  for (unsigned long long k = 0; k < nblocks; ++k) {
    const unsigned long long i = reverse ? nblocks - 1 - k : k;
    blockIdx = dim3(static_cast<unsigned>(i % grid.x), static_cast<unsigned>(i / grid.x % grid.y),
                    static_cast<unsigned>(i / grid.x / grid.y));
    run_block(b);
    if (!b.error.empty()) fail(b.error);
  }
  return cudaSuccess;
}

inline void* dynamic_shared() {
  BlockState& b = *g_block;
  return b.dynamic_shared.empty() ? nullptr : b.dynamic_shared.data();
}

inline void block_barrier() {
  g_block->fibers[g_block->current].status = Status::at_block_barrier;
  yield_to_scheduler();
}

inline void warp_barrier(unsigned mask) {
  BlockState& b = *g_block;
  const unsigned lane = b.current % warpSize;
  if (!(mask >> lane & 1u)) fiber_abort("warp operation called by lane " + std::to_string(lane) + " outside its own mask");
  b.fibers[b.current].warp_mask = mask;
  b.fibers[b.current].status = Status::at_warp_barrier;
  yield_to_scheduler();
}

// Lane exchange shared by every shuffle: deposit, wait for the warp, read the source lane,
// wait again so no lane overwrites its slot before the others have read it.
template <typename T>
T warp_exchange(unsigned mask, T value, int src_lane_in_warp) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type wider than 8 bytes");
  BlockState& b = *g_block;
  const unsigned self = b.current;
  const unsigned warp0 = self - self % warpSize;
  std::memcpy(&b.warp_slots[self], &value, sizeof(T));
  warp_barrier(mask);
  T out = value;
  const unsigned src = warp0 + static_cast<unsigned>(src_lane_in_warp);
  if (src < b.fibers.size() && (mask >> src_lane_in_warp & 1u)) std::memcpy(&out, &b.warp_slots[src], sizeof(T));
  warp_barrier(mask);
  return out;
}

inline unsigned current_lane() { return g_block->current % warpSize; }

}  // namespace emu
}  // namespace pyadv

inline void __syncthreads() { pyadv::emu::block_barrier(); }
inline void __syncwarp(unsigned mask = 0xFFFFFFFFu) { pyadv::emu::warp_barrier(mask); }

template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize) {
  const int lane = pyadv::emu::current_lane();
  const int base = lane - lane % width;
  return pyadv::emu::warp_exchange(mask, var, base + ((src_lane % width) + width) % width);
}

template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  const int lane = pyadv::emu::current_lane();
  const int in_segment = lane % width;
  const int src = (in_segment + static_cast<int>(delta) < width) ? lane + static_cast<int>(delta) : lane;
  return pyadv::emu::warp_exchange(mask, var, src);
}

template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize) {
  const int lane = pyadv::emu::current_lane();
  const int src = lane ^ lane_mask;
  // A partner outside this lane's width-sized segment yields the lane's own value.
  const bool same_segment = (src / width) == (lane / width);
  return pyadv::emu::warp_exchange(mask, var, same_segment ? src : lane);
}

// Fibers never run concurrently, so a plain read-modify-write is atomic here.
template <typename T>
T atomicAdd(T* address, T val) {
  const T old = *address;
  *address = old + val;
  return old;
}
template <typename T>
T atomicMin(T* address, T val) {
  const T old = *address;
  *address = val < old ? val : old;
  return old;
}
template <typename T>
T atomicMax(T* address, T val) {
  const T old = *address;
  *address = val > old ? val : old;
  return old;
}
