// Branch-free special functions that the compiler can vectorise inside `#pragma omp simd`
// loops (the C library's acos is an opaque call, one pair at a time).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

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

/// e^r - 1 for |r| <= 1/2 as 2 r P(r^2) / (Q(r^2) - r P(r^2)) (Cephes exp.c and unity.c,
/// S. L. Moshier): the reduced step of exp_vec and the small-argument branch of expm1_vec.
inline double expm1_reduced(double r) {
  const double rr = r * r;
  const double p = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr + 9.99999999999999999910e-1);
  const double q = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr + 2.27265548208155028766e-1) * rr +
                   2.00000000000000000009e0;
  return 2.0 * p / (q - p);
}

/// e^x without branches (Cephes exp.c, S. L. Moshier: x = k ln 2 + r, |r| <= ln 2 / 2,
/// e^r = 1 + 2 r P(r^2) / (Q(r^2) - r P(r^2)), times 2^k built in the exponent bits); relative
/// error about 1 ulp. x is clamped to [-700, 700] (no overflow; e^-700 ~ 1e-304).
inline double exp_vec(double x) {
  constexpr double log2e = 1.4426950408889634073599, c1 = 6.93145751953125e-1, c2 = 1.42860682030941723212e-6;
  constexpr double magic = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer
  x = x < -700.0 ? -700.0 : (x > 700.0 ? 700.0 : x);
  const double t = x * log2e + magic;
  const double k = t - magic;
  std::int64_t bits;
  std::memcpy(&bits, &t, sizeof bits);
  const std::int64_t e = (bits - std::int64_t(0x4338000000000000) + 1023) << 52;  // 2^k
  double scale;
  std::memcpy(&scale, &e, sizeof scale);
  const double r = (x - k * c1) - k * c2;
  return (1.0 + expm1_reduced(r)) * scale;
}

/// e^x - 1 without branches, accurate relative to the result near 0 (Cephes expm1 of unity.c,
/// S. L. Moshier: the rational of expm1_reduced on |x| <= 1/2, else exp_vec(x) - 1, which
/// cancels at most one bit there); both are computed, one is selected. About 1 ulp relative.
inline double expm1_vec(double x) {
  const double small = expm1_reduced(x);
  const double big = exp_vec(x) - 1.0;
  return std::abs(x) <= 0.5 ? small : big;
}

/// log(1 + u) for u in [0, 1] without branches (the softplus argument e^-|x|), about 1 ulp
/// relative: log(1 + t) = t - t^2/2 + t^3 P(t)/Q(t) on 1 + t in [sqrt(1/2), sqrt(2)] (Cephes
/// log1p of unity.c, S. L. Moshier); for u > sqrt(2) - 1 as ln 2 + log(1 + (u - 1)/2), whose
/// argument (u - 1)/2 lies in (1 - sqrt(2))/2 .. 0, inside that interval.
inline double log1p_unit_vec(double u) {
  constexpr double ln2_hi = 6.93145751953125e-1, ln2_lo = 1.42860682030941723212e-6;
  const bool big = u > 0.41421356237309504880;
  const double t = big ? 0.5 * (u - 1.0) : u;
  const double tt = t * t;
  const double p = (((((4.5270000862445199635215e-5 * t + 4.9854102823193375972212e-1) * t + 6.5787325942061044846969e0) *
                          t + 2.9911919328553073277375e1) * t + 6.0949667980987787057556e1) * t +
                    5.7112963590585538103336e1) * t + 2.0039553499201281259648e1;
  const double q = (((((t + 1.5062909083469192043167e1) * t + 8.3047565967967209469434e1) * t +
                      2.2176239823732856465394e2) * t + 3.0909872225312059774938e2) * t +
                    2.1642788614495947685003e2) * t + 6.0118660497603843919306e1;
  const double l = t + (-0.5 * tt + t * (tt * p / q));
  return big ? (l + ln2_lo) + ln2_hi : l;
}

/// tanh(y) without branches, to about 1 ulp relative: for |y| >= 0.625 as
/// sign(y) (1 - 2 / (e^(2|y|) + 1)), below it (where that form cancels: tanh(y) ~ y) as
/// y + y^3 P(y^2)/Q(y^2) (Cephes tanh.c, S. L. Moshier); both are computed, one is selected.
inline double tanh_vec(double y) {
  const double a = std::abs(y);
  const double t = 1.0 - 2.0 / (exp_vec(2.0 * a) + 1.0);
  const double z = y * y;
  const double p = (-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z - 1.61468768441708447952e3;
  const double q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z + 4.84406305325125486048e3;
  const double small = y + y * z * p / q;
  const double big = y < 0 ? -t : t;
  return a < 0.625 ? small : big;
}

/// The logistic sigmoid 1 / (1 + e^-y) without branches (absolute error about 1e-16).
inline double sigmoid_vec(double y) { return 1.0 / (1.0 + exp_vec(-y)); }

}  // namespace deqfast
