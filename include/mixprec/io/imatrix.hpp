// llama.cpp importance matrices (`llama-imatrix` output), in both of its formats; the format is told by
// the first four bytes ("GGUF" -> GGUF, anything else -> legacy; a legacy file starting with those bytes
// would claim 1179993927 entries, which parse() refuses unless it really holds them).
//
// GGUF (the llama-imatrix default since mid-2025; tools/imatrix/imatrix.cpp save_imatrix, read back by
// tools/quantize/quantize.cpp load_imatrix): a GGUF v3 file (io/gguf.hpp) with the KVs
//   general.type = "imatrix" (string)   imatrix.datasets (array of strings: the calibration files)
//   imatrix.chunk_count (u32)           imatrix.chunk_size (u32: tokens per chunk)
// and, for every weight `name` (e.g. "blk.0.ffn_up_exps.weight"), two F32 tensors:
//   name.in_sum2  dims [ne0, n_mat]  sum over calibration tokens of x_j^2, matrix m's ne0 values at m*ne0
//   name.counts   dims [1, n_mat]    tokens seen by each matrix (whole numbers stored as float)
// ne0 = the weight's input features (its row length); n_mat = 1 for a matrix, n_expert for a 3-D MoE
// expert tensor. ggml writes a tensor's dims without trailing 1s, so [ne0] and [1] mean n_mat = 1.
// llama-quantize's importance of matrix m, column i is in_sum2[m*ne0+i] / counts[m], or 1.0 for every
// column of a matrix whose count is 0 (an expert no calibration token was routed to).
//
// Legacy ".dat" (`llama-imatrix --output-format dat`; tools/imatrix/imatrix.cpp save_imatrix_legacy),
// little-endian:
//   int32 n_entries
//   n_entries times: int32 name_len; name bytes (no terminator); int32 ncall; int32 nval; float32 values[nval]
//   optional trailer: int32 last_chunk; int32 dataset_len; dataset bytes (the calibration file's name)
// Semantics: nval = ne0 * n_expert (n_expert = 1 for a matrix; the file does not record it), expert-major
// like in_sum2, and values[j] = (sum over calibration tokens of x_j^2 / tokens) * ncall, where ncall is
// the number of calibration chunks. llama-quantize divides by ncall when it loads the file
// (load_legacy_imatrix), so the importance it quantizes with is the per-token mean of x_j^2.
//
// entry::importance() returns what llama-quantize uses, in both formats: ne0 * n_mat values, expert m's
// ne0 values at [m*ne0, (m+1)*ne0) (entry::importance(m) slices one).
// The output proxy of a mixprec::layer (layer.hpp) wants diag(X X^T) = tokens * that mean: a common factor for
// all layers does not change which candidate or which layer is worse, so attach_importance() uses the
// mean as it is.
//
// parse() is strict; each of these is a mixprec::error(parse_error) naming the file and the entry or
// tensor. Legacy: a truncated file, a negative or absurd count, a name that is empty, has a NUL or is
// repeated (llama.cpp's legacy loader lets the last entry of a name win; here the second is an error
// naming it), a value that is NaN, Inf or negative, bytes after the trailer. GGUF: whatever gguf.hpp
// refuses (a tensor of an unknown ggml type, a repeated tensor name, as llama.cpp's gguf reader does);
// a weight with two in_sum2 or two counts tensors; general.type present and not the string
// "imatrix"; imatrix.datasets not an array of strings; imatrix.chunk_count / chunk_size not a u32 up to
// INT32_MAX; no tensors; a tensor that is not "<weight>.in_sum2" or "<weight>.counts", or whose name has
// a NUL or more than 63 bytes (llama.cpp's limit); one of a pair without the other; a type other than
// F32; dims other than [ne0, n_mat] and [1, n_mat] with ne0, n_mat > 0 and the same n_mat; a sum that is
// NaN, Inf or negative; a count that is NaN, Inf, negative or not a whole number.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "mixprec/types.hpp"
#include "mixprec/detail/checked.hpp"
#include "mixprec/error.hpp"
#include "mixprec/io/gguf.hpp"
#include "mixprec/io/mapped_file.hpp"
#include "mixprec/io/output_file.hpp"
#include "mixprec/layer.hpp"

namespace mixprec::imatrix {

enum class format { legacy, gguf };

// One weight's statistics as stored.
struct entry {
  std::int32_t ncall = 0;       // legacy: calibration chunks; unused (0) in entries read from GGUF
  Eigen::VectorXf values;       // legacy: mean of x^2 per token times ncall; GGUF: in_sum2 (sums of x^2)
  std::vector<float> counts{};  // GGUF: tokens seen by each matrix (n_mat of them); legacy: empty

  // Matrices in values: counts.size() (GGUF), else 1 (a legacy file does not record the expert count).
  [[nodiscard]] std::size_t n_mat() const noexcept { return counts.empty() ? 1 : counts.size(); }
  // Values per matrix (the weight's input features).
  [[nodiscard]] index_t ne0() const noexcept { return values.size() / static_cast<index_t>(n_mat()); }

  // Per-feature importance as llama-quantize uses it, expert-major: legacy values / ncall (values as
  // they are when ncall <= 0); GGUF values of matrix m / counts[m] (1.0 for its columns when
  // counts[m] == 0). Throws errc::invalid_argument when values does not split into counts.size() matrices.
  [[nodiscard]] Eigen::VectorXf importance() const {
    if (counts.empty()) return ncall > 0 ? Eigen::VectorXf(values / static_cast<float>(ncall)) : values;
    check_split(counts.size());
    const index_t n = ne0();
    Eigen::VectorXf out(values.size());
    for (std::size_t m = 0; m < counts.size(); ++m) fill_matrix(m, n, out.data() + static_cast<index_t>(m) * n);
    return out;
  }

  // The ne0 importance values of matrix m (expert m). n_mat: how many matrices values holds; 0 means
  // n_mat(). A legacy entry of merged experts needs the expert count here; a GGUF entry accepts only
  // 0 or its own n_mat(). Throws errc::invalid_argument for an m or n_mat that does not fit.
  [[nodiscard]] Eigen::VectorXf importance(std::size_t m, std::size_t n_mat = 0) const {
    if (n_mat == 0) n_mat = this->n_mat();
    if (!counts.empty() && n_mat != counts.size())
      throw error(errc::invalid_argument, "imatrix entry: holds " + std::to_string(counts.size()) +
                                              " matrices, not " + std::to_string(n_mat));
    check_split(n_mat);
    if (m >= n_mat)
      throw error(errc::invalid_argument,
                  "imatrix entry: matrix " + std::to_string(m) + " of " + std::to_string(n_mat));
    const index_t n = values.size() / static_cast<index_t>(n_mat);
    Eigen::VectorXf out(n);
    if (counts.empty()) {
      const auto seg = values.segment(static_cast<index_t>(m) * n, n);
      out = ncall > 0 ? Eigen::VectorXf(seg / static_cast<float>(ncall)) : Eigen::VectorXf(seg);
    } else {
      fill_matrix(m, n, out.data());
    }
    return out;
  }

 private:
  void check_split(std::size_t n_mat) const {
    if (values.size() == 0 || n_mat == 0 || n_mat > static_cast<std::size_t>(values.size()) ||
        values.size() % static_cast<index_t>(n_mat) != 0)
      throw error(errc::invalid_argument, "imatrix entry: " + std::to_string(values.size()) +
                                              " values do not split into " + std::to_string(n_mat) +
                                              " matrices of equal length");
  }
  // llama-quantize's numerics: one float division per value; a matrix that saw no token weighs 1.
  void fill_matrix(std::size_t m, index_t n, float* out) const {
    const float c = counts[m];
    const float* v = values.data() + static_cast<index_t>(m) * n;
    for (index_t i = 0; i < n; ++i) out[i] = c > 0.0f ? v[i] / c : 1.0f;
  }
};

struct file {
  std::map<std::string, entry> entries;  // by weight name
  std::int32_t last_chunk = -1;          // chunks: the legacy trailer or imatrix.chunk_count; -1: absent
  std::string dataset;                   // calibration file: the trailer's, or the first of imatrix.datasets
  std::int32_t chunk_size = -1;          // tokens per chunk (GGUF imatrix.chunk_size); -1: absent

  // importance() of the weight `name`; throws errc::invalid_argument when it is missing.
  [[nodiscard]] Eigen::VectorXf importance(const std::string& name) const {
    const auto it = entries.find(name);
    if (it == entries.end())
      throw error(errc::invalid_argument, "imatrix has no entry for '" + name + "' (" +
                                              std::to_string(entries.size()) + " entries)");
    return it->second.importance();
  }
};

namespace detail {

class reader {
 public:
  reader(std::span<const std::uint8_t> b, const std::string& name) : b_(b), name_(name) {}
  [[nodiscard]] std::size_t left() const noexcept { return b_.size() - pos_; }
  [[nodiscard]] std::size_t pos() const noexcept { return pos_; }
  [[nodiscard]] error fail(const std::string& what) const {
    return error(errc::parse_error, "imatrix '" + name_ + "' at byte " + std::to_string(pos_) + ": " + what);
  }
  std::int32_t i32(const char* what) {
    if (left() < 4) throw fail(std::string("truncated in ") + what);
    std::int32_t v = 0;
    std::memcpy(&v, b_.data() + pos_, 4);
    pos_ += 4;
    return v;
  }
  std::string str(std::size_t n, const char* what) {
    if (left() < n) throw fail(std::string("truncated in ") + what);
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  void floats(float* out, std::size_t n) {
    std::memcpy(out, b_.data() + pos_, n * sizeof(float));
    pos_ += n * sizeof(float);
  }

 private:
  std::span<const std::uint8_t> b_;
  std::size_t pos_ = 0;
  std::string name_;
};

inline void put_i32(std::vector<std::uint8_t>& out, std::int32_t v) {
  std::uint8_t b[4];
  std::memcpy(b, &v, 4);
  out.insert(out.end(), b, b + 4);
}

inline constexpr std::string_view sum_suffix = ".in_sum2";
inline constexpr std::string_view count_suffix = ".counts";

}  // namespace detail

inline constexpr std::int32_t max_name_length = 1 << 16;

// The format of a byte stream, by its magic: "GGUF" -> gguf, else legacy.
[[nodiscard]] inline format detect(std::span<const std::uint8_t> bytes) noexcept {
  return bytes.size() >= 4 && std::memcmp(bytes.data(), "GGUF", 4) == 0 ? format::gguf : format::legacy;
}

// Parses a legacy (.dat) byte stream; `name` appears in error messages.
[[nodiscard]] inline file parse_legacy(std::span<const std::uint8_t> bytes, const std::string& name = "imatrix") {
  static_assert(sizeof(float) == 4);
  detail::reader in(bytes, name);
  const std::int32_t n_entries = in.i32("the entry count");
  // Each entry takes at least 4 + 1 + 4 + 4 + 4 bytes: a count beyond that cannot be honest.
  if (n_entries <= 0 || static_cast<std::size_t>(n_entries) > in.left() / 17)
    throw in.fail("entry count " + std::to_string(n_entries) + " is not positive or does not fit in the " +
                  std::to_string(in.left()) + " bytes that follow");
  file f;
  for (std::int32_t i = 0; i < n_entries; ++i) {
    const std::string which = "entry " + std::to_string(i);
    const std::int32_t len = in.i32("a name length");
    if (len <= 0 || len > max_name_length) throw in.fail(which + ": name length " + std::to_string(len));
    std::string key = in.str(static_cast<std::size_t>(len), "a name");
    if (key.find('\0') != std::string::npos) throw in.fail(which + ": name contains a NUL byte");
    const std::int32_t ncall = in.i32("ncall");
    if (ncall < 0) throw in.fail("'" + key + "': negative ncall " + std::to_string(ncall));
    const std::int32_t nval = in.i32("nval");
    if (nval <= 0 || static_cast<std::size_t>(nval) > in.left() / 4)
      throw in.fail("'" + key + "': " + std::to_string(nval) + " values do not fit in the " +
                    std::to_string(in.left()) + " bytes left");
    entry e;
    e.ncall = ncall;
    e.values.resize(nval);
    in.floats(e.values.data(), static_cast<std::size_t>(nval));
    for (std::int32_t j = 0; j < nval; ++j)
      if (!std::isfinite(e.values[j]) || e.values[j] < 0.0f)
        throw in.fail("'" + key + "': value " + std::to_string(j) + " is " + std::to_string(e.values[j]) +
                      " (sums of squares must be finite and non-negative)");
    if (!f.entries.emplace(key, std::move(e)).second) throw in.fail("'" + key + "' appears twice");
  }
  if (in.left() > 0) {
    f.last_chunk = in.i32("the trailer's chunk count");
    if (f.last_chunk < 0) throw in.fail("negative chunk count " + std::to_string(f.last_chunk));
    const std::int32_t len = in.i32("the trailer's dataset name length");
    if (len < 0 || static_cast<std::size_t>(len) != in.left())
      throw in.fail("dataset name length " + std::to_string(len) + " does not match the " + std::to_string(in.left()) +
                    " bytes left");
    f.dataset = in.str(static_cast<std::size_t>(len), "the dataset name");
  }
  return f;
}

// Parses a GGUF imatrix byte stream (the layout above); `name` appears in error messages.
[[nodiscard]] inline file parse_gguf(std::span<const std::uint8_t> bytes, const std::string& name = "imatrix") {
  const std::string where = "imatrix '" + name + "' (GGUF): ";
  auto fail = [&](const std::string& what) { return error(errc::parse_error, where + what); };
  gguf::file g;
  try {
    g = gguf::file::parse(mapped_file::borrow(std::as_bytes(bytes), name));
  } catch (const error& e) {
    // gguf.hpp calls an unknown tensor type "unsupported"; in an imatrix it is just a malformed file.
    if (e.code() == errc::parse_error) throw;
    throw e.in_context("imatrix", errc::parse_error);
  }
  file f;
  const gguf::metadata& kv = g.kvs();
  if (const gguf::value* v = kv.find("general.type")) {
    const std::string* s = v->get_if<std::string>();
    if (!s) throw fail("general.type is " + std::string(gguf::to_string(v->type())) + ", not a string");
    if (*s != "imatrix")
      throw fail("general.type is \"" + *s + "\", not \"imatrix\": not an importance matrix (a model file?)");
  }
  if (const gguf::value* v = kv.find("imatrix.datasets")) {
    const gguf::array* a = v->get_if<gguf::array>();
    if (!a || a->type != gguf::value_type::string) throw fail("imatrix.datasets is not an array of strings");
    if (!a->items.empty()) f.dataset = *a->items.front().get_if<std::string>();
  }
  auto count_kv = [&](const char* key) -> std::int32_t {
    const gguf::value* v = kv.find(key);
    if (!v) return -1;
    const std::uint32_t* u = v->get_if<std::uint32_t>();
    if (!u) throw fail(std::string(key) + " is " + std::string(gguf::to_string(v->type())) + ", not u32");
    if (*u > static_cast<std::uint32_t>(std::numeric_limits<std::int32_t>::max()))
      throw fail(std::string(key) + " " + std::to_string(*u) + " exceeds INT32_MAX");
    return static_cast<std::int32_t>(*u);
  };
  f.last_chunk = count_kv("imatrix.chunk_count");
  f.chunk_size = count_kv("imatrix.chunk_size");

  struct pair {
    const gguf::tensor_info* sums = nullptr;
    const gguf::tensor_info* counts = nullptr;
  };
  std::map<std::string, pair> by_weight;
  for (const gguf::tensor_info& t : g.tensors()) {
    const std::string tn = "tensor '" + t.name + "'";
    if (t.name.find('\0') != std::string::npos) throw fail(tn + ": name contains a NUL byte");
    if (t.name.size() > gguf::max_tensor_name)
      throw fail(tn + ": name of " + std::to_string(t.name.size()) + " bytes (llama.cpp's limit is " +
                 std::to_string(gguf::max_tensor_name) + ")");
    const bool is_sum = t.name.ends_with(detail::sum_suffix), is_count = t.name.ends_with(detail::count_suffix);
    if (!is_sum && !is_count)
      throw fail(tn + " is neither '<weight>.in_sum2' nor '<weight>.counts' (a model file rather than an importance "
                      "matrix?)");
    const std::string weight =
        t.name.substr(0, t.name.size() - (is_sum ? detail::sum_suffix.size() : detail::count_suffix.size()));
    if (weight.empty()) throw fail(tn + " names no weight");
    if (t.type != 0)
      throw fail(tn + " is " + std::string(gguf::type_traits_of(t.type)->name) + "; imatrix tensors are f32");
    // llama.cpp's loader keys its entries by weight name (the last of two would win); gguf.hpp
    // refuses a repeated tensor name already, and so does this, whatever the container allowed.
    const gguf::tensor_info*& slot = is_sum ? by_weight[weight].sums : by_weight[weight].counts;
    if (slot) throw fail(tn + " appears twice (weight '" + weight + "' has two " + (is_sum ? "in_sum2" : "counts") + " tensors)");
    slot = &t;
  }
  if (by_weight.empty()) throw fail("no tensors ('<weight>.in_sum2' and '<weight>.counts' pairs)");

  // dims padded with 1s to four (ggml drops trailing 1s when it writes them).
  auto dims4 = [](const gguf::tensor_info& t) {
    std::uint64_t d[4] = {1, 1, 1, 1};
    for (std::size_t i = 0; i < t.dims.size() && i < 4; ++i) d[i] = t.dims[i];
    return std::to_array(d);
  };
  auto dims_text = [](const gguf::tensor_info& t) {
    std::string s = "[";
    for (std::size_t i = 0; i < t.dims.size(); ++i) s += (i ? ", " : "") + std::to_string(t.dims[i]);
    return s + "]";
  };
  using mixprec::detail::checked_u64;
  constexpr auto index_max = static_cast<std::uint64_t>(std::numeric_limits<index_t>::max());
  for (const auto& [weight, p] : by_weight) {
    if (!p.sums) throw fail("tensor '" + weight + ".counts' has no '" + weight + ".in_sum2'");
    if (!p.counts) throw fail("tensor '" + weight + ".in_sum2' has no '" + weight + ".counts'");
    const auto ds = dims4(*p.sums), dc = dims4(*p.counts);
    const std::uint64_t ne0 = ds[0], n_mat = ds[1];
    if (ne0 == 0 || n_mat == 0 || ds[2] != 1 || ds[3] != 1)
      throw fail("tensor '" + p.sums->name + "' has dims " + dims_text(*p.sums) +
                 ", expected [ne0, n_mat] with both > 0");
    if (dc[0] != 1 || dc[1] != n_mat || dc[2] != 1 || dc[3] != 1)
      throw fail("tensor '" + p.counts->name + "' has dims " + dims_text(*p.counts) + ", expected [1, " +
                 std::to_string(n_mat) + "] to match '" + p.sums->name + "' " + dims_text(*p.sums));
    const checked_u64 n = checked_u64(ne0) * n_mat;
    const checked_u64 n_bytes = n * sizeof(float), c_bytes = checked_u64(n_mat) * sizeof(float);
    if (!n_bytes.ok() || !c_bytes.ok() || n.value() > index_max || n_mat > index_max ||
        n_bytes.value() != p.sums->bytes.size() || c_bytes.value() != p.counts->bytes.size())
      throw fail("tensor '" + p.sums->name + "' " + dims_text(*p.sums) + " does not fit in memory or in its data");
    entry e;
    e.values.resize(static_cast<index_t>(n.value()));
    std::memcpy(e.values.data(), p.sums->bytes.data(), static_cast<std::size_t>(n_bytes.value()));
    for (index_t j = 0; j < e.values.size(); ++j)
      if (!std::isfinite(e.values[j]) || e.values[j] < 0.0f)
        throw fail("tensor '" + p.sums->name + "': value " + std::to_string(j) + " (matrix " +
                   std::to_string(static_cast<std::uint64_t>(j) / ne0) + ", column " +
                   std::to_string(static_cast<std::uint64_t>(j) % ne0) + ") is " + std::to_string(e.values[j]) +
                   " (sums of squares must be finite and non-negative)");
    e.counts.resize(static_cast<std::size_t>(n_mat));
    std::memcpy(e.counts.data(), p.counts->bytes.data(), static_cast<std::size_t>(n_mat) * sizeof(float));
    for (std::size_t m = 0; m < e.counts.size(); ++m) {
      const float c = e.counts[m];
      if (!std::isfinite(c) || c < 0.0f || std::floor(c) != c)
        throw fail("tensor '" + p.counts->name + "': count " + std::to_string(m) + " is " + std::to_string(c) +
                   " (token counts are finite, non-negative whole numbers)");
    }
    f.entries.emplace(weight, std::move(e));
  }
  return f;
}

// Parses an imatrix byte stream of either format (detect()); `name` appears in error messages.
[[nodiscard]] inline file parse(std::span<const std::uint8_t> bytes, const std::string& name = "imatrix") {
  return detect(bytes) == format::gguf ? parse_gguf(bytes, name) : parse_legacy(bytes, name);
}

// Maps and parses a file of either format; errc::io_error when it cannot be read.
[[nodiscard]] inline file load(const std::string& path) {
  const mapped_file m(path);
  const std::span<const std::byte> b = m.data();
  return parse(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(b.data()), b.size()), path);
}

// name -> per-column importance (entry::importance(): what llama-quantize uses), either format.
[[nodiscard]] inline std::map<std::string, Eigen::VectorXf> load_importance(const std::string& path) {
  const file f = load(path);
  std::map<std::string, Eigen::VectorXf> out;
  for (const auto& [k, e] : f.entries) out.emplace(k, e.importance());
  return out;
}

namespace detail {

// What a serializer needs of an entry (what parse() would reject, as errc::invalid_argument).
inline void check_entry(const std::string& key, const entry& e) {
  if (key.empty() || key.size() > static_cast<std::size_t>(max_name_length) || key.find('\0') != std::string::npos)
    throw error(errc::invalid_argument, "imatrix: entry name of length " + std::to_string(key.size()) +
                                            (key.empty() ? "" : " (or with a NUL byte)"));
  if (e.values.size() == 0 || e.ncall < 0)
    throw error(errc::invalid_argument, "imatrix '" + key + "': needs values and a non-negative ncall");
  if (!e.values.allFinite() || (e.values.array() < 0.0f).any())
    throw error(errc::invalid_argument, "imatrix '" + key + "': values must be finite and non-negative");
  if (!e.counts.empty() && e.values.size() % static_cast<index_t>(e.counts.size()) != 0)
    throw error(errc::invalid_argument, "imatrix '" + key + "': " + std::to_string(e.values.size()) +
                                            " values do not split into " + std::to_string(e.counts.size()) +
                                            " matrices");
  for (float c : e.counts)
    if (!std::isfinite(c) || c < 0.0f || std::floor(c) != c)
      throw error(errc::invalid_argument, "imatrix '" + key + "': count " + std::to_string(c) +
                                              " is not a non-negative whole number");
}

}  // namespace detail

// The bytes of f in the legacy layout (entries in name order, as llama-imatrix sorts them; the
// trailer when last_chunk >= 0). An entry with counts (read from GGUF) is written as ncall 1 and
// values = importance(), which keeps the importance exactly and loses the token counts.
// Throws on what parse() would reject.
[[nodiscard]] inline std::vector<std::uint8_t> serialize(const file& f) {
  if (f.entries.empty()) throw error(errc::empty_input, "imatrix: no entries to write");
  std::vector<std::uint8_t> out;
  detail::put_i32(out, static_cast<std::int32_t>(f.entries.size()));
  for (const auto& [key, e] : f.entries) {
    detail::check_entry(key, e);
    const Eigen::VectorXf values = e.counts.empty() ? e.values : e.importance();
    detail::put_i32(out, static_cast<std::int32_t>(key.size()));
    out.insert(out.end(), key.begin(), key.end());
    detail::put_i32(out, e.counts.empty() ? e.ncall : 1);
    detail::put_i32(out, static_cast<std::int32_t>(values.size()));
    const auto* p = reinterpret_cast<const std::uint8_t*>(values.data());
    out.insert(out.end(), p, p + values.size() * sizeof(float));
  }
  if (f.last_chunk >= 0) {
    detail::put_i32(out, f.last_chunk);
    detail::put_i32(out, static_cast<std::int32_t>(f.dataset.size()));
    out.insert(out.end(), f.dataset.begin(), f.dataset.end());
  }
  return out;
}

// The bytes of f as a GGUF imatrix (gguf.hpp's writer): general.type and imatrix.datasets (the
// dataset, or an empty array), imatrix.chunk_count when last_chunk >= 0 and imatrix.chunk_size when
// chunk_size >= 0 (llama-imatrix always writes both), then per entry in name order "<name>.in_sum2"
// [ne0, n_mat] and "<name>.counts" [1, n_mat]. A legacy entry becomes in_sum2 = values, counts =
// {ncall} ({1} when ncall is 0), n_mat 1: its importance is kept (the token count, which a legacy file
// lacks, is not invented). Throws errc::invalid_argument on what parse() would reject, including
// names of more than 63 - 8 bytes.
[[nodiscard]] inline std::vector<std::uint8_t> serialize_gguf(const file& f) {
  if (f.entries.empty()) throw error(errc::empty_input, "imatrix: no entries to write");
  gguf::array datasets{gguf::value_type::string, {}};
  if (!f.dataset.empty()) datasets.items.emplace_back(f.dataset);
  gguf::metadata kvs = {{"general.type", gguf::value("imatrix")}, {"imatrix.datasets", gguf::value(datasets)}};
  if (f.last_chunk >= 0) kvs.set("imatrix.chunk_count", gguf::value(static_cast<std::uint32_t>(f.last_chunk)));
  if (f.chunk_size >= 0) kvs.set("imatrix.chunk_size", gguf::value(static_cast<std::uint32_t>(f.chunk_size)));

  std::vector<gguf::tensor_source> tensors;
  std::vector<std::vector<float>> counts;  // owns the legacy entries' counts while writing
  counts.reserve(f.entries.size());
  for (const auto& [key, e] : f.entries) {
    detail::check_entry(key, e);
    if (e.counts.empty()) counts.push_back({static_cast<float>(e.ncall > 0 ? e.ncall : 1)});
    const std::vector<float>& c = e.counts.empty() ? counts.back() : e.counts;
    const auto n_mat = static_cast<std::uint64_t>(c.size());
    const auto ne0 = static_cast<std::uint64_t>(e.values.size()) / n_mat;
    const std::span<const float> sums(e.values.data(), static_cast<std::size_t>(e.values.size()));
    tensors.push_back({key + std::string(detail::sum_suffix), 0, {ne0, n_mat}, std::as_bytes(sums), {}});
    tensors.push_back({key + std::string(detail::count_suffix), 0, {1, n_mat}, std::as_bytes(std::span(c)), {}});
  }
  std::ostringstream s(std::ios::binary);
  gguf::write(s, kvs, tensors);
  const std::string b = std::move(s).str();
  return std::vector<std::uint8_t>(b.begin(), b.end());
}

// Writes f to path in `fmt` (replaced only when the whole file is written: see io/output_file.hpp).
inline void save(const file& f, const std::string& path, format fmt = format::legacy) {
  const std::vector<std::uint8_t> bytes = fmt == format::gguf ? serialize_gguf(f) : serialize(f);
  output_file out(path);
  out.stream().write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  out.commit();
}

// An entry as llama-imatrix would store it, from activations X (in_features x tokens, one token per
// column) seen in `chunks` chunks: values = mean over tokens of x^2, times chunks.
template <class Derived>
[[nodiscard]] entry entry_from_activations(const Eigen::MatrixBase<Derived>& x, std::int32_t chunks = 1) {
  if (chunks <= 0) throw error(errc::invalid_argument, "imatrix: chunks must be positive");
  const Eigen::VectorXd sums = importance_from_activations(x);  // throws on empty or non-finite input
  entry e;
  e.ncall = chunks;
  e.values = (sums / static_cast<double>(x.cols()) * static_cast<double>(chunks)).cast<float>();
  return e;
}

// Sets l's importance statistic from the entry named tensor (l.name when empty): importance() in
// double, checked to have one value per input column of l (errc::shape_mismatch otherwise).
inline layer& attach_importance(layer& l, const file& f, const std::string& tensor = {}) {
  const std::string key = tensor.empty() ? l.name : tensor;
  const Eigen::VectorXf v = f.importance(key);
  if (v.size() != l.cols)
    throw error(errc::shape_mismatch, "imatrix entry '" + key + "' has " + std::to_string(v.size()) +
                                          " values, layer '" + l.name + "' has " + std::to_string(l.cols) +
                                          " input columns");
  return l.with_importance(Eigen::VectorXd(v.cast<double>()));
}

}  // namespace mixprec::imatrix
