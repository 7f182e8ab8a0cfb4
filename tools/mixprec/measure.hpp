// `mixprec measure`: what quantizing each weight matrix of a LLaMA-family GGUF costs the model's output,
// per tensor and candidate type. The measurement is the library's (models/llama/measure.hpp
// measure_llama: kl with its bootstrap interval kl_ci95, gram_proxy, proxy, weight_error, sqnr_db, the
// fallback chain); this file adds the calibration, the imatrix files, measure.json and its checks.
// The same full-precision pass writes the importance matrix in llama.cpp's GGUF imatrix format (and
// optionally the legacy .dat), which llama-quantize reads. `mixprec plan --measured measure.json`
// plans from the file without touching the model again.
//
// Calibration (reproducible: the streams, their seed, an FNV-1a hash of the ids and the BOS are in the file):
//   --text FILE       the text, tokenized with the GGUF's own vocabulary, cut into streams of --ctx
//                     tokens as llama.cpp's imatrix and perplexity tools cut it: when the vocabulary
//                     adds BOS (tokenizer.ggml.add_bos_token), the text with BOS first cut every --ctx
//                     tokens and each stream's first token set to BOS (one text token between streams
//                     is not seen); else --ctx text tokens each (models::chunk_tokens)
//   --tokens FILE     token ids, used as given (one stream per line of whitespace-separated ids)
//   --sample N:LEN    N streams of LEN tokens sampled from the model itself (seed --seed), each started
//                     with the vocabulary's BOS
// The BOS is the vocabulary's: tokenizer.ggml.bos_token_id, else llama.cpp's default for
// tokenizer.ggml.model (1 for SentencePiece "llama", 11 for "gpt2"; mixprec::models::bos_of), never a
// constant: a Llama-3-style vocabulary starts every stream with its 128000.
// Tensors measured: every weight matrix of the model, token_embd included. Each probe runs the model
// with that one tensor replaced by the bytes a quantize with this plan would write (searched with the
// imatrix where the type's search takes it), so kl, proxy and the written file agree.
// Shards: --shard i/N probes the tensors k (in the model's order) with k % N == i and writes a partial
// file; merge_measures joins N of them into the single-process file, number for number (the numbers
// depend neither on the thread count nor on the shard).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <mixprec/io/imatrix.hpp>
#include <mixprec/models/calibration.hpp>
#include <mixprec/models/llama.hpp>
#include <mixprec/models/llama/measure.hpp>
#include <mixprec/models/tokenizer.hpp>
#include <mixprec/plan/plan_json.hpp>

#include "tool.hpp"

namespace mixprec_cli {

struct measure_options {
  std::vector<quant_spec> types;
  std::string text, tokens;  // calibration sources (one of text, tokens, sample)
  int sample_streams = 0, sample_length = 0;
  int ctx = 64;               // tokens per stream cut from --text / --tokens
  int max_streams = 8;        // streams used at most
  std::uint64_t seed = 1;
  std::string imatrix_out;      // GGUF imatrix written from the FP pass ("" = none)
  std::string imatrix_dat_out;  // legacy .dat ("" = none)
  unsigned threads = 1;         // per matrix product (0: every core); the numbers do not depend on it
  int shard_index = 0, shard_count = 1;  // --shard i/N: probe the tensors k with k % N == i
  bool probe = true;                     // --method probe|both: the one-tensor KL runs
  int fisher_draws = 0;                  // --method fisher|both: label draws per stream (--fisher-draws)
  int tune_rounds = -1;                  // --tune R (>= 0): tunable types measured with GPTQ's codes
};

using mixprec::models::tensor_measurement;
using mixprec::models::type_measurement;

using mixprec::models::calibration_set;

// The calibration streams of o for model m, read from GGUF g: the library's calibration_streams
// (models/calibration.hpp; see the banner), its refused requests named by the options.
[[nodiscard]] inline calibration_set calibration_streams(const mixprec::gguf::file& g, const mixprec::models::llama_model& m,
                                                         const measure_options& o) {
  const int sources = (o.text.empty() ? 0 : 1) + (o.tokens.empty() ? 0 : 1) + (o.sample_streams > 0 ? 1 : 0);
  if (sources != 1) throw error(errc::invalid_argument, "measure: give exactly one of --text, --tokens, --sample N:LEN");
  try {
    return mixprec::models::calibration_streams(g, m, {.text_path = o.text, .tokens_path = o.tokens, .sample_streams = o.sample_streams,
                                                       .sample_length = o.sample_length, .seed = o.seed, .length = o.ctx,
                                                       .max_streams = o.max_streams});
  } catch (const error& e) {  // a request problem (exit 2): named by the options that make it
    if (e.code() != errc::invalid_argument) throw;
    throw e.in_context(std::string(!o.text.empty() ? "measure --text" : !o.tokens.empty() ? "measure --tokens" : "measure --sample") +
                       " with --ctx " + std::to_string(o.ctx) + " and --streams " + std::to_string(o.max_streams));
  }
}

using mixprec::models::calibration_hash;

// The library's part of a measure request (models/llama/measure.hpp measure_options).
[[nodiscard]] inline mixprec::models::measure_options library_request(const measure_options& o) {
  return {.types = o.types,
          .threads = o.threads,
          .shard_index = o.shard_index,
          .shard_count = o.shard_count,
          .fisher_draws = o.fisher_draws,
          .fisher_seed = o.seed,
          .probe = o.probe,
          .tune_rounds = o.tune_rounds};
}

// Measures every tensor x type of the GGUF at model_path (models/llama/measure.hpp measure_llama on the
// calibration of o) and writes the imatrix files the options name. With o.shard_count > 1 only the
// tensors k (in the model's order) with k % shard_count == shard_index are probed; every shard runs the
// same full-precision pass. meta (when given) receives measure.json's model and calibration records.
[[nodiscard]] inline std::vector<tensor_measurement> measure_file(const std::string& model_path, const measure_options& o,
                                                                  nlohmann::json* meta = nullptr, bool show_progress = true) {
  namespace mm = mixprec::models;
  const mm::measure_options request = library_request(o);
  request.check();  // before the model is read
  const auto g = mixprec::gguf::file::open(model_path);
  mm::llama_model m = mm::load_gguf(g);
  const calibration_set calib = calibration_streams(g, m, o);
  const auto& streams = calib.streams;

  double total = 0.0;  // the weights the shard measures, per type
  const auto matrices = mm::llama_measure_matrices(m);
  for (std::size_t k = 0; k < matrices.size(); ++k)
    if (request.probes(k))
      total += static_cast<double>(matrices[k].first->rows()) * static_cast<double>(matrices[k].first->cols()) * static_cast<double>(o.types.size());
  progress bar("measure", total);
  mm::llama_measurement r = mm::measure_llama(
      m, streams, request,
      [&](const std::string& item, double weights) {
        if (show_progress) bar.step(item, weights);
      });

  if (!o.imatrix_out.empty() || !o.imatrix_dat_out.empty()) {
    mixprec::imatrix::file im;
    im.dataset = !o.text.empty() ? o.text : !o.tokens.empty() ? o.tokens : "sampled";
    im.chunk_size = o.ctx;
    im.last_chunk = static_cast<std::int32_t>(streams.size());
    for (const auto& [name, moments] : r.inputs.all()) {  // an expert stack: sums and counts per expert
      auto& e = im.entries[name];
      e.values = moments.sum_squares.cast<float>();
      e.counts.assign(moments.counts.begin(), moments.counts.end());
    }
    if (!o.imatrix_out.empty()) mixprec::imatrix::save(im, o.imatrix_out, mixprec::imatrix::format::gguf);
    if (!o.imatrix_dat_out.empty()) {
      for (auto& [name, e] : im.entries) {  // legacy: mean x^2 per token (1 for an expert never reached), times the chunk count
        const auto& moments = r.inputs.at(name);
        e.ncall = static_cast<std::int32_t>(streams.size());
        Eigen::VectorXd mean = moments.sum_squares;
        for (index_t m = 0; m < moments.n_mat(); ++m) {
          const double c = moments.counts[static_cast<std::size_t>(m)];
          auto part = mean.segment(m * moments.cols(), moments.cols());
          part = c > 0.0 ? (part / c).eval() : Eigen::VectorXd::Ones(moments.cols());
        }
        e.values = (mean * static_cast<double>(e.ncall)).cast<float>();
        e.counts.clear();
      }
      mixprec::imatrix::save(im, o.imatrix_dat_out, mixprec::imatrix::format::legacy);
    }
  }
  if (meta) {
    const mixprec::mapped_file mf(model_path);
    nlohmann::json model = model_identity(model_file(model_path).tensors(), model_path);
    model["fnv1a64"] = hex16(fnv1a(mf.data()));
    model["bytes"] = mf.data().size();
    model["matrices"] = r.matrices;
    nlohmann::json types = nlohmann::json::array();
    for (const auto& s : o.types) types.push_back(mixprec::to_string(s));
    *meta = {{"model", model},
             {"calibration",
              {{"source", !o.text.empty() ? "text" : !o.tokens.empty() ? "tokens" : "sample"},
               {"file", !o.text.empty() ? o.text : o.tokens},
               {"seed", o.seed},
               {"streams", streams.size()},
               {"positions", r.positions},
               {"ids_fnv1a64", calibration_hash(streams)},
               {"bos", calib.bos.id >= 0 ? nlohmann::json(calib.bos.id) : nlohmann::json(nullptr)},
               {"bos_first", calib.bos_first}}},
             {"types", types},
             {"method", {{"probe", o.probe}, {"fisher_draws", o.fisher_draws}}}};
    if (o.tune_rounds >= 0) (*meta)["method"]["tune_rounds"] = o.tune_rounds;  // absent: untuned
    if (o.shard_count > 1) (*meta)["shard"] = {{"index", o.shard_index}, {"count", o.shard_count}};
  }
  return std::move(r.tensors);
}

// `mixprec measure --dry-run`: what the measurement of o would cost (models/llama/measure.hpp
// estimate_measure, after a timed sample), printed to stdout; nothing is written.
inline void print_measure_cost(const std::string& model_path, const measure_options& o) {
  namespace mm = mixprec::models;
  const mm::measure_options request = library_request(o);
  request.check();
  const auto g = mixprec::gguf::file::open(model_path);
  mm::llama_model m = mm::load_gguf(g);
  const calibration_set calib = calibration_streams(g, m, o);
  std::size_t positions = 0;
  for (const auto& s : calib.streams) positions += s.size();
  const mm::measure_cost c = mm::estimate_measure(m, calib.streams, request);
  const auto gb = [](double bytes) { return bytes / 1e9; };
  std::printf("measure (dry run) of %s: %zu matrices, %zu types, %zu streams, %zu positions\n", model_path.c_str(), c.matrices, o.types.size(),
              calib.streams.size(), positions);
  std::printf("  probes (one-tensor runs)   %zu\n", c.probes);
  std::printf("  quantizations              %zu\n", c.quantizations);
  std::printf("  layer runs, head runs      %zu, %zu (over all positions)\n", c.layer_runs, c.head_runs);
  std::printf("  backward passes            %zu (streams x --fisher-draws)\n", c.backward_passes);
  std::printf("  expected time              %.0f s on this machine (timed sample: %.2f s)\n", c.seconds, c.sample_seconds);
  std::printf("  expected memory            %.2f GB for the weights + %.2f GB\n", gb(c.model_bytes), gb(c.peak_bytes));
}

// measure.json: {"format": "mixprec-measure", "version": 1, model, calibration, types, [shard],
// "tensors": [{name, index, rows, cols, results: [{spec, bytes, kl, kl_ci95 (kl_interval: [low, high]),
// proxy, gram_proxy, weight_error, sqnr_db, fisher_sequence, fisher_token, fisher_kfac, fisher_diagonal}],
// notes, expert_counts (an expert stack's: the positions routed to each expert)}]}; kl and kl_ci95 only when probed (--method probe or both), the fisher_* estimates
// (sensitivity/fisher.hpp) only with --method fisher or both. calibration: {source, file, seed, streams, positions, ids_fnv1a64, bos (the
// vocabulary's BOS id, null when it has none), bos_first (measure put it first in every stream)}.
[[nodiscard]] inline nlohmann::json measure_json(const std::vector<tensor_measurement>& tensors, const nlohmann::json& meta, bool probed = true) {
  nlohmann::json j = meta;
  j["format"] = "mixprec-measure";
  j["version"] = 1;
  j["tensors"] = nlohmann::json::array();
  for (const auto& t : tensors) {
    nlohmann::json r = nlohmann::json::array();
    for (const auto& m : t.types) {
      nlohmann::json e = {{"spec", mixprec::to_string(m.spec)}, {"bytes", m.bytes},           {"proxy", m.proxy},
                          {"gram_proxy", m.gram_proxy},        {"weight_error", m.weight_error}, {"sqnr_db", m.sqnr_db}};
      if (probed) {
        e["kl"] = m.kl;
        e["kl_ci95"] = {m.kl_ci95.low, m.kl_ci95.high};
      }
      if (m.fisher) {
        e["fisher_sequence"] = m.fisher->sequence;
        e["fisher_token"] = m.fisher->token;
        e["fisher_kfac"] = m.fisher->kfac;
        e["fisher_diagonal"] = m.fisher->diagonal;
      }
      r.push_back(std::move(e));
    }
    j["tensors"].push_back({{"name", t.name}, {"index", t.index}, {"rows", t.rows}, {"cols", t.cols}, {"results", r}, {"notes", t.notes}});
    if (!t.expert_counts.empty()) j["tensors"].back()["expert_counts"] = t.expert_counts;
  }
  return j;
}

// A measure file, read and checked for its format and version (errc::parse_error: not JSON or not a
// measure file; errc::unsupported: another version).
[[nodiscard]] inline nlohmann::json read_measure_file(const std::string& path) {
  const mixprec::mapped_file f(path);
  nlohmann::json j;
  try {  // strictly: a key given twice or a raw NUL is refused (detail/json_strict.hpp)
    j = mixprec::detail::parse_json_strict(std::string_view(reinterpret_cast<const char*>(f.data().data()), f.data().size()));
  } catch (const error& e) {
    throw e.in_context("measure file '" + path + "'", errc::parse_error);
  } catch (const nlohmann::json::exception& e) {
    throw error(errc::parse_error, "measure file '" + path + "': " + e.what());
  }
  if (!j.is_object() || j.value("format", std::string()) != "mixprec-measure")
    throw error(errc::parse_error, "'" + path + "' is not a measure file (see `mixprec measure`)");
  if (j.value("version", 0) != 1) throw error(errc::unsupported, "measure file '" + path + "': version " + j.value("version", nlohmann::json()).dump());
  return j;
}

// Joins the partial files of `mixprec measure --shard i/N` (any order) into the file one process would
// have written. Throws errc::invalid_argument when the parts are not the N shards of one measurement:
// another model, calibration or candidate list, a shard missing or given twice, a tensor missing;
// errc::parse_error for a part without the fields a shard has.
[[nodiscard]] inline nlohmann::json merge_measures(const std::vector<nlohmann::json>& parts, const std::vector<std::string>& names) {
  if (parts.empty()) throw error(errc::invalid_argument, "merge: no measure files");
  try {
    const nlohmann::json& first = parts.front();
    const auto count = first.at("shard").at("count").get<int>();
    if (count != static_cast<int>(parts.size()))
      throw error(errc::invalid_argument, "merge: " + std::to_string(parts.size()) + " files for " + std::to_string(count) + " shards");
    std::vector<bool> seen(static_cast<std::size_t>(count), false);
    std::vector<nlohmann::json> tensors;
    for (std::size_t i = 0; i < parts.size(); ++i) {
      const nlohmann::json& p = parts[i];
      const std::string what = "merge: '" + names[i] + "'";
      const auto field = [](const nlohmann::json& j, const char* key) { return j.contains(key) ? j.at(key) : nlohmann::json(); };
      for (const char* key : {"model", "calibration", "types", "method"})  // "method": absent before mixprec had --method
        if (field(p, key) != field(first, key)) throw error(errc::invalid_argument, what + " measured another " + key + " than '" + names[0] + "'");
      const auto index = p.at("shard").at("index").get<int>();
      if (p.at("shard").at("count").get<int>() != count || index < 0 || index >= count || seen[static_cast<std::size_t>(index)])
        throw error(errc::invalid_argument, what + " is shard " + p.at("shard").dump() + ", given twice or out of " + std::to_string(count));
      seen[static_cast<std::size_t>(index)] = true;
      for (const auto& t : p.at("tensors")) tensors.push_back(t);
    }
    std::sort(tensors.begin(), tensors.end(), [](const nlohmann::json& a, const nlohmann::json& b) {
      return a.at("index").get<std::size_t>() < b.at("index").get<std::size_t>();
    });
    const auto matrices = first.at("model").at("matrices").get<std::size_t>();
    for (std::size_t k = 0; k < matrices; ++k)
      if (k >= tensors.size() || tensors[k].at("index").get<std::size_t>() != k)
        throw error(errc::invalid_argument, "merge: tensor " + std::to_string(k) + " of " + std::to_string(matrices) + " is missing or given twice");
    if (tensors.size() != matrices) throw error(errc::invalid_argument, "merge: more tensors than the model's " + std::to_string(matrices));
    nlohmann::json out = first;
    out.erase("shard");
    out["tensors"] = tensors;
    return out;
  } catch (const nlohmann::json::exception& e) {
    throw error(errc::parse_error, std::string("merge: a part lacks a shard's fields: ") + e.what());
  }
}

// Checks, before any planning, that measure file `j` (read from `path`) was made for the model file `f`
// (at `file`): every tensor it measured is in f with the same shape and every weight matrix of f was
// measured (errc::invalid_argument, exit 2, naming the first ones); then, unless force, that it
// measured this model and not another with the same tensors (check_same_model on its "model" record;
// a file written before mixprec recorded the identity: the same file size).
inline void check_measure_fits(const nlohmann::json& j, const std::string& path, const model_file& f, const std::string& file, bool force) {
  const std::string what = "measure file '" + path + "'";
  if (j.contains("shard"))
    throw error(errc::invalid_argument, what + " is shard " + j.at("shard").dump() + " of a measurement: `mixprec merge` the shards first");
  std::map<std::string, const tensor_entry*> by_name;
  for (const auto& t : f.tensors()) by_name.emplace(t.name, &t);
  std::set<std::string> measured;
  try {
    for (const auto& x : j.at("tensors")) {
      const auto name = x.at("name").get<std::string>();
      const auto rows = x.at("rows").get<long long>(), cols = x.at("cols").get<long long>();
      const auto it = by_name.find(name);
      if (it == by_name.end())
        throw error(errc::invalid_argument, what + " measured tensor '" + name + "', which is not in '" + file + "': it was made for another model");
      if (it->second->rows != rows || it->second->cols != cols)
        throw error(errc::invalid_argument, what + " measured '" + name + "' as " + std::to_string(rows) + "x" + std::to_string(cols) + ", '" +
                                                file + "' has it " + std::to_string(it->second->rows) + "x" + std::to_string(it->second->cols) +
                                                ": it was made for another model");
      measured.insert(name);
    }
    if (const auto missing = left_out(f.tensors(), measured); !missing.empty() && !force)
      throw error(errc::invalid_argument, what + " has no measurement of " + std::to_string(missing.size()) + " weight matri" +
                                              (missing.size() == 1 ? "x" : "ces") + " of '" + file + "' (" + some_names(missing) +
                                              "): it was made for another model (--force plans the measured ones)");
    if (force) return;
    const nlohmann::json& model = j.at("model");
    if (model.contains("tensors_fnv1a64")) {
      if (const auto warning = check_same_model(model, f.tensors(), file, what)) std::fprintf(stderr, "mixprec: warning: %s\n", warning->c_str());
    } else if (const auto bytes = std::filesystem::file_size(file); model.at("bytes").get<std::uintmax_t>() != bytes) {
      throw error(errc::invalid_argument, what + " was made for a file of " + model.at("bytes").dump() + " bytes ('" +
                                              model.value("path", std::string("?")) + "'); '" + file + "' has " + std::to_string(bytes) +
                                              " (--force uses it anyway)");
    }
  } catch (const nlohmann::json::exception& e) {
    throw error(errc::parse_error, what + ": " + e.what());
  }
}

// The sensitivity table of a measure.json by one metric ("kl", "kl_upper": the upper end of kl's 95 %
// interval, a risk-aware loss where few calibration streams leave a KL uncertain; "proxy", "gram_proxy",
// "weight_error", or a Fisher estimate of kl: "fisher" (= "fisher_diagonal", the steadiest ranking of
// the measured kl on few streams, docs/measurements.md), "fisher_sequence", "fisher_token", "fisher_kfac";
// a metric the file lacks: errc::invalid_argument). A partial file (--shard) is refused: merge the shards first.
// `only`: the tensors to take (null: all), e.g. those the file stores in float (measure also measures
// tensors stored quantized, which plan keeps as they are).
[[nodiscard]] inline mixprec::sensitivity_table measured_table(const nlohmann::json& j, const std::string& path, const std::string& metric,
                                                               const std::set<std::string>* only = nullptr) {
  static const std::set<std::string> metrics = {"kl",         "kl_upper",        "proxy",        "gram_proxy",  "weight_error",
                                                "fisher",     "fisher_sequence", "fisher_token", "fisher_kfac", "fisher_diagonal"};
  if (!metrics.contains(metric))
    throw error(errc::invalid_argument, "metric '" + metric + "': expected kl, kl_upper, proxy, gram_proxy, weight_error, fisher (= "
                                        "fisher_diagonal), fisher_sequence, fisher_token, fisher_kfac or fisher_diagonal");
  if (metric == "fisher") return measured_table(j, path, "fisher_diagonal", only);
  if (j.contains("shard"))
    throw error(errc::invalid_argument, "measure file '" + path + "' is shard " + j.at("shard").dump() + ": `mixprec merge` the shards first");
  mixprec::sensitivity_table t;
  try {
    for (const auto& x : j.at("tensors")) {
      const auto name = x.at("name").get<std::string>();
      if (only && !only->count(name)) continue;
      const auto rows = mixprec::detail::json_integer<index_t>(x.at("rows"), "measure: rows");
      const auto cols = mixprec::detail::json_integer<index_t>(x.at("cols"), "measure: cols");
      for (const auto& r : x.at("results")) {
        if (metric == "kl_upper" && !r.contains("kl_ci95"))
          throw error(errc::invalid_argument, "measure file '" + path + "' has no kl_ci95 (measured before mixprec recorded intervals, or with "
                                              "--method fisher): measure again for --metric kl_upper");
        if (metric != "kl_upper" && !r.contains(metric))
          throw error(errc::invalid_argument, "measure file '" + path + "' has no " + metric + " (" +
                                                  (metric.starts_with("fisher") ? "measured without --method fisher or both"
                                                                                : "measured with --method fisher: no probes") +
                                                  "): measure again, or plan by another --metric");
        const nlohmann::json& value = metric == "kl_upper" ? r.at("kl_ci95").at(1) : r.at(metric);
        const double loss = value.get<double>();
        if (!std::isfinite(loss) || loss < 0.0) throw error(errc::parse_error, "measure file '" + path + "': " + name + " " + metric + " = " + value.dump());
        t.add(name, rows, cols, mixprec::parse_spec(r.at("spec").get<std::string>()), loss);
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw error(errc::parse_error, "measure file '" + path + "': " + e.what());
  }
  return t;
}

}  // namespace mixprec_cli
