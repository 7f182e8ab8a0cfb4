// The study's LLaMA engine: a thin wrapper over the library's (mixprec/models/llama.hpp) for a
// llama2.c checkpoint, keeping the study's names ("layers.0.wq", ..., "classifier") and interface.
// Every matrix runs FP32 (Eigen) or as a mixprec::quantized_linear built from a plan entry.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <mixprec/io/llama2c.hpp>
#include <mixprec/models/llama.hpp>

namespace llama {

class transformer {
 public:
  // Runs the checkpoint's weights (copied: the checkpoint need not outlive the transformer); `specs`
  // maps matrix names ("layers.0.wq", ..., "classifier") to the quantizer each uses (absent: FP32);
  // `activations` is how quantized INT4/INT8 matrices take their inputs.
  explicit transformer(const mixprec::llama2c::checkpoint& ck, const std::map<std::string, mixprec::quant_spec>& specs = {},
                       mixprec::activation_type activations = mixprec::activation_type::fp32)
      : model_(mixprec::models::from_llama2c(ck)), engine_(model_, specs, {.activations = activations}) {}

  transformer(const transformer&) = delete;
  transformer& operator=(const transformer&) = delete;

  // Sees the input of every matrix-vector product (name, x, length); empty by default.
  void observe(mixprec::models::activation_observer fn) { engine_.observe(std::move(fn)); }

  // Bytes of every matrix as stored (quantized or FP32); norms and the embedding table excluded.
  [[nodiscard]] std::size_t matrix_bytes() const { return engine_.matrix_bytes(); }

  // Logits for `token` at position `pos` (positions fed in order from 0).
  const Eigen::VectorXf& forward(int token, int pos) { return engine_.forward(token, pos); }

  [[nodiscard]] mixprec::models::llama_engine& engine() noexcept { return engine_; }

 private:
  mixprec::models::llama_model model_;  // before engine_, which refers to it
  mixprec::models::llama_engine engine_;
};

// Greedy decoding from BOS (token 1): the next `steps` token ids.
inline std::vector<int> greedy(transformer& model, int steps) { return mixprec::models::greedy(model.engine(), steps); }

}  // namespace llama
