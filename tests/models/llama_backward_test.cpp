// The LLaMA engine's backward pass (mixprec/models/llama/backward.hpp) against central differences of
// the tests' double-precision forward (support/naive_llama.hpp, which shares no code with the engine),
// on every parameter of small seeded models: GQA, a partial RoPE with frequency factors and linear
// scaling, a classifier tied to the embedding, qwen2's q/k/v biases with NEOX RoPE, qwen3's head norms,
// phi3's fused matrices, heads wider than dim / n_heads (q_dim != dim, as qwen3's key_length gives);
// the losses' gradients against their definitions; the
// straight-through gradient of a re-quantized matrix; refusals.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "support/errors.hpp"
#include "support/naive_llama.hpp"
#include "support/tiny_llama.hpp"

#include "mixprec/models/llama/backward.hpp"
#include "mixprec/quantize/spec.hpp"

namespace {

namespace models = mixprec::models;
using mixprec::errc;
using mixprec::index_t;
using mixprec::row_matrix;
using mixprec::test::error_code_of;
using mixprec::test::naive_llama;

// How a test model differs from the llama2.c checkpoint it is built from.
struct variant {
  const char* name;
  bool partial_rope = false;  // rope_dim = head_size / 2, rope factors, linear scaling 1/2
  bool tied = false;          // no output matrix: the embedding is the classifier
  bool qwen2 = false;         // q/k/v biases, NEOX RoPE
  bool qwen3 = false;         // head norms on q and k, NEOX RoPE
  bool fused = false;         // phi3's fused [wq; wk; wv] and [gate; up], NEOX RoPE
  int head_dim = 0;           // > 0: heads of this many values (key_length), so q_dim != dim: wq, wk, wv and
                              // wo are the extras' (qwen3's shapes: Qwen3-0.6B has 16 heads of 128 on 1024)
  int experts = 0;            // > 0: a mixture of this many experts of the extras' (2 used) instead of w1 w2 w3
  bool renormalise = false;   // the chosen experts' weights divided by their sum (Mixtral, qwen3moe)
  bool shared = false;        // a shared expert with its sigmoid gate (qwen2moe)
};

// The parameters a variant adds to the checkpoint's, per layer (seeded; the test perturbs them), for heads
// of head_dim values (0: the checkpoint's); with head_dim, also the attention's matrices of that shape.
struct extras {
  std::vector<Eigen::VectorXf> bq, bk, bv, q_norm, k_norm;
  std::vector<row_matrix> wq, wk, wv, wo;
  // A mixture of expert_count experts of expert_width: stacks, router, shared expert and its gate.
  std::vector<row_matrix> gate_exps, up_exps, down_exps, router, gate_shexp, up_shexp, down_shexp;
  std::vector<Eigen::VectorXf> shared_gate;
};
constexpr int expert_count = 4, expert_width = 8;
extras make_extras(const mixprec::llama2c::checkpoint& ck, int head_dim = 0) {
  std::mt19937 gen(head_dim > 0 ? 29 : 23);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  const auto vec = [&](index_t n, float mean) {
    Eigen::VectorXf v(n);
    for (index_t i = 0; i < n; ++i) v[i] = mean + normal(gen);
    return v;
  };
  const auto mat = [&](index_t rows, index_t cols) {
    row_matrix w(rows, cols);
    const float sd = 1.0f / std::sqrt(static_cast<float>(cols));
    for (index_t i = 0; i < w.size(); ++i) w.data()[i] = 2.0f * sd * normal(gen);
    return w;
  };
  extras e;
  const int hs = head_dim > 0 ? head_dim : ck.cfg.head_size(), q = hs * ck.cfg.n_heads, kv = hs * ck.cfg.n_kv_heads;
  for (int l = 0; l < ck.cfg.n_layers; ++l) {
    e.bq.push_back(vec(q, 0.0f));
    e.bk.push_back(vec(kv, 0.0f));
    e.bv.push_back(vec(kv, 0.0f));
    e.q_norm.push_back(vec(hs, 1.0f));
    e.k_norm.push_back(vec(hs, 1.0f));
    if (head_dim > 0) {
      e.wq.push_back(mat(q, ck.cfg.dim));
      e.wk.push_back(mat(kv, ck.cfg.dim));
      e.wv.push_back(mat(kv, ck.cfg.dim));
      e.wo.push_back(mat(ck.cfg.dim, q));
    }
  }
  gen.seed(31);  // the experts' own draws (the values above stay those of the variants before them)
  for (int l = 0; l < ck.cfg.n_layers; ++l) {
    const int d = ck.cfg.dim;
    e.gate_exps.push_back(mat(expert_count * expert_width, d));
    e.up_exps.push_back(mat(expert_count * expert_width, d));
    e.down_exps.push_back(mat(expert_count * d, expert_width));
    e.router.push_back(mat(expert_count, d));
    e.gate_shexp.push_back(mat(expert_width, d));
    e.up_shexp.push_back(mat(expert_width, d));
    e.down_shexp.push_back(mat(d, expert_width));
    e.shared_gate.push_back(vec(d, 0.0f));
  }
  return e;
}

models::llama_model make_model(const mixprec::llama2c::checkpoint& ck, const variant& v, const extras& e = {}) {
  models::llama_model m = models::from_llama2c(ck);
  if (v.qwen2 || v.qwen3 || v.fused) m.config.rope = models::llama_config::rope_type::neox;
  if (v.head_dim > 0) {
    m.config.head_dim = v.head_dim;
    m.config.rope_dim = v.head_dim;
  }
  for (std::size_t l = 0; l < m.layers.size(); ++l) {
    if (v.head_dim > 0) {
      models::llama_layer& w = m.layers[l];
      w.wq = models::llama_matrix(w.wq.name(), e.wq[l]);
      w.wk = models::llama_matrix(w.wk.name(), e.wk[l]);
      w.wv = models::llama_matrix(w.wv.name(), e.wv[l]);
      w.wo = models::llama_matrix(w.wo.name(), e.wo[l]);
    }
    if (v.qwen2) {
      m.layers[l].bq = e.bq[l];
      m.layers[l].bk = e.bk[l];
      m.layers[l].bv = e.bv[l];
    }
    if (v.qwen3) {
      m.layers[l].q_norm = e.q_norm[l];
      m.layers[l].k_norm = e.k_norm[l];
    }
    if (v.fused) {
      models::llama_layer& w = m.layers[l];
      const auto stack = [](std::initializer_list<const models::llama_matrix*> parts) {
        index_t rows = 0;
        for (const auto* x : parts) rows += x->rows();
        row_matrix out(rows, (*parts.begin())->cols());
        rows = 0;
        for (const auto* x : parts) {
          out.middleRows(rows, x->rows()) = x->fp32();
          rows += x->rows();
        }
        return out;
      };
      const std::string p = "layers." + std::to_string(l) + ".";
      w.wqkv = models::llama_matrix(p + "wqkv", stack({&w.wq, &w.wk, &w.wv}));
      w.gate_up = models::llama_matrix(p + "w13", stack({&w.gate, &w.up}));
      w.wq = w.wk = w.wv = w.gate = w.up = models::llama_matrix();
    }
  }
  if (v.experts > 0) {
    m.config.n_expert = v.experts;
    m.config.n_expert_used = 2;
    m.config.expert_hidden_dim = expert_width;
    m.config.expert_weights_norm = v.renormalise;
    m.config.shared_hidden_dim = v.shared ? expert_width : 0;
    for (std::size_t l = 0; l < m.layers.size(); ++l) {
      models::llama_layer& w = m.layers[l];
      const std::string p = "blk." + std::to_string(l) + ".";
      w.gate = w.up = w.down = models::llama_matrix();
      w.gate_exps = models::llama_matrix(p + "ffn_gate_exps.weight", e.gate_exps[l]);
      w.up_exps = models::llama_matrix(p + "ffn_up_exps.weight", e.up_exps[l]);
      w.down_exps = models::llama_matrix(p + "ffn_down_exps.weight", e.down_exps[l]);
      w.gate_inp = models::llama_matrix(p + "ffn_gate_inp.weight", e.router[l]);
      if (v.shared) {
        w.gate_shexp = models::llama_matrix(p + "ffn_gate_shexp.weight", e.gate_shexp[l]);
        w.up_shexp = models::llama_matrix(p + "ffn_up_shexp.weight", e.up_shexp[l]);
        w.down_shexp = models::llama_matrix(p + "ffn_down_shexp.weight", e.down_shexp[l]);
        w.gate_inp_shexp = e.shared_gate[l];
      }
    }
  }
  if (v.partial_rope) {
    m.config.rope_dim = m.config.head_size() / 2;
    m.config.rope_freq_scale = 0.5f;
    m.rope_freq_factors = Eigen::VectorXf::LinSpaced(m.config.rope_dim / 2, 1.0f, 3.0f);
    m.config.rope_theta = 500.0f;  // large angles within the few positions tested
  }
  if (v.tied) m.output.reset();
  m.validate();
  return m;
}

// Both losses of the tests in double from logits in double: next-token NLL over positions 0..T-2, and
// KL(softmax(reference) || softmax(logits)) over all T rows; means, as the library defines them.
struct losses {
  double nll = 0.0, kl = 0.0;
};
losses double_losses(const std::vector<std::vector<double>>& z, const std::vector<int>& tokens, const row_matrix& reference) {
  losses out;
  const auto T = z.size();
  for (std::size_t p = 0; p < T; ++p) {
    auto log_softmax = [](std::vector<double> v) {
      const double mx = *std::max_element(v.begin(), v.end());
      double s = 0.0;
      for (double e : v) s += std::exp(e - mx);
      for (double& e : v) e -= mx + std::log(s);
      return v;
    };
    const std::vector<double> lq = log_softmax(z[p]);
    std::vector<double> r(z[p].size());
    for (std::size_t i = 0; i < r.size(); ++i) r[i] = reference(static_cast<index_t>(p), static_cast<index_t>(i));
    const std::vector<double> lr = log_softmax(r);
    if (p + 1 < T) out.nll -= lq[static_cast<std::size_t>(tokens[p + 1])] / static_cast<double>(T - 1);
    for (std::size_t i = 0; i < lq.size(); ++i) out.kl += std::exp(lr[i]) * (lr[i] - lq[i]) / static_cast<double>(T);
  }
  return out;
}

// Every parameter's gradient from the engine: matrices by name (dY^T X summed), norms, embedding rows.
struct engine_gradients {
  std::map<std::string, Eigen::MatrixXd> matrices;
  models::llama_gradients rest;
};
engine_gradients engine_grad(const models::llama_model& m, const std::vector<int>& tokens, const row_matrix& reference, bool kl,
                             unsigned threads = 1) {
  models::llama_engine e(m, {}, {threads, mixprec::activation_type::fp32, 0});
  models::llama_backprop bp(e);
  const row_matrix& z = bp.forward(tokens);
  const models::loss_gradient l = kl ? models::kl_to_reference(z, reference) : models::next_token_nll(z, tokens);
  engine_gradients g;
  const auto product = [&](const std::string& name, const row_matrix& x, const row_matrix& dy) {
    Eigen::MatrixXd d = (dy.transpose() * x).cast<double>();
    auto [it, fresh] = g.matrices.try_emplace(name, d);
    if (!fresh) it->second += d;  // a tied embedding is reported once, as the classifier
  };
  const auto expert = [&](const std::string& name, int e, std::span<const index_t>, const row_matrix& x, const row_matrix& dy) {  // expert e's rows
    Eigen::MatrixXd& d = g.matrices.try_emplace(name, Eigen::MatrixXd::Zero(m.config.n_expert * dy.cols(), x.cols())).first->second;
    d.middleRows(e * dy.cols(), dy.cols()) += (dy.transpose() * x).cast<double>();
  };
  g.rest = bp.backward(l.dlogits, product, expert);
  return g;
}

// The largest |engine - central difference| over one tensor, relative to the tensor's largest
// |central difference|, and the worst element's relative error among elements whose difference is at
// least a tenth of that largest one.
struct agreement {
  double tensor_relative = 0.0, element_relative = 0.0, largest = 0.0;
};

}  // namespace

TEST_CASE("llama_backprop: every parameter's gradient equals central differences of a double forward", "[llama_backward]") {
  mixprec::test::tiny_llama_options o;
  o.dim = 16;
  o.hidden_dim = 24;
  o.n_layers = 2;
  o.n_heads = 4;
  o.n_kv_heads = 2;
  o.vocab_size = 40;
  o.seq_len = 16;
  o.seed = 7;
  const mixprec::llama2c::checkpoint base = mixprec::test::tiny_llama(o);
  const std::vector<int> tokens = {1, 17, 3, 39, 17, 8, 22};
  row_matrix reference(static_cast<index_t>(tokens.size()), o.vocab_size);
  std::mt19937 gen(11);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (index_t i = 0; i < reference.size(); ++i) reference.data()[i] = normal(gen);

  extras ex_base = make_extras(base), ex_wide = make_extras(base, 6);
  for (const variant v : {variant{"llama2.c"}, variant{"partial RoPE, factors, scaling", true, false}, variant{"tied classifier", false, true},
                          variant{"qwen2: q/k/v biases, NEOX RoPE", false, false, true, false},
                          variant{"qwen3: head norms, NEOX RoPE, partial", true, false, false, true},
                          variant{"phi3: fused wqkv and gate-up", false, false, false, false, true},
                          variant{"qwen3 with heads of 6 on a width of 16: q_dim 24, kv_dim 12", false, false, false, true, false, 6},
                          variant{"Mixtral: 4 experts, 2 used, weights renormalised", false, false, false, false, false, 0, expert_count, true},
                          variant{"qwen2moe: 4 experts, 2 used, not renormalised, a shared expert", false, false, true, false, false, 0, expert_count, false,
                                  true}}) {
    SECTION(v.name) {
      extras& ex = v.head_dim > 0 ? ex_wide : ex_base;
      const models::llama_model m = make_model(base, v, ex);
      const engine_gradients g_nll = engine_grad(m, tokens, reference, false);
      const engine_gradients g_kl = engine_grad(m, tokens, reference, true);

      // The engine's logits are the oracle's (so the difference quotients differentiate its function).
      {
        naive_llama n(m);
        const auto z = n.logits(tokens);
        models::llama_engine e(m, {}, {1, mixprec::activation_type::fp32, 0});
        const row_matrix ze = e.logits(tokens);
        for (std::size_t p = 0; p < z.size(); ++p)
          for (std::size_t i = 0; i < z[p].size(); ++i) REQUIRE(std::abs(ze(static_cast<index_t>(p), static_cast<index_t>(i)) - z[p][i]) < 1e-4);
      }

      // Each parameter of the checkpoint in turn, by its place: (tensor, element) -> pointer into a copy.
      mixprec::llama2c::checkpoint ck = base;
      struct tensor {
        std::string name;  // the engine's name for matrices; "attn_norm.L" etc. for gains
        float* data;
        index_t size, cols;
        std::function<double(const engine_gradients&, index_t)> engine;
      };
      std::vector<tensor> tensors;
      auto matrix_grad = [](std::string name) {
        return [name](const engine_gradients& g, index_t i) {
          const Eigen::MatrixXd& d = g.matrices.at(name);
          return d(i / d.cols(), i % d.cols());
        };
      };
      const std::string embd_name = v.tied ? "token_embedding" : "";
      tensors.push_back({"token_embedding", ck.token_embedding.data(), ck.token_embedding.size(), ck.token_embedding.cols(),
                         [&, embd_name](const engine_gradients& g, index_t i) {
                           const index_t row = i / o.dim, col = i % o.dim;
                           double s = 0.0;
                           for (std::size_t p = 0; p < tokens.size(); ++p)
                             if (tokens[p] == row) s += g.rest.embedding(static_cast<index_t>(p), col);
                           if (!embd_name.empty()) s += g.matrices.at(embd_name)(row, col);
                           return s;
                         }});
      for (int l = 0; l < o.n_layers; ++l) {
        auto& w = ck.layers[static_cast<std::size_t>(l)];
        const std::string p = "layers." + std::to_string(l) + ".";
        // A part of a fused matrix: the engine's gradient of the fused one, from the part's first row.
        const auto part_grad = [](std::string name, index_t first_row) {
          return [name, first_row](const engine_gradients& g, index_t i) {
            const Eigen::MatrixXd& d = g.matrices.at(name);
            return d(first_row + i / d.cols(), i % d.cols());
          };
        };
        const index_t q_rows = w.wq.rows(), kv_rows = w.wk.rows(), hidden = w.w1.rows();
        const auto li = static_cast<std::size_t>(l);
        // With v.head_dim the attention's matrices are the extras' (the checkpoint's are not used).
        const bool wide = v.head_dim > 0;
        for (auto [n, mat, fused, first] :
             {std::tuple{"wq", wide ? &ex.wq[li] : &w.wq, "wqkv", index_t{0}}, {"wk", wide ? &ex.wk[li] : &w.wk, "wqkv", q_rows},
              {"wv", wide ? &ex.wv[li] : &w.wv, "wqkv", q_rows + kv_rows}, {"wo", wide ? &ex.wo[li] : &w.wo, "", index_t{0}},
              {"w1", &w.w1, "w13", index_t{0}}, {"w2", &w.w2, "", index_t{0}}, {"w3", &w.w3, "w13", hidden}})
          if (v.experts == 0 || !std::isdigit(static_cast<unsigned char>(n[1])))  // a mixture of experts has no w1 w2 w3
            tensors.push_back({p + n, mat->data(), mat->size(), mat->cols(),
                               v.fused && *fused ? std::function<double(const engine_gradients&, index_t)>(part_grad(p + fused, first))
                                                 : matrix_grad(p + n)});
        if (v.experts > 0) {
          const std::string b = "blk." + std::to_string(l) + ".";
          for (auto [n, mat] : {std::pair{"ffn_gate_exps.weight", &ex.gate_exps[li]}, {"ffn_up_exps.weight", &ex.up_exps[li]},
                                {"ffn_down_exps.weight", &ex.down_exps[li]}, {"ffn_gate_inp.weight", &ex.router[li]}})
            tensors.push_back({b + n, mat->data(), mat->size(), mat->cols(), matrix_grad(b + n)});
          if (v.shared) {
            for (auto [n, mat] : {std::pair{"ffn_gate_shexp.weight", &ex.gate_shexp[li]}, {"ffn_up_shexp.weight", &ex.up_shexp[li]},
                                  {"ffn_down_shexp.weight", &ex.down_shexp[li]}})
              tensors.push_back({b + n, mat->data(), mat->size(), mat->cols(), matrix_grad(b + n)});
            tensors.push_back({b + "ffn_gate_inp_shexp", ex.shared_gate[li].data(), ex.shared_gate[li].size(), 1,
                               [li](const engine_gradients& g, index_t i) { return static_cast<double>(g.rest.shared_expert_gate.at(li)[i]); }});
          }
        }
        tensors.push_back({p + "attn_norm", w.rms_att.data(), w.rms_att.size(), 1,
                           [li](const engine_gradients& g, index_t i) { return static_cast<double>(g.rest.attn_norm[li][i]); }});
        tensors.push_back({p + "ffn_norm", w.rms_ffn.data(), w.rms_ffn.size(), 1,
                           [li](const engine_gradients& g, index_t i) { return static_cast<double>(g.rest.ffn_norm[li][i]); }});
        if (v.qwen3) {
          tensors.push_back({p + "q_norm", ex.q_norm[li].data(), ex.q_norm[li].size(), 1,
                             [li](const engine_gradients& g, index_t i) { return static_cast<double>(g.rest.q_norm.at(li)[i]); }});
          tensors.push_back({p + "k_norm", ex.k_norm[li].data(), ex.k_norm[li].size(), 1,
                             [li](const engine_gradients& g, index_t i) { return static_cast<double>(g.rest.k_norm.at(li)[i]); }});
        }
      }
      tensors.push_back({"output_norm", ck.rms_final.data(), ck.rms_final.size(), 1,
                         [](const engine_gradients& g, index_t i) { return static_cast<double>(g.rest.output_norm[i]); }});
      if (!v.tied) tensors.push_back({"classifier", ck.classifier.data(), ck.classifier.size(), ck.classifier.cols(), matrix_grad("classifier")});

      int checked = 0;
      for (const tensor& t : tensors) {
        agreement a_nll, a_kl;
        std::vector<double> fd_nll(static_cast<std::size_t>(t.size)), fd_kl(fd_nll.size());
        for (index_t i = 0; i < t.size; ++i) {
          const float keep = t.data[i];
          const float h = 1e-3f * std::max(1.0f, std::abs(keep));
          t.data[i] = keep + h;
          const double up_value = t.data[i];
          naive_llama up(make_model(ck, v, ex));
          const losses lu = double_losses(up.logits(tokens), tokens, reference);
          t.data[i] = keep - h;
          const double down_value = t.data[i];
          naive_llama down(make_model(ck, v, ex));
          const losses ld = double_losses(down.logits(tokens), tokens, reference);
          t.data[i] = keep;
          const double step = up_value - down_value;  // the float values' exact difference
          fd_nll[static_cast<std::size_t>(i)] = (lu.nll - ld.nll) / step;
          fd_kl[static_cast<std::size_t>(i)] = (lu.kl - ld.kl) / step;
        }
        for (auto [fd, g, a] : {std::tuple{&fd_nll, &g_nll, &a_nll}, std::tuple{&fd_kl, &g_kl, &a_kl}}) {
          for (double f : *fd) a->largest = std::max(a->largest, std::abs(f));
          for (index_t i = 0; i < t.size; ++i) {
            const double f = (*fd)[static_cast<std::size_t>(i)], e = t.engine(*g, i);
            a->tensor_relative = std::max(a->tensor_relative, std::abs(e - f) / a->largest);
            if (std::abs(f) >= 0.1 * a->largest) a->element_relative = std::max(a->element_relative, std::abs(e - f) / std::abs(f));
          }
          INFO(t.name << (a == &a_nll ? " (next-token NLL)" : " (KL)") << ": largest gradient " << a->largest << ", tensor-relative error "
                      << a->tensor_relative << ", worst large element's relative error " << a->element_relative);
          CHECK(a->largest > 1e-4);  // every tensor matters to both losses
          CHECK(a->tensor_relative < 1e-3);
          CHECK(a->element_relative < 1e-3);
        }
        checked += static_cast<int>(t.size);
      }
      CHECK(checked > 4000);
    }
  }
}

TEST_CASE("llama_backprop: the forward is the engine's, the backward does not depend on the thread count", "[llama_backward]") {
  mixprec::test::tiny_llama_options o;
  o.seed = 3;
  const models::llama_model m = models::from_llama2c(mixprec::test::tiny_llama(o));
  std::vector<int> tokens;
  for (int p = 0; p < 40; ++p) tokens.push_back((p * 131 + 7) % o.vocab_size);
  models::llama_engine e1(m);
  const row_matrix z = e1.logits(tokens);
  models::llama_backprop bp1(e1);
  CHECK(bp1.forward(tokens) == z);
  const auto run = [&](unsigned threads) {
    models::llama_engine e(m, {}, {threads, mixprec::activation_type::automatic, 0});
    models::llama_backprop bp(e);
    const row_matrix& logits = bp.forward(tokens);
    std::vector<row_matrix> seen;
    const auto g = bp.backward(models::next_token_nll(logits, tokens).dlogits,
                               [&](const std::string&, const row_matrix&, const row_matrix& dy) { seen.push_back(dy); });
    seen.push_back(g.embedding);
    return seen;
  };
  const auto one = run(1), two = run(2);
  REQUIRE(one.size() == static_cast<std::size_t>(7 * o.n_layers + 2));
  for (std::size_t i = 0; i < one.size(); ++i) CHECK(one[i] == two[i]);
}

TEST_CASE("llama_backprop: through a re-quantized matrix, the gradient of its decoded weights (straight-through)", "[llama_backward]") {
  mixprec::test::tiny_llama_options o;
  o.dim = 32;
  o.hidden_dim = 64;
  o.n_layers = 2;
  o.vocab_size = 300;
  o.seed = 5;
  const models::llama_model m = models::from_llama2c(mixprec::test::tiny_llama(o));
  const mixprec::quant_spec s = mixprec::parse_spec("int4/g16");
  const std::map<std::string, mixprec::quant_spec> specs = {{"layers.0.wv", s}, {"layers.1.w2", s}, {"classifier", s}};
  // The same model with those matrices replaced by their decoded values, run in FP32.
  mixprec::llama2c::checkpoint ck = mixprec::test::tiny_llama(o);
  ck.layers[0].wv = mixprec::dequantize(mixprec::quantize(ck.layers[0].wv, s));
  ck.layers[1].w2 = mixprec::dequantize(mixprec::quantize(ck.layers[1].w2, s));
  ck.classifier = mixprec::dequantize(mixprec::quantize(ck.classifier, s));
  const models::llama_model decoded = models::from_llama2c(ck);
  CHECK_FALSE(decoded.layers[0].wv.fp32() == m.layers[0].wv.fp32());  // the quantization changed them

  std::vector<int> tokens;
  for (int p = 0; p < 24; ++p) tokens.push_back((p * 71 + 2) % o.vocab_size);
  const auto grads = [&](const models::llama_model& model, const std::map<std::string, mixprec::quant_spec>& sp) {
    models::llama_engine e(model, sp, {1, mixprec::activation_type::fp32, 0});
    models::llama_backprop bp(e);
    const row_matrix& z = bp.forward(tokens);
    std::map<std::string, row_matrix> out;
    bp.backward(models::next_token_nll(z, tokens).dlogits,
                [&](const std::string& name, const row_matrix& x, const row_matrix& dy) { out[name] = dy.transpose() * x; });
    return out;
  };
  const auto q = grads(m, specs), d = grads(decoded, {});
  REQUIRE(q.size() == d.size());
  for (const auto& [name, g] : q) {
    INFO(name);
    const float scale = d.at(name).cwiseAbs().maxCoeff();
    CHECK(scale > 0.0f);
    CHECK((g - d.at(name)).cwiseAbs().maxCoeff() <= 1e-4f * scale);
  }
}

TEST_CASE("losses: gradients as defined, sampled labels from the model's distribution, refusals", "[llama_backward]") {
  row_matrix z(3, 5), ref(3, 5);
  z << 1, 2, 3, 4, 5, -1, 0, 1, 0, -1, 10, -10, 0, 0, 3;
  ref << 0, 0, 0, 0, 0, 1, 1, 1, 1, 9, 2, 1, 0, -1, -2;
  const std::vector<int> tokens = {0, 4, 2};
  // Each loss's gradient by central differences of the loss itself (in double, h = 1e-3 on FP32 logits).
  for (int which = 0; which < 3; ++which) {
    const auto loss = [&](const row_matrix& x) {
      return which == 0 ? models::next_token_nll(x, tokens) : which == 1 ? models::kl_to_reference(x, ref) : models::sampled_nll(x, 9);
    };
    const models::loss_gradient l = loss(z);
    for (index_t i = 0; i < z.size(); ++i) {
      row_matrix a = z, b = z;
      a.data()[i] += 1e-3f;
      b.data()[i] -= 1e-3f;
      const double fd = (loss(a).loss - loss(b).loss) / (static_cast<double>(a.data()[i]) - b.data()[i]);
      CHECK(std::abs(fd - l.dlogits.data()[i]) < 1e-5);
    }
  }
  CHECK(models::next_token_nll(z, tokens).dlogits.row(2).isZero());  // the last position predicts nothing
  CHECK(models::kl_to_reference(ref, ref).loss == Approx(0.0).margin(1e-12));
  // E[dlogits] = p - E[one-hot] = 0 when labels follow p: the mean gradient over many seeds tends to 0.
  row_matrix mean = row_matrix::Zero(3, 5);
  for (std::uint64_t seed = 0; seed < 4000; ++seed) mean += models::sampled_nll(z, seed).dlogits / 4000.0f;
  CHECK(mean.cwiseAbs().maxCoeff() < 0.01f);
  CHECK(models::sampled_nll(z, 5).dlogits == models::sampled_nll(z, 5).dlogits);

  row_matrix bad = z;
  bad(1, 1) = std::nanf("");
  CHECK(error_code_of([&] { (void)models::next_token_nll(bad, tokens); }) == errc::non_finite);
  CHECK(error_code_of([&] { (void)models::kl_to_reference(z, bad); }) == errc::non_finite);
  CHECK(error_code_of([&] { (void)models::sampled_nll(bad, 1); }) == errc::non_finite);
  CHECK(error_code_of([&] { (void)models::next_token_nll(z, std::vector<int>{0, 1}); }) == errc::shape_mismatch);
  CHECK(error_code_of([&] { (void)models::next_token_nll(z, std::vector<int>{0, 5, 1}); }) == errc::invalid_argument);
  CHECK(error_code_of([&] { (void)models::next_token_nll(z.topRows(1), std::vector<int>{0}); }) == errc::invalid_argument);
  CHECK(error_code_of([&] { (void)models::kl_to_reference(z, ref.leftCols(4)); }) == errc::shape_mismatch);
  CHECK(error_code_of([&] { (void)models::sampled_nll(row_matrix(0, 5), 1); }) == errc::empty_input);

  mixprec::test::tiny_llama_options o;
  o.n_layers = 1;
  const models::llama_model m = models::from_llama2c(mixprec::test::tiny_llama(o));
  models::llama_engine e(m);
  models::llama_backprop bp(e);
  CHECK(error_code_of([&] { (void)bp.backward(row_matrix::Zero(2, o.vocab_size)); }) == errc::invalid_argument);
  const std::vector<int> two = {1, 2};
  (void)bp.forward(two);
  CHECK(error_code_of([&] { (void)bp.backward(row_matrix::Zero(3, o.vocab_size)); }) == errc::shape_mismatch);
  CHECK(error_code_of([&] { (void)bp.forward(std::vector<int>{1, o.vocab_size}); }) == errc::invalid_argument);
  // A forward that failed leaves nothing to go backward from.
  CHECK(error_code_of([&] { (void)bp.backward(row_matrix::Zero(2, o.vocab_size)); }) == errc::invalid_argument);
  // The engine's observer sees each product once per forward, not again in the backward's recomputation.
  int seen = 0;
  e.observe([&](const std::string&, const float*, mixprec::index_t) { ++seen; });
  const row_matrix& logits = bp.forward(two);
  const int per_forward = seen;
  CHECK(per_forward == 2 * (7 * o.n_layers + 1));  // two positions, seven products per layer and the classifier
  (void)bp.backward(models::next_token_nll(logits, two).dlogits);
  CHECK(seen == per_forward);
}
