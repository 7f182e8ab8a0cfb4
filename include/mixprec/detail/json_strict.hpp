// JSON text parsed without nlohmann's silent leniencies (optional: needs nlohmann-json, like every
// JSON reader of the project). nlohmann::json::parse accepts, without a word:
//   - an object with the same key twice, keeping the last value (RFC 8259 leaves it to the reader;
//     serde_json's derived structs, Python's object_pairs_hook readers and others refuse or keep the
//     first, so two readers of one file can see two different documents);
//   - a raw NUL byte, which its lexer takes for the end of the input: `{"a":1}\0anything` parses as
//     {"a":1} and whatever follows the NUL is never looked at (JSON text has no raw NUL: inside a
//     string it must be written \u0000);
//   - a UTF-8 byte order mark before the text (serde_json refuses it);
//   - containers nested without limit (serde_json stops at 128 levels).
// parse_json_strict refuses each of these (the BOM and the depth as the caller chooses) with
// mixprec::error(parse_error); text that is not JSON at all still throws nlohmann's parse_error, as
// nlohmann::json::parse does, for the caller to wrap with the file's name.
//
//   const nlohmann::json j = mixprec::detail::parse_json_strict(text);   // or with json_strictness{...}
#pragma once

#include <cstddef>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "mixprec/error.hpp"

namespace mixprec::detail {

// Where an object sits in a document: the keys and array indices (in decimal) from the root to it;
// empty for the top-level value.
using json_path = std::vector<std::string>;

// A path as text: "the top level", or keys joined by '.' with indices in brackets ("layers[3]").
[[nodiscard]] inline std::string json_path_text(const json_path& path, const std::vector<bool>& is_index) {
  if (path.empty()) return "the top level";
  std::string s;
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (is_index[i]) s += "[" + path[i] + "]";
    else s += (s.empty() ? "" : ".") + std::string("\"") + path[i] + "\"";
  }
  return s;
}

struct json_strictness {
  // The message for `key` given twice in the object at `where` (the error is parse_error either way);
  // empty: "duplicate key \"<key>\" in <json_path_text>".
  std::function<std::string(const json_path& where, const std::string& key)> duplicate_message;
  // Containers nested deeper than this are refused; 0: no limit.
  std::size_t max_depth = 0;
  // Whether a UTF-8 byte order mark may precede the text (nlohmann skips it).
  bool allow_bom = true;
};

// `text` as JSON, refusing duplicate keys, raw NUL bytes and, as `s` says, a BOM and deep nesting
// (mixprec::error, parse_error); nlohmann::json::parse_error for text that is not JSON.
[[nodiscard]] inline nlohmann::json parse_json_strict(std::string_view text, const json_strictness& s = {}) {
  if (const void* nul = std::memchr(text.data(), '\0', text.size()))
    throw error(errc::parse_error, "a raw NUL byte at offset " +
                                       std::to_string(static_cast<const char*>(nul) - text.data()) +
                                       " (JSON text has none; a lenient reader would stop there and ignore the rest)");
  if (!s.allow_bom && text.starts_with("\xEF\xBB\xBF"))
    throw error(errc::parse_error, "the JSON text starts with a UTF-8 byte order mark");

  struct frame {
    bool object = false;
    std::unordered_set<std::string> keys;  // objects: the keys seen so far
    std::string key;                        // objects: the key of the value being read
    std::size_t index = 0;                  // arrays: the index of the element being read
  };
  std::vector<frame> stack;
  auto path_of_top = [&](std::vector<bool>* is_index) {
    json_path p;
    for (std::size_t i = 0; i + 1 < stack.size(); ++i) {
      p.push_back(stack[i].object ? stack[i].key : std::to_string(stack[i].index));
      if (is_index) is_index->push_back(!stack[i].object);
    }
    return p;
  };
  auto element_done = [&] {
    if (!stack.empty() && !stack.back().object) ++stack.back().index;
  };
  using event = nlohmann::json::parse_event_t;
  const nlohmann::json::parser_callback_t cb = [&](int, event e, nlohmann::json& parsed) {
    switch (e) {
      case event::object_start:
      case event::array_start:
        if (s.max_depth != 0 && stack.size() >= s.max_depth)
          throw error(errc::parse_error, "JSON nested deeper than " + std::to_string(s.max_depth) + " levels");
        stack.push_back({e == event::object_start, {}, {}, 0});
        break;
      case event::key: {
        frame& f = stack.back();
        f.key = parsed.get<std::string>();
        if (!f.keys.insert(f.key).second) {
          std::vector<bool> is_index;
          const json_path where = path_of_top(&is_index);
          throw error(errc::parse_error, s.duplicate_message
                                             ? s.duplicate_message(where, f.key)
                                             : "duplicate key \"" + f.key + "\" in " + json_path_text(where, is_index));
        }
        break;
      }
      case event::object_end:
      case event::array_end:
        stack.pop_back();
        element_done();
        break;
      case event::value:
        element_done();
        break;
    }
    return true;
  };
  return nlohmann::json::parse(text.begin(), text.end(), cb);
}

}  // namespace mixprec::detail
