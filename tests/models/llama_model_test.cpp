// The library's LLaMA engine (mixprec/models/llama.hpp) on the seeded synthetic model of
// support/tiny_llama.hpp through both loaders: the llama2.c checkpoint and the GGUF that `mixprec convert`
// (tools/mixprec/convert.hpp, as llama.cpp's convert-llama2c-to-ggml writes it) makes of it, checked
// against the plain double-precision forward pass of support/naive_llama.hpp; quantized GGUFs run from
// their ggml bytes; malformed GGUFs give typed errors; seeded "llama" (Llama 3), "qwen2", "qwen3" and "phi3" GGUFs
// of support/tiny_arch.hpp against the same reference.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "support/errors.hpp"
#include "support/naive_llama.hpp"
#include "support/tiny_arch.hpp"
#include "support/tiny_llama.hpp"
#include "support/tiny_moe.hpp"

#include <unistd.h>

#include "tools/mixprec/convert.hpp"
#include "mixprec/formats/ggml.hpp"
#include "mixprec/io/gguf.hpp"
#include "mixprec/models/calibration.hpp"
#include "mixprec/models/llama.hpp"
#include "mixprec/models/llama/backward.hpp"

namespace {

namespace fs = std::filesystem;
namespace gguf = mixprec::gguf;
namespace models = mixprec::models;
using mixprec::errc;
using mixprec::ggml_type;
using mixprec::test::naive_llama;

// A scratch folder for this process, removed at exit.
const fs::path& work_dir() {
  static const struct dir {
    fs::path p = fs::temp_directory_path() / ("mixprec_models_test_" + std::to_string(::getpid()));
    dir() { fs::create_directories(p); }
    ~dir() { fs::remove_all(p); }
  } d;
  return d.p;
}

// A teacher-forcing input of n positions: BOS, the first 39 ids of `greedy`, then a fixed pattern.
std::vector<int> forced_sequence(const std::vector<int>& greedy, int n) {
  std::vector<int> in = {1};
  in.insert(in.end(), greedy.begin(), greedy.begin() + 39);
  for (int p = 40; p < n; ++p) in.push_back((p * 37) % 512);
  return in;
}

// What the naive double-precision forward pass says about a checkpoint: greedy ids from BOS, how close
// to a tie their choices came, and the logits of a teacher-forced sequence over half the context (128
// positions: forced_sequence of the greedy ids).
struct oracle {
  std::vector<int> greedy;
  double min_gap = 0.0;
  std::vector<int> forced;
  std::vector<std::vector<double>> logits;
};
oracle naive_oracle(const mixprec::llama2c::checkpoint& ck) {
  oracle r;
  naive_llama n(ck);
  const auto g = n.greedy(40);
  r.greedy = g.ids;
  r.min_gap = g.min_gap;
  r.forced = forced_sequence(g.ids, 128);
  r.logits = n.logits(r.forced);
  return r;
}

// The synthetic model (seed 1, the shapes of llama2.c's 260K example) in memory, as llama2.c files, as
// the F32 GGUF `mixprec convert` makes of them, and its oracle; made once per variant.
//   separate classifier (tiny_llama's default, and the default here): logits of a few units, a varied greedy path.
//   shared classifier (as the 260K model has it): every token's own embedding
//     dominates its logits (after BOS: BOS's logit ~42, the others' spread ~8), so greedy decoding
//     repeats BOS; good for comparing logits, not for decoding.
struct variant {
  mixprec::llama2c::checkpoint ck;
  mixprec::test::tiny_llama_files files;
  std::string gguf;
  oracle naive;
};
const variant& tiny(bool shared_classifier = false) {
  auto make = [](bool shared) {
    mixprec::test::tiny_llama_options o;
    o.shared_classifier = shared;
    variant v;
    v.ck = mixprec::test::tiny_llama(o);
    const fs::path dir = work_dir() / (shared ? "shared" : "separate");
    v.files = mixprec::test::write_tiny_llama(dir, o);
    v.gguf = (dir / "tiny_llama-f32.gguf").string();
    mixprec_cli::convert_llama2c(v.files.model, v.files.tokenizer, v.gguf);
    v.naive = naive_oracle(v.ck);
    return v;
  };
  static const variant separate = make(false), shared = make(true);
  return shared_classifier ? shared : separate;
}

// The first `n` positions of the teacher-forced sequence.
std::vector<int> forced_input(std::size_t n) {
  const std::vector<int>& f = tiny().naive.forced;
  return {f.begin(), f.begin() + static_cast<std::ptrdiff_t>(n)};
}

// Largest |a - b| relative to the largest |b|.
double relative_gap(const mixprec::row_matrix& a, const mixprec::row_matrix& b) {
  return static_cast<double>((a - b).cwiseAbs().maxCoeff()) / std::max(1e-30, static_cast<double>(b.cwiseAbs().maxCoeff()));
}

// The same against the naive reference's logits (its first a.rows() positions).
double relative_gap(const mixprec::row_matrix& a, const std::vector<std::vector<double>>& ref) {
  REQUIRE(static_cast<std::size_t>(a.rows()) <= ref.size());
  double diff = 0.0, scale = 1e-30;
  for (mixprec::index_t p = 0; p < a.rows(); ++p) {
    const auto& row = ref[static_cast<std::size_t>(p)];
    REQUIRE(static_cast<std::size_t>(a.cols()) == row.size());
    for (mixprec::index_t v = 0; v < a.cols(); ++v) {
      diff = std::max(diff, std::abs(static_cast<double>(a(p, v)) - row[static_cast<std::size_t>(v)]));
      scale = std::max(scale, std::abs(row[static_cast<std::size_t>(v)]));
    }
  }
  return diff / scale;
}

// The token-by-token pass (forward with the KV cache) over a sequence, as a T x vocab matrix.
mixprec::row_matrix stepped_logits(models::llama_engine& e, const std::vector<int>& in) {
  e.reset();
  mixprec::row_matrix out(static_cast<mixprec::index_t>(in.size()), e.config().vocab_size);
  for (std::size_t p = 0; p < in.size(); ++p) out.row(static_cast<mixprec::index_t>(p)) = e.forward(in[p], static_cast<int>(p)).transpose();
  return out;
}

// The engine may differ from the double-precision reference by FP32 rounding only: this much of the
// largest |logit|.
constexpr double naive_tolerance = 1e-4;

// `src` re-encoded: every 2-D tensor whose rows `type` tiles becomes `type` (ggml's bytes, by mixprec's
// quantizer); the rest (norms, ffn_down's 172-long rows) is copied.
std::string quantized_gguf(const std::string& src, ggml_type type, const std::string& name) {
  const auto g = gguf::file::open(src);
  const std::string out = (work_dir() / name).string();
  std::ofstream os(out, std::ios::binary);
  gguf::rewrite(
      g, g.kvs(), os,
      [&](const gguf::tensor_info& t) {
        const bool fits = t.dims.size() == 2 && t.row_length() % static_cast<std::uint64_t>(mixprec::ggml::block_size(type)) == 0;
        return fits ? static_cast<std::uint32_t>(type) : t.type;
      },
      [&](const gguf::tensor_info& t, std::uint32_t to) { return mixprec::ggml::quantize(static_cast<ggml_type>(to), g.to_float(t.name), std::nullopt, t.name); });
  os.close();
  return out;
}

// A copy of `src` with edited metadata and tensors: `edit_kvs` changes the KVs, `keep` drops tensors,
// `edit` may change a tensor's declared dims/type (its bytes must then be given by `bytes_of`).
struct edits {
  std::function<void(gguf::metadata&)> kvs = {};
  std::function<bool(const gguf::tensor_info&)> keep = {};
  std::function<void(gguf::tensor_source&)> tensor = {};
  std::vector<gguf::tensor_source> extra = {};
};
std::string edited_gguf(const std::string& src, const edits& e, const std::string& name) {
  const auto g = gguf::file::open(src);
  gguf::metadata kvs = g.kvs();
  if (e.kvs) e.kvs(kvs);
  std::vector<gguf::tensor_source> ts;
  for (const auto& t : g.tensors()) {
    if (e.keep && !e.keep(t)) continue;
    gguf::tensor_source s;
    s.name = t.name;
    s.type = t.type;
    s.dims = t.dims;
    s.bytes = t.bytes;
    if (e.tensor) e.tensor(s);
    ts.push_back(std::move(s));
  }
  for (const auto& x : e.extra) ts.push_back(x);
  const std::string out = (work_dir() / name).string();
  gguf::write(out, kvs, ts);
  return out;
}

// An F32 tensor of `dims` (ne0 first) holding `value` everywhere, for edits::extra; its values live as
// long as the process.
gguf::tensor_source constant_tensor(std::string name, std::vector<std::uint64_t> dims, float value) {
  static std::deque<std::vector<float>> values;
  std::size_t n = 1;
  for (const auto d : dims) n *= static_cast<std::size_t>(d);
  values.emplace_back(n, value);
  gguf::tensor_source t;
  t.name = std::move(name);
  t.dims = std::move(dims);
  t.bytes = std::as_bytes(std::span<const float>(values.back()));
  return t;
}

// The model with every matrix decoded to FP32 (the reference for a quantized file).
models::llama_model decoded(const models::llama_model& m) {
  models::llama_model d = m;
  auto fp = [](models::llama_matrix& x) { x = models::llama_matrix(x.name(), x.to_float()); };
  fp(d.token_embd);
  if (d.output) fp(*d.output);
  for (auto& l : d.layers)
    for (auto* x : {&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down}) fp(*x);
  return d;
}

}  // namespace

TEST_CASE("llama2.c checkpoint and its GGUF match the naive double-precision reference and each other", "[models][llama]") {
  for (const bool shared : {false, true}) {
    DYNAMIC_SECTION((shared ? "shared" : "separate") << " classifier") {
      const variant& v = tiny(shared);
      const models::llama_model a = models::from_llama2c(v.ck);
      const models::llama_model b = models::load_gguf(v.gguf);
      const models::llama_model c = models::load_llama(v.gguf);  // by the magic
      const mixprec::test::tiny_llama_options o;  // the shapes tiny() made the model with
      CHECK(b.config.dim == o.dim);
      CHECK(b.config.hidden_dim == o.hidden_dim);
      CHECK(b.config.n_layers == o.n_layers);
      CHECK(b.config.n_heads == o.n_heads);
      CHECK(b.config.n_kv_heads == o.n_kv_heads);
      CHECK(b.config.vocab_size == o.vocab_size);
      CHECK(b.config.context_length == o.seq_len);
      CHECK(b.config.rope_dim == o.dim / o.n_heads);  // the head size
      CHECK(b.config.rope_theta == 10000.0f);
      CHECK(b.config.rms_eps == 1e-5f);
      CHECK(b.output.has_value());  // the converter always writes output.weight
      CHECK(b.layers[2].wk.name() == "blk.2.attn_k.weight");
      CHECK(a.layers[2].wk.name() == "layers.2.wk");
      CHECK(c.layers[0].down.is_fp32());
      CHECK((a.output->fp32() == a.token_embd.fp32()) == shared);

      // The reference's greedy choices are far from ties (the engine's FP32 logits are within ~1e-5 of
      // the reference's), so rounding cannot flip them.
      const oracle& ref = v.naive;
      INFO("smallest gap between the two largest logits along the greedy path: " << ref.min_gap);
      REQUIRE(ref.min_gap > 1e-3);
      models::llama_engine ea(a), eb(b);
      const std::vector<int> ids_a = models::greedy(ea, 40), ids_b = models::greedy(eb, 40);
      CHECK(ids_a == ref.greedy);
      CHECK(ids_b == ref.greedy);
      // Teacher-forced over 128 positions: the reference's logits up to FP32 rounding, at once (prefill)
      // and token by token (KV cache); the two loaders' models give the same, bit for bit.
      const std::vector<int>& in = ref.forced;
      const mixprec::row_matrix la = ea.logits(in), lb = eb.logits(in);
      CHECK(la.rows() == 128);
      const double gap_prefill = relative_gap(la, ref.logits);
      const mixprec::row_matrix sa = stepped_logits(ea, in);
      const double gap_stepped = relative_gap(sa, ref.logits);
      std::printf("%s classifier: relative gap to the naive reference, prefill %.3g, token by token %.3g\n", shared ? "shared" : "separate",
                  gap_prefill, gap_stepped);
      CHECK(gap_prefill < naive_tolerance);
      CHECK(gap_stepped < naive_tolerance);
      CHECK(la == lb);
      CHECK(ea.matrix_bytes() == eb.matrix_bytes());
      // Loading the checkpoint by path: the same engine, over the whole context too.
      const models::llama_model a2 = models::load_llama(v.files.model);
      models::llama_engine ea2(a2);
      CHECK(ea2.logits(in) == la);
      const std::vector<int> whole = forced_sequence(ref.greedy, 256);
      CHECK(ea2.logits(whole) == eb.logits(whole));
      // The context is the model's: position 256 does not exist.
      CHECK_THROWS_AS(ea.forward(1, 256), mixprec::error);
      CHECK_THROWS_AS(ea.forward(512, 0), mixprec::error);
    }
  }
}

TEST_CASE("a GGUF without output.weight runs the tied token embedding as the classifier", "[models][llama]") {
  const std::string tied = edited_gguf(tiny().gguf, {.keep = [](const gguf::tensor_info& t) { return t.name != "output.weight"; }}, "tied.gguf");
  const models::llama_model m = models::load_gguf(tied);
  CHECK_FALSE(m.output.has_value());
  CHECK(m.classifier().name() == "token_embd.weight");
  CHECK(m.matrices().back()->name() == "token_embd.weight");
  models::llama_engine e(m);
  // The reference: the checkpoint with its classifier replaced by the embedding.
  mixprec::llama2c::checkpoint ck = tiny().ck;
  ck.classifier = ck.token_embedding;
  naive_llama ref(ck);
  const std::vector<int> in = forced_input(64);
  const mixprec::row_matrix l = e.logits(in);
  CHECK(relative_gap(l, ref.logits(in)) < naive_tolerance);
  CHECK(models::greedy(e, 40) == ref.greedy(40).ids);
  const models::llama_model untied = models::load_gguf(tiny().gguf);
  models::llama_engine eu(untied);
  CHECK(relative_gap(eu.logits(in), l) > 0.1);  // the classifier matters
  // A spec for the tied tensor quantizes the classifier (the embedding lookup stays as stored).
  models::llama_engine q(m, {{"token_embd.weight", mixprec::parse_spec("q8_0")}});
  CHECK(q.matrix_bytes() < e.matrix_bytes());
}

TEST_CASE("q8_0 and q4_0 GGUFs run from their ggml bytes and match FP32 on the decoded weights", "[models][llama][ggml]") {
  const std::vector<int> in = forced_input(40);
  std::map<ggml_type, double> drifts;
  std::map<ggml_type, int> top1;
  models::llama_model f32 = models::load_gguf(tiny().gguf);
  models::llama_engine ef(f32);
  const mixprec::row_matrix lf = ef.logits(in);
  for (const ggml_type type : {ggml_type::q8_0, ggml_type::q4_0, ggml_type::f16, ggml_type::bf16}) {
    const std::string name = std::string(mixprec::to_string(type));
    INFO(name);
    const models::llama_model q = models::load_gguf(quantized_gguf(tiny().gguf, type, "tiny_llama-" + name + ".gguf"));
    CHECK(q.layers[0].wq.spec() == mixprec::ggml_spec(type));  // kept as ggml blocks, not decoded
    CHECK(q.token_embd.spec() == mixprec::ggml_spec(type));
    const bool block = mixprec::ggml::block_size(type) > 1;
    CHECK(q.layers[0].down.is_fp32() == block);  // 172-long rows: no 32-block fits, left F32
    // FP32 activations: the row-decode GEMV (the default quantizes block types' activations as ggml does).
    models::llama_engine eq(q, {}, {.activations = mixprec::activation_type::fp32});
    const models::llama_model d = decoded(q);
    models::llama_engine ed(d);
    const mixprec::row_matrix lq = eq.logits(in), ld = ed.logits(in);
    const double diff = (lq - ld).cwiseAbs().maxCoeff();
    const double drift = drifts[type] = (lq - lf).cwiseAbs().maxCoeff();
    std::printf("%s: largest |logit difference| row-decode GEMV vs FP32 on the decoded weights %.3g; vs the FP32 model %.3g; "
                "matrix bytes %zu (FP32 %zu)\n",
                name.c_str(), diff, drift, eq.matrix_bytes(), ef.matrix_bytes());
    CHECK(diff < 1e-5 * ld.cwiseAbs().maxCoeff());  // the same weights; only the summation order differs
    CHECK(eq.matrix_bytes() < ef.matrix_bytes() / (type == ggml_type::q4_0 ? 3 : 1) * (block ? 1 : 0.51));
    // The quantized engine is exact on its own weights: the naive reference on the decoded values gives
    // its logits and its greedy ids.
    naive_llama nd(d);
    const auto greedy_d = nd.greedy(40);
    INFO("smallest top-2 gap along the decoded model's greedy path " << greedy_d.min_gap);
    REQUIRE(greedy_d.min_gap > 1e-4);  // the engine's logits are within ~1e-5 of the reference's
    CHECK(models::greedy(eq, 40) == greedy_d.ids);
    CHECK(relative_gap(lq, nd.logits(in)) < naive_tolerance);
    // How often the quantized model's top-1 is the FP32 model's, teacher-forced over 128 positions.
    const mixprec::row_matrix all = eq.logits(tiny().naive.forced);
    int agree = 0;
    for (mixprec::index_t p = 0; p < all.rows(); ++p) {
      const auto& ref = tiny().naive.logits[static_cast<std::size_t>(p)];
      mixprec::index_t top = 0;
      all.row(p).maxCoeff(&top);
      agree += std::max_element(ref.begin(), ref.end()) - ref.begin() == top ? 1 : 0;
    }
    top1[type] = agree;
    std::printf("%s: top-1 of the FP32 model at %d of %d positions\n", name.c_str(), agree, static_cast<int>(all.rows()));

    // The same tensor re-quantized by a spec on the F32 model: the same bytes, so the same logits.
    std::map<std::string, mixprec::quant_spec> specs;
    for (const models::llama_matrix* m : f32.matrices())
      if (mixprec::fits(mixprec::ggml_spec(type), m->cols())) specs[m->name()] = mixprec::ggml_spec(type);
    models::llama_engine es(f32, specs);
    CHECK(es.matrix_bytes() == eq.matrix_bytes());
    const mixprec::row_matrix ls = es.logits(in);
    // The embedding lookup differs (F32 here, decoded blocks there): compare with the quantized file run on
    // the F32 embedding.
    models::llama_model mixed = q;
    mixed.token_embd = f32.token_embd;
    models::llama_engine em(mixed);
    CHECK(em.logits(in) == ls);
  }
  // Fewer bits, more drift from the FP32 logits and fewer FP32 top-1 choices kept: f16 (11-bit
  // significands), bf16 (8), q8_0, q4_0.
  CHECK(drifts[ggml_type::f16] < drifts[ggml_type::bf16]);
  CHECK(drifts[ggml_type::bf16] < drifts[ggml_type::q8_0]);
  CHECK(drifts[ggml_type::q8_0] < drifts[ggml_type::q4_0]);
  CHECK(top1[ggml_type::f16] >= top1[ggml_type::bf16]);
  CHECK(top1[ggml_type::bf16] >= top1[ggml_type::q8_0]);
  CHECK(top1[ggml_type::q8_0] > top1[ggml_type::q4_0]);
  CHECK(top1[ggml_type::q8_0] >= 0.9 * 128);
  CHECK(top1[ggml_type::q4_0] >= 0.5 * 128);
}

TEST_CASE("engine options: specs, observers, cache positions", "[models][llama]") {
  const models::llama_model m = models::load_gguf(tiny().gguf);
  CHECK_THROWS_WITH(models::llama_engine(m, {{"blk.9.attn_q.weight", mixprec::parse_spec("int8")}}), Catch::Contains("blk.9.attn_q.weight"));
  // fp32 spec: as stored for an F32 matrix.
  models::llama_engine e(m, {{"blk.0.attn_q.weight", mixprec::parse_spec("fp32")}}, {.max_context = 16});
  CHECK(e.max_context() == 16);
  std::map<std::string, int> seen;
  e.observe([&](const std::string& name, const float*, mixprec::index_t n) {
    ++seen[name];
    if (name == "blk.1.ffn_down.weight") CHECK(n == 172);
  });
  const Eigen::VectorXf first = e.forward(1, 0);
  e.forward(319, 1);
  CHECK(e.position() == 2);
  CHECK(seen.size() == 29);
  CHECK(seen["output.weight"] == 2);
  // Going back to position 0 recomputes the same logits; skipping ahead is refused.
  CHECK(e.forward(1, 0) == first);
  CHECK(e.position() == 1);
  CHECK_THROWS_AS(e.forward(1, 2), mixprec::error);
  CHECK_THROWS_AS(e.forward(1, 16), mixprec::error);
}

TEST_CASE("prefill, then decode: logits() leaves the KV cache that forward() continues from", "[models][llama]") {
  const std::vector<int> in = forced_sequence(tiny().naive.greedy, 160);
  const models::llama_model m = models::load_gguf(tiny().gguf);
  models::llama_engine stepper(m), e(m);
  const mixprec::row_matrix stepped = stepped_logits(stepper, in);
  const std::vector<int> prefix(in.begin(), in.begin() + 100);
  (void)e.logits(prefix);
  CHECK(e.position() == 100);
  // A run from a layer input in between changes no cached key or value.
  mixprec::row_matrix other = e.embed(std::vector<int>(in.rbegin(), in.rbegin() + 50));
  e.run_layer(0, other);
  mixprec::row_matrix continued(60, m.config.vocab_size);
  for (int p = 100; p < 160; ++p) continued.row(p - 100) = e.forward(in[static_cast<std::size_t>(p)], p).transpose();
  INFO("relative gap " << relative_gap(continued, stepped.bottomRows(60)));
  CHECK(relative_gap(continued, stepped.bottomRows(60)) < 1e-5);
  CHECK(e.position() == 160);
  // Going back into the prefilled positions recomputes from the cache as decoding would.
  CHECK(relative_gap(mixprec::row_matrix(e.forward(in[50], 50).transpose()), stepped.middleRows(50, 1)) < 1e-5);
  CHECK(e.position() == 51);
}

TEST_CASE("a sequence at once (prefill) computes the token-by-token pass; restarts from a cached layer input", "[models][llama]") {
  const std::vector<int> in = forced_sequence(tiny().naive.greedy, 256);  // the whole context
  const models::llama_model m = models::load_gguf(tiny().gguf);
  models::llama_engine e(m);
  const mixprec::row_matrix all = e.logits(in), stepped = stepped_logits(e, in);
  INFO("relative gap " << relative_gap(all, stepped));
  CHECK(relative_gap(all, stepped) < 1e-5);
  // A stored q8_0 matrix (gemm's row decode) and a re-quantized one (quantized_linear) alike.
  models::llama_model q = m;
  q.layers[1].wv = models::llama_matrix(q.layers[1].wv.name(), mixprec::quantize(m.layers[1].wv.fp32(), mixprec::parse_spec("q8_0")));
  models::llama_engine eq(q, {}, {.activations = mixprec::activation_type::fp32}),
      es(m, {{"blk.3.attn_output.weight", mixprec::parse_spec("int4/g32/sym")}});
  CHECK(relative_gap(eq.logits(in), stepped_logits(eq, in)) < 1e-5);
  // With ggml's quantized activations each token's product is gemv's bit for bit, but the activation
  // codes round what differs upstream by 1e-7: the two passes stay close, not within 1e-5.
  models::llama_engine ea(q);
  CHECK(relative_gap(ea.logits(in), stepped_logits(ea, in)) < 1e-3);
  CHECK(relative_gap(es.logits(in), stepped_logits(es, in)) < 1e-5);
  CHECK_FALSE(eq.logits(in) == all);
  // The residual stream kept between layers: restarting at layer 3 from its cached input gives the same
  // logits, bit for bit, and so does another thread count.
  models::llama_engine e2(m, {}, {.threads = 2});
  mixprec::row_matrix x = e.embed(in);
  std::vector<mixprec::row_matrix> entering;
  for (int l = 0; l < m.config.n_layers; ++l) {
    entering.push_back(x);
    e.run_layer(l, x);
  }
  CHECK(e.head(x) == all);
  mixprec::row_matrix y = entering[3];
  for (int l = 3; l < m.config.n_layers; ++l) e2.run_layer(l, y);
  CHECK(e2.head(y) == all);
  // Bad input: a token outside the vocabulary, a stream of the wrong width or length, a layer that does not exist.
  CHECK(mixprec::test::error_code_of([&] { (void)e.embed(std::vector<int>{1, 512}); }) == errc::invalid_argument);
  mixprec::row_matrix narrow(4, m.config.dim - 1), too_long(m.config.context_length + 1, m.config.dim);
  CHECK(mixprec::test::error_code_of([&] { e.run_layer(0, narrow); }) == errc::shape_mismatch);
  CHECK(mixprec::test::error_code_of([&] { e.run_layer(0, too_long); }) == errc::shape_mismatch);
  CHECK(mixprec::test::error_code_of([&] { e.run_layer(m.config.n_layers, x); }) == errc::invalid_argument);
  CHECK(mixprec::test::error_code_of([&] { (void)e.head(narrow); }) == errc::shape_mismatch);
}

TEST_CASE("malformed or unsupported GGUFs are typed errors naming the key or tensor", "[models][llama][errors]") {
  auto load_error = [](const std::string& path) { return mixprec::test::error_of([&] { (void)models::load_gguf(path); }); };
  struct case_ {
    const char* name;
    edits e;
    errc code;
    const char* names;
  };
  const std::vector<case_> cases = {
      {"arch", {.kvs = [](gguf::metadata& k) { k.set("general.architecture", gguf::value("gpt2")); }}, errc::unsupported, "general.architecture"},
      {"yarn", {.kvs = [](gguf::metadata& k) { k.set("llama.rope.scaling.type", gguf::value("yarn")); }}, errc::unsupported, "llama.rope.scaling.type"},
      {"linear-no-factor", {.kvs = [](gguf::metadata& k) { k.set("llama.rope.scaling.type", gguf::value("linear")); }}, errc::parse_error,
       "llama.rope.scaling.factor"},
      {"no-eps", {.kvs = [](gguf::metadata& k) { k.erase("llama.attention.layer_norm_rms_epsilon"); }}, errc::parse_error,
       "llama.attention.layer_norm_rms_epsilon"},
      {"no-blocks", {.kvs = [](gguf::metadata& k) { k.erase("llama.block_count"); }}, errc::parse_error, "llama.block_count"},
      {"eps-type", {.kvs = [](gguf::metadata& k) { k.set("llama.attention.layer_norm_rms_epsilon", gguf::value("1e-5")); }}, errc::parse_error,
       "llama.attention.layer_norm_rms_epsilon"},
      // Experts in a llama file: the count of those used is needed, then the router of each layer.
      {"experts", {.kvs = [](gguf::metadata& k) { k.set("llama.expert_count", gguf::value(std::uint32_t{8})); }}, errc::parse_error,
       "llama.expert_used_count"},
      {"experts-dense",
       {.kvs =
            [](gguf::metadata& k) {
              k.set("llama.expert_count", gguf::value(std::uint32_t{8}));
              k.set("llama.expert_used_count", gguf::value(std::uint32_t{2}));
            }},
       errc::parse_error, "blk.0.ffn_gate_inp.weight"},
      {"heads", {.kvs = [](gguf::metadata& k) { k.set("llama.attention.head_count_kv", gguf::value(std::uint32_t{3})); }}, errc::parse_error,
       "head_count_kv"},
      {"missing-tensor", {.keep = [](const gguf::tensor_info& t) { return t.name != "blk.1.ffn_up.weight"; }}, errc::parse_error,
       "blk.1.ffn_up.weight"},
      {"shape",
       {.tensor = [](gguf::tensor_source& s) {
          if (s.name == "blk.2.attn_k.weight") s.dims = {32, 64};  // the same bytes (64 x 32), other dims
        }},
       errc::shape_mismatch, "blk.2.attn_k.weight"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    const auto e = load_error(edited_gguf(tiny().gguf, c.e, std::string(c.name) + ".gguf"));
    REQUIRE(e);
    INFO(e->what());
    CHECK(e->code() == c.code);
    CHECK_THAT(e->what(), Catch::Contains(c.names));
  }
  // A tensor the llama graph does not use (qwen3's head norm): refused rather than ignored. A q bias
  // alone, as llama.cpp takes it, is added to q.
  for (const char* name : {"blk.0.attn_q_norm.weight", "blk.0.attn_q.bias"}) {
    const bool is_bias = std::string_view(name).ends_with(".bias");
    const std::string path = edited_gguf(tiny().gguf, {.extra = {constant_tensor(name, {is_bias ? 64u : 8u}, 0.5f)}}, "extra.gguf");
    if (is_bias) {
      const models::llama_model mb = models::load_gguf(path);
      CHECK(mb.layers[0].bq.size() == 64);
      CHECK(mb.layers[0].bk.size() == 0);
      const std::vector<int> in = forced_input(16);
      models::llama_engine eb(mb);
      CHECK(relative_gap(eb.logits(in), naive_llama(mb).logits(in)) < naive_tolerance);
      CHECK(relative_gap(eb.logits(in), tiny().naive.logits) > 1e-3);  // the bias is used
      continue;
    }
    const auto bias_error = load_error(path);
    REQUIRE(bias_error);
    INFO(bias_error->what());
    CHECK(bias_error->code() == errc::unsupported);
    CHECK_THAT(bias_error->what(), Catch::Contains(name));
  }
  // Linear RoPE scaling with factor 1 is the unscaled model.
  const std::string lin = edited_gguf(tiny().gguf, {.kvs = [](gguf::metadata& k) {
                                        k.set("llama.rope.scaling.type", gguf::value("linear"));
                                        k.set("llama.rope.scaling.factor", gguf::value(1.0f));
                                      }},
                                      "linear1.gguf");
  const models::llama_model ml = models::load_gguf(lin);
  models::llama_engine el(ml);
  CHECK(models::greedy(el, 40) == tiny().naive.greedy);
  // A llama2.c file that is not one: the checkpoint loader's error.
  CHECK_THROWS_AS(models::load_llama(tiny().files.tokenizer), mixprec::error);
  CHECK_THROWS_AS(models::load_llama("/nonexistent/model.gguf"), mixprec::error);
}

TEST_CASE("GQA, partial rotary dimensions and RoPE factors on a small random model", "[models][llama][rope]") {
  // Hand-built: dim 16, 4 heads of 4, 2 KV heads, a tied classifier; RoPE on whole heads, then on the
  // first 2 of every head's 4 values. Each variant against the naive reference with the same config.
  models::llama_model m;
  m.config = {16, 24, 2, 4, 2, 32, 8, 4, 10000.0f, 1.0f, 1e-5f};
  std::uint32_t seed = 7;
  auto g = [&](int r, int c) {
    mixprec::row_matrix x(r, c);
    for (int i = 0; i < x.size(); ++i) x.data()[i] = 0.3f * std::sin(static_cast<float>(seed * 131 + static_cast<std::uint32_t>(i)) * 0.7f);
    ++seed;
    return x;
  };
  m.token_embd = models::llama_matrix("token_embd.weight", g(32, 16));
  for (int l = 0; l < 2; ++l) {
    models::llama_layer w;
    w.attn_norm = w.ffn_norm = Eigen::VectorXf::Ones(16);
    w.wq = models::llama_matrix("q", g(16, 16));
    w.wk = models::llama_matrix("k", g(8, 16));
    w.wv = models::llama_matrix("v", g(8, 16));
    w.wo = models::llama_matrix("o", g(16, 16));
    w.gate = models::llama_matrix("g", g(24, 16));
    w.up = models::llama_matrix("u", g(24, 16));
    w.down = models::llama_matrix("d", g(16, 24));
    m.layers.push_back(w);
  }
  m.output_norm = Eigen::VectorXf::Ones(16);
  REQUIRE_NOTHROW(m.validate());
  const std::vector<int> in = {1, 5, 9, 3, 7, 7};
  models::llama_engine e4(m);
  const mixprec::row_matrix l4 = e4.logits(in);
  CHECK(relative_gap(l4, stepped_logits(e4, in)) < 1e-5);  // grouped-query attention at once, too
  CHECK(relative_gap(l4, naive_llama(m).logits(in)) < naive_tolerance);
  // rope_dim 2 rotates pair 0 only, by theta^0 = 1 radian per position; factors [1] change nothing.
  models::llama_model m2 = m;
  m2.config.rope_dim = 2;
  models::llama_engine e2(m2);
  const mixprec::row_matrix l2 = e2.logits(in);
  CHECK(l2.row(0) == l4.row(0));  // position 0: no rotation at all
  CHECK_FALSE(l2 == l4);
  CHECK(relative_gap(l2, naive_llama(m2).logits(in)) < naive_tolerance);
  models::llama_model m2f = m2;
  m2f.rope_freq_factors = Eigen::VectorXf::Ones(1);
  models::llama_engine e2f(m2f);
  CHECK(e2f.logits(in) == l2);
  m2f.rope_freq_factors = Eigen::VectorXf::Ones(2);
  CHECK_THROWS_AS(m2f.validate(), mixprec::error);
  // Doubling the factor halves the frequency: the same as linear scaling by 2.
  m2f.rope_freq_factors = Eigen::VectorXf::Constant(1, 2.0f);
  models::llama_model m2s = m2;
  m2s.config.rope_freq_scale = 0.5f;
  models::llama_engine a(m2f), b(m2s);
  const mixprec::row_matrix la = a.logits(in), lb = b.logits(in);
  CHECK(la.isApprox(lb, 1e-5f));
  CHECK_FALSE(la.isApprox(l2, 1e-3f));
  CHECK(relative_gap(la, naive_llama(m2f).logits(in)) < naive_tolerance);
  CHECK(relative_gap(lb, naive_llama(m2s).logits(in)) < naive_tolerance);
  // Odd or too large rope dims, and wrong shapes, are refused.
  models::llama_model bad = m;
  bad.config.rope_dim = 3;
  CHECK_THROWS_AS(models::llama_engine(bad), mixprec::error);
  bad = m;
  bad.layers[1].wk = models::llama_matrix("k", g(16, 16));
  CHECK(mixprec::test::error_code_of([&] { bad.validate(); }) == errc::shape_mismatch);
}

TEST_CASE("every ggml block type runs as stored by row-decode GEMV, as FP32 on its decoded values", "[models][llama][ggml]") {
  // A random model whose rows are 256 long, so that the K-quant super-blocks fit too.
  const int dim = 256, hidden = 256, vocab = 40;
  models::llama_model m;
  m.config = {dim, hidden, 1, 4, 2, vocab, 16, 64, 10000.0f, 1.0f, 1e-5f};
  std::mt19937 gen(3);
  std::normal_distribution<float> n(0.0f, 0.05f);
  auto g = [&](int r, int c) {
    mixprec::row_matrix x(r, c);
    for (int i = 0; i < x.size(); ++i) x.data()[i] = n(gen);
    return x;
  };
  m.token_embd = models::llama_matrix("token_embd.weight", g(vocab, dim));
  models::llama_layer l;
  l.attn_norm = l.ffn_norm = Eigen::VectorXf::Ones(dim);
  l.wq = models::llama_matrix("q", g(dim, dim));
  l.wk = models::llama_matrix("k", g(128, dim));
  l.wv = models::llama_matrix("v", g(128, dim));
  l.wo = models::llama_matrix("o", g(dim, dim));
  l.gate = models::llama_matrix("g", g(hidden, dim));
  l.up = models::llama_matrix("u", g(hidden, dim));
  l.down = models::llama_matrix("d", g(dim, hidden));
  m.layers.push_back(l);
  m.output_norm = Eigen::VectorXf::Ones(dim);
  const std::vector<int> in = {1, 7, 30, 2, 2, 11, 39, 0};
  {
    models::llama_engine e(m);
    CHECK(relative_gap(e.logits(in), naive_llama(m).logits(in)) < naive_tolerance);
  }
  for (const ggml_type type : mixprec::all_ggml_types) {
    if (type == ggml_type::f32) continue;
    const std::string name(mixprec::to_string(type));
    INFO(name);
    models::llama_model q = m;
    auto store = [&](models::llama_matrix& x) {
      const auto bytes = mixprec::ggml::quantize(type, x.fp32(), std::nullopt, x.name());
      const auto* p = reinterpret_cast<const std::uint8_t*>(bytes.data());
      x = models::llama_matrix(x.name(), mixprec::quantized_tensor(mixprec::ggml_spec(type), x.rows(), x.cols(),
                                                                   std::vector<std::uint8_t>(p, p + bytes.size()), {}, {}));
    };
    store(q.token_embd);
    for (auto* x : {&q.layers[0].wq, &q.layers[0].wk, &q.layers[0].wv, &q.layers[0].wo, &q.layers[0].gate, &q.layers[0].up, &q.layers[0].down})
      store(*x);
    REQUIRE(q.layers[0].wq.spec() == mixprec::ggml_spec(type));
    models::llama_engine eq(q, {}, {.activations = mixprec::activation_type::fp32});  // row decode
    const models::llama_model d = decoded(q);
    models::llama_engine ed(d);
    const mixprec::row_matrix lq = eq.logits(in), ld = ed.logits(in);
    const double diff = (lq - ld).cwiseAbs().maxCoeff(), scale = ld.cwiseAbs().maxCoeff();
    CHECK(diff <= 1e-5 * std::max(1.0, scale));
    CHECK(eq.matrix_bytes() == q.classifier().bytes() + [&] {
      std::size_t b = 0;
      for (const auto* x : q.matrices()) b += x->bytes();
      return b - q.classifier().bytes();
    }());
  }
}

TEST_CASE("llama (Llama 3), qwen2, qwen3 and phi3 GGUFs run as the reference computes them", "[models][llama][arch]") {
  const gguf::metadata vocab = gguf::file::open(tiny().gguf).kvs();
  const std::vector<int> in = forced_input(64);
  for (const char* arch : {"llama", "qwen2", "qwen3", "phi3"}) {
    SECTION(arch) {
      const mixprec::test::tiny_arch_options o = mixprec::test::tiny_arch_defaults(arch);
      const std::string path = (work_dir() / (std::string(arch) + ".gguf")).string();
      mixprec::test::write_tiny_arch(path, o, vocab);
      const models::llama_model m = models::load_gguf(path);
      const models::llama_config& c = m.config;
      CHECK(c.rope == (std::string(arch) == "llama" ? models::llama_config::rope_type::norm : models::llama_config::rope_type::neox));
      CHECK(c.head_size() == (o.head_dim ? o.head_dim : o.dim / o.n_heads));
      CHECK(m.layers[1].wo.cols() == c.q_dim());
      CHECK(m.layers[0].bq.size() == (std::string(arch) == "qwen2" ? c.q_dim() : 0));
      CHECK(m.layers[0].k_norm.size() == (std::string(arch) == "qwen3" ? c.head_size() : 0));
      CHECK(m.rope_freq_factors.size() == (o.rope_freqs ? c.rope_dim / 2 : 0));
      CHECK(m.output.has_value() == !o.tied);
      const bool fused = std::string(arch) == "phi3";
      CHECK(m.layers[0].wqkv.present() == fused);
      CHECK(m.layers[0].gate_up.present() == fused);
      CHECK(m.layers[0].wq.present() == !fused);
      CHECK(m.layers[0].matrices().size() == (fused ? 4u : 7u));
      CHECK(m.matrices().size() == m.layers.size() * (fused ? 4u : 7u) + 1);
      CHECK(c.rms_eps == o.rms_eps);
      models::llama_engine e(m);
      const mixprec::row_matrix all = e.logits(in), stepped = stepped_logits(e, in);
      const auto ref = naive_llama(m).logits(in);
      INFO("prefill against the reference " << relative_gap(all, ref) << ", token by token " << relative_gap(stepped, ref));
      CHECK(relative_gap(all, ref) < naive_tolerance);
      CHECK(relative_gap(stepped, ref) < naive_tolerance);
      // The logits are varied (a random network, not a constant one) and the extra tensors matter.
      CHECK(all.row(10).maxCoeff() - all.row(10).minCoeff() > 1.0f);
      models::llama_model plain = m;
      for (auto& l : plain.layers) l.bq = l.bk = l.bv = l.q_norm = l.k_norm = Eigen::VectorXf();
      plain.config.rope = models::llama_config::rope_type::norm;
      if (std::string(arch) != "llama") {
        models::llama_engine ep(plain);
        CHECK(relative_gap(ep.logits(in), all) > 1e-2);
      }
    }
  }
}

// A GGUF edited from `src` (edits: keys, tensors kept, dims, extra tensors) that load_gguf refuses with
// `code`, naming `names` in the message.
struct load_case {
  const char* name;
  const std::string* src;
  edits e;
  errc code;
  const char* names;
};
void check_load_errors(const std::vector<load_case>& cases) {
  for (const auto& c : cases) {
    INFO(c.name);
    const auto e = mixprec::test::error_of([&] { (void)models::load_gguf(edited_gguf(*c.src, c.e, std::string(c.name) + ".gguf")); });
    REQUIRE(e);
    INFO(e->what());
    CHECK(e->code() == c.code);
    CHECK_THAT(e->what(), Catch::Contains(c.names));
  }
}

TEST_CASE("qwen2, qwen3 and phi3 GGUFs with missing or inconsistent parts are typed errors", "[models][llama][arch][errors]") {
  const gguf::metadata vocab = gguf::file::open(tiny().gguf).kvs();
  const std::string qwen2 = (work_dir() / "qwen2-base.gguf").string(), qwen3 = (work_dir() / "qwen3-base.gguf").string(),
                    phi3 = (work_dir() / "phi3-base.gguf").string();
  mixprec::test::write_tiny_arch(qwen2, mixprec::test::tiny_arch_defaults("qwen2"), vocab);
  mixprec::test::write_tiny_arch(qwen3, mixprec::test::tiny_arch_defaults("qwen3"), vocab);
  mixprec::test::write_tiny_arch(phi3, mixprec::test::tiny_arch_defaults("phi3"), vocab);
  check_load_errors({
      {"qwen2-bias-shape", &qwen2, {.tensor = [](gguf::tensor_source& s) {
                                     if (s.name == "blk.1.attn_v.bias") s.dims = {16, 2};  // the same bytes, other dims
                                   }},
       errc::shape_mismatch, "blk.1.attn_v.bias"},
      {"qwen3-no-norm", &qwen3, {.keep = [](const gguf::tensor_info& t) { return t.name != "blk.0.attn_k_norm.weight"; }}, errc::parse_error,
       "blk.0.attn_k_norm.weight"},
      {"qwen3-value-length", &qwen3, {.kvs = [](gguf::metadata& k) { k.set("qwen3.attention.value_length", gguf::value(std::uint32_t{16})); }},
       errc::unsupported, "qwen3.attention.value_length"},
      {"qwen3-value-only", &qwen3, {.kvs = [](gguf::metadata& k) { k.erase("qwen3.attention.key_length"); }}, errc::unsupported,
       "qwen3.attention.value_length"},
      {"qwen3-overflow",
       &qwen3,
       {.kvs =
            [](gguf::metadata& k) {
              k.set("qwen3.attention.key_length", gguf::value(std::uint32_t{65536}));
              k.set("qwen3.attention.value_length", gguf::value(std::uint32_t{65536}));
              k.set("qwen3.attention.head_count", gguf::value(std::uint32_t{65537}));
              k.set("qwen3.attention.head_count_kv", gguf::value(std::uint32_t{1}));
            }},
       errc::parse_error, "qwen3.attention.head_count"},
      {"phi3-attn-factor", &phi3, {.kvs = [](gguf::metadata& k) { k.set("phi3.rope.scaling.attn_factor", gguf::value(1.19f)); }},
       errc::unsupported, "phi3.rope.scaling.attn_factor"},
      {"qwen3-no-eps", &qwen3, {.kvs = [](gguf::metadata& k) { k.erase("qwen3.attention.layer_norm_rms_epsilon"); }}, errc::parse_error,
       "qwen3.attention.layer_norm_rms_epsilon"},
      {"qwen3-norm-shape",
       &qwen3,
       {.tensor = [](gguf::tensor_source& s) {
          if (s.name == "blk.1.attn_q_norm.weight") s.dims = {16, 2};
        }},
       errc::shape_mismatch, "blk.1.attn_q_norm.weight"},
      {"qwen2-rope-freqs", &qwen2, {.extra = {constant_tensor("rope_freqs.weight", {8}, 1.0f)}},
       errc::unsupported, "rope_freqs.weight"},
      {"phi3-gate", &phi3, {.extra = {constant_tensor("blk.0.ffn_gate.weight", {64, 96}, 0.0f)}},
       errc::unsupported, "blk.0.ffn_gate.weight"},
      {"phi3-longrope", &phi3, {.extra = {constant_tensor("rope_factors_long.weight", {8}, 1.0f)}},
       errc::unsupported, "rope_factors_long.weight"},
      {"phi3-up-shape", &phi3, {.tensor = [](gguf::tensor_source& s) {
                                  if (s.name == "blk.1.ffn_up.weight") s.dims = {128, 96};  // the same bytes, other dims
                                }},
       errc::shape_mismatch, "blk.1.ffn_up.weight"},
      {"gemma3", &qwen2, {.kvs = [](gguf::metadata& k) { k.set("general.architecture", gguf::value("gemma3")); }}, errc::unsupported, "gemma3"},
  });
}

TEST_CASE("calibration_streams: exactly one source, each cut as its own function cuts it", "[models][calibration]") {
  const gguf::file g = gguf::file::open(tiny().gguf);
  const models::llama_model m = models::load_gguf(g);
  using mixprec::test::error_code_of;
  CHECK(error_code_of([&] { (void)models::calibration_streams(g, m, {}); }) == errc::invalid_argument);
  const fs::path text = work_dir() / "calibration.txt", ids = work_dir() / "calibration_ids.txt";
  std::ofstream(text) << "Once upon a time there was a little girl who liked to play in the park with her dog. "
                         "One day the dog found a big red ball under a tree, and they played with it all day long.";
  std::ofstream(ids) << "1 5 6 7 8\n1 9 10\n1 11\n";
  CHECK(error_code_of([&] { (void)models::calibration_streams(g, m, {.text_path = text.string(), .sample_streams = 2, .sample_length = 8}); }) ==
        errc::invalid_argument);

  const models::vocab_bos bos = models::bos_of(g, m.config.vocab_size);
  // Sampled: sample_streams from the vocabulary's BOS.
  const models::calibration_set s = models::calibration_streams(g, m, {.sample_streams = 2, .sample_length = 10, .seed = 3});
  models::llama_engine e(m);
  CHECK(s.streams == models::sample_streams(e, {.streams = 2, .length = 10, .seed = 3, .first = bos.id}));
  CHECK(s.bos_first);
  CHECK(s.bos.id == bos.id);
  // A text: the vocabulary's tokens cut by chunk_tokens (BOS first when the vocabulary adds it).
  const models::calibration_set t = models::calibration_streams(g, m, {.text_path = text.string(), .length = 12, .max_streams = 3});
  std::ifstream in(text);
  const std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(t.streams == models::chunk_tokens(models::tokenize_text(g, body), 12, bos.add ? bos.id : -1, 3));
  CHECK(t.streams.size() == 3);
  CHECK(t.bos_first == bos.add);
  CHECK(error_code_of([&] { (void)models::calibration_streams(g, m, {.text_path = text.string(), .length = 4000}); }) == errc::invalid_argument);
  // Token ids: as given, cut to the length and the number of streams.
  const models::calibration_set k = models::calibration_streams(g, m, {.tokens_path = ids.string(), .length = 3, .max_streams = 2});
  CHECK(k.streams == std::vector<std::vector<int>>{{1, 5, 6}, {1, 9, 10}});
  CHECK_FALSE(k.bos_first);
  CHECK(error_code_of([&] { (void)models::calibration_streams(g, m, {.tokens_path = ids.string(), .length = 1}); }) == errc::invalid_argument);
  CHECK(error_code_of([&] { (void)models::calibration_streams(g, m, {.text_path = text.string(), .max_streams = 0}); }) == errc::invalid_argument);
}

using mixprec::test::experts_of;

TEST_CASE("mixture of experts: routing, weights, decode against prefill, refusals", "[models][llama][moe]") {
  const models::llama_model dense = models::from_llama2c(tiny().ck);
  std::vector<int> tokens = {1};
  for (int p = 1; p < 24; ++p) tokens.push_back(3 + (p * 37) % 200);
  models::llama_engine de(dense);
  const mixprec::row_matrix want = de.logits(tokens);
  const auto rel = [&](const mixprec::row_matrix& z) { return static_cast<double>((z - want).cwiseAbs().maxCoeff() / want.cwiseAbs().maxCoeff()); };

  // One expert, always chosen with weight 1: the dense model's values exactly.
  {
    const models::llama_model one = experts_of(dense, 1, 1, false);
    models::llama_engine e(one);
    CHECK(e.logits(tokens) == want);
  }
  // Identical experts, 2 of 3 chosen: weights renormalised to sum 1 give the dense model (up to rounding);
  // without renormalisation the output is scaled by the two chosen probabilities' sum (< 1), not the dense one.
  {
    const models::llama_model normed = experts_of(dense, 3, 2, true), raw = experts_of(dense, 3, 2, false);
    models::llama_engine en(normed), er(raw);
    const mixprec::row_matrix zn = en.logits(tokens), zr = er.logits(tokens);
    CHECK(rel(zn) < 1e-5);
    CHECK(rel(zr) > 1e-3);
    // Decoding token by token continues from the same cache and routes each token alike.
    er.reset();
    for (int p = 0; p < static_cast<int>(tokens.size()); ++p) {
      const Eigen::VectorXf& z = er.forward(tokens[static_cast<std::size_t>(p)], p);
      CHECK((z.transpose() - zr.row(p)).cwiseAbs().maxCoeff() <= 1e-5f * zr.cwiseAbs().maxCoeff());
    }
    // A plan's spec for a stack re-quantizes each expert (q8_0: close to FP32; and the stack counts its bytes).
    models::llama_engine eq(raw, {{"blk.0.ffn_up_exps.weight", mixprec::ggml_spec(mixprec::ggml_type::q8_0)}});
    const mixprec::row_matrix zq = eq.logits(tokens);
    CHECK((zq - zr).cwiseAbs().maxCoeff() > 0.0f);
    CHECK((zq - zr).cwiseAbs().maxCoeff() < 0.05f * zr.cwiseAbs().maxCoeff());
    CHECK(eq.matrix_bytes() < er.matrix_bytes());
    // The router is not a plan's matrix: a spec naming it is refused.
    const auto e = mixprec::test::error_of(
        [&] { models::llama_engine bad(raw, {{"blk.0.ffn_gate_inp.weight", mixprec::ggml_spec(mixprec::ggml_type::q8_0)}}); });
    REQUIRE(e);
    CHECK(e->code() == errc::invalid_argument);
    // What does not handle experts yet says so.
  }
  // validate(): experts beside a dense FFN, or more used than there are.
  {
    models::llama_model both = experts_of(dense, 2, 1, true);
    both.layers[0].gate = dense.layers[0].gate;
    models::llama_model over = experts_of(dense, 2, 1, true);
    over.config.n_expert_used = 3;
    for (const models::llama_model* bad : {&both, &over}) {
      const auto r = mixprec::test::error_of([&] { bad->validate(); });
      REQUIRE(r);
      CHECK(r->code() == errc::invalid_argument);
    }
  }
}

TEST_CASE("mixture-of-experts GGUFs with missing or inconsistent parts are typed errors", "[models][llama][moe][errors]") {
  const gguf::metadata vocab = gguf::file::open(tiny().gguf).kvs();
  const std::string moe = (work_dir() / "qwen3moe-base.gguf").string(), qwen2 = (work_dir() / "qwen2-moe-base.gguf").string();
  mixprec::test::write_tiny_arch(moe, mixprec::test::tiny_arch_defaults("qwen3moe"), vocab);
  mixprec::test::write_tiny_arch(qwen2, mixprec::test::tiny_arch_defaults("qwen2"), vocab);
  const models::llama_model m = models::load_gguf(moe);
  CHECK(m.config.n_expert == 8);
  CHECK(m.config.n_expert_used == 3);
  CHECK(m.config.expert_hidden_dim == 32);
  CHECK(m.layers[1].down_exps.rows() == 8 * 64);
  CHECK(m.matrices().size() == 2 * 7 + 1);  // q k v o, three stacks per layer; the classifier
  check_load_errors({
      {"no-count", &moe, {.kvs = [](gguf::metadata& k) { k.erase("qwen3moe.expert_count"); }}, errc::parse_error, "qwen3moe.expert_count"},
      {"no-used", &moe, {.kvs = [](gguf::metadata& k) { k.erase("qwen3moe.expert_used_count"); }}, errc::parse_error,
       "qwen3moe.expert_used_count"},
      {"used-over", &moe, {.kvs = [](gguf::metadata& k) { k.set("qwen3moe.expert_used_count", gguf::value(std::uint32_t{9})); }},
       errc::parse_error, "qwen3moe.expert_used_count"},
      {"groups", &moe, {.kvs = [](gguf::metadata& k) { k.set("qwen3moe.expert_group_count", gguf::value(std::uint32_t{2})); }},
       errc::unsupported, "qwen3moe.expert_group_count"},
      {"stack-shape", &moe, {.tensor = [](gguf::tensor_source& s) {
                               if (s.name == "blk.1.ffn_up_exps.weight") s.dims = {64, 64, 4};  // the same bytes, other dims
                             }},
       errc::shape_mismatch, "blk.1.ffn_up_exps.weight"},
      {"no-router", &moe, {.keep = [](const gguf::tensor_info& t) { return t.name != "blk.0.ffn_gate_inp.weight"; }}, errc::parse_error,
       "blk.0.ffn_gate_inp.weight"},
      {"dense-experts", &qwen2, {.kvs = [](gguf::metadata& k) { k.set("qwen2.expert_count", gguf::value(std::uint32_t{4})); }},
       errc::unsupported, "qwen2.expert_count"},
  });
}
