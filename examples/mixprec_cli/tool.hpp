// The `mixprec` command line's work, as functions (main.cpp wires them to CLI11; tests call them):
//   inspect   tensors of a GGUF or safetensors file: name, shape, type, bytes
//   analyze   per float weight matrix and candidate ggml type: bytes, SQNR, and the (importance-weighted)
//             squared error, the additive loss the plan minimises
//   plan      a ggml type per tensor within a byte budget (exact knapsack or greedy over the analysis),
//             llama.cpp-style overrides `--tensor-type REGEX=TYPE`; written as plan.json
//   quantize  rewrites a GGUF tensor by tensor by the plan (F32/F16/BF16 in), every metadata key kept,
//             general.file_type set to the type that holds most of the weights
// The loss of a tensor at a type is sum_rows sum_j imp_j (w_ij - q_ij)^2, with imp the llama.cpp
// importance matrix of the tensor (mean x_j^2 of its inputs) when one is given, else 1: with
// importance it is the expected squared output error of the layer on the calibration inputs
// (diagonal approximation), so sums over tensors compare.
#pragma once

#include <algorithm>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <mixprec/formats/ggml.hpp>
#include <mixprec/io/gguf.hpp>
#include <mixprec/io/imatrix.hpp>
#include <mixprec/io/mapped_file.hpp>
#include <mixprec/io/safetensors.hpp>
#include <mixprec/plan/constraints.hpp>
#include <mixprec/plan/greedy.hpp>
#include <mixprec/plan/knapsack.hpp>
#include <mixprec/sensitivity/metrics.hpp>

namespace mixprec_cli {

using mixprec::errc;
using mixprec::error;
using mixprec::ggml_type;
using mixprec::index_t;
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
};

// F32, F16 or BF16: the GGUF types quantize reads.
[[nodiscard]] inline bool is_float_type(std::uint32_t code) noexcept { return code == 0 || code == 1 || code == 30; }

// A GGUF or safetensors file, chosen by its first bytes.
class model_file {
 public:
  explicit model_file(const std::string& path) {
    mixprec::mapped_file probe(path);
    const auto b = probe.data();
    if (b.size() >= 4 && std::memcmp(b.data(), "GGUF", 4) == 0)
      gguf_.emplace(mixprec::gguf::file::parse(std::move(probe)));
    else
      st_.emplace(mixprec::safetensors::file::parse(std::move(probe)));
    if (gguf_) {
      for (const auto& t : gguf_->tensors()) {
        const auto traits = mixprec::gguf::type_traits_of(t.type);
        tensor_entry e{t.name, std::string(traits ? traits->name : "?"), t.dims, static_cast<index_t>(t.rows()),
                       static_cast<index_t>(t.row_length()), t.size, is_float_type(t.type)};
        tensors_.push_back(std::move(e));
      }
    } else {
      for (const auto& t : st_->tensors())
        tensors_.push_back({t.name, std::string(mixprec::safetensors::to_string(t.type)), t.shape, t.rows(), t.cols(),
                            t.end - t.begin, true});
    }
  }
  [[nodiscard]] bool is_gguf() const noexcept { return gguf_.has_value(); }
  [[nodiscard]] const mixprec::gguf::file& gguf() const { return *gguf_; }
  [[nodiscard]] const std::vector<tensor_entry>& tensors() const noexcept { return tensors_; }
  [[nodiscard]] row_matrix to_float(const std::string& name) const { return gguf_ ? gguf_->to_float(name) : st_->to_float(name); }
  // Drops the tensor's pages from memory after use (see drop_pages).
  void release(const std::string& name) const noexcept {
    if (gguf_) {
      if (const auto* t = gguf_->find(name)) drop_pages(t->bytes);
    } else if (const auto* t = st_->find(name)) {
      drop_pages(t->bytes);
    }
  }

 private:
  std::optional<mixprec::gguf::file> gguf_;
  std::optional<mixprec::safetensors::file> st_;
  std::vector<tensor_entry> tensors_;
};

// ---- progress ----

// A one-line progress bar on stderr when it is a terminal, else a line every 10 %.
class progress {
 public:
  progress(std::string what, std::size_t total) : what_(std::move(what)), total_(std::max<std::size_t>(total, 1)), tty_(isatty(2) != 0) {}
  void step(const std::string& item) {
    ++done_;
    const int pct = static_cast<int>(100 * done_ / total_);
    if (tty_) {
      const int filled = pct / 4;
      std::fprintf(stderr, "\r%s [%s%s] %3d %% %-40.40s", what_.c_str(), std::string(static_cast<std::size_t>(filled), '#').c_str(),
                   std::string(static_cast<std::size_t>(25 - filled), ' ').c_str(), pct, item.c_str());
      if (done_ == total_) std::fprintf(stderr, "\n");
    } else if (pct / 10 != last_ / 10 || done_ == total_) {
      std::fprintf(stderr, "%s: %zu/%zu (%d %%) %s\n", what_.c_str(), done_, total_, pct, item.c_str());
    }
    last_ = pct;
  }

 private:
  std::string what_;
  std::size_t total_, done_ = 0;
  bool tty_;
  int last_ = -1;
};

// ---- analyze ----

struct candidate_result {
  ggml_type type;
  std::uint64_t bytes = 0;
  double sqnr_db = 0.0;
  double error = 0.0;  // sum_ij imp_j (w - q)^2
};

struct tensor_analysis {
  std::string name;
  index_t rows = 0, cols = 0;
  std::uint64_t source_bytes = 0;
  bool has_importance = false;
  std::vector<candidate_result> candidates;  // in the order of the requested types; types that do not fit skipped
};

// The types as llama.cpp names them, comma-separated ("q4_0,q8_0,f16").
[[nodiscard]] inline std::vector<ggml_type> parse_types(const std::string& list) {
  std::vector<ggml_type> out;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t comma = list.find(',', start);
    const std::string item = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty()) out.push_back(mixprec::parse_ggml_type(item));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (out.empty()) throw error(errc::invalid_argument, "no types given");
  return out;
}

// The tensors worth planning: float matrices (2+ dims) whose rows fit at least one block.
[[nodiscard]] inline bool plannable(const tensor_entry& t) { return t.is_float && t.dims.size() >= 2 && t.cols >= 32; }

// Quantizes every plannable tensor to every type that fits its row length and measures it.
[[nodiscard]] inline std::vector<tensor_analysis> analyze(const model_file& f, const std::vector<ggml_type>& types,
                                                          const std::map<std::string, Eigen::VectorXf>& importance = {},
                                                          bool show_progress = true) {
  std::vector<tensor_analysis> out;
  std::size_t n = 0;
  for (const auto& t : f.tensors()) n += plannable(t) ? 1 : 0;
  progress bar("analyze", n);
  for (const auto& t : f.tensors()) {
    if (!plannable(t)) continue;
    const row_matrix w = f.to_float(t.name);
    f.release(t.name);
    tensor_analysis a{t.name, w.rows(), w.cols(), t.bytes, false, {}};
    Eigen::VectorXd imp = Eigen::VectorXd::Ones(w.cols());
    Eigen::VectorXf impf;  // the importance as the ggml quantizers take it
    if (const auto it = importance.find(t.name); it != importance.end()) {
      if (it->second.size() != w.cols())
        throw error(errc::shape_mismatch, "importance of '" + t.name + "' has " + std::to_string(it->second.size()) +
                                              " entries, the tensor has " + std::to_string(w.cols()) + " columns");
      imp = it->second.cast<double>();
      impf = it->second;
      a.has_importance = true;
    }
    for (ggml_type type : types) {
      if (w.cols() % static_cast<index_t>(mixprec::ggml::block_size(type)) != 0) continue;
      std::optional<std::span<const float>> qw;
      if (a.has_importance && (type == ggml_type::q4_0 || type == ggml_type::q6_k || type == ggml_type::q8_0))
        qw = std::span<const float>(impf.data(), static_cast<std::size_t>(impf.size()));
      const auto bytes = mixprec::ggml::quantize(type, w, qw, t.name);
      const row_matrix back = mixprec::ggml::dequantize(type, bytes, w.rows(), w.cols(), t.name);
      const Eigen::MatrixXd e = (back - w).cast<double>();
      a.candidates.push_back({type, bytes.size(), mixprec::sqnr_db(w, back), (e.array().square().rowwise() * imp.transpose().array()).sum()});
    }
    if (a.candidates.empty())
      throw error(errc::invalid_argument, "tensor '" + t.name + "' (row length " + std::to_string(w.cols()) +
                                              ") fits none of the candidate types");
    out.push_back(std::move(a));
    if (show_progress) bar.step(t.name);
  }
  return out;
}

// ---- plan ----

struct override_rule {
  std::string pattern;  // ECMAScript regex, searched in the tensor name (llama.cpp --tensor-type)
  std::regex re;        // pattern, compiled once
  ggml_type type;
};

// "blk\..*\.attn_v=q8_0".
[[nodiscard]] inline override_rule parse_override(const std::string& text) {
  const auto eq = text.rfind('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
    throw error(errc::parse_error, "override '" + text + "': expected PATTERN=TYPE");
  std::regex re;
  try {
    re = std::regex(text.substr(0, eq));
  } catch (const std::regex_error& e) {
    throw error(errc::parse_error, "override '" + text + "': bad regular expression (" + e.what() + ")");
  }
  return {text.substr(0, eq), std::move(re), mixprec::parse_ggml_type(text.substr(eq + 1))};
}

struct plan_entry {
  std::string name;
  ggml_type type;
  std::uint64_t bytes = 0;
  double error = 0.0;
  double sqnr_db = 0.0;
  bool overridden = false;
};

struct plan {
  std::string policy;
  double budget_bytes = 0.0;
  bool proven_optimal = false;
  std::vector<plan_entry> entries;

  [[nodiscard]] std::uint64_t bytes() const {
    std::uint64_t b = 0;
    for (const auto& e : entries) b += e.bytes;
    return b;
  }
  [[nodiscard]] double weights(const std::vector<tensor_analysis>& a) const {
    double n = 0;
    for (const auto& t : a) n += static_cast<double>(t.rows) * static_cast<double>(t.cols);
    return n;
  }
};

// The least total error within budget_bytes over the analysed tensors; overrides pin a tensor's type
// (the first matching rule wins; the type must fit the tensor). policy: "knapsack" or "greedy".
[[nodiscard]] inline plan make_plan(const std::vector<tensor_analysis>& a, double budget_bytes, const std::string& policy,
                                    const std::vector<override_rule>& overrides = {}) {
  mixprec::allocation_problem problem;
  problem.budget = budget_bytes;
  std::vector<std::vector<std::size_t>> option_index;  // per tensor: candidate index of each option
  std::vector<bool> pinned;
  for (const auto& t : a) {
    auto& item = problem.items.emplace_back();
    auto& idx = option_index.emplace_back();
    std::optional<ggml_type> forced;
    for (const auto& r : overrides)
      if (std::regex_search(t.name, r.re)) {
        forced = r.type;
        break;
      }
    for (std::size_t k = 0; k < t.candidates.size(); ++k) {
      const auto& c = t.candidates[k];
      if (forced && c.type != *forced) continue;
      item.push_back({static_cast<double>(c.bytes), c.error, static_cast<int>(8 * mixprec::ggml::type_size(c.type) / mixprec::ggml::block_size(c.type))});
      idx.push_back(k);
    }
    if (item.empty())
      throw error(errc::invalid_argument, "override: type " + std::string(mixprec::to_string(*forced)) + " is not a candidate for '" +
                                              t.name + "' (see --types; its row length must be a multiple of the block)");
    pinned.push_back(forced.has_value());
  }
  const auto [lo, hi] = mixprec::cost_range(problem);
  if (budget_bytes < lo)
    throw error(errc::infeasible, "budget " + std::to_string(static_cast<long long>(budget_bytes)) +
                                      " bytes cannot be met: the smallest reachable size is " + std::to_string(static_cast<long long>(lo)) +
                                      " bytes (largest " + std::to_string(static_cast<long long>(hi)) + ")");
  mixprec::allocation_result r;
  if (policy == "knapsack") r = mixprec::knapsack_policy{}.allocate(problem);
  else if (policy == "greedy") r = mixprec::greedy_policy{}.allocate(problem);
  else throw error(errc::invalid_argument, "policy '" + policy + "': expected knapsack or greedy");
  plan p{policy, budget_bytes, r.proven_optimal, {}};
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto& c = a[i].candidates[option_index[i][r.choice[i]]];
    p.entries.push_back({a[i].name, c.type, c.bytes, c.error, c.sqnr_db, pinned[i]});
  }
  return p;
}

[[nodiscard]] inline nlohmann::json to_json(const plan& p) {
  nlohmann::json j;
  j["format"] = "mixprec-ggml-plan";
  j["policy"] = p.policy;
  j["budget_bytes"] = p.budget_bytes;
  j["bytes"] = p.bytes();
  j["proven_optimal"] = p.proven_optimal;
  j["tensors"] = nlohmann::json::array();
  for (const auto& e : p.entries)
    j["tensors"].push_back({{"name", e.name}, {"type", std::string(mixprec::to_string(e.type))}, {"bytes", e.bytes},
                            {"error", e.error}, {"sqnr_db", e.sqnr_db}, {"overridden", e.overridden}});
  return j;
}

// Reads a plan.json (name -> type; the other fields are informational).
[[nodiscard]] inline std::map<std::string, ggml_type> load_plan(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw error(errc::io_error, "cannot open plan '" + path + "'");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    throw error(errc::parse_error, "plan '" + path + "': " + e.what());
  }
  if (!j.is_object() || j.value("format", "") != "mixprec-ggml-plan" || !j.contains("tensors") || !j["tensors"].is_array())
    throw error(errc::parse_error, "plan '" + path + "': not a mixprec ggml plan (see `mixprec plan`)");
  std::map<std::string, ggml_type> out;
  for (const auto& t : j["tensors"]) {
    if (!t.is_object() || !t.contains("name") || !t["name"].is_string() || !t.contains("type") || !t["type"].is_string())
      throw error(errc::parse_error, "plan '" + path + "': every tensor needs a string name and type");
    if (!out.emplace(t["name"].get<std::string>(), mixprec::parse_ggml_type(t["type"].get<std::string>())).second)
      throw error(errc::parse_error, "plan '" + path + "': tensor '" + t["name"].get<std::string>() + "' appears twice");
  }
  return out;
}

// ---- quantize ----

// llama.cpp's general.file_type (enum llama_ftype) for a file whose weights are mostly `t`.
[[nodiscard]] inline std::uint32_t llama_file_type(ggml_type t) {
  switch (t) {
    case ggml_type::f32: return 0;   // ALL_F32
    case ggml_type::f16: return 1;   // MOSTLY_F16
    case ggml_type::q4_0: return 2;  // MOSTLY_Q4_0
    case ggml_type::q4_1: return 3;  // MOSTLY_Q4_1
    case ggml_type::q8_0: return 7;  // MOSTLY_Q8_0
    case ggml_type::q4_k: return 15;  // MOSTLY_Q4_K_M
    case ggml_type::q6_k: return 18;  // MOSTLY_Q6_K
    case ggml_type::bf16: return 32;  // MOSTLY_BF16
  }
  return 0;
}

struct quantize_summary {
  std::size_t tensors = 0, converted = 0;
  std::uint64_t bytes_in = 0, bytes_out = 0;
  std::uint32_t file_type = 0;
};

// Writes `out_path`: `src` with the planned tensors re-encoded (others copied), every KV kept and
// general.file_type set; tensors are converted one at a time from the mapped input. On any failure
// nothing is left at out_path (io/output_file.hpp); an out_path that is the input is refused.
inline quantize_summary quantize_gguf(const model_file& src, const std::map<std::string, ggml_type>& plan,
                                      const std::string& out_path, bool show_progress = true) {
  if (!src.is_gguf()) throw error(errc::unsupported, "quantize: the input must be a GGUF file (F32/F16/BF16 tensors)");
  const auto& g = src.gguf();
  for (const auto& [name, type] : plan) {
    const auto* t = g.find(name);
    if (!t) throw error(errc::invalid_argument, "plan names tensor '" + name + "', which is not in " + g.path());
    if (!is_float_type(t->type))
      throw error(errc::unsupported, "tensor '" + name + "' is already quantized; quantize reads F32/F16/BF16 tensors");
  }
  // The type holding most of the weights sets general.file_type.
  std::map<ggml_type, std::uint64_t> weights_by_type;
  for (const auto& t : g.tensors())
    if (const auto it = plan.find(t.name); it != plan.end()) weights_by_type[it->second] += t.count();
  ggml_type dominant = ggml_type::f32;
  std::uint64_t most = 0;
  for (const auto& [type, n] : weights_by_type)
    if (n > most) most = n, dominant = type;
  mixprec::gguf::metadata kvs = g.kvs();
  quantize_summary s;
  s.file_type = llama_file_type(dominant);
  kvs.set("general.file_type", mixprec::gguf::value(s.file_type));
  // Written beside out_path and renamed over it only when complete; refused if it is the input.
  mixprec::output_file out(out_path, {g.path()});
  progress bar("quantize", plan.size());
  mixprec::gguf::rewrite(
      g, kvs, out.stream(),
      [&](const mixprec::gguf::tensor_info& t) {
        const auto it = plan.find(t.name);
        return it == plan.end() ? t.type : static_cast<std::uint32_t>(it->second);
      },
      [&](const mixprec::gguf::tensor_info& t, std::uint32_t type) {
        const row_matrix w = g.to_float(t.name);
        drop_pages(t.bytes);
        auto bytes = mixprec::ggml::quantize(static_cast<ggml_type>(type), w, std::nullopt, t.name);
        if (show_progress) bar.step(t.name);
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
