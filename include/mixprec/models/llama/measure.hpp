// Measured sensitivity of a LLaMA-family model (models/llama.hpp), per weight matrix and candidate type:
// what quantizing that one tensor costs the model's output on calibration streams. For an engine's own
// planning: `mixprec measure` is this function plus calibration, files and JSON.
//   kl            mean over the calibration positions of KL(P_fp || P_q), nats (sensitivity/kl.hpp): the
//                 model run with only this tensor replaced by its quantized bytes against the model as
//                 given (one-tensor sensitivity S(i) with KL as the metric). Each probe restarts from the
//                 residual stream the full-precision pass cached at the tensor's layer (the classifier:
//                 the head only), so a probe costs the layers from the tensor's on, not the whole model.
//   kl_ci95       95 % bootstrap interval of kl: the calibration streams resampled 1,000 times
//                 (sensitivity/metrics.hpp bootstrap_ratio_interval), seeded by the tensor's name and type
//   gram_proxy    |(W - Q(W)) X^T|_F^2 per position = sum_r d_r G d_r^T / positions, G = X^T X the Gram
//                 matrix of the tensor's inputs X (GPTQ's objective; computed through X; for the embedding
//                 lookup X is one-hot, G the token counts)
//   proxy         sum_ij imp_j (W - Q(W))_ij^2, imp_j the mean x_j^2 of the inputs (the imatrix; an untied
//                 embedding lookup has none: its weight_error)
//   weight_error  |W - Q(W)|_F^2, and sqnr_db = 10 log10(|W|^2 / weight_error)
//   fisher        (measure_options::fisher_draws > 0) the Fisher estimates of kl from gradients of the
//                 model's own sampled labels (sensitivity/fisher.hpp: sequence, token, kfac, diagonal),
//                 one backward pass per stream and draw (models/llama/backward.hpp) instead of a run per
//                 tensor and type; measure_options::probe = false leaves kl out (0) and runs no probe
// Q(W) is what a GGUF writer stores for the type, searched with the imatrix where the type's search takes
// one (quantize/quantize.hpp), so the probe, the proxies and a written file agree; with
// measure_options::tune_rounds >= 0, a product's matrix in a tunable ggml type is GPTQ's bytes against its
// calibration inputs instead (qat/ggml_tune.hpp; what `quantize --tune` writes, but for the held-out check). A tensor no requested
// type holds takes the fallback chain (plan/fallback.hpp), with a note.
// An expert stack of a mixture-of-experts layer (gate_exps, up_exps, down_exps: one GGUF tensor, so one
// type) is one tensor here: Q(W) quantizes it expert by expert, each searched with its own slice of the
// imatrix (quantize_experts), as llama-quantize does; its inputs X, imatrix sums and counts are per
// expert (each (position, chosen expert) pair once, as llama-imatrix collects a MUL_MAT_ID; the counts
// in tensor_measurement::expert_counts); gram_proxy sums each expert's |(W_e - Q(W_e)) X_e^T|^2 and
// proxy weighs expert e's columns by its sums of x^2 per calibration position (an expert no position
// reached weighs 0 there, and 1 in the search, llama-quantize's rule). The stack stays untuned under
// tune_rounds (as `quantize --tune` writes it); its Fisher estimates take one routed use per expert
// (sensitivity/fisher.hpp: each expert's inputs and output gradients at the positions routed to it).
// Cost: one full-precision pass (kept: the reference distributions, positions x vocab doubles, and the
// residual stream entering every layer), then per tensor one pass of its layer for its inputs and per
// type one quantization and one restarted pass. The numbers depend neither on the thread count nor on
// the shard (measure_options::shard_*).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "mixprec/detail/fnv1a.hpp"
#include "mixprec/error.hpp"
#include "mixprec/models/llama.hpp"
#include "mixprec/models/llama/backward.hpp"
#include "mixprec/plan/fallback.hpp"
#include "mixprec/qat/ggml_tune.hpp"
#include "mixprec/quantize/quantize.hpp"
#include "mixprec/sensitivity/fisher.hpp"
#include "mixprec/sensitivity/input_moments.hpp"
#include "mixprec/sensitivity/kl.hpp"
#include "mixprec/sensitivity/metrics.hpp"
#include "mixprec/sensitivity/scoped_swap.hpp"

namespace mixprec::models {

struct measure_options {
  std::vector<quant_spec> types;         // candidate types, each measured on every tensor that holds it
  unsigned threads = 1;                  // per matrix product (0: every core)
  int shard_index = 0, shard_count = 1;  // probe only the matrices k (in model order) with k % count == index
  int fisher_draws = 0;                  // label draws per stream for the Fisher estimates (0: none)
  std::uint64_t fisher_seed = 1;         // the draws' seed (stream s, draw k: sampled_nll's seed from it)
  bool probe = true;                     // false: no one-tensor runs (kl 0); needs fisher_draws > 0
  int tune_rounds = -1;                  // >= 0: each tunable ggml type of a product's matrix is measured as
                                         // qat/ggml_tune.hpp's gptq_quantize writes it (G = the calibration
                                         // inputs' Gram, this many scale refits), as `quantize --tune` does

  // Throws errc::invalid_argument for no types or a bad shard (measure_llama checks it first).
  void check() const {
    if (types.empty()) throw error(errc::invalid_argument, "measure: no types");
    if (shard_count < 1 || shard_index < 0 || shard_index >= shard_count)
      throw error(errc::invalid_argument, "measure: shard " + std::to_string(shard_index) + "/" + std::to_string(shard_count));
    if (fisher_draws < 0 || fisher_draws > 1024) throw error(errc::invalid_argument, "measure: fisher_draws must be in [0, 1024]");
    if (!probe && fisher_draws == 0) throw error(errc::invalid_argument, "measure: without probes, fisher_draws must be > 0");
    if (tune_rounds < -1 || tune_rounds > 16) throw error(errc::invalid_argument, "measure: tune_rounds must be in [-1, 16]");
  }
  // Whether the shard probes matrix k (in the order of llama_measure_matrices).
  [[nodiscard]] bool probes(std::size_t k) const noexcept { return static_cast<int>(k % static_cast<std::size_t>(shard_count)) == shard_index; }
};

// One tensor at one type (see the banner for each number).
struct type_measurement {
  quant_spec spec;
  std::uint64_t bytes = 0;  // of the quantized tensor
  double kl = 0.0, proxy = 0.0, gram_proxy = 0.0, weight_error = 0.0, sqnr_db = 0.0;
  interval kl_ci95;
  std::optional<fisher_estimate> fisher;  // with measure_options::fisher_draws > 0
};

struct tensor_measurement {
  std::string name;
  index_t rows = 0, cols = 0;
  std::vector<type_measurement> types;
  std::size_t index = 0;           // position among the model's matrices (llama_measure_matrices)
  std::vector<std::string> notes;  // types left out and why; a fallback taken
  std::vector<double> expert_counts;  // an expert stack's: the calibration positions routed to each expert (the imatrix counts)
};

struct llama_measurement {
  std::vector<tensor_measurement> tensors;  // of the shard, in model order
  input_moments inputs;                     // every matrix's input moments over the calibration (the imatrix)
  std::size_t matrices = 0;                 // weight matrices of the model (all shards)
  std::size_t positions = 0;                // calibration positions
};

// Called after each type measured with ("name type", the tensor's weight count): a front end's progress.
using measure_progress = std::function<void(const std::string& item, double weights)>;

// The 95 % bootstrap interval of a one-tensor KL (the mean over positions) from its per-stream sums,
// seeded by the tensor's name and type (so that a shard measures the interval one process does),
// clamped at 0.
[[nodiscard]] inline interval kl_interval(const std::vector<double>& stream_kl, const std::vector<double>& stream_positions, const std::string& name,
                                          const quant_spec& spec) {
  const std::string key = name + "|" + to_string(spec);
  const interval ci = bootstrap_ratio_interval(stream_kl, stream_positions, 1000, mixprec::detail::fnv1a(std::as_bytes(std::span(key.data(), key.size()))));
  return {std::max(0.0, ci.low), std::max(0.0, ci.high)};
}

// Every weight matrix of m in measurement order (token_embd, per layer llama_layer::matrices(), output
// when untied), with the layer a probe of it restarts at (0 for the embedding, n_layers for the
// classifier: the head only).
[[nodiscard]] inline std::vector<std::pair<llama_matrix*, int>> llama_measure_matrices(llama_model& m) {
  std::vector<std::pair<llama_matrix*, int>> out{{&m.token_embd, 0}};
  for (int l = 0; l < m.config.n_layers; ++l) {
    auto& w = m.layers[static_cast<std::size_t>(l)];
    for (llama_matrix* x : w.matrices()) out.emplace_back(x, l);
  }
  if (m.output) out.emplace_back(&*m.output, m.config.n_layers);
  return out;
}

// What a measure_llama call will cost, before it runs (`mixprec measure --dry-run`): the work from the
// model and options, its time from a timed sample on this machine, its memory from the sizes
// measure_llama keeps. The sample: one layer and the head over the first stream, one forward and
// backward of it and the Fisher arithmetic on the first layer's wq when Fisher draws are asked, and
// one quantization per type of that wq; times scale linearly with positions and weights (attention's
// quadratic part is left out, so long streams take longer than estimated). The proxies and the KL sums
// are left out. Throws what measure_llama throws for its arguments.
struct measure_cost {
  std::size_t matrices = 0;         // the shard's matrices
  std::size_t probes = 0;           // tensor x type runs of the model (0 without probes)
  std::size_t quantizations = 0;    // tensor x type quantizations (the fallback chain included)
  std::size_t layer_runs = 0;       // layer runs over all positions: full-precision pass, inputs, probes
  std::size_t head_runs = 0;        // the same for the head
  std::size_t backward_passes = 0;  // streams x draws
  double seconds = 0.0;             // expected wall time
  double sample_seconds = 0.0;      // what the timed sample took
  double model_bytes = 0.0;         // the weights as loaded
  double peak_bytes = 0.0;          // expected memory beyond the weights
};

[[nodiscard]] inline measure_cost estimate_measure(llama_model& m, const std::vector<std::vector<int>>& streams, const measure_options& o) {
  o.check();
  if (streams.empty()) throw error(errc::invalid_argument, "measure: no calibration streams");
  for (const auto& s : streams)
    if (s.empty()) throw error(errc::invalid_argument, "measure: an empty calibration stream");
  using clock = std::chrono::steady_clock;
  const auto seconds_since = [](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };
  const clock::time_point begin = clock::now();
  double positions = 0.0;
  for (const auto& s : streams) positions += static_cast<double>(s.size());
  const llama_config& c = m.config;
  const double scale = positions / static_cast<double>(streams.front().size());
  measure_cost r;

  // The timed sample.
  double t_layer = 0.0, t_head = 0.0, t_backward = 0.0, t_fisher_matrix = 0.0, t_fisher_type = 0.0;
  std::map<std::string, double> t_quantize;  // seconds per weight, per type
  {
    llama_engine e(m, {}, {.threads = o.threads});
    row_matrix x = e.embed(streams.front());
    clock::time_point t = clock::now();
    e.run_layer(0, x);
    t_layer = seconds_since(t) * scale;
    t = clock::now();
    const row_matrix z = e.head(x);
    t_head = seconds_since(t) * scale;
    if (o.fisher_draws > 0) {
      llama_backprop bp(e);
      t = clock::now();
      (void)bp.backward(sampled_nll(bp.forward(streams.front()), 1).dlogits);
      t_backward = seconds_since(t) * scale;
    }
    const llama_matrix& first = *m.layers.front().matrices().front();  // wq (or wqkv)
    const row_matrix w = first.to_float();
    if (o.fisher_draws > 0) {  // the Fisher arithmetic per weight: once per matrix, then per type
      const auto n0 = static_cast<index_t>(streams.front().size());
      const fisher_use use(row_matrix::Zero(n0, w.cols()), row_matrix::Zero(n0 * o.fisher_draws, w.rows()));
      t = clock::now();
      const fisher_pricing p({use}, {n0});
      t_fisher_matrix = seconds_since(t) * scale / static_cast<double>(w.size());
      t = clock::now();
      (void)p(w);
      t_fisher_type = seconds_since(t) * scale / static_cast<double>(w.size());
    }
    for (const quant_spec& spec : o.types) {
      if (!fits(spec, w.cols()) || spec.format == format_id::fp32) continue;
      t = clock::now();
      try {
        (void)quantize(w, spec, first.name());
      } catch (const error& ex) {
        if (ex.code() != errc::not_representable) throw;
      }
      t_quantize[to_string(spec)] = seconds_since(t) / static_cast<double>(w.size());
    }
  }

  // The work.
  const auto matrices = llama_measure_matrices(m);
  const int n_layers = c.n_layers;
  double quantize_seconds = 0.0, largest = 0.0, kept_gradients = 0.0;  // quantize_seconds: the Fisher arithmetic too
  r.layer_runs = static_cast<std::size_t>(n_layers);  // the full-precision pass
  r.head_runs = 1;
  for (std::size_t k = 0; k < matrices.size(); ++k) {
    r.model_bytes += static_cast<double>(matrices[k].first->bytes());
    if (!o.probes(k)) continue;
    const llama_matrix& mat = *matrices[k].first;
    const int layer = matrices[k].second;
    const bool embedding = k == 0;
    ++r.matrices;
    const auto size = static_cast<double>(mat.rows()) * static_cast<double>(mat.cols());
    largest = std::max(largest, size);
    if (!embedding || !m.output) (layer < n_layers && !embedding ? r.layer_runs : r.head_runs) += 1;  // the inputs
    if (o.fisher_draws > 0 && (!embedding || !m.output)) {  // an expert stack: each position's inputs and gradients at its chosen experts
      const double n_mat = static_cast<double>(m.experts_in(mat)), routed = n_mat > 1.0 ? c.n_expert_used : 1.0;
      kept_gradients += positions * routed * (static_cast<double>(mat.cols()) + o.fisher_draws * static_cast<double>(mat.rows()) / n_mat) * 4.0;
    }
    const auto chain = with_fallback(o.types, [&](const quant_spec& s) -> std::optional<quant_spec> {
      return fits(s, mat.cols()) ? std::optional<quant_spec>(s) : std::nullopt;
    });
    quantize_seconds += size * t_fisher_matrix;
    for (const quant_spec& s : chain.specs) {
      ++r.quantizations;
      const auto q = t_quantize.find(to_string(s));
      quantize_seconds += size * ((q == t_quantize.end() ? 0.0 : q->second) + t_fisher_type);
      if (!o.probe) continue;
      ++r.probes;
      r.layer_runs += static_cast<std::size_t>(n_layers - layer);
      r.head_runs += 1;
    }
  }
  r.backward_passes = o.fisher_draws > 0 ? streams.size() * static_cast<std::size_t>(o.fisher_draws) : 0;
  r.seconds = static_cast<double>(r.layer_runs) * t_layer + static_cast<double>(r.head_runs) * t_head +
              static_cast<double>(o.fisher_draws) * t_backward + quantize_seconds;
  // Memory: the kept streams and reference distributions, one matrix's inputs, its FP32 copy and the
  // double error matrices of a type, and with Fisher draws the kept inputs and output gradients, the
  // embedding's per draw, and one matrix's diagonal Fisher (double).
  // Per weight of the largest matrix: its FP32 copy and decoded type, the double error and its square,
  // and with Fisher draws the FP32 error, the pricing's squares and one diagonal Fisher per use.
  const double dim = c.dim, vocab = c.vocab_size;
  r.peak_bytes = (n_layers + 1.0) * positions * dim * 4.0 + (o.probe ? positions * vocab * 8.0 : 0.0) +
                 positions * static_cast<double>(c.hidden_dim) * 4.0 + largest * (4.0 + 4.0 + 8.0 + 8.0);
  if (o.fisher_draws > 0)
    r.peak_bytes += kept_gradients + (o.probes(0) ? o.fisher_draws * positions * dim * 4.0 : 0.0) + largest * (4.0 + 8.0 + 8.0 * (m.output ? 1.0 : 2.0));
  r.sample_seconds = seconds_since(begin);
  return r;
}

// Measures every matrix x type of model m on the calibration streams (token ids, each run whole; see the
// banner). m is modified during a probe and restored bit for bit after it, also when it throws.
// Throws errc::invalid_argument for no types, no streams, an empty stream or a bad shard; errc::non_finite
// when a probe's logits are not finite; what the engine and the quantizers throw (a type that cannot
// represent a tensor's values is left out with a note instead).
[[nodiscard]] inline llama_measurement measure_llama(llama_model& m, const std::vector<std::vector<int>>& streams, const measure_options& o,
                                                     const measure_progress& progress = {}) {
  o.check();
  if (streams.empty()) throw error(errc::invalid_argument, "measure: no calibration streams");
  llama_measurement out;
  for (const auto& s : streams) {
    if (s.empty()) throw error(errc::invalid_argument, "measure: an empty calibration stream");
    out.positions += s.size();
  }
  const int n_layers = m.config.n_layers;

  // The full-precision pass: reference distributions, the residual stream entering every layer (probes
  // restart there), the input moments.
  std::vector<kl_reference> reference;
  std::vector<std::vector<row_matrix>> entering(streams.size());  // [stream][layer 0..n_layers]
  {
    llama_engine fp(m, {}, {.threads = o.threads});
    fp.observe([&](const std::string& name, const float* x, index_t n) { out.inputs.observe(name, x, n); });
    fp.observe_experts([&](const std::string& name, int e, int n_experts, const float* x, index_t n) { out.inputs.observe_expert(name, e, n_experts, x, n); });
    for (std::size_t s = 0; s < streams.size(); ++s) {
      row_matrix x = fp.embed(streams[s]);
      for (int l = 0; l < n_layers; ++l) {
        entering[s].push_back(x);
        fp.run_layer(l, x);
      }
      entering[s].push_back(x);
      const row_matrix logits = fp.head(x);  // also the classifier's input moments
      if (o.probe) reference.emplace_back(logits);  // only the probes compare with it
    }
  }

  const auto matrices = llama_measure_matrices(m);
  out.matrices = matrices.size();
  const bool tied = !m.output;

  // The Fisher pass: per stream one forward, per draw of labels one backward; every product's inputs X
  // and output gradients dY of the shard's matrices kept (positions x in, draws x positions x out).
  struct gradients {
    row_matrix x, dy;
  };
  std::map<std::string, gradients> fisher_grads;
  // An expert stack's, per expert: the positions routed to it, their inputs (routed x in, row-major) and
  // per draw the gradients at its output (routed x out).
  struct expert_gradients {
    std::vector<index_t> at;
    std::vector<float> x;
    std::vector<std::vector<float>> dy;
    index_t in = 0, out = 0;
  };
  std::map<std::string, std::vector<expert_gradients>> fisher_expert_grads;
  row_matrix lookup_dy;  // draws x positions x dim: at the embedding lookup
  std::vector<int> all_tokens;
  std::vector<index_t> stream_lengths;
  std::set<std::string> wanted;  // the shard's matrices
  for (std::size_t k = 0; k < matrices.size(); ++k)
    if (o.probes(k)) wanted.insert(matrices[k].first->name());
  if (o.fisher_draws > 0 && !wanted.empty()) {
    const auto n = static_cast<index_t>(out.positions), draws = static_cast<index_t>(o.fisher_draws);
    if (o.probes(0)) lookup_dy.resize(draws * n, m.config.dim);  // token_embd is matrix 0
    llama_engine e(m, {}, {.threads = o.threads});
    llama_backprop bp(e);
    index_t t0 = 0;
    for (std::size_t s = 0; s < streams.size(); ++s) {
      const auto len = static_cast<index_t>(streams[s].size());
      const row_matrix& z = bp.forward(streams[s]);
      for (index_t k = 0; k < draws; ++k) {
        loss_gradient l = sampled_nll(z, o.fisher_seed ^ (0x9E3779B97F4A7C15ull * (s * 1024 + static_cast<std::size_t>(k) + 1)));
        l.dlogits *= static_cast<float>(len);  // the summed log-likelihood's gradient (sampled_nll's is the mean)
        const llama_gradients g = bp.backward(l.dlogits, [&](const std::string& name, const row_matrix& x, const row_matrix& dy) {
          if (!wanted.contains(name)) return;
          gradients& fg = fisher_grads[name];
          if (fg.x.size() == 0) {
            fg.x.resize(n, x.cols());
            fg.dy.resize(draws * n, dy.cols());
          }
          if (k == 0) fg.x.middleRows(t0, len) = x;
          fg.dy.middleRows(k * n + t0, len) = dy;
        }, [&](const std::string& name, int expert, std::span<const index_t> at, const row_matrix& x, const row_matrix& dy) {
          if (!wanted.contains(name)) return;
          std::vector<expert_gradients>& stack = fisher_expert_grads[name];
          if (stack.empty()) stack.resize(static_cast<std::size_t>(m.config.n_expert));
          expert_gradients& eg = stack[static_cast<std::size_t>(expert)];
          eg.in = x.cols(), eg.out = dy.cols();
          eg.dy.resize(static_cast<std::size_t>(draws));
          if (k == 0) {
            for (index_t p : at) eg.at.push_back(t0 + p);
            eg.x.insert(eg.x.end(), x.data(), x.data() + x.size());
          }
          auto& d = eg.dy[static_cast<std::size_t>(k)];
          d.insert(d.end(), dy.data(), dy.data() + dy.size());
        });
        if (lookup_dy.size()) lookup_dy.middleRows(k * n + t0, len) = g.embedding;
      }
      all_tokens.insert(all_tokens.end(), streams[s].begin(), streams[s].end());
      stream_lengths.push_back(len);
      t0 += len;
    }
  }
  for (std::size_t k = 0; k < matrices.size(); ++k) {
    if (!o.probes(k)) continue;
    llama_matrix* mat = matrices[k].first;
    const int first_layer = matrices[k].second;
    const bool embedding = mat == &m.token_embd;
    tensor_measurement t{mat->name(), mat->rows(), mat->cols(), {}, k, {}, {}};
    const row_matrix w = mat->to_float();
    const index_t n_mat = m.experts_in(*mat), per = w.rows() / n_mat;  // an expert stack: n_mat matrices of per rows
    // The search's importance (the imatrix: n_mat * cols values) and the proxy's weights (the same,
    // matrix m's times the share of the positions routed to it: an expert no position reached weighs
    // 0); none for an untied token_embd (a lookup, no product input).
    Eigen::VectorXf imp;
    Eigen::VectorXd proxy_weight;
    if (out.inputs.contains(t.name)) {
      imp = out.inputs.mean_squares(t.name);
      proxy_weight = imp.cast<double>();
      const auto& counts = out.inputs.at(t.name).counts;
      for (index_t e = 0; e < n_mat; ++e)
        proxy_weight.segment(e * w.cols(), w.cols()) *= counts[static_cast<std::size_t>(e)] / static_cast<double>(out.positions);
      if (n_mat > 1) t.expert_counts = counts;
    }
    // Each matrix's inputs X (its positions x cols; an expert's: the positions routed to it), for
    // |(W - Q(W)) X^T|^2 = sum_r d_r G d_r^T through X (rows x cols x positions of work per type, no
    // cols^2 of memory). The embedding lookup's x is one-hot: G = diag(token counts), plus the
    // classifier's inputs when the embedding is tied.
    std::vector<row_matrix> inputs(static_cast<std::size_t>(n_mat), row_matrix(0, w.cols()));
    Eigen::VectorXd lookups;
    if (embedding) {
      lookups = Eigen::VectorXd::Zero(w.rows());
      for (const auto& s : streams)
        for (int id : s) lookups[id] += 1.0;
    }
    if (!embedding || tied) {
      const int layer = embedding ? n_layers : first_layer;
      std::vector<std::vector<float>> seen(static_cast<std::size_t>(n_mat));
      llama_engine fp(m, {}, {.threads = o.threads});
      fp.observe([&](const std::string& name, const float* x, index_t n) {
        if (name == t.name) seen[0].insert(seen[0].end(), x, x + n);
      });
      fp.observe_experts([&](const std::string& name, int e, int, const float* x, index_t n) {
        if (name == t.name) seen[static_cast<std::size_t>(e)].insert(seen[static_cast<std::size_t>(e)].end(), x, x + n);
      });
      for (std::size_t s = 0; s < streams.size(); ++s) {
        row_matrix x = entering[s][static_cast<std::size_t>(layer)];
        if (layer < n_layers) fp.run_layer(layer, x);
        else (void)fp.head(x);
      }
      for (std::size_t e = 0; e < seen.size(); ++e)
        inputs[e] = Eigen::Map<const row_matrix>(seen[e].data(), static_cast<index_t>(seen[e].size()) / w.cols(), w.cols());
    }
    Eigen::MatrixXd gram;  // X^T X, computed for the first tuned type (measure_options::tune_rounds)
    std::optional<fisher_pricing> pricing;
    if (o.fisher_draws > 0) {
      std::vector<fisher_use> uses;
      if (embedding) uses.emplace_back(all_tokens, w.rows(), std::move(lookup_dy));
      if (auto it = fisher_grads.find(t.name); it != fisher_grads.end()) {
        uses.emplace_back(std::move(it->second.x), std::move(it->second.dy));
        fisher_grads.erase(it);
      }
      if (auto it = fisher_expert_grads.find(t.name); it != fisher_expert_grads.end()) {  // a stack: one routed use per expert
        for (std::size_t e = 0; e < it->second.size(); ++e) {
          expert_gradients& eg = it->second[e];
          if (eg.at.empty()) continue;
          const auto R = static_cast<index_t>(eg.at.size());
          row_matrix dy(R * static_cast<index_t>(eg.dy.size()), eg.out);
          for (std::size_t k = 0; k < eg.dy.size(); ++k) dy.middleRows(static_cast<index_t>(k) * R, R) = Eigen::Map<const row_matrix>(eg.dy[k].data(), R, eg.out);
          uses.emplace_back(Eigen::Map<const row_matrix>(eg.x.data(), R, eg.in), std::move(dy), std::move(eg.at), static_cast<index_t>(out.positions),
                            static_cast<index_t>(e) * per, w.rows());
        }
        fisher_expert_grads.erase(it);
      }
      pricing.emplace(std::move(uses), stream_lengths);
    }
    // One candidate measured (nullopt, with a note, when the type cannot hold the tensor).
    auto measure_type = [&](const quant_spec& spec) -> std::optional<type_measurement> {
      if (!fits(spec, w.cols())) {
        t.notes.push_back(to_string(spec) + " left out: rows of " + std::to_string(w.cols()) + " values");
        return std::nullopt;
      }
      type_measurement r;
      r.spec = spec;
      quantized_tensor q;
      try {
        const std::span<const float> search(imp.data(), static_cast<std::size_t>(imp.size()));
        if (o.tune_rounds >= 0 && spec.format == format_id::ggml_block && ggml::tunable(spec.ggml) && !embedding && n_mat == 1 &&
            inputs[0].rows() > 0) {  // an expert stack stays untuned, as `quantize --tune` writes it
          if (gram.size() == 0) gram = inputs[0].cast<double>().transpose() * inputs[0].cast<double>();
          const auto bytes = ggml::gptq_quantize(spec.ggml, w, gram, imp.size() ? imp.data() : nullptr,
                                                 {.rounds = o.tune_rounds, .threads = o.threads});
          const auto* b = reinterpret_cast<const std::uint8_t*>(bytes.data());
          q = quantized_tensor(spec, w.rows(), w.cols(), std::vector<std::uint8_t>(b, b + bytes.size()), {}, {});
        } else {
          q = n_mat > 1 ? quantize_experts(w, n_mat, spec, t.name, search) : quantize(w, spec, t.name, search);
        }
      } catch (const error& e) {
        if (e.code() != errc::not_representable && !(n_mat > 1 && e.code() == errc::unsupported)) throw;
        t.notes.push_back(to_string(spec) + " left out: " + e.message());
        return std::nullopt;
      }
      r.bytes = q.bytes();
      const Eigen::MatrixXd d = dequantize(q).cast<double>() - w.cast<double>();
      const Eigen::ArrayXXd d2 = d.array().square();
      r.weight_error = d2.sum();
      r.sqnr_db = 10.0 * std::log10(w.cast<double>().squaredNorm() / std::max(r.weight_error, 1e-300));
      r.proxy = proxy_weight.size() ? 0.0 : r.weight_error;
      double gram_sum = 0.0;
      for (index_t e = 0; e < n_mat; ++e) {
        const auto de = d.middleRows(e * per, per);
        if (proxy_weight.size())
          r.proxy += (de.array().square().rowwise() * proxy_weight.segment(e * w.cols(), w.cols()).transpose().array()).sum();
        const row_matrix error_out = inputs[static_cast<std::size_t>(e)] * de.cast<float>().transpose();  // FP32 products, summed in double
        gram_sum += error_out.cast<double>().squaredNorm();
      }
      if (lookups.size()) gram_sum += (d2.rowwise().sum().matrix().cwiseProduct(lookups)).sum();
      r.gram_proxy = gram_sum / static_cast<double>(out.positions);
      if (pricing) r.fisher = (*pricing)(d.cast<float>());
      if (!o.probe) {
        if (progress) progress(t.name + " " + to_string(spec), static_cast<double>(w.size()));
        return r;
      }
      // Only this tensor swapped for its quantized bytes (run as stored by the engine), restored after.
      double kl = 0.0;
      std::vector<double> stream_kl, stream_positions;
      {
        const scoped_swap guard(*mat, spec.format == format_id::fp32 ? llama_matrix(t.name, w) : llama_matrix(t.name, q));
        llama_engine probe(m, {}, {.threads = o.threads});
        for (std::size_t s = 0; s < streams.size(); ++s) {
          row_matrix x = embedding ? probe.embed(streams[s]) : entering[s][static_cast<std::size_t>(first_layer)];
          for (int l = first_layer; l < n_layers; ++l) probe.run_layer(l, x);
          stream_kl.push_back(reference[s].per_row(probe.head(x), o.threads).sum());
          stream_positions.push_back(static_cast<double>(streams[s].size()));
          kl += stream_kl.back();
        }
      }
      r.kl = kl / static_cast<double>(out.positions);
      r.kl_ci95 = kl_interval(stream_kl, stream_positions, t.name, spec);
      if (progress) progress(t.name + " " + to_string(spec), static_cast<double>(w.size()));
      return r;
    };
    auto chain = with_fallback(o.types, measure_type);  // plan/fallback.hpp
    t.types = std::move(chain.taken);
    if (chain.fell_back) t.notes.push_back("no requested type can represent it: measured the fallback types " + spec_list(chain));
    out.tensors.push_back(std::move(t));
  }
  return out;
}

}  // namespace mixprec::models
