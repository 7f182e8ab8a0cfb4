// Progress reporting of the sensitivity analyses (their worker pool: detail/parallel.hpp).
#pragma once

#include <cstddef>
#include <functional>
#include <mutex>
#include <string>

#include "mixprec/detail/parallel.hpp"

namespace mixprec {

// Called after each finished unit of work with (units done, total units, layer name), so a front end
// can draw a bar. Analyses that use threads call it from their workers, but never two calls at once.
using progress_callback = std::function<void(std::size_t done, std::size_t total, const std::string& layer)>;

namespace detail {

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
