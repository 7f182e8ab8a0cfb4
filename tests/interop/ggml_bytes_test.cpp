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

struct ggml_library {
  quantize_chunk_fn quantize_chunk = nullptr;
  quantize_init_fn quantize_init = nullptr;
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
    if (!l.quantize_chunk || !l.quantize_init) FAIL(path << " lacks ggml_quantize_chunk / ggml_quantize_init");
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

TEST_CASE("interop: mixprec's ggml bytes equal ggml_quantize_chunk's, with and without importance", "[interop][ggml]") {
  const ggml_type types[] = {ggml_type::f32, ggml_type::f16, ggml_type::bf16, ggml_type::q4_0, ggml_type::q4_1, ggml_type::q5_0, ggml_type::q5_1,
                             ggml_type::q8_0, ggml_type::q4_k, ggml_type::q5_k, ggml_type::q6_k, ggml_type::iq4_nl, ggml_type::iq4_xs};
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
      }
    }
  }
}
