// The `mixprec` command line's helpers: the exit code of each error, the request checks, and what the
// commands print (the commands, their options and the exit codes are listed in cli.hpp; run() is in
// app.cpp). mpi_main.cpp and the LLM study use them too.
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
#include "cli.hpp"

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

}  // namespace mixprec_cli
