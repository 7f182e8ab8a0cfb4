// A mixture-of-experts copy of a dense test model: each expert the dense FFN, so that the layer's
// output is known (renormalised weights: the dense output; without: scaled by the chosen
// probabilities' sum) while the routing, the stacks and the per-expert statistics are exercised.
#pragma once

#include <random>
#include <string>

#include "mixprec/models/llama.hpp"

namespace mixprec::test {

// m with E experts, K used per token, the weights renormalised when `norm`: each expert's FFN the dense
// FFN (gate_exps etc. stacked E times), a router of seeded N(0, 1) values.
inline models::llama_model experts_of(const models::llama_model& m, int E, int K, bool norm) {
  models::llama_model x = m;
  x.config.n_expert = E;
  x.config.n_expert_used = K;
  x.config.expert_hidden_dim = m.config.hidden_dim;
  x.config.expert_weights_norm = norm;
  std::mt19937 gen(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (std::size_t l = 0; l < x.layers.size(); ++l) {
    models::llama_layer& w = x.layers[l];
    const auto stack = [&](const models::llama_matrix& d, const std::string& name) {
      row_matrix s(d.rows() * E, d.cols());
      for (int e = 0; e < E; ++e) s.middleRows(e * d.rows(), d.rows()) = d.fp32();
      return models::llama_matrix(name, std::move(s));
    };
    const std::string p = "blk." + std::to_string(l) + ".";
    w.gate_exps = stack(w.gate, p + "ffn_gate_exps.weight");
    w.up_exps = stack(w.up, p + "ffn_up_exps.weight");
    w.down_exps = stack(w.down, p + "ffn_down_exps.weight");
    row_matrix router(E, m.config.dim);
    for (index_t i = 0; i < router.size(); ++i) router.data()[i] = normal(gen);
    w.gate_inp = models::llama_matrix(p + "ffn_gate_inp.weight", std::move(router));
    w.gate = w.up = w.down = models::llama_matrix();
  }
  x.validate();
  return x;
}

}  // namespace mixprec::test
