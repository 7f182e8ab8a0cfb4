// mixprec's products on llama.cpp's block types against ggml's own: the activation blocks equal
// ggml's quantize_row_q8_{0,1,K}_ref byte for byte (libggml-base.so), and each row's product agrees
// with the vec_dot of ggml's CPU backend (the libggml-cpu-*.so variant llama.cpp's loader picks, by
// ggml_backend_score) on those same activations, to FP32 rounding: ggml sums blocks in another order.
// Libraries: the npm package @node-llama-cpp/linux-x64@3.22.1 (ggml 0.25.1), fetched and checked by
// tests/interop/run.sh, which sets MIXPREC_GGML_BASE.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <dlfcn.h>

#include "mixprec/formats/ggml.hpp"
#include "mixprec/kernels/gemv.hpp"
#include "mixprec/kernels/ref/ggml_dot_ref.hpp"
#include "mixprec/quantize/quantize.hpp"

namespace {

using mixprec::ggml_type;
using mixprec::index_t;

// ggml-cpu.h (ggml 0.25.1): struct ggml_type_traits_cpu { from_float, vec_dot, vec_dot_type, nrows }.
using vec_dot_fn = void (*)(int, float*, std::size_t, const void*, std::size_t, const void*, std::size_t, int);
struct type_traits_cpu_abi {
  void* from_float;
  vec_dot_fn vec_dot;
  int vec_dot_type;
  std::int64_t nrows;
};
using quantize_ref_fn = void (*)(const float*, void*, std::int64_t);

struct ggml_libraries {
  quantize_ref_fn q8_0 = nullptr, q8_1 = nullptr, q8_k = nullptr;
  const type_traits_cpu_abi* (*traits_cpu)(int) = nullptr;
  std::string variant;
};

const ggml_libraries& ggml() {
  static const ggml_libraries libs = [] {
    const char* base = std::getenv("MIXPREC_GGML_BASE");
    if (!base) FAIL("MIXPREC_GGML_BASE is not set: run this binary through tests/interop/run.sh");
    void* b = dlopen(base, RTLD_NOW | RTLD_GLOBAL);
    if (!b) FAIL("cannot load " << base << ": " << dlerror());
    ggml_libraries l;
    l.q8_0 = reinterpret_cast<quantize_ref_fn>(dlsym(b, "quantize_row_q8_0_ref"));
    l.q8_1 = reinterpret_cast<quantize_ref_fn>(dlsym(b, "quantize_row_q8_1_ref"));
    l.q8_k = reinterpret_cast<quantize_ref_fn>(dlsym(b, "quantize_row_q8_K_ref"));
    int best = 0;
    for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(base).parent_path())) {
      const std::string name = e.path().filename().string();
      if (name.rfind("libggml-cpu-", 0) != 0) continue;
      void* h = dlopen(e.path().c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!h) continue;
      auto score = reinterpret_cast<int (*)()>(dlsym(h, "ggml_backend_score"));
      const int s = score ? score() : 0;
      if (s > best) {
        best = s;
        l.variant = name;
        l.traits_cpu = reinterpret_cast<const type_traits_cpu_abi* (*)(int)>(dlsym(h, "ggml_get_type_traits_cpu"));
        if (auto init = reinterpret_cast<void (*)()>(dlsym(h, "ggml_cpu_init"))) init();
      }
    }
    if (!l.q8_0 || !l.q8_1 || !l.q8_k || !l.traits_cpu) FAIL("llama.cpp's ggml libraries lack the quantize_row_q8_*_ref or CPU traits");
    return l;
  }();
  return libs;
}

mixprec::row_matrix awkward(index_t rows, index_t cols, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  mixprec::row_matrix x(rows, cols);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = d(gen);
  x(0, 3) = 300.0f;                              // an outlier
  x.row(1).head(256).setZero();                  // zero blocks of 32 and of 256
  x(1, 300) = 1e-30f;                            // a tiny value beside ordinary ones
  x.row(rows - 1).setConstant(-0.75f);           // a constant row (ties on the grid)
  return x;
}

}  // namespace

TEST_CASE("ggml products: activation blocks equal ggml's quantize_row_q8_*_ref", "[interop][ggml_dot]") {
  const auto& g = ggml();
  const index_t cols = 1024;
  const mixprec::row_matrix x = awkward(4, cols, 5);
  using mixprec::ggml::dot_type;
  for (const auto& [f, fn] : {std::pair{dot_type::q8_0, g.q8_0}, std::pair{dot_type::q8_1, g.q8_1}, std::pair{dot_type::q8_k, g.q8_k}}) {
    for (index_t r = 0; r < x.rows(); ++r) {
      const std::size_t bytes = mixprec::ggml::dot_row_bytes(f, static_cast<std::size_t>(cols));
      // ggml's q8_K_ref leaves an all-zero block's bsums unwritten, mixprec writes zeros: theirs starts zeroed.
      std::vector<std::byte> ours(bytes), theirs(bytes);
      mixprec::ggml::ref::quantize_activations(f, &x(r, 0), static_cast<std::size_t>(cols), ours.data());
      fn(&x(r, 0), theirs.data(), cols);
      INFO("format " << static_cast<int>(f) << " row " << r);
      CHECK(std::memcmp(ours.data(), theirs.data(), bytes) == 0);
    }
  }
}

TEST_CASE("ggml products: each row agrees with ggml's vec_dot to FP32 rounding", "[interop][ggml_dot]") {
  const auto& g = ggml();
  INFO("ggml CPU variant " << g.variant);
  const index_t cols = 2048;
  std::mt19937 gen(7);
  std::normal_distribution<float> d(0.0f, 0.02f);
  mixprec::row_matrix w(16, cols);
  for (index_t i = 0; i < w.size(); ++i) w.data()[i] = d(gen);
  const mixprec::row_matrix x = awkward(3, cols, 8);
  for (ggml_type t : {ggml_type::q8_0, ggml_type::q4_0, ggml_type::q4_1, ggml_type::q5_0, ggml_type::q5_1, ggml_type::iq4_nl,
                      ggml_type::q2_k, ggml_type::q3_k, ggml_type::q4_k, ggml_type::q5_k, ggml_type::q6_k, ggml_type::iq4_xs}) {
    INFO(mixprec::to_string(t));
    const auto q = mixprec::quantize(w, mixprec::ggml_spec(t), "w");
    const mixprec::row_matrix wd = mixprec::dequantize(q);
    const type_traits_cpu_abi* tr = g.traits_cpu(static_cast<int>(t));
    REQUIRE(tr != nullptr);
    REQUIRE(tr->vec_dot != nullptr);
    mixprec::row_matrix y(x.rows(), q.rows());
    mixprec::gemm(q, x, y);
    const auto f = mixprec::ggml::vec_dot_type(t);
    for (index_t b = 0; b < x.rows(); ++b) {
      std::vector<std::byte> act(mixprec::ggml::dot_row_bytes(f, static_cast<std::size_t>(cols)));
      mixprec::ggml::ref::quantize_activations(f, &x(b, 0), static_cast<std::size_t>(cols), act.data());
      for (index_t r = 0; r < q.rows(); ++r) {
        float theirs = 0.0f;
        tr->vec_dot(static_cast<int>(cols), &theirs, 0, q.row_codes(r), 0, act.data(), 0, 1);
        double magnitude = 0.0;
        for (index_t j = 0; j < cols; ++j) magnitude += std::fabs(static_cast<double>(wd(r, j)) * x(b, j));
        INFO("token " << b << " row " << r << " mixprec " << y(b, r) << " ggml " << theirs);
        CHECK(std::fabs(static_cast<double>(y(b, r)) - theirs) <= 2e-5 * magnitude + 1e-30);
      }
    }
  }
}
