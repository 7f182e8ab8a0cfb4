// The tool sees the whole file and checks which model a file belongs to (issue "real users' files, round
// two"): general.file_type and the budget count every weight tensor, the ones kept as stored included
// (case 27, ollama#7816); a plan or measure file of another model is refused by name before any work,
// with --force where a user means it (case 36, exllamav2#89); one split of a model is not planned as the
// whole (case 30); an output the system cannot write is its own exit code, naming the file and the
// reason; a calibration text too short for the request names --ctx. Every model is built here.
#include <catch2/catch.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mixprec/io/gguf.hpp"
#include "mixprec/io/imatrix.hpp"
#include "mixprec/io/safetensors.hpp"
#include "support/files.hpp"
#include "support/tool_run.hpp"

namespace {

namespace fs = std::filesystem;
namespace gguf = mixprec::gguf;

using mixprec::test::read_bytes;
using mixprec::test::read_json;
using mixprec::test::tool;
using mixprec::test::tool_captured;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("mixprec_whole_file_" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// A llama-shaped GGUF as `llama-quantize --leave-output-tensor` leaves one: four Q4_0 block matrices of
// 64 x 256 (zero scales: valid bytes the tool only copies), output.weight F16 of `output_rows` x 256 with
// seeded values, a norm in F32; general.file_type 2 (MOSTLY_Q4_0). extra_kvs are added to the metadata.
std::string mostly_q4_0(const fs::path& dir, std::uint64_t output_rows, const gguf::metadata& extra_kvs = {}, bool output_f32 = false,
                        const std::string& name = "mostly_q4_0.gguf") {
  static std::vector<std::vector<std::byte>> storage;
  storage.clear();
  std::vector<gguf::tensor_source> tensors;
  auto add = [&](std::string name, std::uint32_t type, std::vector<std::uint64_t> dims, std::vector<std::byte> bytes) {
    storage.push_back(std::move(bytes));
    gguf::tensor_source t;
    t.name = std::move(name);
    t.type = type;
    t.dims = std::move(dims);
    t.bytes = storage.back();
    tensors.push_back(std::move(t));
  };
  for (const char* n : {"token_embd.weight", "blk.0.attn_q.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight"})
    add(n, 2, {256, 64}, std::vector<std::byte>(64 * (256 / 32) * 18));
  std::vector<std::uint16_t> out(output_rows * 256);
  std::vector<float> out32(out.size());
  for (std::size_t i = 0; i < out.size(); ++i) {  // FP16 values in [-0.03, 0.03), or the same values in F32
    out[i] = mixprec::fp32_to_fp16(0.03f * (static_cast<float>((i * 2654435761u) % 2001) / 1000.0f - 1.0f));
    out32[i] = mixprec::fp16_to_fp32(out[i]);
  }
  const auto ob = output_f32 ? std::as_bytes(std::span(out32)) : std::as_bytes(std::span(out));
  add("output.weight", output_f32 ? 0 : 1, {256, output_rows}, std::vector<std::byte>(ob.begin(), ob.end()));
  std::vector<float> norm(256, 1.0f);
  const auto nb = std::as_bytes(std::span(norm));
  add("output_norm.weight", 0, {256}, std::vector<std::byte>(nb.begin(), nb.end()));
  gguf::metadata kvs{{"general.architecture", gguf::value("llama")}, {"general.file_type", gguf::value(std::uint32_t{2})}};
  for (const auto& kv : extra_kvs) kvs.set(kv.key, kv.val);
  const std::string path = (dir / name).string();
  gguf::write(path, kvs, tensors);
  return path;
}

std::uint32_t file_type_of(const std::string& path) { return gguf::file::open(path).kvs().get_u32("general.file_type"); }

}  // namespace

TEST_CASE("general.file_type is the type of most weights over every tensor, kept ones included", "[cli][whole-file]") {
  const fs::path dir = fresh_dir("file_type");
  // 65,536 weights stay Q4_0 and 8,192 (output.weight) are planned: the file is still MOSTLY_Q4_0 (2)
  // whatever the plan gives output.weight, as llama.cpp describes it.
  const std::string small = mostly_q4_0(dir, 32);
  REQUIRE(tool({"plan", small, "--types", "q8_0", "--budget", "8.5", "-o", (dir / "p.json").string()}) == 0);
  REQUIRE(tool({"quantize", small, "--plan", (dir / "p.json").string(), "-o", (dir / "out.gguf").string()}) == 0);
  CHECK(gguf::file::open((dir / "out.gguf").string()).at("output.weight").type == 8);
  CHECK(file_type_of((dir / "out.gguf").string()) == 2);
  // With 131,072 planned weights the planned type holds most of them: MOSTLY_Q8_0 (7).
  const fs::path big_dir = fresh_dir("file_type_big");
  const std::string big = mostly_q4_0(big_dir, 512);
  REQUIRE(tool({"plan", big, "--types", "q8_0", "--budget", "8.5", "-o", (big_dir / "p.json").string()}) == 0);
  REQUIRE(tool({"quantize", big, "--plan", (big_dir / "p.json").string(), "-o", (big_dir / "out.gguf").string()}) == 0);
  CHECK(file_type_of((big_dir / "out.gguf").string()) == 7);
}

TEST_CASE("a bits-per-weight budget covers the weight tensors kept as stored, and the plan says so", "[cli][whole-file]") {
  const fs::path dir = fresh_dir("budget");
  const std::string model = mostly_q4_0(dir, 32);
  const double kept_bytes = 4.0 * 64 * 8 * 18, weights = 4.0 * 64 * 256 + 32 * 256;
  const auto r = tool_captured(dir, {"plan", model, "--types", "q4_0,q8_0", "--budget", "6", "-o", (dir / "p.json").string()});
  REQUIRE(r.code == 0);
  CHECK(r.out.find("4 weight tensors kept as stored") != std::string::npos);
  CHECK(r.out.find("whole model:") != std::string::npos);
  const auto j = read_json(dir / "p.json");
  CHECK(j.at("kept").at("tensors").size() == 4);
  CHECK(j.at("kept").at("bytes").get<double>() == kept_bytes);
  CHECK(j.at("whole_model").at("budget_bytes").get<double>() == Approx(6.0 * weights / 8.0));
  CHECK(j.at("whole_model").at("bytes").get<double>() <= j.at("whole_model").at("budget_bytes").get<double>());
  // The planner got what the kept tensors leave: 6 bits over all 73,728 weights minus their 36,864 bytes.
  CHECK(j.at("limit").get<double>() == Approx(6.0 * weights / 8.0 - kept_bytes));
  // 4.4 bits/weight over the whole model is less than the kept Q4_0 tensors and any plan of the rest
  // take (4.5 is exactly enough: output.weight in Q4_0 too).
  const auto out = tool_captured(dir, {"plan", model, "--types", "q4_0,q8_0", "--budget", "4.4", "-o", (dir / "p2.json").string()});
  CHECK(out.code == 4);
  CHECK(out.err.find("kept as stored take 36864") != std::string::npos);
}

TEST_CASE("a plan or measure file of another model is refused by name before any work; --force uses it", "[cli][whole-file]") {
  mixprec::test::tiny_llama_options wide, tuned;
  wide.dim = 128;
  tuned.seed = 2;  // the same shapes, other weights: a fine-tune
  const fs::path a = mixprec::test::dir_with_model("mixprec_other_a");
  const fs::path b = mixprec::test::dir_with_model("mixprec_other_b", wide);
  const fs::path c = mixprec::test::dir_with_model("mixprec_other_c", tuned);
  const std::string ma = (a / "a.gguf").string(), mb = (b / "a.gguf").string(), mc = (c / "a.gguf").string();
  const std::string plan = (a / "plan.json").string();
  REQUIRE(tool({"plan", ma, "--types", "q4_0,q8_0", "--budget", "8", "-o", plan}) == 0);
  CHECK(read_json(plan).at("model").at("tensors").size() == gguf::file::open(ma).tensors().size());

  SECTION("quantize") {
    auto other = tool_captured(b, {"quantize", mb, "--plan", plan, "-o", (b / "out.gguf").string()});
    CHECK(other.code == 2);
    CHECK(other.err.find("a model with other tensors") != std::string::npos);
    CHECK(other.err.find("'blk.0.attn_k.weight' is \"f32\" [128,64] here, \"f32\" [64,32] there") != std::string::npos);
    CHECK_FALSE(fs::exists(b / "out.gguf"));
    auto tune = tool_captured(c, {"quantize", mc, "--plan", plan, "-o", (c / "out.gguf").string()});
    CHECK(tune.code == 2);
    CHECK(tune.err.find("other weights") != std::string::npos);
    CHECK(tool({"quantize", mc, "--plan", plan, "-o", (c / "out.gguf").string(), "--force"}) == 0);
    CHECK(tool({"quantize", ma, "--plan", plan, "-o", (a / "out.gguf").string()}) == 0);
    // A hand-written plan (no model record) that leaves a matrix out: quantized, with a warning naming it.
    auto j = read_json(plan);
    j.erase("model");
    const std::string dropped = j.at("layers").back().at("layer").get<std::string>();
    j.at("layers").erase(j.at("layers").size() - 1);
    std::ofstream(a / "hand.json") << j.dump();
    auto hand = tool_captured(a, {"quantize", ma, "--plan", (a / "hand.json").string(), "-o", (a / "hand.gguf").string()});
    CHECK(hand.code == 0);
    CHECK(hand.err.find("leaves 1 weight matrix") != std::string::npos);
    CHECK(hand.err.find(dropped) != std::string::npos);
  }
  SECTION("plan --measured") {
    const std::string m = (a / "m.json").string();
    REQUIRE(tool({"measure", ma, "--types", "q4_0,q8_0", "--sample", "2:8", "-o", m}) == 0);
    auto other = tool_captured(b, {"plan", mb, "--measured", m, "--budget", "8", "-o", (b / "p.json").string()});
    CHECK(other.code == 2);
    CHECK(other.err.find("made for another model") != std::string::npos);
    CHECK_FALSE(fs::exists(b / "p.json"));
    auto tune = tool_captured(c, {"plan", mc, "--measured", m, "--budget", "8", "-o", (c / "p.json").string()});
    CHECK(tune.code == 2);
    CHECK(tune.err.find("other weights") != std::string::npos);
    CHECK(tool({"plan", mc, "--measured", m, "--budget", "8", "-o", (c / "p.json").string(), "--force"}) == 0);
    CHECK(tool({"plan", ma, "--measured", m, "--budget", "8", "-o", (a / "p.json").string()}) == 0);
  }
}

TEST_CASE("one split of a GGUF is listed as such and not planned as the model unless forced", "[cli][whole-file]") {
  const fs::path dir = fresh_dir("split");
  const std::string part = mostly_q4_0(dir, 32, {{"split.no", gguf::value(std::uint16_t{0})}, {"split.count", gguf::value(std::uint16_t{2})}});
  const auto listed = tool_captured(dir, {"inspect", part});
  CHECK(listed.code == 0);
  CHECK(listed.out.find("part 1 of 2 of a model") != std::string::npos);
  const auto planned = tool_captured(dir, {"plan", part, "--types", "q8_0", "--budget", "8.5", "-o", (dir / "p.json").string()});
  CHECK(planned.code == 2);
  CHECK(planned.err.find("part 1 of 2") != std::string::npos);
  CHECK(planned.err.find("llama-gguf-split") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "p.json"));
  CHECK(tool({"plan", part, "--types", "q8_0", "--budget", "8.5", "-o", (dir / "p.json").string(), "--force"}) == 0);
  CHECK(tool({"analyze", part, "--types", "q8_0"}) == 0);  // no budget: a part can be analysed
}

TEST_CASE("the same tensors in another float type pass with a warning; a plan given as a model is named", "[cli][whole-file]") {
  const fs::path dir = fresh_dir("float_types");
  const std::string f16 = mostly_q4_0(dir, 32, {}, false, "f16.gguf");
  const std::string f32 = mostly_q4_0(dir, 32, {}, true, "f32.gguf");
  REQUIRE(tool({"plan", f16, "--types", "q8_0", "--budget", "8.5", "-o", (dir / "p.json").string()}) == 0);
  const auto r = tool_captured(dir, {"quantize", f32, "--plan", (dir / "p.json").string(), "-o", (dir / "out.gguf").string()});
  CHECK(r.code == 0);
  CHECK(r.err.find("stored in other types") != std::string::npos);
  CHECK(r.err.find("'output.weight' is \"f32\"") != std::string::npos);
  const auto given = tool_captured(dir, {"inspect", (dir / "p.json").string()});
  CHECK(given.code == 3);
  CHECK(given.err.find("a plan (give it to `mixprec quantize --plan`)") != std::string::npos);
}

TEST_CASE("an output the system cannot write is exit 6 naming it and the reason; the input is intact", "[cli][whole-file][output]") {
  const fs::path dir = fresh_dir("output_error");
  const std::string model = mostly_q4_0(dir, 512);
  REQUIRE(tool({"plan", model, "--types", "q8_0", "--budget", "8.5", "-o", (dir / "p.json").string()}) == 0);
  const auto before = read_bytes(model);
  const std::string out = (dir / "out.gguf").string(), err = (dir / "stderr.txt").string();
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // a file size limit stands in for a full disk: write(2) fails with EFBIG
    mixprec::remove_pending_outputs_on_signals();  // as the tool's main does: it ignores SIGXFSZ
    const ::rlimit limit{64 * 1024, 64 * 1024};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    const int fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 2);
    ::_exit(tool({"quantize", model, "--plan", (dir / "p.json").string(), "-o", out}));
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 6);
  const auto said = read_bytes(err);
  const std::string message(said.begin(), said.end());
  CHECK(message.find(out) != std::string::npos);
  CHECK(message.find(std::strerror(EFBIG)) != std::string::npos);
  CHECK(read_bytes(model) == before);
  for (const auto& e : fs::directory_iterator(dir))  // no out.gguf, no temporary file
    CHECK(e.path().filename().string().find("out.gguf") == std::string::npos);
}

TEST_CASE("a calibration text too short for one stream is a request that names --ctx", "[cli][whole-file]") {
  const fs::path dir = mixprec::test::dir_with_model("mixprec_short_text");
  std::ofstream(dir / "short.txt") << "Once upon a time";
  const auto r = tool_captured(dir, {"measure", (dir / "a.gguf").string(), "--types", "q8_0", "--text", (dir / "short.txt").string(),
                                     "--ctx", "64", "-o", (dir / "m.json").string()});
  CHECK(r.code == 2);
  CHECK(r.err.find("--ctx 64") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "m.json"));
}

TEST_CASE("a sharded safetensors checkpoint plans as one model from its index; one shard alone is refused", "[cli][whole-file]") {
  namespace st = mixprec::safetensors;
  const fs::path dir = fresh_dir("sharded");
  // Two layers of two 64x256 matrices and an embedding, in two shards, as save_pretrained splits them.
  std::map<std::string, std::string> weight_map;
  std::vector<std::vector<std::byte>> storage;
  for (int shard = 1; shard <= 2; ++shard) {
    const std::string file = "model-0000" + std::to_string(shard) + "-of-00002.safetensors";
    std::vector<std::string> names = {"model.layers." + std::to_string(shard - 1) + ".mlp.up_proj.weight",
                                      "model.layers." + std::to_string(shard - 1) + ".self_attn.q_proj.weight"};
    if (shard == 1) names.push_back("model.embed_tokens.weight");
    std::vector<st::tensor_view> views;
    for (const auto& n : names) {
      mixprec::row_matrix m(64, 256);
      for (mixprec::index_t i = 0; i < m.size(); ++i) m.data()[i] = 0.01f * static_cast<float>((i * 7 + static_cast<mixprec::index_t>(n.size())) % 97 - 48);
      storage.push_back(st::encode(m, st::dtype::bf16));
      views.push_back({n, st::dtype::bf16, {64, 256}, storage.back()});
      weight_map[n] = file;
    }
    st::write((dir / file).string(), views, {{"format", "pt"}});
  }
  nlohmann::json index = {{"metadata", {{"total_size", 5 * 64 * 256 * 2}}}, {"weight_map", weight_map}};
  std::ofstream(dir / "model.safetensors.index.json") << index.dump(2);
  const std::string idx = (dir / "model.safetensors.index.json").string();

  const auto listed = tool_captured(dir, {"inspect", idx});
  CHECK(listed.code == 0);
  CHECK(listed.out.find("5 tensors") != std::string::npos);
  CHECK(listed.out.find("2 shards") != std::string::npos);
  REQUIRE(tool({"plan", idx, "--types", "q4_0,q8_0", "--budget", "6", "-o", (dir / "p.json").string()}) == 0);
  CHECK(read_json(dir / "p.json").at("layers").size() == 5);
  const auto part = tool_captured(dir, {"plan", (dir / "model-00002-of-00002.safetensors").string(), "--types", "q8_0", "--budget", "8.5",
                                        "-o", (dir / "p2.json").string()});
  CHECK(part.code == 2);
  CHECK(part.err.find("part 2 of 2") != std::string::npos);
  CHECK(part.err.find("model.safetensors.index.json") != std::string::npos);
  // A shard missing: the index is refused naming it, not read as a smaller model (vllm#34859).
  fs::remove(dir / "model-00002-of-00002.safetensors");
  const auto lost = tool_captured(dir, {"inspect", idx});
  CHECK(lost.code == 3);
  CHECK(lost.err.find("model-00002-of-00002.safetensors") != std::string::npos);
}

TEST_CASE("an imatrix whose entries name none of the model's tensors is refused; absent entries are noted", "[cli][whole-file]") {
  const fs::path dir = fresh_dir("imatrix_other");
  const std::string model = mostly_q4_0(dir, 32);
  auto save = [&](const std::vector<std::string>& names, const std::string& file) {
    mixprec::imatrix::file f;
    for (const auto& n : names) {
      mixprec::imatrix::entry e;
      e.ncall = 4;
      e.values = Eigen::VectorXf::Constant(256, 1.5f);
      f.entries[n] = e;
    }
    const std::string path = (dir / file).string();
    mixprec::imatrix::save(f, path);
    return path;
  };
  const std::string other = save({"model.layers.0.mlp.up_proj.weight", "lm_head.weight"}, "other.dat");
  const auto refused = tool_captured(dir, {"plan", model, "--types", "q4_0,q8_0", "--imatrix", other, "--budget", "8", "-o", (dir / "p.json").string()});
  CHECK(refused.code == 2);
  CHECK(refused.err.find("none names a tensor") != std::string::npos);
  CHECK(refused.err.find("lm_head.weight") != std::string::npos);
  CHECK_FALSE(fs::exists(dir / "p.json"));
  const std::string mixed = save({"output.weight", "lm_head.weight"}, "mixed.dat");
  const auto noted = tool_captured(dir, {"plan", model, "--types", "q4_0,q8_0", "--imatrix", mixed, "--budget", "8", "-o", (dir / "p.json").string()});
  CHECK(noted.code == 0);
  CHECK(noted.err.find("1 of the 2 entries") != std::string::npos);
}
