// The tests' oracle for the SentencePiece-style tokenizer (mixprec/models/tokenizer.hpp): llama2.c's
// run.c encode, the plain quadratic way, on a llama2.c vocabulary as the file holds it (spaces as ' ',
// byte tokens "<0xHH>", ids 0, 1, 2 <unk>, BOS, EOS). Written from the algorithm; no code in common
// with the library's priority-queue encoder.
//
// naive_encode: BOS (when asked); nothing more for an empty text; else ' ' then the text, split into
//   UTF-8 characters (length from the lead byte: 110xxxxx 2, 1110xxxx 3, 11110xxx and 11111xxx 4 as
//   llama.cpp's unicode_len_utf8 counts, any other 1; clamped at the end), each its piece's id, or when it is
//   no piece one "<0xHH>" token per byte (id 0 when the vocabulary lacks that byte token); then, while
//   any adjacent pair's concatenated pieces form a piece, the pair whose piece scores highest (the
//   leftmost among equals) becomes that piece.
// naive_decode: the pieces one after the other, a "<0xHH>" token as its byte, ids 0, 1, 2 as nothing.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mixprec/io/llama2c.hpp"

namespace mixprec::test {

namespace naive_detail {

// Each piece's first id.
inline std::unordered_map<std::string, int> piece_ids(const llama2c::tokenizer& t) {
  std::unordered_map<std::string, int> ids;
  for (std::size_t i = 0; i < t.vocab.size(); ++i) ids.emplace(t.vocab[i], static_cast<int>(i));
  return ids;
}

inline std::string byte_piece(unsigned char b) {
  static constexpr char hex[] = "0123456789ABCDEF";
  return std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
}

}  // namespace naive_detail

inline std::vector<int> naive_encode(const llama2c::tokenizer& t, std::string_view text, bool bos = true, bool space_prefix = true) {
  const std::unordered_map<std::string, int> pieces = naive_detail::piece_ids(t);
  auto find_piece = [&](const std::string& p) {
    const auto it = pieces.find(p);
    return it == pieces.end() ? -1 : it->second;
  };
  std::vector<int> out;
  if (bos) out.push_back(1);
  if (text.empty()) return out;
  const std::string s = (space_prefix ? std::string(" ") : std::string()) + std::string(text);
  std::vector<int> ids;
  for (std::size_t i = 0; i < s.size();) {
    const auto lead = static_cast<unsigned char>(s[i]);
    std::size_t len = 1;
    if ((lead & 0xE0) == 0xC0) len = 2;
    else if ((lead & 0xF0) == 0xE0) len = 3;
    else if ((lead & 0xF8) == 0xF0) len = 4;
    else if (lead >= 0xF8) len = 4;  // no UTF-8 lead byte; llama.cpp counts it as 4
    if (len > s.size() - i) len = s.size() - i;
    const std::string ch = s.substr(i, len);
    const int id = find_piece(ch);
    if (id >= 0) {
      ids.push_back(id);
    } else {
      for (char c : ch) {
        const int b = find_piece(naive_detail::byte_piece(static_cast<unsigned char>(c)));
        ids.push_back(b >= 0 ? b : 0);
      }
    }
    i += len;
  }
  while (true) {
    int best = -1, best_id = -1;
    for (std::size_t i = 0; i + 1 < ids.size(); ++i) {
      const int id = find_piece(t.vocab[static_cast<std::size_t>(ids[i])] + t.vocab[static_cast<std::size_t>(ids[i + 1])]);
      if (id >= 0 && (best_id < 0 || t.scores[static_cast<std::size_t>(id)] > t.scores[static_cast<std::size_t>(best_id)])) {
        best = static_cast<int>(i);
        best_id = id;
      }
    }
    if (best < 0) break;
    ids[static_cast<std::size_t>(best)] = best_id;
    ids.erase(ids.begin() + best + 1);
  }
  out.insert(out.end(), ids.begin(), ids.end());
  return out;
}

inline std::string naive_decode(const llama2c::tokenizer& t, const std::vector<int>& ids) {
  std::string out;
  for (int id : ids) {
    if (id <= 2) continue;
    const std::string& p = t.vocab.at(static_cast<std::size_t>(id));
    bool byte = false;
    for (unsigned b = 0; b < 256 && !byte; ++b)
      if (p == naive_detail::byte_piece(static_cast<unsigned char>(b))) {
        out += static_cast<char>(b);
        byte = true;
      }
    if (!byte) out += p;
  }
  return out;
}

}  // namespace mixprec::test
