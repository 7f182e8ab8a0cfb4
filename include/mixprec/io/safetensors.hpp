// safetensors checkpoints: reader (memory-mapped, zero-copy for aligned F32) and writer.
// Optional header: needs nlohmann-json (Debian nlohmann-json3-dev).
//
// Format (huggingface/safetensors): u64 little-endian N, then N bytes of UTF-8 JSON
//   {"<name>": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"<key>": "<string value>", ...}}          (metadata optional, string values only)
// then the data buffer; [begin, end) is relative to the start of the data buffer (byte 8 + N), and
// the tensor is row-major (C order), little-endian. The header may end in spaces (writers pad it so the
// data starts 8-aligned).
//
//   auto st = safetensors::file::open("model.safetensors");   // or file::parse(mapped_file, ...)
//   st.tensors()            every tensor, sorted by data offset: name, type, shape, bytes
//   st.find(name)           pointer or nullptr; st.at(name) throws errc::invalid_argument
//   st.metadata()           the "__metadata__" map
//   st.as_matrix_f32(name)  Eigen::Map over the file bytes, no copy (F32 only, 4-byte aligned data)
//   st.to_float(name)       an owning row_matrix; converts F16 / BF16 exactly (formats/float_convert.hpp)
//   safetensors::write(out or path, tensors, metadata)         F32 / F16 / BF16
//   safetensors::encode(matrix, dtype)                         FP32 matrix -> row-major bytes of dtype
//
// Matrix view of a shape (both as_matrix_f32 and to_float): rank 0 -> 1 x 1; rank 1 [n] -> 1 x n;
// rank 2 [r, c] -> r x c; rank k > 2 [d0, d1, ..., dk-1] -> d0 x (d1 * ... * dk-1) (row-major, so
// this is the same memory; e.g. a conv weight [out, in, kh, kw] becomes out x (in*kh*kw)).
//
// Only F32, F16 and BF16 are accepted; any other dtype ("I64", "F8_E4M3", ...) makes parsing fail with
// errc::unsupported naming the tensor and dtype. All other bad input is errc::parse_error naming the
// file and tensor: a file shorter than 8 bytes, a header length past the end of the file or above
// 100 MB (max_header_bytes), JSON that does not parse or is not valid UTF-8, a header that is not an
// object, missing or mistyped fields, negative or non-integer numbers, a shape whose element or byte
// count overflows 64 bits, a byte range that disagrees with shape x dtype size, a range outside the
// data buffer, and two tensors whose ranges overlap.
// Like the format's reference reader (huggingface/safetensors, Metadata::validate and read_metadata),
// the tensors must tile the data buffer exactly: sorted by offset, the first starts at 0, each starts
// where the one before ends, and the last ends at the end of the file. A hole before or between
// tensors and bytes after the last one are parse errors naming the tensors around them (bytes that no
// tensor claims are where a second payload hides). Also refused, where nlohmann's parser would pass
// them silently (detail/json_strict.hpp): a key given twice at any level (a tensor named twice, keeping
// the last, shows one model to this reader and another to one that keeps the first; "__metadata__"
// twice; "dtype" twice in one tensor; a metadata key twice), a raw NUL byte in the header (nlohmann
// stops reading there), a UTF-8 byte order mark before it, and JSON nested deeper than 127 levels
// (serde_json's limit).
// Assumes a little-endian host (static_assert).
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mixprec/types.hpp"
#include "mixprec/detail/checked.hpp"
#include "mixprec/detail/json_number.hpp"
#include "mixprec/detail/json_strict.hpp"
#include "mixprec/error.hpp"
#include "mixprec/io/output_file.hpp"
#include "mixprec/formats/float_convert.hpp"
#include "mixprec/io/mapped_file.hpp"

namespace mixprec::safetensors {

static_assert(std::endian::native == std::endian::little, "mixprec's safetensors reader assumes a little-endian host");

enum class dtype { f32, f16, bf16 };

// The format's spelling: "F32", "F16", "BF16".
[[nodiscard]] constexpr std::string_view to_string(dtype t) noexcept {
  switch (t) {
    case dtype::f32: return "F32";
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
  }
  return "?";
}

// Bytes per element.
[[nodiscard]] constexpr std::size_t element_size(dtype t) noexcept { return t == dtype::f32 ? 4 : 2; }

// Largest header the reader accepts (real headers are kilobytes; this bounds the JSON parse).
inline constexpr std::uint64_t max_header_bytes = 100'000'000;

struct tensor_info {
  std::string name;
  dtype type = dtype::f32;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0, end = 0;     // data_offsets, relative to the data buffer
  std::span<const std::byte> bytes;     // the tensor's bytes inside the file

  // Number of elements (1 for rank 0).
  [[nodiscard]] std::uint64_t count() const noexcept {
    std::uint64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  // Matrix view of the shape (see the top of this header).
  [[nodiscard]] index_t rows() const noexcept { return shape.size() < 2 ? 1 : static_cast<index_t>(shape[0]); }
  [[nodiscard]] index_t cols() const noexcept {
    if (shape.empty()) return 1;
    if (shape.size() == 1) return static_cast<index_t>(shape[0]);
    std::uint64_t n = 1;
    for (std::size_t i = 1; i < shape.size(); ++i) n *= shape[i];
    return static_cast<index_t>(n);
  }
};

namespace detail {

[[noreturn]] inline void fail(const std::string& file, const std::string& what) {
  throw error(errc::parse_error, "safetensors '" + file + "': " + what);
}

inline std::uint64_t read_u64_le(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  std::memcpy(&v, p, 8);
  return v;
}

using mixprec::detail::mul_ok;

// How the header's JSON is read: the reference reader's serde_json refuses a key given twice (its
// map of tensors would keep one of them), a byte order mark and nesting deeper than 127 levels.
inline mixprec::detail::json_strictness header_strictness() {
  mixprec::detail::json_strictness s;
  s.allow_bom = false;
  s.max_depth = 127;
  s.duplicate_message = [](const mixprec::detail::json_path& where, const std::string& key) -> std::string {
    if (where.empty())
      return key == "__metadata__" ? std::string("\"__metadata__\" appears twice")
                                   : "tensor '" + key + "' appears twice (which entry a reader keeps is up to it)";
    if (where.front() == "__metadata__") return "__metadata__ has the key '" + key + "' twice";
    if (where.size() == 1) return "tensor '" + where.front() + "' has the field \"" + key + "\" twice";
    return "tensor '" + where.front() + "' has the key \"" + key + "\" twice in one of its objects";
  };
  return s;
}

inline std::uint64_t get_uint(const nlohmann::json& j, const std::string& file, const std::string& what) {
  // nlohmann reads "-0" as a signed integer 0 (it stores every other non-negative integer unsigned);
  // serde_json reads it as the float -0.0, which the reference refuses for a size.
  if (j.is_number_integer() && !j.is_number_unsigned() && j.get<std::int64_t>() == 0)
    fail(file, what + " is -0, not a non-negative integer");
  if (auto v = mixprec::detail::json_to_integer<std::uint64_t>(j)) return *v;
  fail(file, mixprec::detail::json_integer_problem<std::uint64_t>(j, what));
}

}  // namespace detail

class file {
 public:
  // Maps and parses `path`.
  [[nodiscard]] static file open(const std::string& path) { return parse(mapped_file(path)); }

  // Parses bytes already in memory (or mapped); error messages name bytes.path().
  [[nodiscard]] static file parse(mapped_file bytes) {
    file f;
    f.bytes_ = std::move(bytes);
    f.parse_header();
    return f;
  }

  [[nodiscard]] const std::vector<tensor_info>& tensors() const noexcept { return tensors_; }
  [[nodiscard]] const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  [[nodiscard]] const std::string& path() const noexcept { return bytes_.path(); }

  // The tensor called `name`, or nullptr.
  [[nodiscard]] const tensor_info* find(std::string_view name) const noexcept {
    auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }

  // The tensor called `name`; throws errc::invalid_argument when there is none.
  [[nodiscard]] const tensor_info& at(std::string_view name) const {
    if (const tensor_info* t = find(name)) return *t;
    throw error(errc::invalid_argument, "safetensors '" + path() + "': no tensor named '" + std::string(name) + "'");
  }

  // The F32 tensor `name` as a read-only matrix over the file's bytes (no copy; valid while this file
  // lives). Throws errc::unsupported if it is not F32 or its data is not 4-byte aligned (use to_float).
  [[nodiscard]] Eigen::Map<const row_matrix> as_matrix_f32(std::string_view name) const {
    const tensor_info& t = at(name);
    if (t.type != dtype::f32)
      throw error(errc::unsupported, "safetensors '" + path() + "': tensor '" + t.name + "' is " +
                                         std::string(to_string(t.type)) + ", not F32 (use to_float)");
    if (reinterpret_cast<std::uintptr_t>(t.bytes.data()) % alignof(float) != 0)
      throw error(errc::unsupported, "safetensors '" + path() + "': tensor '" + t.name +
                                         "' is not 4-byte aligned in the file (use to_float)");
    return {reinterpret_cast<const float*>(t.bytes.data()), t.rows(), t.cols()};
  }

  // The tensor `name` converted to an owning FP32 matrix (exact for all three dtypes).
  [[nodiscard]] row_matrix to_float(std::string_view name) const {
    const tensor_info& t = at(name);
    row_matrix m(t.rows(), t.cols());
    const std::byte* p = t.bytes.data();
    const auto n = static_cast<std::size_t>(t.count());
    float* out = m.data();
    switch (t.type) {
      case dtype::f32:
        if (n) std::memcpy(out, p, n * 4);
        break;
      case dtype::f16:
        for (std::size_t i = 0; i < n; ++i) {
          std::uint16_t h;
          std::memcpy(&h, p + 2 * i, 2);
          out[i] = fp16_to_fp32(h);
        }
        break;
      case dtype::bf16:
        for (std::size_t i = 0; i < n; ++i) {
          std::uint16_t h;
          std::memcpy(&h, p + 2 * i, 2);
          out[i] = bf16_to_fp32(h);
        }
        break;
    }
    return m;
  }

 private:
  void parse_header() {
    const std::string& name = bytes_.path();
    const std::span<const std::byte> all = bytes_.data();
    if (all.size() < 8)
      detail::fail(name, "file of " + std::to_string(all.size()) + " bytes is shorter than the 8-byte header length");
    const std::uint64_t n = detail::read_u64_le(all.data());
    if (n > max_header_bytes)
      detail::fail(name, "header length " + std::to_string(n) + " exceeds the " + std::to_string(max_header_bytes) +
                             "-byte limit");
    if (n > all.size() - 8)
      detail::fail(name, "header length " + std::to_string(n) + " runs past the end of the file (" +
                             std::to_string(all.size()) + " bytes)");
    const auto* text = reinterpret_cast<const char*>(all.data() + 8);
    nlohmann::json header;
    try {
      header = mixprec::detail::parse_json_strict(std::string_view(text, static_cast<std::size_t>(n)), detail::header_strictness());
    } catch (const nlohmann::json::exception& e) {
      detail::fail(name, std::string("header is not valid JSON: ") + e.what());
    } catch (const error& e) {
      detail::fail(name, "header: " + e.message());
    }
    if (!header.is_object()) detail::fail(name, "header is not a JSON object");
    const std::span<const std::byte> data = all.subspan(8 + static_cast<std::size_t>(n));

    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& key = it.key();
      const nlohmann::json& v = it.value();
      if (key == "__metadata__") {
        if (!v.is_object()) detail::fail(name, "__metadata__ is not an object");
        for (auto m = v.begin(); m != v.end(); ++m) {
          if (!m.value().is_string()) detail::fail(name, "__metadata__ value of '" + m.key() + "' is not a string");
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      tensors_.push_back(parse_tensor(key, v, data));
    }
    std::sort(tensors_.begin(), tensors_.end(), [](const tensor_info& a, const tensor_info& b) {
      if (a.begin != b.begin) return a.begin < b.begin;
      return a.end != b.end ? a.end < b.end : a.name < b.name;
    });
    // The tensors tile the data buffer: each starts where the one before ends (0 for the first).
    auto range = [](const tensor_info& t) {
      return "'" + t.name + "' [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + ")";
    };
    std::uint64_t covered = 0;  // the data buffer's bytes [0, covered) belong to the tensors so far
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      const tensor_info& t = tensors_[i];
      if (t.begin < covered)  // i > 0: covered is 0 before the first tensor
        detail::fail(name, "tensors " + range(tensors_[i - 1]) + " and " + range(t) + " overlap");
      if (t.begin > covered)
        detail::fail(name, (i == 0 ? "the first tensor " + range(t) + " does not start at 0"
                                   : "tensor " + range(t) + " starts " + std::to_string(t.begin - covered) +
                                         " bytes after tensor " + range(tensors_[i - 1]) + " ends") +
                               ": a hole that no tensor claims (the tensors must cover the data buffer without holes)");
      covered = t.end;
    }
    if (covered != data.size())
      detail::fail(name, "the data buffer has " + std::to_string(data.size()) + " bytes, but the tensors cover " +
                             std::to_string(covered) + ": " + std::to_string(data.size() - covered) +
                             " bytes after " + (tensors_.empty() ? std::string("the header") : "tensor " + range(tensors_.back())) +
                             " belong to no tensor");
    for (std::size_t i = 0; i < tensors_.size(); ++i)
      if (!index_.emplace(tensors_[i].name, i).second)  // parse_json_strict has refused this already
        detail::fail(name, "tensor '" + tensors_[i].name + "' appears twice in the header");
  }

  tensor_info parse_tensor(const std::string& tname, const nlohmann::json& v, std::span<const std::byte> data) const {
    const std::string& name = bytes_.path();
    const std::string where = "tensor '" + tname + "'";
    if (!v.is_object()) detail::fail(name, where + " is not an object");
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!v.contains(field)) detail::fail(name, where + " has no \"" + field + "\"");
    tensor_info t;
    t.name = tname;
    const nlohmann::json& dt = v["dtype"];
    if (!dt.is_string()) detail::fail(name, where + ": \"dtype\" is not a string");
    const std::string& ds = dt.get_ref<const std::string&>();
    if (ds == "F32") t.type = dtype::f32;
    else if (ds == "F16") t.type = dtype::f16;
    else if (ds == "BF16") t.type = dtype::bf16;
    else
      throw error(errc::unsupported, "safetensors '" + name + "': " + where + " has dtype '" + ds +
                                         "' (mixprec reads F32, F16 and BF16)");
    const nlohmann::json& shape = v["shape"];
    if (!shape.is_array()) detail::fail(name, where + ": \"shape\" is not an array");
    // The element count, and the matrix view's rows and columns, must fit Eigen's signed index (even
    // when a zero dimension makes the count 0).
    constexpr auto index_max = static_cast<std::uint64_t>(std::numeric_limits<index_t>::max());
    std::uint64_t count = 1, tail = 1;
    for (const auto& d : shape) {
      const std::uint64_t dim = detail::get_uint(d, name, where + ": a shape entry");
      if (!t.shape.empty() && (!detail::mul_ok(tail, dim, tail) || tail > index_max))
        detail::fail(name, where + ": shape is too large");
      t.shape.push_back(dim);
      if (!detail::mul_ok(count, dim, count) || count > index_max || dim > index_max)
        detail::fail(name, where + ": shape is too large");
    }
    std::uint64_t nbytes = 0;
    if (!detail::mul_ok(count, element_size(t.type), nbytes)) detail::fail(name, where + ": byte size overflows");
    const nlohmann::json& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2) detail::fail(name, where + ": \"data_offsets\" is not [begin, end]");
    t.begin = detail::get_uint(off[0], name, where + ": data_offsets begin");
    t.end = detail::get_uint(off[1], name, where + ": data_offsets end");
    if (t.end < t.begin)
      detail::fail(name, where + ": data_offsets end " + std::to_string(t.end) + " is before begin " +
                             std::to_string(t.begin));
    if (t.end - t.begin != nbytes)
      detail::fail(name, where + ": data_offsets span " + std::to_string(t.end - t.begin) + " bytes but shape x " +
                             std::string(to_string(t.type)) + " needs " + std::to_string(nbytes));
    if (t.end > data.size())
      detail::fail(name, where + ": data_offsets end " + std::to_string(t.end) + " is past the data buffer (" +
                             std::to_string(data.size()) + " bytes)");
    t.bytes = data.subspan(static_cast<std::size_t>(t.begin), static_cast<std::size_t>(nbytes));
    return t;
  }

  mapped_file bytes_;
  std::vector<tensor_info> tensors_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// ---- writing ----

// One tensor to write: `bytes` (row-major, little-endian, caller-owned) must hold exactly
// product(shape) * element_size(type) bytes.
struct tensor_view {
  std::string name;
  dtype type = dtype::f32;
  std::vector<std::uint64_t> shape;
  std::span<const std::byte> bytes;
};

// An FP32 matrix (any storage order; written row-major) as bytes of `type`, rounded to nearest even.
[[nodiscard]] inline std::vector<std::byte> encode(const Eigen::Ref<const row_matrix>& m, dtype type) {
  const auto n = static_cast<std::size_t>(m.size());
  std::vector<std::byte> out(n * element_size(type));
  for (index_t r = 0, i = 0; r < m.rows(); ++r)
    for (index_t c = 0; c < m.cols(); ++c, ++i) {
      const float x = m(r, c);
      std::byte* p = out.data() + static_cast<std::size_t>(i) * element_size(type);
      if (type == dtype::f32) {
        std::memcpy(p, &x, 4);
      } else {
        const std::uint16_t h = type == dtype::f16 ? fp32_to_fp16(x) : fp32_to_bf16(x);
        std::memcpy(p, &h, 2);
      }
    }
  return out;
}

// Writes a safetensors file: tensors in the given order, back to back, after a JSON header padded with
// spaces to a multiple of 8 bytes. Throws errc::invalid_argument for duplicate or reserved names and
// byte counts that disagree with the shape, errc::io_error when the stream fails.
inline void write(std::ostream& out, std::span<const tensor_view> tensors,
                  const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  std::uint64_t offset = 0;
  for (const tensor_view& t : tensors) {
    if (t.name == "__metadata__" || header.contains(t.name))
      throw error(errc::invalid_argument, "safetensors write: duplicate or reserved tensor name '" + t.name + "'");
    std::uint64_t count = 1;
    for (auto d : t.shape)
      if (!detail::mul_ok(count, d, count))
        throw error(errc::invalid_argument, "safetensors write: tensor '" + t.name + "': shape overflows");
    std::uint64_t nbytes = 0;
    if (!detail::mul_ok(count, element_size(t.type), nbytes) || nbytes != t.bytes.size())
      throw error(errc::invalid_argument, "safetensors write: tensor '" + t.name + "' has " +
                                              std::to_string(t.bytes.size()) + " bytes, shape x " +
                                              std::string(to_string(t.type)) + " needs " + std::to_string(nbytes));
    header[t.name] = {{"dtype", std::string(to_string(t.type))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const std::uint64_t n = text.size();
  char len[8];
  std::memcpy(len, &n, 8);
  out.write(len, 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const tensor_view& t : tensors)
    out.write(reinterpret_cast<const char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
  if (!out) throw error(errc::output_error, "safetensors write: the output stream failed");
}

// Writes to `path` (replaced only when the whole file is written: see io/output_file.hpp); throws
// errc::io_error naming it.
inline void write(const std::string& path, std::span<const tensor_view> tensors,
                  const std::map<std::string, std::string>& metadata = {}) {
  output_file out(path);
  write(out.stream(), tensors, metadata);
  out.commit();
}

}  // namespace mixprec::safetensors
