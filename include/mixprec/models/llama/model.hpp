// The weights and hyper-parameters of a LLaMA-family model (every architecture models/llama/load.hpp
// reads: "llama", "qwen2", "qwen3", "phi3", "qwen2moe", "qwen3moe"), as the engine (engine.hpp) runs them: matrices kept as
// stored (FP32, F16, BF16 or llama.cpp's block types), norms and biases in FP32. Matrices are (out x in)
// row-major; a GGUF tensor of dims {ne0, ne1} is ne1 rows of ne0 inputs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mixprec/error.hpp"
#include "mixprec/formats/ggml.hpp"
#include "mixprec/kernels/ref/gemv_ref.hpp"
#include "mixprec/quantize/quantize.hpp"
#include "mixprec/types.hpp"

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
  // Mixture of experts (llama.cpp's build_moe_ffn with softmax gating), 0 experts for a dense model:
  // each layer's FFN is n_expert_used of n_expert gated FFNs of expert_hidden_dim, chosen per token by
  // the largest softmax(router x) probabilities and weighted by them (renormalised to sum 1 when
  // expert_weights_norm: "llama" as Mixtral, "qwen3moe"; not "qwen2moe"), plus, when shared_hidden_dim
  // > 0, a shared gated FFN of that width weighted by sigmoid(gate_inp_shexp . x) ("qwen2moe").
  int n_expert = 0;               // ARCH.expert_count
  int n_expert_used = 0;          // ARCH.expert_used_count
  int expert_hidden_dim = 0;      // ARCH.expert_feed_forward_length ("llama": feed_forward_length)
  int shared_hidden_dim = 0;      // ARCH.expert_shared_feed_forward_length ("qwen2moe"), else 0
  bool expert_weights_norm = false;

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
  // A mixture-of-experts layer (config.n_expert > 0) has these instead of gate, up and down. The router
  // gate_inp, n_expert x dim (ffn_gate_inp, which llama.cpp never quantizes). Each expert stack is one
  // GGUF tensor of three dimensions, so one type, held as one matrix of the experts' rows one expert
  // after the other (GGUF's ne2 outermost): gate_exps and up_exps (n_expert * expert_hidden_dim) x dim,
  // expert e's rows from e * expert_hidden_dim; down_exps (n_expert * dim) x expert_hidden_dim.
  llama_matrix gate_inp, gate_exps, up_exps, down_exps;
  // The shared expert ("qwen2moe"; config.shared_hidden_dim > 0): gate_shexp, up_shexp shared x dim,
  // down_shexp dim x shared, and its gate's weights gate_inp_shexp (dim; ffn_gate_inp_shexp).
  llama_matrix gate_shexp, up_shexp, down_shexp;
  Eigen::VectorXf gate_inp_shexp;

  // The matrices present that a plan assigns types to, in the order the forward pass runs them: wq wk
  // wv (or wqkv), wo, gate up (or gate_up), down; in a mixture-of-experts layer gate_exps, up_exps,
  // down_exps, then gate_shexp, up_shexp, down_shexp (the router stays as stored).
  [[nodiscard]] std::vector<const llama_matrix*> matrices() const {
    std::vector<const llama_matrix*> out;
    for (const llama_matrix* m : {&wq, &wk, &wv, &wqkv, &wo, &gate, &up, &gate_up, &down, &gate_exps, &up_exps, &down_exps, &gate_shexp,
                                  &up_shexp, &down_shexp})
      if (m->present()) out.push_back(m);
    return out;
  }
  [[nodiscard]] std::vector<llama_matrix*> matrices() {
    std::vector<llama_matrix*> out;
    for (llama_matrix* m : {&wq, &wk, &wv, &wqkv, &wo, &gate, &up, &gate_up, &down, &gate_exps, &up_exps, &down_exps, &gate_shexp, &up_shexp,
                            &down_shexp})
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
  // The matrices stacked in m: config.n_expert for an expert stack of a layer (gate_exps, up_exps,
  // down_exps), else 1.
  [[nodiscard]] index_t experts_in(const llama_matrix& m) const noexcept {
    if (config.n_expert > 0)
      for (const llama_layer& l : layers)
        if (&m == &l.gate_exps || &m == &l.up_exps || &m == &l.down_exps) return config.n_expert;
    return 1;
  }

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
    if (c.n_expert < 0 || c.n_expert_used < 0 || c.expert_hidden_dim < 0 || c.shared_hidden_dim < 0)
      bad("n_expert, n_expert_used, expert_hidden_dim and shared_hidden_dim must be >= 0");
    if (c.n_expert > 0 && (c.n_expert_used < 1 || c.n_expert_used > c.n_expert || c.expert_hidden_dim < 1 ||
                           static_cast<std::int64_t>(c.n_expert) * std::max(c.expert_hidden_dim, c.dim) > llama_config::max_width))
      bad("with " + std::to_string(c.n_expert) + " experts, n_expert_used must be in [1, n_expert], expert_hidden_dim positive and the stacks' rows at most " +
          std::to_string(llama_config::max_width));
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
      if (c.n_expert > 0) {
        if (l.gate.present() || l.up.present() || l.down.present() || l.gate_up.present()) bad(li + "dense FFN comes with experts");
        const auto e = static_cast<index_t>(c.n_expert), f = static_cast<index_t>(c.expert_hidden_dim);
        shape(l.gate_inp, e, c.dim);
        shape(l.gate_exps, e * f, c.dim);
        shape(l.up_exps, e * f, c.dim);
        shape(l.down_exps, e * c.dim, f);
        if (c.shared_hidden_dim > 0) {
          shape(l.gate_shexp, c.shared_hidden_dim, c.dim);
          shape(l.up_shexp, c.shared_hidden_dim, c.dim);
          shape(l.down_shexp, c.dim, c.shared_hidden_dim);
          vec(l.gate_inp_shexp, li + "shared expert's gate");
        } else if (l.gate_shexp.present() || l.up_shexp.present() || l.down_shexp.present() || l.gate_inp_shexp.size()) {
          bad(li + "shared expert, but shared_hidden_dim is 0");
        }
      } else {
        if (l.gate_inp.present() || l.gate_exps.present() || l.up_exps.present() || l.down_exps.present() || l.gate_shexp.present() ||
            l.up_shexp.present() || l.down_shexp.present() || l.gate_inp_shexp.size())
          bad(li + "experts, but n_expert is 0");
        if (l.gate_up.present()) {
          if (l.gate.present() || l.up.present()) bad(li + "gate_up comes with gate or up");
          shape(l.gate_up, 2 * static_cast<index_t>(c.hidden_dim), c.dim);
        } else {
          shape(l.gate, c.hidden_dim, c.dim);
          shape(l.up, c.hidden_dim, c.dim);
        }
        shape(l.down, c.dim, c.hidden_dim);
      }
      vec(l.attn_norm, "layer " + std::to_string(i) + "'s attention norm");
      vec(l.ffn_norm, "layer " + std::to_string(i) + "'s FFN norm");
    }
    if (rope_freq_factors.size() != 0 && rope_freq_factors.size() != c.rope_dim / 2)
      throw error(errc::shape_mismatch, "llama model: rope_freqs has " + std::to_string(rope_freq_factors.size()) +
                                            " entries, expected rope_dim / 2 = " + std::to_string(c.rope_dim / 2));
  }
};

}  // namespace mixprec::models
