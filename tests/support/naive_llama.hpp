// The tests' oracle for the LLaMA engine (mixprec/models/llama.hpp): a plain forward pass of the
// llama2.c architecture (karpathy's run.c) in double precision, one loop per formula, written from the
// algorithm and sharing no code with the engine (only the checkpoint's layout, llama2c::checkpoint, or
// a llama_model's values as FP32).
//
// Per token x = embedding[token] at position pos, and per layer:
//   a   = rmsnorm(x) * rms_att                           rmsnorm(x) = x / sqrt(mean(x^2) + eps), eps 1e-5
//   q   = Wq a, k = Wk a, v = Wv a; RoPE on q's and k's heads
//   x  += Wo concat_h( sum_t softmax_t(q_h . k_t,g(h) / sqrt(head_size)) v_t,g(h) ),  t = 0..pos
//   b   = rmsnorm(x) * rms_ffn
//   x  += W2 (silu(W1 b) * (W3 b))                       silu(z) = z / (1 + e^-z)
// logits = Wcls (rmsnorm(x) * rms_final).
// GQA: query head h reads KV head g(h) = h / (n_heads / n_kv_heads). RoPE: within each head, the pair
// (2i, 2i+1) turns by the angle pos * theta^(-2i / head_size), theta 10000 (llama2.c). For hand-built
// llama_models also the engine's generalisations: only the pairs with 2i < rope_dim turn, by
// pos * freq_scale / factor_i * theta^(-2i / rope_dim); heads of head_dim values (q has n_heads of them,
// Wo takes n_heads * head_dim); with NEOX RoPE, pair i is (i, i + rope_dim / 2); biases added to q, k
// and v; fused matrices (wqkv, gate_up) split into their parts; q's and k's heads each RMSNormed (eps as the model's) times their gains before RoPE.
// A mixture of experts: the FFN is sum_k w_k FFN_e(k)(b) over the n_expert_used experts e(k) of largest
// p = softmax(router b) (ties to the lower expert), w_k = p_e(k), divided by their sum (at least 2^-14)
// when the model renormalises; plus, with a shared expert, sigmoid(gate_inp_shexp . b) FFN_shared(b);
// each FFN a SwiGLU of its own matrices, cut from the stacks.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "mixprec/io/llama2c.hpp"
#include "mixprec/models/llama.hpp"

namespace mixprec::test {

class naive_llama {
 public:
  // The weights of a llama2.c checkpoint (run.c's hyper-parameters: eps 1e-5, theta 10000, full-head RoPE).
  explicit naive_llama(const llama2c::checkpoint& ck) {
    const llama2c::config& c = ck.cfg;
    set_shape(c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len);
    rope_dim_ = head_size_;
    embedding_ = copy(ck.token_embedding);
    for (const llama2c::layer_weights& w : ck.layers)
      layers_.push_back({copy(w.rms_att), copy(w.rms_ffn), copy(w.wq), copy(w.wk), copy(w.wv), copy(w.wo), copy(w.w1), copy(w.w2),
                         copy(w.w3), {}, {}, {}, {}, {}, {}, {}, {}, {}});
    rms_final_ = copy(ck.rms_final);
    classifier_ = copy(ck.classifier);
    check();
  }

  // The values of a llama_model (every matrix as FP32 by llama_matrix::to_float), with its config's eps,
  // theta, rope_dim, linear scaling and rope factors.
  explicit naive_llama(const models::llama_model& m) {
    const models::llama_config& c = m.config;
    set_shape(c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.context_length, c.head_size());
    eps_ = c.rms_eps;
    neox_ = c.rope == models::llama_config::rope_type::neox;
    theta_ = c.rope_theta;
    rope_dim_ = c.rope_dim;
    freq_scale_ = c.rope_freq_scale;
    for (Eigen::Index i = 0; i < m.rope_freq_factors.size(); ++i) rope_factors_.push_back(m.rope_freq_factors[i]);
    embedding_ = copy(m.token_embd.to_float());
    const index_t q_dim = c.q_dim(), kv_dim = c.kv_dim(), hidden = c.hidden_dim;
    for (const models::llama_layer& l : m.layers) {
      // A fused matrix is run here as its parts: wqkv's rows are wq's, wk's and wv's; gate_up's gate's and up's.
      const row_matrix qkv = l.wqkv.present() ? l.wqkv.to_float() : row_matrix(), gu = l.gate_up.present() ? l.gate_up.to_float() : row_matrix();
      const row_matrix wq = qkv.size() ? row_matrix(qkv.topRows(q_dim)) : l.wq.to_float();
      const row_matrix wk = qkv.size() ? row_matrix(qkv.middleRows(q_dim, kv_dim)) : l.wk.to_float();
      const row_matrix wv = qkv.size() ? row_matrix(qkv.bottomRows(kv_dim)) : l.wv.to_float();
      const row_matrix gate = gu.size() ? row_matrix(gu.topRows(hidden)) : l.gate.to_float();
      const row_matrix up = gu.size() ? row_matrix(gu.bottomRows(hidden)) : l.up.to_float();
      layer x{copy(l.attn_norm), copy(l.ffn_norm), copy(wq), copy(wk), copy(wv), copy(l.wo.to_float()), copy(gate),
              copy(l.down.to_float()), copy(up), copy(l.bq), copy(l.bk), copy(l.bv), copy(l.q_norm), copy(l.k_norm), {}, {}, {}, {}};
      if (c.n_expert > 0) {
        const index_t F = c.expert_hidden_dim;
        const row_matrix g = l.gate_exps.to_float(), u = l.up_exps.to_float(), d = l.down_exps.to_float();
        for (index_t e = 0; e < c.n_expert; ++e)
          x.experts.push_back({copy(g.middleRows(e * F, F)), copy(d.middleRows(e * c.dim, c.dim)), copy(u.middleRows(e * F, F)), F});
        x.router = copy(l.gate_inp.to_float());
        if (c.shared_hidden_dim > 0) {
          x.shared.push_back({copy(l.gate_shexp.to_float()), copy(l.down_shexp.to_float()), copy(l.up_shexp.to_float()), c.shared_hidden_dim});
          x.shared_gate = copy(l.gate_inp_shexp);
        }
      }
      layers_.push_back(std::move(x));
    }
    n_expert_used_ = c.n_expert_used;
    expert_weights_norm_ = c.expert_weights_norm;
    rms_final_ = copy(m.output_norm);
    classifier_ = copy(m.classifier().to_float());
    check();
  }

  [[nodiscard]] int vocab_size() const noexcept { return vocab_; }
  [[nodiscard]] int context_length() const noexcept { return seq_len_; }

  // The logits of `token` at position `pos`; positions go 0, 1, 2, ... (pos 0 starts a new sequence).
  std::vector<double> forward(int token, int pos) {
    if (token < 0 || token >= vocab_) throw std::out_of_range("naive_llama: token " + std::to_string(token));
    if (pos < 0 || pos > cached_ || pos >= seq_len_) throw std::out_of_range("naive_llama: position " + std::to_string(pos));
    cached_ = pos + 1;
    const int kv_dim = head_size_ * n_kv_heads_, q_dim = head_size_ * n_heads_;
    const int group = n_heads_ / n_kv_heads_;
    std::vector<double> x(embedding_.begin() + static_cast<std::ptrdiff_t>(token) * dim_,
                          embedding_.begin() + static_cast<std::ptrdiff_t>(token + 1) * dim_);
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const layer& w = layers_[l];
      // Attention.
      const std::vector<double> a = rmsnorm(x, w.rms_att);
      std::vector<double> q = matvec(w.wq, q_dim, dim_, a);
      std::vector<double> k = matvec(w.wk, kv_dim, dim_, a);
      std::vector<double> v = matvec(w.wv, kv_dim, dim_, a);
      add(q, w.bq);
      add(k, w.bk);
      add(v, w.bv);
      if (!w.q_norm.empty())
        for (int h = 0; h < n_heads_; ++h) norm_head(q, h, w.q_norm);
      if (!w.k_norm.empty())
        for (int h = 0; h < n_kv_heads_; ++h) norm_head(k, h, w.k_norm);
      rope(q, n_heads_, pos);
      rope(k, n_kv_heads_, pos);
      keys_[l].resize(static_cast<std::size_t>(cached_));
      values_[l].resize(static_cast<std::size_t>(cached_));
      keys_[l][static_cast<std::size_t>(pos)] = k;
      values_[l][static_cast<std::size_t>(pos)] = v;
      std::vector<double> heads(static_cast<std::size_t>(q_dim), 0.0);
      for (int h = 0; h < n_heads_; ++h) {
        const int g = h / group;
        std::vector<double> score(static_cast<std::size_t>(pos + 1));
        for (int t = 0; t <= pos; ++t) {
          double dot = 0.0;
          for (int i = 0; i < head_size_; ++i)
            dot += q[idx(h * head_size_ + i)] * keys_[l][static_cast<std::size_t>(t)][idx(g * head_size_ + i)];
          score[static_cast<std::size_t>(t)] = dot / std::sqrt(static_cast<double>(head_size_));
        }
        softmax(score);
        for (int t = 0; t <= pos; ++t)
          for (int i = 0; i < head_size_; ++i)
            heads[idx(h * head_size_ + i)] += score[static_cast<std::size_t>(t)] * values_[l][static_cast<std::size_t>(t)][idx(g * head_size_ + i)];
      }
      const std::vector<double> o = matvec(w.wo, dim_, q_dim, heads);
      for (int i = 0; i < dim_; ++i) x[idx(i)] += o[idx(i)];
      // Feed-forward (SwiGLU), or a mixture of them.
      const std::vector<double> b = rmsnorm(x, w.rms_ffn);
      if (w.experts.empty()) {
        const std::vector<double> d = swiglu({w.w1, w.w2, w.w3, hidden_}, b);
        for (int i = 0; i < dim_; ++i) x[idx(i)] += d[idx(i)];
        continue;
      }
      std::vector<double> p = matvec(w.router, static_cast<int>(w.experts.size()), dim_, b);
      softmax(p);
      std::vector<int> order(p.size());
      for (std::size_t e = 0; e < p.size(); ++e) order[e] = static_cast<int>(e);
      std::stable_sort(order.begin(), order.end(), [&](int a, int c) { return p[idx(a)] > p[idx(c)]; });
      double sum = 0.0;
      for (int k = 0; k < n_expert_used_; ++k) sum += p[idx(order[idx(k)])];
      for (int k = 0; k < n_expert_used_; ++k) {
        const int e = order[idx(k)];
        const double weight = expert_weights_norm_ ? p[idx(e)] / std::max(sum, 6.103515625e-5) : p[idx(e)];
        const std::vector<double> d = swiglu(w.experts[idx(e)], b);
        for (int i = 0; i < dim_; ++i) x[idx(i)] += weight * d[idx(i)];
      }
      if (!w.shared.empty()) {
        double s = 0.0;
        for (int i = 0; i < dim_; ++i) s += w.shared_gate[idx(i)] * b[idx(i)];
        const std::vector<double> d = swiglu(w.shared.front(), b);
        for (int i = 0; i < dim_; ++i) x[idx(i)] += d[idx(i)] / (1.0 + std::exp(-s));
      }
    }
    return matvec(classifier_, vocab_, dim_, rmsnorm(x, rms_final_));
  }

  // Teacher forcing from position 0: row p is forward(tokens[p], p).
  std::vector<std::vector<double>> logits(const std::vector<int>& tokens) {
    std::vector<std::vector<double>> out;
    for (std::size_t p = 0; p < tokens.size(); ++p) out.push_back(forward(tokens[p], static_cast<int>(p)));
    return out;
  }

  // Greedy decoding from `first` at position 0: the next `steps` ids (the first largest logit), and the
  // smallest gap between the largest and the second largest logit on the way (how far from a tie the
  // choices were, for comparing with a computation in another precision).
  struct greedy_result {
    std::vector<int> ids;
    double min_gap = 0.0;
  };
  greedy_result greedy(int steps, int first = 1) {
    greedy_result r;
    r.min_gap = std::numeric_limits<double>::infinity();
    int token = first;
    for (int pos = 0; pos < steps; ++pos) {
      const std::vector<double> l = forward(token, pos);
      int best = 0;
      for (int i = 1; i < vocab_; ++i)
        if (l[idx(i)] > l[idx(best)]) best = i;
      double second = -std::numeric_limits<double>::infinity();
      for (int i = 0; i < vocab_; ++i)
        if (i != best && l[idx(i)] > second) second = l[idx(i)];
      r.min_gap = std::min(r.min_gap, l[idx(best)] - second);
      r.ids.push_back(best);
      token = best;
    }
    return r;
  }

 private:
  struct ffn {
    std::vector<double> w1, w2, w3;  // gate (width x dim), down (dim x width), up (width x dim)
    index_t width = 0;
  };
  struct layer {
    std::vector<double> rms_att, rms_ffn, wq, wk, wv, wo, w1, w2, w3;  // matrices row-major (out x in)
    std::vector<double> bq, bk, bv, q_norm, k_norm;                    // empty: none
    std::vector<ffn> experts;                                          // a mixture of experts (w1, w2, w3 unused)
    std::vector<double> router;                                        // n_expert x dim
    std::vector<ffn> shared;                                           // the shared expert, if any
    std::vector<double> shared_gate;                                   // dim
  };

  // W2 (silu(W1 b) * (W3 b)), silu(z) = z / (1 + e^-z).
  [[nodiscard]] std::vector<double> swiglu(const ffn& f, const std::vector<double>& b) const {
    const int width = static_cast<int>(f.width);
    std::vector<double> h1 = matvec(f.w1, width, dim_, b);
    const std::vector<double> h3 = matvec(f.w3, width, dim_, b);
    for (int i = 0; i < width; ++i) h1[idx(i)] = h1[idx(i)] / (1.0 + std::exp(-h1[idx(i)])) * h3[idx(i)];
    return matvec(f.w2, dim_, width, h1);
  }

  static std::size_t idx(int i) { return static_cast<std::size_t>(i); }

  template <class M>
  static std::vector<double> copy(const M& m) {  // row by row, whatever the storage order
    std::vector<double> out;
    out.reserve(static_cast<std::size_t>(m.size()));
    for (Eigen::Index r = 0; r < m.rows(); ++r)
      for (Eigen::Index c = 0; c < m.cols(); ++c) out.push_back(static_cast<double>(m(r, c)));
    return out;
  }

  void set_shape(int dim, int hidden, int n_layers, int n_heads, int n_kv_heads, int vocab, int seq_len, int head_size = 0) {
    dim_ = dim, hidden_ = hidden, n_layers_ = n_layers, n_heads_ = n_heads, n_kv_heads_ = n_kv_heads, vocab_ = vocab, seq_len_ = seq_len;
    if (n_heads <= 0 || n_kv_heads <= 0 || (head_size == 0 && dim % n_heads != 0) || n_heads % n_kv_heads != 0)
      throw std::invalid_argument("naive_llama: heads do not divide the dimensions");
    head_size_ = head_size > 0 ? head_size : dim / n_heads;
    keys_.assign(static_cast<std::size_t>(n_layers), {});
    values_.assign(static_cast<std::size_t>(n_layers), {});
  }

  void check() const {
    const auto kv_dim = static_cast<std::size_t>(head_size_ * n_kv_heads_), q_dim = static_cast<std::size_t>(head_size_ * n_heads_);
    const auto hs = static_cast<std::size_t>(head_size_);
    const auto d = static_cast<std::size_t>(dim_), h = static_cast<std::size_t>(hidden_), v = static_cast<std::size_t>(vocab_);
    bool ok = embedding_.size() == v * d && classifier_.size() == v * d && rms_final_.size() == d &&
              layers_.size() == static_cast<std::size_t>(n_layers_) && rope_dim_ % 2 == 0 && rope_dim_ <= head_size_ &&
              (rope_factors_.empty() || rope_factors_.size() == static_cast<std::size_t>(rope_dim_ / 2));
    for (const layer& l : layers_)
      ok = ok && l.rms_att.size() == d && l.rms_ffn.size() == d && l.wq.size() == q_dim * d && l.wk.size() == kv_dim * d &&
           l.wv.size() == kv_dim * d && l.wo.size() == d * q_dim &&
           (!l.experts.empty() || (l.w1.size() == h * d && l.w2.size() == d * h && l.w3.size() == h * d)) &&
           (l.bq.empty() || l.bq.size() == q_dim) && (l.bk.empty() || l.bk.size() == kv_dim) && (l.bv.empty() || l.bv.size() == kv_dim) &&
           (l.q_norm.empty() || l.q_norm.size() == hs) && (l.k_norm.empty() || l.k_norm.size() == hs);
    if (!ok) throw std::invalid_argument("naive_llama: the weights do not have the config's shapes");
  }

  // W (rows x cols, row-major) times x.
  static std::vector<double> matvec(const std::vector<double>& w, int rows, int cols, const std::vector<double>& x) {
    std::vector<double> y(static_cast<std::size_t>(rows), 0.0);
    for (int r = 0; r < rows; ++r) {
      double s = 0.0;
      for (int c = 0; c < cols; ++c) s += w[static_cast<std::size_t>(r) * static_cast<std::size_t>(cols) + idx(c)] * x[idx(c)];
      y[idx(r)] = s;
    }
    return y;
  }

  std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<double>& gain) const {
    double ss = 0.0;
    for (double e : x) ss += e * e;
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps_);
    std::vector<double> out(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) out[i] = x[i] * inv * gain[i];
    return out;
  }

  static void softmax(std::vector<double>& x) {
    double mx = x[0];
    for (double e : x) mx = std::max(mx, e);
    double sum = 0.0;
    for (double& e : x) sum += (e = std::exp(e - mx));
    for (double& e : x) e /= sum;
  }

  static void add(std::vector<double>& y, const std::vector<double>& b) {
    for (std::size_t i = 0; i < b.size(); ++i) y[i] += b[i];
  }

  // Head h of vec (head_size values from h * head_size) replaced by rmsnorm(head) * gain.
  void norm_head(std::vector<double>& vec, int h, const std::vector<double>& gain) const {
    const auto first = vec.begin() + static_cast<std::ptrdiff_t>(h) * head_size_;
    std::vector<double> head(first, first + head_size_);
    head = rmsnorm(head, gain);
    std::copy(head.begin(), head.end(), first);
  }

  // Rotates the pairs (2i, 2i+1), 2i < rope_dim, of each of `heads` heads of vec; NEOX: (i, i + rope_dim / 2).
  void rope(std::vector<double>& vec, int heads, int pos) const {
    for (int h = 0; h < heads; ++h)
      for (int i = 0; 2 * i < rope_dim_; ++i) {
        double freq = std::pow(theta_, -2.0 * i / static_cast<double>(rope_dim_)) * freq_scale_;
        if (!rope_factors_.empty()) freq /= rope_factors_[idx(i)];
        const double angle = pos * freq, c = std::cos(angle), s = std::sin(angle);
        double& a = vec[idx(h * head_size_ + (neox_ ? i : 2 * i))];
        double& b = vec[idx(h * head_size_ + (neox_ ? i + rope_dim_ / 2 : 2 * i + 1))];
        const double a0 = a, b0 = b;
        a = a0 * c - b0 * s;
        b = a0 * s + b0 * c;
      }
  }

  int dim_ = 0, hidden_ = 0, n_layers_ = 0, n_heads_ = 0, n_kv_heads_ = 0, vocab_ = 0, seq_len_ = 0, head_size_ = 0;
  double eps_ = 1e-5, theta_ = 10000.0, freq_scale_ = 1.0;
  int rope_dim_ = 0;
  bool neox_ = false;
  int n_expert_used_ = 0;
  bool expert_weights_norm_ = false;
  std::vector<double> rope_factors_;
  std::vector<double> embedding_, classifier_, rms_final_;
  std::vector<layer> layers_;
  std::vector<std::vector<std::vector<double>>> keys_, values_;  // per layer, per position: kv_dim values
  int cached_ = 0;
};

}  // namespace mixprec::test
