// Weight-only sensitivity: for every layer x candidate quantizer, the SQNR of the weight and the
// output-aware proxy ||W X - Q(W) X||_F^2 (computed from the Gram matrix G = X^T X as trace(E G E^T),
// E = Q(W) - W, so its cost does not grow with the number of calibration tokens). No evaluation of the
// model is needed; layers are independent, so the work runs on a pool of threads.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <exception>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mixprec/quantize/quantize.hpp"
#include "mixprec/sensitivity/layer.hpp"
#include "mixprec/sensitivity/metrics.hpp"

namespace mixprec {

// Called after each finished unit of work with (done, total, layer name); from worker threads, but
// never concurrently (calls are serialised).
using progress_callback = std::function<void(std::size_t done, std::size_t total, const std::string& layer)>;

struct weight_score {
  std::string layer;
  quant_spec spec;
  std::size_t bytes = 0;        // exact storage of the quantized layer
  double sqnr_db = 0.0;         // of the weight
  double mse = 0.0;             // of the weight
  double output_error = std::numeric_limits<double>::quiet_NaN();  // ||(Q(W) - W) X||^2 if stats given
};

struct weight_analysis_options {
  unsigned threads = 1;  // 0: std::thread::hardware_concurrency()
  progress_callback progress;
};

// ||E X||_F^2 for E = Q(W) - W from the layer's Gram matrix (or its diagonal); NaN without statistics.
[[nodiscard]] inline double output_error_proxy(const layer_ref& l, const row_matrix& dequantized) {
  if (!l.gram && !l.importance) return std::numeric_limits<double>::quiet_NaN();
  const Eigen::MatrixXd e = (dequantized - l.weight()).cast<double>();
  if (l.gram) return (e * *l.gram).cwiseProduct(e).sum();
  return (e.array().square().rowwise() * l.importance->transpose().array()).sum();
}

// Runs fn(i) for i in [0, n) on `threads` threads; the first exception is rethrown after all stop.
template <class Fn>
void parallel_for(std::size_t n, unsigned threads, Fn&& fn) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::min<std::size_t>(threads, n));
  if (threads <= 1) {
    for (std::size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<std::size_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  {
    std::vector<std::jthread> pool;
    for (unsigned t = 0; t < threads; ++t)
      pool.emplace_back([&] {
        for (std::size_t i; (i = next.fetch_add(1)) < n;) {
          try {
            fn(i);
          } catch (...) {
            std::lock_guard lock(failure_mutex);
            if (!failure) failure = std::current_exception();
            next = n;
          }
        }
      });
  }
  if (failure) std::rethrow_exception(failure);
}

// Scores every layer x candidate; results ordered by layer, then candidate.
[[nodiscard]] inline std::vector<weight_score> analyze_weights(const std::vector<layer_ref>& layers,
                                                               const std::vector<quant_spec>& candidates,
                                                               const weight_analysis_options& options = {}) {
  validate(layers);
  if (candidates.empty()) throw error(errc::invalid_argument, "analyze_weights: no candidate quantizers");
  const std::size_t total = layers.size() * candidates.size();
  std::vector<weight_score> scores(total);
  std::mutex progress_mutex;
  std::size_t done = 0;
  parallel_for(total, options.threads, [&](std::size_t k) {
    const layer_ref& l = layers[k / candidates.size()];
    const quant_spec& spec = candidates[k % candidates.size()];
    const auto w = l.weight();
    const quantized_tensor q = quantize(w, spec, l.name);
    const row_matrix back = dequantize(q);
    weight_score& s = scores[k];
    s.layer = l.name;
    s.spec = spec;
    s.bytes = q.bytes();
    s.sqnr_db = sqnr_db(w, back);
    s.mse = mse(w, back);
    s.output_error = output_error_proxy(l, back);
    if (options.progress) {
      std::lock_guard lock(progress_mutex);
      options.progress(++done, total, l.name);
    }
  });
  return scores;
}

}  // namespace mixprec
