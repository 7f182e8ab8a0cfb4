// llama.cpp's ggml block types, all of it in one include: this header only includes the four pieces
// below (each says what it holds). Include a piece alone when that is all you need.
//   formats/ggml_blocks.hpp    what the bytes are: ggml_type and its names (to_string, parse_ggml_type),
//                              the block structs of ggml-common.h, ggml::traits / block_size /
//                              type_size / row_bytes / bits_per_weight; the block layouts
//   kernels/ref/ggml_ref.hpp   how a block is computed: ggml's quantize_row_*_ref / *_impl searches and
//                              dequantize_row_*, one block at a time (ggml::ref); the numerics and
//                              what importance does for each type
//   kernels/ggml_row.hpp       checked rows: ggml::quantize_row(t, x, out, weights), ggml::dequantize_row
//   quantize/ggml.hpp          Eigen matrices: ggml::quantize, ggml::quantize_into, ggml::dequantize
// (formats/ggml_types.hpp, the table of every GGUF type code, comes with the first.)
// The bytes equal llama.cpp's quantizer's, in any build (detail/strict_fp.hpp).
#pragma once

#include "mixprec/formats/ggml_blocks.hpp"
#include "mixprec/kernels/ggml_row.hpp"
#include "mixprec/kernels/ref/ggml_ref.hpp"
#include "mixprec/quantize/ggml.hpp"
