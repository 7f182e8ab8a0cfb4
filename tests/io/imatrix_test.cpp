// llama.cpp imatrix files, legacy .dat and GGUF: layout, round trip, merged experts, corrupt input, and use
// as a layer statistic.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <vector>

#include "mixprec/formats/ggml.hpp"
#include "mixprec/io/gguf.hpp"
#include "mixprec/io/imatrix.hpp"
#include "mixprec/sensitivity/weight_sensitivity.hpp"
#include "support/errors.hpp"

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

// The code parse refuses b with, or nullopt when it parses.
std::optional<mixprec::errc> code_of(const std::vector<std::uint8_t>& b) {
  return mixprec::test::error_code_of([&] { (void)im::parse(b, "t"); });
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
  CHECK(code_of(w.b) == std::nullopt);  // parses
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
    if (n == entries_end)
      CHECK(code_of(p) == std::nullopt);
    else
      CHECK(code_of(p) == mixprec::errc::parse_error);
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
  CHECK(mixprec::test::error_code_of([&] { im::attach_importance(l2, small); }) == mixprec::errc::shape_mismatch);
  CHECK(mixprec::test::error_code_of([&] { im::attach_importance(l2, small, "blk.9.ffn_up.weight"); }) ==
        mixprec::errc::invalid_argument);
}

// ---- GGUF imatrix files ----

namespace {

namespace gg = mixprec::gguf;

// One tensor of a GGUF file made with the generic GGUF writer (not the imatrix serializer): F32 values,
// or for another type `count` zero bytes' worth of elements (their content does not matter).
struct tspec {
  std::string name;
  std::vector<std::uint64_t> dims;
  std::vector<float> values;
  std::uint32_t type = 0;
};

std::vector<std::uint8_t> gguf_bytes(const gg::metadata& kvs, const std::vector<tspec>& ts) {
  std::vector<std::vector<std::byte>> data;
  data.reserve(ts.size());
  std::vector<gg::tensor_source> src;
  for (const tspec& t : ts) {
    if (t.type == 0) {
      data.emplace_back(t.values.size() * sizeof(float));
      std::memcpy(data.back().data(), t.values.data(), data.back().size());
    } else {
      std::uint64_t n = 1;
      for (auto d : t.dims) n *= d;
      data.emplace_back(n * gg::type_traits_of(t.type)->type_size / gg::type_traits_of(t.type)->block_size);
    }
    src.push_back({t.name, t.type, t.dims, data.back(), {}});
  }
  std::ostringstream s;
  gg::write(s, kvs, src);
  const std::string b = s.str();
  return {b.begin(), b.end()};
}

gg::metadata imatrix_kvs() {
  return {{"general.type", gg::value("imatrix")},
          {"imatrix.datasets", gg::value(gg::array{gg::value_type::string, {gg::value("calib.txt"), gg::value("b.txt")}})},
          {"imatrix.chunk_count", gg::value(std::uint32_t{10})},
          {"imatrix.chunk_size", gg::value(std::uint32_t{512})}};
}

// A dense matrix (ne0 5) and a 4-expert tensor (ne0 3) whose expert 1 saw no token.
std::vector<tspec> imatrix_tensors() {
  return {{"blk.0.attn_q.weight.in_sum2", {5, 1}, {2.0f, 4.0f, 0.0f, 30.0f, 7.0f}},
          {"blk.0.attn_q.weight.counts", {1, 1}, {20.0f}},
          {"blk.0.ffn_up_exps.weight.in_sum2", {3, 4}, {1, 2, 3, 9, 9, 9, 14, 0.5f, 7, 1e-3f, 1e3f, 2}},
          {"blk.0.ffn_up_exps.weight.counts", {1, 4}, {4.0f, 0.0f, 7.0f, 1.0f}}};
}

std::optional<mixprec::errc> gguf_code(const gg::metadata& kvs, const std::vector<tspec>& ts) { return code_of(gguf_bytes(kvs, ts)); }

// The error parse refuses b (named `name`) with, or nullopt when it parses.
std::optional<mixprec::error> parse_error_of(const std::vector<std::uint8_t>& b, const std::string& name) {
  return mixprec::test::error_of([&] { (void)im::parse(b, name); });
}

}  // namespace

TEST_CASE("imatrix GGUF: layout written with the generic GGUF writer", "[imatrix][gguf]") {
  const std::vector<tspec> ts = imatrix_tensors();
  const auto b = gguf_bytes(imatrix_kvs(), ts);
  CHECK(im::detect(b) == im::format::gguf);
  const im::file f = im::parse(b, "im.gguf");
  CHECK(f.last_chunk == 10);
  CHECK(f.chunk_size == 512);
  CHECK(f.dataset == "calib.txt");
  REQUIRE(f.entries.size() == 2);
  // Expected importance from the tensors above, one float division per value, 1.0 for a count of 0.
  for (std::size_t w = 0; w < 2; ++w) {
    const tspec& sums = ts[2 * w];
    const tspec& counts = ts[2 * w + 1];
    const std::string name = sums.name.substr(0, sums.name.size() - 8);
    INFO(name);
    const im::entry& e = f.entries.at(name);
    const std::size_t ne0 = sums.dims[0], n_mat = sums.dims[1];
    CHECK(e.n_mat() == n_mat);
    CHECK(e.ne0() == index_t(ne0));
    CHECK(e.counts == counts.values);
    const Eigen::VectorXf imp = f.importance(name);
    REQUIRE(imp.size() == index_t(ne0 * n_mat));
    for (std::size_t m = 0; m < n_mat; ++m) {
      const Eigen::VectorXf one = e.importance(m);
      REQUIRE(one.size() == index_t(ne0));
      for (std::size_t i = 0; i < ne0; ++i) {
        const float want = counts.values[m] == 0.0f ? 1.0f : sums.values[m * ne0 + i] / counts.values[m];
        CHECK(imp[index_t(m * ne0 + i)] == want);
        CHECK(one[index_t(i)] == want);
      }
    }
  }
  // Expert 1 saw no token: weight 1, whatever its sums say.
  CHECK(f.entries.at("blk.0.ffn_up_exps.weight").importance(1) == Eigen::Vector3f::Ones());
  const im::entry& exps = f.entries.at("blk.0.ffn_up_exps.weight");
  CHECK_THROWS_AS(exps.importance(4), mixprec::error);
  CHECK_THROWS_AS(exps.importance(0, 2), mixprec::error);  // a GGUF entry knows its matrix count
  CHECK(exps.importance(3, 4) == exps.importance(3));

  // ggml drops trailing 1s from dims: [ne0] and [1] are a single matrix. general.type may be absent.
  std::vector<tspec> flat = {{"w.in_sum2", {4}, {1, 2, 3, 4}}, {"w.counts", {1}, {2}}};
  const im::file g = im::parse(gguf_bytes({}, flat));
  CHECK(g.last_chunk == -1);
  CHECK(g.chunk_size == -1);
  CHECK(g.dataset.empty());
  CHECK(g.importance("w") == Eigen::Vector4f(0.5f, 1.0f, 1.5f, 2.0f));
}

TEST_CASE("imatrix GGUF: save/load round trip and conversion between the formats", "[imatrix][gguf]") {
  im::file f;
  f.entries["blk.0.ffn_down_exps.weight"].values = Eigen::VectorXf::LinSpaced(12, 0.0f, 11.0f);
  f.entries["blk.0.ffn_down_exps.weight"].counts = {3.0f, 0.0f, 5.0f, 8.0f};
  f.entries["output.weight"].values = Eigen::VectorXf::Constant(7, 0.5f);
  f.entries["output.weight"].counts = {16.0f};
  const std::string path = (std::filesystem::temp_directory_path() / "mixprec_imatrix_test.gguf").string();
  for (int with_meta = 0; with_meta < 2; ++with_meta) {
    INFO("metadata " << with_meta);
    f.last_chunk = with_meta ? 9 : -1;
    f.dataset = with_meta ? "calib.txt" : "";
    f.chunk_size = with_meta ? 256 : -1;
    im::save(f, path, im::format::gguf);
    const im::file g = im::load(path);
    CHECK(g.last_chunk == f.last_chunk);
    CHECK(g.dataset == f.dataset);
    CHECK(g.chunk_size == f.chunk_size);
    REQUIRE(g.entries.size() == 2);
    for (const auto& [name, e] : f.entries) {
      CHECK(g.entries.at(name).values == e.values);
      CHECK(g.entries.at(name).counts == e.counts);
      CHECK(g.importance(name) == f.importance(name));
    }
    CHECK(im::serialize_gguf(g) == im::serialize_gguf(f));
    // What llama.cpp reads: a GGUF file with the KVs and tensor shapes of its layout.
    const gg::file raw = gg::file::open(path);
    CHECK(raw.kvs().get_string("general.type") == "imatrix");
    CHECK(raw.kvs().get_array("imatrix.datasets").items.size() == (with_meta ? 1u : 0u));
    CHECK((raw.kvs().find("imatrix.chunk_count") != nullptr) == (with_meta == 1));
    CHECK(raw.at("blk.0.ffn_down_exps.weight.in_sum2").dims == std::vector<std::uint64_t>{3, 4});
    CHECK(raw.at("blk.0.ffn_down_exps.weight.counts").dims == std::vector<std::uint64_t>{1, 4});
    CHECK(raw.at("output.weight.counts").type == 0u);
  }
  std::remove(path.c_str());

  // GGUF -> legacy: ncall 1 and values = importance(), so the importance is the same.
  const im::file as_legacy = im::parse(im::serialize(f));
  CHECK(im::detect(im::serialize(f)) == im::format::legacy);
  for (const auto& [name, e] : f.entries) {
    CHECK(as_legacy.entries.at(name).ncall == 1);
    CHECK(as_legacy.entries.at(name).counts.empty());
    CHECK(as_legacy.importance(name) == f.importance(name));
  }
  // Legacy -> GGUF: counts {ncall} ({1} for ncall 0), same importance.
  im::file l;
  l.entries["a"] = im::entry{5, Eigen::VectorXf::LinSpaced(9, 0.25f, 9.0f)};
  l.entries["b"] = im::entry{0, Eigen::VectorXf::Constant(3, 2.0f)};
  const im::file as_gguf = im::parse(im::serialize_gguf(l));
  CHECK(as_gguf.entries.at("a").counts == std::vector<float>{5.0f});
  CHECK(as_gguf.entries.at("b").counts == std::vector<float>{1.0f});
  for (const auto& [name, e] : l.entries) CHECK(as_gguf.importance(name) == l.importance(name));

  // What the writer refuses.
  CHECK_THROWS_AS(im::serialize_gguf(im::file{}), mixprec::error);
  im::file bad;
  bad.entries["x"].values = Eigen::VectorXf::Ones(5);
  bad.entries["x"].counts = {1.0f, 2.0f};  // 5 values do not split into 2 matrices
  CHECK_THROWS_AS(im::serialize_gguf(bad), mixprec::error);
  CHECK_THROWS_AS(im::serialize(bad), mixprec::error);
  bad.entries["x"].counts = {std::numeric_limits<float>::quiet_NaN()};
  CHECK_THROWS_AS(im::serialize_gguf(bad), mixprec::error);
  bad.entries["x"].counts = {1.5f};
  CHECK_THROWS_AS(im::serialize_gguf(bad), mixprec::error);
  im::file long_name;
  long_name.entries[std::string(60, 'w')] = im::entry{1, Eigen::VectorXf::Ones(2)};
  CHECK_THROWS_AS(im::serialize_gguf(long_name), mixprec::error);  // "<name>.in_sum2" exceeds 63 bytes
}

TEST_CASE("imatrix: merged MoE experts give the same importance in both formats", "[imatrix][gguf]") {
  const index_t ne0 = 6, n_exp = 4;
  const std::int32_t chunks = 3;
  const int tokens[n_exp] = {5, 9, 1, 13};
  std::mt19937 rng(11);
  std::normal_distribution<float> g(0.0f, 2.0f);
  // Per expert: sum over its tokens of x^2, in double.
  Eigen::MatrixXd sums(ne0, n_exp);
  for (index_t m = 0; m < n_exp; ++m) {
    Eigen::MatrixXf x(ne0, tokens[m]);
    for (index_t i = 0; i < x.size(); ++i) x.data()[i] = g(rng);
    sums.col(m) = x.cast<double>().rowwise().squaredNorm();
  }
  // GGUF: in_sum2 [ne0, n_exp], counts [1, n_exp].
  std::vector<float> in_sum2, counts;
  for (index_t m = 0; m < n_exp; ++m) {
    for (index_t i = 0; i < ne0; ++i) in_sum2.push_back(float(sums(i, m)));
    counts.push_back(float(tokens[m]));
  }
  const std::string name = "blk.3.ffn_gate_exps.weight";
  const auto gb = gguf_bytes(imatrix_kvs(), {{name + ".in_sum2", {std::uint64_t(ne0), std::uint64_t(n_exp)}, in_sum2},
                                             {name + ".counts", {1, std::uint64_t(n_exp)}, counts}});
  // Legacy: nval = ne0 * n_exp, expert-major, per-token means times ncall.
  writer w;
  w.i32(1).i32(std::int32_t(name.size())).str(name).i32(chunks).i32(std::int32_t(ne0 * n_exp));
  for (index_t m = 0; m < n_exp; ++m)
    for (index_t i = 0; i < ne0; ++i) w.f32(float(sums(i, m) / tokens[m] * chunks));
  const im::entry ge = im::parse(gb).entries.at(name);
  const im::entry le = im::parse(w.b).entries.at(name);
  CHECK(ge.n_mat() == std::size_t(n_exp));
  CHECK(le.n_mat() == 1u);  // the legacy file does not record the expert count
  const Eigen::VectorXf gi = ge.importance(), li = le.importance();
  REQUIRE(gi.size() == ne0 * n_exp);
  REQUIRE(li.size() == ne0 * n_exp);
  for (index_t m = 0; m < n_exp; ++m) {
    const Eigen::VectorXf gm = ge.importance(std::size_t(m)), lm = le.importance(std::size_t(m), std::size_t(n_exp));
    for (index_t i = 0; i < ne0; ++i) {
      const double want = sums(i, m) / tokens[m];
      INFO("expert " << m << " column " << i);
      CHECK(gi[m * ne0 + i] == Approx(want).epsilon(1e-6));
      CHECK(li[m * ne0 + i] == Approx(want).epsilon(1e-6));
      CHECK(gm[i] == gi[m * ne0 + i]);
      CHECK(lm[i] == li[m * ne0 + i]);
    }
  }
  CHECK_THROWS_AS(le.importance(0, 5), mixprec::error);  // 24 values are not 5 experts
  CHECK_THROWS_AS(le.importance(4, 4), mixprec::error);

  // load_importance reads both formats from disk alike.
  const auto dir = std::filesystem::temp_directory_path();
  const std::string gp = (dir / "mixprec_moe_imatrix.gguf").string(), lp = (dir / "mixprec_moe_imatrix.dat").string();
  std::ofstream(gp, std::ios::binary).write(reinterpret_cast<const char*>(gb.data()), std::streamsize(gb.size()));
  std::ofstream(lp, std::ios::binary).write(reinterpret_cast<const char*>(w.b.data()), std::streamsize(w.b.size()));
  const auto from_gguf = im::load_importance(gp), from_dat = im::load_importance(lp);
  CHECK(from_gguf.at(name).isApprox(from_dat.at(name), 1e-6f));
  std::remove(gp.c_str());
  std::remove(lp.c_str());
}

TEST_CASE("imatrix GGUF: corrupt files are parse errors naming the file and tensor", "[imatrix][gguf]") {
  using mixprec::errc;
  const gg::metadata kvs = imatrix_kvs();
  const std::vector<tspec> ok = imatrix_tensors();
  REQUIRE(gguf_code(kvs, ok) == std::nullopt);  // parses
  auto with = [&](std::size_t i, auto change) {
    auto t = ok;
    change(t[i]);
    return t;
  };
  auto without = [&](std::size_t i) {
    auto t = ok;
    t.erase(t.begin() + std::ptrdiff_t(i));
    return t;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  struct bad_case {
    const char* what;
    std::vector<tspec> tensors;
    std::string names;  // what the message must name
  };
  const std::vector<bad_case> cases = {
      {"in_sum2 without counts", without(3), "blk.0.ffn_up_exps.weight"},
      {"counts without in_sum2", without(0), "blk.0.attn_q.weight"},
      {"f16 in_sum2", with(2, [](tspec& t) { t.type = 1; }), "blk.0.ffn_up_exps.weight.in_sum2"},
      {"f16 counts", with(1, [](tspec& t) { t.type = 1; }), "blk.0.attn_q.weight.counts"},
      {"counts of another n_mat", with(3, [](tspec& t) { t.dims = {1, 3}; t.values.resize(3); }), "counts"},
      {"counts [2, 2]", with(3, [](tspec& t) { t.dims = {2, 2}; }), "blk.0.ffn_up_exps.weight.counts"},
      {"counts [4]", with(3, [](tspec& t) { t.dims = {4}; }), "blk.0.ffn_up_exps.weight.counts"},
      {"3-D in_sum2", with(2, [](tspec& t) { t.dims = {3, 2, 2}; }), "blk.0.ffn_up_exps.weight.in_sum2"},
      {"negative sum", with(0, [](tspec& t) { t.values[3] = -1.0f; }), "blk.0.attn_q.weight.in_sum2"},
      {"NaN sum", with(2, [&](tspec& t) { t.values[11] = nan; }), "blk.0.ffn_up_exps.weight.in_sum2"},
      {"Inf sum", with(0, [&](tspec& t) { t.values[0] = inf; }), "blk.0.attn_q.weight.in_sum2"},
      {"negative count", with(3, [](tspec& t) { t.values[2] = -7.0f; }), "blk.0.ffn_up_exps.weight.counts"},
      {"NaN count", with(1, [&](tspec& t) { t.values[0] = nan; }), "blk.0.attn_q.weight.counts"},
      {"Inf count", with(3, [&](tspec& t) { t.values[1] = inf; }), "blk.0.ffn_up_exps.weight.counts"},
      {"fractional count", with(1, [](tspec& t) { t.values[0] = 2.5f; }), "blk.0.attn_q.weight.counts"},
      {"other suffix", with(0, [](tspec& t) { t.name = "blk.0.attn_q.weight.in_sum"; }), "blk.0.attn_q.weight.in_sum"},
      {"no weight name", {{".in_sum2", {1, 1}, {1}}, {".counts", {1, 1}, {1}}}, ".in_sum2"},
      {"no tensors", {}, "im.gguf"},
  };
  for (const bad_case& c : cases) {
    INFO(c.what);
    const auto b = gguf_bytes(kvs, c.tensors);
    const auto e = parse_error_of(b, "im.gguf");
    REQUIRE(e);
    CHECK(e->code() == errc::parse_error);
    CHECK_THAT(e->what(), Catch::Contains("im.gguf") && Catch::Contains(c.names));
    CHECK_THAT(e->what(), !Catch::Contains("entry count"));  // not read as a legacy file
  }

  // Metadata of the wrong type or range.
  auto kv_with = [&](const char* key, gg::value v) {
    gg::metadata k = kvs;
    k.set(key, std::move(v));
    return k;
  };
  CHECK(gguf_code(kv_with("general.type", gg::value(std::uint32_t{1})), ok) == errc::parse_error);
  CHECK(gguf_code(kv_with("imatrix.datasets", gg::value("calib.txt")), ok) == errc::parse_error);
  CHECK(gguf_code(kv_with("imatrix.datasets", gg::value(gg::array{gg::value_type::u32, {gg::value(std::uint32_t{1})}})),
                  ok) == errc::parse_error);
  CHECK(gguf_code(kv_with("imatrix.chunk_count", gg::value(std::int32_t{10})), ok) == errc::parse_error);
  CHECK(gguf_code(kv_with("imatrix.chunk_count", gg::value(std::uint32_t{0x80000000u})), ok) == errc::parse_error);
  CHECK(gguf_code(kv_with("imatrix.chunk_size", gg::value(std::uint64_t{512})), ok) == errc::parse_error);

  // A tensor type ggml does not know (gguf.hpp says "unsupported"; for an imatrix it is a bad file).
  auto b = gguf_bytes(kvs, ok);
  const std::string counts_name = "blk.0.attn_q.weight.counts";
  const auto at = std::search(b.begin(), b.end(), counts_name.begin(), counts_name.end());
  REQUIRE(at != b.end());
  const std::size_t type_at = std::size_t(at - b.begin()) + counts_name.size() + 4 + 2 * 8;
  std::uint32_t type;
  std::memcpy(&type, b.data() + type_at, 4);
  REQUIRE(type == 0u);
  type = 99;
  std::memcpy(b.data() + type_at, &type, 4);
  CHECK(code_of(b) == errc::parse_error);

  // Every truncation of a valid file (but of the padding after the last tensor, which is optional).
  const auto whole = gguf_bytes(kvs, ok);
  const gg::file parsed = gg::file::parse(mixprec::mapped_file::borrow(std::as_bytes(std::span(whole))));
  std::size_t data_end = 0;
  for (const gg::tensor_info& t : parsed.tensors())
    data_end = std::max(data_end, std::size_t(parsed.data_offset() + t.offset + t.size));
  REQUIRE(data_end < whole.size());  // the writer pads after the last tensor
  for (std::size_t n = 0; n < whole.size(); ++n) {
    INFO("prefix " << n);
    const auto code = code_of(std::vector<std::uint8_t>(whole.begin(), whole.begin() + std::ptrdiff_t(n)));
    if (n < data_end)
      CHECK(code == errc::parse_error);
    else
      CHECK(code == std::nullopt);  // only padding is missing: it parses
  }
}

namespace {

// b with the first occurrence of `from` overwritten by `to` (same length, so every size field holds).
std::vector<std::uint8_t> overwritten(std::vector<std::uint8_t> b, const std::string& from, const std::string& to) {
  REQUIRE(from.size() == to.size());
  const auto at = std::search(b.begin(), b.end(), from.begin(), from.end());
  REQUIRE(at != b.end());
  std::copy(to.begin(), to.end(), at);
  return b;
}

}  // namespace

TEST_CASE("imatrix: one weight's statistics given twice are refused by name, in both formats", "[imatrix][gguf]") {
  im::file f;
  f.entries["blk.0.attn_k.weight"] = im::entry{2, Eigen::VectorXf::LinSpaced(4, 1.0f, 4.0f)};
  f.entries["blk.0.attn_q.weight"] = im::entry{2, Eigen::VectorXf::Constant(4, 9.0f)};
  f.last_chunk = 2;

  // Legacy: llama.cpp's loader lets the second entry of a name overwrite the first; here it is an error.
  const auto legacy = im::serialize(f);
  REQUIRE(im::parse(legacy).entries.size() == 2);
  const auto twice = overwritten(legacy, "blk.0.attn_q.weight", "blk.0.attn_k.weight");
  const auto e = parse_error_of(twice, "twice.dat");
  REQUIRE(e);
  CHECK(e->code() == mixprec::errc::parse_error);
  CHECK_THAT(e->what(), Catch::Contains("'twice.dat'") && Catch::Contains("'blk.0.attn_k.weight' appears twice"));

  // GGUF: in_sum2 (or counts) twice for one weight. The container refuses a repeated tensor name
  // (as llama.cpp's gguf reader does); the message names the file and the tensor either way.
  const auto gguf = im::serialize_gguf(f);
  REQUIRE(im::parse(gguf).entries.size() == 2);
  for (const char* suffix : {".in_sum2", ".counts"}) {
    INFO(suffix);
    const auto g = overwritten(gguf, std::string("blk.0.attn_q.weight") + suffix, std::string("blk.0.attn_k.weight") + suffix);
    const auto ge = parse_error_of(g, "twice.gguf");
    REQUIRE(ge);
    CHECK(ge->code() == mixprec::errc::parse_error);
    CHECK_THAT(ge->what(), Catch::Contains("'twice.gguf'") && Catch::Contains(std::string("blk.0.attn_k.weight") + suffix));
  }
}

TEST_CASE("imatrix GGUF: a model file is refused as an importance matrix", "[imatrix][gguf]") {
  const std::vector<tspec> weights = {{"token_embd.weight", {4, 2}, std::vector<float>(8, 0.5f)},
                                      {"blk.0.attn_q.weight", {4, 4}, std::vector<float>(16, 0.25f)}};
  const gg::metadata model = {{"general.architecture", gg::value("llama")}, {"general.type", gg::value("model")}};
  const std::string path = (std::filesystem::temp_directory_path() / "mixprec_not_an_imatrix.gguf").string();
  const auto b = gguf_bytes(model, weights);
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  const auto model_file = mixprec::test::error_of([&] { (void)im::load(path); });
  std::remove(path.c_str());
  REQUIRE(model_file);  // a model file is not read as an imatrix
  CHECK(model_file->code() == mixprec::errc::parse_error);
  CHECK_THAT(model_file->what(), Catch::Contains(path) && Catch::Contains("general.type") && Catch::Contains("model"));
  // Without general.type: refused by its tensors, the first one named.
  const auto untyped = parse_error_of(gguf_bytes({{"general.architecture", gg::value("llama")}}, weights), "m.gguf");
  REQUIRE(untyped);
  CHECK(untyped->code() == mixprec::errc::parse_error);
  CHECK_THAT(untyped->what(), Catch::Contains("token_embd.weight") && Catch::Contains(".in_sum2"));
  // Imatrix tensors mixed with a weight.
  auto mixed = imatrix_tensors();
  mixed.push_back(weights[1]);
  const auto mixed_error = parse_error_of(gguf_bytes(imatrix_kvs(), mixed), "m.gguf");
  REQUIRE(mixed_error);
  CHECK_THAT(mixed_error->what(), Catch::Contains("'blk.0.attn_q.weight'"));
}
