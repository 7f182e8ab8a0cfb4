// libFuzzer target: plan and sensitivity-table JSON never crash; malformed input is a mixprec::error
// (or nlohmann's parse error for text that is not JSON at all).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "mixprec/plan/plan_json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const nlohmann::json::exception&) {
    return 0;
  }
  try {
    mixprec::plan p;
    mixprec::from_json(j, p);
    (void)p.table();
    nlohmann::json back = p;  // what parses must serialise again
  } catch (const mixprec::error&) {
  }
  try {
    mixprec::sensitivity_table t;
    mixprec::from_json(j, t);
  } catch (const mixprec::error&) {
  }
  return 0;
}
