// Progress reporting and the small worker pool that the sensitivity analyses share.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace mixprec {

// Called after each finished unit of work with (units done, total units, layer name), so a front end
// can draw a bar. Analyses that use threads call it from their workers, but never two calls at once.
using progress_callback = std::function<void(std::size_t done, std::size_t total, const std::string& layer)>;

namespace detail {

// Number of workers for `threads` (0: one per hardware thread) and n units of work.
inline unsigned worker_count(unsigned threads, std::size_t n) noexcept {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  return static_cast<unsigned>(std::max<std::size_t>(1, std::min<std::size_t>(threads, n)));
}

// Runs fn(i, worker) for i in [0, n) on `workers` threads (worker in [0, workers)); units are taken in
// order from a shared counter. After the first exception no new unit starts; it is rethrown once every
// worker has stopped.
template <class Fn>
void parallel_for(std::size_t n, unsigned workers, Fn&& fn) {
  if (workers <= 1) {
    for (std::size_t i = 0; i < n; ++i) fn(i, 0u);
    return;
  }
  std::atomic<std::size_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  {
    std::vector<std::jthread> pool;
    pool.reserve(workers);
    for (unsigned t = 0; t < workers; ++t)
      pool.emplace_back([&, t] {
        for (std::size_t i; (i = next.fetch_add(1)) < n;) {
          try {
            fn(i, t);
          } catch (...) {
            const std::lock_guard lock(failure_mutex);
            if (!failure) failure = std::current_exception();
            next = n;
          }
        }
      });
  }
  if (failure) std::rethrow_exception(failure);
}

// Serialises progress calls from several workers and counts finished units.
class progress_counter {
 public:
  progress_counter(const progress_callback& callback, std::size_t total) : callback_(callback), total_(total) {}
  // One more unit of `layer` is done.
  void tick(const std::string& layer) {
    if (!callback_) return;
    const std::lock_guard lock(mutex_);
    callback_(++done_, total_, layer);
  }

 private:
  const progress_callback& callback_;
  std::size_t total_;
  std::size_t done_ = 0;
  std::mutex mutex_;
};

}  // namespace detail
}  // namespace mixprec
