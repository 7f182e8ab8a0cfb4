// The second moments of every matrix's inputs over a calibration: per matrix and input column j,
// sum over the positions of x_j^2, and the number of positions. Their ratio, the mean x_j^2, is
// llama.cpp's importance matrix (imatrix: llama-imatrix collects the same sums, per call of the
// product, and llama-quantize's searches weigh column j's error by it) and the diagonal of the Gram
// matrix X^T X that GPTQ's objective |(W - Q(W)) X^T|^2 uses.
// Fed by an engine's activation observer (models/llama.hpp llama_engine::observe: name, x, n per
// position), so any engine that reports its matrices' inputs can collect them.
#pragma once

#include <map>
#include <string>

#include <Eigen/Core>

#include "mixprec/error.hpp"
#include "mixprec/types.hpp"

namespace mixprec {

class input_moments {
 public:
  // One position's input x (n values) of matrix `name`. Throws shape_mismatch when n differs from the
  // matrix's earlier inputs.
  void observe(const std::string& name, const float* x, index_t n) {
    auto& [sum, count] = by_name_[name];
    if (sum.size() == 0) sum = Eigen::VectorXd::Zero(n);
    if (sum.size() != n)
      throw error(errc::shape_mismatch, "input_moments: '" + name + "' had inputs of " + std::to_string(sum.size()) + " values, now " + std::to_string(n));
    sum.array() += Eigen::Map<const Eigen::VectorXf>(x, n).cast<double>().array().square();
    count += 1.0;
  }

  [[nodiscard]] bool contains(const std::string& name) const { return by_name_.count(name) != 0; }
  // sum over positions of x_j^2 (cols values) and the number of positions, of a matrix observed
  // (errc::invalid_argument for another name).
  [[nodiscard]] const Eigen::VectorXd& sum_squares(const std::string& name) const { return at(name).first; }
  [[nodiscard]] double count(const std::string& name) const { return at(name).second; }
  // The importance of column j: mean x_j^2 over the positions (cols values, float as imatrix stores it).
  [[nodiscard]] Eigen::VectorXf mean_squares(const std::string& name) const {
    const auto& [sum, n] = at(name);
    return (sum / n).cast<float>();
  }
  // Every matrix observed, by name: (sum of squares, positions).
  [[nodiscard]] const std::map<std::string, std::pair<Eigen::VectorXd, double>>& all() const noexcept { return by_name_; }

 private:
  [[nodiscard]] const std::pair<Eigen::VectorXd, double>& at(const std::string& name) const {
    const auto it = by_name_.find(name);
    if (it == by_name_.end()) throw error(errc::invalid_argument, "input_moments: no inputs of '" + name + "' were observed");
    return it->second;
  }

  std::map<std::string, std::pair<Eigen::VectorXd, double>> by_name_;
};

}  // namespace mixprec
