// Scalar pair kernels (docs/theory.md §3): the two-point expectations g = E[phi(u) phi(v)],
// gd = E[phi'(u) phi'(v)] of one pair (closed forms, Mehler's series, 2-D quadrature) and the
// safeguarded Newton solve of one pair's fixed point s = sigma_a2 g(s) + sigma_b2 x_i.x_j.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <vector>

#include "deqfast/activation.hpp"
#include "deqfast/diagonal.hpp"
#include "deqfast/quadrature.hpp"

namespace deqfast {

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

  /// Two-dimensional quadrature for rho near +-1: u = sqrt(d_i) x, v = a + b y with
  /// a = sqrt(d_j) rho x, b = sqrt(d_j (1 - rho^2)). The outer rule over x is composite
  /// Gauss–Legendre split at the kinks. The inner expectation over y is E phi(a + b y): when
  /// b <= 0.1 and no kink lies within 9 b of a, the integrand is analytic over the whole
  /// Gaussian mass and varies on a scale 1/b >> 1, so a Q-node Gauss–Hermite rule suffices. Its
  /// error is b^(2Q) |phi^(2Q)| Q! / (2Q)!, and the smooth activations' derivatives grow at most
  /// like n! (2/pi)^(n+1) (tanh, singular at +-i pi/2; the others are farther), so the error is
  /// below ~b^(2Q) (2/pi)^(2Q+1) Q!: Q = 2 for b <= 1e-4, 4 for b <= 1e-3, 6 for b <= 1e-2 and
  /// 16 for b <= 0.1 keep it below 1e-16. Otherwise the inner rule is composite Gauss–Legendre
  /// split at the kinks, as the outer one.
  void eval_quadrature(Eigen::Index i, Eigen::Index j, double s, double& g, double& gd) const {
    static const Rule gh2 = gauss_hermite_prob(2), gh4 = gauss_hermite_prob(4), gh6 = gauss_hermite_prob(6),
                      gh16 = gauss_hermite_prob(16);
    const double si = std::sqrt(a_.d[i]), sj = std::sqrt(b_.d[j]);
    const double rho = std::clamp(s / (si * sj), -1.0, 1.0), r2 = std::sqrt(std::max(0.0, 1.0 - rho * rho));
    const Rule outer = gaussian_composite_rule(scaled_kinks(phi_, si), 9.0, 1.0, 12);
    const std::vector<double> kinks = phi_.kinks();
    const double b = sj * r2;
    const Rule& gh = b <= 1e-4 ? gh2 : (b <= 1e-3 ? gh4 : (b <= 1e-2 ? gh6 : gh16));
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
        bool smooth = b <= 0.1;
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
  for (int it = 0; it < o.max_iter; ++it) {
    if (quad || !ev.eval(i, j, s, g, gd)) {
      quad = true;
      ev.eval_quadrature(i, j, s, g, gd);
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
