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
//   Merging runs with a priority queue (score, then position): O(n log n) in the text length.
// decode: llama.cpp's token_to_piece for SPM vocabularies: NORMAL pieces with U+2581 shown as ' ', BYTE
//   tokens as their byte, USER_DEFINED pieces as they are, CONTROL / UNKNOWN / UNUSED / UNDEFINED as
//   nothing (unless decode_options::special).
#pragma once

#include <cstdint>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mixprec/error.hpp"
#include "mixprec/io/gguf.hpp"
#include "mixprec/io/llama2c.hpp"

namespace mixprec::models {

// llama.cpp's llama_token_type (include/llama.h), as tokenizer.ggml.token_type stores it.
enum class token_type : std::int32_t { undefined = 0, normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

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
    auto fail = [&](errc c, const std::string& what) { throw error(c, name + ": " + what); };
    const gguf::value* model = kvs.find("tokenizer.ggml.model");
    if (!model) fail(errc::parse_error, "no key 'tokenizer.ggml.model'");
    const std::string* m = model->get_if<std::string>();
    if (!m) fail(errc::parse_error, "key 'tokenizer.ggml.model' is not a string");
    if (*m != "llama") fail(errc::unsupported, "tokenizer.ggml.model is '" + *m + "'; only the SentencePiece-style 'llama' is implemented");
    auto array_of = [&](const char* key, gguf::value_type t, bool required) -> const gguf::array* {
      const gguf::value* v = kvs.find(key);
      if (!v) {
        if (required) fail(errc::parse_error, std::string("no key '") + key + "'");
        return nullptr;
      }
      const gguf::array* a = v->get_if<gguf::array>();
      if (!a || a->type != t) fail(errc::parse_error, std::string("key '") + key + "' is not an array of " + std::string(gguf::to_string(t)));
      return a;
    };
    const gguf::array* tokens = array_of("tokenizer.ggml.tokens", gguf::value_type::string, true);
    const gguf::array* scores = array_of("tokenizer.ggml.scores", gguf::value_type::f32, false);
    const gguf::array* types = array_of("tokenizer.ggml.token_type", gguf::value_type::i32, false);
    const std::size_t n = tokens->items.size();
    if ((scores && scores->items.size() != n) || (types && types->items.size() != n))
      fail(errc::parse_error, "tokenizer.ggml.scores / token_type do not have one entry per token (" + std::to_string(n) + ")");
    std::vector<std::string> p;
    std::vector<float> s;
    std::vector<token_type> t;
    p.reserve(n);
    for (const auto& v : tokens->items) p.push_back(*v.get_if<std::string>());
    if (scores)
      for (const auto& v : scores->items) s.push_back(*v.get_if<float>());
    if (types)
      for (const auto& v : types->items) {
        const std::int32_t x = *v.get_if<std::int32_t>();
        if (x < 0 || x > 6) fail(errc::parse_error, "tokenizer.ggml.token_type holds " + std::to_string(x) + " (expected 0..6)");
        t.push_back(static_cast<token_type>(x));
      }
    auto id = [&](const char* key, int fallback) {
      const gguf::value* v = kvs.find(key);
      if (!v) return fallback;
      const std::uint32_t* u = v->get_if<std::uint32_t>();
      if (!u) fail(errc::parse_error, std::string("key '") + key + "' is not u32");
      if (*u >= n) fail(errc::parse_error, std::string("key '") + key + "' = " + std::to_string(*u) + " is outside the vocabulary");
      return static_cast<int>(*u);
    };
    auto flag = [&](const char* key, bool fallback) {
      const gguf::value* v = kvs.find(key);
      if (!v) return fallback;
      const bool* b = v->get_if<bool>();
      if (!b) fail(errc::parse_error, std::string("key '") + key + "' is not bool");
      return *b;
    };
    return spm_tokenizer(std::move(p), std::move(s), std::move(t), id("tokenizer.ggml.bos_token_id", 1), id("tokenizer.ggml.eos_token_id", 2),
                         id("tokenizer.ggml.unknown_token_id", 0), flag("tokenizer.ggml.add_bos_token", true),
                         flag("tokenizer.ggml.add_space_prefix", true));
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

    struct symbol {
      std::size_t begin, length;
      int prev, next;  // -1: none
    };
    std::vector<symbol> sym;
    for (std::size_t i = 0; i < s.size();) {
      const auto lead = static_cast<unsigned char>(s[i]);
      const std::size_t len = std::min<std::size_t>(s.size() - i, lead < 0xC0 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4);
      sym.push_back({i, len, static_cast<int>(sym.size()) - 1, static_cast<int>(sym.size()) + 1});
      i += len;
    }
    sym.back().next = -1;
    struct candidate {
      float score;
      int left, right;
      std::size_t length;  // of the merged text when queued: a stale entry no longer matches
      bool operator<(const candidate& o) const noexcept {  // the queue's top: highest score, then leftmost
        return score < o.score || (score == o.score && left > o.left);
      }
    };
    std::priority_queue<candidate> queue;
    auto consider = [&](int left, int right) {
      if (left < 0 || right < 0) return;
      const std::size_t len = sym[static_cast<std::size_t>(left)].length + sym[static_cast<std::size_t>(right)].length;
      const auto it = ids_.find(s.substr(sym[static_cast<std::size_t>(left)].begin, len));
      if (it != ids_.end()) queue.push({scores_[static_cast<std::size_t>(it->second)], left, right, len});
    };
    for (std::size_t i = 1; i < sym.size(); ++i) consider(static_cast<int>(i) - 1, static_cast<int>(i));
    while (!queue.empty()) {
      const candidate c = queue.top();
      queue.pop();
      symbol& l = sym[static_cast<std::size_t>(c.left)];
      symbol& r = sym[static_cast<std::size_t>(c.right)];
      if (l.length == 0 || r.length == 0 || l.next != c.right || l.length + r.length != c.length) continue;  // stale
      l.length += r.length;
      r.length = 0;
      l.next = r.next;
      if (r.next >= 0) sym[static_cast<std::size_t>(r.next)].prev = c.left;
      consider(l.prev, c.left);
      consider(c.left, l.next);
    }
    for (int i = 0; i >= 0; i = sym[static_cast<std::size_t>(i)].next) {
      const symbol& x = sym[static_cast<std::size_t>(i)];
      const auto it = ids_.find(s.substr(x.begin, x.length));
      if (it != ids_.end()) {
        out.push_back(it->second);
        continue;
      }
      for (std::size_t k = 0; k < x.length; ++k) out.push_back(byte_ids_[static_cast<unsigned char>(s[x.begin + k])]);
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
