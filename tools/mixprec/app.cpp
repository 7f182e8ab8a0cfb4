// `mixprec`'s command line (cli.hpp lists the commands and exit codes): the options of each command, the
// checks of the whole request before any tensor is read, then the work (tool.hpp and the headers beside it).
#include "cli.hpp"

#include <string>
#include <vector>

#include "app.hpp"

namespace mixprec_cli {

int run(int argc, const char* const* argv) {
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
