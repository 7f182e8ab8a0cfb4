// The forward pass of a LLaMA-family model (models/llama.hpp's banner has the formulas), written once
// (llama_engine::layer_pass) for a whole sequence at once with matrix-matrix products (embed, run_layer,
// head; logits) and for decoding token by token against a KV cache (forward: the same pass over one
// position), every matrix as stored or re-quantized by a spec; greedy decoding.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "mixprec/detail/parallel.hpp"
#include "mixprec/error.hpp"
#include "mixprec/formats/float_convert.hpp"
#include "mixprec/kernels/quantized_linear.hpp"
#include "mixprec/models/blocks.hpp"
#include "mixprec/models/llama/model.hpp"
#include "mixprec/quantize/quantize.hpp"
#include "mixprec/types.hpp"

namespace mixprec::models {

// Called with the input of every matrix product, one position at a time: the matrix's name, the vector,
// its length.
using activation_observer = std::function<void(const std::string& name, const float* x, index_t n)>;
// Called with the input of every product of one expert of a 3-D expert stack (a mixture-of-experts
// layer), once per (position, chosen expert) pair as llama-imatrix collects a MUL_MAT_ID: the stack's
// name, the expert in [0, n_experts), the vector, its length.
using expert_observer = std::function<void(const std::string& name, int expert, int n_experts, const float* x, index_t n)>;

// threads and activations mean what they mean in gemv_options (kernels/gemv_options.hpp), in its order.
struct engine_options {
  unsigned threads = 1;                                 // rows of each product over this many threads
  // How every product takes its input: automatic (as llama.cpp's CPU backend runs each weight type:
  // llama.cpp's block types, stored or re-quantized, take activations quantized to ggml's vec_dot_type;
  // F16 and BF16 matrices take them rounded to F16 / BF16, ggml's vec_dot_type for those types; FP32
  // ones FP32), fp32 (all FP32, block types decode rows: the reference), int8 (INT4/INT8 re-quantized
  // matrices take INT8 activations; the rest automatic).
  activation_type activations = activation_type::automatic;
  int max_context = 0;                                  // positions the cache may hold; 0: context_length
};

// A gated FFN's inside for R rows: down(act), act = silu(gate) .* up.
struct gated_ffn_trace {
  row_matrix gate, up;  // R x width: the gate's and up's outputs
  row_matrix act;       // R x width: silu(gate) .* up, down's input
  row_matrix out;       // R x dim: down's output
};

// What a mixture-of-experts FFN computed on T positions (engine.hpp moe_ffn), kept for the backward pass.
struct llama_moe_trace {
  row_matrix probs;               // T x n_expert: the router's softmax
  std::vector<int> chosen;        // T * n_expert_used: the expert of (position p, rank k) at p * K + k
  std::vector<float> weight;      // the same slots: its weight (probability, renormalised when the model does)
  std::vector<float> chosen_sum;  // T: the chosen probabilities' sum (the renormalisation's divisor before its floor)
  struct expert {
    std::vector<index_t> slots;  // p * K + k of every (position, rank) routed to it, in order
    row_matrix x;                // R x dim: those positions' FFN inputs
    gated_ffn_trace ffn;         // its FFN on them (out unweighted)
  };
  std::vector<expert> experts;  // n_expert
  gated_ffn_trace shared;       // the shared expert's FFN on all T positions (out before its gate)
  Eigen::VectorXf shared_logit;  // T: gate_inp_shexp . x, the shared expert's gate before the sigmoid
};

// What run_layer computed inside one layer for positions 0..T-1, kept for the backward pass
// (models/llama/backward.hpp); names as in the banner's formulas.
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
  llama_moe_trace moe;       // a mixture-of-experts layer's FFN (gate, up and act unused)
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
    // ggml's vec_dot_type of F16 and BF16 weights is their own type: the activations are rounded first.
    auto rounding_of = [&](format_id f) {
      return o.activations != activation_type::fp32 && (f == format_id::fp16 || f == format_id::bf16) ? f : format_id::fp32;
    };
    // A product of m as stored (seen by the observer when `observed`).
    auto as_stored = [&](const llama_matrix& m, bool observed) {
      linear l;
      l.source = &m;
      l.observer = observed ? &observer_ : nullptr;
      l.options.threads = o.threads;
      l.options.activations = o.activations == activation_type::fp32 ? activation_type::fp32 : activation_type::automatic;
      l.round_to = rounding_of(m.spec().format);
      return l;
    };
    auto make = [&](const llama_matrix& m) {
      linear l = as_stored(m, true);
      const auto it = specs.find(m.name());
      if (it == specs.end()) return l;
      ++found;
      l.round_to = format_id::fp32;
      const quant_spec& s = it->second;
      if (s.format == format_id::fp32) {
        if (!m.is_fp32()) l.decoded = m.to_float();
        return l;
      }
      l.round_to = rounding_of(s.format);
      l.quantized.emplace(m.is_fp32() ? m.fp32() : m.to_float(), s, std::nullopt, m.name());
      if ((s.format == format_id::int4 || s.format == format_id::int8) && o.activations == activation_type::int8)
        l.options.activations = o.activations;
      l.quantized->set_options(l.options);
      return l;
    };
    // An expert stack runs one expert's rows at a time: per expert a linear over its rows (re-quantized
    // by a spec: each expert on its own, as llama.cpp quantizes a 3-D tensor), seen by the expert
    // observer. No observer sees the router's input (llama.cpp never quantizes a router).
    auto experts = [&](const llama_matrix& m, index_t rows_per_expert) {
      std::vector<linear> out;
      if (!m.present()) return out;
      const auto it = specs.find(m.name());
      if (it != specs.end()) ++found;
      const bool requantize = it != specs.end() && it->second.format != format_id::fp32;  // by the spec
      const bool decode = it != specs.end() && !requantize && !m.is_fp32();               // spec fp32 of a stored stack
      const row_matrix values = requantize || decode ? m.to_float() : row_matrix();
      const auto n_experts = static_cast<int>(m.rows() / rows_per_expert);
      for (index_t e = 0; e < n_experts; ++e) {
        linear l = as_stored(m, false);
        l.on_expert = &expert_observer_;
        l.expert = static_cast<int>(e);
        l.n_experts = n_experts;
        l.n_rows = rows_per_expert;
        if (decode) {  // decoded and quantized experts hold only their rows
          l.round_to = format_id::fp32;
          l.decoded = values.middleRows(e * rows_per_expert, rows_per_expert);
        } else if (requantize) {
          l.round_to = rounding_of(it->second.format);
          l.quantized.emplace(values.middleRows(e * rows_per_expert, rows_per_expert), it->second, std::nullopt, m.name());
          l.quantized->set_options(l.options);
        } else {
          l.row0 = e * rows_per_expert;
        }
        out.push_back(std::move(l));
      }
      return out;
    };
    for (const llama_layer& w : model.layers) {
      layer_linears l{make(w.wq), make(w.wk), make(w.wv), make(w.wo), make(w.gate), make(w.up), make(w.down), make(w.wqkv), make(w.gate_up),
                      make(w.gate_shexp), make(w.up_shexp), make(w.down_shexp), {}, {}, {}, {}};
      if (cfg_.n_expert > 0) {
        l.router = as_stored(w.gate_inp, false);  // never re-quantized (not among llama_layer::matrices())
        l.gate_exps = experts(w.gate_exps, cfg_.expert_hidden_dim);
        l.up_exps = experts(w.up_exps, cfg_.expert_hidden_dim);
        l.down_exps = experts(w.down_exps, cfg_.dim);
      }
      layers_.push_back(std::move(l));
    }
    classifier_ = make(model.classifier());
    if (found != specs.size())
      for (const auto& [name, s] : specs) {
        const auto ms = model.matrices();
        if (std::none_of(ms.begin(), ms.end(), [&](const llama_matrix* m) { return m->name() == name; }))
          throw error(errc::invalid_argument, "llama_engine: a spec names '" + name + "', which is no matrix of the model");
      }
    key_cache_.resize(model.layers.size());
    value_cache_.resize(model.layers.size());
    rope_ = rope_cache(cfg_.rope_dim, cfg_.rope_theta, cfg_.rope_freq_scale,
                       cfg_.rope == llama_config::rope_type::neox ? rope_cache::mode::neox : rope_cache::mode::norm, model.rope_freq_factors);
  }

  llama_engine(const llama_engine&) = delete;  // the linears point at this object's observer
  llama_engine& operator=(const llama_engine&) = delete;

  [[nodiscard]] const llama_config& config() const noexcept { return cfg_; }
  [[nodiscard]] const llama_model& model() const noexcept { return model_; }
  // Positions in the KV cache (the next forward() position when decoding in order).
  [[nodiscard]] int position() const noexcept { return n_cached_; }
  // The most positions this engine holds (max_context, or the model's context_length).
  [[nodiscard]] int max_context() const noexcept { return max_context_; }

  // Sees the input of every matrix product but the experts' and the routers'; empty by default.
  void observe(activation_observer fn) { observer_ = std::move(fn); }
  // Sees the input of every expert's products (per position routed to it); empty by default.
  void observe_experts(expert_observer fn) { expert_observer_ = std::move(fn); }

  // Bytes of every matrix as it runs (re-quantized, stored or FP32): the layers' products
  // (llama_layer::matrices()) and the classifier; norms, routers and the embedding lookup excluded.
  [[nodiscard]] std::size_t matrix_bytes() const {
    std::size_t b = classifier_.bytes();
    for (const auto& l : layers_) {
      for (const linear* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down, &l.wqkv, &l.gate_up, &l.gate_shexp, &l.up_shexp, &l.down_shexp})
        b += m->bytes();
      for (const auto* stack : {&l.gate_exps, &l.up_exps, &l.down_exps})
        for (const linear& e : *stack) b += e.bytes();
    }
    return b;
  }

  // Forgets the cached positions (a new sequence starts at position 0).
  void reset() noexcept { n_cached_ = 0; }

  // Logits (vocab_size) for `token` at position `pos`, which must be at most position(): pos ==
  // position() extends the sequence, a smaller pos drops the cached positions from pos on. The
  // reference stays valid until the next call. Throws errc::invalid_argument for a token or position
  // out of range (pos < max_context()). Decoding is the prefill below with one position, its keys and
  // values kept in the KV cache: one forward path.
  const Eigen::VectorXf& forward(int token, int pos) {
    check_token(token);
    if (pos < 0 || pos > n_cached_ || pos >= max_context_)
      throw error(errc::invalid_argument, "llama_engine: position " + std::to_string(pos) + " (cached " + std::to_string(n_cached_) +
                                              ", context " + std::to_string(max_context_) + ")");
    n_cached_ = pos + 1;
    row_matrix x(1, cfg_.dim);
    model_.token_embd.row(token, x.data());
    for (int l = 0; l < cfg_.n_layers; ++l) layer_pass(l, x, pos, nullptr);
    logits_ = head(x).row(0).transpose();
    return logits_;
  }

  // ---- a whole sequence at once (prefill) ----
  // The forward pass over positions 0..T-1 of one sequence with matrix-matrix products (T rows of
  // activations per product), in three steps that let a caller keep the residual stream between layers
  // and restart from it (mixprec measure probes one tensor from the cached input of its layer):
  //   x = embed(tokens); for l in [0, n_layers): run_layer(l, x); logits = head(x)
  // The results do not depend on engine_options::threads; they equal forward()'s token by token up to
  // the products' summation order (a product of T rows may block its sums otherwise than one of 1 row).
  // embed, run_layer and head neither use nor change the KV cache: any number of runs from cached layer
  // inputs may follow.

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
    layer_pass(layer, x, -1, trace);
  }

  // Logits (T x vocab_size) of the residual stream x leaving the last layer.
  [[nodiscard]] row_matrix head(const row_matrix& x) {
    check_stream(x);
    const row_matrix n = rms_norm_rows(x, model_.output_norm, cfg_.rms_eps);
    row_matrix out(x.rows(), cfg_.vocab_size);
    classifier_.apply_rows(n, out);
    return out;
  }

  // Teacher forcing from position 0: row p holds the logits after tokens[0..p]; tokens.size() x
  // vocab_size. Runs the sequence at once (the pass of embed, run_layer, head above) and leaves its keys
  // and values in the KV cache: forward(next, tokens.size()) continues the sequence (prefill, then decode).
  [[nodiscard]] row_matrix logits(std::span<const int> tokens) {
    reset();
    row_matrix x = embed(tokens);
    for (int l = 0; l < cfg_.n_layers; ++l) layer_pass(l, x, 0, nullptr);
    n_cached_ = static_cast<int>(tokens.size());
    return head(x);
  }

 private:
  friend class llama_backprop;  // runs the layers with a trace and the products backwards

  // One matrix product Y = X W^T as configured.
  struct linear {
    const llama_matrix* source = nullptr;
    std::optional<quantized_linear> quantized;  // re-quantized by a spec
    row_matrix decoded;                         // spec fp32 for a stored-quantized matrix
    const activation_observer* observer = nullptr;
    const expert_observer* on_expert = nullptr;  // one expert of a stack: its observer
    int expert = 0, n_experts = 0;
    gemv_options options;
    format_id round_to = format_id::fp32;  // fp16 / bf16: X is rounded to that type first, as ggml does
    // The rows of source this product runs (one expert of a stack), n_rows < 0: all. A re-quantized or
    // decoded expert holds only its rows (row0 0).
    index_t row0 = 0, n_rows = -1;

    // Y = X W^T for a batch of rows (X: T x cols, Y: T x rows, sized by the caller). The observer sees
    // X as given (llama.cpp's imatrix collects the FP32 activations before ggml converts them).
    void apply_rows(const row_matrix& x_in, row_matrix& y) const {
      if (observer && *observer)
        for (index_t p = 0; p < x_in.rows(); ++p) (*observer)(source->name(), &x_in(p, 0), source->cols());
      if (on_expert && *on_expert)
        for (index_t p = 0; p < x_in.rows(); ++p) (*on_expert)(source->name(), expert, n_experts, &x_in(p, 0), source->cols());
      row_matrix rounded;
      if (round_to != format_id::fp32) {
        const bool f16 = round_to == format_id::fp16;
        rounded = x_in.unaryExpr([f16](float v) { return f16 ? fp16_to_fp32(fp32_to_fp16(v)) : bf16_to_fp32(fp32_to_bf16(v)); });
      }
      const row_matrix& x = round_to != format_id::fp32 ? rounded : x_in;
      if (quantized) {
        y = quantized->forward(x);
        return;
      }
      const row_matrix* w = decoded.size() ? &decoded : source->is_fp32() ? &source->fp32() : nullptr;
      if (!w) {
        if (n_rows < 0 || n_rows == source->rows()) {
          gemm(source->stored(), x, y, options);
        } else {  // one expert of a stored stack: its rows' bytes, copied for the call (no second copy of the stack)
          const quantized_tensor& all = source->stored();
          if (!all.scale_bytes().empty() || !all.zero_point_bytes().empty())
            throw error(errc::unsupported, "llama_engine: '" + source->name() + "' stores scales apart from its rows; an expert cannot be cut from it");
          const auto rb = all.row_bytes();
          const auto first = all.codes().begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(row0) * rb);
          const quantized_tensor part(all.spec(), n_rows, all.cols(),
                                      std::vector<std::uint8_t>(first, first + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(n_rows) * rb)), {}, {});
          gemm(part, x, y, options);
        }
        return;
      }
      // Fixed blocks of output columns, so that no value depends on the thread count.
      constexpr index_t block = 256;
      const index_t first_row = decoded.size() ? 0 : row0, rows = n_rows < 0 ? w->rows() : n_rows;
      const auto blocks = static_cast<std::size_t>((rows + block - 1) / block);
      mixprec::detail::parallel_for(blocks, mixprec::detail::worker_count(options.threads, blocks), [&](std::size_t b, unsigned) {
        const index_t r0 = static_cast<index_t>(b) * block, n = std::min(block, rows - r0);
        y.middleCols(r0, n).noalias() = x * w->middleRows(first_row + r0, n).transpose();
      });
    }
    // dX = dY W (T x cols) for dY (T x rows): the gradient reaching this product's input, through the
    // weights it runs (a stored or re-quantized matrix decoded to FP32 for the call; activation
    // quantization passes the gradient unchanged, the straight-through estimator). Fixed blocks of
    // input columns, so that no value depends on the thread count.
    // One expert of a stack: its rows only (row0, n_rows), decoded alone when stored in a block type.
    void backprop_rows(const row_matrix& dy, row_matrix& dx) const {
      row_matrix owned;
      const row_matrix* w = decoded.size() ? &decoded : source->is_fp32() && !quantized ? &source->fp32() : nullptr;
      index_t first_row = decoded.size() || quantized ? 0 : row0;
      if (!w) {
        if (quantized) {
          owned = dequantize(quantized->weight());
        } else if (n_rows >= 0 && n_rows != source->rows()) {
          owned.resize(n_rows, source->cols());
          for (index_t r = 0; r < n_rows; ++r) source->row(row0 + r, &owned(r, 0));
          first_row = 0;
        } else {
          owned = source->to_float();
        }
        w = &owned;
      }
      const index_t rows = n_rows < 0 ? w->rows() : n_rows;
      dx.resize(dy.rows(), w->cols());
      constexpr index_t block = 256;
      const index_t cols = w->cols();
      const auto blocks = static_cast<std::size_t>((cols + block - 1) / block);
      mixprec::detail::parallel_for(blocks, mixprec::detail::worker_count(options.threads, blocks), [&](std::size_t b, unsigned) {
        const index_t c0 = static_cast<index_t>(b) * block, n = std::min(block, cols - c0);
        dx.middleCols(c0, n).noalias() = dy * w->block(first_row, c0, rows, n);
      });
    }
    [[nodiscard]] std::size_t bytes() const noexcept {
      if (quantized) return quantized->weight().bytes();
      if (decoded.size()) return static_cast<std::size_t>(decoded.size()) * sizeof(float);
      if (n_rows >= 0 && source->rows() > 0)
        return source->bytes() / static_cast<std::size_t>(source->rows()) * static_cast<std::size_t>(n_rows);
      return source->bytes();
    }
  };
  struct layer_linears {
    linear wq, wk, wv, wo, gate, up, down, wqkv, gate_up;  // the absent ones have no rows
    linear gate_shexp, up_shexp, down_shexp, router;       // a mixture-of-experts layer's
    std::vector<linear> gate_exps, up_exps, down_exps;     // per expert
  };

  // The one layer pass (run_layer's checks done by the caller): x holds the residual stream of T
  // positions. first < 0: positions 0..T-1 on their own, the KV cache untouched (prefill, run_layer).
  // first >= 0: positions first..first+T-1 of the sequence whose keys and values for positions
  // 0..first-1 are in the layer's KV cache, theirs written after them (decoding: forward()).
  void layer_pass(int layer, row_matrix& x, int first, llama_layer_trace* trace) {
    const index_t T = x.rows();
    const index_t p0 = first < 0 ? 0 : first;  // the sequence position of row 0
    const int hs = cfg_.head_size(), kv_mul = cfg_.n_heads / cfg_.n_kv_heads;
    const llama_layer& w = model_.layers[static_cast<std::size_t>(layer)];
    const layer_linears& lin = layers_[static_cast<std::size_t>(layer)];
    row_matrix n = rms_norm_rows(x, w.attn_norm, cfg_.rms_eps);
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
      head_rms_norm(&q(p, 0), cfg_.n_heads, w.q_norm, cfg_.rms_eps);
      head_rms_norm(&k(p, 0), cfg_.n_kv_heads, w.k_norm, cfg_.rms_eps);
      rope_.set(static_cast<int>(p0 + p));
      rope_.rotate(&q(p, 0), cfg_.n_heads, hs);
      rope_.rotate(&k(p, 0), cfg_.n_kv_heads, hs);
    }
    if (trace) {
      trace->n = n;
      trace->q = q;
      trace->k = k;
      trace->v = v;
      trace->p.resize(static_cast<std::size_t>(cfg_.n_heads));
    }
    // The keys and values attended to: this pass's (prefill), or the cache's with this pass's after them.
    const row_matrix* keys = &k;
    const row_matrix* values = &v;
    if (first >= 0) {
      row_matrix& kc = key_cache_[static_cast<std::size_t>(layer)];
      row_matrix& vc = value_cache_[static_cast<std::size_t>(layer)];
      if (kc.rows() < p0 + T) {  // grown by doubling, the cached rows kept
        const index_t rows = std::min<index_t>(max_context_, std::max<index_t>(p0 + T, 2 * kc.rows()));
        kc.conservativeResize(rows, cfg_.kv_dim());
        vc.conservativeResize(rows, cfg_.kv_dim());
      }
      kc.middleRows(p0, T) = k;
      vc.middleRows(p0, T) = v;
      keys = &kc;
      values = &vc;
    }
    // Per head: causal softmax(Q K^T / sqrt(hs)) V, row p (position p0 + p) attending to positions 0..p0 + p.
    const index_t n_keys = p0 + T;
    row_matrix att(T, cfg_.q_dim());
    row_matrix scores(T, n_keys);
    const float scale = std::sqrt(static_cast<float>(hs));
    for (int h = 0; h < cfg_.n_heads; ++h) {
      const index_t kv_head = static_cast<index_t>((h / kv_mul) * hs);
      scores.noalias() = q.middleCols(h * hs, hs) * keys->block(0, kv_head, n_keys, hs).transpose();
      for (index_t p = 0; p < T; ++p) {
        float* row = &scores(p, 0);
        const index_t seen = p0 + p + 1;
        for (index_t t = 0; t < seen; ++t) row[t] /= scale;
        softmax_in_place(row, static_cast<int>(seen));
        std::fill(row + seen, row + n_keys, 0.0f);
      }
      att.middleCols(h * hs, hs).noalias() = scores * values->block(0, kv_head, n_keys, hs);
      if (trace) trace->p[static_cast<std::size_t>(h)] = scores;
    }
    row_matrix o(T, cfg_.dim);
    lin.wo.apply_rows(att, o);
    x += o;
    n = rms_norm_rows(x, w.ffn_norm, cfg_.rms_eps);
    if (cfg_.n_expert > 0) {
      if (trace) {
        trace->att = std::move(att);
        trace->h = x;
        trace->m = n;
      }
      x += moe_ffn(lin, w, n, trace ? &trace->moe : nullptr);
      return;
    }
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
    swiglu_in_place(g, u);
    lin.down.apply_rows(g, o);
    if (trace) trace->act = g;
    x += o;
  }

  // g = silu(g) * u, elementwise (SwiGLU's activation).
  static void swiglu_in_place(row_matrix& g, const row_matrix& u) { g = (g.array() / (1.0f + (-g.array()).exp()) * u.array()).matrix(); }
  // down(silu(gate x) * up x) for x (R x dim): a gated FFN of width F (one expert, the shared expert);
  // its inside kept in *trace when given.
  [[nodiscard]] row_matrix gated_ffn(const linear& gate, const linear& up, const linear& down, const row_matrix& x, index_t F,
                                     gated_ffn_trace* trace = nullptr) const {
    row_matrix g(x.rows(), F), u(x.rows(), F), d(x.rows(), cfg_.dim);
    gate.apply_rows(x, g);
    up.apply_rows(x, u);
    if (trace) {
      trace->gate = g;
      trace->up = u;
    }
    swiglu_in_place(g, u);
    down.apply_rows(g, d);
    if (trace) {
      trace->act = std::move(g);
      trace->out = d;
    }
    return d;
  }

  // The least divisor of the renormalised expert weights (build_moe_ffn's ggml_clamp: 2^-14).
  static constexpr float expert_weights_floor = 6.103515625e-5f;

  // A mixture-of-experts FFN on n (T x dim), as llama.cpp's build_moe_ffn with softmax gating: per
  // token the router's softmax over all experts (in ggml's arithmetic: exp(z - max) summed in double,
  // times the reciprocal), the n_expert_used largest (ties to the lower expert), their probabilities
  // as weights (divided by their sum, at least 2^-14, when expert_weights_norm), each chosen expert's
  // SwiGLU FFN times its weight, summed in the order chosen; then the shared expert's SwiGLU FFN times
  // sigmoid(gate_inp_shexp . n) when the model has one. Each expert runs once on the rows routed to it.
  // Its inside kept in *trace when given.
  [[nodiscard]] row_matrix moe_ffn(const layer_linears& lin, const llama_layer& w, const row_matrix& n, llama_moe_trace* trace = nullptr) const {
    const index_t T = n.rows();
    const int E = cfg_.n_expert, K = cfg_.n_expert_used;
    row_matrix logits(T, E);
    lin.router.apply_rows(n, logits);
    std::vector<int> chosen(static_cast<std::size_t>(T * K));
    std::vector<float> weight(chosen.size()), chosen_sum(static_cast<std::size_t>(T));
    std::vector<int> order(static_cast<std::size_t>(E));
    for (index_t p = 0; p < T; ++p) {
      float* z = &logits(p, 0);
      const float mx = *std::max_element(z, z + E);
      double total = 0.0;
      for (int e = 0; e < E; ++e) total += static_cast<double>(z[e] = std::exp(z[e] - mx));
      const auto inv = static_cast<float>(1.0 / total);
      for (int e = 0; e < E; ++e) z[e] *= inv;
      for (int e = 0; e < E; ++e) order[static_cast<std::size_t>(e)] = e;
      std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](int a, int b) { return z[a] > z[b] || (z[a] == z[b] && a < b); });
      double sum = 0.0;
      for (int k = 0; k < K; ++k) sum += z[order[static_cast<std::size_t>(k)]];
      chosen_sum[static_cast<std::size_t>(p)] = static_cast<float>(sum);
      const float norm = cfg_.expert_weights_norm ? std::max(static_cast<float>(sum), expert_weights_floor) : 1.0f;
      for (int k = 0; k < K; ++k) {
        const auto i = static_cast<std::size_t>(p * K + k);
        chosen[i] = order[static_cast<std::size_t>(k)];
        weight[i] = cfg_.expert_weights_norm ? z[chosen[i]] / norm : z[chosen[i]];
      }
    }
    if (trace) {
      trace->probs = logits;
      trace->chosen = chosen;
      trace->weight = weight;
      trace->chosen_sum = chosen_sum;
      trace->experts.assign(static_cast<std::size_t>(E), {});
    }
    // Each expert on the rows routed to it; results kept per (token, rank) to sum in the order chosen.
    const index_t F = cfg_.expert_hidden_dim;
    row_matrix expert_out(T * K, cfg_.dim);
    for (int e = 0; e < E; ++e) {
      std::vector<index_t> slots;  // p * K + k of every (token, rank) that chose e
      for (std::size_t i = 0; i < chosen.size(); ++i)
        if (chosen[i] == e) slots.push_back(static_cast<index_t>(i));
      if (slots.empty()) continue;
      const auto R = static_cast<index_t>(slots.size());
      row_matrix xe(R, cfg_.dim);
      for (index_t r = 0; r < R; ++r) xe.row(r) = n.row(slots[static_cast<std::size_t>(r)] / K);
      const auto ei = static_cast<std::size_t>(e);
      llama_moe_trace::expert* te = trace ? &trace->experts[ei] : nullptr;
      const row_matrix d = gated_ffn(lin.gate_exps[ei], lin.up_exps[ei], lin.down_exps[ei], xe, F, te ? &te->ffn : nullptr);
      if (te) {
        te->slots = slots;
        te->x = std::move(xe);
      }
      for (index_t r = 0; r < R; ++r) {
        const index_t slot = slots[static_cast<std::size_t>(r)];
        expert_out.row(slot) = d.row(r) * weight[static_cast<std::size_t>(slot)];
      }
    }
    row_matrix out(T, cfg_.dim);
    for (index_t p = 0; p < T; ++p) {
      out.row(p) = expert_out.row(p * K);
      for (int k = 1; k < K; ++k) out.row(p) += expert_out.row(p * K + k);
    }
    if (cfg_.shared_hidden_dim > 0) {
      const row_matrix d = gated_ffn(lin.gate_shexp, lin.up_shexp, lin.down_shexp, n, cfg_.shared_hidden_dim, trace ? &trace->shared : nullptr);
      if (trace) trace->shared_logit.resize(T);
      for (index_t p = 0; p < T; ++p) {
        const float s = n.row(p).dot(w.gate_inp_shexp.transpose());
        if (trace) trace->shared_logit[p] = s;
        out.row(p) += d.row(p) * (1.0f / (1.0f + std::exp(-s)));
      }
    }
    return out;
  }

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

  const llama_model& model_;
  llama_config cfg_;
  int max_context_ = 0;
  int n_cached_ = 0;
  activation_observer observer_;
  expert_observer expert_observer_;
  std::vector<layer_linears> layers_;
  linear classifier_;
  std::vector<row_matrix> key_cache_, value_cache_;  // per layer: positions x kv_dim (rows past position() unused)
  rope_cache rope_;
  Eigen::VectorXf logits_;
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
