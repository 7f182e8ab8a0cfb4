// Seeded random-weight GGUFs of the architectures the engine runs ("llama" as Llama 3 has it, "qwen2",
// "qwen3", "phi3", "qwen2moe", "qwen3moe", and "llama" with experts as Mixtral), written by the tests
// themselves with the structure llama.cpp loads for each: the keys under
// the architecture's prefix, the tensors of its graph (qwen2's q/k/v biases, qwen3's head norms and a
// head size other than dim / n_heads, Llama 3's rope_freqs and large RoPE base, phi3's fused attn_qkv and
// ffn_up of gate and up, the MoEs' router, 3-D expert stacks and qwen2moe's shared expert), F32 throughout. The
// vocabulary is another GGUF's (every "tokenizer." key copied, e.g. from the converted tiny_llama), so
// that llama.cpp loads the file; the vocabulary size follows from it. No weight is trained: the logits
// of these models are what a random network computes, varied enough to compare two engines on.
//
//   tiny_arch_options o{.arch = "qwen3"};
//   write_tiny_arch(path, o, gguf::file::open(tokenizer_gguf).kvs());
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "mixprec/io/gguf.hpp"

namespace mixprec::test {

struct tiny_arch_options {
  std::string arch = "llama";  // "llama", "qwen2", "qwen3", "phi3", "qwen2moe" or "qwen3moe"
  int dim = 64;
  int hidden_dim = 96;
  int n_layers = 2;
  int n_heads = 4;
  int n_kv_heads = 2;
  int head_dim = 0;             // 0: dim / n_heads; written as ARCH.attention.key_length / value_length
  int context_length = 128;
  float rope_theta = 10000.0f;
  float rms_eps = 1e-6f;
  bool tied = false;            // no output.weight: the embedding is the classifier
  bool rope_freqs = false;      // rope_freqs.weight ("llama" only), factors in [1, 4]
  int n_expert = 0;             // > 0: a mixture of experts ("llama" as Mixtral, "qwen2moe", "qwen3moe")
  int n_expert_used = 0;
  int expert_hidden_dim = 0;    // the Qwen MoEs' expert_feed_forward_length ("llama": hidden_dim)
  int shared_hidden_dim = 0;    // "qwen2moe": the shared expert's width
  std::uint32_t seed = 1;
};

// The options of each architecture's test model: llama as Llama 3 (GQA, base 500000, rope_freqs), qwen2
// (biases; tied classifier as the small Qwen2.5 models), qwen3 (head norms, heads of 32 values on a
// width of 64: q is 128 wide).
inline tiny_arch_options tiny_arch_defaults(const std::string& arch) {
  tiny_arch_options o;
  o.arch = arch;
  if (arch == "llama") {
    o.rope_theta = 500000.0f;
    o.rope_freqs = true;
    o.rms_eps = 1e-5f;
  } else if (arch == "qwen2") {
    o.rope_theta = 1000000.0f;
    o.tied = true;
  } else if (arch == "qwen3") {
    o.head_dim = 32;
    o.rope_theta = 1000000.0f;
  } else if (arch == "phi3") {
    o.n_kv_heads = o.n_heads;  // Phi-3-mini has no GQA (Phi-4-mini has)
    o.rms_eps = 1e-5f;
  } else if (arch == "mixtral") {  // "llama" with 4 experts of feed_forward_length, 2 used per token
    o.arch = "llama";
    o.rope_theta = 1000000.0f;
    o.rms_eps = 1e-5f;
    o.n_expert = 4;
    o.n_expert_used = 2;
  } else if (arch == "qwen2moe") {  // biases, 4 experts of 32, 2 used, a shared expert of 64
    o.rope_theta = 1000000.0f;
    o.n_expert = 4;
    o.n_expert_used = 2;
    o.expert_hidden_dim = 32;
    o.shared_hidden_dim = 64;
  } else if (arch == "qwen3moe") {  // head norms, heads of 32, 8 experts of 32, 3 used
    o.head_dim = 32;
    o.rope_theta = 1000000.0f;
    o.n_expert = 8;
    o.n_expert_used = 3;
    o.expert_hidden_dim = 32;
  }
  return o;
}

// Writes the model to `path`; every key of `tokenizer` whose name starts with "tokenizer." is copied.
inline void write_tiny_arch(const std::string& path, const tiny_arch_options& o, const gguf::metadata& tokenizer) {
  const gguf::value* tokens = tokenizer.find("tokenizer.ggml.tokens");
  if (!tokens || !tokens->get_if<gguf::array>()) throw std::invalid_argument("write_tiny_arch: the tokenizer has no tokenizer.ggml.tokens");
  const int vocab = static_cast<int>(tokens->get_if<gguf::array>()->items.size());
  const int hs = o.head_dim > 0 ? o.head_dim : o.dim / o.n_heads, q_dim = hs * o.n_heads, kv_dim = hs * o.n_kv_heads;
  const bool qwen2 = o.arch == "qwen2" || o.arch == "qwen2moe", qwen3 = o.arch == "qwen3" || o.arch == "qwen3moe", phi3 = o.arch == "phi3";
  const int expert_ff = o.arch == "llama" ? o.hidden_dim : o.expert_hidden_dim;

  gguf::metadata kvs;
  const std::string k = o.arch + ".";
  auto u32 = [](int v) { return gguf::value(static_cast<std::uint32_t>(v)); };
  kvs.set("general.architecture", gguf::value(o.arch));
  // Not the architecture's name: llama.cpp gives vocabularies of models named "phi3" Phi-3's special
  // tokens' attributes (llama_vocab::load), which this vocabulary does not have.
  kvs.set("general.name", gguf::value("mixprec tiny test model"));
  kvs.set("general.file_type", gguf::value(std::uint32_t{0}));
  kvs.set(k + "context_length", u32(o.context_length));
  kvs.set(k + "embedding_length", u32(o.dim));
  kvs.set(k + "feed_forward_length", u32(o.hidden_dim));
  kvs.set(k + "block_count", u32(o.n_layers));
  kvs.set(k + "attention.head_count", u32(o.n_heads));
  kvs.set(k + "attention.head_count_kv", u32(o.n_kv_heads));
  if (o.head_dim > 0) {
    kvs.set(k + "attention.key_length", u32(hs));
    kvs.set(k + "attention.value_length", u32(hs));
  }
  kvs.set(k + "rope.dimension_count", u32(hs));
  kvs.set(k + "rope.freq_base", gguf::value(o.rope_theta));
  kvs.set(k + "attention.layer_norm_rms_epsilon", gguf::value(o.rms_eps));
  if (o.n_expert > 0) {
    kvs.set(k + "expert_count", u32(o.n_expert));
    kvs.set(k + "expert_used_count", u32(o.n_expert_used));
    if (o.arch != "llama") kvs.set(k + "expert_feed_forward_length", u32(o.expert_hidden_dim));
    if (o.shared_hidden_dim > 0) kvs.set(k + "expert_shared_feed_forward_length", u32(o.shared_hidden_dim));
  }
  for (const gguf::kv& e : tokenizer)
    if (e.key.starts_with("tokenizer.")) kvs.set(e.key, e.val);

  std::mt19937 gen(o.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<std::vector<float>> store;  // the tensors' values, alive until written
  std::vector<gguf::tensor_source> ts;
  auto add = [&](const std::string& name, std::vector<std::uint64_t> dims, float mean, float sd) {
    std::size_t n = 1;
    for (auto d : dims) n *= static_cast<std::size_t>(d);
    std::vector<float> v(n);
    for (float& x : v) x = mean + sd * normal(gen);
    store.push_back(std::move(v));
    gguf::tensor_source s;
    s.name = name;
    s.type = 0;
    s.dims = std::move(dims);
    ts.push_back(std::move(s));
  };
  auto u = [](int v) { return static_cast<std::uint64_t>(v); };
  // A matrix of `rows` outputs and `cols` inputs: GGUF dims {cols, rows}; entries N(0, gain^2 / cols).
  auto matrix = [&](const std::string& name, int rows, int cols, float gain) {
    add(name, {u(cols), u(rows)}, 0.0f, gain / std::sqrt(static_cast<float>(cols)));
  };
  add("token_embd.weight", {u(o.dim), u(vocab)}, 0.0f, 1.0f);
  add("output_norm.weight", {u(o.dim)}, 1.0f, 0.1f);
  if (!o.tied) matrix("output.weight", vocab, o.dim, 3.0f);
  if (o.rope_freqs) {
    add("rope_freqs.weight", {u(hs / 2)}, 0.0f, 0.0f);
    for (std::size_t i = 0; i < store.back().size(); ++i)
      store.back()[i] = 1.0f + 3.0f * static_cast<float>(i) / static_cast<float>(store.back().size());
  }
  for (int l = 0; l < o.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", {u(o.dim)}, 1.0f, 0.1f);
    if (phi3) {
      matrix(p + "attn_qkv.weight", q_dim + 2 * kv_dim, o.dim, 2.0f);
    } else {
      matrix(p + "attn_q.weight", q_dim, o.dim, 2.0f);
      matrix(p + "attn_k.weight", kv_dim, o.dim, 2.0f);
      matrix(p + "attn_v.weight", kv_dim, o.dim, 1.0f);
    }
    if (qwen2) {
      add(p + "attn_q.bias", {u(q_dim)}, 0.0f, 0.5f);
      add(p + "attn_k.bias", {u(kv_dim)}, 0.0f, 0.5f);
      add(p + "attn_v.bias", {u(kv_dim)}, 0.0f, 0.5f);
    }
    if (qwen3) {
      add(p + "attn_q_norm.weight", {u(hs)}, 1.0f, 0.3f);
      add(p + "attn_k_norm.weight", {u(hs)}, 1.0f, 0.3f);
    }
    matrix(p + "attn_output.weight", o.dim, q_dim, 1.0f);
    add(p + "ffn_norm.weight", {u(o.dim)}, 1.0f, 0.1f);
    if (o.n_expert > 0) {
      // The router with a large gain, so that the experts' probabilities are far from ties.
      matrix(p + "ffn_gate_inp.weight", o.n_expert, o.dim, 4.0f);
      const float sd = 1.0f / std::sqrt(static_cast<float>(o.dim));
      add(p + "ffn_gate_exps.weight", {u(o.dim), u(expert_ff), u(o.n_expert)}, 0.0f, sd);
      add(p + "ffn_up_exps.weight", {u(o.dim), u(expert_ff), u(o.n_expert)}, 0.0f, sd);
      add(p + "ffn_down_exps.weight", {u(expert_ff), u(o.dim), u(o.n_expert)}, 0.0f, 1.0f / std::sqrt(static_cast<float>(expert_ff)));
      if (o.shared_hidden_dim > 0) {
        add(p + "ffn_gate_inp_shexp.weight", {u(o.dim)}, 0.0f, 1.0f / std::sqrt(static_cast<float>(o.dim)));
        matrix(p + "ffn_gate_shexp.weight", o.shared_hidden_dim, o.dim, 1.0f);
        matrix(p + "ffn_up_shexp.weight", o.shared_hidden_dim, o.dim, 1.0f);
        matrix(p + "ffn_down_shexp.weight", o.dim, o.shared_hidden_dim, 1.0f);
      }
      continue;
    }
    if (phi3) {
      matrix(p + "ffn_up.weight", 2 * o.hidden_dim, o.dim, 1.0f);  // gate's rows, then up's
    } else {
      matrix(p + "ffn_gate.weight", o.hidden_dim, o.dim, 1.0f);
      matrix(p + "ffn_up.weight", o.hidden_dim, o.dim, 1.0f);
    }
    matrix(p + "ffn_down.weight", o.dim, o.hidden_dim, 1.0f);
  }
  for (std::size_t i = 0; i < ts.size(); ++i) ts[i].bytes = std::as_bytes(std::span<const float>(store[i]));
  gguf::write(path, kvs, ts);
}

}  // namespace mixprec::test
