// The SentencePiece-style tokenizer (mixprec/models/tokenizer.hpp) on the synthetic vocabulary of
// support/tiny_llama.hpp (3 specials, 256 byte tokens, BPE merges learned from tiny_corpus, its single
// characters), read from the llama2.c file and from the GGUF that `mixprec convert` writes, against
// llama2.c's plain encode and decode (support/naive_tokenizer.hpp); and on a small hand-made vocabulary
// where the merge order is known.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "tools/mixprec/convert.hpp"
#include "mixprec/models/tokenizer.hpp"
#include "support/errors.hpp"
#include "support/naive_tokenizer.hpp"
#include "support/tiny_llama.hpp"

namespace {

namespace models = mixprec::models;
namespace fs = std::filesystem;
using mixprec::test::naive_decode;
using mixprec::test::naive_encode;

// The synthetic model's llama2.c files in a scratch folder, the vocabulary read back from the
// tokenizer file and from their GGUF; the folder is removed before returning.
struct vocabularies {
  mixprec::llama2c::tokenizer raw;  // the file as llama2.c reads it
  models::spm_tokenizer from_bin, from_gguf;
};
vocabularies load_vocabularies() {
  const fs::path dir = fs::temp_directory_path() / ("mixprec_tokenizer_test_" + std::to_string(::getpid()));
  const auto files = mixprec::test::write_tiny_llama(dir);
  const std::string gguf = (dir / "tiny_llama.gguf").string();
  mixprec_cli::convert_llama2c(files.model, files.tokenizer, gguf);
  vocabularies v;
  v.raw = mixprec::llama2c::load_tokenizer(files.tokenizer, 512);
  v.from_bin = models::spm_tokenizer::from_llama2c(v.raw);
  v.from_gguf = models::spm_tokenizer::from_gguf(gguf);
  fs::remove_all(dir);
  return v;
}

// Text the vocabulary was not learned from, and text it cannot spell: characters outside the corpus
// (digits, é, €, °, an emoji, a newline, a tab, a lone continuation byte, a byte no UTF-8 character
// starts with, a lead byte cut short by the end) take the byte fallback; runs of spaces, leading and
// trailing spaces. (Not here: a lead byte whose character would swallow a following space; the space
// has become U+2581 by then, so such text does not decode back, in llama.cpp either.)
const std::vector<std::string> texts = {
    mixprec::test::tiny_corpus,
    "Once upon a time",
    "The little girl and the big dog played in the sun.",
    "Zebras quietly juxtapose vexing frogs.",
    "caf\xc3\xa9 \xe2\x82\xac 5\xc2\xb0 \xf0\x9f\x99\x82!",
    "  two  spaces, then three   and a trailing one ",
    "line one\nline two\tand a tab",
    "\x80 lone bytes: \xff" "abc, and at the end \xc3",
    "<s> is three characters, not a token",
    " ",
    "a",
};

}  // namespace

TEST_CASE("tokenizer: the synthetic vocabulary encodes as llama2.c does, by its merges, and decodes back", "[models][tokenizer]") {
  const vocabularies v = load_vocabularies();
  const mixprec::llama2c::tokenizer generated = mixprec::test::tiny_tokenizer(512);
  REQUIRE(v.raw.vocab == generated.vocab);  // the file holds what the generator made
  REQUIRE(v.raw.scores == generated.scores);
  const std::string sp = "\xe2\x96\x81";
  // llama2.c's plain encode of every text: with BOS and the space prefix, and with neither.
  std::vector<std::vector<int>> expected, expected_raw;
  for (const std::string& text : texts) {
    expected.push_back(naive_encode(v.raw, text));
    expected_raw.push_back(naive_encode(v.raw, text, false, false));
  }
  for (const auto* t : {&v.from_bin, &v.from_gguf}) {
    REQUIRE(t->size() == 512);
    CHECK(t->bos() == 1);
    CHECK(t->type(0) == models::token_type::unknown);
    CHECK(t->type(1) == models::token_type::control);
    CHECK(t->type(3) == models::token_type::byte);
    CHECK(t->type(258) == models::token_type::byte);
    CHECK(t->piece(3 + 'A') == "A");
    // Every other token is a piece of the generated vocabulary, its spaces as SentencePiece writes them.
    for (int id = 259; id < 512; ++id) {
      INFO("token " << id);
      CHECK(t->type(id) == models::token_type::normal);
      CHECK(t->text(id) == models::spm_tokenizer::escape_spaces(generated.vocab[static_cast<std::size_t>(id)]));
      CHECK(t->score(id) == generated.scores[static_cast<std::size_t>(id)]);
    }
    CHECK(t->find(sp + "the").has_value());  // a word of the corpus is one piece

    for (std::size_t i = 0; i < texts.size(); ++i) {
      const std::string& text = texts[i];
      INFO("text '" << text << "'");
      // The ids of llama2.c's plain encode (a space before the text, BOS first), and back to the text.
      const std::vector<int> ids = t->encode(text);
      CHECK(ids == expected[i]);
      CHECK(ids.front() == 1);
      CHECK(t->decode(ids, {.strip_space_prefix = true}) == text);
      CHECK(t->decode(ids) == naive_decode(v.raw, ids));
      // No BOS, no prefix: the text exactly as given.
      const std::vector<int> raw = t->encode(text, {.add_bos = false, .add_space_prefix = false});
      CHECK(raw == expected_raw[i]);
      CHECK(t->decode(raw) == text);
      CHECK((raw.empty() || raw.front() != 1));
    }
    // The merges at work: the corpus takes fewer than half as many tokens as bytes, fewer than two a word.
    const std::string corpus = mixprec::test::tiny_corpus;
    const std::vector<int> c = t->encode(corpus);
    std::size_t words = 1;
    for (char ch : corpus) words += ch == ' ' ? 1 : 0;
    INFO("tiny_corpus: " << corpus.size() << " bytes, " << words << " words, " << c.size() << " tokens");
    CHECK(c.size() * 2 < corpus.size());
    CHECK(c.size() < 2 * words);
    // Characters the vocabulary lacks fall back to their UTF-8 bytes, and decode back: é, €, 5, ° and the
    // emoji are no pieces (the corpus has no digits and no non-ASCII characters); "!" is one.
    const std::string odd = "caf\xc3\xa9 \xe2\x82\xac 5\xc2\xb0 \xf0\x9f\x99\x82!";
    const std::vector<int> o = t->encode(odd);
    int bytes = 0;
    for (int id : o) bytes += t->type(id) == models::token_type::byte ? 1 : 0;
    CHECK(bytes == 2 + 3 + 1 + 2 + 4);
    CHECK(t->decode(o, {.strip_space_prefix = true}) == odd);
    CHECK(t->encode("").size() == 1);
    CHECK(t->encode("", {.add_bos = false}).empty());
    // BOS decodes to nothing unless asked.
    CHECK(t->decode(std::vector<int>{1}).empty());
    CHECK(t->decode(std::vector<int>{1, 2}, {.special = true}) == "<s></s>");
  }
  // Every token id, in a seeded random order, decodes the same from both vocabularies and as llama2.c's.
  std::vector<int> all(512);
  for (int i = 0; i < 512; ++i) all[static_cast<std::size_t>(i)] = i;
  std::shuffle(all.begin(), all.end(), std::mt19937(3));
  CHECK(v.from_bin.decode(all) == naive_decode(v.raw, all));
  CHECK(v.from_gguf.decode(all) == v.from_bin.decode(all));
  // Random sentences of corpus words and stray characters: the same ids from both vocabularies and the
  // plain encode.
  std::mt19937 gen(11);
  const std::vector<std::string> parts = {"Lily", " the", " ball", "ed", " tree", ".", ",", " ", "\xc3\xa9", "9", "ing", "Tom", "!", " sky"};
  for (int n = 0; n < 40; ++n) {
    std::string text;
    for (int k = 0; k < 12; ++k) text += parts[std::uniform_int_distribution<std::size_t>(0, parts.size() - 1)(gen)];
    INFO("text '" << text << "'");
    const std::vector<int> ids = v.from_bin.encode(text);
    CHECK(ids == v.from_gguf.encode(text));
    CHECK(ids == naive_encode(v.raw, text));
    CHECK(v.from_bin.decode(ids, {.strip_space_prefix = true}) == text);
  }
  CHECK_THROWS_AS(v.from_bin.piece(512), mixprec::error);
  CHECK_THROWS_AS(v.from_bin.piece(-1), mixprec::error);
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
