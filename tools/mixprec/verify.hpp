// Verified plans: a plan's predicted loss is a sum of one-tensor measurements; this runs the whole plan
// (every planned tensor replaced by the bytes `mixprec quantize --plan` writes, with the same imatrix
// search) through the library's LLaMA engine on held-out streams and measures what the model's output
// really loses against the model as stored:
//   kl         mean over the positions of KL(P_stored || P_plan), nats (sensitivity/metrics.hpp kl_per_row)
//   kl_ci95    95 % bootstrap interval of that mean: streams resampled with replacement (`resamples`
//              draws, mt19937_64 of the seed), percentiles 2.5 and 97.5 of the resampled means
//   kl_p99     99th percentile and kl_max the largest of the per-position KLs
//   top1       fraction of positions whose most likely next token is the same (top1_agreement)
// Held-out: the streams are sampled from the model itself (models/calibration.hpp sample_streams, each
// started with the vocabulary's BOS) with a seed of their own, and refused when they are the streams the
// measurement was calibrated on (the measure file's calibration.ids_fnv1a64).
// Cost: the streams' sampling (a decode of each), one pass of the model as stored, then per plan one pass
// with the plan's tensors swapped in; the quantized tensors of one plan are kept for the next (a frontier's
// neighbouring plans share most of them).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
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
    const mm::vocab_bos bos = mm::bos_of(f.gguf(), model_.config.vocab_size);
    if (bos.id < 0)
      throw error(errc::unsupported, "verify: the vocabulary of '" + f.gguf().path() + "' has no BOS to start sampled streams with");
    {
      mm::llama_engine e(model_, {}, {.threads = o.threads});
      streams_ = mm::sample_streams(e, {.streams = o_.streams, .length = o_.length, .seed = o_.seed, .first = bos.id});
    }
    reference_ = run();
    for (auto* m : matrices()) by_name_.emplace(m->name(), m);
  }
  plan_verifier(const plan_verifier&) = delete;  // by_name_ points into model_
  plan_verifier& operator=(const plan_verifier&) = delete;

  [[nodiscard]] const std::vector<std::vector<int>>& streams() const noexcept { return streams_; }

  // The plan run whole (see the banner). Throws errc::invalid_argument for an entry that names no matrix
  // the engine runs or names one twice, errc::unsupported for a type that is no ggml type. Quantized
  // tensors are kept for the next plan as long as it uses them (a frontier's neighbours share most).
  [[nodiscard]] verification verify(const mixprec::plan& p) {
    std::set<cache_key> used;
    std::set<std::string> names;
    for (const auto& e : p.entries) {
      const auto type = mixprec::ggml_type_of(e.spec);
      if (!type) throw error(errc::unsupported, "verify: '" + e.layer + "' is planned as " + mixprec::to_string(e.spec) + ", which is no ggml type");
      if (!by_name_.count(e.layer))
        throw error(errc::invalid_argument, "verify: plan entry '" + e.layer + "' is no matrix of the model the engine runs");
      if (!names.insert(e.layer).second) throw error(errc::invalid_argument, "verify: the plan names '" + e.layer + "' twice");
      used.emplace(e.layer, *type);
    }
    std::erase_if(cache_, [&](const auto& kv) { return !used.count(kv.first); });  // memory: one plan's tensors at most
    std::vector<std::pair<mixprec::models::llama_matrix*, mixprec::models::llama_matrix*>> swapped;  // (model's, plan's)
    for (const auto& e : p.entries) swapped.emplace_back(by_name_.at(e.layer), &quantized(*by_name_.at(e.layer), *mixprec::ggml_type_of(e.spec)));
    auto restore = [&] {  // in reverse, each matrix back where it was
      for (auto it = swapped.rbegin(); it != swapped.rend(); ++it) std::swap(*it->first, *it->second);
    };
    for (auto& [m, q] : swapped) std::swap(*m, *q);
    std::vector<row_matrix> logits;
    try {
      logits = run();
    } catch (...) {
      restore();
      throw;
    }
    restore();
    return statistics(logits);
  }

 private:
  [[nodiscard]] std::vector<mixprec::models::llama_matrix*> matrices() {
    std::vector<mixprec::models::llama_matrix*> out{&model_.token_embd};
    for (auto& l : model_.layers)
      for (auto* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down}) out.push_back(m);
    if (model_.output) out.push_back(&*model_.output);
    return out;
  }

  // The logits of every stream, each run whole (llama_engine::logits).
  [[nodiscard]] std::vector<row_matrix> run() const {
    mixprec::models::llama_engine e(model_, {}, {.threads = o_.threads});
    std::vector<row_matrix> out;
    for (const auto& s : streams_) out.push_back(e.logits(s));
    return out;
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
    v.streams = streams_.size();
    v.seed = o_.seed;
    v.ids_fnv1a64 = calibration_hash(streams_);
    v.imatrix = o_.imatrix;
    std::vector<double> per_position, stream_sum, stream_count;
    double agree = 0.0;
    for (std::size_t s = 0; s < logits.size(); ++s) {
      const Eigen::VectorXd kl = mixprec::kl_per_row(reference_[s], logits[s]);
      per_position.insert(per_position.end(), kl.data(), kl.data() + kl.size());
      stream_sum.push_back(kl.sum());
      stream_count.push_back(static_cast<double>(kl.size()));
      agree += mixprec::top1_agreement(reference_[s], logits[s]) * static_cast<double>(kl.size());
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
  std::vector<std::vector<int>> streams_;
  std::vector<row_matrix> reference_;
  std::map<std::string, mixprec::models::llama_matrix*> by_name_;
  std::map<cache_key, mixprec::models::llama_matrix> cache_;
};

}  // namespace mixprec_cli
