// `mixprec quantize --imatrix` against llama-quantize on the importance matrices real users have:
// entries missing, all zero or zero in some columns, experts no calibration token reached (GGUF count
// 0), legacy entries with ncall 0, entries for tensors the model does not have, entries of the wrong
// length, NaN and Inf. llama-quantize is llama.cpp's own libllama (npm @node-llama-cpp/linux-x64@3.22.1,
// llama.cpp 0.5.0; tests/interop/run.sh fetches it) through apps/llm_study/llama_cpp.hpp, fed what
// llama-quantize feeds llama_model_quantize: the map tools/quantize/quantize.cpp load_imatrix builds,
// transcribed below (llama_quantize_map) and computed from the entries the test writes, not by mixprec.
//
// The model is written by the test: llama architecture, 256-wide rows (every K-quant block fits), one
// dense layer and one MoE layer (4 experts, F32 3-D stacks). Each case is quantized by llama.cpp's
// recipes Q4_K_M (q4_K, q6_K), Q5_K_M (q5_K, q6_K), Q4_0 (q4_0, q6_K) and IQ4_XS (iq4_xs, ...); the
// types llama.cpp chose become mixprec's plan, and every tensor of both outputs must be the same:
// name, type, shape and bytes, with every metadata key the same but llama-quantize's quantize.imatrix.*
// (which the tool does not write). The README's documented differences are checked as documented: a
// matrix whose entry is all zeros is the one thing that differs (llama.cpp's weights there are all 0,
// mixprec's are not); values that are not sums of squares, which llama.cpp accepts, are a damaged
// input to mixprec (exit 3). Where llama.cpp refuses an input, mixprec must refuse it too, but for an
// expert stack's entry of ne0 values, which mixprec shares among the experts. The table of every case
// and recipe is printed at the end (ctest -V, or the binary through run.sh with -s).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "apps/llm_study/llama_cpp.hpp"
#include "tools/mixprec/cli.hpp"
#include "mixprec/formats/ggml.hpp"
#include "mixprec/io/gguf.hpp"
#include "mixprec/plan/plan.hpp"
#include "mixprec/plan/plan_json.hpp"
#include "mixprec/quantize/spec.hpp"
#include "support/tool_run.hpp"

namespace {

namespace fs = std::filesystem;
namespace gguf = mixprec::gguf;
namespace llama_cpp = mixprec_apps::llama_cpp;

constexpr std::uint64_t n_embd = 256, n_ff = 512, n_vocab = 64, n_kv = 128, n_expert = 4;

fs::path work_dir() {
  const fs::path dir = fs::temp_directory_path() / ("mixprec_imatrix_edge_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

// ---- the model ----

struct tensor_spec {
  std::string name;
  std::vector<std::uint64_t> dims;  // ne0 first
};

std::vector<tensor_spec> model_tensors() {
  std::vector<tensor_spec> t = {{"token_embd.weight", {n_embd, n_vocab}},
                                {"output_norm.weight", {n_embd}},
                                {"output.weight", {n_embd, n_vocab}}};
  for (int l = 0; l < 2; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    t.push_back({p + "attn_norm.weight", {n_embd}});
    t.push_back({p + "attn_q.weight", {n_embd, n_embd}});
    t.push_back({p + "attn_k.weight", {n_embd, n_kv}});
    t.push_back({p + "attn_v.weight", {n_embd, n_kv}});
    t.push_back({p + "attn_output.weight", {n_embd, n_embd}});
    t.push_back({p + "ffn_norm.weight", {n_embd}});
    if (l == 0) {
      t.push_back({p + "ffn_gate.weight", {n_embd, n_ff}});
      t.push_back({p + "ffn_up.weight", {n_embd, n_ff}});
      t.push_back({p + "ffn_down.weight", {n_ff, n_embd}});
    } else {
      t.push_back({p + "ffn_gate_inp.weight", {n_embd, n_expert}});
      t.push_back({p + "ffn_gate_exps.weight", {n_embd, n_ff, n_expert}});
      t.push_back({p + "ffn_up_exps.weight", {n_embd, n_ff, n_expert}});
      t.push_back({p + "ffn_down_exps.weight", {n_ff, n_embd, n_expert}});
    }
  }
  return t;
}

// The matrices llama-imatrix records (every 2-D/3-D weight but the token embedding and the router):
// name -> (ne0, n_mat).
std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> recorded_matrices() {
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> out;
  for (const auto& t : model_tensors())
    if (t.dims.size() >= 2 && t.name != "token_embd.weight" && t.name.find("ffn_gate_inp") == std::string::npos)
      out[t.name] = {t.dims[0], t.dims.size() == 3 ? t.dims[2] : 1};
  return out;
}

// N(0, 0.02^2) weights, seeded by name, with one outlier in 97 (so that the search has something to weigh).
std::string write_model(const fs::path& dir) {
  std::vector<std::vector<float>> data;
  std::vector<gguf::tensor_source> ts;
  const auto specs = model_tensors();
  data.reserve(specs.size());
  for (const auto& s : specs) {
    std::uint64_t n = 1;
    for (auto d : s.dims) n *= d;
    std::mt19937_64 gen(std::hash<std::string>{}(s.name));
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::vector<float> v(n);
    for (std::uint64_t i = 0; i < n; ++i) v[i] = s.dims.size() == 1 ? 1.0f + nd(gen) : (i % 97 == 5 ? 8.0f : 1.0f) * nd(gen);
    data.push_back(std::move(v));
    ts.push_back({s.name, 0, s.dims, std::as_bytes(std::span(data.back())), {}});
  }
  gguf::metadata kvs;
  auto u32 = [](std::uint64_t x) { return gguf::value(static_cast<std::uint32_t>(x)); };
  kvs.set("general.architecture", gguf::value("llama"));
  kvs.set("general.name", gguf::value("imatrix-edge"));
  kvs.set("general.file_type", u32(0));
  kvs.set("llama.context_length", u32(256));
  kvs.set("llama.embedding_length", u32(n_embd));
  kvs.set("llama.feed_forward_length", u32(n_ff));
  kvs.set("llama.attention.head_count", u32(8));
  kvs.set("llama.attention.head_count_kv", u32(4));
  kvs.set("llama.block_count", u32(2));
  kvs.set("llama.rope.dimension_count", u32(32));
  kvs.set("llama.attention.layer_norm_rms_epsilon", gguf::value(1e-5f));
  kvs.set("llama.expert_count", u32(n_expert));
  kvs.set("llama.expert_used_count", u32(2));
  const std::string path = (dir / "model-f32.gguf").string();
  gguf::write(path, kvs, ts);
  return path;
}

// ---- importance matrices, written by hand (so that a case may hold what mixprec's writers refuse) ----

struct entry {
  std::vector<float> values;  // GGUF: in_sum2, expert-major; legacy: the stored values (mean x^2 * ncall)
  std::vector<float> counts;  // GGUF: per matrix
  std::int32_t ncall = 0;     // legacy
};

struct imatrix {
  bool gguf = true;
  std::map<std::string, entry> entries;
};

// A complete imatrix of every recorded matrix, as llama-imatrix writes one after `chunks` chunks of
// 512 tokens: per column a mean of x^2 (log-normal, seeded by name), per expert its own token count.
imatrix complete(bool gguf_format) {
  imatrix im;
  im.gguf = gguf_format;
  constexpr int chunks = 10;
  for (const auto& [name, shape] : recorded_matrices()) {
    const auto [ne0, n_mat] = shape;
    std::mt19937_64 gen(std::hash<std::string>{}(name) ^ 0x5eedu);
    std::lognormal_distribution<float> d(0.0f, 1.5f);
    entry e;
    e.values.resize(ne0 * n_mat);
    for (std::uint64_t m = 0; m < n_mat; ++m) {
      const float tokens = n_mat == 1 ? 512.0f * chunks : static_cast<float>(512 * chunks * 2 / n_expert * (m + 1) / 3 + 7 * m);
      if (gguf_format) e.counts.push_back(tokens);
      for (std::uint64_t i = 0; i < ne0; ++i) {
        const float mean = d(gen);
        e.values[m * ne0 + i] = gguf_format ? mean * tokens : mean * chunks;
      }
    }
    e.ncall = gguf_format ? 0 : chunks;
    im.entries[name] = std::move(e);
  }
  return im;
}

std::string write_imatrix(const imatrix& im, const fs::path& path) {
  if (im.gguf) {
    gguf::array datasets{gguf::value_type::string, {gguf::value("calibration.txt")}};
    gguf::metadata kvs = {{"general.type", gguf::value("imatrix")},
                          {"imatrix.datasets", gguf::value(datasets)},
                          {"imatrix.chunk_count", gguf::value(std::uint32_t{10})},
                          {"imatrix.chunk_size", gguf::value(std::uint32_t{512})}};
    std::vector<gguf::tensor_source> ts;
    for (const auto& [name, e] : im.entries) {
      const std::uint64_t n_mat = e.counts.size(), ne0 = e.values.size() / n_mat;
      ts.push_back({name + ".in_sum2", 0, {ne0, n_mat}, std::as_bytes(std::span(e.values)), {}});
      ts.push_back({name + ".counts", 0, {1, n_mat}, std::as_bytes(std::span(e.counts)), {}});
    }
    gguf::write(path.string(), kvs, ts);
  } else {  // tools/imatrix/imatrix.cpp save_imatrix_legacy
    std::ofstream out(path, std::ios::binary);
    auto i32 = [&](std::int32_t v) { out.write(reinterpret_cast<const char*>(&v), 4); };
    i32(static_cast<std::int32_t>(im.entries.size()));
    for (const auto& [name, e] : im.entries) {
      i32(static_cast<std::int32_t>(name.size()));
      out.write(name.data(), static_cast<std::streamsize>(name.size()));
      i32(e.ncall);
      i32(static_cast<std::int32_t>(e.values.size()));
      out.write(reinterpret_cast<const char*>(e.values.data()), static_cast<std::streamsize>(e.values.size() * sizeof(float)));
    }
    i32(10);
    const std::string dataset = "calibration.txt";
    i32(static_cast<std::int32_t>(dataset.size()));
    out.write(dataset.data(), static_cast<std::streamsize>(dataset.size()));
  }
  return path.string();
}

// What llama-quantize hands llama_model_quantize for that file: tools/quantize/quantize.cpp
// load_imatrix, transcribed (GGUF: in_sum2 / count per matrix, 1 for every column of a matrix whose
// count is not > 0; legacy: values / ncall, the values as stored when ncall is not > 0).
llama_cpp::importance_map llama_quantize_map(const imatrix& im) {
  llama_cpp::importance_map out;
  for (const auto& [name, e] : im.entries) {
    std::vector<float> v(e.values.size());
    if (im.gguf) {
      const std::size_t ne0 = e.values.size() / e.counts.size();
      for (std::size_t j = 0; j < e.counts.size(); ++j) {
        const float count = e.counts[j];
        for (std::size_t i = 0; i < ne0; ++i) v[j * ne0 + i] = count > 0.0f ? e.values[j * ne0 + i] / count : 1.0f;
      }
    } else {
      const std::int64_t ncall = e.ncall;
      for (std::size_t i = 0; i < v.size(); ++i) v[i] = ncall > 0 ? e.values[i] / static_cast<float>(ncall) : e.values[i];
    }
    out.emplace(name, std::move(v));
  }
  return out;
}

// ---- running both ----

struct outcome {
  bool ok = false;
  std::string message;  // llama.cpp's log when it refused
  int exit_code = 0;    // mixprec's
};

outcome run_llama(const std::string& model, const std::string& out, llama_cpp::ftype recipe, const imatrix* im, const std::string& im_path) {
  outcome o;
  try {
    llama_cpp::imatrix_origin origin{im_path, "calibration.txt", 10};
    (void)llama_cpp::quantize(model, out, recipe, im ? llama_quantize_map(*im) : llama_cpp::importance_map{}, origin, 2);
    o.ok = true;
  } catch (const mixprec::error& e) {
    o.message = e.what();
  }
  return o;
}

// The plan giving every tensor llama.cpp quantized the type llama.cpp gave it.
void write_plan_like(const std::string& model, const std::string& quantized, const fs::path& plan_path) {
  const auto src = gguf::file::open(model), q = gguf::file::open(quantized);
  mixprec::plan plan;
  plan.policy = "llama.cpp's recipe";
  plan.unit = "bytes";
  for (const auto& t : q.tensors()) {
    if (t.type == src.at(t.name).type) continue;
    REQUIRE(mixprec::is_supported_ggml_type(t.type));
    const auto type = static_cast<mixprec::ggml_type>(t.type);
    const mixprec::quant_spec s = mixprec::parse_spec(std::string(mixprec::to_string(type)));
    const auto rows = static_cast<mixprec::index_t>(t.rows()), cols = static_cast<mixprec::index_t>(t.row_length());
    plan.entries.push_back({t.name, s, rows, cols, mixprec::quantized_bytes(s, rows, cols), 0.0, 0.0, ""});
  }
  std::ofstream(plan_path) << nlohmann::json(plan).dump();
}

struct comparison {
  std::vector<std::string> differing;  // tensors (name: what differs)
  std::set<std::string> differing_names;
  std::vector<std::string> kv_only_llama, kv_only_mixprec, kv_differing;
  std::size_t tensors = 0;
};

comparison compare(const std::string& source_path, const std::string& theirs_path, const std::string& ours_path) {
  const auto theirs = gguf::file::open(theirs_path), ours = gguf::file::open(ours_path);
  comparison c;
  c.tensors = theirs.tensors().size();
  for (const auto& t : theirs.tensors()) {
    const auto* o = ours.find(t.name);
    if (!o) {
      c.differing.push_back(t.name + ": not in mixprec's file");
      continue;
    }
    if (o->type != t.type || o->dims != t.dims) {
      c.differing.push_back(t.name + ": type/shape");
      continue;
    }
    if (o->bytes.size() != t.bytes.size() || std::memcmp(o->bytes.data(), t.bytes.data(), t.bytes.size()) != 0) {
      const auto ts = static_cast<std::size_t>(gguf::type_traits_of(t.type)->type_size);
      std::size_t blocks = 0;
      for (std::size_t off = 0; off + ts <= t.bytes.size(); off += ts)
        blocks += std::memcmp(o->bytes.data() + off, t.bytes.data() + off, ts) != 0 ? 1 : 0;
      // How far each side's decoding is from the source weights (SQNR, dB): which of the two is worse.
      const auto src = gguf::file::open(source_path).to_float(t.name);
      auto sqnr = [&](const gguf::tensor_info& q) {
        const mixprec::row_matrix back =
            mixprec::ggml::dequantize(static_cast<mixprec::ggml_type>(q.type), q.bytes, src.rows(), src.cols(), q.name);
        const double e = (back - src).cast<double>().squaredNorm();
        return e > 0 ? 10.0 * std::log10(src.cast<double>().squaredNorm() / e) : std::numeric_limits<double>::infinity();
      };
      char db[96];
      std::snprintf(db, sizeof db, " (SQNR llama.cpp %.2f dB, mixprec %.2f dB)", sqnr(t), sqnr(*o));
      c.differing.push_back(t.name + " (" + std::string(gguf::type_traits_of(t.type)->name) + "): " + std::to_string(blocks) + " of " +
                            std::to_string(t.bytes.size() / ts) + " blocks differ" + db);
    }
  }
  if (ours.tensors().size() != theirs.tensors().size()) c.differing.push_back("tensor count");
  for (const auto& d : c.differing) c.differing_names.insert(d.substr(0, d.find_first_of(" :")));
  for (const auto& kv : theirs.kvs()) {
    const auto* v = ours.kvs().find(kv.key);
    if (!v) c.kv_only_llama.push_back(kv.key);
    else if (!(*v == kv.val)) c.kv_differing.push_back(kv.key);
  }
  for (const auto& kv : ours.kvs())
    if (!theirs.kvs().find(kv.key)) c.kv_only_mixprec.push_back(kv.key);
  return c;
}

struct recipe {
  const char* name;
  llama_cpp::ftype type;
};
const recipe recipes[] = {{"Q4_K_M", llama_cpp::ftype::q4_K_M},
                          {"Q5_K_M", llama_cpp::ftype::q5_K_M},
                          {"Q4_0", llama_cpp::ftype::q4_0},
                          {"IQ4_XS", static_cast<llama_cpp::ftype>(30)}};  // LLAMA_FTYPE_MOSTLY_IQ4_XS

enum class expect {
  same_bytes,        // llama.cpp accepts it: mixprec writes its bytes
  zeros_differ,      // the same, but for the all-zero matrices `zeroed` names (documented): llama.cpp
                     // searches them with the zeros, which sets every weight to 0; mixprec without importance
  both_refuse,       // llama.cpp refuses it: so does mixprec
  mixprec_extends,   // llama.cpp refuses it, mixprec accepts it (documented): not compared
  mixprec_refuses,   // llama.cpp accepts it, mixprec refuses it with a parse error (documented)
};

struct edge_case {
  std::string label;
  imatrix im;
  expect want;
  std::map<std::string, std::vector<int>> zeroed{};  // zeros_differ: tensor -> its all-zero matrices (experts)
};

std::vector<edge_case> edge_cases() {
  std::vector<edge_case> out;
  const auto gguf_full = complete(true), legacy_full = complete(false);
  out.push_back({"complete, GGUF", gguf_full, expect::same_bytes});
  out.push_back({"complete, legacy .dat", legacy_full, expect::same_bytes});
  {  // (a) tensors without an entry: llama.cpp "did not find weights", quantizes them without
    auto im = gguf_full;
    for (const char* n : {"blk.0.attn_k.weight", "blk.1.ffn_up_exps.weight", "output.weight"}) im.entries.erase(n);
    out.push_back({"(a) entries missing", im, expect::same_bytes});
  }
  {  // (b) an entry of zeros (count > 0: no column was ever active), dense
    auto im = gguf_full;
    auto& e = im.entries.at("blk.0.attn_q.weight");
    std::fill(e.values.begin(), e.values.end(), 0.0f);
    out.push_back({"(b) all-zero entry, dense, GGUF", im, expect::zeros_differ, {{"blk.0.attn_q.weight", {0}}}});
  }
  {  // (b) zero columns: half of one matrix's, every 7th of another's, a whole 32-block of one expert's
    auto im = gguf_full;
    auto& up = im.entries.at("blk.0.ffn_up.weight");
    for (std::size_t i = 0; i < n_embd / 2; ++i) up.values[i] = 0.0f;
    auto& o = im.entries.at("blk.0.attn_output.weight");
    for (std::size_t i = 0; i < o.values.size(); i += 7) o.values[i] = 0.0f;
    auto& d = im.entries.at("blk.1.ffn_down_exps.weight");
    for (std::size_t i = 0; i < 32; ++i) d.values[3 * n_ff + 64 + i] = 0.0f;
    out.push_back({"(b) some columns zero, GGUF", im, expect::same_bytes});
  }
  {  // (b) legacy: one expert's slice all zero (merged experts: nval = ne0 * n_expert)
    auto im = legacy_full;
    auto& e = im.entries.at("blk.1.ffn_up_exps.weight");
    std::fill(e.values.begin() + 2 * n_embd, e.values.begin() + 3 * n_embd, 0.0f);
    out.push_back({"(b) all-zero expert slice, legacy", im, expect::zeros_differ, {{"blk.1.ffn_up_exps.weight", {2}}}});
  }
  {  // (c) experts no token was routed to: count 0 (llama-imatrix writes zero sums there); llama-quantize uses 1
    auto im = gguf_full;
    auto& g = im.entries.at("blk.1.ffn_gate_exps.weight");
    g.counts[1] = 0.0f;
    std::fill(g.values.begin() + n_embd, g.values.begin() + 2 * n_embd, 0.0f);
    auto& d = im.entries.at("blk.1.ffn_down_exps.weight");
    d.counts[0] = d.counts[1] = 0.0f;
    std::fill(d.values.begin(), d.values.begin() + 2 * n_ff, 0.0f);
    out.push_back({"(c) expert counts 0, GGUF", im, expect::same_bytes});
  }
  {  // (c) a dense matrix with count 0
    auto im = gguf_full;
    auto& e = im.entries.at("blk.0.ffn_gate.weight");
    e.counts[0] = 0.0f;
    std::fill(e.values.begin(), e.values.end(), 0.0f);
    out.push_back({"(c) dense count 0, GGUF", im, expect::same_bytes});
  }
  {  // (c) legacy ncall 0: the stored values are used as they are
    auto im = legacy_full;
    im.entries.at("blk.0.attn_v.weight").ncall = 0;
    im.entries.at("blk.1.ffn_gate_exps.weight").ncall = 0;
    out.push_back({"(c) ncall 0, legacy", im, expect::same_bytes});
  }
  {  // (c) legacy ncall 0 and values 0 (an entry that saw nothing)
    auto im = legacy_full;
    auto& e = im.entries.at("blk.0.ffn_down.weight");
    e.ncall = 0;
    std::fill(e.values.begin(), e.values.end(), 0.0f);
    out.push_back({"(c) ncall 0 and zeros, legacy", im, expect::zeros_differ, {{"blk.0.ffn_down.weight", {0}}}});
  }
  {  // (d) entries for tensors the model does not have (any length): ignored
    auto im = gguf_full;
    im.entries["blk.7.attn_q.weight"] = entry{std::vector<float>(n_embd, 3.0f), {100.0f}, 0};
    im.entries["mm.proj.weight"] = entry{std::vector<float>(100, 2.0f), {50.0f}, 0};
    out.push_back({"(d) entries for absent tensors", im, expect::same_bytes});
  }
  {  // (d) an entry for the token embedding (llama-imatrix records none): used like any other
    auto im = gguf_full;
    im.entries["token_embd.weight"] = entry{std::vector<float>(n_embd, 0.0f), {1000.0f}, 0};
    std::mt19937 gen(9);
    std::uniform_real_distribution<float> u(1.0f, 3000.0f);
    for (auto& v : im.entries["token_embd.weight"].values) v = u(gen);
    out.push_back({"(d) token_embd entry", im, expect::same_bytes});
  }
  {  // (d) a token_embd entry of the wrong length: llama.cpp quantizes token_embd without (its only exemption)
    auto im = gguf_full;
    im.entries["token_embd.weight"] = entry{std::vector<float>(n_vocab, 5.0f), {10.0f}, 0};
    out.push_back({"(d) token_embd entry, wrong length", im, expect::same_bytes});
  }
  {  // (d) a matrix's entry of the wrong length: llama.cpp stops ("imatrix size ... is different")
    auto im = gguf_full;
    im.entries.at("blk.0.attn_k.weight") = entry{std::vector<float>(n_embd / 2, 5.0f), {10.0f}, 0};
    out.push_back({"(d) wrong length", im, expect::both_refuse});
  }
  {  // (d) an expert stack's entry of ne0 values (not ne0 x n_expert): llama.cpp stops; mixprec shares it
    auto im = gguf_full;
    im.entries.at("blk.1.ffn_up_exps.weight") = entry{std::vector<float>(n_embd, 5.0f), {10.0f}, 0};
    out.push_back({"(d) expert entry of ne0 values", im, expect::mixprec_extends});
  }
  {  // (e) NaN / Inf: llama.cpp stops ("imatrix contains non-finite value"), whatever tensor the entry names
    auto im = legacy_full;
    im.entries.at("blk.0.attn_q.weight").values[17] = std::numeric_limits<float>::quiet_NaN();
    out.push_back({"(e) NaN, legacy", im, expect::both_refuse});
    auto inf = gguf_full;
    inf.entries.at("blk.1.ffn_down_exps.weight").values[n_ff + 3] = std::numeric_limits<float>::infinity();
    out.push_back({"(e) Inf, GGUF", inf, expect::both_refuse});
    auto absent = gguf_full;
    absent.entries["blk.9.attn_q.weight"] = entry{std::vector<float>(n_embd, std::numeric_limits<float>::quiet_NaN()), {3.0f}, 0};
    out.push_back({"(e) NaN in an absent tensor's entry", absent, expect::both_refuse});
  }
  {  // (e) NaN in the sums of an expert of count 0: llama-quantize never reads them (it uses 1)
    auto im = gguf_full;
    auto& g = im.entries.at("blk.1.ffn_gate_exps.weight");
    g.counts[2] = 0.0f;
    std::fill(g.values.begin() + 2 * n_embd, g.values.begin() + 3 * n_embd, std::numeric_limits<float>::quiet_NaN());
    out.push_back({"(e) NaN under count 0, GGUF", im, expect::mixprec_refuses});
  }
  {  // not sums of squares: a negative value; a count that is not a whole number
    auto im = legacy_full;
    im.entries.at("blk.0.attn_q.weight").values[5] = -1.0f;
    out.push_back({"negative value, legacy", im, expect::mixprec_refuses});
    auto frac = gguf_full;
    frac.entries.at("blk.0.attn_q.weight").counts[0] = 2.5f;
    out.push_back({"fractional count, GGUF", frac, expect::mixprec_refuses});
  }
  return out;
}

const char* text(expect e) {
  switch (e) {
    case expect::same_bytes: return "same bytes";
    case expect::zeros_differ: return "all-zero matrices differ";
    case expect::both_refuse: return "both refuse";
    case expect::mixprec_extends: return "mixprec extends";
    case expect::mixprec_refuses: return "mixprec refuses";
  }
  return "?";
}

}  // namespace

TEST_CASE("interop: mixprec quantize --imatrix writes llama-quantize's bytes for imatrix edge cases", "[interop][llama][imatrix]") {
  const fs::path dir = work_dir();
  const std::string model = write_model(dir);

  // The premise: with a complete imatrix llama.cpp's bytes differ from its bytes without one, for
  // every recipe (the importance is used), and mixprec writes its bytes without one too.
  for (const auto& r : recipes) {
    INFO(r.name);
    const std::string plain = (dir / (std::string("plain-") + r.name + ".gguf")).string();
    const std::string weighted = (dir / (std::string("weighted-") + r.name + ".gguf")).string();
    const auto im = complete(true);
    const std::string im_path = write_imatrix(im, dir / "complete.gguf");
    const outcome a = run_llama(model, plain, r.type, nullptr, {});
    const outcome b = run_llama(model, weighted, r.type, &im, im_path);
    REQUIRE(a.ok);
    REQUIRE(b.ok);
    CHECK(!compare(model, plain, weighted).differing.empty());
    const fs::path plan = dir / "plain-plan.json";
    write_plan_like(model, plain, plan);
    const std::string ours = (dir / "ours-plain.gguf").string();
    REQUIRE(mixprec::test::tool({"quantize", model, "--plan", plan.string(), "-o", ours, "--threads", "2"}) == 0);
    const auto c = compare(model, plain, ours);
    for (const auto& d : c.differing) UNSCOPED_INFO(d);
    CHECK(c.differing.empty());
    CHECK(c.kv_only_llama.empty());
    CHECK(c.kv_only_mixprec.empty());
    CHECK(c.kv_differing.empty());
  }

  // The table, printed at the end (the tool prints its own summary for every run).
  std::string table = "| case | recipe | expected | llama.cpp | mixprec | tensors differing |\n|---|---|---|---|---|---|\n";
  int index = 0;
  for (const auto& ec : edge_cases()) {
    const std::string im_path = write_imatrix(ec.im, dir / ("case" + std::to_string(index++) + (ec.im.gguf ? ".gguf" : ".dat")));
    for (const auto& r : recipes) {
      INFO(ec.label << ", " << r.name);
      const std::string theirs = (dir / "theirs.gguf").string(), ours = (dir / "ours.gguf").string();
      fs::remove(theirs);
      fs::remove(ours);
      const outcome lc = run_llama(model, theirs, r.type, &ec.im, im_path);
      // The plan: llama.cpp's types; when llama.cpp refused, its types without this imatrix.
      const std::string typed = lc.ok ? theirs : (dir / (std::string("plain-") + r.name + ".gguf")).string();
      const fs::path plan = dir / "plan.json";
      write_plan_like(model, typed, plan);
      const int rc = mixprec::test::tool({"quantize", model, "--plan", plan.string(), "--imatrix", im_path, "-o", ours, "--threads", "2"});
      std::string differing = "-";
      comparison c;
      if (lc.ok && rc == 0) {
        c = compare(model, theirs, ours);
        differing = c.differing.empty() ? "none" : "";
        for (const auto& d : c.differing) differing += (differing.empty() ? "" : "; ") + d;
      }
      table += "| " + ec.label + " | " + r.name + " | " + text(ec.want) + " | " + (lc.ok ? "quantizes" : "refuses") + " | " +
               (rc == 0 ? std::string("quantizes") : "exit " + std::to_string(rc)) + " | " + differing + " |\n";
      if (!lc.ok) UNSCOPED_INFO("llama.cpp: " << lc.message.substr(0, 400));
      switch (ec.want) {
        case expect::same_bytes:
          CHECK(lc.ok);
          CHECK(rc == 0);
          for (const auto& d : c.differing) UNSCOPED_INFO(d);
          CHECK(c.differing.empty());
          // llama-quantize records the imatrix in quantize.imatrix.* (file, dataset, entries, chunks);
          // every other key is the same.
          for (const auto& k : c.kv_only_llama) CHECK(k.rfind("quantize.imatrix.", 0) == 0);
          CHECK(c.kv_only_mixprec.empty());
          CHECK(c.kv_differing.empty());
          break;
        case expect::zeros_differ: {
          CHECK(lc.ok);
          CHECK(rc == 0);
          if (!lc.ok || rc != 0) break;
          // Only the all-zero matrices' tensors differ; there llama.cpp's weights are all 0 and mixprec's are not.
          std::set<std::string> want;
          for (const auto& [name, experts] : ec.zeroed) want.insert(name);
          CHECK(c.differing_names == want);
          const auto theirs_file = gguf::file::open(theirs), ours_file = gguf::file::open(ours);
          for (const auto& [name, experts] : ec.zeroed) {
            const auto& t = theirs_file.at(name);
            const auto& o = ours_file.at(name);
            const auto rows = static_cast<mixprec::index_t>(t.rows()), cols = static_cast<mixprec::index_t>(t.row_length());
            const auto type = static_cast<mixprec::ggml_type>(t.type);
            const mixprec::row_matrix a = mixprec::ggml::dequantize(type, t.bytes, rows, cols, name);
            const mixprec::row_matrix b = mixprec::ggml::dequantize(type, o.bytes, rows, cols, name);
            const auto per = rows / static_cast<mixprec::index_t>(t.dims.size() == 3 ? t.dims[2] : 1);
            for (int m : experts) {
              INFO(name << ", matrix " << m);
              CHECK(a.middleRows(m * per, per).cwiseAbs().maxCoeff() == 0.0f);
              CHECK(b.middleRows(m * per, per).cwiseAbs().maxCoeff() > 0.0f);
            }
            // The other matrices of the tensor are llama.cpp's bytes.
            const std::size_t matrix_bytes = t.bytes.size() / static_cast<std::size_t>(rows / per);
            for (mixprec::index_t m = 0; m < rows / per; ++m)
              if (std::find(experts.begin(), experts.end(), static_cast<int>(m)) == experts.end())
                CHECK(std::memcmp(t.bytes.data() + m * matrix_bytes, o.bytes.data() + m * matrix_bytes, matrix_bytes) == 0);
          }
          break;
        }
        case expect::both_refuse:
          CHECK_FALSE(lc.ok);
          CHECK(rc != 0);
          CHECK_FALSE(fs::exists(ours));
          break;
        case expect::mixprec_extends:
          CHECK_FALSE(lc.ok);
          break;
        case expect::mixprec_refuses:
          CHECK(lc.ok);
          CHECK(rc == 3);  // a damaged input, named by the parse error
          CHECK_FALSE(fs::exists(ours));
          break;
      }
    }
  }
  std::printf("\n%s", table.c_str());
  fs::remove_all(dir);
}
