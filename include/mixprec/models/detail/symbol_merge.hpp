// The merge loop the tokenizers share (SentencePiece's by score, models/tokenizer.hpp; byte-level BPE's by
// merge rank, models/bpe_tokenizer.hpp), as llama.cpp's llm_tokenizer_spm_session and
// llm_tokenizer_bpe_session run it: the text split into UTF-8 characters, then, repeatedly, the adjacent
// pair ranked first is joined (ties: the leftmost pair), until no adjacent pair is ranked.
// A priority queue of candidate pairs, stale entries skipped: O(n log n) in the text's length.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <queue>
#include <string_view>
#include <vector>

namespace mixprec::models::detail {

// The pieces of text after merging. priority(left, right) ranks joining two adjacent pieces (views into
// text, right just after left): nullopt when they do not join, else a number, higher first. Characters
// are cut by their lead byte as llama.cpp's unicode_len_utf8 (below 0xC0: 1 byte, 0xC0-0xDF 2, 0xE0-0xEF
// 3, else 4; clamped at the end), whatever follows them.
template <class Priority>
[[nodiscard]] std::vector<std::string_view> merge_symbols(std::string_view text, Priority priority) {
  struct symbol {
    std::size_t begin, length;
    int prev, next;  // -1: none
  };
  std::vector<symbol> sym;
  for (std::size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    const std::size_t n = std::min<std::size_t>(text.size() - i, lead < 0xC0 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4);
    sym.push_back({i, n, static_cast<int>(sym.size()) - 1, static_cast<int>(sym.size()) + 1});
    i += n;
  }
  if (sym.empty()) return {};
  sym.back().next = -1;
  struct candidate {
    double priority;
    int left, right;
    std::size_t length;  // of the joined text when queued: an entry whose pieces changed since is stale
    bool operator<(const candidate& o) const noexcept {  // the queue's top: highest priority, then leftmost
      return priority < o.priority || (priority == o.priority && left > o.left);
    }
  };
  std::priority_queue<candidate> queue;
  const auto view = [&](int i) { return text.substr(sym[static_cast<std::size_t>(i)].begin, sym[static_cast<std::size_t>(i)].length); };
  const auto consider = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    if (const std::optional<double> p = priority(view(left), view(right)))
      queue.push({*p, left, right, sym[static_cast<std::size_t>(left)].length + sym[static_cast<std::size_t>(right)].length});
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
  std::vector<std::string_view> out;
  for (int i = 0; i >= 0; i = sym[static_cast<std::size_t>(i)].next) out.push_back(view(i));
  return out;
}

}  // namespace mixprec::models::detail
