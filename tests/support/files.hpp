// Reading files in tests: a missing or short file stops the test with its path, never hands back an
// empty buffer that a test then slices.
#pragma once

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

namespace mixprec::test {

// The whole file at `path`. Throws std::runtime_error (which Catch2 reports with the message) when
// the file cannot be opened or holds fewer than `min_bytes` bytes.
inline std::vector<char> read_bytes(const std::filesystem::path& path, std::size_t min_bytes = 1) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("test data: cannot open '" + path.string() + "'");
  std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (bytes.size() < min_bytes)
    throw std::runtime_error("test data: '" + path.string() + "' holds " + std::to_string(bytes.size()) +
                             " bytes, fewer than the " + std::to_string(min_bytes) + " the test needs");
  return bytes;
}

}  // namespace mixprec::test
