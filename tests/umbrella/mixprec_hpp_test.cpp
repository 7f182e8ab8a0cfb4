// mixprec.hpp's banner, checked: the one include gives every part of the library, pulls in no optional
// dependency, and (reading the headers themselves) every header under include/mixprec/ is either
// reached from it or listed in its banner as optional with a dependency it really has.
#include <mixprec/mixprec.hpp>

#if defined(NLOHMANN_JSON_VERSION_MAJOR) || defined(ZLIB_VERSION)
#error "mixprec.hpp must not include nlohmann/json or zlib (its banner lists the optional headers)"
#endif

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace {

namespace fs = std::filesystem;

// include/ of this source tree (MIXPREC_TEST_DATA_DIR is tests/data, which need not exist).
fs::path include_root() { return (fs::path(MIXPREC_TEST_DATA_DIR) / ".." / ".." / "include").lexically_normal(); }

std::vector<std::string> read_lines(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

struct includes {
  std::vector<std::string> quoted;  // "mixprec/..." (headers and kernels/simd/*.inl)
  std::vector<std::string> angled;  // <...>
};

// The #include lines of a file, whatever #if they sit under (a dependency that some build uses counts).
includes includes_of(const fs::path& p) {
  includes out;
  for (const std::string& line : read_lines(p)) {
    const auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line.compare(first, 8, "#include") != 0) continue;
    const auto open = line.find_first_of("\"<", first + 8);
    if (open == std::string::npos) continue;
    const auto close = line.find(line[open] == '"' ? '"' : '>', open + 1);
    if (close == std::string::npos) continue;
    (line[open] == '"' ? out.quoted : out.angled).push_back(line.substr(open + 1, close - open - 1));
  }
  return out;
}

// Every mixprec file reached from `start` (itself included), and every <...> include among them.
void closure(const std::string& start, std::set<std::string>& files, std::set<std::string>& system) {
  if (!files.insert(start).second) return;
  const includes inc = includes_of(include_root() / start);
  system.insert(inc.angled.begin(), inc.angled.end());
  for (const std::string& q : inc.quoted)
    if (q.rfind("mixprec/", 0) == 0) closure(q, files, system);
}

// What the banner allows the umbrella to need: the standard library (<name>, no extension or folder),
// POSIX, the compiler's x86 headers, Eigen and xsimd.
bool allowed_system(const std::string& h) {
  if (h.find('.') == std::string::npos && h.find('/') == std::string::npos) return true;
  static const std::set<std::string> posix_and_compiler = {"fcntl.h", "signal.h", "unistd.h", "sys/mman.h", "sys/stat.h",
                                                           "sys/types.h", "cpuid.h", "immintrin.h"};
  return posix_and_compiler.count(h) || h.rfind("Eigen/", 0) == 0 || h.rfind("xsimd/", 0) == 0;
}

}  // namespace

TEST_CASE("mixprec.hpp alone gives every part of the library", "[umbrella]") {
  using namespace mixprec;
  // Vocabulary, formats, quantize, kernels and their references.
  STATIC_REQUIRE(version_major >= 0);
  row_matrix w(8, 256);
  for (index_t i = 0; i < w.size(); ++i) w.data()[i] = static_cast<float>((i * 37) % 101 - 50) / 64.0f;
  const quant_spec spec = parse_spec("int4/g32");
  const quantized_tensor q = quantize(w, spec);            // the SIMD kernels of active_isa()
  const quantized_tensor r = quantize_reference(w, spec);  // kernels/ref/'s scalar truth
  REQUIRE(q.bytes() == r.bytes());
  REQUIRE(std::memcmp(q.codes().data(), r.codes().data(), q.codes().size()) == 0);
  REQUIRE(std::memcmp(q.scale_bytes().data(), r.scale_bytes().data(), q.scale_bytes().size()) == 0);
  REQUIRE((dequantize(q) - w).cwiseAbs().maxCoeff() < 0.1f);
  REQUIRE(kernel_dispatch{}.level() == active_isa());
  STATIC_REQUIRE(std::is_class_v<quantized_linear> && std::is_class_v<reference_kernels> && std::is_class_v<q8_layout> &&
                 std::is_class_v<gemv_options>);
  REQUIRE(fp16_to_fp32(fp32_to_fp16(1.5f)) == 1.5f);
  REQUIRE_THROWS_AS(parse_spec("int5"), error);

  // Every ggml piece: the types, the per-block references, rows, matrices.
  REQUIRE(ggml::find_type(12)->name == "q4_K");
  REQUIRE(parse_ggml_type("Q4_K") == ggml_type::q4_k);
  const auto bytes = ggml::quantize(ggml_type::q4_k, w);
  const std::size_t rb = ggml::row_bytes(ggml_type::q4_k, 256);
  REQUIRE(bytes.size() == 8 * rb);
  std::vector<float> row(256);
  ggml::dequantize_row(ggml_type::q4_k, std::span<const std::byte>(bytes).first(rb), row);
  ggml::block_q4_k blk{};
  ggml::ref::quantize_q4_k(w.data(), blk);
  REQUIRE(std::memcmp(&blk, bytes.data(), sizeof blk) == 0);
  REQUIRE(ggml::dequantize(ggml_type::q4_k, bytes, 8, 256).row(0).transpose().isApprox(
      Eigen::Map<const Eigen::VectorXf>(row.data(), 256)));

  // Sensitivity, plan, QAT, io, models: one name each (types: nothing to run without data).
  STATIC_REQUIRE(std::is_class_v<layer> && std::is_class_v<model>);
  STATIC_REQUIRE(std::is_class_v<probe_report> && std::is_class_v<weight_score> && std::is_class_v<hessian_options>);
  STATIC_REQUIRE(std::is_class_v<knapsack_policy> && std::is_class_v<byte_budget>);
  STATIC_REQUIRE(std::is_class_v<fake_quant>);
  STATIC_REQUIRE(std::is_class_v<gguf::file> && std::is_class_v<imatrix::file> && std::is_class_v<llama2c::checkpoint> &&
                 std::is_class_v<mapped_file> && std::is_class_v<output_file>);
  STATIC_REQUIRE(std::is_class_v<models::llama_model> && std::is_class_v<models::spm_tokenizer> &&
                 std::is_class_v<models::sampling_options>);
}

TEST_CASE("mixprec.hpp's banner is true: every header is in it or listed as optional for a reason it has", "[umbrella]") {
  const fs::path root = include_root();
  REQUIRE(fs::exists(root / "mixprec" / "mixprec.hpp"));

  // The banner's optional headers: lines "//   mixprec/<path>.hpp   needs <dependency> (...)".
  std::map<std::string, std::string> optional;
  for (const std::string& line : read_lines(root / "mixprec" / "mixprec.hpp")) {
    if (line.rfind("//", 0) != 0) break;  // the banner is the leading comment
    const auto p = line.find("mixprec/");
    const auto needs = line.find(" needs ");
    if (p == std::string::npos || needs == std::string::npos || line.find_first_not_of("/ ") != p) continue;
    const std::string header = line.substr(p, line.find(' ', p) - p);
    const auto dep = needs + 7;
    optional[header] = line.substr(dep, line.find(' ', dep) - dep);
  }
  REQUIRE(!optional.empty());

  std::set<std::string> reached, system;
  closure("mixprec/mixprec.hpp", reached, system);
  std::vector<std::string> problems;
  for (const std::string& h : system)
    if (!allowed_system(h)) problems.push_back("mixprec.hpp reaches <" + h + ">, beyond std, POSIX, Eigen and xsimd");

  for (const auto& entry : fs::recursive_directory_iterator(root / "mixprec")) {
    if (!entry.is_regular_file() || entry.path().extension() != ".hpp") continue;
    const std::string h = fs::relative(entry.path(), root).generic_string();
    const bool in = reached.count(h) != 0, listed = optional.count(h) != 0;
    if (!in && !listed) problems.push_back(h + ": neither reached from mixprec.hpp nor listed in its banner as optional");
    if (in && listed) problems.push_back(h + ": listed as optional but mixprec.hpp reaches it");
  }
  for (const auto& [h, dep] : optional) {
    if (!fs::exists(root / h)) {
      problems.push_back(h + ": listed as optional but does not exist");
      continue;
    }
    std::set<std::string> files, sys;
    closure(h, files, sys);
    static const std::map<std::string, std::string> header_of = {{"nlohmann/json", "nlohmann/json.hpp"}, {"zlib", "zlib.h"}};
    const auto want = header_of.find(dep);
    if (want == header_of.end()) problems.push_back(h + ": listed as needing '" + dep + "', which this test does not know");
    else if (!sys.count(want->second)) problems.push_back(h + ": listed as needing " + dep + " but never includes <" + want->second + ">");
  }
  std::string all;
  for (const std::string& p : problems) all += p + "\n";
  INFO(all);
  REQUIRE(problems.empty());
}
