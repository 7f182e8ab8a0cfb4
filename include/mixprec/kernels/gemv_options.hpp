// Options of the quantized matrix products (kernels/gemv.hpp), and the row split they use.
#pragma once

#include <algorithm>
#include <thread>
#include <vector>

#include "mixprec/config.hpp"

namespace mixprec {

struct gemv_options {
  unsigned threads = 1;  // output rows are split over this many threads (0: hardware concurrency)
};

namespace detail {

// Runs fn(r0, r1) over [0, rows) split into `threads` chunks.
template <class Fn>
void for_row_chunks(index_t rows, unsigned threads, Fn&& fn) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  if (threads <= 1 || rows < 64) {
    fn(index_t{0}, rows);
    return;
  }
  const index_t chunk = (rows + threads - 1) / threads;
  std::vector<std::jthread> pool;
  for (unsigned t = 1; t < threads; ++t) {
    const index_t r0 = std::min(rows, chunk * t), r1 = std::min(rows, r0 + chunk);
    if (r0 < r1) pool.emplace_back([&fn, r0, r1] { fn(r0, r1); });
  }
  fn(index_t{0}, std::min(rows, chunk));
}

}  // namespace detail
}  // namespace mixprec
