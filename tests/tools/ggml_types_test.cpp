// Fault kind "known formats refused as unknown or damaged": a GGUF holding a type mixprec does not
// decode (MXFP4, as gpt-oss GGUFs keep their experts) is read and listed, planned around and carried
// byte for byte, as llama-quantize keeps MXFP4; only a request that needs its values is refused (exit 5,
// naming the tensor and the type); a code ggml has removed is refused by name. Through the `mixprec`
// command line in-process (mixprec_cli::run), with stdout and stderr captured.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include "mixprec/formats/ggml.hpp"
#include "mixprec/io/gguf.hpp"
#include "mixprec/plan/plan.hpp"
#include "mixprec/plan/plan_json.hpp"
#include "mixprec/quantize/ggml.hpp"
#include "mixprec/quantize/spec.hpp"
#include "tools/mixprec/cli.hpp"
#include "support/files.hpp"
#include "support/tool_run.hpp"

namespace {

namespace fs = std::filesystem;
namespace gguf = mixprec::gguf;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("mixprec_ggml_types_" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// `mixprec args...` with stdout and stderr captured in dir (tests/support/tool_run.hpp).
using outcome = mixprec::test::tool_outcome;
outcome run(const fs::path& dir, std::vector<std::string> args) {
  return mixprec::test::tool_captured(dir, std::move(args));
}

// F16 matrices of N(0, 0.02^2) values (seeded by name), and raw-byte tensors of any type.
class gguf_builder {
 public:
  gguf_builder& f16(const std::string& name, std::vector<std::uint64_t> dims) {
    std::size_t n = 1;
    for (auto d : dims) n *= static_cast<std::size_t>(d);
    std::mt19937_64 gen(std::hash<std::string>{}(name));
    std::normal_distribution<float> nd(0.0f, 0.02f);
    mixprec::row_matrix w(1, static_cast<mixprec::index_t>(n));
    for (std::size_t i = 0; i < n; ++i) w(0, static_cast<mixprec::index_t>(i)) = nd(gen);
    return raw(name, 1, std::move(dims), mixprec::ggml::quantize(mixprec::ggml_type::f16, w));
  }
  gguf_builder& f32(const std::string& name, std::vector<std::uint64_t> dims) {
    std::size_t n = 1;
    for (auto d : dims) n *= static_cast<std::size_t>(d);
    std::vector<std::byte> b(4 * n);
    for (std::size_t i = 0; i < n; ++i) {
      const float v = 1.0f + 0.001f * static_cast<float>(i);
      std::memcpy(b.data() + 4 * i, &v, 4);
    }
    return raw(name, 0, std::move(dims), std::move(b));
  }
  gguf_builder& raw(const std::string& name, std::uint32_t type, std::vector<std::uint64_t> dims, std::vector<std::byte> bytes) {
    names_.push_back(name);
    types_.push_back(type);
    dims_.push_back(std::move(dims));
    data_.push_back(std::move(bytes));
    return *this;
  }
  std::string write(const fs::path& path) const {
    std::vector<gguf::tensor_source> ts;
    for (std::size_t k = 0; k < names_.size(); ++k) ts.push_back({names_[k], types_[k], dims_[k], data_[k], {}});
    gguf::metadata kvs;
    kvs.set("general.architecture", gguf::value(std::string("gpt-oss")));
    gguf::write(path.string(), kvs, ts);
    return path.string();
  }

 private:
  std::vector<std::string> names_;
  std::vector<std::uint32_t> types_;
  std::vector<std::vector<std::uint64_t>> dims_;
  std::vector<std::vector<std::byte>> data_;
};

// MXFP4 experts as gpt-oss stores them: ne0 = 64 (two blocks of 32 per row), 32 rows, 4 experts;
// 17 bytes per block (an E8M0 exponent and 16 bytes of E2M1 pairs), patterned.
constexpr std::uint32_t mxfp4 = 39;
std::vector<std::byte> mxfp4_bytes() {
  std::vector<std::byte> b(2 * 32 * 4 * 17);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::byte>((i * 73 + 5) & 0xFF);
  return b;
}

// The plan's type of each tensor it names.
std::map<std::string, std::string> plan_types(const fs::path& p) {
  std::map<std::string, std::string> out;
  const nlohmann::json j = nlohmann::json::parse(mixprec::test::read_bytes(p));
  for (const auto& t : j.at("layers")) out[t.at("layer").get<std::string>()] = t.at("spec").get<std::string>();
  return out;
}

}  // namespace

TEST_CASE("ggml types: a GGUF with MXFP4 experts is listed, planned around and carried byte for byte", "[cli][cases][ggml_types]") {
  const fs::path dir = fresh_dir("mxfp4");
  const std::vector<std::byte> experts = mxfp4_bytes();
  const std::string model = gguf_builder{}
                                .f16("token_embd.weight", {64, 32})
                                .f32("blk.0.attn_norm.weight", {64})
                                .f16("blk.0.attn_q.weight", {64, 64})
                                .f16("blk.0.attn_output.weight", {64, 64})
                                .raw("blk.0.ffn_up_exps.weight", mxfp4, {64, 32, 4}, experts)
                                .write(dir / "gptoss.gguf");

  // inspect: every tensor, the MXFP4 one with its type's name and size.
  const outcome inspect = run(dir, {"inspect", model});
  INFO(inspect.err);
  REQUIRE(inspect.code == 0);
  CHECK_THAT(inspect.out, Catch::Contains("| blk.0.ffn_up_exps.weight | 64x32x4 | mxfp4 | 4352 | expert matrices; mixprec does not decode mxfp4"));
  CHECK_THAT(inspect.out, Catch::Contains("| blk.0.attn_q.weight | 64x64 | f16 | 8192 |"));
  CHECK_THAT(inspect.out, Catch::Contains("5 tensors"));

  // plan: the F16 matrices only; the MXFP4 experts stated as kept.
  const fs::path p = dir / "p.json";
  const outcome plan = run(dir, {"plan", model, "--types", "q4_0,q8_0", "--budget", "6", "-o", p.string()});
  INFO(plan.err);
  REQUIRE(plan.code == 0);
  const auto types = plan_types(p);
  CHECK(types.size() == 3);
  CHECK(types.count("token_embd.weight") == 1);
  CHECK(types.count("blk.0.attn_q.weight") == 1);
  CHECK(types.count("blk.0.attn_output.weight") == 1);
  CHECK(types.count("blk.0.ffn_up_exps.weight") == 0);
  CHECK_THAT(plan.out, Catch::Contains("1 weight tensor kept as stored"));
  CHECK_THAT(plan.out, Catch::Contains("| blk.0.ffn_up_exps.weight | mxfp4, which mixprec does not decode | 4352 |"));

  // quantize: the planned tensors re-encoded, the MXFP4 bytes as they were.
  const fs::path out = dir / "out.gguf";
  const outcome q = run(dir, {"quantize", model, "--plan", p.string(), "-o", out.string()});
  INFO(q.err);
  REQUIRE(q.code == 0);
  const auto src = gguf::file::open(model);
  const auto dst = gguf::file::open(out.string());
  REQUIRE(dst.tensors().size() == src.tensors().size());
  const gguf::tensor_info& e = dst.at("blk.0.ffn_up_exps.weight");
  CHECK(e.type == mxfp4);
  CHECK(e.dims == std::vector<std::uint64_t>{64, 32, 4});
  CHECK(std::equal(e.bytes.begin(), e.bytes.end(), experts.begin(), experts.end()));
  for (const auto& [name, type] : types) CHECK(std::string(mixprec::to_string(static_cast<mixprec::ggml_type>(dst.at(name).type))) == type);
  CHECK(dst.at("blk.0.attn_norm.weight").type == 0);
  // And the output reads again, for inspect as for any GGUF.
  CHECK(run(dir, {"inspect", out.string()}).code == 0);
}

TEST_CASE("ggml types: a request that needs MXFP4 values is refused with exit 5, naming the tensor and the type", "[cli][cases][ggml_types]") {
  const fs::path dir = fresh_dir("refused");
  const std::string model = gguf_builder{}
                                .f16("blk.0.attn_q.weight", {64, 64})
                                .raw("blk.0.ffn_up_exps.weight", mxfp4, {64, 32, 4}, mxfp4_bytes())
                                .write(dir / "gptoss.gguf");
  // A hand plan that gives the MXFP4 tensor a type.
  mixprec::plan hand;
  hand.policy = "hand";
  hand.unit = "bytes";
  const mixprec::quant_spec q8 = mixprec::parse_spec("q8_0");
  hand.entries.push_back({"blk.0.ffn_up_exps.weight", q8, 128, 64, mixprec::quantized_bytes(q8, 128, 64), 0.0, 0.0, ""});
  const fs::path hand_path = dir / "hand.json";
  std::ofstream(hand_path) << nlohmann::json(hand).dump();
  const fs::path out = dir / "out.gguf";
  const outcome q = run(dir, {"quantize", model, "--plan", hand_path.string(), "-o", out.string()});
  CHECK(q.code == 5);
  CHECK_THAT(q.err, Catch::Contains("'blk.0.ffn_up_exps.weight'") && Catch::Contains("mxfp4, which mixprec does not decode"));
  CHECK_FALSE(fs::exists(out));

  // An override that names only the MXFP4 tensor: a warning that says why, the rest is planned.
  const fs::path p = dir / "p.json";
  const outcome o = run(dir, {"plan", model, "--types", "q4_0,q8_0", "--budget", "6", "--tensor-type", "ffn_up_exps=q8_0", "-o", p.string()});
  CHECK(o.code == 0);
  CHECK_THAT(o.err, Catch::Contains("'blk.0.ffn_up_exps.weight' is mxfp4, which mixprec does not decode"));

  // A file whose only weight matrix is MXFP4: nothing mixprec can plan, for a reason it states.
  const std::string only = gguf_builder{}
                               .f32("blk.0.attn_norm.weight", {64})
                               .raw("blk.0.ffn_up_exps.weight", mxfp4, {64, 32, 4}, mxfp4_bytes())
                               .write(dir / "only.gguf");
  for (const std::vector<std::string>& args : {std::vector<std::string>{"plan", only, "-o", p.string()}, std::vector<std::string>{"analyze", only}}) {
    INFO(args[0]);
    const outcome r = run(dir, args);
    CHECK(r.code == 5);
    CHECK_THAT(r.err, Catch::Contains("'blk.0.ffn_up_exps.weight' is mxfp4, which mixprec does not decode"));
  }
  CHECK(run(dir, {"inspect", only}).code == 0);
}

TEST_CASE("ggml types: a type code ggml has removed is refused by name, not as unknown or damaged", "[cli][cases][ggml_types]") {
  const fs::path dir = fresh_dir("removed");
  // Written as MXFP4 (the writer refuses removed codes), then the type code patched to 31, Q4_0_4_4 (the
  // same 32-wide blocks once; ggml now gives it block size 0 and its reader refuses it).
  const std::string path = gguf_builder{}.raw("blk.0.attn_q.weight", mxfp4, {64, 2}, std::vector<std::byte>(4 * 17)).write(dir / "old.gguf");
  std::vector<char> bytes = mixprec::test::read_bytes(path);
  const std::string name = "blk.0.attn_q.weight";
  const auto at = std::search(bytes.begin(), bytes.end(), name.begin(), name.end());
  REQUIRE(at != bytes.end());
  const auto type_at = static_cast<std::size_t>(at - bytes.begin()) + name.size() + 4 + 2 * 8;  // after n_dims and two dims
  std::uint32_t code = 0;
  std::memcpy(&code, bytes.data() + type_at, 4);
  REQUIRE(code == mxfp4);
  code = 31;
  std::memcpy(bytes.data() + type_at, &code, 4);
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  const outcome r = run(dir, {"inspect", path});
  CHECK(r.code == 5);
  CHECK_THAT(r.err, Catch::Contains("'blk.0.attn_q.weight'") && Catch::Contains("q4_0_4_4") && Catch::Contains("removed"));
}
