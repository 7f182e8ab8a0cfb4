// Greedy generation with the library's LLaMA engine (mixprec/models/llama.hpp): a llama2.c checkpoint
// with its tokenizer file, or a GGUF of architecture "llama" (its own vocabulary); FP32 / as stored, or
// with every matrix re-quantized by one spec (matrices whose rows the spec's blocks do not tile stay
// as they are).
//   llama_generate [--model PATH] [--tokenizer PATH] [--steps N] [--quant SPEC] [--prompt TEXT]
// Defaults: the shared aidreams260K model, 40 steps, FP32, no prompt (generation from BOS).
#include <cstdio>
#include <cstring>
#include <string>

#include <mixprec/models/llama.hpp>
#include <mixprec/models/tokenizer.hpp>

int main(int argc, char** argv) try {
  namespace models = mixprec::models;
  std::string model = std::string(MIXPREC_SHARED_MODELS_DIR) + "/aidreams260K.bin";
  std::string tokenizer = std::string(MIXPREC_SHARED_MODELS_DIR) + "/tok512.bin";
  std::string quant, prompt;
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
    else if (a == "--prompt") prompt = value();
    else {
      std::fprintf(stderr, "usage: llama_generate [--model PATH] [--tokenizer PATH] [--steps N] [--quant SPEC] [--prompt TEXT]\n");
      return 2;
    }
  }
  const models::llama_model m = models::load_llama(model);
  const bool is_gguf = model.size() >= 5 && model.compare(model.size() - 5, 5, ".gguf") == 0;
  const models::spm_tokenizer tok =
      is_gguf ? models::spm_tokenizer::from_gguf(model)
              : models::spm_tokenizer::from_llama2c(mixprec::llama2c::load_tokenizer(tokenizer, m.config.vocab_size));
  std::map<std::string, mixprec::quant_spec> specs;
  if (!quant.empty()) {
    const mixprec::quant_spec s = mixprec::parse_spec(quant);
    for (const models::llama_matrix* w : m.matrices())
      if (mixprec::fits(s, w->cols())) specs[w->name()] = s;
  }
  models::llama_engine engine(m, specs);
  std::vector<int> ids = prompt.empty() ? std::vector<int>{tok.bos()} : tok.encode(prompt);
  // Feed the prompt, then append the argmax (ties to the lower id) until `steps` ids are generated or
  // the context is full.
  const std::size_t want = ids.size() + static_cast<std::size_t>(std::max(steps, 0));
  for (std::size_t pos = 0; (pos + 1 < ids.size() || ids.size() < want) && pos < static_cast<std::size_t>(engine.max_context()); ++pos) {
    const Eigen::VectorXf& logits = engine.forward(ids[pos], static_cast<int>(pos));
    if (pos + 1 < ids.size()) continue;  // still reading the prompt
    Eigen::Index next = 0;
    logits.maxCoeff(&next);
    ids.push_back(static_cast<int>(next));
  }
  std::fputs(tok.decode(ids, {.strip_space_prefix = true}).c_str(), stdout);
  std::printf("\n\n[%s, matrices %zu bytes]\n", quant.empty() ? "as stored" : quant.c_str(), engine.matrix_bytes());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
