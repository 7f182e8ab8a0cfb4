// Verified plans: a plan's predicted loss is a sum of one-tensor measurements (models/llama/measure.hpp);
// this runs the whole plan (every planned tensor replaced by the bytes a GGUF writer stores for its type)
// through the LLaMA-family engine on held-out streams and measures what the model's output really
// loses against the model as given:
//   kl         mean over the positions of KL(P_model || P_plan), nats (sensitivity/kl.hpp kl_per_row)
//   kl_ci95    95 % bootstrap interval of that mean: streams resampled with replacement (`resamples`
//              draws, mt19937_64 of the seed), percentiles 2.5 and 97.5 of the resampled means
//              (sensitivity/metrics.hpp bootstrap_ratio_interval)
//   kl_p99     99th percentile and kl_max the largest of the per-position KLs
//   top1       fraction of positions whose most likely next token is the same (top1_agreement)
// Held-out: the streams are sampled from the model itself (models/calibration.hpp sample_streams, each
// started with the vocabulary's BOS) with a seed of their own; a caller that measured on sampled streams
// compares calibration_hash(streams()) with the measurement's to refuse the same streams.
// Cost: the streams' sampling (a decode of each) and one pass of the model as given (kept: positions x
// vocab logits per stream), then per plan the quantization of the tensors the last plan did not use and
// one pass with them swapped in (the streams shared out over the threads). A frontier's neighbouring
// plans share most tensors; benchmarks/measure_bench.cpp times a plan's verification against the pass.
// Other stream sets (add_streams) serve a plan search (plan/refine.hpp's fitness): mean_kl runs a plan on
// the first streams of one, and keeps the quantized tensors of the last 64 plans run.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
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

#include "mixprec/detail/parallel.hpp"
#include "mixprec/error.hpp"
#include "mixprec/formats/ggml.hpp"
#include "mixprec/models/calibration.hpp"
#include "mixprec/models/llama/engine.hpp"
#include "mixprec/models/llama/model.hpp"
#include "mixprec/plan/result.hpp"
#include "mixprec/quantize/quantize.hpp"
#include "mixprec/sensitivity/kl.hpp"
#include "mixprec/sensitivity/metrics.hpp"

namespace mixprec::models {

struct verify_options {
  int streams = 8;          // held-out streams
  int length = 64;          // tokens per stream, the BOS included
  std::uint64_t seed = 2;   // of the streams and of the bootstrap (measure's sampled streams default to seed 1)
  int resamples = 1000;     // bootstrap draws
  unsigned threads = 0;     // per product (0: every core); the numbers do not depend on it
  bool fit_context = false; // streams longer than the model's context are cut to it (else invalid_argument)
};

// What a plan run whole loses (see the banner).
struct verification {
  double kl = 0.0, kl_low = 0.0, kl_high = 0.0, kl_p99 = 0.0, kl_max = 0.0, top1 = 0.0;
  std::size_t streams = 0, positions = 0;
  std::uint64_t seed = 0;
  std::string ids_fnv1a64;  // of the held-out streams (calibration_hash)
};

// Tensor `stored` (as the model holds it) at type t, as a file would store it: the verifier's only
// view of the quantizer, so that what it runs is what a writer writes (the `mixprec` tool searches with
// its imatrix file exactly as its quantize does).
using matrix_quantizer = std::function<llama_matrix(const llama_matrix& stored, ggml_type t)>;

// The library's writer for a matrix: its FP32 values quantized to t by quantize/quantize.hpp (ggml's
// bytes), searched with importance.at(name) where given and the type's search takes it; F32 as the
// values. The importance is one value per column, or n * cols for an expert stack of n matrices, each
// searched with its slice (quantize_experts; input_moments::mean_squares gives both); another size is
// errc::shape_mismatch. Non-finite values are errc::non_finite.
[[nodiscard]] inline matrix_quantizer ggml_matrix_quantizer(std::map<std::string, Eigen::VectorXf> importance = {}) {
  return [importance = std::move(importance)](const llama_matrix& stored, ggml_type t) {
    row_matrix w = stored.to_float();
    if (!w.allFinite()) throw error(errc::non_finite, "verify: tensor '" + stored.name() + "' holds NaN or Inf");
    if (t == ggml_type::f32) return llama_matrix(stored.name(), std::move(w));
    const auto imp = importance.find(stored.name());
    if (imp == importance.end()) return llama_matrix(stored.name(), quantize(w, ggml_spec(t), stored.name()));
    const std::span<const float> search(imp->second.data(), static_cast<std::size_t>(imp->second.size()));
    const index_t n_mat = imp->second.size() > w.cols() && imp->second.size() % w.cols() == 0 ? imp->second.size() / w.cols() : 1;
    return llama_matrix(stored.name(), quantize_experts(w, n_mat, ggml_spec(t), stored.name(), search));
  };
}

// Runs plans of one model (see the banner). The held-out streams are sampled and the model's own logits
// on them kept at construction.
class plan_verifier {
  using cache_key = std::pair<std::string, ggml_type>;

 public:
  // model: the model as given (the reference); bos: the token each sampled stream starts with
  // (models::bos_of). errc::invalid_argument for fewer than 1 stream of 2 tokens, no bootstrap draw, a
  // BOS outside the vocabulary or (without fit_context) streams longer than the context.
  plan_verifier(llama_model model, int bos, const verify_options& o, matrix_quantizer quantizer = ggml_matrix_quantizer())
      : o_(o), model_(std::move(model)), bos_(bos), quantizer_(std::move(quantizer)) {
    if (o.streams < 1 || o.length < 2 || o.resamples < 1)
      throw error(errc::invalid_argument, "verify: " + std::to_string(o.streams) + " streams of " + std::to_string(o.length) + " tokens, " +
                                              std::to_string(o.resamples) + " bootstrap draws: give at least 1 stream of 2 tokens and 1 draw");
    if (bos < 0 || bos >= model_.config.vocab_size)
      throw error(errc::invalid_argument, "verify: BOS " + std::to_string(bos) + " is outside the vocabulary of " +
                                              std::to_string(model_.config.vocab_size) + " tokens");
    if (const int ctx = model_.config.context_length; o_.length > ctx) {
      if (!o.fit_context)
        throw error(errc::invalid_argument, "verify: streams of " + std::to_string(o.length) + " tokens are longer than the model's context of " +
                                                std::to_string(ctx));
      o_.length = ctx;
    }
    if (!quantizer_) throw error(errc::invalid_argument, "verify: no quantizer");
    for (auto* m : matrices()) by_name_.emplace(m->name(), m);
    (void)add_streams(o_.streams, o_.length, o_.seed);
  }
  plan_verifier(const plan_verifier&) = delete;  // by_name_ points into model_
  plan_verifier& operator=(const plan_verifier&) = delete;

  [[nodiscard]] const verify_options& options() const noexcept { return o_; }
  // The held-out streams (set 0).
  [[nodiscard]] const std::vector<std::vector<int>>& streams() const noexcept { return sets_[0].ids; }

  // Samples another set of streams (as the held-out ones, with their own seed; cut to the model's context)
  // and keeps the model's logits on them; gives the set's index for mean_kl.
  std::size_t add_streams(int streams, int length, std::uint64_t seed) {
    if (streams < 1 || length < 2)
      throw error(errc::invalid_argument, "verify: " + std::to_string(streams) + " streams of " + std::to_string(length) +
                                              " tokens: give at least 1 stream of 2 tokens");
    stream_set set;
    {
      llama_engine e(model_, {}, {.threads = o_.threads});
      set.ids = sample_streams(e, {.streams = streams, .length = std::min(length, model_.config.context_length), .seed = seed, .first = bos_});
    }
    set.reference = run(set.ids, set.ids.size());
    sets_.push_back(std::move(set));
    return sets_.size() - 1;
  }

  [[nodiscard]] const std::vector<std::vector<int>>& stream_ids(std::size_t set) const { return sets_.at(set).ids; }

  // The plan's mean KL per position (nats) on the first `first` streams of set `set` (add_streams):
  // the fitness of a plan search. Quantized tensors unused by the last 64 plans run are dropped.
  [[nodiscard]] double mean_kl(const plan& p, std::size_t set, std::size_t first) {
    const stream_set& s = sets_.at(set);
    if (first == 0) throw error(errc::invalid_argument, "verify: a mean KL over no streams");
    first = std::min(first, s.ids.size());
    const std::vector<row_matrix> logits = with_plan(p, 64, [&] { return run(s.ids, first); });
    double sum = 0.0, n = 0.0;
    for (std::size_t k = 0; k < first; ++k) {
      const Eigen::VectorXd kl = kl_per_row(s.reference[k], logits[k]);
      sum += kl.sum();
      n += static_cast<double>(kl.size());
    }
    return sum / n;
  }

  // The plan run whole on the held-out streams (see the banner). errc::invalid_argument for an entry that
  // names no matrix the engine runs or names one twice, errc::unsupported for a type that is no ggml type.
  // Quantized tensors are kept for the next plan as long as it uses them.
  [[nodiscard]] verification verify(const plan& p) {
    return statistics(with_plan(p, 1, [&] { return run(sets_[0].ids, sets_[0].ids.size()); }));
  }

  // The logits of the model as given on the held-out streams, run again (what verify's pass costs without
  // a plan: the baseline of benchmarks/measure_bench.cpp).
  [[nodiscard]] std::vector<row_matrix> reference_pass() const { return run(sets_[0].ids, sets_[0].ids.size()); }

 private:
  [[nodiscard]] std::vector<llama_matrix*> matrices() {
    std::vector<llama_matrix*> out{&model_.token_embd};
    for (auto& l : model_.layers)
      for (auto* m : l.matrices()) out.push_back(m);
    if (model_.output) out.push_back(&*model_.output);
    return out;
  }

  // The logits of the first n streams, each run whole (llama_engine::logits): the streams shared out over
  // the threads, an engine of one thread each (a small model's products are too small to share out), or
  // one stream's products over them; the numbers do not depend on the threads.
  [[nodiscard]] std::vector<row_matrix> run(const std::vector<std::vector<int>>& streams, std::size_t n) const {
    std::vector<row_matrix> out(n);
    const unsigned workers = mixprec::detail::worker_count(o_.threads, n);
    std::vector<std::optional<llama_engine>> engines(workers);
    mixprec::detail::parallel_for(n, workers, [&](std::size_t k, unsigned w) {
      if (!engines[w]) engines[w].emplace(model_, std::map<std::string, quant_spec>{}, engine_options{.threads = workers == 1 ? o_.threads : 1});
      out[k] = engines[w]->logits(streams[k]);
    });
    return out;
  }

  // fn() run with the plan's tensors swapped into the model (checked as verify() documents), the model
  // restored after, also when fn throws. Quantized tensors not used by the last `keep` plans are dropped
  // (memory: a frontier walk keeps one plan's, a search the parent's and its recent children's).
  template <class Fn>
  [[nodiscard]] std::vector<row_matrix> with_plan(const plan& p, std::size_t keep, Fn&& fn) {
    std::set<std::string> names;
    std::vector<ggml_type> types;
    for (const auto& e : p.entries) {
      const auto type = ggml_type_of(e.spec);
      if (!type) throw error(errc::unsupported, "verify: '" + e.layer + "' is planned as " + to_string(e.spec) + ", which is no ggml type");
      if (!by_name_.count(e.layer)) throw error(errc::invalid_argument, "verify: plan entry '" + e.layer + "' is no matrix of the model the engine runs");
      if (!names.insert(e.layer).second) throw error(errc::invalid_argument, "verify: the plan names '" + e.layer + "' twice");
      types.push_back(*type);
    }
    ++plans_run_;
    for (std::size_t k = 0; k < p.entries.size(); ++k) last_use_[{p.entries[k].layer, types[k]}] = plans_run_;
    std::erase_if(cache_, [&](const auto& kv) { return last_use_[kv.first] + keep <= plans_run_; });
    std::vector<std::pair<llama_matrix*, llama_matrix*>> swapped;  // (model's, plan's)
    for (std::size_t k = 0; k < p.entries.size(); ++k) {
      llama_matrix* m = by_name_.at(p.entries[k].layer);
      swapped.emplace_back(m, &quantized(*m, types[k]));
    }
    auto restore = [&] {  // in reverse, each matrix back where it was
      for (auto it = swapped.rbegin(); it != swapped.rend(); ++it) std::swap(*it->first, *it->second);
    };
    for (auto& [m, q] : swapped) std::swap(*m, *q);
    try {
      auto out = fn();
      restore();
      return out;
    } catch (...) {
      restore();
      throw;
    }
  }

  // Matrix m at type t from the quantizer, kept.
  [[nodiscard]] llama_matrix& quantized(const llama_matrix& m, ggml_type t) {
    const cache_key key{m.name(), t};
    if (const auto it = cache_.find(key); it != cache_.end()) return it->second;
    llama_matrix q = quantizer_(m, t);
    if (q.name() != m.name() || q.rows() != m.rows() || q.cols() != m.cols())
      throw error(errc::shape_mismatch, "verify: the quantizer gave '" + q.name() + "' (" + std::to_string(q.rows()) + " x " +
                                            std::to_string(q.cols()) + ") for '" + m.name() + "' (" + std::to_string(m.rows()) + " x " +
                                            std::to_string(m.cols()) + ")");
    return cache_.emplace(key, std::move(q)).first->second;
  }

  [[nodiscard]] verification statistics(const std::vector<row_matrix>& logits) const {
    verification v;
    v.streams = sets_[0].ids.size();
    v.seed = o_.seed;
    v.ids_fnv1a64 = calibration_hash(sets_[0].ids);
    std::vector<double> per_position, stream_sum, stream_count;
    double agree = 0.0;
    for (std::size_t s = 0; s < logits.size(); ++s) {
      const Eigen::VectorXd kl = kl_per_row(sets_[0].reference[s], logits[s]);
      per_position.insert(per_position.end(), kl.data(), kl.data() + kl.size());
      stream_sum.push_back(kl.sum());
      stream_count.push_back(static_cast<double>(kl.size()));
      agree += top1_agreement(sets_[0].reference[s], logits[s]) * static_cast<double>(kl.size());
    }
    v.positions = per_position.size();
    const double n = static_cast<double>(v.positions);
    double total = 0.0;
    for (double x : stream_sum) total += x;
    v.kl = total / n;
    v.top1 = agree / n;
    std::vector<double> sorted = per_position;
    std::sort(sorted.begin(), sorted.end());
    v.kl_max = sorted.back();
    v.kl_p99 = sorted[static_cast<std::size_t>(std::ceil(0.99 * n)) - 1];
    const interval ci = bootstrap_ratio_interval(stream_sum, stream_count, o_.resamples, o_.seed);
    v.kl_low = ci.low;
    v.kl_high = ci.high;
    return v;
  }

  verify_options o_;
  llama_model model_;
  int bos_ = -1;
  matrix_quantizer quantizer_;
  struct stream_set {
    std::vector<std::vector<int>> ids;
    std::vector<row_matrix> reference;  // the model's logits as given, per stream
  };
  std::vector<stream_set> sets_;  // [0]: the held-out streams of verify()
  std::map<std::string, llama_matrix*> by_name_;
  std::map<cache_key, llama_matrix> cache_;
  std::map<cache_key, std::size_t> last_use_;  // the plan (count of plans run) that last used a tensor
  std::size_t plans_run_ = 0;
};

}  // namespace mixprec::models
