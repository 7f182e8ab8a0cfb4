// Greedy generation with the library's LLaMA engine (mixprec/models/llama.hpp): a llama2.c checkpoint
// with its tokenizer file, or a GGUF of architecture "llama" (its own vocabulary); FP32 / as stored, or
// with every matrix re-quantized by one spec (matrices whose rows the spec's blocks do not tile stay
// as they are).
//   llama_generate --model PATH [--tokenizer PATH] [--steps N] [--quant SPEC] [--prompt TEXT]
// --model is required, and --tokenizer with a llama2.c checkpoint (a GGUF carries its vocabulary).
// Defaults: 40 steps, as stored, no prompt (generation from BOS). A trained llama2.c model:
//   bash scripts/fetch_stories15m.sh    (data/stories15M/stories15M.bin and tokenizer.bin)
//   llama_generate --model data/stories15M/stories15M.bin --tokenizer data/stories15M/tokenizer.bin --prompt "Once upon a time"
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <mixprec/models/llama.hpp>
#include <mixprec/models/tokenizer.hpp>

namespace {
constexpr const char* usage =
    "usage: llama_generate --model PATH [--tokenizer PATH] [--steps N] [--quant SPEC] [--prompt TEXT]\n"
    "  --model PATH      a llama2.c checkpoint or a GGUF (required)\n"
    "  --tokenizer PATH  the llama2.c tokenizer file (required with a llama2.c checkpoint)\n"
    "  e.g. data/stories15M/stories15M.bin and data/stories15M/tokenizer.bin from `bash scripts/fetch_stories15m.sh`\n";

// A command line that cannot run: main prints it with the usage and exits 2.
struct usage_error {
  std::string what;
};

// Whether the file starts with GGUF's magic (as models::load_llama decides).
bool is_gguf(const std::string& path) {
  char magic[4] = {};
  std::ifstream in(path, std::ios::binary);
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}
}  // namespace

int main(int argc, char** argv) try {
  namespace models = mixprec::models;
  std::string model, tokenizer, quant, prompt;
  int steps = 40;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw usage_error{a + " needs a value"};
      return argv[++i];
    };
    if (a == "--model") model = value();
    else if (a == "--tokenizer") tokenizer = value();
    else if (a == "--steps") steps = std::stoi(value());
    else if (a == "--quant") quant = value();
    else if (a == "--prompt") prompt = value();
    else if (a == "-h" || a == "--help") {
      std::fputs(usage, stdout);
      return 0;
    } else {
      throw usage_error{"unknown argument '" + a + "'"};
    }
  }
  if (model.empty()) throw usage_error{"--model is required"};
  const models::llama_model m = models::load_llama(model);  // a file that cannot be read: exit 1
  const bool gguf = is_gguf(model);
  if (!gguf && tokenizer.empty()) throw usage_error{"--tokenizer is required with a llama2.c checkpoint ('" + model + "' is no GGUF)"};
  const models::spm_tokenizer tok = gguf ? models::spm_tokenizer::from_gguf(model)
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
} catch (const usage_error& e) {
  std::fprintf(stderr, "llama_generate: %s\n%s", e.what.c_str(), usage);
  return 2;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
