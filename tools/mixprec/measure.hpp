// `mixprec measure`: what quantizing each weight matrix of a LLaMA-family GGUF costs the model's output,
// measured with the library's engine (models/llama.hpp) on calibration tokens, per tensor and
// candidate type:
//   kl            mean over the calibration positions of KL(P_fp || P_q), nats: the model run with only
//                 this tensor quantized to this type (its one-tensor sensitivity S(i), with KL as the
//                 metric) against the model as stored. Each probe restarts from the residual stream
//                 the full-precision pass cached at the tensor's layer (the classifier: the head only).
//   gram_proxy    |(W - Q(W)) X^T|_F^2 per position = sum_r d_r G d_r^T / positions, G = X^T X the Gram
//                 matrix of the tensor's inputs X over the calibration positions (the output error of
//                 GPTQ's objective; computed through X; for the embedding lookup X is one-hot, G the
//                 token counts)
//   proxy         sum_ij imp_j (W - Q(W))_ij^2 with imp_j the mean x_j^2 of the tensor's inputs (the
//                 imatrix: G's diagonal, per position; the type searched with imp, as llama-quantize
//                 --imatrix does; the untied embedding lookup has no imatrix: its weight_error)
//   weight_error  |W - Q(W)|_F^2, and sqnr_db
// The same full-precision pass writes the importance matrix in llama.cpp's GGUF imatrix format (and
// optionally the legacy .dat), which llama-quantize reads. `mixprec plan --measured measure.json`
// plans from the file without touching the model again.
//
// Calibration (reproducible: the streams, their seed, an FNV-1a hash of the ids and the BOS are in the file):
//   --text FILE       the text, tokenized with the GGUF's own vocabulary, cut into streams of --ctx
//                     tokens, each the vocabulary's BOS and --ctx - 1 text tokens when the vocabulary
//                     adds BOS (tokenizer.ggml.add_bos_token), else --ctx text tokens (llama.cpp's
//                     imatrix and perplexity tools do the same)
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
};

struct measured_type {
  quant_spec spec;
  std::uint64_t bytes = 0;
  double kl = 0.0, proxy = 0.0, gram_proxy = 0.0, weight_error = 0.0, sqnr_db = 0.0;
  mixprec::interval kl_ci95;  // bootstrap over the calibration streams (kl_interval)
};

// The 95 % bootstrap interval of a one-tensor KL (the mean over positions) from its per-stream sums:
// streams resampled 1,000 times (sensitivity/metrics.hpp bootstrap_ratio_interval), seeded by the tensor's
// name and type, so that a shard measures the interval one process does.
[[nodiscard]] inline mixprec::interval kl_interval(const std::vector<double>& stream_kl, const std::vector<double>& stream_positions,
                                                   const std::string& name, const quant_spec& spec) {
  const std::string key = name + "|" + mixprec::to_string(spec);
  const mixprec::interval ci =
      mixprec::bootstrap_ratio_interval(stream_kl, stream_positions, 1000, fnv1a(std::as_bytes(std::span(key.data(), key.size()))));
  return {std::max(0.0, ci.low), std::max(0.0, ci.high)};
}
struct measured_tensor {
  std::string name;
  index_t rows = 0, cols = 0;
  std::vector<measured_type> types;
  std::size_t index = 0;  // position among the model's matrices (the order of measure.json)
  std::vector<std::string> notes;
};

// The full-precision model's next-token distributions over one stream, kept for KL(P || Q) against
// any probe: P (positions x vocab, row-major) and sum_v P log P per position.
struct reference_distribution {
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> p;
  Eigen::VectorXd p_log_p;
};

// log(sum_v exp(l_v)) of one row of logits, in double.
[[nodiscard]] inline double log_sum_exp(const Eigen::Ref<const Eigen::RowVectorXf>& l) {
  const Eigen::ArrayXd x = l.transpose().cast<double>().array();
  const double m = x.maxCoeff();
  return m + std::log((x - m).exp().sum());
}

[[nodiscard]] inline reference_distribution reference_of(const row_matrix& logits) {
  reference_distribution r{decltype(reference_distribution::p)(logits.rows(), logits.cols()), Eigen::VectorXd(logits.rows())};
  for (index_t t = 0; t < logits.rows(); ++t) {
    const Eigen::ArrayXd lp = logits.row(t).transpose().cast<double>().array() - log_sum_exp(logits.row(t));
    r.p.row(t) = lp.exp().matrix().transpose();
    r.p_log_p[t] = (lp.exp() * lp).sum();
  }
  return r;
}

// Sum over positions of KL(P || Q) in nats, Q = softmax(logits): per position
// sum_v P log P - sum_v P l_v + logsumexp(l) (sum_v P = 1), in double; rows over `threads` workers,
// summed in position order (the result does not depend on the thread count).
[[nodiscard]] inline double kl_sum(const reference_distribution& ref, const row_matrix& logits, unsigned threads) {
  Eigen::VectorXd per(logits.rows());
  mixprec::detail::parallel_for(static_cast<std::size_t>(logits.rows()), mixprec::detail::worker_count(threads, static_cast<std::size_t>(logits.rows())),
                                [&](std::size_t i, unsigned) {
                                  const auto t = static_cast<index_t>(i);
                                  per[t] = ref.p_log_p[t] - ref.p.row(t).dot(logits.row(t).cast<double>()) + log_sum_exp(logits.row(t));
                                });
  return per.sum();
}

// The calibration of a measurement: its streams and the BOS they start with.
struct calibration_set {
  std::vector<std::vector<int>> streams;
  mixprec::models::vocab_bos bos;  // the model's vocabulary's (mixprec::models::bos_of)
  bool bos_first = false;          // measure put bos.id first in every stream (--sample; --text when bos.add)
};

// The calibration streams of o for model m, read from GGUF g (see the banner). The BOS is the
// vocabulary's (tokenizer.ggml.bos_token_id, else llama.cpp's default for tokenizer.ggml.model), never a
// constant: --text puts it first in every stream when the vocabulary adds one
// (tokenizer.ggml.add_bos_token), as llama.cpp's imatrix and perplexity tools do, else cuts streams of
// --ctx text tokens; --sample starts every stream with it (errc::unsupported for a vocabulary without
// one); --tokens takes the ids as given.
[[nodiscard]] inline calibration_set calibration_streams(const mixprec::gguf::file& g, const mixprec::models::llama_model& m,
                                                         const measure_options& o) {
  namespace mm = mixprec::models;
  const int sources = (o.text.empty() ? 0 : 1) + (o.tokens.empty() ? 0 : 1) + (o.sample_streams > 0 ? 1 : 0);
  if (sources != 1) throw error(errc::invalid_argument, "measure: give exactly one of --text, --tokens, --sample N:LEN");
  calibration_set c;
  c.bos = mm::bos_of(g, m.config.vocab_size);
  if (!o.text.empty()) {
    const auto tok = mm::spm_tokenizer::from_gguf(g);  // errc::unsupported for a vocabulary it cannot tokenize
    const mixprec::mapped_file f(o.text);
    const std::string text(reinterpret_cast<const char*>(f.data().data()), f.data().size());
    const auto ids = tok.encode(text, {.add_bos = false});  // the vocabulary's add_space_prefix
    c.bos_first = c.bos.add && c.bos.id >= 0;
    c.streams = mm::chunk_tokens(ids, o.ctx, c.bos_first ? c.bos.id : -1, static_cast<std::size_t>(o.max_streams));
    if (c.streams.empty())  // a valid text, too short for the request: a request problem (exit 2), named by its option
      throw error(errc::invalid_argument, "measure: --text '" + o.text + "' is " + std::to_string(ids.size()) +
                                              " tokens, fewer than one stream of --ctx " + std::to_string(o.ctx) +
                                              (c.bos_first ? " (the BOS and " + std::to_string(o.ctx - 1) + " text tokens)" : std::string()) +
                                              ": give a longer text or a smaller --ctx");
  } else if (!o.tokens.empty()) {
    c.streams = mm::read_token_streams(o.tokens, mm::token_file_format::text, m.config.vocab_size, c.bos.id);
    for (auto& s : c.streams)
      if (static_cast<int>(s.size()) > o.ctx) s.resize(static_cast<std::size_t>(o.ctx));
    if (static_cast<int>(c.streams.size()) > o.max_streams) c.streams.resize(static_cast<std::size_t>(o.max_streams));
  } else {
    if (c.bos.id < 0)
      throw error(errc::unsupported, "measure: the vocabulary of '" + g.path() + "' (tokenizer.ggml.model '" + c.bos.tokenizer +
                                         "') has no BOS to start sampled streams with: give --text or --tokens");
    mm::llama_engine e(m);
    c.streams = mm::sample_streams(e, {.streams = o.sample_streams, .length = o.sample_length, .seed = o.seed, .first = c.bos.id});
    c.bos_first = true;
  }
  if (c.streams.empty()) throw error(errc::empty_input, "measure: no calibration tokens");
  return c;
}

// The calibration's identity: FNV-1a over the ids of every stream, as 16 hex digits.
[[nodiscard]] inline std::string calibration_hash(const std::vector<std::vector<int>>& streams) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const auto& s : streams) h = fnv1a(std::as_bytes(std::span(s)), h);
  char text[32];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
  return text;
}

// Measures every tensor x type (see the banner); writes the imatrix files the options name. With
// o.shard_count > 1 only the tensors k (in the model's order) with k % shard_count == shard_index are
// probed; every shard runs the same full-precision pass.
[[nodiscard]] inline std::vector<measured_tensor> measure_model(const std::string& model_path, const measure_options& o,
                                                                 nlohmann::json* meta = nullptr, bool show_progress = true) {
  namespace mm = mixprec::models;
  if (o.types.empty()) throw error(errc::invalid_argument, "measure: no types");
  if (o.shard_count < 1 || o.shard_index < 0 || o.shard_index >= o.shard_count)
    throw error(errc::invalid_argument, "measure: shard " + std::to_string(o.shard_index) + "/" + std::to_string(o.shard_count));
  const auto g = mixprec::gguf::file::open(model_path);
  mm::llama_model m = mm::load_gguf(g);
  const calibration_set calib = calibration_streams(g, m, o);
  const auto& streams = calib.streams;
  std::size_t positions = 0;
  for (const auto& s : streams) positions += s.size();
  const int n_layers = m.config.n_layers;

  // The full-precision pass: reference log-probabilities, the residual stream entering every layer
  // (probes restart there), and sum x^2 / token count per matrix input (the imatrix).
  std::map<std::string, Eigen::VectorXd> sum2;
  std::map<std::string, double> count;
  std::vector<reference_distribution> reference;
  std::vector<std::vector<row_matrix>> entering(streams.size());  // [stream][layer 0..n_layers]
  {
    mm::llama_engine fp(m, {}, {.threads = o.threads});
    fp.observe([&](const std::string& name, const float* x, index_t n) {
      auto& s = sum2[name];
      if (s.size() == 0) s = Eigen::VectorXd::Zero(n);
      s.array() += Eigen::Map<const Eigen::VectorXf>(x, n).cast<double>().array().square();
      count[name] += 1.0;
    });
    for (std::size_t s = 0; s < streams.size(); ++s) {
      row_matrix x = fp.embed(streams[s]);
      for (int l = 0; l < n_layers; ++l) {
        entering[s].push_back(x);
        fp.run_layer(l, x);
      }
      entering[s].push_back(x);
      reference.push_back(reference_of(fp.head(x)));
    }
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

  // Every weight matrix in the file's order of layers, with the layer its probe restarts at (0 for the
  // embedding lookup, n_layers for the classifier: the head only).
  struct probed_matrix {
    mm::llama_matrix* matrix;
    int layer;
  };
  std::vector<probed_matrix> matrices{{&m.token_embd, 0}};
  for (int l = 0; l < n_layers; ++l) {
    auto& w = m.layers[static_cast<std::size_t>(l)];
    for (mm::llama_matrix* x : {&w.wq, &w.wk, &w.wv, &w.wo, &w.gate, &w.up, &w.down}) matrices.push_back({x, l});
  }
  if (m.output) matrices.push_back({&*m.output, n_layers});
  const bool tied = !m.output;

  std::vector<measured_tensor> out;
  double total = 0.0;
  for (std::size_t k = 0; k < matrices.size(); ++k)
    if (static_cast<int>(k % static_cast<std::size_t>(o.shard_count)) == o.shard_index)
      total += static_cast<double>(matrices[k].matrix->rows()) * static_cast<double>(matrices[k].matrix->cols()) * static_cast<double>(o.types.size());
  progress bar("measure", total);
  for (std::size_t k = 0; k < matrices.size(); ++k) {
    if (static_cast<int>(k % static_cast<std::size_t>(o.shard_count)) != o.shard_index) continue;
    mm::llama_matrix* mat = matrices[k].matrix;
    const int first_layer = matrices[k].layer;
    measured_tensor t{mat->name(), mat->rows(), mat->cols(), {}, k, {}};
    const row_matrix w = mat->to_float();
    const auto it = sum2.find(mat->name());
    Eigen::VectorXf imp;  // none for an untied token_embd (a lookup, no product input)
    if (it != sum2.end()) imp = (it->second / count[mat->name()]).cast<float>();
    // The matrix's inputs X (positions x cols) over the calibration, for |(W - Q(W)) X^T|^2 = sum over rows
    // of d_r G d_r^T with G = X^T X the Gram matrix (computed through X: rows x cols x positions per type,
    // not cols^2 of memory and rows x cols^2 of work). The embedding lookup's x is one-hot: G = diag(token
    // counts), plus the classifier's inputs when the embedding is tied.
    row_matrix inputs(0, w.cols());
    Eigen::VectorXd lookups;
    if (mat == &m.token_embd) {
      lookups = Eigen::VectorXd::Zero(w.rows());
      for (const auto& s : streams)
        for (int id : s) lookups[id] += 1.0;
    }
    if (mat != &m.token_embd || tied) {
      const int layer = mat == &m.token_embd ? n_layers : first_layer;
      inputs.resize(static_cast<index_t>(positions), w.cols());
      index_t row = 0;
      mm::llama_engine fp(m, {}, {.threads = o.threads});
      fp.observe([&](const std::string& name, const float* x, index_t n) {
        if (name == t.name) inputs.row(row++) = Eigen::Map<const Eigen::RowVectorXf>(x, n);
      });
      for (std::size_t s = 0; s < streams.size(); ++s) {
        row_matrix x = entering[s][static_cast<std::size_t>(layer)];
        if (layer < n_layers) fp.run_layer(layer, x);
        else (void)fp.head(x);
      }
    }
    // One candidate measured (nullopt, with a note, when the type cannot hold the tensor).
    auto measure_type = [&](const quant_spec& spec) -> std::optional<measured_type> {
      if (!mixprec::fits(spec, w.cols())) {
        t.notes.push_back(mixprec::to_string(spec) + " left out: rows of " + std::to_string(w.cols()) + " values");
        return std::nullopt;
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
        return std::nullopt;
      }
      r.bytes = q.bytes();
      const Eigen::MatrixXd d = mixprec::dequantize(q).cast<double>() - w.cast<double>();
      const Eigen::ArrayXXd d2 = d.array().square();
      r.weight_error = d2.sum();
      r.sqnr_db = 10.0 * std::log10(w.cast<double>().squaredNorm() / std::max(r.weight_error, 1e-300));
      r.proxy = imp.size() ? (d2.rowwise() * imp.cast<double>().transpose().array()).sum() : r.weight_error;
      // |(W - Q(W)) X^T|^2 per position (FP32 products, summed in double).
      const row_matrix error_out = inputs * d.cast<float>().transpose();
      double gram_sum = error_out.cast<double>().squaredNorm();
      if (lookups.size()) gram_sum += (d2.rowwise().sum().matrix().cwiseProduct(lookups)).sum();
      r.gram_proxy = gram_sum / static_cast<double>(positions);
      {
        // Only this tensor swapped for its quantized bytes (run as stored by the engine), then restored;
        // the probe restarts from the cached residual stream entering the tensor's layer.
        mm::llama_matrix saved = std::move(*mat);
        *mat = spec.format == mixprec::format_id::fp32 ? mm::llama_matrix(t.name, w) : mm::llama_matrix(t.name, q);
        double kl = 0.0;
        std::vector<double> stream_kl, stream_positions;
        try {
          mm::llama_engine probe(m, {}, {.threads = o.threads});
          for (std::size_t s = 0; s < streams.size(); ++s) {
            row_matrix x = first_layer == 0 && mat == &m.token_embd ? probe.embed(streams[s]) : entering[s][static_cast<std::size_t>(first_layer)];
            for (int l = first_layer; l < n_layers; ++l) probe.run_layer(l, x);
            stream_kl.push_back(kl_sum(reference[s], probe.head(x), o.threads));
            stream_positions.push_back(static_cast<double>(streams[s].size()));
            kl += stream_kl.back();
          }
        } catch (...) {
          *mat = std::move(saved);
          throw;
        }
        *mat = std::move(saved);
        r.kl = std::max(0.0, kl / static_cast<double>(positions));  // >= 0 but for rounding
        r.kl_ci95 = kl_interval(stream_kl, stream_positions, t.name, spec);
      }
      if (show_progress) bar.step(t.name + " " + mixprec::to_string(spec), static_cast<double>(w.size()));
      return r;
    };
    for (const quant_spec& spec : o.types)
      if (auto r = measure_type(spec)) t.types.push_back(*r);
    if (t.types.empty()) {  // as `mixprec analyze`: the fallback types that fit, else the first last resort
      std::string chosen;
      for (const quant_spec& spec : fallback_types())
        if (auto r = measure_type(spec)) t.types.push_back(*r), chosen += (chosen.empty() ? "" : ", ") + mixprec::to_string(spec);
      for (const quant_spec& spec : last_resort_types())
        if (t.types.empty())
          if (auto r = measure_type(spec)) t.types.push_back(*r), chosen = mixprec::to_string(spec);
      t.notes.push_back("no requested type can represent it: measured the fallback types " + chosen);
    }
    out.push_back(std::move(t));
  }
  if (meta) {
    const mixprec::mapped_file mf(model_path);
    nlohmann::json model = model_identity(model_file(model_path).tensors(), model_path);
    model["fnv1a64"] = hex16(fnv1a(mf.data()));
    model["bytes"] = mf.data().size();
    model["matrices"] = matrices.size();
    nlohmann::json types = nlohmann::json::array();
    for (const auto& s : o.types) types.push_back(mixprec::to_string(s));
    *meta = {{"model", model},
             {"calibration",
              {{"source", !o.text.empty() ? "text" : !o.tokens.empty() ? "tokens" : "sample"},
               {"file", !o.text.empty() ? o.text : o.tokens},
               {"seed", o.seed},
               {"streams", streams.size()},
               {"positions", positions},
               {"ids_fnv1a64", calibration_hash(streams)},
               {"bos", calib.bos.id >= 0 ? nlohmann::json(calib.bos.id) : nlohmann::json(nullptr)},
               {"bos_first", calib.bos_first}}},
             {"types", types}};
    if (o.shard_count > 1) (*meta)["shard"] = {{"index", o.shard_index}, {"count", o.shard_count}};
  }
  return out;
}

// measure.json: {"format": "mixprec-measure", "version": 1, model, calibration, types, [shard],
// "tensors": [{name, index, rows, cols, results: [{spec, bytes, kl, kl_ci95 (kl_interval: [low, high]),
// proxy, gram_proxy, weight_error, sqnr_db}], notes}]}. calibration: {source, file, seed, streams, positions, ids_fnv1a64, bos (the
// vocabulary's BOS id, null when it has none), bos_first (measure put it first in every stream)}.
[[nodiscard]] inline nlohmann::json measure_json(const std::vector<measured_tensor>& tensors, const nlohmann::json& meta) {
  nlohmann::json j = meta;
  j["format"] = "mixprec-measure";
  j["version"] = 1;
  j["tensors"] = nlohmann::json::array();
  for (const auto& t : tensors) {
    nlohmann::json r = nlohmann::json::array();
    for (const auto& m : t.types)
      r.push_back({{"spec", mixprec::to_string(m.spec)}, {"bytes", m.bytes}, {"kl", m.kl}, {"kl_ci95", {m.kl_ci95.low, m.kl_ci95.high}},
                   {"proxy", m.proxy}, {"gram_proxy", m.gram_proxy}, {"weight_error", m.weight_error}, {"sqnr_db", m.sqnr_db}});
    j["tensors"].push_back({{"name", t.name}, {"index", t.index}, {"rows", t.rows}, {"cols", t.cols}, {"results", r}, {"notes", t.notes}});
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
      for (const char* key : {"model", "calibration", "types"})
        if (p.at(key) != first.at(key)) throw error(errc::invalid_argument, what + " measured another " + key + " than '" + names[0] + "'");
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
// interval, a risk-aware loss where few calibration streams leave a KL uncertain; "proxy", "gram_proxy"
// or "weight_error"). A partial file (--shard) is refused: merge the shards first.
// `only`: the tensors to take (null: all), e.g. those the file stores in float (measure also measures
// tensors stored quantized, which plan keeps as they are).
[[nodiscard]] inline mixprec::sensitivity_table measured_table(const nlohmann::json& j, const std::string& path, const std::string& metric,
                                                               const std::set<std::string>* only = nullptr) {
  if (metric != "kl" && metric != "kl_upper" && metric != "proxy" && metric != "gram_proxy" && metric != "weight_error")
    throw error(errc::invalid_argument, "metric '" + metric + "': expected kl, kl_upper, proxy, gram_proxy or weight_error");
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
          throw error(errc::invalid_argument, "measure file '" + path + "' has no kl_ci95 (measured before mixprec recorded intervals): measure "
                                              "again for --metric kl_upper");
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
