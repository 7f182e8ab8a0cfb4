// mixprec's ggml block formats against llama.cpp's own quantizer, byte for byte: every ggml type both
// sides have, with and without an importance matrix, on awkward data (zero blocks, outliers,
// denormals, constant rows, huge and tiny magnitudes). The reference is `ggml_quantize_chunk` from the
// prebuilt libggml-base.so of the npm package @node-llama-cpp/linux-x64@3.22.1 (ggml 0.25.1), loaded
// with dlopen from $MIXPREC_GGML_BASE; tests/interop/run.sh fetches it, checks it and sets that.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <dlfcn.h>

#include "mixprec/formats/ggml.hpp"

namespace {

using mixprec::ggml_type;
using mixprec::index_t;

// ggml.h: size_t ggml_quantize_chunk(enum ggml_type type, const float * src, void * dst, int64_t start,
//                                    int64_t nrows, int64_t n_per_row, const float * imatrix);
using quantize_chunk_fn = std::size_t (*)(int, const float*, void*, std::int64_t, std::int64_t, std::int64_t, const float*);
using quantize_init_fn = void (*)(int);
// ggml.h: struct ggml_type_traits { const char * type_name; int64_t blck_size; int64_t blck_size_interleave;
//                                   size_t type_size; bool is_quantized; ggml_to_float_t to_float; ... };
using to_float_fn = void (*)(const void*, float*, std::int64_t);
struct ggml_type_traits_abi {
  const char* type_name;
  std::int64_t blck_size;
  std::int64_t blck_size_interleave;
  std::size_t type_size;
  bool is_quantized;
  to_float_fn to_float;
  void* from_float_ref;
};
using get_type_traits_fn = const ggml_type_traits_abi* (*)(int);

struct ggml_library {
  quantize_chunk_fn quantize_chunk = nullptr;
  quantize_init_fn quantize_init = nullptr;
  get_type_traits_fn get_type_traits = nullptr;
};

const ggml_library& ggml() {
  static const ggml_library lib = [] {
    const char* path = std::getenv("MIXPREC_GGML_BASE");
    if (!path) FAIL("MIXPREC_GGML_BASE is not set: run this binary through tests/interop/run.sh");
    void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) FAIL("cannot load " << path << ": " << dlerror());
    ggml_library l;
    l.quantize_chunk = reinterpret_cast<quantize_chunk_fn>(dlsym(h, "ggml_quantize_chunk"));
    l.quantize_init = reinterpret_cast<quantize_init_fn>(dlsym(h, "ggml_quantize_init"));
    l.get_type_traits = reinterpret_cast<get_type_traits_fn>(dlsym(h, "ggml_get_type_traits"));
    if (!l.quantize_chunk || !l.quantize_init || !l.get_type_traits)
      FAIL(path << " lacks ggml_quantize_chunk / ggml_quantize_init / ggml_get_type_traits");
    return l;
  }();
  return lib;
}

std::vector<std::byte> reference(ggml_type t, const mixprec::row_matrix& w, const std::vector<float>* importance) {
  const auto& lib = ggml();
  lib.quantize_init(static_cast<int>(t));
  std::vector<std::byte> out(static_cast<std::size_t>(w.rows()) * mixprec::ggml::row_bytes(t, w.cols()));
  const std::size_t n = lib.quantize_chunk(static_cast<int>(t), w.data(), out.data(), 0, w.rows(), w.cols(),
                                           importance ? importance->data() : nullptr);
  REQUIRE(n == out.size());
  return out;
}

// ggml's own decoding of n values of type t.
std::vector<float> reference_decode(ggml_type t, const std::vector<std::byte>& bytes, std::size_t n) {
  const auto* tr = ggml().get_type_traits(static_cast<int>(t));
  REQUIRE(tr != nullptr);
  REQUIRE(tr->type_size == static_cast<std::size_t>(mixprec::ggml::type_size(t)));
  REQUIRE(tr->blck_size == mixprec::ggml::block_size(t));
  std::vector<float> y(n);
  if (t == ggml_type::f32) {
    std::memcpy(y.data(), bytes.data(), n * sizeof(float));  // ggml has no to_float for F32
  } else {
    REQUIRE(tr->to_float != nullptr);
    tr->to_float(bytes.data(), y.data(), static_cast<std::int64_t>(n));
  }
  return y;
}

// Named matrices of 512-wide rows (two 256-blocks, sixteen 32-blocks), each a kind of awkward data.
std::vector<std::pair<std::string, mixprec::row_matrix>> awkward_matrices() {
  constexpr index_t cols = 512;
  std::mt19937_64 gen(20261130);
  std::normal_distribution<float> n(0.0f, 0.02f);
  auto gaussian = [&](index_t rows) {
    mixprec::row_matrix w(rows, cols);
    for (index_t i = 0; i < w.size(); ++i) w.data()[i] = n(gen);
    return w;
  };
  std::vector<std::pair<std::string, mixprec::row_matrix>> out;
  out.emplace_back("gaussian", gaussian(32));
  auto zeros = gaussian(8);  // whole zero blocks of 32 and of 256, and a zero row
  zeros.block(0, 0, 8, 32).setZero();
  zeros.block(1, 256, 1, 256).setZero();
  zeros.row(2).setZero();
  out.emplace_back("zero blocks", zeros);
  auto outliers = gaussian(8);  // one large value per 32-block, either sign
  for (index_t r = 0; r < 8; ++r)
    for (index_t b = 0; b < cols / 32; ++b) outliers(r, b * 32 + (r * 7 + b) % 32) = ((r + b) % 2 ? 1.0f : -1.0f) * (0.5f + 0.1f * b);
  out.emplace_back("outliers", outliers);
  auto denormals = gaussian(8);  // subnormal floats, alone and mixed with normal values
  for (index_t i = 0; i < denormals.size(); ++i) denormals.data()[i] *= (i / 64) % 2 ? 1e-37f : 1e-38f;
  denormals.row(7) = mixprec::row_matrix::Constant(1, cols, 1e-41f);
  out.emplace_back("denormals", denormals);
  mixprec::row_matrix constant(4, cols);  // constant rows: positive, negative, tiny, and one -0/+0 mix
  constant.row(0).setConstant(0.03f);
  constant.row(1).setConstant(-1.5f);
  constant.row(2).setConstant(3e-6f);
  for (index_t c = 0; c < cols; ++c) constant(3, c) = c % 2 ? 0.0f : -0.0f;
  out.emplace_back("constant rows", constant);
  auto large = gaussian(4);  // magnitudes near what FP16 scales still hold
  large *= 1e5f;
  out.emplace_back("large", large);
  auto tiny = gaussian(4);
  tiny *= 1e-4f;
  out.emplace_back("tiny", tiny);
  return out;
}

std::vector<float> random_importance(index_t cols, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::lognormal_distribution<float> d(0.0f, 1.5f);
  std::vector<float> v(static_cast<std::size_t>(cols));
  for (auto& x : v) x = d(gen);
  v[3] = 0.0f;  // a column no calibration token touched
  return v;
}

// Number of blocks of the rows that differ (0 when the bytes are equal).
std::size_t differing_blocks(ggml_type t, const std::vector<std::byte>& a, const std::vector<std::byte>& b) {
  const auto ts = static_cast<std::size_t>(mixprec::ggml::type_size(t));
  std::size_t n = 0;
  for (std::size_t off = 0; off < a.size(); off += ts) n += std::memcmp(a.data() + off, b.data() + off, ts) != 0 ? 1 : 0;
  return n;
}

}  // namespace

TEST_CASE("interop: mixprec's ggml bytes equal ggml_quantize_chunk's, with and without importance, and decode as ggml decodes",
          "[interop][ggml]") {
  const ggml_type types[] = {ggml_type::f32, ggml_type::f16, ggml_type::bf16, ggml_type::q4_0, ggml_type::q4_1, ggml_type::q5_0, ggml_type::q5_1,
                             ggml_type::q8_0, ggml_type::q2_k, ggml_type::q3_k, ggml_type::q4_k, ggml_type::q5_k, ggml_type::q6_k, ggml_type::iq4_nl, ggml_type::iq4_xs};
  for (const auto& [name, w] : awkward_matrices()) {
    const std::vector<float> imp = random_importance(w.cols(), 7);
    for (ggml_type t : types) {
      for (bool weighted : {false, true}) {
        INFO(name << ", " << mixprec::to_string(t) << (weighted ? ", with importance" : ", no importance"));
        const auto theirs = reference(t, w, weighted ? &imp : nullptr);
        std::optional<std::span<const float>> qw;
        if (weighted) qw = std::span<const float>(imp);
        const auto ours = mixprec::ggml::quantize(t, w, qw, name);
        REQUIRE(ours.size() == theirs.size());
        CHECK(differing_blocks(t, ours, theirs) == 0);
        // Decoding: mixprec's dequantize of ggml's bytes equals ggml's to_float, bit for bit.
        const mixprec::row_matrix back = mixprec::ggml::dequantize(t, theirs, w.rows(), w.cols());
        const auto want = reference_decode(t, theirs, static_cast<std::size_t>(w.size()));
        CHECK(std::memcmp(back.data(), want.data(), want.size() * sizeof(float)) == 0);
      }
    }
  }
}

TEST_CASE("interop: SQNR of every type on the seeded N(0, 0.02^2) 256x4096 matrix, mixprec's and ggml's", "[interop][table]") {
  // Printed as a table (ctest -V, or the binary through run.sh with -s); checks that both decode alike.
  std::mt19937_64 gen(42);
  std::normal_distribution<float> n(0.0f, 0.02f);
  mixprec::row_matrix w(256, 4096);
  for (index_t i = 0; i < w.size(); ++i) w.data()[i] = n(gen);
  const double signal = w.cast<double>().squaredNorm();
  std::printf("| type | bits/weight | SQNR mixprec (dB) | SQNR ggml (dB) | bytes equal |\n|---|---:|---:|---:|---|\n");
  for (ggml_type t : mixprec::all_ggml_types) {
    const auto theirs = reference(t, w, nullptr);
    const auto ours = mixprec::ggml::quantize(t, w);
    const mixprec::row_matrix back = mixprec::ggml::dequantize(t, ours, w.rows(), w.cols());
    const auto want = reference_decode(t, theirs, static_cast<std::size_t>(w.size()));
    double e_ours = 0, e_theirs = 0;
    for (index_t i = 0; i < w.size(); ++i) {
      e_ours += std::pow(double(back.data()[i]) - double(w.data()[i]), 2);
      e_theirs += std::pow(double(want[std::size_t(i)]) - double(w.data()[i]), 2);
    }
    auto db = [&](double e) { return e > 0 ? 10 * std::log10(signal / e) : std::numeric_limits<double>::infinity(); };
    std::printf("| %s | %.4g | %.2f | %.2f | %s |\n", std::string(mixprec::to_string(t)).c_str(), mixprec::ggml::bits_per_weight(t),
                db(e_ours), db(e_theirs), ours == theirs ? "yes" : "NO");
    CHECK(ours == theirs);
    CHECK(std::memcmp(back.data(), want.data(), want.size() * sizeof(float)) == 0);
  }
}
