// The whole method on a real model: Fashion-MNIST, the CNN of cnn.hpp, and mixprec end to end.
//   1. FP32, all-INT8 and all-INT4 accuracy and size;
//   2. per-layer sensitivity: accuracy drop with only that layer quantized (INT4, INT8, ...), SQNR,
//      Hutchinson's Hessian trace and the HAWQ score, the accuracy-drop classes (plan/drop_classes.hpp), and how well the cheap metrics
//      rank the layers (Spearman / Kendall against the drop);
//   3. threshold, greedy and knapsack plans at one byte budget, and the knapsack Pareto frontier;
//   4. precision-aware training (fake quantization, STE or learned step size) of all-INT4 and of the
//      knapsack plan;
//   5. the strategy table.
// Sensitivities and plans are measured on a validation split held out of the training images; every
// accuracy in the strategy table and the frontier is on the test set.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <mixprec/io/idx.hpp>
#include <mixprec/plan/plan.hpp>
#include <mixprec/qat/fake_quant.hpp>
#include <mixprec/quantize/quantize.hpp>
#include <mixprec/sensitivity/classify.hpp>
#include <mixprec/sensitivity/hessian.hpp>
#include <mixprec/sensitivity/metrics.hpp>
#include <mixprec/sensitivity/rank.hpp>

#include "cnn.hpp"

namespace fashion {

using spec_map = std::map<std::string, mixprec::quant_spec>;  // layers not named stay FP32

struct dataset {
  row_matrix train_x, val_x, test_x;
  std::vector<std::uint8_t> train_y, val_y, test_y;
};

// Fashion-MNIST from `dir` (Debian's dataset-fashion-mnist installs it in
// /usr/share/datasets/fashion-mnist): the first train_n training images for training, the last val_n
// for validation (disjoint), and the first test_n test images (0: all).
[[nodiscard]] inline dataset load_dataset(const std::string& dir, index_t train_n, index_t val_n, index_t test_n) {
  namespace fs = std::filesystem;
  const std::string train_images = dir + "/train-images-idx3-ubyte.gz";
  if (!fs::exists(train_images))
    throw mixprec::error(mixprec::errc::io_error,
                         "Fashion-MNIST not found in '" + dir +
                             "': install it with `apt-get install dataset-fashion-mnist` (Debian) or pass --data DIR");
  const row_matrix x = mixprec::idx::load_images(train_images);
  const auto y = mixprec::idx::load_labels(dir + "/train-labels-idx1-ubyte.gz");
  const row_matrix tx = mixprec::idx::load_images(dir + "/t10k-images-idx3-ubyte.gz");
  const auto ty = mixprec::idx::load_labels(dir + "/t10k-labels-idx1-ubyte.gz");
  if (static_cast<std::size_t>(x.rows()) != y.size() || static_cast<std::size_t>(tx.rows()) != ty.size() ||
      x.cols() != 784 || tx.cols() != 784)
    throw mixprec::error(mixprec::errc::shape_mismatch, "Fashion-MNIST in '" + dir + "': image and label counts or sizes disagree");
  if (train_n <= 0 || val_n <= 0 || train_n + val_n > x.rows())
    throw mixprec::error(mixprec::errc::invalid_argument, "need 0 < train + validation <= " + std::to_string(x.rows()) + " images");
  if (test_n <= 0 || test_n > tx.rows()) test_n = tx.rows();
  dataset d;
  d.train_x = x.topRows(train_n);
  d.train_y.assign(y.begin(), y.begin() + train_n);
  d.val_x = x.bottomRows(val_n);
  d.val_y.assign(y.end() - val_n, y.end());
  d.test_x = tx.topRows(test_n);
  d.test_y.assign(ty.begin(), ty.begin() + test_n);
  return d;
}

// The network with the named layers quantized and dequantized back (what the quantized model computes),
// and the exact bytes of its six weight matrices (FP32 for layers not in specs; biases not counted).
struct quantized_network {
  parameters p;
  std::size_t bytes = 0;
};

[[nodiscard]] inline quantized_network quantize_network(const parameters& p, const spec_map& specs) {
  quantized_network q{p, 0};
  for (std::size_t l = 0; l < n_layers; ++l) {
    const auto it = specs.find(layer_names[l]);
    if (it == specs.end()) {
      q.bytes += sizeof(float) * static_cast<std::size_t>(p.w[l].size());
      continue;
    }
    const mixprec::quantized_tensor t = mixprec::quantize(p.w[l], it->second, layer_names[l]);
    q.bytes += t.bytes();
    q.p.w[l] = mixprec::dequantize(t);
  }
  return q;
}

[[nodiscard]] inline spec_map uniform(const mixprec::quant_spec& s) {
  spec_map m;
  for (const auto& n : layer_names) m[n] = s;
  return m;
}

[[nodiscard]] inline spec_map specs_of(const mixprec::plan& p) {
  spec_map m;
  for (const auto& e : p.entries) m[e.layer] = e.spec;
  return m;
}

[[nodiscard]] inline std::vector<mixprec::layer_shape> layer_shapes(const parameters& p) {
  std::vector<mixprec::layer_shape> out;
  for (std::size_t l = 0; l < n_layers; ++l) out.push_back({layer_names[l], p.w[l].rows(), p.w[l].cols()});
  return out;
}

struct layer_result {
  std::string name, kind;
  index_t rows = 0, cols = 0;
  // Per candidate (spec text), with only this layer quantized, on the validation split:
  std::map<std::string, double> drop;  // accuracy drop (fraction)
  std::map<std::string, double> kl;    // mean KL(FP32 outputs || quantized outputs), nats
  double drop_int4 = 0.0, drop_int8 = 0.0, kl_int4 = 0.0, kl_int8 = 0.0;
  double sqnr_int4_db = 0.0, sqnr_int8_db = 0.0;
  double hessian_trace = 0.0, hessian_trace_se = 0.0;
  int hessian_probes = 0;
  double hawq_int4 = 0.0;  // Tr(H)/n * ||Q(W) - W||^2
  mixprec::sensitivity_class cls = mixprec::sensitivity_class::insensitive;
  mixprec::quant_spec suggestion;
};

// A quantized network measured on the test set against the FP32 network.
struct measured {
  std::size_t bytes = 0;
  double avg_bits = 0.0;
  double accuracy = 0.0;
  double kl = 0.0;            // mean KL(FP32 || this) over the test images
  double predicted_kl = 0.0;  // sum of the layers' validation KLs at their specs (the plans' loss)
  spec_map specs;
};

struct strategy_result : measured {
  std::string name;
};

using pareto_result = measured;

struct options {
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  std::string out_dir = "fashion_out";
  bool quick = false;           // small subsets (the sizes below) and fewer probes and frontier points
  index_t quick_train = 4000, quick_val = 1000, quick_test = 2000;
  std::string budget = "int4";  // "int4" / "int8": the size of that uniform model; or bits per weight / bytes
  std::uint64_t seed = 1;
  int epochs = 4;
  int qat_steps = 300;
  float qat_lr = 2e-4f;
  bool lsq = false;             // learned step size instead of STE with re-calibrated scales
  int hessian_images = 256;
  int pareto_points = 64;
  int threads = default_threads();
  bool retrain = false;         // ignore the cached weights
  architecture arch;            // the network's widths (tests use a narrower one)
};

struct results {
  options opt;
  index_t train_n = 0, val_n = 0, test_n = 0;
  index_t weights = 0;
  double train_seconds = 0.0;  // 0 when the weights came from the cache
  std::string weights_file;
  bool from_cache = false;
  double fp32_val = 0.0;
  std::vector<std::string> candidates;  // spec texts
  std::vector<layer_result> layers;
  std::map<std::string, std::optional<double>> correlations;  // "spearman(drop_int4, -sqnr_int4)" -> rho
  double budget_bytes = 0.0;
  std::vector<strategy_result> strategies;
  std::vector<pareto_result> pareto;
  std::string qat_method;
  std::map<std::string, double> seconds;  // per stage
};

// Progress lines (stderr by default).
struct progress_log {
  std::function<void(const std::string&)> line = [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); };
};

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Fine-tunes with the layers in `specs` fake-quantized; returns the quantized network (weights from the
// fine-tuned latent weights, quantized by the same specs, or by the learned steps with o.lsq).
[[nodiscard]] inline quantized_network precision_aware_training(parameters p, const spec_map& specs, const dataset& d,
                                                                 const options& o, const progress_log& log, const std::string& label) {
  std::array<std::optional<mixprec::fake_quant>, n_layers> ste;
  std::array<std::optional<mixprec::lsq_quantizer>, n_layers> lsq;
  std::array<row_matrix, n_layers> step_m, step_v;  // Adam moments of the LSQ steps
  for (std::size_t l = 0; l < n_layers; ++l) {
    const auto it = specs.find(layer_names[l]);
    if (it == specs.end()) continue;
    const mixprec::quant_spec& s = it->second;
    if (o.lsq && mixprec::is_integer(s.format) && s.granularity != mixprec::granularity_id::per_tensor) {
      lsq.at(l).emplace(p.w[l], mixprec::bits_of(s.format),
                        s.granularity == mixprec::granularity_id::per_group ? s.group_size : 0);
      step_m[l].setZero(lsq[l]->steps().rows(), lsq[l]->steps().cols());
      step_v[l] = step_m[l];
    } else {
      ste.at(l).emplace(s);
    }
  }
  adam opt(p);
  std::mt19937_64 gen(o.seed + 7);
  std::vector<index_t> order(static_cast<std::size_t>(d.train_x.rows()));
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<index_t>(i);
  std::shuffle(order.begin(), order.end(), gen);
  const index_t batch = std::min<index_t>(128, d.train_x.rows());
  row_matrix x;
  std::vector<std::uint8_t> y;
  gradients g;
  parameters q = p;
  std::size_t cursor = 0;
  const auto t0 = std::chrono::steady_clock::now();
  double loss_sum = 0.0;
  int loss_n = 0;
  for (int step = 0; step < o.qat_steps; ++step) {
    if (cursor + static_cast<std::size_t>(batch) > order.size()) {
      std::shuffle(order.begin(), order.end(), gen);
      cursor = 0;
    }
    gather_batch(d.train_x, d.train_y, std::span<const index_t>(order).subspan(cursor, static_cast<std::size_t>(batch)), x, y);
    cursor += static_cast<std::size_t>(batch);
    for (std::size_t l = 0; l < n_layers; ++l) {
      if (ste[l]) q.w[l] = ste[l]->forward(p.w[l]);
      else if (lsq[l]) q.w[l] = lsq[l]->forward(p.w[l]);
      else q.w[l] = p.w[l];
      q.b[l] = p.b[l];
    }
    loss_sum += loss_and_gradient(q, x, y, g, o.threads);
    ++loss_n;
    for (std::size_t l = 0; l < n_layers; ++l) {
      if (ste[l]) {
        g.w[l] = ste[l]->backward(g.w[l]);
      } else if (lsq[l]) {
        auto lg = lsq[l]->backward(p.w[l], g.w[l]);
        g.w[l] = std::move(lg.weight);
        // Adam on the steps, at the peak learning rate. Steps stay at or above FP16's smallest normal
        // (2^-14), so that exporting them as FP16 scales cannot round one to zero.
        adam_update(lsq[l]->steps(), lg.steps, step_m[l], step_v[l], step + 1, adam_hyper{.lr = o.qat_lr});
        lsq[l]->steps() = lsq[l]->steps().cwiseMax(0x1p-14f);
      }
    }
    opt.hyper.lr = cosine_lr(o.qat_lr, step, o.qat_steps);
    opt.step(p, g);
    if ((step + 1) % 50 == 0 || step + 1 == o.qat_steps) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "qat %s: step %d/%d, mean loss %.4f, %.1f s", label.c_str(), step + 1, o.qat_steps,
                    loss_sum / loss_n, seconds_since(t0));
      log.line(buf);
      loss_sum = 0.0;
      loss_n = 0;
    }
  }
  // The fine-tuned weights quantized by the specs; layers with learned steps use those instead.
  quantized_network out = quantize_network(p, specs);
  for (std::size_t l = 0; l < n_layers; ++l) {
    if (!lsq[l]) continue;
    const mixprec::quant_spec& s = specs.at(layer_names[l]);
    const auto t = lsq[l]->to_quantized(p.w[l], s.scales);
    out.bytes = out.bytes - mixprec::quantized_bytes(s, p.w[l].rows(), p.w[l].cols()) + t.bytes();
    out.p.w[l] = mixprec::dequantize(t);
  }
  return out;
}

// Trains (or loads the cached weights of) the network for these options.
[[nodiscard]] inline parameters trained_network(const dataset& d, const options& o, results& r, const progress_log& log) {
  namespace fs = std::filesystem;
  fs::create_directories(o.out_dir);
  const architecture& arch = o.arch;
  r.weights_file = o.out_dir + "/cnn-seed" + std::to_string(o.seed) + "-e" + std::to_string(o.epochs) + "-n" +
                   std::to_string(d.train_x.rows()) + ".bin";
  if (!o.retrain && fs::exists(r.weights_file)) {
    try {
      parameters p = load(r.weights_file);
      if (p.arch == arch) {
        r.from_cache = true;
        log.line("weights: loaded the cached " + r.weights_file + " (--retrain to train again)");
        return p;
      }
      log.line("weights: the cached " + r.weights_file + " is for another architecture; training");
    } catch (const mixprec::error& e) {
      log.line(std::string("weights: ignoring the cache: ") + e.what());
    }
  }
  parameters p = init_parameters(arch, o.seed);
  train_options t;
  t.epochs = o.epochs;
  t.seed = o.seed;
  t.threads = o.threads;
  const auto t0 = std::chrono::steady_clock::now();
  double loss_sum = 0.0;
  index_t loss_n = 0;
  train(p, d.train_x, d.train_y, t, [&](int e, index_t s, index_t steps, double loss) {
    loss_sum += loss;
    ++loss_n;
    if (s + 1 == steps || (s + 1) % 100 == 0) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "train: epoch %d/%d, step %ld/%ld, mean loss %.4f, %.0f s", e + 1, o.epochs,
                    static_cast<long>(s + 1), static_cast<long>(steps), loss_sum / static_cast<double>(loss_n), seconds_since(t0));
      log.line(buf);
      loss_sum = 0.0;
      loss_n = 0;
    }
  });
  r.train_seconds = seconds_since(t0);
  save(p, r.weights_file);
  log.line("weights: trained in " + std::to_string(static_cast<int>(r.train_seconds)) + " s, cached in " + r.weights_file);
  return p;
}

// Runs the whole pipeline (see the banner).
[[nodiscard]] inline results run_pipeline(const options& o, const progress_log& log = {}) {
  results r;
  r.opt = o;
  auto stage = std::chrono::steady_clock::now();
  auto lap = [&](const std::string& name) {
    r.seconds[name] = seconds_since(stage);
    stage = std::chrono::steady_clock::now();
  };
  const dataset d = o.quick ? load_dataset(o.data_dir, o.quick_train, o.quick_val, o.quick_test) : load_dataset(o.data_dir, 55000, 5000, 0);
  r.train_n = d.train_x.rows();
  r.val_n = d.val_x.rows();
  r.test_n = d.test_x.rows();
  lap("load");
  const parameters p = trained_network(d, o, r, log);
  r.weights = p.weight_count();
  lap("train");

  const auto int4 = mixprec::parse_spec("int4/g32/sym/mse/s16");
  const auto int8 = mixprec::parse_spec("int8/channel/sym/minmax/s32");
  const std::vector<mixprec::quant_spec> candidates = {mixprec::parse_spec("int4/channel/sym/mse/s16"), int4, int8,
                                                       mixprec::parse_spec("fp16")};
  for (const auto& c : candidates) r.candidates.push_back(mixprec::to_string(c));
  // The full-precision distributions every KL compares with (samples x classes: logits are per column).
  const mat val_logits = logits_of(p, d.val_x, o.threads);
  const mixprec::kl_reference val_ref(val_logits.transpose()), test_ref(logits_of(p, d.test_x, o.threads).transpose());
  r.fp32_val = accuracy_of(val_logits, d.val_y);

  // The plans' loss: a layer's validation KL at a spec, summed over layers.
  mixprec::sensitivity_table kl_table;
  auto measure = [&](const quantized_network& q, const spec_map& specs) {
    measured m;
    m.bytes = q.bytes;
    m.avg_bits = 8.0 * static_cast<double>(q.bytes) / static_cast<double>(r.weights);
    const mat logits = logits_of(q.p, d.test_x, o.threads);
    m.accuracy = accuracy_of(logits, d.test_y);
    m.kl = test_ref.per_row(logits.transpose()).mean();
    m.specs = specs;
    for (const auto& [layer, spec] : specs) {
      const auto& lr = *std::find_if(r.layers.begin(), r.layers.end(), [&](const layer_result& x) { return x.name == layer; });
      const auto it = lr.kl.find(mixprec::to_string(spec));
      m.predicted_kl += it != lr.kl.end() ? it->second : std::numeric_limits<double>::quiet_NaN();
    }
    return m;
  };
  auto add_strategy = [&](const std::string& name, const quantized_network& q, const spec_map& specs) {
    strategy_result s;
    static_cast<measured&>(s) = measure(q, specs);
    s.name = name;
    r.strategies.push_back(s);
    char buf[200];
    std::snprintf(buf, sizeof buf, "strategy %s: %zu bytes, %.2f bits/weight, test accuracy %.2f %%, KL %.5f", name.c_str(),
                  s.bytes, s.avg_bits, 100.0 * s.accuracy, s.kl);
    log.line(buf);
  };

  // 1. Per-layer sensitivity on the validation split.
  const mixprec::class_suggestions suggestions;
  const row_matrix hessian_images = d.val_x.topRows(std::min<index_t>(o.hessian_images, d.val_x.rows()));
  for (std::size_t l = 0; l < n_layers; ++l) {
    layer_result lr;
    lr.name = layer_names[l];
    lr.kind = l < 3 ? "conv" : "fc";
    lr.rows = p.w[l].rows();
    lr.cols = p.w[l].cols();
    for (const auto& c : candidates) {
      const auto q = quantize_network(p, {{lr.name, c}});
      const mat logits = logits_of(q.p, d.val_x, o.threads);
      lr.drop[mixprec::to_string(c)] = r.fp32_val - accuracy_of(logits, d.val_y);
      lr.kl[mixprec::to_string(c)] = val_ref.per_row(logits.transpose()).mean();
      kl_table.add(lr.name, lr.rows, lr.cols, c, lr.kl[mixprec::to_string(c)]);
    }
    lr.drop_int4 = lr.drop.at(mixprec::to_string(int4));
    lr.drop_int8 = lr.drop.at(mixprec::to_string(int8));
    lr.kl_int4 = lr.kl.at(mixprec::to_string(int4));
    lr.kl_int8 = lr.kl.at(mixprec::to_string(int8));
    lr.sqnr_int4_db = mixprec::sqnr_db(p.w[l], mixprec::dequantize(mixprec::quantize(p.w[l], int4, lr.name)));
    lr.sqnr_int8_db = mixprec::sqnr_db(p.w[l], mixprec::dequantize(mixprec::quantize(p.w[l], int8, lr.name)));
    layer_hvp hvp(p, static_cast<int>(l), hessian_images);
    hvp.threads = o.threads;
    mixprec::hutchinson_options ho;
    ho.min_probes = o.quick ? 4 : 16;
    ho.max_probes = o.quick ? 8 : 64;
    ho.rel_tol = 0.05;
    ho.seed = o.seed + l;
    const auto tr = mixprec::hutchinson_trace(hvp, p.w[l].size(), ho);
    lr.hessian_trace = tr.trace;
    lr.hessian_trace_se = tr.std_error;
    lr.hessian_probes = tr.probes;
    lr.hawq_int4 = mixprec::hawq_score(tr.trace, p.w[l], int4);
    lr.cls = mixprec::classify(lr.drop_int4);
    lr.suggestion = suggestions[lr.cls];
    char buf[240];
    std::snprintf(buf, sizeof buf, "sensitivity %s: int4 drop %+.2f %% KL %.2e, int8 drop %+.2f %% KL %.2e, SQNR int4 %.1f dB, Tr(H) %.4g (%d probes)",
                  lr.name.c_str(), 100.0 * lr.drop_int4, lr.kl_int4, 100.0 * lr.drop_int8, lr.kl_int8, lr.sqnr_int4_db,
                  lr.hessian_trace, lr.hessian_probes);
    log.line(buf);
    r.layers.push_back(std::move(lr));
  }
  {
    std::vector<double> drop, kl, neg_sqnr, hawq, trace;
    for (const auto& lr : r.layers) {
      drop.push_back(lr.drop_int4);
      kl.push_back(lr.kl_int4);
      neg_sqnr.push_back(-lr.sqnr_int4_db);
      hawq.push_back(lr.hawq_int4);
      trace.push_back(lr.hessian_trace);
    }
    r.correlations["spearman(kl_int4, -sqnr_int4)"] = mixprec::spearman(kl, neg_sqnr);
    r.correlations["spearman(kl_int4, hawq_int4)"] = mixprec::spearman(kl, hawq);
    r.correlations["spearman(kl_int4, hessian_trace)"] = mixprec::spearman(kl, trace);
    r.correlations["spearman(drop_int4, kl_int4)"] = mixprec::spearman(drop, kl);
    r.correlations["spearman(drop_int4, -sqnr_int4)"] = mixprec::spearman(drop, neg_sqnr);
    r.correlations["spearman(drop_int4, hawq_int4)"] = mixprec::spearman(drop, hawq);
    r.correlations["kendall(kl_int4, hawq_int4)"] = mixprec::kendall_tau_b(kl, hawq);
    r.correlations["kendall(kl_int4, -sqnr_int4)"] = mixprec::kendall_tau_b(kl, neg_sqnr);
  }
  lap("sensitivity");

  // 2. Uniform strategies.
  add_strategy("fp32", quantize_network(p, {}), {});
  add_strategy("int8", quantize_network(p, uniform(int8)), uniform(int8));
  add_strategy("int4", quantize_network(p, uniform(int4)), uniform(int4));

  // 3. Plans at one budget. Greedy and knapsack minimise the summed validation KL; the threshold policy
  // is the accuracy-drop class table (high > 2 %, medium, low < 0.5 %).
  mixprec::sensitivity_table drop_table;
  for (const auto& lr : r.layers)
    for (const auto& c : candidates) drop_table.add(lr.name, lr.rows, lr.cols, c, lr.drop.at(mixprec::to_string(c)));
  const auto shapes = layer_shapes(p);
  if (o.budget == "int4" || o.budget == "int8")
    r.budget_bytes = static_cast<double>(
        std::find_if(r.strategies.begin(), r.strategies.end(), [&](const strategy_result& s) { return s.name == o.budget; })->bytes);
  else
    r.budget_bytes = mixprec::parse_byte_budget(o.budget, static_cast<double>(r.weights));
  const mixprec::byte_budget budget{r.budget_bytes};
  const auto threshold = mixprec::plan_builder{drop_table, mixprec::threshold_policy{}, budget}.candidates(candidates).build(shapes);
  const auto greedy = mixprec::plan_builder{kl_table, mixprec::greedy_policy{}, budget}.candidates(candidates).build(shapes);
  const auto knapsack = mixprec::plan_builder{kl_table, mixprec::knapsack_policy{}, budget}.candidates(candidates).build(shapes);
  for (const auto* pl : {&threshold, &greedy, &knapsack}) {
    const spec_map s = specs_of(*pl);
    add_strategy(pl->policy, quantize_network(p, s), s);
  }
  lap("plans");

  // The frontier: knapsack plans over budgets from the cheapest to the most precise choice.
  const auto front = mixprec::plan_builder{kl_table, mixprec::knapsack_policy{}, budget}
                         .candidates(candidates)
                         .pareto(shapes, o.quick ? 8 : o.pareto_points);
  for (const auto& pl : front) {
    const spec_map s = specs_of(pl);
    r.pareto.push_back(measure(quantize_network(p, s), s));
  }
  log.line("pareto: " + std::to_string(r.pareto.size()) + " knapsack plans on the frontier, each measured on the test set");
  lap("pareto");

  // 4. Precision-aware training.
  r.qat_method = o.lsq ? "learned step size (LSQ)" : "straight-through estimator, scales re-calibrated every step";
  add_strategy("int4+qat", precision_aware_training(p, uniform(int4), d, o, log, "int4"), uniform(int4));
  const spec_map knap = specs_of(knapsack);
  add_strategy("knapsack+qat", precision_aware_training(p, knap, d, o, log, "knapsack"), knap);
  lap("qat");
  return r;
}

}  // namespace fashion
