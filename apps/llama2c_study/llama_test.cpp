// llama2.c loader and the study's FP32 forward pass, on small hand-made checkpoints and on the seeded
// synthetic model of support/tiny_llama.hpp, checked against the plain double-precision forward pass of
// support/naive_llama.hpp.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "llama.hpp"
#include "support/data.hpp"
#include "support/naive_llama.hpp"
#include "support/tiny_llama.hpp"

namespace {

mixprec::llama2c::checkpoint tiny_model(int n_heads, int n_kv_heads, bool shared) {
  mixprec::llama2c::checkpoint ck;
  ck.cfg = {16, 24, 2, n_heads, n_kv_heads, 32, 8, shared};
  std::uint32_t seed = 1;
  auto g = [&](int r, int c) { return mixprec::test::gaussian(r, c, 0.3f, seed++); };
  ck.token_embedding = g(32, 16);
  for (int l = 0; l < 2; ++l) {
    mixprec::llama2c::layer_weights w;
    w.rms_att = Eigen::VectorXf::Ones(16) + g(16, 1).col(0);
    w.rms_ffn = Eigen::VectorXf::Ones(16);
    const int kv = ck.cfg.kv_dim();
    w.wq = g(16, 16), w.wk = g(kv, 16), w.wv = g(kv, 16), w.wo = g(16, 16);
    w.w1 = g(24, 16), w.w2 = g(16, 24), w.w3 = g(24, 16);
    ck.layers.push_back(w);
  }
  ck.rms_final = Eigen::VectorXf::Ones(16);
  ck.classifier = shared ? ck.token_embedding : g(32, 16);
  return ck;
}
}  // namespace

TEST_CASE("llama2.c checkpoints round-trip and corrupt files are rejected", "[llama][io]") {
  const auto dir = std::filesystem::temp_directory_path();
  for (bool shared : {true, false}) {
    const auto ck = tiny_model(4, 2, shared);
    const std::string path = (dir / ("mixprec_tiny_" + std::to_string(::getpid()) + "_" + std::to_string(shared) + ".bin")).string();
    mixprec::llama2c::save_checkpoint(ck, path);
    const auto back = mixprec::llama2c::load_checkpoint(path);
    CHECK(back.cfg.shared_classifier == shared);
    CHECK(back.layers[1].wk == ck.layers[1].wk);
    CHECK(back.layers[0].w2 == ck.layers[0].w2);
    CHECK(back.classifier == ck.classifier);
    auto bytes = mixprec::llama2c::read_file(path);
    CHECK_THROWS_WITH(mixprec::llama2c::parse_checkpoint(bytes.data(), bytes.size() - 4, "t"),
                      Catch::Contains("expected") && Catch::Contains("bytes"));
    CHECK_THROWS_AS(mixprec::llama2c::parse_checkpoint(bytes.data(), 20, "t"), mixprec::error);
    auto bad = bytes;
    bad[12] = 3;  // n_heads 3 does not divide dim 16
    CHECK_THROWS_WITH(mixprec::llama2c::parse_checkpoint(bad.data(), bad.size(), "t"), Catch::Contains("n_heads"));
    bad = bytes;
    bad[3] = 0x80;  // dim negative
    CHECK_THROWS_WITH(mixprec::llama2c::parse_checkpoint(bad.data(), bad.size(), "t"), Catch::Contains("dim"));
    std::filesystem::remove(path);
  }
  CHECK_THROWS_AS(mixprec::llama2c::load_checkpoint("/nonexistent/model.bin"), mixprec::error);
}

TEST_CASE("grouped-query attention equals attention with the KV heads repeated", "[llama][gqa]") {
  // A GQA model and the same model with each KV head duplicated into a full multi-head model.
  const auto gqa = tiny_model(4, 2, true);
  auto mha = gqa;
  mha.cfg.n_kv_heads = 4;
  for (auto& l : mha.layers) {
    mixprec::row_matrix k(16, 16), v(16, 16);
    for (int h = 0; h < 4; ++h) {
      k.middleRows(h * 4, 4) = l.wk.middleRows((h / 2) * 4, 4);
      v.middleRows(h * 4, 4) = l.wv.middleRows((h / 2) * 4, 4);
    }
    l.wk = k;
    l.wv = v;
  }
  llama::transformer a(gqa), b(mha);
  for (int pos = 0; pos < 6; ++pos) {
    const Eigen::VectorXf la = a.forward(pos + 2, pos);
    const Eigen::VectorXf lb = b.forward(pos + 2, pos);
    CHECK(la.isApprox(lb, 1e-5f));
  }
}

TEST_CASE("the FP32 forward pass matches the naive double-precision reference", "[llama][model]") {
  // The synthetic model with a separate classifier (with the shared one, each token's own embedding
  // dominates its logits and greedy decoding repeats BOS), read from its llama2.c file.
  const auto dir = std::filesystem::temp_directory_path() / ("mixprec_llama_test_" + std::to_string(::getpid()));
  const auto files = mixprec::test::write_tiny_llama(dir, {.shared_classifier = false});
  const auto ck = mixprec::llama2c::load_checkpoint(files.model);
  std::filesystem::remove_all(dir);
  CHECK(ck.cfg.dim == 64);
  CHECK(ck.cfg.vocab_size == 512);
  CHECK_FALSE(ck.cfg.shared_classifier);
  llama::transformer model(ck);
  mixprec::test::naive_llama naive(ck);
  const auto reference = naive.greedy(40);
  INFO("smallest gap between the two largest logits along the greedy path: " << reference.min_gap);
  REQUIRE(reference.min_gap > 1e-4);  // far above FP32 rounding: the comparison of ids is meaningful
  const std::vector<int> ids = llama::greedy(model, 40);
  CHECK(ids == reference.ids);
  // Token by token along that path: the reference's logits up to FP32 rounding.
  std::vector<int> in = {1};
  in.insert(in.end(), reference.ids.begin(), reference.ids.end() - 1);
  const std::vector<std::vector<double>> want = naive.logits(in);
  double diff = 0.0, scale = 0.0;
  for (std::size_t p = 0; p < in.size(); ++p) {
    const Eigen::VectorXf& got = model.forward(in[p], static_cast<int>(p));
    for (std::size_t v = 0; v < want[p].size(); ++v) {
      diff = std::max(diff, std::abs(static_cast<double>(got[static_cast<Eigen::Index>(v)]) - want[p][v]));
      scale = std::max(scale, std::abs(want[p][v]));
    }
  }
  INFO("largest |logit difference| " << diff << " of " << scale);
  CHECK(diff < 1e-4 * scale);
  // INT8 per-channel everywhere: a third of the bytes, and the reference's top-1 at most positions.
  std::map<std::string, mixprec::quant_spec> specs;
  auto copy = ck;
  for (auto& [name, m] : copy.matrices()) specs[name] = mixprec::parse_spec("int8");
  llama::transformer q8(ck, specs);
  CHECK(q8.matrix_bytes() < model.matrix_bytes() / 3);
  int agree = 0;
  for (std::size_t p = 0; p < in.size(); ++p) {
    Eigen::Index top = 0;
    q8.forward(in[p], static_cast<int>(p)).maxCoeff(&top);
    agree += std::max_element(want[p].begin(), want[p].end()) - want[p].begin() == top ? 1 : 0;
  }
  std::printf("int8 per channel: the FP32 reference's top-1 at %d of %zu positions\n", agree, in.size());
  CHECK(agree >= 36);
}
