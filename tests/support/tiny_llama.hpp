// A seeded synthetic llama2.c model and a SentencePiece-style BPE vocabulary, made by the tests
// themselves: the structure of a small real checkpoint (GQA, a hidden size that fits no 32-wide block,
// a shared classifier, byte-fallback tokens and learned merges), none of its training.
//
//   tiny_llama(options)         the checkpoint (llama2.c's layout, mixprec/io/llama2c.hpp)
//   tiny_tokenizer(vocab_size)  3 specials, 256 byte tokens, BPE merges learned from a fixed text,
//                               then its single characters (SentencePiece's order and scores)
//   write_tiny_llama(dir)       both as llama2.c files: {dir/tiny_llama.bin, dir/tiny_tok.bin}
//
// The defaults have the shapes of llama2.c's 260K example model: dim 64, hidden 172, 4 layers, 8 heads,
// 4 KV heads, vocabulary 512, and a classifier of its own (llama2.c's negative vocab_size). Everything
// follows from the seed: the same options give the same bytes.
//
// shared_classifier = true reuses the embedding as the classifier, as the 260K model does: right for
// the file layout (no wcls, no output.weight in the GGUF), wrong for anything that looks at outputs,
// since each token's own N(0, 1) embedding then dominates its logits and the model copies its input
// (greedy decoding from BOS repeats BOS, sampled streams too, every quantization's KL is ~0).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "mixprec/io/llama2c.hpp"

namespace mixprec::test {

struct tiny_llama_options {
  int dim = 64;
  int hidden_dim = 172;  // not a multiple of 32: ggml cannot block-quantize w2's rows
  int n_layers = 4;
  int n_heads = 8;
  int n_kv_heads = 4;
  int vocab_size = 512;
  int seq_len = 256;
  bool shared_classifier = false;  // true: the embedding is the classifier (see above)
  std::uint32_t seed = 1;
};

// Text the vocabulary is learned from (written for these tests).
inline constexpr const char* tiny_corpus =
    "Once upon a time, there was a little girl named Lily. She liked to play in the garden with her red ball. "
    "One day, the ball rolled under a big tree. Lily looked and looked, but she could not find it. "
    "Her brother Tom came to help. He was a kind boy and he liked to help his sister. "
    "They found the ball next to a small box. In the box there was a shiny stone. "
    "Lily said, \"Look, Tom! It is so pretty!\" Tom smiled and said, \"Let us show it to Mom.\" "
    "Mom was happy to see them play together. She gave them a hug and a cookie. "
    "The next morning, the sun was warm and the sky was blue. A bird sang on the fence. "
    "Ben the dog wanted to play too. He ran to the park and jumped in the grass. "
    "The children laughed and played all day until it was time to go home and sleep. "
    "Sam had a toy car that was very fast. He wanted to race it down the hill with his friend Mia. "
    "Mia had a blue boat and she wanted to sail it on the pond. They shared their toys and had fun. "
    "When it started to rain, they ran inside and drank hot milk by the window. "
    "The old cat watched the rain and then went to sleep on the soft bed. "
    "The little fish in the pond swam fast. A big frog sat on a leaf and said hello to the fish. "
    "Anna and her dad went to the store to buy bread, apples and a cake for the party. "
    "At the party, everyone sang and danced. The cake was sweet and the friends were happy. "
    "Tim was sad because his kite was stuck in the tree. His mom helped him get it down. "
    "He said thank you and gave her a big hug. They flew the kite high in the sky together.";

// Seeded weights: embeddings N(0, 1), matrices N(0, 1/in) (activations keep their scale through the
// layers), RMSNorm gains 1 + N(0, 0.1^2); a separate classifier N(0, 1/dim) when not shared.
[[nodiscard]] inline llama2c::checkpoint tiny_llama(const tiny_llama_options& o = {}) {
  llama2c::checkpoint ck;
  ck.cfg = {o.dim, o.hidden_dim, o.n_layers, o.n_heads, o.n_kv_heads, o.vocab_size, o.seq_len, o.shared_classifier};
  std::mt19937 gen(o.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto matrix = [&](int rows, int cols, float sigma) {
    row_matrix m(rows, cols);
    for (index_t i = 0; i < m.size(); ++i) m.data()[i] = sigma * normal(gen);
    return m;
  };
  auto gains = [&](int n) {
    Eigen::VectorXf v(n);
    for (int i = 0; i < n; ++i) v[i] = 1.0f + 0.1f * normal(gen);
    return v;
  };
  auto scale = [](int in) { return 1.0f / std::sqrt(static_cast<float>(in)); };
  const int kv_dim = ck.cfg.kv_dim();
  ck.token_embedding = matrix(o.vocab_size, o.dim, 1.0f);
  for (int l = 0; l < o.n_layers; ++l) {
    llama2c::layer_weights w;
    w.rms_att = gains(o.dim);
    w.wq = matrix(o.dim, o.dim, scale(o.dim));
    w.wk = matrix(kv_dim, o.dim, scale(o.dim));
    w.wv = matrix(kv_dim, o.dim, scale(o.dim));
    w.wo = matrix(o.dim, o.dim, scale(o.dim));
    w.rms_ffn = gains(o.dim);
    w.w1 = matrix(o.hidden_dim, o.dim, scale(o.dim));
    w.w2 = matrix(o.dim, o.hidden_dim, scale(o.hidden_dim));
    w.w3 = matrix(o.hidden_dim, o.dim, scale(o.dim));
    ck.layers.push_back(std::move(w));
  }
  ck.rms_final = gains(o.dim);
  ck.classifier = o.shared_classifier ? ck.token_embedding : matrix(o.vocab_size, o.dim, scale(o.dim));
  return ck;
}

// A vocabulary of exactly vocab_size tokens in llama2.c's tokenizer form (spaces as ' '):
//   0 "<unk>", 1 "\n<s>\n", 2 "\n</s>\n" (as llama2.c's tokenizer.py writes them), 3..258 "<0x00>".."<0xFF>",
//   then the merges of a byte-pair encoding learned from tiny_corpus, in the order learned (score -rank),
//   then the corpus's single characters (lower scores), as SentencePiece lays out a BPE model.
// Words start with their space (" Once", SentencePiece's dummy prefix), and merges never cross one.
// Throws std::invalid_argument when vocab_size leaves no room, or more than the corpus can fill.
[[nodiscard]] inline llama2c::tokenizer tiny_tokenizer(int vocab_size = 512) {
  // Words as sequences of characters (ASCII only in the corpus, so a character is a byte).
  std::map<std::vector<std::string>, int> words;
  std::map<std::string, int> chars;
  {
    const std::string text = tiny_corpus;
    std::size_t i = 0;
    while (i < text.size()) {
      std::size_t j = text.find(' ', i + 1);
      if (j == std::string::npos) j = text.size();
      std::vector<std::string> w;
      if (i == 0) w.emplace_back(" ");  // the dummy prefix of the first word
      for (std::size_t k = i; k < j; ++k) w.emplace_back(1, text[k]);
      for (const auto& c : w) ++chars[c];
      ++words[w];
      i = j;
    }
  }
  const int fixed = 3 + 256 + static_cast<int>(chars.size());
  if (vocab_size < fixed)
    throw std::invalid_argument("tiny_tokenizer: vocab_size " + std::to_string(vocab_size) + " < " + std::to_string(fixed));
  const int n_merges = vocab_size - fixed;

  std::vector<std::string> merges;
  std::vector<std::pair<std::vector<std::string>, int>> corpus(words.begin(), words.end());
  while (static_cast<int>(merges.size()) < n_merges) {
    std::map<std::pair<std::string, std::string>, int> pairs;
    for (const auto& [w, n] : corpus)
      for (std::size_t k = 0; k + 1 < w.size(); ++k) pairs[{w[k], w[k + 1]}] += n;
    // The most frequent pair; among equals, the first in the map's order (deterministic).
    auto best = pairs.end();
    for (auto it = pairs.begin(); it != pairs.end(); ++it)
      if (std::find(merges.begin(), merges.end(), it->first.first + it->first.second) == merges.end() &&
          (best == pairs.end() || it->second > best->second))
        best = it;
    if (best == pairs.end())
      throw std::invalid_argument("tiny_tokenizer: the corpus yields only " + std::to_string(merges.size()) + " merges, " +
                                  std::to_string(n_merges) + " asked");
    const auto [a, b] = best->first;
    merges.push_back(a + b);
    for (auto& [w, n] : corpus) {
      std::vector<std::string> merged;
      for (std::size_t k = 0; k < w.size(); ++k) {
        if (k + 1 < w.size() && w[k] == a && w[k + 1] == b) {
          merged.push_back(a + b);
          ++k;
        } else {
          merged.push_back(w[k]);
        }
      }
      w = std::move(merged);
    }
  }

  llama2c::tokenizer t;
  auto add = [&](std::string piece, float score) {
    t.max_token_length = std::max(t.max_token_length, static_cast<int>(piece.size()));
    t.vocab.push_back(std::move(piece));
    t.scores.push_back(score);
  };
  add("<unk>", 0.0f);
  add("\n<s>\n", 0.0f);
  add("\n</s>\n", 0.0f);
  static constexpr char hex[] = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) add(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">", 0.0f);
  for (std::size_t r = 0; r < merges.size(); ++r) add(merges[r], -static_cast<float>(r));
  // Single characters after the merges, the most frequent first.
  std::vector<std::pair<std::string, int>> by_count(chars.begin(), chars.end());
  std::stable_sort(by_count.begin(), by_count.end(), [](const auto& x, const auto& y) { return x.second > y.second; });
  for (std::size_t r = 0; r < by_count.size(); ++r) add(by_count[r].first, -static_cast<float>(merges.size() + r));
  return t;
}

// Writes a tokenizer in llama2.c's file form (int32 max_token_length; per token float32 score, int32
// length, bytes), which llama2c::load_tokenizer reads back.
inline void save_tokenizer(const llama2c::tokenizer& t, const std::filesystem::path& path) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error("cannot write '" + path.string() + "'");
  const std::int32_t max_len = t.max_token_length;
  out.write(reinterpret_cast<const char*>(&max_len), 4);
  for (std::size_t i = 0; i < t.vocab.size(); ++i) {
    const float score = t.scores[i];
    const std::int32_t len = static_cast<std::int32_t>(t.vocab[i].size());
    out.write(reinterpret_cast<const char*>(&score), 4);
    out.write(reinterpret_cast<const char*>(&len), 4);
    out.write(t.vocab[i].data(), len);
  }
  if (!out) throw std::runtime_error("failed writing '" + path.string() + "'");
}

struct tiny_llama_files {
  std::string model, tokenizer;
};

// The model and its vocabulary as llama2.c files in `dir` (created if missing); rewritten each call.
inline tiny_llama_files write_tiny_llama(const std::filesystem::path& dir, const tiny_llama_options& o = {}) {
  std::filesystem::create_directories(dir);
  tiny_llama_files f{(dir / "tiny_llama.bin").string(), (dir / "tiny_tok.bin").string()};
  llama2c::save_checkpoint(tiny_llama(o), f.model);
  save_tokenizer(tiny_tokenizer(o.vocab_size), f.tokenizer);
  return f;
}

}  // namespace mixprec::test
