// The second moments of every matrix's inputs over a calibration: per matrix and input column j,
// sum over the positions of x_j^2, and the number of positions. Their ratio, the mean x_j^2, is
// llama.cpp's importance matrix (imatrix: llama-imatrix collects the same sums, per call of the
// product, and llama-quantize's searches weigh column j's error by it) and the diagonal of the Gram
// matrix X^T X that GPTQ's objective |(W - Q(W)) X^T|^2 uses.
// A 3-D stack of n_mat matrices (a mixture-of-experts layer's experts, one GGUF tensor) has one sum
// and one count per matrix, expert-major, as llama-imatrix collects a MUL_MAT_ID (tools/imatrix/
// imatrix.cpp: each (token, chosen expert) pair adds x^2 to that expert's sums and 1 to its count).
// Fed by an engine's activation observers (models/llama/engine.hpp llama_engine::observe and
// observe_experts: name, x, n per position), so any engine that reports its matrices' inputs can
// collect them.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "mixprec/error.hpp"
#include "mixprec/types.hpp"

namespace mixprec {

class input_moments {
 public:
  // One matrix's (or a stack's) statistics.
  struct moments {
    Eigen::VectorXd sum_squares;  // n_mat * cols: sum over its positions of x_j^2, matrix m's at [m*cols, (m+1)*cols)
    std::vector<double> counts;   // n_mat: the positions each matrix saw
    [[nodiscard]] index_t n_mat() const noexcept { return static_cast<index_t>(counts.size()); }
    [[nodiscard]] index_t cols() const noexcept { return counts.empty() ? 0 : sum_squares.size() / n_mat(); }
  };

  // One position's input x (n values) of matrix `name`. Throws shape_mismatch when n differs from the
  // matrix's earlier inputs, or when `name` was observed as an expert stack.
  void observe(const std::string& name, const float* x, index_t n) { add(name, 0, 1, x, n); }
  // One position's input x (n values) of expert `expert` of the stack `name` of n_experts matrices.
  // Throws invalid_argument for an expert outside [0, n_experts), shape_mismatch when n or n_experts
  // differ from the stack's earlier inputs.
  void observe_expert(const std::string& name, int expert, int n_experts, const float* x, index_t n) {
    if (n_experts < 1 || expert < 0 || expert >= n_experts)
      throw error(errc::invalid_argument, "input_moments: expert " + std::to_string(expert) + " of " + std::to_string(n_experts) + " of '" + name + "'");
    add(name, expert, n_experts, x, n);
  }

  [[nodiscard]] bool contains(const std::string& name) const { return by_name_.count(name) != 0; }
  // The statistics of a matrix observed (errc::invalid_argument for another name).
  [[nodiscard]] const moments& at(const std::string& name) const {
    const auto it = by_name_.find(name);
    if (it == by_name_.end()) throw error(errc::invalid_argument, "input_moments: no inputs of '" + name + "' were observed");
    return it->second;
  }
  // sum over positions of x_j^2 (n_mat * cols values, expert-major), of a matrix observed.
  [[nodiscard]] const Eigen::VectorXd& sum_squares(const std::string& name) const { return at(name).sum_squares; }
  // The positions seen, over all of a stack's matrices (a stack: positions x experts used).
  [[nodiscard]] double count(const std::string& name) const {
    double n = 0.0;
    for (double c : at(name).counts) n += c;
    return n;
  }
  // The importance of column j of matrix m: mean x_j^2 over m's positions (n_mat * cols values,
  // expert-major, float as imatrix stores it), 1.0 for every column of a matrix no position reached,
  // as llama-quantize reads an imatrix.
  [[nodiscard]] Eigen::VectorXf mean_squares(const std::string& name) const {
    const moments& s = at(name);
    const index_t cols = s.cols();
    Eigen::VectorXf out(s.sum_squares.size());
    for (index_t m = 0; m < s.n_mat(); ++m) {
      const double c = s.counts[static_cast<std::size_t>(m)];
      out.segment(m * cols, cols) = c > 0.0 ? (s.sum_squares.segment(m * cols, cols) / c).cast<float>().eval() : Eigen::VectorXf::Ones(cols);
    }
    return out;
  }
  // Every matrix observed, by name.
  [[nodiscard]] const std::map<std::string, moments>& all() const noexcept { return by_name_; }

 private:
  void add(const std::string& name, int m, int n_mat, const float* x, index_t n) {
    moments& s = by_name_[name];
    if (s.counts.empty()) {
      s.sum_squares = Eigen::VectorXd::Zero(n * n_mat);
      s.counts.assign(static_cast<std::size_t>(n_mat), 0.0);
    }
    if (s.cols() != n || s.n_mat() != n_mat)
      throw error(errc::shape_mismatch, "input_moments: '" + name + "' had inputs of " + std::to_string(s.cols()) + " values for " +
                                            std::to_string(s.n_mat()) + " matrices, now " + std::to_string(n) + " for " + std::to_string(n_mat));
    s.sum_squares.segment(static_cast<index_t>(m) * n, n).array() += Eigen::Map<const Eigen::VectorXf>(x, n).cast<double>().array().square();
    s.counts[static_cast<std::size_t>(m)] += 1.0;
  }

  std::map<std::string, moments> by_name_;
};

}  // namespace mixprec
