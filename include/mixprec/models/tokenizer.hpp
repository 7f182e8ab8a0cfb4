// The SentencePiece-style vocabulary of LLaMA GGUF files (tokenizer.ggml.model = "llama": pieces with
// U+2581 for spaces, scores, token types, "<0xHH>" byte tokens), with encode and decode, to turn
// calibration text into token ids.
//
// encode (llama2.c's run.c encode and llama.cpp's SPM tokenizer compute the same ids):
//   1. a space is put before the text (add_space_prefix, the vocabulary's tokenizer.ggml.add_space_prefix,
//      default true), then every ' ' becomes U+2581 ("\xe2\x96\x81");
//   2. the text is split into UTF-8 characters (the length from the lead byte: 0xxxxxxx 1, 110xxxxx 2,
//      1110xxxx 3, 11110xxx 4, anything else 1; clamped at the end of the text);
//   3. repeatedly, of all adjacent pairs whose concatenation is a piece of the vocabulary, the one whose
//      piece has the highest score is merged (ties: the leftmost pair), until no pair merges;
//   4. each remaining symbol becomes its piece's id, or, when it is no piece, one "<0xHH>" byte token per
//      byte (the unknown token when the vocabulary lacks that byte token);
//   5. BOS first when add_bos (tokenizer.ggml.add_bos_token, default true). Text is never parsed for
//      special tokens ("<s>" in the text is three characters).
//   Merging runs with a priority queue (score, then position; models/detail/symbol_merge.hpp): O(n log n)
//   in the text length.
// decode: llama.cpp's token_to_piece for SPM vocabularies: NORMAL pieces with U+2581 shown as ' ', BYTE
//   tokens as their byte, USER_DEFINED pieces as they are, CONTROL / UNKNOWN / UNUSED / UNDEFINED as
//   nothing (unless decode_options::special).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mixprec/error.hpp"
#include "mixprec/io/gguf.hpp"
#include "mixprec/io/llama2c.hpp"
#include "mixprec/models/detail/symbol_merge.hpp"

namespace mixprec::models {

// llama.cpp's llama_token_type (include/llama.h), as tokenizer.ggml.token_type stores it.
enum class token_type : std::int32_t { undefined = 0, normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

// How a GGUF's vocabulary starts a sequence, as llama.cpp reads it (llama_vocab_bos,
// llama_vocab_get_add_bos): the token its imatrix and perplexity tools put first in every chunk of text.
struct vocab_bos {
  int id = 1;             // the BOS token; -1: the vocabulary has none
  bool add = true;        // text is tokenized with BOS first (tokenizer.ggml.add_bos_token)
  std::string tokenizer;  // tokenizer.ggml.model ("" when the file has none)
};

// The vocab_bos of a GGUF's metadata, as llama.cpp's llama_vocab::load sets it:
//   id   tokenizer.ggml.bos_token_id (u32) when present, else the default of tokenizer.ggml.model:
//        "llama" (SentencePiece) and "plamo2" 1, "gpt2" (BPE) 11 (none with the pre-tokenizers
//        tokenizer.ggml.pre "glm4" / "chatglm-bpe"), "bert" 101; "t5", "rwkv", "none", "no_vocab" and
//        models llama.cpp does not know: none (-1).
//   add  tokenizer.ggml.add_bos_token (bool) when present, else true for "llama" and "bert", and for
//        "gpt2" with the pre-tokenizers that add one ("llama3", "llama-v3", "llama-bpe", "falcon3",
//        "falcon-h1", "pixtral", "midm-2.0", "lfm2", "tekken", "chameleon"); false otherwise.
// A file without tokenizer.ggml.model (a bare model, not one llama.cpp loads) gets "llama"'s 1 and true.
// Unlike llama.cpp, which warns and keeps the default, an id at or above the vocabulary's size (the
// length of tokenizer.ggml.tokens when present, and vocab_size when > 0, e.g. token_embd's rows) is an
// error. Throws errc::parse_error naming `name` and the key for such an id or a value of another type.
[[nodiscard]] inline vocab_bos bos_of(const gguf::metadata& kvs, int vocab_size = 0, const std::string& name = "GGUF") {
  auto fail = [&](const std::string& what) { throw error(errc::parse_error, name + ": " + what); };
  vocab_bos v;
  if (const gguf::value* model = kvs.find("tokenizer.ggml.model")) {
    const std::string* m = model->get_if<std::string>();
    if (!m) fail("key 'tokenizer.ggml.model' is not a string");
    v.tokenizer = *m;
    std::string pre;
    if (const gguf::value* p = kvs.find("tokenizer.ggml.pre"))
      if (const std::string* s = p->get_if<std::string>()) pre = *s;
    if (*m == "llama") v = {1, true, *m};
    else if (*m == "plamo2") v = {1, false, *m};
    else if (*m == "bert") v = {101, true, *m};
    else if (*m == "gpt2") {
      v = {pre == "glm4" || pre == "chatglm-bpe" ? -1 : 11, false, *m};
      for (const char* adds : {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "tekken", "chameleon"})
        if (pre == adds) v.add = true;
    } else v = {-1, false, *m};
  }
  if (const gguf::value* b = kvs.find("tokenizer.ggml.bos_token_id")) {
    const std::uint32_t* u = b->get_if<std::uint32_t>();
    if (!u) fail("key 'tokenizer.ggml.bos_token_id' is " + std::string(gguf::to_string(b->type())) + ", not u32");
    std::uint64_t n = vocab_size > 0 ? static_cast<std::uint64_t>(vocab_size) : std::numeric_limits<std::uint64_t>::max();
    if (const gguf::value* t = kvs.find("tokenizer.ggml.tokens"))
      if (const gguf::array* a = t->get_if<gguf::array>()) n = std::min<std::uint64_t>(n, a->items.size());
    if (*u >= n) fail("key 'tokenizer.ggml.bos_token_id' = " + std::to_string(*u) + " is outside the vocabulary of " + std::to_string(n) + " tokens");
    v.id = static_cast<int>(*u);
  }
  if (const gguf::value* a = kvs.find("tokenizer.ggml.add_bos_token")) {
    const bool* f = a->get_if<bool>();
    if (!f) fail("key 'tokenizer.ggml.add_bos_token' is " + std::string(gguf::to_string(a->type())) + ", not bool");
    v.add = *f;
  }
  return v;
}
[[nodiscard]] inline vocab_bos bos_of(const gguf::file& g, int vocab_size = 0) { return bos_of(g.kvs(), vocab_size, "GGUF '" + g.path() + "'"); }

namespace detail {

// Typed reads of a vocabulary's tokenizer.ggml.* keys from GGUF metadata, every item checked; errors are
// errc::parse_error naming the file (`name`) and the key.
class vocab_keys {
 public:
  vocab_keys(const gguf::metadata& kvs, std::string name) : kvs_(kvs), name_(std::move(name)) {}

  [[noreturn]] void fail(errc c, const std::string& what) const { throw error(c, name_ + ": " + what); }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

  // A string key; nullptr when absent.
  [[nodiscard]] const std::string* string(const char* key) const {
    const gguf::value* v = kvs_.find(key);
    if (!v) return nullptr;
    const std::string* s = v->get_if<std::string>();
    if (!s) fail(errc::parse_error, std::string("key '") + key + "' is " + std::string(gguf::to_string(v->type())) + ", not a string");
    return s;
  }
  // The items of an array key of element type t; nullptr when absent (parse_error when required).
  [[nodiscard]] const gguf::array* array(const char* key, gguf::value_type t, bool required) const {
    const gguf::value* v = kvs_.find(key);
    if (!v) {
      if (required) fail(errc::parse_error, std::string("the vocabulary needs the key '") + key + "'");
      return nullptr;
    }
    const gguf::array* a = v->get_if<gguf::array>();
    if (!a || a->type != t) fail(errc::parse_error, std::string("key '") + key + "' is not an array of " + std::string(gguf::to_string(t)));
    return a;
  }
  // Item i of an array of element type T (checked: an array built by hand may hold other items).
  template <class T>
  [[nodiscard]] const T& item(const gguf::array& a, std::size_t i, const char* key) const {
    const T* x = a.items[i].get_if<T>();
    if (!x) fail(errc::parse_error, std::string("key '") + key + "' item " + std::to_string(i) + " is " +
                                        std::string(gguf::to_string(a.items[i].type())) + ", not " + std::string(gguf::to_string(a.type)));
    return *x;
  }
  [[nodiscard]] std::vector<std::string> strings(const char* key) const {
    const gguf::array* a = array(key, gguf::value_type::string, true);
    std::vector<std::string> out;
    out.reserve(a->items.size());
    for (std::size_t i = 0; i < a->items.size(); ++i) out.push_back(item<std::string>(*a, i, key));
    return out;
  }
  // tokenizer.ggml.token_type's first n entries (empty when absent), each in 0..6.
  [[nodiscard]] std::vector<token_type> types(std::size_t n) const {
    const char* key = "tokenizer.ggml.token_type";
    const gguf::array* a = array(key, gguf::value_type::i32, false);
    if (!a) return {};
    if (a->items.size() != n) fail(errc::parse_error, std::string("key '") + key + "' has " + std::to_string(a->items.size()) +
                                                          " entries for " + std::to_string(n) + " tokens");
    std::vector<token_type> out;
    for (std::size_t i = 0; i < n; ++i) {
      const std::int32_t x = item<std::int32_t>(*a, i, key);
      if (x < 0 || x > 6) fail(errc::parse_error, std::string("key '") + key + "' holds " + std::to_string(x) + " (expected 0..6)");
      out.push_back(static_cast<token_type>(x));
    }
    return out;
  }
  // A token id key (u32, below n); fallback when absent.
  [[nodiscard]] int id(const char* key, int fallback, std::size_t n) const {
    const gguf::value* v = kvs_.find(key);
    if (!v) return fallback;
    const std::uint32_t* u = v->get_if<std::uint32_t>();
    if (!u) fail(errc::parse_error, std::string("key '") + key + "' is not u32");
    if (*u >= n) fail(errc::parse_error, std::string("key '") + key + "' = " + std::to_string(*u) + " is outside the vocabulary of " +
                                             std::to_string(n) + " tokens");
    return static_cast<int>(*u);
  }
  [[nodiscard]] bool flag(const char* key, bool fallback) const {
    const gguf::value* v = kvs_.find(key);
    if (!v) return fallback;
    const bool* b = v->get_if<bool>();
    if (!b) fail(errc::parse_error, std::string("key '") + key + "' is not bool");
    return *b;
  }

 private:
  const gguf::metadata& kvs_;
  std::string name_;
};

}  // namespace detail

struct encode_options {
  std::optional<bool> add_bos = std::nullopt;           // default: the vocabulary's add_bos
  std::optional<bool> add_space_prefix = std::nullopt;  // default: the vocabulary's add_space_prefix
};

struct decode_options {
  bool strip_space_prefix = false;  // drop one ' ' at the start of the text (undoes encode's prefix)
  bool special = false;             // show CONTROL / UNKNOWN / UNUSED pieces as their text
};

class spm_tokenizer {
 public:
  spm_tokenizer() = default;
  // pieces[i] is token i's text (U+2581 for spaces); scores and types have as many entries (empty:
  // all 0 / all NORMAL). Throws errc::invalid_argument for other lengths or special ids out of range.
  spm_tokenizer(std::vector<std::string> pieces, std::vector<float> scores, std::vector<token_type> types, int bos = 1, int eos = 2,
                int unk = 0, bool add_bos = true, bool add_space_prefix = true)
      : pieces_(std::move(pieces)), scores_(std::move(scores)), types_(std::move(types)), bos_(bos), eos_(eos), unk_(unk),
        add_bos_(add_bos), add_space_prefix_(add_space_prefix) {
    const std::size_t n = pieces_.size();
    if (scores_.empty()) scores_.assign(n, 0.0f);
    if (types_.empty()) types_.assign(n, token_type::normal);
    if (scores_.size() != n || types_.size() != n)
      throw error(errc::invalid_argument, "spm_tokenizer: " + std::to_string(n) + " pieces, " + std::to_string(scores_.size()) + " scores, " +
                                              std::to_string(types_.size()) + " types");
    for (int id : {bos_, eos_, unk_})
      if (id < -1 || id >= static_cast<int>(n))
        throw error(errc::invalid_argument, "spm_tokenizer: special token id " + std::to_string(id) + " outside the vocabulary of " +
                                                std::to_string(n));
    for (std::size_t i = 0; i < n; ++i) ids_.emplace(pieces_[i], static_cast<int>(i));  // the first of equal pieces wins
    for (int b = 0; b < 256; ++b) {
      static constexpr char hex[] = "0123456789ABCDEF";
      const std::string piece = std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
      const auto it = ids_.find(piece);
      byte_ids_[static_cast<std::size_t>(b)] = it != ids_.end() ? it->second : unk_;
    }
  }

  // The vocabulary of a GGUF's metadata: tokenizer.ggml.model must be "llama" (else errc::unsupported);
  // tokenizer.ggml.tokens (required), scores and token_type (optional, same length), bos/eos/unknown
  // token ids (default 1, 2, 0), add_bos_token and add_space_prefix (default true). Malformed or
  // missing values: errc::parse_error naming the key.
  [[nodiscard]] static spm_tokenizer from_gguf(const gguf::metadata& kvs, const std::string& name = "GGUF") {
    const detail::vocab_keys keys(kvs, name);
    const std::string* m = keys.string("tokenizer.ggml.model");
    if (!m) keys.fail(errc::parse_error, "no key 'tokenizer.ggml.model'");
    if (*m != "llama") keys.fail(errc::unsupported, "tokenizer.ggml.model is '" + *m + "'; spm_tokenizer reads the SentencePiece-style 'llama'");
    std::vector<std::string> p = keys.strings("tokenizer.ggml.tokens");
    const std::size_t n = p.size();
    std::vector<float> s;
    if (const gguf::array* scores = keys.array("tokenizer.ggml.scores", gguf::value_type::f32, false)) {
      if (scores->items.size() != n) keys.fail(errc::parse_error, "tokenizer.ggml.scores does not have one entry per token (" + std::to_string(n) + ")");
      for (std::size_t i = 0; i < n; ++i) s.push_back(keys.item<float>(*scores, i, "tokenizer.ggml.scores"));
    }
    std::vector<token_type> t = keys.types(n);
    const vocab_bos b = bos_of(kvs, static_cast<int>(n), name);  // the one rule for BOS and add_bos
    return spm_tokenizer(std::move(p), std::move(s), std::move(t), b.id, keys.id("tokenizer.ggml.eos_token_id", 2, n),
                         keys.id("tokenizer.ggml.unknown_token_id", 0, n), b.add, keys.flag("tokenizer.ggml.add_space_prefix", true));
  }
  [[nodiscard]] static spm_tokenizer from_gguf(const gguf::file& g) { return from_gguf(g.kvs(), "GGUF '" + g.path() + "'"); }
  [[nodiscard]] static spm_tokenizer from_gguf(const std::string& path) { return from_gguf(gguf::file::open(path)); }

  // A llama2.c tokenizer file's vocabulary, as llama.cpp's convert-llama2c-to-ggml reads it: ids 0, 1,
  // 2 are <unk> (UNKNOWN), <s>, </s> (CONTROL); "<0xHH>" pieces BYTE; empty pieces CONTROL; spaces
  // written as U+2581.
  [[nodiscard]] static spm_tokenizer from_llama2c(const llama2c::tokenizer& tok) {
    std::vector<std::string> p;
    std::vector<token_type> t;
    for (std::size_t i = 0; i < tok.vocab.size(); ++i) {
      std::string s = tok.vocab[i];
      token_type type = token_type::normal;
      if (i == 0) s = "<unk>", type = token_type::unknown;
      else if (i == 1) s = "<s>", type = token_type::control;
      else if (i == 2) s = "</s>", type = token_type::control;
      else if (s.empty()) type = token_type::control;
      else if (s.size() == 6 && s.compare(0, 3, "<0x") == 0 && s[5] == '>') type = token_type::byte;
      p.push_back(escape_spaces(s));
      t.push_back(type);
    }
    return spm_tokenizer(std::move(p), tok.scores, std::move(t));
  }

  [[nodiscard]] int size() const noexcept { return static_cast<int>(pieces_.size()); }
  [[nodiscard]] int bos() const noexcept { return bos_; }
  [[nodiscard]] int eos() const noexcept { return eos_; }
  [[nodiscard]] int unk() const noexcept { return unk_; }
  [[nodiscard]] const std::string& text(int id) const { return pieces_.at(checked(id)); }
  [[nodiscard]] float score(int id) const { return scores_.at(checked(id)); }
  [[nodiscard]] token_type type(int id) const { return types_.at(checked(id)); }
  // The id of the piece `text` (U+2581 for spaces), if any.
  [[nodiscard]] std::optional<int> find(std::string_view text) const {
    const auto it = ids_.find(std::string(text));
    return it == ids_.end() ? std::nullopt : std::optional<int>(it->second);
  }

  // Token ids of `text` (see the top).
  [[nodiscard]] std::vector<int> encode(std::string_view text, const encode_options& o = {}) const {
    std::vector<int> out;
    if (o.add_bos.value_or(add_bos_) && bos_ >= 0) out.push_back(bos_);
    if (text.empty()) return out;
    std::string s = o.add_space_prefix.value_or(add_space_prefix_) ? " " : "";
    s += text;
    s = escape_spaces(s);

    const auto merged = detail::merge_symbols(s, [&](std::string_view l, std::string_view r) -> std::optional<double> {
      const auto it = ids_.find(std::string(l.data(), l.size() + r.size()));  // r follows l in s
      if (it == ids_.end()) return std::nullopt;
      return scores_[static_cast<std::size_t>(it->second)];
    });
    for (const std::string_view piece : merged) {
      const auto it = ids_.find(std::string(piece));
      if (it != ids_.end()) {
        out.push_back(it->second);
        continue;
      }
      for (const char c : piece) out.push_back(byte_ids_[static_cast<unsigned char>(c)]);
    }
    return out;
  }

  // The text of one token (see the top); errc::invalid_argument for an id outside the vocabulary.
  [[nodiscard]] std::string piece(int id, bool special = false) const {
    const std::size_t i = checked(id);
    const std::string& p = pieces_[i];
    switch (types_[i]) {
      case token_type::normal: return unescape_spaces(p);
      case token_type::user_defined: return p;
      case token_type::byte: {
        unsigned v = 0;
        for (std::size_t k = 3; k < 5 && p.size() == 6; ++k) {
          const char ch = p[k];
          v = v * 16 + static_cast<unsigned>(ch >= 'a' ? ch - 'a' + 10 : ch >= 'A' ? ch - 'A' + 10 : ch - '0');
        }
        return std::string(1, static_cast<char>(v));
      }
      default: return special ? p : std::string();
    }
  }

  // The text of `ids`, piece after piece.
  [[nodiscard]] std::string decode(std::span<const int> ids, const decode_options& o = {}) const {
    std::string out;
    for (int id : ids) out += piece(id, o.special);
    if (o.strip_space_prefix && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
  }

  // SentencePiece's text form: every ' ' as U+2581.
  [[nodiscard]] static std::string escape_spaces(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
      if (c == ' ') out += "\xe2\x96\x81";
      else out += c;
    }
    return out;
  }
  [[nodiscard]] static std::string unescape_spaces(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s.compare(i, 3, "\xe2\x96\x81") == 0) {
        out += ' ';
        i += 2;
      } else {
        out += s[i];
      }
    }
    return out;
  }

 private:
  [[nodiscard]] std::size_t checked(int id) const {
    if (id < 0 || id >= size())
      throw error(errc::invalid_argument, "spm_tokenizer: token " + std::to_string(id) + " outside the vocabulary of " + std::to_string(size()));
    return static_cast<std::size_t>(id);
  }

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<token_type> types_;
  std::unordered_map<std::string, int> ids_;
  int byte_ids_[256] = {};
  int bos_ = 1, eos_ = 2, unk_ = 0;
  bool add_bos_ = true, add_space_prefix_ = true;
};

}  // namespace mixprec::models
