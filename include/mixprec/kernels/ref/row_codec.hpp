// The row codec: row r of a quantized_tensor back to FP32, for every format, written once. Its
// arithmetic comes from a kernel set K (kernels/kernel_set.hpp: reference_kernels, or a target's SIMD
// kernels<A>, which give the same bits), so dequantize(), ref::dequantize_row and the GEMV row-decode
// path are one function:
//   int2 / int4 / int8   unpack (K::unpack<Bits>), then y = scale * (u - zero point) per group (K::dequantize_codes)
//   fp8_e4m3             y = scale * fp8 value per group (ref::from_fp8)
//   fp16 / bf16          K::from_fp16 / K::from_bf16 (exact)
//   fp32                 the stored floats
//   ggml_block           ggml::dequantize_row (kernels/ggml_row.hpp: ggml's dequantize_row_*)
// The one switch from the run-time format to the code is visit_format (formats/formats.hpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>

#include "mixprec/formats/formats.hpp"
#include "mixprec/kernels/ggml_row.hpp"
#include "mixprec/kernels/ref/quantize_ref.hpp"
#include "mixprec/quantize/quantized_tensor.hpp"

namespace mixprec {

// Writes the w.cols() FP32 values of row r of w to out with kernel set K; `codes` is scratch of at
// least w.cols() bytes (integer formats unpack into it).
template <class K>
void decode_row(const quantized_tensor& w, index_t r, float* out, std::uint8_t* codes) {
  const quant_spec& s = w.spec();
  const index_t cols = w.cols();
  const std::uint8_t* p = w.row_codes(r);
  visit_format(s.format, [&]<class F>(F) {
    if constexpr (F::id == format_id::ggml_block) {
      ggml::dequantize_row(s.ggml, std::as_bytes(std::span<const std::uint8_t>(p, w.row_bytes())),
                           std::span<float>(out, static_cast<std::size_t>(cols)));
    } else if constexpr (F::id == format_id::fp32) {
      std::memcpy(out, p, static_cast<std::size_t>(cols) * sizeof(float));
    } else if constexpr (F::id == format_id::fp16 || F::id == format_id::bf16) {
      const auto* hp = reinterpret_cast<const std::uint16_t*>(p);  // rows of 2-byte values start 2-aligned
      if constexpr (F::id == format_id::fp16)
        K::from_fp16(hp, cols, out);
      else
        K::from_bf16(hp, cols, out);
    } else {
      const std::uint8_t* u = p;
      if constexpr (F::bits == 2 || F::bits == 4) {
        K::template unpack<F::bits>(p, cols, codes);
        u = codes;
      }
      const index_t seg = w.group_length();
      for (index_t g = 0; g < w.groups_per_row(); ++g) {
        const index_t c0 = g * seg, n = std::min(cols, c0 + seg) - c0;
        if constexpr (F::id == format_id::fp8_e4m3)
          ref::from_fp8(u + c0, n, w.scale(r, g), out + c0);
        else
          K::dequantize_codes(u + c0, n, w.scale(r, g), w.zero_point(r, g), out + c0);
      }
    }
  });
}

}  // namespace mixprec
