// Tuning a matrix inside llama.cpp's block types: the same ggml type, the same bytes per row, other
// codes, chosen for what the matrix's output loses rather than for its weights alone.
//
// The objective is GPTQ's layer-wise output error (Frantar et al., "GPTQ: Accurate Post-Training
// Quantization for Generative Pre-trained Transformers", ICLR 2023, eq. 1):
//   E(Q) = |(W - Q(W)) X^T|_F^2 = sum_r d_r G d_r^T,   d_r = Q(W)_r - W_r,   G = X^T X
// with X the matrix's inputs on calibration streams (sensitivity/input_gram.hpp). GPTQ minimises it
// column by column: each column is rounded to the nearest value the format holds, and its rounding
// error, scaled by the Cholesky factor U of G^-1 (G^-1 = U^T U), is moved onto the columns not yet
// rounded (algorithm 1, with the lazy batch update per block). Here the "values the format holds" are
// a ggml block's: when the columns reach a block, ggml's own search (with the imatrix, as llama-quantize
// runs it) picks that block's scales from the weights as updated so far; the block's codes are then
// chosen column by column with the error moved on. So the file keeps the block's layout and scales as
// ggml would write them for those weights, and llama.cpp decodes it unchanged.
//
//   ggml::tunable(t)                 the types whose codes can be set: q4_0 q4_1 q5_0 q5_1 q8_0 q4_K q5_K q6_K
//   ggml::code_range(t) / get_code / set_code   one weight's integer code inside a block's bytes
//   ggml::output_error(t, bytes, W, G)          E of stored bytes, in double
//   ggml::gptq_quantize(t, W, G, importance, o) the rows x row_bytes(t, cols) bytes
//   ggml::tune_matrix(t, W, untuned, G_cal, G_held, importance, o)   GPTQ's bytes, kept only when their
//                                    error on held-out inputs G_held is below the untuned bytes'
//
// Not tuned (yet): q2_K, q3_K and the IQ types (their codes are not set here); an embedding lookup (its
// inputs are one-hot: G is diagonal and GPTQ moves no error).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include "mixprec/detail/parallel.hpp"
#include "mixprec/formats/float_convert.hpp"
#include "mixprec/error.hpp"
#include "mixprec/formats/ggml_blocks.hpp"
#include "mixprec/kernels/ggml_row.hpp"
#include "mixprec/kernels/ref/ggml_ref.hpp"
#include "mixprec/types.hpp"

namespace mixprec::ggml {

// ---- one weight's code inside a block ----

[[nodiscard]] constexpr bool tunable(ggml_type t) noexcept {
  switch (t) {
    case ggml_type::q4_0:
    case ggml_type::q4_1:
    case ggml_type::q5_0:
    case ggml_type::q5_1:
    case ggml_type::q8_0:
    case ggml_type::q4_k:
    case ggml_type::q5_k:
    case ggml_type::q6_k: return true;
    default: return false;
  }
}

struct codes {
  int lo, hi;  // the codes a weight may take, as stored (q4_0: 0..15, decoded (q - 8) d; q8_0: -127..127)
};

// The stored code range of a tunable type (errc::unsupported for another). q8_0 leaves out -128, which
// ggml's quantizer never writes.
[[nodiscard]] inline codes code_range(ggml_type t) {
  switch (t) {
    case ggml_type::q4_0:
    case ggml_type::q4_1:
    case ggml_type::q4_k: return {0, 15};
    case ggml_type::q5_0:
    case ggml_type::q5_1:
    case ggml_type::q5_k: return {0, 31};
    case ggml_type::q6_k: return {0, 63};
    case ggml_type::q8_0: return {-127, 127};
    default: throw error(errc::unsupported, std::string("ggml tuning: the codes of ") + std::string(to_string(t)) + " are not settable");
  }
}

namespace detail {

// Where weight e of a block keeps its code: the low bits (byte, shift, width) and, for 5- and 6-bit
// codes, the high bits (byte, shift, width), as ggml-common.h lays the blocks out (see the decoders in
// kernels/ref/ggml_ref.hpp).
struct code_place {
  std::size_t lo_byte;
  int lo_shift, lo_bits;
  std::size_t hi_byte = 0;
  int hi_shift = 0, hi_bits = 0;
};

[[nodiscard]] inline code_place place_of(ggml_type t, int e) {
  const auto u = [](auto v) { return static_cast<std::size_t>(v); };
  switch (t) {
    case ggml_type::q4_0: return {offsetof(block_q4_0, qs) + u(e % 16), e < 16 ? 0 : 4, 4};
    case ggml_type::q4_1: return {offsetof(block_q4_1, qs) + u(e % 16), e < 16 ? 0 : 4, 4};
    case ggml_type::q5_0: return {offsetof(block_q5_0, qs) + u(e % 16), e < 16 ? 0 : 4, 4, offsetof(block_q5_0, qh) + u(e / 8), e % 8, 1};
    case ggml_type::q5_1: return {offsetof(block_q5_1, qs) + u(e % 16), e < 16 ? 0 : 4, 4, offsetof(block_q5_1, qh) + u(e / 8), e % 8, 1};
    case ggml_type::q8_0: return {offsetof(block_q8_0, qs) + u(e), 0, 8};
    case ggml_type::q4_k: {
      const int g = e / 64, r = e % 64;
      return {offsetof(block_q4_k, qs) + u(32 * g + r % 32), r < 32 ? 0 : 4, 4};
    }
    case ggml_type::q5_k: {
      const int g = e / 64, r = e % 64;
      return {offsetof(block_q5_k, qs) + u(32 * g + r % 32), r < 32 ? 0 : 4, 4, offsetof(block_q5_k, qh) + u(r % 32), 2 * g + (r < 32 ? 0 : 1), 1};
    }
    case ggml_type::q6_k: {
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      return {offsetof(block_q6_k, ql) + u(64 * h + l + 32 * (k & 1)), k < 2 ? 0 : 4, 4, offsetof(block_q6_k, qh) + u(32 * h + l), 2 * k, 2};
    }
    default: (void)code_range(t); return {0, 0, 0};  // code_range throws
  }
}

inline int read_bits(const std::byte* b, std::size_t at, int shift, int bits) noexcept {
  return (std::to_integer<int>(b[at]) >> shift) & ((1 << bits) - 1);
}
inline void write_bits(std::byte* b, std::size_t at, int shift, int bits, int v) noexcept {
  const int mask = ((1 << bits) - 1) << shift;
  b[at] = static_cast<std::byte>((std::to_integer<int>(b[at]) & ~mask) | ((v << shift) & mask));
}

}  // namespace detail

// The code of weight e (0 <= e < block_size(t)) of the block at `block` (type_size(t) bytes).
[[nodiscard]] inline int get_code(ggml_type t, const std::byte* block, int e) {
  const detail::code_place p = detail::place_of(t, e);
  if (t == ggml_type::q8_0) return static_cast<int>(static_cast<std::int8_t>(block[p.lo_byte]));
  int c = detail::read_bits(block, p.lo_byte, p.lo_shift, p.lo_bits);
  if (p.hi_bits) c |= detail::read_bits(block, p.hi_byte, p.hi_shift, p.hi_bits) << p.lo_bits;
  return c;
}

// Sets the code of weight e to c (code_range(t), errc::invalid_argument outside it); nothing else of
// the block changes.
inline void set_code(ggml_type t, std::byte* block, int e, int c) {
  const codes r = code_range(t);
  if (c < r.lo || c > r.hi)
    throw error(errc::invalid_argument, "ggml tuning: code " + std::to_string(c) + " is outside " + std::string(to_string(t)) + "'s " +
                                            std::to_string(r.lo) + ".." + std::to_string(r.hi));
  const detail::code_place p = detail::place_of(t, e);
  if (t == ggml_type::q8_0) {
    block[p.lo_byte] = static_cast<std::byte>(static_cast<std::int8_t>(c));
    return;
  }
  detail::write_bits(block, p.lo_byte, p.lo_shift, p.lo_bits, c);
  if (p.hi_bits) detail::write_bits(block, p.hi_byte, p.hi_shift, p.hi_bits, c >> p.lo_bits);
}

// ---- the objective ----

// E = sum_r d_r G d_r^T, d = decode(bytes) - W (rows x cols; G cols x cols): the output error summed
// over the positions G was collected on. Errors: shape_mismatch for sizes that disagree.
[[nodiscard]] inline double output_error(ggml_type t, std::span<const std::byte> bytes, const row_matrix_ref& w, const Eigen::MatrixXd& gram) {
  if (gram.rows() != w.cols() || gram.cols() != w.cols())
    throw error(errc::shape_mismatch, "ggml tuning: a Gram matrix of " + std::to_string(gram.rows()) + "x" + std::to_string(gram.cols()) +
                                          " for rows of " + std::to_string(w.cols()));
  const std::size_t rb = row_bytes(t, w.cols());
  if (bytes.size() != rb * static_cast<std::size_t>(w.rows()))
    throw error(errc::shape_mismatch, "ggml tuning: " + std::to_string(bytes.size()) + " bytes for " + std::to_string(w.rows()) + " rows of " +
                                          std::to_string(rb));
  std::vector<float> row(static_cast<std::size_t>(w.cols()));
  Eigen::MatrixXd d(w.rows(), w.cols());
  for (index_t r = 0; r < w.rows(); ++r) {
    dequantize_row(t, bytes.subspan(static_cast<std::size_t>(r) * rb, rb), row);
    for (index_t c = 0; c < w.cols(); ++c) d(r, c) = static_cast<double>(row[static_cast<std::size_t>(c)]) - static_cast<double>(w(r, c));
  }
  return (d * gram).cwiseProduct(d).sum();
}

// ---- GPTQ inside the block types ----

struct gptq_options {
  double damp = 0.01;    // added to G's diagonal: damp x its mean (GPTQ's percdamp), then x10 until G is positive definite
  int rounds = 2;        // scale refits, each followed by a sweep that keeps the refitted scales
  unsigned threads = 1;  // rows split over threads (0: every core); the bytes do not depend on it
};

namespace detail {

// U with G^-1 = U^T U (upper triangular) for G damped as gptq_options says; a column no input ever
// reached (G_jj = 0) gets G_jj = 1 (its weights do not change the output, so any code will do).
// Returns U and sets `damped` to the G it factored.
[[nodiscard]] inline Eigen::MatrixXd inverse_cholesky_upper(Eigen::MatrixXd g, double damp, Eigen::MatrixXd& damped) {
  const index_t n = g.rows();
  for (index_t j = 0; j < n; ++j)
    if (!(g(j, j) > 0.0)) g.row(j).setZero(), g.col(j).setZero(), g(j, j) = 1.0;
  const double mean_diag = g.diagonal().mean();
  for (int attempt = 0; attempt < 8; ++attempt, damp *= 10.0) {
    damped = g;
    damped.diagonal().array() += damp * mean_diag;
    const Eigen::LLT<Eigen::MatrixXd> llt(damped);
    if (llt.info() != Eigen::Success) continue;
    const Eigen::LLT<Eigen::MatrixXd> chol(llt.solve(Eigen::MatrixXd::Identity(n, n)));
    if (chol.info() != Eigen::Success) continue;
    return chol.matrixU();
  }
  throw error(errc::not_representable, "ggml tuning: the Gram matrix stays singular after damping");
}

}  // namespace detail

namespace detail {

using row_matrix_d = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// The FP16 fields of a block that scale its codes (byte offsets): d (and m / dmin). A block's values
// are linear in them for fixed codes (and fixed 6-bit sub-scales): q4_0 d (q - 8), q4_1 d q + m,
// q4_K d sc q - dmin m, q6_K d sc (q - 32)...
[[nodiscard]] inline std::vector<std::size_t> scale_fields(ggml_type t) {
  switch (t) {
    case ggml_type::q4_0: return {offsetof(block_q4_0, d)};
    case ggml_type::q5_0: return {offsetof(block_q5_0, d)};
    case ggml_type::q8_0: return {offsetof(block_q8_0, d)};
    case ggml_type::q6_k: return {offsetof(block_q6_k, d)};
    case ggml_type::q4_1: return {offsetof(block_q4_1, d), offsetof(block_q4_1, m)};
    case ggml_type::q5_1: return {offsetof(block_q5_1, d), offsetof(block_q5_1, m)};
    case ggml_type::q4_k: return {offsetof(block_q4_k, d), offsetof(block_q4_k, dmin)};
    case ggml_type::q5_k: return {offsetof(block_q5_k, d), offsetof(block_q5_k, dmin)};
    default: (void)code_range(t); return {};
  }
}

inline void write_fp16(std::byte* at, float v) noexcept {
  const std::uint16_t h = fp32_to_fp16(v);
  std::memcpy(at, &h, 2);
}

// One GPTQ sweep (the banner) over the columns; u: the upper Cholesky factor of G^-1. With `fixed`
// (bytes of the same shape), each block keeps that block's scales and sub-scales and only its codes
// are chosen; without, ggml's search picks the block's scales from the weights as updated so far.
[[nodiscard]] inline std::vector<std::byte> gptq_sweep(ggml_type t, const row_matrix_ref& w, const Eigen::MatrixXd& u, const float* importance,
                                                       const std::vector<std::byte>* fixed, unsigned threads) {
  const index_t n = w.cols();
  const std::size_t rb = row_bytes(t, n);
  const int bs = block_size(t);
  const auto ts = static_cast<std::size_t>(type_size(t));
  const codes range = code_range(t);
  const bool row_sigma = !fixed && importance && traits(t).takes_weights &&
                         (t == ggml_type::q4_0 || t == ggml_type::q4_1 || t == ggml_type::q5_0 || t == ggml_type::q5_1);
  row_matrix_d wk = w.cast<double>();
  std::vector<float> sigma2(static_cast<std::size_t>(w.rows()), 0.0f);
  if (row_sigma)
    for (index_t r = 0; r < w.rows(); ++r) sigma2[static_cast<std::size_t>(r)] = ggml::detail::row_sigma2(w.row(r).data(), n);
  std::vector<std::byte> out = fixed ? *fixed : std::vector<std::byte>(rb * static_cast<std::size_t>(w.rows()));
  row_matrix_d err(w.rows(), bs);

  for (index_t s = 0; s < n; s += bs) {
    const std::size_t block = static_cast<std::size_t>(s / bs);
    mixprec::detail::for_row_chunks(w.rows(), threads, [&](index_t r0, index_t r1) {
      std::vector<float> x(static_cast<std::size_t>(bs)), v0(x.size()), v1(x.size());
      std::vector<std::byte> probe(ts);
      for (index_t r = r0; r < r1; ++r) {
        std::byte* b = out.data() + static_cast<std::size_t>(r) * rb + block * ts;
        if (!fixed) {
          for (int j = 0; j < bs; ++j) x[static_cast<std::size_t>(j)] = static_cast<float>(wk(r, s + j));
          const float* qw = importance && traits(t).takes_weights ? importance + s : nullptr;
          if (row_sigma) {
            const float s2 = sigma2[static_cast<std::size_t>(r)];
            const auto weighted = [&](auto blk, auto search) {
              search(x.data(), qw, s2, blk);
              std::memcpy(b, &blk, ts);
            };
            switch (t) {
              case ggml_type::q4_0: weighted(block_q4_0{}, ref::quantize_q4_0_weighted); break;
              case ggml_type::q4_1: weighted(block_q4_1{}, ref::quantize_q4_1_weighted); break;
              case ggml_type::q5_0: weighted(block_q5_0{}, ref::quantize_q5_0_weighted); break;
              default: weighted(block_q5_1{}, ref::quantize_q5_1_weighted); break;
            }
          } else {
            quantize_row(t, x, std::span<std::byte>(b, ts),
                         qw ? std::optional<std::span<const float>>(std::span<const float>(qw, static_cast<std::size_t>(bs))) : std::nullopt);
          }
        }
        // The block's values are affine in each weight's code: v0 at code lo, v0 + a (c - lo) at c.
        std::memcpy(probe.data(), b, ts);
        for (int j = 0; j < bs; ++j) set_code(t, probe.data(), j, range.lo);
        dequantize_row(t, probe, v0);
        for (int j = 0; j < bs; ++j) set_code(t, probe.data(), j, range.lo + 1);
        dequantize_row(t, probe, v1);
        for (int j = 0; j < bs; ++j) {
          const index_t c = s + j;
          const auto k = static_cast<std::size_t>(j);
          const double a = static_cast<double>(v1[k]) - static_cast<double>(v0[k]);
          if (!std::isfinite(a) || !std::isfinite(v0[k]))
            throw error(errc::not_representable, "ggml tuning: row " + std::to_string(r) + ", block " + std::to_string(block) + ": " +
                                                     std::string(to_string(t)) + "'s scales cannot hold these weights");
          const double wv = wk(r, c);
          int code = get_code(t, b, j);
          if (a != 0.0) {
            const double ideal = std::nearbyint((wv - static_cast<double>(v0[k])) / a);
            code = static_cast<int>(std::clamp(ideal, 0.0, static_cast<double>(range.hi - range.lo))) + range.lo;
            set_code(t, b, j, code);
          }
          const double q = static_cast<double>(v0[k]) + a * static_cast<double>(code - range.lo);
          const double e = (wv - q) / u(c, c);
          err(r, j) = e;
          for (index_t c2 = c + 1; c2 < s + bs; ++c2) wk(r, c2) -= e * u(c, c2);
        }
      }
    });
    const index_t rest = n - s - bs;
    if (rest > 0) wk.rightCols(rest).noalias() -= err * u.block(s, s + bs, bs, rest);
  }
  return out;
}

// The row objective d G d^T of row r of `bytes` (d = decoded - w).
[[nodiscard]] inline double row_error(ggml_type t, std::span<const std::byte> row, const row_matrix_ref& w, index_t r, const Eigen::MatrixXd& g,
                                      std::vector<float>& buf) {
  dequantize_row(t, row, buf);
  const Eigen::VectorXd d = Eigen::Map<const Eigen::VectorXf>(buf.data(), w.cols()).cast<double>() - w.row(r).transpose().cast<double>();
  return d.dot(g * d);
}

// Refits each row's FP16 scales (scale_fields) for its codes as they are: the least-squares solution
// of min_theta (B theta - w) G (B theta - w)^T, B the values per unit scale, rounded to FP16; a row
// keeps its old scales unless the refit lowers its error (exact, through ggml's decoder). G should be
// damped as the sweep's (an undamped G of fewer positions than columns overfits the calibration).
// Cost per row: cols^2 x (scales per block) multiply-adds and a solve of (scales per row)^3.
inline void refit_scales(ggml_type t, const row_matrix_ref& w, const Eigen::MatrixXd& g, std::vector<std::byte>& bytes, unsigned threads) {
  const index_t n = w.cols();
  const std::size_t rb = row_bytes(t, n);
  const int bs = block_size(t);
  const auto ts = static_cast<std::size_t>(type_size(t));
  const std::vector<std::size_t> fields = scale_fields(t);
  const auto k = static_cast<index_t>(fields.size());
  const index_t nb = n / bs, p = nb * k;
  mixprec::detail::for_row_chunks(w.rows(), threads, [&](index_t r0, index_t r1) {
    std::vector<float> buf(static_cast<std::size_t>(n)), unit(static_cast<std::size_t>(bs));
    std::vector<std::byte> probe(ts), trial(rb);
    Eigen::MatrixXd basis(bs, p), gb(n, p), normal(p, p);  // basis column c: block c / k's values per unit of field c % k
    Eigen::VectorXd rhs(p);
    for (index_t r = r0; r < r1; ++r) {
      const std::span<std::byte> row(bytes.data() + static_cast<std::size_t>(r) * rb, rb);
      for (index_t b = 0; b < nb; ++b)
        for (index_t f = 0; f < k; ++f) {
          std::memcpy(probe.data(), row.data() + static_cast<std::size_t>(b) * ts, ts);
          for (index_t o = 0; o < k; ++o) write_fp16(probe.data() + fields[static_cast<std::size_t>(o)], o == f ? 1.0f : 0.0f);
          dequantize_row(t, probe, unit);
          for (int j = 0; j < bs; ++j) basis(j, b * k + f) = static_cast<double>(unit[static_cast<std::size_t>(j)]);
        }
      const Eigen::VectorXd wr = w.row(r).transpose().cast<double>();
      for (index_t c = 0; c < p; ++c) gb.col(c).noalias() = g.middleCols((c / k) * bs, bs) * basis.col(c);
      for (index_t c = 0; c < p; ++c) {
        normal.row(c).noalias() = basis.col(c).transpose() * gb.middleRows((c / k) * bs, bs);
        rhs(c) = gb.col(c).dot(wr);
      }
      const Eigen::LDLT<Eigen::MatrixXd> ldlt(normal);
      if (ldlt.info() != Eigen::Success) continue;
      const Eigen::VectorXd theta = ldlt.solve(rhs);
      if (!theta.allFinite() || theta.cwiseAbs().maxCoeff() >= 65504.0) continue;
      std::copy(row.begin(), row.end(), trial.begin());
      for (index_t b = 0; b < nb; ++b)
        for (index_t f = 0; f < k; ++f)
          write_fp16(trial.data() + static_cast<std::size_t>(b) * ts + fields[static_cast<std::size_t>(f)], static_cast<float>(theta(b * k + f)));
      if (row_error(t, trial, w, r, g, buf) < row_error(t, row, w, r, g, buf)) std::copy(trial.begin(), trial.end(), row.begin());
    }
  });
}

}  // namespace detail

// The rows x row_bytes(t, cols) bytes of W in type t, chosen against G (see the banner): a GPTQ sweep
// with ggml's block search, then `rounds` times: the FP16 scales refitted by least squares for the
// codes against the damped G (detail::refit_scales), and a GPTQ sweep that keeps those scales; the candidate of least
// output error on G is returned.
// w: rows x cols (ggml's ne1 x ne0); gram: cols x cols, symmetric, finite; importance: null or cols
// values, the imatrix entry ggml's block searches take (as ggml::quantize_into). Errors: unsupported
// for a type that is not tunable, invalid_argument for cols that the block does not divide,
// shape_mismatch for a Gram of other size, non_finite for NaN/Inf in W or G, empty_input for no rows.
// Cost: per sweep rows x cols^2 multiply-adds (the lazy updates) plus ggml's search; per refit
// rows x cols^2 x (scales per block) plus a solve of (scales per row)^3 per row. Memory: W in double
// and about six cols x cols doubles while G^-1 is factored.
[[nodiscard]] inline std::vector<std::byte> gptq_quantize(ggml_type t, const row_matrix_ref& w, const Eigen::MatrixXd& gram,
                                                          const float* importance = nullptr, const gptq_options& o = {}) {
  if (!tunable(t)) (void)code_range(t);
  if (w.size() == 0) throw error(errc::empty_input, "ggml tuning: empty matrix");
  const index_t n = w.cols();
  (void)row_bytes(t, n);
  if (gram.rows() != n || gram.cols() != n)
    throw error(errc::shape_mismatch, "ggml tuning: a Gram matrix of " + std::to_string(gram.rows()) + "x" + std::to_string(gram.cols()) +
                                          " for rows of " + std::to_string(n));
  if (!gram.allFinite()) throw error(errc::non_finite, "ggml tuning: the Gram matrix is not finite");
  if (!w.allFinite()) throw error(errc::non_finite, "ggml tuning: the weights are not finite");
  if (importance && !ggml::detail::weights_valid(importance, static_cast<std::size_t>(n)))
    throw error(errc::invalid_argument, "ggml tuning: an importance weight is negative or not finite");
  if (!(o.damp > 0.0) || !std::isfinite(o.damp)) throw error(errc::invalid_argument, "ggml tuning: damp must be positive");
  if (o.rounds < 0 || o.rounds > 16) throw error(errc::invalid_argument, "ggml tuning: rounds must be in [0, 16]");

  Eigen::MatrixXd damped;
  const Eigen::MatrixXd u = detail::inverse_cholesky_upper(gram, o.damp, damped);
  std::vector<std::byte> best = detail::gptq_sweep(t, w, u, importance, nullptr, o.threads);
  double best_error = output_error(t, best, w, gram);
  if (!std::isfinite(best_error)) throw error(errc::not_representable, "ggml tuning: the output error is not finite");
  std::vector<std::byte> current = best;
  for (int round = 0; round < o.rounds; ++round) {
    detail::refit_scales(t, w, damped, current, o.threads);
    if (const double e = output_error(t, current, w, gram); e < best_error) best_error = e, best = current;
    current = detail::gptq_sweep(t, w, u, importance, &current, o.threads);
    if (const double e = output_error(t, current, w, gram); e < best_error) best_error = e, best = current;
  }
  return best;
}

// One matrix tuned, and what decided it.
struct tuned_matrix {
  std::vector<std::byte> bytes;  // the kept bytes: GPTQ's, or the untuned ones
  double calibration_before = 0.0, calibration_after = 0.0;  // output_error on the calibration G
  double heldout_before = 0.0, heldout_after = 0.0;          // and on the held-out G
  bool kept = false;                                          // GPTQ's bytes were kept
};

// GPTQ's bytes for W (gptq_quantize on g_calibration), kept only when their output error on the
// held-out inputs (g_heldout: other streams than the calibration's) is below that of `untuned` (the
// bytes ggml's search writes, rows x row_bytes(t, cols)): never worse than untuned on held-out data.
[[nodiscard]] inline tuned_matrix tune_matrix(ggml_type t, const row_matrix_ref& w, std::vector<std::byte> untuned,
                                              const Eigen::MatrixXd& g_calibration, const Eigen::MatrixXd& g_heldout,
                                              const float* importance = nullptr, const gptq_options& o = {}) {
  tuned_matrix m;
  if (!g_heldout.allFinite()) throw error(errc::non_finite, "ggml tuning: the held-out Gram matrix is not finite");
  if (g_heldout.rows() != w.cols() || g_heldout.cols() != w.cols() || untuned.size() != row_bytes(t, w.cols()) * static_cast<std::size_t>(w.rows()))
    throw error(errc::shape_mismatch, "ggml tuning: the held-out Gram matrix or the untuned bytes do not fit the matrix");
  std::vector<std::byte> tuned = gptq_quantize(t, w, g_calibration, importance, o);
  m.calibration_before = output_error(t, untuned, w, g_calibration);
  m.calibration_after = output_error(t, tuned, w, g_calibration);
  m.heldout_before = output_error(t, untuned, w, g_heldout);
  m.heldout_after = output_error(t, tuned, w, g_heldout);
  m.kept = m.heldout_after < m.heldout_before;
  m.bytes = m.kept ? std::move(tuned) : std::move(untuned);
  return m;
}

}  // namespace mixprec::ggml
