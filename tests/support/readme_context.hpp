// The names the snippets of README.md and docs/*.md use without defining them: the reader's own
// weights, activations, plan and evaluation. tests/cmake/readme_snippets.cmake puts every snippet after
// this header, each in a function of its own, and the readme_snippets target compiles them (nothing
// runs: these are declarations of what a reader has, not data).
#pragma once

#include <iostream>
#include <string>
#include <vector>

#include <mixprec/mixprec.hpp>
#include <mixprec/io/imatrix.hpp>
#include <mixprec/kernels/quantized_linear.hpp>
#include <mixprec/plan/plan.hpp>
#include <mixprec/qat/fake_quant.hpp>
#include <mixprec/sensitivity/sensitivity.hpp>

namespace readme {

// "= ...;" in a snippet: a value of whatever type the snippet declares.
struct any_value {
  template <class T>
  operator T() const {  // NOLINT: implicit on purpose
    return T{};
  }
};
inline any_value your_value() { return {}; }

inline mixprec::row_matrix w, w1, w2, X, Y, grad_w_hat;     // weights (out x in), batches (tokens x features)
inline mixprec::row_matrix full_precision_logits, quantized_logits;  // a model's outputs, positions x vocab
inline Eigen::MatrixXf x1;                                   // activations, in_features x tokens
inline std::vector<float> x, y, imatrix_row;                 // one token's activations and outputs
inline Eigen::VectorXf bias;
inline mixprec::quantized_tensor q;
inline std::vector<mixprec::quant_spec> candidates;
inline mixprec::model weights;
inline mixprec::plan p;
inline mixprec::hvp_function hvp;
inline mixprec::index_t n = 0;
inline std::vector<int> tokens;
inline float lr = 0.0f;
double evaluate_accuracy();
double measured_kl(const mixprec::plan& p, int tokens);  // the reader's model run with plan p, KL to full precision

}  // namespace readme
