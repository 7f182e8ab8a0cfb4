// `mixprec quantize --tune N:LEN`: each planned matrix of a tunable type (qat/ggml_tune.hpp) is written
// with GPTQ's codes inside its ggml type, against the Gram matrix of its inputs on N streams of LEN
// tokens sampled from the model (seed --tune-seed), and kept only when its output error on N other
// streams (seed --tune-seed + 1) is below the untuned bytes'. The types and bytes per tensor are the
// plan's; llama.cpp loads the file as it loads the untuned one.
// Not tuned: token_embd.weight (a lookup: its inputs are one-hot, so G is diagonal and GPTQ moves no
// error; tuned against the Fisher of the residual stream it feeds, sum_p g_p g_p^T, its held-out
// objective fell 22 % on stories15M but llama.cpp's KL did not), types whose codes are not set (q2_K,
// q3_K, IQ), 3-D expert stacks, and matrices no stream reached.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "mixprec/models/calibration.hpp"
#include "mixprec/models/llama.hpp"
#include "mixprec/qat/ggml_tune.hpp"
#include "mixprec/sensitivity/input_gram.hpp"
#include "tool.hpp"

namespace mixprec_cli {

struct tune_request {
  int streams = 0, length = 0;  // per set (calibration, held-out)
  std::uint64_t seed = 11;      // calibration streams; the held-out ones take seed + 1
  int rounds = 2;               // scale refits (ggml::gptq_options::rounds)
  unsigned threads = 1;
};

// The inputs' Gram matrices on the two sets of streams, and the per-tensor record of the decisions.
class model_tuner {
 public:
  model_tuner(const model_file& f, const tune_request& r) : r_(r) {
    namespace mm = mixprec::models;
    if (!f.is_gguf()) throw error(errc::unsupported, "quantize --tune runs the model, which needs a GGUF");
    if (r.streams < 1 || r.length < 2)
      throw error(errc::invalid_argument, "--tune " + std::to_string(r.streams) + ":" + std::to_string(r.length) +
                                              ": give at least 1 stream of 2 tokens");
    if (r.rounds < 0 || r.rounds > 16) throw error(errc::invalid_argument, "--tune-rounds " + std::to_string(r.rounds) + ": expected 0 to 16");
    const mm::llama_model m = mm::load_gguf(f.gguf());  // errc::unsupported for an architecture the engine does not run
    const int bos = mm::bos_of(f.gguf(), m.config.vocab_size).id;
    if (bos < 0) throw error(errc::unsupported, "quantize --tune: the vocabulary of '" + f.gguf().path() + "' has no BOS to start sampled streams with");
    const int length = std::min(r.length, m.config.context_length);
    mm::llama_engine e(m, {}, {.threads = r.threads});
    for (int set = 0; set < 2; ++set) {
      const auto start = clock::now();
      const auto ids = mm::sample_streams(e, {.streams = r.streams, .length = length, .seed = r.seed + static_cast<std::uint64_t>(set), .first = bos});
      const auto sampled = clock::now();
      mixprec::input_gram& g = set == 0 ? calibration_ : heldout_;
      e.observe([&g](const std::string& name, const float* x, mixprec::index_t n) { g.observe(name, x, n); });
      for (const auto& s : ids) (void)e.logits(s);
      e.observe({});
      sampling_seconds_ += seconds(start, sampled);
      pass_seconds_ += seconds(sampled, clock::now());
      if (set == 0) calibration_pass_seconds_ = seconds(start, clock::now());
    }
  }

  // The bytes to write for planned tensor `name` of type t: GPTQ's when tune_matrix keeps them, else
  // `untuned` (also for what is not tuned, see the banner).
  [[nodiscard]] std::vector<std::byte> operator()(const std::string& name, ggml_type t, const row_matrix& w,
                                                  const std::vector<const float*>& search, std::vector<std::byte> untuned) {
    if (!mixprec::ggml::tunable(t) || search.size() != 1) return untuned;
    if (name == "token_embd.weight" || !calibration_.contains(name) || !heldout_.contains(name)) return untuned;
    if (calibration_.count(name) < static_cast<double>(w.cols()) && warned_.insert(w.cols()).second)
      std::fprintf(stderr, "mixprec: warning: --tune: %.0f positions for matrices of %lld inputs ('%s'): GPTQ fits fewer positions than inputs "
                           "poorly and the held-out check will mostly keep the untuned bytes; give more streams\n",
                   calibration_.count(name), static_cast<long long>(w.cols()), name.c_str());
    const auto start = clock::now();
    const auto m = mixprec::ggml::tune_matrix(t, w, std::move(untuned), calibration_.gram(name), heldout_.gram(name), search[0],
                                              {.rounds = r_.rounds, .threads = r_.threads});
    const double positions = heldout_.count(name);
    records_.push_back({name, std::string(mixprec::to_string(t)), m.heldout_before / positions, m.heldout_after / positions, m.kept});
    tune_seconds_ += seconds(start, clock::now());
    return m.bytes;
  }

  // Per tuned tensor: the held-out output error per position before and after, and the decision, as a
  // markdown table on stdout.
  void print_report() const {
    double before = 0.0, kept_after = 0.0;
    std::size_t kept = 0;
    std::printf("| tensor | type | held-out |(W-Q)x|^2 per position, untuned | tuned | change | kept |\n|---|---|---:|---:|---:|---|\n");
    for (const auto& r : records_) {
      std::printf("| %s | %s | %.4g | %.4g | %+.1f %% | %s |\n", r.name.c_str(), r.type.c_str(), r.before, r.after,
                  r.before > 0 ? 100.0 * (r.after / r.before - 1.0) : 0.0, r.kept ? "yes" : "no");
      before += r.before, kept_after += r.kept ? r.after : r.before, kept += r.kept ? 1 : 0;
    }
    std::printf("\ntuned %zu of %zu tensors (kept where the held-out error fell); summed held-out output error %.4g -> %.4g (%+.1f %%)\n\n",
                kept, records_.size(), before, kept_after, before > 0 ? 100.0 * (kept_after / before - 1.0) : 0.0);
    // The cost against a measurement's full-precision pass over the same calibration streams (sampling
    // them from the model, then one pass that records each product's inputs), which tuning cannot skip.
    const double total = sampling_seconds_ + pass_seconds_ + tune_seconds_;
    std::printf("time: %.1f s sampling both sets of streams, %.1f s running them (Gram matrices), %.1f s tuning; %.1f s in all, "
                "%.1fx the full-precision pass over the calibration streams (%.1f s)\n\n",
                sampling_seconds_, pass_seconds_, tune_seconds_, total,
                calibration_pass_seconds_ > 0 ? total / calibration_pass_seconds_ : 0.0, calibration_pass_seconds_);
  }

 private:
  using clock = std::chrono::steady_clock;
  static double seconds(clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }
  struct record {
    std::string name, type;
    double before, after;
    bool kept;
  };
  tune_request r_;
  mixprec::input_gram calibration_, heldout_;
  std::vector<record> records_;
  std::set<mixprec::index_t> warned_;  // input sizes warned about
  double sampling_seconds_ = 0.0, pass_seconds_ = 0.0, tune_seconds_ = 0.0, calibration_pass_seconds_ = 0.0;
};

}  // namespace mixprec_cli
