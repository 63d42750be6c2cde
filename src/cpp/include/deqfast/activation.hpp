// Activation functions phi and their derivatives (docs/theory.md §2).
//
// Plain C++17: no pybind11 here. An Activation is a small value type (kind +
// parameters + centring shift) so it can be copied into OpenMP regions.
#pragma once

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace deqfast {

constexpr double kPi = 3.14159265358979323846;
constexpr double kSqrt2 = 1.41421356237309504880;
constexpr double kSqrt2Pi = 2.50662827463100050242;  // sqrt(2 pi)
constexpr double kInvSqrtPi = 0.56418958354775628695;  // 1/sqrt(pi)

enum class Kind {
  PiecewiseLinear,  // s_pos * max(x,0) + s_neg * min(x,0); linear/relu/leaky_relu are special cases
  Tanh,
  Erf,
  Sigmoid,
  Swish,     // x * sigmoid(x)
  Gelu,      // x * Phi(x)
  Softplus,  // log(1 + e^x)
  Elu,       // x (x > 0), alpha (e^x - 1) (x <= 0)
  Clip,      // a * clip(x, -c, c)
  Polynomial,  // sum_k coef[k] x^k
  Hermite,     // sum_k coef[k] He_k(x)  (probabilists' Hermite polynomials)
};

struct Activation {
  Kind kind = Kind::PiecewiseLinear;
  double p0 = 1.0;  // s_pos | alpha (elu) | a (clip)
  double p1 = 0.0;  // s_neg | c (clip)
  std::vector<double> coef;  // polynomial / Hermite coefficients
  double shift = 0.0;        // phi(x) = raw(x) - shift  (centring, theory page §2)

  static double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
    const double e = std::exp(x);
    return e / (1.0 + e);
  }

  /// Monomial coefficients of the polynomial (Hermite converted), for poly kinds.
  std::vector<double> monomial() const {
    if (kind == Kind::Polynomial) return coef;
    // He_{k+1} = x He_k - k He_{k-1}
    const std::size_t n = coef.size();
    std::vector<double> out(n, 0.0), hm1(n, 0.0), h(n, 0.0), hp1(n, 0.0);
    if (n == 0) return out;
    h[0] = 1.0;
    for (std::size_t k = 0; k < n; ++k) {
      for (std::size_t j = 0; j < n; ++j) out[j] += coef[k] * h[j];
      if (k + 1 == n) break;
      for (std::size_t j = 0; j < n; ++j) {
        hp1[j] = (j > 0 ? h[j - 1] : 0.0) - double(k) * hm1[j];
      }
      hm1 = h;
      h = hp1;
    }
    return out;
  }

  bool is_polynomial() const { return kind == Kind::Polynomial || kind == Kind::Hermite; }

  /// Raw value (without the centring shift).
  double raw(double x) const {
    switch (kind) {
      case Kind::PiecewiseLinear: return x > 0 ? p0 * x : p1 * x;
      case Kind::Tanh: return std::tanh(x);
      case Kind::Erf: return std::erf(x);
      case Kind::Sigmoid: return sigmoid(x);
      case Kind::Swish: return x * sigmoid(x);
      case Kind::Gelu: return 0.5 * x * std::erfc(-x / kSqrt2);
      case Kind::Softplus: return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
      case Kind::Elu: return x > 0 ? x : p0 * std::expm1(x);
      case Kind::Clip: return p0 * (x > p1 ? p1 : (x < -p1 ? -p1 : x));
      case Kind::Polynomial: {
        double r = 0.0;
        for (std::size_t k = coef.size(); k-- > 0;) r = r * x + coef[k];
        return r;
      }
      case Kind::Hermite: {
        double hm1 = 0.0, h = 1.0, r = 0.0;
        for (std::size_t k = 0; k < coef.size(); ++k) {
          r += coef[k] * h;
          const double hp1 = x * h - double(k) * hm1;
          hm1 = h;
          h = hp1;
        }
        return r;
      }
    }
    return 0.0;
  }

  double operator()(double x) const { return raw(x) - shift; }

  /// First derivative (one-sided value at kinks: the right derivative at 0 for ReLU is 0,
  /// a measure-zero choice that does not affect any Gaussian expectation).
  double deriv(double x) const {
    switch (kind) {
      case Kind::PiecewiseLinear: return x > 0 ? p0 : p1;
      case Kind::Tanh: {
        const double t = std::tanh(x);
        return 1.0 - t * t;
      }
      case Kind::Erf: return 2.0 * kInvSqrtPi * std::exp(-x * x);
      case Kind::Sigmoid: {
        const double s = sigmoid(x);
        return s * (1.0 - s);
      }
      case Kind::Swish: {
        const double s = sigmoid(x);
        return s + x * s * (1.0 - s);
      }
      case Kind::Gelu: return 0.5 * std::erfc(-x / kSqrt2) + x * std::exp(-0.5 * x * x) / kSqrt2Pi;
      case Kind::Softplus: return sigmoid(x);
      case Kind::Elu: return x > 0 ? 1.0 : p0 * std::exp(x);
      case Kind::Clip: return (x > -p1 && x < p1) ? p0 : 0.0;
      case Kind::Polynomial: {
        double r = 0.0;
        for (std::size_t k = coef.size(); k-- > 1;) r = r * x + double(k) * coef[k];
        return r;
      }
      case Kind::Hermite: {
        // He_k' = k He_{k-1}
        double hm1 = 0.0, h = 1.0, r = 0.0;
        for (std::size_t k = 0; k + 1 < coef.size(); ++k) {
          r += coef[k + 1] * double(k + 1) * h;
          const double hp1 = x * h - double(k) * hm1;
          hm1 = h;
          h = hp1;
        }
        return r;
      }
    }
    return 0.0;
  }

  /// Points where phi or one of its first two derivatives jumps; Gaussian quadrature
  /// is split there (a kink spoils the spectral convergence of plain quadrature).
  std::vector<double> kinks() const {
    switch (kind) {
      case Kind::PiecewiseLinear: return p0 == p1 ? std::vector<double>{} : std::vector<double>{0.0};
      case Kind::Elu: return {0.0};
      case Kind::Clip: return {-p1, p1};
      default: return {};
    }
  }
};

inline Activation make_activation(const std::string& name, const std::vector<double>& params,
                                  const std::vector<double>& coef, double shift) {
  Activation a;
  a.shift = shift;
  auto need = [&](std::size_t k) {
    if (params.size() != k)
      throw std::invalid_argument("activation '" + name + "' takes " + std::to_string(k) +
                                  " parameter(s), got " + std::to_string(params.size()));
  };
  if (name == "lrelu") {
    need(2);
    a.kind = Kind::PiecewiseLinear;
    a.p0 = params[0];
    a.p1 = params[1];
  } else if (name == "tanh") {
    need(0);
    a.kind = Kind::Tanh;
  } else if (name == "erf") {
    need(0);
    a.kind = Kind::Erf;
  } else if (name == "sigmoid") {
    need(0);
    a.kind = Kind::Sigmoid;
  } else if (name == "swish") {
    need(0);
    a.kind = Kind::Swish;
  } else if (name == "gelu") {
    need(0);
    a.kind = Kind::Gelu;
  } else if (name == "softplus") {
    need(0);
    a.kind = Kind::Softplus;
  } else if (name == "elu") {
    need(1);
    a.kind = Kind::Elu;
    a.p0 = params[0];
  } else if (name == "clip") {
    need(2);
    a.kind = Kind::Clip;
    a.p0 = params[0];
    a.p1 = params[1];
    if (!(a.p1 > 0)) throw std::invalid_argument("clip: c must be > 0");
  } else if (name == "polynomial" || name == "hermite") {
    need(0);
    a.kind = name == "polynomial" ? Kind::Polynomial : Kind::Hermite;
    if (coef.empty()) throw std::invalid_argument(name + ": needs at least one coefficient");
    a.coef = coef;
  } else {
    throw std::invalid_argument("unknown activation kind '" + name + "'");
  }
  return a;
}

}  // namespace deqfast
