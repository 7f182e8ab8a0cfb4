// The definition the measured and verified KLs are tested against: the mean over the streams' positions
// of KL(P_reference || P_test), each stream run whole by both models (llama_engine::logits), with no
// cached restart and no kept reference.
#pragma once

#include <string>
#include <vector>

#include "mixprec/models/llama.hpp"
#include "mixprec/models/llama/measure.hpp"
#include "mixprec/sensitivity/kl.hpp"

namespace mixprec::test {

inline double whole_model_kl(const models::llama_model& reference, const models::llama_model& test,
                             const std::vector<std::vector<int>>& streams) {
  models::llama_engine er(reference), et(test);
  double sum = 0.0, n = 0.0;
  for (const auto& s : streams) {
    sum += kl_per_row(er.logits(s), et.logits(s)).sum();
    n += static_cast<double>(s.size());
  }
  return sum / n;
}

// whole_model_kl of m against m with the matrix `name` replaced by `replacement`: a one-tensor KL by
// its definition, without the measurement's cached restarts.
inline double one_tensor_kl(const models::llama_model& m, const std::vector<std::vector<int>>& streams, const std::string& name,
                            const models::llama_matrix& replacement) {
  models::llama_model q = m;
  for (auto& [mat, layer] : models::llama_measure_matrices(q))
    if (mat->name() == name) *mat = replacement;
  return whole_model_kl(m, q, streams);
}

}  // namespace mixprec::test
