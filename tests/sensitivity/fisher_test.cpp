// Fisher estimates (mixprec/sensitivity/fisher.hpp): each of the four equals its formula written out
// in loops; a lookup equals the product with one-hot inputs; two uses add before squaring; an expert's
// routed use equals the product of zero-padded inputs and gradients on its block of rows; refusals.
// On a model (models/llama/backward.hpp's sampled-label gradients), the sequence estimate converges to
// the KL of a small change, which it is the second-order term of.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "mixprec/models/llama/backward.hpp"
#include "mixprec/models/llama/load.hpp"
#include "mixprec/sensitivity/fisher.hpp"
#include "mixprec/sensitivity/kl.hpp"
#include "support/errors.hpp"
#include "support/tiny_llama.hpp"

namespace {

using mixprec::errc;
using mixprec::fisher_estimate;
using mixprec::fisher_pricing;
using mixprec::fisher_use;
using mixprec::index_t;
using mixprec::row_matrix;
using mixprec::test::error_code_of;

row_matrix random_matrix(index_t rows, index_t cols, std::mt19937& gen, float sigma = 1.0f) {
  std::normal_distribution<float> normal(0.0f, sigma);
  row_matrix m(rows, cols);
  for (index_t i = 0; i < m.size(); ++i) m.data()[i] = normal(gen);
  return m;
}

// The banner's four formulas as loops, in double, for uses given as (X, dY) pairs of one matrix.
fisher_estimate by_loops(const std::vector<std::pair<row_matrix, row_matrix>>& uses, const row_matrix& d, const std::vector<index_t>& streams) {
  const index_t n = uses.front().first.rows(), k = uses.front().second.rows() / n;
  const double nd = static_cast<double>(n);
  fisher_estimate out;
  std::vector<std::vector<double>> g(static_cast<std::size_t>(k), std::vector<double>(static_cast<std::size_t>(n), 0.0));
  for (const auto& [x, dy] : uses) {
    std::vector<std::vector<double>> e(static_cast<std::size_t>(n), std::vector<double>(static_cast<std::size_t>(d.rows()), 0.0));
    for (index_t t = 0; t < n; ++t)
      for (index_t r = 0; r < d.rows(); ++r)
        for (index_t c = 0; c < d.cols(); ++c) e[static_cast<std::size_t>(t)][static_cast<std::size_t>(r)] += static_cast<double>(d(r, c)) * x(t, c);
    for (index_t r = 0; r < d.rows(); ++r) {
      double s = 0.0, e2 = 0.0;
      for (index_t j = 0; j < k * n; ++j) s += static_cast<double>(dy(j, r)) * dy(j, r) / static_cast<double>(k);
      for (index_t t = 0; t < n; ++t) e2 += e[static_cast<std::size_t>(t)][static_cast<std::size_t>(r)] * e[static_cast<std::size_t>(t)][static_cast<std::size_t>(r)];
      out.kfac += 0.5 * s * e2 / (nd * nd);
      for (index_t c = 0; c < d.cols(); ++c) {
        double f = 0.0;
        for (index_t j = 0; j < k * n; ++j) f += static_cast<double>(dy(j, r)) * dy(j, r) * x(j % n, c) * x(j % n, c) / static_cast<double>(k);
        out.diagonal += 0.5 * f * d(r, c) * d(r, c) / nd;
      }
    }
    for (index_t q = 0; q < k; ++q)
      for (index_t t = 0; t < n; ++t)
        for (index_t r = 0; r < d.rows(); ++r)
          g[static_cast<std::size_t>(q)][static_cast<std::size_t>(t)] += static_cast<double>(dy(q * n + t, r)) * e[static_cast<std::size_t>(t)][static_cast<std::size_t>(r)];
  }
  for (index_t q = 0; q < k; ++q) {
    index_t t0 = 0;
    for (index_t len : streams) {
      double s = 0.0;
      for (index_t t = t0; t < t0 + len; ++t) {
        const double v = g[static_cast<std::size_t>(q)][static_cast<std::size_t>(t)];
        s += v;
        out.token += 0.5 * v * v / (nd * static_cast<double>(k));
      }
      out.sequence += 0.5 * s * s / (nd * static_cast<double>(k));
      t0 += len;
    }
  }
  return out;
}

void check_close(const fisher_estimate& a, const fisher_estimate& b, double rel = 1e-5) {
  CHECK(a.sequence == Approx(b.sequence).epsilon(rel));
  CHECK(a.token == Approx(b.token).epsilon(rel));
  CHECK(a.kfac == Approx(b.kfac).epsilon(rel));
  CHECK(a.diagonal == Approx(b.diagonal).epsilon(rel));
}

}  // namespace

TEST_CASE("fisher_pricing: the four estimates are their formulas", "[fisher]") {
  std::mt19937 gen(3);
  const index_t n = 13, in = 7, out = 5, draws = 3;
  const std::vector<index_t> streams = {4, 6, 3};
  const row_matrix x = random_matrix(n, in, gen), dy = random_matrix(draws * n, out, gen), d = random_matrix(out, in, gen, 0.1f);
  const fisher_pricing p({fisher_use(x, dy)}, streams);
  CHECK(p.rows() == out);
  CHECK(p.cols() == in);
  const fisher_estimate e = p(d);
  check_close(e, by_loops({{x, dy}}, d, streams));
  // Each is a quadratic form in D: twice the change, four times the estimate.
  const fisher_estimate e2 = p(2.0f * d);
  CHECK(e2.sequence == Approx(4.0 * e.sequence).epsilon(1e-5));
  CHECK(e2.diagonal == Approx(4.0 * e.diagonal).epsilon(1e-5));
  // The sequence estimate keeps the cross-position terms the token one drops: one stream of all
  // positions differs from n streams of one position, which is the token estimate exactly.
  const fisher_estimate singles = fisher_pricing({fisher_use(x, dy)}, std::vector<index_t>(static_cast<std::size_t>(n), 1))(d);
  CHECK(singles.sequence == Approx(e.token).epsilon(1e-12));
  CHECK(fisher_pricing({fisher_use(x, dy)}, {n})(d).sequence != Approx(e.sequence).epsilon(1e-3));

  SECTION("two uses add their output changes before squaring") {
    const row_matrix x2 = random_matrix(n, in, gen), dy2 = random_matrix(draws * n, out, gen);
    const fisher_pricing both({fisher_use(x, dy), fisher_use(x2, dy2)}, streams);
    check_close(both(d), by_loops({{x, dy}, {x2, dy2}}, d, streams));
  }
  SECTION("a lookup is the product with one-hot inputs (of the transposed matrix)") {
    const index_t vocab = 9;
    std::vector<int> tokens;
    for (index_t t = 0; t < n; ++t) tokens.push_back(static_cast<int>((t * 5 + 2) % vocab));
    row_matrix onehot = row_matrix::Zero(n, vocab);
    for (index_t t = 0; t < n; ++t) onehot(t, tokens[static_cast<std::size_t>(t)]) = 1.0f;
    const row_matrix dl = random_matrix(vocab, out, gen, 0.1f);  // vocab x out: the table's rows change
    const fisher_estimate lookup = fisher_pricing({fisher_use(tokens, vocab, dy)}, streams)(dl);
    const fisher_estimate product = fisher_pricing({fisher_use(onehot, dy)}, streams)(row_matrix(dl.transpose()));
    check_close(lookup, product, 1e-6);
  }
  SECTION("experts: a routed use is the product of its block of rows, with zero inputs and gradients off its positions") {
    // Two experts of `out` rows each in a stack of 2 out rows; expert 0 reached at some positions,
    // expert 1 at others (and some at both). Against: plain products of the whole stack's shape whose
    // inputs and gradients are zero where the expert was not routed and outside its rows.
    const std::vector<std::vector<index_t>> routed = {{0, 2, 3, 7, 8, 12}, {1, 2, 4, 5, 6, 9, 10, 11, 12}};
    const row_matrix stack_d = random_matrix(2 * out, in, gen, 0.1f);
    std::vector<fisher_use> uses;
    std::vector<std::pair<row_matrix, row_matrix>> padded;
    for (index_t e = 0; e < 2; ++e) {
      const std::vector<index_t>& at = routed[static_cast<std::size_t>(e)];
      const auto R = static_cast<index_t>(at.size());
      const row_matrix xe = random_matrix(R, in, gen), dye = random_matrix(draws * R, out, gen);
      uses.emplace_back(xe, dye, at, n, e * out, 2 * out);
      row_matrix xp = row_matrix::Zero(n, in), dyp = row_matrix::Zero(draws * n, 2 * out);
      for (index_t r = 0; r < R; ++r) {
        xp.row(at[static_cast<std::size_t>(r)]) = xe.row(r);
        for (index_t k = 0; k < draws; ++k) dyp.block(k * n + at[static_cast<std::size_t>(r)], e * out, 1, out) = dye.row(k * R + r);
      }
      padded.emplace_back(xp, dyp);
    }
    const fisher_pricing stack(uses, streams);
    CHECK(stack.rows() == 2 * out);
    CHECK(stack.cols() == in);
    check_close(stack(stack_d), by_loops(padded, stack_d, streams));
    // Refusals: positions not increasing or outside N, a block outside the stack, inputs and positions of different counts.
    CHECK(error_code_of([&] { fisher_use(x.topRows(2), dy.topRows(2), {3, 3}, n, 0, out); }) == errc::invalid_argument);
    CHECK(error_code_of([&] { fisher_use(x.topRows(2), dy.topRows(2), {3, n}, n, 0, out); }) == errc::invalid_argument);
    CHECK(error_code_of([&] { fisher_use(x.topRows(2), dy.topRows(2), {1, 3}, n, 1, out); }) == errc::invalid_argument);
    CHECK(error_code_of([&] { fisher_use(x.topRows(2), dy.topRows(2), {1, 3, 5}, n, 0, out); }) == errc::shape_mismatch);
  }
  SECTION("refusals") {
    CHECK(error_code_of([&] { fisher_use(x, random_matrix(n + 1, out, gen)); }) == errc::shape_mismatch);
    CHECK(error_code_of([&] { fisher_use(row_matrix(0, in), row_matrix(0, out)); }) == errc::empty_input);
    CHECK(error_code_of([&] { fisher_use(std::vector<int>(static_cast<std::size_t>(n), 9), 9, dy); }) == errc::invalid_argument);
    CHECK(error_code_of([&] { fisher_pricing({fisher_use(x, dy)}, {4, 6}); }) == errc::invalid_argument);
    CHECK(error_code_of([&] { fisher_pricing({fisher_use(x, dy)}, {4, 10, -1}); }) == errc::invalid_argument);  // sums to n
    CHECK(error_code_of([&] { fisher_pricing({}, streams); }) == errc::invalid_argument);
    CHECK(error_code_of([&] { fisher_pricing({fisher_use(x, dy), fisher_use(x, random_matrix(n, out, gen))}, streams); }) == errc::invalid_argument);
    CHECK(error_code_of([&] { (void)p(random_matrix(in, out, gen)); }) == errc::shape_mismatch);
  }
}

TEST_CASE("fisher_pricing on a model: the sequence estimate is the second-order term of the KL", "[fisher]") {
  namespace mm = mixprec::models;
  mixprec::test::tiny_llama_options o;
  o.dim = 32;
  o.hidden_dim = 48;
  o.n_layers = 2;
  o.n_heads = 4;
  o.n_kv_heads = 2;
  o.vocab_size = 64;
  o.seq_len = 32;
  o.seed = 9;
  const mixprec::llama2c::checkpoint ck = mixprec::test::tiny_llama(o);
  const mm::llama_model m = mm::from_llama2c(ck);
  std::vector<std::vector<int>> streams;
  {
    mm::llama_model copy = m;
    mm::llama_engine e(copy);
    for (int s = 0; s < 4; ++s) {
      std::vector<int> st = {1};
      for (int p = 1; p < 16; ++p) st.push_back((p * 13 + s * 7) % o.vocab_size);
      streams.push_back(st);
    }
  }
  std::vector<index_t> lengths;
  index_t n = 0;
  for (const auto& s : streams) lengths.push_back(static_cast<index_t>(s.size())), n += static_cast<index_t>(s.size());

  // Sampled-label gradients of layers.1.wq and layers.0.w2, as measure collects them.
  const index_t draws = 128;
  const std::vector<std::string> names = {"layers.1.wq", "layers.0.w2"};
  std::map<std::string, std::pair<row_matrix, row_matrix>> grads;
  mm::llama_engine e(m, {}, {1, mixprec::activation_type::fp32, 0});
  mm::llama_backprop bp(e);
  index_t t0 = 0;
  for (std::size_t s = 0; s < streams.size(); ++s) {
    const auto len = static_cast<index_t>(streams[s].size());
    const row_matrix z = bp.forward(streams[s]);
    for (index_t k = 0; k < draws; ++k) {
      mm::loss_gradient l = mm::sampled_nll(z, 1000 * s + static_cast<std::size_t>(k));
      l.dlogits *= static_cast<float>(len);
      bp.backward(l.dlogits, [&](const std::string& name, const row_matrix& x, const row_matrix& dy) {
        if (std::find(names.begin(), names.end(), name) == names.end()) return;
        auto& [gx, gdy] = grads[name];
        if (gx.size() == 0) gx.resize(n, x.cols()), gdy.resize(draws * n, dy.cols());
        if (k == 0) gx.middleRows(t0, len) = x;
        gdy.middleRows(k * n + t0, len) = dy;
      });
    }
    t0 += len;
  }
  std::mt19937 gen(21);
  for (const std::string& name : names) {
    INFO(name);
    auto [x, dy] = grads.at(name);
    const fisher_pricing p({fisher_use(x, dy)}, lengths);
    const row_matrix d = random_matrix(p.rows(), p.cols(), gen, 0.02f);
    // The KL of W + D, run whole (the definition).
    mixprec::llama2c::checkpoint changed = ck;
    row_matrix& w = name == "layers.1.wq" ? changed.layers[1].wq : changed.layers[0].w2;
    w += d;
    mm::llama_model mc = mm::from_llama2c(changed);
    mm::llama_model mf = m;
    mm::llama_engine ef(mf, {}, {1, mixprec::activation_type::fp32, 0}), ec(mc, {}, {1, mixprec::activation_type::fp32, 0});
    double kl = 0.0;
    for (const auto& s : streams) kl += mixprec::kl_per_row(ef.logits(s), ec.logits(s)).sum();
    kl /= static_cast<double>(n);
    const fisher_estimate f = p(d);
    INFO("KL " << kl << ", Fisher sequence " << f.sequence << ", token " << f.token << ", kfac " << f.kfac << ", diagonal " << f.diagonal);
    CHECK(kl > 1e-6);
    CHECK(f.sequence / kl == Approx(1.0).margin(0.25));
  }
}
