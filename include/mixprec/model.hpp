// model: an ordered list of layer views (layer.hpp) that a user builds over their own weights (nothing
// is copied): the input of every sensitivity analysis, of the probe, of shapes_of and of quantize_model.
// Any std::vector<layer> works too. Analyses take std::span<const layer> (they only read); the probe,
// which quantizes each layer in place and restores it, takes std::span<layer>: a const model converts
// only to the first.
//
//   mixprec::model m;
//   for (auto& [name, tensor] : my_checkpoint) m.add(name, tensor.data(), tensor.rows(), tensor.cols());
//   m["blk.0.attn_q"].with_gram(g0);  // q, k and v read the same input: one shared Gram
//   m["blk.0.attn_k"].with_gram(g0);
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixprec/error.hpp"
#include "mixprec/layer.hpp"

namespace mixprec {

class model {
 public:
  using value_type = layer;

  model() = default;
  explicit model(std::vector<layer> layers) : layers_(std::move(layers)) { validate(layers_); }

  // Appends a view of w (which must outlive the model); throws if the name is taken or w is empty.
  // Each add returns the new view (valid until the next add), e.g. to chain .with_gram(g).
  layer& add(std::string name, Eigen::Ref<row_matrix> w) { return add(make_layer(std::move(name), w)); }
  // Appends a view of rows x cols floats at data, rows `stride` floats apart (0: dense).
  layer& add(std::string name, float* data, index_t rows, index_t cols, index_t stride = 0) {
    return add(make_layer(std::move(name), data, rows, cols, stride));
  }
  // Appends a prepared view (validated first).
  layer& add(layer l) {
    validate(l);
    if (find(l.name)) throw error(errc::invalid_argument, "model: layer name '" + l.name + "' appears twice");
    layers_.push_back(std::move(l));
    return layers_.back();
  }

  // The layer called name, or nullptr.
  [[nodiscard]] layer* find(std::string_view name) noexcept {
    for (layer& l : layers_)
      if (l.name == name) return &l;
    return nullptr;
  }
  [[nodiscard]] const layer* find(std::string_view name) const noexcept { return const_cast<model*>(this)->find(name); }
  // The layer called name; throws mixprec::error if there is none.
  [[nodiscard]] layer& operator[](std::string_view name) {
    if (layer* l = find(name)) return *l;
    throw error(errc::invalid_argument, "model: no layer '" + std::string(name) + "'");
  }
  [[nodiscard]] const layer& operator[](std::string_view name) const { return const_cast<model&>(*this)[name]; }

  [[nodiscard]] std::span<const layer> layers() const noexcept { return layers_; }
  [[nodiscard]] std::span<layer> layers() noexcept { return layers_; }
  operator std::span<const layer>() const noexcept { return layers_; }  // NOLINT: implicit on purpose
  operator std::span<layer>() noexcept { return layers_; }              // NOLINT: for the probe
  [[nodiscard]] std::size_t size() const noexcept { return layers_.size(); }
  [[nodiscard]] bool empty() const noexcept { return layers_.empty(); }
  [[nodiscard]] auto begin() const noexcept { return layers_.begin(); }
  [[nodiscard]] auto end() const noexcept { return layers_.end(); }
  // Number of weights over every layer.
  [[nodiscard]] index_t parameters() const noexcept {
    index_t n = 0;
    for (const layer& l : layers_) n += l.size();
    return n;
  }

 private:
  std::vector<layer> layers_;
};

}  // namespace mixprec
