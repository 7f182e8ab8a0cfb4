// A small LLaMA inference engine on mixprec: llama2.c's forward pass (RMSNorm, RoPE on interleaved
// pairs, grouped-query attention with a KV cache, SwiGLU FFN) where every weight matrix is either
// FP32 (Eigen) or a mixprec::quantized_linear built from a plan entry and run by the fused kernels.
#pragma once

#include <cmath>
#include <functional>
#include <optional>
#include <map>
#include <string>
#include <vector>

#include <mixprec/io/llama2c.hpp>
#include <mixprec/kernels/quantized_linear.hpp>

namespace llama {

// One matrix-vector product y = W x, FP32 or quantized.
struct linear {
  std::string name;
  const mixprec::row_matrix* fp32 = nullptr;
  std::optional<mixprec::quantized_linear> quantized;
  // Called with every input vector before the product (e.g. to gather activation statistics).
  const std::function<void(const std::string&, const float*, mixprec::index_t)>* observer = nullptr;

  void apply(const float* x, float* y) const {
    if (observer && *observer) (*observer)(name, x, fp32->cols());
    if (quantized) {
      quantized->forward(x, y);
      return;
    }
    Eigen::Map<Eigen::VectorXf>(y, fp32->rows()).noalias() =
        *fp32 * Eigen::Map<const Eigen::VectorXf>(x, fp32->cols());
  }
  [[nodiscard]] std::size_t bytes() const {
    return quantized ? quantized->weight().bytes() : static_cast<std::size_t>(fp32->size()) * sizeof(float);
  }
};

class transformer {
 public:
  // Runs the checkpoint's weights; `specs` maps matrix names ("layers.0.wq", ..., "classifier") to the
  // quantizer each uses (absent: FP32); `activations` is how quantized INT4/INT8 matrices take their
  // inputs. The checkpoint must outlive the transformer.
  explicit transformer(const mixprec::llama2c::checkpoint& ck, const std::map<std::string, mixprec::quant_spec>& specs = {},
                       mixprec::activation_type activations = mixprec::activation_type::fp32)
      : ck_(ck), cfg_(ck.cfg) {
    auto make = [&](const std::string& name, const mixprec::row_matrix& w) {
      linear l;
      l.name = name;
      l.fp32 = &w;
      l.observer = &observer_;
      const auto it = specs.find(name);
      if (it != specs.end() && it->second.format != mixprec::format_id::fp32) {
        l.quantized.emplace(w, it->second, std::nullopt, name);
        const auto f = it->second.format;
        if (f == mixprec::format_id::int4 || f == mixprec::format_id::int8) l.quantized->set_activations(activations);
      }
      return l;
    };
    for (std::size_t i = 0; i < ck.layers.size(); ++i) {
      const std::string p = "layers." + std::to_string(i) + ".";
      const auto& w = ck.layers[i];
      layers_.push_back({make(p + "wq", w.wq), make(p + "wk", w.wk), make(p + "wv", w.wv), make(p + "wo", w.wo),
                         make(p + "w1", w.w1), make(p + "w2", w.w2), make(p + "w3", w.w3)});
    }
    classifier_ = make("classifier", ck.classifier);
    const auto kv = static_cast<std::size_t>(cfg_.n_layers) * static_cast<std::size_t>(cfg_.seq_len) *
                    static_cast<std::size_t>(cfg_.kv_dim());
    key_cache_.assign(kv, 0.0f);
    value_cache_.assign(kv, 0.0f);
  }

  transformer(const transformer&) = delete;  // the linears point at this object's observer
  transformer& operator=(const transformer&) = delete;

  // Sees the input of every matrix-vector product (name, x, length); empty by default.
  void observe(std::function<void(const std::string&, const float*, mixprec::index_t)> fn) { observer_ = std::move(fn); }

  // Bytes of every matrix as stored (quantized or FP32); norms and the embedding table excluded.
  [[nodiscard]] std::size_t matrix_bytes() const {
    std::size_t b = classifier_.bytes();
    for (const auto& l : layers_)
      for (const linear* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3}) b += m->bytes();
    return b;
  }

  // Logits for `token` at position `pos` (positions must be fed in order from 0).
  const Eigen::VectorXf& forward(int token, int pos) {
    if (token < 0 || token >= cfg_.vocab_size || pos < 0 || pos >= cfg_.seq_len)
      throw mixprec::error(mixprec::errc::invalid_argument, "forward: token or position out of range");
    const int dim = cfg_.dim, hs = cfg_.head_size(), kv_dim = cfg_.kv_dim(), kv_mul = cfg_.n_heads / cfg_.n_kv_heads;
    x_ = ck_.token_embedding.row(token).transpose();
    xb_.resize(dim);
    xb2_.resize(dim);
    q_.resize(dim);
    hb_.resize(cfg_.hidden_dim);
    hb2_.resize(cfg_.hidden_dim);
    att_.resize(cfg_.seq_len);
    for (int l = 0; l < cfg_.n_layers; ++l) {
      const auto& w = ck_.layers[static_cast<std::size_t>(l)];
      const auto& lin = layers_[static_cast<std::size_t>(l)];
      rmsnorm(xb_, x_, w.rms_att);
      const std::size_t cache_off = (static_cast<std::size_t>(l) * cfg_.seq_len + static_cast<std::size_t>(pos)) * kv_dim;
      float* k = key_cache_.data() + cache_off;
      float* v = value_cache_.data() + cache_off;
      lin.wq.apply(xb_.data(), q_.data());
      lin.wk.apply(xb_.data(), k);
      lin.wv.apply(xb_.data(), v);
      for (int i = 0; i < dim; i += 2) {  // RoPE: rotate each (even, odd) pair of every head
        const int head_dim = i % hs;
        const float freq = 1.0f / std::pow(10000.0f, static_cast<float>(head_dim) / static_cast<float>(hs));
        const float val = static_cast<float>(pos) * freq;
        const float fcr = std::cos(val), fci = std::sin(val);
        for (float* vec : {q_.data(), k}) {
          if (vec == k && i >= kv_dim) continue;
          const float v0 = vec[i], v1 = vec[i + 1];
          vec[i] = v0 * fcr - v1 * fci;
          vec[i + 1] = v0 * fci + v1 * fcr;
        }
      }
      for (int h = 0; h < cfg_.n_heads; ++h) {
        const float* qh = q_.data() + h * hs;
        const std::size_t kv_head = static_cast<std::size_t>((h / kv_mul) * hs);
        const std::size_t layer_off = static_cast<std::size_t>(l) * cfg_.seq_len * kv_dim;
        for (int t = 0; t <= pos; ++t) {
          const float* kt = key_cache_.data() + layer_off + static_cast<std::size_t>(t) * kv_dim + kv_head;
          float score = 0.0f;
          for (int i = 0; i < hs; ++i) score += qh[i] * kt[i];
          att_[t] = score / std::sqrt(static_cast<float>(hs));
        }
        softmax(att_.data(), pos + 1);
        float* out = xb_.data() + h * hs;
        std::fill(out, out + hs, 0.0f);
        for (int t = 0; t <= pos; ++t) {
          const float* vt = value_cache_.data() + layer_off + static_cast<std::size_t>(t) * kv_dim + kv_head;
          for (int i = 0; i < hs; ++i) out[i] += att_[t] * vt[i];
        }
      }
      lin.wo.apply(xb_.data(), xb2_.data());
      x_ += xb2_;
      rmsnorm(xb_, x_, w.rms_ffn);
      lin.w1.apply(xb_.data(), hb_.data());
      lin.w3.apply(xb_.data(), hb2_.data());
      for (int i = 0; i < cfg_.hidden_dim; ++i) hb_[i] = hb_[i] / (1.0f + std::exp(-hb_[i])) * hb2_[i];  // SwiGLU
      lin.w2.apply(hb_.data(), xb_.data());
      x_ += xb_;
    }
    rmsnorm(xb_, x_, ck_.rms_final);
    logits_.resize(cfg_.vocab_size);
    classifier_.apply(xb_.data(), logits_.data());
    return logits_;
  }

 private:
  struct layer_linears {
    linear wq, wk, wv, wo, w1, w2, w3;
  };
  static void rmsnorm(Eigen::VectorXf& out, const Eigen::VectorXf& x, const Eigen::VectorXf& weight) {
    const float ss = x.squaredNorm() / static_cast<float>(x.size()) + 1e-5f;
    out = x.cwiseProduct(weight) / std::sqrt(ss);
  }
  static void softmax(float* x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; ++i) mx = std::max(mx, x[i]);
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) sum += (x[i] = std::exp(x[i] - mx));
    for (int i = 0; i < n; ++i) x[i] /= sum;
  }

  const mixprec::llama2c::checkpoint& ck_;
  mixprec::llama2c::config cfg_;
  std::function<void(const std::string&, const float*, mixprec::index_t)> observer_;
  std::vector<layer_linears> layers_;
  linear classifier_;
  std::vector<float> key_cache_, value_cache_;
  Eigen::VectorXf x_, xb_, xb2_, q_, hb_, hb2_, att_, logits_;
};

// Greedy decoding from BOS (token 1): the next `steps` token ids.
inline std::vector<int> greedy(transformer& model, int steps) {
  std::vector<int> out;
  int token = 1;
  for (int pos = 0; pos < steps; ++pos) {
    Eigen::Index next = 0;
    model.forward(token, pos).maxCoeff(&next);
    token = static_cast<int>(next);
    out.push_back(token);
  }
  return out;
}

}  // namespace llama
