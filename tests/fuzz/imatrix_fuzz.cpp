// libFuzzer target: the llama.cpp importance-matrix reader (legacy .dat and GGUF, told apart by the
// magic) never crashes; what it accepts serialises back, in its own format, to the same entries, and
// converts to the other format with the same importance.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "mixprec/io/imatrix.hpp"

namespace im = mixprec::imatrix;

static bool equal(const Eigen::VectorXf& a, const Eigen::VectorXf& b) { return a.size() == b.size() && a == b; }

// Same names, values, counts and importance (bit for bit).
static bool same(const im::file& a, const im::file& b, bool same_storage) {
  if (a.entries.size() != b.entries.size()) return false;
  for (const auto& [name, e] : a.entries) {
    const auto it = b.entries.find(name);
    if (it == b.entries.end()) return false;
    if (same_storage && (!equal(it->second.values, e.values) || it->second.counts != e.counts)) return false;
    if (!equal(it->second.importance(), e.importance())) return false;
  }
  return true;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  im::file f;
  try {
    f = im::parse(bytes, "fuzz");
  } catch (const mixprec::error&) {
    return 0;
  }
  const bool gguf = im::detect(bytes) == im::format::gguf;
  // A legacy name of more than 55 bytes has no GGUF tensor name ("<name>.in_sum2" <= 63 bytes).
  bool fits_gguf = true;
  for (const auto& [name, e] : f.entries) fits_gguf = fits_gguf && name.size() + 8 <= 63;
  const auto own = gguf ? im::serialize_gguf(f) : im::serialize(f);
  if (!same(f, im::parse(own, "round trip"), true)) std::abort();
  if (gguf || fits_gguf) {
    const auto other = gguf ? im::serialize(f) : im::serialize_gguf(f);
    if (!same(f, im::parse(other, "converted"), false)) std::abort();
  }
  return 0;
}
