// mixprec: inspect, analyze, plan and quantize GGUF / safetensors checkpoints (see tool.hpp).
//   mixprec inspect FILE
//   mixprec analyze FILE [--types q4_0,q4_1,q8_0,q4_K,q6_K,f16] [--imatrix IMATRIX.dat] [--json OUT]
//   mixprec plan FILE --budget 4.8 [--policy knapsack|greedy] [--tensor-type 'blk\..*\.attn_v=q8_0']... -o plan.json
//   mixprec quantize FILE.gguf --plan plan.json -o OUT.gguf
// Exit codes: 0 done; 1 unexpected failure; 2 bad command line; 3 unreadable or corrupt input;
// 4 the budget cannot be met; 5 a valid request mixprec does not support.
#include <csignal>
#include <cstdio>
#include <fstream>

#include <CLI/CLI.hpp>

#include "tool.hpp"

namespace {

int exit_code(mixprec::errc c) {
  switch (c) {
    case mixprec::errc::io_error:
    case mixprec::errc::parse_error: return 3;
    case mixprec::errc::infeasible: return 4;
    case mixprec::errc::unsupported: return 5;
    case mixprec::errc::invalid_argument:
    case mixprec::errc::shape_mismatch: return 2;
    default: return 1;
  }
}

std::string shape_text(const std::vector<std::uint64_t>& dims) {
  std::string s;
  for (auto d : dims) s += (s.empty() ? "" : "x") + std::to_string(d);
  return s.empty() ? "scalar" : s;
}

}  // namespace

// SIGINT/SIGTERM/SIGHUP: remove the temporary output being written, then die of the signal as usual.
extern "C" void on_fatal_signal(int sig) {
  mixprec::remove_pending_outputs();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

int main(int argc, char** argv) {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) std::signal(sig, on_fatal_signal);
  CLI::App app{"mixprec: mixed-precision quantization of GGUF and safetensors checkpoints"};
  app.require_subcommand(1);
  std::string file, types = "q4_0,q4_1,q8_0,q4_K,q6_K,f16", imatrix_path, json_path, budget = "4.8", policy = "knapsack",
              plan_out = "plan.json", plan_in, out_path;
  std::vector<std::string> overrides;
  auto* inspect = app.add_subcommand("inspect", "list tensors: name, shape, type, bytes");
  inspect->add_option("FILE", file, "GGUF or safetensors file")->required();
  auto* analyze = app.add_subcommand("analyze", "per tensor and candidate type: bytes, SQNR, weighted squared error");
  analyze->add_option("FILE", file, "GGUF or safetensors file")->required();
  analyze->add_option("--types", types, "candidate ggml types")->capture_default_str();
  analyze->add_option("--imatrix", imatrix_path, "llama.cpp importance matrix (.dat) to weight the error and the scale search");
  analyze->add_option("--json", json_path, "write the analysis as JSON");
  auto* plan = app.add_subcommand("plan", "a ggml type per tensor within a byte budget -> plan.json");
  plan->add_option("FILE", file, "GGUF or safetensors file")->required();
  plan->add_option("--budget", budget, "bits per weight (4.8 or 4.8bpw) or bytes (3900000000B, 3.9GB)")->capture_default_str();
  plan->add_option("--policy", policy, "knapsack (exact) or greedy")->capture_default_str()->check(CLI::IsMember({"knapsack", "greedy"}));
  plan->add_option("--types", types, "candidate ggml types")->capture_default_str();
  plan->add_option("--imatrix", imatrix_path, "llama.cpp importance matrix (.dat)");
  plan->add_option("--tensor-type", overrides, "REGEX=TYPE: tensors matching REGEX get TYPE (llama.cpp's form); repeatable");
  plan->add_option("-o,--output", plan_out, "plan file")->capture_default_str();
  auto* quantize = app.add_subcommand("quantize", "rewrite a GGUF by a plan, every metadata key kept");
  quantize->add_option("FILE", file, "GGUF file with F32/F16/BF16 tensors")->required();
  quantize->add_option("--plan", plan_in, "plan.json from `mixprec plan`")->required();
  quantize->add_option("-o,--output", out_path, "output GGUF")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  try {
    // Every output is checked before any tensor is read: never the input, and in a folder that exists.
    if (quantize->parsed()) mixprec::check_output_path(out_path, std::vector<std::string>{file, plan_in});
    if (plan->parsed()) mixprec::check_output_path(plan_out, std::vector<std::string>{file, imatrix_path});
    if (analyze->parsed() && !json_path.empty())
      mixprec::check_output_path(json_path, std::vector<std::string>{file, imatrix_path});
    const mixprec_cli::model_file f(file);
    if (inspect->parsed()) {
      std::printf("| tensor | shape | type | bytes |\n|---|---|---|---:|\n");
      std::uint64_t total = 0;
      for (const auto& t : f.tensors()) {
        std::printf("| %s | %s | %s | %llu |\n", t.name.c_str(), shape_text(t.dims).c_str(), t.type.c_str(),
                    static_cast<unsigned long long>(t.bytes));
        total += t.bytes;
      }
      std::printf("\n%zu tensors, %llu bytes (%s)\n", f.tensors().size(), static_cast<unsigned long long>(total),
                  f.is_gguf() ? ("GGUF v" + std::to_string(f.gguf().version()) + ", " + std::to_string(f.gguf().kvs().size()) +
                                 " metadata keys").c_str()
                              : "safetensors");
      return 0;
    }
    if (quantize->parsed()) {
      const auto s = mixprec_cli::quantize_gguf(f, mixprec_cli::load_plan(plan_in), out_path);
      std::printf("| | tensors | bytes |\n|---|---:|---:|\n| in (%s) | %zu | %llu |\n| out (%s) | %zu (%zu re-encoded) | %llu |\n"
                  "\ngeneral.file_type = %u; every other metadata key copied\n",
                  file.c_str(), s.tensors, static_cast<unsigned long long>(s.bytes_in), out_path.c_str(), s.tensors, s.converted,
                  static_cast<unsigned long long>(s.bytes_out), s.file_type);
      return 0;
    }
    std::map<std::string, Eigen::VectorXf> importance;
    if (!imatrix_path.empty()) importance = mixprec::imatrix::load_importance(imatrix_path);
    const auto analysis = mixprec_cli::analyze(f, mixprec_cli::parse_types(types), importance);
    if (analyze->parsed()) {
      std::printf("| tensor | shape | type | bytes | bits/weight | SQNR (dB) | error |\n|---|---|---|---:|---:|---:|---:|\n");
      nlohmann::json j = nlohmann::json::array();
      for (const auto& a : analysis)
        for (const auto& c : a.candidates) {
          const double bpw = 8.0 * static_cast<double>(c.bytes) / static_cast<double>(a.rows * a.cols);
          std::printf("| %s | %ldx%ld | %s | %llu | %.3f | %.2f | %.4g |\n", a.name.c_str(), static_cast<long>(a.rows),
                      static_cast<long>(a.cols), std::string(mixprec::to_string(c.type)).c_str(),
                      static_cast<unsigned long long>(c.bytes), bpw, c.sqnr_db, c.error);
          j.push_back({{"tensor", a.name}, {"rows", a.rows}, {"cols", a.cols}, {"type", std::string(mixprec::to_string(c.type))},
                       {"bytes", c.bytes}, {"sqnr_db", c.sqnr_db}, {"error", c.error}, {"importance", a.has_importance}});
        }
      if (!json_path.empty()) {
        mixprec::output_file out(json_path);
        out.stream() << j.dump(2) << "\n";
        out.commit();
      }
      return 0;
    }
    if (plan->parsed()) {
      std::vector<mixprec_cli::override_rule> rules;
      for (const auto& o : overrides) rules.push_back(mixprec_cli::parse_override(o));
      double weights = 0.0;
      for (const auto& a : analysis) weights += static_cast<double>(a.rows) * static_cast<double>(a.cols);
      const auto p = mixprec_cli::make_plan(analysis, mixprec::parse_byte_budget(budget, weights), policy, rules);
      std::printf("| tensor | type | bytes | SQNR (dB) | error |\n|---|---|---:|---:|---:|\n");
      double err = 0.0;
      for (const auto& e : p.entries) {
        std::printf("| %s | %s%s | %llu | %.2f | %.4g |\n", e.name.c_str(), std::string(mixprec::to_string(e.type)).c_str(),
                    e.overridden ? " (override)" : "", static_cast<unsigned long long>(e.bytes), e.sqnr_db, e.error);
        err += e.error;
      }
      std::printf("\n%s plan%s: %llu bytes = %.3f bits/weight over %zu tensors (budget %.0f bytes), total error %.4g\n",
                  p.policy.c_str(), p.proven_optimal ? " (proven optimal)" : "", static_cast<unsigned long long>(p.bytes()),
                  8.0 * static_cast<double>(p.bytes()) / weights, p.entries.size(), p.budget_bytes, err);
      mixprec::output_file out(plan_out, {file});
      out.stream() << mixprec_cli::to_json(p).dump(2) << "\n";
      out.commit();
      std::fprintf(stderr, "wrote %s\n", plan_out.c_str());
      return 0;
    }
    return 1;
  } catch (const mixprec::error& e) {
    std::fprintf(stderr, "%s\n", e.what());  // "mixprec: ..."
    return exit_code(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mixprec: %s\n", e.what());
    return 1;
  }
}
