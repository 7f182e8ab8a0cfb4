// Greedy generation with a llama2.c checkpoint, FP32 or with every matrix quantized by one spec.
//   llama_generate [--model PATH] [--tokenizer PATH] [--steps N] [--quant SPEC]
// Defaults: the shared aidreams260K model, 40 steps, FP32.
#include <cstdio>
#include <cstring>
#include <string>

#include "llama.hpp"

int main(int argc, char** argv) try {
  std::string model = std::string(MIXPREC_SHARED_MODELS_DIR) + "/aidreams260K.bin";
  std::string tokenizer = std::string(MIXPREC_SHARED_MODELS_DIR) + "/tok512.bin";
  std::string quant;
  int steps = 40;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw mixprec::error(mixprec::errc::invalid_argument, a + " needs a value");
      return argv[++i];
    };
    if (a == "--model") model = value();
    else if (a == "--tokenizer") tokenizer = value();
    else if (a == "--steps") steps = std::stoi(value());
    else if (a == "--quant") quant = value();
    else {
      std::fprintf(stderr, "usage: llama_generate [--model PATH] [--tokenizer PATH] [--steps N] [--quant SPEC]\n");
      return 2;
    }
  }
  auto ck = mixprec::llama2c::load_checkpoint(model);
  const auto tok = mixprec::llama2c::load_tokenizer(tokenizer, ck.cfg.vocab_size);
  std::map<std::string, mixprec::quant_spec> specs;
  if (!quant.empty())
    for (auto& [name, m] : ck.matrices()) specs[name] = mixprec::parse_spec(quant);
  llama::transformer t(ck, specs);
  if (steps > ck.cfg.seq_len) steps = ck.cfg.seq_len;
  const auto ids = llama::greedy(t, steps);
  int prev = 1;
  for (int id : ids) {
    std::fputs(tok.decode(prev, id).c_str(), stdout);
    prev = id;
  }
  std::printf("\n\n[%s, matrices %zu bytes]\n", quant.empty() ? "fp32" : quant.c_str(), t.matrix_bytes());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
