// llama.cpp's block types as mixprec implements them: the ggml_type enum (GGUF's codes) and its names,
// the block structs of ggml's `ggml-common.h` byte for byte (each with a static_assert on its size),
// and the traits every other piece sizes rows with (block size, bytes per block, importance or not).
// No arithmetic on values lives here.
//
// The neighbouring pieces (formats/ggml.hpp includes them all):
//   formats/ggml_types.hpp     the table of every GGUF type code (sizes come from it; depends on nothing)
//   kernels/ref/ggml_ref.hpp   ggml's reference quantizers and decoders, one block at a time (ggml::ref)
//   kernels/ggml_row.hpp       checked rows: ggml::quantize_row / ggml::dequantize_row
//   quantize/ggml.hpp          matrices: ggml::quantize / quantize_into / dequantize on Eigen row matrices
//
// Quick reference:
//   ggml_type            official numeric codes: f32 0, f16 1, q4_0 2, q4_1 3, q5_0 6, q5_1 7, q8_0 8,
//                        q2_K 10, q3_K 11, q4_K 12, q5_K 13, q6_K 14, iq4_nl 20, iq4_xs 23, bf16 30
//   to_string(t)         llama.cpp's name ("q4_0", "q4_K", "bf16"...)
//   parse_ggml_type(s)   the inverse, case-insensitive; throws errc::invalid_argument
//   ggml::block_size(t)  weights per block (1 for the float types, 32, or 256 for the K-quants)
//   ggml::type_size(t)   bytes per block
//   ggml::row_bytes(t,n) bytes of one row; throws errc::invalid_argument when n is not a multiple of the block
//   ggml::traits(t)      all three and whether ggml's search takes importance; errc::unsupported for a
//                        code mixprec does not implement
//
// Block layouts (little-endian; `half` = IEEE binary16 bits; a row is n / block_size blocks, back to back):
//   Q8_0  34 B / 32:  half d; int8 qs[32]                          x = d * q
//   Q4_0  18 B / 32:  half d; uint8 qs[16]                          x = d * (q - 8)
//   Q4_1  20 B / 32:  half d; half m; uint8 qs[16]                  x = d * q + m
//         (Q4_0/Q4_1: element j in the low nibble of byte j, element j + 16 in the high nibble)
//   Q4_K 144 B / 256: half d; half dmin; uint8 scales[12]; uint8 qs[128]
//         8 sub-blocks of 32 with 6-bit scale sc_j and min m_j; x = d*sc_j*q - dmin*m_j
//   Q6_K 210 B / 256: uint8 ql[128]; uint8 qh[64]; int8 scales[16]; half d
//         16 sub-blocks of 16; x = d*scales_j*(q - 32), q = 4 low bits from ql + 2 high bits from qh
//   Q5_0  22 B / 32:  half d; uint8 qh[4]; uint8 qs[16]             x = d * (q - 16), bit 4 of q_j in qh bit j
//   Q5_1  24 B / 32:  half d; half m; uint8 qh[4]; uint8 qs[16]     x = d * q + m
//   Q5_K 176 B / 256: Q4_K's layout plus uint8 qh[32] (the fifth bits) before qs
//   Q3_K 110 B / 256: uint8 hmask[32]; uint8 qs[64]; uint8 scales[12]; half d
//         16 sub-blocks of 16 with 6-bit signed scales; x = d*(sc_j - 32)*(q - 4), q's third bit in hmask
//   Q2_K  84 B / 256: uint8 scales[16]; uint8 qs[64]; half d; half dmin
//         16 sub-blocks of 16 with 4-bit scale and min; x = d*sc_j*q - dmin*m_j
//   IQ4_NL 18 B / 32: half d; uint8 qs[16]        x = d * kvalues_iq4nl[q] (a fixed non-uniform grid)
//   IQ4_XS 136 B / 256: half d; uint16 scales_h; uint8 scales_l[4]; uint8 qs[128]
//         8 blocks of 32 with 6-bit scales ls_j; x = d*(ls_j - 32)*kvalues_iq4nl[q]
//   F32 / F16 / BF16: one value per element (formats/float_convert.hpp conversions, round to nearest even)
#pragma once

#include <bit>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "mixprec/error.hpp"
#include "mixprec/formats/ggml_types.hpp"

namespace mixprec {

static_assert(std::endian::native == std::endian::little, "ggml blocks are little-endian; so is this code");

// ggml's tensor types (the values are GGUF's on-disk codes).
enum class ggml_type : std::uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q2_k = 10,
  q3_k = 11,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  iq4_nl = 20,
  iq4_xs = 23,
  bf16 = 30,
};

// llama.cpp's name of t ("q4_K" keeps its capital K), from formats/ggml_types.hpp, or "unknown".
[[nodiscard]] constexpr std::string_view to_string(ggml_type t) noexcept {
  const ggml::type_info* info = ggml::find_type(static_cast<std::uint32_t>(t));
  return info ? info->name : "unknown";
}

// Every type mixprec implements, in code order.
inline constexpr ggml_type all_ggml_types[] = {ggml_type::f32,  ggml_type::f16,  ggml_type::q4_0, ggml_type::q4_1,
                                               ggml_type::q5_0, ggml_type::q5_1, ggml_type::q8_0, ggml_type::q2_k,
                                               ggml_type::q3_k, ggml_type::q4_k,
                                               ggml_type::q5_k, ggml_type::q6_k, ggml_type::iq4_nl, ggml_type::iq4_xs,
                                               ggml_type::bf16};

// True when `code` (e.g. from a GGUF tensor info) is a type mixprec implements: the table's flag
// (formats/ggml_types.hpp), which marks exactly the types of all_ggml_types.
[[nodiscard]] constexpr bool is_supported_ggml_type(std::uint32_t code) noexcept {
  // The entry by index, not through find_type's pointer: with -fsanitize=undefined GCC 12 cannot
  // evaluate a test of that pointer in a constant expression (the static_assert below).
  return code < ggml::type_count && ggml::type_table[code].implemented();
}
static_assert([] {
  std::size_t flagged = 0;
  for (const ggml::type_info& t : ggml::type_table) flagged += t.implemented() ? 1 : 0;
  if (flagged != sizeof all_ggml_types / sizeof all_ggml_types[0]) return false;
  for (ggml_type t : all_ggml_types)
    if (!is_supported_ggml_type(static_cast<std::uint32_t>(t))) return false;
  return true;
}(), "formats/ggml_types.hpp's implemented flags and all_ggml_types list the same types");

// The type named `name` ("q4_0", "Q4_K", "bf16"...), case-insensitive; throws errc::invalid_argument.
[[nodiscard]] inline ggml_type parse_ggml_type(std::string_view name) {
  auto lower = [](std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  };
  const std::string want = lower(name);
  std::string known;
  for (ggml_type t : all_ggml_types) {
    if (lower(to_string(t)) == want) return t;
    known += (known.empty() ? "" : ", ") + std::string(to_string(t));
  }
  throw error(errc::invalid_argument, "unknown ggml type '" + std::string(name) + "' (expected one of " + known + ")");
}

namespace ggml {

inline constexpr int qk4_0 = 32;
inline constexpr int qk4_1 = 32;
inline constexpr int qk5_0 = 32;
inline constexpr int qk5_1 = 32;
inline constexpr int qk8_0 = 32;
inline constexpr int qk_k = 256;           // K-quant super-block
inline constexpr int k_scale_size = 12;    // Q4_K packed 6-bit scales and mins
inline constexpr float group_max_eps = 1e-15f;  // ggml's GROUP_MAX_EPS: below this a group is all zero

// The blocks, as ggml-common.h lays them out (std::uint16_t holds FP16 bits).
struct block_q8_0 {
  std::uint16_t d;
  std::int8_t qs[qk8_0];
};
struct block_q4_0 {
  std::uint16_t d;
  std::uint8_t qs[qk4_0 / 2];
};
struct block_q4_1 {
  std::uint16_t d;
  std::uint16_t m;
  std::uint8_t qs[qk4_1 / 2];
};
struct block_q5_0 {
  std::uint16_t d;
  std::uint8_t qh[4];  // the fifth bit of element j at bit j (little-endian uint32)
  std::uint8_t qs[qk5_0 / 2];
};
struct block_q5_1 {
  std::uint16_t d;
  std::uint16_t m;
  std::uint8_t qh[4];
  std::uint8_t qs[qk5_1 / 2];
};
struct block_q4_k {
  std::uint16_t d;
  std::uint16_t dmin;
  std::uint8_t scales[k_scale_size];
  std::uint8_t qs[qk_k / 2];
};
struct block_q2_k {
  std::uint8_t scales[qk_k / 16];  // 4-bit scale (low) and min (high) of each sub-block of 16
  std::uint8_t qs[qk_k / 4];       // 2-bit codes
  std::uint16_t d;
  std::uint16_t dmin;
};
struct block_q3_k {
  std::uint8_t hmask[qk_k / 8];  // the third (high) bit of each code
  std::uint8_t qs[qk_k / 4];     // the low 2 bits
  std::uint8_t scales[12];       // 16 six-bit sub-block scales
  std::uint16_t d;
};
struct block_iq4_nl {
  std::uint16_t d;
  std::uint8_t qs[32 / 2];  // indices into kvalues_iq4nl, packed like Q4_0
};
struct block_iq4_xs {
  std::uint16_t d;
  std::uint16_t scales_h;           // high 2 bits of the 8 six-bit block scales
  std::uint8_t scales_l[qk_k / 64];  // low 4 bits, two per byte
  std::uint8_t qs[qk_k / 2];
};
struct block_q5_k {
  std::uint16_t d;
  std::uint16_t dmin;
  std::uint8_t scales[k_scale_size];
  std::uint8_t qh[qk_k / 8];  // the fifth bits: bit 2i / 2i+1 of qh[l] for element l / l + 32 of 64-group i
  std::uint8_t qs[qk_k / 2];
};
struct block_q6_k {
  std::uint8_t ql[qk_k / 2];
  std::uint8_t qh[qk_k / 4];
  std::int8_t scales[qk_k / 16];
  std::uint16_t d;
};
// ggml's activation blocks (never stored in GGUF; the formats a product quantizes its input to,
// kernels/ref/ggml_dot_ref.hpp): Q8_1 also keeps s = d * sum(qs) (FP16), Q8_K an FP32 scale and
// the 16 sums of 16 codes the K-quants' minimums take.
struct block_q8_1 {
  std::uint16_t d;
  std::uint16_t s;
  std::int8_t qs[32];
};
struct block_q8_k {
  float d;
  std::int8_t qs[qk_k];
  std::int16_t bsums[qk_k / 16];
};
// The blocks' sizes are the table's (formats/ggml_types.hpp).
static_assert(sizeof(block_q8_0) == find_type(8)->type_size && sizeof(block_q4_0) == find_type(2)->type_size &&
              sizeof(block_q4_1) == find_type(3)->type_size && sizeof(block_q5_0) == find_type(6)->type_size &&
              sizeof(block_q5_1) == find_type(7)->type_size && sizeof(block_q2_k) == find_type(10)->type_size &&
              sizeof(block_q3_k) == find_type(11)->type_size && sizeof(block_q4_k) == find_type(12)->type_size &&
              sizeof(block_q5_k) == find_type(13)->type_size && sizeof(block_q6_k) == find_type(14)->type_size &&
              sizeof(block_iq4_nl) == find_type(20)->type_size && sizeof(block_iq4_xs) == find_type(23)->type_size &&
              sizeof(block_q8_1) == find_type(9)->type_size && sizeof(block_q8_k) == find_type(15)->type_size);
static_assert(sizeof(block_q8_0) == 34);
static_assert(sizeof(block_q4_0) == 18);
static_assert(sizeof(block_q4_1) == 20);
static_assert(sizeof(block_q5_0) == 22);
static_assert(sizeof(block_q5_1) == 24);
static_assert(sizeof(block_q4_k) == 144);
static_assert(sizeof(block_q5_k) == 176);
static_assert(sizeof(block_q2_k) == 84);
static_assert(sizeof(block_q3_k) == 110);
static_assert(sizeof(block_iq4_nl) == 18);
static_assert(sizeof(block_iq4_xs) == 136);
static_assert(sizeof(block_q6_k) == 210);
static_assert(offsetof(block_q6_k, d) == 208);

struct type_traits {
  int block_size;       // weights per block
  int type_size;        // bytes per block
  bool takes_weights;   // quantize_row uses importance weights (float types ignore them)
};

// Block size, block bytes (formats/ggml_types.hpp) and weight support of t; throws errc::unsupported
// for a code mixprec does not implement.
[[nodiscard]] inline type_traits traits(ggml_type t) {
  const type_info* info = find_type(static_cast<std::uint32_t>(t));
  if (!info || !is_supported_ggml_type(static_cast<std::uint32_t>(t))) {
    std::string known;
    for (ggml_type k : all_ggml_types) known += (known.empty() ? "" : ", ") + std::string(to_string(k));
    throw error(errc::unsupported, "ggml type code " + std::to_string(static_cast<std::uint32_t>(t)) +
                                       (info ? " (" + std::string(info->name) + ")" : std::string()) + " is not implemented (supported: " +
                                       known + ")");
  }
  return {static_cast<int>(info->block_size), static_cast<int>(info->type_size), info->weighted};
}

[[nodiscard]] inline int block_size(ggml_type t) { return traits(t).block_size; }
[[nodiscard]] inline int type_size(ggml_type t) { return traits(t).type_size; }

// Bytes of a row of n elements of type t; throws errc::invalid_argument unless n is a positive
// multiple of the block size.
[[nodiscard]] inline std::size_t row_bytes(ggml_type t, std::int64_t n) {
  const type_traits tr = traits(t);
  if (n <= 0 || n % tr.block_size != 0)
    throw error(errc::invalid_argument, std::string(to_string(t)) + " needs rows whose length is a positive multiple of " +
                                            std::to_string(tr.block_size) + ", got " + std::to_string(n));
  return static_cast<std::size_t>(n / tr.block_size) * static_cast<std::size_t>(tr.type_size);
}

// Bits per weight of type t (block bytes * 8 / block size): 4.5 for q4_0, 6.5625 for q6_K...
[[nodiscard]] inline double bits_per_weight(ggml_type t) {
  const type_traits tr = traits(t);
  return 8.0 * tr.type_size / tr.block_size;
}

}  // namespace ggml
}  // namespace mixprec
