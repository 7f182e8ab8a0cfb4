// `mixprec quantize --tune N:LEN`: each planned matrix of a tunable type (qat/ggml_tune.hpp) is written
// with GPTQ's codes inside its ggml type, against the Gram matrix of its inputs on N streams of LEN
// tokens sampled from the model (seed --tune-seed), and kept only when its output error on N other
// streams (seed --tune-seed + 1) is below the untuned bytes'. With --tune-text FILE (or --tune-tokens
// FILE) the streams are instead cut from a text as `measure --text` cuts it (or read as `measure
// --tokens` reads them), up to 2N of LEN tokens, taken alternately for tuning and for the check. The types and bytes per tensor are the
// plan's; llama.cpp loads the file as it loads the untuned one.
// Not tuned: token_embd.weight (a lookup: its inputs are one-hot, so G is diagonal and GPTQ moves no
// error; tuned against the Fisher of the residual stream it feeds, sum_p g_p g_p^T, its held-out
// objective fell 22 % on stories15M but llama.cpp's KL did not), types whose codes are not set (q2_K,
// q3_K, IQ), 3-D expert stacks, and matrices no stream reached.
// Resuming (--tune-checkpoint DIR): each tuned tensor's decision and bytes go to a file in DIR as soon
// as it is tuned; a later run with the same DIR takes them instead of tuning again when its key
// matches: FNV-1a over the tuner's version, the type, --tune-rounds, the damping, the weights, the
// untuned bytes, both Gram matrices (the model and the streams) and the search weights, which together
// decide the tuned bytes. Any other file there (another run's, a cut-off or damaged one, by the
// bytes' own FNV-1a) is tuned again and replaced. The streams are sampled and run again on resume: tuning is what is saved.
#pragma once

#include <algorithm>
#include <bit>
#include <cctype>
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
#include "measure.hpp"
#include "tool.hpp"

namespace mixprec_cli {

struct tune_request {
  int streams = 0, length = 0;  // per set (calibration, held-out)
  std::uint64_t seed = 11;      // calibration streams; the held-out ones take seed + 1
  int rounds = 2;               // scale refits (ggml::gptq_options::rounds)
  unsigned threads = 1;
  std::string checkpoint;       // folder of tuned tensors to resume from and add to ("": none)
  std::string text, tokens;     // streams cut from a text / read from a token file instead of sampled
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
    if (bos < 0 && r.text.empty() && r.tokens.empty())
      throw error(errc::unsupported, "quantize --tune: the vocabulary of '" + f.gguf().path() +
                                         "' has no BOS to start sampled streams with: give --tune-text or --tune-tokens");
    if (!r.checkpoint.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(r.checkpoint, ec);
      if (ec || !std::filesystem::is_directory(r.checkpoint))
        throw error(errc::output_error, "--tune-checkpoint '" + r.checkpoint + "': not a folder that can be made (" + ec.message() + ")");
    }
    const int length = std::min(r.length, m.config.context_length);
    mm::llama_engine e(m, {}, {.threads = r.threads});
    // Given streams (a text or token file, cut as `measure` cuts them): alternately to the two sets.
    std::vector<std::vector<int>> given[2];
    const bool from_file = !r.text.empty() || !r.tokens.empty();
    if (from_file) {
      const auto start = clock::now();
      const std::string file = r.text.empty() ? r.tokens : r.text, request = "--tune " + std::to_string(r.streams) + ":" + std::to_string(r.length);
      measure_options mo;
      mo.text = r.text, mo.tokens = r.tokens, mo.ctx = length, mo.max_streams = 2 * r.streams;
      try {
        auto c = calibration_streams(f.gguf(), m, mo);
        for (std::size_t k = 0; k < c.streams.size(); ++k) given[k % 2].push_back(std::move(c.streams[k]));
      } catch (const error& e) {
        // Too short a text or an empty token file: named in this command's terms (exit 2).
        if (e.code() == errc::invalid_argument || e.code() == errc::empty_input)
          throw error(errc::invalid_argument, "quantize " + request + ": '" + file + "' gives no stream of " + std::to_string(length) +
                                                  " tokens: give more text or a smaller LEN");
        throw e.in_context("quantize " + request + " '" + file + "'");
      }
      if (given[1].empty())
        throw error(errc::invalid_argument, "quantize " + request + ": '" + file +
                                                "' gives 1 stream; tuning needs 2 (one to tune on, one to check on): give more text or a smaller LEN");
      std::fprintf(stderr, "mixprec: --tune: %zu streams from '%s': %zu to tune on, %zu to check on\n", given[0].size() + given[1].size(),
                   file.c_str(), given[0].size(), given[1].size());
      sampling_seconds_ += seconds(start, clock::now());
    }
    for (int set = 0; set < 2; ++set) {
      const auto start = clock::now();
      const auto ids = from_file ? std::move(given[set])
                                 : mm::sample_streams(e, {.streams = r.streams, .length = length, .seed = r.seed + static_cast<std::uint64_t>(set), .first = bos});
      const auto sampled = clock::now();
      mixprec::input_gram& g = set == 0 ? calibration_ : heldout_;
      e.observe([&g](const std::string& name, const float* x, mixprec::index_t n) { g.observe(name, x, n); });
      for (const auto& s : ids) (void)e.logits(s);
      e.observe({});
      sampling_seconds_ += seconds(start, sampled);
      pass_seconds_ += seconds(sampled, clock::now());
      if (set == 0) calibration_pass_seconds_ = seconds(from_file ? sampled : start, clock::now());
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
                           "poorly and the held-out check will mostly keep the untuned bytes; give more streams (or more text)\n",
                   calibration_.count(name), static_cast<long long>(w.cols()), name.c_str());
    const auto start = clock::now();
    const std::string key = r_.checkpoint.empty() ? std::string() : checkpoint_key(name, t, w, search[0], untuned);
    const double positions = heldout_.count(name);
    if (auto saved = key.empty() ? std::nullopt : resume(name, key, untuned.size())) {
      records_.push_back({name, std::string(mixprec::to_string(t)), saved->before / positions, saved->after / positions, saved->kept, true});
      return std::move(saved->bytes);
    }
    auto m = mixprec::ggml::tune_matrix(t, w, std::move(untuned), calibration_.gram(name), heldout_.gram(name), search[0],
                                        {.rounds = r_.rounds, .threads = r_.threads});
    records_.push_back({name, std::string(mixprec::to_string(t)), m.heldout_before / positions, m.heldout_after / positions, m.kept, false});
    if (!key.empty()) save(name, key, m);
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
    std::printf("time: %.3g s %s both sets of streams, %.3g s running them (Gram matrices), %.3g s tuning; %.3g s in all, "
                "%.1fx the full-precision pass over the calibration streams (%.3g s)%s\n\n",
                sampling_seconds_, r_.text.empty() && r_.tokens.empty() ? "sampling" : "reading", pass_seconds_, tune_seconds_, total,
                calibration_pass_seconds_ > 0 ? total / calibration_pass_seconds_ : 0.0, calibration_pass_seconds_,
                resumed > 0 ? "; resumed tensors not timed" : "");
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

  // The file of tensor `name`: its name with every character but [A-Za-z0-9._-] as '_', cut to 96, then
  // FNV-1a of the whole name (names that sanitize alike keep apart; any length fits a file name).
  std::string checkpoint_path(const std::string& name) const {
    std::string safe;
    for (char c : name.substr(0, 96)) safe += std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ? c : '_';
    return r_.checkpoint + "/" + safe + "-" + mixprec::detail::hex16(mixprec::detail::fnv1a(std::as_bytes(std::span(name)))) + ".tuned";
  }

  // What decides the tuned bytes, hashed (see the banner). tuner_version changes whenever the tuning
  // itself (ggml_tune.hpp's sweep, refits, damping) would give other bytes for the same inputs.
  static constexpr std::uint32_t tuner_version = 1;
  std::string checkpoint_key(const std::string& name, ggml_type t, const row_matrix& w, const float* importance, const std::vector<std::byte>& untuned) {
    using mixprec::detail::fnv1a;
    const auto bytes_of = [](const auto& v) { return std::as_bytes(std::span(v.data(), static_cast<std::size_t>(v.size()))); };
    const mixprec::ggml::gptq_options defaults;
    const std::uint64_t fields[6] = {tuner_version, static_cast<std::uint64_t>(t), static_cast<std::uint64_t>(r_.rounds),
                                     static_cast<std::uint64_t>(w.rows()), static_cast<std::uint64_t>(w.cols()), std::bit_cast<std::uint64_t>(defaults.damp)};
    std::uint64_t h = fnv1a(std::as_bytes(std::span(fields)));
    h = fnv1a(bytes_of(w), h);
    h = fnv1a(std::span(untuned), h);
    h = fnv1a(bytes_of(calibration_.gram(name)), h);
    h = fnv1a(bytes_of(heldout_.gram(name)), h);
    if (importance) h = fnv1a(std::as_bytes(std::span(importance, static_cast<std::size_t>(w.cols()))), h);
    return mixprec::detail::hex16(h);
  }

  // A checkpoint file: the line "mixprec-tune 2 KEY BEFORE AFTER KEPT SIZE CHECKSUM", then SIZE bytes
  // whose FNV-1a is CHECKSUM.
  std::optional<saved_tensor> resume(const std::string& name, const std::string& key, std::size_t size) const {
    const std::string path = checkpoint_path(name);
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::string magic, version, k, checksum;
    saved_tensor s{};
    std::size_t n = 0;
    int kept = 0;
    if (!(in >> magic >> version >> k >> s.before >> s.after >> kept >> n >> checksum) || in.get() != '\n' || magic != "mixprec-tune" ||
        version != "2" || k != key || n != size) {
      std::fprintf(stderr, "mixprec: note: --tune-checkpoint: '%s' is not this run's tuning of '%s': tuned again\n", path.c_str(), name.c_str());
      return std::nullopt;
    }
    s.kept = kept != 0;
    s.bytes.resize(size);
    if (!in.read(reinterpret_cast<char*>(s.bytes.data()), static_cast<std::streamsize>(size)) || in.peek() != std::char_traits<char>::eof() ||
        mixprec::detail::hex16(mixprec::detail::fnv1a(std::span(s.bytes))) != checksum) {
      std::fprintf(stderr, "mixprec: note: --tune-checkpoint: '%s' is cut off or damaged: tuned again\n", path.c_str());
      return std::nullopt;
    }
    return s;
  }

  void save(const std::string& name, const std::string& key, const mixprec::ggml::tuned_matrix& m) const {
    mixprec::output_file out(checkpoint_path(name), std::span<const std::string>{});
    char line[192];
    std::snprintf(line, sizeof line, "mixprec-tune 2 %s %.17g %.17g %d %zu %s\n", key.c_str(), m.heldout_before, m.heldout_after, m.kept ? 1 : 0,
                  m.bytes.size(), mixprec::detail::hex16(mixprec::detail::fnv1a(std::span(m.bytes))).c_str());
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
