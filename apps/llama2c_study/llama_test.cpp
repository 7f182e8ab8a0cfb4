// llama2.c loader and the FP32 forward pass on the real shared checkpoint.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "llama.hpp"
#include "support/data.hpp"

namespace {
const std::string model_path = std::string(MIXPREC_SHARED_MODELS_DIR) + "/aidreams260K.bin";
const std::string tokenizer_path = std::string(MIXPREC_SHARED_MODELS_DIR) + "/tok512.bin";

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
    const std::string path = (dir / ("mixprec_tiny_" + std::to_string(shared) + ".bin")).string();
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

TEST_CASE("the FP32 forward pass reproduces the reference greedy continuation", "[llama][model]") {
  if (!std::filesystem::exists(model_path)) {
    WARN("skipped: " << model_path << " not found (shared/models)");
    return;
  }
  const auto ck = mixprec::llama2c::load_checkpoint(model_path);
  CHECK(ck.cfg.dim == 64);
  CHECK(ck.cfg.vocab_size == 512);
  llama::transformer model(ck);
  const std::vector<int> ids = llama::greedy(model, 40);
  // From shared/models/README.md: an independent NumPy implementation of the llama2.c forward pass.
  const std::vector<int> reference = {319, 459, 355, 260, 275, 429, 339, 315, 374, 327, 446, 262, 421, 392,
                                      275, 280, 269, 440, 270, 283, 446, 299, 303, 266, 358, 430, 312, 379,
                                      441, 260, 446, 262, 421, 392, 275, 280, 269, 440, 270, 283};
  CHECK(ids == reference);
  const auto tok = mixprec::llama2c::load_tokenizer(tokenizer_path, ck.cfg.vocab_size);
  std::string text;
  int prev = 1;
  for (int id : ids) {
    text += tok.decode(prev, id);
    prev = id;
  }
  CHECK(text.rfind("\"Echoes of vectors unfold, a gentle hum of precision, as I sense the nodes", 0) == 0);
  // INT8 per-channel everywhere: the same first tokens.
  std::map<std::string, mixprec::quant_spec> specs;
  auto copy = ck;
  for (auto& [name, m] : copy.matrices()) specs[name] = mixprec::parse_spec("int8");
  llama::transformer q8(ck, specs);
  CHECK(q8.matrix_bytes() < model.matrix_bytes() / 3);
  const std::vector<int> ids8 = llama::greedy(q8, 10);
  CHECK(std::vector<int>(ids8.begin(), ids8.begin() + 5) == std::vector<int>(reference.begin(), reference.begin() + 5));
}
