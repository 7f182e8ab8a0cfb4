// Sensitivity sources: the predicted loss of quantizing a layer with a candidate quantizer.
//
// The planner takes sensitivities as plain data so that any metric can feed it (an accuracy-drop probe,
// a Hessian trace times the weight error, KL divergence, a measured perplexity...). Losses must be
// additive over layers (the planner minimises their sum) and comparable across candidates; smaller is
// better. A source is any type with loss(layer, spec) -> double (SensitivitySource); one that also
// lists its layers and their candidates (a LayerCatalog, as sensitivity_table does) lets the planner run
// without a separate layer list.
#pragma once

#include <concepts>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "mixprec/types.hpp"
#include "mixprec/error.hpp"
#include "mixprec/plan/layer_shape.hpp"
#include "mixprec/quantize/quantize.hpp"
#include "mixprec/quantize/spec.hpp"

namespace mixprec {

template <class S>
concept SensitivitySource = requires(const S& s, const layer_shape& l, const quant_spec& q) {
  { s.loss(l, q) } -> std::convertible_to<double>;
};

template <class S>
concept LayerCatalog = requires(const S& s, const layer_shape& l) {
  { s.layers() } -> std::convertible_to<std::vector<layer_shape>>;
  { s.candidates(l) } -> std::convertible_to<std::vector<quant_spec>>;
};

// A table of measured or predicted losses: per layer its shape and, per candidate quantizer, a loss.
//   sensitivity_table t;
//   t.add("blk.0.attn_q", 4096, 4096, parse_spec("int4/g128/sym/minmax/s16"), 0.0123)
//    .add("blk.0.attn_q", 4096, 4096, "int8", 0.0004);
class sensitivity_table {
 public:
  struct entry {
    quant_spec spec;
    double loss = 0.0;
  };
  struct row {
    layer_shape layer;
    std::vector<entry> losses;  // in the order added
  };

  // Adds the loss of quantizing `layer` (rows x cols) with `spec`. Throws mixprec::error for an empty
  // shape, a non-finite loss, a shape that differs from the layer's earlier rows, or a pair given twice.
  sensitivity_table& add(std::string_view layer, index_t rows, index_t cols, const quant_spec& spec, double loss) {
    const std::string where = "sensitivity table: layer '" + std::string(layer) + "' at " + to_string(spec);
    if (rows <= 0 || cols <= 0)
      throw error(errc::empty_input, where + ": shape " + std::to_string(rows) + "x" + std::to_string(cols));
    if (rows > std::numeric_limits<index_t>::max() / cols)
      throw error(errc::invalid_argument, where + ": shape " + std::to_string(rows) + "x" + std::to_string(cols) + " has too many elements");
    if (!std::isfinite(loss)) throw error(errc::non_finite, where + ": the loss is not finite");
    validate(spec);
    auto it = index_.find(layer);
    if (it == index_.end()) {
      it = index_.emplace(std::string(layer), rows_.size()).first;
      rows_.push_back({{std::string(layer), rows, cols}, {}});
    }
    row& r = rows_[it->second];
    if (r.layer.rows != rows || r.layer.cols != cols)
      throw error(errc::shape_mismatch, where + ": shape " + std::to_string(rows) + "x" + std::to_string(cols) +
                                            ", earlier rows say " + std::to_string(r.layer.rows) + "x" +
                                            std::to_string(r.layer.cols));
    for (const entry& e : r.losses)
      if (e.spec == spec) throw error(errc::invalid_argument, where + ": given twice");
    r.losses.push_back({spec, loss});
    return *this;
  }
  // The same, with the spec in text form (parse_spec).
  sensitivity_table& add(std::string_view layer, index_t rows, index_t cols, std::string_view spec, double loss) {
    return add(layer, rows, cols, parse_spec(spec), loss);
  }

  [[nodiscard]] const std::vector<row>& rows() const noexcept { return rows_; }
  [[nodiscard]] bool contains(std::string_view layer) const { return index_.find(layer) != index_.end(); }

  // The layers, in the order first added.
  [[nodiscard]] std::vector<layer_shape> layers() const {
    std::vector<layer_shape> out;
    out.reserve(rows_.size());
    for (const row& r : rows_) out.push_back(r.layer);
    return out;
  }
  // The specs the table has a loss for, for layer l.
  [[nodiscard]] std::vector<quant_spec> candidates(const layer_shape& l) const {
    std::vector<quant_spec> out;
    for (const entry& e : find(l).losses) out.push_back(e.spec);
    return out;
  }
  // The loss of layer l at spec q; throws naming both when the table has none.
  [[nodiscard]] double loss(const layer_shape& l, const quant_spec& q) const {
    for (const entry& e : find(l).losses)
      if (e.spec == q) return e.loss;
    throw error(errc::invalid_argument,
                "sensitivity table: no loss for layer '" + l.name + "' at " + to_string(q));
  }

 private:
  [[nodiscard]] const row& find(const layer_shape& l) const {
    const auto it = index_.find(l.name);
    if (it == index_.end()) throw error(errc::invalid_argument, "sensitivity table: no layer '" + l.name + "'");
    const row& r = rows_[it->second];
    if (r.layer.rows != l.rows || r.layer.cols != l.cols)
      throw error(errc::shape_mismatch, "sensitivity table: layer '" + l.name + "' is " + std::to_string(r.layer.rows) +
                                            "x" + std::to_string(r.layer.cols) + " in the table, " +
                                            std::to_string(l.rows) + "x" + std::to_string(l.cols) + " in the model");
    return r;
  }

  std::vector<row> rows_;
  std::map<std::string, std::size_t, std::less<>> index_;
};

static_assert(SensitivitySource<sensitivity_table> && LayerCatalog<sensitivity_table>);

// Any callable loss(layer, spec) as a source.
struct loss_function_source {
  std::function<double(const layer_shape&, const quant_spec&)> fn;
  [[nodiscard]] double loss(const layer_shape& l, const quant_spec& q) const { return fn(l, q); }
};

// The weight's squared quantization error ||Q(W) - W||_F^2, computed on the fly from the model's
// weights (a metric that needs no data; an output- or Hessian-aware metric predicts accuracy better).
template <class Model>
  requires WeightView<typename Model::value_type>
struct weight_error_source {
  const Model* model = nullptr;
  [[nodiscard]] double loss(const layer_shape& l, const quant_spec& q) const {
    for (const auto& v : *model)
      if (std::string_view(v.name) == l.name) {
        const auto w = v.weight();
        const row_matrix back = dequantize(quantize(w, q, l.name));
        return (back - w).template cast<double>().squaredNorm();
      }
    throw error(errc::invalid_argument, "weight_error_source: no layer '" + l.name + "' in the model");
  }
};
template <class Model>
weight_error_source(const Model*) -> weight_error_source<Model>;

}  // namespace mixprec
