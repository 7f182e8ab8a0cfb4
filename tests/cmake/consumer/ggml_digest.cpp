// Prints a digest of mixprec's ggml bytes (and of their decoding) for every type, with and without
// importance. Built twice by the consumer project, with a user's flags (-march=native, GCC's
// -ffp-contract=fast) and with strict ones; run_consumer.cmake requires the two outputs to be equal,
// i.e. the bytes do not depend on the user's compiler flags (detail/strict_fp.hpp).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <mixprec/formats/ggml.hpp>

namespace {

struct fnv {
  std::uint64_t h = 1469598103934665603ull;
  void add(const void* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
  }
};

}  // namespace

int main() {
  // Inputs from integer arithmetic only: a float RNG would itself differ between the two builds.
  std::uint64_t state = 7;
  auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  };
  mixprec::row_matrix w(64, 512);
  for (mixprec::index_t i = 0; i < w.size(); ++i) {
    const auto v = static_cast<float>(static_cast<std::int64_t>(next() % (1u << 20)) - (1 << 19));
    w.data()[i] = std::ldexp(v, (i / 512) % 3 == 0 ? -17 : -24);  // a third of the rows 128x larger
  }
  std::vector<float> importance(512);
  for (auto& v : importance) v = std::ldexp(static_cast<float>(1 + next() % 4096), -6);
  fnv all;
  for (auto t : mixprec::all_ggml_types)
    for (int weighted = 0; weighted < 2; ++weighted) {
      std::optional<std::span<const float>> imp;
      if (weighted) imp = std::span<const float>(importance);
      const auto bytes = mixprec::ggml::quantize(t, w, imp);
      const mixprec::row_matrix back = mixprec::ggml::dequantize(t, bytes, w.rows(), w.cols());
      fnv h;
      h.add(bytes.data(), bytes.size());
      h.add(back.data(), static_cast<std::size_t>(back.size()) * sizeof(float));
      std::printf("%s%s %016llx\n", std::string(mixprec::to_string(t)).c_str(), weighted ? "+imatrix" : "",
                  static_cast<unsigned long long>(h.h));
      all.add(&h.h, sizeof h.h);
    }
  std::printf("all %016llx\n", static_cast<unsigned long long>(all.h));
  return 0;
}
