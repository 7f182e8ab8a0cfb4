// Calibration streams (mixprec/models/calibration.hpp): token-id files, chunks of tokenized text, and
// seeded sampling from a model (the synthetic one of support/tiny_llama.hpp), replayed against the
// naive double-precision forward pass of support/naive_llama.hpp.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "mixprec/models/calibration.hpp"
#include "support/errors.hpp"
#include "support/naive_llama.hpp"
#include "support/tiny_llama.hpp"

namespace {

namespace models = mixprec::models;
namespace fs = std::filesystem;
using mixprec::test::error_code_of;
using mixprec::test::error_of;

std::string write_file(const std::string& name, const std::string& bytes) {
  const std::string p = (fs::temp_directory_path() / ("mixprec_calib_" + std::to_string(::getpid()) + "_" + name)).string();
  std::ofstream(p, std::ios::binary) << bytes;
  return p;
}

}  // namespace

TEST_CASE("token-id files: text, u16 and i32", "[models][calibration]") {
  using models::token_file_format;
  const std::string text = write_file("ids.txt", "1 319 459, 355\n\n# a comment line\n1\t5 6 # trailing comment\r\n7");
  const auto t = models::read_token_streams(text, token_file_format::text, 512);
  CHECK(t == std::vector<std::vector<int>>{{1, 319, 459, 355}, {1, 5, 6}, {7}});
  const auto too_large = error_of([&] { (void)models::read_token_streams(text, token_file_format::text, 400); });
  REQUIRE(too_large);
  CHECK(too_large->code() == mixprec::errc::invalid_argument);
  CHECK_THAT(too_large->what(), Catch::Contains("459") && Catch::Contains("line 1"));
  const std::string bad = write_file("bad.txt", "1 2\n3 x4\n");
  const auto not_a_number = error_of([&] { (void)models::read_token_streams(bad, token_file_format::text); });
  REQUIRE(not_a_number);
  CHECK(not_a_number->code() == mixprec::errc::parse_error);
  CHECK_THAT(not_a_number->what(), Catch::Contains("line 2"));

  // llama2.c's pretokenized shards: uint16, stories delimited by BOS.
  const std::vector<std::uint16_t> u16 = {7, 1, 10, 11, 1, 12, 1};
  const std::string shard = write_file("ids.bin", std::string(reinterpret_cast<const char*>(u16.data()), u16.size() * 2));
  CHECK(models::read_token_streams(shard, token_file_format::u16) == std::vector<std::vector<int>>{{7}, {1, 10, 11}, {1, 12}, {1}});
  const std::vector<std::int32_t> i32 = {1, 300, 2, -4};
  const std::string ints = write_file("ids.i32", std::string(reinterpret_cast<const char*>(i32.data()), i32.size() * 4));
  const auto negative = error_of([&] { (void)models::read_token_streams(ints, token_file_format::i32); });
  REQUIRE(negative);
  CHECK(negative->code() == mixprec::errc::parse_error);
  CHECK_THAT(negative->what(), Catch::Contains("byte 12"));
  const std::string odd = write_file("odd.bin", std::string(3, '\1'));
  CHECK(error_code_of([&] { (void)models::read_token_streams(odd, token_file_format::u16); }) == mixprec::errc::parse_error);
  CHECK(error_code_of([&] { (void)models::read_token_streams("/nonexistent/ids", token_file_format::text); }) == mixprec::errc::io_error);
  for (const auto& p : {text, bad, shard, ints, odd}) fs::remove(p);

  const std::vector<int> corpus = {5, 6, 7, 8, 9, 10, 11};
  // As llama.cpp's imatrix: [1 5 6 7 8 9 10 11] cut every 3, each chunk's first token set to BOS.
  CHECK(models::chunk_tokens(corpus, 3) == std::vector<std::vector<int>>{{1, 5, 6}, {1, 8, 9}});
  CHECK(models::chunk_tokens(corpus, 4, 1, 1) == std::vector<std::vector<int>>{{1, 5, 6, 7}});
  CHECK_THROWS_AS(models::chunk_tokens(corpus, 1), mixprec::error);
}

TEST_CASE("sample_token draws from softmax(logits / T) by inversion", "[models][calibration]") {
  std::mt19937_64 gen(42);
  Eigen::VectorXf l(3);
  l << 0.0f, std::log(3.0f), -1e30f;  // p = 1/4, 3/4, 0
  int ones = 0, twos = 0;
  const int n = 40000;
  for (int i = 0; i < n; ++i) {
    const int t = models::sample_token(l, gen);
    ones += t == 1;
    twos += t == 2;
  }
  CHECK(twos == 0);
  CHECK(std::abs(static_cast<double>(ones) / n - 0.75) < 0.01);  // 4.6 standard errors
  // T -> 0 is argmax; T large flattens.
  Eigen::VectorXf m(2);
  m << 0.0f, 5.0f;
  int low_t = 0;
  for (int i = 0; i < 1000; ++i) low_t += models::sample_token(m, gen, 0.05);
  CHECK(low_t == 1000);
  Eigen::VectorXf nan = Eigen::VectorXf::Constant(2, std::nanf(""));
  CHECK_THROWS_AS(models::sample_token(nan, gen), mixprec::error);
  CHECK_THROWS_AS(models::sample_token(m, gen, 0.0), mixprec::error);
  // The uniform draw: top 53 bits of the engine (the same on every platform).
  std::mt19937_64 a(7), b(7);
  CHECK(models::uniform_01(a) == static_cast<double>(b() >> 11) / 9007199254740992.0);
}

TEST_CASE("sampled calibration streams are reproducible from the seed", "[models][calibration]") {
  // A separate classifier: with the shared one, each token's own embedding dominates its logits and the
  // streams would repeat BOS.
  const mixprec::llama2c::checkpoint ck = mixprec::test::tiny_llama({.shared_classifier = false});
  const auto m = models::from_llama2c(ck);
  models::llama_engine e(m);
  std::vector<Eigen::VectorXf> seen;
  const auto s1 = models::sample_streams(e, {.streams = 3, .length = 20, .seed = 5}, [&](int s, int pos, const Eigen::VectorXf& l) {
    if (s == 0) {
      CHECK(pos == static_cast<int>(seen.size()));
      seen.push_back(l);
    }
  });
  REQUIRE(s1.size() == 3);
  for (const auto& s : s1) {
    CHECK(s.size() == 20);
    CHECK(s.front() == 1);
  }
  CHECK(seen.size() == 19);
  const auto s2 = models::sample_streams(e, {.streams = 3, .length = 20, .seed = 5});
  const auto s3 = models::sample_streams(e, {.streams = 3, .length = 20, .seed = 6});
  CHECK(s1 == s2);
  CHECK(s1 != s3);
  CHECK(s1[0] != s1[1]);
  // The logits each draw saw are those of teacher forcing the stream.
  const mixprec::row_matrix forced = e.logits(std::vector<int>(s1[0].begin(), s1[0].end() - 1));
  // (logits() runs the sequence at once: the same values summed in another order.)
  for (std::size_t p = 0; p < seen.size(); ++p)
    CHECK((forced.row(static_cast<mixprec::index_t>(p)).transpose() - seen[p]).cwiseAbs().maxCoeff() <= 1e-4f * (1.0f + seen[p].cwiseAbs().maxCoeff()));
  // Replayed independently: one std::mt19937_64(5) for all streams in order, each draw the first token
  // whose running sum of exp(l_i - max l) exceeds u * the total, u = the draw's top 53 bits / 2^53, with
  // the logits of the naive double-precision forward pass. (A draw within FP32 rounding of a boundary
  // could flip; with this seed none does.)
  std::mt19937_64 gen(5);
  for (std::size_t s = 0; s < s1.size(); ++s) {
    mixprec::test::naive_llama n(ck);
    std::vector<int> replay = {1};
    for (int pos = 0; pos + 1 < 20; ++pos) {
      const std::vector<double> l = n.forward(replay.back(), pos);
      const double mx = *std::max_element(l.begin(), l.end());
      double total = 0.0;
      for (double x : l) total += std::exp(x - mx);
      const double u = static_cast<double>(gen() >> 11) / 9007199254740992.0 * total;
      double run = 0.0;
      std::size_t i = 0;
      while (i + 1 < l.size() && (run += std::exp(l[i] - mx)) <= u) ++i;
      replay.push_back(static_cast<int>(i));
    }
    INFO("stream " << s);
    CHECK(s1[s] == replay);
  }
  CHECK_THROWS_AS(models::sample_streams(e, {.streams = 1, .length = m.config.context_length + 2}), mixprec::error);
  CHECK_NOTHROW(models::sample_streams(e, {.streams = 1, .length = m.config.context_length + 1}));
}
