// llama.cpp's quantization policy, in one place: which tensors of a model are quantization candidates
// (tensor roles, as llama.cpp's quantizer src/llama-quant.cpp decides them), which types a tensor is
// measured and planned with when no requested type can hold it (the fallback chain, plan/fallback.hpp,
// included here), and the general.file_type a GGUF records for its types (enum llama_ftype,
// include/llama.h). The measurement, the planner and the `mixprec` tool all take these decisions from
// here, so a plan, a measure file and a written GGUF agree on them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "mixprec/plan/fallback.hpp"

namespace mixprec {

// ---- tensor roles ----

// What a tensor is to the planner. Only float weight matrices and 3-D stacks of expert matrices are
// quantization candidates by default, as in llama.cpp's quantizer: vectors (norms, biases), MoE routers
// (ffn_gate_inp) and a few other tensors stay in float there, and an empty tensor has nothing to quantize.
enum class tensor_role {
  matrix,      // a weight matrix: quantized
  experts,     // a 3-D stack of expert matrices (one tensor, one type: GGUF stores one type per tensor)
  router,      // a MoE router (ffn_gate_inp): kept in float
  vector,      // a 1-D tensor (a norm or bias): kept in float
  empty,       // no elements
  kept_float,  // a tensor of 2+ dimensions llama.cpp never quantizes (see tensor_role_of)
};

// A phrase naming the role, for messages ("MoE router (ffn_gate_inp), which llama.cpp keeps in float").
[[nodiscard]] constexpr const char* to_string(tensor_role r) noexcept {
  switch (r) {
    case tensor_role::matrix: return "weight matrix";
    case tensor_role::experts: return "expert matrices";
    case tensor_role::router: return "MoE router (ffn_gate_inp), which llama.cpp keeps in float";
    case tensor_role::vector: return "1-D tensor (a norm or bias), kept in float";
    case tensor_role::empty: return "tensor with no elements";
    case tensor_role::kept_float: return "tensor that llama.cpp keeps in float";
  }
  return "?";
}

// Whether tensors of role r are quantized by default (matrix, experts).
[[nodiscard]] constexpr bool quantized_by_default(tensor_role r) noexcept {
  return r == tensor_role::matrix || r == tensor_role::experts;
}

// Parts of names llama.cpp never quantizes besides routers (src/llama-quant.cpp,
// tensor_allows_quantization, in the source node-llama-cpp 3.22.1 ships: llama.cpp 0.5.0): norms stored
// as matrices, DeepSeek-V4's routing table, Gemma 3n's small altup/laurel/per-layer tensors, Mamba's and
// LFM2's convolutions, MiniMax's indexer, RWKV's time-mix constants, T5's relative position bias, and the
// vision and audio encoders' position, patch and codebook tensors. tests/interop checks this list
// against that source.
inline constexpr std::string_view never_quantized_parts[] = {
    "_norm.weight",          "ffn_gate_tid2eid.weight",    "altup",
    "laurel",                "per_layer_model_proj",       "ssm_conv1d",
    "shortconv.conv.weight", "indexer.k_proj.weight",      "indexer.q_proj.weight",
    "time_mix_first.weight", "time_mix_w0.weight",         "time_mix_w1.weight",
    "time_mix_w2.weight",    "time_mix_v0.weight",         "time_mix_v1.weight",
    "time_mix_v2.weight",    "time_mix_a0.weight",         "time_mix_a1.weight",
    "time_mix_a2.weight",    "time_mix_g1.weight",         "time_mix_g2.weight",
    "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",     ".position_embd",             "sam.pos_embd",
    "sam.neck.",             "sam.net_",                   ".rel_pos",
    ".patch_embd",           ".patch_merger",              "a.rvq.codebook",
    "mm.a.code_embd"};
// Whole names llama.cpp never quantizes: positional and token-type embeddings (GPT-2, BERT).
inline constexpr std::string_view never_quantized_names[] = {"position_embd.weight", "token_types.weight"};

// ggml's count of a tensor's dimensions (ggml_n_dims): ne in ggml's order (ne[0] the row length), the
// trailing dimensions of size 1 not counted, at least 1. A [4096, 1] router of a shared expert is 1-D to
// llama.cpp, as a [4096] one is.
[[nodiscard]] constexpr std::size_t ggml_n_dims(std::span<const std::uint64_t> ne) noexcept {
  std::size_t n = ne.size();
  while (n > 1 && ne[n - 1] == 1) --n;
  return n == 0 ? 1 : n;
}

// The role of a tensor named `name` of shape `ne` (ggml's order: ne[0] the row length, ne[1] the rows,
// ne[2] the stacked expert matrices), by llama.cpp's rules (tensor_allows_quantization): a tensor is
// quantized when it has 2 or 3 dimensions as ggml counts them (ggml_n_dims), its name ends in "weight",
// it is not a MoE router ("ffn_gate_inp.weight") and no part of its name is in never_quantized_parts nor
// the whole in never_quantized_names. A tensor with no elements is `empty`; 4-D tensors are kept in float
// too (a rule of mixprec's: it plans matrices and stacks of them).
[[nodiscard]] constexpr tensor_role tensor_role_of(std::string_view name, std::span<const std::uint64_t> ne) noexcept {
  if (ne.empty()) return tensor_role::empty;
  for (const std::uint64_t n : ne)
    if (n == 0) return tensor_role::empty;
  const std::size_t n_dims = ggml_n_dims(ne);
  if (n_dims < 2) return tensor_role::vector;
  if (name.find("ffn_gate_inp.weight") != std::string_view::npos) return tensor_role::router;
  if (!name.ends_with("weight") || n_dims > 3) return tensor_role::kept_float;
  for (std::string_view part : never_quantized_parts)
    if (name.find(part) != std::string_view::npos) return tensor_role::kept_float;
  for (std::string_view whole : never_quantized_names)
    if (name == whole) return tensor_role::kept_float;
  return n_dims == 3 ? tensor_role::experts : tensor_role::matrix;
}

// ---- file types ----

// llama.cpp's general.file_type (enum llama_ftype, include/llama.h) for a file whose weights are mostly
// of the ggml type named `type` (ggml's lower-case names: "q4_K"), as llama.cpp's model loader guesses
// one for a file without the key (src/llama-model-loader.cpp: a K type counts as its _M mix, q2_K as
// Q2_K); "mxfp4", which the loader does not guess, is MOSTLY_MXFP4_MOE, the file type llama-quantize
// writes for it. nullopt for a type no file type names (q8_1, q8_K, the removed q4_0_4_4 ...).
[[nodiscard]] constexpr std::optional<std::uint32_t> llama_file_type(std::string_view type) noexcept {
  constexpr std::pair<std::string_view, std::uint32_t> table[] = {
      {"f32", 0},      {"f16", 1},     {"q4_0", 2},    {"q4_1", 3},   {"q8_0", 7},    {"q5_0", 8},    {"q5_1", 9},
      {"q2_K", 10},    {"q3_K", 12},   {"q4_K", 15},   {"q5_K", 17},  {"q6_K", 18},   {"iq2_xxs", 19}, {"iq2_xs", 20},
      {"iq3_xxs", 23}, {"iq1_s", 24},  {"iq4_nl", 25}, {"iq3_s", 26}, {"iq2_s", 28},  {"iq4_xs", 30}, {"iq1_m", 31},
      {"bf16", 32},    {"tq1_0", 36},  {"tq2_0", 37},  {"mxfp4", 38}, {"nvfp4", 39},  {"q1_0", 40},   {"q2_0", 41}};
  for (const auto& [name, code] : table)
    if (name == type) return code;
  return std::nullopt;
}

// The general.file_type of a file whose tensors hold `weights_by_type` (ggml type name -> weights of its
// tensors of 2+ dimensions, over the whole file): that of the type holding most of them among those with
// a file type (the first such type by name on a tie); 0 (ALL_F32) when none has one. llama.cpp's loader
// guesses by counting tensors, norms included; counting weights names what most of the bytes are.
[[nodiscard]] inline std::uint32_t dominant_file_type(const std::map<std::string, double>& weights_by_type) {
  std::uint32_t best = 0;
  double most = -1.0;
  for (const auto& [type, n] : weights_by_type)
    if (const auto code = llama_file_type(type); code && n > most) most = n, best = *code;
  return best;
}

}  // namespace mixprec
