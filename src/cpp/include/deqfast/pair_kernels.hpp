// Scalar pair kernels (docs/theory.md §3): the two-point expectations g = E[phi(u) phi(v)],
// gd = E[phi'(u) phi'(v)] of one pair (closed forms, Mehler's series, 2-D quadrature) and the
// safeguarded Newton solve of one pair's fixed point s = sigma_a2 g(s) + sigma_b2 x_i.x_j.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "deqfast/activation.hpp"
#include "deqfast/diagonal.hpp"
#include "deqfast/quadrature.hpp"
#include "deqfast/simd_math.hpp"

namespace deqfast {

/// Taylor coefficients w_0 .. w_n of phi(a + h) = sum_m w_m h^m (w_m = phi^(m)(a) / m!) for the
/// smooth activations (tanh, sigmoid, softplus, swish, gelu), n <= kMaxJet. From the ODEs
/// tanh' = 1 - tanh^2 and sigma' = sigma (1 - sigma) (power-series products: no large
/// alternating coefficients, so the absolute error stays ~eps per coefficient, which is what the
/// Gaussian averages need), and for gelu from Phi^(m) = (-1)^(m-1) He_(m-1) varphi. Returns false
/// for any other kind.
constexpr int kMaxJet = 17;
inline bool smooth_jet(const Activation& phi, double a, int n, double* w) {
  static const auto inv = [] {  // 1 / m: multiplications instead of divisions in the recursions
    std::array<double, kMaxJet + 2> r{};
    for (int m = 1; m <= kMaxJet + 1; ++m) r[m] = 1.0 / m;
    return r;
  }();
  double c[kMaxJet + 2];
  auto logistic = [&](double x, double* t) {  // Taylor coefficients of sigma(x + h), t[0..n]
    const double s = Activation::sigmoid(x);
    t[0] = s;
    if (n >= 1) t[1] = s * (1.0 - s);
    for (int m = 1; m < n; ++m) {  // (m+1) t_{m+1} = t_m - sum_{i=0}^{m} t_i t_{m-i}
      double acc = t[m] * (1.0 - 2.0 * s);
      for (int i = 1; i < m; ++i) acc -= t[i] * t[m - i];
      t[m + 1] = acc * inv[m + 1];
    }
  };
  switch (phi.kind) {
    case Kind::Tanh: {
      const double t = std::tanh(a);
      w[0] = t;
      if (n >= 1) w[1] = (1.0 - t) * (1.0 + t);
      for (int m = 1; m < n; ++m) {  // (m+1) w_{m+1} = -sum_{i=0}^{m} w_i w_{m-i}
        double acc = -2.0 * t * w[m];
        for (int i = 1; i < m; ++i) acc -= w[i] * w[m - i];
        w[m + 1] = acc * inv[m + 1];
      }
      break;
    }
    case Kind::Sigmoid: logistic(a, w); break;
    case Kind::Softplus: {  // softplus' = sigma
      logistic(a, c);
      w[0] = phi.raw(a);
      for (int m = 1; m <= n; ++m) w[m] = c[m - 1] * inv[m];
      break;
    }
    case Kind::Swish: {  // (a + h) sigma(a + h)
      logistic(a, c);
      w[0] = a * c[0];
      for (int m = 1; m <= n; ++m) w[m] = a * c[m] + c[m - 1];
      break;
    }
    case Kind::Gelu: {  // (a + h) Phi(a + h), Phi's coefficients (-1)^(m-1) He_(m-1)(a) varphi(a) / m!
      const double pdf = std::exp(-0.5 * a * a) / kSqrt2Pi;
      c[0] = 0.5 * std::erfc(-a / kSqrt2);
      double r0 = 1.0, r1 = a;  // He_k(a) / k! for k = m-2, m-1 (r_{k+1} = (a r_k - r_{k-1}) / (k+1))
      for (int m = 1; m <= n; ++m) {
        const double hk = m == 1 ? 1.0 : r1;  // He_(m-1)(a) / (m-1)!
        c[m] = ((m - 1) % 2 ? -1.0 : 1.0) * hk * pdf * inv[m];
        if (m >= 2) {
          const double r2 = (a * r1 - r0) * inv[m];  // He_m / m! from He_(m-1), He_(m-2)
          r0 = r1;
          r1 = r2;
        }
      }
      w[0] = a * c[0];
      for (int m = 1; m <= n; ++m) w[m] = a * c[m] + c[m - 1];
      break;
    }
    default: return false;
  }
  w[0] -= phi.shift;
  return true;
}

/// Number of terms K of the heat series E f(a + b y) = sum_{k=0}^{K} (b^2/2)^k / k! f^(2k)(a),
/// y ~ N(0, 1), for f = phi and phi' of a smooth activation, or -1 when b is too large for it.
/// The derivatives of the smooth activations grow at most like m! (2/pi)^(m+1) (tanh, singular at
/// +-i pi/2; the others are farther, swish and gelu up to a factor |a|), so term k of the phi'
/// series is below T_k = (b^2/2)^k / k! (2k+1)! (2/pi)^(2k+2), T_k / T_(k-1) = 0.405 b^2 (2k+1);
/// the first omitted term must stay below 1e-19.
inline int heat_terms(double b) {
  constexpr double c = 4.0 / (kPi * kPi);
  double t = c;  // T_0
  for (int k = 1; 2 * k - 1 <= kMaxJet; ++k) {
    t *= c * b * b * (2 * k + 1);
    if (t <= 1e-19) return k - 1;
  }
  return -1;
}

/// Bounds B_m >= sup_x |phi^(m)(x)|, m = 0 .. kMaxJet (B_0 unused), for tanh and sigmoid, from
/// Cauchy's estimate on a disc of radius r about a real point: |phi^(m)(x)| <= m! M(r) / r^m with
/// M(r) the bound of |phi - phi(0)| on the strip |Im z| <= r. For tanh, |tanh(x + i t)|^2 =
/// (cosh 2x - cos 2t) / (cosh 2x + cos 2t) <= max(1, tan^2 t), so M(r) = max(1, tan r) for
/// r < pi/2; sigmoid(z) - 1/2 = tanh(z/2) / 2 gives M(r) = max(1, tan(r/2)) / 2 for r < pi. Every
/// r gives a valid bound; the table keeps the smallest over a grid of r.
inline const std::array<double, kMaxJet + 1>& end_series_bounds(Kind kind) {
  auto table = [](double c, double amp) {  // c: the strip's half-width in units of pi/2
    std::array<double, kMaxJet + 1> B{};
    for (int m = 0; m <= kMaxJet; ++m) {
      double best = HUGE_VAL;
      for (int k = 1; k < 400; ++k) {
        const double r = c * 0.5 * kPi * k / 400.0;
        double v = amp * std::max(1.0, std::tan(r / c));
        for (int q = 1; q <= m; ++q) v *= q / r;  // m! / r^m
        best = std::min(best, v);
      }
      B[m] = best;
    }
    return B;
  };
  static const auto tanh_bounds = table(1.0, 1.0), sigmoid_bounds = table(2.0, 0.5);
  return kind == Kind::Tanh ? tanh_bounds : sigmoid_bounds;
}

/// Taylor series of the two-point expectations about an end of their range, s0 = +-sqrt(d_i d_j)
/// (rho = +-1): by Price's theorem (docs/theory.md §3) g^(n)(s) = E[phi^(n)(u) phi^(n)(v)] at
/// fixed variances, and at rho = +-1, v = +-sqrt(d_j / d_i) u, so with h = s - s0
///   g(s) = sum_n e_n h^n,  gd(s) = g'(s) = sum_n (n + 1) e_(n+1) h^n,
///   e_n = c_n / n!,  c_n = E[phi^(n)(sqrt(d_i) x) phi^(n)(+-sqrt(d_j) x)],  x ~ N(0, 1).
/// The c_n do not depend on s: one one-dimensional quadrature per pair serves every Newton step
/// near the end. The series stops after N terms, the first N whose Lagrange remainders
/// B_N^2 |h|^N / N! (g) and B_(N+1)^2 |h|^N / N! (gd) are below 1e-17, with B_m the derivative
/// bounds of end_series_bounds and |g^(N)| <= B_N^2 by Cauchy–Schwarz.
struct EndSeries {
  double s0 = 0.0;
  int n = -1;  // e_0 .. e_n are held (-1: none yet)
  double e[kMaxJet + 1];
};

/// E phi(a + b y) and E phi'(a + b y), y ~ N(0, 1), in closed form for the kinked activations
/// (ELU, clip): both are piecewise exponential or linear, whose Gaussian averages are normal
/// CDFs. Beyond 9 b of a kink the far piece's weight is below 1e-18 and is dropped.
inline void kinked_smooth(const Activation& phi, double a, double b, double& F, double& D) {
  auto cdf = [](double z) { return 0.5 * std::erfc(-z / kSqrt2); };
  auto pdf = [](double z) { return std::exp(-0.5 * z * z) / kSqrt2Pi; };
  // R(m) = E (a + b y - m)_+ and its derivative in a
  auto ramp = [&](double m, double& r, double& dr) {
    const double t = (a - m) / b;
    if (t >= 9.0) {
      r = a - m;
      dr = 1.0;
    } else if (t <= -9.0) {
      r = dr = 0.0;
    } else {
      dr = cdf(t);
      r = (a - m) * dr + b * pdf(t);
    }
  };
  if (phi.kind == Kind::Clip) {  // p0 clip(z, -c, c) = p0 (-c + (z + c)_+ - (z - c)_+)
    const double c = phi.p1;
    double r1, d1, r2, d2;
    ramp(-c, r1, d1);
    ramp(c, r2, d2);
    F = phi.p0 * (-c + r1 - r2) - phi.shift;
    D = phi.p0 * (d1 - d2);
    return;
  }
  // ELU: z_+ + alpha (e^z - 1) 1{z <= 0}; E e^z 1{z <= 0} = e^(a + b^2/2) Phi(-a/b - b)
  const double t = a / b, alpha = phi.p0;
  double r, dr, ez;
  ramp(0.0, r, dr);
  if (t >= 9.0) {
    ez = 0.0;  // below varphi(t) / (t + b) < e^(-t^2/2) <= 2.6e-18
  } else if (-t - b >= 9.0) {
    ez = std::exp(a + 0.5 * b * b);  // Phi(-t - b) = 1 to 1e-19
  } else {
    // e^(a + b^2/2) Phi(-t - b) = exp(a + b^2/2 + log Phi(-t - b)): no overflow for large a, b
    const double q = cdf(-t - b);
    ez = q > 0.0 ? std::exp(a + 0.5 * b * b + std::log(q)) : 0.0;
  }
  F = r + alpha * (ez - (1.0 - dr)) - phi.shift;
  D = dr + alpha * ez;
}

/// Two-point expectations at (d_i, d_j, s): g = E[phi(u) phi(v)], gd = E[phi'(u) phi'(v)].
class PairEvaluator {
 public:
  PairEvaluator(const Activation& phi, const SampleData& a, const SampleData& b)
      : phi_(phi), a_(a), b_(b), method_(pair_method(phi)), K_(int(a.herm.cols())),
        ra_(a.d.cwiseSqrt()), rb_(b.d.cwiseSqrt()) {
    if (method_ == PairMethod::ArcCosine) {
      sneg_ = phi.p1;
      dlt_ = phi.p0 - phi.p1;
    }
    if (method_ == PairMethod::Mehler) {  // scales of the tail-bound targets
      sm2a_ = a.m2.cwiseSqrt();
      sm2b_ = b.m2.cwiseSqrt();
      se2a_ = a.e2.cwiseSqrt();
      se2b_ = b.e2.cwiseSqrt();
    }
  }

  PairMethod method() const { return method_; }

  /// Whether phi' or phi'' jumps (ELU, clip): then gd(s) is not analytic at |rho| = 1 (a
  /// (1 - rho)^(1/2) or ^(3/2) term), and the solver's second-order extrapolation of G, Gdot
  /// is replaced by an evaluation at the accepted S where the quadrature was used.
  bool kinked() const { return phi_.kind == Kind::Elu || phi_.kind == Kind::Clip; }

  /// Returns false when the Mehler series cannot meet its accuracy target (use quadrature).
  inline bool eval(Eigen::Index i, Eigen::Index j, double s, double& g, double& gd) const {
    const double ri = ra_[i], rj = rb_[j], sq = ri * rj;
    double rho = s / sq;
    rho = std::clamp(rho, -1.0, 1.0);
    switch (method_) {
      case PairMethod::ArcCosine: {
        const double th = std::acos(rho), sn = std::sqrt(std::max(0.0, 1.0 - rho * rho));
        const double J = sq / (2.0 * kPi) * (sn + (kPi - th) * rho);
        const double c = phi_.shift;
        const double Lu = dlt_ * ri / kSqrt2Pi, Lv = dlt_ * rj / kSqrt2Pi;
        g = (sneg_ * sneg_ + sneg_ * dlt_) * rho * sq + dlt_ * dlt_ * J - c * (Lu + Lv) + c * c;
        gd = sneg_ * sneg_ + sneg_ * dlt_ + dlt_ * dlt_ * (kPi - th) / (2.0 * kPi);
        return true;
      }
      case PairMethod::ArcSine: {
        const double u = 1.0 + 2.0 * ri * ri, v = 1.0 + 2.0 * rj * rj, ss = rho * sq;
        g = (2.0 / kPi) * std::asin(2.0 * ss / std::sqrt(u * v)) + phi_.shift * phi_.shift;
        gd = (4.0 / kPi) / std::sqrt(u * v - 4.0 * ss * ss);
        return true;
      }
      case PairMethod::Mehler: {
        const double* hi = a_.herm.row(i).data();
        const double* hj = b_.herm.row(j).data();
        const double ar = std::abs(rho);
        // Shortest series whose Cauchy–Schwarz tail bounds are negligible:
        //   |sum_{l>=k} h_l^i h_l^j rho^l|          <= |rho|^k     sqrt(tail_i(k)  tail_j(k))
        //   |sum_{l>=k} l h_l^i h_l^j rho^(l-1)|    <= |rho|^(k-1) sqrt(dtail_i(k) dtail_j(k))
        // with the square roots rtail, rdtail stored per sample (no sqrt in this loop).
        const double tg = 1e-15 * sm2a_[i] * sm2b_[j] + 1e-300;
        const double tgd = 1e-14 * se2a_[i] * se2b_[j] * sq + 1e-300;
        const double *ti = a_.rtail.row(i).data(), *tj = b_.rtail.row(j).data();
        const double *di = a_.rdtail.row(i).data(), *dj = b_.rdtail.row(j).data();
        auto ok = [&](int kk, double pkm1) {  // pkm1 = |rho|^(kk-1)
          return (pkm1 * ar * ti[kk] * tj[kk] <= tg) & (pkm1 * di[kk] * dj[kk] <= tgd);
        };
        int k = std::min(2, K_);  // rho = 0: g = h_0 h_0, gd = h_1 h_1 / sq exactly
        double pkm1 = ar;
        if (ar > 0.0) {
          k = 1;
          pkm1 = 1.0;
          while (k < K_ && !ok(k, pkm1)) {
            pkm1 *= ar;
            ++k;
          }
          if (!ok(k, pkm1)) return false;
        }
        double gs = 0.0, gds = 0.0;
        for (int l = k - 1; l >= 1; --l) {
          const double t = hi[l] * hj[l];
          gs = gs * rho + t;
          gds = gds * rho + l * t;
        }
        g = gs * rho + hi[0] * hj[0];
        gd = gds / sq;
        return true;
      }
    }
    return false;
  }

  /// g and gd at s = 0 (independent u, v): products of one-point moments, no special function.
  inline void eval_zero(Eigen::Index i, Eigen::Index j, double& g, double& gd) const {
    const double di = a_.d[i], dj = b_.d[j];
    switch (method_) {
      case PairMethod::ArcCosine: {
        const double c = phi_.shift;
        const double Lu = dlt_ * std::sqrt(di) / kSqrt2Pi - c, Lv = dlt_ * std::sqrt(dj) / kSqrt2Pi - c;
        g = Lu * Lv;
        gd = (sneg_ + 0.5 * dlt_) * (sneg_ + 0.5 * dlt_);
        return;
      }
      case PairMethod::ArcSine:
        g = phi_.shift * phi_.shift;
        gd = (4.0 / kPi) / std::sqrt((1.0 + 2.0 * di) * (1.0 + 2.0 * dj));
        return;
      case PairMethod::Mehler:
        g = a_.herm(i, 0) * b_.herm(j, 0);
        gd = a_.herm.cols() > 1 ? a_.herm(i, 1) * b_.herm(j, 1) / std::sqrt(di * dj) : 0.0;
        return;
    }
  }

  /// Quadrature for the pairs Mehler's series cannot take (rho near +-1): u = sqrt(d_i) x,
  /// v = a + b y with a = sqrt(d_j) rho x, b = sqrt(d_j (1 - rho^2)), x, y ~ N(0, 1) independent.
  /// The inner expectations E phi(a + b y), E phi'(a + b y) are one-dimensional functions of a:
  /// in closed form for the kinked activations (kinked_smooth), by the heat series on the
  /// activation's Taylor coefficients for the smooth ones (smooth_jet; heat_terms picks the
  /// length, b up to ~0.045). What remains is one integral over x: composite Gauss–Legendre
  /// (panels of width 1, 12 nodes, on [-9, 9]) split at the kinks of phi(u) and, for a kinked
  /// activation, at those of the smoothed inner function x_k = k / (sqrt(d_j) rho), graded
  /// towards x_k at distances w, 3 w, 9 w (w = b / (sqrt(d_j) |rho|), the width of the smoothed
  /// kink in x). Larger b for a smooth activation: eval_quadrature_2d.
  void eval_quadrature(Eigen::Index i, Eigen::Index j, double s, double& g, double& gd) const {
    EndSeries es;
    eval_quadrature(i, j, s, es, g, gd);
  }

  /// eval_quadrature with the pair's series about |rho| = 1 kept in `es` between calls (one per
  /// pair; see eval_end_series): the series where it applies, the quadrature below otherwise.
  void eval_quadrature(Eigen::Index i, Eigen::Index j, double s, EndSeries& es, double& g, double& gd) const {
    if (eval_end_series(i, j, s, es, g, gd)) return;
    const double si = std::sqrt(a_.d[i]), sj = std::sqrt(b_.d[j]);
    const double rho = std::clamp(s / (si * sj), -1.0, 1.0), r2 = std::sqrt(std::max(0.0, 1.0 - rho * rho));
    const double b = sj * r2;
    g = gd = 0.0;
    if (kinked()) {
      std::vector<double> breaks = scaled_kinks(phi_, si);
      const double w = r2 / std::abs(rho);
      if (w < 0.5)
        for (double k : phi_.kinks()) {
          const double xk = k / (sj * rho);
          for (double m : {0.0, 1.0, -1.0, 3.0, -3.0, 9.0, -9.0}) breaks.push_back(xk + m * w);
        }
      const Rule outer = gaussian_composite_rule(breaks, 9.0, 1.0, 12);
      const bool sharp = !(b > 1e-290);  // b = 0: v = a exactly
      for (std::size_t p = 0; p < outer.x.size(); ++p) {
        const double x1 = outer.x[p], u = si * x1, a = sj * rho * x1;
        double fv, dv;
        if (sharp) {
          fv = phi_(a);
          dv = phi_.deriv(a);
        } else {
          kinked_smooth(phi_, a, b, fv, dv);
        }
        g += outer.w[p] * phi_(u) * fv;
        gd += outer.w[p] * phi_.deriv(u) * dv;
      }
      return;
    }
    const int K = heat_terms(b);
    const bool jet = phi_.kind == Kind::Tanh || phi_.kind == Kind::Sigmoid || phi_.kind == Kind::Softplus ||
                     phi_.kind == Kind::Swish || phi_.kind == Kind::Gelu;  // the kinds smooth_jet takes
    if (K < 0 || !jet) {
      eval_quadrature_2d(i, j, s, g, gd);
      return;
    }
    static const Rule outer = gaussian_composite_rule({}, 9.0, 1.0, 12);  // no kinks: one rule
    // heat-series weights: F = sum_k cf_k w_(2k), D = sum_k cd_k w_(2k+1) with the Taylor
    // coefficients w_m = f^(m)(a) / m!: cf_k = (b^2/2)^k (2k)! / k!, cd_k = (b^2/2)^k (2k+1)! / k!
    double cf[kMaxJet + 1], cd[kMaxJet + 1];
    cf[0] = 1.0;
    cd[0] = 1.0;
    for (int k = 1; k <= K; ++k) {
      cf[k] = cf[k - 1] * 0.5 * b * b * (2 * k) * (2 * k - 1) / k;
      cd[k] = cf[k] * (2 * k + 1);
    }
    double w[kMaxJet + 2], wu[2];
    for (std::size_t p = 0; p < outer.x.size(); ++p) {
      const double x1 = outer.x[p];
      smooth_jet(phi_, si * x1, 1, wu);
      smooth_jet(phi_, sj * rho * x1, 2 * K + 1, w);
      double fv = 0.0, dv = 0.0;
      for (int k = K; k >= 0; --k) {  // smallest terms first
        fv += cf[k] * w[2 * k];
        dv += cd[k] * w[2 * k + 1];
      }
      g += outer.w[p] * wu[0] * fv;
      gd += outer.w[p] * wu[1] * dv;
    }
  }

  /// g and gd by the Taylor series about the nearer end of the range (EndSeries), for tanh and
  /// sigmoid (whose derivative bounds end_series_bounds gives). The coefficients are computed
  /// into `es` when it holds none for this end or too few; returns false (nothing computed) for
  /// other activations or when |s - s0| is too large for kMaxJet - 1 terms.
  bool eval_end_series(Eigen::Index i, Eigen::Index j, double s, EndSeries& es, double& g, double& gd) const {
    if (phi_.kind != Kind::Tanh && phi_.kind != Kind::Sigmoid) return false;
    const double sq = ra_[i] * rb_[j];
    const double s0 = s < 0 ? -sq : sq;
    const double h = s < 0 ? std::max(0.0, s - s0) : std::min(0.0, s - s0);  // |rho| <= 1, as eval
    const std::array<double, kMaxJet + 1>& B = end_series_bounds(phi_.kind);
    constexpr double target = 1e-17;
    const double ah = std::abs(h);
    double p = ah;  // |h|^N / N!
    int N = 1;
    while (N < kMaxJet && !(B[N] * B[N] * p <= target && B[N + 1] * B[N + 1] * p <= target)) {
      ++N;
      p *= ah / N;
    }
    if (N == kMaxJet) return false;
    if (es.n < N || es.s0 != s0) build_end_series(i, j, s0, N, es);
    double gs = 0.0, gds = 0.0;
    for (int m = N - 1; m >= 0; --m) {  // Horner, smallest terms first
      gs = gs * h + es.e[m];
      gds = gds * h + (m + 1) * es.e[m + 1];
    }
    g = gs;
    gd = gds;
    return true;
  }

  /// The coefficients e_0 .. e_n of the series about s0 = +-sqrt(d_i d_j) (EndSeries). phi - phi(0)
  /// is odd for tanh and sigmoid, so phi^(m) (m >= 1) has parity (-1)^(m+1): the integrands are
  /// even in x (composite Gauss–Legendre on [0, 9], panels of width 1, 12 nodes, the positive half
  /// of eval_quadrature's rule), and the end s0 < 0 (v = -sqrt(d_j) x) only flips signs:
  /// c_m(-) = (-1)^(m+1) c_m(+), and c_0 = phi(0)^2 +- E[(phi(u) - phi(0)) (phi(v) - phi(0))].
  /// Eight nodes at a time (lanes): branch-free tanh_vec / sigmoid_vec and the Taylor coefficients
  /// by smooth_jet's recursions across the lanes, which the compiler vectorises. Kept out of line:
  /// once per pair, and inlined it crowds the inliner's budget for eval_quadrature's kinked loop.
#if defined(__GNUC__)
  __attribute__((noinline))
#endif
  void build_end_series(Eigen::Index i, Eigen::Index j, double s0, int n, EndSeries& es) const {
    constexpr int L = 8;
    static const Rule half = [] {  // padded to whole lane groups by nodes of weight 0
      const Rule full = gaussian_composite_rule({}, 9.0, 1.0, 12);
      Rule r;
      for (std::size_t p = 0; p < full.x.size(); ++p)
        if (full.x[p] > 0) {
          r.x.push_back(full.x[p]);
          r.w.push_back(2.0 * full.w[p]);
        }
      while (r.x.size() % L != 0) {
        r.x.push_back(1.0);
        r.w.push_back(0.0);
      }
      return r;
    }();
    const bool th = phi_.kind == Kind::Tanh;
    const double si = ra_[i], sj = rb_[j], raw0 = th ? 0.0 : 0.5;  // raw0 = phi(0) + shift
    double acc[kMaxJet + 1][L] = {}, wu[kMaxJet + 1][L], wv[kMaxJet + 1][L];
    // Taylor coefficients W[m][l] = phi^(m)(y_l) / m! from the values W[0][l]: tanh' = 1 - tanh^2,
    // (m+1) w_(m+1) = -sum_(i=0..m) w_i w_(m-i); sigmoid' = s (1 - s), (m+1) t_(m+1) = t_m -
    // sum_(i=0..m) t_i t_(m-i) (smooth_jet)
    auto lane_jet = [&](double (*W)[L]) {
      if (n < 1) return;
#pragma omp simd
      for (int l = 0; l < L; ++l) W[1][l] = th ? (1.0 - W[0][l]) * (1.0 + W[0][l]) : W[0][l] * (1.0 - W[0][l]);
      for (int m = 1; m < n; ++m) {
        const double inv = 1.0 / (m + 1);
#pragma omp simd
        for (int l = 0; l < L; ++l) {
          double a = (th ? -2.0 * W[0][l] : 1.0 - 2.0 * W[0][l]) * W[m][l];
          for (int q = 1; q < m; ++q) a -= W[q][l] * W[m - q][l];
          W[m + 1][l] = a * inv;
        }
      }
    };
    for (std::size_t p0 = 0; p0 < half.x.size(); p0 += L) {
      const double *x = half.x.data() + p0, *w = half.w.data() + p0;
#pragma omp simd
      for (int l = 0; l < L; ++l) {
        wu[0][l] = th ? tanh_vec(si * x[l]) : sigmoid_vec(si * x[l]);
        wv[0][l] = th ? tanh_vec(sj * x[l]) : sigmoid_vec(sj * x[l]);
      }
      lane_jet(wu);
      lane_jet(wv);
#pragma omp simd
      for (int l = 0; l < L; ++l) acc[0][l] += w[l] * (wu[0][l] - raw0) * (wv[0][l] - raw0);
      for (int m = 1; m <= n; ++m) {
#pragma omp simd
        for (int l = 0; l < L; ++l) acc[m][l] += w[l] * wu[m][l] * wv[m][l];
      }
    }
    const double sign = s0 < 0 ? -1.0 : 1.0, phi0 = raw0 - phi_.shift;
    double fact = 1.0, sg = 1.0;  // m!, sign^(m+1)
    for (int m = 0; m <= n; ++m) {
      if (m > 0) fact *= m;
      sg *= sign;
      double sum = 0.0;
      for (int l = 0; l < L; ++l) sum += acc[m][l];
      es.e[m] = sg * fact * sum;  // c_m / m! = m! E[w_m(u) w_m(v)]
    }
    es.e[0] += phi0 * phi0;
    es.s0 = s0;
    es.n = n;
  }

  /// Two-dimensional quadrature (eval_quadrature's fallback for a smooth activation and b > ~0.045).
  /// The outer rule over x is composite Gauss–Legendre split at the kinks. The inner expectation
  /// over y is E phi(a + b y): when no kink lies within 9 b of a, the integrand is analytic over
  /// the whole Gaussian mass, in a strip of half-width >= pi / (2 b) (tanh, singular at
  /// +-i pi/2; the other smooth activations are farther), and a Q-node Gauss–Hermite rule
  /// suffices. Its error is b^(2Q) |phi^(2Q)| Q! / (2Q)!, below ~b^(2Q) (2/pi)^(2Q+1) Q!:
  /// Q = 2 for b <= 1e-4, 4 for b <= 1e-3, 6 for b <= 1e-2; measured on tanh and tanh' over
  /// a in [-6, 6] against a fine composite rule, Q = 16 keeps the error below 5e-16 for
  /// b <= 0.2, Q = 24 for b <= 0.3 and Q = 64 for b <= 0.5. Otherwise the inner rule is
  /// composite Gauss–Legendre split at the kinks, as the outer one.
  void eval_quadrature_2d(Eigen::Index i, Eigen::Index j, double s, double& g, double& gd) const {
    static const Rule gh2 = gauss_hermite_prob(2), gh4 = gauss_hermite_prob(4), gh6 = gauss_hermite_prob(6),
                      gh16 = gauss_hermite_prob(16), gh24 = gauss_hermite_prob(24), gh64 = gauss_hermite_prob(64);
    const double si = std::sqrt(a_.d[i]), sj = std::sqrt(b_.d[j]);
    const double rho = std::clamp(s / (si * sj), -1.0, 1.0), r2 = std::sqrt(std::max(0.0, 1.0 - rho * rho));
    const Rule outer = gaussian_composite_rule(scaled_kinks(phi_, si), 9.0, 1.0, 12);
    const std::vector<double> kinks = phi_.kinks();
    const double b = sj * r2;
    const Rule& gh = b <= 1e-4   ? gh2
                     : b <= 1e-3 ? gh4
                     : b <= 1e-2 ? gh6
                     : b <= 0.2  ? gh16
                     : b <= 0.3  ? gh24
                                 : gh64;
    g = gd = 0.0;
    for (std::size_t p = 0; p < outer.x.size(); ++p) {
      const double x1 = outer.x[p], u = si * x1;
      const double fu = phi_(u), du = phi_.deriv(u);
      const double a = sj * rho * x1;
      double fv = 0.0, dv = 0.0;
      if (r2 < 1e-10) {
        fv = phi_(a);
        dv = phi_.deriv(a);
      } else {
        bool smooth = b <= 0.5;
        for (double k : kinks) smooth = smooth && std::abs(k - a) > 9.0 * b;
        if (smooth) {
          for (std::size_t q = 0; q < gh.x.size(); ++q) {
            const double v = a + b * gh.x[q];
            fv += gh.w[q] * phi_(v);
            dv += gh.w[q] * phi_.deriv(v);
          }
        } else {
          std::vector<double> br = kinks;
          for (double& k : br) k = (k - a) / b;
          const Rule inner = gaussian_composite_rule(br, 9.0, 1.0, 12);
          for (std::size_t q = 0; q < inner.x.size(); ++q) {
            const double v = a + b * inner.x[q];
            fv += inner.w[q] * phi_(v);
            dv += inner.w[q] * phi_.deriv(v);
          }
        }
      }
      g += outer.w[p] * fu * fv;
      gd += outer.w[p] * du * dv;
    }
  }

 private:
  const Activation& phi_;
  const SampleData& a_;
  const SampleData& b_;
  PairMethod method_;
  int K_;
  double sneg_ = 0, dlt_ = 0;
  Eigen::VectorXd ra_, rb_;  // sqrt(d) of both sample sets
  Eigen::VectorXd sm2a_, sm2b_, se2a_, se2b_;  // sqrt(m2), sqrt(e2) of both sets (Mehler only)
};

/// g''(s) at the newer of two evaluations (s - h: g0, gd0; s: g, gd) and a bound `err` on its
/// error. The cubic Hermite interpolant gives g'' with error O(g'''' h^2); the secant
/// (gd - gd0)/h is g'' at the midpoint, off by ~|g'''| h / 2, so their difference bounds how fast
/// g'' changes there (large for arc-cosine kernels as |rho| -> 1). For tiny h the Hermite
/// formula loses ~eps |g| / h^2 to cancellation; when that rounding noise exceeds the
/// difference, the secant is used. h = 0 gives 0, 0.
inline void hermite_curvature(double h, double g0, double gd0, double g, double gd, double& curv, double& err) {
  constexpr double eps = 2.220446049250313e-16;
  const double on = h != 0.0 ? 1.0 : 0.0, ih = 1.0 / (h != 0.0 ? h : 1.0), aih = std::abs(ih);
  const double sec = (gd - gd0) * ih;
  const double herm = (6.0 * ((g0 - g) * ih + gd) - 2.0 * (gd - gd0)) * ih;
  const double noise = eps * (12.0 * (std::abs(g0) + std::abs(g)) * aih + 6.0 * (std::abs(gd0) + std::abs(gd))) * aih;
  const double diff = std::abs(herm - sec);
  curv = on * (noise < diff ? herm : sec);
  err = on * (diff + noise);
}

/// Solve one pair's fixed point s = sigma_a2 g(s) + b by safeguarded Newton. Returns the number
/// of evaluations of g; writes S, G, Gdot at the solution.
///
/// The start is the solution of the problem linearised at s = 0 (where g and g' are products of
/// one-point moments: a free first Newton step). Newton converges quadratically, so once the
/// curvature g'' is estimated from two evaluations (hermite_curvature), the error left after the
/// current step is predicted as sigma_a2 |g''| step^2 / (2 f'); when that is below tol/100 the
/// step is accepted and G, Gdot are extrapolated to second order. The extrapolated Gdot errs by
/// at most about the curvature's error bound `spread` times |step|, so that product must be
/// below tol too. This saves the confirming evaluation that a plain |step| <= tol test would cost.
inline int solve_pair(const PairEvaluator& ev, Eigen::Index i, Eigen::Index j, double b, double bound,
                      const KernelOptions& o, double& s_out, double& g_out, double& gd_out, bool& quad,
                      long long& picard, double& err) {
  const double sa2 = o.sigma_a2;
  const double tol = o.tol * bound;  // for S, relative to its scale; Gdot's criterion is scale-free
  double g = 0, gd = 0;
  ev.eval_zero(i, j, g, gd);
  double s = (b + sa2 * g) / (1.0 - sa2 * gd);
  if (!(std::abs(s) < bound)) s = std::clamp(b, -bound, bound);
  double s_prev = 0, g_prev = 0, gd_prev = 0;
  bool have_prev = false;
  double last_step = 0;
  EndSeries es;  // the pair's series about |rho| = 1, kept across the Newton steps
  for (int it = 0; it < o.max_iter; ++it) {
    // the series where it meets its bound (the start is often at a moderate rho, where the
    // quadrature's inner rule would be wide), the quadrature fallback elsewhere
    if (!ev.eval(i, j, s, g, gd)) {
      quad = true;
      ev.eval_quadrature(i, j, s, es, g, gd);
    }
    const double f = s - sa2 * g - b;
    const double fp = 1.0 - sa2 * gd;
    double sn = s - f / fp;
    if (!(fp > 0) || !(std::abs(sn) <= bound)) {  // safeguard: Picard stays in the bracket
      sn = sa2 * g + b;
      ++picard;
    }
    const double step = sn - s;
    last_step = std::abs(step);
    double curv = 0.0, spread = 0.0;  // estimate of g'' and of its error
    if (have_prev) hermite_curvature(s - s_prev, g_prev, gd_prev, g, gd, curv, spread);
    const bool predicted = have_prev && fp > 0 &&
                           0.5 * sa2 * std::abs(curv) * step * step / fp <= 0.01 * tol &&
                           spread * last_step <= o.tol;  // bounds the error of curv * step
    if (last_step <= tol || predicted) {
      // error estimate of s: the quadratic-convergence prediction, else the last step
      err = predicted ? std::min(last_step, 0.5 * sa2 * std::abs(curv) * step * step / fp) : last_step;
      s_out = sn;
      g_out = g + gd * step + 0.5 * curv * step * step;
      gd_out = gd + curv * step;
      if (quad && ev.kinked() && step != 0.0) {  // see PairEvaluator::kinked
        if (!ev.eval(i, j, sn, g_out, gd_out)) ev.eval_quadrature(i, j, sn, es, g_out, gd_out);
        return it + 2;
      }
      return it + 1;
    }
    s_prev = s;
    g_prev = g;
    gd_prev = gd;
    have_prev = true;
    s = sn;
  }
  s_out = s;
  g_out = g;
  gd_out = gd;
  err = last_step;
  return o.max_iter + 1;
}

}  // namespace deqfast
