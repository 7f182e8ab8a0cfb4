// `mixprec measure`: what quantizing each weight matrix of a LLaMA-family GGUF costs the model's output,
// measured with the library's engine (models/llama.hpp) on calibration tokens, per tensor and
// candidate type:
//   kl            mean over the calibration positions of KL(P_fp || P_q), nats: the model run with only
//                 this tensor quantized to this type (its one-tensor sensitivity S(i), with KL as the
//                 metric) against the model as stored
//   proxy         sum_ij imp_j (W - Q(W))_ij^2 with imp_j the mean x_j^2 of the tensor's inputs over the
//                 calibration tokens (the imatrix's diagonal output proxy; the type searched with imp,
//                 as llama-quantize --imatrix does)
//   weight_error  |W - Q(W)|_F^2, and sqnr_db
// The same full-precision pass writes the importance matrix in llama.cpp's GGUF imatrix format (and
// optionally the legacy .dat), which llama-quantize reads. `mixprec plan --measured measure.json`
// plans from the file without touching the model again.
//
// Calibration (reproducible: the streams, their seed and an FNV-1a hash of the ids are in the file):
//   --text FILE       the text, tokenized with the GGUF's own vocabulary, cut into streams of --ctx
//   --tokens FILE     token ids (one stream per line of whitespace-separated ids, or BOS-separated)
//   --sample N:LEN    N streams of LEN tokens sampled from the model itself (seed --seed)
// Tensors measured: every weight matrix of the model, token_embd included. Each probe runs the model
// with that one tensor replaced by the bytes a quantize with this plan would write (searched with the
// imatrix where the type's search takes it), so kl, proxy and the written file agree.
#pragma once

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <mixprec/io/imatrix.hpp>
#include <mixprec/models/calibration.hpp>
#include <mixprec/models/llama.hpp>
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
  unsigned threads = 1;
};

struct measured_type {
  quant_spec spec;
  std::uint64_t bytes = 0;
  double kl = 0.0, proxy = 0.0, weight_error = 0.0, sqnr_db = 0.0;
};
struct measured_tensor {
  std::string name;
  index_t rows = 0, cols = 0;
  bool probed = true;   // kl measured
  std::vector<measured_type> types;
  std::vector<std::string> notes;
};

// FNV-1a (64 bit) of bytes: the identity of a model file and of the calibration ids in measure.json.
[[nodiscard]] inline std::uint64_t fnv1a(std::span<const std::byte> bytes, std::uint64_t h = 0xcbf29ce484222325ull) noexcept {
  for (std::byte b : bytes) h = (h ^ static_cast<std::uint64_t>(b)) * 0x100000001b3ull;
  return h;
}

// log-softmax of each row of logits.
[[nodiscard]] inline Eigen::MatrixXd log_probs(const row_matrix& logits) {
  Eigen::MatrixXd out = logits.cast<double>();
  for (index_t r = 0; r < out.rows(); ++r) {
    const double m = out.row(r).maxCoeff();
    const double lse = m + std::log((out.row(r).array() - m).exp().sum());
    out.row(r).array() -= lse;
  }
  return out;
}

// Mean over rows of KL(P || Q) for log-probabilities lp (reference) and lq, in nats.
[[nodiscard]] inline double mean_kl(const Eigen::MatrixXd& lp, const Eigen::MatrixXd& lq) {
  return (lp.array().exp() * (lp - lq).array()).rowwise().sum().mean();
}

// The calibration streams of o for model m (see the banner).
[[nodiscard]] inline std::vector<std::vector<int>> calibration_streams(const std::string& model_path, const mixprec::models::llama_model& m,
                                                                      const measure_options& o) {
  namespace mm = mixprec::models;
  const int sources = (o.text.empty() ? 0 : 1) + (o.tokens.empty() ? 0 : 1) + (o.sample_streams > 0 ? 1 : 0);
  if (sources != 1) throw error(errc::invalid_argument, "measure: give exactly one of --text, --tokens, --sample N:LEN");
  std::vector<std::vector<int>> streams;
  if (!o.text.empty()) {
    const auto tok = mm::spm_tokenizer::from_gguf(model_path);
    const mixprec::mapped_file f(o.text);
    const std::string text(reinterpret_cast<const char*>(f.data().data()), f.data().size());
    const auto ids = tok.encode(text, {.add_bos = false, .add_space_prefix = true});
    streams = mm::chunk_tokens(ids, o.ctx, 1, static_cast<std::size_t>(o.max_streams));
  } else if (!o.tokens.empty()) {
    streams = mm::read_token_streams(o.tokens, mm::token_file_format::text, m.config.vocab_size, 1);
    for (auto& s : streams)
      if (static_cast<int>(s.size()) > o.ctx) s.resize(static_cast<std::size_t>(o.ctx));
    if (static_cast<int>(streams.size()) > o.max_streams) streams.resize(static_cast<std::size_t>(o.max_streams));
  } else {
    mm::llama_engine e(m);
    streams = mm::sample_streams(e, {.streams = o.sample_streams, .length = o.sample_length, .seed = o.seed});
  }
  if (streams.empty()) throw error(errc::empty_input, "measure: no calibration tokens");
  return streams;
}

// Measures every tensor x type (see the banner); writes the imatrix files the options name.
[[nodiscard]] inline std::vector<measured_tensor> measure_model(const std::string& model_path, const measure_options& o,
                                                                 nlohmann::json* meta = nullptr, bool show_progress = true) {
  namespace mm = mixprec::models;
  if (o.types.empty()) throw error(errc::invalid_argument, "measure: no types");
  mm::llama_model m = mm::load_gguf(model_path);
  const auto streams = calibration_streams(model_path, m, o);
  std::size_t positions = 0;
  for (const auto& s : streams) positions += s.size();

  // The full-precision pass: reference log-probabilities, and sum x^2 / token count per matrix input.
  std::map<std::string, Eigen::VectorXd> sum2;
  std::map<std::string, double> count;
  std::vector<Eigen::MatrixXd> reference;
  {
    mm::llama_engine fp(m);
    fp.observe([&](const std::string& name, const float* x, index_t n) {
      auto& s = sum2[name];
      if (s.size() == 0) s = Eigen::VectorXd::Zero(n);
      s.array() += Eigen::Map<const Eigen::VectorXf>(x, n).cast<double>().array().square();
      count[name] += 1.0;
    });
    for (const auto& s : streams) reference.push_back(log_probs(fp.logits(s)));
  }
  if (!o.imatrix_out.empty() || !o.imatrix_dat_out.empty()) {
    mixprec::imatrix::file im;
    im.dataset = !o.text.empty() ? o.text : !o.tokens.empty() ? o.tokens : "sampled";
    im.chunk_size = o.ctx;
    im.last_chunk = static_cast<std::int32_t>(streams.size());
    for (const auto& [name, s] : sum2) {
      auto& e = im.entries[name];
      e.values = s.cast<float>();
      e.counts = {static_cast<float>(count[name])};
    }
    if (!o.imatrix_out.empty()) mixprec::imatrix::save(im, o.imatrix_out, mixprec::imatrix::format::gguf);
    if (!o.imatrix_dat_out.empty()) {
      for (auto& [name, e] : im.entries) {  // legacy: mean x^2 per token, times the chunk count
        e.ncall = static_cast<std::int32_t>(streams.size());
        e.values = (sum2[name] / count[name] * static_cast<double>(e.ncall)).cast<float>();
        e.counts.clear();
      }
      mixprec::imatrix::save(im, o.imatrix_dat_out, mixprec::imatrix::format::legacy);
    }
  }

  std::vector<mm::llama_matrix*> matrices;  // every weight matrix, in the file's order of layers
  matrices.push_back(&m.token_embd);
  for (auto& l : m.layers)
    for (mm::llama_matrix* x : {&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down}) matrices.push_back(x);
  if (m.output) matrices.push_back(&*m.output);
  std::vector<measured_tensor> out;
  double total = 0.0;
  for (const auto* mat : matrices) total += static_cast<double>(mat->rows()) * static_cast<double>(mat->cols()) * static_cast<double>(o.types.size());
  progress bar("measure", total);
  for (mm::llama_matrix* mat : matrices) {
    measured_tensor t{mat->name(), mat->rows(), mat->cols(), true, {}, {}};
    const row_matrix w = mat->to_float();
    const auto it = sum2.find(mat->name());
    Eigen::VectorXf imp;  // none for an untied token_embd (a lookup, no product input)
    if (it != sum2.end()) imp = (it->second / count[mat->name()]).cast<float>();
    for (const quant_spec& spec : o.types) {
      if (!mixprec::fits(spec, w.cols())) {
        t.notes.push_back(mixprec::to_string(spec) + " left out: rows of " + std::to_string(w.cols()) + " values");
        continue;
      }
      measured_type r;
      r.spec = spec;
      mixprec::quantized_tensor q;
      try {
        q = imp.size() ? mixprec::quantize(w, spec, t.name, std::span<const float>(imp.data(), static_cast<std::size_t>(imp.size())))
                       : mixprec::quantize(w, spec, t.name);
      } catch (const error& e) {
        if (e.code() != errc::not_representable) throw;
        t.notes.push_back(mixprec::to_string(spec) + " left out: " + e.message());
        continue;
      }
      r.bytes = q.bytes();
      const Eigen::ArrayXXd d = (mixprec::dequantize(q).cast<double>() - w.cast<double>()).array();
      r.weight_error = (d * d).sum();
      r.sqnr_db = 10.0 * std::log10(w.cast<double>().squaredNorm() / std::max(r.weight_error, 1e-300));
      r.proxy = imp.size() ? ((d * d).rowwise() * imp.cast<double>().transpose().array()).sum() : r.weight_error;
      {
        // Only this tensor swapped for its quantized bytes (run as stored by the engine), then restored.
        mm::llama_matrix saved = std::move(*mat);
        *mat = spec.format == mixprec::format_id::fp32 ? mm::llama_matrix(t.name, w) : mm::llama_matrix(t.name, q);
        double kl = 0.0;
        try {
          mm::llama_engine probe(m, {}, {.threads = o.threads});
          for (std::size_t s = 0; s < streams.size(); ++s)
            kl += mean_kl(reference[s], log_probs(probe.logits(streams[s]))) * static_cast<double>(streams[s].size());
        } catch (...) {
          *mat = std::move(saved);
          throw;
        }
        *mat = std::move(saved);
        r.kl = kl / static_cast<double>(positions);
      }
      t.types.push_back(r);
      if (show_progress) bar.step(t.name + " " + mixprec::to_string(spec), static_cast<double>(w.size()));
    }
    out.push_back(std::move(t));
  }
  if (meta) {
    const mixprec::mapped_file mf(model_path);
    std::uint64_t ids_hash = 0xcbf29ce484222325ull;
    for (const auto& s : streams) ids_hash = fnv1a(std::as_bytes(std::span(s)), ids_hash);
    char model_hash[32], calib_hash[32];
    std::snprintf(model_hash, sizeof model_hash, "%016llx", static_cast<unsigned long long>(fnv1a(mf.data())));
    std::snprintf(calib_hash, sizeof calib_hash, "%016llx", static_cast<unsigned long long>(ids_hash));
    nlohmann::json types = nlohmann::json::array();
    for (const auto& s : o.types) types.push_back(mixprec::to_string(s));
    *meta = {{"model", {{"path", model_path}, {"fnv1a64", model_hash}, {"bytes", mf.data().size()}}},
             {"calibration",
              {{"source", !o.text.empty() ? "text" : !o.tokens.empty() ? "tokens" : "sample"},
               {"file", !o.text.empty() ? o.text : o.tokens},
               {"seed", o.seed},
               {"streams", streams.size()},
               {"positions", positions},
               {"ids_fnv1a64", calib_hash}}},
             {"types", types}};
  }
  return out;
}

// measure.json: {"format": "mixprec-measure", "version": 1, model, calibration, types, "tensors": [...]}.
[[nodiscard]] inline nlohmann::json measure_json(const std::vector<measured_tensor>& tensors, const nlohmann::json& meta) {
  nlohmann::json j = meta;
  j["format"] = "mixprec-measure";
  j["version"] = 1;
  j["tensors"] = nlohmann::json::array();
  for (const auto& t : tensors) {
    nlohmann::json r = nlohmann::json::array();
    for (const auto& m : t.types)
      r.push_back({{"spec", mixprec::to_string(m.spec)}, {"bytes", m.bytes}, {"kl", t.probed ? nlohmann::json(m.kl) : nlohmann::json(nullptr)},
                   {"proxy", m.proxy}, {"weight_error", m.weight_error}, {"sqnr_db", m.sqnr_db}});
    j["tensors"].push_back({{"name", t.name}, {"rows", t.rows}, {"cols", t.cols}, {"results", r}, {"notes", t.notes}});
  }
  return j;
}

// The sensitivity table of a measure.json by one metric ("kl", "proxy" or "weight_error"); a tensor
// without kl (token_embd of an untied model) takes its proxy scaled to the file's kl per unit of proxy.
[[nodiscard]] inline mixprec::sensitivity_table measured_table(const std::string& path, const std::string& metric) {
  if (metric != "kl" && metric != "proxy" && metric != "weight_error")
    throw error(errc::invalid_argument, "metric '" + metric + "': expected kl, proxy or weight_error");
  const mixprec::mapped_file f(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(reinterpret_cast<const char*>(f.data().data()), reinterpret_cast<const char*>(f.data().data()) + f.data().size());
  } catch (const nlohmann::json::exception& e) {
    throw error(errc::parse_error, "measure file '" + path + "': " + e.what());
  }
  if (!j.is_object() || j.value("format", std::string()) != "mixprec-measure")
    throw error(errc::parse_error, "'" + path + "' is not a measure file (see `mixprec measure`)");
  if (j.value("version", 0) != 1) throw error(errc::unsupported, "measure file '" + path + "': version " + j.value("version", nlohmann::json()).dump());
  mixprec::sensitivity_table t;
  try {
    double kl_sum = 0.0, proxy_sum = 0.0;
    for (const auto& x : j.at("tensors"))
      for (const auto& r : x.at("results"))
        if (!r.at("kl").is_null()) kl_sum += r.at("kl").get<double>(), proxy_sum += r.at("proxy").get<double>();
    const double per_proxy = proxy_sum > 0.0 ? kl_sum / proxy_sum : 1.0;
    for (const auto& x : j.at("tensors")) {
      const auto name = x.at("name").get<std::string>();
      const auto rows = mixprec::detail::json_integer<index_t>(x.at("rows"), "measure: rows");
      const auto cols = mixprec::detail::json_integer<index_t>(x.at("cols"), "measure: cols");
      for (const auto& r : x.at("results")) {
        double loss = 0.0;
        if (metric == "kl")
          loss = r.at("kl").is_null() ? r.at("proxy").get<double>() * per_proxy : r.at("kl").get<double>();
        else
          loss = r.at(metric).get<double>();
        t.add(name, rows, cols, mixprec::parse_spec(r.at("spec").get<std::string>()), loss);
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw error(errc::parse_error, "measure file '" + path + "': " + e.what());
  }
  return t;
}

}  // namespace mixprec_cli
