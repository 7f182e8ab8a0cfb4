// The backward pass of the LLaMA engine (models/llama/engine.hpp): gradients of a scalar loss on a sequence's
// logits with respect to every matrix product, RMSNorm gain and embedding row, for sensitivity by
// gradients (Fisher pricing, HAWQ-style traces) and precision-aware training.
//
//   llama_backprop bp(engine);
//   const row_matrix& z = bp.forward(tokens);           // T x vocab logits, keeps each layer's input
//   loss_gradient l = next_token_nll(z, tokens);         // or kl_to_reference, sampled_nll
//   llama_gradients g = bp.backward(l.dlogits, sink);    // sink(name, X, dY) once per matrix product
//
// A matrix product Y = X W^T (X: T x in, W: out x in) reports its input X and the gradient dY = dL/dY
// (T x out) instead of dL/dW = dY^T X: the weight gradient, K-FAC's factors (X^T X, dY^T dY) and the
// per-token diagonal Fisher (dY.^2)^T (X.^2) all follow from the pair, and no out x in gradient is held
// unless the caller builds one. Norm gains and the embedding's input come back in llama_gradients.
//
// Numerics: FP32, the forward's own layout, exact for the function the engine computes (checked against
// central differences of a double-precision forward, tests/models/llama_backward_test.cpp). Through a
// stored or re-quantized matrix the gradient flows through the weights as run (decoded values), and
// through activations quantized by ggml's rules as if unquantized: the straight-through estimator.
// Memory: the forward keeps n_layers + 1 streams of T x dim; the backward recomputes one layer at a time
// (the engine's activation observer does not see the recomputation)
// (llama_layer_trace: about 8 T x dim, 4 T x hidden_dim and n_heads T x T values) and decodes one
// matrix at a time, so a model mapped from a GGUF is never copied whole.
//
// Formulas (per position p; r_p = 1 / sqrt(mean(x_p^2) + eps), n_p = r_p x_p .* g):
//   RMSNorm:   dg += r_p x_p .* dn_p;   dx_p = r_p (g .* dn_p) - x_p r_p^3 <g .* dn_p, x_p> / dim
//   SwiGLU:    a = silu(u1) u2, silu(z) = z s(z):  du2 = da silu(u1),  du1 = da u2 s(u1) (1 + u1 (1 - s(u1)))
//   softmax:   dS = P .* (dP - rowsum(P .* dP))   (P causal, zero above the diagonal)
//   attention: out_h = P_h V_j: dP_h = dout_h V_j^T, dV_j += P_h^T dout_h, S = Q_h K_j^T / sqrt(hs):
//              dQ_h = dS K_j / sqrt(hs), dK_j += dS^T Q_h / sqrt(hs)   (j = h / (n_heads / n_kv_heads))
//   RoPE:      the transpose of the rotation (the same pairs rotated by minus the angle)
//   head norms (qwen3): RMSNorm's formulas above on each head of head_size values
//   biases:    no change to the gradients of the products' inputs (their own gradient is dY's column sum)
//   experts:   see moe_backward (the routers' softmax, the weights' renormalisation, the shared expert's gate);
//              each expert's products reported through the expert_gradient_sink
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "mixprec/error.hpp"
#include "mixprec/models/blocks.hpp"
#include "mixprec/models/llama/engine.hpp"
#include "mixprec/sensitivity/kl.hpp"
#include "mixprec/types.hpp"

namespace mixprec::models {

// Called once per matrix product during backward(), in reverse order of the forward: the matrix's name
// (llama_matrix::name), its input X (T x in) and the gradient of the loss with respect to its output dY
// (T x out). The references are valid during the call only.
using product_gradient_sink = std::function<void(const std::string& name, const row_matrix& x, const row_matrix& dy)>;
// Called once per product of one expert of a 3-D expert stack (a mixture-of-experts layer's gate_exps,
// up_exps, down_exps) that any position was routed to: the stack's name, the expert, the R positions
// routed to it (increasing), its input X (R x in) and dY (R x out) there. Expert e's weight gradient is
// dY^T X, the stack's rows e * out .. (e + 1) * out.
using expert_gradient_sink = std::function<void(const std::string& name, int expert, std::span<const index_t> positions, const row_matrix& x,
                                                const row_matrix& dy)>;

// The gradients backward() returns besides the matrix products'.
struct llama_gradients {
  std::vector<Eigen::VectorXf> attn_norm, ffn_norm;  // per layer, dim each
  std::vector<Eigen::VectorXf> q_norm, k_norm;       // per layer, head_size each; empty for models without head norms
  std::vector<Eigen::VectorXf> shared_expert_gate;   // per layer, dim each (gate_inp_shexp); empty for models without
  Eigen::VectorXf output_norm;                       // dim
  row_matrix embedding;  // T x dim: dL/dx at the embedding, row p for token p (add it to token_embd's row)
};

// A loss on a sequence's logits and its gradient with respect to them.
struct loss_gradient {
  double loss = 0.0;   // nats, mean over the positions that count
  row_matrix dlogits;  // T x vocab
};

// One sequence's forward pass with what its backward pass needs, over an engine (which must outlive it).
// Throws what the engine throws (errc::invalid_argument for tokens, errc::shape_mismatch for sizes).
class llama_backprop {
 public:
  explicit llama_backprop(llama_engine& engine) : engine_(engine) {}

  // The logits (T x vocab) of `tokens` from position 0, as llama_engine::logits computes them; keeps
  // the residual stream entering every layer until the next forward().
  const row_matrix& forward(std::span<const int> tokens) {
    engine_.reset();
    streams_.clear();  // until this forward has succeeded, backward() refuses
    std::vector<row_matrix> streams;
    row_matrix x = engine_.embed(tokens);
    for (int l = 0; l < engine_.cfg_.n_layers; ++l) {
      streams.push_back(x);
      engine_.run_layer(l, x);
    }
    streams.push_back(std::move(x));
    logits_ = engine_.head(streams.back());
    streams_ = std::move(streams);
    tokens_.assign(tokens.begin(), tokens.end());
    return logits_;
  }

  // The backward pass from dlogits = dL/dlogits (T x vocab) of the last forward(); `sink` sees every
  // matrix product's (X, dY), the routers' included, and `experts` every expert's product's. Throws
  // errc::invalid_argument before a forward(), errc::shape_mismatch for dlogits of another shape.
  llama_gradients backward(const row_matrix& dlogits, const product_gradient_sink& sink = {}, const expert_gradient_sink& experts = {}) {
    if (streams_.empty()) throw error(errc::invalid_argument, "llama_backprop: backward() before forward()");
    if (dlogits.rows() != logits_.rows() || dlogits.cols() != logits_.cols())
      throw error(errc::shape_mismatch, "llama_backprop: dlogits " + std::to_string(dlogits.rows()) + "x" + std::to_string(dlogits.cols()) +
                                            ", logits " + std::to_string(logits_.rows()) + "x" + std::to_string(logits_.cols()));
    const llama_config& c = engine_.cfg_;
    const llama_model& model = engine_.model_;
    llama_gradients out;
    out.attn_norm.resize(static_cast<std::size_t>(c.n_layers));
    out.ffn_norm.resize(static_cast<std::size_t>(c.n_layers));
    if (std::any_of(model.layers.begin(), model.layers.end(), [](const llama_layer& w) { return w.q_norm.size() || w.k_norm.size(); })) {
      out.q_norm.resize(static_cast<std::size_t>(c.n_layers));
      out.k_norm.resize(static_cast<std::size_t>(c.n_layers));
    }
    if (c.shared_hidden_dim > 0) out.shared_expert_gate.resize(static_cast<std::size_t>(c.n_layers));
    const auto report = [&](const llama_engine::linear& lin, const row_matrix& x, const row_matrix& dy) {
      if (sink) sink(lin.source->name(), x, dy);
    };

    // head: logits = nf C^T, nf = rmsnorm(x_L) .* output_norm
    const row_matrix& xl = streams_.back();
    const row_matrix nf = rms_norm_rows(xl, model.output_norm, c.rms_eps);
    report(engine_.classifier_, nf, dlogits);
    row_matrix dn;
    engine_.classifier_.backprop_rows(dlogits, dn);
    row_matrix dx = rms_norm_rows_backward(xl, model.output_norm, dn, out.output_norm, c.rms_eps);

    // The layers are run again below: an observer of the engine's products sees the forward only once.
    struct observer_pause {
      activation_observer& slot;
      activation_observer saved;
      ~observer_pause() { slot = std::move(saved); }
    } pause{engine_.observer_, std::exchange(engine_.observer_, {})};
    struct expert_observer_pause {
      expert_observer& slot;
      expert_observer saved;
      ~expert_observer_pause() { slot = std::move(saved); }
    } expert_pause{engine_.expert_observer_, std::exchange(engine_.expert_observer_, {})};
    llama_layer_trace tr;
    row_matrix tmp;
    for (int l = c.n_layers - 1; l >= 0; --l) {
      const auto li = static_cast<std::size_t>(l);
      const llama_layer& w = model.layers[li];
      const llama_engine::layer_linears& lin = engine_.layers_[li];
      const row_matrix& x = streams_[li];
      row_matrix y = x;
      engine_.run_layer(l, y, &tr);  // recomputes the layer, keeping its inside

      // FFN: x' = h + Wdown act, act = silu(gate) .* up (a mixture of experts: moe_backward)
      if (c.n_expert > 0) {
        dn = moe_backward(lin, w, tr, dx, report, experts, out, li);
      } else {
        report(lin.down, tr.act, dx);
        row_matrix dact, dgate, dup;
        lin.down.backprop_rows(dx, dact);
        swiglu_backward(tr.gate, tr.up, dact, dgate, dup);
        if (w.gate_up.present()) {  // one product of [gate up]: its output gradient is [dgate dup]
          row_matrix dgu(dgate.rows(), 2 * dgate.cols());
          dgu << dgate, dup;
          report(lin.gate_up, tr.m, dgu);
          lin.gate_up.backprop_rows(dgu, dn);
        } else {
          report(lin.gate, tr.m, dgate);
          report(lin.up, tr.m, dup);
          lin.gate.backprop_rows(dgate, dn);
          lin.up.backprop_rows(dup, tmp);
          dn += tmp;
        }
      }
      dx += rms_norm_rows_backward(tr.h, w.ffn_norm, dn, out.ffn_norm[li], c.rms_eps);  // now dL/dh

      // attention: h = x + Wo att
      report(lin.wo, tr.att, dx);
      row_matrix datt;
      lin.wo.backprop_rows(dx, datt);
      row_matrix dq, dk, dv;
      attention_backward(tr, datt, dq, dk, dv);
      if (w.q_norm.size()) head_rms_norm_backward(tr.q_raw, w.q_norm, dq, out.q_norm[li], c.rms_eps);
      if (w.k_norm.size()) head_rms_norm_backward(tr.k_raw, w.k_norm, dk, out.k_norm[li], c.rms_eps);
      if (w.wqkv.present()) {  // one product of [wq wk wv]: its output gradient is [dq dk dv]
        row_matrix dqkv(dq.rows(), dq.cols() + dk.cols() + dv.cols());
        dqkv << dq, dk, dv;
        report(lin.wqkv, tr.n, dqkv);
        lin.wqkv.backprop_rows(dqkv, dn);
      } else {
        report(lin.wq, tr.n, dq);
        report(lin.wk, tr.n, dk);
        report(lin.wv, tr.n, dv);
        lin.wq.backprop_rows(dq, dn);
        lin.wk.backprop_rows(dk, tmp);
        dn += tmp;
        lin.wv.backprop_rows(dv, tmp);
        dn += tmp;
      }
      dx += rms_norm_rows_backward(x, w.attn_norm, dn, out.attn_norm[li], c.rms_eps);
    }
    out.embedding = std::move(dx);
    return out;
  }

  // The last forward()'s logits and tokens.
  [[nodiscard]] const row_matrix& logits() const noexcept { return logits_; }
  [[nodiscard]] std::span<const int> tokens() const noexcept { return tokens_; }

 private:
  // act = silu(gate) .* up: from dact to dgate and dup (the banner's SwiGLU formulas), all R x width.
  static void swiglu_backward(const row_matrix& gate, const row_matrix& up, const row_matrix& dact, row_matrix& dgate, row_matrix& dup) {
    dgate.resize(dact.rows(), dact.cols());
    dup.resize(dact.rows(), dact.cols());
    for (index_t i = 0; i < dact.size(); ++i) {
      const float z = gate.data()[i], s = 1.0f / (1.0f + std::exp(-z));
      dup.data()[i] = dact.data()[i] * z * s;
      dgate.data()[i] = dact.data()[i] * up.data()[i] * s * (1.0f + z * (1.0f - s));
    }
  }

  // A gated FFN's backward from dout (R x dim, dL/d of down's output) to its input's gradient (R x dim),
  // reporting its three products through `report(linear, X, dY)`.
  template <class Report>
  static row_matrix gated_ffn_backward(const llama_engine::linear& gate, const llama_engine::linear& up, const llama_engine::linear& down,
                                       const row_matrix& x, const gated_ffn_trace& t, const row_matrix& dout, Report&& report) {
    report(down, t.act, dout);
    row_matrix dact, dgate, dup, dx, tmp;
    down.backprop_rows(dout, dact);
    swiglu_backward(t.gate, t.up, dact, dgate, dup);
    report(gate, x, dgate);
    report(up, x, dup);
    gate.backprop_rows(dgate, dx);
    up.backprop_rows(dup, tmp);
    return dx += tmp;
  }

  // A mixture-of-experts FFN's backward (engine.hpp moe_ffn) from dout = dL/d of its output (T x dim) to
  // dL/dn, n its input (T x dim). With y_p = sum_k w_pk d_e(p,k)(n_p) + sigmoid(s_p) d_shared(n_p):
  //   each expert:   dY of its down = w_pk dout_p on its rows; then its SwiGLU and gate/up products
  //   its weight:    dw_pk = dout_p . d_e(n_p); renormalised, w_k = p_k / S: dp_k = dw_k / S - sum_j dw_j p_j / S^2
  //                  (S the chosen probabilities' sum; at its floor 2^-14 only dw_k / S), else dp_k = dw_k
  //   the router:    dz = P .* (dP - rowsum(P .* dP)), the softmax's, dP zero off the chosen experts; the
  //                  choice itself is piecewise constant (no gradient)
  //   shared expert: dY of its down = sigmoid(s_p) dout_p; ds_p = dout_p . d_shared(n_p) sigmoid'(s_p),
  //                  s_p = gate_inp_shexp . n_p
  template <class Report>
  row_matrix moe_backward(const llama_engine::layer_linears& lin, const llama_layer& w, const llama_layer_trace& tr, const row_matrix& dout,
                          Report&& report, const expert_gradient_sink& experts, llama_gradients& out, std::size_t li) {
    const llama_config& c = engine_.cfg_;
    const llama_moe_trace& mt = tr.moe;
    const index_t T = dout.rows();
    const int E = c.n_expert, K = c.n_expert_used;
    row_matrix dn = row_matrix::Zero(T, c.dim);
    std::vector<double> dweight(mt.weight.size(), 0.0);
    for (int e = 0; e < E; ++e) {
      const auto ei = static_cast<std::size_t>(e);
      const llama_moe_trace::expert& te = mt.experts[ei];
      if (te.slots.empty()) continue;
      const auto R = static_cast<index_t>(te.slots.size());
      row_matrix dd(R, c.dim);
      std::vector<index_t> at(static_cast<std::size_t>(R));
      for (index_t r = 0; r < R; ++r) at[static_cast<std::size_t>(r)] = te.slots[static_cast<std::size_t>(r)] / K;
      for (index_t r = 0; r < R; ++r) {
        const auto slot = static_cast<std::size_t>(te.slots[static_cast<std::size_t>(r)]);
        const index_t p = static_cast<index_t>(slot) / K;
        dd.row(r) = dout.row(p) * mt.weight[slot];
        dweight[slot] = static_cast<double>(dout.row(p).dot(te.ffn.out.row(r)));
      }
      const auto expert_report = [&](const llama_engine::linear& l, const row_matrix& x, const row_matrix& dy) {
        if (experts) experts(l.source->name(), e, at, x, dy);
      };
      const row_matrix dxe = gated_ffn_backward(lin.gate_exps[ei], lin.up_exps[ei], lin.down_exps[ei], te.x, te.ffn, dd, expert_report);
      for (index_t r = 0; r < R; ++r) dn.row(te.slots[static_cast<std::size_t>(r)] / K) += dxe.row(r);
    }
    row_matrix dz = row_matrix::Zero(T, E);
    for (index_t p = 0; p < T; ++p) {
      const auto slot0 = static_cast<std::size_t>(p * K);
      const double S = mt.chosen_sum[static_cast<std::size_t>(p)];
      const bool floored = c.expert_weights_norm && !(S > static_cast<double>(llama_engine::expert_weights_floor));
      const double divisor = c.expert_weights_norm ? std::max(S, static_cast<double>(llama_engine::expert_weights_floor)) : 1.0;
      double through_sum = 0.0;  // sum_j dw_j p_j / S^2
      if (c.expert_weights_norm && !floored)
        for (int k = 0; k < K; ++k) through_sum += dweight[slot0 + static_cast<std::size_t>(k)] * mt.probs(p, mt.chosen[slot0 + static_cast<std::size_t>(k)]) / (S * S);
      Eigen::VectorXd dprob = Eigen::VectorXd::Zero(E);
      for (int k = 0; k < K; ++k) dprob[mt.chosen[slot0 + static_cast<std::size_t>(k)]] = dweight[slot0 + static_cast<std::size_t>(k)] / divisor - through_sum;
      const Eigen::VectorXd prob = mt.probs.row(p).transpose().cast<double>();
      const double dot = prob.dot(dprob);
      dz.row(p) = (prob.array() * (dprob.array() - dot)).cast<float>().matrix().transpose();
    }
    report(lin.router, tr.m, dz);
    row_matrix tmp;
    lin.router.backprop_rows(dz, tmp);
    dn += tmp;
    if (c.shared_hidden_dim > 0) {
      row_matrix dd(T, c.dim);
      Eigen::VectorXf ds(T);
      for (index_t p = 0; p < T; ++p) {
        const float sig = 1.0f / (1.0f + std::exp(-mt.shared_logit[p]));
        dd.row(p) = dout.row(p) * sig;
        ds[p] = dout.row(p).dot(mt.shared.out.row(p)) * sig * (1.0f - sig);
      }
      dn += gated_ffn_backward(lin.gate_shexp, lin.up_shexp, lin.down_shexp, tr.m, mt.shared, dd, report);
      dn.noalias() += ds * w.gate_inp_shexp.transpose();
      out.shared_expert_gate[li] = (tr.m.transpose() * ds).eval();
    }
    return dn;
  }

  // From datt (T x q_dim, dL/d of the heads' outputs) to dq (T x q_dim), dk, dv (T x kv_dim): through the
  // causal softmax attention and then RoPE, back to the products' outputs.
  void attention_backward(const llama_layer_trace& tr, const row_matrix& datt, row_matrix& dq, row_matrix& dk, row_matrix& dv) {
    const llama_config& c = engine_.cfg_;
    const index_t T = datt.rows();
    const int hs = c.head_size(), kv_mul = c.n_heads / c.n_kv_heads;
    const float scale = std::sqrt(static_cast<float>(hs));
    dq = row_matrix::Zero(T, c.q_dim());
    dk = row_matrix::Zero(T, c.kv_dim());
    dv = row_matrix::Zero(T, c.kv_dim());
    row_matrix dp(T, T);
    for (int h = 0; h < c.n_heads; ++h) {
      const index_t qh = static_cast<index_t>(h * hs), kvh = static_cast<index_t>((h / kv_mul) * hs);
      const row_matrix& p = tr.p[static_cast<std::size_t>(h)];
      dp.noalias() = datt.middleCols(qh, hs) * tr.v.middleCols(kvh, hs).transpose();
      dv.middleCols(kvh, hs).noalias() += p.transpose() * datt.middleCols(qh, hs);
      for (index_t r = 0; r < T; ++r) {  // dS = P .* (dP - rowsum(P .* dP)), then the 1/sqrt(hs)
        const float s = p.row(r).head(r + 1).dot(dp.row(r).head(r + 1));
        for (index_t t = 0; t <= r; ++t) dp(r, t) = p(r, t) * (dp(r, t) - s) / scale;
        for (index_t t = r + 1; t < T; ++t) dp(r, t) = 0.0f;
      }
      dq.middleCols(qh, hs).noalias() = dp * tr.k.middleCols(kvh, hs);
      dk.middleCols(kvh, hs).noalias() += dp.transpose() * tr.q.middleCols(qh, hs);
    }
    for (index_t p = 0; p < T; ++p) {  // RoPE's transpose
      engine_.rope_.set(static_cast<int>(p));
      engine_.rope_.rotate(&dq(p, 0), c.n_heads, hs, -1.0f);
      engine_.rope_.rotate(&dk(p, 0), c.n_kv_heads, hs, -1.0f);
    }
  }

  llama_engine& engine_;
  std::vector<int> tokens_;
  std::vector<row_matrix> streams_;  // n_layers + 1: the stream entering each layer, then leaving the last
  row_matrix logits_;
};

// ---- losses on logits (T x vocab), in double (sensitivity/kl.hpp's log_softmax), gradients in FP32 ----


// Next-token negative log-likelihood, mean over positions 0..T-2: -log p(tokens[p+1] | tokens[0..p]).
// The last row's gradient is zero. Throws errc::shape_mismatch when tokens.size() != T,
// errc::invalid_argument for T < 2 or a token outside the vocabulary, errc::empty_input and errc::non_finite
// as log_softmax (sensitivity/kl.hpp).
[[nodiscard]] inline loss_gradient next_token_nll(const row_matrix& logits, std::span<const int> tokens) {
  const row_matrix_d lp = log_softmax(logits);  // throws empty_input, non_finite
  if (static_cast<std::size_t>(logits.rows()) != tokens.size())
    throw error(errc::shape_mismatch, "next_token_nll: " + std::to_string(tokens.size()) + " tokens, " + std::to_string(logits.rows()) + " rows of logits");
  if (tokens.size() < 2) throw error(errc::invalid_argument, "next_token_nll: needs at least 2 tokens");
  const index_t T = logits.rows(), V = logits.cols();
  loss_gradient out{0.0, row_matrix::Zero(T, V)};
  const double w = 1.0 / static_cast<double>(T - 1);
  for (index_t p = 0; p + 1 < T; ++p) {
    const int y = tokens[static_cast<std::size_t>(p + 1)];
    if (y < 0 || y >= V) throw error(errc::invalid_argument, "next_token_nll: token " + std::to_string(y) + " outside the vocabulary");
    out.loss -= w * lp(p, y);
    for (index_t i = 0; i < V; ++i) out.dlogits(p, i) = static_cast<float>(w * (std::exp(lp(p, i)) - (i == y ? 1.0 : 0.0)));
  }
  return out;
}

// KL(P_ref || P) per row, mean over the T rows, with P_ref = softmax(reference) (e.g. the full-precision
// model's logits) and P = softmax(logits), the KL that mixprec measure scores. Throws errc::shape_mismatch for
// different shapes, errc::empty_input and errc::non_finite as log_softmax.
[[nodiscard]] inline loss_gradient kl_to_reference(const row_matrix& logits, const row_matrix& reference) {
  mixprec::detail::check_logits(logits, reference, "kl_to_reference");
  const row_matrix_d lq = log_softmax(logits), lr = log_softmax(reference);
  const index_t T = logits.rows(), V = logits.cols();
  loss_gradient out{0.0, row_matrix(T, V)};
  const double w = 1.0 / static_cast<double>(T);
  for (index_t p = 0; p < T; ++p) {
    for (index_t i = 0; i < V; ++i) {
      const double pr = std::exp(lr(p, i));
      out.loss += w * pr * (lr(p, i) - lq(p, i));
      out.dlogits(p, i) = static_cast<float>(w * (std::exp(lq(p, i)) - pr));
    }
  }
  return out;
}

// The negative log-likelihood of labels drawn from the model's own distribution (one per row, seeded;
// std::mt19937_64 and std::discrete_distribution on softmax(logits)), mean over the T rows: its
// gradients' second moments estimate the true Fisher information (not the empirical one of the data's
// labels). Throws errc::empty_input and errc::non_finite as log_softmax.
[[nodiscard]] inline loss_gradient sampled_nll(const row_matrix& logits, std::uint64_t seed) {
  const row_matrix_d lp = log_softmax(logits);  // throws empty_input, non_finite
  const index_t T = logits.rows(), V = logits.cols();
  loss_gradient out{0.0, row_matrix(T, V)};
  std::mt19937_64 gen(seed);
  const double w = 1.0 / static_cast<double>(T);
  for (index_t p = 0; p < T; ++p) {
    std::vector<double> prob(static_cast<std::size_t>(V));
    for (index_t i = 0; i < V; ++i) prob[static_cast<std::size_t>(i)] = std::exp(lp(p, i));
    const auto y = static_cast<index_t>(std::discrete_distribution<std::size_t>(prob.begin(), prob.end())(gen));
    out.loss -= w * lp(p, y);
    for (index_t i = 0; i < V; ++i) out.dlogits(p, i) = static_cast<float>(w * (prob[static_cast<std::size_t>(i)] - (i == y ? 1.0 : 0.0)));
  }
  return out;
}

}  // namespace mixprec::models
