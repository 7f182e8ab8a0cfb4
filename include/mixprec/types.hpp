// Shared vocabulary: the Eigen types mixprec takes and returns.
#pragma once

#include <Eigen/Core>

namespace mixprec {

// Weights are (output channels) x (input channels), stored row-major so that a channel and its groups
// are contiguous. Functions take Eigen::Ref<const row_matrix>: a column-major argument is accepted too
// (Eigen makes a row-major temporary).
using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using row_matrix_ref = Eigen::Ref<const row_matrix>;
using index_t = Eigen::Index;

}  // namespace mixprec
