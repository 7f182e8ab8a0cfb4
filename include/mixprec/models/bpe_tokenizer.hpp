// The byte-level BPE vocabulary of GGUF files with tokenizer.ggml.model = "gpt2" (Llama 3, Qwen 2/2.5/3),
// with encode and decode, to turn calibration text into the token ids llama.cpp's llama_tokenize gives
// (add_special true, parse_special false: the text is never parsed for control tokens).
//
// encode (llama.cpp's src/llama-vocab.cpp, llm_tokenizer_bpe, and src/unicode.cpp; GPT-2's byte-level BPE,
// Radford et al. 2019):
//   1. USER_DEFINED tokens (token_type 4) are cut out of the text first, longest text first, every
//      occurrence left to right: llama.cpp does this even when it does not parse special tokens.
//   2. Each remaining fragment is decoded from UTF-8 as llama.cpp decodes it: a byte that does not start a
//      well-formed sequence becomes U+FFFD, and decoding goes on at the next byte; overlong forms and
//      surrogates are taken as they decode. (A 4-byte form above U+10FFFF, on which llama.cpp aborts,
//      becomes U+FFFD here.)
//   3. The pre-tokenizer splits the code points (tokenizer.ggml.pre):
//        llama-bpe, llama3 (Llama 3):  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//                                      ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//        qwen2 (Qwen 1.5 to 3):        the same with \p{N} for \p{N}{1,3} (one digit a piece)
//      run as llama.cpp's hand-written splitters run it: \p{L} and \p{N} are Unicode 15.1's categories L
//      and N (models/detail/unicode_ranges.hpp), \s its 25 White_Space code points, numbers grouped by
//      three from the left, the contractions' case folded for ASCII only.
//   4. Each piece's UTF-8 bytes are mapped to GPT-2's printable code points (bytes_to_unicode: ' ' is
//      U+0120 "Ġ", '\n' U+010A "Ċ"), then merged: repeatedly the adjacent pair of lowest rank in
//      tokenizer.ggml.merges (ties: the leftmost) is joined, until no pair has a rank. With "llama-bpe" a
//      piece that is a token as a whole is taken without merging (ignore_merges).
//   5. Each remaining symbol becomes its token's id; a symbol that is no token gives one id per byte of
//      its mapped text that is a token of one byte (llama.cpp's fallback; other bytes are dropped).
//   6. BOS first when add_bos (tokenizer.ggml.add_bos_token; default true for llama-bpe, false for
//      qwen2), EOS last when add_eos (tokenizer.ggml.add_eos_token, default false).
// Not done as llama.cpp does: tokens it re-types as CONTROL by their text at load (end-of-generation and
// fill-in-the-middle names such as "</s>") keep the type the file gives them.
// Checked against llama.cpp's libllama and the test vocabularies of its source (tests/interop/bpe_tokenizer_test.cpp).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mixprec/error.hpp"
#include "mixprec/io/gguf.hpp"
#include "mixprec/models/detail/symbol_merge.hpp"
#include "mixprec/models/detail/unicode_ranges.hpp"
#include "mixprec/models/tokenizer.hpp"

namespace mixprec::models {

// The pre-tokenizers implemented (llama.cpp's LLAMA_VOCAB_PRE_TYPE_LLAMA3 and _QWEN2).
enum class bpe_pre_tokenizer { llama3, qwen2 };

namespace detail {

[[nodiscard]] inline bool in_ranges(std::span<const code_point_range> ranges, std::uint32_t cp) noexcept {
  const auto it = std::upper_bound(ranges.begin(), ranges.end(), cp, [](std::uint32_t c, const code_point_range& r) { return c < r.first; });
  return it != ranges.begin() && cp <= std::prev(it)->last;
}
[[nodiscard]] inline bool is_letter(std::uint32_t cp) noexcept { return in_ranges(letter_ranges, cp); }
[[nodiscard]] inline bool is_number(std::uint32_t cp) noexcept { return in_ranges(number_ranges, cp); }
// Unicode's White_Space property (25 code points), llama.cpp's \s.
[[nodiscard]] inline bool is_white_space(std::uint32_t cp) noexcept {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// The code points of text, decoded as llama.cpp's unicode_cpts_from_utf8 decodes (see the banner, step 2).
[[nodiscard]] inline std::vector<std::uint32_t> code_points(std::string_view text) {
  std::vector<std::uint32_t> out;
  out.reserve(text.size());
  const auto byte = [&](std::size_t i) { return static_cast<std::uint8_t>(text[i]); };
  const auto continuation = [&](std::size_t i) { return i < text.size() && (byte(i) & 0xC0) == 0x80; };
  for (std::size_t i = 0; i < text.size();) {
    const std::uint8_t b = byte(i);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (b < 0x80) {
      n = 1, cp = b;
    } else if ((b & 0xE0) == 0xC0 && continuation(i + 1)) {
      n = 2, cp = (std::uint32_t{b} & 0x1F) << 6 | (byte(i + 1) & 0x3F);
    } else if ((b & 0xF0) == 0xE0 && continuation(i + 1) && continuation(i + 2)) {
      n = 3, cp = (std::uint32_t{b} & 0x0F) << 12 | (std::uint32_t{byte(i + 1)} & 0x3F) << 6 | (byte(i + 2) & 0x3F);
    } else if ((b & 0xF8) == 0xF0 && continuation(i + 1) && continuation(i + 2) && continuation(i + 3)) {
      n = 4, cp = (std::uint32_t{b} & 0x07) << 18 | (std::uint32_t{byte(i + 1)} & 0x3F) << 12 | (std::uint32_t{byte(i + 2)} & 0x3F) << 6 |
                  (byte(i + 3) & 0x3F);
      if (cp > 0x10FFFF) n = 0;
    }
    if (n == 0) {
      out.push_back(0xFFFD);
      ++i;
    } else {
      out.push_back(cp);
      i += n;
    }
  }
  return out;
}

// Appends cp (at most U+10FFFF) as UTF-8.
inline void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// GPT-2's bytes_to_unicode: byte b as the UTF-8 of its printable code point (the printable bytes
// 0x21-0x7E, 0xA1-0xAC and 0xAE-0xFF stand for themselves; the other 68, in order, for U+0100 on).
[[nodiscard]] inline const std::array<std::string, 256>& byte_symbols() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    std::uint32_t next = 0x100;
    for (std::uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      append_utf8(t[b], printable ? b : next++);
    }
    return t;
  }();
  return table;
}

// The pieces [begin, end) of cps the pre-tokenizer cuts (see the banner, step 3).
[[nodiscard]] inline std::vector<std::pair<std::size_t, std::size_t>> pre_tokenize(std::span<const std::uint32_t> cps, bpe_pre_tokenizer pre) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  const std::size_t end = cps.size();
  constexpr std::uint32_t none = 0xFFFFFFFF;  // past the end: no character, no class
  const auto at = [&](std::size_t p) { return p < end ? cps[p] : none; };
  const auto letter = [&](std::size_t p) { return p < end && is_letter(cps[p]); };
  const auto number = [&](std::size_t p) { return p < end && is_number(cps[p]); };
  const auto space = [&](std::size_t p) { return p < end && is_white_space(cps[p]); };
  const auto lower = [](std::uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; };
  std::size_t start = 0;
  const auto emit = [&](std::size_t e) {
    if (e > start) out.emplace_back(start, e);
    start = e;
  };
  for (std::size_t pos = 0; pos < end; pos = start) {
    const std::uint32_t c = cps[pos];
    if (c == '\'' && pos + 1 < end) {  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
      const std::uint32_t n1 = lower(at(pos + 1)), n2 = pos + 2 < end ? lower(at(pos + 2)) : none;
      if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
        emit(pos + 2);
        continue;
      }
      if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
        emit(pos + 3);
        continue;
      }
    }
    if (c != '\r' && c != '\n' && !number(pos) && (letter(pos) || letter(pos + 1))) {  // [^\r\n\p{L}\p{N}]?\p{L}+
      std::size_t p = pos + 1;
      while (letter(p)) ++p;
      emit(p);
      continue;
    }
    if (number(pos)) {  // \p{N}{1,3} (llama3) or \p{N} (qwen2)
      const std::size_t group = pre == bpe_pre_tokenizer::qwen2 ? 1 : 3;
      std::size_t p = pos;
      while (number(p) && p - pos < group) ++p;
      emit(p);
      continue;
    }
    // " ?[^\s\p{L}\p{N}]+[\r\n]*"
    const auto other = [&](std::size_t p) { return p < end && !space(p) && !letter(p) && !number(p); };
    if (other(c == ' ' ? pos + 1 : pos)) {
      std::size_t p = pos + (c == ' ' ? 1 : 0);
      while (other(p)) ++p;
      while (at(p) == '\r' || at(p) == '\n') ++p;
      emit(p);
      continue;
    }
    std::size_t n = 0, last_newline = 0;  // the run of white space from pos
    while (space(pos + n)) {
      if (cps[pos + n] == '\r' || cps[pos + n] == '\n') last_newline = pos + n + 1;
      ++n;
    }
    if (last_newline > 0) {  // \s*[\r\n]+
      emit(last_newline);
    } else if (n > 1 && pos + n < end) {  // \s+(?!\S): the last space goes with what follows
      emit(pos + n - 1);
    } else if (n > 0) {  // \s+
      emit(pos + n);
    } else {
      emit(pos + 1);
    }
  }
  return out;
}

}  // namespace detail

class bpe_tokenizer {
 public:
  bpe_tokenizer() = default;
  // tokens[i] is token i's text in GPT-2's byte-level form ("Ġthe"); types has as many entries (empty: all
  // NORMAL); merges are "left right" pairs of token texts, rank = index (the first of equal pairs wins;
  // an entry without a space between two texts joins nothing, as in llama.cpp). bos / eos: ids, or -1
  // for none. Throws errc::invalid_argument for lengths that differ, an id out of range, add_bos / add_eos
  // without the token, or two tokens of one text.
  bpe_tokenizer(std::vector<std::string> tokens, std::vector<token_type> types, const std::vector<std::string>& merges,
                bpe_pre_tokenizer pre, int bos, int eos, bool add_bos, bool add_eos)
      : tokens_(std::move(tokens)), types_(std::move(types)), pre_(pre), bos_(bos), eos_(eos), add_bos_(add_bos), add_eos_(add_eos) {
    const std::size_t n = tokens_.size();
    if (types_.empty()) types_.assign(n, token_type::normal);
    if (types_.size() != n)
      throw error(errc::invalid_argument, "bpe_tokenizer: " + std::to_string(n) + " tokens, " + std::to_string(types_.size()) + " types");
    for (int id : {bos_, eos_})
      if (id < -1 || id >= static_cast<int>(n))
        throw error(errc::invalid_argument, "bpe_tokenizer: special token id " + std::to_string(id) + " outside the vocabulary of " + std::to_string(n));
    if ((add_bos_ && bos_ < 0) || (add_eos_ && eos_ < 0)) throw error(errc::invalid_argument, "bpe_tokenizer: add_bos / add_eos without the token");
    ids_.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
      if (!ids_.emplace(tokens_[i], static_cast<int>(i)).second)
        throw error(errc::invalid_argument, "bpe_tokenizer: tokens " + std::to_string(ids_.at(tokens_[i])) + " and " + std::to_string(i) +
                                                " have the same text (tokenizer.ggml.tokens)");
    ranks_.reserve(merges.size());
    for (std::size_t i = 0; i < merges.size(); ++i) {
      const std::size_t space = merges[i].find(' ', 1);
      if (space != std::string::npos && space + 1 < merges[i].size()) ranks_.emplace(merges[i], static_cast<int>(i));
    }
    for (std::size_t i = 0; i < n; ++i)
      if (types_[i] == token_type::user_defined && !tokens_[i].empty()) user_defined_.push_back(static_cast<int>(i));
    std::stable_sort(user_defined_.begin(), user_defined_.end(),
                     [&](int a, int b) { return tokens_[static_cast<std::size_t>(a)].size() > tokens_[static_cast<std::size_t>(b)].size(); });
  }

  // The vocabulary of a GGUF's metadata: tokenizer.ggml.model must be "gpt2" and tokenizer.ggml.pre one of
  // "llama-bpe", "llama3", "llama-v3" (Llama 3) or "qwen2" (Qwen) (else errc::unsupported); tokens and
  // merges (arrays of strings) required, token_type optional; BOS and add_bos as bos_of reads them (id
  // default 11; added by default for Llama 3's pre-tokenizers, not for qwen2), eos_token_id (default 11),
  // add_eos_token (default false). As llama.cpp loads them, an empty token text becomes
  // "[EMPTY_i]". errc::parse_error names the key that is missing or malformed (and, like bos_of, an id
  // outside the vocabulary, which llama.cpp would ignore with a warning).
  [[nodiscard]] static bpe_tokenizer from_gguf(const gguf::metadata& kvs, const std::string& name = "GGUF") {
    const detail::vocab_keys keys(kvs, name);
    const std::string* model = keys.string("tokenizer.ggml.model");
    if (!model || *model != "gpt2")
      keys.fail(errc::unsupported, "tokenizer.ggml.model is '" + (model ? *model : std::string("(none)")) + "'; bpe_tokenizer reads 'gpt2'");
    const std::string* pre_name = keys.string("tokenizer.ggml.pre");
    const std::string pre_text = pre_name ? *pre_name : "default";
    bpe_pre_tokenizer pre{};
    if (pre_text == "llama-bpe" || pre_text == "llama3" || pre_text == "llama-v3") {
      pre = bpe_pre_tokenizer::llama3;
    } else if (pre_text == "qwen2") {
      pre = bpe_pre_tokenizer::qwen2;
    } else {
      keys.fail(errc::unsupported, "tokenizer.ggml.pre '" + pre_text + "' is not implemented (llama-bpe, llama3, llama-v3 and qwen2 are)");
    }
    std::vector<std::string> tokens = keys.strings("tokenizer.ggml.tokens");
    for (std::size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i].empty()) tokens[i] = "[EMPTY_" + std::to_string(i) + "]";
    const std::vector<std::string> merges = keys.strings("tokenizer.ggml.merges");
    std::vector<token_type> types = keys.types(tokens.size());
    const std::size_t n = tokens.size();
    const vocab_bos b = bos_of(kvs, static_cast<int>(n), name);  // the one rule for BOS and add_bos
    const int fallback = n > 11 ? 11 : -1;                         // llama.cpp's default id for gpt2 vocabularies
    const int bos = b.id < static_cast<int>(n) ? b.id : -1, eos = keys.id("tokenizer.ggml.eos_token_id", fallback, n);
    const bool add_bos = b.add && bos >= 0;
    const bool add_eos = keys.flag("tokenizer.ggml.add_eos_token", false) && eos >= 0;
    try {
      return bpe_tokenizer(std::move(tokens), std::move(types), merges, pre, bos, eos, add_bos, add_eos);
    } catch (const error& e) {
      throw e.in_context(name, errc::parse_error);
    }
  }
  [[nodiscard]] static bpe_tokenizer from_gguf(const gguf::file& g) { return from_gguf(g.kvs(), "GGUF '" + g.path() + "'"); }
  [[nodiscard]] static bpe_tokenizer from_gguf(const std::string& path) { return from_gguf(gguf::file::open(path)); }

  [[nodiscard]] int size() const noexcept { return static_cast<int>(tokens_.size()); }
  [[nodiscard]] int bos() const noexcept { return bos_; }
  [[nodiscard]] int eos() const noexcept { return eos_; }
  [[nodiscard]] bool add_bos() const noexcept { return add_bos_; }
  [[nodiscard]] bool add_eos() const noexcept { return add_eos_; }
  [[nodiscard]] bpe_pre_tokenizer pre_tokenizer() const noexcept { return pre_; }
  [[nodiscard]] const std::string& text(int id) const { return tokens_.at(checked(id)); }
  [[nodiscard]] token_type type(int id) const { return types_.at(checked(id)); }
  [[nodiscard]] std::optional<int> find(std::string_view text) const {
    const auto it = ids_.find(std::string(text));
    return it == ids_.end() ? std::nullopt : std::optional<int>(it->second);
  }

  // The ids of text (UTF-8, or any bytes: see the banner); with_special: BOS / EOS as add_bos / add_eos.
  [[nodiscard]] std::vector<int> encode(std::string_view text, bool with_special = true) const {
    std::vector<int> out;
    if (with_special && add_bos_) out.push_back(bos_);
    // 1. USER_DEFINED tokens out first: fragments of raw text (id -1) and tokens.
    std::vector<std::pair<std::string_view, int>> parts{{text, -1}};
    for (int id : user_defined_) {
      const std::string& t = tokens_[static_cast<std::size_t>(id)];
      std::vector<std::pair<std::string_view, int>> next;
      for (const auto& [s, sid] : parts) {
        if (sid >= 0) {
          next.emplace_back(s, sid);
          continue;
        }
        std::size_t from = 0;
        for (std::size_t at = s.find(t); at != std::string_view::npos; at = s.find(t, from)) {
          if (at > from) next.emplace_back(s.substr(from, at - from), -1);
          next.emplace_back(std::string_view{}, id);
          from = at + t.size();
        }
        if (from < s.size()) next.emplace_back(s.substr(from), -1);
      }
      parts = std::move(next);
    }
    for (const auto& [s, id] : parts) {
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
      const std::vector<std::uint32_t> cps = detail::code_points(s);
      for (const auto& [b, e] : detail::pre_tokenize(cps, pre_)) {
        std::string word;
        for (std::size_t i = b; i < e; ++i) {
          std::string utf8;
          detail::append_utf8(utf8, cps[i]);
          for (const char ch : utf8) word += detail::byte_symbols()[static_cast<std::uint8_t>(ch)];
        }
        merge(word, out);
      }
    }
    if (with_special && add_eos_) out.push_back(eos_);
    return out;
  }

  // The bytes of ids: each token's text mapped back through bytes_to_unicode; CONTROL, UNKNOWN and UNUSED
  // tokens give nothing unless special (then their text as it is); USER_DEFINED tokens their text.
  [[nodiscard]] std::string decode(std::span<const int> ids, bool special = false) const {
    std::string out;
    for (int id : ids) {
      const token_type t = type(id);
      const std::string& s = tokens_[static_cast<std::size_t>(id)];
      if (t == token_type::control || t == token_type::unknown || t == token_type::unused) {
        if (special) out += s;
        continue;
      }
      if (t == token_type::user_defined) {
        out += s;
        continue;
      }
      for (const std::uint32_t cp : detail::code_points(s)) out += static_cast<char>(byte_of(cp));
    }
    return out;
  }

 private:
  // BPE on one pre-tokenized piece (its byte-level text), its ids appended to out.
  void merge(const std::string& word, std::vector<int>& out) const {
    if (pre_ == bpe_pre_tokenizer::llama3)  // ignore_merges
      if (const auto it = ids_.find(word); it != ids_.end()) {
        out.push_back(it->second);
        return;
      }
    const auto merged = detail::merge_symbols(word, [&](std::string_view l, std::string_view r) -> std::optional<double> {
      std::string key;
      key.reserve(l.size() + 1 + r.size());
      key.append(l).append(1, ' ').append(r);
      const auto it = ranks_.find(key);
      if (it == ranks_.end()) return std::nullopt;
      return -static_cast<double>(it->second);  // the lowest rank first
    });
    for (const std::string_view piece : merged) {
      if (const auto it = ids_.find(std::string(piece)); it != ids_.end()) {
        out.push_back(it->second);
        continue;
      }
      for (const char ch : piece)  // llama.cpp's fallback: the one-byte tokens among the piece's bytes
        if (const auto one = ids_.find(std::string(1, ch)); one != ids_.end()) out.push_back(one->second);
    }
  }

  // The byte a bytes_to_unicode code point stands for ('?' for one that stands for none).
  [[nodiscard]] static std::uint8_t byte_of(std::uint32_t cp) {
    static const std::unordered_map<std::uint32_t, std::uint8_t> table = [] {
      std::unordered_map<std::uint32_t, std::uint8_t> t;
      for (int b = 0; b < 256; ++b) t.emplace(detail::code_points(detail::byte_symbols()[static_cast<std::size_t>(b)])[0], static_cast<std::uint8_t>(b));
      return t;
    }();
    const auto it = table.find(cp);
    return it == table.end() ? static_cast<std::uint8_t>('?') : it->second;
  }
  [[nodiscard]] std::size_t checked(int id) const {
    if (id < 0 || id >= size()) throw error(errc::invalid_argument, "bpe_tokenizer: token id " + std::to_string(id) + " out of range");
    return static_cast<std::size_t>(id);
  }

  std::vector<std::string> tokens_;
  std::vector<token_type> types_;
  std::unordered_map<std::string, int> ids_;
  std::unordered_map<std::string, int> ranks_;  // "left right" -> rank
  std::vector<int> user_defined_;               // USER_DEFINED ids, longest text first
  bpe_pre_tokenizer pre_ = bpe_pre_tokenizer::llama3;
  int bos_ = -1, eos_ = -1;
  bool add_bos_ = false, add_eos_ = false;
};

}  // namespace mixprec::models
