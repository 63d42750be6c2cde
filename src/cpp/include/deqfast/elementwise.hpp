// phi (or phi') of an array, elementwise: the activation work of the finite-width DEQ's
// forward map and of its adjoint (docs/theory.md §2, §3).
//
// The smooth kinds call the branch-free functions of simd_math.hpp inside `#pragma omp
// simd` loops (one loop per kind, the switch outside), so they vectorise; each computes in
// double and rounds once to Scalar, as Scalar(phi(double(x))) does, with the formulas of
// Activation::raw / deriv (e.g. tanh' = 1 - tanh^2). In double the values agree with the
// C library's to a few ulp (tests/test_activation_elementwise.py: 2-3 ulp of NumPy/SciPy);
// in float32 they are the scalar path's values rounded, up to near-ties (none differed
// over the test's arguments), so a float32 solve is unchanged. Erf, Gelu, Polynomial and
// Hermite keep the scalar calls.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <type_traits>

#include "deqfast/activation.hpp"
#include "deqfast/simd_math.hpp"

namespace deqfast {

namespace detail {

/// out[i] = Scalar(f(double(in[i]))), vectorised (f must be inlinable and branch-free).
/// float goes through a double buffer of kBlock elements on the stack (in L1): with the
/// conversions inside the loop, GCC 12 narrows the selects (x > 0 ? 1 : a e^x, the clamp
/// of exp_vec) to float-width masks over double data, or threads them into branches, and
/// does not vectorise those loops; double-to-double loops it does.
template <class Scalar, class F>
inline void map_elementwise(const Scalar* in, Scalar* out, std::ptrdiff_t len, F f) {
  if constexpr (std::is_same_v<Scalar, double>) {
#pragma omp simd
    for (std::ptrdiff_t i = 0; i < len; ++i) out[i] = f(in[i]);
  } else {
    constexpr std::ptrdiff_t kBlock = 512;
    alignas(64) double buf[kBlock];
    for (std::ptrdiff_t i0 = 0; i0 < len; i0 += kBlock) {
      const std::ptrdiff_t nb = std::min(kBlock, len - i0);
#pragma omp simd
      for (std::ptrdiff_t i = 0; i < nb; ++i) buf[i] = double(in[i0 + i]);
#pragma omp simd
      for (std::ptrdiff_t i = 0; i < nb; ++i) buf[i] = f(buf[i]);
#pragma omp simd
      for (std::ptrdiff_t i = 0; i < nb; ++i) out[i0 + i] = Scalar(buf[i]);
    }
  }
}

/// map_elementwise of the value `f` or, when `deriv`, of the derivative `df`.
template <class Scalar, class F, class DF>
inline void map_value_or_deriv(const Scalar* in, Scalar* out, std::ptrdiff_t len, bool deriv, F f, DF df) {
  if (deriv)
    map_elementwise(in, out, len, df);
  else
    map_elementwise(in, out, len, f);
}

}  // namespace detail

/// out[i] = phi(in[i]) (with the centring shift), or phi'(in[i]) when `deriv`.
template <class Scalar>
void activation_elementwise(const Activation& phi, const Scalar* in, Scalar* out, std::ptrdiff_t len, bool deriv) {
  using detail::map_value_or_deriv;
  const double sh = phi.shift, a = phi.p0, c = phi.p1;
  switch (phi.kind) {
    case Kind::PiecewiseLinear: {  // in Scalar arithmetic: exact up to the one product
      const Scalar sp = Scalar(phi.p0), sn = Scalar(phi.p1);
      if (deriv) {
#pragma omp simd
        for (std::ptrdiff_t i = 0; i < len; ++i) out[i] = in[i] > Scalar(0) ? sp : sn;
      } else {
        const Scalar s = Scalar(phi.shift);
#pragma omp simd
        for (std::ptrdiff_t i = 0; i < len; ++i) out[i] = (in[i] > Scalar(0) ? sp : sn) * in[i] - s;
      }
      return;
    }
    case Kind::Tanh:  // tanh' = 1 - tanh^2, as Activation::deriv
      return map_value_or_deriv(
          in, out, len, deriv, [sh](double x) { return tanh_vec(x) - sh; },
          [](double x) {
            const double t = tanh_vec(x);
            return 1.0 - t * t;
          });
    case Kind::Sigmoid:
      return map_value_or_deriv(
          in, out, len, deriv, [sh](double x) { return sigmoid_vec(x) - sh; },
          [](double x) {
            const double s = sigmoid_vec(x);
            return s * (1.0 - s);
          });
    case Kind::Swish:
      return map_value_or_deriv(
          in, out, len, deriv, [sh](double x) { return x * sigmoid_vec(x) - sh; },
          [](double x) {
            const double s = sigmoid_vec(x);
            return s + x * s * (1.0 - s);
          });
    case Kind::Softplus:  // log(1 + e^x) = max(x, 0) + log(1 + e^-|x|)
      return map_value_or_deriv(
          in, out, len, deriv,
          [sh](double x) { return (x > 0 ? x : 0.0) + log1p_unit_vec(exp_vec(-std::abs(x))) - sh; },
          [](double x) { return sigmoid_vec(x); });
    case Kind::Elu:
      return map_value_or_deriv(
          in, out, len, deriv, [a, sh](double x) { return (x > 0 ? x : a * expm1_vec(x)) - sh; },
          [a](double x) { return x > 0 ? 1.0 : a * exp_vec(x); });
    case Kind::Clip:
      return map_value_or_deriv(
          in, out, len, deriv, [a, c, sh](double x) { return a * (x > c ? c : (x < -c ? -c : x)) - sh; },
          [a, c](double x) { return (x > -c && x < c) ? a : 0.0; });
    default:  // Erf, Gelu, Polynomial, Hermite: the scalar functions
      break;
  }
  if (deriv) {
    for (std::ptrdiff_t i = 0; i < len; ++i) out[i] = Scalar(phi.deriv(double(in[i])));
  } else {
    for (std::ptrdiff_t i = 0; i < len; ++i) out[i] = Scalar(phi(double(in[i])));
  }
}

}  // namespace deqfast
