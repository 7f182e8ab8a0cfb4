// The Gram matrix G = X^T X of every matrix's inputs over a calibration (X: positions x cols, one row
// per position): the full second moment whose diagonal is input_moments' sums of squares (the imatrix).
// G is the Hessian of GPTQ's layer objective |(W - Q(W)) X^T|_F^2 = sum_r d_r G d_r^T (Frantar et al.,
// "GPTQ", 2023, eq. 1-2), which qat/ggml_tune.hpp minimises within llama.cpp's block types.
// Fed by an engine's activation observer (models/llama.hpp llama_engine::observe: name, x, n per
// position). Positions are buffered and added 256 at a time as one symmetric rank-k update, in double.
// Memory: cols^2 doubles per matrix name (a 7B model's ffn_down, 11008 inputs: 0.97 GB).
#pragma once

#include <map>
#include <string>

#include <Eigen/Core>

#include "mixprec/error.hpp"
#include "mixprec/types.hpp"

namespace mixprec {

class input_gram {
 public:
  // One position's input x (n values) of matrix `name`. Throws shape_mismatch when n differs from the
  // matrix's earlier inputs, non_finite for a NaN/Inf value.
  void observe(const std::string& name, const float* x, index_t n) {
    const Eigen::Map<const Eigen::RowVectorXf> v(x, n);
    if (!v.allFinite()) throw error(errc::non_finite, "input_gram: an input of '" + name + "' is not finite");
    const auto it = by_name_.find(name);
    if (it != by_name_.end() && it->second.gram.rows() != n)
      throw error(errc::shape_mismatch, "input_gram: '" + name + "' had inputs of " + std::to_string(it->second.gram.rows()) + " values, now " + std::to_string(n));
    sums& s = it != by_name_.end() ? it->second : by_name_[name];
    if (s.gram.size() == 0) {
      s.gram = Eigen::MatrixXd::Zero(n, n);
      s.pending.resize(batch, n);
    }
    s.pending.row(s.filled++) = v.cast<double>();
    s.count += 1.0;
    if (s.filled == batch) flush(s);
  }

  [[nodiscard]] bool contains(const std::string& name) const { return by_name_.count(name) != 0; }
  // G = sum over positions of x^T x (cols x cols, symmetric), and the number of positions; a matrix
  // never observed is errc::invalid_argument.
  [[nodiscard]] const Eigen::MatrixXd& gram(const std::string& name) { return settled(name).gram; }
  [[nodiscard]] double count(const std::string& name) const {
    const auto it = by_name_.find(name);
    if (it == by_name_.end()) throw error(errc::invalid_argument, "input_gram: no inputs of '" + name + "' were observed");
    return it->second.count;
  }

 private:
  static constexpr index_t batch = 256;
  struct sums {
    Eigen::MatrixXd gram, pending;
    index_t filled = 0;
    double count = 0.0;
  };
  static void flush(sums& s) {
    if (s.filled == 0) return;
    s.gram.selfadjointView<Eigen::Lower>().rankUpdate(s.pending.topRows(s.filled).transpose());
    s.filled = 0;
  }
  sums& settled(const std::string& name) {
    const auto it = by_name_.find(name);
    if (it == by_name_.end()) throw error(errc::invalid_argument, "input_gram: no inputs of '" + name + "' were observed");
    sums& s = it->second;
    flush(s);
    s.gram.triangularView<Eigen::StrictlyUpper>() = s.gram.transpose();
    return s;
  }

  std::map<std::string, sums> by_name_;
};

}  // namespace mixprec
