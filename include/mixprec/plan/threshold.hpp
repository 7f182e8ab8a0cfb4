// threshold_policy: a precision per accuracy-drop class (a fixed table), the baseline every budgeted
// policy is compared with.
//
// Each item's drop at a reference precision (its loss at the cheapest option with `reference_bits`, by
// default the cheapest INT4 candidate; the cheapest option when there is none) sets its class by
// plan/drop_classes.hpp's classify (the table the sensitivity report uses, boundaries and all), and the
// class asks for a precision (drops are fractions: 0.02 is 2 %; negative drops count by magnitude):
//   class        drop d                    precision asked           option taken
//   high         d > 2 %                   16 bits (fp16/bf16)       least loss among those bits
//   medium       0.5 % <= d <= 2 %         8 bits (int8/fp8)         least loss among those bits
//   low          eps < d < 0.5 %           4 bits                    least loss among those bits
//   insensitive  d <= eps (eps = 0.05 %)   2 bits: int2, else int4   the cheapest among those bits
// "Those bits" is the smallest bit width at or above the one asked for that the item offers; an item
// offering nothing that precise takes its most precise option. The budget is not looked at (the plan
// reports whether the result fits: plan::within_limit, and plan::table() says so); a tied group's drop
// is the sum of its members' drops.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>

#include "mixprec/error.hpp"
#include "mixprec/plan/allocation.hpp"
#include "mixprec/plan/drop_classes.hpp"

namespace mixprec {

// See the banner.
struct threshold_policy {
  static constexpr std::string_view name = "threshold";
  class_thresholds thresholds{};
  int reference_bits = 4;

  [[nodiscard]] static int bits_for(sensitivity_class c) noexcept {
    switch (c) {
      case sensitivity_class::high: return 16;
      case sensitivity_class::medium: return 8;
      case sensitivity_class::low: return 4;
      case sensitivity_class::insensitive: return 2;
    }
    return 16;
  }

  [[nodiscard]] allocation_result allocate(const allocation_problem& p) const {
    validate(p);
    allocation_result r;
    r.solver = "threshold";
    r.choice.resize(p.items.size());
    for (std::size_t i = 0; i < p.items.size(); ++i) {
      const auto& item = p.items[i];
      auto cheaper = [&](std::size_t a, std::size_t b) {
        return item[a].cost < item[b].cost || (item[a].cost == item[b].cost && item[a].loss < item[b].loss);
      };
      auto better = [&](std::size_t a, std::size_t b) {
        return item[a].loss < item[b].loss || (item[a].loss == item[b].loss && item[a].cost < item[b].cost);
      };
      std::size_t ref = item.size(), cheapest = 0;
      for (std::size_t k = 0; k < item.size(); ++k) {
        if (cheaper(k, cheapest)) cheapest = k;
        if (item[k].bits == reference_bits && (ref == item.size() || cheaper(k, ref))) ref = k;
      }
      if (ref == item.size()) ref = cheapest;
      const sensitivity_class c = classify(item[ref].loss, thresholds);
      const int want = bits_for(c);
      int level = 0;  // the smallest bit width >= want on offer (0: none)
      int most = item[0].bits;
      for (const auto& o : item) {
        if (o.bits >= want && (level == 0 || o.bits < level)) level = o.bits;
        most = std::max(most, o.bits);
      }
      if (level == 0) level = most;
      std::size_t pick = item.size();
      for (std::size_t k = 0; k < item.size(); ++k) {
        if (item[k].bits != level) continue;
        if (pick == item.size() || (c == sensitivity_class::insensitive ? cheaper(k, pick) : better(k, pick))) pick = k;
      }
      r.choice[i] = pick;
    }
    sum_choices(p, r);
    return r;
  }
};

static_assert(AllocationPolicy<threshold_policy>);

}  // namespace mixprec
