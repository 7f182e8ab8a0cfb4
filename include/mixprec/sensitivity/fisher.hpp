// Fisher estimates of what replacing one weight matrix W by W + D costs a model's output distribution,
// from gradients instead of a run per candidate. At D = 0 the KL from the model's distribution P to the
// perturbed one has zero gradient and the Fisher information F as Hessian (Amari), so
//   KL(P || P_D) ~ (1/2) vec(D)^T F vec(D),   F = E_y[ g g^T ],  g = grad log p(y), y ~ P (the true Fisher)
// A product Y = X W^T over N positions (X: N x in) sees D only through E = X D^T (N x out), and with
// dY = dL/dY of L = -sum_t log p(y_t) for labels drawn from the model itself (models/llama/backward.hpp
// sampled_nll), g . vec(D) = sum_t dY_t . E_t. Four estimates of the mean KL per position, each averaged
// over K draws of the labels (per position, draws independent; mean over draws):
//   sequence   (1/2N) sum_streams (sum_{t in stream} dY_t . E_t)^2   unbiased for the Fisher form
//   token      (1/2N) sum_t (dY_t . E_t)^2                            cross-position terms dropped
//   kfac       (1/2N^2) sum_r s_r sum_t E_tr^2,  s_r = sum_t dY_tr^2  K-FAC (Martens & Grosse 2015) with
//              the output factor's diagonal: (1/2N) sum_r (s_r / N) d_r G d_r^T, G = X^T X
//   diagonal   (1/2N) sum_ij F_ij D_ij^2,  F = (dY.^2)^T (X.^2)       the per-position diagonal Fisher
// (HAWQ-style and AutoQuantize-style scores are of this family; the last two are what cheaper tools
// keep.) An embedding lookup (row tokens[t] of W is position t's output) has E_t = D[tokens[t]]. A
// matrix used twice (an embedding tied to the classifier) adds its uses' dY_t . E_t per position before
// squaring, and their kfac and diagonal terms. A stack of experts (a mixture-of-experts layer's 3-D
// tensor) is a matrix with one use per expert: a routed product, whose rows are that expert's block of W
// and whose positions are the ones routed to it; the same sums, with E_t = 0 at the other positions.
// Units: nats per position, as measure's kl. Sums in double; products X D^T in FP32 (as measure's
// gram_proxy), the rest in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "mixprec/error.hpp"
#include "mixprec/types.hpp"

namespace mixprec {

struct fisher_estimate {
  double sequence = 0.0, token = 0.0, kfac = 0.0, diagonal = 0.0;  // nats per position (banner)
};

// One use of a matrix over N positions and K label draws: its inputs (or the looked-up rows) and the
// gradients reaching its output.
class fisher_use {
 public:
  // A product Y = X W^T: x (N x in), dy (K N x out, draw k in rows k N .. k N + N - 1). Throws
  // errc::shape_mismatch when dy's rows are not a multiple of x's, errc::empty_input for no positions.
  fisher_use(row_matrix x, row_matrix dy) : x_(std::move(x)), dy_(std::move(dy)) { check(x_.rows()); }
  // A lookup: position t's output is row tokens[t] of W (rows x out); dy (K N x out). Throws as above and
  // errc::invalid_argument for a token outside [0, rows).
  fisher_use(std::vector<int> tokens, index_t rows, row_matrix dy) : tokens_(std::move(tokens)), rows_(rows), dy_(std::move(dy)) {
    check(static_cast<index_t>(tokens_.size()));
    for (int t : tokens_)
      if (t < 0 || t >= rows_) throw error(errc::invalid_argument, "fisher_use: token " + std::to_string(t) + " outside " + std::to_string(rows_) + " rows");
  }

  // A routed product: rows row0 .. row0 + out - 1 of W (rows in all: one expert of a stack) run on the
  // positions at[0..R-1] of N (in increasing order): x (R x in), dy (K R x out, draw k in rows k R ..).
  // Throws as a product does, and errc::invalid_argument for positions outside [0, N) or not increasing,
  // or a block outside the rows.
  fisher_use(row_matrix x, row_matrix dy, std::vector<index_t> at, index_t positions, index_t row0, index_t rows)
      : x_(std::move(x)), rows_(rows), dy_(std::move(dy)), at_(std::move(at)), n_(positions), row0_(row0) {
    check(x_.rows());
    if (static_cast<index_t>(at_.size()) != x_.rows())
      throw error(errc::shape_mismatch, "fisher_use: " + std::to_string(at_.size()) + " positions for " + std::to_string(x_.rows()) + " inputs");
    for (std::size_t r = 0; r < at_.size(); ++r)
      if (at_[r] < 0 || at_[r] >= n_ || (r > 0 && at_[r] <= at_[r - 1]))
        throw error(errc::invalid_argument, "fisher_use: routed positions must increase within [0, " + std::to_string(n_) + ")");
    if (row0_ < 0 || row0_ + dy_.cols() > rows_)
      throw error(errc::invalid_argument, "fisher_use: rows " + std::to_string(row0_) + " + " + std::to_string(dy_.cols()) + " outside " + std::to_string(rows_));
  }

  [[nodiscard]] index_t positions() const noexcept { return routed() ? n_ : tokens_.empty() ? x_.rows() : static_cast<index_t>(tokens_.size()); }
  [[nodiscard]] index_t draws() const noexcept { return dy_.rows() / inputs(); }
  [[nodiscard]] bool lookup() const noexcept { return !tokens_.empty(); }
  [[nodiscard]] bool routed() const noexcept { return n_ > 0; }
  // The shape of W this use implies (out x in for a product, rows x out for a lookup, the whole stack's
  // for a routed product).
  [[nodiscard]] index_t weight_rows() const noexcept { return lookup() || routed() ? rows_ : dy_.cols(); }
  [[nodiscard]] index_t weight_cols() const noexcept { return lookup() ? dy_.cols() : x_.cols(); }
  // The rows of W this use runs: [row0, row0 + block_rows()).
  [[nodiscard]] index_t row0() const noexcept { return row0_; }
  [[nodiscard]] index_t block_rows() const noexcept { return lookup() ? rows_ : dy_.cols(); }

  // E (R x out: one row per input the use has): what D changes at the use's output.
  [[nodiscard]] row_matrix output_change(const row_matrix& d) const {
    if (routed()) return x_ * d.middleRows(row0_, dy_.cols()).transpose();
    if (!lookup()) return x_ * d.transpose();
    row_matrix e(positions(), d.cols());
    for (std::size_t t = 0; t < tokens_.size(); ++t) e.row(static_cast<index_t>(t)) = d.row(tokens_[t]);
    return e;
  }
  // dY_{k,t} . E_t, added into g (K x N).
  void add_directional(const row_matrix& e, Eigen::MatrixXd& g) const {
    const index_t n = inputs();
    for (index_t k = 0; k < draws(); ++k)
      for (index_t t = 0; t < n; ++t)
        g(k, routed() ? at_[static_cast<std::size_t>(t)] : t) += static_cast<double>(dy_.row(k * n + t).cast<double>().dot(e.row(t).cast<double>()));
  }
  // s_r = sum_t dY_tr^2, mean over draws (out).
  [[nodiscard]] Eigen::VectorXd output_moments() const {
    return dy_.cast<double>().array().square().colwise().sum().transpose() / static_cast<double>(draws());
  }
  // F = (dY.^2)^T (X.^2) (out x in for a product; rows x out for a lookup), mean over draws.
  [[nodiscard]] Eigen::MatrixXd diagonal_fisher() const {
    const index_t n = inputs();
    // One draw's dY.^2 at a time (a classifier's dY is draws x positions x vocab).
    const auto dy2 = [&](index_t k) -> Eigen::MatrixXd { return dy_.middleRows(k * n, n).cast<double>().array().square().matrix(); };
    if (!lookup()) {
      const Eigen::MatrixXd x2 = x_.cast<double>().array().square().matrix();
      Eigen::MatrixXd f = Eigen::MatrixXd::Zero(dy_.cols(), x_.cols());
      for (index_t k = 0; k < draws(); ++k) f.noalias() += dy2(k).transpose() * x2;
      return f / static_cast<double>(draws());
    }
    Eigen::MatrixXd f = Eigen::MatrixXd::Zero(rows_, dy_.cols());
    for (index_t k = 0; k < draws(); ++k) {
      const Eigen::MatrixXd d = dy2(k);
      for (index_t t = 0; t < n; ++t) f.row(tokens_[static_cast<std::size_t>(t)]) += d.row(t);
    }
    return f / static_cast<double>(draws());
  }

 private:
  // Rows of x (or tokens): the positions a product or lookup runs, a routed product's routed ones.
  [[nodiscard]] index_t inputs() const noexcept { return tokens_.empty() ? x_.rows() : static_cast<index_t>(tokens_.size()); }
  void check(index_t n) const {
    if (n == 0) throw error(errc::empty_input, "fisher_use: no positions");
    if (dy_.rows() == 0 || dy_.rows() % n != 0)
      throw error(errc::shape_mismatch, "fisher_use: " + std::to_string(dy_.rows()) + " gradient rows for " + std::to_string(n) + " positions");
  }
  row_matrix x_;
  std::vector<int> tokens_;
  index_t rows_ = 0;
  row_matrix dy_;
  std::vector<index_t> at_;  // a routed product's positions
  index_t n_ = 0, row0_ = 0;  // a routed product's: all positions, its first row of W
};

// The estimates for one matrix from its uses (the same positions and draws in each), computed once per
// matrix (the diagonal Fisher, rows x cols doubles, and the output moments) and then per candidate D.
class fisher_pricing {
 public:
  // streams: the lengths of the calibration streams, in order, summing to the positions. Throws
  // errc::invalid_argument for no uses or uses of different positions, draws or weight shapes, or
  // stream lengths that are not positive or do not sum to the positions.
  fisher_pricing(std::vector<fisher_use> uses, std::vector<index_t> streams) : uses_(std::move(uses)), streams_(std::move(streams)) {
    if (uses_.empty()) throw error(errc::invalid_argument, "fisher_pricing: no uses");
    const fisher_use& u0 = uses_.front();
    for (const fisher_use& u : uses_)
      if (u.positions() != u0.positions() || u.draws() != u0.draws() || u.weight_rows() != u0.weight_rows() || u.weight_cols() != u0.weight_cols())
        throw error(errc::invalid_argument, "fisher_pricing: uses of different positions, draws or shapes");
    index_t sum = 0;
    for (index_t s : streams_) {
      if (s <= 0) throw error(errc::invalid_argument, "fisher_pricing: a stream of " + std::to_string(s) + " positions");
      sum += s;
    }
    if (sum != u0.positions()) throw error(errc::invalid_argument, "fisher_pricing: stream lengths do not sum to the positions");
    for (const fisher_use& u : uses_) {
      diagonal_.push_back(u.diagonal_fisher());
      moments_.push_back(u.output_moments());
    }
  }

  [[nodiscard]] index_t rows() const noexcept { return uses_.front().weight_rows(); }
  [[nodiscard]] index_t cols() const noexcept { return uses_.front().weight_cols(); }

  // The estimates for W -> W + d (rows x cols). Throws errc::shape_mismatch for another shape.
  [[nodiscard]] fisher_estimate operator()(const row_matrix& d) const {
    if (d.rows() != rows() || d.cols() != cols())
      throw error(errc::shape_mismatch, "fisher_pricing: a change of " + std::to_string(d.rows()) + "x" + std::to_string(d.cols()) + " for a " +
                                            std::to_string(rows()) + "x" + std::to_string(cols()) + " matrix");
    const index_t n = uses_.front().positions(), k = uses_.front().draws();
    const auto nd = static_cast<double>(n);
    fisher_estimate out;
    Eigen::MatrixXd g = Eigen::MatrixXd::Zero(k, n);
    const Eigen::ArrayXXd d2 = d.cast<double>().array().square();
    for (std::size_t i = 0; i < uses_.size(); ++i) {
      const row_matrix e = uses_[i].output_change(d);
      uses_[i].add_directional(e, g);
      const Eigen::VectorXd e2 = e.cast<double>().array().square().colwise().sum().transpose();
      out.kfac += 0.5 * moments_[i].dot(e2) / (nd * nd);
      out.diagonal += 0.5 * (diagonal_[i].array() * d2.middleRows(uses_[i].row0(), uses_[i].block_rows())).sum() / nd;
    }
    out.token = 0.5 * g.array().square().sum() / (nd * static_cast<double>(k));
    for (index_t r = 0; r < k; ++r) {
      index_t t0 = 0;
      for (index_t len : streams_) {
        const double s = g.row(r).segment(t0, len).sum();
        out.sequence += 0.5 * s * s / (nd * static_cast<double>(k));
        t0 += len;
      }
    }
    return out;
  }

 private:
  std::vector<fisher_use> uses_;
  std::vector<index_t> streams_;
  std::vector<Eigen::MatrixXd> diagonal_;
  std::vector<Eigen::VectorXd> moments_;
};

}  // namespace mixprec
