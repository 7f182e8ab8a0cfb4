// Umbrella header: every header of mixprec that needs only Eigen, xsimd and the C++ standard library
// (plus POSIX for the file readers' mmap and the writers' atomic rename: io/mapped_file.hpp,
// io/output_file.hpp). Linking mixprec::mixprec is enough for it: every instruction-set level's kernels
// are compiled inside the including translation unit (kernels/isa.hpp, detail/simd/target.hpp), so no
// per-ISA source file or -m flag is needed, and nothing here has to be left out for that reason. The
// worker pool (detail/parallel.hpp) uses std::thread: link Threads::Threads where the platform asks
// for it (glibc 2.34 and later do not).
//
// Included, by part (headers under detail/ and kernels/simd/ come with the parts that use them):
//   types, error, version, layer, model       vocabulary: Eigen aliases, errors, a user's layers
//   formats/    number formats and llama.cpp's ggml block types (formats/ggml.hpp: all of ggml)
//   quantize/   quant_spec, quantize / dequantize, quantized_tensor, calibration, ggml matrices
//   kernels/    SIMD kernels and their dispatch, GEMV, quantized_linear; kernels/ref/: the scalar truth
//   sensitivity/  metrics, hessian, probe, reports (sensitivity/sensitivity.hpp)
//   plan/       plan_builder, policies, constraints, rules, quantize_model, drop classes (plan/plan.hpp),
//               llama.cpp's tensor-type file (plan/tensor_type_file.hpp), its quantization policy
//               (plan/llama_quant_policy.hpp: tensor roles, fallback chain, file types)
//   qat/        fake_quant; ggml_tune (GPTQ inside llama.cpp's block types)
//   io/         GGUF, imatrix, llama2.c checkpoints, mapped and atomically written files
//   models/     the LLaMA-family engine, its tokenizers, calibration streams, measured sensitivity,
//               verified plans
//
// Optional, not included: each needs a library beyond Eigen and xsimd; include it yourself and link
// that library (mixprec's package does not require them):
//   mixprec/plan/plan_json.hpp            needs nlohmann/json (plans as JSON)
//   mixprec/sensitivity/report_json.hpp   needs nlohmann/json (sensitivity reports as JSON)
//   mixprec/io/safetensors.hpp            needs nlohmann/json (a safetensors header is JSON)
//   mixprec/io/safetensors_index.hpp      needs nlohmann/json (a sharded checkpoint's index is JSON)
//   mixprec/detail/json_number.hpp        needs nlohmann/json (the number formatting the three share)
//   mixprec/detail/json_strict.hpp        needs nlohmann/json (the duplicate-key-refusing parser they share)
//   mixprec/io/idx.hpp                    needs zlib (gzip-compressed IDX files)
// tests/umbrella checks this banner: every header is included here or listed above as optional with
// a reason it really has, and what is included uses only the standard library, POSIX, Eigen and xsimd.
//
// Shared pieces, one home each (use these rather than writing another):
//   a user's layers and model        layer.hpp, model.hpp (every analysis, the probe, shapes_of,
//                                    quantize_model, imatrix); results to the planner: sensitivity/to_table.hpp
//   an error with a code and context error.hpp (error::in_context wraps one on its way up)
//   decoding a quantized row         kernels/ref/row_codec.hpp, entered through formats.hpp's visit_format
//   the accuracy-drop classes        plan/drop_classes.hpp (the report and the threshold policy)
//   threads                          detail/parallel.hpp (one exception-safe pool: parallel_for, for_row_chunks)
//   log-softmax and KL of logits     sensitivity/kl.hpp (kl_reference for one reference against many)
//   the fallback chain of types      plan/fallback.hpp (with_fallback)
//   which tensors llama.cpp quantizes plan/llama_quant_policy.hpp (tensor_role_of; llama_file_type)
//   matrix products' options         kernels/gemv_options.hpp (threads, FP32 or INT8 activations)
//   writing a file                   io/output_file.hpp (temporary + rename; the tools' signal handler)
//   ggml's block types               formats/ggml_blocks.hpp, kernels/ref/ggml_ref.hpp, kernels/ggml_row.hpp,
//                                    quantize/ggml.hpp (formats/ggml.hpp includes the four)
#pragma once

#include "mixprec/error.hpp"
#include "mixprec/layer.hpp"
#include "mixprec/model.hpp"
#include "mixprec/types.hpp"
#include "mixprec/version.hpp"

#include "mixprec/formats/float_convert.hpp"
#include "mixprec/formats/formats.hpp"
#include "mixprec/formats/ggml.hpp"
#include "mixprec/formats/ggml_blocks.hpp"
#include "mixprec/formats/ggml_types.hpp"

#include "mixprec/quantize/calibration.hpp"
#include "mixprec/quantize/ggml.hpp"
#include "mixprec/quantize/quantize.hpp"
#include "mixprec/quantize/quantized_tensor.hpp"
#include "mixprec/quantize/spec.hpp"

#include "mixprec/kernels/dispatch.hpp"
#include "mixprec/kernels/gemv.hpp"
#include "mixprec/kernels/gemv_options.hpp"
#include "mixprec/kernels/ggml_row.hpp"
#include "mixprec/kernels/isa.hpp"
#include "mixprec/kernels/kernel_set.hpp"
#include "mixprec/kernels/quantized_linear.hpp"
#include "mixprec/kernels/ref/gemv_q8_ref.hpp"
#include "mixprec/kernels/ref/gemv_ref.hpp"
#include "mixprec/kernels/ref/ggml_ref.hpp"
#include "mixprec/kernels/ref/quantize_ref.hpp"
#include "mixprec/kernels/ref/reference_kernels.hpp"
#include "mixprec/kernels/ref/row_codec.hpp"

#include "mixprec/sensitivity/input_gram.hpp"
#include "mixprec/sensitivity/sensitivity.hpp"

#include "mixprec/plan/drop_classes.hpp"
#include "mixprec/plan/llama_quant_policy.hpp"
#include "mixprec/plan/plan.hpp"
#include "mixprec/plan/tensor_type_file.hpp"

#include "mixprec/qat/fake_quant.hpp"
#include "mixprec/qat/ggml_tune.hpp"

#include "mixprec/io/gguf.hpp"
#include "mixprec/io/imatrix.hpp"
#include "mixprec/io/llama2c.hpp"
#include "mixprec/io/mapped_file.hpp"
#include "mixprec/io/output_file.hpp"

#include "mixprec/models/calibration.hpp"
#include "mixprec/models/llama.hpp"
#include "mixprec/models/llama/measure.hpp"
#include "mixprec/models/llama/verify.hpp"
#include "mixprec/models/tokenizer.hpp"
