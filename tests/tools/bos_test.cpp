// `mixprec measure` starts its calibration streams with the model's own BOS, never a constant id: the
// vocabulary's tokenizer.ggml.bos_token_id, else llama.cpp's default for tokenizer.ggml.model, and
// tokenizer.ggml.add_bos_token respected for --text as llama.cpp's imatrix and perplexity tools do
// (mixprec::models::bos_of). The seeded synthetic model of support/tiny_llama.hpp, converted to GGUF,
// has its metadata rewritten (gguf::rewrite) into a Llama-3-style vocabulary (tokenizer.ggml.model
// "gpt2", BOS an id other than 1) and other variants; the expected streams are recomputed with the
// library's sample_streams / chunk_tokens and compared through measure.json's calibration.ids_fnv1a64.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <unistd.h>

#include "mixprec/io/gguf.hpp"
#include "mixprec/models/calibration.hpp"
#include "mixprec/models/llama.hpp"
#include "mixprec/models/tokenizer.hpp"
#include "support/errors.hpp"
#include "support/files.hpp"
#include "support/tiny_llama.hpp"
#include "support/tool_run.hpp"

namespace fs = std::filesystem;
namespace gguf = mixprec::gguf;
namespace models = mixprec::models;

namespace {

using mixprec::test::dir_with_model;
using mixprec::test::read_json;
using mixprec::test::tool;

// src copied to dst with its metadata edited (tensors unchanged).
std::string with_metadata(const fs::path& src, const fs::path& dst, const std::function<void(gguf::metadata&)>& edit) {
  const auto g = gguf::file::open(src.string());
  gguf::metadata kvs = g.kvs();
  edit(kvs);
  {
    std::ofstream out(dst, std::ios::binary);
    gguf::rewrite(g, kvs, out);
  }
  return dst.string();
}

gguf::value u32(std::uint32_t v) { return gguf::value(v); }

// The streams measure --sample N:LEN --seed S must have drawn from `model`, each started with `first`.
std::vector<std::vector<int>> sampled(const std::string& model, int n, int len, std::uint64_t seed, int first) {
  const auto m = models::load_gguf(model);
  models::llama_engine e(m);
  return models::sample_streams(e, {.streams = n, .length = len, .seed = seed, .first = first});
}

const char* const calibration_text =
    "The little dog ran to the park with his red ball. Lily and Tom played with the dog until the "
    "sun went down, and then they all went home to sleep! It was 7 o'clock.";

}  // namespace

TEST_CASE("bos_of: the vocabulary's BOS and add_bos, with llama.cpp's defaults per tokenizer model", "[cli][measure][bos]") {
  auto of = [](std::initializer_list<gguf::kv> kvs, int vocab = 0) { return models::bos_of(gguf::metadata(kvs), vocab); };
  const gguf::value llama("llama"), gpt2("gpt2");
  // Defaults: SentencePiece 1 and adds it; BPE 11, added by the Llama 3 family's pre-tokenizers only.
  CHECK(of({}).id == 1);
  CHECK(of({}).add);
  CHECK(of({{"tokenizer.ggml.model", llama}}).id == 1);
  CHECK(of({{"tokenizer.ggml.model", gpt2}}).id == 11);
  CHECK_FALSE(of({{"tokenizer.ggml.model", gpt2}}).add);
  CHECK(of({{"tokenizer.ggml.model", gpt2}, {"tokenizer.ggml.pre", gguf::value("llama-bpe")}}).add);
  CHECK_FALSE(of({{"tokenizer.ggml.model", gpt2}, {"tokenizer.ggml.pre", gguf::value("qwen2")}}).add);
  CHECK(of({{"tokenizer.ggml.model", gpt2}, {"tokenizer.ggml.pre", gguf::value("chatglm-bpe")}}).id == -1);
  CHECK(of({{"tokenizer.ggml.model", gguf::value("bert")}}).id == 101);
  CHECK(of({{"tokenizer.ggml.model", gguf::value("t5")}}).id == -1);
  CHECK(of({{"tokenizer.ggml.model", gpt2}}).tokenizer == "gpt2");
  // The keys win over every default: a Llama 3 vocabulary.
  const auto llama3 = of({{"tokenizer.ggml.model", gpt2},
                          {"tokenizer.ggml.pre", gguf::value("llama-bpe")},
                          {"tokenizer.ggml.bos_token_id", u32(128000)},
                          {"tokenizer.ggml.add_bos_token", gguf::value(true)}},
                         128256);
  CHECK(llama3.id == 128000);
  CHECK(llama3.add);
  CHECK(of({{"tokenizer.ggml.model", llama}, {"tokenizer.ggml.bos_token_id", u32(7)}}).id == 7);
  CHECK_FALSE(of({{"tokenizer.ggml.model", llama}, {"tokenizer.ggml.add_bos_token", gguf::value(false)}}).add);
  // An id outside the vocabulary (token_embd's rows, or tokenizer.ggml.tokens), or a key of another type: parse_error.
  using mixprec::test::error_code_of;
  CHECK(error_code_of([&] { (void)of({{"tokenizer.ggml.bos_token_id", u32(512)}}, 512); }) == mixprec::errc::parse_error);
  CHECK(error_code_of([&] {
          (void)of({{"tokenizer.ggml.bos_token_id", u32(3)},
                    {"tokenizer.ggml.tokens", gguf::value(gguf::array{gguf::value_type::string, {gguf::value("a"), gguf::value("b")}})}});
        }) == mixprec::errc::parse_error);
  CHECK(error_code_of([&] { (void)of({{"tokenizer.ggml.bos_token_id", gguf::value(std::int32_t{1})}}); }) == mixprec::errc::parse_error);
  CHECK(error_code_of([&] { (void)of({{"tokenizer.ggml.add_bos_token", u32(1)}}); }) == mixprec::errc::parse_error);
  // chunk_tokens without a BOS: `length` ids each.
  const std::vector<int> ids = {5, 6, 7, 8, 9};
  CHECK(models::chunk_tokens(ids, 2, -1) == std::vector<std::vector<int>>{{5, 6}, {7, 8}});
  // With a BOS, as llama.cpp's imatrix and perplexity cut text: [128000 5 6 7 8 9] every 3, the first of each set to BOS.
  CHECK(models::chunk_tokens(ids, 3, 128000) == std::vector<std::vector<int>>{{128000, 5, 6}, {128000, 8, 9}});
}

TEST_CASE("measure --sample: every stream starts with the vocabulary's BOS (a Llama-3-style vocabulary)", "[cli][measure][bos]") {
  const fs::path dir = dir_with_model("mixprec_bos_sample");
  // Llama 3's layout on the synthetic weights: a BPE vocabulary whose BOS is an ordinary-looking id (300
  // of 512), id 1 an ordinary token.
  const std::string l3 = with_metadata(dir / "a.gguf", dir / "l3.gguf", [](gguf::metadata& kvs) {
    kvs.set("tokenizer.ggml.model", gguf::value("gpt2"));
    kvs.set("tokenizer.ggml.pre", gguf::value("llama-bpe"));
    kvs.set("tokenizer.ggml.bos_token_id", u32(300));
    kvs.set("tokenizer.ggml.add_bos_token", gguf::value(true));
  });
  const std::string m = (dir / "m.json").string();
  REQUIRE(tool({"measure", l3, "--types", "q8_0", "--sample", "3:12", "--seed", "5", "-o", m}) == 0);
  const nlohmann::json c = read_json(m).at("calibration");
  CHECK(c.at("bos") == 300);
  CHECK(c.at("bos_first") == true);
  const auto expected = sampled(l3, 3, 12, 5, 300);
  for (const auto& s : expected) CHECK(s.front() == 300);
  CHECK(c.at("ids_fnv1a64") == mixprec::models::calibration_hash(expected));
  // What the hard-coded 1 drew: other streams (the check above can fail).
  CHECK(mixprec::models::calibration_hash(sampled(l3, 3, 12, 5, 1)) != c.at("ids_fnv1a64").get<std::string>());

  // The same weights with the SentencePiece vocabulary: BOS 1, as before.
  REQUIRE(tool({"measure", (dir / "a.gguf").string(), "--types", "q8_0", "--sample", "3:12", "--seed", "5", "-o", m}) == 0);
  CHECK(read_json(m).at("calibration").at("bos") == 1);
  CHECK(read_json(m).at("calibration").at("ids_fnv1a64") == mixprec::models::calibration_hash(sampled((dir / "a.gguf").string(), 3, 12, 5, 1)));

  // No bos_token_id: llama.cpp's default for a BPE vocabulary, 11.
  const std::string bpe = with_metadata(l3, dir / "bpe.gguf", [](gguf::metadata& kvs) { kvs.erase("tokenizer.ggml.bos_token_id"); });
  REQUIRE(tool({"measure", bpe, "--types", "q8_0", "--sample", "2:8", "--seed", "5", "-o", m}) == 0);
  CHECK(read_json(m).at("calibration").at("bos") == 11);
  CHECK(read_json(m).at("calibration").at("ids_fnv1a64") == mixprec::models::calibration_hash(sampled(bpe, 2, 8, 5, 11)));

  // --tokens: the ids as given, the vocabulary's BOS recorded but not put first.
  std::ofstream(dir / "ids.txt") << "7 8 9 10\n300 11 12\n";
  REQUIRE(tool({"measure", l3, "--types", "q8_0", "--tokens", (dir / "ids.txt").string(), "-o", m}) == 0);
  CHECK(read_json(m).at("calibration").at("bos") == 300);
  CHECK(read_json(m).at("calibration").at("bos_first") == false);
  CHECK(read_json(m).at("calibration").at("ids_fnv1a64") == mixprec::models::calibration_hash({{7, 8, 9, 10}, {300, 11, 12}}));

  // --text with a "gpt2" vocabulary that has no merges: a damaged vocabulary (exit 3, before any tensor is probed).
  std::ofstream(dir / "text.txt") << calibration_text;
  CHECK(tool({"measure", l3, "--types", "q8_0", "--text", (dir / "text.txt").string(), "-o", m}) == 3);
  // A vocabulary without BOS cannot start sampled streams (exit 5); a BOS outside the vocabulary or not
  // u32 is a damaged file (exit 3).
  const std::string t5 = with_metadata(dir / "a.gguf", dir / "t5.gguf", [](gguf::metadata& kvs) {
    kvs.set("tokenizer.ggml.model", gguf::value("t5"));
    kvs.erase("tokenizer.ggml.bos_token_id");
  });
  CHECK(tool({"measure", t5, "--types", "q8_0", "--sample", "2:8", "-o", m}) == 5);
  const std::string outside = with_metadata(dir / "a.gguf", dir / "outside.gguf", [](gguf::metadata& kvs) {
    kvs.set("tokenizer.ggml.bos_token_id", u32(512));
  });
  CHECK(tool({"measure", outside, "--types", "q8_0", "--sample", "2:8", "-o", m}) == 3);
  const std::string signed_id = with_metadata(dir / "a.gguf", dir / "i32.gguf", [](gguf::metadata& kvs) {
    kvs.set("tokenizer.ggml.bos_token_id", gguf::value(std::int32_t{1}));
  });
  CHECK(tool({"measure", signed_id, "--types", "q8_0", "--sample", "2:8", "-o", m}) == 3);
  fs::remove_all(dir);
}

TEST_CASE("measure --text: streams start with the vocabulary's BOS when it adds one", "[cli][measure][bos]") {
  const fs::path dir = dir_with_model("mixprec_bos_text");
  std::ofstream(dir / "text.txt") << calibration_text;
  const std::string text = (dir / "text.txt").string(), m = (dir / "m.json").string();
  auto measured = [&](const std::string& model) {
    REQUIRE(tool({"measure", model, "--types", "q8_0", "--text", text, "--ctx", "16", "--streams", "2", "-o", m}) == 0);
    return read_json(m).at("calibration");
  };
  // The text's ids as the model's vocabulary encodes them (its own add_space_prefix), without BOS.
  auto text_ids = [&](const std::string& model) { return models::spm_tokenizer::from_gguf(model).encode(calibration_text, {.add_bos = false}); };

  const std::string plain = (dir / "a.gguf").string();
  nlohmann::json c = measured(plain);
  CHECK(c.at("bos") == 1);
  CHECK(c.at("bos_first") == true);
  CHECK(c.at("positions") == 32);
  CHECK(c.at("ids_fnv1a64") == mixprec::models::calibration_hash(models::chunk_tokens(text_ids(plain), 16, 1, 2)));

  // A BOS other than 1: every stream starts with it.
  const std::string five = with_metadata(plain, dir / "bos5.gguf", [](gguf::metadata& kvs) { kvs.set("tokenizer.ggml.bos_token_id", u32(5)); });
  c = measured(five);
  CHECK(c.at("bos") == 5);
  CHECK(c.at("bos_first") == true);
  const auto expected = models::chunk_tokens(text_ids(five), 16, 5, 2);
  REQUIRE(expected.size() == 2);
  CHECK(expected[0].front() == 5);
  CHECK(c.at("ids_fnv1a64") == mixprec::models::calibration_hash(expected));
  CHECK(c.at("ids_fnv1a64") != mixprec::models::calibration_hash(models::chunk_tokens(text_ids(five), 16, 1, 2)));

  // A vocabulary that adds no BOS: --ctx text tokens per stream, as llama.cpp's imatrix cuts them.
  const std::string no_bos = with_metadata(plain, dir / "nobos.gguf", [](gguf::metadata& kvs) {
    kvs.set("tokenizer.ggml.add_bos_token", gguf::value(false));
  });
  c = measured(no_bos);
  CHECK(c.at("bos") == 1);
  CHECK(c.at("bos_first") == false);
  CHECK(c.at("positions") == 32);
  CHECK(c.at("ids_fnv1a64") == mixprec::models::calibration_hash(models::chunk_tokens(text_ids(no_bos), 16, -1, 2)));

  // The vocabulary's add_space_prefix, not a constant true.
  const std::string no_prefix = with_metadata(plain, dir / "noprefix.gguf", [](gguf::metadata& kvs) {
    kvs.set("tokenizer.ggml.add_space_prefix", gguf::value(false));
  });
  const auto ids = text_ids(no_prefix);
  CHECK(ids != text_ids(plain));
  c = measured(no_prefix);
  CHECK(c.at("ids_fnv1a64") == mixprec::models::calibration_hash(models::chunk_tokens(ids, 16, 1, 2)));
  fs::remove_all(dir);
}

TEST_CASE("measure --text: a byte-level BPE vocabulary (Llama 3's layout) tokenizes the text, BOS first", "[cli][measure][bos]") {
  const fs::path dir = dir_with_model("mixprec_bos_bpe_text");
  std::ofstream(dir / "text.txt") << calibration_text;
  // 512 tokens as the synthetic model has: the 256 byte symbols, then the pairs of the letters a..p, each
  // made by a merge; BOS 300 (a pair token: any id will do for a test of where it goes).
  const std::string l3 = with_metadata(dir / "a.gguf", dir / "l3.gguf", [](gguf::metadata& kvs) {
    gguf::array tokens{gguf::value_type::string, {}}, merges{gguf::value_type::string, {}};
    for (const auto& b : models::detail::byte_symbols()) tokens.items.emplace_back(b);
    for (char x = 'a'; x <= 'p'; ++x)
      for (char y = 'a'; y <= 'p'; ++y) {
        tokens.items.emplace_back(std::string{x, y});
        merges.items.emplace_back(std::string{x, ' ', y});
      }
    kvs.set("tokenizer.ggml.model", gguf::value("gpt2"));
    kvs.set("tokenizer.ggml.pre", gguf::value("llama-bpe"));
    kvs.set("tokenizer.ggml.tokens", gguf::value(std::move(tokens)));
    kvs.set("tokenizer.ggml.merges", gguf::value(std::move(merges)));
    kvs.erase("tokenizer.ggml.scores");
    kvs.erase("tokenizer.ggml.token_type");
    kvs.set("tokenizer.ggml.bos_token_id", u32(300));
  });
  const std::string m = (dir / "m.json").string();
  REQUIRE(tool({"measure", l3, "--types", "q8_0", "--text", (dir / "text.txt").string(), "--ctx", "16", "--streams", "2", "-o", m}) == 0);
  const nlohmann::json c = read_json(m).at("calibration");
  CHECK(c.at("bos") == 300);
  CHECK(c.at("bos_first") == true);  // llama-bpe adds BOS by default
  const auto ids = models::bpe_tokenizer::from_gguf(l3).encode(calibration_text, false);
  CHECK(ids.size() < std::string_view(calibration_text).size());  // merges made pairs
  CHECK(c.at("ids_fnv1a64") == mixprec::models::calibration_hash(models::chunk_tokens(ids, 16, 300, 2)));
  fs::remove_all(dir);
}
