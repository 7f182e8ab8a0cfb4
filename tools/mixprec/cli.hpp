// The `mixprec` command line (main.cpp calls run(); tests call it in-process):
//   mixprec inspect FILE
//   mixprec analyze FILE [--types q4_0,q4_1,q5_0,q5_1,q8_0,q4_K,q6_K,f16] [--imatrix IMATRIX] [--tensor-type RULE]... [--json OUT]
//   mixprec plan FILE --budget 4.8 [--policy knapsack|greedy] [--types ...] [--imatrix IMATRIX] [--tensor-type RULE]... -o plan.json
//   mixprec quantize FILE.gguf --plan plan.json [--imatrix IMATRIX]
//                    [--tune N:LEN [--tune-rounds 2] [--tune-seed 11 | --tune-text F | --tune-tokens F] [--tune-checkpoint DIR]]
//                    -o OUT.gguf
//       (--tune: GPTQ's codes inside each planned type, kept where better on held-out streams; tune.hpp)
//   mixprec convert CHECKPOINT.bin TOKENIZER.bin -o OUT.gguf      (llama2.c -> GGUF, as llama.cpp's converter)
//   mixprec measure MODEL.gguf --types ... (--text F | --tokens F | --sample N:LEN) [--method probe|fisher|both] [--imatrix-out F]
//                   [--shard I/N] [--tune R] [--dry-run] -o measure.json
//       (every stream starts with the vocabulary's BOS, tokenizer.ggml.bos_token_id; --text only when it
//       adds one, tokenizer.ggml.add_bos_token; --tokens are used as given)
//   mixprec merge PART.json... -o measure.json                    (the N shards of one measure)
//   mixprec plan MODEL.gguf --measured measure.json [--metric kl|kl_upper|gram_proxy|proxy|weight_error|fisher_*] --budget ... -o plan.json
//   plan takes --tensor-type-file OUT.txt (the plan as llama-quantize's --tensor-type-file), or instead of --budget and -o,
//   --pareto DIR [--points 32]: every plan on the frontier (plan_output.hpp). A plan from --measured (or any, with
//   --verify N:LEN) is run whole on held-out streams and its real KL recorded (verify.hpp; --no-verify skips it);
//   --metric also takes kl_upper (the upper end of each KL's 95 % interval); --refine SECONDS [--refine-streams 64:64]
//   [--refine-seed 3] refines the plan by the whole model's measured KL and keeps it when better held out (refine.hpp)
// analyze, plan and quantize take --threads N (0, the default: every core); results do not depend on it.
//
// --tensor-type RULE is the library's rule grammar (plan/rules.hpp) with llama-quantize's reading of
// the pattern: a regex searched in the tensor name, lower-cased first.
//   PATTERN=TYPE    the first such rule whose pattern is found in a tensor's name sets its type
//                   (`attn_v=q8_0`, `output\.weight=q6_K`; TYPE f32 keeps it in float)
//   PATTERN>=BITS   every matching tensor gets a type of at least BITS bits (q8_0 8, q6_K 6, q4_K 4...)
//   PATTERN<=BITS   ... of at most BITS bits
// Unlike llama-quantize, a forced type whose block does not divide a tensor's rows is an error (exit 2),
// not a silent fallback. The plan file is the library's versioned plan JSON (plan/plan_json.hpp).
//
// Every argument is checked before any tensor is read (types, budget, overrides, policy, outputs, the
// imatrix, and for quantize the plan against the file), and a budget below the smallest size any plan
// can have is refused from the header alone.
//
// Exit codes, by cause (what a script can act on):
//   0  done
//   1  a bug in mixprec (an exception it did not expect)
//   2  bad request: malformed or contradictory arguments, an output that is an input or whose folder
//      does not exist or is not writable, a plan that does not fit the file, a type that cannot hold a
//      tensor the plan forces on it, a plan, measure file or imatrix made for another model, one split
//      or shard of a model given to plan alone
//   3  unreadable or damaged input: a file that cannot be opened or parsed, NaN/Inf weights
//   4  the budget cannot be met
//   5  a valid request mixprec does not support (e.g. re-encoding an already quantized tensor, or one of a
//      type it does not decode, such as MXFP4, which inspect lists and quantize copies as it is)
//   6  an output that could not be written although its path was valid (a full disk, an I/O error, a
//      quota or file size limit): the message names the file and the system's reason
#pragma once

namespace mixprec_cli {

// Runs the command line argv[0..argc) (argv[0] the program's name) and returns its exit code (the table
// above). Prints results on stdout and errors on stderr; throws nothing. Defined in app.cpp, compiled
// once into the mixprec::cli library, which the tool, its tests and the LLM study link.
[[nodiscard]] int run(int argc, const char* const* argv);

}  // namespace mixprec_cli
