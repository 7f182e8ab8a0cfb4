// scoped_swap: the replacement is in the slot for the guard's lifetime, the original back after it,
// also when the work in between throws.
#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>
#include <vector>

#include "mixprec/sensitivity/scoped_swap.hpp"

TEST_CASE("scoped_swap puts the original back, also after an exception", "[sensitivity][scoped_swap]") {
  std::vector<std::string> slot = {"original", "weights"};
  {
    const mixprec::scoped_swap guard(slot, std::vector<std::string>{"quantized"});
    CHECK(slot == std::vector<std::string>{"quantized"});
    CHECK(guard.original() == std::vector<std::string>{"original", "weights"});
  }
  CHECK(slot == std::vector<std::string>{"original", "weights"});
  CHECK_THROWS_AS(([&] {
                    const mixprec::scoped_swap guard(slot, std::vector<std::string>{"probe"});
                    CHECK(slot.front() == "probe");
                    throw std::runtime_error("the probe failed");
                  }()),
                  std::runtime_error);
  CHECK(slot == std::vector<std::string>{"original", "weights"});
}
