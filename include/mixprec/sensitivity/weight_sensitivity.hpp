// Weight-only sensitivity: for every layer x candidate quantizer, the tensor metrics of Q(W) against W
// (SQNR, MSE, max abs error, cosine) and, when the layer carries calibration statistics, the
// output-aware proxy ||W X - Q(W) X||_F^2 (the GPTQ / imatrix objective; see layer.hpp for the three
// ways to give X). No evaluation of the model is needed and the weights are only read, so the
// (layer, candidate) pairs run on a pool of threads.
//
// llama.cpp's block types (q4_K, ...) are searched with the layer's importance when it carries one
// (layer_statistic::importance: the imatrix vector), as llama-quantize --imatrix does, so the error
// measured is that of the bytes such a file holds.
//
// Each pair is processed in blocks of rows (quantize, dequantize into a cache-sized buffer, accumulate
// the metrics), which gives exactly the values of quantizing the whole matrix at once, because rows
// are quantized independently; per-tensor scales and stochastic rounding (whose random stream follows
// the element index) take the whole matrix in one block.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "mixprec/quantize/quantize.hpp"
#include "mixprec/layer.hpp"
#include "mixprec/sensitivity/metrics.hpp"
#include "mixprec/sensitivity/progress.hpp"

namespace mixprec {

struct weight_score {
  std::string layer;
  quant_spec spec;
  std::size_t bytes = 0;          // exact storage of the quantized layer (codes, scales, zero points)
  double bits_per_weight = 0.0;   // 8 * bytes / (rows * cols)
  double sqnr_db = 0.0;           // of the weight, 10 log10(|W|^2 / |Q(W) - W|^2); +inf if lossless
  double mse = 0.0;               // of the weight
  double max_abs_error = 0.0;     // max |Q(W) - W|
  double cosine = 0.0;            // cosine similarity of Q(W) and W (meaningless if Q(W) overflows)
  double weight_error = 0.0;      // |Q(W) - W|_F^2 (what the HAWQ score multiplies)
  double output_error = std::numeric_limits<double>::quiet_NaN();  // ||(Q(W) - W) X||_F^2; NaN without statistics
};

struct weight_analysis_options {
  unsigned threads = 1;  // workers over (layer, candidate) pairs; 0: one per hardware thread
  progress_callback progress{};
};

namespace detail {

// Scratch memory of one worker, reused from pair to pair.
struct weight_workspace {
  quantized_tensor q;
  std::vector<float> back;
  Eigen::MatrixXd e, eg;
  Eigen::MatrixXd x;  // a layer's activations in double (converted once, reused across blocks and candidates)
  const float* x_source = nullptr;
  std::vector<float> importance;  // a layer's importance in FP32, for ggml's searches
};

// ||E_b X||^2 (the proxy's share of a row block) for E_b = back - w_b with the layer's statistic.
template <class WBlock, class BackBlock>
double block_output_error(const layer& l, const WBlock& w_b, const BackBlock& back_b, weight_workspace& ws) {
  const layer_statistic kind = l.statistic();
  if (kind == layer_statistic::none) return std::numeric_limits<double>::quiet_NaN();
  ws.e = back_b.template cast<double>() - w_b.template cast<double>();
  switch (kind) {
    case layer_statistic::gram:
      ws.eg.noalias() = ws.e * *l.gram;
      return ws.eg.cwiseProduct(ws.e).sum();
    case layer_statistic::activations:
      if (ws.x_source != l.activations || ws.x.rows() != l.cols || ws.x.cols() != l.tokens) {
        ws.x = l.activation_matrix().cast<double>();
        ws.x_source = l.activations;
      }
      ws.eg.noalias() = ws.e * ws.x;
      return ws.eg.squaredNorm();
    case layer_statistic::importance:
      return (ws.e.array().square().rowwise() * l.importance->transpose().array()).sum();
    case layer_statistic::none: break;
  }
  return std::numeric_limits<double>::quiet_NaN();
}

// Rows per block for a pair: the whole matrix when rows are not independent, else about 64K weights
// (W block and its round trip stay in L2), at least 64 rows when a GEMM-based proxy is computed.
inline index_t block_rows(const layer& l, const quant_spec& s) noexcept {
  const bool whole = (needs_scale(s.format) && s.granularity == granularity_id::per_tensor) ||
                     s.rounding == rounding_id::stochastic;
  if (whole) return l.rows;
  index_t b = std::max<index_t>(1, (index_t{1} << 16) / l.cols);
  if (l.statistic() == layer_statistic::gram || l.statistic() == layer_statistic::activations)
    b = std::max<index_t>(b, 64);
  return std::min(b, l.rows);
}

[[noreturn]] inline void throw_non_finite_weight(const layer& l) {
  const auto w = l.weight();
  for (index_t r = 0; r < l.rows; ++r)
    for (index_t c = 0; c < l.cols; ++c)
      if (!std::isfinite(w(r, c)))
        throw error(errc::non_finite, "layer '" + l.name + "': " + (std::isnan(w(r, c)) ? "NaN" : "Inf") +
                                          " weight at row " + std::to_string(r) + ", column " + std::to_string(c));
  throw error(errc::non_finite, "layer '" + l.name + "': non-finite weight");
}

// Scores one (layer, candidate) pair with kernel set K.
template <class K>
weight_score score_pair(const layer& l, const quant_spec& spec, weight_workspace& ws) {
  const auto w = l.weight();
  const index_t block = block_rows(l, spec);
  ws.back.resize(static_cast<std::size_t>(block * l.cols));
  error_stats stats;
  double output = l.statistic() == layer_statistic::none ? std::numeric_limits<double>::quiet_NaN() : 0.0;
  std::span<const float> importance;
  if (spec.format == format_id::ggml_block && l.statistic() == layer_statistic::importance) {
    ws.importance.assign(l.importance->data(), l.importance->data() + l.importance->size());  // exact for imatrix values
    importance = ws.importance;
  }
  for (index_t r0 = 0; r0 < l.rows; r0 += block) {
    const index_t n = std::min(block, l.rows - r0);
    const auto w_b = w.middleRows(r0, n);
    try {
      ws.q = quantize_with<K>(w_b, spec, l.name, &ws.q, importance);
    } catch (const error& e) {
      if (e.code() == errc::non_finite) throw_non_finite_weight(l);  // with the row in the whole matrix
      if (block == l.rows) throw;
      throw error(e.code(), e.message() + " (in rows " + std::to_string(r0) + ".." + std::to_string(r0 + n - 1) +
                                ": row numbers count from the first of these)");
    }
    Eigen::Map<row_matrix> back_b(ws.back.data(), n, l.cols);
    dequantize_into_with<K>(ws.q, back_b);
    for (index_t r = 0; r < n; ++r) K::accumulate_error(&w_b.coeffRef(r, 0), &back_b.coeffRef(r, 0), l.cols, stats);
    if (l.statistic() != layer_statistic::none) output += block_output_error(l, w_b, back_b, ws);
  }
  // Float formats pass NaN/Inf weights through; the quantized values may overflow (fp16 beyond
  // 65504), which is a valid, terrible result: infinite error, -inf dB.
  if (!std::isfinite(stats.signal)) throw_non_finite_weight(l);
  weight_score s;
  s.layer = l.name;
  s.spec = spec;
  s.bytes = quantized_bytes(spec, l.rows, l.cols);
  s.bits_per_weight = bits_per_weight(spec, l.rows, l.cols);
  s.sqnr_db = stats.sqnr_db();
  s.mse = stats.mse();
  s.max_abs_error = stats.max_abs;
  s.cosine = stats.cosine();
  s.weight_error = stats.noise;
  s.output_error = output;
  return s;
}

}  // namespace detail

// ||(Q(W) - W) X||_F^2 of a layer from its statistic, given the dequantized weight Q(W) (rows x cols);
// NaN when the layer has no statistic.
[[nodiscard]] inline double output_error_proxy(const layer& l, const row_matrix_ref& dequantized) {
  if (dequantized.rows() != l.rows || dequantized.cols() != l.cols)
    throw error(errc::shape_mismatch, "output_error_proxy: layer '" + l.name + "' is " + std::to_string(l.rows) + "x" +
                                          std::to_string(l.cols) + ", the dequantized weight " +
                                          std::to_string(dequantized.rows()) + "x" + std::to_string(dequantized.cols()));
  detail::weight_workspace ws;
  return detail::block_output_error(l, l.weight(), dequantized, ws);
}

// Scores every layer x candidate; results ordered by layer, then candidate (whatever the threads).
// Throws mixprec::error for an invalid view (see validate) or a weight the quantizer rejects.
// Runs the SIMD kernels of the level in use (active_isa()).
[[nodiscard]] inline std::vector<weight_score> analyze_weights(std::span<const layer> layers,
                                                               const std::vector<quant_spec>& candidates,
                                                               const weight_analysis_options& options = {}) {
  validate(layers);
  if (layers.empty()) throw error(errc::empty_input, "analyze_weights: no layers");
  if (candidates.empty()) throw error(errc::invalid_argument, "analyze_weights: no candidate quantizers");
  for (const quant_spec& s : candidates) validate(s);
  const std::size_t nc = candidates.size(), total = layers.size() * nc;
  // Largest layers first, so that no worker is left with a big one at the end.
  std::vector<std::size_t> order(total);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return layers[a / nc].size() > layers[b / nc].size(); });
  std::vector<weight_score> scores(total);
  const unsigned workers = detail::worker_count(options.threads, total);
  std::vector<detail::weight_workspace> ws(workers);
  detail::progress_counter progress(options.progress, total);
  const isa level = active_isa();
  detail::parallel_for(total, workers, [&](std::size_t i, unsigned worker) {
    const std::size_t k = order[i];
    const layer& l = layers[k / nc];
    scores[k] = with_kernels(level, [&]<class K>() { return detail::score_pair<K>(l, candidates[k % nc], ws[worker]); });
    progress.tick(l.name);
  });
  return scores;
}

}  // namespace mixprec
