// IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed (optional header: needs zlib,
// Debian zlib1g-dev). Layout: two zero bytes, a type byte (0x08 = unsigned byte), the number of
// dimensions, then each dimension as a big-endian uint32, then the data, row-major.
// Images (3 dimensions: count x rows x cols) load as one row per image scaled to [0, 1]; labels
// (1 dimension) as bytes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <zlib.h>

#include "mixprec/types.hpp"
#include "mixprec/detail/checked.hpp"
#include "mixprec/error.hpp"

namespace mixprec::idx {

struct array {
  std::vector<std::uint32_t> dims;
  std::vector<std::uint8_t> data;  // row-major
};

// Parses an (uncompressed) IDX byte stream of unsigned bytes; `name` appears in error messages.
[[nodiscard]] inline array parse(std::span<const std::uint8_t> bytes, const std::string& name = "idx") {
  auto fail = [&](const std::string& what) -> error { return error(errc::parse_error, "IDX '" + name + "': " + what); };
  if (bytes.size() < 4) throw fail("shorter than the 4-byte magic");
  if (bytes[0] != 0 || bytes[1] != 0) throw fail("bad magic (the first two bytes must be zero)");
  if (bytes[2] != 0x08) throw fail("element type 0x" + std::to_string(bytes[2]) + " is not unsigned byte (0x08)");
  const unsigned n_dims = bytes[3];
  if (n_dims == 0 || n_dims > 4) throw fail(std::to_string(n_dims) + " dimensions (expected 1 to 4)");
  if (bytes.size() < 4 + 4 * static_cast<std::size_t>(n_dims)) throw fail("truncated in the dimension list");
  array a;
  std::uint64_t count = 1;
  for (unsigned d = 0; d < n_dims; ++d) {
    const std::uint8_t* p = bytes.data() + 4 + 4 * d;
    const std::uint32_t v = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
    if (v == 0) throw fail("dimension " + std::to_string(d) + " is zero");
    if (!mixprec::detail::mul_ok(count, v, count) || count > (std::uint64_t{1} << 34))
      throw fail("dimensions multiply to more than 2^34 elements");
    a.dims.push_back(v);
  }
  const std::size_t header = 4 + 4 * static_cast<std::size_t>(n_dims);
  if (bytes.size() - header != count)
    throw fail("expected " + std::to_string(count) + " data bytes after the header, found " +
               std::to_string(bytes.size() - header));
  a.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return a;
}

// Reads a file whole, gunzipping it if it is gzip (zlib reads plain files through unchanged).
[[nodiscard]] inline std::vector<std::uint8_t> read_file(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw error(errc::io_error, "cannot open '" + path + "'");
  std::vector<std::uint8_t> out;
  std::uint8_t buf[1 << 16];
  for (;;) {
    const int n = gzread(f, buf, sizeof buf);
    if (n < 0) {
      int code = 0;
      const std::string msg = gzerror(f, &code);
      gzclose(f);
      throw error(errc::parse_error, "'" + path + "': corrupt gzip stream (" + msg + ")");
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
    if (out.size() > (std::size_t{1} << 34)) {
      gzclose(f);
      throw error(errc::parse_error, "'" + path + "': absurdly large");
    }
  }
  // gzread stops quietly at a truncated member; gzclose_r reports it.
  const int rc = gzclose(f);
  if (rc != Z_OK && rc != Z_BUF_ERROR) throw error(errc::parse_error, "'" + path + "': corrupt gzip stream");
  if (rc == Z_BUF_ERROR) throw error(errc::parse_error, "'" + path + "': truncated gzip stream");
  return out;
}

// Images: count x (rows * cols), one image per row, pixel / 255.
[[nodiscard]] inline row_matrix load_images(const std::string& path) {
  const array a = parse(read_file(path), path);
  if (a.dims.size() != 3) throw error(errc::parse_error, "IDX '" + path + "': images need 3 dimensions");
  row_matrix m(static_cast<index_t>(a.dims[0]), static_cast<index_t>(a.dims[1]) * static_cast<index_t>(a.dims[2]));
  for (std::size_t i = 0; i < a.data.size(); ++i) m.data()[i] = static_cast<float>(a.data[i]) / 255.0f;
  return m;
}

// Labels, each checked to be below `classes`.
[[nodiscard]] inline std::vector<std::uint8_t> load_labels(const std::string& path, unsigned classes = 10) {
  array a = parse(read_file(path), path);
  if (a.dims.size() != 1) throw error(errc::parse_error, "IDX '" + path + "': labels need 1 dimension");
  for (std::size_t i = 0; i < a.data.size(); ++i)
    if (a.data[i] >= classes)
      throw error(errc::parse_error, "IDX '" + path + "': label " + std::to_string(a.data[i]) + " at index " +
                                         std::to_string(i) + " is not below " + std::to_string(classes));
  return std::move(a.data);
}

}  // namespace mixprec::idx
