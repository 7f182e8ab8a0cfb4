// quantize_model: quantizes every layer of a model by a plan and returns the quantized model with its
// exact size. (Called apply before 0.3: that name met std::apply by argument-dependent lookup.)
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "mixprec/error.hpp"
#include "mixprec/plan/layer_shape.hpp"
#include "mixprec/plan/result.hpp"
#include "mixprec/quantize/quantize.hpp"

namespace mixprec {

struct quantized_layer {
  std::string name;
  quantized_tensor tensor;
};

struct quantized_model {
  std::vector<quantized_layer> layers;  // in the plan's order

  // Exact storage of every layer: codes, scales and zero points (sum of quantized_tensor::bytes()).
  [[nodiscard]] std::size_t bytes() const noexcept {
    std::size_t b = 0;
    for (const auto& l : layers) b += l.tensor.bytes();
    return b;
  }
  // The tensor of a layer; throws for an unknown name.
  [[nodiscard]] const quantized_tensor& at(std::string_view name) const {
    for (const auto& l : layers)
      if (l.name == name) return l.tensor;
    throw error(errc::invalid_argument, "quantized model: no layer '" + std::string(name) + "'");
  }
};

// Quantizes every layer of `model` (a range of WeightView: a mixprec::model, a std::vector<layer>, ...) with the plan's spec.
// Checks first, before any work: every plan layer is in the model with the plan's shape, every model
// layer is in the plan, no name twice, no null weight. Throws mixprec::error naming the layer.
template <class Model>
  requires WeightView<typename Model::value_type>
[[nodiscard]] quantized_model quantize_model(const plan& p, const Model& model) {
  std::map<std::string, const typename Model::value_type*, std::less<>> by_name;
  for (const auto& l : model) {
    const std::string name(std::string_view(l.name));
    if (!by_name.emplace(name, &l).second) throw error(errc::invalid_argument, "quantize_model: model layer '" + name + "' appears twice");
    const auto w = l.weight();
    if (w.data() == nullptr || w.rows() <= 0 || w.cols() <= 0)
      throw error(errc::empty_input, "quantize_model: model layer '" + name + "' has no weight data");
  }
  std::set<std::string_view> planned;
  for (const auto& e : p.entries) {
    const auto it = by_name.find(e.layer);
    if (it == by_name.end()) throw error(errc::invalid_argument, "quantize_model: plan layer '" + e.layer + "' is not in the model");
    if (!planned.insert(e.layer).second) throw error(errc::invalid_argument, "quantize_model: plan layer '" + e.layer + "' appears twice");
    const auto w = it->second->weight();
    if (w.rows() != e.rows || w.cols() != e.cols)
      throw error(errc::shape_mismatch, "quantize_model: layer '" + e.layer + "' is " + std::to_string(w.rows()) + "x" +
                                            std::to_string(w.cols()) + " in the model, " + std::to_string(e.rows) +
                                            "x" + std::to_string(e.cols) + " in the plan");
  }
  for (const auto& [name, l] : by_name)
    if (!planned.contains(name)) throw error(errc::invalid_argument, "quantize_model: model layer '" + name + "' is not in the plan");
  quantized_model out;
  out.layers.reserve(p.entries.size());
  for (const auto& e : p.entries) out.layers.push_back({e.layer, quantize(by_name.find(e.layer)->second->weight(), e.spec, e.layer)});
  return out;
}

}  // namespace mixprec
