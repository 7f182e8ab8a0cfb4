// ggml's tensor types as GGUF stores them: one table of every type code ggml defines, 0 up to its
// GGML_TYPE_COUNT (43), each with its name, block size, bytes per block, whether mixprec decodes and
// encodes it, and whether ggml's quantizer searches with importance. Source: ggml's `enum ggml_type`
// (ggml/include/ggml.h), its `type_traits` (ggml/src/ggml.c) and the block structs of ggml-common.h,
// as of ggml-org/ggml d99724f (August 2026; llama.cpp carries the same files under ggml/).
//
// Three kinds of entry:
//   implemented  mixprec decodes and encodes it (formats/ggml_blocks.hpp's ggml_type enum lists exactly these)
//   known        ggml reads and writes it, mixprec does not decode it (MXFP4, the IQ types, the integer
//                types...): a GGUF holding one reads, lists and is copied byte for byte, and only a request
//                that needs its values is refused, naming it
//   removed      a code ggml once used and has taken out (4, 5: Q4_2/Q4_3; 31-33: Q4_0_4_4/4_8/8_8;
//                36-38: IQ4_NL_4_4/4_8/8_8). ggml's table gives them block size 0 and its GGUF reader
//                refuses any tensor of them; so does mixprec's, by name. Sizes 0 here as there.
// A code of 43 or more is unknown (find_type returns null).
//
// The GGUF reader (io/gguf.hpp) sizes tensors with it, formats/ggml_blocks.hpp names and sizes the
// types it implements with it, and the mixprec tool prints it; no other place spells a code or a
// block size. Depends on nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mixprec::ggml {

enum class type_support : std::uint8_t {
  known,        // ggml defines it; mixprec carries its bytes but does not decode or encode it
  implemented,  // mixprec decodes and encodes it
  removed,      // ggml removed it; GGUF readers (ggml's and mixprec's) refuse a tensor of it
};

struct type_info {
  std::uint32_t code;        // GGUF's on-disk code (ggml_type)
  std::string_view name;     // llama.cpp's name ("q4_K" keeps its capital K; removed codes: ggml.h's enum name, lower-case)
  std::uint32_t block_size;  // elements per block (0 for a removed code, as in ggml)
  std::uint32_t type_size;   // bytes per block (0 for a removed code)
  type_support support = type_support::known;
  bool weighted = false;     // ggml_quantize_chunk's search takes importance (llama-quantize --imatrix)

  [[nodiscard]] constexpr bool implemented() const noexcept { return support == type_support::implemented; }
  [[nodiscard]] constexpr bool removed() const noexcept { return support == type_support::removed; }
};

inline constexpr std::uint32_t type_count = 43;  // ggml's GGML_TYPE_COUNT: codes 0..42

// weighted: marked for the types mixprec implements whose ggml search takes an imatrix (every block
// type but Q8_0, whose quantize_q8_0 ignores it; the float types store values as they are).
inline constexpr type_info type_table[] = {
    {0, "f32", 1, 4, type_support::implemented},
    {1, "f16", 1, 2, type_support::implemented},
    {2, "q4_0", 32, 18, type_support::implemented, true},
    {3, "q4_1", 32, 20, type_support::implemented, true},
    {4, "q4_2", 0, 0, type_support::removed},
    {5, "q4_3", 0, 0, type_support::removed},
    {6, "q5_0", 32, 22, type_support::implemented, true},
    {7, "q5_1", 32, 24, type_support::implemented, true},
    {8, "q8_0", 32, 34, type_support::implemented},
    {9, "q8_1", 32, 36, type_support::known},
    {10, "q2_K", 256, 84, type_support::implemented, true},
    {11, "q3_K", 256, 110, type_support::implemented, true},
    {12, "q4_K", 256, 144, type_support::implemented, true},
    {13, "q5_K", 256, 176, type_support::implemented, true},
    {14, "q6_K", 256, 210, type_support::implemented, true},
    {15, "q8_K", 256, 292, type_support::known},
    {16, "iq2_xxs", 256, 66, type_support::known},
    {17, "iq2_xs", 256, 74, type_support::known},
    {18, "iq3_xxs", 256, 98, type_support::known},
    {19, "iq1_s", 256, 50, type_support::known},
    {20, "iq4_nl", 32, 18, type_support::implemented, true},
    {21, "iq3_s", 256, 110, type_support::known},
    {22, "iq2_s", 256, 82, type_support::known},
    {23, "iq4_xs", 256, 136, type_support::implemented, true},
    {24, "i8", 1, 1, type_support::known},
    {25, "i16", 1, 2, type_support::known},
    {26, "i32", 1, 4, type_support::known},
    {27, "i64", 1, 8, type_support::known},
    {28, "f64", 1, 8, type_support::known},
    {29, "iq1_m", 256, 56, type_support::known},
    {30, "bf16", 1, 2, type_support::implemented},
    {31, "q4_0_4_4", 0, 0, type_support::removed},
    {32, "q4_0_4_8", 0, 0, type_support::removed},
    {33, "q4_0_8_8", 0, 0, type_support::removed},
    {34, "tq1_0", 256, 54, type_support::known},
    {35, "tq2_0", 256, 66, type_support::known},
    {36, "iq4_nl_4_4", 0, 0, type_support::removed},
    {37, "iq4_nl_4_8", 0, 0, type_support::removed},
    {38, "iq4_nl_8_8", 0, 0, type_support::removed},
    {39, "mxfp4", 32, 17, type_support::known},
    {40, "nvfp4", 64, 36, type_support::known},
    {41, "q1_0", 128, 18, type_support::known},
    {42, "q2_0", 64, 18, type_support::known},
};

// The table is dense and in code order (row i has code i), and a removed code alone has no sizes.
static_assert([] {
  if (sizeof type_table / sizeof type_table[0] != type_count) return false;
  for (std::size_t i = 0; i < sizeof type_table / sizeof type_table[0]; ++i) {
    const type_info& t = type_table[i];
    if (t.code != i || t.name.empty() || t.removed() != (t.block_size == 0) || t.removed() != (t.type_size == 0)) return false;
    if (t.weighted && !t.implemented()) return false;
  }
  return true;
}());

// The table's row for `code` (removed codes included: check removed()), or null when ggml defines no
// such code.
[[nodiscard]] constexpr const type_info* find_type(std::uint32_t code) noexcept {
  return code < type_count ? &type_table[code] : nullptr;
}

}  // namespace mixprec::ggml
