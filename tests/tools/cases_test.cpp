// Kinds of faults that real users reported against llama.cpp and other quantization tools (the test
// names carry the numbers those reports were collected under), reproduced through the `mixprec`
// command line in-process (mixprec_cli::run): exit codes by cause, every argument checked before a
// tensor is read, infeasible candidates left out per tensor with a fallback, tensor roles (vectors,
// routers, empty tensors, expert stacks), and importance matrices in both of llama.cpp's formats on one
// scale. Every input is built by the test itself, small and seeded; none is read from elsewhere.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include "mixprec/io/gguf.hpp"
#include "mixprec/io/imatrix.hpp"
#include "mixprec/plan/plan.hpp"
#include "mixprec/plan/plan_json.hpp"
#include "mixprec/quantize/spec.hpp"
#include "tools/mixprec/cli.hpp"
#include "support/files.hpp"
#include "support/tool_run.hpp"

namespace {

namespace fs = std::filesystem;
namespace gguf = mixprec::gguf;

// A GGUF being built: F32 tensors of N(0, 0.02^2) values (seeded by name), any shape.
class model_builder {
 public:
  // dims as GGUF stores them (ne0 first); fill(i) may replace element i's value.
  model_builder& add(const std::string& name, std::vector<std::uint64_t> dims, std::function<float(std::size_t, float)> fill = {}) {
    std::size_t n = 1;
    for (auto d : dims) n *= static_cast<std::size_t>(d);
    std::mt19937_64 gen(std::hash<std::string>{}(name));
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = fill ? fill(i, nd(gen)) : nd(gen);
    data_.push_back(std::move(v));
    names_.push_back(name);
    dims_.push_back(std::move(dims));
    return *this;
  }
  std::string write(const fs::path& path) const {
    std::vector<gguf::tensor_source> ts;
    for (std::size_t k = 0; k < names_.size(); ++k) {
      gguf::tensor_source t;
      t.name = names_[k];
      t.type = 0;
      t.dims = dims_[k];
      t.bytes = std::as_bytes(std::span(data_[k]));
      ts.push_back(std::move(t));
    }
    gguf::metadata kvs;
    kvs.set("general.architecture", gguf::value(std::string("llama")));
    gguf::write(path.string(), kvs, ts);
    return path.string();
  }

 private:
  std::vector<std::vector<float>> data_;
  std::vector<std::string> names_;
  std::vector<std::vector<std::uint64_t>> dims_;
};

int run(std::vector<std::string> args) { return mixprec::test::tool(std::move(args)); }

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("mixprec_cases_" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// A missing or empty file fails with its path (not as JSON that ends too early).
nlohmann::json read_json(const fs::path& p) { return nlohmann::json::parse(mixprec::test::read_bytes(p)); }

// The plan's type of each tensor it names.
std::map<std::string, std::string> plan_types(const fs::path& p) {
  std::map<std::string, std::string> out;
  const nlohmann::json j = read_json(p);  // named: a temporary's member would dangle in the loop
  for (const auto& t : j.at("layers")) out[t.at("layer").get<std::string>()] = t.at("spec").get<std::string>();
  return out;
}

// A hand-written plan (the library's plan JSON) giving tensors of `model` these types; shapes from the
// file (a tensor it does not have: 32x256; an empty one: 1 row, which the tool refuses by role).
void write_plan(const fs::path& p, const std::string& model, const std::map<std::string, std::string>& types) {
  const auto f = gguf::file::open(model);
  mixprec::plan plan;
  plan.policy = "hand";
  plan.unit = "bytes";
  for (const auto& [name, type] : types) {
    const auto* t = f.find(name);
    const auto rows = t ? std::max<mixprec::index_t>(1, static_cast<mixprec::index_t>(t->rows())) : 32;
    const auto cols = t ? std::max<mixprec::index_t>(1, static_cast<mixprec::index_t>(t->row_length())) : 256;
    const mixprec::quant_spec s = mixprec::parse_spec(type);
    const std::size_t bytes = mixprec::fits(s, cols) ? mixprec::quantized_bytes(s, rows, cols) : 0;
    plan.entries.push_back({name, s, rows, cols, bytes, 0.0, 0.0, ""});
  }
  std::ofstream(p) << nlohmann::json(plan).dump();
}

}  // namespace

TEST_CASE("cases 05/19: exit codes by cause, and the request checked before any tensor is read", "[cli][cases]") {
  const fs::path dir = fresh_dir("codes");
  // blk.1.ffn_down has a NaN: any run that reads it ends with 3, so a 2 or 4 below proves the request
  // was refused before the analysis.
  const std::string model = model_builder{}
                                .add("blk.0.attn_q.weight", {256, 64})
                                .add("blk.1.ffn_down.weight", {256, 64}, [](std::size_t i, float v) { return i == 300 ? std::nanf("") : v; })
                                .write(dir / "nan.gguf");
  const std::string out = (dir / "p.json").string();
  CHECK(run({"plan", model, "--budget", "6", "-o", out}) == 3);  // NaN: damaged input
  CHECK_FALSE(fs::exists(out));
  for (const char* bad : {"abc", "5xyz", "0", "-3", "nan"}) {
    INFO("budget " << bad);
    CHECK(run({"plan", model, "--budget", bad, "-o", out}) == 2);
  }
  CHECK(run({"plan", model, "--budget", "1", "-o", out}) == 4);   // 1 byte: below the smallest plan, known from the header
  CHECK(run({"plan", model, "--budget", "2", "-o", out}) == 4);   // 2 bits per weight
  CHECK(run({"plan", model, "--tensor-type", "(=q8_0", "-o", out}) == 2);
  CHECK(run({"plan", model, "--tensor-type", "attn=q9_9", "-o", out}) == 2);
  CHECK(run({"plan", model, "--types", "q4_0,q7_7", "-o", out}) == 2);
  CHECK(run({"plan", model, "--policy", "simplex", "-o", out}) == 2);
  CHECK(run({"plan", model, "-o", (dir / "no" / "such" / "p.json").string()}) == 2);
  CHECK(run({"plan", model, "-o", model}) == 2);
  CHECK(run({"analyze", model, "--json", "/nonexistent/a.json"}) == 2);
  CHECK(run({"analyze", (dir / "missing.gguf").string()}) == 3);
  CHECK(run({"plan", model, "--imatrix", (dir / "missing.dat").string(), "-o", out}) == 3);
  CHECK(run({"plan"}) == 2);  // CLI11: FILE missing
  CHECK_FALSE(fs::exists(out));

  // quantize: a NaN ends with 3 and leaves no output; a plan naming a missing tensor is a bad request.
  const fs::path plan = dir / "hand.json";
  write_plan(plan, model, {{"blk.0.attn_q.weight", "q8_0"}, {"blk.1.ffn_down.weight", "q8_0"}});
  CHECK(run({"quantize", model, "--plan", plan.string(), "-o", (dir / "out.gguf").string()}) == 3);
  write_plan(plan, model, {{"blk.9.nope.weight", "q8_0"}});
  CHECK(run({"quantize", model, "--plan", plan.string(), "-o", (dir / "out.gguf").string()}) == 2);
  CHECK_FALSE(fs::exists(dir / "out.gguf"));
}

TEST_CASE("cases 06/08: a type that cannot represent a tensor is left out for it, with a fallback when none can", "[cli][cases]") {
  const fs::path dir = fresh_dir("infeasible");
  // 06: a weight of 1e7 fits BF16 but overflows Q8_0's FP16 block scale. 08: rows of 4544 (Falcon's
  // ffn_down) fit no 256-wide K-quant block.
  const std::string huge = model_builder{}
                               .add("blk.0.attn_q.weight", {256, 64})
                               .add("blk.0.ffn_down.weight", {256, 64}, [](std::size_t i, float v) { return i == 700 ? 1e7f : v; })
                               .write(dir / "huge.gguf");
  const fs::path json = dir / "a.json";
  REQUIRE(run({"analyze", huge, "--types", "q8_0,bf16", "--json", json.string()}) == 0);
  std::map<std::string, std::vector<std::string>> seen;
  for (const auto& c : read_json(json)) seen[c.at("tensor").get<std::string>()].push_back(c.at("type").get<std::string>());
  CHECK(seen["blk.0.attn_q.weight"] == std::vector<std::string>{"q8_0", "bf16"});
  CHECK(seen["blk.0.ffn_down.weight"] == std::vector<std::string>{"bf16"});
  const fs::path p = dir / "p.json";
  REQUIRE(run({"plan", huge, "--types", "q8_0,bf16", "--budget", "13", "-o", p.string()}) == 0);
  CHECK(plan_types(p)["blk.0.ffn_down.weight"] == "bf16");
  CHECK(run({"plan", huge, "--types", "q8_0,bf16", "--budget", "12", "-o", p.string()}) == 4);  // bf16 is needed: out of reach

  const std::string falcon = model_builder{}.add("blk.0.attn_q.weight", {256, 64}).add("blk.0.ffn_down.weight", {4544, 16}).write(dir / "falcon.gguf");
  REQUIRE(run({"plan", falcon, "--types", "q4_K,q6_K", "--budget", "6", "-o", p.string()}) == 0);
  const auto plan = read_json(p);
  std::uint64_t sum = 0;
  for (const auto& t : plan.at("layers")) {
    sum += t.at("bytes").get<std::uint64_t>();
    if (t.at("layer") == "blk.0.ffn_down.weight") {
      const auto type = t.at("spec").get<std::string>();  // a fallback: neither q4_K nor q6_K fits rows of 4544
      CHECK((type == "q4_0" || type == "q4_1" || type == "q5_0" || type == "q5_1" || type == "q8_0"));
    }
  }
  CHECK(sum == plan.at("bytes").get<std::uint64_t>());
  CHECK(static_cast<double>(sum) <= 6.0 * (256 * 64 + 4544 * 16) / 8.0);  // the fallback counted in the budget
  // The size the plan promises is the size written.
  REQUIRE(run({"quantize", falcon, "--plan", p.string(), "-o", (dir / "out.gguf").string()}) == 0);
  std::uint64_t written = 0;
  const auto out = gguf::file::open((dir / "out.gguf").string());
  for (const auto& t : out.tensors()) written += t.size;
  CHECK(written == sum);
  // An override or a hand plan that asks for q4_K on those rows is refused before any work (exit 2).
  CHECK(run({"plan", falcon, "--budget", "6", "--tensor-type", "ffn_down=q4_K", "-o", p.string()}) == 2);
  write_plan(dir / "hand.json", falcon, {{"blk.0.ffn_down.weight", "q4_K"}});
  CHECK(run({"quantize", falcon, "--plan", (dir / "hand.json").string(), "-o", (dir / "bad.gguf").string()}) == 2);
  CHECK_FALSE(fs::exists(dir / "bad.gguf"));
}

TEST_CASE("cases 09/23: only matrices are planned; vectors, routers and empty tensors stay as they are", "[cli][cases]") {
  const fs::path dir = fresh_dir("roles");
  const std::string moe = model_builder{}
                              .add("blk.0.attn_norm.weight", {256})
                              .add("blk.0.attn_q.weight", {256, 256})
                              .add("blk.0.ffn_gate_inp.weight", {256, 8})
                              .add("blk.0.ffn_up_exps.weight", {256, 128, 8})
                              .add("blk.0.unused.weight", {256, 0})
                              .write(dir / "moe.gguf");
  const fs::path p = dir / "p.json";
  REQUIRE(run({"plan", moe, "--types", "q4_0,q8_0,f16", "--budget", "4.5", "-o", p.string()}) == 0);
  const auto types = plan_types(p);
  CHECK(types.size() == 2);
  CHECK(types.count("blk.0.attn_q.weight") == 1);
  CHECK(types.count("blk.0.ffn_up_exps.weight") == 1);  // the expert stack is planned
  REQUIRE(run({"quantize", moe, "--plan", p.string(), "-o", (dir / "out.gguf").string()}) == 0);
  const auto out = gguf::file::open((dir / "out.gguf").string());
  CHECK(out.at("blk.0.ffn_gate_inp.weight").type == 0);  // F32, as llama.cpp leaves a router
  CHECK(out.at("blk.0.attn_norm.weight").type == 0);
  CHECK(out.at("blk.0.unused.weight").size == 0);
  // A rule can force the router; a hand plan that quantizes a vector or an empty tensor is refused.
  REQUIRE(run({"plan", moe, "--types", "q4_0,q8_0", "--tensor-type", "ffn_gate_inp=q8_0", "--budget", "9", "-o", p.string()}) == 0);
  CHECK(plan_types(p)["blk.0.ffn_gate_inp.weight"] == "q8_0");
  for (const char* name : {"blk.0.attn_norm.weight", "blk.0.unused.weight"}) {
    INFO(name);
    write_plan(dir / "hand.json", moe, {{name, "q8_0"}});
    CHECK(run({"quantize", moe, "--plan", (dir / "hand.json").string(), "-o", (dir / "bad.gguf").string()}) == 2);
    CHECK_FALSE(fs::exists(dir / "bad.gguf"));
  }
  // A file with no matrix at all has nothing to plan.
  const std::string empty = model_builder{}.add("blk.0.unused.weight", {256, 0}).add("norm.weight", {64}).write(dir / "empty.gguf");
  CHECK(run({"plan", empty, "--budget", "6", "-o", p.string()}) == 3);
}

TEST_CASE("cases 02/03/06: imatrix entries of ne0 x n_expert values, both file formats, and a plan that does not depend on the imatrix's scale",
          "[cli][cases]") {
  const fs::path dir = fresh_dir("imatrix");
  const std::string moe = model_builder{}
                              .add("blk.0.attn_q.weight", {256, 256})
                              .add("blk.0.ffn_gate_exps.weight", {256, 64, 4})
                              .add("blk.0.ffn_down.weight", {256, 128})
                              .write(dir / "moe.gguf");
  auto imatrix = [&](float scale, const std::string& name) {
    mixprec::imatrix::file f;
    std::mt19937 gen(5);
    std::uniform_real_distribution<float> u(0.01f, 3.0f);
    auto entry = [&](int n) {
      mixprec::imatrix::entry e;
      e.ncall = 10;
      e.values.resize(n);
      for (int i = 0; i < n; ++i) e.values[i] = scale * u(gen);
      return e;
    };
    f.entries["blk.0.attn_q.weight"] = entry(256);
    f.entries["blk.0.ffn_gate_exps.weight"] = entry(256 * 4);  // one ne0 slice per expert
    // blk.0.ffn_down.weight has no entry: weighted 1, on the imatrix's mean scale
    const std::string path = (dir / name).string();
    mixprec::imatrix::save(f, path);
    return path;
  };
  const std::string im1 = imatrix(1.0f, "a.dat"), im1000 = imatrix(1000.0f, "b.dat");
  const fs::path json = dir / "a.json";
  REQUIRE(run({"analyze", moe, "--types", "q4_0,q8_0", "--imatrix", im1, "--json", json.string()}) == 0);
  for (const auto& c : read_json(json)) CHECK(c.at("importance").get<bool>() == (c.at("tensor") != "blk.0.ffn_down.weight"));
  // Scaling every value of the imatrix by 1000 gives the same plan: the tensor without an entry is not
  // weighted on another scale than those with one.
  const fs::path p1 = dir / "p1.json", p2 = dir / "p2.json";
  REQUIRE(run({"plan", moe, "--types", "q4_0,q8_0", "--budget", "6", "--imatrix", im1, "-o", p1.string()}) == 0);
  REQUIRE(run({"plan", moe, "--types", "q4_0,q8_0", "--budget", "6", "--imatrix", im1000, "-o", p2.string()}) == 0);
  CHECK(plan_types(p1) == plan_types(p2));
  // Case 03: the same statistics as a GGUF imatrix (llama-imatrix's default) give the same plan.
  {
    auto f = mixprec::imatrix::load(im1);
    for (auto& [name, e] : f.entries) {
      const auto n_mat = static_cast<std::size_t>(e.values.size() / 256);
      e.counts.assign(n_mat, 512.0f);  // 512 tokens per matrix: in_sum2 = mean * 512
      e.values = e.importance() * 512.0f;
      e.ncall = 0;
    }
    mixprec::imatrix::save(f, (dir / "im.gguf").string(), mixprec::imatrix::format::gguf);
  }
  const fs::path p3 = dir / "p3.json";
  REQUIRE(run({"plan", moe, "--types", "q4_0,q8_0", "--budget", "6", "--imatrix", (dir / "im.gguf").string(), "-o", p3.string()}) == 0);
  CHECK(plan_types(p3) == plan_types(p1));
  // quantize --imatrix writes the bytes that analysis measured: each tensor searched with its entry
  // (each expert with its own slice), like llama-quantize; without --imatrix the weighted types differ.
  write_plan(dir / "q4.json", moe, {{"blk.0.attn_q.weight", "q4_0"}, {"blk.0.ffn_gate_exps.weight", "q4_K"}, {"blk.0.ffn_down.weight", "q4_1"}});
  REQUIRE(run({"quantize", moe, "--plan", (dir / "q4.json").string(), "--imatrix", im1, "-o", (dir / "w.gguf").string()}) == 0);
  REQUIRE(run({"quantize", moe, "--plan", (dir / "q4.json").string(), "-o", (dir / "u.gguf").string()}) == 0);
  {
    const auto src = gguf::file::open(moe);
    const auto weighted = gguf::file::open((dir / "w.gguf").string()), plain = gguf::file::open((dir / "u.gguf").string());
    CHECK(weighted.kvs().get_u32("general.quantization_version") == 2);
    const auto imp = mixprec::imatrix::load_importance(im1);
    auto bytes_of = [](const gguf::file& f, const char* name) {
      const auto& t = f.at(name);
      return std::vector<std::byte>(t.bytes.begin(), t.bytes.end());
    };
    const mixprec::row_matrix q = src.to_float("blk.0.attn_q.weight");
    const Eigen::VectorXf& iq = imp.at("blk.0.attn_q.weight");
    CHECK(bytes_of(weighted, "blk.0.attn_q.weight") ==
          mixprec::ggml::quantize(mixprec::ggml_type::q4_0, q, std::span<const float>(iq.data(), 256)));
    CHECK(bytes_of(plain, "blk.0.attn_q.weight") == mixprec::ggml::quantize(mixprec::ggml_type::q4_0, q));
    CHECK(bytes_of(weighted, "blk.0.attn_q.weight") != bytes_of(plain, "blk.0.attn_q.weight"));
    const mixprec::row_matrix e = src.to_float("blk.0.ffn_gate_exps.weight");  // 4 experts x 64 rows
    const Eigen::VectorXf& ie = imp.at("blk.0.ffn_gate_exps.weight");
    std::vector<std::byte> want;
    for (int m = 0; m < 4; ++m) {
      const auto part = mixprec::ggml::quantize(mixprec::ggml_type::q4_k, e.middleRows(m * 64, 64),
                                                std::span<const float>(ie.data() + m * 256, 256));
      want.insert(want.end(), part.begin(), part.end());
    }
    CHECK(bytes_of(weighted, "blk.0.ffn_gate_exps.weight") == want);
    // The tensor without an entry is quantized as without an imatrix.
    CHECK(bytes_of(weighted, "blk.0.ffn_down.weight") == bytes_of(plain, "blk.0.ffn_down.weight"));
  }
  // An entry of the wrong length is a bad request naming the tensor.
  mixprec::imatrix::file bad;
  bad.entries["blk.0.ffn_gate_exps.weight"].ncall = 1;
  bad.entries["blk.0.ffn_gate_exps.weight"].values = Eigen::VectorXf::Ones(300);
  mixprec::imatrix::save(bad, (dir / "bad.dat").string());
  CHECK(run({"analyze", moe, "--imatrix", (dir / "bad.dat").string()}) == 2);
  CHECK(run({"quantize", moe, "--plan", (dir / "q4.json").string(), "--imatrix", (dir / "bad.dat").string(), "-o",
             (dir / "bad.gguf").string()}) == 2);
  CHECK_FALSE(fs::exists(dir / "bad.gguf"));
}

TEST_CASE("found by breaking the tool: device and FIFO paths, tiny weights, overrides beyond --types, data-less imatrix entries",
          "[cli][cases]") {
  const fs::path dir = fresh_dir("broken");
  const std::string model = model_builder{}.add("blk.0.attn_q.weight", {256, 64}).add("blk.0.ffn_up.weight", {256, 128}).write(dir / "m.gguf");
  // An output that is a FIFO (or a device) is refused and stays what it was; a FIFO input is refused, not waited on.
  const fs::path fifo = dir / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK(run({"plan", model, "--budget", "6", "-o", fifo.string()}) == 2);
  CHECK(fs::is_fifo(fifo));
  CHECK(run({"inspect", fifo.string()}) == 3);
  CHECK(run({"quantize", model, "--plan", fifo.string(), "-o", (dir / "o.gguf").string()}) == 3);
  // Neither GGUF nor safetensors, or empty: a clear parse error.
  std::ofstream(dir / "magic.gguf") << "GGUG\x03\0\0\0 and more bytes";
  std::ofstream(dir / "empty.gguf");
  CHECK(run({"inspect", (dir / "magic.gguf").string()}) == 3);
  CHECK(run({"inspect", (dir / "empty.gguf").string()}) == 3);
  // A plan whose fields have the wrong JSON types is a damaged input (3), not a crash (1).
  std::ofstream(dir / "p5.json") << R"({"format": 5, "tensors": []})";
  CHECK(run({"quantize", model, "--plan", (dir / "p5.json").string(), "-o", (dir / "o.gguf").string()}) == 3);
  // An override's type need not be in --types (llama.cpp's --tensor-type takes any type).
  const fs::path p = dir / "p.json";
  REQUIRE(run({"plan", model, "--types", "q4_0,q8_0", "--tensor-type", "attn_q=bf16", "--budget", "9", "-o", p.string()}) == 0);
  CHECK(plan_types(p)["blk.0.attn_q.weight"] == "bf16");
  // Weights of 1e-9 round to 0 in every FP16-scaled type and in F16: those are left out, BF16 kept.
  const std::string tiny =
      model_builder{}.add("blk.0.attn_q.weight", {256, 64}, [](std::size_t, float v) { return v * 5e-8f; }).write(dir / "tiny.gguf");
  const fs::path json = dir / "a.json";
  REQUIRE(run({"analyze", tiny, "--types", "q4_0,q8_0,f16,bf16", "--json", json.string()}) == 0);
  std::vector<std::string> kept;
  for (const auto& c : read_json(json)) kept.push_back(c.at("type").get<std::string>());
  CHECK(kept == std::vector<std::string>{"bf16"});
  // An imatrix entry of zeros (columns never active) and an expert no token reached (count 0) carry no
  // data: quantized as without an imatrix, and the plan still does not depend on the imatrix's scale.
  const std::string moe = model_builder{}.add("blk.0.attn_q.weight", {256, 256}).add("blk.0.ffn_up_exps.weight", {256, 64, 4}).write(dir / "moe.gguf");
  auto imatrix = [&](float scale, const std::string& name) {
    mixprec::imatrix::file f;
    std::mt19937 gen(3);
    std::uniform_real_distribution<float> u(0.5f, 40.0f);
    auto& q = f.entries["blk.0.attn_q.weight"];
    q.counts = {100.0f};
    q.values = Eigen::VectorXf::Zero(256);  // all zero
    auto& e = f.entries["blk.0.ffn_up_exps.weight"];
    e.counts = {100.0f, 0.0f, 50.0f, 80.0f};  // expert 1 never routed
    e.values.resize(256 * 4);
    for (int i = 0; i < 256 * 4; ++i) e.values[i] = i / 256 == 1 ? 0.0f : scale * u(gen);
    mixprec::imatrix::save(f, (dir / name).string(), mixprec::imatrix::format::gguf);
    return (dir / name).string();
  };
  const std::string a = imatrix(1.0f, "a.gguf"), b = imatrix(1000.0f, "b.gguf"), c = imatrix(0.001f, "c.gguf");
  const fs::path pa = dir / "pa.json", pb = dir / "pb.json", pc = dir / "pc.json";
  for (const auto& [im, out] : {std::pair{a, pa}, std::pair{b, pb}, std::pair{c, pc}})
    REQUIRE(run({"plan", moe, "--types", "q4_0,q4_1,q4_K,q8_0", "--budget", "5.5", "--imatrix", im, "-o", out.string()}) == 0);
  CHECK(plan_types(pa) == plan_types(pb));
  CHECK(plan_types(pa) == plan_types(pc));
  write_plan(dir / "q4.json", moe, {{"blk.0.attn_q.weight", "q4_0"}});
  REQUIRE(run({"quantize", moe, "--plan", (dir / "q4.json").string(), "--imatrix", a, "-o", (dir / "w.gguf").string()}) == 0);
  const auto w = gguf::file::open((dir / "w.gguf").string());
  const auto& t = w.at("blk.0.attn_q.weight");
  CHECK(std::vector<std::byte>(t.bytes.begin(), t.bytes.end()) ==
        mixprec::ggml::quantize(mixprec::ggml_type::q4_0, gguf::file::open(moe).to_float("blk.0.attn_q.weight")));
}
