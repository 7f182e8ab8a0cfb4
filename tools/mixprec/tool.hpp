// The `mixprec` command line's work, as functions (main.cpp wires them to CLI11; tests call them):
//   inspect   tensors of a GGUF or safetensors file: name, shape, type, bytes
//   analyze   per float weight matrix and candidate ggml type: bytes, SQNR, and the (importance-weighted)
//             squared error, the additive loss the plan minimises
//   plan      a ggml type per tensor within a byte budget: the library's planner (plan_builder,
//             exact knapsack or greedy) over a sensitivity_table of the analysis, with the library's
//             rules (--tensor-type, llama.cpp's semantics); written as the library's plan JSON
//   quantize  rewrites a GGUF tensor by tensor by the plan (F32/F16/BF16 in), every metadata key kept,
//             general.file_type set to the type that holds most of the weights; every other tensor is
//             copied byte for byte, whatever its type (MXFP4 and the other types mixprec does not
//             decode included: a GGUF is refused only for a type ggml itself does not read)
// The loss of a tensor at a type is sum_rows sum_j imp_j (w_ij - q_ij)^2, with imp the llama.cpp
// importance matrix of the tensor (mean x_j^2 of its inputs) when one is given, else 1: with
// importance it is the expected squared output error of the layer on the calibration inputs
// (diagonal approximation), so sums over tensors compare.
#pragma once

#include <algorithm>
#include <bit>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <limits>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <mixprec/detail/fnv1a.hpp>
#include <mixprec/detail/parallel.hpp>
#include <mixprec/formats/ggml.hpp>
#include <mixprec/io/gguf.hpp>
#include <mixprec/io/imatrix.hpp>
#include <mixprec/io/mapped_file.hpp>
#include <mixprec/io/safetensors.hpp>
#include <mixprec/io/safetensors_index.hpp>
#include <mixprec/plan/llama_quant_policy.hpp>
#include <mixprec/plan/plan.hpp>
#include <mixprec/plan/plan_json.hpp>
#include <mixprec/plan/tensor_type_file.hpp>
#include <mixprec/sensitivity/metrics.hpp>

namespace mixprec_cli {

using mixprec::errc;
using mixprec::error;
using mixprec::ggml_type;
using mixprec::index_t;
using mixprec::plan_rule;
using mixprec::quant_spec;
using mixprec::row_matrix;

// ---- files ----

// Tells the kernel that a tensor's mapped bytes will not be read again, so that streaming through a
// file does not keep it all resident (the pages are file-backed: dropping them loses nothing).
inline void drop_pages(std::span<const std::byte> bytes) noexcept {
  if (bytes.empty()) return;
  const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<std::uintptr_t>(bytes.data()) + page - 1) / page * page;
  const auto end = (reinterpret_cast<std::uintptr_t>(bytes.data()) + bytes.size()) / page * page;
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}


struct tensor_entry {
  std::string name;
  std::string type;                 // "f32", "q4_0", ... (GGUF) or "F32", "F16", "BF16" (safetensors)
  std::vector<std::uint64_t> dims;  // as the file stores them (GGUF: ne0 first)
  index_t rows = 0, cols = 0;       // matrix view: cols = the contiguous row length
  std::uint64_t bytes = 0;
  bool is_float = false;            // F32/F16/BF16: can be analysed and quantized
  index_t n_mat = 1;                // matrices stacked in a 3-D tensor (MoE experts: GGUF ne2, safetensors dim 0)
  bool decodable = true;            // GGUF: a type mixprec decodes (false: MXFP4, the IQ1/2/3 types... whose
                                    // bytes are listed and copied, never decoded; formats/ggml_types.hpp)
  std::span<const std::byte> data;  // the stored bytes, inside the mapped file
  bool ggml_order = true;           // dims as GGUF stores them (ne0 first); false: safetensors' (outermost first)

  [[nodiscard]] double weights() const noexcept { return static_cast<double>(rows) * static_cast<double>(cols); }
};

// One part of a model stored in several files: a GGUF split (llama-gguf-split: split.no of
// split.count) or a safetensors shard (model-00001-of-00002.safetensors, listed by an index).
struct shard_info {
  int number = 0, count = 0;  // 1-based, as the file names count
  std::string index;          // the safetensors index that lists it ("" for GGUF or when there is none)
};

// The integer KV `key` of a GGUF (split.count is a u16 in llama-gguf-split's files), or nullopt.
[[nodiscard]] inline std::optional<std::uint64_t> integer_kv(const mixprec::gguf::metadata& kvs, std::string_view key) {
  const mixprec::gguf::value* v = kvs.find(key);
  if (!v) return std::nullopt;
  if (const auto* x = v->get_if<std::uint16_t>()) return *x;
  if (const auto* x = v->get_if<std::uint32_t>()) return *x;
  if (const auto* x = v->get_if<std::uint64_t>()) return *x;
  if (const auto* x = v->get_if<std::int32_t>(); x && *x >= 0) return static_cast<std::uint64_t>(*x);
  return std::nullopt;
}

// F32, F16 or BF16: the GGUF types quantize reads (those whose spec is one of mixprec's float formats).
[[nodiscard]] inline bool is_float_type(std::uint32_t code) noexcept {
  return mixprec::is_supported_ggml_type(code) &&
         mixprec::ggml_spec(static_cast<ggml_type>(code)).format != mixprec::format_id::ggml_block;
}

// A GGUF or safetensors file, chosen by its first bytes, or a sharded safetensors checkpoint given by
// its index (model.safetensors.index.json: JSON, its shards read as one model, io/safetensors_index.hpp).
class model_file {
 public:
  explicit model_file(const std::string& path) {
    mixprec::mapped_file probe(path);
    const auto b = probe.data();
    const auto first = std::find_if(b.begin(), b.end(), [](std::byte c) { return !std::isspace(static_cast<unsigned char>(c)); });
    if (b.size() >= 4 && std::memcmp(b.data(), "GGUF", 4) == 0) {
      gguf_.emplace(mixprec::gguf::file::parse(std::move(probe)));
    } else if (b.size() >= 9 && static_cast<char>(b[8]) == '{') {  // safetensors: u64 header length, then JSON
      st_.emplace(mixprec::safetensors::file::parse(std::move(probe)));
    } else if (mixprec::safetensors::is_index_path(path)) {
      sharded_.emplace(mixprec::safetensors::sharded_file::open(path));
    } else if (first != b.end() && static_cast<char>(*first) == '{') {  // JSON: an index by another name, or not a model
      nlohmann::json j;
      try {
        j = mixprec::detail::parse_json_strict(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
      } catch (const std::exception&) {  // not JSON: named as such below
      }
      if (j.is_object() && j.contains("weight_map")) {
        sharded_.emplace(mixprec::safetensors::sharded_file::open(path));
      } else {
        const std::string format = j.is_object() && j.contains("format") && j.at("format").is_string() ? j.at("format").get<std::string>() : "";
        throw error(errc::parse_error, "'" + path + "' is JSON, not a model" +
                                           (format == "mixprec-plan"      ? std::string(": a plan (give it to `mixprec quantize --plan`)")
                                            : format == "mixprec-measure" ? std::string(": a measure file (give it to `mixprec plan --measured`)")
                                                                          : std::string(" (a safetensors index has a \"weight_map\")")));
      }
    } else {
      std::string head;
      for (std::size_t i = 0; i < std::min<std::size_t>(b.size(), 8); ++i) {
        const auto c = static_cast<unsigned char>(b[i]);
        head += std::isprint(c) ? std::string(1, static_cast<char>(c)) : "\\x" + std::string(1, "0123456789abcdef"[c >> 4]) + "0123456789abcdef"[c & 15];
      }
      throw error(errc::parse_error, "'" + path + "' is " + (b.empty() ? std::string("empty") : "neither GGUF (which starts with \"GGUF\"), safetensors (an 8-byte length, then '{') nor a safetensors index (JSON): it starts with \"" + head + "\""));
    }
    if (gguf_) {
      for (const auto& t : gguf_->tensors()) {
        const auto traits = mixprec::gguf::type_traits_of(t.type);  // every type the reader accepts has one
        tensor_entry e{t.name, std::string(traits ? traits->name : "?"), t.dims, static_cast<index_t>(t.rows()),
                       static_cast<index_t>(t.row_length()), t.size, is_float_type(t.type),
                       t.dims.size() == 3 ? static_cast<index_t>(t.dims[2]) : 1, traits && traits->implemented, t.bytes};
        tensors_.push_back(std::move(e));
      }
      const auto count = integer_kv(gguf_->kvs(), "split.count");
      if (count && *count > 1)
        shard_ = shard_info{static_cast<int>(integer_kv(gguf_->kvs(), "split.no").value_or(0) + 1), static_cast<int>(*count), {}};
    } else {
      auto add = [&](const mixprec::safetensors::tensor_info& t) {
        tensors_.push_back({t.name, std::string(mixprec::safetensors::to_string(t.type)), t.shape, t.rows(), t.cols(),
                            t.end - t.begin, true, t.shape.size() == 3 ? static_cast<index_t>(t.shape[0]) : 1, true, t.bytes, false});
      };
      if (st_) {
        for (const auto& t : st_->tensors()) add(t);
        if (const auto pos = mixprec::safetensors::index_beside(path); pos && pos->count > 1)
          shard_ = shard_info{static_cast<int>(pos->number), static_cast<int>(pos->count), pos->index_path};
      } else {
        for (const auto& t : sharded_->tensors()) add(t);
      }
    }
  }
  // Set when the file is one part of a model stored in several (see shard_info).
  [[nodiscard]] const std::optional<shard_info>& shard() const noexcept { return shard_; }
  [[nodiscard]] bool is_gguf() const noexcept { return gguf_.has_value(); }
  [[nodiscard]] const mixprec::gguf::file& gguf() const { return *gguf_; }
  [[nodiscard]] const std::vector<tensor_entry>& tensors() const noexcept { return tensors_; }
  // The shards of a checkpoint given by its index (null otherwise).
  [[nodiscard]] const mixprec::safetensors::sharded_file* sharded() const noexcept { return sharded_ ? &*sharded_ : nullptr; }
  [[nodiscard]] row_matrix to_float(const std::string& name) const {
    return gguf_ ? gguf_->to_float(name) : st_ ? st_->to_float(name) : sharded_->to_float(name);
  }
  // Drops the tensor's pages from memory after use (see drop_pages).
  void release(const std::string& name) const noexcept {
    if (gguf_) {
      if (const auto* t = gguf_->find(name)) drop_pages(t->bytes);
    } else if (const auto* t = st_ ? st_->find(name) : sharded_->find(name)) {
      drop_pages(t->bytes);
    }
  }

 private:
  std::optional<mixprec::gguf::file> gguf_;
  std::optional<mixprec::safetensors::file> st_;
  std::optional<mixprec::safetensors::sharded_file> sharded_;
  std::vector<tensor_entry> tensors_;
  std::optional<shard_info> shard_;
};

// ---- progress ----

// A one-line progress bar on stderr when it is a terminal, else a line every 10 %: share done, rate in
// weights per second, and the time left at that rate.
class progress {
 public:
  // total: the weights to process (the rate and ETA count weights, so a big tensor weighs more).
  progress(std::string what, double total)
      : what_(std::move(what)), total_(std::max(total, 1.0)), tty_(isatty(2) != 0), start_(std::chrono::steady_clock::now()) {}
  void step(const std::string& item, double weights) {
    done_ += weights;
    const int pct = static_cast<int>(std::min(100.0, 100.0 * done_ / total_));
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double rate = secs > 0 ? done_ / secs : 0.0;
    const double left = rate > 0 ? (total_ - done_) / rate : 0.0;
    char tail[96];
    std::snprintf(tail, sizeof tail, "%5.1f M weights/s, %s left", rate / 1e6, clock(left).c_str());
    const bool last = done_ >= total_;
    if (tty_) {
      const int filled = pct / 4;
      std::fprintf(stderr, "\r%s [%s%s] %3d %% %s  %-32.32s", what_.c_str(), std::string(static_cast<std::size_t>(filled), '#').c_str(),
                   std::string(static_cast<std::size_t>(25 - filled), ' ').c_str(), pct, tail, item.c_str());
      if (last) std::fprintf(stderr, "\n");
    } else if (pct / 10 != last_ / 10 || last) {
      std::fprintf(stderr, "%s: %d %%, %s, %s\n", what_.c_str(), pct, tail, item.c_str());
    }
    last_ = pct;
  }

 private:
  static std::string clock(double s) {
    const auto t = static_cast<long>(s + 0.5);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    return buf;
  }
  std::string what_;
  double total_, done_ = 0;
  bool tty_;
  int last_ = -1;
  std::chrono::steady_clock::time_point start_;
};

// ---- threads ----

// Runs fn(k) for every k in [0, n) on `threads` threads (0: every core): the library's pool
// (detail/parallel.hpp), which rethrows the first exception here once every worker has stopped.
template <class Fn>
void parallel_for(std::size_t n, unsigned threads, Fn&& fn) {
  mixprec::detail::parallel_for(n, mixprec::detail::worker_count(threads, n), [&](std::size_t k, unsigned) { fn(k); });
}

// ---- tensor roles ----

// What a tensor is to the planner (plan/llama_quant_policy.hpp: llama.cpp's rules).
using mixprec::tensor_role;
using mixprec::to_string;

[[nodiscard]] inline tensor_role role_of(const tensor_entry& t) {
  std::vector<std::uint64_t> ne(t.dims.begin(), t.dims.end());
  if (!t.ggml_order) std::reverse(ne.begin(), ne.end());
  return mixprec::tensor_role_of(t.name, ne);
}

// "mxfp4, which mixprec does not decode" for a type mixprec only carries, else the type's name.
[[nodiscard]] inline std::string stored_type_text(const tensor_entry& t) {
  return t.decodable ? t.type : t.type + ", which mixprec does not decode";
}

// The weight matrices and expert stacks stored in a block type (a GGUF already quantized, or kept in a
// type mixprec does not decode, as gpt-oss keeps its experts in MXFP4): plan and analyze leave them
// out and quantize copies their bytes, as llama-quantize keeps MXFP4.
[[nodiscard]] inline std::vector<const tensor_entry*> kept_as_stored(const std::vector<tensor_entry>& tensors) {
  std::vector<const tensor_entry*> out;
  for (const auto& t : tensors) {
    if (t.is_float) continue;
    const tensor_role r = role_of(t);
    if (mixprec::quantized_by_default(r)) out.push_back(&t);
  }
  return out;
}

// ---- which model a file is ----

using mixprec::detail::fnv1a;  // the identity of a model file and of the calibration ids in measure.json
using mixprec::detail::hex16;

// The identity of a model file that plans and measure files record and that quantize and plan
// --measured check before any work:
//   tensors         every tensor: name, type and shape (as the file stores it)
//   tensors_fnv1a64 FNV-1a of the names, shapes and types, sorted by name (a file rewritten in another
//                   order is the same model), with F32, F16 and BF16 as one "float" type: the same
//                   weights converted to another float type are the same model
//   data_fnv1a64    FNV-1a of a sample of every tensor's bytes, sorted by name: its first and last 64
//                   bytes. A fine-tune or another conversion of the same architecture changes them;
//                   reading them touches two pages per tensor, not the whole file.
[[nodiscard]] inline nlohmann::json model_identity(const std::vector<tensor_entry>& tensors, const std::string& path) {
  std::vector<const tensor_entry*> sorted;
  for (const auto& t : tensors) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(), [](const tensor_entry* a, const tensor_entry* b) { return a->name < b->name; });
  std::uint64_t th = fnv1a({}), dh = fnv1a({});
  nlohmann::json list = nlohmann::json::array();
  for (const tensor_entry* t : sorted) {
    const std::string head = t->name + '\0' + (t->is_float ? std::string("float") : t->type) + '\0';
    th = fnv1a(std::as_bytes(std::span(head)), th);
    th = fnv1a(std::as_bytes(std::span(t->dims)), th);
    const std::size_t n = std::min<std::size_t>(64, t->data.size());
    dh = fnv1a(t->data.first(n), dh);
    dh = fnv1a(t->data.last(n), dh);
    list.push_back({{"name", t->name}, {"type", t->type}, {"shape", t->dims}});
  }
  return {{"path", path}, {"tensors_fnv1a64", hex16(th)}, {"data_fnv1a64", hex16(dh)}, {"tensors", list}};
}

// What `what` (a plan or measure file) records of its model (`recorded`: its "model" object, or null
// for a file without one) against the file it is used with: errc::invalid_argument (a bad request,
// exit 2) naming what differs (tensors only one of them has, or with another shape or type; else the
// same tensors with other weights), before any work; errc::parse_error for a damaged record. The same
// tensors in another float type (F16 made into BF16, say) cannot be compared by their bytes: that is
// returned as a warning, not refused.
[[nodiscard]] inline std::optional<std::string> check_same_model(const nlohmann::json& recorded, const std::vector<tensor_entry>& tensors,
                                                                 const std::string& path, const std::string& what) {
  if (recorded.is_null()) return std::nullopt;
  const nlohmann::json here = model_identity(tensors, path);
  const std::string force = " (--force uses it anyway)";
  try {
    if (!recorded.is_object()) throw error(errc::parse_error, "not an object");
    const std::string made_for = what + " was made for '" + recorded.at("path").get<std::string>() + "'";
    std::map<std::string, std::string> theirs, ours;  // name -> "type shape"
    for (const auto& t : recorded.at("tensors")) theirs[t.at("name").get<std::string>()] = t.at("type").dump() + " " + t.at("shape").dump();
    for (const auto& t : here.at("tensors")) ours[t.at("name").get<std::string>()] = t.at("type").dump() + " " + t.at("shape").dump();
    if (recorded.at("tensors_fnv1a64").get<std::string>() != here.at("tensors_fnv1a64")) {
      std::vector<std::string> diffs;
      std::size_t only_here = 0, only_there = 0, changed = 0;
      for (const auto& [name, desc] : ours) {
        const auto it = theirs.find(name);
        if (it == theirs.end()) {
          if (++only_here <= 3) diffs.push_back("'" + name + "' is in '" + path + "', not in that model");
        } else if (it->second != desc && ++changed <= 3) {
          diffs.push_back("'" + name + "' is " + desc + " here, " + it->second + " there");
        }
      }
      for (const auto& [name, desc] : theirs)
        if (!ours.count(name) && ++only_there <= 3) diffs.push_back("'" + name + "' is in that model, not in '" + path + "'");
      std::string list;
      for (const auto& d : diffs) list += (list.empty() ? "" : "; ") + d;
      throw error(errc::invalid_argument, made_for + ", a model with other tensors: " + std::to_string(theirs.size()) + " tensors there, " +
                                              std::to_string(ours.size()) + " in '" + path + "' (" + std::to_string(only_here) + " only here, " +
                                              std::to_string(only_there) + " only there, " + std::to_string(changed) +
                                              " of another shape or type: " + list + ")" + force);
    }
    if (theirs != ours)  // the same tensors, some in another float type: their bytes differ whatever the weights
      return made_for + ", whose float tensors are stored in other types (e.g. " + [&] {
        for (const auto& [name, desc] : ours)
          if (theirs.at(name) != desc) return "'" + name + "' is " + desc + " here, " + theirs.at(name) + " there";
        return std::string();
      }() + "): the weights cannot be compared, only the tensors";
    if (recorded.at("data_fnv1a64").get<std::string>() != here.at("data_fnv1a64"))
      throw error(errc::invalid_argument, made_for + ", which has the same tensors as '" + path + "' but other weights (data fingerprint " +
                                              recorded.at("data_fnv1a64").get<std::string>() + ", here " +
                                              here.at("data_fnv1a64").get<std::string>() +
                                              "): a fine-tune or another conversion, whose measured errors are not this file's" + force);
  } catch (const nlohmann::json::exception& e) {
    throw error(errc::parse_error, what + ": its \"model\" record is damaged: " + e.what());
  } catch (const error& e) {
    if (e.code() != errc::parse_error) throw;
    throw error(errc::parse_error, what + ": its \"model\" record is damaged: " + e.message());
  }
  return std::nullopt;
}

// ---- analyze ----

struct candidate_result {
  quant_spec spec;                  // a spec GGUF can store (ggml_type_of(spec) has a value)
  std::uint64_t bytes = 0;
  double sqnr_db = 0.0;
  double error = 0.0;     // sum_ij imp_j (w - q)^2, imp on the file's common scale (see analyze)
  bool fallback = false;  // not a requested type: none of those could represent the tensor
};

struct tensor_analysis {
  std::string name;
  index_t rows = 0, cols = 0;  // rows of all expert matrices together
  index_t n_mat = 1;           // expert matrices (1 for a plain matrix)
  std::uint64_t source_bytes = 0;
  bool has_importance = false;
  std::vector<candidate_result> candidates;  // in the order of the requested types; infeasible ones left out
  std::vector<std::string> notes;            // why a requested type was left out, or a fallback chosen
};

// The GGUF type a spec stores as; errc::invalid_argument for a spec GGUF cannot hold (mixprec's own
// int4/g32... formats: the tool writes llama.cpp's types).
[[nodiscard]] inline ggml_type storage_type(const quant_spec& s) {
  if (const auto t = mixprec::ggml_type_of(s)) return *t;
  throw error(errc::invalid_argument, "'" + mixprec::to_string(s) + "' has no GGUF type; the tool writes llama.cpp's types (q4_0, q4_K, q8_0, f16...)");
}

// The types as llama.cpp names them, comma-separated ("q4_0,q8_0,f16"), as specs (parse_spec).
[[nodiscard]] inline std::vector<quant_spec> parse_types(const std::string& list) {
  std::vector<quant_spec> out;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t comma = list.find(',', start);
    const std::string item = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty()) {
      const quant_spec s = mixprec::parse_spec(item);
      (void)storage_type(s);
      if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (out.empty()) throw error(errc::invalid_argument, "no types given");
  return out;
}

// One --tensor-type: the library's rule grammar (plan/rules.hpp) with the pattern a regex searched in
// the name and lower-cased first, as llama-quantize reads --tensor-type: PATTERN=TYPE (the first
// matching one decides a tensor's type), PATTERN>=BITS, PATTERN<=BITS. A forced type must be one GGUF
// stores. Throws errc::parse_error / invalid_argument naming the text.
[[nodiscard]] inline plan_rule parse_override(const std::string& text) {
  std::size_t end = text.rfind('=');  // the pattern ends where parse_plan_rule's does
  if (end != std::string::npos && end > 0 && (text[end - 1] == '<' || text[end - 1] == '>')) --end;
  std::string lowered = text;
  for (std::size_t i = 0; end != std::string::npos && i < end; ++i)
    lowered[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(lowered[i])));
  plan_rule r = mixprec::parse_plan_rule(lowered, mixprec::name_pattern::kind::regex);
  if (r.force) (void)storage_type(*r.force);
  return r;
}

// The first forcing rule (PATTERN=TYPE) whose pattern is found in name, or null.
[[nodiscard]] inline const plan_rule* find_override(const std::vector<plan_rule>& rules, const std::string& name) {
  for (const auto& r : rules)
    if (r.forces() && r.pattern.matches(name)) return &r;
  return nullptr;
}
// The spec a forcing rule gives (fp32 for "never quantize").
[[nodiscard]] inline quant_spec forced_spec(const plan_rule& r) { return r.force ? *r.force : mixprec::parse_spec("fp32"); }

// Whether t is analysed and planned: weight matrices and expert stacks, and any other non-empty
// float tensor of 2+ dimensions that a forcing override names.
[[nodiscard]] inline bool plannable(const tensor_entry& t, const std::vector<plan_rule>& overrides = {}) {
  if (!t.is_float) return false;
  const tensor_role r = role_of(t);
  if (mixprec::quantized_by_default(r)) return true;
  return (r == tensor_role::router || r == tensor_role::kept_float) && t.dims.size() >= 2 && find_override(overrides, t.name);
}

// An imatrix as the tool uses it: per weight, the importance llama-quantize reads (ne0 values, or
// ne0 x n_expert for expert stacks, expert-major) and which of its matrices hold no data: an expert no
// calibration token reached (count 0) or a matrix whose values are all zero (no column was ever
// active). Matrices without data are weighted 1 in the error, like tensors without an entry. A matrix
// of count 0 is searched with the 1.0s llama-quantize hands ggml for it (tools/quantize/quantize.cpp
// load_imatrix), so its bytes are llama-quantize's. An all-zero matrix is quantized without importance:
// llama-quantize hands ggml the zeros, and ggml's searches then set every scale, hence every weight of
// that matrix, to 0; that difference is documented (README) and printed as a note.
struct importance_set {
  std::map<std::string, Eigen::VectorXf> values;
  std::map<std::string, std::vector<bool>> zero_count;  // per matrix, from the GGUF counts (empty: legacy)

  [[nodiscard]] bool empty() const noexcept { return values.empty(); }
};

// Reads an imatrix file in either format (io/imatrix.hpp).
[[nodiscard]] inline importance_set load_importance(const std::string& path) {
  const auto f = mixprec::imatrix::load(path);
  importance_set out;
  for (const auto& [name, e] : f.entries) {
    out.values.emplace(name, e.importance());
    if (!e.counts.empty()) {
      std::vector<bool> zero;
      for (float c : e.counts) zero.push_back(c == 0.0f);
      out.zero_count.emplace(name, std::move(zero));
    }
  }
  return out;
}

// An imatrix made for another model: one whose entries name none of the tensors of `tensors` is
// errc::invalid_argument (exit 2) naming one of them (llama.cpp's imatrix files record no model, so
// names and, per tensor, lengths are what can be checked; check_importance_length checks those). Returns
// how many entries name no tensor of the file (llama-quantize ignores them; the tool notes them).
inline std::size_t check_importance_names(const importance_set& imp, const std::vector<tensor_entry>& tensors, const std::string& path,
                                          const std::string& file) {
  std::set<std::string> names;
  for (const auto& t : tensors) names.insert(t.name);
  std::size_t absent = 0;
  for (const auto& [name, v] : imp.values) absent += names.count(name) ? 0 : 1;
  if (absent > 0 && absent == imp.values.size())
    throw error(errc::invalid_argument, "imatrix '" + path + "' has " + std::to_string(absent) + " entries and none names a tensor of '" +
                                            file + "' (its first is '" + imp.values.begin()->first + "'): it was made for another model");
  return absent;
}

// llama-quantize's one exemption from its length check (src/llama-quant.cpp, tensor_name_match_token_embd):
// an entry of the wrong length for a token embedding is ignored there (the tensor is quantized without).
[[nodiscard]] inline bool is_token_embedding(const std::string& name) {
  return name == "token_embd.weight" || name == "per_layer_token_embd.weight";
}

// Whether an importance entry of v.size() values fits t: ne0 (shared by all its matrices) or ne0 x n_mat
// (one slice per expert).
[[nodiscard]] inline bool importance_fits(const Eigen::VectorXf& v, const tensor_entry& t) {
  return v.size() == t.cols || v.size() == t.cols * t.n_mat;
}

// An importance entry that does not fit t is errc::shape_mismatch naming the tensor, but for a token
// embedding, whose entry is then ignored (importance_view), as llama-quantize ignores it.
inline void check_importance_length(const Eigen::VectorXf& v, const tensor_entry& t) {
  const auto n = v.size();
  if (importance_fits(v, t) || is_token_embedding(t.name)) return;
  throw error(errc::shape_mismatch, "importance of '" + t.name + "' has " + std::to_string(n) + " entries; the tensor needs " +
                                        std::to_string(t.cols) + " (its row length)" +
                                        (t.n_mat > 1 ? " or " + std::to_string(t.cols * t.n_mat) + " (row length x " +
                                                           std::to_string(t.n_mat) + " experts)"
                                                     : std::string()));
}

// One tensor's importance, matrix by matrix: the search weights handed to ggml's quantizers (null for
// an all-zero matrix; the 1.0s of a matrix of count 0) and the error weights (divided by the common
// scale; 1 without data).
struct tensor_importance {
  std::vector<const float*> search;  // n_mat pointers to cols values, or null
  Eigen::VectorXd error;             // n_mat * cols, expert-major; empty when the tensor has no entry
  bool any = false;                  // some matrix has data
  std::vector<std::string> notes;
};

// t's importance from imp (see importance_set); the matrices with data of every tensor in `tensors`
// set the common scale: their mean, so that the plan does not depend on the imatrix's absolute scale
// (chunk size, token count) and data-less columns (weight 1) sit at the average.
class importance_view {
 public:
  importance_view(const importance_set& imp, const model_file& f, const std::vector<std::string>& tensors) : imp_(imp) {
    double sum = 0.0, n = 0.0;
    for (const auto& t : f.tensors()) {
      if (std::find(tensors.begin(), tensors.end(), t.name) == tensors.end()) continue;
      const auto it = imp.values.find(t.name);
      if (it == imp.values.end()) continue;
      check_importance_length(it->second, t);
      if (!importance_fits(it->second, t)) continue;  // a token embedding's: ignored
      for (index_t m = 0; m < t.n_mat; ++m)
        if (has_data(t, m)) {
          sum += slice(it->second, t, m).cast<double>().sum();
          n += static_cast<double>(t.cols);
        }
    }
    scale_ = n > 0.0 && sum > 0.0 ? sum / n : 1.0;
  }

  [[nodiscard]] tensor_importance of(const tensor_entry& t) const {
    tensor_importance out;
    out.search.assign(static_cast<std::size_t>(t.n_mat), nullptr);
    const auto it = imp_.values.find(t.name);
    if (it == imp_.values.end()) {
      if (!imp_.empty()) out.notes.push_back("no imatrix entry: its columns are weighted 1 (the imatrix's mean)");
      return out;
    }
    check_importance_length(it->second, t);
    if (!importance_fits(it->second, t)) {
      out.notes.push_back("imatrix entry of " + std::to_string(it->second.size()) + " values does not fit its rows of " +
                          std::to_string(t.cols) + ": ignored (quantized without importance), as llama-quantize ignores it");
      return out;
    }
    out.error = Eigen::VectorXd::Ones(t.cols * t.n_mat);
    std::string unreached, zeros;
    for (index_t m = 0; m < t.n_mat; ++m) {
      if (zero_count(t, m)) {  // searched with importance()'s 1.0s, as llama-quantize does
        out.search[static_cast<std::size_t>(m)] = slice(it->second, t, m).data();
        unreached += (unreached.empty() ? "" : ", ") + std::to_string(m);
        continue;
      }
      if (!has_data(t, m)) {
        zeros += (zeros.empty() ? "" : ", ") + std::to_string(m);
        continue;
      }
      out.search[static_cast<std::size_t>(m)] = slice(it->second, t, m).data();
      out.error.segment(m * t.cols, t.cols) = slice(it->second, t, m).cast<double>() / scale_;
      out.any = true;
    }
    if (!unreached.empty())
      out.notes.push_back(std::string(t.n_mat > 1 ? "imatrix count is 0 for expert(s) " + unreached : "imatrix count is 0") +
                          " (no calibration token reached " + (t.n_mat > 1 ? "them" : "it") +
                          "): searched with importance 1 as llama-quantize does, its columns weighted 1");
    if (!zeros.empty())
      out.notes.push_back(std::string(t.n_mat > 1 ? "imatrix entry is all zeros for expert(s) " + zeros : "imatrix entry is all zeros") +
                          ": quantized without importance there, its columns weighted 1 (llama-quantize would search with the "
                          "zeros, which sets every weight there to 0)");
    return out;
  }

 private:
  [[nodiscard]] static Eigen::Map<const Eigen::VectorXf> slice(const Eigen::VectorXf& v, const tensor_entry& t, index_t m) {
    return {v.data() + (v.size() == t.cols ? 0 : m * t.cols), t.cols};
  }
  // Matrix m of t has a count of 0 (GGUF imatrix; its importance() is 1.0 throughout).
  [[nodiscard]] bool zero_count(const tensor_entry& t, index_t m) const {
    if (imp_.values.at(t.name).size() != t.cols * t.n_mat) return false;
    const auto z = imp_.zero_count.find(t.name);
    return z != imp_.zero_count.end() && static_cast<index_t>(z->second.size()) == t.n_mat && z->second[static_cast<std::size_t>(m)];
  }
  [[nodiscard]] bool has_data(const tensor_entry& t, index_t m) const {
    return !zero_count(t, m) && slice(imp_.values.at(t.name), t, m).maxCoeff() > 0.0f;
  }

  const importance_set& imp_;
  double scale_ = 1.0;
};

// The first element of w that is NaN or Inf, as an error naming the tensor (errc::non_finite).
inline void check_finite(const row_matrix& w, const std::string& name) {
  // One branch-free integer pass (Eigen's allFinite() took half of an analysis): an exponent of all ones
  // (Inf, NaN) carries into bit 31 when 1 is added to it.
  std::uint32_t carry = 0;
  for (index_t i = 0; i < w.size(); ++i) carry |= (std::bit_cast<std::uint32_t>(w.data()[i]) & 0x7f800000u) + 0x00800000u;
  if (!(carry & 0x80000000u)) return;
  for (index_t r = 0; r < w.rows(); ++r)
    for (index_t c = 0; c < w.cols(); ++c)
      if (!std::isfinite(w(r, c)))
        throw error(errc::non_finite, "tensor '" + name + "' has " + (std::isnan(w(r, c)) ? "NaN" : "Inf") + " at row " +
                                          std::to_string(r) + ", column " + std::to_string(c) + ": the input is damaged");
}

// Rows per unit of parallel work. Fixed, so that the error sums (added chunk by chunk, in order) and
// hence the plan do not depend on the thread count.
inline constexpr index_t chunk_rows = 32;

// The chunks of an n_mat-stack of matrices with `per` rows each: (matrix, first row, end row).
struct row_chunk {
  index_t m, r0, r1;
};
[[nodiscard]] inline std::vector<row_chunk> row_chunks(index_t rows, index_t n_mat) {
  const index_t per = rows / n_mat;
  std::vector<row_chunk> out;
  for (index_t m = 0; m < n_mat; ++m)
    for (index_t r = 0; r < per; r += chunk_rows) out.push_back({m, m * per + r, m * per + std::min(per, r + chunk_rows)});
  return out;
}

// Quantizes w (n_mat stacked matrices of rows / n_mat rows each: MoE experts) to t into out (rows *
// row_bytes(t, cols) bytes), matrix by matrix so that each expert is searched with its own slice of
// the importance (search[m]: cols values, or null), as llama-quantize does; rows are split over
// `threads`. The bytes are ggml's whatever the thread count: analyze measures what quantize writes.
inline void quantize_stack_into(ggml_type t, const row_matrix& w, const std::vector<const float*>& search, std::span<std::byte> out,
                                const std::string& name, unsigned threads = 1) {
  const std::size_t rb = mixprec::ggml::row_bytes(t, w.cols());
  const auto chunks = row_chunks(w.rows(), static_cast<index_t>(search.size()));
  parallel_for(chunks.size(), threads, [&](std::size_t k) {
    const row_chunk& c = chunks[k];
    std::optional<std::span<const float>> qw;
    if (const float* p = search[static_cast<std::size_t>(c.m)]; p && mixprec::ggml::traits(t).takes_weights)
      qw = std::span<const float>(p, static_cast<std::size_t>(w.cols()));
    mixprec::ggml::quantize_into(t, w.middleRows(c.r0, c.r1 - c.r0),
                                 out.subspan(static_cast<std::size_t>(c.r0) * rb, static_cast<std::size_t>(c.r1 - c.r0) * rb), qw, name);
  });
}

[[nodiscard]] inline std::vector<std::byte> quantize_stack(ggml_type t, const row_matrix& w, const std::vector<const float*>& search,
                                                           const std::string& name, unsigned threads = 1) {
  std::vector<std::byte> out(static_cast<std::size_t>(w.rows()) * mixprec::ggml::row_bytes(t, w.cols()));
  quantize_stack_into(t, w, search, out, name, threads);
  return out;
}

// quantize_stack, measured chunk by chunk (quantized, decoded and compared without a whole decoded
// copy): bytes, SQNR, and the squared error weighted by imp.error (unweighted when the tensor has no
// entry). A type that leaves nothing of a non-zero tensor (SQNR <= 0 dB: its values are below what
// the type's FP16 scales resolve, and round to 0) cannot represent it: errc::not_representable.
[[nodiscard]] inline candidate_result measure(const quant_spec& spec, const row_matrix& w, const tensor_importance& imp,
                                              const std::string& name, unsigned threads = 1) {
  const ggml_type t = storage_type(spec);
  const index_t cols = w.cols();
  const std::size_t rb = mixprec::ggml::row_bytes(t, cols);
  const auto chunks = row_chunks(w.rows(), static_cast<index_t>(imp.search.size()));
  std::vector<double> signal(chunks.size()), noise(chunks.size()), weighted(chunks.size());
  parallel_for(chunks.size(), threads, [&](std::size_t k) {
    const row_chunk& c = chunks[k];
    const auto block = w.middleRows(c.r0, c.r1 - c.r0);
    std::vector<std::byte> q(static_cast<std::size_t>(c.r1 - c.r0) * rb);
    std::optional<std::span<const float>> qw;
    if (const float* p = imp.search[static_cast<std::size_t>(c.m)]; p && mixprec::ggml::traits(t).takes_weights)
      qw = std::span<const float>(p, static_cast<std::size_t>(cols));
    mixprec::ggml::quantize_into(t, block, q, qw, name);
    std::vector<float> back(static_cast<std::size_t>(cols));
    const double* iw = imp.error.size() > 0 ? imp.error.data() + c.m * cols : nullptr;
    // Four running sums of each kind (a fixed order, so the result is the same on every run) let the
    // CPU overlap the additions that one chain would serialise.
    double sig[4] = {}, err[4] = {}, werr[4] = {};
    for (index_t r = 0; r < block.rows(); ++r) {
      mixprec::ggml::dequantize_row(t, std::span<const std::byte>(q).subspan(static_cast<std::size_t>(r) * rb, rb), back);
      const float* xr = w.data() + (c.r0 + r) * cols;  // w is row-major and contiguous
      for (index_t j = 0; j < cols; ++j) {
        const double x = xr[j], d = static_cast<double>(back[static_cast<std::size_t>(j)]) - x;
        const auto lane = static_cast<std::size_t>(j & 3);
        sig[lane] += x * x;
        err[lane] += d * d;
        werr[lane] += (iw ? iw[j] : 1.0) * (d * d);
      }
    }
    signal[k] = (sig[0] + sig[1]) + (sig[2] + sig[3]);
    noise[k] = (err[0] + err[1]) + (err[2] + err[3]);
    weighted[k] = (werr[0] + werr[1]) + (werr[2] + werr[3]);
  });
  double sig = 0, err = 0, werr = 0;
  for (std::size_t k = 0; k < chunks.size(); ++k) sig += signal[k], err += noise[k], werr += weighted[k];
  const double sqnr = err > 0 ? 10.0 * std::log10(sig / err) : std::numeric_limits<double>::infinity();
  if (sig > 0 && !(sqnr > 0.0))
    throw error(errc::not_representable, "its values are below what the type's scales resolve: they round to 0 (SQNR " +
                                             std::to_string(sqnr) + " dB)");
  return {spec, static_cast<std::uint64_t>(w.rows()) * rb, sqnr, werr, false};
}

// Total weights of the tensors analyse() would plan (for a bits-per-weight budget), from the header only.
[[nodiscard]] inline double plannable_weights(const model_file& f, const std::vector<plan_rule>& overrides = {}) {
  double n = 0.0;
  for (const auto& t : f.tensors())
    if (plannable(t, overrides)) n += static_cast<double>(t.rows) * static_cast<double>(t.cols);
  return n;
}

// The specs analysed for t: the forcing override's alone when one names it (the planner could choose
// nothing else), else the requested ones.
[[nodiscard]] inline std::vector<quant_spec> wanted_types(const tensor_entry& t, const std::vector<quant_spec>& types,
                                                          const std::vector<plan_rule>& overrides) {
  if (const plan_rule* o = find_override(overrides, t.name)) return {forced_spec(*o)};
  return types;
}

// Quantizes every plannable tensor to every requested type and measures it. A type that cannot
// represent a tensor (its block does not divide the row, or a value overflows the type's scale) is
// left out for that tensor with a note; a tensor no requested type represents gets the
// fallback_types that do, marked as such (the plan counts their bytes like any other). NaN/Inf in a
// weight is an error naming it (errc::non_finite). Importance (optional) is divided by
// importance_set::common_scale; each analysed tensor without an entry is named in a note.
[[nodiscard]] inline std::vector<tensor_analysis> analyze(const model_file& f, const std::vector<quant_spec>& types,
                                                          const importance_set& importance = {},
                                                          const std::vector<plan_rule>& overrides = {},
                                                          bool show_progress = true, unsigned threads = 1) {
  std::vector<std::string> names;
  for (const auto& t : f.tensors())
    if (plannable(t, overrides)) names.push_back(t.name);
  const importance_view view(importance, f, names);
  std::vector<tensor_analysis> out;
  progress bar("analyze", plannable_weights(f, overrides));
  for (const auto& t : f.tensors()) {
    if (!plannable(t, overrides)) continue;
    const row_matrix w = f.to_float(t.name);
    f.release(t.name);
    check_finite(w, t.name);
    const tensor_importance imp = view.of(t);
    tensor_analysis a{t.name, w.rows(), w.cols(), t.n_mat, t.bytes, imp.any, {}, imp.notes};
    auto try_type = [&](const quant_spec& spec) -> std::optional<candidate_result> {
      if (!mixprec::fits(spec, w.cols())) {
        a.notes.push_back(mixprec::to_string(spec) + " left out: row length " + std::to_string(w.cols()) +
                          " is not a multiple of its block of " + std::to_string(mixprec::ggml::block_size(spec.ggml)));
        return std::nullopt;
      }
      try {
        return measure(spec, w, imp, t.name, threads);
      } catch (const error& e) {
        if (e.code() != errc::not_representable) throw;
        a.notes.push_back(mixprec::to_string(spec) + " left out: " + e.message());
        return std::nullopt;
      }
    };
    const std::vector<quant_spec> wanted = wanted_types(t, types, overrides);
    auto chain = mixprec::with_fallback(wanted, try_type);  // plan/fallback.hpp
    for (auto& c : chain.taken) c.fallback = chain.fell_back;
    a.candidates = std::move(chain.taken);
    if (chain.fell_back) a.notes.push_back("no requested type can represent it: the plan chooses among the fallback types " + mixprec::spec_list(chain));
    out.push_back(std::move(a));
    if (show_progress) bar.step(t.name, static_cast<double>(w.size()));
  }
  return out;
}

// The smallest size any plan can have, from the header only (before any tensor is read): per tensor,
// the smallest requested (or overriding) type whose block divides the row, else the smallest fallback
// that does. A budget below it is out of reach whatever the analysis finds.
[[nodiscard]] inline double size_floor(const model_file& f, const std::vector<quant_spec>& types,
                                       const std::vector<plan_rule>& overrides = {}) {
  double total = 0.0;
  for (const auto& t : f.tensors()) {
    if (!plannable(t, overrides)) continue;
    auto bytes_of = [&](const quant_spec& spec) -> std::optional<double> {
      if (!mixprec::fits(spec, t.cols)) return std::nullopt;
      return static_cast<double>(mixprec::quantized_bytes(spec, t.rows, t.cols));
    };
    const std::vector<quant_spec> wanted = wanted_types(t, types, overrides);
    const auto chain = mixprec::with_fallback(wanted, bytes_of);  // plan/fallback.hpp
    std::optional<double> best;
    for (double b : chain.taken) best = best ? std::min(*best, b) : b;
    total += best.value_or(0.0);
  }
  return total;
}

// Checks the overrides against the file's header before any tensor is read: a rule whose type's block
// does not divide the row length of a tensor it names is a bad request (errc::invalid_argument).
inline void check_overrides(const model_file& f, const std::vector<plan_rule>& overrides) {
  for (const auto& t : f.tensors()) {
    if (!plannable(t, overrides)) continue;
    if (const plan_rule* o = find_override(overrides, t.name); o && !mixprec::fits(forced_spec(*o), t.cols))
      throw error(errc::invalid_argument, "override " + o->describe() + ": tensor '" + t.name + "' has rows of " +
                                              std::to_string(t.cols) + " values, not a multiple of the type's block of " +
                                              std::to_string(mixprec::ggml::block_size(o->force->ggml)));
  }
}

// ---- plan ----

// The analysis as the library's sensitivity table: per tensor, each measured type with its weighted
// squared error as the loss (sums over tensors compare: see the top of this file).
[[nodiscard]] inline mixprec::sensitivity_table to_table(const std::vector<tensor_analysis>& analysis) {
  mixprec::sensitivity_table t;
  for (const auto& a : analysis)
    for (const auto& c : a.candidates) t.add(a.name, a.rows, a.cols, c.spec, c.error);
  return t;
}

// Calls fn with the library's planner (policy "knapsack", exact, or "greedy") over a sensitivity table,
// the overrides as its rules, and budget_bytes as its byte budget. Overrides that name no tensor of the
// table are left out (llama.cpp ignores them too; run() warns about them).
template <class Fn>
[[nodiscard]] auto with_planner(const mixprec::sensitivity_table& table, double budget_bytes, const std::string& policy,
                                const std::vector<plan_rule>& overrides, Fn&& fn) {
  if (policy != "knapsack" && policy != "greedy")
    throw error(errc::invalid_argument, "policy '" + policy + "': expected knapsack or greedy");
  const auto layers = table.layers();
  auto with_rules = [&](auto planner) {
    for (const auto& r : overrides)
      if (std::any_of(layers.begin(), layers.end(), [&](const mixprec::layer_shape& l) { return r.pattern.matches(l.name); }))
        planner.rule(r);
    return fn(planner);
  };
  const mixprec::byte_budget budget{budget_bytes};
  if (policy == "knapsack") return with_rules(mixprec::plan_builder{table, mixprec::knapsack_policy{}, budget});
  return with_rules(mixprec::plan_builder{table, mixprec::greedy_policy{}, budget});
}

// The least total loss within budget_bytes (with_planner).
[[nodiscard]] inline mixprec::plan plan_table(const mixprec::sensitivity_table& table, double budget_bytes, const std::string& policy,
                                              const std::vector<plan_rule>& overrides = {}) {
  return with_planner(table, budget_bytes, policy, overrides, [](const auto& planner) { return planner.build(); });
}

// The plans along the bytes / predicted-loss frontier (plan_builder::pareto): `points` byte budgets from
// the smallest to the largest plan, dominated plans removed; sorted by bytes, the loss strictly falling.
[[nodiscard]] inline std::vector<mixprec::plan> plan_frontier(const mixprec::sensitivity_table& table, int points, const std::string& policy,
                                                              const std::vector<plan_rule>& overrides = {}) {
  return with_planner(table, std::numeric_limits<double>::max(), policy, overrides,
                      [&](const auto& planner) { return planner.pareto(points); });
}

// plan_table over the analysis (its weighted squared errors as the losses).
[[nodiscard]] inline mixprec::plan make_plan(const std::vector<tensor_analysis>& analysis, double budget_bytes,
                                             const std::string& policy, const std::vector<plan_rule>& overrides = {}) {
  return plan_table(to_table(analysis), budget_bytes, policy, overrides);
}

// A plan file as the tool writes it: the library's plan (plan/plan_json.hpp: the one versioned plan
// format of the library and the tool) and, beside it, "model": the identity of the file it was made
// for (model_identity; absent in a hand-written plan or one written before mixprec recorded it).
struct plan_file {
  mixprec::plan plan;
  nlohmann::json model;  // null when the file has none
};

// Reads a plan file strictly (mixprec::parse_plan: a duplicate key or a layer planned twice is refused);
// errc::parse_error for a file that is not one, errc::unsupported for a newer version.
[[nodiscard]] inline plan_file load_plan_file(const std::string& path) {
  const mixprec::mapped_file bytes(path);  // a regular file (a FIFO or a device would block or never end)
  const std::string_view text(reinterpret_cast<const char*>(bytes.data().data()), bytes.data().size());
  try {
    plan_file out{mixprec::parse_plan(text, path), nullptr};
    const auto j = mixprec::detail::parse_json_strict(text);  // parsed above: cannot fail here
    if (j.contains("model")) out.model = j.at("model");
    return out;
  } catch (const error& e) {
    throw error(e.code(), e.message() + " (see `mixprec plan`)");
  }
}
[[nodiscard]] inline mixprec::plan load_plan(const std::string& path) { return load_plan_file(path).plan; }

// The weight matrices of `tensors` (float matrices and expert stacks: what plan plans without
// overrides) whose name `covered` does not hold, in file order.
[[nodiscard]] inline std::vector<const tensor_entry*> left_out(const std::vector<tensor_entry>& tensors, const std::set<std::string>& covered) {
  std::vector<const tensor_entry*> out;
  for (const auto& t : tensors) {
    const tensor_role r = role_of(t);
    if (t.is_float && mixprec::quantized_by_default(r) && !covered.count(t.name)) out.push_back(&t);
  }
  return out;
}

// "'a', 'b', 'c' and 4 more".
[[nodiscard]] inline std::string some_names(const std::vector<const tensor_entry*>& ts, std::size_t shown = 3) {
  std::string s;
  for (std::size_t i = 0; i < std::min(shown, ts.size()); ++i) s += (i ? ", '" : "'") + ts[i]->name + "'";
  if (ts.size() > shown) s += " and " + std::to_string(ts.size() - shown) + " more";
  return s;
}

// ---- quantize ----

using mixprec::dominant_file_type;  // general.file_type (plan/llama_quant_policy.hpp)

struct quantize_summary {
  std::size_t tensors = 0, converted = 0;
  std::uint64_t bytes_in = 0, bytes_out = 0;
  std::uint32_t file_type = 0;
};

// Checks a plan against the file before anything is written: every tensor it names exists, is float,
// has elements and 2+ dimensions, has the plan's shape, a type GGUF stores (errc::unsupported
// otherwise) and a row length the type's block divides (errc::invalid_argument naming the tensor;
// errc::unsupported for an input that is not GGUF or a tensor already quantized). An importance entry
// must have ne0 or ne0 x n_mat values (errc::shape_mismatch naming the tensor; a token embedding's is
// ignored instead, as llama-quantize ignores it). Returns the GGUF type
// of each planned tensor, and a warning for each that llama.cpp keeps in float (a router, ...).
[[nodiscard]] inline std::map<std::string, ggml_type> check_plan(const model_file& src, const mixprec::plan& plan,
                                                                 std::vector<std::string>* warnings = nullptr,
                                                                 const importance_set& importance = {}) {
  if (!src.is_gguf()) throw error(errc::unsupported, "quantize: the input must be a GGUF file (F32/F16/BF16 tensors)");
  std::map<std::string, const tensor_entry*> by_name;
  for (const auto& t : src.tensors()) by_name.emplace(t.name, &t);
  std::map<std::string, ggml_type> types;
  for (const auto& e : plan.entries) {
    const std::string& name = e.layer;
    const auto it = by_name.find(name);
    if (it == by_name.end()) throw error(errc::invalid_argument, "plan names tensor '" + name + "', which is not in " + src.gguf().path());
    const tensor_entry& t = *it->second;
    const tensor_role role = role_of(t);
    const std::string what = "plan: tensor '" + name + "' (" + to_string(role) + ")";
    if (!t.is_float)
      throw error(errc::unsupported, what + " is " + (t.decodable ? "already " : "") + stored_type_text(t) +
                                         "; quantize reads F32/F16/BF16 tensors and copies the others as they are");
    if (role == tensor_role::empty || role == tensor_role::vector)
      throw error(errc::invalid_argument, what + " cannot be quantized; remove it from the plan");
    if (e.rows != t.rows || e.cols != t.cols)
      throw error(errc::invalid_argument, "plan: tensor '" + name + "' is " + std::to_string(e.rows) + "x" + std::to_string(e.cols) +
                                              " in the plan, " + std::to_string(t.rows) + "x" + std::to_string(t.cols) +
                                              " in the file: the plan was made for another file");
    const auto type = mixprec::ggml_type_of(e.spec);
    if (!type)
      throw error(errc::unsupported, "plan: tensor '" + name + "': " + mixprec::to_string(e.spec) +
                                         " has no GGUF type (the tool writes llama.cpp's types)");
    if (!mixprec::fits(e.spec, t.cols))
      throw error(errc::invalid_argument, "plan: tensor '" + name + "' has rows of " + std::to_string(t.cols) + " values, not a multiple of " +
                                              mixprec::to_string(e.spec) + "'s block of " + std::to_string(mixprec::ggml::block_size(*type)));
    if (const auto imp = importance.values.find(name); imp != importance.values.end()) check_importance_length(imp->second, t);
    if (warnings && (role == tensor_role::router || role == tensor_role::kept_float))
      warnings->push_back(what + ": quantized to " + mixprec::to_string(e.spec) + " as the plan says");
    types.emplace(name, *type);
  }
  return types;
}

// Writes `out_path`: `src` with the planned tensors re-encoded (others copied), every KV kept and
// general.file_type set; tensors are converted one at a time from the mapped input. The plan is
// checked first (check_plan); a NaN/Inf weight is errc::non_finite naming the tensor. On any failure
// nothing is left at out_path (io/output_file.hpp); an out_path that is the input is refused.
// With importance (an imatrix), each tensor is searched with its entry as analyze did (quantize_stack),
// so the file holds the bytes the plan measured; tensors without an entry are quantized without. What
// the imatrix lacks or holds in vain for a planned tensor is printed as a note (importance_view::of).
// retune (optional): given a tensor's name, type, values, search weights and ggml's bytes, the bytes
// to write instead, of the same size (tune.hpp's model_tuner).
using retune_fn = std::function<std::vector<std::byte>(const std::string&, ggml_type, const row_matrix&, const std::vector<const float*>&,
                                                       std::vector<std::byte>)>;
inline quantize_summary quantize_gguf(const model_file& src, const mixprec::plan& plan, const std::string& out_path,
                                      bool show_progress = true, const importance_set& importance = {}, unsigned threads = 1,
                                      const retune_fn& retune = {}) {
  std::vector<std::string> warnings;
  const std::map<std::string, ggml_type> types = check_plan(src, plan, &warnings, importance);
  for (const auto& w : warnings) std::fprintf(stderr, "mixprec: warning: %s\n", w.c_str());
  std::map<std::string, const tensor_entry*> entries;
  for (const auto& t : src.tensors()) entries.emplace(t.name, &t);
  std::vector<std::string> planned;
  for (const auto& [name, type] : types) planned.push_back(name);
  const importance_view view(importance, src, planned);
  for (const auto& name : planned)
    for (const auto& n : view.of(*entries.at(name)).notes) std::fprintf(stderr, "mixprec: note: '%s': %s\n", name.c_str(), n.c_str());
  const auto& g = src.gguf();
  // general.file_type: the type holding most of the output's weights, counted over every tensor of
  // 2+ dimensions (the planned ones at their new type, the others as stored; dominant_file_type).
  std::map<std::string, double> weights_by_type;
  for (const auto& t : src.tensors())
    if (t.dims.size() >= 2) {
      const auto it = types.find(t.name);
      weights_by_type[it == types.end() ? t.type : std::string(mixprec::to_string(it->second))] += t.weights();
    }
  mixprec::gguf::metadata kvs = g.kvs();
  quantize_summary s;
  s.file_type = dominant_file_type(weights_by_type);
  kvs.set("general.file_type", mixprec::gguf::value(s.file_type));
  kvs.set("general.quantization_version", mixprec::gguf::value(std::uint32_t{2}));  // GGML_QNT_VERSION, as llama-quantize writes it
  // Written beside out_path and renamed over it only when complete; refused if it is the input.
  mixprec::output_file out(out_path, {g.path()});
  progress bar("quantize", plan.weights());
  mixprec::gguf::rewrite(
      g, kvs, out.stream(),
      [&](const mixprec::gguf::tensor_info& t) {
        const auto it = types.find(t.name);
        return it == types.end() ? t.type : static_cast<std::uint32_t>(it->second);
      },
      [&](const mixprec::gguf::tensor_info& t, std::uint32_t type) {
        const row_matrix w = g.to_float(t.name);
        drop_pages(t.bytes);
        check_finite(w, t.name);
        const std::vector<const float*> search = view.of(*entries.at(t.name)).search;
        auto bytes = quantize_stack(static_cast<ggml_type>(type), w, search, t.name, threads);
        if (retune) {
          const std::size_t size = bytes.size();
          bytes = retune(t.name, static_cast<ggml_type>(type), w, search, std::move(bytes));
          if (bytes.size() != size) throw error(errc::shape_mismatch, "quantize: tuning '" + t.name + "' changed its size");
        }
        if (show_progress) bar.step(t.name, static_cast<double>(w.size()));
        ++s.converted;
        return bytes;
      });
  out.commit();
  s.tensors = g.tensors().size();
  for (const auto& t : g.tensors()) s.bytes_in += t.size;
  const auto written = mixprec::gguf::file::open(out_path);
  for (const auto& t : written.tensors()) s.bytes_out += t.size;
  return s;
}

}  // namespace mixprec_cli
