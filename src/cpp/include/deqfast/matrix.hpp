// The matrix aliases shared by the core: row-major storage matches NumPy's C order, so the
// bindings map arrays without copies.
#pragma once

#include <Eigen/Dense>

namespace deqfast {

template <class Scalar>
using RowMat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Scalar>
using ColMat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
using RowMatrix = RowMat<double>;

}  // namespace deqfast
