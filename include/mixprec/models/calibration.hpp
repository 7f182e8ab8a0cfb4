// Calibration token streams for measuring a model: read from token-id files, cut from tokenized text,
// or sampled from the model itself (seeded, reproducible), each started with the BOS the model's
// vocabulary names (bos_of).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mixprec/error.hpp"
#include "mixprec/detail/fnv1a.hpp"
#include "mixprec/io/gguf.hpp"
#include "mixprec/io/llama2c.hpp"
#include "mixprec/io/mapped_file.hpp"
#include "mixprec/models/bpe_tokenizer.hpp"
#include "mixprec/models/llama.hpp"
#include "mixprec/models/tokenizer.hpp"

namespace mixprec::models {

enum class token_file_format {
  text,  // decimal ids separated by spaces, tabs or commas; one stream per non-empty line; '#' to the
         // end of a line is a comment
  u16,   // little-endian uint16 ids (llama2.c's pretokenized TinyStories shards), one stream split at BOS
  i32,   // little-endian int32 ids, one stream split at BOS
};

// Splits ids into streams that each start at an occurrence of `bos` (ids before the first BOS form a
// stream of their own). bos < 0: one stream.
[[nodiscard]] inline std::vector<std::vector<int>> split_at_bos(std::span<const int> ids, int bos) {
  std::vector<std::vector<int>> out;
  for (int id : ids) {
    if (out.empty() || (bos >= 0 && id == bos && !out.back().empty())) out.emplace_back();
    out.back().push_back(id);
  }
  return out;
}

// The token streams of a token-id file. vocab_size > 0: every id must be below it. Throws mixprec::error:
// errc::io_error (unreadable), errc::parse_error naming the file and line or byte offset (a malformed
// number, a file of u16/i32 whose size is not a multiple of the element, a negative id), errc::invalid_argument
// for an id outside the vocabulary.
[[nodiscard]] inline std::vector<std::vector<int>> read_token_streams(const std::string& path, token_file_format format,
                                                                      int vocab_size = 0, int bos = 1) {
  const std::vector<std::uint8_t> bytes = llama2c::read_file(path);
  const std::string file = "token file '" + path + "'";
  auto check = [&](long long id, const std::string& where) {
    if (id < 0) throw error(errc::parse_error, file + ": negative id " + std::to_string(id) + " " + where);
    if (vocab_size > 0 && id >= vocab_size)
      throw error(errc::invalid_argument, file + ": id " + std::to_string(id) + " " + where + " is outside the vocabulary of " +
                                              std::to_string(vocab_size));
    return static_cast<int>(id);
  };
  if (format == token_file_format::text) {
    std::vector<std::vector<int>> out;
    std::size_t line = 1, i = 0;
    std::vector<int> current;
    while (i <= bytes.size()) {
      const char c = i < bytes.size() ? static_cast<char>(bytes[i]) : '\n';
      if (c == '\n') {
        if (!current.empty()) out.push_back(std::move(current));
        current.clear();
        ++line;
        ++i;
      } else if (c == '#') {
        while (i < bytes.size() && bytes[i] != '\n') ++i;
      } else if (c == ' ' || c == '\t' || c == ',' || c == '\r') {
        ++i;
      } else if (c >= '0' && c <= '9') {
        long long v = 0;
        while (i < bytes.size() && bytes[i] >= '0' && bytes[i] <= '9') {
          v = v * 10 + (bytes[i] - '0');
          if (v > (1ll << 31)) throw error(errc::parse_error, file + ": id too large on line " + std::to_string(line));
          ++i;
        }
        current.push_back(check(v, "on line " + std::to_string(line)));
      } else {
        throw error(errc::parse_error, file + ": unexpected character '" + std::string(1, c) + "' on line " + std::to_string(line) +
                                           " (expected decimal ids separated by spaces or commas)");
      }
    }
    return out;
  }
  const std::size_t width = format == token_file_format::u16 ? 2 : 4;
  if (bytes.size() % width != 0)
    throw error(errc::parse_error, file + ": " + std::to_string(bytes.size()) + " bytes is not a whole number of " + std::to_string(width) +
                                       "-byte ids");
  std::vector<int> ids(bytes.size() / width);
  for (std::size_t k = 0; k < ids.size(); ++k) {
    long long v;
    if (width == 2) {
      std::uint16_t u;
      std::memcpy(&u, bytes.data() + 2 * k, 2);
      v = u;
    } else {
      std::int32_t s;
      std::memcpy(&s, bytes.data() + 4 * k, 4);
      v = s;
    }
    ids[k] = check(v, "at byte " + std::to_string(k * width));
  }
  return split_at_bos(ids, bos);
}

// Cuts a long id sequence (a tokenized text without BOS) into consecutive chunks of `length` tokens as
// llama.cpp's imatrix and perplexity tools cut text (tools/imatrix/imatrix.cpp, compute_imatrix): the
// text with BOS first is cut every `length` tokens and each chunk's first token is set to BOS, so chunk k
// is BOS then ids[k length, (k + 1) length - 1) (the id at (k + 1) length - 1 is dropped where the next
// chunk's BOS stands); bos < 0: ids[k length, (k + 1) length), no BOS. A shorter tail is dropped; at
// most max_chunks (0: all). Throws errc::invalid_argument for length < 2.
[[nodiscard]] inline std::vector<std::vector<int>> chunk_tokens(std::span<const int> ids, int length, int bos = 1, std::size_t max_chunks = 0) {
  if (length < 2) throw error(errc::invalid_argument, "chunk_tokens: length must be at least 2, got " + std::to_string(length));
  std::vector<std::vector<int>> out;
  const auto n = static_cast<std::size_t>(length);
  const std::size_t total = ids.size() + (bos >= 0 ? 1 : 0);  // with the BOS in front
  for (std::size_t k = 0; (k + 1) * n <= total && (max_chunks == 0 || out.size() < max_chunks); ++k) {
    std::vector<int> c;
    const std::size_t from = k * n;
    std::size_t to = (k + 1) * n;  // of ids
    if (bos >= 0) {
      c.push_back(bos);
      to -= 1;
    }
    c.insert(c.end(), ids.begin() + static_cast<std::ptrdiff_t>(from), ids.begin() + static_cast<std::ptrdiff_t>(to));
    out.push_back(std::move(c));
  }
  return out;
}


// The ids of text by the GGUF's own vocabulary, without BOS or EOS (chunk_tokens adds the BOS), as
// llama.cpp tokenizes it: tokenizer.ggml.model "llama" by spm_tokenizer (with the vocabulary's
// add_space_prefix), "gpt2" by bpe_tokenizer (Llama 3's and Qwen's pre-tokenizers). Throws
// errc::unsupported for another tokenizer or pre-tokenizer, errc::parse_error for a malformed vocabulary.
[[nodiscard]] inline std::vector<int> tokenize_text(const gguf::file& g, std::string_view text) {
  const gguf::value* model = g.kvs().find("tokenizer.ggml.model");
  const std::string* m = model ? model->get_if<std::string>() : nullptr;
  if (m && *m == "gpt2") return bpe_tokenizer::from_gguf(g).encode(text, false);
  return spm_tokenizer::from_gguf(g).encode(text, {.add_bos = false});  // errc::unsupported for other vocabularies
}

// A uniform double in [0, 1) from the top 53 bits of one draw of gen (the same on every platform, unlike
// std::uniform_real_distribution / std::discrete_distribution, whose algorithms the standard leaves open).
[[nodiscard]] inline double uniform_01(std::mt19937_64& gen) { return static_cast<double>(gen() >> 11) * 0x1.0p-53; }

// Draws a token from softmax(logits / temperature) by inversion: p_i = exp((l_i - max) / T) in double,
// the first i whose running sum exceeds u * sum(p), u = uniform_01(gen). Throws errc::invalid_argument
// for temperature <= 0 or empty logits, errc::non_finite for NaN logits.
[[nodiscard]] inline int sample_token(const Eigen::VectorXf& logits, std::mt19937_64& gen, double temperature = 1.0) {
  if (logits.size() == 0 || !(temperature > 0.0))
    throw error(errc::invalid_argument, "sample_token: needs logits and a positive temperature");
  if (logits.hasNaN()) throw error(errc::non_finite, "sample_token: NaN logits");
  const double mx = static_cast<double>(logits.maxCoeff());
  std::vector<double> p(static_cast<std::size_t>(logits.size()));
  double total = 0.0;
  for (std::size_t i = 0; i < p.size(); ++i) total += (p[i] = std::exp((static_cast<double>(logits[static_cast<index_t>(i)]) - mx) / temperature));
  const double u = uniform_01(gen) * total;
  double run = 0.0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    run += p[i];
    if (run > u && p[i] > 0.0) return static_cast<int>(i);
  }
  for (std::size_t i = p.size(); i-- > 0;)  // rounding left u at the very top: the last possible token
    if (p[i] > 0.0) return static_cast<int>(i);
  return 0;
}

struct sampling_options {
  int streams = 8;           // how many streams
  int length = 64;           // tokens per stream, the first one included (at most the engine's max_context + 1)
  std::uint64_t seed = 1;    // std::mt19937_64's seed
  double temperature = 1.0;
  int first = 1;             // each stream's first token: the model's BOS (bos_of(gguf).id; 1 is SentencePiece's)
};

// Streams sampled from the model: each starts with `first`, then length - 1 tokens, each drawn by
// sample_token from the logits at the previous position, all streams in order from one
// std::mt19937_64(seed): the same seed gives the same streams on any platform (with the same logits).
// on_logits(stream, position, logits), when given, sees the logits each draw used (e.g. to keep the
// reference distribution for KL measurements). Resets the engine for every stream.
[[nodiscard]] inline std::vector<std::vector<int>> sample_streams(
    llama_engine& engine, const sampling_options& o,
    const std::function<void(int stream, int pos, const Eigen::VectorXf& logits)>& on_logits = {}) {
  if (o.streams < 0 || o.length < 1 || o.length > engine.max_context() + 1)
    throw error(errc::invalid_argument, "sample_streams: " + std::to_string(o.streams) + " streams of " + std::to_string(o.length) +
                                            " tokens (the engine holds " + std::to_string(engine.max_context()) + " positions)");
  std::mt19937_64 gen(o.seed);
  std::vector<std::vector<int>> out;
  for (int s = 0; s < o.streams; ++s) {
    engine.reset();
    std::vector<int> toks = {o.first};
    for (int pos = 0; pos + 1 < o.length; ++pos) {
      const Eigen::VectorXf& logits = engine.forward(toks.back(), pos);
      if (on_logits) on_logits(s, pos, logits);
      toks.push_back(sample_token(logits, gen, o.temperature));
    }
    out.push_back(std::move(toks));
  }
  return out;
}

// Where a measurement's calibration streams come from: exactly one of a text file, a token-id file or
// streams sampled from the model.
struct calibration_source {
  std::string text_path{};   // tokenized with the GGUF's own vocabulary (tokenize_text), cut by chunk_tokens
  std::string tokens_path{}; // token ids as given, one stream per line (read_token_streams, text format)
  int sample_streams = 0;    // > 0: that many streams sampled from the model (sample_streams) ...
  int sample_length = 0;     // ... of this many tokens, the BOS included
  std::uint64_t seed = 1;    // of the sampled streams
  int length = 64;           // tokens per stream cut from a text, at most from a token file
  int max_streams = 8;       // streams kept at most from a text or token file
};

// A calibration: its streams and the BOS they start with.
struct calibration_set {
  std::vector<std::vector<int>> streams;
  vocab_bos bos;           // the model's vocabulary's (bos_of)
  bool bos_first = false;  // the BOS was put first in every stream (sampled; a text when the vocabulary adds one)
};

// The calibration streams of `source` for model m, whose vocabulary GGUF g holds. The BOS is the
// vocabulary's (tokenizer.ggml.bos_token_id, else llama.cpp's default for tokenizer.ggml.model), never a
// constant. A text is cut as llama.cpp's imatrix and perplexity tools cut it (chunk_tokens: the BOS first
// in every stream when the vocabulary adds one, tokenizer.ggml.add_bos_token; else `length` text tokens
// each); sampled streams start with the BOS; token ids are taken as given (cut to `length`).
// Errors: errc::invalid_argument for no source or more than one, streams of a text or token file shorter
// than 2 tokens or fewer than 1, or a text too short for one stream;
// errc::unsupported for a text in a vocabulary that cannot be tokenized, or sampling from a vocabulary
// without a BOS; errc::empty_input for no tokens; the readers' errors for the files.
[[nodiscard]] inline calibration_set calibration_streams(const gguf::file& g, const llama_model& m, const calibration_source& o) {
  const int sources = (o.text_path.empty() ? 0 : 1) + (o.tokens_path.empty() ? 0 : 1) + (o.sample_streams > 0 ? 1 : 0);
  if (sources != 1)
    throw error(errc::invalid_argument, "calibration: give exactly one source (a text, token ids or sampled streams), not " + std::to_string(sources));
  if (o.sample_streams <= 0 && (o.length < 2 || o.max_streams < 1))
    throw error(errc::invalid_argument, "calibration: streams of " + std::to_string(o.length) + " tokens, at most " + std::to_string(o.max_streams) +
                                            ": give at least 1 stream of 2 tokens");
  calibration_set c;
  c.bos = bos_of(g, m.config.vocab_size);
  if (!o.text_path.empty()) {
    const mapped_file f(o.text_path);
    const std::string_view text(reinterpret_cast<const char*>(f.data().data()), f.data().size());
    const std::vector<int> ids = tokenize_text(g, text);
    c.bos_first = c.bos.add && c.bos.id >= 0;
    c.streams = chunk_tokens(ids, o.length, c.bos_first ? c.bos.id : -1, static_cast<std::size_t>(o.max_streams));
    if (c.streams.empty())  // a valid text, too short for the request
      throw error(errc::invalid_argument, "calibration text '" + o.text_path + "' is " + std::to_string(ids.size()) +
                                              " tokens, fewer than one stream of " + std::to_string(o.length) +
                                              (c.bos_first ? " (the BOS and " + std::to_string(o.length - 1) + " text tokens)" : std::string()) +
                                              ": give a longer text or shorter streams");
  } else if (!o.tokens_path.empty()) {
    c.streams = read_token_streams(o.tokens_path, token_file_format::text, m.config.vocab_size, c.bos.id);
    for (auto& s : c.streams)
      if (static_cast<int>(s.size()) > o.length) s.resize(static_cast<std::size_t>(o.length));
    if (static_cast<int>(c.streams.size()) > o.max_streams) c.streams.resize(static_cast<std::size_t>(o.max_streams));
  } else {
    if (c.bos.id < 0)
      throw error(errc::unsupported, "calibration: the vocabulary of '" + g.path() + "' (tokenizer.ggml.model '" + c.bos.tokenizer +
                                         "') has no BOS to start sampled streams with: give a text or token ids");
    llama_engine e(m);
    c.streams = sample_streams(e, {.streams = o.sample_streams, .length = o.sample_length, .seed = o.seed, .first = c.bos.id});
    c.bos_first = true;
  }
  if (c.streams.empty()) throw error(errc::empty_input, "calibration: no calibration tokens");
  return c;
}

// A calibration's identity: FNV-1a (detail/fnv1a.hpp) over the ids of every stream in order, as 16
// hex digits (measure.json's calibration.ids_fnv1a64; a verification refuses streams with the hash of
// the ones a measurement was calibrated on).
[[nodiscard]] inline std::string calibration_hash(const std::vector<std::vector<int>>& streams) {
  std::uint64_t h = mixprec::detail::fnv1a_basis;
  for (const auto& s : streams) h = mixprec::detail::fnv1a(std::as_bytes(std::span(s)), h);
  return mixprec::detail::hex16(h);
}

}  // namespace mixprec::models
