// Fashion-MNIST end to end: train a CNN (cached), measure per-layer sensitivity, plan mixed precision
// under a byte budget, recover accuracy with precision-aware training, and report. See pipeline.hpp.
//   fashion_mnist [--data DIR] [--out DIR] [--json PATH] [--budget 4.5|250000B] [--seed N] [--quick] ...
#include <cstdio>
#include <fstream>
#include <string>

#include <CLI/CLI.hpp>

#include "report.hpp"

int main(int argc, char** argv) {
  fashion::options o;
  std::string json_path;
  CLI::App app{"mixprec on Fashion-MNIST: sensitivity, mixed-precision plans and precision-aware training"};
  app.add_option("--data", o.data_dir, "folder with the Fashion-MNIST IDX files (Debian: dataset-fashion-mnist)")->capture_default_str();
  app.add_option("--out", o.out_dir, "folder for the cached weights, the Pareto CSV/JSON/SVG")->capture_default_str();
  app.add_option("--json", json_path, "write every result as JSON to this file");
  app.add_option("--budget", o.budget, "byte budget for the plans: int4 or int8 (the size of that uniform model), bits per weight (<= 32, or suffix bpw) or bytes (suffix B)")
      ->capture_default_str();
  app.add_option("--seed", o.seed, "seed of initialisation, shuffling and probes")->capture_default_str();
  app.add_flag("--quick", o.quick, "small subsets and short schedules (for tests)");
  app.add_option("--epochs", o.epochs, "training epochs")->capture_default_str()->check(CLI::Range(1, 100));
  app.add_option("--qat-steps", o.qat_steps, "precision-aware training steps (batch 128)")->capture_default_str()->check(CLI::Range(0, 100000));
  app.add_flag("--lsq", o.lsq, "learned step size instead of straight-through with re-calibrated scales");
  app.add_option("--hessian-images", o.hessian_images, "validation images for the Hessian-vector products")
      ->capture_default_str()->check(CLI::Range(1, 5000));
  app.add_option("--threads", o.threads, "worker threads")->capture_default_str()->check(CLI::Range(1, 64));
  app.add_flag("--retrain", o.retrain, "train even if cached weights exist");
  CLI11_PARSE(app, argc, argv);
  if (o.quick) {
    if (app.count("--epochs") == 0) o.epochs = 1;
    if (app.count("--qat-steps") == 0) o.qat_steps = 20;
    if (app.count("--hessian-images") == 0) o.hessian_images = 64;
  }
  try {
    const fashion::results r = fashion::run_pipeline(o);
    std::printf("%s", fashion::markdown(r).c_str());
    auto files = fashion::write_pareto(r, o.out_dir);
    if (!json_path.empty()) {
      std::ofstream f(json_path);
      f << fashion::to_json(r).dump(2) << "\n";
      if (!f) throw mixprec::error(mixprec::errc::io_error, "cannot write '" + json_path + "'");
      files.push_back(json_path);
    }
    std::fprintf(stderr, "\noutputs:\n  weights  %s\n", r.weights_file.c_str());
    for (const auto& f : files) std::fprintf(stderr, "  %s\n", f.c_str());
    return 0;
  } catch (const mixprec::error& e) {
    std::fprintf(stderr, "fashion_mnist: %s\n", e.what());
    return e.code() == mixprec::errc::io_error ? 3 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fashion_mnist: %s\n", e.what());
    return 1;
  }
}
