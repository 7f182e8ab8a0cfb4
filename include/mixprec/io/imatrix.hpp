// llama.cpp importance matrices in the legacy ".dat" format (`llama-imatrix --output-format dat`;
// the default before llama.cpp moved to GGUF-based imatrix files, which this header does not read).
//
// Layout (little-endian, as tools/imatrix/imatrix.cpp save_imatrix_legacy writes it):
//   int32 n_entries
//   n_entries times: int32 name_len; name bytes (no terminator); int32 ncall; int32 nval; float32 values[nval]
//   optional trailer: int32 last_chunk; int32 dataset_len; dataset bytes (the calibration file's name)
// Semantics: for the weight `name` (e.g. "blk.0.attn_q.weight"), nval = its input features (ne0; times
// the expert count for merged MoE experts), and values[j] = (sum over calibration tokens of x_j^2 /
// tokens) * ncall, where ncall is the number of calibration chunks. llama-quantize divides by ncall
// when it loads the file (load_legacy_imatrix), so the importance it quantizes with is the per-token
// mean of x_j^2; entry::importance() returns exactly that.
// The layer proxy of sensitivity/layer.hpp wants diag(X X^T) = tokens * that mean: the token count
// is not in the file (chunk size * chunks); a common factor for all layers does not change which
// candidate or which layer is worse, so attach_importance() uses the mean as it is.
//
// parse() is strict: a truncated file, a negative or absurd count, a name that is empty or repeated,
// a value that is NaN, Inf or negative, or bytes after the trailer -> mixprec::error(parse_error).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <Eigen/Core>

#include "mixprec/config.hpp"
#include "mixprec/error.hpp"
#include "mixprec/io/output_file.hpp"
#include "mixprec/sensitivity/layer.hpp"

namespace mixprec::imatrix {

// One weight's statistics as stored.
struct entry {
  std::int32_t ncall = 0;  // calibration chunks
  Eigen::VectorXf values;  // per input feature: mean of x^2 per token, times ncall

  // Per-feature importance as llama-quantize uses it: values / ncall (values as they are when ncall <= 0).
  [[nodiscard]] Eigen::VectorXf importance() const {
    return ncall > 0 ? Eigen::VectorXf(values / static_cast<float>(ncall)) : values;
  }
};

struct file {
  std::map<std::string, entry> entries;  // by weight name
  std::int32_t last_chunk = -1;          // -1: the file has no trailer
  std::string dataset;                   // calibration file name from the trailer

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

}  // namespace detail

inline constexpr std::int32_t max_name_length = 1 << 16;

// Parses a legacy imatrix byte stream; `name` appears in error messages.
[[nodiscard]] inline file parse(std::span<const std::uint8_t> bytes, const std::string& name = "imatrix") {
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

// Reads and parses a file.
[[nodiscard]] inline file load(const std::string& path) {
  std::ifstream s(path, std::ios::binary);
  if (!s) throw error(errc::io_error, "cannot open imatrix '" + path + "'");
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(s)), std::istreambuf_iterator<char>());
  if (s.bad()) throw error(errc::io_error, "cannot read imatrix '" + path + "'");
  return parse(bytes, path);
}

// name -> per-column importance (values / ncall, as llama-quantize uses them).
[[nodiscard]] inline std::map<std::string, Eigen::VectorXf> load_importance(const std::string& path) {
  const file f = load(path);
  std::map<std::string, Eigen::VectorXf> out;
  for (const auto& [k, e] : f.entries) out.emplace(k, e.importance());
  return out;
}

// The bytes of f in the legacy layout (entries in name order, as llama-imatrix sorts them; the
// trailer when last_chunk >= 0). Throws on what parse() would reject.
[[nodiscard]] inline std::vector<std::uint8_t> serialize(const file& f) {
  if (f.entries.empty()) throw error(errc::empty_input, "imatrix: no entries to write");
  std::vector<std::uint8_t> out;
  detail::put_i32(out, static_cast<std::int32_t>(f.entries.size()));
  for (const auto& [key, e] : f.entries) {
    if (key.empty() || key.size() > static_cast<std::size_t>(max_name_length))
      throw error(errc::invalid_argument, "imatrix: entry name of length " + std::to_string(key.size()));
    if (e.values.size() == 0 || e.ncall < 0)
      throw error(errc::invalid_argument, "imatrix '" + key + "': needs values and a non-negative ncall");
    if (!e.values.allFinite() || (e.values.array() < 0.0f).any())
      throw error(errc::invalid_argument, "imatrix '" + key + "': values must be finite and non-negative");
    detail::put_i32(out, static_cast<std::int32_t>(key.size()));
    out.insert(out.end(), key.begin(), key.end());
    detail::put_i32(out, e.ncall);
    detail::put_i32(out, static_cast<std::int32_t>(e.values.size()));
    const auto* p = reinterpret_cast<const std::uint8_t*>(e.values.data());
    out.insert(out.end(), p, p + e.values.size() * sizeof(float));
  }
  if (f.last_chunk >= 0) {
    detail::put_i32(out, f.last_chunk);
    detail::put_i32(out, static_cast<std::int32_t>(f.dataset.size()));
    out.insert(out.end(), f.dataset.begin(), f.dataset.end());
  }
  return out;
}

// Writes f to path (replaced only when the whole file is written: see io/output_file.hpp).
inline void save(const file& f, const std::string& path) {
  const std::vector<std::uint8_t> bytes = serialize(f);
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
