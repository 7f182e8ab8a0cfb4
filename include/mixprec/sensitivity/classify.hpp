// The precision each accuracy-drop class suggests. The classes and their boundaries live in
// plan/drop_classes.hpp (one table for the report and the threshold policy); defaults:
//   class        drop d                     suggested quantizer (class_suggestions)
//   high         d > 2 %                    fp16                       (FP16, or INT8 at a pinch)
//   medium       0.5 % <= d <= 2 %          int8/channel/sym/minmax/s32
//   low          eps < d < 0.5 %            int4/g32/sym/mse/s16        (INT4, small groups)
//   insensitive  d <= eps (eps = 0.05 %)    int4/g128/sym/mse/s16       (INT4 or lower: probe int2 to go lower)
#pragma once

#include <string>
#include <string_view>

#include "mixprec/error.hpp"
#include "mixprec/plan/drop_classes.hpp"
#include "mixprec/quantize/spec.hpp"

namespace mixprec {

// The quantizer each class suggests (editable).
struct class_suggestions {
  quant_spec high = parse_spec("fp16");
  quant_spec medium = parse_spec("int8/channel/sym/minmax/s32");
  quant_spec low = parse_spec("int4/g32/sym/mse/s16");
  quant_spec insensitive = parse_spec("int4/g128/sym/mse/s16");

  [[nodiscard]] const quant_spec& operator[](sensitivity_class c) const noexcept {
    switch (c) {
      case sensitivity_class::high: return high;
      case sensitivity_class::medium: return medium;
      case sensitivity_class::low: return low;
      case sensitivity_class::insensitive: break;
    }
    return insensitive;
  }
};

}  // namespace mixprec
