// llama.cpp's source tree, as the interop tests read it: the bundle tests/interop/llama_quantize.sh
// unpacks into $MIXPREC_INTEROP_CACHE/llama.cpp-src (run.sh sets the variable).
//   llama_cpp_source(needed)  the folder, or empty when the bundle is not here (fetched offline: the
//                             tests then skip); a failure when llama-quantize was built from it but the
//                             file `needed` (relative to it) is missing, or when the variable is unset
//   slurp(path)               a file's bytes (a failure when it cannot be read)
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <catch2/catch.hpp>

namespace mixprec::test {

inline std::filesystem::path llama_cpp_source(const std::filesystem::path& needed) {
  const char* cache = std::getenv("MIXPREC_INTEROP_CACHE");
  if (!cache) FAIL("MIXPREC_INTEROP_CACHE is not set: run this binary through tests/interop/run.sh");
  const std::filesystem::path dir = std::filesystem::path(cache) / "llama.cpp-src";
  if (!std::filesystem::exists(dir / needed)) {
    const char* quantize = std::getenv("MIXPREC_LLAMA_QUANTIZE");
    if (quantize && *quantize) FAIL("llama.cpp's source is built but " << dir.string() << " lacks " << needed.string());
    return {};
  }
  return dir;
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace mixprec::test
