// The byte-level BPE tokenizer (models/bpe_tokenizer.hpp) on its own: the Unicode classes against the
// Unicode Character Database where Debian's unicode-data is installed, the UTF-8 decoding, the
// pre-tokenizers' pieces on cases whose llama.cpp result is known (each noted), BPE on a small
// vocabulary, and the GGUF reader's errors. tests/interop/bpe_tokenizer_test.cpp checks real
// vocabularies against llama.cpp itself.
#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "mixprec/io/gguf.hpp"
#include "mixprec/models/bpe_tokenizer.hpp"
#include "support/errors.hpp"

namespace mm = mixprec::models;
namespace gguf = mixprec::gguf;
using mixprec::errc;

namespace {

std::vector<std::string> pieces(const std::string& text, mm::bpe_pre_tokenizer pre = mm::bpe_pre_tokenizer::llama3) {
  const auto cps = mm::detail::code_points(text);
  std::vector<std::string> out;
  for (const auto& [b, e] : mm::detail::pre_tokenize(cps, pre)) {
    std::string s;
    for (std::size_t i = b; i < e; ++i) mm::detail::append_utf8(s, cps[i]);
    out.push_back(s);
  }
  return out;
}

using strings = std::vector<std::string>;

}  // namespace

TEST_CASE("bpe: the letter and number classes are the UCD's categories L and N", "[bpe]") {
  CHECK(mm::detail::is_letter('a'));
  CHECK(mm::detail::is_letter(0x4E2D));     // CJK, Lo
  CHECK(mm::detail::is_letter(0x2EBF0));    // CJK Extension I: added in Unicode 15.1, which llama.cpp uses
  CHECK_FALSE(mm::detail::is_letter(0x2FFC));  // 15.1, a symbol
  CHECK_FALSE(mm::detail::is_letter(0x10D40));  // Garay: Unicode 16.0, unassigned in 15.1
  CHECK_FALSE(mm::detail::is_letter(0x0301));   // a combining mark is no letter
  CHECK_FALSE(mm::detail::is_letter('1'));
  CHECK(mm::detail::is_number('7'));
  CHECK(mm::detail::is_number(0x00B2));  // superscript two, No
  CHECK(mm::detail::is_number(0x2167));  // Roman numeral eight, Nl
  CHECK_FALSE(mm::detail::is_number('x'));
  CHECK(mm::detail::is_white_space(0x3000));
  CHECK(mm::detail::is_white_space(0x85));
  CHECK_FALSE(mm::detail::is_white_space(0x200B));  // zero width space is Cf, not White_Space

  // Every code point of the installed Unicode Character Database (Debian's unicode-data, which the quick
  // start installs) classified as its category says.
  const std::filesystem::path ucd = "/usr/share/unicode/UnicodeData.txt";
  if (!std::filesystem::exists(ucd)) {
    WARN("no " << ucd.string() << " (Debian's unicode-data): the whole-database check is skipped");
    return;
  }
  std::ifstream in(ucd);
  std::string line;
  std::uint32_t first = 0;
  std::size_t checked = 0;
  while (std::getline(in, line)) {
    std::stringstream fields(line);
    std::string code, name, cat;
    std::getline(fields, code, ';');
    std::getline(fields, name, ';');
    std::getline(fields, cat, ';');
    const auto cp = static_cast<std::uint32_t>(std::stoul(code, nullptr, 16));
    if (name.ends_with(", First>")) {
      first = cp;
      continue;
    }
    const std::uint32_t lo = name.ends_with(", Last>") ? first : cp;
    for (std::uint32_t c = lo; c <= cp; ++c, ++checked) {
      INFO("U+" << std::hex << c << " " << cat);
      REQUIRE(mm::detail::is_letter(c) == (cat[0] == 'L'));
      REQUIRE(mm::detail::is_number(c) == (cat[0] == 'N'));
    }
  }
  CHECK(checked > 200000);
}

TEST_CASE("bpe: UTF-8 is decoded as llama.cpp decodes it, invalid bytes as U+FFFD each", "[bpe]") {
  using cps = std::vector<std::uint32_t>;
  CHECK(mm::detail::code_points("a\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80") == cps{'a', 0xE9, 0x4E2D, 0x1F600});
  CHECK(mm::detail::code_points("\xff") == cps{0xFFFD});
  CHECK(mm::detail::code_points("a\xe4\xb8") == cps{'a', 0xFFFD, 0xFFFD});    // a truncated sequence: each byte
  CHECK(mm::detail::code_points("\xc0\x80z") == cps{0, 'z'});                 // overlong, taken as it decodes
  CHECK(mm::detail::code_points("\x80\xbf") == cps{0xFFFD, 0xFFFD});          // stray continuations
  CHECK(mm::detail::code_points("\xf5\x80\x80\x80") == cps{0xFFFD, 0xFFFD, 0xFFFD, 0xFFFD});  // above U+10FFFF
  std::string s;
  for (std::uint32_t c : {0x24u, 0xA2u, 0x20ACu, 0x10348u}) mm::detail::append_utf8(s, c);
  CHECK(s == "$\xc2\xa2\xe2\x82\xac\xf0\x90\x8d\x88");
}

TEST_CASE("bpe: GPT-2's byte symbols", "[bpe]") {
  const auto& t = mm::detail::byte_symbols();
  CHECK(t[' '] == "\xc4\xa0");   // U+0120 Ġ
  CHECK(t['\n'] == "\xc4\x8a");  // U+010A Ċ
  CHECK(t['\t'] == "\xc4\x89");  // U+0109 ĉ
  CHECK(t[0] == "\xc4\x80");     // U+0100 Ā
  CHECK(t['a'] == "a");
  CHECK(t[0xAD] == "\xc5\x83");  // the 68th remapped byte: U+0143
  CHECK(t[0xE9] == "\xc3\xa9");  // printable Latin-1 stands for itself
}

TEST_CASE("bpe: the llama3 pre-tokenizer's pieces", "[bpe]") {
  // Each as llama.cpp's llama-bpe vocabulary splits it (its pieces' tokens, read back).
  CHECK(pieces("a.\r\n b") == strings{"a", ".\r\n", " b"});
  CHECK(pieces("x  y") == strings{"x", " ", " y"});
  CHECK(pieces("x  ") == strings{"x", "  "});
  CHECK(pieces(" \t\n") == strings{" \t\n"});
  CHECK(pieces("a\xc2\xa0" "b") == strings{"a", "\xc2\xa0" "b"});  // NBSP is the optional prefix of letters
  CHECK(pieces("x\xe2\x80\x8b\xe2\x80\x8by") == strings{"x", "\xe2\x80\x8b\xe2\x80\x8b", "y"});  // ZWSP: not space, not letter
  CHECK(pieces("cafe\xcc\x81s") == strings{"cafe", "\xcc\x81s"});  // a combining mark is no letter: the prefix of the next
  CHECK(pieces("  \n\n  x") == strings{"  \n\n", " ", " x"});
  CHECK(pieces("1234567") == strings{"123", "456", "7"});
  CHECK(pieces("IT'S we'LL they're") == strings{"IT", "'S", " we", "'LL", " they", "'re"});
  CHECK(pieces("don't 'x") == strings{"don", "'t", " '", "x"});
  CHECK(pieces("Hello, world!!\n") == strings{"Hello", ",", " world", "!!\n"});
  CHECK(pieces("a = b;") == strings{"a", " =", " b", ";"});
  CHECK(pieces("") == strings{});
}

TEST_CASE("bpe: the qwen2 pre-tokenizer takes one digit a piece", "[bpe]") {
  CHECK(pieces("1234567", mm::bpe_pre_tokenizer::qwen2) == strings{"1", "2", "3", "4", "5", "6", "7"});
  CHECK(pieces("v2.10 ok", mm::bpe_pre_tokenizer::qwen2) == strings{"v", "2", ".", "1", "0", " ok"});
}

namespace {

// A vocabulary of the byte symbols a..z, space (Ġ), and what the merges make.
mm::bpe_tokenizer small_vocabulary(mm::bpe_pre_tokenizer pre = mm::bpe_pre_tokenizer::qwen2, bool add_bos = false) {
  std::vector<std::string> tokens;
  for (char c = 'a'; c <= 'z'; ++c) tokens.emplace_back(1, c);
  tokens.emplace_back("\xc4\xa0");  // 26: Ġ
  const std::vector<std::string> merges = {"a b", "b c", "ab c", "\xc4\xa0 a", "\xc4\xa0" "a b"};
  for (const char* t : {"ab", "bc", "abc", "\xc4\xa0" "a", "\xc4\xa0" "ab"}) tokens.emplace_back(t);  // 27..31
  tokens.emplace_back("<bos>");  // 32
  tokens.emplace_back("zz");     // 33: a token no merge makes
  tokens.emplace_back("<x>");    // 34: user-defined
  std::vector<mm::token_type> types(tokens.size(), mm::token_type::normal);
  types[32] = mm::token_type::control;
  types[34] = mm::token_type::user_defined;
  return mm::bpe_tokenizer(tokens, types, merges, pre, 32, 32, add_bos, false);
}

}  // namespace

TEST_CASE("bpe: merges by rank, ties to the leftmost pair", "[bpe]") {
  const auto v = small_vocabulary();
  CHECK(v.encode("abc") == std::vector<int>{29});       // a b (rank 0) first, then ab c
  CHECK(v.encode("bcab") == std::vector<int>{28, 27});  // bc and ab: no merge joins them
  CHECK(v.encode("abab") == std::vector<int>{27, 27});  // both pairs of rank 0
  CHECK(v.encode(" ab") == std::vector<int>{26, 27});   // a b (rank 0) before Ġ a (rank 3): Ġ, ab
  CHECK(v.encode(" a") == std::vector<int>{30});        // Ġ a
  CHECK(v.encode("zz") == std::vector<int>{25, 25});    // qwen2 merges: zz is a token but no merge makes it
  CHECK(v.decode(v.encode("abc ab zz")) == "abc ab zz");
}

TEST_CASE("bpe: of overlapping pairs of one rank the leftmost joins first", "[bpe]") {
  const mm::bpe_tokenizer v({"a", "aa"}, {}, {"a a"}, mm::bpe_pre_tokenizer::qwen2, -1, -1, false, false);
  CHECK(v.encode("aaa") == std::vector<int>{1, 0});  // (aa) a, not a (aa)
  CHECK(v.encode("aaaaa") == std::vector<int>{1, 1, 0});
}

TEST_CASE("bpe: the longest user-defined token is cut out first", "[bpe]") {
  std::vector<std::string> tokens = {"a", "b", "y", "<x>", "<x>y"};
  std::vector<mm::token_type> types(tokens.size(), mm::token_type::normal);
  types[3] = types[4] = mm::token_type::user_defined;
  const mm::bpe_tokenizer v(tokens, types, {}, mm::bpe_pre_tokenizer::qwen2, -1, -1, false, false);
  CHECK(v.encode("a<x>yb<x>") == std::vector<int>{0, 4, 1, 3});
}

TEST_CASE("bpe: llama3 takes a piece that is a token whole (ignore_merges)", "[bpe]") {
  const auto v = small_vocabulary(mm::bpe_pre_tokenizer::llama3, true);
  CHECK(v.encode("zz") == std::vector<int>{32, 33});  // BOS, then the piece as one token
  CHECK(v.encode("zz", false) == std::vector<int>{33});
  CHECK(v.encode("") == std::vector<int>{32});
}

TEST_CASE("bpe: user-defined tokens are cut out first, control tokens never", "[bpe]") {
  const auto v = small_vocabulary();
  CHECK(v.encode("ab<x>c") == std::vector<int>{27, 34, 2});
  CHECK(v.encode("<bos>") == std::vector<int>{1, 14, 18});                  // only b, o, s survive as one-byte tokens
  CHECK(v.decode(std::vector<int>{32, 27, 34}) == "ab<x>");
  CHECK(v.decode(std::vector<int>{32, 27}, true) == "<bos>ab");
}

TEST_CASE("bpe: malformed vocabularies and GGUF keys are refused", "[bpe]") {
  const std::vector<mm::token_type> none;
  CHECK(mixprec::test::error_code_of([&] { (void)mm::bpe_tokenizer({"a", "a"}, none, {}, mm::bpe_pre_tokenizer::llama3, -1, -1, false, false); }) == errc::invalid_argument);
  // A merge without a space between two texts joins nothing (llama.cpp stores it and never matches it).
  CHECK(mm::bpe_tokenizer({"a", "b", "ab"}, none, {"ab", "a "}, mm::bpe_pre_tokenizer::qwen2, -1, -1, false, false).encode("ab") == std::vector<int>{0, 1});
  CHECK(mixprec::test::error_code_of([&] { (void)mm::bpe_tokenizer({"a"}, none, {}, mm::bpe_pre_tokenizer::llama3, 3, -1, false, false); }) == errc::invalid_argument);

  const auto strings_array = [](std::vector<std::string> v) {
    gguf::array a;
    a.type = gguf::value_type::string;
    for (auto& s : v) a.items.push_back(gguf::value{std::move(s)});
    return gguf::value{std::move(a)};
  };
  gguf::metadata kvs;
  kvs.set("tokenizer.ggml.model", gguf::value{std::string("gpt2")});
  kvs.set("tokenizer.ggml.pre", gguf::value{std::string("qwen2")});
  kvs.set("tokenizer.ggml.tokens", strings_array({"a", "b", "ab"}));
  CHECK(mixprec::test::error_code_of([&] { (void)mm::bpe_tokenizer::from_gguf(kvs); }) == errc::parse_error);  // no merges
  kvs.set("tokenizer.ggml.merges", strings_array({"a b"}));
  const auto v = mm::bpe_tokenizer::from_gguf(kvs);
  CHECK(v.encode("ab") == std::vector<int>{2});

  // BOS/EOS: llama.cpp's default id 11; added by default for llama-bpe, not for qwen2; an id outside the
  // vocabulary is refused (as bos_of refuses it); an empty token text becomes "[EMPTY_i]".
  std::vector<std::string> many = {"a", "b", "ab", ""};
  for (int i = 0; i < 12; ++i) many.push_back("t" + std::to_string(i));
  kvs.set("tokenizer.ggml.tokens", strings_array(many));
  const auto qwen = mm::bpe_tokenizer::from_gguf(kvs);
  CHECK(qwen.bos() == 11);
  CHECK_FALSE(qwen.add_bos());
  CHECK(qwen.text(3) == "[EMPTY_3]");
  kvs.set("tokenizer.ggml.pre", gguf::value{std::string("llama-bpe")});
  const auto llama3 = mm::bpe_tokenizer::from_gguf(kvs);
  CHECK(llama3.add_bos());
  CHECK(llama3.encode("ab") == std::vector<int>{11, 2});
  kvs.set("tokenizer.ggml.add_bos_token", gguf::value{false});
  CHECK(mm::bpe_tokenizer::from_gguf(kvs).encode("ab") == std::vector<int>{2});
  kvs.set("tokenizer.ggml.bos_token_id", gguf::value{std::uint32_t{99}});
  CHECK(mixprec::test::error_code_of([&] { (void)mm::bpe_tokenizer::from_gguf(kvs); }) == errc::parse_error);
  kvs.erase("tokenizer.ggml.bos_token_id");

  // Arrays built by hand whose items are not of the declared type: refused, never read.
  gguf::array bad_types;
  bad_types.type = gguf::value_type::i32;
  for (std::size_t i = 0; i < many.size(); ++i) bad_types.items.push_back(gguf::value{std::uint32_t{1}});
  kvs.set("tokenizer.ggml.token_type", gguf::value{bad_types});
  CHECK(mixprec::test::error_code_of([&] { (void)mm::bpe_tokenizer::from_gguf(kvs); }) == errc::parse_error);
  kvs.erase("tokenizer.ggml.token_type");
  gguf::value merges = strings_array({"a b"});
  std::get<gguf::array>(merges.v).items.push_back(gguf::value{std::int32_t{7}});
  kvs.set("tokenizer.ggml.merges", merges);
  CHECK(mixprec::test::error_code_of([&] { (void)mm::bpe_tokenizer::from_gguf(kvs); }) == errc::parse_error);
  kvs.set("tokenizer.ggml.merges", strings_array({"a b"}));
  kvs.set("tokenizer.ggml.pre", gguf::value{std::string("deepseek-llm")});
  CHECK(mixprec::test::error_code_of([&] { (void)mm::bpe_tokenizer::from_gguf(kvs); }) == errc::unsupported);
  kvs.set("tokenizer.ggml.model", gguf::value{std::string("llama")});
  CHECK(mixprec::test::error_code_of([&] { (void)mm::bpe_tokenizer::from_gguf(kvs); }) == errc::unsupported);
}
