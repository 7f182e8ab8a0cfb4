// The SentencePiece-style tokenizer (mixprec/models/tokenizer.hpp) on aidreams260K's real vocabulary
// (tok512: 3 specials, 256 byte tokens, 253 merges), read from the llama2.c file and from the GGUF that
// `mixprec convert` writes; and on a small hand-made vocabulary where the merge order is known.
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include "../../tools/mixprec/convert.hpp"
#include "mixprec/models/tokenizer.hpp"
#include "support/errors.hpp"

namespace {

namespace models = mixprec::models;
namespace fs = std::filesystem;

const std::string model_path = std::string(MIXPREC_SHARED_MODELS_DIR) + "/aidreams260K.bin";
const std::string tokenizer_path = std::string(MIXPREC_SHARED_MODELS_DIR) + "/tok512.bin";
const std::vector<int> reference_ids = {319, 459, 355, 260, 275, 429, 339, 315, 374, 327, 446, 262, 421, 392,
                                        275, 280, 269, 440, 270, 283, 446, 299, 303, 266, 358, 430, 312, 379,
                                        441, 260, 446, 262, 421, 392, 275, 280, 269, 440, 270, 283};
// ../shared/models/README.md: what the reference ids decode to.
const std::string reference_text =
    " \"Echoes of vectors unfold, a gentle hum of precision, as I sense the nodes, a gentle hum of precision";

models::spm_tokenizer gguf_vocab() {
  const fs::path p = fs::temp_directory_path() / ("mixprec_tokenizer_test_" + std::to_string(::getpid()) + ".gguf");
  mixprec_cli::convert_llama2c(model_path, tokenizer_path, p.string());
  auto t = models::spm_tokenizer::from_gguf(p.string());
  fs::remove(p);
  return t;
}

}  // namespace

TEST_CASE("tokenizer: the reference ids decode to the README text, and the text encodes back", "[models][tokenizer]") {
  if (!fs::exists(model_path) || !fs::exists(tokenizer_path)) {
    WARN("skipped: shared/models not found");
    return;
  }
  const auto from_bin = models::spm_tokenizer::from_llama2c(mixprec::llama2c::load_tokenizer(tokenizer_path, 512));
  const auto from_gguf = gguf_vocab();
  for (const auto* t : {&from_bin, &from_gguf}) {
    REQUIRE(t->size() == 512);
    CHECK(t->bos() == 1);
    CHECK(t->type(1) == models::token_type::control);
    CHECK(t->type(3) == models::token_type::byte);
    CHECK(t->text(262) == "\xe2\x96\x81" "a");  // " a" with SentencePiece's space
    CHECK(t->decode(reference_ids) == reference_text);
    // BOS decodes to nothing; stripping the prefix space gives the text as written.
    std::vector<int> with_bos = {1};
    with_bos.insert(with_bos.end(), reference_ids.begin(), reference_ids.end());
    CHECK(t->decode(with_bos, {.strip_space_prefix = true}) == reference_text.substr(1));
    CHECK(t->decode(with_bos, {.special = true}).rfind("<s> \"Echoes", 0) == 0);

    // Encoding the text (a space is put before it, BOS first) and decoding gives it back.
    const std::string text = reference_text.substr(1);
    const std::vector<int> ids = t->encode(text);
    CHECK(ids.front() == 1);
    CHECK(t->decode(ids, {.strip_space_prefix = true}) == text);
    // ... and the ids are BOS then exactly the model's greedy ids (llama.cpp's llama_tokenize gives the same).
    std::vector<int> expected = {1};
    expected.insert(expected.end(), reference_ids.begin(), reference_ids.end());
    CHECK(ids == expected);
    // No BOS, no prefix: the text exactly as given.
    const std::vector<int> raw = t->encode("of precision", {.add_bos = false, .add_space_prefix = false});
    CHECK(t->decode(raw) == "of precision");
    CHECK(raw.front() != 1);
    // Characters the vocabulary lacks fall back to their UTF-8 bytes, and decode back.
    const std::string odd = "caf\xc3\xa9 \xe2\x82\xac 5\xc2\xb0 \xf0\x9f\x99\x82!";  // é, €, ° (a piece), an emoji
    const std::vector<int> o = t->encode(odd);
    CHECK(t->decode(o, {.strip_space_prefix = true}) == odd);
    int bytes = 0;
    for (int id : o) bytes += t->type(id) == models::token_type::byte ? 1 : 0;
    CHECK(bytes == 2 + 3 + 4 + 1);  // é, €, the emoji; "!" is no piece of this vocabulary either
    CHECK(t->encode("").size() == 1);
    CHECK(t->encode("", {.add_bos = false}).empty());
  }
  CHECK(from_bin.encode(reference_text) == from_gguf.encode(reference_text));
  CHECK_THROWS_AS(from_bin.piece(512), mixprec::error);
  CHECK_THROWS_AS(from_bin.piece(-1), mixprec::error);
}

TEST_CASE("tokenizer: merges by score, ties to the left, on a hand-made vocabulary", "[models][tokenizer]") {
  using tt = models::token_type;
  const std::string sp = "\xe2\x96\x81";
  // ids: 0 <unk>, 1 <s>, 2 </s>, then characters and merges with their scores.
  std::vector<std::string> p = {"<unk>", "<s>", "</s>", sp, "a", "b", "c", "ab", "bc", sp + "a", "abc", "<0x21>"};
  std::vector<float> s = {0, 0, 0, -1, -1, -1, -1, -5, -2, -3, -4, 0};
  std::vector<tt> t = {tt::unknown, tt::control, tt::control, tt::normal, tt::normal, tt::normal, tt::normal,
                       tt::normal,  tt::normal,  tt::normal,  tt::normal, tt::byte};
  const models::spm_tokenizer tok(p, s, t);
  // "abc": "bc" (-2) beats "ab" (-5); then "a"+"bc" = "abc" (-4).
  CHECK(tok.encode("abc", {.add_bos = false, .add_space_prefix = false}) == std::vector<int>{10});
  // " abc" -> ▁ a b c: bc (-2) first, then ▁a (-3), then ▁a+bc is no piece: [▁a, bc].
  CHECK(tok.encode("abc", {.add_bos = false}) == std::vector<int>{9, 8});
  // Equal scores: the leftmost pair merges first ("ab" and "bc" both -2, no "abc"): [ab, c], not [a, bc].
  std::vector<std::string> p2 = p;
  std::vector<float> s2 = s;
  p2[10] = "xyz";
  s2[7] = -2;
  const models::spm_tokenizer tie(p2, s2, t);
  CHECK(tie.encode("abc", {.add_bos = false, .add_space_prefix = false}) == std::vector<int>{7, 6});
  CHECK(tie.encode("bcab", {.add_bos = false, .add_space_prefix = false}) == std::vector<int>{8, 7});
  // A character without a piece and without a byte token: the unknown token (id 0) for each byte.
  CHECK(tok.encode("a?", {.add_bos = false, .add_space_prefix = false}) == std::vector<int>{4, 0});
  CHECK(tok.encode("a!", {.add_bos = false, .add_space_prefix = false}) == std::vector<int>{4, 11});
  CHECK(tok.decode(std::vector<int>{9, 8, 11, 0, 2}) == " abc!");
  CHECK(tok.find(sp + "a") == 9);
  CHECK_FALSE(tok.find("zz").has_value());
  // Malformed vocabularies.
  CHECK_THROWS_AS(models::spm_tokenizer(p, {0.0f}, t), mixprec::error);
  CHECK_THROWS_AS(models::spm_tokenizer(p, s, t, 99), mixprec::error);
  mixprec::gguf::metadata kvs;
  kvs.set("tokenizer.ggml.model", mixprec::gguf::value("gpt2"));
  CHECK(mixprec::test::error_code_of([&] { (void)models::spm_tokenizer::from_gguf(kvs); }) == mixprec::errc::unsupported);
  kvs.set("tokenizer.ggml.model", mixprec::gguf::value("llama"));
  CHECK_THROWS_WITH(models::spm_tokenizer::from_gguf(kvs), Catch::Contains("tokenizer.ggml.tokens"));
}
