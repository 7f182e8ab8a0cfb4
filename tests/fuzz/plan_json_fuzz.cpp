// libFuzzer target: plan and sensitivity-table JSON never crash; malformed input is a mixprec::error
// (or nlohmann's parse error for text that is not JSON at all). The text is read as the library reads
// it (parse_json_strict: duplicate keys and raw NUL bytes refused), and parse_plan and
// parse_sensitivity_table must agree with from_json over that document.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "mixprec/plan/plan_json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  nlohmann::json j;
  try {
    j = mixprec::detail::parse_json_strict(text);
  } catch (const nlohmann::json::exception&) {
    return 0;
  } catch (const mixprec::error&) {
    return 0;
  }
  bool plan_ok = false, table_ok = false;
  try {
    mixprec::plan p;
    mixprec::from_json(j, p);
    (void)p.table();
    nlohmann::json back = p;  // what parses must serialise again
    plan_ok = true;
  } catch (const mixprec::error&) {
  }
  try {
    mixprec::sensitivity_table t;
    mixprec::from_json(j, t);
    table_ok = true;
  } catch (const mixprec::error&) {
  }
  bool plan_text_ok = false, table_text_ok = false;
  try {
    (void)mixprec::parse_plan(text, "fuzz");
    plan_text_ok = true;
  } catch (const mixprec::error&) {
  }
  try {
    (void)mixprec::parse_sensitivity_table(text, "fuzz");
    table_text_ok = true;
  } catch (const mixprec::error&) {
  }
  if (plan_ok != plan_text_ok || table_ok != table_text_ok) std::abort();
  return 0;
}
