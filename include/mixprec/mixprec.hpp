// Umbrella header: everything in mixprec that needs only Eigen and xsimd.
#pragma once

#include "mixprec/types.hpp"
#include "mixprec/error.hpp"
#include "mixprec/formats/float_convert.hpp"
#include "mixprec/formats/formats.hpp"
#include "mixprec/quantize/quantize.hpp"
#include "mixprec/quantize/spec.hpp"
#include "mixprec/version.hpp"
#include "mixprec/sensitivity/sensitivity.hpp"
#include "mixprec/plan/plan.hpp"
#include "mixprec/qat/fake_quant.hpp"
