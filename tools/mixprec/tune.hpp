// `mixprec quantize --tune N:LEN`: each planned matrix of a tunable type (qat/ggml_tune.hpp) is written
// with GPTQ's codes inside its ggml type, against the Gram matrix of its inputs on N streams of LEN
// tokens sampled from the model (seed --tune-seed), and kept only when its output error on N other
// streams (seed --tune-seed + 1) is below the untuned bytes'. The types and bytes per tensor are the
// plan's; llama.cpp loads the file as it loads the untuned one.
// Not tuned: token_embd.weight (a lookup: its inputs are one-hot, so G is diagonal and GPTQ moves no
// error; tuned against the Fisher of the residual stream it feeds, sum_p g_p g_p^T, its held-out
// objective fell 22 % on stories15M but llama.cpp's KL did not), types whose codes are not set (q2_K,
// q3_K, IQ), 3-D expert stacks, and matrices no stream reached.
// Resuming (--tune-checkpoint DIR): each tuned tensor's decision and bytes go to DIR/NAME.tuned as
// soon as it is tuned; a later run with the same DIR takes them instead of tuning again when its key
// matches: FNV-1a over the type, the untuned bytes (the weights, the type and the imatrix's search as
// quantized), both Gram matrices (the model and the streams), the search weights and --tune-rounds,
// which together decide the tuned bytes. Any other file there (another run's, a cut-off one) is tuned
// again and replaced. The streams are sampled and run again on resume: tuning is what is saved.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "mixprec/detail/fnv1a.hpp"
#include "mixprec/io/output_file.hpp"
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
  std::string checkpoint;       // folder of tuned tensors to resume from and add to ("": none)
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
    if (!r.checkpoint.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(r.checkpoint, ec);
      if (ec || !std::filesystem::is_directory(r.checkpoint))
        throw error(errc::output_error, "--tune-checkpoint '" + r.checkpoint + "': not a folder that can be made (" + ec.message() + ")");
    }
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
    const std::string key = checkpoint_key(name, t, w.cols(), search[0], untuned);
    const double positions = heldout_.count(name);
    if (auto saved = resume(name, key, untuned.size())) {
      records_.push_back({name, std::string(mixprec::to_string(t)), saved->before / positions, saved->after / positions, saved->kept, true});
      return std::move(saved->bytes);
    }
    auto m = mixprec::ggml::tune_matrix(t, w, std::move(untuned), calibration_.gram(name), heldout_.gram(name), search[0],
                                        {.rounds = r_.rounds, .threads = r_.threads});
    records_.push_back({name, std::string(mixprec::to_string(t)), m.heldout_before / positions, m.heldout_after / positions, m.kept, false});
    save(name, key, m);
    tune_seconds_ += seconds(start, clock::now());
    return std::move(m.bytes);
  }

  // Per tuned tensor: the held-out output error per position before and after, and the decision, as a
  // markdown table on stdout.
  void print_report() const {
    double before = 0.0, kept_after = 0.0;
    std::size_t kept = 0, resumed = 0;
    std::printf("| tensor | type | held-out |(W-Q)x|^2 per position, untuned | tuned | change | kept |\n|---|---|---:|---:|---:|---|\n");
    for (const auto& r : records_) {
      std::printf("| %s | %s | %.4g | %.4g | %+.1f %% | %s%s |\n", r.name.c_str(), r.type.c_str(), r.before, r.after,
                  r.before > 0 ? 100.0 * (r.after / r.before - 1.0) : 0.0, r.kept ? "yes" : "no", r.resumed ? " (resumed)" : "");
      before += r.before, kept_after += r.kept ? r.after : r.before, kept += r.kept ? 1 : 0, resumed += r.resumed ? 1 : 0;
    }
    if (resumed > 0) std::printf("\n%zu of %zu tensors resumed from %s\n", resumed, records_.size(), r_.checkpoint.c_str());
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
    bool kept, resumed;
  };
  struct saved_tensor {
    double before, after;  // held-out output error, summed over positions
    bool kept;
    std::vector<std::byte> bytes;
  };

  std::string checkpoint_path(std::string name) const {
    std::replace(name.begin(), name.end(), '/', '_');  // a name is one file in the folder
    return r_.checkpoint + "/" + name + ".tuned";
  }

  // What decides the tuned bytes, hashed (see the banner).
  std::string checkpoint_key(const std::string& name, ggml_type t, mixprec::index_t cols, const float* importance,
                             const std::vector<std::byte>& untuned) {
    using mixprec::detail::fnv1a;
    const auto bytes_of = [](const auto& v) { return std::as_bytes(std::span(v.data(), static_cast<std::size_t>(v.size()))); };
    const std::uint32_t fields[2] = {static_cast<std::uint32_t>(t), static_cast<std::uint32_t>(r_.rounds)};
    std::uint64_t h = fnv1a(std::as_bytes(std::span(fields)));
    h = fnv1a(std::span(untuned), h);
    h = fnv1a(bytes_of(calibration_.gram(name)), h);
    h = fnv1a(bytes_of(heldout_.gram(name)), h);
    if (importance) h = fnv1a(std::as_bytes(std::span(importance, static_cast<std::size_t>(cols))), h);
    return mixprec::detail::hex16(h);
  }

  // A checkpoint file: the line "mixprec-tune 1 KEY BEFORE AFTER KEPT SIZE", then SIZE bytes.
  std::optional<saved_tensor> resume(const std::string& name, const std::string& key, std::size_t size) const {
    if (r_.checkpoint.empty()) return std::nullopt;
    std::ifstream in(checkpoint_path(name), std::ios::binary);
    if (!in) return std::nullopt;
    std::string magic, version, k;
    saved_tensor s{};
    std::size_t n = 0;
    int kept = 0;
    if (!(in >> magic >> version >> k >> s.before >> s.after >> kept >> n) || in.get() != '\n' || magic != "mixprec-tune" || version != "1" ||
        k != key || n != size) {
      std::fprintf(stderr, "mixprec: note: --tune-checkpoint: '%s' is not this run's tuning of '%s': tuned again\n", checkpoint_path(name).c_str(),
                   name.c_str());
      return std::nullopt;
    }
    s.kept = kept != 0;
    s.bytes.resize(size);
    if (!in.read(reinterpret_cast<char*>(s.bytes.data()), static_cast<std::streamsize>(size)) || in.peek() != std::char_traits<char>::eof()) {
      std::fprintf(stderr, "mixprec: note: --tune-checkpoint: '%s' is cut off or too long: tuned again\n", checkpoint_path(name).c_str());
      return std::nullopt;
    }
    return s;
  }

  void save(const std::string& name, const std::string& key, const mixprec::ggml::tuned_matrix& m) const {
    if (r_.checkpoint.empty()) return;
    mixprec::output_file out(checkpoint_path(name), std::span<const std::string>{});
    char line[160];
    std::snprintf(line, sizeof line, "mixprec-tune 1 %s %.17g %.17g %d %zu\n", key.c_str(), m.heldout_before, m.heldout_after, m.kept ? 1 : 0,
                  m.bytes.size());
    out.stream() << line;
    out.stream().write(reinterpret_cast<const char*>(m.bytes.data()), static_cast<std::streamsize>(m.bytes.size()));
    out.commit();
  }
  tune_request r_;
  mixprec::input_gram calibration_, heldout_;
  std::vector<record> records_;
  std::set<mixprec::index_t> warned_;  // input sizes warned about
  double sampling_seconds_ = 0.0, pass_seconds_ = 0.0, tune_seconds_ = 0.0, calibration_pass_seconds_ = 0.0;
};

}  // namespace mixprec_cli
