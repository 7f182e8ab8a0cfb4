// Loading a LLaMA-family model: a GGUF of one of the architectures in llama_architectures (what each
// adds to the llama graph, read from its own ARCH.* keys), or a llama2.c checkpoint.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "mixprec/error.hpp"
#include "mixprec/formats/ggml.hpp"
#include "mixprec/io/gguf.hpp"
#include "mixprec/io/llama2c.hpp"
#include "mixprec/models/llama/model.hpp"
#include "mixprec/types.hpp"

namespace mixprec::models {

// A llama2.c checkpoint as a model: matrices named "layers.N.wq" ... "layers.N.w3" and "classifier"
// (always present, a copy of the embedding when llama2.c shares it, as llama2c::checkpoint holds it),
// the embedding "token_embedding"; RMSNorm eps 1e-5, RoPE theta 10000 on the whole head (run.c's).
[[nodiscard]] inline llama_model from_llama2c(llama2c::checkpoint ck) {
  llama_model m;
  const llama2c::config& c = ck.cfg;
  llama_config& mc = m.config;
  mc.dim = c.dim;
  mc.hidden_dim = c.hidden_dim;
  mc.n_layers = c.n_layers;
  mc.n_heads = c.n_heads;
  mc.n_kv_heads = c.n_kv_heads;
  mc.vocab_size = c.vocab_size;
  mc.context_length = c.seq_len;
  mc.rope_dim = c.head_size();
  m.token_embd = llama_matrix("token_embedding", std::move(ck.token_embedding));
  for (std::size_t i = 0; i < ck.layers.size(); ++i) {
    auto& w = ck.layers[i];
    const std::string p = "layers." + std::to_string(i) + ".";
    llama_layer l;
    l.attn_norm = std::move(w.rms_att);
    l.ffn_norm = std::move(w.rms_ffn);
    l.wq = llama_matrix(p + "wq", std::move(w.wq));
    l.wk = llama_matrix(p + "wk", std::move(w.wk));
    l.wv = llama_matrix(p + "wv", std::move(w.wv));
    l.wo = llama_matrix(p + "wo", std::move(w.wo));
    l.gate = llama_matrix(p + "w1", std::move(w.w1));
    l.down = llama_matrix(p + "w2", std::move(w.w2));
    l.up = llama_matrix(p + "w3", std::move(w.w3));
    m.layers.push_back(std::move(l));
  }
  m.output_norm = std::move(ck.rms_final);
  m.output = llama_matrix("classifier", std::move(ck.classifier));
  m.validate();
  return m;
}

namespace detail {

inline std::string dims_text(const std::vector<std::uint64_t>& d) {
  std::string s = "{";
  for (std::size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "}";
}

// The tensor `name`, checked to be `dims` (ne0 first; trailing 1s allowed) and of a type mixprec reads.
inline const gguf::tensor_info& gguf_tensor(const gguf::file& g, const std::string& name, std::vector<std::uint64_t> dims) {
  const gguf::tensor_info* t = g.find(name);
  if (!t) throw error(errc::parse_error, "GGUF '" + g.path() + "': the model needs the tensor '" + name + "'");
  std::vector<std::uint64_t> have = t->dims;
  while (have.size() > dims.size() && have.back() == 1) have.pop_back();
  if (have != dims)
    throw error(errc::shape_mismatch, "GGUF '" + g.path() + "': tensor '" + name + "' has dims " + dims_text(t->dims) + ", expected " +
                                          dims_text(dims) + " (ne0 = input features)");
  if (!is_supported_ggml_type(t->type)) {
    const auto tt = gguf::type_traits_of(t->type);
    throw error(errc::unsupported, "GGUF '" + g.path() + "': tensor '" + name + "' has type " +
                                       (tt ? std::string(tt->name) : std::to_string(t->type)) + ", which mixprec does not implement");
  }
  return *t;
}

// A tensor's values as FP32 (rows x ne0).
inline row_matrix gguf_floats(const gguf::file& g, const gguf::tensor_info& t) {
  if (t.type == 0 || t.type == 1 || t.type == 30) return g.to_float(t.name);
  return ggml::dequantize(static_cast<ggml_type>(t.type), t.bytes, static_cast<index_t>(t.rows()), static_cast<index_t>(t.row_length()),
                          t.name);
}

inline Eigen::VectorXf gguf_vector(const gguf::file& g, const std::string& name, std::uint64_t n) {
  const row_matrix m = gguf_floats(g, gguf_tensor(g, name, {n}));
  return Eigen::Map<const Eigen::VectorXf>(m.data(), m.size());
}

// A matrix of `rows` x `cols` (GGUF dims {cols, rows}) kept as stored: F32 as FP32, the others as a
// quantized_tensor holding the file's bytes. With experts > 0, a stack of that many such matrices (GGUF
// dims {cols, rows, experts}) held as one of experts * rows rows.
inline llama_matrix gguf_matrix(const gguf::file& g, const std::string& name, int rows, int cols, int experts = 0) {
  std::vector<std::uint64_t> dims = {static_cast<std::uint64_t>(cols), static_cast<std::uint64_t>(rows)};
  if (experts > 0) dims.push_back(static_cast<std::uint64_t>(experts));
  const gguf::tensor_info& t = gguf_tensor(g, name, dims);
  if (t.type == 0) return llama_matrix(name, g.to_float(name));
  const auto* p = reinterpret_cast<const std::uint8_t*>(t.bytes.data());
  const index_t all_rows = static_cast<index_t>(rows) * std::max(1, experts);
  return llama_matrix(name, quantized_tensor(ggml_spec(static_cast<ggml_type>(t.type)), all_rows, cols, std::vector<std::uint8_t>(p, p + t.size), {}, {}));
}

}  // namespace detail

// The architectures load_gguf reads (general.architecture), and what each adds to the llama graph.
// From llama.cpp's src/llama-model.cpp (tensors it loads, rope type) and convert_hf_to_gguf.py.
struct llama_architecture {
  std::string_view name;
  llama_config::rope_type rope;
  bool qk_norm;    // attn_q_norm / attn_k_norm: required ("qwen3")
  bool rope_freqs;  // rope_freqs.weight may be present (Llama 3.1's scaling)
  bool fused;       // attn_qkv (or attn_q/k/v) and ffn_up of 2 x feed_forward_length, no ffn_gate ("phi3")
  enum class experts { none, optional, required } moe = experts::none;  // ARCH.expert_count > 0 allowed / needed
  bool expert_weights_norm = false;  // the chosen experts' weights renormalised (build_moe_ffn's norm_w)
  bool shared_expert = false;        // ffn_{gate,up,down}_shexp and ffn_gate_inp_shexp ("qwen2moe")
};
inline constexpr llama_architecture llama_architectures[] = {
    // Llama 1/2/3, Mistral, llama2.c; with ARCH.expert_count, Mixtral
    {"llama", llama_config::rope_type::norm, false, true, false, llama_architecture::experts::optional, true},
    {"qwen2", llama_config::rope_type::neox, false, false, false},  // Qwen1.5, Qwen2, Qwen2.5 (q/k/v biases)
    {"qwen3", llama_config::rope_type::neox, true, false, false},   // Qwen3 (dense)
    {"phi3", llama_config::rope_type::neox, false, false, true},    // Phi-3, Phi-3.5, Phi-4-mini (without LongRoPE factors)
    // Qwen1.5-MoE, Qwen2-MoE (q/k/v biases, a shared expert; weights not renormalised)
    {"qwen2moe", llama_config::rope_type::neox, false, false, false, llama_architecture::experts::required, false, true},
    {"qwen3moe", llama_config::rope_type::neox, true, false, false, llama_architecture::experts::required, true},  // Qwen3-MoE
};

// A GGUF of general.architecture "llama", "qwen2", "qwen3", "phi3", "qwen2moe" or "qwen3moe" as a model, matrices kept as stored (see
// llama_matrix) and named by their tensor names. Reads, with ARCH the architecture's name:
// ARCH.embedding_length, feed_forward_length, block_count, attention.head_count, context_length,
// attention.layer_norm_rms_epsilon (required), attention.head_count_kv (default head_count),
// attention.key_length / value_length (equal; default dim / head_count), rope.dimension_count (default
// head size), rope.freq_base (default 10000), rope.scaling.type ("none", or "linear" with
// rope.scaling.factor; also the older rope.scale_linear), vocab_size (optional, checked). Tensors:
// token_embd, output_norm, output (absent: tied), rope_freqs ("llama" only, optional),
// blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down}, each
// ".weight"; blk.N.attn_{q,k,v}.bias each when present (Qwen2 has them), "qwen3" blk.N.attn_q_norm
// and attn_k_norm, "phi3" blk.N.attn_qkv (else attn_q/k/v) and an ffn_up of 2 x feed_forward_length
// rows for gate and up (no ffn_gate; phi3's LongRoPE factors are refused). Mixtures of experts
// ("qwen2moe", "qwen3moe", and "llama" with ARCH.expert_count > 0 as Mixtral): ARCH.expert_count,
// expert_used_count, expert_feed_forward_length (Qwen MoEs; default feed_forward_length /
// expert_used_count; "llama": feed_forward_length), expert_shared_feed_forward_length ("qwen2moe";
// default feed_forward_length); per layer ffn_gate_inp, ffn_{gate,up,down}_exps (3-D: {dim, ff,
// experts}, {ff, dim, experts}) instead of ffn_gate/up/down, and "qwen2moe"'s ffn_{gate,up,down}_shexp
// and ffn_gate_inp_shexp. Types F32, F16, BF16 and every ggml block type mixprec implements (biases and norms
// F32). Throws mixprec::error: errc::unsupported for another architecture, a rope scaling type other
// than none/linear, experts in a dense architecture or in groups (expert_group_count > 1), a value_length other than key_length, a tensor
// type mixprec does not implement, or a tensor the engine would not use; errc::parse_error for a
// missing key or tensor or a malformed value; errc::shape_mismatch for a tensor of other dims. Every
// message names the file and the key or tensor.
[[nodiscard]] inline llama_model load_gguf(const gguf::file& g) {
  const std::string file = "GGUF '" + g.path() + "': ";
  const gguf::value* arch = g.kvs().find("general.architecture");
  if (!arch) throw error(errc::parse_error, file + "no key 'general.architecture'");
  const std::string* arch_name = arch->get_if<std::string>();
  if (!arch_name) throw error(errc::parse_error, file + "key 'general.architecture' is not a string");
  const llama_architecture* a = nullptr;
  for (const llama_architecture& x : llama_architectures)
    if (x.name == *arch_name) a = &x;
  if (!a)
    throw error(errc::unsupported,
                file + "general.architecture is '" + *arch_name + "'; this engine runs 'llama', 'qwen2', 'qwen3', 'phi3', 'qwen2moe' and 'qwen3moe'");
  const std::string k = *arch_name + ".";  // the prefix of the architecture's keys

  llama_model m;
  llama_config& c = m.config;
  c.rope = a->rope;
  c.dim = gguf::count_kv(g, k + "embedding_length");
  c.hidden_dim = gguf::count_kv(g, k + "feed_forward_length");
  c.n_layers = gguf::count_kv(g, k + "block_count");
  c.n_heads = gguf::count_kv(g, k + "attention.head_count");
  c.n_kv_heads = gguf::count_kv(g, k + "attention.head_count_kv", c.n_heads);
  c.context_length = gguf::count_kv(g, k + "context_length");
  if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0)
    throw error(errc::parse_error, file + k + "attention.head_count " + std::to_string(c.n_heads) + " is not a multiple of " + k +
                                       "attention.head_count_kv " + std::to_string(c.n_kv_heads));
  // The head size: key_length, else dim / head_count (llama.cpp's n_embd_head_k); value_length must equal it.
  if (const auto hd = gguf::uint_kv(g, k + "attention.key_length")) {
    if (*hd == 0 || *hd > 65536) throw error(errc::parse_error, file + k + "attention.key_length " + std::to_string(*hd) + " is out of range");
    if (*hd * static_cast<std::uint64_t>(c.n_heads) != static_cast<std::uint64_t>(c.dim)) c.head_dim = static_cast<int>(*hd);
  }
  if (c.head_dim == 0 && c.dim % c.n_heads != 0)
    throw error(errc::parse_error, file + k + "embedding_length " + std::to_string(c.dim) + " is not a multiple of " + k +
                                       "attention.head_count " + std::to_string(c.n_heads) + " and the file gives no attention.key_length");
  if (static_cast<std::uint64_t>(c.head_size()) * static_cast<std::uint64_t>(c.n_heads) > llama_config::max_width)
    throw error(errc::parse_error, file + k + "attention.head_count " + std::to_string(c.n_heads) + " heads of " + std::to_string(c.head_size()) +
                                       " values are more than " + std::to_string(llama_config::max_width));
  if (const auto v = gguf::uint_kv(g, k + "attention.value_length"); v && *v != static_cast<std::uint64_t>(c.head_size()))
    throw error(errc::unsupported, file + k + "attention.value_length " + std::to_string(*v) + " differs from the key head size " +
                                       std::to_string(c.head_size()) + "; this engine needs them equal");
  if (const auto f = gguf::float_kv(g, k + "rope.scaling.attn_factor"); f && *f != 1.0)
    throw error(errc::unsupported, file + k + "rope.scaling.attn_factor " + std::to_string(*f) + " is not implemented (only 1)");
  if (const auto e = gguf::uint_kv(g, k + "expert_count"); e && *e > 0) {
    if (a->moe == llama_architecture::experts::none)
      throw error(errc::unsupported, file + "key '" + k + "expert_count' = " + std::to_string(*e) + ": experts are not part of the " + *arch_name + " graph");
    if (*e > 65536) throw error(errc::parse_error, file + k + "expert_count " + std::to_string(*e) + " is out of range");
    c.n_expert = static_cast<int>(*e);
  } else if (a->moe == llama_architecture::experts::required) {
    throw error(errc::parse_error, file + "the " + *arch_name + " model needs the key '" + k + "expert_count' > 0");
  }
  if (c.n_expert > 0) {
    c.n_expert_used = gguf::count_kv(g, k + "expert_used_count");
    if (c.n_expert_used > c.n_expert)
      throw error(errc::parse_error, file + k + "expert_used_count " + std::to_string(c.n_expert_used) + " is more than " + k + "expert_count " +
                                         std::to_string(c.n_expert));
    if (const auto groups = gguf::uint_kv(g, k + "expert_group_count"); groups && *groups > 1)
      throw error(errc::unsupported, file + k + "expert_group_count " + std::to_string(*groups) + ": grouped expert selection is not implemented");
    // llama.cpp: "llama" experts are feed_forward_length wide; the Qwen MoEs' expert_feed_forward_length,
    // else feed_forward_length / expert_used_count.
    c.expert_hidden_dim = a->moe == llama_architecture::experts::optional
                              ? c.hidden_dim
                              : gguf::count_kv(g, k + "expert_feed_forward_length", c.hidden_dim / c.n_expert_used);
    if (a->shared_expert) c.shared_hidden_dim = gguf::count_kv(g, k + "expert_shared_feed_forward_length", c.hidden_dim);
    c.expert_weights_norm = a->expert_weights_norm;
  }
  c.rope_dim = gguf::count_kv(g, k + "rope.dimension_count", c.head_size());
  if (c.rope_dim % 2 != 0 || c.rope_dim > c.head_size())
    throw error(errc::parse_error, file + k + "rope.dimension_count " + std::to_string(c.rope_dim) + " must be even and at most the head size " +
                                       std::to_string(c.head_size()));
  const auto eps = gguf::float_kv(g, k + "attention.layer_norm_rms_epsilon");
  if (!eps) throw error(errc::parse_error, file + "the " + *arch_name + " model needs the key '" + k + "attention.layer_norm_rms_epsilon'");
  if (!(*eps > 0.0 && *eps < 1.0)) throw error(errc::parse_error, file + k + "attention.layer_norm_rms_epsilon must be in (0, 1)");
  c.rms_eps = static_cast<float>(*eps);
  const auto base = gguf::float_kv(g, k + "rope.freq_base");
  if (base && !(*base > 0.0 && std::isfinite(*base))) throw error(errc::parse_error, file + k + "rope.freq_base must be positive");
  c.rope_theta = base ? static_cast<float>(*base) : 10000.0f;
  std::string scaling = "none";
  if (const gguf::value* v = g.kvs().find(k + "rope.scaling.type")) {
    const std::string* s = v->get_if<std::string>();
    if (!s) throw error(errc::parse_error, file + "key '" + k + "rope.scaling.type' is not a string");
    scaling = *s;
  }
  if (scaling == "linear") {
    const auto f = gguf::float_kv(g, k + "rope.scaling.factor");
    if (!f) throw error(errc::parse_error, file + k + "rope.scaling.type 'linear' needs the key '" + k + "rope.scaling.factor'");
    if (!(*f > 0.0 && std::isfinite(*f))) throw error(errc::parse_error, file + k + "rope.scaling.factor must be positive");
    c.rope_freq_scale = static_cast<float>(1.0 / *f);
  } else if (scaling != "none") {
    throw error(errc::unsupported, file + k + "rope.scaling.type '" + scaling + "' is not implemented (none and linear are)");
  }
  if (scaling == "none")
    if (const auto f = gguf::float_kv(g, k + "rope.scale_linear"); f && *f != 1.0) {  // the older key
      if (!(*f > 0.0 && std::isfinite(*f))) throw error(errc::parse_error, file + k + "rope.scale_linear must be positive");
      c.rope_freq_scale = static_cast<float>(1.0 / *f);
    }

  const gguf::tensor_info* embd = g.find("token_embd.weight");
  if (!embd) throw error(errc::parse_error, file + "the model needs the tensor 'token_embd.weight'");
  if (embd->dims.size() < 2 || embd->rows() > (1u << 30))
    throw error(errc::shape_mismatch, file + "tensor 'token_embd.weight' has dims " + detail::dims_text(embd->dims) + ", expected {" +
                                          std::to_string(c.dim) + ", vocab}");
  c.vocab_size = static_cast<int>(embd->rows());
  if (const auto v = gguf::uint_kv(g, k + "vocab_size"); v && *v != static_cast<std::uint64_t>(c.vocab_size))
    throw error(errc::shape_mismatch, file + k + "vocab_size " + std::to_string(*v) + " differs from token_embd.weight's " +
                                          std::to_string(c.vocab_size) + " rows");

  std::vector<std::string> used = {"token_embd.weight", "output_norm.weight"};
  m.token_embd = detail::gguf_matrix(g, "token_embd.weight", c.vocab_size, c.dim);
  m.output_norm = detail::gguf_vector(g, "output_norm.weight", static_cast<std::uint64_t>(c.dim));
  if (g.find("output.weight")) {
    m.output = detail::gguf_matrix(g, "output.weight", c.vocab_size, c.dim);
    used.emplace_back("output.weight");
  }
  if (a->rope_freqs && g.find("rope_freqs.weight")) {
    m.rope_freq_factors = detail::gguf_vector(g, "rope_freqs.weight", static_cast<std::uint64_t>(c.rope_dim / 2));
    if (!(m.rope_freq_factors.array() > 0.0f).all() || !m.rope_freq_factors.allFinite())
      throw error(errc::parse_error, file + "tensor 'rope_freqs.weight' must hold positive factors");
    used.emplace_back("rope_freqs.weight");
  }
  const auto finite = [&](const Eigen::VectorXf& v, const std::string& n) {
    if (!v.allFinite()) throw error(errc::non_finite, file + "tensor '" + n + "' has non-finite values");
  };
  // A vector tensor, kept in `used` and checked finite.
  const auto vector = [&](const std::string& name, int n) {
    Eigen::VectorXf v = detail::gguf_vector(g, name, static_cast<std::uint64_t>(n));
    finite(v, name);
    used.push_back(name);
    return v;
  };
  const auto q = static_cast<std::uint64_t>(c.q_dim()), kv = static_cast<std::uint64_t>(c.kv_dim());
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    llama_layer l;
    l.attn_norm = vector(p + "attn_norm.weight", c.dim);
    l.ffn_norm = vector(p + "ffn_norm.weight", c.dim);
    if (a->fused && g.find(p + "attn_qkv.weight")) {
      l.wqkv = detail::gguf_matrix(g, p + "attn_qkv.weight", c.q_dim() + 2 * c.kv_dim(), c.dim);
      used.push_back(p + "attn_qkv.weight");
    } else {
      l.wq = detail::gguf_matrix(g, p + "attn_q.weight", c.q_dim(), c.dim);
      l.wk = detail::gguf_matrix(g, p + "attn_k.weight", c.kv_dim(), c.dim);
      l.wv = detail::gguf_matrix(g, p + "attn_v.weight", c.kv_dim(), c.dim);
      for (const char* n : {"attn_q", "attn_k", "attn_v"}) used.push_back(p + n + ".weight");
    }
    l.wo = detail::gguf_matrix(g, p + "attn_output.weight", c.dim, c.q_dim());
    used.push_back(p + "attn_output.weight");
    if (c.n_expert > 0) {
      l.gate_inp = detail::gguf_matrix(g, p + "ffn_gate_inp.weight", c.n_expert, c.dim);
      l.gate_exps = detail::gguf_matrix(g, p + "ffn_gate_exps.weight", c.expert_hidden_dim, c.dim, c.n_expert);
      l.up_exps = detail::gguf_matrix(g, p + "ffn_up_exps.weight", c.expert_hidden_dim, c.dim, c.n_expert);
      l.down_exps = detail::gguf_matrix(g, p + "ffn_down_exps.weight", c.dim, c.expert_hidden_dim, c.n_expert);
      for (const char* n : {"ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"}) used.push_back(p + n + ".weight");
      if (c.shared_hidden_dim > 0) {
        l.gate_shexp = detail::gguf_matrix(g, p + "ffn_gate_shexp.weight", c.shared_hidden_dim, c.dim);
        l.up_shexp = detail::gguf_matrix(g, p + "ffn_up_shexp.weight", c.shared_hidden_dim, c.dim);
        l.down_shexp = detail::gguf_matrix(g, p + "ffn_down_shexp.weight", c.dim, c.shared_hidden_dim);
        for (const char* n : {"ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"}) used.push_back(p + n + ".weight");
        l.gate_inp_shexp = vector(p + "ffn_gate_inp_shexp.weight", c.dim);
      }
    } else if (a->fused) {
      l.gate_up = detail::gguf_matrix(g, p + "ffn_up.weight", 2 * c.hidden_dim, c.dim);
    } else {
      l.gate = detail::gguf_matrix(g, p + "ffn_gate.weight", c.hidden_dim, c.dim);
      l.up = detail::gguf_matrix(g, p + "ffn_up.weight", c.hidden_dim, c.dim);
      used.push_back(p + "ffn_gate.weight");
    }
    if (c.n_expert == 0) {
      l.down = detail::gguf_matrix(g, p + "ffn_down.weight", c.dim, c.hidden_dim);
      for (const char* n : {"ffn_up", "ffn_down"}) used.push_back(p + n + ".weight");
    }
    // q/k/v biases, each when present (llama.cpp's create_tensor_qkv: Qwen2 has all three).
    if (!l.wqkv.present())
      for (auto [name, bias, n] : {std::tuple{"attn_q.bias", &l.bq, q}, {"attn_k.bias", &l.bk, kv}, {"attn_v.bias", &l.bv, kv}})
        if (g.find(p + name)) *bias = vector(p + name, static_cast<int>(n));
    if (a->qk_norm) {
      l.q_norm = vector(p + "attn_q_norm.weight", c.head_size());
      l.k_norm = vector(p + "attn_k_norm.weight", c.head_size());
    }
    m.layers.push_back(std::move(l));
  }
  finite(m.output_norm, "output_norm.weight");
  std::sort(used.begin(), used.end());
  for (const gguf::tensor_info& t : g.tensors())
    if (!std::binary_search(used.begin(), used.end(), t.name))
      throw error(errc::unsupported, file + "tensor '" + t.name + "' is not part of the " + *arch_name + " graph this engine runs");
  m.validate();
  return m;
}

[[nodiscard]] inline llama_model load_gguf(const std::string& path) { return load_gguf(gguf::file::open(path)); }

// A GGUF (by its magic "GGUF") or a llama2.c checkpoint; the errors of load_gguf or
// llama2c::load_checkpoint (errc::io_error for a file that cannot be read).
[[nodiscard]] inline llama_model load_llama(const std::string& path) {
  char magic[4] = {};
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw error(errc::io_error, "cannot open '" + path + "'");
    in.read(magic, 4);
  }
  if (std::memcmp(magic, "GGUF", 4) == 0) return load_gguf(path);
  return from_llama2c(llama2c::load_checkpoint(path));
}

}  // namespace mixprec::models
