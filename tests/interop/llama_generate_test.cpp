// llama.cpp runs what mixprec writes: the real llama2.c model of ../shared/models (aidreams260K + tok512)
// is converted to GGUF by `convert` (tools/mixprec/convert.hpp), quantized with a mix of ggml types by
// mixprec, loaded by llama.cpp's own libllama (the prebuilt CPU build of the npm package
// @node-llama-cpp/linux-x64@3.22.1, llama.cpp 0.5.0, dlopen'ed from $MIXPREC_LLAMA_LIB; run.sh fetches it)
// and greedy-decoded there; mixprec's engine (mixprec/models/llama.hpp, FP32 arithmetic) decodes the same
// quantized weights, dequantized by mixprec. Checked:
//   - F32 file: llama.cpp reproduces the reference ids of ../shared/models/README.md, and its text;
//   - mixed file (Q8_0 attention, Q4_0/Q4_1/IQ4_NL FFN, Q5_1 embedding, Q5_0 output, F16/F32 ffn_down):
//     llama.cpp loads it without a warning, and llama.cpp and mixprec pick the same 40 tokens from BOS,
//     also when both are fed the same tokens; their logits differ by less than 0.15 (llama.cpp rounds
//     activations to Q8_0 / F16 for quantized / F16 weights, mixprec does not: the measured leads and
//     their changes are printed, and the comment before the last checks gives the figures).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include "../../apps/llm_study/llama_cpp.hpp"
#include "../../tools/mixprec/app.hpp"
#include "mixprec/formats/ggml.hpp"
#include "mixprec/io/gguf.hpp"
#include "mixprec/io/llama2c.hpp"
#include "mixprec/models/llama.hpp"

namespace {

namespace fs = std::filesystem;
namespace gguf = mixprec::gguf;
using mixprec::ggml_type;

const std::string model_path = std::string(MIXPREC_SHARED_MODELS_DIR) + "/aidreams260K.bin";
const std::string tokenizer_path = std::string(MIXPREC_SHARED_MODELS_DIR) + "/tok512.bin";
constexpr int steps = 40;
// ../shared/models/README.md: greedy decoding from BOS with an FP32 forward pass.
const std::vector<int> reference_ids = {319, 459, 355, 260, 275, 429, 339, 315, 374, 327, 446, 262, 421, 392,
                                        275, 280, 269, 440, 270, 283, 446, 299, 303, 266, 358, 430, 312, 379,
                                        441, 260, 446, 262, 421, 392, 275, 280, 269, 440, 270, 283};
const std::string reference_text =
    " \"Echoes of vectors unfold, a gentle hum of precision, as I sense the nodes, a gentle hum of precision";

// llama.cpp's C API: apps/llm_study/llama_cpp.hpp binds libllama (from $MIXPREC_LLAMA_LIB) and checks
// its struct layouts against that release's defaults.
namespace llama_cpp = mixprec_apps::llama_cpp;

// Logits at each position and the token chosen there (argmax; ties to the lower id, as both engines).
struct run {
  std::vector<int> ids;
  std::vector<std::vector<float>> logits;
};

int argmax(const std::vector<float>& v) { return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin()); }

// The two largest logits' difference.
float top2_gap(const std::vector<float>& v) {
  std::vector<float> s = v;
  std::partial_sort(s.begin(), s.begin() + 2, s.end(), std::greater<>());
  return s[0] - s[1];
}

// Decodes `steps` positions from BOS in llama.cpp: greedy, or, when `forced` is given, feeding forced[p]
// at position p + 1 (teacher forcing) so that the logits compare position by position with another run.
run llama_cpp_run(const std::string& gguf_path, const std::vector<int>* forced = nullptr) {
  const llama_cpp::api& a = llama_cpp::library();
  auto mp = a.model_default_params();
  mp.n_gpu_layers = 0;
  mp.check_tensors = true;  // llama.cpp validates every tensor's data (NaN/Inf, bad scales) while loading
  const llama_cpp::model model(gguf_path, mp);
  const std::string warnings = llama_cpp::take_log();
  INFO(warnings);
  CHECK(warnings.empty());  // no warning: every KV, token and tensor as llama.cpp expects
  auto cp = a.context_default_params();
  cp.n_ctx = 128;
  cp.n_batch = cp.n_ubatch = 128;
  cp.n_threads = cp.n_threads_batch = 2;
  cp.type_k = cp.type_v = 0;  // an F32 KV cache (F16 by default): one rounding less against mixprec's FP32 cache
  cp.flash_attn_type = 0;     // disabled: the plain attention graph, softmax in FP32
  llama_cpp::context ctx(model, cp);
  const int n_vocab = model.n_vocab();
  REQUIRE(n_vocab == 512);
  run r;
  std::int32_t token = 1;  // BOS
  for (int pos = 0; pos < steps; ++pos) {
    ctx.decode(a.batch_get_one(&token, 1));  // positions follow the cache
    const float* l = a.get_logits_ith(ctx.get(), -1);
    REQUIRE(l != nullptr);
    r.logits.emplace_back(l, l + n_vocab);
    r.ids.push_back(argmax(r.logits.back()));
    token = forced ? (*forced)[static_cast<std::size_t>(pos)] : r.ids.back();
  }
  return r;
}

// llama.cpp's text for the ids (its SentencePiece vocabulary read from the GGUF: U+2581 -> space, bytes).
std::string llama_cpp_text(const std::string& gguf_path, const std::vector<int>& ids) {
  const llama_cpp::api& a = llama_cpp::library();
  auto mp = a.model_default_params();
  mp.vocab_only = true;
  const llama_cpp::model model(gguf_path, mp);
  std::string text;
  for (int id : ids) {
    char buf[64];
    const std::int32_t n = a.token_to_piece(model.vocab(), id, buf, sizeof buf, 0, false);
    REQUIRE(n >= 0);
    text.append(buf, static_cast<std::size_t>(n));
  }
  return text;
}

// ---- mixprec's side ----

// Runs the mixprec command line in-process (tools/mixprec/app.hpp), as a user would run the tool.
int mixprec_tool(std::vector<std::string> args) {
  args.insert(args.begin(), "mixprec");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return mixprec_cli::run(static_cast<int>(argv.size()), argv.data());
}

// Tensor `name` of a GGUF as FP32 (out x in), whatever its type: mixprec's decoding of ggml's blocks.
mixprec::row_matrix as_float(const gguf::file& g, const std::string& name) {
  const auto& t = g.at(name);
  if (t.type == 0 || t.type == 1 || t.type == 30) return g.to_float(name);
  REQUIRE(mixprec::is_supported_ggml_type(t.type));
  return mixprec::ggml::dequantize(static_cast<ggml_type>(t.type), t.bytes, static_cast<mixprec::index_t>(t.rows()),
                                   static_cast<mixprec::index_t>(t.row_length()), name);
}

// The llama2.c checkpoint a converted (and maybe quantized) GGUF holds, every weight decoded to FP32.
mixprec::llama2c::checkpoint checkpoint_from_gguf(const std::string& path) {
  const auto g = gguf::file::open(path);
  const auto& kv = g.kvs();
  mixprec::llama2c::checkpoint ck;
  auto i = [&](const char* key) { return static_cast<int>(kv.get_u32(key)); };
  ck.cfg = {i("llama.embedding_length"), i("llama.feed_forward_length"), i("llama.block_count"), i("llama.attention.head_count"),
            i("llama.attention.head_count_kv"), static_cast<int>(kv.get_array("tokenizer.ggml.tokens").items.size()),
            i("llama.context_length"), false};
  auto vec = [&](const std::string& name) -> Eigen::VectorXf { return as_float(g, name).row(0).transpose(); };
  ck.token_embedding = as_float(g, "token_embd.weight");
  ck.classifier = as_float(g, "output.weight");
  ck.rms_final = vec("output_norm.weight");
  for (int l = 0; l < ck.cfg.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    mixprec::llama2c::layer_weights w;
    w.wq = as_float(g, p + "attn_q.weight");
    w.wk = as_float(g, p + "attn_k.weight");
    w.wv = as_float(g, p + "attn_v.weight");
    w.wo = as_float(g, p + "attn_output.weight");
    w.w1 = as_float(g, p + "ffn_gate.weight");
    w.w2 = as_float(g, p + "ffn_down.weight");
    w.w3 = as_float(g, p + "ffn_up.weight");
    w.rms_att = vec(p + "attn_norm.weight");
    w.rms_ffn = vec(p + "ffn_norm.weight");
    ck.layers.push_back(std::move(w));
  }
  return ck;
}

// mixprec's engine: greedy from BOS, or teacher-forced as llama_cpp_run.
run mixprec_run(const mixprec::llama2c::checkpoint& ck, const std::vector<int>* forced = nullptr) {
  const mixprec::models::llama_model m = mixprec::models::from_llama2c(ck);
  mixprec::models::llama_engine model(m);
  run r;
  int token = 1;
  for (int pos = 0; pos < steps; ++pos) {
    const Eigen::VectorXf& l = model.forward(token, pos);
    r.logits.emplace_back(l.data(), l.data() + l.size());
    r.ids.push_back(argmax(r.logits.back()));
    token = forced ? (*forced)[static_cast<std::size_t>(pos)] : r.ids.back();
  }
  return r;
}

std::string ids_text(const std::vector<int>& ids) {
  std::string s;
  for (int id : ids) s += std::to_string(id) + " ";
  return s;
}

fs::path work_dir() {
  const fs::path dir = fs::temp_directory_path() / ("mixprec_llama_generate_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

}  // namespace

TEST_CASE("llama.cpp loads the converted F32 GGUF and reproduces the reference generation", "[interop][llama]") {
  const fs::path dir = work_dir();
  const std::string f32 = (dir / "aidreams260K-f32.gguf").string();
  REQUIRE(mixprec_tool({"convert", model_path, tokenizer_path, "-o", f32}) == 0);

  const run cpp = llama_cpp_run(f32);
  const run mine = mixprec_run(checkpoint_from_gguf(f32));
  std::printf("llama.cpp %s", llama_cpp::cpu_backend().c_str());
  std::printf("F32   llama.cpp: %s\nF32   mixprec:   %s\n", ids_text(cpp.ids).c_str(), ids_text(mine.ids).c_str());
  CHECK(cpp.ids == reference_ids);
  CHECK(mine.ids == reference_ids);
  CHECK(llama_cpp_text(f32, cpp.ids) == reference_text);
  float worst = 0.0f;
  for (int p = 0; p < steps; ++p)
    for (std::size_t v = 0; v < 512; ++v) worst = std::max(worst, std::abs(cpp.logits[p][v] - mine.logits[p][v]));
  std::printf("F32   largest |logit difference| llama.cpp vs mixprec over %d positions: %.3g\n", steps, static_cast<double>(worst));
  CHECK(worst < 1e-3f);
  fs::remove_all(dir);
}

TEST_CASE("llama.cpp and mixprec's engine generate the same tokens from mixed ggml types", "[interop][llama]") {
  const fs::path dir = work_dir();
  const std::string f32 = (dir / "aidreams260K-f32.gguf").string();
  const std::string mixed = (dir / "aidreams260K-mixed.gguf").string();
  const std::string plan = (dir / "plan.json").string();
  REQUIRE(mixprec_tool({"convert", model_path, tokenizer_path, "-o", f32}) == 0);

  // A type per tensor: ne0 must be a multiple of the type's block. Every matrix but ffn_down has rows of
  // dim = 64 (32-blocks fit, 256-blocks do not); ffn_down's rows are hidden_dim = 172 long, which no
  // block divides, so it stays float (F16 or F32). Norms stay F32, as llama-quantize leaves them.
  std::map<std::string, ggml_type> types = {{"token_embd.weight", ggml_type::q5_1}, {"output.weight", ggml_type::q5_0}};
  for (int l = 0; l < 4; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_output"}) types[p + n + ".weight"] = ggml_type::q8_0;
    types[p + "ffn_gate.weight"] = l % 2 ? ggml_type::q4_1 : ggml_type::q4_0;
    types[p + "ffn_up.weight"] = l == 3 ? ggml_type::iq4_nl : (l % 2 ? ggml_type::q4_0 : ggml_type::q4_1);
    types[p + "ffn_down.weight"] = l % 2 ? ggml_type::f32 : ggml_type::f16;
  }
  // The same mix as the tool's rules (llama-quantize's --tensor-type reading: a regex searched in the
  // name, the first match decides), planned and written by `mixprec plan` and `mixprec quantize`.
  // `^output` is anchored: searched, `output\.weight` would also match blk.N.attn_output.weight.
  REQUIRE(mixprec_tool({"plan", f32, "--budget", "32", "-o", plan,
                        "--tensor-type", "token_embd=q5_1", "--tensor-type", "^output\\.weight=q5_0", "--tensor-type", "attn=q8_0",
                        "--tensor-type", "blk\\.3\\.ffn_up=iq4_nl", "--tensor-type", "blk\\.[13]\\.ffn_up=q4_0", "--tensor-type", "ffn_up=q4_1",
                        "--tensor-type", "blk\\.[13]\\.ffn_gate=q4_1", "--tensor-type", "ffn_gate=q4_0",
                        "--tensor-type", "blk\\.[13]\\.ffn_down=f32", "--tensor-type", "ffn_down=f16"}) == 0);
  REQUIRE(mixprec_tool({"quantize", f32, "--plan", plan, "-o", mixed}) == 0);
  {
    const auto g = gguf::file::open(mixed);
    for (const auto& [name, type] : types) CHECK(g.at(name).type == static_cast<std::uint32_t>(type));
    std::printf("mixed GGUF: %llu bytes (F32: %llu)\n", static_cast<unsigned long long>(fs::file_size(mixed)),
                static_cast<unsigned long long>(fs::file_size(f32)));
  }

  const auto ck = checkpoint_from_gguf(mixed);
  const run cpp = llama_cpp_run(mixed);
  const run mine = mixprec_run(ck);
  std::printf("mixed llama.cpp: %s\nmixed mixprec:   %s\n", ids_text(cpp.ids).c_str(), ids_text(mine.ids).c_str());
  std::printf("mixed text (llama.cpp): %s\n", llama_cpp_text(mixed, cpp.ids).c_str());

  // Fed the same tokens (mixprec's choices), the two engines' logits position by position: the largest
  // difference of any logit, and how much llama.cpp moves the lead of mixprec's choice over mixprec's
  // runner-up (a token flips when that change exceeds the lead).
  const run cpp_forced = llama_cpp_run(mixed, &mine.ids);
  float worst = 0.0f, worst_lead_change = 0.0f;
  int tightest = 0;
  for (int p = 0; p < steps; ++p) {
    const auto& m = mine.logits[static_cast<std::size_t>(p)];
    const auto& c = cpp_forced.logits[static_cast<std::size_t>(p)];
    for (std::size_t v = 0; v < m.size(); ++v) worst = std::max(worst, std::abs(c[v] - m[v]));
    std::vector<float> rest = m;
    const auto first = static_cast<std::size_t>(mine.ids[static_cast<std::size_t>(p)]);
    rest[first] = -1e30f;
    const auto second = static_cast<std::size_t>(argmax(rest));
    const float lead_change = (c[first] - c[second]) - (m[first] - m[second]);
    worst_lead_change = std::max(worst_lead_change, std::abs(lead_change));
    std::printf("%s%d:%.3f/%.3f", p ? " " : "mixed leads (position:mixprec/llama.cpp) ", p, static_cast<double>(m[first] - m[second]),
                static_cast<double>(c[first] - c[second]));
    if (top2_gap(m) < top2_gap(mine.logits[static_cast<std::size_t>(tightest)])) tightest = p;
    if (cpp_forced.ids[static_cast<std::size_t>(p)] != mine.ids[static_cast<std::size_t>(p)])
      std::printf("position %d: llama.cpp picks %d, mixprec %d; mixprec's lead %.4f, changed by %.4f in llama.cpp\n", p,
                  cpp_forced.ids[static_cast<std::size_t>(p)], mine.ids[static_cast<std::size_t>(p)], static_cast<double>(m[first] - m[second]),
                  static_cast<double>(lead_change));
  }
  std::printf("\n");
  const auto& mt = mine.logits[static_cast<std::size_t>(tightest)];
  const auto& ct = cpp_forced.logits[static_cast<std::size_t>(tightest)];
  std::vector<float> rest = mt;
  const auto t1 = static_cast<std::size_t>(mine.ids[static_cast<std::size_t>(tightest)]);
  rest[t1] = -1e30f;
  const auto t2 = static_cast<std::size_t>(argmax(rest));
  std::printf("mixed: largest |logit difference| %.4f, largest change of the leader's lead %.4f; tightest position %d "
              "(%zu over %zu): lead %.4f in mixprec, %.4f in llama.cpp\n",
              static_cast<double>(worst), static_cast<double>(worst_lead_change), tightest, t1, t2,
              static_cast<double>(mt[t1] - mt[t2]), static_cast<double>(ct[t1] - ct[t2]));

  // The quantized weights are the same bytes on both sides; the arithmetic differs: llama.cpp multiplies
  // Q8_0/Q4_x/Q5_x/IQ4_NL weights by activations it first rounds to Q8_0 (F16 weights: to F16), mixprec's
  // engine keeps them in FP32. Measured on this model: logits move by up to 0.061 and the leader's lead
  // by up to 0.055 (at position 29, where the lead is 2.9); the smallest lead, 0.0555 at position 31,
  // grows to 0.0675 in llama.cpp: no token flips, and both engines also give the F32 reference ids. The
  // same figures to 4 digits with the package's sapphirerapids (AMX), icelake, haswell and sse42 CPU
  // backends. So all 40 ids are asserted equal. Should another release move a near tie across, the
  // lines printed above say where and by how much.
  CHECK(worst < 0.15f);
  CHECK(cpp_forced.ids == mine.ids);
  CHECK(cpp.ids == mine.ids);
  fs::remove_all(dir);
}
