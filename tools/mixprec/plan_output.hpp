// What `mixprec plan` writes:
//   plan.json            the library's plan JSON (plan/plan_json.hpp) with, beside it, "model" (the identity
//                        of the file it was made for), "kept" (the weight tensors kept as stored, which the
//                        budget counts) and "whole_model" (bytes and bits/weight of every weight tensor)
//   --tensor-type-file   the same plan as llama.cpp's tensor-type file (plan/tensor_type_file.hpp), for
//                        `llama-quantize --pure --tensor-type-file FILE [--imatrix IMATRIX] MODEL OUT Q8_0`
//   --pareto DIR         every plan on the bytes / predicted-loss frontier: DIR/plan-NN.json and
//                        DIR/plan-NN.tensor-types.txt per plan, DIR/frontier.json (the list, with bytes,
//                        bits/weight, predicted and verified loss), DIR/frontier.svg (the picture).
//                        Verified, the frontier's KL falls with every plan (monotone_frontier): a
//                        knapsack plan that downgrades a tensor of a smaller one is also replanned nested
//                        on it ("nested_on" when that verifies lower); one no better than a smaller plan
//                        is left out ("left_out")
// Files are written whole or not at all (io/output_file.hpp); the --pareto folder is filled under a
// temporary name beside DIR and renamed to DIR at the end, so DIR never holds part of a frontier.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <map>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <mixprec/io/output_file.hpp>
#include <mixprec/plan/plan_json.hpp>
#include <mixprec/plan/tensor_type_file.hpp>

#include "tool.hpp"
#include "verify.hpp"

namespace mixprec_cli::detail {

// Runs a plan whole on held-out streams (verify.hpp), or gives nullopt when plans are not verified.
using plan_check = std::function<std::optional<verification>(const mixprec::plan&)>;

inline void print_verification(const verification& v, double predicted) {
  std::printf("\nverified on %zu held-out streams (%zu positions, seed %llu): KL %.5g nats, 95 %% interval [%.5g, %.5g] (predicted %.5g); "
              "p99 %.4g, max %.4g; top-1 agreement %.2f %%\n",
              v.streams, v.positions, static_cast<unsigned long long>(v.seed), v.kl, v.kl_low, v.kl_high, predicted, v.kl_p99, v.kl_max,
              100.0 * v.top1);
}

// What a plan file records beside the plan: the model's identity (model_identity) and the weight
// tensors kept as stored, which the budget counts.
struct plan_context {
  nlohmann::json model;
  std::vector<const tensor_entry*> kept;
  double budget_bytes = 0.0;  // the whole budget, kept tensors included
  nlohmann::json refined;     // plan --refine's record (refine.hpp), null otherwise
};

// The base type to give llama-quantize with a tensor-type file that names every weight tensor (llama.cpp
// 0.5.0, src/llama-quant.cpp): an entry is applied only when the base type is a quantized one, and then
// in place of llama-quantize's recipe; --pure and Q8_0 give any tensor the file does not name Q8_0, whose
// 32-value block divides every row that takes a block type. tests/interop checks the bytes.
inline constexpr const char* llama_quantize_base_type = "Q8_0";

// Bytes and weights of every weight tensor: the planned ones at their planned size, the kept ones as stored.
struct model_size {
  std::uint64_t bytes = 0;
  double weights = 0.0;
  [[nodiscard]] double bits_per_weight() const { return 8.0 * static_cast<double>(bytes) / weights; }
};
[[nodiscard]] inline model_size whole_model_size(const mixprec::plan& p, const plan_context& ctx) {
  model_size s{p.bytes(), p.weights()};
  for (const tensor_entry* t : ctx.kept) s.bytes += t->bytes, s.weights += t->weights();
  return s;
}

// The plan file's JSON (see the banner).
[[nodiscard]] inline nlohmann::json plan_document(const mixprec::plan& p, const plan_context& ctx) {
  nlohmann::json j = p;
  j["model"] = ctx.model;
  if (!ctx.refined.is_null()) j["refined"] = ctx.refined;
  if (ctx.kept.empty()) return j;
  std::uint64_t kept_bytes = 0;
  double kept_weights = 0.0;
  nlohmann::json kept = nlohmann::json::array();
  for (const tensor_entry* t : ctx.kept) {
    kept_bytes += t->bytes;
    kept_weights += t->weights();
    kept.push_back({{"name", t->name}, {"type", t->type}, {"bytes", t->bytes}});
  }
  const model_size whole = whole_model_size(p, ctx);
  j["kept"] = {{"tensors", kept}, {"bytes", kept_bytes}, {"weights", static_cast<std::uint64_t>(kept_weights)}};
  j["whole_model"] = {{"bytes", whole.bytes},
                      {"bits_per_weight", whole.bits_per_weight()},
                      {"budget_bytes", static_cast<std::uint64_t>(std::floor(ctx.budget_bytes))}};
  return j;
}

inline void write_text(const std::string& path, const std::string& text, const std::string& input) {
  mixprec::output_file out(path, {input});
  out.stream() << text;
  out.commit();
}

// A plan JSON as the tool writes every JSON file: a path need not be UTF-8, so invalid bytes are replaced.
[[nodiscard]] inline std::string json_text(const nlohmann::json& j) {
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

// The plan's table and summary on stdout, then the weight tensors it leaves as they are stored
// (kept_as_stored: quantize copies their bytes), then the plan file and, if asked, its tensor-type file.
inline int write_plan(const mixprec::plan& p, const std::vector<tensor_analysis>& analysis, const std::vector<plan_rule>& rules,
                      const std::string& file, const std::string& plan_out, const std::string& tensor_types_out, const plan_context& ctx,
                      const plan_check& verify = {}) {
  std::map<std::string, const tensor_analysis*> by_name;
  for (const auto& a : analysis) by_name.emplace(a.name, &a);
  std::printf("| tensor | type | bytes | SQNR (dB) | error |\n|---|---|---:|---:|---:|\n");
  for (const auto& e : p.entries) {
    const candidate_result* c = nullptr;  // the analysis' result, when the plan came from one
    if (const auto it = by_name.find(e.layer); it != by_name.end())
      for (const auto& r : it->second->candidates)
        if (r.spec == e.spec) c = &r;
    const char* why = find_override(rules, e.layer) ? " (override)" : c && c->fallback ? " (fallback)" : "";
    char sqnr[32] = "-";  // a plan from measure.json: its SQNR is in that file
    if (c) std::snprintf(sqnr, sizeof sqnr, "%.2f", c->sqnr_db);
    std::printf("| %s | %s%s | %llu | %s | %.4g |\n", e.layer.c_str(), mixprec::to_string(e.spec).c_str(), why,
                static_cast<unsigned long long>(e.bytes), sqnr, e.loss);
  }
  const bool refined = p.solver.ends_with(" + refined");
  std::printf("\n%s plan%s: %llu bytes = %.3f bits/weight over %zu tensors (budget %.0f bytes), predicted loss %.4g\n",
              p.policy.c_str(), p.proven_optimal ? " (proven optimal)" : refined ? ", refined" : "", static_cast<unsigned long long>(p.bytes()),
              p.bits_per_weight(), p.entries.size(), p.limit, p.predicted_loss());
  if (!ctx.kept.empty()) {
    std::printf("\n%zu weight tensor%s kept as stored, not planned (quantize copies their bytes):\n| tensor | type | bytes |\n|---|---|---:|\n",
                ctx.kept.size(), ctx.kept.size() == 1 ? "" : "s");
    for (const tensor_entry* t : ctx.kept)
      std::printf("| %s | %s | %llu |\n", t->name.c_str(), stored_type_text(*t).c_str(), static_cast<unsigned long long>(t->bytes));
    const model_size whole = whole_model_size(p, ctx);
    std::printf("\nwhole model: %llu bytes = %.3f bits/weight over %zu weight tensors (%zu planned, %zu kept as stored: %.1f %% of the "
                "weights), budget %.0f bytes\n",
                static_cast<unsigned long long>(whole.bytes), whole.bits_per_weight(), p.entries.size() + ctx.kept.size(), p.entries.size(),
                ctx.kept.size(), 100.0 * (whole.weights - p.weights()) / whole.weights, ctx.budget_bytes);
  }
  const std::string types_text = tensor_types_out.empty() ? std::string() : mixprec::to_tensor_type_file(p);  // refuses before writing
  nlohmann::json doc = plan_document(p, ctx);
  if (const auto v = verify ? verify(p) : std::nullopt) {
    print_verification(*v, p.predicted_loss());
    doc["verified"] = v->to_json(p.predicted_loss());
  }
  // Both files written before either is committed: a failure leaves neither.
  mixprec::output_file plan_file(plan_out, {file});
  plan_file.stream() << json_text(doc);
  std::optional<mixprec::output_file> types_file;
  if (!tensor_types_out.empty()) {
    types_file.emplace(tensor_types_out, std::initializer_list<std::string>{file});
    types_file->stream() << types_text;
  }
  plan_file.commit();
  if (types_file) types_file->commit();
  std::fprintf(stderr, "wrote %s\n", plan_out.c_str());
  if (!tensor_types_out.empty()) {
    std::fprintf(stderr, "wrote %s (llama-quantize --pure --tensor-type-file %s [--imatrix IMATRIX] %s OUT.gguf %s)\n", tensor_types_out.c_str(),
                 tensor_types_out.c_str(), file.c_str(), llama_quantize_base_type);
  }
  return 0;
}

// One line of the frontier picture: (bits/weight, value) points.
struct svg_series {
  std::string label, colour;
  std::vector<std::pair<double, double>> points;
};

// The frontier as an SVG line chart: each series' values (log scale) against the whole model's bits per
// weight. A value of 0 (every tensor kept in float under a weight-error metric) sits on the bottom edge.
[[nodiscard]] inline std::string frontier_svg(const std::vector<svg_series>& series, const std::string& y_label) {
  const double W = 720, H = 440, L = 70, R = 20, T = 20, B = 50;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const auto& line : series)
    for (const auto& [x, y] : line.points) {
      x0 = std::min(x0, x), x1 = std::max(x1, x);
      if (y > 0) y0 = std::min(y0, std::log10(y)), y1 = std::max(y1, std::log10(y));
    }
  if (x0 > x1) x0 = 0.0, x1 = 1.0;  // no point at all
  if (y0 > y1) y0 = -1.0, y1 = 0.0;  // no positive value at all
  x0 = std::floor(x0 * 2.0) / 2.0;  // whole half bits, at least half a bit wide
  x1 = std::max(std::ceil(x1 * 2.0) / 2.0, x0 + 0.5);
  y0 = std::floor(y0);  // whole decades, at least one
  y1 = std::max(std::ceil(y1), y0 + 1.0);
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double y) { return y > 0 ? T + (y1 - std::log10(y)) / (y1 - y0) * (H - T - B) : H - B; };
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H << "' font-family='sans-serif' font-size='12'>\n"
    << "<rect width='100%' height='100%' fill='white'/>\n"
    << "<line x1='" << L << "' y1='" << H - B << "' x2='" << W - R << "' y2='" << H - B << "' stroke='black'/>\n"
    << "<line x1='" << L << "' y1='" << T << "' x2='" << L << "' y2='" << H - B << "' stroke='black'/>\n";
  const double step = x1 - x0 <= 4.0 ? 0.5 : x1 - x0 <= 10.0 ? 1.0 : 2.0;
  for (double x = std::ceil(x0 / step) * step; x <= x1 + 1e-9; x += step)
    o << "<text x='" << px(x) << "' y='" << H - B + 16 << "' text-anchor='middle'>" << x << "</text>\n";
  for (double y = y0; y <= y1 + 1e-9; y += 1.0)
    o << "<text x='" << L - 6 << "' y='" << py(std::pow(10.0, y)) + 4 << "' text-anchor='end'>1e" << y << "</text>\n"
      << "<line x1='" << L << "' y1='" << py(std::pow(10.0, y)) << "' x2='" << W - R << "' y2='" << py(std::pow(10.0, y))
      << "' stroke='#eeeeee'/>\n";
  o << "<text x='" << (L + W - R) / 2 << "' y='" << H - 12 << "' text-anchor='middle'>bits per weight (whole model)</text>\n"
    << "<text transform='translate(16," << (T + H - B) / 2 << ") rotate(-90)' text-anchor='middle'>" << y_label << "</text>\n";
  for (std::size_t k = 0; k < series.size(); ++k) {
    const svg_series& line = series[k];
    o << "<polyline fill='none' stroke='" << line.colour << "' points='";
    for (const auto& [x, y] : line.points) o << px(x) << "," << py(y) << " ";
    o << "'/>\n";
    for (std::size_t i = 0; i < line.points.size(); ++i)
      o << "<circle cx='" << px(line.points[i].first) << "' cy='" << py(line.points[i].second) << "' r='3.5' fill='" << line.colour
        << "'><title>plan-" << (i < 9 ? "0" : "") << i + 1 << ": " << line.points[i].first << " bits/weight, " << line.label << " "
        << line.points[i].second << "</title></circle>\n";
    o << "<circle cx='" << W - R - 200 << "' cy='" << T + 10 + 18 * static_cast<double>(k) << "' r='4' fill='" << line.colour
      << "'/><text x='" << W - R - 190 << "' y='" << T + 14 + 18 * static_cast<double>(k) << "'>" << line.label << "</text>\n";
  }
  o << "</svg>\n";
  return o.str();
}

// A folder written whole or not at all: files go into a temporary folder beside `path` (".NAME.XXXXXX"),
// renamed to `path` by commit() (which may replace only an empty folder) and removed otherwise.
class output_folder {
 public:
  explicit output_folder(std::string path) : path_(std::move(path)) {
    check(path_);
    const std::filesystem::path p(path_);
    const std::filesystem::path parent = p.has_parent_path() ? p.parent_path() : std::filesystem::path(".");
    std::string templ = (parent / ("." + p.filename().string() + ".XXXXXX")).string();
    if (!::mkdtemp(templ.data()))
      throw error(errc::output_error, "cannot create a temporary folder beside '" + path_ + "': " + std::strerror(errno));
    tmp_ = templ;
  }
  output_folder(const output_folder&) = delete;
  output_folder& operator=(const output_folder&) = delete;
  ~output_folder() {
    if (!tmp_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(tmp_, ec);
    }
  }
  // The path of file `name` inside the folder being written.
  [[nodiscard]] std::string file(const std::string& name) const { return tmp_ + "/" + name; }
  void commit() {
    const ::mode_t mask = ::umask(0);  // mkdtemp creates 0700; give the folder the mode a plain mkdir would
    ::umask(mask);
    (void)::chmod(tmp_.c_str(), 0777 & ~mask);
    if (::rename(tmp_.c_str(), path_.c_str()) != 0)
      throw error(errc::output_error, "cannot rename the folder written to '" + path_ + "': " + std::strerror(errno));
    tmp_.clear();
  }
  // Throws invalid_argument when `path` exists and is not an empty folder, io_error when its parent does not exist.
  static void check(const std::string& path) {
    const std::filesystem::path p(path);
    std::error_code ec;
    if (std::filesystem::exists(p, ec)) {
      if (!std::filesystem::is_directory(p, ec) || !std::filesystem::is_empty(p, ec))
        throw error(errc::invalid_argument, "'" + path + "' exists and is not an empty folder: give a new folder for the frontier");
      return;
    }
    const std::filesystem::path parent = p.has_parent_path() ? p.parent_path() : std::filesystem::path(".");
    if (!std::filesystem::is_directory(parent, ec))
      throw error(errc::io_error, "cannot write '" + path + "': folder '" + parent.string() + "' does not exist");
  }

 private:
  std::string path_, tmp_;
};

// A plan of the same table nested on `base` (mixprec::upgrades_of) within `limit` bytes.
using nested_replan = std::function<mixprec::plan(const mixprec::plan& base, double limit)>;

// One plan of the written frontier.
struct frontier_point {
  mixprec::plan plan;
  std::optional<verification> verified;  // on the held-out streams (nullopt: not verified)
  std::optional<std::size_t> nested_on;  // the smaller point this plan was replanned on (its types as floors)
  std::optional<verification> knapsack;  // then: the verification of the plan it replaced
};
// A frontier plan left out: more bytes than `worse_than` (a point) and no lower verified KL, nor a
// nested replan of it with one.
struct dropped_point {
  mixprec::plan plan;                   // the knapsack plan
  verification verified;                // its verification
  std::optional<verification> nested;   // the verification of its nested replan, when one ran
  std::size_t worse_than = 0;
};

// The frontier whose verified KL falls with every byte added (the target the held-out streams can
// check; the one-tensor sum predicts it falls, the whole model need not follow). Plans sorted by bytes;
// where plan i moves some tensor to a smaller type than the best smaller point b has (the knapsack
// re-arranges freely between budgets: that is where the sum misleads), it is also replanned at its own
// budget nested on b (b's types as floors: only upgrades) and the one that verifies lower is kept;
// then, if it verifies no lower than b, it is dropped. Unverified plans are kept as they are.
[[nodiscard]] inline std::vector<frontier_point> monotone_frontier(const std::vector<mixprec::plan>& plans, const plan_check& verify,
                                                                   const nested_replan& replan, std::vector<dropped_point>* dropped = nullptr) {
  auto downgrades = [](const mixprec::plan& p, const mixprec::plan& base) {
    std::map<std::string, std::size_t> floor;
    for (const auto& e : base.entries) floor[e.layer] = e.bytes;
    return std::any_of(p.entries.begin(), p.entries.end(), [&](const auto& e) { return floor.count(e.layer) && e.bytes < floor[e.layer]; });
  };
  std::vector<frontier_point> out;
  std::optional<std::size_t> best;  // the point with the lowest verified KL so far
  for (const mixprec::plan& p : plans) {
    frontier_point pt{p, verify ? verify(p) : std::nullopt, std::nullopt, std::nullopt};
    if (pt.verified && best) {
      const frontier_point& base = out[*best];
      const verification own = *pt.verified;
      std::optional<verification> nested_kl;
      if (replan && downgrades(p, base.plan)) {
        mixprec::plan nested = replan(base.plan, p.limit);
        if (nested.entries != base.plan.entries && nested.entries != p.entries) nested_kl = verify(nested);
        if (nested_kl && nested_kl->kl < pt.verified->kl) {
          nested.solver += ", nested on a smaller plan of the frontier";
          pt.knapsack = pt.verified;
          pt.plan = std::move(nested);
          pt.verified = nested_kl;
          pt.nested_on = *best;
        }
      }
      if (pt.verified->kl >= base.verified->kl) {
        if (dropped) dropped->push_back({p, own, nested_kl, *best});
        continue;
      }
    }
    out.push_back(std::move(pt));
    if (out.back().verified && (!best || out.back().verified->kl < out[*best].verified->kl)) best = out.size() - 1;
  }
  return out;
}

// Every plan on the frontier (sorted by bytes) into the folder `dir` (see the banner); a table of them on
// stdout. With verification, the frontier is made monotone first (monotone_frontier).
inline int write_frontier(const std::vector<mixprec::plan>& knapsack_plans, const std::string& file, const std::string& dir,
                          const std::string& loss_name, const plan_context& ctx, const plan_check& verify = {},
                          const nested_replan& replan = {}) {
  for (const auto& p : knapsack_plans) (void)mixprec::to_tensor_type_file(p);  // a plan no GGUF type holds fails before any work
  std::vector<dropped_point> dropped;
  const std::vector<frontier_point> front = monotone_frontier(knapsack_plans, verify, replan, &dropped);
  std::vector<std::string> types_texts;
  for (const auto& pt : front) types_texts.push_back(mixprec::to_tensor_type_file(pt.plan));
  output_folder folder(dir);
  nlohmann::json points = nlohmann::json::array();
  svg_series predicted{"predicted " + loss_name, "#d62728", {}}, verified{"verified KL (held-out streams)", "#1f77b4", {}};
  std::printf("| plan | bytes (whole model) | bits/weight | predicted %s | verified KL [95 %% interval] | tensor types |\n|---|---:|---:|---:|---|---|\n",
              loss_name.c_str());
  auto name_of = [](std::size_t i) {
    char stem[32];
    std::snprintf(stem, sizeof stem, "plan-%02zu", i + 1);
    return std::string(stem);
  };
  for (std::size_t i = 0; i < front.size(); ++i) {
    const mixprec::plan& plan = front[i].plan;
    const std::string stem = name_of(i);
    const std::string plan_name = stem + ".json", types_name = stem + ".tensor-types.txt";
    plan_context at = ctx;
    at.budget_bytes = plan.limit + static_cast<double>(whole_model_size(plan, ctx).bytes - plan.bytes());
    nlohmann::json doc = plan_document(plan, at);
    const auto& v = front[i].verified;
    if (v) doc["verified"] = v->to_json(plan.predicted_loss());
    write_text(folder.file(plan_name), json_text(doc), file);
    write_text(folder.file(types_name), types_texts[i], file);
    const model_size whole = whole_model_size(plan, ctx);
    std::map<std::string, int> count;  // the plan's types, as "q4_0 x12, q8_0 x30"
    for (const auto& e : plan.entries) ++count[std::string(mixprec::to_string(*mixprec::ggml_type_of(e.spec)))];  // ggml types (checked above)
    std::string mix;
    for (const auto& [t, n] : count) mix += (mix.empty() ? "" : ", ") + t + " x" + std::to_string(n);
    char kl[96] = "-";
    if (v) std::snprintf(kl, sizeof kl, "%.4g [%.4g, %.4g]", v->kl, v->kl_low, v->kl_high);
    std::printf("| %s%s | %llu | %.3f | %.4g | %s | %s |\n", stem.c_str(), front[i].nested_on ? " (nested)" : "",
                static_cast<unsigned long long>(whole.bytes), whole.bits_per_weight(), plan.predicted_loss(), kl, mix.c_str());
    points.push_back({{"plan", plan_name},
                      {"tensor_type_file", types_name},
                      {"bytes", whole.bytes},
                      {"planned_bytes", plan.bytes()},
                      {"bits_per_weight", whole.bits_per_weight()},
                      {"predicted_loss", plan.predicted_loss()}});
    if (v) points.back()["verified"] = doc["verified"];
    if (front[i].nested_on) {
      points.back()["nested_on"] = name_of(*front[i].nested_on) + ".json";
      points.back()["knapsack_verified_kl"] = front[i].knapsack->kl;
      std::fprintf(stderr, "mixprec: %s: nested on %s (its types as floors), KL %.4g on the held-out streams; the knapsack plan at this "
                           "budget, which downgrades some of them: %.4g\n", plan_name.c_str(), points[*front[i].nested_on].at("plan").get<std::string>().c_str(),
                   v->kl, front[i].knapsack->kl);
    }
    predicted.points.emplace_back(whole.bits_per_weight(), plan.predicted_loss());
    if (v) verified.points.emplace_back(whole.bits_per_weight(), v->kl);
  }
  nlohmann::json left_out = nlohmann::json::array();
  for (const auto& d : dropped) {
    const std::string better = points[d.worse_than].at("plan").get<std::string>();
    left_out.push_back({{"planned_bytes", d.plan.bytes()}, {"predicted_loss", d.plan.predicted_loss()}, {"verified", d.verified.to_json(d.plan.predicted_loss())},
                        {"nested_verified_kl", d.nested ? nlohmann::json(d.nested->kl) : nlohmann::json(nullptr)},
                        {"worse_than", better}});
    std::string nested;
    if (d.nested) {
      char kl[32];
      std::snprintf(kl, sizeof kl, "%.4g", d.nested->kl);
      nested = ", nor is that of the plan nested on " + better + " at its budget (" + kl + ")";
    }
    std::fprintf(stderr, "mixprec: the plan of %llu planned bytes is left out: its KL on the held-out streams (%.4g) is no lower than that of "
                         "the smaller %s (%.4g)%s\n",
                 static_cast<unsigned long long>(d.plan.bytes()), d.verified.kl, better.c_str(), front[d.worse_than].verified->kl, nested.c_str());
  }
  const nlohmann::json frontier = {{"format", "mixprec-frontier"},
                                   {"version", 1},
                                   {"model", ctx.model},
                                   {"loss", loss_name},
                                   {"llama_quantize_base_type", llama_quantize_base_type},  // with --pure
                                   {"points", points},
                                   {"left_out", left_out}};
  write_text(folder.file("frontier.json"), json_text(frontier), file);
  std::vector<svg_series> lines{predicted};
  if (!verified.points.empty()) lines.push_back(verified);
  write_text(folder.file("frontier.svg"), frontier_svg(lines, verified.points.empty() ? "predicted " + loss_name : "KL (nats) / predicted loss"), file);
  folder.commit();
  std::fprintf(stderr, "wrote %s: %zu plans on the frontier (plan-NN.json, plan-NN.tensor-types.txt), frontier.json, frontier.svg\n",
               dir.c_str(), front.size());
  return 0;
}

}  // namespace mixprec_cli::detail
