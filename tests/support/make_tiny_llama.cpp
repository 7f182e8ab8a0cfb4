// make_tiny_llama DIR [SEED]: writes the seeded synthetic llama2.c model and vocabulary of
// tiny_llama.hpp (DIR/tiny_llama.bin, DIR/tiny_tok.bin), for the tests that run the tools from a shell.
#include <cstdio>
#include <exception>
#include <string>

#include "support/tiny_llama.hpp"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: make_tiny_llama DIR [SEED]\n");
    return 2;
  }
  try {
    mixprec::test::tiny_llama_options o;
    if (argc == 3) o.seed = static_cast<std::uint32_t>(std::stoul(argv[2]));
    const auto f = mixprec::test::write_tiny_llama(argv[1], o);
    std::printf("%s\n%s\n", f.model.c_str(), f.tokenizer.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_tiny_llama: %s\n", e.what());
    return 1;
  }
  return 0;
}
