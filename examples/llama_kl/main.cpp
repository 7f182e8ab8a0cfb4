// KL of quantized GGUFs to their reference, computed by the library's LLaMA engine
// (mixprec/models/llama.hpp) the way llama.cpp's `llama-perplexity --kl-divergence` scores them: mean
// over every position of KL(softmax(reference logits) || softmax(model logits)), in nats.
//   llama_kl REFERENCE.gguf TOKENS.txt MODEL.gguf... [--activations automatic|fp32]
// TOKENS.txt: one token stream per line, token ids separated by spaces (each stream run from position 0).
// --activations automatic (default): llama.cpp's block types take their activations quantized as ggml
// does (kernels/gemv_options.hpp); fp32: every product in FP32. Prints one line per model and mode.
// Exit codes: 0 done, 1 a file or model the library refuses (its message), 2 a bad command line.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <mixprec/models/llama.hpp>
#include <mixprec/sensitivity/kl.hpp>

int main(int argc, char** argv) {
  std::vector<std::string> files;
  std::vector<mixprec::activation_type> modes = {mixprec::activation_type::automatic};
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--activations") == 0 && i + 1 < argc) {
      const std::string m = argv[++i];
      if (m != "automatic" && m != "fp32") {
        std::fprintf(stderr, "llama_kl: --activations takes automatic or fp32, not '%s'\n", m.c_str());
        return 2;
      }
      modes = {m == "fp32" ? mixprec::activation_type::fp32 : mixprec::activation_type::automatic};
    } else {
      files.emplace_back(argv[i]);
    }
  }
  if (files.size() < 3) {
    std::fprintf(stderr, "usage: llama_kl REFERENCE.gguf TOKENS.txt MODEL.gguf... [--activations automatic|fp32]\n");
    return 2;
  }
  try {
    std::vector<std::vector<int>> streams;
    std::ifstream in(files[1]);
    if (!in) throw mixprec::error(mixprec::errc::io_error, "cannot open '" + files[1] + "'");
    for (std::string line; std::getline(in, line);) {
      std::istringstream tokens(line);
      std::vector<int> s;
      for (int t = 0; tokens >> t;) s.push_back(t);
      if (!s.empty()) streams.push_back(std::move(s));
    }
    if (streams.empty()) throw mixprec::error(mixprec::errc::empty_input, "'" + files[1] + "' holds no token stream");
    const mixprec::models::llama_model reference = mixprec::models::load_gguf(files[0]);
    mixprec::models::llama_engine ref_engine(reference, {}, {.threads = 0, .activations = mixprec::activation_type::fp32});
    std::vector<mixprec::kl_reference> p;
    for (const auto& s : streams) p.emplace_back(ref_engine.logits(s));
    for (std::size_t f = 2; f < files.size(); ++f) {
      const mixprec::models::llama_model model = mixprec::models::load_gguf(files[f]);
      for (const mixprec::activation_type mode : modes) {
        mixprec::models::llama_engine engine(model, {}, {.threads = 0, .activations = mode});
        double sum = 0.0;
        long positions = 0;
        for (std::size_t i = 0; i < streams.size(); ++i) {
          const Eigen::VectorXd kl = p[i].per_row(engine.logits(streams[i]));
          sum += kl.sum();
          positions += kl.size();
        }
        std::printf("%s  activations %s  KL %.6g nats over %ld positions\n", files[f].c_str(),
                    mode == mixprec::activation_type::fp32 ? "fp32" : "automatic", sum / static_cast<double>(positions), positions);
      }
    }
  } catch (const mixprec::error& e) {
    std::fprintf(stderr, "llama_kl: %s\n", e.what());
    return 1;
  }
  return 0;
}
