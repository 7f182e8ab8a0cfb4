// A LLaMA study on a real model: per-matrix sensitivity and strategies compared by size,
// speed and quality, measured the way llama.cpp measures quantized models (KL divergence to FP32 on
// reference token streams, top-1 agreement, perplexity of those streams).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <mixprec/plan/plan.hpp>
#include <mixprec/sensitivity/metrics.hpp>

#include "llama.hpp"

namespace llama {

using spec_map = std::map<std::string, mixprec::quant_spec>;

struct study_options {
  int streams = 8;        // reference streams sampled from the FP32 model
  int length = 64;        // tokens per stream
  std::uint64_t seed = 1;
};

// Reference streams and the FP32 model's next-token distributions at every position.
struct reference {
  std::vector<std::vector<int>> tokens;    // each starts with BOS (1)
  std::vector<mixprec::kl_reference> fp;   // per stream: positions x vocab (sensitivity/kl.hpp)
};

struct quality {
  double kl_mean = 0.0, kl_p99 = 0.0, top1 = 0.0, ppl = 0.0, tokens_per_s = 0.0;
  std::size_t bytes = 0;
};

// Samples streams from the FP32 model (temperature 1, seeded).
inline reference make_reference(const mixprec::llama2c::checkpoint& ck, const study_options& o) {
  if (o.streams < 1 || std::min(o.length, ck.cfg.seq_len) < 2)
    throw mixprec::error(mixprec::errc::invalid_argument, "study: " + std::to_string(o.streams) + " streams of " + std::to_string(o.length) +
                                                              " tokens (the model holds " + std::to_string(ck.cfg.seq_len) +
                                                              "): give at least 1 stream of 2 tokens");
  reference ref;
  std::mt19937_64 gen(o.seed);
  for (int s = 0; s < o.streams; ++s) {
    transformer model(ck);
    std::vector<int> toks = {1};
    const int n = std::min(o.length, ck.cfg.seq_len);
    mixprec::row_matrix logits(n - 1, ck.cfg.vocab_size);
    for (int pos = 0; pos + 1 < n; ++pos) {
      logits.row(pos) = model.forward(toks.back(), pos).transpose();
      const Eigen::VectorXd p = mixprec::log_softmax(logits.row(pos)).array().exp().transpose();
      std::discrete_distribution<int> dist(p.data(), p.data() + p.size());
      toks.push_back(dist(gen));
    }
    ref.tokens.push_back(toks);
    ref.fp.emplace_back(logits);
  }
  return ref;
}

// Runs the model with `specs` over the reference streams (teacher forcing).
inline quality quality_of(const mixprec::llama2c::checkpoint& ck, const spec_map& specs, const reference& ref,
                          mixprec::activation_type activations = mixprec::activation_type::fp32) {
  std::vector<double> kls;
  double nll = 0.0;
  std::size_t agree = 0, count = 0;
  double seconds = 0.0;
  quality q;
  for (std::size_t s = 0; s < ref.tokens.size(); ++s) {
    transformer model(ck, specs, activations);
    q.bytes = model.matrix_bytes();
    const auto& toks = ref.tokens[s];
    for (std::size_t pos = 0; pos + 1 < toks.size(); ++pos) {
      const auto t0 = std::chrono::steady_clock::now();
      const Eigen::VectorXf& logits = model.forward(toks[pos], static_cast<int>(pos));
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const auto row = static_cast<mixprec::index_t>(pos);
      kls.push_back(ref.fp[s].row_kl(row, logits));
      const mixprec::row_matrix_d lq = mixprec::log_softmax(logits.transpose());
      Eigen::Index a = 0, b = 0;
      ref.fp[s].probabilities().row(row).maxCoeff(&a);
      lq.row(0).maxCoeff(&b);
      agree += a == b ? 1 : 0;
      nll -= lq(0, toks[pos + 1]);
      ++count;
    }
  }
  std::sort(kls.begin(), kls.end());
  for (double k : kls) q.kl_mean += k;
  q.kl_mean /= static_cast<double>(kls.size());
  q.kl_p99 = kls[std::min(kls.size() - 1, static_cast<std::size_t>(std::ceil(0.99 * static_cast<double>(kls.size()))) - 1)];
  q.top1 = static_cast<double>(agree) / static_cast<double>(count);
  q.ppl = std::exp(nll / static_cast<double>(count));
  q.tokens_per_s = static_cast<double>(count) / seconds;
  return q;
}

// Every matrix of the model at one spec.
inline spec_map uniform(mixprec::llama2c::checkpoint& ck, const mixprec::quant_spec& spec) {
  spec_map m;
  for (auto& [name, w] : ck.matrices()) m[name] = spec;
  return m;
}

// "attention", "ffn" or "classifier".
inline std::string kind_of(const std::string& name) {
  if (name == "classifier") return "classifier";
  const auto dot = name.rfind('.');
  const std::string m = name.substr(dot + 1);
  return m[0] == 'w' && (m[1] == 'q' || m[1] == 'k' || m[1] == 'v' || m[1] == 'o') ? "attention" : "ffn";
}

struct matrix_sensitivity {
  std::string name, kind;
  mixprec::index_t rows = 0, cols = 0;
  double kl_int4 = 0.0, kl_int8 = 0.0, sqnr_int4_db = 0.0, output_error_int4 = 0.0;
};

// KL with only that matrix quantized (INT4 g32 and INT8), SQNR, and the output-error proxy
// ||(Q(W) - W) X||^2 with X the matrix's inputs on the reference streams.
inline std::vector<matrix_sensitivity> measure_matrices(mixprec::llama2c::checkpoint& ck, const reference& ref,
                                                        const mixprec::quant_spec& int4, const mixprec::quant_spec& int8) {
  // Gram matrices of every matrix's inputs over the reference streams (FP32 model).
  std::map<std::string, Eigen::MatrixXd> gram;
  for (std::size_t s = 0; s < ref.tokens.size(); ++s) {
    transformer model(ck);
    model.observe([&](const std::string& name, const float* x, mixprec::index_t n) {
      auto& g = gram[name];
      if (g.size() == 0) g = Eigen::MatrixXd::Zero(n, n);
      const Eigen::VectorXd v = Eigen::Map<const Eigen::VectorXf>(x, n).cast<double>();
      g.selfadjointView<Eigen::Lower>().rankUpdate(v);
    });
    for (std::size_t pos = 0; pos + 1 < ref.tokens[s].size(); ++pos) model.forward(ref.tokens[s][pos], static_cast<int>(pos));
  }
  std::vector<matrix_sensitivity> out;
  for (auto& [name, w] : ck.matrices()) {
    matrix_sensitivity m;
    m.name = name;
    m.kind = kind_of(name);
    m.rows = w->rows();
    m.cols = w->cols();
    m.kl_int4 = quality_of(ck, {{name, int4}}, ref).kl_mean;
    m.kl_int8 = quality_of(ck, {{name, int8}}, ref).kl_mean;
    const mixprec::row_matrix back = mixprec::dequantize(mixprec::quantize(*w, int4, name));
    m.sqnr_int4_db = mixprec::sqnr_db(*w, back);
    const Eigen::MatrixXd e = (back - *w).cast<double>();
    const Eigen::MatrixXd g = gram[name].selfadjointView<Eigen::Lower>();
    m.output_error_int4 = (e * g).cwiseProduct(e).sum();
    out.push_back(m);
  }
  return out;
}

struct strategy_result {
  std::string name;
  spec_map specs;
  quality q;
  double weights = 0.0;  // number of matrix weights, for bits per weight
  [[nodiscard]] double bits_per_weight() const { return 8.0 * static_cast<double>(q.bytes) / weights; }
};

// The plan inputs from measured sensitivity: the predicted loss of a matrix at a spec is its KL with
// only that matrix quantized.
inline mixprec::sensitivity_table kl_source(const std::vector<matrix_sensitivity>& m, const mixprec::quant_spec& int4,
                                            const mixprec::quant_spec& int8) {
  mixprec::sensitivity_table t;
  for (const auto& x : m) t.add(x.name, x.rows, x.cols, int4, x.kl_int4).add(x.name, x.rows, x.cols, int8, x.kl_int8);
  return t;
}

inline std::vector<mixprec::layer_shape> infos(const std::vector<matrix_sensitivity>& m) {
  std::vector<mixprec::layer_shape> out;
  for (const auto& x : m) out.push_back({x.name, x.rows, x.cols});
  return out;
}

inline spec_map specs_of(const mixprec::plan& p) {
  spec_map m;
  for (const auto& e : p.entries) m[e.layer] = e.spec;
  return m;
}

}  // namespace llama
