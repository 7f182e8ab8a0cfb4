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

#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "convert.hpp"
#include "measure.hpp"
#include "plan_output.hpp"
#include "refine.hpp"
#include "tune.hpp"
#include "verify.hpp"
#include "tool.hpp"

namespace mixprec_cli {

// The exit code of an error (see the table above).
[[nodiscard]] inline int exit_code(errc c) noexcept {
  switch (c) {
    case errc::io_error:
    case errc::parse_error:
    case errc::non_finite:
    case errc::empty_input: return 3;
    case errc::infeasible: return 4;
    case errc::unsupported: return 5;
    case errc::output_error: return 6;
    case errc::invalid_argument:
    case errc::shape_mismatch:
    case errc::not_representable: return 2;
  }
  return 1;
}

namespace detail {

// Runs f, which checks text the user typed; any mixprec::error it throws is a bad request (exit 2),
// whatever its code (the budget parser calls unparsable text a parse_error, which for a file would be 3).
template <class F>
auto request(F&& f) {
  try {
    return f();
  } catch (const error& e) {
    throw error(errc::invalid_argument, e.message());
  } catch (const std::logic_error& e) {  // std::stoi on text that is no number, or out of range
    throw error(errc::invalid_argument, std::string("not a number: ") + e.what());
  }
}

inline std::string shape_text(const std::vector<std::uint64_t>& dims) {
  std::string s;
  for (auto d : dims) s += (s.empty() ? "" : "x") + std::to_string(d);
  return s.empty() ? "scalar" : s;
}

inline void print_notes(const std::vector<tensor_analysis>& analysis) {
  for (const auto& a : analysis)
    for (const auto& n : a.notes) std::fprintf(stderr, "mixprec: note: '%s': %s\n", a.name.c_str(), n.c_str());
}

// check_importance_names, and a note of the imatrix entries that name no tensor of the file.
inline void note_absent_entries(const importance_set& imp, const model_file& f, const std::string& path, const std::string& file) {
  if (const std::size_t absent = check_importance_names(imp, f.tensors(), path, file))
    std::fprintf(stderr, "mixprec: note: %zu of the %zu entries of imatrix '%s' name no tensor of '%s': ignored, as llama-quantize ignores them\n",
                 absent, imp.values.size(), path.c_str(), file.c_str());
}

inline int print_inspection(const model_file& f) {
  std::printf("| tensor | shape | type | bytes | role |\n|---|---|---|---:|---|\n");
  std::uint64_t total = 0;
  for (const auto& t : f.tensors()) {
    const std::string role = std::string(to_string(role_of(t))) +
                             (t.decodable ? "" : "; mixprec does not decode " + t.type + ": kept as stored");
    std::printf("| %s | %s | %s | %llu | %s |\n", t.name.c_str(), shape_text(t.dims).c_str(), t.type.c_str(),
                static_cast<unsigned long long>(t.bytes), role.c_str());
    total += t.bytes;
  }
  if (const auto& part = f.shard())
    std::printf("\npart %d of %d of a model%s\n", part->number, part->count,
                part->index.empty() ? "" : (", listed by '" + part->index + "'").c_str());
  std::printf("\n%zu tensors, %llu bytes (%s)\n", f.tensors().size(), static_cast<unsigned long long>(total),
              f.is_gguf()    ? ("GGUF v" + std::to_string(f.gguf().version()) + ", " + std::to_string(f.gguf().kvs().size()) +
                                " metadata keys").c_str()
              : f.sharded() ? ("safetensors, " + std::to_string(f.sharded()->shards().size()) + " shards listed by this index").c_str()
                            : "safetensors");
  return 0;
}

inline int run_quantize(const model_file& f, const std::string& file, const std::string& plan_in, const std::string& imatrix_path,
                        const std::string& out_path, unsigned threads, bool force, const std::optional<tune_request>& tune = std::nullopt) {
  const plan_file pf = load_plan_file(plan_in);
  if (!force)
    if (const auto warning = check_same_model(pf.model, f.tensors(), file, "plan '" + plan_in + "'"))
      std::fprintf(stderr, "mixprec: warning: %s\n", warning->c_str());
  std::set<std::string> planned;
  for (const auto& e : pf.plan.entries) planned.insert(e.layer);
  if (const auto missing = left_out(f.tensors(), planned); !missing.empty())
    std::fprintf(stderr, "mixprec: warning: plan '%s' leaves %zu weight matri%s of '%s' out (%s): copied as stored\n", plan_in.c_str(),
                 missing.size(), missing.size() == 1 ? "x" : "ces", file.c_str(), some_names(missing).c_str());
  const importance_set importance = imatrix_path.empty() ? importance_set{} : load_importance(imatrix_path);
  detail::note_absent_entries(importance, f, imatrix_path, file);
  std::optional<model_tuner> tuner;
  if (tune) tuner.emplace(f, *tune);
  retune_fn retune;
  if (tuner) retune = std::ref(*tuner);
  const auto s = quantize_gguf(f, pf.plan, out_path, true, importance, threads, retune);
  if (tuner) tuner->print_report();
  std::printf("| | tensors | bytes |\n|---|---:|---:|\n| in (%s) | %zu | %llu |\n| out (%s) | %zu (%zu re-encoded) | %llu |\n"
              "\ngeneral.file_type = %u, general.quantization_version = 2; every other metadata key copied\n",
              file.c_str(), s.tensors, static_cast<unsigned long long>(s.bytes_in), out_path.c_str(), s.tensors, s.converted,
              static_cast<unsigned long long>(s.bytes_out), s.file_type);
  return 0;
}

inline int print_analysis(const std::vector<tensor_analysis>& analysis, const std::string& json_path) {
  std::printf("| tensor | shape | type | bytes | bits/weight | SQNR (dB) | error |\n|---|---|---|---:|---:|---:|---:|\n");
  nlohmann::json j = nlohmann::json::array();
  for (const auto& a : analysis)
    for (const auto& c : a.candidates) {
      const double bpw = 8.0 * static_cast<double>(c.bytes) / static_cast<double>(a.rows * a.cols);
      std::printf("| %s | %ldx%ld | %s%s | %llu | %.3f | %.2f | %.4g |\n", a.name.c_str(), static_cast<long>(a.rows),
                  static_cast<long>(a.cols), mixprec::to_string(c.spec).c_str(), c.fallback ? " (fallback)" : "",
                  static_cast<unsigned long long>(c.bytes), bpw, c.sqnr_db, c.error);
      j.push_back({{"tensor", a.name}, {"rows", a.rows}, {"cols", a.cols}, {"type", mixprec::to_string(c.spec)},
                   {"bytes", c.bytes}, {"sqnr_db", c.sqnr_db}, {"error", c.error}, {"importance", a.has_importance},
                   {"fallback", c.fallback}});
    }
  if (!json_path.empty()) {
    mixprec::output_file out(json_path);
    out.stream() << j.dump(2) << "\n";
    out.commit();
  }
  return 0;
}

inline int run_convert(const std::string& checkpoint, const std::string& tokenizer, const std::string& out_path) {
  const convert_summary s = convert_llama2c(checkpoint, tokenizer, out_path);
  std::printf("wrote %s: %zu tensors (F32), %llu bytes; architecture llama, dim %d, %d layers, vocabulary %d\n", out_path.c_str(),
              s.tensors, static_cast<unsigned long long>(s.file_bytes), s.config.dim, s.config.n_layers, s.config.vocab_size);
  return 0;
}

// `mixprec measure`'s command line, shared with mixprec-mpi (mpi_main.cpp, where the rank is the shard).
struct measure_command {
  std::string file, types = "q4_0,q4_1,q5_0,q5_1,q8_0,q4_K,q6_K,f16", text, tokens, sample, shard, imatrix_out, imatrix_dat_out,
                    output = "measure.json";
  int ctx = 64, max_streams = 8;
  std::uint64_t seed = 1;
  unsigned threads = 0;
  std::string method = "probe";
  int fisher_draws = 4;
  int tune_rounds = -1;  // --tune R: the tunable types measured as `quantize --tune --tune-rounds R` writes them
  bool dry_run = false;
};

inline CLI::App* add_measure_command(CLI::App& app, measure_command& c, bool with_shard) {
  auto* m = app.add_subcommand("measure", "per tensor and type: KL of the model's output with only that tensor quantized, the Gram and imatrix proxies, SQNR; writes the imatrix");
  m->add_option("FILE", c.file, "LLaMA-family GGUF (F32/F16/BF16 or quantized tensors)")->required();
  m->add_option("--types", c.types, "candidate ggml types")->capture_default_str();
  m->add_option("--text", c.text, "calibration text, tokenized with the model's vocabulary; each --ctx stream starts with its BOS when it adds one");
  m->add_option("--tokens", c.tokens, "calibration token ids (one stream per line, used as given)");
  m->add_option("--sample", c.sample, "N:LEN: N streams of LEN tokens sampled from the model (seed --seed), each from the vocabulary's BOS");
  m->add_option("--ctx", c.ctx, "tokens per calibration stream (--text, --tokens)")->capture_default_str();
  m->add_option("--streams", c.max_streams, "calibration streams used at most (--text, --tokens)")->capture_default_str();
  m->add_option("--seed", c.seed, "seed of --sample")->capture_default_str();
  m->add_option("--imatrix-out", c.imatrix_out, "write the importance matrix (llama.cpp's GGUF imatrix format)");
  m->add_option("--imatrix-dat-out", c.imatrix_dat_out, "write the importance matrix in llama.cpp's legacy .dat format");
  m->add_option("-o,--output", c.output, "measure file")->capture_default_str();
  m->add_option("--threads", c.threads, "threads for each product (0: every core); the numbers do not depend on it")->capture_default_str();
  if (with_shard) m->add_option("--shard", c.shard, "I/N: probe only the tensors k with k % N == I (a partial file for `mixprec merge`)");
  m->add_option("--method", c.method,
                "probe (run the model per tensor and type: kl), fisher (estimate kl from gradients of the model's own sampled labels: "
                "fisher_*, one backward pass per stream and draw), or both")
      ->capture_default_str();
  m->add_option("--fisher-draws", c.fisher_draws, "label draws per stream for --method fisher|both (seed --seed)")->capture_default_str();
  m->add_option("--tune", c.tune_rounds,
                "R: measure each matrix product in q4_0..q8_0, q4_K, q5_K, q6_K with GPTQ's codes against its calibration inputs and R "
                "scale refits, as `quantize --tune --tune-rounds R` writes it (plans for tuned files)");
  // mixprec-mpi has no --dry-run: `mixprec measure --dry-run --shard 0/K` gives one rank's cost.
  if (with_shard) m->add_flag("--dry-run", c.dry_run, "print the work, the expected time (from a timed sample) and memory; write nothing");
  return m;
}

// "A:B" with both parts whole decimal numbers, or errc::invalid_argument naming the option.
inline std::pair<int, int> int_pair(const std::string& text, char sep, const char* option, const char* form) {
  const auto at = text.find(sep);
  std::size_t used_a = 0, used_b = 0;
  std::pair<int, int> v{0, 0};
  if (at != std::string::npos) {
    v.first = std::stoi(text.substr(0, at), &used_a);
    v.second = std::stoi(text.substr(at + 1), &used_b);
  }
  if (at == std::string::npos || used_a != at || used_b != text.size() - at - 1)
    throw error(errc::invalid_argument, std::string(option) + " '" + text + "': expected " + form);
  return v;
}

// The measure options of a command line, checked as a request (exit 2); the outputs are checked
// (never an input, in a folder that exists) when check_outputs.
inline measure_options measure_request(const measure_command& c, bool check_outputs) {
  measure_options mo;
  request([&] {
    mo.types = parse_types(c.types);
    if (check_outputs) {
      mixprec::check_output_path(c.output, std::vector<std::string>{c.file, c.text, c.tokens});
      for (const auto& extra : {c.imatrix_out, c.imatrix_dat_out})
        if (!extra.empty()) mixprec::check_output_path(extra, std::vector<std::string>{c.file, c.text, c.tokens, c.output});
    }
    if (!c.sample.empty()) {
      std::tie(mo.sample_streams, mo.sample_length) = int_pair(c.sample, ':', "--sample", "N:LEN");
      if (mo.sample_streams <= 0 || mo.sample_length < 2) throw error(errc::invalid_argument, "--sample '" + c.sample + "': N >= 1, LEN >= 2");
    }
    if (c.ctx < 2 || c.max_streams < 1) throw error(errc::invalid_argument, "--ctx must be >= 2 and --streams >= 1");
    if (c.method != "probe" && c.method != "fisher" && c.method != "both")
      throw error(errc::invalid_argument, "--method '" + c.method + "': expected probe, fisher or both");
    if (c.fisher_draws < 1 || c.fisher_draws > 1024) throw error(errc::invalid_argument, "--fisher-draws must be in [1, 1024]");
    if (c.tune_rounds < -1 || c.tune_rounds > 16) throw error(errc::invalid_argument, "--tune must be in [0, 16]");
    if (!c.shard.empty()) {
      std::tie(mo.shard_index, mo.shard_count) = int_pair(c.shard, '/', "--shard", "I/N");
      if (mo.shard_count < 1 || mo.shard_index < 0 || mo.shard_index >= mo.shard_count)
        throw error(errc::invalid_argument, "--shard '" + c.shard + "': expected I/N with 0 <= I < N");
    }
    return 0;
  });
  mo.text = c.text;
  mo.tokens = c.tokens;
  mo.ctx = c.ctx;
  mo.max_streams = c.max_streams;
  mo.seed = c.seed;
  mo.imatrix_out = c.imatrix_out;
  mo.imatrix_dat_out = c.imatrix_dat_out;
  mo.threads = c.threads;
  mo.probe = c.method != "fisher";
  mo.fisher_draws = c.method == "probe" ? 0 : c.fisher_draws;
  mo.tune_rounds = c.tune_rounds;
  return mo;
}

// The table `measure` prints, from a measure file's JSON.
// KL is the measured one (--method probe, both), Fisher KL the diagonal estimate (fisher, both); a
// column the file lacks is left out.
inline void print_measure_table(const nlohmann::json& measured) {
  const auto& tensors = measured.at("tensors");
  const nlohmann::json* first = tensors.empty() || tensors.front().at("results").empty() ? nullptr : &tensors.front().at("results").front();
  const bool kl = !first || first->contains("kl"), fisher = first && first->contains("fisher_diagonal");
  std::printf("| tensor | type | bytes |%s%s Gram proxy | imatrix proxy | SQNR (dB) |\n|---|---|---:|%s%s---:|---:|---:|\n", kl ? " KL (nats) |" : "",
              fisher ? " Fisher KL (nats) |" : "", kl ? "---:|" : "", fisher ? "---:|" : "");
  for (const auto& t : tensors)
    for (const auto& r : t.at("results")) {
      std::printf("| %s | %s | %llu |", t.at("name").get<std::string>().c_str(), r.at("spec").get<std::string>().c_str(),
                  r.at("bytes").get<unsigned long long>());
      if (kl) std::printf(" %.6g |", r.at("kl").get<double>());
      if (fisher) std::printf(" %.6g |", r.at("fisher_diagonal").get<double>());
      std::printf(" %.4g | %.4g | %.2f |\n", r.at("gram_proxy").get<double>(), r.at("proxy").get<double>(), r.at("sqnr_db").get<double>());
    }
}

}  // namespace detail

[[nodiscard]] inline int run(int argc, const char* const* argv) {
  CLI::App app{"mixprec: mixed-precision quantization of GGUF and safetensors checkpoints"};
  app.require_subcommand(1);
  std::string file, types = "q4_0,q4_1,q5_0,q5_1,q8_0,q4_K,q6_K,f16", imatrix_path, json_path, budget = "4.8", policy = "knapsack",
              plan_out = "plan.json", plan_in, out_path, tokenizer, tensor_types_out, pareto_dir;
  int points = 32;
  std::vector<std::string> overrides;
  unsigned threads = 0;
  bool force = false;
  auto* inspect = app.add_subcommand("inspect", "list tensors: name, shape, type, bytes, role");
  inspect->add_option("FILE", file, "GGUF or safetensors file")->required();
  auto* analyze = app.add_subcommand("analyze", "per tensor and candidate type: bytes, SQNR, weighted squared error");
  analyze->add_option("FILE", file, "GGUF or safetensors file")->required();
  analyze->add_option("--types", types, "candidate ggml types")->capture_default_str();
  analyze->add_option("--imatrix", imatrix_path, "llama.cpp importance matrix (GGUF or legacy .dat) to weight the error and the scale search");
  analyze->add_option("--tensor-type", overrides, "REGEX=TYPE (first match sets the type), REGEX>=BITS, REGEX<=BITS; REGEX searched in the name, as llama-quantize; repeatable");
  analyze->add_option("--json", json_path, "write the analysis as JSON");
  analyze->add_option("--threads", threads, "threads (0: every core); the results do not depend on it")->capture_default_str();
  auto* plan = app.add_subcommand("plan", "a ggml type per tensor within a byte budget -> plan.json");
  plan->add_option("FILE", file, "GGUF or safetensors file")->required();
  auto* budget_opt = plan->add_option("--budget", budget, "bits per weight (4.8 or 4.8bpw) or bytes (3900000000B, 3.9GB)")->capture_default_str();
  plan->add_option("--policy", policy, "knapsack (exact) or greedy")->capture_default_str();
  plan->add_option("--types", types, "candidate ggml types")->capture_default_str();
  plan->add_option("--imatrix", imatrix_path, "llama.cpp importance matrix (GGUF or legacy .dat)");
  plan->add_option("--tensor-type", overrides, "REGEX=TYPE (first match sets the type), REGEX>=BITS, REGEX<=BITS; REGEX searched in the name, as llama-quantize; repeatable");
  auto* plan_out_opt = plan->add_option("-o,--output", plan_out, "plan file")->capture_default_str();
  auto* types_out_opt = plan->add_option("--tensor-type-file", tensor_types_out,
                                         "also write the plan as llama.cpp's tensor-type file (llama-quantize --pure --tensor-type-file FILE MODEL OUT Q8_0)");
  auto* pareto_opt = plan->add_option("--pareto", pareto_dir,
                                      "instead of one plan, every plan on the bytes / predicted-loss frontier into this new folder: plan-NN.json, "
                                      "plan-NN.tensor-types.txt, frontier.json, frontier.svg");
  plan->add_option("--points", points, "with --pareto: budgets swept from the smallest plan to the largest")->capture_default_str()->needs(pareto_opt);
  plan->add_option("--threads", threads, "threads for the analysis (0: every core); the plan does not depend on it")->capture_default_str();
  pareto_opt->excludes(budget_opt)->excludes(plan_out_opt)->excludes(types_out_opt);
  std::string verify_spec = "8:64";
  std::uint64_t verify_seed = 2;
  bool no_verify = false;
  auto* verify_opt = plan->add_option("--verify", verify_spec,
                                      "N:LEN: run the whole plan on N held-out streams of LEN tokens sampled from the model and report its real KL "
                                      "(done by default with --measured)")
                         ->capture_default_str();
  plan->add_option("--verify-seed", verify_seed, "seed of the held-out streams (other than the measurement's) and of the bootstrap")
      ->capture_default_str();
  auto* no_verify_opt = plan->add_flag("--no-verify", no_verify, "do not run the plan (with --measured)")->excludes(verify_opt);
  refine_request refine;
  std::string refine_spec = "64:64";
  auto* refine_opt = plan->add_option("--refine", refine.seconds,
                                      "SECONDS: refine the plan by the whole model's measured KL for this long (EvoPress's search), on streams of its "
                                      "own; kept only when better on the held-out streams")
                         ->check(CLI::Range(0.0, 1e7));
  plan->add_option("--refine-streams", refine_spec, "N:LEN: the streams the refinement measures on")->capture_default_str()->needs(refine_opt);
  plan->add_option("--refine-seed", refine.seed, "seed of those streams and of the search (other than --verify-seed)")
      ->capture_default_str()
      ->needs(refine_opt);
  refine_opt->excludes(no_verify_opt)->excludes(pareto_opt);
  plan->add_flag("--force", force, "plan one split or shard of a model on its own; use a --measured file made for another model");
  auto* quantize = app.add_subcommand("quantize", "rewrite a GGUF by a plan, every metadata key kept");
  quantize->add_option("FILE", file, "GGUF file with F32/F16/BF16 tensors")->required();
  quantize->add_option("--plan", plan_in, "plan.json from `mixprec plan`")->required();
  quantize->add_option("--imatrix", imatrix_path, "the importance matrix the plan was made with: the same weighted search, the bytes the plan measured");
  quantize->add_option("-o,--output", out_path, "output GGUF")->required();
  quantize->add_option("--threads", threads, "threads (0: every core); the bytes do not depend on it")->capture_default_str();
  quantize->add_flag("--force", force, "use a plan made for another model (other tensors or other weights)");
  std::string tune_spec;
  tune_request tune;
  auto* tune_opt = quantize->add_option("--tune", tune_spec,
                                        "N:LEN: choose each matrix's codes by GPTQ inside its type against its inputs on N streams of LEN tokens "
                                        "sampled from the model (or cut from --tune-text / --tune-tokens), kept where better on N other streams");
  quantize->add_option("--tune-rounds", tune.rounds, "FP16 scale refits by least squares, each followed by a sweep that keeps them (0: GPTQ's codes only)")
      ->capture_default_str()->needs(tune_opt);
  auto* tune_seed = quantize->add_option("--tune-seed", tune.seed, "seed of the tuning streams (the held-out ones take seed + 1)")
                        ->capture_default_str()->needs(tune_opt);
  quantize->add_option("--tune-checkpoint", tune.checkpoint,
                       "DIR: save each tuned tensor there as it is done, and take the ones a stopped run with the same request saved")
      ->needs(tune_opt);
  auto* tune_text = quantize->add_option("--tune-text", tune.text,
                                         "FILE: tune on streams of LEN tokens cut from this text (alternately tuning and checking) instead of sampled ones")
                        ->needs(tune_opt)->excludes(tune_seed);
  quantize->add_option("--tune-tokens", tune.tokens, "FILE: token ids, one stream per line (cut to LEN), instead of sampled streams (as --tune-text)")
      ->needs(tune_opt)->excludes(tune_text)->excludes(tune_seed);
  std::string measured, metric = "kl";
  plan->add_option("--measured", measured, "plan from a measure.json (`mixprec measure`) instead of analysing the weights");
  plan->add_option("--metric", metric, "with --measured: kl (measured), kl_upper (the upper end of its 95 % interval), gram_proxy (|(W-Q)X|^2), proxy (imatrix-weighted error), "
                               "weight_error, or a Fisher estimate of kl: fisher (= fisher_diagonal), fisher_sequence, fisher_token, fisher_kfac")
      ->capture_default_str();
  detail::measure_command mc;
  auto* measure = detail::add_measure_command(app, mc, true);
  std::vector<std::string> parts;
  auto* merge = app.add_subcommand("merge", "join the partial files of `mixprec measure --shard I/N` into one measure file");
  merge->add_option("PARTS", parts, "the N partial measure files, any order")->required();
  merge->add_option("-o,--output", mc.output, "measure file")->capture_default_str();
  auto* convert = app.add_subcommand("convert", "llama2.c checkpoint + tokenizer -> GGUF (F32) that llama.cpp loads");
  convert->add_option("CHECKPOINT", file, "llama2.c checkpoint (.bin)")->required();
  convert->add_option("TOKENIZER", tokenizer, "llama2.c tokenizer (tokenizer.bin)")->required();
  convert->add_option("-o,--output", out_path, "output GGUF")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  try {
    // 1. The request itself: text the user typed, and the outputs (never an input, in a folder that exists).
    if (convert->parsed()) return detail::run_convert(file, tokenizer, out_path);
    if (merge->parsed()) {
      detail::request([&] {
        mixprec::check_output_path(mc.output, parts);
        return 0;
      });
      std::vector<nlohmann::json> files;
      for (const auto& p : parts) files.push_back(read_measure_file(p));
      const nlohmann::json merged = merge_measures(files, parts);
      mixprec::output_file out(mc.output, parts);
      out.stream() << merged.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      out.commit();
      std::fprintf(stderr, "wrote %s (%zu shards, %zu tensors)\n", mc.output.c_str(), parts.size(), merged.at("tensors").size());
      return 0;
    }
    if (measure->parsed()) {
      const measure_options mo = detail::measure_request(mc, !mc.dry_run);
      if (mc.dry_run) {
        print_measure_cost(mc.file, mo);
        return 0;
      }
      nlohmann::json meta;
      const auto tensors = measure_file(mc.file, mo, &meta);
      const nlohmann::json measured = measure_json(tensors, meta, mo.probe);
      detail::print_measure_table(measured);
      mixprec::output_file out(mc.output, {mc.file});
      out.stream() << measured.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";  // a path need not be UTF-8
      out.commit();
      std::fprintf(stderr, "wrote %s\n", mc.output.c_str());
      return 0;
    }
    std::vector<quant_spec> type_list;
    std::vector<plan_rule> rules;
    if (analyze->parsed() || plan->parsed()) {
      type_list = detail::request([&] { return parse_types(types); });
      for (const auto& o : overrides) rules.push_back(detail::request([&] { return parse_override(o); }));
      if (policy != "knapsack" && policy != "greedy")
        throw error(errc::invalid_argument, "policy '" + policy + "': expected knapsack or greedy");
    }
    detail::request([&] {
      if (quantize->parsed()) mixprec::check_output_path(out_path, std::vector<std::string>{file, plan_in, imatrix_path});
      if (plan->parsed() && pareto_dir.empty()) mixprec::check_output_path(plan_out, std::vector<std::string>{file, imatrix_path, measured});
      if (plan->parsed() && !tensor_types_out.empty()) {
        if (std::filesystem::path(tensor_types_out).lexically_normal() == std::filesystem::path(plan_out).lexically_normal())
          throw error(errc::invalid_argument, "--tensor-type-file and -o are the same file '" + plan_out + "'");
        mixprec::check_output_path(tensor_types_out, std::vector<std::string>{file, imatrix_path, measured, plan_out});
      }
      if (plan->parsed() && !pareto_dir.empty()) {
        std::filesystem::path dir = std::filesystem::path(pareto_dir).lexically_normal();  // "frontier/" is "frontier"
        if (!dir.has_filename()) dir = dir.parent_path();
        pareto_dir = dir.string();
        detail::output_folder::check(pareto_dir);
      }
      if (points < 2) throw error(errc::invalid_argument, "--points " + std::to_string(points) + ": the frontier needs at least 2");
      if (analyze->parsed() && !json_path.empty()) mixprec::check_output_path(json_path, std::vector<std::string>{file, imatrix_path});
      return 0;
    });
    // 2. The inputs' headers (no tensor data yet), and the request against them.
    const model_file f(file);
    if (inspect->parsed()) return detail::print_inspection(f);
    if (quantize->parsed()) {
      std::optional<tune_request> t;
      if (tune_opt->count() > 0) {
        t = tune;
        std::tie(t->streams, t->length) = detail::request([&] { return detail::int_pair(tune_spec, ':', "--tune", "N:LEN"); });
        t->threads = threads;
      }
      return detail::run_quantize(f, file, plan_in, imatrix_path, out_path, threads, force, t);
    }
    if (const auto& part = f.shard(); part && plan->parsed() && !force)  // a budget over part of a model is not the budget asked for
      throw error(errc::invalid_argument,
                  "'" + file + "' is part " + std::to_string(part->number) + " of " + std::to_string(part->count) + " of a model" +
                      (part->index.empty() ? f.is_gguf() ? " (split.no/split.count: merge the splits with llama-gguf-split --merge)" : ""
                                           : " (listed by '" + part->index + "': give that index instead)") +
                      ": a plan of one part is not a plan of the model (--force plans this part alone)");
    std::size_t planned = 0;
    for (const auto& t : f.tensors()) planned += plannable(t, rules) ? 1 : 0;
    const std::vector<const tensor_entry*> kept = kept_as_stored(f.tensors());
    if (planned == 0 && !kept.empty()) {  // weights there are, but stored quantized: planning them needs their values
      const std::string more = kept.size() > 1 ? " (and " + std::to_string(kept.size() - 1) + " more stored quantized)" : "";
      throw error(errc::unsupported, "'" + file + "' has no F32/F16/BF16 weight matrix to plan: tensor '" + kept.front()->name + "' is " +
                                         stored_type_text(*kept.front()) + more + "; analyze and plan read F32/F16/BF16 tensors (see `mixprec inspect`)");
    }
    if (planned == 0) throw error(errc::empty_input, "'" + file + "' has no weight matrix to quantize (see `mixprec inspect`)");
    if (analyze->parsed())  // (plan lists them after its table)
      for (const tensor_entry* t : kept)
        std::fprintf(stderr, "mixprec: note: '%s' is %s: left out, kept as stored\n", t->name.c_str(), stored_type_text(*t).c_str());
    for (const auto& r : rules) {
      bool any = false, other = false;
      const tensor_entry* undecoded = nullptr;  // a tensor it names of a type mixprec does not decode
      for (const auto& t : f.tensors()) {
        if (!r.pattern.matches(t.name)) continue;
        any = any || plannable(t, rules);
        other = other || !plannable(t, rules);
        if (!t.decodable && !undecoded) undecoded = &t;
      }
      if (!any)
        std::fprintf(stderr, "mixprec: warning: override %s matches no tensor that can be quantized%s\n", r.describe().c_str(),
                     undecoded ? (" ('" + undecoded->name + "' is " + stored_type_text(*undecoded) + ": it stays as it is)").c_str()
                     : other   ? " (only 1-D, empty or non-float tensors, which stay as they are, as in llama.cpp)"
                               : "");
    }
    check_overrides(f, rules);
    // Tensor names go into JSON, which holds only UTF-8: refuse a file whose names are not, before the work.
    if (plan->parsed() || !json_path.empty())
      for (const auto& t : f.tensors()) {
        if (!plannable(t, rules)) continue;
        try {
          (void)nlohmann::json(t.name).dump();
        } catch (const nlohmann::json::exception&) {
          throw error(errc::parse_error, "'" + file + "': a tensor name is not valid UTF-8, which GGUF requires and JSON cannot hold");
        }
      }
    // The budget covers every weight tensor of the model: the planned ones and those kept as stored,
    // whose bytes it counts as they are (a 4.8 bits/weight budget of a half-quantized file is 4.8 over all).
    double budget_bytes = 0.0;
    detail::plan_context ctx{model_identity(f.tensors(), file), kept, 0.0, {}};
    if (plan->parsed() && pareto_dir.empty()) {
      double kept_bytes = 0.0, kept_weights = 0.0;
      for (const tensor_entry* t : kept) kept_bytes += static_cast<double>(t->bytes), kept_weights += t->weights();
      const double weights = plannable_weights(f, rules) + kept_weights;
      ctx.budget_bytes = detail::request([&] { return mixprec::parse_byte_budget(budget, weights); });
      budget_bytes = ctx.budget_bytes - kept_bytes;
      const double floor = measured.empty() ? size_floor(f, type_list, rules) : 0.0;  // measured: the planner says
      if (budget_bytes < floor)
        throw error(errc::infeasible, "budget " + budget + " (" + std::to_string(static_cast<long long>(ctx.budget_bytes)) +
                                          " bytes) cannot be met: the smallest plan of these tensors takes " +
                                          std::to_string(static_cast<long long>(floor)) + " bytes" +
                                          (kept.empty() ? std::string()
                                                        : " and the " + std::to_string(kept.size()) + " weight tensors kept as stored take " +
                                                              std::to_string(static_cast<long long>(kept_bytes)) + " bytes"));
    }
    // The plans' check (verify.hpp): by default for a plan from measurements, on request for any.
    std::optional<verify_options> vo;
    const bool verify_asked = verify_opt->count() > 0 || refine_opt->count() > 0;  // a refinement needs the model run
    if (plan->parsed() && refine_opt->count() > 0) {
      std::tie(refine.streams, refine.length) = detail::request([&] { return detail::int_pair(refine_spec, ':', "--refine-streams", "N:LEN"); });
      if (refine.seed == verify_seed)
        throw error(errc::invalid_argument, "--refine-seed " + std::to_string(refine.seed) +
                                                " is --verify-seed: the refinement would tune the plan on the streams that check it; give another");
    }
    if (plan->parsed() && !no_verify && (!measured.empty() || verify_asked)) {
      vo = verify_options{};
      std::tie(vo->streams, vo->length) = detail::request([&] { return detail::int_pair(verify_spec, ':', "--verify", "N:LEN"); });
      vo->seed = verify_seed;
      vo->threads = threads;
      vo->fit_context = verify_opt->count() == 0;  // the default 8:64 fits itself to a model of a shorter context
      vo->imatrix = imatrix_path;
    }
    // The imatrix: the analysis' weights, and the search of a verified plan's tensors (a plan from
    // measurements that is not verified does not read it).
    const bool needs_importance = measured.empty() || vo.has_value();
    const importance_set importance = imatrix_path.empty() || !needs_importance ? importance_set{} : load_importance(imatrix_path);
    if (needs_importance) detail::note_absent_entries(importance, f, imatrix_path, file);
    // The verifier is made when the first plan is ready (a request that fails cheaper checks never loads the
    // model); where the model cannot be run, a default verification is a note, an asked one the error.
    std::unique_ptr<plan_verifier> verifier;
    bool verifier_failed = false;
    std::vector<std::pair<mixprec::plan, verification>> verified;  // the last plans verified
    detail::plan_check check;
    if (vo)
      check = [&](const mixprec::plan& p) -> std::optional<verification> {
        if (!verifier && !verifier_failed) {
          try {
            verifier = std::make_unique<plan_verifier>(f, importance, *vo);
          } catch (const error& e) {
            if (verify_asked) throw;
            verifier_failed = true;
            std::fprintf(stderr, "mixprec: note: the plan is not verified (give --verify to make that an error): %s\n", e.message().c_str());
          }
        }
        if (!verifier) return std::nullopt;
        for (const auto& [q, v] : verified)  // a refinement verifies the plan it writes
          if (q.entries == p.entries) return v;
        verified.emplace_back(p, verifier->verify(p));
        if (verified.size() > 2) verified.erase(verified.begin());
        return verified.back().second;
      };
    // The single plan: the planner's, refined on request (refine.hpp).
    auto best_plan = [&](const mixprec::sensitivity_table& table) {
      if (refine_opt->count() == 0) return plan_table(table, budget_bytes, policy, rules);
      return with_planner(table, budget_bytes, policy, rules, [&](const auto& planner) {
        const mixprec::plan start = planner.build();
        if (!check(start) || !verifier) throw error(errc::unsupported, "--refine: the model cannot be run");
        refined_choice r = refine_plan(planner, start, *verifier, refine, [&](const mixprec::plan& p) { return *check(p); });
        ctx.refined = std::move(r.record);
        return r.plan;
      });
    };
    // A frontier's replanning (write_frontier): the table's upgrades of a smaller plan, at a larger budget.
    auto nested_on = [&](const mixprec::sensitivity_table& table) -> detail::nested_replan {
      return [&, table](const mixprec::plan& base, double limit) { return plan_table(mixprec::upgrades_of(table, base), limit, policy, rules); };
    };
    if (plan->parsed() && !measured.empty()) {  // from a measure.json: no analysis of the weights
      const nlohmann::json m = read_measure_file(measured);
      check_measure_fits(m, measured, f, file, force);
      // Held-out streams: sample_streams draws every stream from one generator, so the same seed gives the
      // measurement's streams (or a prefix of them) whatever N:LEN.
      if (vo && m.contains("calibration") && m.at("calibration").is_object() && m.at("calibration").value("source", nlohmann::json()) == "sample" &&
          m.at("calibration").value("seed", nlohmann::json()) == nlohmann::json(verify_seed))
        throw error(errc::invalid_argument, "--verify-seed " + std::to_string(verify_seed) + " is the seed '" + measured +
                                                "' sampled its calibration streams with: the streams would not be held out; give another --verify-seed");
      std::set<std::string> planned_names;  // what the file stores in float; the rest is kept and counted as kept
      for (const auto& t : f.tensors())
        if (t.is_float) planned_names.insert(t.name);
      const mixprec::sensitivity_table table = measured_table(m, measured, metric, &planned_names);
      if (!pareto_dir.empty())
        return detail::write_frontier(plan_frontier(table, points, policy, rules), file, pareto_dir, metric, ctx, check, nested_on(table));
      return detail::write_plan(best_plan(table), {}, rules, file, plan_out, tensor_types_out, ctx, check);
    }
    // 3. The work (analyze checks every imatrix length before it reads a tensor).
    const auto analysis = mixprec_cli::analyze(f, type_list, importance, rules, true, threads);
    detail::print_notes(analysis);
    if (analyze->parsed()) return detail::print_analysis(analysis, json_path);
    if (!pareto_dir.empty()) {
      const mixprec::sensitivity_table table = to_table(analysis);
      return detail::write_frontier(plan_frontier(table, points, policy, rules), file, pareto_dir,
                                    importance.values.empty() ? "weight error" : "imatrix-weighted error", ctx, check, nested_on(table));
    }
    return detail::write_plan(best_plan(to_table(analysis)), analysis, rules, file, plan_out, tensor_types_out, ctx, check);
  } catch (const error& e) {
    std::fprintf(stderr, "%s\n", e.what());  // "mixprec: ..."
    return exit_code(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mixprec: unexpected failure (a bug; please report it): %s\n", e.what());
    return 1;
  }
}

}  // namespace mixprec_cli
