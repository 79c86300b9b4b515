// parallel_for over [0, n) in contiguous ranges, one per thread. Threads are started per call:
// the CPU ops run for milliseconds, so the start-up (tens of microseconds) is small against
// them, and nothing outlives the call (safe across fork). Small jobs run on the calling thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace s6kit::cpu {

// fn(begin, end) is called on disjoint ranges covering [0, n). `work_per_item` is a rough cost
// in elementary operations, used to keep tiny jobs on one thread.
template <typename Fn>
void parallel_for(int64_t n, int num_threads, double work_per_item, Fn&& fn) {
  if (n <= 0) return;
  constexpr double kMinWorkPerThread = 2.0e5;
  int64_t threads = std::max<int64_t>(1, std::min<int64_t>(num_threads, n));
  threads = std::min<int64_t>(threads,
                              std::max<int64_t>(1, int64_t(n * work_per_item / kMinWorkPerThread)));
  if (threads == 1) {
    fn(int64_t(0), n);
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(threads);
  pool.reserve(threads - 1);
  auto run = [&](int64_t t) {
    const int64_t begin = n * t / threads, end = n * (t + 1) / threads;
    try {
      if (begin < end) fn(begin, end);
    } catch (...) {
      errors[t] = std::current_exception();
    }
  };
  for (int64_t t = 1; t < threads; ++t) pool.emplace_back(run, t);
  run(0);
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace s6kit::cpu
