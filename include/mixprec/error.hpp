// The one error type mixprec throws for bad input, with a code to branch on.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace mixprec {

enum class errc {
  invalid_argument,   // a parameter out of its domain (bits, group size, percentile...)
  empty_input,        // a tensor with no elements where some are needed
  shape_mismatch,     // two shapes that must agree do not
  non_finite,         // NaN or Inf where finite values are needed
  not_representable,  // a value (e.g. a scale) that the target type cannot hold
  infeasible,         // a budget or constraint that no choice satisfies
  parse_error,        // malformed text or file
  io_error,           // a file that cannot be opened, read or written
  unsupported,        // a valid request that mixprec does not implement
  output_error,       // an output that could not be written although its path was valid (disk full, an I/O
                      // error, a quota or file size limit): not a fault of any input
};

inline const char* to_string(errc c) noexcept {
  switch (c) {
    case errc::invalid_argument: return "invalid_argument";
    case errc::empty_input: return "empty_input";
    case errc::shape_mismatch: return "shape_mismatch";
    case errc::non_finite: return "non_finite";
    case errc::not_representable: return "not_representable";
    case errc::infeasible: return "infeasible";
    case errc::parse_error: return "parse_error";
    case errc::io_error: return "io_error";
    case errc::unsupported: return "unsupported";
    case errc::output_error: return "output_error";
  }
  return "unknown";
}

// Thrown for bad input; what() names the tensor/file and what was expected.
//
// An error on its way up gains context with in_context, the one way the library wraps a message:
//   catch (const error& e) { throw e.in_context("plan '" + path + "'"); }
// gives "mixprec: plan 'p.json': <the inner message>" with the inner code (or the one given).
class error : public std::runtime_error {
 public:
  error(errc code, const std::string& message)
      : std::runtime_error(std::string("mixprec: ") + message), code_(code), message_(message) {}
  [[nodiscard]] errc code() const noexcept { return code_; }
  // The message without the "mixprec: " prefix (for wrapping into another error's message).
  [[nodiscard]] const std::string& message() const noexcept { return message_; }
  // This error with "context: " before its message; the code stays unless another is given.
  [[nodiscard]] error in_context(std::string_view context) const { return in_context(context, code_); }
  [[nodiscard]] error in_context(std::string_view context, errc code) const {
    return error(code, std::string(context) + ": " + message_);
  }

 private:
  errc code_;
  std::string message_;
};

}  // namespace mixprec
