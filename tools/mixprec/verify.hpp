// Verified plans in the tool: the library's plan_verifier (models/llama/verify.hpp: the whole plan run on
// held-out streams sampled from the model, KL with its bootstrap interval, p99, max, top-1) on a model
// file, its tensors quantized exactly as `mixprec quantize --plan` writes them (quantize_stack with the
// imatrix's search, importance_view), and the record plan.json keeps (`"verified"`).
// The measurement's own streams are refused by their hash (the measure file's calibration.ids_fnv1a64,
// checked where the plan is made: app.cpp).
// Other stream sets (add_streams) serve `plan --refine` (refine.hpp).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <mixprec/models/calibration.hpp>
#include <mixprec/models/llama.hpp>
#include <mixprec/models/llama/verify.hpp>

#include "measure.hpp"
#include "tool.hpp"

namespace mixprec_cli {

struct verify_options : mixprec::models::verify_options {
  std::string imatrix;  // the importance matrix quantize searches with (recorded; "" = none)
};

struct verification : mixprec::models::verification {
  std::string imatrix;  // the importance matrix the plan's tensors were searched with ("" = none)

  [[nodiscard]] nlohmann::json to_json(double predicted) const {
    return {{"kl", kl},
            {"kl_ci95", {kl_low, kl_high}},
            {"kl_p99", kl_p99},
            {"kl_max", kl_max},
            {"top1", top1},
            {"predicted", predicted},
            {"streams", streams},
            {"positions", positions},
            {"seed", seed},
            {"ids_fnv1a64", ids_fnv1a64},
            {"source", "sample"},
            {"imatrix", imatrix.empty() ? nlohmann::json(nullptr) : nlohmann::json(imatrix)}};
  }
};

// The library's verifier on a model file (errc::unsupported for a file the engine does not run: another
// architecture, safetensors; or a vocabulary without BOS).
class plan_verifier {
 public:
  plan_verifier(const model_file& f, const importance_set& importance, const verify_options& o)
      : imatrix_(o.imatrix), inner_(make(f, importance, o)) {}

  [[nodiscard]] const std::vector<std::vector<int>>& streams() const noexcept { return inner_.streams(); }
  std::size_t add_streams(int streams, int length, std::uint64_t seed) { return inner_.add_streams(streams, length, seed); }
  [[nodiscard]] const std::vector<std::vector<int>>& stream_ids(std::size_t set) const { return inner_.stream_ids(set); }
  [[nodiscard]] double mean_kl(const mixprec::plan& p, std::size_t set, std::size_t first) { return inner_.mean_kl(p, set, first); }
  [[nodiscard]] verification verify(const mixprec::plan& p) { return {inner_.verify(p), imatrix_}; }

 private:
  [[nodiscard]] static mixprec::models::plan_verifier make(const model_file& f, const importance_set& importance, const verify_options& o) {
    namespace mm = mixprec::models;
    if (o.streams < 1 || o.length < 2 || o.resamples < 1)  // before the model is loaded (the library checks again)
      throw error(errc::invalid_argument, "verify: " + std::to_string(o.streams) + " streams of " + std::to_string(o.length) +
                                              " tokens: give at least 1 stream of 2 tokens");
    if (!f.is_gguf()) throw error(errc::unsupported, "verifying a plan runs the model, which needs a GGUF");
    mm::llama_model model = mm::load_gguf(f.gguf());
    const int bos = mm::bos_of(f.gguf(), model.config.vocab_size).id;
    if (bos < 0) throw error(errc::unsupported, "verify: the vocabulary of '" + f.gguf().path() + "' has no BOS to start sampled streams with");
    // Tensor m at type t as `mixprec quantize` writes it: quantize_stack with the imatrix's search, from the
    // file's values (F32 as its values, which the engine runs as load_gguf runs a stored F32 tensor).
    auto quantizer = [&f, &importance, threads = o.threads](const mm::llama_matrix& m, ggml_type t) {
      const tensor_entry* entry = nullptr;
      for (const auto& e : f.tensors())
        if (e.name == m.name()) entry = &e;
      if (!entry) throw error(errc::invalid_argument, "verify: no tensor '" + m.name() + "' in the file");
      row_matrix w = f.gguf().to_float(m.name());
      check_finite(w, m.name());
      if (t == ggml_type::f32) return mm::llama_matrix(m.name(), std::move(w));
      const importance_view view(importance, f, {m.name()});  // (the search does not depend on the tensors named)
      const auto bytes = quantize_stack(t, w, view.of(*entry).search, m.name(), threads);
      std::vector<std::uint8_t> codes(bytes.size());
      std::memcpy(codes.data(), bytes.data(), bytes.size());
      return mm::llama_matrix(m.name(), mixprec::quantized_tensor(mixprec::ggml_spec(t), w.rows(), w.cols(), std::move(codes), {}, {}));
    };
    return mm::plan_verifier(std::move(model), bos, o, quantizer);
  }

  std::string imatrix_;
  mixprec::models::plan_verifier inner_;
};

}  // namespace mixprec_cli
