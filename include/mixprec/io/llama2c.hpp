// llama2.c checkpoints (the "legacy v0" format of Karpathy's llama2.c, used by the tinyllamas / stories
// models) and their tokenizer files.
//
// Checkpoint: seven little-endian int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
// seq_len; a negative vocab_size means a separate classifier follows, positive means it shares the
// token embedding), then FP32 weights in this order: token_embedding [vocab, dim], rms_att [L, dim],
// wq [L, dim, dim], wk [L, kv_dim, dim], wv [L, kv_dim, dim], wo [L, dim, dim], rms_ffn [L, dim],
// w1 [L, hidden, dim], w2 [L, dim, hidden], w3 [L, hidden, dim], rms_final [dim], the RoPE tables
// freq_cis_real and freq_cis_imag [seq_len, head_size / 2] (skipped), then wcls [vocab, dim] when
// vocab_size was negative. kv_dim = dim * n_kv_heads / n_heads. Matrices are (out x in), row-major.
// Tokenizer: int32 max_token_length, then per token: float32 score, int32 length, the bytes.
#pragma once

#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "mixprec/types.hpp"
#include "mixprec/detail/checked.hpp"
#include "mixprec/error.hpp"

namespace mixprec::llama2c {

struct config {
  int dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0, seq_len = 0;
  bool shared_classifier = true;
  [[nodiscard]] int head_size() const noexcept { return dim / n_heads; }
  [[nodiscard]] int kv_dim() const noexcept {  // in 64 bits: dim * n_kv_heads can exceed int
    return static_cast<int>(static_cast<std::int64_t>(dim) * n_kv_heads / n_heads);
  }
};

struct layer_weights {
  Eigen::VectorXf rms_att, rms_ffn;
  row_matrix wq, wk, wv, wo, w1, w2, w3;
};

struct checkpoint {
  config cfg;
  row_matrix token_embedding;  // vocab x dim
  std::vector<layer_weights> layers;
  Eigen::VectorXf rms_final;
  row_matrix classifier;  // vocab x dim (a copy of the embedding when shared)

  // Every weight matrix a quantizer may touch, with llama2.c-style names ("layers.3.wq", "classifier").
  [[nodiscard]] std::vector<std::pair<std::string, row_matrix*>> matrices() {
    std::vector<std::pair<std::string, row_matrix*>> out;
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const std::string p = "layers." + std::to_string(i) + ".";
      auto& l = layers[i];
      for (auto [n, m] : {std::pair{"wq", &l.wq}, {"wk", &l.wk}, {"wv", &l.wv}, {"wo", &l.wo}, {"w1", &l.w1},
                          {"w2", &l.w2}, {"w3", &l.w3}})
        out.emplace_back(p + n, m);
    }
    out.emplace_back("classifier", &classifier);
    return out;
  }
};

namespace detail {
inline void fail(const std::string& file, const std::string& what) {
  throw error(errc::parse_error, "llama2.c checkpoint '" + file + "': " + what);
}
}  // namespace detail

// Parses a checkpoint held in memory; `name` appears in error messages.
[[nodiscard]] inline checkpoint parse_checkpoint(const std::uint8_t* data, std::size_t size, const std::string& name) {
  if (size < 28) detail::fail(name, "file of " + std::to_string(size) + " bytes is shorter than the 28-byte header");
  std::int32_t h[7];
  std::memcpy(h, data, 28);
  checkpoint ck;
  config& c = ck.cfg;
  c.dim = h[0];
  c.hidden_dim = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  c.shared_classifier = h[5] > 0;
  c.vocab_size = h[5] == INT32_MIN ? 0 : (h[5] < 0 ? -h[5] : h[5]);
  c.seq_len = h[6];
  const char* names[] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
  const int values[] = {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len};
  for (int i = 0; i < 7; ++i)
    if (values[i] <= 0 || values[i] > (1 << 20))
      detail::fail(name, std::string("header field ") + names[i] + " = " + std::to_string(h[i]) + " is out of range");
  if (c.dim % c.n_heads != 0) detail::fail(name, "dim " + std::to_string(c.dim) + " is not a multiple of n_heads");
  if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0)
    detail::fail(name, "n_heads is not a multiple of n_kv_heads");
  if (c.head_size() % 2 != 0) detail::fail(name, "head size must be even for RoPE");
  const auto d = static_cast<std::uint64_t>(c.dim), hd = static_cast<std::uint64_t>(c.hidden_dim),
             L = static_cast<std::uint64_t>(c.n_layers), V = static_cast<std::uint64_t>(c.vocab_size),
             kv = static_cast<std::uint64_t>(c.kv_dim()), S = static_cast<std::uint64_t>(c.seq_len),
             hs = static_cast<std::uint64_t>(c.head_size());
  // Every field may be up to 2^20: the products need checking (2^20 layers of 2^20 x 2^20 matrices).
  using mixprec::detail::checked_u64;
  const checked_u64 floats = checked_u64(V) * d + checked_u64(L) * d + checked_u64(L) * d * d +
                             checked_u64(2) * L * kv * d + checked_u64(L) * d * d + checked_u64(L) * d +
                             checked_u64(3) * L * hd * d + d + checked_u64(S) * hs +
                             (c.shared_classifier ? checked_u64(0) : checked_u64(V) * d);
  const checked_u64 expected = floats * 4 + 28;
  if (!expected.ok())
    detail::fail(name, "the header's sizes (dim " + std::to_string(c.dim) + ", hidden_dim " +
                           std::to_string(c.hidden_dim) + ", n_layers " + std::to_string(c.n_layers) +
                           ") give more than 2^64 bytes of weights; the file has " + std::to_string(size));
  if (expected.value() != size)
    detail::fail(name, "expected " + std::to_string(expected.value()) + " bytes for this header, the file has " +
                           std::to_string(size));
  std::uint64_t offset = 28;
  auto read = [&](float* dst, std::uint64_t n) {
    std::memcpy(dst, data + offset, n * 4);
    offset += n * 4;
  };
  auto matrix = [&](row_matrix& m, std::uint64_t rows, std::uint64_t cols) {
    m.resize(static_cast<index_t>(rows), static_cast<index_t>(cols));
    read(m.data(), rows * cols);
  };
  matrix(ck.token_embedding, V, d);
  ck.layers.resize(L);
  for (auto& l : ck.layers) l.rms_att.resize(static_cast<index_t>(d)), read(l.rms_att.data(), d);
  for (auto& l : ck.layers) matrix(l.wq, d, d);
  for (auto& l : ck.layers) matrix(l.wk, kv, d);
  for (auto& l : ck.layers) matrix(l.wv, kv, d);
  for (auto& l : ck.layers) matrix(l.wo, d, d);
  for (auto& l : ck.layers) l.rms_ffn.resize(static_cast<index_t>(d)), read(l.rms_ffn.data(), d);
  for (auto& l : ck.layers) matrix(l.w1, hd, d);
  for (auto& l : ck.layers) matrix(l.w2, d, hd);
  for (auto& l : ck.layers) matrix(l.w3, hd, d);
  ck.rms_final.resize(static_cast<index_t>(d));
  read(ck.rms_final.data(), d);
  offset += S * hs * 4;  // freq_cis_real and freq_cis_imag: recomputed by the engine
  if (c.shared_classifier)
    ck.classifier = ck.token_embedding;
  else
    matrix(ck.classifier, V, d);
  auto finite = [&](const auto& m) { return m.allFinite(); };
  bool ok = finite(ck.token_embedding) && finite(ck.classifier) && finite(ck.rms_final);
  for (const auto& l : ck.layers)
    ok = ok && finite(l.wq) && finite(l.wk) && finite(l.wv) && finite(l.wo) && finite(l.w1) && finite(l.w2) &&
         finite(l.w3) && finite(l.rms_att) && finite(l.rms_ffn);
  if (!ok) throw error(errc::non_finite, "llama2.c checkpoint '" + name + "': non-finite weights");
  return ck;
}

inline std::vector<std::uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw error(errc::io_error, "cannot open '" + path + "'");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Loads a checkpoint file.
[[nodiscard]] inline checkpoint load_checkpoint(const std::string& path) {
  const auto bytes = read_file(path);
  return parse_checkpoint(bytes.data(), bytes.size(), path);
}

// Writes a checkpoint in the same format (freq_cis tables as zeros; the engine recomputes them).
inline void save_checkpoint(const checkpoint& ck, const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw error(errc::io_error, "cannot write '" + path + "'");
  const config& c = ck.cfg;
  const std::int32_t h[7] = {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
                             c.shared_classifier ? c.vocab_size : -c.vocab_size, c.seq_len};
  out.write(reinterpret_cast<const char*>(h), 28);
  auto put = [&](const float* p, index_t n) { out.write(reinterpret_cast<const char*>(p), n * 4); };
  put(ck.token_embedding.data(), ck.token_embedding.size());
  for (const auto& l : ck.layers) put(l.rms_att.data(), l.rms_att.size());
  for (const auto& l : ck.layers) put(l.wq.data(), l.wq.size());
  for (const auto& l : ck.layers) put(l.wk.data(), l.wk.size());
  for (const auto& l : ck.layers) put(l.wv.data(), l.wv.size());
  for (const auto& l : ck.layers) put(l.wo.data(), l.wo.size());
  for (const auto& l : ck.layers) put(l.rms_ffn.data(), l.rms_ffn.size());
  for (const auto& l : ck.layers) put(l.w1.data(), l.w1.size());
  for (const auto& l : ck.layers) put(l.w2.data(), l.w2.size());
  for (const auto& l : ck.layers) put(l.w3.data(), l.w3.size());
  put(ck.rms_final.data(), ck.rms_final.size());
  const std::vector<float> zeros(static_cast<std::size_t>(c.seq_len * c.head_size()), 0.0f);
  put(zeros.data(), static_cast<index_t>(zeros.size()));
  if (!c.shared_classifier) put(ck.classifier.data(), ck.classifier.size());
  if (!out) throw error(errc::io_error, "failed writing '" + path + "'");
}

struct tokenizer {
  std::vector<std::string> vocab;
  std::vector<float> scores;
  int max_token_length = 0;

  // The text of `token` following `prev` (llama2.c's decode: no leading space after BOS, <0xHH> bytes).
  [[nodiscard]] std::string decode(int prev, int token) const {
    if (token < 0 || token >= static_cast<int>(vocab.size()))
      throw error(errc::invalid_argument, "tokenizer: token " + std::to_string(token) + " out of range");
    std::string piece = vocab[static_cast<std::size_t>(token)];
    if (prev == 1 && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    unsigned byte = 0;
    if (piece.size() == 6 && std::sscanf(piece.c_str(), "<0x%02X>", &byte) == 1) piece = std::string(1, static_cast<char>(byte));
    return piece;
  }
};

// Parses a tokenizer file for a vocabulary of vocab_size tokens.
[[nodiscard]] inline tokenizer parse_tokenizer(const std::uint8_t* data, std::size_t size, int vocab_size,
                                               const std::string& name) {
  auto fail = [&](const std::string& what) { throw error(errc::parse_error, "tokenizer '" + name + "': " + what); };
  tokenizer t;
  std::size_t off = 0;
  auto take = [&](void* dst, std::size_t n) {
    if (size - off < n) fail("truncated at byte " + std::to_string(off));
    std::memcpy(dst, data + off, n);
    off += n;
  };
  if (size < 4) fail("shorter than its header");
  take(&t.max_token_length, 4);
  if (t.max_token_length <= 0 || t.max_token_length > (1 << 16)) fail("bad max_token_length");
  for (int i = 0; i < vocab_size; ++i) {
    float score;
    std::int32_t len;
    take(&score, 4);
    take(&len, 4);
    if (len < 0 || len > t.max_token_length) fail("token " + std::to_string(i) + " has length " + std::to_string(len));
    std::string s(static_cast<std::size_t>(len), '\0');
    take(s.data(), static_cast<std::size_t>(len));
    t.vocab.push_back(std::move(s));
    t.scores.push_back(score);
  }
  if (off != size) fail(std::to_string(size - off) + " bytes after the last token");
  return t;
}

[[nodiscard]] inline tokenizer load_tokenizer(const std::string& path, int vocab_size) {
  const auto bytes = read_file(path);
  return parse_tokenizer(bytes.data(), bytes.size(), vocab_size, path);
}

}  // namespace mixprec::llama2c
