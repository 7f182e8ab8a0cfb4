// ggml's tensor types as GGUF stores them: one table of type code, name, block size, bytes per block
// and whether ggml's quantizer searches with importance
// (ggml's ggml_type enum and GGML_QUANT_SIZES / type_traits in ggml.c), for every type of ggml's GGUF
// constants except the activation-only Q8_1 and the ternary/FP4 types. The GGUF reader (io/gguf.hpp)
// sizes tensors with it, formats/ggml_blocks.hpp names and sizes the types it implements with it, and the
// mixprec tool prints it; no other place spells a code or a block size. Depends on nothing.
#pragma once

#include <cstdint>
#include <string_view>

namespace mixprec::ggml {

struct type_info {
  std::uint32_t code;        // GGUF's on-disk code (ggml_type)
  std::string_view name;     // llama.cpp's name ("q4_K" keeps its capital K)
  std::uint32_t block_size;  // elements per block
  std::uint32_t type_size;   // bytes per block
  bool weighted = false;     // ggml_quantize_chunk's search takes importance (llama-quantize --imatrix)
};

// weighted: marked for the types mixprec implements whose ggml search takes an imatrix (every block
// type but Q8_0, whose quantize_q8_0 ignores it; the float types store values as they are).
inline constexpr type_info type_table[] = {
    {0, "f32", 1, 4},           {1, "f16", 1, 2},           {2, "q4_0", 32, 18, true},    {3, "q4_1", 32, 20, true},
    {6, "q5_0", 32, 22, true},  {7, "q5_1", 32, 24, true},  {8, "q8_0", 32, 34},          {10, "q2_K", 256, 84, true},
    {11, "q3_K", 256, 110, true}, {12, "q4_K", 256, 144, true}, {13, "q5_K", 256, 176, true}, {14, "q6_K", 256, 210, true},
    {15, "q8_K", 256, 292},     {16, "iq2_xxs", 256, 66},   {17, "iq2_xs", 256, 74},      {18, "iq3_xxs", 256, 98},
    {19, "iq1_s", 256, 50},     {20, "iq4_nl", 32, 18, true}, {21, "iq3_s", 256, 110},    {22, "iq2_s", 256, 82},
    {23, "iq4_xs", 256, 136, true}, {24, "i8", 1, 1},       {25, "i16", 1, 2},            {26, "i32", 1, 4},
    {27, "i64", 1, 8},          {28, "f64", 1, 8},          {29, "iq1_m", 256, 56},       {30, "bf16", 1, 2},
};

// The table's row for `code`, or null when the code is not in it.
[[nodiscard]] constexpr const type_info* find_type(std::uint32_t code) noexcept {
  for (const type_info& t : type_table)
    if (t.code == code) return &t;
  return nullptr;
}

}  // namespace mixprec::ggml
