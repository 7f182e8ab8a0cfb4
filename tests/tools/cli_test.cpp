// The `mixprec` command line's steps on a generated GGUF: analyze -> plan -> quantize, checking the
// output file against the plan, the metadata against the input, and the errors for bad requests.
#include <catch2/catch.hpp>

#include <filesystem>
#include <random>
#include <string>

#include <unistd.h>

#include "tools/mixprec/tool.hpp"
#include "support/errors.hpp"

namespace {

namespace gguf = mixprec::gguf;

// An empty folder of the test's own: by name and process (builds run their suites side by side), and
// without what an earlier, failed run left in it.
std::filesystem::path fresh_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / (name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// A small llama-like GGUF: two layers' attention and FFN matrices (F32 and F16), a norm vector, and a
// few KVs of different types.
std::string make_model(const std::filesystem::path& dir) {
  std::mt19937_64 gen(9);
  std::normal_distribution<float> n(0.0f, 0.02f);
  gguf::metadata kvs;
  kvs.set("general.architecture", gguf::value(std::string("llama")));
  kvs.set("general.name", gguf::value(std::string("tiny")));
  kvs.set("llama.block_count", gguf::value(std::uint32_t{2}));
  kvs.set("tokenizer.ggml.tokens", gguf::value(gguf::array{gguf::value_type::string, {gguf::value(std::string("a")), gguf::value(std::string("b"))}}));
  static std::vector<std::vector<std::byte>> storage;
  storage.clear();
  std::vector<gguf::tensor_source> tensors;
  auto add = [&](const std::string& name, std::uint64_t ne0, std::uint64_t ne1, bool f16, float scale) {
    mixprec::row_matrix w(static_cast<mixprec::index_t>(ne1), static_cast<mixprec::index_t>(ne0));
    for (mixprec::index_t i = 0; i < w.size(); ++i) w.data()[i] = scale * n(gen);
    auto bytes = mixprec::ggml::quantize(f16 ? mixprec::ggml_type::f16 : mixprec::ggml_type::f32, w);
    storage.push_back(std::move(bytes));
    gguf::tensor_source t;
    t.name = name;
    t.type = f16 ? 1 : 0;
    t.dims = ne1 == 0 ? std::vector<std::uint64_t>{ne0} : std::vector<std::uint64_t>{ne0, ne1};
    t.bytes = storage.back();
    tensors.push_back(std::move(t));
  };
  for (int b = 0; b < 2; ++b) {
    const std::string p = "blk." + std::to_string(b) + ".";
    add(p + "attn_q.weight", 256, 256, false, 1.0f);
    add(p + "attn_v.weight", 256, 256, true, 1.0f);
    add(p + "ffn_down.weight", 512, 256, false, 3.0f);
  }
  storage.reserve(storage.size() + 1);
  {
    std::vector<std::byte> norm(256 * 4);
    storage.push_back(norm);
    gguf::tensor_source t;
    t.name = "output_norm.weight";
    t.type = 0;
    t.dims = {256};
    t.bytes = storage.back();
    tensors.push_back(std::move(t));
  }
  const std::string path = (dir / "tiny.gguf").string();
  gguf::write(path, kvs, tensors);
  return path;
}

}  // namespace

TEST_CASE("cli: analyze, plan within a budget, quantize; the output matches the plan and keeps the metadata", "[cli]") {
  const auto dir = fresh_dir("mixprec_cli_test");
  const std::string path = make_model(dir);
  const mixprec_cli::model_file f(path);
  REQUIRE(f.is_gguf());
  REQUIRE(f.tensors().size() == 7);

  const auto types = mixprec_cli::parse_types("q4_0,q8_0,q4_K,f16");
  const auto analysis = mixprec_cli::analyze(f, types, {}, {}, false);
  REQUIRE(analysis.size() == 6);  // the norm vector is not planned
  for (const auto& a : analysis) {
    REQUIRE(a.candidates.size() == 4);
    // More bits, less error.
    const auto& q4 = a.candidates[0];
    const auto& q8 = a.candidates[1];
    CHECK(q8.error < q4.error);
    CHECK(q8.sqnr_db > q4.sqnr_db + 15.0);
    CHECK(q4.bytes == static_cast<std::uint64_t>(a.rows) * mixprec::ggml::row_bytes(mixprec::ggml_type::q4_0, a.cols));
  }
  // Threads change nothing: every error and SQNR is the same double (fixed row chunks, summed in order),
  // and the bytes quantize writes are the same.
  const auto threaded = mixprec_cli::analyze(f, types, {}, {}, false, 3);
  REQUIRE(threaded.size() == analysis.size());
  for (std::size_t i = 0; i < analysis.size(); ++i)
    for (std::size_t k = 0; k < analysis[i].candidates.size(); ++k) {
      CHECK(threaded[i].candidates[k].error == analysis[i].candidates[k].error);
      CHECK(threaded[i].candidates[k].sqnr_db == analysis[i].candidates[k].sqnr_db);
    }
  {
    const mixprec::row_matrix w = f.to_float("blk.0.ffn_down.weight");
    const std::vector<const float*> none(1, nullptr);
    for (auto t : {mixprec::ggml_type::q4_k, mixprec::ggml_type::q8_0})
      CHECK(mixprec_cli::quantize_stack(t, w, none, "x", 3) == mixprec::ggml::quantize(t, w));
  }
  double weights = 0.0;
  for (const auto& a : analysis) weights += static_cast<double>(a.rows * a.cols);
  const double budget = mixprec::parse_byte_budget("5.5", weights);
  const auto p = mixprec_cli::make_plan(analysis, budget, "knapsack");
  CHECK(static_cast<double>(p.bytes()) <= budget);
  CHECK(p.proven_optimal);
  // The greedy plan fits too and has no less error than the exact one.
  const auto g = mixprec_cli::make_plan(analysis, budget, "greedy");
  CHECK(p.predicted_loss() <= g.predicted_loss() + 1e-12);
  // The plan's losses are the analysis' errors.
  for (const auto& e : p.entries) {
    const auto& a = *std::find_if(analysis.begin(), analysis.end(), [&](const auto& x) { return x.name == e.layer; });
    const auto& c = *std::find_if(a.candidates.begin(), a.candidates.end(), [&](const auto& x) { return x.spec == e.spec; });
    CHECK(e.loss == c.error);
    CHECK(e.bytes == c.bytes);
  }
  // The FFN matrices (3x the scale, so 9x the squared error at any type) get the precision first.
  CHECK(p.at("blk.0.ffn_down.weight").bytes * p.at("blk.0.attn_q.weight").cols * p.at("blk.0.attn_q.weight").rows >=
        p.at("blk.0.attn_q.weight").bytes * p.at("blk.0.ffn_down.weight").cols * p.at("blk.0.ffn_down.weight").rows);

  // An override pins every attn_v, as llama.cpp's --tensor-type does (the regex is searched in the name).
  const auto po = mixprec_cli::make_plan(analysis, budget, "knapsack", {mixprec_cli::parse_override(R"(blk\..*\.attn_v=q8_0)")});
  for (const auto& e : po.entries)
    if (e.layer.find("attn_v") != std::string::npos) CHECK(mixprec::to_string(e.spec) == "q8_0");
  // llama-quantize lower-cases the pattern; so does the tool.
  CHECK(mixprec_cli::parse_override("ATTN_V=q8_0").pattern.matches("blk.0.attn_v.weight"));

  // The plan file is the library's versioned plan JSON; it reads back equal, then quantize.
  const std::string plan_path = (dir / "plan.json").string();
  std::ofstream(plan_path) << nlohmann::json(p).dump(2);
  const mixprec::plan plan = mixprec_cli::load_plan(plan_path);
  CHECK(plan == p);
  REQUIRE(plan.entries.size() == 6);
  const std::string out = (dir / "out.gguf").string();
  const auto s = mixprec_cli::quantize_gguf(f, plan, out, false);
  CHECK(s.converted == 6);
  const auto q = gguf::file::open(out);
  REQUIRE(q.tensors().size() == 7);
  std::uint64_t planned_bytes = 0;
  for (const auto& t : q.tensors()) {
    if (t.name == "output_norm.weight") {
      CHECK(t.type == 0);  // not planned: copied
      continue;
    }
    INFO(t.name);
    CHECK(t.type == static_cast<std::uint32_t>(*mixprec::ggml_type_of(plan.spec_of(t.name))));
    planned_bytes += t.size;
    const auto type = static_cast<mixprec::ggml_type>(t.type);
    const mixprec::row_matrix back = mixprec::ggml::dequantize(type, t.bytes, static_cast<mixprec::index_t>(t.rows()),
                                                               static_cast<mixprec::index_t>(t.row_length()));
    CHECK(mixprec::sqnr_db(f.to_float(t.name), back) > 18.0);
    // The bytes are the ggml quantizer's bytes of the source tensor.
    const auto expect = mixprec::ggml::quantize(type, f.to_float(t.name));
    CHECK(std::equal(expect.begin(), expect.end(), t.bytes.begin(), t.bytes.end()));
  }
  CHECK(planned_bytes == p.bytes());
  // Every input KV is kept with its value; general.file_type is added.
  for (const auto& kv : f.gguf().kvs()) {
    const auto* v = q.kvs().find(kv.key);
    REQUIRE(v != nullptr);
    CHECK(*v == kv.val);
  }
  CHECK(q.kvs().get_u32("general.file_type") == s.file_type);
  std::filesystem::remove_all(dir);
}

TEST_CASE("cli: bad requests are typed errors", "[cli]") {
  const auto dir = fresh_dir("mixprec_cli_test_errors");
  const std::string path = make_model(dir);
  const mixprec_cli::model_file f(path);
  const auto analysis = mixprec_cli::analyze(f, mixprec_cli::parse_types("q4_0,q8_0"), {}, {}, false);
  using mixprec::test::error_code_of;
  CHECK(error_code_of([&] { (void)mixprec_cli::make_plan(analysis, 1000.0, "knapsack"); }) == mixprec::errc::infeasible);
  CHECK(error_code_of([&] { (void)mixprec_cli::make_plan(analysis, 1e9, "simplex"); }) == mixprec::errc::invalid_argument);
  CHECK(error_code_of([&] { (void)mixprec_cli::parse_override("attn_v"); }) == mixprec::errc::parse_error);
  CHECK(error_code_of([&] { (void)mixprec_cli::parse_override("[=q8_0"); }) == mixprec::errc::parse_error);
  CHECK(error_code_of([&] { (void)mixprec_cli::parse_override("attn=q9_0"); }) == mixprec::errc::parse_error);
  CHECK(error_code_of([&] { (void)mixprec_cli::parse_override("attn=int4/g32"); }) == mixprec::errc::invalid_argument);  // no GGUF type
  CHECK(error_code_of([&] { (void)mixprec_cli::make_plan(analysis, 1e9, "knapsack", {mixprec_cli::parse_override("attn=f16")}); }) ==
        mixprec::errc::invalid_argument);  // f16 is not among the candidates analysed
  CHECK(error_code_of([&] { (void)mixprec::parse_byte_budget("lots", 1e6); }) == mixprec::errc::parse_error);
  mixprec::plan nope;
  nope.entries.push_back({"nope", mixprec::parse_spec("q4_0"), 32, 64, mixprec::quantized_bytes(mixprec::parse_spec("q4_0"), 32, 64), 0, 0, ""});
  CHECK(error_code_of([&] { (void)mixprec_cli::quantize_gguf(f, nope, (dir / "x.gguf").string(), false); }) == mixprec::errc::invalid_argument);
  // A plan of another file (shapes differ) and one with a spec GGUF cannot store are refused before writing.
  mixprec::plan other = mixprec_cli::make_plan(analysis, 1e9, "knapsack");
  other.entries[0].rows *= 2;
  other.entries[0].bytes *= 2;
  CHECK(error_code_of([&] { (void)mixprec_cli::quantize_gguf(f, other, (dir / "x.gguf").string(), false); }) == mixprec::errc::invalid_argument);
  mixprec::plan own = mixprec_cli::make_plan(analysis, 1e9, "knapsack");
  own.entries[0].spec = mixprec::parse_spec("int4/g32");
  own.entries[0].bytes = mixprec::quantized_bytes(own.entries[0].spec, own.entries[0].rows, own.entries[0].cols);
  CHECK(error_code_of([&] { (void)mixprec_cli::quantize_gguf(f, own, (dir / "x.gguf").string(), false); }) == mixprec::errc::unsupported);
  CHECK_FALSE(std::filesystem::exists(dir / "x.gguf"));
  std::ofstream(dir / "bad.json") << R"({"format": "something else", "tensors": []})";
  CHECK(error_code_of([&] { (void)mixprec_cli::load_plan((dir / "bad.json").string()); }) == mixprec::errc::parse_error);
  std::ofstream(dir / "old.json") << R"({"format": "mixprec-ggml-plan", "tensors": []})";  // the tool's old format
  CHECK(error_code_of([&] { (void)mixprec_cli::load_plan((dir / "old.json").string()); }) == mixprec::errc::parse_error);
  std::ofstream(dir / "new.json") << R"({"format": "mixprec-plan", "version": 2, "layers": []})";
  CHECK(error_code_of([&] { (void)mixprec_cli::load_plan((dir / "new.json").string()); }) == mixprec::errc::unsupported);
  std::ofstream(dir / "junk.json") << R"({"policy": 3})";
  CHECK(error_code_of([&] { (void)mixprec_cli::load_plan((dir / "junk.json").string()); }) == mixprec::errc::parse_error);
  std::ofstream(dir / "trunc.gguf") << "GGUF\x03";
  CHECK(error_code_of([&] { mixprec_cli::model_file bad((dir / "trunc.gguf").string()); }) == mixprec::errc::parse_error);
  std::filesystem::remove_all(dir);
}
