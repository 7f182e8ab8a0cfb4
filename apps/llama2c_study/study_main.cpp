// A LLaMA study: which matrices are sensitive, and how strategies compare in size, speed and
// quality (KL to FP32, top-1 agreement, perplexity on FP32-sampled streams).
//   llama_study --model PATH [--streams N] [--length N] [--seed N] [--quick] [--json PATH]
// PATH is a llama2.c checkpoint; `bash scripts/fetch_stories15m.sh` fetches a trained one
// (data/stories15M/stories15M.bin).
#include <cstdio>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "study.hpp"

namespace {
constexpr const char* usage =
    "usage: llama_study --model PATH [--streams N] [--length N] [--seed N] [--quick] [--json PATH]\n"
    "  --model PATH  a llama2.c checkpoint (required), e.g. data/stories15M/stories15M.bin from\n"
    "                `bash scripts/fetch_stories15m.sh`\n";

// A command line that cannot run: main prints it with the usage and exits 2.
struct usage_error {
  std::string what;
};
}  // namespace

int main(int argc, char** argv) try {
  std::string model_path, json_path;
  llama::study_options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw usage_error{a + " needs a value"};
      return argv[++i];
    };
    if (a == "--model") model_path = value();
    else if (a == "--streams") o.streams = std::stoi(value());
    else if (a == "--length") o.length = std::stoi(value());
    else if (a == "--seed") o.seed = std::stoull(value());
    else if (a == "--json") json_path = value();
    else if (a == "--quick") o.streams = 2, o.length = 32;
    else if (a == "-h" || a == "--help") {
      std::fputs(usage, stdout);
      return 0;
    } else {
      throw usage_error{"unknown argument '" + a + "'"};
    }
  }
  if (model_path.empty()) throw usage_error{"--model is required"};
  auto ck = mixprec::llama2c::load_checkpoint(model_path);
  const auto int4 = mixprec::parse_spec("int4/g32/sym/minmax/s16");
  const auto int8 = mixprec::parse_spec("int8/channel/sym/minmax/s32");
  std::fprintf(stderr, "model %s: dim %d, %d layers, vocab %d; %d reference streams of %d tokens\n", model_path.c_str(),
               ck.cfg.dim, ck.cfg.n_layers, ck.cfg.vocab_size, o.streams, o.length);
  const llama::reference ref = llama::make_reference(ck, o);

  std::fprintf(stderr, "measuring per-matrix sensitivity...\n");
  const auto matrices = llama::measure_matrices(ck, ref, int4, int8);
  double weights = 0.0;
  for (const auto& m : matrices) weights += static_cast<double>(m.rows * m.cols);

  std::vector<llama::strategy_result> results;
  auto run = [&](const std::string& name, const llama::spec_map& specs,
                 mixprec::activation_type act = mixprec::activation_type::fp32) {
    std::fprintf(stderr, "strategy %s...\n", name.c_str());
    results.push_back({name, specs, llama::quality_of(ck, specs, ref, act), weights});
  };
  run("fp32", {});
  run("int8", llama::uniform(ck, int8));
  run("int4_g32", llama::uniform(ck, int4));
  llama::spec_map attn8;
  for (const auto& m : matrices) attn8[m.name] = m.kind == "ffn" ? int4 : int8;
  run("attn_int8_ffn_int4", attn8);
  llama::spec_map kquant = llama::uniform(ck, int4);  // llama.cpp Q4_K_M-like: attn_v, ffn_down, output higher
  for (const auto& m : matrices)
    if (m.name.ends_with(".wv") || m.name.ends_with(".w2") || m.name == "classifier") kquant[m.name] = int8;
  run("q4_k_m_like", kquant);

  const double budget = 0.5 * static_cast<double>(results[1].q.bytes + results[2].q.bytes);  // between INT4 and INT8
  const auto source = llama::kl_source(matrices, int4, int8);
  const auto layers = llama::infos(matrices);
  const auto threshold = mixprec::plan_builder{source, mixprec::threshold_policy{}, mixprec::byte_budget{budget}}
                             .candidates({int4, int8}).build(layers);
  const auto greedy = mixprec::plan_builder{source, mixprec::greedy_policy{}, mixprec::byte_budget{budget}}
                          .candidates({int4, int8}).build(layers);
  const auto knapsack = mixprec::plan_builder{source, mixprec::knapsack_policy{}, mixprec::byte_budget{budget}}
                            .candidates({int4, int8}).build(layers);
  run(threshold.within_limit() ? "threshold" : "threshold (over the limit)", llama::specs_of(threshold));  // it ignores budgets
  run("greedy", llama::specs_of(greedy));
  run("knapsack", llama::specs_of(knapsack));
  // The same plan with INT8 activations (per token, integer dot products): what activation rounding costs.
  run("knapsack+a8", llama::specs_of(knapsack), mixprec::activation_type::int8);

  std::printf("\n## Per-matrix sensitivity (%s)\n\n| matrix | kind | KL int4 | KL int8 | SQNR int4 (dB) | output error int4 |\n"
              "|---|---|---:|---:|---:|---:|\n", model_path.c_str());
  std::map<std::string, std::pair<double, int>> by_kind;
  for (const auto& m : matrices) {
    std::printf("| %s | %s | %.5f | %.6f | %.2f | %.4g |\n", m.name.c_str(), m.kind.c_str(), m.kl_int4, m.kl_int8,
                m.sqnr_int4_db, m.output_error_int4);
    by_kind[m.kind].first += m.kl_int4;
    by_kind[m.kind].second += 1;
  }
  std::printf("\n| kind | matrices | mean KL with one matrix at INT4 |\n|---|---:|---:|\n");
  for (const auto& [kind, v] : by_kind) std::printf("| %s | %d | %.5f |\n", kind.c_str(), v.second, v.first / v.second);
  std::printf("\n## Strategies (budget for the plans: %.0f bytes of matrices)\n\n"
              "| strategy | size (bytes) | avg bits | tokens/s | KL mean | KL p99 | top-1 | PPL |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|\n", budget);
  for (const auto& r : results)
    std::printf("| %s | %zu | %.2f | %.0f | %.5f | %.4f | %.1f %% | %.3f |\n", r.name.c_str(), r.q.bytes,
                r.bits_per_weight(), r.q.tokens_per_s, r.q.kl_mean, r.q.kl_p99, 100.0 * r.q.top1, r.q.ppl);

  if (!json_path.empty()) {
    nlohmann::json j;
    j["model"] = model_path;
    j["budget_bytes"] = budget;
    for (const auto& r : results)
      j["strategies"].push_back({{"name", r.name}, {"bytes", r.q.bytes}, {"avg_bits", r.bits_per_weight()},
                                 {"tokens_per_s", r.q.tokens_per_s}, {"kl_mean", r.q.kl_mean}, {"kl_p99", r.q.kl_p99},
                                 {"top1", r.q.top1}, {"ppl", r.q.ppl}});
    for (const auto& m : matrices)
      j["matrices"].push_back({{"name", m.name}, {"kind", m.kind}, {"kl_int4", m.kl_int4}, {"kl_int8", m.kl_int8},
                               {"sqnr_int4_db", m.sqnr_int4_db}, {"output_error_int4", m.output_error_int4}});
    std::ofstream(json_path) << j.dump(2) << "\n";
    std::fprintf(stderr, "wrote %s\n", json_path.c_str());
  }
  return 0;
} catch (const usage_error& e) {
  std::fprintf(stderr, "llama_study: %s\n%s", e.what.c_str(), usage);
  return 2;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
