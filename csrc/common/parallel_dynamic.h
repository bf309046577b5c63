// at::parallel_for hands each thread one fixed slice of the range. Where items cost unequal
// time (an ECC pair converges in 2 steps or runs 50), or where another thread of the process
// takes a core for a while (the dataset writer's file writes), the slices finish apart and
// the call waits for the last. Here the threads take blocks of `block` items from a shared
// counter until none is left, so the work spreads to whichever thread is free. Each item is
// still computed by exactly one thread with the same code: results do not depend on which.
#pragma once

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>

namespace pyadv {

template <typename F>
void parallel_for_dynamic(int64_t begin, int64_t end, int64_t block, const F& f) {
  if (end <= begin) return;
  const int64_t n = end - begin;
  const int64_t threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  if (threads <= 1 || n <= block) {
    f(begin, end);
    return;
  }
  std::atomic<int64_t> next{begin};
  at::parallel_for(0, threads, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      for (int64_t i = next.fetch_add(block, std::memory_order_relaxed); i < end;
           i = next.fetch_add(block, std::memory_order_relaxed)) {
        f(i, i + block < end ? i + block : end);
      }
    }
  });
}

}  // namespace pyadv
