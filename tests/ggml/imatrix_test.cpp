// llama.cpp legacy imatrix files: layout, round trip, corrupt input, and use as a layer statistic.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "mixprec/formats/ggml.hpp"
#include "mixprec/io/imatrix.hpp"
#include "mixprec/sensitivity/weight_sensitivity.hpp"

namespace im = mixprec::imatrix;
using mixprec::index_t;

namespace {

// The legacy layout, written out field by field independently of the library.
struct writer {
  std::vector<std::uint8_t> b;
  writer& i32(std::int32_t v) {
    for (int s = 0; s < 32; s += 8) b.push_back(static_cast<std::uint8_t>(static_cast<std::uint32_t>(v) >> s));
    return *this;
  }
  writer& str(const std::string& s) {
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  writer& f32(float v) {
    std::uint32_t u;
    std::memcpy(&u, &v, 4);
    return i32(static_cast<std::int32_t>(u));
  }
};

mixprec::errc code_of(const std::vector<std::uint8_t>& b) {
  try {
    (void)im::parse(b, "t");
  } catch (const mixprec::error& e) {
    return e.code();
  }
  return mixprec::errc::unsupported;  // "parsed"
}

}  // namespace

TEST_CASE("imatrix: the legacy layout by hand", "[imatrix]") {
  writer w;
  w.i32(2);
  w.i32(19).str("blk.0.attn_q.weight").i32(2).i32(3).f32(2.0f).f32(4.0f).f32(6.0f);
  w.i32(13).str("output.weight").i32(0).i32(1).f32(0.5f);
  w.i32(10).i32(8).str("wiki.txt");
  const im::file f = im::parse(w.b);
  REQUIRE(f.entries.size() == 2);
  const auto& q = f.entries.at("blk.0.attn_q.weight");
  CHECK(q.ncall == 2);
  CHECK(q.values.size() == 3);
  CHECK(q.values[2] == 6.0f);
  // llama-quantize divides by ncall: the per-token mean of x^2.
  CHECK(f.importance("blk.0.attn_q.weight") == Eigen::Vector3f(1.0f, 2.0f, 3.0f));
  CHECK(f.importance("output.weight")[0] == 0.5f);  // ncall 0: values as they are
  CHECK(f.last_chunk == 10);
  CHECK(f.dataset == "wiki.txt");
  CHECK(code_of(w.b) == mixprec::errc::unsupported);
  CHECK_THROWS_WITH(f.importance("blk.1.attn_q.weight"), Catch::Contains("blk.1.attn_q.weight"));

  // serialize writes entries in name order, exactly these bytes.
  CHECK(im::serialize(f) == w.b);
}

TEST_CASE("imatrix: save/load round trip, with and without the trailer", "[imatrix]") {
  im::file f;
  f.entries["b"] = im::entry{5, Eigen::VectorXf::LinSpaced(7, 0.0f, 3.0f)};
  f.entries["a"] = im::entry{1, Eigen::VectorXf::Constant(64, 0.25f)};
  const std::string path = (std::filesystem::temp_directory_path() / "mixprec_imatrix_test.dat").string();
  for (int with_trailer = 0; with_trailer < 2; ++with_trailer) {
    f.last_chunk = with_trailer ? 123 : -1;
    f.dataset = with_trailer ? "calibration.txt" : "";
    im::save(f, path);
    const im::file g = im::load(path);
    CHECK(g.last_chunk == f.last_chunk);
    CHECK(g.dataset == f.dataset);
    REQUIRE(g.entries.size() == 2);
    CHECK(g.entries.at("b").values == f.entries.at("b").values);
    CHECK(g.entries.at("b").ncall == 5);
    const auto m = im::load_importance(path);
    CHECK(m.at("b").isApprox(f.entries.at("b").values / 5.0f));
    CHECK(m.at("a") == f.entries.at("a").values);
  }
  std::remove(path.c_str());
  CHECK_THROWS_AS(im::load(path), mixprec::error);
  im::file bad;
  CHECK_THROWS_AS(im::serialize(bad), mixprec::error);
  bad.entries["x"] = im::entry{1, Eigen::VectorXf::Constant(2, -1.0f)};
  CHECK_THROWS_AS(im::serialize(bad), mixprec::error);
}

TEST_CASE("imatrix: truncated, absurd and corrupt files are typed errors", "[imatrix]") {
  writer w;
  w.i32(2);
  w.i32(3).str("abc").i32(4).i32(4).f32(1).f32(2).f32(3).f32(4);
  w.i32(2).str("de").i32(4).i32(2).f32(1).f32(2);
  const std::size_t entries_end = w.b.size();
  w.i32(7).i32(3).str("xyz");
  // Every prefix: a parse error, except the one that ends right after the entries (no trailer).
  for (std::size_t n = 0; n < w.b.size(); ++n) {
    const std::vector<std::uint8_t> p(w.b.begin(), w.b.begin() + std::ptrdiff_t(n));
    INFO("prefix " << n);
    CHECK(code_of(p) == (n == entries_end ? mixprec::errc::unsupported : mixprec::errc::parse_error));
  }
  auto patched = [&](std::size_t at, std::int32_t v) {
    auto b = w.b;
    std::memcpy(b.data() + at, &v, 4);
    return b;
  };
  CHECK(code_of(patched(0, 0)) == mixprec::errc::parse_error);            // no entries
  CHECK(code_of(patched(0, -3)) == mixprec::errc::parse_error);
  CHECK(code_of(patched(0, 1 << 30)) == mixprec::errc::parse_error);      // absurd count
  CHECK(code_of(patched(4, 0)) == mixprec::errc::parse_error);            // empty name
  CHECK(code_of(patched(4, 0x7FFFFFFF)) == mixprec::errc::parse_error);   // absurd name length
  CHECK(code_of(patched(11, -1)) == mixprec::errc::parse_error);          // negative ncall
  CHECK(code_of(patched(15, 1 << 28)) == mixprec::errc::parse_error);     // absurd nval
  CHECK(code_of(patched(15, -4)) == mixprec::errc::parse_error);
  const float nan = std::nanf("");
  std::int32_t nan_bits;
  std::memcpy(&nan_bits, &nan, 4);
  CHECK(code_of(patched(19, nan_bits)) == mixprec::errc::parse_error);    // NaN value
  const float neg = -2.0f;
  std::int32_t neg_bits;
  std::memcpy(&neg_bits, &neg, 4);
  CHECK(code_of(patched(23, neg_bits)) == mixprec::errc::parse_error);    // negative sum of squares
  CHECK_THROWS_WITH(im::parse(patched(23, neg_bits), "f.dat"), Catch::Contains("f.dat") && Catch::Contains("abc"));
  writer d;
  d.i32(2).i32(1).str("a").i32(1).i32(1).f32(1).i32(1).str("a").i32(1).i32(1).f32(2);
  CHECK(code_of(d.b) == mixprec::errc::parse_error);  // repeated name
  auto trailing = w.b;
  trailing.push_back(0);
  CHECK(code_of(trailing) == mixprec::errc::parse_error);
  CHECK(code_of(patched(entries_end, -1)) == mixprec::errc::parse_error);  // negative chunk count
  CHECK(code_of(patched(entries_end + 4, 2)) == mixprec::errc::parse_error);  // dataset length mismatch
}

TEST_CASE("imatrix as a layer statistic and as quantization weights", "[imatrix]") {
  const index_t rows = 32, cols = 256, tokens = 512;
  std::mt19937 rng(4);
  std::normal_distribution<float> g(0.0f, 1.0f);
  mixprec::row_matrix w(rows, cols);
  for (index_t i = 0; i < w.size(); ++i) w.data()[i] = 0.02f * g(rng);
  // Activations with a few loud channels, as in real LLM inputs.
  Eigen::MatrixXf x(cols, tokens);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = g(rng);
  for (index_t c : {3, 40, 41, 200}) x.row(c) *= 20.0f;

  // What llama-imatrix would store after 4 chunks, and what llama-quantize reads back.
  im::file f;
  f.entries["blk.0.ffn_up.weight"] = im::entry_from_activations(x, 4);
  CHECK(f.entries.at("blk.0.ffn_up.weight").values[3] ==
        Approx(4.0 * x.row(3).cast<double>().squaredNorm() / tokens).epsilon(1e-5));
  const Eigen::VectorXf imp = f.importance("blk.0.ffn_up.weight");
  CHECK(imp[40] == Approx(x.row(40).cast<double>().squaredNorm() / tokens).epsilon(1e-5));

  mixprec::layer l = mixprec::make_layer("blk.0.ffn_up.weight", w);
  im::attach_importance(l, f);
  CHECK(l.statistic() == mixprec::layer_statistic::importance);
  mixprec::validate(l);

  // The proxy with the imatrix is the importance-weighted squared error...
  const std::vector<float> impv(imp.data(), imp.data() + imp.size());
  const auto plain_bytes = mixprec::ggml::quantize(mixprec::ggml_type::q4_0, w);
  const auto wtd_bytes = mixprec::ggml::quantize(mixprec::ggml_type::q4_0, w, std::span<const float>(impv));
  const mixprec::row_matrix plain = mixprec::ggml::dequantize(mixprec::ggml_type::q4_0, plain_bytes, rows, cols);
  const mixprec::row_matrix wtd = mixprec::ggml::dequantize(mixprec::ggml_type::q4_0, wtd_bytes, rows, cols);
  double manual = 0;
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < cols; ++c) manual += double(plain(r, c) - w(r, c)) * (plain(r, c) - w(r, c)) * imp[c];
  const double proxy_plain = mixprec::output_error_proxy(l, plain);
  CHECK(proxy_plain == Approx(manual).epsilon(1e-9));
  // ... which the imatrix-weighted Q4_0 lowers, and which ranks by the loud channels (unlike plain MSE).
  const double proxy_wtd = mixprec::output_error_proxy(l, wtd);
  CHECK(proxy_wtd < 0.9 * proxy_plain);
  // The exact output error ||(Q(W) - W) X||^2 / tokens agrees in direction.
  const Eigen::MatrixXd xd = x.cast<double>();
  const double out_plain = ((plain - w).cast<double>() * xd).squaredNorm() / tokens;
  const double out_wtd = ((wtd - w).cast<double>() * xd).squaredNorm() / tokens;
  CHECK(out_wtd < out_plain);

  // Wrong width -> shape_mismatch; a missing entry -> invalid_argument.
  im::file small;
  small.entries["blk.0.ffn_up.weight"] = im::entry{1, Eigen::VectorXf::Ones(128)};
  mixprec::layer l2 = mixprec::make_layer("blk.0.ffn_up.weight", w);
  CHECK_THROWS_AS(im::attach_importance(l2, small), mixprec::error);
  try {
    im::attach_importance(l2, small);
  } catch (const mixprec::error& e) {
    CHECK(e.code() == mixprec::errc::shape_mismatch);
  }
  try {
    im::attach_importance(l2, small, "blk.9.ffn_up.weight");
  } catch (const mixprec::error& e) {
    CHECK(e.code() == mixprec::errc::invalid_argument);
  }
}
