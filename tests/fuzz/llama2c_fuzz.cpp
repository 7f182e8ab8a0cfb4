// libFuzzer target: llama2.c checkpoint and tokenizer parsers never crash on arbitrary bytes.
#include <cstddef>
#include <cstdint>

#include "mixprec/io/llama2c.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    (void)mixprec::llama2c::parse_checkpoint(data, size, "fuzz");
  } catch (const mixprec::error&) {
  }
  try {
    (void)mixprec::llama2c::parse_tokenizer(data, size, 8, "fuzz");
  } catch (const mixprec::error&) {
  }
  return 0;
}
