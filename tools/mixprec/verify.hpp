// Verified plans: a plan's predicted loss is a sum of one-tensor measurements; this runs the whole plan
// (every planned tensor replaced by the bytes `mixprec quantize --plan` writes, with the same imatrix
// search) through the library's LLaMA engine on held-out streams and measures what the model's output
// really loses against the model as stored:
//   kl         mean over the positions of KL(P_stored || P_plan), nats (sensitivity/kl.hpp kl_per_row)
//   kl_ci95    95 % bootstrap interval of that mean: streams resampled with replacement (`resamples`
//              draws, mt19937_64 of the seed), percentiles 2.5 and 97.5 of the resampled means
//   kl_p99     99th percentile and kl_max the largest of the per-position KLs
//   top1       fraction of positions whose most likely next token is the same (top1_agreement)
// Held-out: the streams are sampled from the model itself (models/calibration.hpp sample_streams, each
// started with the vocabulary's BOS) with a seed of their own, and refused when they are the streams the
// measurement was calibrated on (the measure file's calibration.ids_fnv1a64).
// Cost: the streams' sampling (a decode of each), one pass of the model as stored, then per plan one pass
// with the plan's tensors swapped in (the streams shared out over the threads); the quantized tensors of
// one plan are kept for the next (a frontier's neighbouring plans share most of them).
// Other stream sets (add_streams) serve `plan --refine` (refine.hpp): mean_kl runs a plan on the first
// streams of one, and keeps the tensors of the last 64 plans run.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <mixprec/models/calibration.hpp>
#include <mixprec/models/llama.hpp>
#include <mixprec/sensitivity/metrics.hpp>

#include "measure.hpp"
#include "tool.hpp"

namespace mixprec_cli {

struct verify_options {
  int streams = 8;          // held-out streams
  int length = 64;          // tokens per stream, the BOS included
  std::uint64_t seed = 2;   // of the streams (the measurement's default seed is 1) and of the bootstrap
  int resamples = 1000;     // bootstrap draws
  unsigned threads = 0;     // per product (0: every core); the numbers do not depend on it
  bool fit_context = false; // streams longer than the model's context are cut to it (else invalid_argument)
  std::string imatrix;      // the importance matrix quantize searches with (recorded; "" = none)
};

struct verification {
  double kl = 0.0, kl_low = 0.0, kl_high = 0.0, kl_p99 = 0.0, kl_max = 0.0, top1 = 0.0;
  std::size_t streams = 0, positions = 0;
  std::uint64_t seed = 0;
  std::string ids_fnv1a64;  // of the held-out streams (calibration_hash)
  std::string imatrix;      // the importance matrix the plan's tensors were searched with ("" = none)

  [[nodiscard]] nlohmann::json to_json(double predicted) const {
    return {{"kl", kl},
            {"kl_ci95", {kl_low, kl_high}},
            {"kl_p99", kl_p99},
            {"kl_max", kl_max},
            {"top1", top1},
            {"predicted", predicted},
            {"streams", streams},
            {"positions", positions},
            {"seed", seed},
            {"ids_fnv1a64", ids_fnv1a64},
            {"source", "sample"},
            {"imatrix", imatrix.empty() ? nlohmann::json(nullptr) : nlohmann::json(imatrix)}};
  }
};

// Runs plans of one model file (see the banner). The model is loaded once (errc::unsupported for a file
// the engine does not run: another architecture, safetensors), the held-out streams sampled and the
// model's own logits on them kept.
class plan_verifier {
  using cache_key = std::pair<std::string, ggml_type>;

 public:
  plan_verifier(const model_file& f, const importance_set& importance, const verify_options& o)
      : file_(f), importance_(importance), o_(o) {
    namespace mm = mixprec::models;
    if (!f.is_gguf()) throw error(errc::unsupported, "verifying a plan runs the model, which needs a GGUF");
    if (o.streams < 1 || o.length < 2 || o.resamples < 1)
      throw error(errc::invalid_argument, "verify: " + std::to_string(o.streams) + " streams of " + std::to_string(o.length) +
                                              " tokens: give at least 1 stream of 2 tokens");
    model_ = mm::load_gguf(f.gguf());
    if (const int ctx = model_.config.context_length; o_.length > ctx) {
      if (!o.fit_context)
        throw error(errc::invalid_argument, "verify: streams of " + std::to_string(o.length) + " tokens are longer than the model's context of " +
                                                std::to_string(ctx));
      o_.length = ctx;
    }
    bos_ = mm::bos_of(f.gguf(), model_.config.vocab_size).id;
    if (bos_ < 0)
      throw error(errc::unsupported, "verify: the vocabulary of '" + f.gguf().path() + "' has no BOS to start sampled streams with");
    (void)add_streams(o_.streams, o_.length, o_.seed);
    for (auto* m : matrices()) by_name_.emplace(m->name(), m);
  }
  plan_verifier(const plan_verifier&) = delete;  // by_name_ points into model_
  plan_verifier& operator=(const plan_verifier&) = delete;

  // The held-out streams (set 0).
  [[nodiscard]] const std::vector<std::vector<int>>& streams() const noexcept { return sets_[0].ids; }

  // Samples another set of streams (as the held-out ones, with their own seed; cut to the model's context)
  // and keeps the model's logits on them; gives the set's index for mean_kl.
  std::size_t add_streams(int streams, int length, std::uint64_t seed) {
    namespace mm = mixprec::models;
    if (streams < 1 || length < 2)
      throw error(errc::invalid_argument, "verify: " + std::to_string(streams) + " streams of " + std::to_string(length) +
                                              " tokens: give at least 1 stream of 2 tokens");
    stream_set set;
    {
      mm::llama_engine e(model_, {}, {.threads = o_.threads});
      set.ids = mm::sample_streams(e, {.streams = streams, .length = std::min(length, model_.config.context_length), .seed = seed, .first = bos_});
    }
    set.reference = run(set.ids, set.ids.size());
    sets_.push_back(std::move(set));
    return sets_.size() - 1;
  }

  [[nodiscard]] const std::vector<std::vector<int>>& stream_ids(std::size_t set) const { return sets_.at(set).ids; }

  // The plan's mean KL per position (nats) on the first `first` streams of set `set` (add_streams):
  // the fitness of a plan refinement. Quantized tensors unused by the last 64 plans run are dropped.
  [[nodiscard]] double mean_kl(const mixprec::plan& p, std::size_t set, std::size_t first) {
    const stream_set& s = sets_.at(set);
    if (first == 0) throw error(errc::invalid_argument, "verify: a mean KL over no streams");
    first = std::min(first, s.ids.size());
    const std::vector<row_matrix> logits = with_plan(p, 64, [&] { return run(s.ids, first); });
    double sum = 0.0, n = 0.0;
    for (std::size_t k = 0; k < first; ++k) {
      const Eigen::VectorXd kl = mixprec::kl_per_row(s.reference[k], logits[k]);
      sum += kl.sum();
      n += static_cast<double>(kl.size());
    }
    return sum / n;
  }

  // The plan run whole (see the banner). Throws errc::invalid_argument for an entry that names no matrix
  // the engine runs or names one twice, errc::unsupported for a type that is no ggml type. Quantized
  // tensors are kept for the next plan as long as it uses them (a frontier's neighbours share most).
  [[nodiscard]] verification verify(const mixprec::plan& p) {
    return statistics(with_plan(p, 1, [&] { return run(sets_[0].ids, sets_[0].ids.size()); }));
  }

 private:
  [[nodiscard]] std::vector<mixprec::models::llama_matrix*> matrices() {
    std::vector<mixprec::models::llama_matrix*> out{&model_.token_embd};
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
    std::vector<std::optional<mixprec::models::llama_engine>> engines(workers);
    mixprec::detail::parallel_for(n, workers, [&](std::size_t k, unsigned w) {
      if (!engines[w]) engines[w].emplace(model_, std::map<std::string, mixprec::quant_spec>{}, mixprec::models::engine_options{.threads = workers == 1 ? o_.threads : 1});
      out[k] = engines[w]->logits(streams[k]);
    });
    return out;
  }

  // fn() run with the plan's tensors swapped into the model (checked as verify() documents), the model
  // restored after, also when fn throws. Quantized tensors not used by the last `keep` plans are dropped
  // (memory: a frontier walk keeps one plan's, a refinement the parent's and its recent children's).
  template <class Fn>
  [[nodiscard]] std::vector<row_matrix> with_plan(const mixprec::plan& p, std::size_t keep, Fn&& fn) {
    std::set<std::string> names;
    for (const auto& e : p.entries) {
      const auto type = mixprec::ggml_type_of(e.spec);
      if (!type) throw error(errc::unsupported, "verify: '" + e.layer + "' is planned as " + mixprec::to_string(e.spec) + ", which is no ggml type");
      if (!by_name_.count(e.layer))
        throw error(errc::invalid_argument, "verify: plan entry '" + e.layer + "' is no matrix of the model the engine runs");
      if (!names.insert(e.layer).second) throw error(errc::invalid_argument, "verify: the plan names '" + e.layer + "' twice");
    }
    ++plans_run_;
    for (const auto& e : p.entries) last_use_[{e.layer, *mixprec::ggml_type_of(e.spec)}] = plans_run_;
    std::erase_if(cache_, [&](const auto& kv) { return last_use_[kv.first] + keep <= plans_run_; });
    std::vector<std::pair<mixprec::models::llama_matrix*, mixprec::models::llama_matrix*>> swapped;  // (model's, plan's)
    for (const auto& e : p.entries) swapped.emplace_back(by_name_.at(e.layer), &quantized(*by_name_.at(e.layer), *mixprec::ggml_type_of(e.spec)));
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

  // Tensor m at type t as `mixprec quantize` writes it (quantize_stack with the imatrix's search; F32 as
  // its values, which the engine runs as load_gguf runs a stored F32 tensor), kept.
  [[nodiscard]] mixprec::models::llama_matrix& quantized(const mixprec::models::llama_matrix& m, ggml_type t) {
    const cache_key key{m.name(), t};
    if (const auto it = cache_.find(key); it != cache_.end()) return it->second;
    const tensor_entry* entry = nullptr;
    for (const auto& e : file_.tensors())
      if (e.name == m.name()) entry = &e;
    if (!entry) throw error(errc::invalid_argument, "verify: no tensor '" + m.name() + "' in the file");
    row_matrix w = file_.gguf().to_float(m.name());
    check_finite(w, m.name());
    if (t == ggml_type::f32) return cache_.emplace(key, mixprec::models::llama_matrix(m.name(), std::move(w))).first->second;
    const importance_view view(importance_, file_, {m.name()});  // (the search does not depend on the tensors named)
    const auto bytes = quantize_stack(t, w, view.of(*entry).search, m.name(), o_.threads);
    std::vector<std::uint8_t> codes(bytes.size());
    std::memcpy(codes.data(), bytes.data(), bytes.size());
    mixprec::quantized_tensor q(mixprec::ggml_spec(t), w.rows(), w.cols(), std::move(codes), {}, {});
    return cache_.emplace(key, mixprec::models::llama_matrix(m.name(), std::move(q))).first->second;
  }

  [[nodiscard]] verification statistics(const std::vector<row_matrix>& logits) const {
    verification v;
    v.streams = sets_[0].ids.size();
    v.seed = o_.seed;
    v.ids_fnv1a64 = calibration_hash(sets_[0].ids);
    v.imatrix = o_.imatrix;
    std::vector<double> per_position, stream_sum, stream_count;
    double agree = 0.0;
    for (std::size_t s = 0; s < logits.size(); ++s) {
      const Eigen::VectorXd kl = mixprec::kl_per_row(sets_[0].reference[s], logits[s]);
      per_position.insert(per_position.end(), kl.data(), kl.data() + kl.size());
      stream_sum.push_back(kl.sum());
      stream_count.push_back(static_cast<double>(kl.size()));
      agree += mixprec::top1_agreement(sets_[0].reference[s], logits[s]) * static_cast<double>(kl.size());
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
    const mixprec::interval ci = mixprec::bootstrap_ratio_interval(stream_sum, stream_count, o_.resamples, o_.seed);
    v.kl_low = ci.low;
    v.kl_high = ci.high;
    return v;
  }

  const model_file& file_;
  const importance_set& importance_;
  verify_options o_;
  mixprec::models::llama_model model_;
  int bos_ = -1;
  struct stream_set {
    std::vector<std::vector<int>> ids;
    std::vector<row_matrix> reference;  // the model's logits as stored, per stream
  };
  std::vector<stream_set> sets_;  // [0]: the held-out streams of verify()
  std::map<std::string, mixprec::models::llama_matrix*> by_name_;
  std::map<cache_key, mixprec::models::llama_matrix> cache_;
  std::map<cache_key, std::size_t> last_use_;  // the plan (count of plans run) that last used a tensor
  std::size_t plans_run_ = 0;
};

}  // namespace mixprec_cli
