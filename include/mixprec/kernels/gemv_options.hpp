// Options of the quantized matrix products (kernels/gemv.hpp), and the row split they use.
#pragma once

#include "mixprec/types.hpp"
#include "mixprec/detail/parallel.hpp"  // detail::for_row_chunks

namespace mixprec {

struct gemv_options {
  unsigned threads = 1;  // output rows are split over this many threads (0: hardware concurrency)
};

}  // namespace mixprec
