// Branch-free special functions that the compiler can vectorise inside `#pragma omp simd`
// loops (the C library's acos is an opaque call, one pair at a time).
#pragma once

#include <cmath>

#include "deqfast/activation.hpp"

namespace deqfast {

/// arcsin(y) for |y| <= 0.5 (Cephes asin.c, S. L. Moshier: y + y^3 P(y^2)/Q(y^2), relative
/// error about 1e-16 on |y| <= 0.625).
inline double asin_reduced(double y) {
  const double z = y * y;
  const double p =
      ((((4.253011369004428248960e-3 * z - 6.019598008014123785661e-1) * z + 5.444622390564711410273e0) * z -
        1.626247967210700244449e1) * z + 1.956261983317594739197e1) * z - 8.198089802484824371615e0;
  const double q =
      ((((z - 1.474091372988853791896e1) * z + 7.049610280856842141659e1) * z - 1.471791292232726029859e2) * z +
       1.395105614657485689735e2) * z - 4.918853881490881290097e1;
  return y + y * (z * p / q);
}

/// The shared range reduction of acos_vec and asin_vec for a = |x| in [0, 1]: r = arcsin(a)
/// when a <= 1/2, else (big) r = arcsin(sqrt((1 - a)/2)), so that arcsin(a) = pi/2 - 2 r.
/// The square root is taken unconditionally: a select, not a branch.
inline double asin_half_angle(double a, bool& big) {
  big = a > 0.5;
  const double h = std::sqrt(0.5 * (1.0 - a));
  return asin_reduced(big ? h : a);
}

/// arccos(x) for x in [-1, 1], without branches: for |x| > 1/2, arccos|x| = 2 arcsin(sqrt((1 - |x|)/2)),
/// else pi/2 - arcsin|x|; negative x by arccos(-x) = pi - arccos(x). Measured within 1.25 ulp of a
/// long-double arccos over [-1, 1]; tests/test_kernels.py checks it against NumPy to 2 ulp.
inline double acos_vec(double x) {
  bool big;
  const double r = asin_half_angle(std::abs(x), big);
  const double t = big ? 2.0 * r : 0.5 * kPi - r;
  return x < 0 ? kPi - t : t;
}

/// arcsin(x) for x in [-1, 1], without branches (odd in x). tests/test_kernels.py checks it
/// against NumPy to 2 ulp.
inline double asin_vec(double x) {
  bool big;
  const double r = asin_half_angle(std::abs(x), big);
  const double t = big ? 0.5 * kPi - 2.0 * r : r;
  return x < 0 ? -t : t;
}

}  // namespace deqfast
