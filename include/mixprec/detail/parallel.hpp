// The one worker pool of the library (and of the mixprec tool): exception-safe parallel loops.
//   worker_count(threads, n)         threads to use for n units (threads 0: one per hardware thread)
//   parallel_for(n, workers, fn)     fn(i, worker) for i in [0, n); the caller is worker 0
//   for_row_chunks(rows, threads, fn) fn(r0, r1) over [0, rows) in at most `threads` contiguous chunks
// After the first exception no new unit starts; it is rethrown in the caller once every worker has
// stopped (an exception never escapes a thread, which would call std::terminate).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "mixprec/types.hpp"

namespace mixprec::detail {

// Number of workers for `threads` (0: one per hardware thread) and n units of work (at least 1).
inline unsigned worker_count(unsigned threads, std::size_t n) noexcept {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  return static_cast<unsigned>(std::max<std::size_t>(1, std::min<std::size_t>(threads, n)));
}

// Runs fn(i, worker) for i in [0, n) on `workers` threads, the calling thread being worker 0 (worker in
// [0, workers)); units are taken in order from a shared counter. See the banner for exceptions.
template <class Fn>
void parallel_for(std::size_t n, unsigned workers, Fn&& fn) {
  if (workers <= 1 || n <= 1) {
    for (std::size_t i = 0; i < n; ++i) fn(i, 0u);
    return;
  }
  std::atomic<std::size_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto work = [&](unsigned t) {
    for (std::size_t i; (i = next.fetch_add(1)) < n;) {
      try {
        fn(i, t);
      } catch (...) {
        const std::lock_guard lock(failure_mutex);
        if (!failure) failure = std::current_exception();
        next = n;
      }
    }
  };
  {
    std::vector<std::jthread> pool;
    pool.reserve(workers - 1);
    for (unsigned t = 1; t < workers; ++t) pool.emplace_back(work, t);
    work(0u);
  }
  if (failure) std::rethrow_exception(failure);
}

// Runs fn(r0, r1) over [0, rows) split into at most `threads` contiguous chunks (0: hardware
// concurrency; fewer than 64 rows: one chunk on the calling thread).
template <class Fn>
void for_row_chunks(index_t rows, unsigned threads, Fn&& fn) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  if (threads <= 1 || rows < 64) {
    fn(index_t{0}, rows);
    return;
  }
  const index_t chunk = (rows + threads - 1) / threads;
  const auto chunks = static_cast<std::size_t>((rows + chunk - 1) / chunk);
  parallel_for(chunks, static_cast<unsigned>(chunks), [&](std::size_t c, unsigned) {
    const index_t r0 = static_cast<index_t>(c) * chunk;
    fn(r0, std::min(rows, r0 + chunk));
  });
}

}  // namespace mixprec::detail
