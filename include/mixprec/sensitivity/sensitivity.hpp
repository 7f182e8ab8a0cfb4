// Everything of the sensitivity analysis that needs only Eigen and xsimd (JSON: report_json.hpp).
#pragma once

#include "mixprec/sensitivity/classify.hpp"
#include "mixprec/sensitivity/hessian.hpp"
#include "mixprec/sensitivity/input_moments.hpp"
#include "mixprec/sensitivity/kl.hpp"
#include "mixprec/layer.hpp"
#include "mixprec/sensitivity/metrics.hpp"
#include "mixprec/model.hpp"
#include "mixprec/sensitivity/probe.hpp"
#include "mixprec/sensitivity/progress.hpp"
#include "mixprec/sensitivity/rank.hpp"
#include "mixprec/sensitivity/scoped_swap.hpp"
#include "mixprec/sensitivity/report.hpp"
#include "mixprec/sensitivity/to_table.hpp"
#include "mixprec/sensitivity/weight_sensitivity.hpp"
