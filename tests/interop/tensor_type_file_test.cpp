// `mixprec plan --pareto` for llama.cpp users: every plan on the frontier, given to llama.cpp's own
// llama-quantize as a tensor-type file (`--pure --tensor-type-file FILE --imatrix IMATRIX MODEL OUT Q8_0`)
// with the imatrix `mixprec measure` wrote, gives the bytes `mixprec quantize --plan` writes: every
// tensor the same name, type, shape and bytes. llama-quantize is built from the llama.cpp source that
// node-llama-cpp@3.22.1 ships against its prebuilt libraries (tests/interop/llama_quantize.sh, run by
// run.sh, which passes its path in MIXPREC_LLAMA_QUANTIZE).
//
// The models are the synthetic llama of tests/support/tiny_llama.hpp, written by the test: one whose
// rows fit ggml's 32-blocks and, in ffn_down, the 256-blocks of the K-quants and IQ4_XS; one whose
// ffn_down rows (172) fit no block, so that a plan keeps them in float.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "mixprec/io/gguf.hpp"
#include "support/tool_run.hpp"

namespace {

namespace fs = std::filesystem;
namespace gguf = mixprec::gguf;
using mixprec::test::shell;

std::string quoted(const fs::path& p) { return "'" + p.string() + "'"; }

}  // namespace

TEST_CASE("interop: every plan of plan --pareto, as a tensor-type file for llama-quantize, gives the bytes mixprec quantize writes",
          "[interop][llama][tensor_type_file]") {
  const char* quantize_bin = std::getenv("MIXPREC_LLAMA_QUANTIZE");
  if (!quantize_bin) FAIL("MIXPREC_LLAMA_QUANTIZE is not set: run this binary through tests/interop/run.sh");
  if (!*quantize_bin) {  // run.sh could not build it (no git or g++, or the registry is not reachable): it said why
    WARN("SKIPPED: llama.cpp's llama-quantize could not be built here");
    return;
  }
  struct model_case {
    const char* name;
    mixprec::test::tiny_llama_options options;
  };
  mixprec::test::tiny_llama_options blocks_fit, rows_172;
  blocks_fit.hidden_dim = 256;
  rows_172.hidden_dim = 172;
  for (const model_case& mc : {model_case{"rows of 64 and 256", blocks_fit}, model_case{"rows of 64 and 172", rows_172}}) {
    INFO(mc.name);
    const fs::path dir = mixprec::test::dir_with_model("mixprec_tensor_type_file", mc.options);
    const fs::path model = dir / "a.gguf", measure = dir / "measure.json", imatrix = dir / "imatrix.gguf", frontier = dir / "frontier";
    REQUIRE(mixprec::test::tool({"measure", model.string(), "--types", "q4_0,q5_1,q8_0,iq4_nl,q4_K,q6_K,iq4_xs,f16", "--sample", "2:16",
                                 "--imatrix-out", imatrix.string(), "-o", measure.string()}) == 0);
    REQUIRE(mixprec::test::tool({"plan", model.string(), "--measured", measure.string(), "--imatrix", imatrix.string(), "--pareto",
                                 frontier.string(), "--points", "12"}) == 0);
    const nlohmann::json points = mixprec::test::read_json(frontier / "frontier.json").at("points");
    REQUIRE(points.size() >= 3);
    std::set<std::string> types_seen;
    for (const auto& point : points) {
      const std::string stem = point.at("plan").get<std::string>().substr(0, 7);  // plan-NN
      INFO(stem);
      const fs::path ours = dir / (stem + "-mixprec.gguf"), theirs = dir / (stem + "-llama.gguf");
      REQUIRE(mixprec::test::tool({"quantize", model.string(), "--plan", (frontier / point.at("plan").get<std::string>()).string(), "--imatrix",
                                   imatrix.string(), "-o", ours.string()}) == 0);
      std::string log;
      const int rc = shell("'" + std::string(quantize_bin) + "' --pure --imatrix " + quoted(imatrix) + " --tensor-type-file " +
                               quoted(frontier / point.at("tensor_type_file").get<std::string>()) + " " + quoted(model) + " " + quoted(theirs) +
                               " Q8_0 2",
                           log);
      INFO(log);
      REQUIRE(rc == 0);
      const auto a = gguf::file::open(ours.string()), b = gguf::file::open(theirs.string());
      REQUIRE(a.tensors().size() == b.tensors().size());
      for (const auto& t : b.tensors()) {
        INFO(t.name);
        const auto* o = a.find(t.name);
        REQUIRE(o != nullptr);
        CHECK(o->type == t.type);
        CHECK(o->dims == t.dims);
        CHECK((o->bytes.size() == t.bytes.size() && std::memcmp(o->bytes.data(), t.bytes.data(), t.bytes.size()) == 0));
        types_seen.insert(std::string(gguf::type_traits_of(t.type)->name));
      }
      // The file's size is the frontier's: every weight tensor as the plan counts it.
      std::uint64_t weight_bytes = 0;
      for (const auto& t : b.tensors())
        if (t.dims.size() >= 2) weight_bytes += t.bytes.size();
      CHECK(weight_bytes == point.at("bytes").get<std::uint64_t>());
    }
    // The frontier runs from small types to large ones: both ends are in llama-quantize's output.
    CHECK(types_seen.count("q4_0") + types_seen.count("iq4_nl") + types_seen.count("iq4_xs") > 0);
    CHECK(types_seen.count("f16") + types_seen.count("q8_0") > 0);
    fs::remove_all(dir);
  }
}
