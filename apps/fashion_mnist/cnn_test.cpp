// The CNN's calculus: backward against finite differences of the loss, the Hessian-vector
// product against finite differences of the gradient, im2col against its adjoint; and that training
// on real Fashion-MNIST images learns.
#include <catch2/catch.hpp>

#include <filesystem>
#include <random>

#include <unistd.h>

#include "pipeline.hpp"

namespace {

using fashion::mat;
using fashion::parameters;
using mixprec::index_t;
using mixprec::row_matrix;

struct toy {
  parameters p;
  row_matrix x;
  std::vector<std::uint8_t> y;
};

// A tiny network (8x8 images, a few channels) with random weights and inputs; biases non-zero so that
// ReLUs are not all on or off.
toy make_toy(std::uint64_t seed) {
  const fashion::architecture a{.side = 8, .c1 = 3, .c2 = 4, .c3 = 5, .f1 = 6, .f2 = 5, .classes = 4};
  toy t{fashion::init_parameters(a, seed), row_matrix(5, 64), {}};
  std::mt19937_64 gen(seed + 1);
  std::uniform_real_distribution<float> u(0.0f, 1.0f), ub(-0.1f, 0.1f);
  for (auto& b : t.p.b)
    for (auto& v : b) v = ub(gen);
  for (index_t i = 0; i < t.x.size(); ++i) t.x.data()[i] = u(gen);
  for (int i = 0; i < 5; ++i) t.y.push_back(static_cast<std::uint8_t>(gen() % 4));
  return t;
}

double loss_of(const parameters& p, const toy& t) {
  fashion::gradients g;
  return fashion::loss_and_gradient(p, t.x, t.y, g, 1);
}

row_matrix random_like(const row_matrix& m, std::mt19937_64& gen) {
  std::normal_distribution<float> n(0.0f, 1.0f);
  row_matrix r(m.rows(), m.cols());
  for (index_t i = 0; i < r.size(); ++i) r.data()[i] = n(gen);
  return r;
}

}  // namespace

TEST_CASE("cnn: im2col and col2im are adjoint", "[fashion]") {
  std::mt19937_64 gen(5);
  std::normal_distribution<float> n(0.0f, 1.0f);
  const int c = 3, batch = 2, h = 5, w = 4;
  mat x(c, batch * h * w), y(9 * c, batch * h * w), cols, back;
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = n(gen);
  for (index_t i = 0; i < y.size(); ++i) y.data()[i] = n(gen);
  fashion::detail::im2col(x, c, batch, h, w, cols);
  fashion::detail::col2im(y, c, batch, h, w, back);
  CHECK(static_cast<double>(cols.cwiseProduct(y).sum()) == Approx(static_cast<double>(x.cwiseProduct(back).sum())).epsilon(1e-4));
  // A corner pixel's column: the taps outside the image are zero.
  CHECK(cols.col(0).head(c).isZero());          // (ky, kx) = (0, 0) lies above-left of pixel (0, 0)
  CHECK(cols.col(0).segment(4 * c, c) == x.col(0));  // the centre tap is the pixel itself
}

TEST_CASE("cnn: backward matches finite differences of the loss, layer by layer", "[fashion]") {
  toy t = make_toy(11);
  fashion::gradients g;
  fashion::loss_and_gradient(t.p, t.x, t.y, g, 1);
  std::mt19937_64 gen(12);
  for (std::size_t l = 0; l < fashion::n_layers; ++l) {
    const row_matrix v = random_like(t.p.w[l], gen);
    // Small steps: the loss is piecewise smooth (ReLU, max pooling), and larger steps cross kinks.
    const float eps = 1e-4f;
    parameters plus = t.p, minus = t.p;
    plus.w[l] += eps * v;
    minus.w[l] -= eps * v;
    const double fd = (loss_of(plus, t) - loss_of(minus, t)) / (2.0 * eps);
    const double analytic = static_cast<double>(g.w[l].cwiseProduct(v).sum());
    INFO("layer " << fashion::layer_names[l]);
    CHECK(analytic == Approx(fd).epsilon(1e-2).margin(5e-4));
    // Biases too.
    const Eigen::VectorXf vb = Eigen::VectorXf::Ones(t.p.b[l].size());
    parameters bp = t.p, bm = t.p;
    bp.b[l] += eps * vb;
    bm.b[l] -= eps * vb;
    CHECK(static_cast<double>(g.b[l].sum()) == Approx((loss_of(bp, t) - loss_of(bm, t)) / (2.0 * eps)).epsilon(1e-2).margin(5e-4));
  }
}

TEST_CASE("cnn: the layer Hessian-vector product matches finite differences of the gradient and is symmetric", "[fashion]") {
  toy t = make_toy(21);
  std::mt19937_64 gen(22);
  for (int l = 0; l < fashion::n_layers; ++l) {
    const auto L = static_cast<std::size_t>(l);
    fashion::layer_hvp hvp(t.p, l, t.x);
    hvp.threads = 1;
    const row_matrix v = random_like(t.p.w[L], gen), u = random_like(t.p.w[L], gen);
    const auto flat = [](const row_matrix& m) { return Eigen::Map<const Eigen::VectorXf>(m.data(), m.size()).cast<double>().eval(); };
    Eigen::VectorXd hv(v.size()), hu(u.size());
    hvp(flat(v), hv);
    hvp(flat(u), hu);
    INFO("layer " << fashion::layer_names[L]);
    CHECK(flat(u).dot(hv) == Approx(flat(v).dot(hu)).epsilon(1e-3));
    CHECK(flat(v).dot(hv) >= 0.0);  // the Gauss-Newton block is positive semi-definite
    // (g(W + eps v) - g(W - eps v)) / (2 eps), projected on u.
    const float eps = 1e-4f;  // small: the gradient jumps where a step crosses a ReLU or pooling kink
    parameters plus = t.p, minus = t.p;
    plus.w[L] += eps * v;
    minus.w[L] -= eps * v;
    fashion::gradients gp, gm;
    fashion::loss_and_gradient(plus, t.x, t.y, gp, 1);
    fashion::loss_and_gradient(minus, t.x, t.y, gm, 1);
    const double fd = static_cast<double>((gp.w[L] - gm.w[L]).cwiseProduct(u).sum()) / (2.0 * eps);
    CHECK(flat(u).dot(hv) == Approx(fd).epsilon(1e-2).margin(2e-3));
  }
}

TEST_CASE("cnn: weights round-trip through the cache file; corrupt files are refused", "[fashion]") {
  const toy t = make_toy(31);
  const auto dir = std::filesystem::temp_directory_path() / ("mixprec_cnn_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "w.bin").string();
  fashion::save(t.p, path);
  const parameters back = fashion::load(path);
  for (std::size_t l = 0; l < fashion::n_layers; ++l) {
    CHECK(back.w[l] == t.p.w[l]);
    CHECK(back.b[l] == t.p.b[l]);
  }
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 3);
  CHECK_THROWS_AS(fashion::load(path), mixprec::error);
  std::ofstream(path, std::ios::binary) << "MXCNN002 and more";
  CHECK_THROWS_AS(fashion::load(path), mixprec::error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("cnn: training on 2,000 Fashion-MNIST images for 3 epochs learns; results do not depend on the thread count", "[fashion]") {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  REQUIRE_NOTHROW(fashion::load_dataset(dir, 10, 10, 10));  // fails with the package to install when missing
  const fashion::dataset d = fashion::load_dataset(dir, 2000, 500, 1000);
  const fashion::architecture small{.c1 = 8, .c2 = 8, .c3 = 8, .f1 = 32, .f2 = 32};
  parameters p = fashion::init_parameters(small, 3);
  const double before = fashion::accuracy(p, d.test_x, d.test_y);
  fashion::train_options o;
  o.epochs = 3;
  o.batch = 50;
  o.threads = 1;
  parameters p1 = p;
  fashion::train(p1, d.train_x, d.train_y, o, [](int, index_t, index_t, double) {});
  o.threads = 2;
  fashion::train(p, d.train_x, d.train_y, o, [](int, index_t, index_t, double) {});
  for (std::size_t l = 0; l < fashion::n_layers; ++l) CHECK(p.w[l] == p1.w[l]);
  const double after = fashion::accuracy(p, d.test_x, d.test_y);
  INFO("accuracy before " << before << ", after " << after);
  CHECK(after > 0.65);
  CHECK(after > before + 0.3);
}
