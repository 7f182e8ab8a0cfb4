// GGUF files (ggml / llama.cpp): reader (memory-mapped, tensor bytes not copied), streaming writer,
// and a rewrite helper that copies a file while changing metadata and re-encoding chosen tensors.
//
// Format (ggml docs/gguf.md), little-endian:
//   "GGUF"  u32 version (3; 2 has the same layout and is read too)  u64 tensor_count  u64 kv_count
//   kv_count x { string key; u32 value_type; value }           string = u64 byte length + bytes (no NUL)
//     value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool (1 byte, 0 or 1), 8 string,
//     9 array (u32 element type, u64 count, the elements; arrays of arrays allowed), 10 u64, 11 i64, 12 f64
//   tensor_count x { string name; u32 n_dims (1..4); u64 dims[n_dims]; u32 ggml_type; u64 offset }
//     dims[0] (ne0) is the contiguous row length; offset is relative to the data section
//   padding to the next multiple of ALIGN, then the data section (every tensor offset a multiple of ALIGN)
//   ALIGN = the u32 KV "general.alignment" (a power of two; mixprec refuses above 1 MiB), else 32.
//
// Reading:
//   auto g = gguf::file::open("model.gguf");    // or gguf::file::parse(mapped_file(...))
//   g.kvs()                 every KV in file order with its exact type (gguf::metadata, below)
//   g.kvs().get_u32("general.alignment"), get_string(k), get_u64, get_i32, get_f32, get_bool, get_array,
//   g.kvs().get<T>(k), find(k) -> const value* (nullptr if absent)
//   g.tensors()             tensor_info: name, type (ggml code), dims (ne0 first), offset, size, bytes
//   g.find(name) / g.at(name), g.alignment(), g.data_offset(), g.version()
//   g.to_float(name)        F32 / F16 / BF16 tensor -> row_matrix of (product of dims[1..]) x ne0
//   (quantized types: pass t.bytes to quantize/ggml.hpp's ggml::dequantize when the type is supported
//    there: is_supported_ggml_type(t.type) or type_traits_of(t.type)->implemented, static_cast<ggml_type>(t.type);
//    the others, e.g. MXFP4, are read, listed and copied by rewrite byte for byte, never decoded)
// Writing (streams tensor data, one tensor at a time; sizes must be known up front for the infos):
//   gguf::writer w(out, kvs);  w.add_tensor(name, type, dims)...;  w.write_header();
//   w.write_tensor_data(bytes) once per tensor, in add order;  w.finish();
//   gguf::write(out_or_path, kvs, tensors)       one call; each tensor gives bytes or a producer callback
//   gguf::rewrite(src, kvs, out, new_type, convert)   copy with new KVs and re-encoded tensors
// Values: gguf::value holds one of the 13 types (std::variant in type-code order); gguf::array holds
// an element type and items. Construct with the exact C++ type: value(std::uint32_t{32}), value("text"),
// value(array{value_type::string, {value("a"), value("b")}}).
//
// Type table (ggml type code -> name, block size, bytes per block, whether mixprec decodes it):
// formats/ggml_types.hpp, through type_traits_of(). Every code ggml defines reads (0..42, MXFP4 39
// included); a code ggml has removed (4, 5, 31-33, 36-38: Q4_2, Q4_0_4_4, IQ4_NL_4_4...) is
// errc::unsupported naming the tensor and the type as removed (ggml's reader refuses them too), and a
// code of 43 or more errc::unsupported as unknown. ne0 must be a multiple of the type's block size.
//
// Bad input is a mixprec::error (errc::parse_error unless said otherwise) naming the file and what was
// expected: wrong magic, version other than 2/3 (big-endian files are recognised and refused), counts
// that the remaining bytes cannot hold (a KV takes >= 13 bytes, a tensor info >= 32, an array element
// >= its type's size), strings past the end, unknown value types, bool bytes other than 0/1, arrays
// nested deeper than 16, duplicate keys or tensor names, n_dims outside 1..4, a dimension above
// INT64_MAX or an element count or byte size that overflows, a general.alignment that is not a u32
// power of two up to 2^20, offsets not a multiple of the alignment or past the end, and overlapping
// tensor data.
// Tensor names are not limited in length when reading; the writer refuses names of 64 bytes or more
// (llama.cpp's GGML_MAX_NAME) so its files load there. Assumes a little-endian host (static_assert).
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <limits>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "mixprec/types.hpp"
#include "mixprec/detail/checked.hpp"
#include "mixprec/error.hpp"
#include "mixprec/formats/ggml_types.hpp"
#include "mixprec/io/output_file.hpp"
#include "mixprec/formats/float_convert.hpp"
#include "mixprec/io/mapped_file.hpp"

namespace mixprec::gguf {

static_assert(std::endian::native == std::endian::little, "mixprec's GGUF reader assumes a little-endian host");

inline constexpr std::uint32_t default_alignment = 32;
inline constexpr std::uint32_t max_alignment = 1u << 20;  // mixprec's bound (real files use 32..4096)
inline constexpr std::size_t max_tensor_name = 63;  // llama.cpp's GGML_MAX_NAME - 1
inline constexpr int max_array_depth = 16;

// ---- ggml tensor types ----

struct type_traits {
  std::string_view name;   // ggml's name ("f32", "q4_0", "q4_K", "mxfp4", ...)
  std::uint32_t block_size;  // elements per block
  std::uint32_t type_size;   // bytes per block
  bool implemented;          // mixprec decodes and encodes it (false: its bytes are only carried)
};

// Name, block size and bytes per block of ggml type `code` (the one table, formats/ggml_types.hpp),
// or nullopt for a code ggml does not define or has removed (ggml::find_type tells those apart).
[[nodiscard]] constexpr std::optional<type_traits> type_traits_of(std::uint32_t code) noexcept {
  if (const ggml::type_info* t = ggml::find_type(code); t && !t->removed())
    return type_traits{t->name, t->block_size, t->type_size, t->implemented()};
  return std::nullopt;
}

// ---- metadata values ----

enum class value_type : std::uint32_t { u8, i8, u16, i16, u32, i32, f32, boolean, string, array, u64, i64, f64 };

[[nodiscard]] constexpr std::string_view to_string(value_type t) noexcept {
  constexpr std::string_view names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<std::uint32_t>(t);
  return i < 13 ? names[i] : std::string_view("unknown");
}

struct value;

struct array {
  value_type type = value_type::u8;  // every item has this type
  std::vector<value> items;
  friend bool operator==(const array& a, const array& b);
};

struct value {
  // Alternatives in value-type-code order: index() == the code.
  using storage = std::variant<std::uint8_t, std::int8_t, std::uint16_t, std::int16_t, std::uint32_t, std::int32_t,
                               float, bool, std::string, array, std::uint64_t, std::int64_t, double>;
  storage v;

  value() = default;
  // From exactly one of the alternative types (no silent int -> u8 conversions).
  template <class T>
    requires(std::is_same_v<std::remove_cvref_t<T>, std::uint8_t> || std::is_same_v<std::remove_cvref_t<T>, std::int8_t> ||
             std::is_same_v<std::remove_cvref_t<T>, std::uint16_t> || std::is_same_v<std::remove_cvref_t<T>, std::int16_t> ||
             std::is_same_v<std::remove_cvref_t<T>, std::uint32_t> || std::is_same_v<std::remove_cvref_t<T>, std::int32_t> ||
             std::is_same_v<std::remove_cvref_t<T>, float> || std::is_same_v<std::remove_cvref_t<T>, bool> ||
             std::is_same_v<std::remove_cvref_t<T>, std::string> || std::is_same_v<std::remove_cvref_t<T>, array> ||
             std::is_same_v<std::remove_cvref_t<T>, std::uint64_t> || std::is_same_v<std::remove_cvref_t<T>, std::int64_t> ||
             std::is_same_v<std::remove_cvref_t<T>, double>)
  value(T&& x) : v(std::forward<T>(x)) {}  // NOLINT(google-explicit-constructor)
  value(const char* s) : v(std::string(s)) {}
  value(std::string_view s) : v(std::string(s)) {}

  [[nodiscard]] value_type type() const noexcept { return static_cast<value_type>(v.index()); }
  template <class T>
  [[nodiscard]] const T* get_if() const noexcept {
    return std::get_if<T>(&v);
  }
  friend bool operator==(const value& a, const value& b) { return a.v == b.v; }
};

inline bool operator==(const array& a, const array& b) { return a.type == b.type && a.items == b.items; }

struct kv {
  std::string key;
  value val;
};

// The KVs of a file, in order. Lookups are linear (files have tens to hundreds of keys).
class metadata {
 public:
  metadata() = default;
  metadata(std::initializer_list<kv> items) : items_(items) {}

  [[nodiscard]] const std::vector<kv>& items() const noexcept { return items_; }
  [[nodiscard]] std::size_t size() const noexcept { return items_.size(); }
  [[nodiscard]] auto begin() const noexcept { return items_.begin(); }
  [[nodiscard]] auto end() const noexcept { return items_.end(); }

  // The value of `key`, or nullptr.
  [[nodiscard]] const value* find(std::string_view key) const noexcept {
    for (const kv& e : items_)
      if (e.key == key) return &e.val;
    return nullptr;
  }

  // The value of `key` as T; throws errc::invalid_argument if absent or of another type.
  template <class T>
  [[nodiscard]] const T& get(std::string_view key) const {
    const value* v = find(key);
    if (!v) throw error(errc::invalid_argument, "GGUF: no metadata key '" + std::string(key) + "'");
    const T* p = v->get_if<T>();
    if (!p)
      throw error(errc::invalid_argument, "GGUF: metadata key '" + std::string(key) + "' is " +
                                              std::string(to_string(v->type())) + ", not " +
                                              std::string(to_string(value(T{}).type())));
    return *p;
  }
  [[nodiscard]] std::uint32_t get_u32(std::string_view k) const { return get<std::uint32_t>(k); }
  [[nodiscard]] std::int32_t get_i32(std::string_view k) const { return get<std::int32_t>(k); }
  [[nodiscard]] std::uint64_t get_u64(std::string_view k) const { return get<std::uint64_t>(k); }
  [[nodiscard]] float get_f32(std::string_view k) const { return get<float>(k); }
  [[nodiscard]] bool get_bool(std::string_view k) const { return get<bool>(k); }
  [[nodiscard]] const std::string& get_string(std::string_view k) const { return get<std::string>(k); }
  [[nodiscard]] const array& get_array(std::string_view k) const { return get<array>(k); }

  // Sets `key` to `v`: in place if present (keeping its position), else appended.
  void set(std::string key, value v) {
    for (kv& e : items_)
      if (e.key == key) {
        e.val = std::move(v);
        return;
      }
    items_.push_back({std::move(key), std::move(v)});
  }
  // Removes `key`; returns whether it was present.
  bool erase(std::string_view key) {
    auto it = std::find_if(items_.begin(), items_.end(), [&](const kv& e) { return e.key == key; });
    if (it == items_.end()) return false;
    items_.erase(it);
    return true;
  }

  friend bool operator==(const metadata& a, const metadata& b) {
    if (a.items_.size() != b.items_.size()) return false;
    for (std::size_t i = 0; i < a.items_.size(); ++i)
      if (a.items_[i].key != b.items_[i].key || !(a.items_[i].val == b.items_[i].val)) return false;
    return true;
  }

 private:
  friend class file;
  std::vector<kv> items_;
};

// ---- tensors ----

struct tensor_info {
  std::string name;
  std::uint32_t type = 0;              // ggml type code (type_traits_of)
  std::vector<std::uint64_t> dims;     // ne0 (contiguous) first
  std::uint64_t offset = 0;            // relative to the data section
  std::uint64_t size = 0;              // bytes
  std::span<const std::byte> bytes;    // inside the file (empty for a tensor being written)

  [[nodiscard]] std::uint64_t count() const noexcept {
    std::uint64_t n = 1;
    for (auto d : dims) n *= d;
    return n;
  }
  // ne0, and the number of rows of that length.
  [[nodiscard]] std::uint64_t row_length() const noexcept { return dims.empty() ? 1 : dims[0]; }
  [[nodiscard]] std::uint64_t rows() const noexcept {
    std::uint64_t n = 1;
    for (std::size_t i = 1; i < dims.size(); ++i) n *= dims[i];
    return n;
  }
};

namespace detail {

using mixprec::detail::mul_ok;

// Byte size of a tensor of `type` and `dims`, validated; `fail(errc, message)` must throw.
template <class Fail>
std::uint64_t tensor_bytes(const std::string& name, std::uint32_t type, std::span<const std::uint64_t> dims, Fail&& fail) {
  const std::string where = "tensor '" + name + "'";
  const ggml::type_info* info = ggml::find_type(type);
  if (!info || info->removed()) {
    fail(errc::unsupported,
         info ? where + " has ggml type " + std::to_string(type) + " (" + std::string(info->name) +
                    "), which ggml has removed: its GGUF reader refuses it too (convert the model again)"
              : where + " has unknown ggml type " + std::to_string(type) + " (ggml defines 0 to " +
                    std::to_string(ggml::type_count - 1) + ")");
    return 0;
  }
  const auto tt = type_traits_of(type);
  if (dims.empty() || dims.size() > 4)
    fail(errc::parse_error, where + " has " + std::to_string(dims.size()) + " dimensions (expected 1 to 4)");
  constexpr auto i64_max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t count = 1;
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] > i64_max) fail(errc::parse_error, where + ": dimension " + std::to_string(i) + " exceeds INT64_MAX");
    if (!mul_ok(count, dims[i], count) || count > i64_max)
      fail(errc::parse_error, where + ": element count overflows");
  }
  if (dims[0] % tt->block_size != 0)
    fail(errc::parse_error, where + ": row length " + std::to_string(dims[0]) + " is not a multiple of " +
                                std::string(tt->name) + "'s block size " + std::to_string(tt->block_size));
  std::uint64_t bytes = 0;
  if (!mul_ok(count / tt->block_size, tt->type_size, bytes)) fail(errc::parse_error, where + ": byte size overflows");
  return bytes;
}

inline std::uint64_t align_up(std::uint64_t x, std::uint64_t a) noexcept { return (x + a - 1) / a * a; }

// Smallest encoding of one element of type t (bounds array counts before allocating).
inline std::uint64_t min_value_bytes(value_type t) noexcept {
  switch (t) {
    case value_type::u8: case value_type::i8: case value_type::boolean: return 1;
    case value_type::u16: case value_type::i16: return 2;
    case value_type::u32: case value_type::i32: case value_type::f32: return 4;
    case value_type::u64: case value_type::i64: case value_type::f64: case value_type::string: return 8;
    case value_type::array: return 12;
  }
  return 1;
}

class cursor {
 public:
  cursor(std::span<const std::byte> b, const std::string& name) : b_(b), name_(name) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw error(errc::parse_error, "GGUF '" + name_ + "': " + what + " (at byte " + std::to_string(pos_) + ")");
  }
  [[nodiscard]] std::uint64_t remaining() const noexcept { return b_.size() - pos_; }
  [[nodiscard]] std::size_t pos() const noexcept { return pos_; }

  template <class T>
  T read(const char* what) {
    if (remaining() < sizeof(T)) fail(std::string("truncated in ") + what);
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    const auto n = read<std::uint64_t>(what);
    if (n > remaining())
      fail(std::string(what) + " of " + std::to_string(n) + " bytes runs past the end of the file");
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return s;
  }
  value read_value(std::uint32_t code, const std::string& key, int depth) {
    switch (code) {
      case 0: return read<std::uint8_t>("a u8 value");
      case 1: return read<std::int8_t>("an i8 value");
      case 2: return read<std::uint16_t>("a u16 value");
      case 3: return read<std::int16_t>("an i16 value");
      case 4: return read<std::uint32_t>("a u32 value");
      case 5: return read<std::int32_t>("an i32 value");
      case 6: return read<float>("an f32 value");
      case 7: {
        const auto b = read<std::uint8_t>("a bool value");
        if (b > 1) fail("key '" + key + "': bool byte " + std::to_string(b) + " is not 0 or 1");
        return b == 1;
      }
      case 8: return read_string("a string value");
      case 9: {
        if (depth >= max_array_depth)
          fail("key '" + key + "': arrays nested deeper than " + std::to_string(max_array_depth));
        const auto elem = read<std::uint32_t>("an array element type");
        if (elem > 12) fail("key '" + key + "': unknown array element type " + std::to_string(elem));
        const auto n = read<std::uint64_t>("an array length");
        const std::uint64_t min = min_value_bytes(static_cast<value_type>(elem));
        if (n > remaining() / min)
          fail("key '" + key + "': array of " + std::to_string(n) + " " +
               std::string(to_string(static_cast<value_type>(elem))) + " cannot fit in the " +
               std::to_string(remaining()) + " bytes left");
        array a;
        a.type = static_cast<value_type>(elem);
        a.items.reserve(static_cast<std::size_t>(n));
        for (std::uint64_t i = 0; i < n; ++i) a.items.push_back(read_value(elem, key, depth + 1));
        return value(std::move(a));
      }
      case 10: return read<std::uint64_t>("a u64 value");
      case 11: return read<std::int64_t>("an i64 value");
      case 12: return read<double>("an f64 value");
      default: fail("key '" + key + "': unknown value type " + std::to_string(code));
    }
  }

 private:
  std::span<const std::byte> b_;
  const std::string& name_;
  std::size_t pos_ = 0;
};

}  // namespace detail

class file {
 public:
  // Maps and parses `path`.
  [[nodiscard]] static file open(const std::string& path) { return parse(mapped_file(path)); }

  // Parses bytes already in memory (or mapped); error messages name bytes.path().
  [[nodiscard]] static file parse(mapped_file bytes) {
    file f;
    f.bytes_ = std::move(bytes);
    f.parse_all();
    return f;
  }

  [[nodiscard]] std::uint32_t version() const noexcept { return version_; }
  [[nodiscard]] const metadata& kvs() const noexcept { return kvs_; }
  [[nodiscard]] const std::vector<tensor_info>& tensors() const noexcept { return tensors_; }  // in file order
  [[nodiscard]] std::uint64_t alignment() const noexcept { return alignment_; }
  [[nodiscard]] std::uint64_t data_offset() const noexcept { return data_offset_; }
  [[nodiscard]] const std::string& path() const noexcept { return bytes_.path(); }

  // The tensor called `name`, or nullptr.
  [[nodiscard]] const tensor_info* find(std::string_view name) const noexcept {
    for (const tensor_info& t : tensors_)
      if (t.name == name) return &t;
    return nullptr;
  }
  // The tensor called `name`; throws errc::invalid_argument when there is none.
  [[nodiscard]] const tensor_info& at(std::string_view name) const {
    if (const tensor_info* t = find(name)) return *t;
    throw error(errc::invalid_argument, "GGUF '" + path() + "': no tensor named '" + std::string(name) + "'");
  }

  // An F32 / F16 / BF16 tensor as an FP32 matrix of rows() x row_length() (exact); other types throw
  // errc::unsupported (dequantize them with quantize/ggml.hpp's ggml::dequantize).
  [[nodiscard]] row_matrix to_float(std::string_view name) const {
    const tensor_info& t = at(name);
    if (t.type != 0 && t.type != 1 && t.type != 30) {
      const auto tt = type_traits_of(t.type);
      throw error(errc::unsupported, "GGUF '" + path() + "': tensor '" + t.name + "' is " + std::string(tt->name) +
                                         "; to_float reads f32, f16 and bf16 only" +
                                         (tt->implemented ? "" : " (and mixprec does not decode " + std::string(tt->name) + ")"));
    }
    constexpr auto index_max = static_cast<std::uint64_t>(std::numeric_limits<index_t>::max());
    if (t.rows() > index_max || t.row_length() > index_max)
      throw error(errc::unsupported, "GGUF '" + path() + "': tensor '" + t.name + "' is too large for a matrix");
    row_matrix m(static_cast<index_t>(t.rows()), static_cast<index_t>(t.row_length()));
    const auto n = static_cast<std::size_t>(t.count());
    const std::byte* p = t.bytes.data();
    float* out = m.data();
    if (t.type == 0) {
      if (n) std::memcpy(out, p, 4 * n);
    } else {
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = t.type == 1 ? fp16_to_fp32(h) : bf16_to_fp32(h);
      }
    }
    return m;
  }

 private:
  void parse_all() {
    const std::string& name = bytes_.path();
    const std::span<const std::byte> all = bytes_.data();
    detail::cursor c(all, name);
    const auto magic = c.read<std::uint32_t>("the magic");
    if (std::memcmp(&magic, "GGUF", 4) != 0) c.fail("bad magic (expected \"GGUF\")");
    version_ = c.read<std::uint32_t>("the version");
    if (version_ == 0x02000000u || version_ == 0x03000000u)
      c.fail("big-endian GGUF files are not supported");
    if (version_ != 2 && version_ != 3)
      c.fail("version " + std::to_string(version_) + " is not supported (expected 2 or 3)");
    const auto n_tensors = c.read<std::uint64_t>("the tensor count");
    const auto n_kv = c.read<std::uint64_t>("the metadata count");
    if (n_kv > c.remaining() / 13)
      c.fail(std::to_string(n_kv) + " metadata entries cannot fit in the " + std::to_string(c.remaining()) +
             " bytes left");
    if (n_tensors > c.remaining() / 32)
      c.fail(std::to_string(n_tensors) + " tensor infos cannot fit in the " + std::to_string(c.remaining()) +
             " bytes left");

    std::unordered_set<std::string> seen;
    kvs_.items_.reserve(static_cast<std::size_t>(n_kv));
    for (std::uint64_t i = 0; i < n_kv; ++i) {
      std::string key = c.read_string("a metadata key");
      if (!seen.insert(key).second) c.fail("duplicate metadata key '" + key + "'");
      const auto type = c.read<std::uint32_t>("a value type");
      value v = c.read_value(type, key, 0);
      kvs_.items_.push_back({std::move(key), std::move(v)});
    }

    alignment_ = default_alignment;
    if (const value* a = kvs_.find("general.alignment")) {
      const auto* u = a->get_if<std::uint32_t>();
      if (!u) c.fail("general.alignment is " + std::string(to_string(a->type())) + ", not u32");
      if (*u == 0 || (*u & (*u - 1)) != 0 || *u > max_alignment)
        c.fail("general.alignment " + std::to_string(*u) + " is not a power of two up to " +
               std::to_string(max_alignment));
      alignment_ = *u;
    }

    seen.clear();
    tensors_.reserve(static_cast<std::size_t>(n_tensors));
    auto fail_tensor = [&](errc code, const std::string& what) {
      throw error(code, "GGUF '" + name + "': " + what + " (at byte " + std::to_string(c.pos()) + ")");
    };
    for (std::uint64_t i = 0; i < n_tensors; ++i) {
      tensor_info t;
      t.name = c.read_string("a tensor name");
      if (!seen.insert(t.name).second) c.fail("duplicate tensor name '" + t.name + "'");
      const auto n_dims = c.read<std::uint32_t>("a tensor's n_dims");
      if (n_dims == 0 || n_dims > 4)
        c.fail("tensor '" + t.name + "' has " + std::to_string(n_dims) + " dimensions (expected 1 to 4)");
      for (std::uint32_t d = 0; d < n_dims; ++d) t.dims.push_back(c.read<std::uint64_t>("a tensor dimension"));
      t.type = c.read<std::uint32_t>("a tensor type");
      t.offset = c.read<std::uint64_t>("a tensor offset");
      t.size = detail::tensor_bytes(t.name, t.type, t.dims, fail_tensor);
      if (t.offset % alignment_ != 0)
        c.fail("tensor '" + t.name + "' offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
               std::to_string(alignment_));
      tensors_.push_back(std::move(t));
    }

    data_offset_ = detail::align_up(c.pos(), alignment_);
    const std::uint64_t data_size = data_offset_ <= all.size() ? all.size() - data_offset_ : 0;
    for (tensor_info& t : tensors_) {
      if (t.offset > data_size || t.size > data_size - t.offset)
        c.fail("tensor '" + t.name + "' data [" + std::to_string(t.offset) + ", +" + std::to_string(t.size) +
               ") runs past the end of the data section (" + std::to_string(data_size) + " bytes)");
      t.bytes = all.subspan(static_cast<std::size_t>(data_offset_ + t.offset), static_cast<std::size_t>(t.size));
    }
    std::vector<const tensor_info*> by_offset;
    for (const tensor_info& t : tensors_) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(), [](const tensor_info* a, const tensor_info* b) {
      return a->offset != b->offset ? a->offset < b->offset : a->size < b->size;
    });
    for (std::size_t i = 1; i < by_offset.size(); ++i) {
      const tensor_info& a = *by_offset[i - 1];
      const tensor_info& b = *by_offset[i];
      if (b.offset < a.offset + a.size)
        c.fail("tensors '" + a.name + "' and '" + b.name + "' overlap in the data section");
    }
  }

  mapped_file bytes_;
  std::uint32_t version_ = 0;
  metadata kvs_;
  std::vector<tensor_info> tensors_;
  std::uint64_t alignment_ = default_alignment;
  std::uint64_t data_offset_ = 0;
};

// ---- writing ----

// ---- typed reads of a file's KVs, with errors naming the file and the key ----

// An unsigned integer KV of any integer type; nullopt when absent. Negative values and non-integers
// are errc::parse_error naming the key.
[[nodiscard]] inline std::optional<std::uint64_t> uint_kv(const file& g, const std::string& key) {
  const value* v = g.kvs().find(key);
  if (!v) return std::nullopt;
  std::optional<std::uint64_t> out;
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          if (x >= 0) out = static_cast<std::uint64_t>(x);
        }
      },
      v->v);
  if (!out)
    throw error(errc::parse_error, "GGUF '" + g.path() + "': key '" + key + "' is " + std::string(to_string(v->type())) +
                                       "; a non-negative integer is expected");
  return out;
}

// A floating-point KV (f32 or f64) as a double; nullopt when absent, errc::parse_error for another type.
[[nodiscard]] inline std::optional<double> float_kv(const file& g, const std::string& key) {
  const value* v = g.kvs().find(key);
  if (!v) return std::nullopt;
  if (const float* f = v->get_if<float>()) return *f;
  if (const double* d = v->get_if<double>()) return *d;
  throw error(errc::parse_error, "GGUF '" + g.path() + "': key '" + key + "' is " + std::string(to_string(v->type())) +
                                     "; f32 or f64 is expected");
}

// A count (a dimension, a number of layers or heads): an integer KV in [1, 2^30], else fallback when
// absent; errc::parse_error for a missing key without fallback, a malformed or out-of-range value.
[[nodiscard]] inline int count_kv(const file& g, const std::string& key, std::optional<int> fallback = std::nullopt) {
  const auto v = uint_kv(g, key);
  if (!v) {
    if (fallback) return *fallback;
    throw error(errc::parse_error, "GGUF '" + g.path() + "': the model needs the key '" + key + "'");
  }
  if (*v == 0 || *v > (1u << 30))
    throw error(errc::parse_error, "GGUF '" + g.path() + "': key '" + key + "' = " + std::to_string(*v) + " is out of range");
  return static_cast<int>(*v);
}

namespace detail {

inline void put_bytes(std::ostream& out, const void* p, std::size_t n, std::uint64_t& written) {
  out.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
  written += n;
}
template <class T>
void put(std::ostream& out, T v, std::uint64_t& written) {
  put_bytes(out, &v, sizeof v, written);
}
inline void put_string(std::ostream& out, std::string_view s, std::uint64_t& written) {
  put<std::uint64_t>(out, s.size(), written);
  put_bytes(out, s.data(), s.size(), written);
}

// Writes the payload of `v` (no type code); checks that array items match the array's type.
inline void put_value(std::ostream& out, const value& v, const std::string& key, std::uint64_t& written) {
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          put_string(out, x, written);
        } else if constexpr (std::is_same_v<T, array>) {
          put<std::uint32_t>(out, static_cast<std::uint32_t>(x.type), written);
          put<std::uint64_t>(out, x.items.size(), written);
          for (const value& item : x.items) {
            if (item.type() != x.type)
              throw error(errc::invalid_argument, "GGUF write: key '" + key + "': an item of an array of " +
                                                      std::string(to_string(x.type)) + " is " +
                                                      std::string(to_string(item.type())));
            put_value(out, item, key, written);
          }
        } else if constexpr (std::is_same_v<T, bool>) {
          put<std::uint8_t>(out, x ? 1 : 0, written);
        } else {
          put<T>(out, x, written);
        }
      },
      v.v);
}

inline std::uint64_t alignment_of(const metadata& kvs) {
  const value* a = kvs.find("general.alignment");
  if (!a) return default_alignment;
  const auto* u = a->get_if<std::uint32_t>();
  if (!u || *u == 0 || (*u & (*u - 1)) != 0 || *u > max_alignment)
    throw error(errc::invalid_argument,
                "GGUF write: general.alignment must be a u32 power of two up to " + std::to_string(max_alignment));
  return *u;
}

}  // namespace detail

// Streams a GGUF v3 file: declare every tensor, write the header, then each tensor's bytes in order.
// Only one tensor's bytes need to exist at a time; the stream need not be seekable.
class writer {
 public:
  // `out` must outlive the writer; `kvs` are written in order (general.alignment, if present, sets
  // the alignment: a u32 power of two; else 32).
  writer(std::ostream& out, metadata kvs) : out_(out), kvs_(std::move(kvs)), alignment_(detail::alignment_of(kvs_)) {
    std::unordered_set<std::string> keys;
    for (const kv& e : kvs_)
      if (!keys.insert(e.key).second) throw error(errc::invalid_argument, "GGUF write: duplicate key '" + e.key + "'");
  }

  // Declares the next tensor; returns its byte size. Any type ggml defines is accepted (MXFP4 copied
  // from another file too). Throws errc::invalid_argument (bad name, dims or row length) or
  // errc::unsupported (a type code ggml does not define or has removed).
  std::uint64_t add_tensor(std::string name, std::uint32_t type, std::vector<std::uint64_t> dims) {
    if (header_written_) throw error(errc::invalid_argument, "GGUF write: add_tensor after write_header");
    if (name.empty() || name.size() > max_tensor_name)
      throw error(errc::invalid_argument, "GGUF write: tensor name '" + name + "' must have 1 to " +
                                              std::to_string(max_tensor_name) + " bytes");
    if (!names_.insert(name).second) throw error(errc::invalid_argument, "GGUF write: duplicate tensor '" + name + "'");
    tensor_info t;
    t.size = detail::tensor_bytes(name, type, dims, [](errc code, const std::string& what) {
      throw error(code == errc::parse_error ? errc::invalid_argument : code, "GGUF write: " + what);
    });
    t.name = std::move(name);
    t.type = type;
    t.dims = std::move(dims);
    t.offset = next_offset_;
    next_offset_ = detail::align_up(next_offset_ + t.size, alignment_);
    tensors_.push_back(std::move(t));
    return tensors_.back().size;
  }

  // The declared tensors with their offsets and sizes.
  [[nodiscard]] const std::vector<tensor_info>& tensors() const noexcept { return tensors_; }

  // Writes magic, counts, KVs, tensor infos and padding up to the data section.
  void write_header() {
    if (header_written_) throw error(errc::invalid_argument, "GGUF write: write_header called twice");
    header_written_ = true;
    out_.write("GGUF", 4);
    written_ = 4;
    detail::put<std::uint32_t>(out_, 3, written_);
    detail::put<std::uint64_t>(out_, tensors_.size(), written_);
    detail::put<std::uint64_t>(out_, kvs_.size(), written_);
    for (const kv& e : kvs_) {
      detail::put_string(out_, e.key, written_);
      detail::put<std::uint32_t>(out_, static_cast<std::uint32_t>(e.val.type()), written_);
      detail::put_value(out_, e.val, e.key, written_);
    }
    for (const tensor_info& t : tensors_) {
      detail::put_string(out_, t.name, written_);
      detail::put<std::uint32_t>(out_, static_cast<std::uint32_t>(t.dims.size()), written_);
      for (auto d : t.dims) detail::put<std::uint64_t>(out_, d, written_);
      detail::put<std::uint32_t>(out_, t.type, written_);
      detail::put<std::uint64_t>(out_, t.offset, written_);
    }
    pad();
    data_start_ = written_;
    check_stream();
  }

  // Writes the next tensor's bytes (exactly its declared size) and the padding after them.
  void write_tensor_data(std::span<const std::byte> bytes) {
    if (!header_written_) throw error(errc::invalid_argument, "GGUF write: write_tensor_data before write_header");
    if (next_data_ >= tensors_.size()) throw error(errc::invalid_argument, "GGUF write: more tensor data than tensors");
    const tensor_info& t = tensors_[next_data_];
    if (bytes.size() != t.size)
      throw error(errc::invalid_argument, "GGUF write: tensor '" + t.name + "' needs " + std::to_string(t.size) +
                                              " bytes, got " + std::to_string(bytes.size()));
    detail::put_bytes(out_, bytes.data(), bytes.size(), written_);
    pad();
    ++next_data_;
    check_stream();
  }

  // Checks that every tensor was written and flushes.
  void finish() {
    if (!header_written_) write_header();
    if (next_data_ != tensors_.size())
      throw error(errc::invalid_argument, "GGUF write: " + std::to_string(tensors_.size() - next_data_) +
                                              " tensors declared but not written");
    out_.flush();
    check_stream();
  }

  [[nodiscard]] std::uint64_t alignment() const noexcept { return alignment_; }
  [[nodiscard]] std::uint64_t bytes_written() const noexcept { return written_; }

 private:
  void pad() {
    static constexpr char zeros[64] = {};
    std::uint64_t n = detail::align_up(written_, alignment_) - written_;
    while (n) {
      const std::uint64_t k = std::min<std::uint64_t>(n, sizeof zeros);
      detail::put_bytes(out_, zeros, static_cast<std::size_t>(k), written_);
      n -= k;
    }
  }
  void check_stream() const {
    if (!out_) throw error(errc::output_error, "GGUF write: the output stream failed");
  }

  std::ostream& out_;
  metadata kvs_;
  std::uint64_t alignment_;
  std::vector<tensor_info> tensors_;
  std::unordered_set<std::string> names_;
  std::uint64_t next_offset_ = 0;
  std::uint64_t written_ = 0;
  std::uint64_t data_start_ = 0;
  std::size_t next_data_ = 0;
  bool header_written_ = false;
};

// A tensor for gguf::write: either `bytes` (caller-owned) or `produce`, called once when the tensor's
// turn comes, returning exactly its byte size.
struct tensor_source {
  std::string name;
  std::uint32_t type = 0;
  std::vector<std::uint64_t> dims;  // ne0 first
  std::span<const std::byte> bytes;
  std::function<std::vector<std::byte>()> produce;
};

// Writes a whole GGUF v3 file to `out`.
inline void write(std::ostream& out, const metadata& kvs, std::span<const tensor_source> tensors) {
  writer w(out, kvs);
  for (const tensor_source& t : tensors) w.add_tensor(t.name, t.type, t.dims);
  w.write_header();
  for (const tensor_source& t : tensors) {
    if (t.produce) {
      const std::vector<std::byte> b = t.produce();
      w.write_tensor_data(b);
    } else {
      w.write_tensor_data(t.bytes);
    }
  }
  w.finish();
}

// Writes a whole GGUF v3 file to `path` (created or truncated); throws errc::io_error naming it.
inline void write(const std::string& path, const metadata& kvs, std::span<const tensor_source> tensors) {
  output_file out(path);  // written beside `path` and renamed on success: never a partial file
  write(out.stream(), kvs, tensors);
  out.commit();
}

// Copies `src` to `out` with metadata `kvs` (start from src.kvs() and edit it) and the same tensors in
// the same order. `new_type(t)` picks each tensor's output type (empty function or t.type: unchanged,
// bytes copied); `convert(t, type)` returns the bytes of t re-encoded as `type`, called only for
// tensors whose type changes, one at a time in file order.
inline void rewrite(const file& src, const metadata& kvs, std::ostream& out,
                    const std::function<std::uint32_t(const tensor_info&)>& new_type = {},
                    const std::function<std::vector<std::byte>(const tensor_info&, std::uint32_t)>& convert = {}) {
  writer w(out, kvs);
  std::vector<std::uint32_t> types;
  for (const tensor_info& t : src.tensors()) {
    types.push_back(new_type ? new_type(t) : t.type);
    if (types.back() != t.type && !convert)
      throw error(errc::invalid_argument, "GGUF rewrite: tensor '" + t.name + "' changes type but no convert given");
    w.add_tensor(t.name, types.back(), t.dims);
  }
  w.write_header();
  for (std::size_t i = 0; i < types.size(); ++i) {
    const tensor_info& t = src.tensors()[i];
    if (types[i] == t.type) {
      w.write_tensor_data(t.bytes);
    } else {
      const std::vector<std::byte> b = convert(t, types[i]);
      w.write_tensor_data(b);
    }
  }
  w.finish();
}

}  // namespace mixprec::gguf
