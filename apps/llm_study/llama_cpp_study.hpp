// The llama.cpp side of the LLM quantization study, everything measured inside llama.cpp (llama_cpp.hpp):
//   quantize_file   llama.cpp's own recipes (Q4_0, Q4_K_M, ...) with an optional imatrix, read as
//                   llama-quantize reads it; the output appears only when complete (temp file + rename)
//   score_models    GGUF models against a reference GGUF on token streams: KL, top-1 agreement, perplexity
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "llama_cpp.hpp"
#include "mixprec/error.hpp"
#include "mixprec/io/gguf.hpp"
#include "mixprec/io/imatrix.hpp"
#include "mixprec/io/output_file.hpp"
#include "mixprec/sensitivity/kl.hpp"
#include "mixprec/types.hpp"

namespace mixprec_apps::llama_cpp {

// ---- quantize ----

// What llama-quantize passes to llama_model_quantize for an imatrix file (tools/quantize/quantize.cpp
// load_imatrix of llama.cpp 0.5.0): per weight, entry::importance() (GGUF: in_sum2 / counts per matrix,
// 1.0 for a matrix with count 0; legacy: values / ncall), and the file, first dataset and chunk count for
// the output's quantize.imatrix.* KVs. Like llama-quantize, refuses (errc::parse_error) a GGUF imatrix
// without imatrix.chunk_count and imatrix.chunk_size.
inline std::pair<importance_map, imatrix_origin> read_imatrix(const std::string& path) {
  const mixprec::imatrix::file f = mixprec::imatrix::load(path);
  const bool gguf = std::any_of(f.entries.begin(), f.entries.end(), [](const auto& e) { return !e.second.counts.empty(); });
  if (gguf && (f.last_chunk < 0 || f.chunk_size < 0))
    throw mixprec::error(errc::parse_error, "imatrix '" + path + "' lacks imatrix.chunk_count / imatrix.chunk_size (llama-quantize refuses it too)");
  importance_map map;
  for (const auto& [name, e] : f.entries) {
    const Eigen::VectorXf v = e.importance();
    map.emplace(name, std::vector<float>(v.data(), v.data() + v.size()));
  }
  return {std::move(map), imatrix_origin{path, f.dataset, f.last_chunk}};
}

// The outcome of quantize_file.
struct quantize_report {
  std::uintmax_t bytes = 0;                // of the output file
  std::map<std::string, int> type_counts;  // ggml type name ("q4_K", "q5_0", "f32"...) -> tensors of that type
  std::vector<std::string> fallbacks;      // llama.cpp's lines for tensors it gave another type than the recipe's
  std::string warnings;                    // everything llama.cpp warned about
};

// Quantizes `in` to `out` with llama.cpp's recipe `type` (quantize() of llama_cpp.hpp), with the imatrix
// at `imatrix_path` unless empty, on `threads` threads. llama.cpp writes a temporary file beside `out`,
// renamed over it only when quantization succeeded (mixprec::output_file: `out` may not be `in`).
// Throws mixprec::error (the file checks, read_imatrix, quantize).
inline quantize_report quantize_file(const std::string& in, const std::string& out, ftype type, const std::string& imatrix_path = {},
                                     int threads = 0) {
  importance_map importance;
  imatrix_origin origin;
  if (!imatrix_path.empty()) std::tie(importance, origin) = read_imatrix(imatrix_path);
  quantize_report r;
  {
    // llama.cpp opens the temporary path itself (and truncates it); output_file's stream writes nothing.
    mixprec::output_file target(out, {in});
    r.warnings = quantize(in, target.temporary_path(), type, importance, origin, threads);
    target.commit();
  }
  std::istringstream lines(r.warnings);
  for (std::string line; std::getline(lines, line);)
    if (line.find("falling back to") != std::string::npos) r.fallbacks.push_back(line);
  const auto g = mixprec::gguf::file::open(out);
  for (const auto& t : g.tensors()) {
    const auto traits = mixprec::gguf::type_traits_of(t.type);
    ++r.type_counts[traits ? std::string(traits->name) : "type " + std::to_string(t.type)];
  }
  r.bytes = std::filesystem::file_size(out);
  return r;
}

// ---- score_models ----

// One model against the reference, pooled over every position of every stream.
struct model_score {
  std::string path;
  std::uintmax_t bytes = 0;   // file size
  std::size_t positions = 0;  // positions compared (every token of every stream)
  double kl = 0.0;            // mean KL(P_ref || P_model), nats
  double top1 = 0.0;          // % of positions where the model's argmax is the reference's
  double ppl = 0.0;           // exp(mean NLL of token p+1 at positions 0..len-2): the model
  double ref_ppl = 0.0;       // the same for the reference
};

struct eval_options {
  int threads = 2;  // llama.cpp's n_threads and n_threads_batch
};

namespace detail {

// The logits of every stream (stream i: size_i x n_vocab floats) from the model at `path`, in a context
// that holds the longest stream as one batch (llama.cpp's defaults otherwise: F16 KV cache, automatic
// flash attention; the reference runs with the same settings).
inline std::vector<std::vector<float>> stream_logits(const std::string& path, const std::vector<std::vector<int>>& streams, int n_vocab,
                                                     const eval_options& options) {
  const api& a = library();
  auto mp = a.model_default_params();
  mp.n_gpu_layers = 0;
  const model m(path, mp);
  if (m.n_vocab() != n_vocab)
    throw mixprec::error(errc::shape_mismatch, "'" + path + "' has a vocabulary of " + std::to_string(m.n_vocab()) +
                                                   " tokens, the reference " + std::to_string(n_vocab));
  std::size_t longest = 0;
  for (const auto& s : streams) longest = std::max(longest, s.size());
  auto cp = a.context_default_params();
  cp.n_ctx = cp.n_batch = cp.n_ubatch = static_cast<std::uint32_t>(longest);
  cp.n_threads = cp.n_threads_batch = options.threads;
  context ctx(m, cp);
  std::vector<std::vector<float>> out;
  out.reserve(streams.size());
  for (const auto& s : streams) out.push_back(ctx.logits_all(s));
  return out;
}

}  // namespace detail

// The reference's vocabulary size (a vocab-only load).
[[nodiscard]] inline int vocabulary_size(const std::string& path) {
  auto mp = library().model_default_params();
  mp.vocab_only = true;
  return model(path, mp).n_vocab();
}

// Scores each of `models` against `reference` on `streams` (token ids; each stream is one batch from
// position 0, so it should start with BOS). The reference's logits are computed once and kept as float;
// log-softmax, KL and NLL are computed in double. `progress`, when set, is called after each model.
// Throws mixprec::error: invalid_argument for no streams or a stream of fewer than 2 tokens,
// shape_mismatch for a model whose vocabulary differs, and what llama_cpp.hpp throws.
[[nodiscard]] inline std::vector<model_score> score_models(const std::string& reference, const std::vector<std::vector<int>>& streams,
                                                           std::span<const std::string> models, const eval_options& options = {},
                                                           const std::function<void(const model_score&)>& progress = {}) {
  if (streams.empty()) throw mixprec::error(errc::invalid_argument, "no token streams to evaluate on");
  for (std::size_t i = 0; i < streams.size(); ++i)
    if (streams[i].size() < 2)
      throw mixprec::error(errc::invalid_argument, "token stream " + std::to_string(i + 1) + " has " + std::to_string(streams[i].size()) +
                                                       " tokens; at least 2 are needed to score a next token");
  const int n_vocab = vocabulary_size(reference);
  const auto ref = detail::stream_logits(reference, streams, n_vocab, options);
  std::vector<model_score> scores;
  using logits_map = Eigen::Map<const mixprec::row_matrix>;
  for (const std::string& path : models) {
    const auto got = detail::stream_logits(path, streams, n_vocab, options);
    model_score s;
    s.path = path;
    s.bytes = std::filesystem::file_size(path);
    double kl = 0.0, nll = 0.0, ref_nll = 0.0;
    std::size_t agree = 0, predicted = 0;
    for (std::size_t i = 0; i < streams.size(); ++i) {
      const auto& tokens = streams[i];
      const auto n = static_cast<mixprec::index_t>(tokens.size());
      const logits_map r(ref[i].data(), n, n_vocab), m(got[i].data(), n, n_vocab);
      // In blocks of positions, so that the doubles of the log-probabilities stay a few vocabularies' worth.
      constexpr mixprec::index_t block = 32;
      for (mixprec::index_t p0 = 0; p0 < n; p0 += block) {
        const mixprec::index_t k = std::min(block, n - p0);
        kl += mixprec::kl_per_row(r.middleRows(p0, k), m.middleRows(p0, k)).sum();  // sensitivity/kl.hpp
        const mixprec::row_matrix_d lr = mixprec::log_softmax(r.middleRows(p0, k)), lm = mixprec::log_softmax(m.middleRows(p0, k));
        for (mixprec::index_t j = 0; j < k; ++j) {
          const mixprec::index_t p = p0 + j;
          // argmax ties go to the lower id
          mixprec::index_t a = 0, b = 0;
          r.row(p).maxCoeff(&a);
          m.row(p).maxCoeff(&b);
          if (a == b) ++agree;
          if (p + 1 < n) {
            nll -= lm(j, tokens[static_cast<std::size_t>(p) + 1]);
            ref_nll -= lr(j, tokens[static_cast<std::size_t>(p) + 1]);
            ++predicted;
          }
        }
      }
      s.positions += tokens.size();
    }
    s.kl = kl / static_cast<double>(s.positions);
    s.top1 = 100.0 * static_cast<double>(agree) / static_cast<double>(s.positions);
    s.ppl = std::exp(nll / static_cast<double>(predicted));
    s.ref_ppl = std::exp(ref_nll / static_cast<double>(predicted));
    if (progress) progress(s);
    scores.push_back(std::move(s));
  }
  return scores;
}

// The scores as a JSON array, one object per model (keys as model_score's fields; kl in nats, top1 in %).
[[nodiscard]] inline nlohmann::json to_json(std::span<const model_score> scores) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : scores)
    out.push_back({{"model", s.path}, {"bytes", s.bytes}, {"positions", s.positions}, {"kl", s.kl},
                   {"top1", s.top1},  {"ppl", s.ppl},     {"ref_ppl", s.ref_ppl}});
  return out;
}

}  // namespace mixprec_apps::llama_cpp
