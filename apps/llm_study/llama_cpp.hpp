// llama.cpp's C API, bound at run time: libllama of llama.cpp's own prebuilt CPU build (the npm package
// @node-llama-cpp/linux-x64@3.22.1, llama.cpp 0.5.0, ggml 0.25.1; tests/interop/run.sh fetches it) is
// dlopen'ed from a path, by default $MIXPREC_LLAMA_LIB, so nothing of llama.cpp is needed to build.
//
//   const auto& api = llama_cpp::library();              // loads once; throws mixprec::error
//   llama_cpp::model m(path, api.model_default_params());
//   llama_cpp::context ctx(m, params);                   // params: api.context_default_params(), edited
//   std::vector<float> l = ctx.logits_all(tokens);       // tokens.size() x n_vocab, row-major
//   llama_cpp::quantize("in.gguf", "out.gguf", llama_cpp::ftype::q4_K_M);  // llama-quantize's recipe
//
// The structs below are passed and returned by value, so their layouts must match include/llama.h of
// that release field for field; library() checks them against the release's default values
// (src/llama-model.cpp, src/llama-context.cpp, src/llama-quant.cpp) before anything runs with them.
//
// Errors are mixprec::error: io_error for a library that cannot be opened (or MIXPREC_LLAMA_LIB unset),
// a model that does not load, a quantization that fails; unsupported for a missing symbol or a layout
// that does not match (another release); invalid_argument for a batch llama_decode refuses. Messages
// carry the warnings and errors llama.cpp logged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <dlfcn.h>

#include "mixprec/error.hpp"

namespace mixprec_apps::llama_cpp {

using mixprec::errc;
using mixprec::error;

// ---- the ABI (include/llama.h of llama.cpp 0.5.0; enums are int32_t) ----

struct opaque_model;    // struct llama_model
struct opaque_context;  // struct llama_context
struct opaque_vocab;    // struct llama_vocab
struct opaque_memory;   // *llama_memory_t

struct model_params {  // struct llama_model_params
  void* devices;
  const void* tensor_buft_overrides;
  std::int32_t n_gpu_layers;
  std::int32_t split_mode;  // enum llama_split_mode
  std::int32_t load_mode;   // enum llama_load_mode
  std::int32_t lazy_mode;   // enum llama_lazy_mode
  std::int32_t main_gpu;
  const float* tensor_split;
  void* progress_callback;
  void* progress_callback_user_data;
  const void* kv_overrides;
  bool vocab_only, check_tensors, use_extra_bufts, no_host, no_alloc, load_mtp;
};

struct context_params {  // struct llama_context_params
  std::uint32_t n_ctx, n_batch, n_ubatch, n_seq_max, n_rs_seq, n_outputs_max, n_outputs_max_per_seq;
  std::int32_t n_threads, n_threads_batch;
  std::int32_t ctx_type, rope_scaling_type, pooling_type, attention_type, flash_attn_type;  // enums
  float rope_freq_base, rope_freq_scale, yarn_ext_factor, yarn_attn_factor, yarn_beta_fast, yarn_beta_slow;
  std::uint32_t yarn_orig_ctx;
  float defrag_thold;
  void* cb_eval;
  void* cb_eval_user_data;
  std::int32_t type_k, type_v;  // enum ggml_type
  void* abort_callback;
  void* abort_callback_data;
  bool embeddings, offload_kqv, no_perf, op_offload, swa_full, kv_unified;
  void* samplers;
  std::size_t n_samplers;
  void* ctx_other;
};

struct batch_abi {  // struct llama_batch
  std::int32_t n_tokens;
  std::int32_t* token;
  float* embd;
  std::int32_t* pos;
  std::int32_t* n_seq_id;
  std::int32_t** seq_id;
  std::int8_t* logits;  // nonzero: output this position's logits
};

struct imatrix_data {  // struct llama_model_imatrix_data; a list ends with {nullptr, nullptr, 0}
  const char* name;
  const float* data;
  std::size_t size;
};

struct kv_override {  // struct llama_model_kv_override; a list ends with key[0] == 0
  enum tag_type : std::int32_t { int_value, float_value, bool_value, string_value };  // LLAMA_KV_OVERRIDE_TYPE_*
  tag_type tag;
  char key[128];
  union {
    std::int64_t val_i64;
    double val_f64;
    bool val_bool;
    char val_str[128];
  };
};
static_assert(sizeof(kv_override) == 264, "llama_model_kv_override: int32 tag, char[128] key, 8-aligned 128-byte union");

struct quantize_params {  // struct llama_model_quantize_params
  std::int32_t nthread;               // <= 0: std::thread::hardware_concurrency()
  std::int32_t ftype;                 // enum llama_ftype
  std::int32_t output_tensor_type;    // enum ggml_type; GGML_TYPE_COUNT (43): the recipe's
  std::int32_t token_embedding_type;  // enum ggml_type; GGML_TYPE_COUNT (43): the recipe's
  bool allow_requantize, quantize_output_tensor, only_copy, pure, keep_split, dry_run;
  const imatrix_data* imatrix;
  const kv_override* kv_overrides;
  const void* tt_overrides;           // const struct llama_model_tensor_override*
  const std::int32_t* prune_layers;
  std::size_t max_buf_size;           // bytes; 0: 8 GiB
};
static_assert(sizeof(quantize_params) == 64, "llama_model_quantize_params: 4 int32, 6 bools, 4 pointers, a size_t (LP64)");

// enum llama_ftype: llama-quantize's recipes (src/llama-quant.cpp picks each tensor's type from it).
enum class ftype : std::int32_t {
  q4_0 = 2,     // LLAMA_FTYPE_MOSTLY_Q4_0
  q8_0 = 7,     // LLAMA_FTYPE_MOSTLY_Q8_0
  q4_K_M = 15,  // LLAMA_FTYPE_MOSTLY_Q4_K_M
  q5_K_M = 17,  // LLAMA_FTYPE_MOSTLY_Q5_K_M
  q6_K = 18,    // LLAMA_FTYPE_MOSTLY_Q6_K
};

// The recipes this binding offers, by llama-quantize's names ("Q4_0", "Q4_K_M", ...).
inline const std::map<std::string, ftype>& ftype_names() {
  static const std::map<std::string, ftype> names = {{"Q4_0", ftype::q4_0},     {"Q8_0", ftype::q8_0}, {"Q4_K_M", ftype::q4_K_M},
                                                      {"Q5_K_M", ftype::q5_K_M}, {"Q6_K", ftype::q6_K}};
  return names;
}

// The recipe named `name` (one of ftype_names()); throws errc::invalid_argument.
[[nodiscard]] inline ftype parse_ftype(const std::string& name) {
  const auto it = ftype_names().find(name);
  if (it != ftype_names().end()) return it->second;
  std::string known;
  for (const auto& [n, t] : ftype_names()) known += (known.empty() ? "" : ", ") + n;
  throw error(errc::invalid_argument, "unknown llama.cpp quantization type '" + name + "' (expected one of " + known + ")");
}

using log_callback = void (*)(int level, const char* text, void* user_data);  // level: enum ggml_log_level

// The functions used, by their llama.h names without the llama_ prefix.
struct api {
  void (*backend_init)();
  void (*load_all_from_path)(const char*);  // ggml_backend_load_all_from_path (libggml)
  void (*log_set)(log_callback, void*);
  model_params (*model_default_params)();
  context_params (*context_default_params)();
  quantize_params (*model_quantize_default_params)();
  opaque_model* (*model_load_from_file)(const char*, model_params);
  void (*model_free)(opaque_model*);
  std::uint32_t (*model_quantize)(const char*, const char*, const quantize_params*);  // 0 on success
  opaque_context* (*init_from_model)(opaque_model*, context_params);
  void (*free)(opaque_context*);
  const opaque_vocab* (*model_get_vocab)(const opaque_model*);
  std::int32_t (*vocab_n_tokens)(const opaque_vocab*);
  batch_abi (*batch_get_one)(std::int32_t*, std::int32_t);
  batch_abi (*batch_init)(std::int32_t n_tokens, std::int32_t embd, std::int32_t n_seq_max);
  void (*batch_free)(batch_abi);
  std::int32_t (*decode)(opaque_context*, batch_abi);
  opaque_memory* (*get_memory)(const opaque_context*);
  void (*memory_clear)(opaque_memory*, bool data);
  float* (*get_logits_ith)(opaque_context*, std::int32_t);
  std::int32_t (*token_to_piece)(const opaque_vocab*, std::int32_t, char*, std::int32_t, std::int32_t, bool);
  // (vocab, text, text_len, tokens, n_tokens_max, add_special, parse_special): the count, or minus the
  // count needed when n_tokens_max is too small
  std::int32_t (*tokenize)(const opaque_vocab*, const char*, std::int32_t, std::int32_t*, std::int32_t, bool, bool);
};

namespace detail {

struct log_state {
  std::mutex mutex;
  std::string messages;  // warnings and errors since the last take_log()
  std::string cpu_backend;
};
inline log_state& log() {
  static log_state s;
  return s;
}

// Keeps llama.cpp's warnings and errors (GGML_LOG_LEVEL_WARN 3, _ERROR 4) and the line naming the CPU
// backend it chose (an info, level 2); drops the rest, which llama.cpp would print to stderr.
inline void keep_warnings(int level, const char* text, void*) {
  log_state& s = log();
  const std::lock_guard<std::mutex> lock(s.mutex);
  if (level == 3 || level == 4) s.messages += text;
  if (level == 2 && std::strstr(text, "loaded CPU backend")) s.cpu_backend = text;
}

}  // namespace detail

// The warnings and errors llama.cpp logged since the last call (cleared by it).
inline std::string take_log() {
  detail::log_state& s = detail::log();
  const std::lock_guard<std::mutex> lock(s.mutex);
  return std::exchange(s.messages, {});
}

namespace detail {
// take_log() without its trailing newline, for an error message.
inline std::string log_for_message() {
  std::string s = take_log();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s.empty() ? "(llama.cpp logged no error)" : s;
}
}  // namespace detail

// llama.cpp's line naming the CPU backend it loaded (e.g. "... loaded CPU backend from .../libggml-cpu-haswell.so").
inline std::string cpu_backend() {
  detail::log_state& s = detail::log();
  const std::lock_guard<std::mutex> lock(s.mutex);
  return s.cpu_backend;
}

// Opens libllama at `path` (it finds its libggml*.so beside it: RUNPATH $ORIGIN), binds every function
// of `api`, routes llama.cpp's log to take_log(), initialises the backend and loads the CPU backends of
// the library's folder (libggml-cpu-<level>.so, the best for this CPU, as node-llama-cpp's addon does).
// The library stays loaded for the life of the process.
[[nodiscard]] inline api open_library(const std::string& path) {
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) throw error(errc::io_error, "cannot load llama.cpp's library '" + path + "': " + dlerror());
  api a{};
  auto sym = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));  // h and its dependencies
    if (!fn) throw error(errc::unsupported, "'" + path + "' lacks " + name + " (not llama.cpp 0.5.0?)");
  };
  sym(a.backend_init, "llama_backend_init");
  sym(a.load_all_from_path, "ggml_backend_load_all_from_path");
  sym(a.log_set, "llama_log_set");
  sym(a.model_default_params, "llama_model_default_params");
  sym(a.context_default_params, "llama_context_default_params");
  sym(a.model_quantize_default_params, "llama_model_quantize_default_params");
  sym(a.model_load_from_file, "llama_model_load_from_file");
  sym(a.model_free, "llama_model_free");
  sym(a.model_quantize, "llama_model_quantize");
  sym(a.init_from_model, "llama_init_from_model");
  sym(a.free, "llama_free");
  sym(a.model_get_vocab, "llama_model_get_vocab");
  sym(a.vocab_n_tokens, "llama_vocab_n_tokens");
  sym(a.batch_get_one, "llama_batch_get_one");
  sym(a.batch_init, "llama_batch_init");
  sym(a.batch_free, "llama_batch_free");
  sym(a.decode, "llama_decode");
  sym(a.get_memory, "llama_get_memory");
  sym(a.memory_clear, "llama_memory_clear");
  sym(a.get_logits_ith, "llama_get_logits_ith");
  sym(a.token_to_piece, "llama_token_to_piece");
  sym(a.tokenize, "llama_tokenize");
  a.log_set(detail::keep_warnings, nullptr);
  a.backend_init();
  a.load_all_from_path(std::filesystem::path(path).parent_path().c_str());
  // The defaults of that release: a field read at the wrong offset shows here.
  const auto mp = a.model_default_params();
  const auto cp = a.context_default_params();
  const auto qp = a.model_quantize_default_params();
  const bool model_layout = mp.devices == nullptr && mp.n_gpu_layers == -1 && mp.split_mode == 1 && mp.load_mode == -1 &&
                            mp.lazy_mode == 1 && mp.main_gpu == 0 && mp.kv_overrides == nullptr && !mp.vocab_only &&
                            !mp.check_tensors && mp.use_extra_bufts && !mp.no_host && !mp.no_alloc && !mp.load_mtp;
  const bool context_layout = cp.n_ctx == 512 && cp.n_batch == 2048 && cp.n_ubatch == 512 && cp.n_seq_max == 1 &&
                              cp.n_outputs_max_per_seq == 1 && cp.flash_attn_type == -1 && cp.yarn_ext_factor == -1.0f &&
                              cp.defrag_thold == -1.0f && cp.type_k == 1 && cp.type_v == 1 && !cp.embeddings && cp.offload_kqv &&
                              cp.no_perf && cp.op_offload && cp.swa_full && !cp.kv_unified && cp.samplers == nullptr &&
                              cp.n_samplers == 0 && cp.ctx_other == nullptr;
  const bool quantize_layout = qp.nthread == 0 && qp.ftype == static_cast<std::int32_t>(ftype::q8_0) && qp.output_tensor_type == 43 &&
                               qp.token_embedding_type == 43 && !qp.allow_requantize && qp.quantize_output_tensor && !qp.only_copy &&
                               !qp.pure && !qp.keep_split && !qp.dry_run && qp.imatrix == nullptr && qp.kv_overrides == nullptr &&
                               qp.tt_overrides == nullptr && qp.prune_layers == nullptr && qp.max_buf_size == (std::size_t{8} << 30);
  if (!model_layout || !context_layout || !quantize_layout)
    throw error(errc::unsupported, "'" + path + "': the defaults of llama_model_params / llama_context_params / " +
                                       "llama_model_quantize_params do not match the declared layout (another llama.cpp release?)");
  return a;
}

// The library at $MIXPREC_LLAMA_LIB, opened once (open_library) on the first call.
[[nodiscard]] inline const api& library() {
  static const api a = [] {
    const char* path = std::getenv("MIXPREC_LLAMA_LIB");
    if (!path || !*path)
      throw error(errc::io_error, "MIXPREC_LLAMA_LIB is not set: point it at libllama.v0.5.0.so of the npm package "
                                  "@node-llama-cpp/linux-x64@3.22.1 (tests/interop/run.sh fetches it)");
    return open_library(path);
  }();
  return a;
}

// ---- handles ----

// A model loaded by llama_model_load_from_file; freed with it.
class model {
 public:
  // Throws errc::io_error with llama.cpp's log when the file does not load.
  model(const std::string& path, const model_params& params) : api_(&library()) {
    (void)take_log();
    handle_ = api_->model_load_from_file(path.c_str(), params);
    if (!handle_) throw error(errc::io_error, "llama.cpp cannot load '" + path + "': " + detail::log_for_message());
  }
  model(const model&) = delete;
  model& operator=(const model&) = delete;
  ~model() { api_->model_free(handle_); }

  [[nodiscard]] opaque_model* get() const noexcept { return handle_; }
  [[nodiscard]] const opaque_vocab* vocab() const noexcept { return api_->model_get_vocab(handle_); }
  [[nodiscard]] int n_vocab() const noexcept { return api_->vocab_n_tokens(vocab()); }
  // llama_tokenize's ids of text (add_special: BOS/EOS as the vocabulary adds them; parse_special: control
  // tokens' texts become those tokens). Throws errc::invalid_argument when llama.cpp fails.
  [[nodiscard]] std::vector<std::int32_t> tokenize(std::string_view text, bool add_special, bool parse_special) const {
    std::vector<std::int32_t> ids(text.size() + 8);
    const auto call = [&] {
      return api_->tokenize(vocab(), text.data(), static_cast<std::int32_t>(text.size()), ids.data(), static_cast<std::int32_t>(ids.size()),
                            add_special, parse_special);
    };
    std::int32_t n = call();
    if (n < 0 && n != std::numeric_limits<std::int32_t>::min()) {
      ids.resize(static_cast<std::size_t>(-n));
      n = call();
    }
    if (n < 0) throw error(errc::invalid_argument, "llama_tokenize failed (" + std::to_string(n) + ")");
    ids.resize(static_cast<std::size_t>(n));
    return ids;
  }

 private:
  const api* api_;
  opaque_model* handle_;
};

// A context (KV cache, threads, output buffers) on a model that outlives it; freed with llama_free.
class context {
 public:
  // Throws errc::invalid_argument with llama.cpp's log when llama_init_from_model refuses the params.
  context(const model& m, const context_params& params) : api_(&library()), n_vocab_(m.n_vocab()), n_ctx_(params.n_ctx) {
    (void)take_log();
    handle_ = api_->init_from_model(m.get(), params);
    if (!handle_) throw error(errc::invalid_argument, "llama.cpp cannot create a context: " + detail::log_for_message());
  }
  context(const context&) = delete;
  context& operator=(const context&) = delete;
  ~context() { api_->free(handle_); }

  [[nodiscard]] opaque_context* get() const noexcept { return handle_; }

  // llama_decode; throws errc::invalid_argument naming llama.h's meaning of a nonzero result.
  void decode(const batch_abi& b) {
    const std::int32_t r = api_->decode(handle_, b);
    if (r == 0) return;
    const char* meaning = r == 1 ? "no KV-cache slot for the batch (context too small)"
                          : r == 2 ? "aborted"
                          : r == -1 ? "invalid input batch"
                                    : "fatal error";
    throw error(errc::invalid_argument, "llama_decode returned " + std::to_string(r) + ": " + meaning + "; " + detail::log_for_message());
  }

  // The logits of every position of `tokens` (positions 0..n-1 of sequence 0, after clearing the KV
  // cache), decoded as one batch: n x n_vocab floats, row p the logits that predict token p + 1.
  // The context's n_ctx and n_batch must hold n tokens (errc::invalid_argument otherwise).
  [[nodiscard]] std::vector<float> logits_all(std::span<const int> tokens) {
    const auto n = static_cast<std::int32_t>(tokens.size());
    if (tokens.empty() || tokens.size() > n_ctx_)
      throw error(errc::invalid_argument, "a stream of " + std::to_string(tokens.size()) + " tokens for a context of " +
                                              std::to_string(n_ctx_));
    api_->memory_clear(api_->get_memory(handle_), true);
    batch_owner b(*api_, n);
    for (std::int32_t i = 0; i < n; ++i) {
      b.value.token[i] = tokens[static_cast<std::size_t>(i)];
      b.value.pos[i] = i;
      b.value.n_seq_id[i] = 1;
      b.value.seq_id[i][0] = 0;
      b.value.logits[i] = 1;
    }
    b.value.n_tokens = n;
    decode(b.value);
    std::vector<float> out(static_cast<std::size_t>(n) * static_cast<std::size_t>(n_vocab_));
    for (std::int32_t i = 0; i < n; ++i) {
      const float* l = api_->get_logits_ith(handle_, i);
      if (!l) throw error(errc::invalid_argument, "llama_get_logits_ith(" + std::to_string(i) + ") returned no logits");
      std::memcpy(out.data() + static_cast<std::size_t>(i) * static_cast<std::size_t>(n_vocab_), l,
                  static_cast<std::size_t>(n_vocab_) * sizeof(float));
    }
    return out;
  }

 private:
  // A batch from llama_batch_init (one sequence id per token), freed by llama_batch_free.
  struct batch_owner {
    batch_owner(const api& a, std::int32_t n) : api_(&a), value(a.batch_init(n, 0, 1)) {}
    batch_owner(const batch_owner&) = delete;
    batch_owner& operator=(const batch_owner&) = delete;
    ~batch_owner() { api_->batch_free(value); }
    const api* api_;
    batch_abi value;
  };

  const api* api_;
  int n_vocab_;
  std::uint32_t n_ctx_;
  opaque_context* handle_;
};

// ---- quantization ----

// Per-weight importance as llama-quantize hands it to llama_model_quantize (tools/quantize/quantize.cpp
// load_imatrix): for each weight name, ne0 * n_mat floats, the per-token mean of x^2 per input feature,
// expert-major (mixprec::imatrix::entry::importance() computes exactly that from either file format).
using importance_map = std::map<std::string, std::vector<float>>;

// What llama.cpp's own GGUF quantize metadata records about the imatrix (llama-quantize sets these KVs
// through kv_overrides: quantize.imatrix.file / .dataset / .entries_count / .chunks_count).
struct imatrix_origin {
  std::string file;
  std::string dataset;  // empty: not recorded
  int chunks = -1;      // <= 0: not recorded
};

// Quantizes the GGUF at `in` to `out` with llama.cpp's recipe `type` (llama_model_quantize, as
// llama-quantize runs it with its defaults), using `importance` when not empty, on `threads` threads
// (<= 0: every core). Writes `out` directly; returns the warnings llama.cpp logged (e.g. its shape
// fallbacks: "warning: <tensor> - ncols N not divisible by 256 ... -> falling back to q5_0").
// Throws errc::io_error with llama.cpp's log when it fails.
inline std::string quantize(const std::string& in, const std::string& out, ftype type, const importance_map& importance = {},
                            const imatrix_origin& origin = {}, int threads = 0) {
  const api& a = library();
  quantize_params p = a.model_quantize_default_params();
  p.nthread = threads;
  p.ftype = static_cast<std::int32_t>(type);
  std::vector<imatrix_data> data;
  std::vector<kv_override> kvs;
  if (!importance.empty()) {
    for (const auto& [name, values] : importance) data.push_back({name.c_str(), values.data(), values.size()});
    data.push_back({nullptr, nullptr, 0});
    p.imatrix = data.data();
    auto add = [&](const char* key) -> kv_override& {
      kv_override& kv = kvs.emplace_back();
      std::memset(&kv, 0, sizeof kv);
      std::strncpy(kv.key, key, sizeof kv.key - 1);
      return kv;
    };
    auto add_string = [&](const char* key, const std::string& value) {
      kv_override& kv = add(key);
      kv.tag = kv_override::string_value;
      std::strncpy(kv.val_str, value.c_str(), sizeof kv.val_str - 1);  // llama-quantize keeps 127 bytes too
    };
    auto add_int = [&](const char* key, std::int64_t value) {
      kv_override& kv = add(key);
      kv.tag = kv_override::int_value;
      kv.val_i64 = value;
    };
    add_string("quantize.imatrix.file", origin.file);
    if (!origin.dataset.empty()) add_string("quantize.imatrix.dataset", origin.dataset);
    add_int("quantize.imatrix.entries_count", static_cast<std::int64_t>(importance.size()));
    if (origin.chunks > 0) add_int("quantize.imatrix.chunks_count", origin.chunks);
    add("");  // terminator: key[0] == 0
    p.kv_overrides = kvs.data();
  }
  (void)take_log();
  if (a.model_quantize(in.c_str(), out.c_str(), &p) != 0)
    throw error(errc::io_error, "llama.cpp cannot quantize '" + in + "': " + detail::log_for_message());
  return take_log();
}

}  // namespace mixprec_apps::llama_cpp
