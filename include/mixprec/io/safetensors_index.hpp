// Sharded safetensors checkpoints: an index and its shards read as one model (Hugging Face layout).
// Optional header: needs nlohmann-json (Debian nlohmann-json3-dev), like io/safetensors.hpp.
//
// Format (huggingface transformers save_pretrained(max_shard_size=...), huggingface_hub
// split_torch_state_dict_into_shards): a model too large for one file is written as shards, each a
// safetensors file (io/safetensors.hpp), beside an index that names the shard of every tensor:
//   model-00001-of-00002.safetensors  model-00002-of-00002.safetensors  model.safetensors.index.json
//   {"metadata": {"total_size": <bytes>, ...}, "weight_map": {"<tensor>": "<shard file name>", ...}}
// "metadata" is optional and may hold other keys ("total_parameters", a tool's own), which are ignored.
//
//   auto m = safetensors::sharded_file::open("dir/model.safetensors.index.json");
//   m.tensors()              every tensor of every shard: shard order, then data offset; t.shard says which
//   m.find(name) / m.at(name) / m.to_float(name) / m.as_matrix_f32(name)     as safetensors::file's
//   m.shards(), m.shard_paths(), m.index_path(), m.index(), m.metadata() (the first shard's)
//   m.data_bytes()           the tensors' bytes over all shards
//   m.declared_total_size()  the index's "total_size", when given
//   safetensors::parse_index(bytes, path)   the index alone (pure: what sharded_file::open reads)
//   safetensors::index_beside(path)         one .safetensors file: is it a shard ("1 of 2"), of which index?
//
// Shards: the index's distinct "weight_map" values, file names relative to the index's folder; a
// sub-folder ("sub/x.safetensors") is allowed, a way out of the folder is not. Shard order: by the
// number in "<prefix>-00001-of-00002.safetensors" when every shard is named so, else by name.
//
// Errors. parse_index refuses, with errc::parse_error naming the index path and the key: text that is
// not JSON (or has a key twice at any level, a raw NUL byte, a byte order mark, nesting deeper than 127:
// detail/json_strict.hpp; a tensor mapped twice has whichever shard a reader keeps), a top
// level that is not an object, "weight_map" missing, not an object or empty, a value that is not a
// string, a shard name that is empty, absolute, holds a backslash or NUL, or has an empty, "." or ".."
// component; "metadata" that is neither an object nor null; "total_size" that is not a non-negative
// integer (null counts as absent, and a whole float such as 1234.0 as the integer, as a Python writer
// that sums sizes as floats would write it); an index over 100 MB (max_index_bytes). Shard names that
// all follow "-NNNNN-of-MMMMM.safetensors" must number 1..M once each, with one M: an index listing
// shards 1 and 2 "of-00003" has lost the tensors of shard 3 (a stale or hand-edited index).
// sharded_file::open adds, naming the index and the shard: an index or shard that cannot be read
// (errc::io_error: a checkpoint with a shard missing must not load as a smaller model, vllm-project/vllm
// #34859); a shard that is not valid safetensors (its own error, io/safetensors.hpp, with the index's
// name in front); a tensor the index maps to a shard that does not hold it, a tensor a shard holds that
// the index does not list, and a tensor held by two shards (all errc::parse_error).
// "total_size" is not checked against the data: writers compute it differently (transformers sums the
// tensors' bytes, mlx-lm the shard files' sizes, header included), so it is exposed as
// declared_total_size() beside data_bytes() for the caller to compare or report.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mixprec/types.hpp"
#include "mixprec/detail/json_number.hpp"
#include "mixprec/detail/json_strict.hpp"
#include "mixprec/error.hpp"
#include "mixprec/io/mapped_file.hpp"
#include "mixprec/io/safetensors.hpp"

namespace mixprec::safetensors {

// Largest index the reader accepts (a model of 100,000 tensors has an index of about 10 MB).
inline constexpr std::uint64_t max_index_bytes = 100'000'000;

// A shard's place in a numbered set: "model-00001-of-00002.safetensors" is number 1 of 2.
struct shard_number {
  std::uint64_t number = 0;  // 1-based
  std::uint64_t count = 0;
};

// The number in a file name of the form "<prefix>-<number>-of-<count>.safetensors" (a folder before it
// is ignored; 1 to 9 digits each, 1 <= number <= count), or nullopt.
[[nodiscard]] inline std::optional<shard_number> numbered_shard(std::string_view path) noexcept {
  if (const std::size_t slash = path.rfind('/'); slash != std::string_view::npos) path.remove_prefix(slash + 1);
  constexpr std::string_view ext = ".safetensors";
  if (!path.ends_with(ext)) return std::nullopt;
  path.remove_suffix(ext.size());
  auto digits_at_end = [&path]() -> std::optional<std::uint64_t> {
    std::size_t n = 0;
    while (n < path.size() && n < 10 && path[path.size() - 1 - n] >= '0' && path[path.size() - 1 - n] <= '9') ++n;
    if (n == 0 || n > 9) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : path.substr(path.size() - n)) v = v * 10 + static_cast<std::uint64_t>(c - '0');
    path.remove_suffix(n);
    return v;
  };
  const std::optional<std::uint64_t> count = digits_at_end();
  if (!count || !path.ends_with("-of-")) return std::nullopt;
  path.remove_suffix(4);
  const std::optional<std::uint64_t> number = digits_at_end();
  if (!number || !path.ends_with('-') || *number < 1 || *number > *count) return std::nullopt;
  return shard_number{*number, *count};
}

// Whether `path` is named like an index ("*.safetensors.index.json").
[[nodiscard]] inline bool is_index_path(std::string_view path) noexcept {
  return path.ends_with(".safetensors.index.json");
}

// What an index says.
struct shard_index {
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name, relative to the index's folder
  std::optional<std::uint64_t> total_size;        // "metadata": {"total_size": N}, when given

  // The distinct shard names: by number when all are numbered (numbered_shard), else by name.
  [[nodiscard]] std::vector<std::string> shards() const {
    std::vector<std::string> s;
    for (const auto& [tensor, shard] : weight_map) s.push_back(shard);
    std::sort(s.begin(), s.end());
    s.erase(std::unique(s.begin(), s.end()), s.end());
    if (std::all_of(s.begin(), s.end(), [](const std::string& n) { return numbered_shard(n).has_value(); }))
      std::stable_sort(s.begin(), s.end(), [](const std::string& a, const std::string& b) {
        return numbered_shard(a)->number < numbered_shard(b)->number;
      });
    return s;
  }
};

namespace detail {

// `s` with each NUL byte written as \u0000: a tensor or shard name in a message, which what() would
// otherwise cut short there.
inline std::string printable(std::string_view s) {
  std::string out;
  for (char c : s) out += c == '\0' ? std::string("\\u0000") : std::string(1, c);
  return out;
}

[[noreturn]] inline void index_fail(const std::string& path, const std::string& what) {
  throw error(errc::parse_error, "safetensors index '" + path + "': " + what);
}

inline mixprec::detail::json_strictness index_strictness() {
  mixprec::detail::json_strictness s;
  s.allow_bom = false;  // Python's json.loads refuses it too
  s.max_depth = 127;
  s.duplicate_message = [](const mixprec::detail::json_path& where, const std::string& key) -> std::string {
    if (where.empty()) return "\"" + printable(key) + "\" appears twice";
    if (where.size() == 1 && where.front() == "weight_map")
      return "tensor '" + printable(key) +
             "' is mapped twice in \"weight_map\" (which shard a reader takes is up to it)";
    return "the key \"" + printable(key) + "\" appears twice inside \"" + printable(where.front()) + "\"";
  };
  return s;
}

// Why `shard` is not a file name inside the index's folder, or empty when it is one.
inline std::string shard_name_problem(const std::string& shard) {
  if (shard.empty()) return "an empty shard name";
  if (shard.find('\0') != std::string::npos) return "a shard name with a NUL byte";
  if (shard.front() == '/') return "an absolute path (shards are files beside the index)";
  if (shard.find('\\') != std::string::npos) return "a name with a backslash (shards are files beside the index)";
  std::string_view rest = shard;
  while (true) {
    const std::size_t slash = rest.find('/');
    const std::string_view part = rest.substr(0, slash);
    if (part.empty()) return "a path with an empty component (shards are files beside the index)";
    if (part == "..") return "a path that leaves the index's folder (shards are files beside the index)";
    if (part == ".") return "a path with a \".\" component (shards are named plainly, beside the index)";
    if (slash == std::string_view::npos) return {};
    rest.remove_prefix(slash + 1);
  }
}

// Numbered shard names ("-00001-of-00003") must be 1..count, once each: a missing number is a shard
// whose tensors the index has lost.
inline void check_numbering(const std::string& path, const std::vector<std::string>& shards) {
  std::map<std::uint64_t, std::string> by_number;
  for (const std::string& s : shards) {
    const std::optional<shard_number> n = numbered_shard(s);
    if (!n) return;  // not a numbered set
    const std::uint64_t count = numbered_shard(shards.front())->count;
    if (n->count != count)
      index_fail(path, "shard '" + shards.front() + "' is numbered out of " + std::to_string(count) + " but shard '" +
                           s + "' out of " + std::to_string(n->count) + " (shards of two checkpoints?)");
    if (const auto [it, fresh] = by_number.emplace(n->number, s); !fresh)
      index_fail(path, "shards '" + it->second + "' and '" + s + "' are both number " + std::to_string(n->number));
  }
  const std::uint64_t count = numbered_shard(shards.front())->count;
  for (std::uint64_t k = 1; k <= count; ++k)
    if (!by_number.contains(k))
      index_fail(path, "the shard names say there are " + std::to_string(count) + " shards, but the index lists " +
                           std::to_string(shards.size()) + ": none is number " + std::to_string(k) +
                           " (its tensors are missing from \"weight_map\"; a stale or edited index?)");
}

}  // namespace detail

// The index `json` (the bytes of model.safetensors.index.json); `path` names it in error messages.
[[nodiscard]] inline shard_index parse_index(std::span<const std::byte> json, const std::string& path) {
  if (json.size() > max_index_bytes)
    detail::index_fail(path, "index of " + std::to_string(json.size()) + " bytes exceeds the " +
                                 std::to_string(max_index_bytes) + "-byte limit");
  nlohmann::json j;
  try {
    j = mixprec::detail::parse_json_strict(std::string_view(reinterpret_cast<const char*>(json.data()), json.size()),
                                           detail::index_strictness());
  } catch (const nlohmann::json::exception& e) {
    detail::index_fail(path, std::string("not valid JSON: ") + e.what());
  } catch (const error& e) {
    detail::index_fail(path, e.message());
  }
  if (!j.is_object()) detail::index_fail(path, "the index is a JSON " + std::string(j.type_name()) + ", not an object");

  shard_index idx;
  if (const auto m = j.find("metadata"); m != j.end() && !m->is_null()) {
    if (!m->is_object())
      detail::index_fail(path, "\"metadata\" is a JSON " + std::string(m->type_name()) + ", not an object");
    if (const auto t = m->find("total_size"); t != m->end() && !t->is_null()) {
      const double d = t->is_number_float() ? t->get<double>() : -1.0;
      if (d >= 0 && d < 0x1p64 && d == static_cast<double>(static_cast<std::uint64_t>(d)))  // a whole float
        idx.total_size = static_cast<std::uint64_t>(d);
      else if (const auto v = mixprec::detail::json_to_integer<std::uint64_t>(*t))
        idx.total_size = *v;
      else
        detail::index_fail(path,
                           mixprec::detail::json_integer_problem<std::uint64_t>(*t, "\"metadata\".\"total_size\""));
    }
  }
  const auto wm = j.find("weight_map");
  if (wm == j.end()) detail::index_fail(path, "no \"weight_map\"");
  if (!wm->is_object())
    detail::index_fail(path, "\"weight_map\" is a JSON " + std::string(wm->type_name()) + ", not an object");
  if (wm->empty()) detail::index_fail(path, "\"weight_map\" is empty (an index of no tensors)");
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string())
      detail::index_fail(path, "\"weight_map\": tensor '" + detail::printable(it.key()) + "' is mapped to a JSON " +
                                   std::string(it.value().type_name()) + ", not a shard file name");
    const std::string& shard = it.value().get_ref<const std::string&>();
    if (const std::string problem = detail::shard_name_problem(shard); !problem.empty())
      detail::index_fail(path, "\"weight_map\": tensor '" + detail::printable(it.key()) + "' is mapped to '" +
                                   detail::printable(shard) + "': " + problem);
    idx.weight_map.emplace(it.key(), shard);
  }
  detail::check_numbering(path, idx.shards());
  return idx;
}

// A tensor of a sharded checkpoint: the shard's tensor_info (its bytes are in that shard's mapping) and
// which shard holds it.
struct sharded_tensor_info : tensor_info {
  std::size_t shard = 0;  // index into sharded_file::shards()
};

class sharded_file {
 public:
  // Reads the index at `index_path` and maps every shard it names (beside it); checks that the index
  // and the shards agree tensor for tensor (see the top of this header).
  [[nodiscard]] static sharded_file open(const std::string& index_path) {
    sharded_file m;
    m.index_path_ = index_path;
    {
      const mapped_file bytes(index_path);
      m.index_ = parse_index(bytes.data(), index_path);
    }
    const std::string where = "safetensors index '" + index_path + "'";
    const std::filesystem::path folder = std::filesystem::path(index_path).parent_path();
    const std::vector<std::string> names = m.index_.shards();
    std::map<std::string, std::size_t> listed;  // shard -> how many tensors the index maps to it
    for (const auto& [tensor, shard] : m.index_.weight_map) ++listed[shard];
    m.shards_.reserve(names.size());
    for (const std::string& s : names) {
      const std::string path = (folder / s).string();
      try {
        m.shards_.push_back(file::open(path));
      } catch (const error& e) {
        const std::string shard = "shard '" + s + "' (listed for " + std::to_string(listed[s]) + " tensors)";
        if (e.code() == errc::io_error) throw e.in_context(where + ": " + shard + " is missing or unreadable");
        throw e.in_context(where + ": " + shard);
      }
      m.shard_paths_.push_back(path);
    }

    auto refuse = [&index_path](const std::string& what) { detail::index_fail(index_path, what); };
    auto tensor_name = [](const std::string& t) { return "tensor '" + detail::printable(t) + "'"; };
    std::map<std::string, std::size_t> held;  // tensor -> the shard that holds it
    for (std::size_t i = 0; i < m.shards_.size(); ++i)
      for (const tensor_info& t : m.shards_[i].tensors())
        if (const auto [it, fresh] = held.emplace(t.name, i); !fresh)
          refuse(tensor_name(t.name) + " is in two shards, '" + names[it->second] + "' and '" + names[i] +
                 "' (which copy a reader takes is up to it)");
    for (const auto& [tensor, shard] : m.index_.weight_map) {
      const auto it = held.find(tensor);
      if (it == held.end())
        refuse("the index maps " + tensor_name(tensor) + " to shard '" + shard +
               "', which does not hold it (no shard does)");
      else if (names[it->second] != shard)
        refuse("the index maps " + tensor_name(tensor) + " to shard '" + shard + "', but it is in shard '" +
               names[it->second] + "'");
    }
    for (const auto& [tensor, shard] : held)
      if (!m.index_.weight_map.contains(tensor))
        refuse("shard '" + names[shard] + "' holds " + tensor_name(tensor) +
               ", which the index does not list (a shard of another checkpoint?)");

    m.tensors_.reserve(held.size());
    for (std::size_t i = 0; i < m.shards_.size(); ++i)
      for (const tensor_info& t : m.shards_[i].tensors()) {
        sharded_tensor_info s;
        static_cast<tensor_info&>(s) = t;
        s.shard = i;
        m.by_name_.emplace(t.name, m.tensors_.size());
        m.data_bytes_ += t.bytes.size();
        m.tensors_.push_back(std::move(s));
      }
    return m;
  }

  [[nodiscard]] const std::string& index_path() const noexcept { return index_path_; }
  [[nodiscard]] const shard_index& index() const noexcept { return index_; }
  // The shards, in shard_index::shards() order, and their paths (the index's folder / the name).
  [[nodiscard]] const std::vector<file>& shards() const noexcept { return shards_; }
  [[nodiscard]] const std::vector<std::string>& shard_paths() const noexcept { return shard_paths_; }
  [[nodiscard]] const std::vector<sharded_tensor_info>& tensors() const noexcept { return tensors_; }
  // The first shard's "__metadata__" (transformers writes the same {"format": "pt"} in each).
  [[nodiscard]] const std::map<std::string, std::string>& metadata() const noexcept {
    return shards_.front().metadata();
  }
  // The bytes of every tensor of every shard (headers not counted).
  [[nodiscard]] std::uint64_t data_bytes() const noexcept { return data_bytes_; }
  // The index's "total_size", unchecked (see the top of this header).
  [[nodiscard]] std::optional<std::uint64_t> declared_total_size() const noexcept { return index_.total_size; }

  // The tensor called `name`, or nullptr.
  [[nodiscard]] const sharded_tensor_info* find(std::string_view name) const noexcept {
    const auto it = by_name_.find(std::string(name));
    return it == by_name_.end() ? nullptr : &tensors_[it->second];
  }
  // The tensor called `name`; throws errc::invalid_argument naming the index when there is none.
  [[nodiscard]] const sharded_tensor_info& at(std::string_view name) const {
    if (const sharded_tensor_info* t = find(name)) return *t;
    throw error(errc::invalid_argument,
                "safetensors index '" + index_path_ + "': no tensor named '" + detail::printable(name) + "'");
  }
  // As safetensors::file's, from the shard that holds `name`.
  [[nodiscard]] row_matrix to_float(std::string_view name) const { return shards_[at(name).shard].to_float(name); }
  [[nodiscard]] Eigen::Map<const row_matrix> as_matrix_f32(std::string_view name) const {
    return shards_[at(name).shard].as_matrix_f32(name);
  }

 private:
  std::string index_path_;
  shard_index index_;
  std::vector<file> shards_;
  std::vector<std::string> shard_paths_;
  std::vector<sharded_tensor_info> tensors_;
  std::map<std::string, std::size_t> by_name_;
  std::uint64_t data_bytes_ = 0;
};

// Where a single .safetensors file sits in a sharded checkpoint.
struct shard_position {
  std::string index_path;  // the index beside the file that lists it; empty: known by its name only
  std::uint64_t number = 0;  // 1-based, in the index's shard order (or the name's number)
  std::uint64_t count = 0;   // shards in the index (or in the name)
};

// Whether the file at `shard_path` is a shard: an index in its folder (any "*.safetensors.index.json",
// the first by name that lists the file's name as a shard) or, with none, a name of the form
// "-00001-of-00002.safetensors". nullopt for a file that is neither. Indexes that cannot be read or
// parsed are passed over (opening one reports why); never throws mixprec::error.
[[nodiscard]] inline std::optional<shard_position> index_beside(const std::string& shard_path) {
  namespace fs = std::filesystem;
  const fs::path p(shard_path);
  const std::string base = p.filename().string();
  const fs::path folder = p.parent_path();
  std::vector<std::string> indexes;
  std::error_code ec;
  for (fs::directory_iterator it(folder.empty() ? fs::path(".") : folder, ec), end; !ec && it != end; it.increment(ec))
    if (const std::string name = it->path().filename().string(); is_index_path(name)) indexes.push_back(name);
  std::sort(indexes.begin(), indexes.end());
  for (const std::string& name : indexes) {
    const std::string path = (folder / name).string();
    try {
      const mapped_file bytes(path);
      const std::vector<std::string> shards = parse_index(bytes.data(), path).shards();
      if (const auto it = std::find(shards.begin(), shards.end(), base); it != shards.end())
        return shard_position{path, static_cast<std::uint64_t>(it - shards.begin()) + 1,
                              static_cast<std::uint64_t>(shards.size())};
    } catch (const error&) {
    }
  }
  if (const std::optional<shard_number> n = numbered_shard(base)) return shard_position{{}, n->number, n->count};
  return std::nullopt;
}

}  // namespace mixprec::safetensors
