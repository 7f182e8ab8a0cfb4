// The Fashion-MNIST pipeline's outputs: Markdown tables, the JSON document, the Pareto CSV/JSON and a
// gnuplot script (rendered to SVG when gnuplot is installed).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "pipeline.hpp"

namespace fashion {

inline std::string format(const char* fmt, auto... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

[[nodiscard]] inline const strategy_result& strategy(const results& r, const std::string& name) {
  for (const auto& s : r.strategies)
    if (s.name == name) return s;
  throw mixprec::error(mixprec::errc::invalid_argument, "no strategy '" + name + "'");
}

// "int4/g32/sym/mse/s16" -> "int4/g32": the format and granularity, enough to tell the candidates apart.
[[nodiscard]] inline std::string short_spec(const mixprec::quant_spec& s) {
  const std::string t = mixprec::to_string(s);
  const auto first = t.find('/');
  return first == std::string::npos ? t : t.substr(0, t.find('/', first + 1));
}

// "conv1=int8/channel conv2=int4/g32 ..." (layers not in specs: fp32).
[[nodiscard]] inline std::string specs_text(const spec_map& specs) {
  std::string out;
  for (const auto& n : layer_names) {
    const auto it = specs.find(n);
    out += (out.empty() ? "" : " ") + n + "=" + (it == specs.end() ? std::string("fp32") : short_spec(it->second));
  }
  return out;
}

// All tables, Markdown.
[[nodiscard]] inline std::string markdown(const results& r) {
  std::string s;
  s += format("## Fashion-MNIST: %ld training, %ld validation, %ld test images; %ld weights in 6 layers\n\n",
              static_cast<long>(r.train_n), static_cast<long>(r.val_n), static_cast<long>(r.test_n), static_cast<long>(r.weights));
  s += format("FP32 test accuracy %.2f %% (validation %.2f %%).\n\n", 100.0 * strategy(r, "fp32").accuracy, 100.0 * r.fp32_val);
  s += "### Per-layer sensitivity (validation accuracy drop with only that layer quantized)\n\n";
  s += "| layer | shape | params | drop int4 g32 | drop int8 | KL int4 g32 | KL int8 | SQNR int4 (dB) | Tr(H) | HAWQ int4 | class | suggestion |\n"
       "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n";
  for (const auto& l : r.layers)
    s += format("| %s | %ldx%ld | %ld | %+.2f %% | %+.2f %% | %.2e | %.2e | %.2f | %.4g ± %.2g | %.3g | %s | %s |\n", l.name.c_str(),
                static_cast<long>(l.rows), static_cast<long>(l.cols), static_cast<long>(l.rows * l.cols), 100.0 * l.drop_int4,
                100.0 * l.drop_int8, l.kl_int4, l.kl_int8, l.sqnr_int4_db, l.hessian_trace, l.hessian_trace_se, l.hawq_int4,
                std::string(mixprec::to_string(l.cls)).c_str(), short_spec(l.suggestion).c_str());
  s += "\n| rank correlation | value |\n|---|---:|\n";
  for (const auto& [name, v] : r.correlations) s += "| " + name + " | " + (v ? format("%+.3f", *v) : std::string("undefined")) + " |\n";
  s += format("\n### Strategies (plans at a budget of %.0f bytes = %.3f bits/weight; accuracy on the test set)\n\n", r.budget_bytes,
              8.0 * r.budget_bytes / static_cast<double>(r.weights));
  s += "| strategy | size (bytes) | avg bits | accuracy | drop vs FP32 | KL to FP32 | predicted KL | within budget | layers |\n"
       "|---|---:|---:|---:|---:|---:|---:|---|---|\n";
  const double fp32 = strategy(r, "fp32").accuracy;
  for (const auto& st : r.strategies)
    s += format("| %s | %zu | %.3f | %.2f %% | %+.2f %% | %.5f | %.5f | %s | %s |\n", st.name.c_str(), st.bytes, st.avg_bits,
                100.0 * st.accuracy, 100.0 * (fp32 - st.accuracy), st.kl, st.predicted_kl,
                static_cast<double>(st.bytes) <= r.budget_bytes ? "yes" : "no", specs_text(st.specs).c_str());
  s += "\n### Knapsack Pareto frontier (loss: the layers' summed validation KL)\n\n"
       "| bytes | avg bits | predicted KL | test KL | test accuracy | layers |\n|---:|---:|---:|---:|---:|---|\n";
  for (const auto& pt : r.pareto)
    s += format("| %zu | %.3f | %.5f | %.5f | %.2f %% | %s |\n", pt.bytes, pt.avg_bits, pt.predicted_kl, pt.kl, 100.0 * pt.accuracy,
                specs_text(pt.specs).c_str());
  s += "\nPrecision-aware training: " + r.qat_method + format(", %d steps.\n", r.opt.qat_steps);
  return s;
}

[[nodiscard]] inline nlohmann::json to_json(const results& r) {
  using nlohmann::json;
  json j;
  j["dataset"] = {{"name", "fashion-mnist"}, {"train", r.train_n}, {"validation", r.val_n}, {"test", r.test_n}};
  j["seed"] = r.opt.seed;
  j["weights"] = r.weights;
  j["training"] = {{"epochs", r.opt.epochs}, {"seconds", r.train_seconds}, {"from_cache", r.from_cache}, {"file", r.weights_file}};
  j["fp32"] = {{"accuracy", strategy(r, "fp32").accuracy}, {"validation_accuracy", r.fp32_val}};
  j["candidates"] = r.candidates;
  j["budget_bytes"] = r.budget_bytes;
  j["budget_bits_per_weight"] = 8.0 * r.budget_bytes / static_cast<double>(r.weights);
  j["strategies"] = json::array();
  for (const auto& s : r.strategies) {
    json specs = json::object();
    for (const auto& [layer, spec] : s.specs) specs[layer] = mixprec::to_string(spec);
    j["strategies"].push_back({{"name", s.name}, {"bytes", s.bytes}, {"avg_bits", s.avg_bits}, {"accuracy", s.accuracy},
                               {"drop", strategy(r, "fp32").accuracy - s.accuracy}, {"kl", s.kl}, {"predicted_kl", s.predicted_kl},
                               {"within_budget", static_cast<double>(s.bytes) <= r.budget_bytes}, {"layers", specs}});
  }
  j["layers"] = json::array();
  for (const auto& l : r.layers) {
    json drops = json::object(), kls = json::object();
    for (const auto& [spec, d] : l.drop) drops[spec] = d;
    for (const auto& [spec, k] : l.kl) kls[spec] = k;
    j["layers"].push_back({{"name", l.name}, {"kind", l.kind}, {"rows", l.rows}, {"cols", l.cols}, {"params", l.rows * l.cols},
                           {"drop_int4", l.drop_int4}, {"drop_int8", l.drop_int8}, {"drops", drops},
                           {"kl_int4", l.kl_int4}, {"kl_int8", l.kl_int8}, {"kls", kls},
                           {"sqnr_int4_db", l.sqnr_int4_db}, {"sqnr_int8_db", l.sqnr_int8_db},
                           {"hessian_trace", l.hessian_trace}, {"hessian_trace_std_error", l.hessian_trace_se},
                           {"hessian_probes", l.hessian_probes}, {"hawq_int4", l.hawq_int4},
                           {"class", std::string(mixprec::to_string(l.cls))}, {"suggestion", mixprec::to_string(l.suggestion)}});
  }
  j["rank_correlations"] = json::object();
  for (const auto& [name, v] : r.correlations) j["rank_correlations"][name] = v ? json(*v) : json(nullptr);
  j["pareto"] = json::array();
  for (const auto& pt : r.pareto) {
    json specs = json::object();
    for (const auto& [layer, spec] : pt.specs) specs[layer] = mixprec::to_string(spec);
    j["pareto"].push_back({{"bytes", pt.bytes}, {"avg_bits", pt.avg_bits}, {"predicted_kl", pt.predicted_kl}, {"kl", pt.kl},
                           {"accuracy", pt.accuracy}, {"layers", specs}});
  }
  j["qat"] = {{"method", r.qat_method}, {"steps", r.opt.qat_steps}, {"lr", r.opt.qat_lr}};
  j["seconds"] = r.seconds;
  return j;
}

// Writes pareto.csv, pareto.json and pareto.gp into dir and renders pareto.svg with gnuplot if it is
// installed; returns the files written.
inline std::vector<std::string> write_pareto(const results& r, const std::string& dir) {
  std::vector<std::string> files;
  {
    std::ofstream csv(dir + "/pareto.csv");
    csv << "bytes,avg_bits,predicted_kl,test_kl,test_accuracy\n";
    for (const auto& pt : r.pareto)
      csv << pt.bytes << ',' << pt.avg_bits << ',' << pt.predicted_kl << ',' << pt.kl << ',' << pt.accuracy << '\n';
    files.push_back(dir + "/pareto.csv");
  }
  std::ofstream(dir + "/pareto.json") << to_json(r)["pareto"].dump(2) << "\n";
  files.push_back(dir + "/pareto.json");
  {
    std::ofstream pts(dir + "/strategies.csv");
    pts << "avg_bits,test_accuracy_percent,strategy\n";
    for (const auto& s : r.strategies) pts << s.avg_bits << ',' << 100.0 * s.accuracy << ',' << s.name << '\n';
    files.push_back(dir + "/strategies.csv");
  }
  std::ofstream gp(dir + "/pareto.gp");
  gp << "# gnuplot script: gnuplot pareto.gp (from this folder) renders pareto.svg\n"
        "set terminal svg size 760,460 dynamic font 'sans,12' background rgb 'white'\n"
        "set output 'pareto.svg'\n"
        "set title 'Fashion-MNIST CNN: knapsack plans, test accuracy vs size'\n"
        "set xlabel 'average bits per weight (scales counted)'\nset ylabel 'test accuracy (%)'\n"
        "set grid\nset key bottom right\nset datafile separator ','\nset logscale x 2\nset xrange [3.5:40]\n"
        "plot 'pareto.csv' using 2:($5*100) every ::1 with linespoints lw 2 pt 7 title 'knapsack frontier', \\\n"
        "     'strategies.csv' using 1:2 every ::1 with points pt 5 ps 1.2 title 'strategies', \\\n"
        "     'strategies.csv' using 1:2:3 every ::1 with labels offset 0.6,0.6 left font ',9' notitle\n";
  gp.close();
  files.push_back(dir + "/pareto.gp");
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) {
    const std::string cmd = "cd '" + dir + "' && gnuplot pareto.gp";
    if (std::system(cmd.c_str()) == 0) files.push_back(dir + "/pareto.svg");
  }
  return files;
}

}  // namespace fashion
