// Options of the quantized matrix products (kernels/gemv.hpp, quantized_linear.hpp): the one place where
// a caller says how many threads and which activation path. The row split they use is
// detail::for_row_chunks (detail/parallel.hpp, the library's one worker pool).
#pragma once

#include "mixprec/types.hpp"
#include "mixprec/detail/parallel.hpp"  // detail::for_row_chunks

namespace mixprec {

// How the products take their activations.
enum class activation_type {
  automatic,  // as llama.cpp runs each weight type: llama.cpp's block types (format_id::ggml_block) take
              // their activations quantized to ggml's vec_dot_type (Q8_0, Q8_1 or Q8_K) with exact
              // integer block products (kernels/ref/ggml_dot_ref.hpp); every other format: fp32
  fp32,       // as given: FP32 products (every weight format; block types decode rows, a reference)
  int8,       // quantized to INT8 per token (symmetric, scale max|x| / 127, nearest-even), exact integer dot
              // products; INT4 and INT8 weights only (others: mixprec::error, unsupported)
};

struct gemv_options {
  unsigned threads = 1;                             // output rows are split over this many threads (0: all)
  activation_type activations = activation_type::automatic;
};

}  // namespace mixprec
