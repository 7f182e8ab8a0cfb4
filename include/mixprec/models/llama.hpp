// A LLaMA-family inference engine on mixprec, for measuring quantization on real models: loads a GGUF
// of architecture "llama" (Llama 1/2/3, Mistral), "qwen2" (Qwen2/2.5), "qwen3" (dense Qwen3) or "phi3"
// (Phi-3, Phi-4-mini), as llama.cpp writes them, or a llama2.c checkpoint, and runs the forward pass (one
// implementation) over a whole sequence at once or token by token with a KV cache, every weight matrix
// either as stored (FP32 by Eigen; F16, BF16 and llama.cpp's block types straight from their bytes by
// mixprec::gemm, no FP32 copy; block types take
// their activations quantized as ggml does unless engine_options::activations is fp32)
// or re-quantized by one spec per matrix (a mixprec::quantized_linear built from a plan entry).
//
// The forward pass (llama2.c's run.c and llama.cpp's "llama", "qwen2", "qwen3" and "phi3" graphs compute
// the same thing), per layer:
//   h  = x + Wo attention(RoPE(N_q(Wq n + bq)), RoPE(N_k(Wk n + bk)), Wv n + bv),   n = rmsnorm(x) * attn_norm
//   x' = h + Wdown (silu(Wgate m) * (Wup m)),                m = rmsnorm(h) * ffn_norm
//   rmsnorm(x) = x / sqrt(mean(x^2) + eps)                   eps: ARCH.attention.layer_norm_rms_epsilon
// then logits = Woutput (rmsnorm(x) * output_norm). The biases b (qwen2; some llama files) and the head
// norms N (qwen3: rmsnorm of each head times attn_q_norm / attn_k_norm) are absent from other models;
// phi3 stores [Wq; Wk; Wv] and [Wgate; Wup] as one matrix each (run as one product, split after it).
// Attention: grouped-query (head h reads KV head h / (n_heads / n_kv_heads)), heads of head_size values
// (ARCH.attention.key_length, else dim / n_heads), scores q.k / sqrt(head_size), causal softmax in FP32.
// RoPE: pair i of each head, i < rope_dim / 2, is rotated by the angle p * s / f_i * theta^(-2i / rope_dim)
// (p the position, s the linear scaling 1 / ARCH.rope.scaling.factor, f_i rope_freqs.weight[i] when the
// file has it, else 1); the remaining head_size - rope_dim values pass unchanged. Pair i is the values
// (2i, 2i+1) in llama.cpp's NORM mode, which "llama" uses, and (i, i + rope_dim / 2) in its NEOX mode,
// which "qwen2" and "qwen3" use. llama2.c's RoPE on interleaved pairs is NORM (its converter does not
// permute wq/wk; llama.cpp's convert_hf_to_gguf permutes HF's half-split q/k into that order for
// "llama" and leaves them for the NEOX architectures), so one engine runs every kind of file.
//
// Matrices are (out x in) row-major; a GGUF tensor of dims {ne0, ne1} is ne1 rows of ne0 inputs.
// Numerics: FP32 throughout, the RoPE angles computed as ggml computes them (blocks.hpp's rope_cache);
// forward() runs one token against the KV cache, logits() a whole sequence with matrix-matrix products
// (prefill). Against llama.cpp's libllama on seeded models of each architecture
// (tests/interop/llama_arch_test.cpp; F32 weights and KV cache): logits within 2e-6 of the largest |logit|.
//
// This header includes the family's parts, each of which can be included alone:
//   models/llama/model.hpp     llama_config, llama_matrix, llama_layer, llama_model (the weights)
//   models/llama/load.hpp      llama_architectures, load_gguf, from_llama2c, load_llama
//   models/llama/engine.hpp    llama_engine (forward, prefill), greedy
//   models/blocks.hpp          RMSNorm, RoPE and softmax, forward and backward, shared by the engines
// and beside them (not included here): models/llama/backward.hpp (gradients),
// models/llama/measure.hpp (measured sensitivity) and models/llama/verify.hpp (plans run whole).
#pragma once

#include "mixprec/models/blocks.hpp"
#include "mixprec/models/llama/engine.hpp"
#include "mixprec/models/llama/load.hpp"
#include "mixprec/models/llama/model.hpp"
