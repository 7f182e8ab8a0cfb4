// llama.cpp's quantization policy (plan/llama_quant_policy.hpp): tensor roles by name and shape, and
// general.file_type. The lists themselves are checked against llama.cpp's source in
// tests/interop/llama_quant_policy_test.cpp; this checks the rules that combine them.
#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "mixprec/plan/llama_quant_policy.hpp"

using mixprec::tensor_role;
using mixprec::tensor_role_of;

namespace {

// The role of a tensor of shape ne (ggml's order: the row length first).
tensor_role role(std::string_view name, const std::vector<std::uint64_t>& ne) { return tensor_role_of(name, ne); }

}  // namespace

TEST_CASE("tensor roles follow llama.cpp's quantizer", "[policy]") {
  // Matrices and expert stacks of a LLaMA / MoE model.
  CHECK(role("token_embd.weight", {4096, 32000}) == tensor_role::matrix);
  CHECK(role("output.weight", {4096, 32000}) == tensor_role::matrix);
  CHECK(role("blk.0.attn_q.weight", {4096, 4096}) == tensor_role::matrix);
  CHECK(role("blk.3.ffn_up_exps.weight", {256, 1024, 8}) == tensor_role::experts);
  CHECK(role("blk.3.ffn_up_exps.weight", {256, 1, 8}) == tensor_role::experts);  // one-row experts: still 3-D
  CHECK(role("blk.0.attn_q.weight", {4096, 4096, 1}) == tensor_role::matrix);     // a trailing 1 is no dimension
  // Routers, by the name's ".weight"-anchored part; a shared expert's gate is another tensor, stored as
  // [n_embd, 1] by llama.cpp's converter: 1-D as ggml counts (ggml_n_dims), so a vector, as llama.cpp keeps it.
  CHECK(role("blk.0.ffn_gate_inp.weight", {256, 8}) == tensor_role::router);
  CHECK(role("blk.0.ffn_gate_inp_shexp.weight", {256, 1}) == tensor_role::vector);
  CHECK(role("blk.0.ffn_gate_inp_shexp.weight", {256}) == tensor_role::vector);
  CHECK(role("blk.0.ffn_gate_inp_shexp.weight", {256, 2}) == tensor_role::matrix);
  CHECK(mixprec::ggml_n_dims(std::vector<std::uint64_t>{256, 1, 1}) == 1);
  CHECK(mixprec::ggml_n_dims(std::vector<std::uint64_t>{1, 1}) == 1);
  CHECK(mixprec::ggml_n_dims(std::vector<std::uint64_t>{1, 5}) == 2);
  // Vectors whatever their names; empty tensors before anything else.
  CHECK(role("blk.0.attn_norm.weight", {4096}) == tensor_role::vector);
  CHECK(role("blk.0.attn_q.bias", {4096}) == tensor_role::vector);
  CHECK(role("blk.0.attn_q.weight", {4096, 0}) == tensor_role::empty);
  CHECK(role("blk.0.attn_q.weight", {0, 4096}) == tensor_role::empty);
  CHECK(role("blk.0.attn_q.weight", {}) == tensor_role::empty);
  // Kept in float: names not ending in "weight", 4-D tensors, norms stored as matrices, the listed parts
  // (anywhere in the name) and the whole names (only as the whole name).
  CHECK(role("blk.0.attn_q.bias", {4096, 4}) == tensor_role::kept_float);
  CHECK(role("blk.0.attn_q.weight", {64, 64, 2, 2}) == tensor_role::kept_float);
  CHECK(role("blk.0.attn_q_norm.weight", {128, 32}) == tensor_role::kept_float);
  CHECK(role("blk.0.ssm_conv1d.weight", {4096, 4}) == tensor_role::kept_float);
  CHECK(role("blk.0.time_mix_w1.weight", {4096, 64}) == tensor_role::kept_float);
  CHECK(role("position_embd.weight", {768, 1024}) == tensor_role::kept_float);
  CHECK(role("token_types.weight", {768, 2}) == tensor_role::kept_float);
  CHECK(role("v.position_embd.weight", {768, 1024}) == tensor_role::kept_float);
  CHECK(role("blk.0.token_types.weight", {768, 2}) == tensor_role::matrix);  // not the whole name
  // Only matrices and expert stacks are quantized by default.
  for (tensor_role r : {tensor_role::matrix, tensor_role::experts}) CHECK(mixprec::quantized_by_default(r));
  for (tensor_role r : {tensor_role::router, tensor_role::vector, tensor_role::empty, tensor_role::kept_float})
    CHECK_FALSE(mixprec::quantized_by_default(r));
  // Every role has its own phrase for messages.
  std::map<std::string, int> phrases;
  for (tensor_role r : {tensor_role::matrix, tensor_role::experts, tensor_role::router, tensor_role::vector, tensor_role::empty,
                        tensor_role::kept_float})
    ++phrases[mixprec::to_string(r)];
  CHECK(phrases.size() == 6);
}

TEST_CASE("general.file_type: the K types as their _M mix, the type holding most weights", "[policy]") {
  CHECK(mixprec::llama_file_type("q4_K") == 15u);  // LLAMA_FTYPE_MOSTLY_Q4_K_M
  CHECK(mixprec::llama_file_type("q2_K") == 10u);  // LLAMA_FTYPE_MOSTLY_Q2_K (no _M mix)
  CHECK(mixprec::llama_file_type("mxfp4") == 38u); // LLAMA_FTYPE_MOSTLY_MXFP4_MOE, as llama-quantize writes
  CHECK_FALSE(mixprec::llama_file_type("q8_K"));   // an intermediate type no file is "mostly" of
  CHECK_FALSE(mixprec::llama_file_type("Q4_K"));   // ggml names it "q4_K"
  CHECK_FALSE(mixprec::llama_file_type(""));

  CHECK(mixprec::dominant_file_type({}) == 0u);
  CHECK(mixprec::dominant_file_type({{"q8_K", 1e9}}) == 0u);  // no type with a file type: ALL_F32
  CHECK(mixprec::dominant_file_type({{"f32", 10.0}, {"q4_K", 30.0}, {"q6_K", 20.0}}) == 15u);
  CHECK(mixprec::dominant_file_type({{"q8_K", 1e9}, {"q6_K", 1.0}}) == 18u);  // the largest that has one
  CHECK(mixprec::dominant_file_type({{"q4_0", 5.0}, {"q5_0", 5.0}}) == 2u);  // a tie: the first by name
}
