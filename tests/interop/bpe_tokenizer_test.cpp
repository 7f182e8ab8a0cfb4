// mixprec's byte-level BPE tokenizer (models/bpe_tokenizer.hpp) against llama.cpp itself, on the real
// vocabularies of Llama 3 (pre-tokenizer "llama-bpe", 128,256 tokens) and Qwen 2 ("qwen2", 151,936) that
// llama.cpp's source ships as vocabulary-only GGUFs (models/ggml-vocab-*.gguf in the source bundle that
// tests/interop/llama_quantize.sh unpacks into $MIXPREC_INTEROP_CACHE/llama.cpp-src):
//   1. every text of llama.cpp's own tokenizer tests (models/ggml-vocab-*.gguf.inp) gives the ids its
//      .out file expects (add_special and parse_special false, as its tests/test-tokenizer-0.cpp runs);
//   2. 3,000 seeded random texts (words in mixed case, contractions, digit runs, whitespace runs with
//      tabs, CR/LF and Unicode spaces, punctuation, code, accented, Cyrillic, Devanagari, CJK, emoji,
//      combining marks, invalid UTF-8, user-defined tokens) give llama_tokenize's ids (libllama loaded
//      with vocab_only; add_special true, parse_special false: what calibration text gets).
//   3. the SentencePiece tokenizer (models/tokenizer.hpp) both ways on the llama-spm and phi-3 vocabularies.
// Skipped (with a warning) where the source bundle could not be fetched or built (llama_quantize.sh exit 77).
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "apps/llm_study/llama_cpp.hpp"
#include "interop/llama_cpp_source.hpp"
#include "mixprec/models/bpe_tokenizer.hpp"
#include "mixprec/models/tokenizer.hpp"

namespace fs = std::filesystem;
namespace mm = mixprec::models;
namespace llama_cpp = mixprec_apps::llama_cpp;

namespace {

using mixprec::test::slurp;

// The folder of llama.cpp's test vocabularies, or empty when the source bundle is not here.
fs::path vocab_dir() {
  const fs::path src = mixprec::test::llama_cpp_source("models/ggml-vocab-llama-bpe.gguf");
  return src.empty() ? src : src / "models";
}

// llama.cpp's tests/test-tokenizer-0.cpp format: texts joined by "\n__ggml_vocab_test__\n"; one line of
// space-separated ids per text.
std::vector<std::pair<std::string, std::vector<int>>> read_cases(const fs::path& inp, const fs::path& out) {
  const std::string raw = slurp(inp), sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (std::size_t pos = 0; pos < raw.size();) {
    const std::size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      texts.push_back(raw.substr(pos));
      break;
    }
    texts.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::ifstream o(out);
  std::vector<std::pair<std::string, std::vector<int>>> cases;
  std::string line;
  for (std::size_t i = 0; std::getline(o, line); ++i) {
    REQUIRE(i < texts.size());
    std::vector<int> ids;
    std::istringstream s(line);
    for (int id; s >> id;) ids.push_back(id);
    cases.emplace_back(texts[i], ids);
  }
  REQUIRE(cases.size() == texts.size());
  return cases;
}

llama_cpp::model_params vocab_only() {
  auto mp = llama_cpp::library().model_default_params();
  mp.vocab_only = true;
  return mp;
}

void append(std::string& s, std::uint32_t cp) { mm::detail::append_utf8(s, cp); }

// A random text of a few dozen parts.
std::string random_text(std::mt19937_64& rng, bool with_pad_tokens) {
  const auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  const auto range = [&](std::uint32_t lo, std::uint32_t hi) { return lo + static_cast<std::uint32_t>(rng() % (hi - lo + 1)); };
  static const char* const words[] = {"the", "The", "THE", "quantize", "Layer", "llama", "x", "I", "a", "hello", "World", "naïve", "über"};
  static const char* const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ll", "'x", "'"};
  static const char* const spaces[] = {" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\xc2\xa0", "\xe3\x80\x80", "\xe2\x80\x89", "\x0b", "\x0c"};
  static const char* const code[] = {"for (int i = 0; i < n; ++i) {\n    x += a[i];\n}", "def f(x):\n\treturn x**2  # sq", "a->b", "::", "<=>", "x_1", "0x1F", "1e-5", "std::vector<int>"};
  static const char* const invalid[] = {"\xff", "\x80", "\xe4\xb8", "\xc0\x80", "\xed\xa0\x80", "\xf0\x9f", "\xc3"};
  std::string s;
  const std::size_t parts = 1 + pick(40);
  for (std::size_t p = 0; p < parts; ++p) {
    switch (pick(14)) {
      case 0: case 1: s += words[pick(std::size(words))]; break;
      case 2: s += contractions[pick(std::size(contractions))]; break;
      case 3: for (std::size_t i = 0, n = 1 + pick(12); i < n; ++i) s += static_cast<char>('0' + pick(10)); break;
      case 4: case 5: s += spaces[pick(std::size(spaces))]; break;
      case 6: for (std::size_t i = 0, n = 1 + pick(4); i < n; ++i) s += "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"[pick(32)]; break;
      case 7: s += code[pick(std::size(code))]; break;
      case 8: for (std::size_t i = 0, n = 1 + pick(6); i < n; ++i) append(s, range(0x4E00, 0x9FFF)); break;  // CJK
      case 9: append(s, range(0x1F300, 0x1F64F)); break;                                                    // emoji
      case 10: for (std::size_t i = 0, n = 1 + pick(6); i < n; ++i) append(s, pick(2) ? range(0x0410, 0x044F) : range(0x00C0, 0x00FF)); break;
      case 11: append(s, range(0x0915, 0x0939)), append(s, range(0x093E, 0x094C)); break;  // Devanagari with a vowel sign (Mc/Mn)
      case 12: append(s, pick(2) ? range(0x0300, 0x036F) : (pick(2) ? 0x00B2u : 0x2167u)); break;  // combining marks, No, Nl
      case 13:
        if (pick(3) == 0) s += invalid[pick(std::size(invalid))];
        else if (with_pad_tokens) s += "[PAD1517" + std::to_string(10 + pick(90)) + "]";
        else s += "<|begin_of_text|>";  // a control token's text: plain text when not parsing specials
        break;
    }
  }
  return s;
}

// Every text of llama.cpp's tests of the vocabulary `gguf` gives the ids its .out file expects, from
// `encode` (text -> ids without BOS/EOS) and from llama_tokenize.
template <class Encode>
void check_llama_cases(const fs::path& gguf, Encode encode) {
  const llama_cpp::model ref(gguf.string(), vocab_only());
  const auto cases = read_cases(gguf.string() + ".inp", gguf.string() + ".out");
  CHECK(cases.size() > 40);
  for (const auto& [text, ids] : cases) {
    INFO(gguf.filename().string() << ": '" << text << "'");
    CHECK(encode(text) == ids);
    const auto theirs = ref.tokenize(text, false, false);
    CHECK(std::vector<int>(theirs.begin(), theirs.end()) == ids);
  }
}

// 1,500 random texts (seeded) give llama_tokenize's ids (add_special true, parse_special false) from
// `encode` (text -> ids with the vocabulary's BOS/EOS); the first differences are shown.
template <class Encode>
void check_random_texts(const fs::path& gguf, std::uint64_t seed, bool pad_tokens, Encode encode) {
  const llama_cpp::model ref(gguf.string(), vocab_only());
  std::mt19937_64 rng(seed);
  std::size_t differ = 0, ids = 0;
  for (int i = 0; i < 1500; ++i) {
    const std::string text = random_text(rng, pad_tokens);
    const auto theirs = ref.tokenize(text, true, false);
    const std::vector<int> expected(theirs.begin(), theirs.end());
    const std::vector<int> ours = encode(text);
    ids += ours.size();
    if (ours != expected && differ++ < 5) {
      INFO(gguf.filename().string() << " text " << i << ": '" << text << "'");
      CHECK(ours == expected);
    }
  }
  INFO(gguf.filename().string() << ": " << ids << " ids");
  CHECK(differ == 0);
  CHECK(ids > 30000);
}

}  // namespace

TEST_CASE("bpe tokenizer: llama.cpp's own tokenizer tests and 3,000 random texts, llama-bpe and qwen2 vocabularies", "[bpe][interop]") {
  const fs::path dir = vocab_dir();
  if (dir.empty()) {
    WARN("SKIPPED: llama.cpp's source bundle (its test vocabularies) is not here");
    return;
  }
  for (const char* name : {"llama-bpe", "qwen2"}) {
    const fs::path gguf = dir / (std::string("ggml-vocab-") + name + ".gguf");
    const auto tok = mm::bpe_tokenizer::from_gguf(gguf.string());
    REQUIRE(llama_cpp::model(gguf.string(), vocab_only()).n_vocab() == tok.size());
    check_llama_cases(gguf, [&](const std::string& t) { return tok.encode(t, false); });
    check_random_texts(gguf, 2026, std::string(name) == "qwen2", [&](const std::string& t) { return tok.encode(t); });
  }
}

// The SentencePiece tokenizer (models/tokenizer.hpp) the same way, on LLaMA 1/2's vocabulary (llama-spm,
// 32,000 tokens) and Phi-3's (32,064).
TEST_CASE("spm tokenizer: llama.cpp's own tokenizer tests and 3,000 random texts, llama-spm and phi-3 vocabularies", "[spm][interop]") {
  const fs::path dir = vocab_dir();
  if (dir.empty()) {
    WARN("SKIPPED: llama.cpp's source bundle (its test vocabularies) is not here");
    return;
  }
  for (const char* name : {"llama-spm", "phi-3"}) {
    const fs::path gguf = dir / (std::string("ggml-vocab-") + name + ".gguf");
    const auto tok = mm::spm_tokenizer::from_gguf(gguf.string());
    REQUIRE(llama_cpp::model(gguf.string(), vocab_only()).n_vocab() == tok.size());
    check_llama_cases(gguf, [&](const std::string& t) { return tok.encode(t, {.add_bos = false}); });
    check_random_texts(gguf, 2027, false, [&](const std::string& t) { return tok.encode(t); });
  }
}
