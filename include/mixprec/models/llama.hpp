// A LLaMA-family inference engine on mixprec, for measuring quantization on real models: loads a GGUF
// of architecture "llama" (Llama 1/2/3, Mistral), "qwen2" (Qwen2/2.5), "qwen3" (dense Qwen3) or "phi3"
// (Phi-3, Phi-4-mini), as llama.cpp writes them, or a llama2.c checkpoint, and runs the forward pass token by token with a KV
// cache or a whole sequence at once, every weight matrix either as stored (FP32 by Eigen; F16, BF16 and
// llama.cpp's block types straight from their bytes by mixprec::gemv, no FP32 copy; block types take
// their activations quantized as ggml does unless engine_options::activations is fp32)
// or re-quantized by one spec per matrix (a mixprec::quantized_linear built from a plan entry).
//
// The forward pass (llama2.c's run.c and llama.cpp's "llama", "qwen2", "qwen3" and "phi3" graphs compute
// the same thing), per layer:
//   h  = x + Wo attention(RoPE(N_q(Wq n + bq)), RoPE(N_k(Wk n + bk)), Wv n + bv),   n = rmsnorm(x) * attn_norm
//   x' = h + Wdown (silu(Wgate m) * (Wup m)),                m = rmsnorm(h) * ffn_norm
//   rmsnorm(x) = x / sqrt(mean(x^2) + eps)                   eps: ARCH.attention.layer_norm_rms_epsilon
// then logits = Woutput (rmsnorm(x) * output_norm). The biases b (qwen2; some llama files) and the head
// norms N (qwen3: rmsnorm of each head times attn_q_norm / attn_k_norm) are absent from other models;
// phi3 stores [Wq; Wk; Wv] and [Wgate; Wup] as one matrix each (run as one product, split after it).
// Attention: grouped-query (head h reads KV head h / (n_heads / n_kv_heads)), heads of head_size values
// (ARCH.attention.key_length, else dim / n_heads), scores q.k / sqrt(head_size), causal softmax in FP32.
// RoPE: pair i of each head, i < rope_dim / 2, is rotated by the angle p * s / f_i * theta^(-2i / rope_dim)
// (p the position, s the linear scaling 1 / ARCH.rope.scaling.factor, f_i rope_freqs.weight[i] when the
// file has it, else 1); the remaining head_size - rope_dim values pass unchanged. Pair i is the values
// (2i, 2i+1) in llama.cpp's NORM mode, which "llama" uses, and (i, i + rope_dim / 2) in its NEOX mode,
// which "qwen2" and "qwen3" use. llama2.c's RoPE on interleaved pairs is NORM (its converter does not
// permute wq/wk; llama.cpp's convert_hf_to_gguf permutes HF's half-split q/k into that order for
// "llama" and leaves them for the NEOX architectures), so one engine runs every kind of file.
//
// Matrices are (out x in) row-major; a GGUF tensor of dims {ne0, ne1} is ne1 rows of ne0 inputs.
// Numerics: FP32 throughout, the RoPE angles computed as ggml computes them (set_rope); forward() runs
// one token against the KV cache, logits() a whole sequence with matrix-matrix products (prefill).
// Against llama.cpp's libllama on seeded models of each architecture (tests/interop/llama_arch_test.cpp;
// F32 weights and KV cache): logits within 2e-6 of the largest |logit|.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixprec/types.hpp"
#include "mixprec/error.hpp"
#include "mixprec/formats/float_convert.hpp"
#include "mixprec/formats/ggml.hpp"
#include "mixprec/detail/parallel.hpp"
#include "mixprec/io/gguf.hpp"
#include "mixprec/io/llama2c.hpp"
#include "mixprec/kernels/ref/gemv_ref.hpp"
#include "mixprec/kernels/quantized_linear.hpp"
#include "mixprec/quantize/quantize.hpp"

namespace mixprec::models {

// The hyper-parameters of a LLaMA-family model (GGUF keys "llama.*"; llama2.c's header).
struct llama_config {
  int dim = 0;             // embedding length (llama.embedding_length)
  int hidden_dim = 0;      // feed-forward length (llama.feed_forward_length)
  int n_layers = 0;        // llama.block_count
  int n_heads = 0;         // llama.attention.head_count
  int n_kv_heads = 0;      // llama.attention.head_count_kv (GQA; = n_heads when absent)
  int vocab_size = 0;      // rows of token_embd
  int context_length = 0;  // llama.context_length: the positions the KV cache holds at most
  int rope_dim = 0;        // llama.rope.dimension_count (even, <= head_size; default head_size)
  float rope_theta = 10000.0f;      // llama.rope.freq_base
  float rope_freq_scale = 1.0f;     // 1 / llama.rope.scaling.factor for scaling type "linear"
  float rms_eps = 1e-5f;            // llama.attention.layer_norm_rms_epsilon
  int head_dim = 0;                 // ARCH.attention.key_length (= value_length); 0: dim / n_heads
  // llama.cpp's rope types: NORM rotates the pairs (2i, 2i+1) ("llama"), NEOX the pairs (i, i + rope_dim/2)
  // ("qwen2", "qwen3": the order of Hugging Face's rotate_half, which their converter does not permute).
  enum class rope_type { norm, neox } rope = rope_type::norm;

  // The largest width (dim, q_dim, kv_dim, hidden_dim) validate() and load_gguf accept: sums of three
  // (q_dim + 2 kv_dim, the rows of a fused wqkv) stay within int.
  static constexpr std::int64_t max_width = std::int64_t{1} << 28;

  [[nodiscard]] int head_size() const noexcept { return head_dim > 0 ? head_dim : n_heads > 0 ? dim / n_heads : 0; }
  [[nodiscard]] int q_dim() const noexcept { return head_size() * n_heads; }  // rows of wq, columns of wo
  [[nodiscard]] int kv_dim() const noexcept { return head_size() * n_kv_heads; }
};

// One weight matrix (out x in) as the model stores it: FP32, or a quantized_tensor holding the file's
// bytes unchanged (F16, BF16: spec fp16 / bf16; llama.cpp's block types: spec format ggml_block).
class llama_matrix {
 public:
  llama_matrix() = default;
  llama_matrix(std::string name, row_matrix w) : name_(std::move(name)), fp32_(std::move(w)) {}
  llama_matrix(std::string name, quantized_tensor q) : name_(std::move(name)), stored_(std::move(q)) {}

  // The name plans, specs and observers use: the GGUF tensor name ("blk.0.attn_q.weight") or the
  // llama2.c name ("layers.0.wq", "classifier").
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] index_t rows() const noexcept { return stored_ ? stored_->rows() : fp32_.rows(); }
  [[nodiscard]] index_t cols() const noexcept { return stored_ ? stored_->cols() : fp32_.cols(); }
  [[nodiscard]] bool is_fp32() const noexcept { return !stored_; }
  // False for a default-constructed matrix: a slot the model does not use (e.g. wq of a fused wqkv).
  [[nodiscard]] bool present() const noexcept { return rows() > 0; }
  [[nodiscard]] const row_matrix& fp32() const {
    if (stored_) throw error(errc::invalid_argument, "llama_matrix '" + name_ + "' is stored as " + to_string(stored_->spec()));
    return fp32_;
  }
  // The stored tensor (throws errc::invalid_argument for an FP32 matrix).
  [[nodiscard]] const quantized_tensor& stored() const {
    if (!stored_) throw error(errc::invalid_argument, "llama_matrix '" + name_ + "' is FP32");
    return *stored_;
  }
  // The storage format: fp32, fp16, bf16 or a ggml_block spec.
  [[nodiscard]] quant_spec spec() const noexcept { return stored_ ? stored_->spec() : ggml_spec(ggml_type::f32); }
  // Bytes as stored.
  [[nodiscard]] std::size_t bytes() const noexcept {
    return stored_ ? stored_->bytes() : static_cast<std::size_t>(fp32_.size()) * sizeof(float);
  }
  // The values as FP32 (exact for FP32/F16/BF16; ggml's dequantization for blocks).
  [[nodiscard]] row_matrix to_float() const { return stored_ ? dequantize(*stored_) : fp32_; }
  // Row r as FP32 into out (cols() floats): the embedding lookup.
  void row(index_t r, float* out) const {
    if (r < 0 || r >= rows()) throw error(errc::invalid_argument, "llama_matrix '" + name_ + "': row " + std::to_string(r) + " out of range");
    if (!stored_) {
      std::memcpy(out, fp32_.row(r).data(), static_cast<std::size_t>(cols()) * sizeof(float));
      return;
    }
    ref::dequantize_row(*stored_, r, out);  // the library's one row codec (kernels/ref/row_codec.hpp)
  }

 private:
  std::string name_;
  row_matrix fp32_;
  std::optional<quantized_tensor> stored_;
};

struct llama_layer {
  Eigen::VectorXf attn_norm, ffn_norm;  // dim each
  // wq: q_dim x dim (q_dim = n_heads * head_size), wk / wv: kv_dim x dim, wo: dim x q_dim, gate / up:
  // hidden x dim, down: dim x hidden.
  llama_matrix wq, wk, wv, wo, gate, up, down;
  // Fused, as "phi3" stores them (one GGUF tensor, so one type): wqkv, (q_dim + 2 kv_dim) x dim, the rows
  // of wq, wk and wv one after the other (attn_qkv); gate_up, 2 hidden x dim, gate's rows then up's
  // (ffn_up of twice the feed-forward length). When present, wq/wk/wv (or gate/up) are not.
  llama_matrix wqkv, gate_up;
  // Optional, empty when the model has none: biases added to wq's, wk's and wv's outputs (q_dim,
  // kv_dim, kv_dim; "qwen2", attn_{q,k,v}.bias), and RMSNorm gains applied to each head of q and of k
  // before RoPE (head_size each; "qwen3", attn_q_norm / attn_k_norm), with the model's rms_eps.
  Eigen::VectorXf bq, bk, bv, q_norm, k_norm;

  // The matrices present, in the order the forward pass runs them: wq wk wv (or wqkv), wo, gate up (or
  // gate_up), down.
  [[nodiscard]] std::vector<const llama_matrix*> matrices() const {
    std::vector<const llama_matrix*> out;
    for (const llama_matrix* m : {&wq, &wk, &wv, &wqkv, &wo, &gate, &up, &gate_up, &down})
      if (m->present()) out.push_back(m);
    return out;
  }
  [[nodiscard]] std::vector<llama_matrix*> matrices() {
    std::vector<llama_matrix*> out;
    for (llama_matrix* m : {&wq, &wk, &wv, &wqkv, &wo, &gate, &up, &gate_up, &down})
      if (m->present()) out.push_back(m);
    return out;
  }
};

// The weights and hyper-parameters of a model. Build with load_llama / load_gguf / from_llama2c, or by
// hand (then call validate()).
struct llama_model {
  llama_config config;
  llama_matrix token_embd;  // vocab x dim (looked up as stored)
  std::vector<llama_layer> layers;
  Eigen::VectorXf output_norm;        // dim
  std::optional<llama_matrix> output;  // vocab x dim; absent: tied to token_embd (run as the classifier)
  Eigen::VectorXf rope_freq_factors;   // rope_dim / 2 divisors of the rotation frequencies, or empty

  [[nodiscard]] const llama_matrix& classifier() const noexcept { return output ? *output : token_embd; }

  // Every matrix a product runs with (layer by layer: wq, wk, wv, wo, gate, up, down; then the
  // classifier), the ones a plan assigns specs to.
  [[nodiscard]] std::vector<const llama_matrix*> matrices() const {
    std::vector<const llama_matrix*> out;
    for (const llama_layer& l : layers)
      for (const llama_matrix* m : l.matrices()) out.push_back(m);
    out.push_back(&classifier());
    return out;
  }

  // Checks the hyper-parameters and every shape; throws errc::invalid_argument (hyper-parameters) or
  // errc::shape_mismatch naming the matrix.
  void validate() const {
    const llama_config& c = config;
    auto bad = [](const std::string& what) { throw error(errc::invalid_argument, "llama model: " + what); };
    if (c.dim <= 0 || c.hidden_dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.vocab_size <= 0 ||
        c.context_length <= 0)
      bad("dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size and context_length must be positive");
    if (c.head_dim < 0) bad("head_dim must be >= 0");
    for (const std::int64_t w : {std::int64_t{c.dim}, std::int64_t{c.hidden_dim}, std::int64_t{c.head_size()} * c.n_heads})
      if (w > llama_config::max_width) bad("a width of " + std::to_string(w) + " is more than " + std::to_string(llama_config::max_width));
    if (c.head_dim == 0 && c.dim % c.n_heads != 0)
      bad("dim " + std::to_string(c.dim) + " is not a multiple of n_heads " + std::to_string(c.n_heads));
    if (c.n_heads % c.n_kv_heads != 0) bad("n_heads " + std::to_string(c.n_heads) + " is not a multiple of n_kv_heads " + std::to_string(c.n_kv_heads));
    if (c.rope_dim <= 0 || c.rope_dim % 2 != 0 || c.rope_dim > c.head_size())
      bad("rope dimension count " + std::to_string(c.rope_dim) + " must be even and in (0, head size " + std::to_string(c.head_size()) + "]");
    if (!(c.rms_eps > 0.0f) || !std::isfinite(c.rope_theta) || !(c.rope_theta > 0.0f) || !(c.rope_freq_scale > 0.0f))
      bad("rms_eps, rope_theta and rope_freq_scale must be positive");
    if (static_cast<int>(layers.size()) != c.n_layers)
      bad(std::to_string(layers.size()) + " layers, the config says " + std::to_string(c.n_layers));
    auto shape = [](const llama_matrix& m, index_t rows, index_t cols) {
      if (m.rows() != rows || m.cols() != cols)
        throw error(errc::shape_mismatch, "llama model: matrix '" + m.name() + "' is " + std::to_string(m.rows()) + "x" +
                                              std::to_string(m.cols()) + ", expected " + std::to_string(rows) + "x" + std::to_string(cols));
    };
    auto vec = [&](const Eigen::VectorXf& v, const std::string& what) {
      if (v.size() != c.dim)
        throw error(errc::shape_mismatch, "llama model: " + what + " has " + std::to_string(v.size()) + " entries, expected " +
                                              std::to_string(c.dim));
    };
    shape(token_embd, c.vocab_size, c.dim);
    if (output) shape(*output, c.vocab_size, c.dim);
    vec(output_norm, "the output norm");
    auto optional = [](const Eigen::VectorXf& v, index_t n, const std::string& what) {
      if (v.size() != 0 && v.size() != n)
        throw error(errc::shape_mismatch, "llama model: " + what + " has " + std::to_string(v.size()) + " entries, expected " +
                                              std::to_string(n));
    };
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const llama_layer& l = layers[i];
      const std::string li = "layer " + std::to_string(i) + "'s ";
      if (l.wqkv.present()) {
        if (l.wq.present() || l.wk.present() || l.wv.present()) bad(li + "wqkv comes with wq, wk or wv");
        shape(l.wqkv, c.q_dim() + 2 * c.kv_dim(), c.dim);
      } else {
        shape(l.wq, c.q_dim(), c.dim);
        shape(l.wk, c.kv_dim(), c.dim);
        shape(l.wv, c.kv_dim(), c.dim);
      }
      shape(l.wo, c.dim, c.q_dim());
      optional(l.bq, c.q_dim(), li + "q bias");
      optional(l.bk, c.kv_dim(), li + "k bias");
      optional(l.bv, c.kv_dim(), li + "v bias");
      optional(l.q_norm, c.head_size(), li + "q norm");
      optional(l.k_norm, c.head_size(), li + "k norm");
      if (l.gate_up.present()) {
        if (l.gate.present() || l.up.present()) bad(li + "gate_up comes with gate or up");
        shape(l.gate_up, 2 * static_cast<index_t>(c.hidden_dim), c.dim);
      } else {
        shape(l.gate, c.hidden_dim, c.dim);
        shape(l.up, c.hidden_dim, c.dim);
      }
      shape(l.down, c.dim, c.hidden_dim);
      vec(l.attn_norm, "layer " + std::to_string(i) + "'s attention norm");
      vec(l.ffn_norm, "layer " + std::to_string(i) + "'s FFN norm");
    }
    if (rope_freq_factors.size() != 0 && rope_freq_factors.size() != c.rope_dim / 2)
      throw error(errc::shape_mismatch, "llama model: rope_freqs has " + std::to_string(rope_freq_factors.size()) +
                                            " entries, expected rope_dim / 2 = " + std::to_string(c.rope_dim / 2));
  }
};

// ---- loading ----

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

// An unsigned integer KV of any integer type; nullopt when absent. Negative values and non-integers
// are errc::parse_error naming the key.
inline std::optional<std::uint64_t> kv_uint(const gguf::file& g, const std::string& key) {
  const gguf::value* v = g.kvs().find(key);
  if (!v) return std::nullopt;
  std::optional<std::uint64_t> out;
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          if (x >= 0) out = static_cast<std::uint64_t>(x);
        }
      },
      v->v);
  if (!out)
    throw error(errc::parse_error, "GGUF '" + g.path() + "': key '" + key + "' is " + std::string(gguf::to_string(v->type())) +
                                       "; a non-negative integer is expected");
  return out;
}

inline std::optional<double> kv_float(const gguf::file& g, const std::string& key) {
  const gguf::value* v = g.kvs().find(key);
  if (!v) return std::nullopt;
  if (const float* f = v->get_if<float>()) return *f;
  if (const double* d = v->get_if<double>()) return *d;
  throw error(errc::parse_error, "GGUF '" + g.path() + "': key '" + key + "' is " + std::string(gguf::to_string(v->type())) +
                                     "; f32 or f64 is expected");
}

// A required integer KV in [1, 2^30].
inline int kv_int(const gguf::file& g, const std::string& key, std::optional<int> fallback = std::nullopt) {
  const auto v = kv_uint(g, key);
  if (!v) {
    if (fallback) return *fallback;
    throw error(errc::parse_error, "GGUF '" + g.path() + "': the model needs the key '" + key + "'");
  }
  if (*v == 0 || *v > (1u << 30))
    throw error(errc::parse_error, "GGUF '" + g.path() + "': key '" + key + "' = " + std::to_string(*v) + " is out of range");
  return static_cast<int>(*v);
}

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
// quantized_tensor holding the file's bytes.
inline llama_matrix gguf_matrix(const gguf::file& g, const std::string& name, int rows, int cols) {
  const gguf::tensor_info& t = gguf_tensor(g, name, {static_cast<std::uint64_t>(cols), static_cast<std::uint64_t>(rows)});
  if (t.type == 0) return llama_matrix(name, g.to_float(name));
  const auto* p = reinterpret_cast<const std::uint8_t*>(t.bytes.data());
  return llama_matrix(name, quantized_tensor(ggml_spec(static_cast<ggml_type>(t.type)), rows, cols, std::vector<std::uint8_t>(p, p + t.size), {}, {}));
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
};
inline constexpr llama_architecture llama_architectures[] = {
    {"llama", llama_config::rope_type::norm, false, true, false},  // Llama 1/2/3, Mistral, llama2.c
    {"qwen2", llama_config::rope_type::neox, false, false, false},  // Qwen1.5, Qwen2, Qwen2.5 (q/k/v biases)
    {"qwen3", llama_config::rope_type::neox, true, false, false},   // Qwen3 (dense)
    {"phi3", llama_config::rope_type::neox, false, false, true},    // Phi-3, Phi-3.5, Phi-4-mini (without LongRoPE factors)
};

// A GGUF of general.architecture "llama", "qwen2", "qwen3" or "phi3" as a model, matrices kept as stored (see
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
// rows for gate and up (no ffn_gate; phi3's LongRoPE factors are refused). Types F32, F16, BF16 and every ggml block type mixprec implements (biases and norms
// F32). Throws mixprec::error: errc::unsupported for another architecture, a rope scaling type other
// than none/linear, experts (ARCH.expert_count > 0), a value_length other than key_length, a tensor
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
    throw error(errc::unsupported, file + "general.architecture is '" + *arch_name + "'; this engine runs 'llama', 'qwen2', 'qwen3' and 'phi3'");
  const std::string k = *arch_name + ".";  // the prefix of the architecture's keys

  llama_model m;
  llama_config& c = m.config;
  c.rope = a->rope;
  c.dim = detail::kv_int(g, k + "embedding_length");
  c.hidden_dim = detail::kv_int(g, k + "feed_forward_length");
  c.n_layers = detail::kv_int(g, k + "block_count");
  c.n_heads = detail::kv_int(g, k + "attention.head_count");
  c.n_kv_heads = detail::kv_int(g, k + "attention.head_count_kv", c.n_heads);
  c.context_length = detail::kv_int(g, k + "context_length");
  if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0)
    throw error(errc::parse_error, file + k + "attention.head_count " + std::to_string(c.n_heads) + " is not a multiple of " + k +
                                       "attention.head_count_kv " + std::to_string(c.n_kv_heads));
  // The head size: key_length, else dim / head_count (llama.cpp's n_embd_head_k); value_length must equal it.
  if (const auto hd = detail::kv_uint(g, k + "attention.key_length")) {
    if (*hd == 0 || *hd > 65536) throw error(errc::parse_error, file + k + "attention.key_length " + std::to_string(*hd) + " is out of range");
    if (*hd * static_cast<std::uint64_t>(c.n_heads) != static_cast<std::uint64_t>(c.dim)) c.head_dim = static_cast<int>(*hd);
  }
  if (c.head_dim == 0 && c.dim % c.n_heads != 0)
    throw error(errc::parse_error, file + k + "embedding_length " + std::to_string(c.dim) + " is not a multiple of " + k +
                                       "attention.head_count " + std::to_string(c.n_heads) + " and the file gives no attention.key_length");
  if (static_cast<std::uint64_t>(c.head_size()) * static_cast<std::uint64_t>(c.n_heads) > llama_config::max_width)
    throw error(errc::parse_error, file + k + "attention.head_count " + std::to_string(c.n_heads) + " heads of " + std::to_string(c.head_size()) +
                                       " values are more than " + std::to_string(llama_config::max_width));
  if (const auto v = detail::kv_uint(g, k + "attention.value_length"); v && *v != static_cast<std::uint64_t>(c.head_size()))
    throw error(errc::unsupported, file + k + "attention.value_length " + std::to_string(*v) + " differs from the key head size " +
                                       std::to_string(c.head_size()) + "; this engine needs them equal");
  if (const auto f = detail::kv_float(g, k + "rope.scaling.attn_factor"); f && *f != 1.0)
    throw error(errc::unsupported, file + k + "rope.scaling.attn_factor " + std::to_string(*f) + " is not implemented (only 1)");
  if (const auto e = detail::kv_uint(g, k + "expert_count"); e && *e > 0)
    throw error(errc::unsupported, file + "key '" + k + "expert_count' = " + std::to_string(*e) + ": mixture-of-experts models are not implemented");
  c.rope_dim = detail::kv_int(g, k + "rope.dimension_count", c.head_size());
  if (c.rope_dim % 2 != 0 || c.rope_dim > c.head_size())
    throw error(errc::parse_error, file + k + "rope.dimension_count " + std::to_string(c.rope_dim) + " must be even and at most the head size " +
                                       std::to_string(c.head_size()));
  const auto eps = detail::kv_float(g, k + "attention.layer_norm_rms_epsilon");
  if (!eps) throw error(errc::parse_error, file + "the " + *arch_name + " model needs the key '" + k + "attention.layer_norm_rms_epsilon'");
  if (!(*eps > 0.0 && *eps < 1.0)) throw error(errc::parse_error, file + k + "attention.layer_norm_rms_epsilon must be in (0, 1)");
  c.rms_eps = static_cast<float>(*eps);
  const auto base = detail::kv_float(g, k + "rope.freq_base");
  if (base && !(*base > 0.0 && std::isfinite(*base))) throw error(errc::parse_error, file + k + "rope.freq_base must be positive");
  c.rope_theta = base ? static_cast<float>(*base) : 10000.0f;
  std::string scaling = "none";
  if (const gguf::value* v = g.kvs().find(k + "rope.scaling.type")) {
    const std::string* s = v->get_if<std::string>();
    if (!s) throw error(errc::parse_error, file + "key '" + k + "rope.scaling.type' is not a string");
    scaling = *s;
  }
  if (scaling == "linear") {
    const auto f = detail::kv_float(g, k + "rope.scaling.factor");
    if (!f) throw error(errc::parse_error, file + k + "rope.scaling.type 'linear' needs the key '" + k + "rope.scaling.factor'");
    if (!(*f > 0.0 && std::isfinite(*f))) throw error(errc::parse_error, file + k + "rope.scaling.factor must be positive");
    c.rope_freq_scale = static_cast<float>(1.0 / *f);
  } else if (scaling != "none") {
    throw error(errc::unsupported, file + k + "rope.scaling.type '" + scaling + "' is not implemented (none and linear are)");
  }
  if (scaling == "none")
    if (const auto f = detail::kv_float(g, k + "rope.scale_linear"); f && *f != 1.0) {  // the older key
      if (!(*f > 0.0 && std::isfinite(*f))) throw error(errc::parse_error, file + k + "rope.scale_linear must be positive");
      c.rope_freq_scale = static_cast<float>(1.0 / *f);
    }

  const gguf::tensor_info* embd = g.find("token_embd.weight");
  if (!embd) throw error(errc::parse_error, file + "the model needs the tensor 'token_embd.weight'");
  if (embd->dims.size() < 2 || embd->rows() > (1u << 30))
    throw error(errc::shape_mismatch, file + "tensor 'token_embd.weight' has dims " + detail::dims_text(embd->dims) + ", expected {" +
                                          std::to_string(c.dim) + ", vocab}");
  c.vocab_size = static_cast<int>(embd->rows());
  if (const auto v = detail::kv_uint(g, k + "vocab_size"); v && *v != static_cast<std::uint64_t>(c.vocab_size))
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
    if (a->fused) {
      l.gate_up = detail::gguf_matrix(g, p + "ffn_up.weight", 2 * c.hidden_dim, c.dim);
    } else {
      l.gate = detail::gguf_matrix(g, p + "ffn_gate.weight", c.hidden_dim, c.dim);
      l.up = detail::gguf_matrix(g, p + "ffn_up.weight", c.hidden_dim, c.dim);
      used.push_back(p + "ffn_gate.weight");
    }
    l.down = detail::gguf_matrix(g, p + "ffn_down.weight", c.dim, c.hidden_dim);
    for (const char* n : {"attn_output", "ffn_up", "ffn_down"}) used.push_back(p + n + ".weight");
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

// ---- running ----

// Called with the input of every matrix-vector product: the matrix's name, the vector, its length.
using activation_observer = std::function<void(const std::string& name, const float* x, index_t n)>;

// threads and activations mean what they mean in gemv_options (kernels/gemv_options.hpp), in its order.
struct engine_options {
  unsigned threads = 1;                                 // rows of each product over this many threads
  // How every product takes its input: automatic (llama.cpp's block types, stored or re-quantized,
  // take activations quantized as ggml does; others FP32), fp32 (all FP32, block types decode rows:
  // the reference), int8 (INT4/INT8 re-quantized matrices take INT8 activations; the rest automatic).
  activation_type activations = activation_type::automatic;
  int max_context = 0;                                  // positions the cache may hold; 0: context_length
};

// What run_layer computed inside one layer for positions 0..T-1, kept for the backward pass
// (models/llama_backward.hpp); names as in the banner's formulas.
struct llama_layer_trace {
  row_matrix n;              // T x dim: rmsnorm(x) * attn_norm
  row_matrix q, k, v;        // T x q_dim, T x kv_dim, T x kv_dim: after the biases; q and k after the head norms and RoPE
  row_matrix q_raw, k_raw;   // q and k before the head norms (kept only when the model has them)
  std::vector<row_matrix> p;  // per head, T x T: the causal softmax (zero above the diagonal)
  row_matrix att;            // T x q_dim: the heads' outputs, Wo's input
  row_matrix h;              // T x dim: x + Wo att
  row_matrix m;              // T x dim: rmsnorm(h) * ffn_norm
  row_matrix gate, up;       // T x hidden_dim: Wgate m and Wup m
  row_matrix act;            // T x hidden_dim: silu(gate) * up, Wdown's input
};

class llama_backprop;

// The forward pass over a model, with per-matrix specs and a KV cache. Holds a reference to the model,
// which must outlive it; an engine runs one sequence at a time (reset() starts another).
class llama_engine {
 public:
  // `specs` maps matrix names (llama_matrix::name) to the spec that matrix runs at: re-quantized from
  // its FP32 values by that spec (a ggml_block spec gives ggml's bytes); spec fp32 runs it in FP32
  // (decoded once if stored quantized); absent: as stored. Throws errc::invalid_argument for a name no
  // matrix has, and the quantizer's errors (e.g. a ggml block that does not tile the rows).
  explicit llama_engine(const llama_model& model, const std::map<std::string, quant_spec>& specs = {}, engine_options o = {})
      : model_(model), cfg_(model.config) {
    model.validate();
    if (o.max_context < 0) throw error(errc::invalid_argument, "llama_engine: max_context must be >= 0");
    max_context_ = o.max_context > 0 ? std::min(o.max_context, cfg_.context_length) : cfg_.context_length;
    std::size_t found = 0;
    auto make = [&](const llama_matrix& m) {
      linear l;
      l.source = &m;
      l.observer = &observer_;
      l.options.threads = o.threads;
      l.options.activations = o.activations == activation_type::fp32 ? activation_type::fp32 : activation_type::automatic;
      const auto it = specs.find(m.name());
      if (it == specs.end()) return l;
      ++found;
      const quant_spec& s = it->second;
      if (s.format == format_id::fp32) {
        if (!m.is_fp32()) l.decoded = m.to_float();
        return l;
      }
      l.quantized.emplace(m.is_fp32() ? m.fp32() : m.to_float(), s, std::nullopt, m.name());
      if ((s.format == format_id::int4 || s.format == format_id::int8) && o.activations == activation_type::int8)
        l.options.activations = o.activations;
      l.quantized->set_options(l.options);
      return l;
    };
    for (const llama_layer& w : model.layers)
      layers_.push_back({make(w.wq), make(w.wk), make(w.wv), make(w.wo), make(w.gate), make(w.up), make(w.down), make(w.wqkv), make(w.gate_up)});
    classifier_ = make(model.classifier());
    if (found != specs.size())
      for (const auto& [name, s] : specs) {
        const auto ms = model.matrices();
        if (std::none_of(ms.begin(), ms.end(), [&](const llama_matrix* m) { return m->name() == name; }))
          throw error(errc::invalid_argument, "llama_engine: a spec names '" + name + "', which is no matrix of the model");
      }
    key_cache_.resize(model.layers.size());
    value_cache_.resize(model.layers.size());
    rope_theta_scale_ = std::pow(cfg_.rope_theta, -2.0f / static_cast<float>(cfg_.rope_dim));
  }

  llama_engine(const llama_engine&) = delete;  // the linears point at this object's observer
  llama_engine& operator=(const llama_engine&) = delete;

  [[nodiscard]] const llama_config& config() const noexcept { return cfg_; }
  [[nodiscard]] const llama_model& model() const noexcept { return model_; }
  // Positions in the KV cache (the next forward() position when decoding in order).
  [[nodiscard]] int position() const noexcept { return n_cached_; }
  // The most positions this engine holds (max_context, or the model's context_length).
  [[nodiscard]] int max_context() const noexcept { return max_context_; }

  // Sees the input of every matrix-vector product; empty by default.
  void observe(activation_observer fn) { observer_ = std::move(fn); }

  // Bytes of every matrix as it runs (re-quantized, stored or FP32): the layers' products
  // (llama_layer::matrices()) and the classifier; norms and the embedding lookup excluded.
  [[nodiscard]] std::size_t matrix_bytes() const {
    std::size_t b = classifier_.bytes();
    for (const auto& l : layers_)
      for (const linear* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down, &l.wqkv, &l.gate_up}) b += m->bytes();
    return b;
  }

  // Forgets the cached positions (a new sequence starts at position 0).
  void reset() noexcept { n_cached_ = 0; }

  // Logits (vocab_size) for `token` at position `pos`, which must be at most position(): pos ==
  // position() extends the sequence, a smaller pos drops the cached positions from pos on. The
  // reference stays valid until the next call. Throws errc::invalid_argument for a token or position
  // out of range (pos < max_context()).
  const Eigen::VectorXf& forward(int token, int pos) {
    check_token(token);
    if (pos < 0 || pos > n_cached_ || pos >= max_context_)
      throw error(errc::invalid_argument, "llama_engine: position " + std::to_string(pos) + " (cached " + std::to_string(n_cached_) +
                                              ", context " + std::to_string(max_context_) + ")");
    n_cached_ = pos + 1;
    const int dim = cfg_.dim, hs = cfg_.head_size(), kv_dim = cfg_.kv_dim(), kv_mul = cfg_.n_heads / cfg_.n_kv_heads;
    x_.resize(dim);
    model_.token_embd.row(token, x_.data());
    xb_.resize(dim);
    xb2_.resize(dim);
    q_.resize(cfg_.q_dim());
    heads_.resize(cfg_.q_dim());
    hb_.resize(cfg_.hidden_dim);
    hb2_.resize(cfg_.hidden_dim);
    att_.resize(n_cached_);
    set_rope(pos);
    const auto kvd = static_cast<std::size_t>(kv_dim);
    for (int l = 0; l < cfg_.n_layers; ++l) {
      const auto li = static_cast<std::size_t>(l);
      const llama_layer& w = model_.layers[li];
      const layer_linears& lin = layers_[li];
      std::vector<float>& kc = key_cache_[li];
      std::vector<float>& vc = value_cache_[li];
      if (kc.size() < static_cast<std::size_t>(n_cached_) * kvd) {
        kc.resize(static_cast<std::size_t>(n_cached_) * kvd);
        vc.resize(static_cast<std::size_t>(n_cached_) * kvd);
      }
      rmsnorm(xb_, x_, w.attn_norm);
      float* k = kc.data() + static_cast<std::size_t>(pos) * kvd;
      float* v = vc.data() + static_cast<std::size_t>(pos) * kvd;
      if (w.wqkv.present()) {
        qkv_.resize(cfg_.q_dim() + 2 * kv_dim);
        lin.wqkv.apply(xb_.data(), qkv_.data());
        q_ = qkv_.head(cfg_.q_dim());
        std::copy_n(qkv_.data() + cfg_.q_dim(), kv_dim, k);
        std::copy_n(qkv_.data() + cfg_.q_dim() + kv_dim, kv_dim, v);
      } else {
        lin.wq.apply(xb_.data(), q_.data());
        lin.wk.apply(xb_.data(), k);
        lin.wv.apply(xb_.data(), v);
      }
      add_bias(q_.data(), w.bq);
      add_bias(k, w.bk);
      add_bias(v, w.bv);
      head_norm(q_.data(), cfg_.n_heads, w.q_norm);
      head_norm(k, cfg_.n_kv_heads, w.k_norm);
      rope(q_.data(), cfg_.n_heads, hs);
      rope(k, cfg_.n_kv_heads, hs);
      for (int h = 0; h < cfg_.n_heads; ++h) {
        const float* qh = q_.data() + h * hs;
        const auto kv_head = static_cast<std::size_t>((h / kv_mul) * hs);
        for (int t = 0; t <= pos; ++t) {
          const float* kt = kc.data() + static_cast<std::size_t>(t) * kvd + kv_head;
          float score = 0.0f;
          for (int i = 0; i < hs; ++i) score += qh[i] * kt[i];
          att_[t] = score / std::sqrt(static_cast<float>(hs));
        }
        softmax(att_.data(), pos + 1);
        float* out = heads_.data() + h * hs;
        std::fill(out, out + hs, 0.0f);
        for (int t = 0; t <= pos; ++t) {
          const float* vt = vc.data() + static_cast<std::size_t>(t) * kvd + kv_head;
          for (int i = 0; i < hs; ++i) out[i] += att_[t] * vt[i];
        }
      }
      lin.wo.apply(heads_.data(), xb2_.data());
      x_ += xb2_;
      rmsnorm(xb_, x_, w.ffn_norm);
      if (w.gate_up.present()) {
        gate_up_.resize(2 * cfg_.hidden_dim);
        lin.gate_up.apply(xb_.data(), gate_up_.data());
        hb_ = gate_up_.head(cfg_.hidden_dim);
        hb2_ = gate_up_.tail(cfg_.hidden_dim);
      } else {
        lin.gate.apply(xb_.data(), hb_.data());
        lin.up.apply(xb_.data(), hb2_.data());
      }
      for (int i = 0; i < cfg_.hidden_dim; ++i) hb_[i] = hb_[i] / (1.0f + std::exp(-hb_[i])) * hb2_[i];  // SwiGLU
      lin.down.apply(hb_.data(), xb_.data());
      x_ += xb_;
    }
    rmsnorm(xb_, x_, model_.output_norm);
    logits_.resize(cfg_.vocab_size);
    classifier_.apply(xb_.data(), logits_.data());
    return logits_;
  }

  // ---- a whole sequence at once (prefill) ----
  // The same forward pass over positions 0..T-1 of one sequence with matrix-matrix products (T rows of
  // activations per product), in three steps that let a caller keep the residual stream between layers
  // and restart from it (mixprec measure probes one tensor from the cached input of its layer):
  //   x = embed(tokens); for l in [0, n_layers): run_layer(l, x); logits = head(x)
  // Numerics: FP32 as forward(), summed in another order (per value |difference| ~ 1e-6 relative); the
  // results do not depend on engine_options::threads. The KV cache is not used or changed.

  // The embedding rows of `tokens` (T x dim). Throws errc::invalid_argument for an id outside the
  // vocabulary or a sequence longer than max_context().
  [[nodiscard]] row_matrix embed(std::span<const int> tokens) const {
    if (static_cast<std::size_t>(max_context_) < tokens.size())
      throw error(errc::invalid_argument, "llama_engine: " + std::to_string(tokens.size()) + " positions, context " + std::to_string(max_context_));
    row_matrix x(static_cast<index_t>(tokens.size()), cfg_.dim);
    for (std::size_t p = 0; p < tokens.size(); ++p) {
      check_token(tokens[p]);
      model_.token_embd.row(tokens[p], &x(static_cast<index_t>(p), 0));
    }
    return x;
  }

  // x (T x dim): the residual stream entering layer `layer` at positions 0..T-1 becomes the stream
  // leaving it; with a trace, also keeps what the layer computed inside (for a backward pass). Throws
  // errc::invalid_argument for a layer out of range, errc::shape_mismatch for x.
  void run_layer(int layer, row_matrix& x, llama_layer_trace* trace = nullptr) {
    if (layer < 0 || layer >= cfg_.n_layers)
      throw error(errc::invalid_argument, "llama_engine: layer " + std::to_string(layer) + " of " + std::to_string(cfg_.n_layers));
    check_stream(x);
    const index_t T = x.rows();
    const int hs = cfg_.head_size(), kv_mul = cfg_.n_heads / cfg_.n_kv_heads;
    const llama_layer& w = model_.layers[static_cast<std::size_t>(layer)];
    const layer_linears& lin = layers_[static_cast<std::size_t>(layer)];
    row_matrix n = rmsnorm_rows(x, w.attn_norm);
    row_matrix q(T, cfg_.q_dim()), k(T, cfg_.kv_dim()), v(T, cfg_.kv_dim());
    if (w.wqkv.present()) {
      row_matrix qkv(T, cfg_.q_dim() + 2 * cfg_.kv_dim());
      lin.wqkv.apply_rows(n, qkv);
      q = qkv.leftCols(cfg_.q_dim());
      k = qkv.middleCols(cfg_.q_dim(), cfg_.kv_dim());
      v = qkv.rightCols(cfg_.kv_dim());
    } else {
      lin.wq.apply_rows(n, q);
      lin.wk.apply_rows(n, k);
      lin.wv.apply_rows(n, v);
    }
    if (w.bq.size()) q.rowwise() += w.bq.transpose();
    if (w.bk.size()) k.rowwise() += w.bk.transpose();
    if (w.bv.size()) v.rowwise() += w.bv.transpose();
    if (trace && (w.q_norm.size() || w.k_norm.size())) {
      trace->q_raw = q;
      trace->k_raw = k;
    }
    for (index_t p = 0; p < T; ++p) {
      head_norm(&q(p, 0), cfg_.n_heads, w.q_norm);
      head_norm(&k(p, 0), cfg_.n_kv_heads, w.k_norm);
      set_rope(static_cast<int>(p));
      rope(&q(p, 0), cfg_.n_heads, hs);
      rope(&k(p, 0), cfg_.n_kv_heads, hs);
    }
    if (trace) {
      trace->n = n;
      trace->q = q;
      trace->k = k;
      trace->v = v;
      trace->p.resize(static_cast<std::size_t>(cfg_.n_heads));
    }
    // Per head: causal softmax(Q K^T / sqrt(hs)) V, row p attending to positions 0..p.
    row_matrix att(T, cfg_.q_dim());
    row_matrix scores(T, T);
    const float scale = std::sqrt(static_cast<float>(hs));
    for (int h = 0; h < cfg_.n_heads; ++h) {
      const index_t kv_head = static_cast<index_t>((h / kv_mul) * hs);
      scores.noalias() = q.middleCols(h * hs, hs) * k.middleCols(kv_head, hs).transpose();
      for (index_t p = 0; p < T; ++p) {
        float* row = &scores(p, 0);
        for (index_t t = 0; t <= p; ++t) row[t] /= scale;
        softmax(row, static_cast<int>(p + 1));
        std::fill(row + p + 1, row + T, 0.0f);
      }
      att.middleCols(h * hs, hs).noalias() = scores * v.middleCols(kv_head, hs);
      if (trace) trace->p[static_cast<std::size_t>(h)] = scores;
    }
    row_matrix o(T, cfg_.dim);
    lin.wo.apply_rows(att, o);
    x += o;
    n = rmsnorm_rows(x, w.ffn_norm);
    row_matrix g(T, cfg_.hidden_dim), u(T, cfg_.hidden_dim);
    if (w.gate_up.present()) {
      row_matrix gu(T, 2 * static_cast<index_t>(cfg_.hidden_dim));
      lin.gate_up.apply_rows(n, gu);
      g = gu.leftCols(cfg_.hidden_dim);
      u = gu.rightCols(cfg_.hidden_dim);
    } else {
      lin.gate.apply_rows(n, g);
      lin.up.apply_rows(n, u);
    }
    if (trace) {
      trace->att = std::move(att);
      trace->h = x;
      trace->m = n;
      trace->gate = g;
      trace->up = u;
    }
    g = (g.array() / (1.0f + (-g.array()).exp()) * u.array()).matrix();  // SwiGLU
    lin.down.apply_rows(g, o);
    if (trace) trace->act = g;
    x += o;
  }

  // Logits (T x vocab_size) of the residual stream x leaving the last layer.
  [[nodiscard]] row_matrix head(const row_matrix& x) {
    check_stream(x);
    const row_matrix n = rmsnorm_rows(x, model_.output_norm);
    row_matrix out(x.rows(), cfg_.vocab_size);
    classifier_.apply_rows(n, out);
    return out;
  }

  // Teacher forcing from position 0: row p holds the logits after tokens[0..p]; tokens.size() x
  // vocab_size. Runs the sequence at once (embed, run_layer, head above); the KV cache is reset.
  [[nodiscard]] row_matrix logits(std::span<const int> tokens) {
    reset();
    row_matrix x = embed(tokens);
    for (int l = 0; l < cfg_.n_layers; ++l) run_layer(l, x);
    return head(x);
  }

 private:
  friend class llama_backprop;  // runs the layers with a trace and the products backwards

  // One matrix-vector product y = W x as configured.
  struct linear {
    const llama_matrix* source = nullptr;
    std::optional<quantized_linear> quantized;  // re-quantized by a spec
    row_matrix decoded;                         // spec fp32 for a stored-quantized matrix
    const activation_observer* observer = nullptr;
    gemv_options options;

    void apply(const float* x, float* y) const {
      if (observer && *observer) (*observer)(source->name(), x, source->cols());
      if (quantized) {
        quantized->forward({x, static_cast<std::size_t>(source->cols())}, {y, static_cast<std::size_t>(source->rows())});
        return;
      }
      const row_matrix* w = decoded.size() ? &decoded : source->is_fp32() ? &source->fp32() : nullptr;
      if (!w) {
        gemv(source->stored(), {x, static_cast<std::size_t>(source->cols())}, {y, static_cast<std::size_t>(source->rows())},
             options);
        return;
      }
      Eigen::Map<Eigen::VectorXf>(y, w->rows()).noalias() = *w * Eigen::Map<const Eigen::VectorXf>(x, w->cols());
    }
    // Y = X W^T for a batch of rows (X: T x cols, Y: T x rows, sized by the caller).
    void apply_rows(const row_matrix& x, row_matrix& y) const {
      if (observer && *observer)
        for (index_t p = 0; p < x.rows(); ++p) (*observer)(source->name(), &x(p, 0), source->cols());
      if (quantized) {
        y = quantized->forward(x);
        return;
      }
      const row_matrix* w = decoded.size() ? &decoded : source->is_fp32() ? &source->fp32() : nullptr;
      if (!w) {
        gemm(source->stored(), x, y, options);
        return;
      }
      // Fixed blocks of output columns, so that no value depends on the thread count.
      constexpr index_t block = 256;
      const index_t rows = w->rows();
      const auto blocks = static_cast<std::size_t>((rows + block - 1) / block);
      mixprec::detail::parallel_for(blocks, mixprec::detail::worker_count(options.threads, blocks), [&](std::size_t b, unsigned) {
        const index_t r0 = static_cast<index_t>(b) * block, n = std::min(block, rows - r0);
        y.middleCols(r0, n).noalias() = x * w->middleRows(r0, n).transpose();
      });
    }
    // dX = dY W (T x cols) for dY (T x rows): the gradient reaching this product's input, through the
    // weights it runs (a stored or re-quantized matrix decoded to FP32 for the call; activation
    // quantization passes the gradient unchanged, the straight-through estimator). Fixed blocks of
    // input columns, so that no value depends on the thread count.
    void backprop_rows(const row_matrix& dy, row_matrix& dx) const {
      row_matrix owned;
      const row_matrix* w = decoded.size() ? &decoded : source->is_fp32() && !quantized ? &source->fp32() : nullptr;
      if (!w) {
        owned = quantized ? dequantize(quantized->weight()) : source->to_float();
        w = &owned;
      }
      dx.resize(dy.rows(), w->cols());
      constexpr index_t block = 256;
      const index_t cols = w->cols();
      const auto blocks = static_cast<std::size_t>((cols + block - 1) / block);
      mixprec::detail::parallel_for(blocks, mixprec::detail::worker_count(options.threads, blocks), [&](std::size_t b, unsigned) {
        const index_t c0 = static_cast<index_t>(b) * block, n = std::min(block, cols - c0);
        dx.middleCols(c0, n).noalias() = dy * w->middleCols(c0, n);
      });
    }
    [[nodiscard]] std::size_t bytes() const noexcept {
      if (quantized) return quantized->weight().bytes();
      if (decoded.size()) return static_cast<std::size_t>(decoded.size()) * sizeof(float);
      return source->bytes();
    }
  };
  struct layer_linears {
    linear wq, wk, wv, wo, gate, up, down, wqkv, gate_up;  // the absent ones have no rows
  };

  void check_token(int token) const {
    if (token < 0 || token >= cfg_.vocab_size)
      throw error(errc::invalid_argument, "llama_engine: token " + std::to_string(token) + " is outside the vocabulary of " +
                                              std::to_string(cfg_.vocab_size));
  }
  void check_stream(const row_matrix& x) const {
    if (x.cols() != cfg_.dim || x.rows() > max_context_)
      throw error(errc::shape_mismatch, "llama_engine: a residual stream of " + std::to_string(x.rows()) + "x" + std::to_string(x.cols()) +
                                            ", expected at most " + std::to_string(max_context_) + " positions of " + std::to_string(cfg_.dim));
  }
  // The rotation of pair i at position pos, shared by every head and layer: the angle
  // pos * theta^(-2i / rope_dim), divided by the pair's factor and scaled, computed as ggml's rope cache
  // computes it (ggml-cpu's ggml_rope_cache_init: pos times theta_scale = theta^(-2 / rope_dim) i times
  // over, in FP32), so that the angles are llama.cpp's to the last bit (a pow per pair differs in the
  // last bits, enough to turn a few activations to the next 8-bit code in quantized products).
  void set_rope(int pos) {
    const auto n_pairs = static_cast<std::size_t>(cfg_.rope_dim / 2);
    rope_cos_.resize(n_pairs);
    rope_sin_.resize(n_pairs);
    const Eigen::VectorXf& factors = model_.rope_freq_factors;
    float theta = static_cast<float>(pos);
    for (std::size_t i = 0; i < n_pairs; ++i, theta *= rope_theta_scale_) {
      const float ff = factors.size() ? factors[static_cast<index_t>(i)] : 1.0f;
      const float val = theta / ff * cfg_.rope_freq_scale;
      rope_cos_[i] = std::cos(val);
      rope_sin_[i] = std::sin(val);
    }
  }
  row_matrix rmsnorm_rows(const row_matrix& x, const Eigen::VectorXf& weight) const {
    row_matrix out(x.rows(), x.cols());
    for (index_t p = 0; p < x.rows(); ++p) {
      const float ss = x.row(p).squaredNorm() / static_cast<float>(x.cols()) + cfg_.rms_eps;
      out.row(p) = x.row(p).cwiseProduct(weight.transpose()) / std::sqrt(ss);
    }
    return out;
  }
  // Rotates pair i of each head by the angle set_rope chose: the values (2i, 2i+1) for rope type NORM,
  // (i, i + rope_dim / 2) for NEOX; sign -1 rotates backwards (the transpose, for the backward pass).
  void rope(float* vec, int heads, int hs, float sign = 1.0f) const {
    const auto n_pairs = rope_cos_.size();
    const bool neox = cfg_.rope == llama_config::rope_type::neox;
    for (int h = 0; h < heads; ++h) {
      float* p = vec + h * hs;
      for (std::size_t i = 0; i < n_pairs; ++i) {
        float& a = p[neox ? i : 2 * i];
        float& b = p[neox ? i + n_pairs : 2 * i + 1];
        const float v0 = a, v1 = b, s = sign * rope_sin_[i];
        a = v0 * rope_cos_[i] - v1 * s;
        b = v0 * s + v1 * rope_cos_[i];
      }
    }
  }
  static void add_bias(float* y, const Eigen::VectorXf& bias) {
    if (bias.size()) Eigen::Map<Eigen::VectorXf>(y, bias.size()) += bias;
  }
  // RMSNorm of each of `heads` heads of vec (head_size values each) times `gain`; nothing when empty.
  void head_norm(float* vec, int heads, const Eigen::VectorXf& gain) const {
    if (!gain.size()) return;
    for (int h = 0; h < heads; ++h) {
      Eigen::Map<Eigen::VectorXf> x(vec + h * gain.size(), gain.size());
      const float ss = x.squaredNorm() / static_cast<float>(gain.size()) + cfg_.rms_eps;  // as rmsnorm
      x = x.cwiseProduct(gain) / std::sqrt(ss);
    }
  }
  void rmsnorm(Eigen::VectorXf& out, const Eigen::VectorXf& x, const Eigen::VectorXf& weight) const {
    const float ss = x.squaredNorm() / static_cast<float>(x.size()) + cfg_.rms_eps;
    out = x.cwiseProduct(weight) / std::sqrt(ss);
  }
  static void softmax(float* x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; ++i) mx = std::max(mx, x[i]);
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) sum += (x[i] = std::exp(x[i] - mx));
    for (int i = 0; i < n; ++i) x[i] /= sum;
  }

  const llama_model& model_;
  llama_config cfg_;
  int max_context_ = 0;
  int n_cached_ = 0;
  activation_observer observer_;
  std::vector<layer_linears> layers_;
  linear classifier_;
  std::vector<std::vector<float>> key_cache_, value_cache_;  // per layer: positions x kv_dim
  float rope_theta_scale_ = 1.0f;
  std::vector<float> rope_cos_, rope_sin_;
  Eigen::VectorXf x_, xb_, xb2_, q_, qkv_, heads_, hb_, hb2_, gate_up_, att_, logits_;
};

// Greedy decoding from `first` (default BOS, id 1) at position 0: the next `steps` ids (argmax; ties to
// the lower id). Resets the engine first.
inline std::vector<int> greedy(llama_engine& engine, int steps, int first = 1) {
  engine.reset();
  std::vector<int> out;
  int token = first;
  for (int pos = 0; pos < steps; ++pos) {
    Eigen::Index next = 0;
    engine.forward(token, pos).maxCoeff(&next);
    token = static_cast<int>(next);
    out.push_back(token);
  }
  return out;
}

}  // namespace mixprec::models
