// llm_study: measured mixed precision against llama.cpp's own recipes on a real LLaMA-family GGUF,
// every file scored inside llama.cpp (llama_cpp_study.hpp).
//
//   llm_study MODEL.gguf WORKDIR [--calibration N:LEN] [--calibration-seed S] [--eval N:LEN] [--eval-seed S]
//             [--eval-text FILE] [--types LIST] [--budgets LIST] [--tune N:LEN] [--tune-seed S] [--threads N]
//
// 1. `mixprec measure --method both` on N:LEN streams sampled from the model (seed S): per tensor x type
//    the KL of the output with only that tensor quantized, its Fisher estimate from sampled-label
//    gradients, the Gram proxy, the imatrix proxy; and the imatrix.
// 2. llama.cpp's recipes Q4_0, Q4_K_M, Q5_K_M, Q6_K, Q8_0 by llama_model_quantize, without and with
//    that imatrix.
// 3. mixprec plans at each budget (bits per weight of the weight matrices, and "q4_K_M": the matrix
//    bytes of llama.cpp's Q4_K_M file with imatrix) from five measures of loss:
//      kl            measured KL (mixprec plan --measured --metric kl), quantized with the imatrix
//      fisher        the Fisher estimate of that KL (--metric fisher), quantized with the imatrix
//      gram_proxy    |(W - Q(W)) X|^2 (--metric gram_proxy), quantized with the imatrix
//      imatrix_error imatrix-weighted weight error (mixprec plan --imatrix), quantized with it
//      weight_error  plain weight error (mixprec plan), quantized without an imatrix
//    and kl_tuned: the kl plan quantized with `mixprec quantize --tune` (GPTQ's codes inside each type,
//    qat/ggml_tune.hpp) on --tune N:LEN streams of seeds --tune-seed and --tune-seed + 1.
// 4. Every file against MODEL in llama.cpp on other streams (--eval, seed --eval-seed): KL, top-1, PPL;
//    with --eval-text, also on that text (tokenized with MODEL's vocabulary, cut into at most N streams
//    of LEN tokens, each starting with the vocabulary's BOS when it adds one; apps/llm_study/
//    heldout_stories.txt, which run.sh passes, was written for the project and is never calibrated on).
// Writes WORKDIR/results.json, results.md (a table) and pareto.svg (KL against file bytes). Files
// already in WORKDIR are reused (delete WORKDIR to start over); the tools' own output goes to
// WORKDIR/tools.log. Needs MIXPREC_LLAMA_LIB (apps/llm_study/run.sh sets it).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tools/mixprec/app.hpp"
#include "llama_cpp_study.hpp"
#include "mixprec/models/calibration.hpp"
#include "mixprec/models/llama.hpp"

namespace {

namespace fs = std::filesystem;
namespace lc = mixprec_apps::llama_cpp;
using mixprec::errc;

struct study_options {
  std::string model, work;
  std::string calibration = "8:64", eval = "16:128";
  std::uint64_t calibration_seed = 1, eval_seed = 2;
  std::string eval_text;  // held-out text scored beside the eval streams ("": none)
  std::string tune = "32:128";  // streams of `mixprec quantize --tune` ("0": no kl_tuned family)
  std::uint64_t tune_seed = 11;  // and + 1 for its held-out check
  std::string types = "q4_0,q4_1,q5_0,q5_1,q4_K,q5_K,q6_K,q8_0";
  std::vector<std::string> budgets = {"4.0", "4.5", "5.0", "5.5", "6.5", "q4_K_M"};
  int threads = 2;
};

// One quantized file of the study and its scores.
struct entry {
  std::string family;  // "llama.cpp", "llama.cpp + imatrix", or the plan's metric
  std::string label;   // recipe or budget
  std::string path;    // "" when the budget cannot be met
  std::string note;
  lc::model_score score;
  lc::model_score text;  // on --eval-text (positions 0 without one)
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string x; std::getline(in, x, sep);)
    if (!x.empty()) out.push_back(x);
  return out;
}

// Runs the mixprec tool in-process with its stdout and stderr appended to `log`; returns its exit code.
int mixprec_tool(std::vector<std::string> args, const std::string& log) {
  args.insert(args.begin(), "mixprec");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  std::fflush(stdout);
  std::fflush(stderr);
  const int saved_out = ::dup(1), saved_err = ::dup(2);
  FILE* f = std::fopen(log.c_str(), "a");
  if (!f || saved_out < 0 || saved_err < 0) throw mixprec::error(errc::io_error, "cannot open '" + log + "'");
  std::fprintf(f, "\n$");
  for (const auto& a : args) std::fprintf(f, " %s", a.c_str());
  std::fprintf(f, "\n");
  std::fflush(f);
  ::dup2(::fileno(f), 1);
  ::dup2(::fileno(f), 2);
  const int rc = mixprec_cli::run(static_cast<int>(argv.size()), argv.data());
  std::fflush(stdout);
  std::fflush(stderr);
  ::dup2(saved_out, 1);
  ::dup2(saved_err, 2);
  ::close(saved_out);
  ::close(saved_err);
  std::fclose(f);
  return rc;
}

// Bytes of the weight matrices (2-D tensors) of a GGUF: what a plan's budget counts.
std::uint64_t matrix_bytes(const std::string& path) {
  const auto g = mixprec::gguf::file::open(path);
  std::uint64_t b = 0;
  for (const auto& t : g.tensors())
    if (t.dims.size() == 2) b += t.size;
  return b;
}
std::uint64_t matrix_weights(const std::string& path) {
  const auto g = mixprec::gguf::file::open(path);
  std::uint64_t n = 0;
  for (const auto& t : g.tensors())
    if (t.dims.size() == 2) n += t.count();
  return n;
}

// KL against file bytes, log-scaled KL, one colour per family.
void write_svg(const std::string& path, const std::vector<entry>& entries, double f32_bytes) {
  const double W = 760, H = 480, L = 70, R = 220, T = 20, B = 50;
  double x0 = 1e300, x1 = 0, y0 = 1e300, y1 = 0;
  for (const auto& e : entries)
    if (!e.path.empty() && e.score.kl > 0) {
      x0 = std::min(x0, e.score.bytes / 1e6), x1 = std::max(x1, e.score.bytes / 1e6);
      y0 = std::min(y0, std::log10(e.score.kl)), y1 = std::max(y1, std::log10(e.score.kl));
    }
  x0 = std::floor(x0) - 0.5, x1 = std::ceil(x1) + 0.5, y0 = std::floor(y0), y1 = std::ceil(y1);
  auto px = [&](double mb) { return L + (mb - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double lk) { return T + (y1 - lk) / (y1 - y0) * (H - T - B); };
  const std::map<std::string, std::string> colour = {{"llama.cpp", "#000000"},     {"llama.cpp + imatrix", "#777777"},
                                                     {"kl", "#d62728"},            {"kl_tuned", "#8c564b"},      {"fisher", "#9467bd"},
                                                     {"gram_proxy", "#1f77b4"},
                                                     {"imatrix_error", "#2ca02c"}, {"weight_error", "#ff7f0e"}};
  std::ofstream o(path);
  o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H << "' font-family='sans-serif' font-size='12'>\n";
  o << "<rect width='100%' height='100%' fill='white'/>\n";
  o << "<line x1='" << L << "' y1='" << H - B << "' x2='" << W - R << "' y2='" << H - B << "' stroke='black'/>\n";
  o << "<line x1='" << L << "' y1='" << T << "' x2='" << L << "' y2='" << H - B << "' stroke='black'/>\n";
  for (double mb = std::ceil(x0); mb <= x1; mb += 1.0)
    o << "<text x='" << px(mb) << "' y='" << H - B + 16 << "' text-anchor='middle'>" << mb << "</text>\n";
  for (double lk = y0; lk <= y1; lk += 1.0)
    o << "<text x='" << L - 6 << "' y='" << py(lk) + 4 << "' text-anchor='end'>1e" << lk << "</text>\n"
      << "<line x1='" << L << "' y1='" << py(lk) << "' x2='" << W - R << "' y2='" << py(lk) << "' stroke='#eeeeee'/>\n";
  o << "<text x='" << (L + W - R) / 2 << "' y='" << H - 12 << "' text-anchor='middle'>file size (MB; F32 " << f32_bytes / 1e6
    << " MB)</text>\n";
  o << "<text transform='translate(16," << (T + H - B) / 2 << ") rotate(-90)' text-anchor='middle'>KL to F32 in llama.cpp (nats)</text>\n";
  int row = 0;
  for (const auto& [family, c] : colour) {
    std::vector<const entry*> pts;
    for (const auto& e : entries)
      if (e.family == family && !e.path.empty() && e.score.kl > 0) pts.push_back(&e);
    if (pts.empty()) continue;
    std::sort(pts.begin(), pts.end(), [](const entry* a, const entry* b) { return a->score.bytes < b->score.bytes; });
    o << "<polyline fill='none' stroke='" << c << "' points='";
    for (const entry* e : pts) o << px(e->score.bytes / 1e6) << "," << py(std::log10(e->score.kl)) << " ";
    o << "'/>\n";
    for (const entry* e : pts)
      o << "<circle cx='" << px(e->score.bytes / 1e6) << "' cy='" << py(std::log10(e->score.kl)) << "' r='3.5' fill='" << c << "'><title>"
        << e->family << " " << e->label << "</title></circle>\n";
    o << "<circle cx='" << W - R + 20 << "' cy='" << T + 10 + 18 * row << "' r='4' fill='" << c << "'/><text x='" << W - R + 30 << "' y='"
      << T + 14 + 18 * row << "'>" << family << "</text>\n";
    ++row;
  }
  o << "</svg>\n";
}

// Token streams as a file: one stream per line, ids separated by spaces (models::read_token_streams).
void write_streams(const std::string& path, const std::vector<std::vector<int>>& streams) {
  std::ofstream f(path);
  for (const auto& s : streams) {
    for (std::size_t i = 0; i < s.size(); ++i) f << (i ? " " : "") << s[i];
    f << '\n';
  }
}

int run_study(const study_options& o) {
  fs::create_directories(o.work);
  const std::string dir = o.work + "/", log = dir + "tools.log", measure = dir + "measure.json", imatrix = dir + "imatrix.gguf";
  // N:LEN, checked as the tool checks --sample (the calibration is read by `mixprec measure --sample`).
  (void)mixprec_cli::detail::int_pair(o.calibration, ':', "--calibration", "N:LEN");
  const auto [eval_n, eval_len] = mixprec_cli::detail::int_pair(o.eval, ':', "--eval", "N:LEN");
  const std::string threads = std::to_string(o.threads);

  // 1. measure (calibration streams sampled with their own seed)
  if (!fs::exists(measure) || !fs::exists(imatrix)) {
    std::fprintf(stderr, "llm_study: measuring %s on %s sampled streams (seed %llu)...\n", o.model.c_str(), o.calibration.c_str(),
                 static_cast<unsigned long long>(o.calibration_seed));
    if (const int rc = mixprec_tool({"measure", o.model, "--types", o.types, "--sample", o.calibration, "--seed", std::to_string(o.calibration_seed),
                                     "--method", "both", "--imatrix-out", imatrix, "--threads", threads, "-o", measure},
                                    log))
      throw mixprec::error(errc::invalid_argument, "mixprec measure failed (exit " + std::to_string(rc) + "); see " + log);
  }
  // Evaluation streams: other draws from the model (their own seed), as a token file.
  const std::string eval_tokens = dir + "eval_tokens.txt";
  std::vector<std::vector<int>> eval_streams, text_streams;
  {
    const auto g = mixprec::gguf::file::open(o.model);
    const auto m = mixprec::models::load_gguf(g);
    mixprec::models::llama_engine e(m);
    // Each stream starts with the vocabulary's BOS, as measure's calibration streams do.
    const int bos = mixprec::models::bos_of(g, m.config.vocab_size).id;
    if (bos < 0) throw mixprec::error(errc::unsupported, "'" + o.model + "' has no BOS token to start sampled streams with");
    eval_streams = mixprec::models::sample_streams(e, {.streams = eval_n, .length = eval_len, .seed = o.eval_seed, .first = bos});
    write_streams(eval_tokens, eval_streams);
    // Held-out text, cut by the function that cuts `mixprec measure --text`'s calibration text.
    if (!o.eval_text.empty()) {
      try {
        text_streams = mixprec::models::calibration_streams(g, m, {.text_path = o.eval_text, .length = eval_len, .max_streams = eval_n}).streams;
      } catch (const mixprec::error& err) {
        throw err.in_context("--eval-text (streams of --eval's LEN)");
      }
      write_streams(dir + "eval_text_tokens.txt", text_streams);
      std::fprintf(stderr, "llm_study: --eval-text: %zu streams of %d tokens\n", text_streams.size(), eval_len);
    }
  }

  // 2. llama.cpp's recipes
  std::vector<entry> entries;
  for (const std::string recipe : {"Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"})
    for (const bool with_imatrix : {false, true}) {
      entry e{with_imatrix ? "llama.cpp + imatrix" : "llama.cpp", recipe, dir + "llama_" + recipe + (with_imatrix ? "_imatrix" : "") + ".gguf", "", {}, {}};
      if (!fs::exists(e.path)) {
        std::fprintf(stderr, "llm_study: llama.cpp %s%s\n", recipe.c_str(), with_imatrix ? " + imatrix" : "");
        (void)lc::quantize_file(o.model, e.path, lc::parse_ftype(recipe), with_imatrix ? imatrix : "", o.threads);
      }
      entries.push_back(e);
    }

  // 3. mixprec plans
  const std::string q4km = dir + "llama_Q4_K_M_imatrix.gguf";
  for (const std::string metric : {"kl", "fisher", "gram_proxy", "imatrix_error", "weight_error"})
    for (const auto& budget : o.budgets) {
      const std::string b = budget == "q4_K_M" ? std::to_string(matrix_bytes(q4km)) : budget;
      entry e{metric, budget, dir + "mixprec_" + metric + "_" + budget + ".gguf", "", {}, {}};
      const std::string plan = dir + "plan_" + metric + "_" + budget + ".json";
      if (!fs::exists(e.path)) {
        std::vector<std::string> args = {"plan", o.model, "--budget", b, "--threads", threads, "-o", plan};
        if (metric == "kl" || metric == "fisher" || metric == "gram_proxy") args.insert(args.end(), {"--measured", measure, "--metric", metric});
        else args.insert(args.end(), {"--types", o.types});
        if (metric == "imatrix_error") args.insert(args.end(), {"--imatrix", imatrix});
        const int rc = mixprec_tool(args, log);
        if (rc == 4) {
          e.path.clear();
          e.note = "budget cannot be met";
          entries.push_back(e);
          continue;
        }
        if (rc) throw mixprec::error(errc::invalid_argument, "mixprec plan failed (exit " + std::to_string(rc) + "); see " + log);
        std::vector<std::string> q = {"quantize", o.model, "--plan", plan, "--threads", threads, "-o", e.path};
        if (metric != "weight_error") q.insert(q.end(), {"--imatrix", imatrix});
        if (const int qrc = mixprec_tool(q, log))
          throw mixprec::error(errc::invalid_argument, "mixprec quantize failed (exit " + std::to_string(qrc) + "); see " + log);
        std::fprintf(stderr, "llm_study: mixprec %s at %s\n", metric.c_str(), budget.c_str());
      }
      entries.push_back(e);
    }

  // kl_tuned: the kl plans with GPTQ's codes (tuning and held-out streams of other seeds than the scoring's).
  if (o.tune != "0") {
    if (o.tune_seed == o.eval_seed || o.tune_seed + 1 == o.eval_seed)
      throw mixprec::error(errc::invalid_argument, "--tune-seed " + std::to_string(o.tune_seed) + " and + 1 must differ from --eval-seed");
    for (const auto& budget : o.budgets) {
      const std::string plan = dir + "plan_kl_" + budget + ".json";
      entry e{"kl_tuned", budget, dir + "mixprec_kl_tuned_" + budget + ".gguf", "", {}, {}};
      if (!fs::exists(plan)) continue;  // the kl plan's budget could not be met
      if (!fs::exists(e.path)) {
        const std::vector<std::string> q = {"quantize",  o.model, "--plan", plan, "--imatrix", imatrix, "--tune", o.tune, "--tune-seed",
                                            std::to_string(o.tune_seed), "--threads", threads, "-o", e.path};
        if (const int qrc = mixprec_tool(q, log))
          throw mixprec::error(errc::invalid_argument, "mixprec quantize --tune failed (exit " + std::to_string(qrc) + "); see " + log);
        std::fprintf(stderr, "llm_study: mixprec kl_tuned at %s\n", budget.c_str());
      }
      entries.push_back(e);
    }
  }

  // 4. everything scored in llama.cpp
  std::vector<std::string> files;
  for (const auto& e : entries)
    if (!e.path.empty()) files.push_back(e.path);
  std::fprintf(stderr, "llm_study: scoring %zu files in llama.cpp on %s streams (seed %llu)...\n", files.size(), o.eval.c_str(),
               static_cast<unsigned long long>(o.eval_seed));
  const auto scores = lc::score_models(o.model, eval_streams, files, {.threads = o.threads});
  std::size_t k = 0;
  for (auto& e : entries)
    if (!e.path.empty()) e.score = scores[k++];
  if (!text_streams.empty()) {
    std::fprintf(stderr, "llm_study: scoring them on %s\n", o.eval_text.c_str());
    const auto on_text = lc::score_models(o.model, text_streams, files, {.threads = o.threads});
    k = 0;
    for (auto& e : entries)
      if (!e.path.empty()) e.text = on_text[k++];
  }
  const bool text = !text_streams.empty();

  const double weights = static_cast<double>(matrix_weights(o.model));
  nlohmann::json j = {{"model", o.model},     {"calibration", o.calibration}, {"calibration_seed", o.calibration_seed},
                      {"eval", o.eval},        {"eval_seed", o.eval_seed},     {"types", o.types},
                      {"results", nlohmann::json::array()}};
  if (text) j["eval_text"] = {{"file", o.eval_text}, {"streams", text_streams.size()}};
  std::ofstream md(dir + "results.md");
  md << "| method | budget | file bytes | matrix bits/weight | KL (nats) | top-1 % | PPL |" << (text ? " KL, text | top-1 %, text | PPL, text |" : "")
     << "\n|---|---|---:|---:|---:|---:|---:|" << (text ? "---:|---:|---:|" : "") << "\n";
  for (const auto& e : entries) {
    if (e.path.empty()) {
      md << "| " << e.family << " | " << e.label << " | - | - | " << e.note << " | | |" << (text ? " | | |" : "") << "\n";
      j["results"].push_back({{"method", e.family}, {"budget", e.label}, {"note", e.note}});
      continue;
    }
    const double bpw = 8.0 * static_cast<double>(matrix_bytes(e.path)) / weights;
    char line[256];
    std::snprintf(line, sizeof line, "| %s | %s | %ju | %.3f | %.5f | %.2f | %.4f |", e.family.c_str(), e.label.c_str(), e.score.bytes, bpw,
                  e.score.kl, e.score.top1, e.score.ppl);
    md << line;
    if (text) {
      std::snprintf(line, sizeof line, " %.5f | %.2f | %.4f |", e.text.kl, e.text.top1, e.text.ppl);
      md << line;
    }
    md << '\n';
    j["results"].push_back({{"method", e.family}, {"budget", e.label}, {"file", e.path}, {"bytes", e.score.bytes}, {"matrix_bpw", bpw},
                            {"kl", e.score.kl}, {"top1", e.score.top1}, {"ppl", e.score.ppl}, {"ref_ppl", e.score.ref_ppl}});
    if (text) j["results"].back()["text"] = {{"kl", e.text.kl}, {"top1", e.text.top1}, {"ppl", e.text.ppl}, {"ref_ppl", e.text.ref_ppl}};
  }
  md << "\nF32 reference PPL " << (scores.empty() ? 0.0 : scores.front().ref_ppl) << " over " << (scores.empty() ? 0 : scores.front().positions)
     << " positions of the eval streams";
  if (const auto first = std::find_if(entries.begin(), entries.end(), [](const entry& e) { return !e.path.empty(); }); text && first != entries.end())
    md << "; " << first->text.ref_ppl << " over " << first->text.positions << " positions of " << o.eval_text;
  md << ".\n";
  md.close();  // complete on disk before it is printed below
  std::ofstream(dir + "results.json") << j.dump(1) << '\n';
  write_svg(dir + "pareto.svg", entries, static_cast<double>(fs::file_size(o.model)));
  std::fprintf(stderr, "llm_study: wrote %sresults.md, results.json, pareto.svg\n", dir.c_str());
  std::cout << std::ifstream(dir + "results.md").rdbuf();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  mixprec::remove_pending_outputs_on_signals();  // a stopped study leaves no temporary file behind
  study_options o;
  std::vector<std::string> positional;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw mixprec::error(errc::invalid_argument, a + " needs a value");
        return argv[++i];
      };
      if (a == "--calibration") o.calibration = value();
      else if (a == "--calibration-seed") o.calibration_seed = std::stoull(value());
      else if (a == "--eval") o.eval = value();
      else if (a == "--eval-seed") o.eval_seed = std::stoull(value());
      else if (a == "--eval-text") o.eval_text = value();
      else if (a == "--types") o.types = value();
      else if (a == "--budgets") o.budgets = split(value(), ',');
      else if (a == "--threads") o.threads = std::stoi(value());
      else if (a == "--tune") o.tune = value();
      else if (a == "--tune-seed") o.tune_seed = std::stoull(value());
      else if (a.size() > 1 && a[0] == '-') throw mixprec::error(errc::invalid_argument, "unknown option " + a);
      else positional.push_back(a);
    }
    if (positional.size() != 2) {
      std::fputs("usage: llm_study MODEL.gguf WORKDIR [--calibration N:LEN] [--calibration-seed S] [--eval N:LEN] [--eval-seed S]\n"
                 "                 [--eval-text FILE] [--types LIST] [--budgets LIST] [--tune N:LEN] [--tune-seed S] [--threads N]\n",
                 stderr);
      return 2;
    }
    o.model = positional[0];
    o.work = positional[1];
    return run_study(o);
  } catch (const mixprec::error& e) {
    std::fprintf(stderr, "llm_study: %s\n", e.message().c_str());
    return mixprec_cli::exit_code(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "llm_study: %s\n", e.what());
    return 1;
  }
}
