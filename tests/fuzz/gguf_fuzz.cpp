// libFuzzer target: the GGUF parser never crashes or reads out of bounds; bad input is mixprec::error.
// A file that parses is written back and re-parsed: the KVs and tensors must survive unchanged.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <sstream>

#include "mixprec/io/gguf.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace gguf = mixprec::gguf;
  try {
    const auto g = gguf::file::parse(mixprec::mapped_file::borrow({reinterpret_cast<const std::byte*>(data), size}, "fuzz"));
    std::uint64_t total = 0;
    for (const auto& t : g.tensors()) {
      if (t.bytes.size() != t.size) __builtin_trap();
      total += t.size;
      if ((t.type == 0 || t.type == 1 || t.type == 30) && t.count() <= (1u << 20)) {
        const auto m = g.to_float(t.name);
        if (static_cast<std::uint64_t>(m.size()) != t.count()) __builtin_trap();
      }
    }
    if (total > size) __builtin_trap();
    // Round trip. The writer is stricter than the reader (tensor names of 64+ bytes), so its refusal
    // is fine; anything it writes must read back equal.
    std::ostringstream out;
    bool written = true;
    try {
      gguf::rewrite(g, g.kvs(), out);
    } catch (const mixprec::error&) {
      written = false;
    }
    if (written) {
      const std::string s = out.str();
      const auto h = gguf::file::parse(mixprec::mapped_file::borrow({reinterpret_cast<const std::byte*>(s.data()), s.size()}, "rt"));
      if (!(h.kvs() == g.kvs()) && g.kvs().size() == h.kvs().size()) {
        // NaN floats compare unequal; compare keys and types instead.
        for (std::size_t i = 0; i < g.kvs().size(); ++i)
          if (g.kvs().items()[i].key != h.kvs().items()[i].key ||
              g.kvs().items()[i].val.type() != h.kvs().items()[i].val.type())
            __builtin_trap();
      } else if (!(h.kvs() == g.kvs())) {
        __builtin_trap();
      }
      if (h.tensors().size() != g.tensors().size()) __builtin_trap();
      for (std::size_t i = 0; i < g.tensors().size(); ++i) {
        const auto& a = g.tensors()[i];
        const auto& b = h.tensors()[i];
        if (a.name != b.name || a.type != b.type || a.dims != b.dims || a.size != b.size) __builtin_trap();
        if (!std::equal(a.bytes.begin(), a.bytes.end(), b.bytes.begin(), b.bytes.end())) __builtin_trap();
      }
    }
  } catch (const mixprec::error&) {
  }
  return 0;
}
