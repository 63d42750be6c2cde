// Exact infinite-width DEQ kernels (THEORY.md §3).
//
//   S* = sigma_a2 F_phi(S*) + sigma_b2 X X^T,   G* = F_phi(S*),   Gdot* = F_phi'(S*)
//   K* = G* / (1 - sigma_a2 Gdot*)                       (default NTK: B not trained)
//   Theta* = G* + Gdot* o S* / (1 - sigma_a2 Gdot*)      (B trained as well)
//
// The equations decouple: each diagonal entry solves a scalar equation
// (solve_diagonal), then each pair (i, j) solves its own scalar fixed point
//   s = sigma_a2 E[phi(u) phi(v)](d_i, d_j, s) + sigma_b2 x_i.x_j
// by Newton's method, whose derivative sigma_a2 E[phi'(u) phi'(v)] is Gdot itself
// (Price's theorem), so the NTK comes for free.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef DEQFAST_HAVE_OPENMP
#include <omp.h>
#endif

#include "deqfast/activation.hpp"
#include "deqfast/moments.hpp"
#include "deqfast/quadrature.hpp"
#include "deqfast/simd_math.hpp"

namespace deqfast {

using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// How the two-point expectations of phi are evaluated.
enum class PairMethod { ArcCosine, ArcSine, Mehler };

inline PairMethod pair_method(const Activation& phi) {
  if (phi.kind == Kind::PiecewiseLinear) return PairMethod::ArcCosine;
  if (phi.kind == Kind::Erf) return PairMethod::ArcSine;
  return PairMethod::Mehler;
}

struct KernelOptions {
  double sigma_a2 = 0.2, sigma_b2 = 0.8;
  double tol = 1e-12;   // tolerance of each scalar fixed point, relative to its scale sqrt(S_ii S_jj)
  int max_iter = 100;   // per scalar fixed point
  int hermite_terms = 64;  // Mehler series length for generic activations
  int block = 64;          // tile edge of the assembly
  int num_threads = 0;     // 0: OpenMP default
};

/// Per-sample quantities at the diagonal fixed point d_i.
struct SampleData {
  Eigen::VectorXd d, m2, e2;  // S*_ii, G*_ii, Gdot*_ii
  RowMatrix herm;             // n x K normalised Hermite coefficients (Mehler only)
  RowMatrix rtail;            // n x (K+1): rtail(i,k) = sqrt(sum_{l>=k} h_l^2) (Parseval, incl. remainder)
  RowMatrix rdtail;           // n x (K+1): rdtail(i,k) = sqrt(sum_{l>=k} l h_l^2) (incl. remainder)
  int iterations = 0;         // max Newton iterations over samples
  double residual = 0;        // max |d - sigma_a2 m2(sqrt d) - sigma_b2 |x|^2|
};

/// Fill sample i's per-sample data (m2, e2 and, for Mehler, the Hermite expansion and its
/// Parseval tails) at the variance sd.d[i].
inline void fill_sample(const Activation& phi, SampleData& sd, Eigen::Index i, const Moments& m, int K) {
  sd.m2[i] = m.m2;
  sd.e2[i] = m.e2;
  if (pair_method(phi) != PairMethod::Mehler) return;
  const HermiteExpansion he = hermite_expansion(phi, std::sqrt(sd.d[i]), K);
  // Polynomials of degree < K have no remainder: the series is exact.
  double t = phi.is_polynomial() ? 0.0 : he.rem, td = phi.is_polynomial() ? 0.0 : he.remd;
  sd.rtail(i, K) = std::sqrt(t);
  sd.rdtail(i, K) = std::sqrt(td);
  for (int k = K - 1; k >= 0; --k) {
    sd.herm(i, k) = he.h[k];
    t += he.h[k] * he.h[k];
    td += k * he.h[k] * he.h[k];
    sd.rtail(i, k) = std::sqrt(t);
    sd.rdtail(i, k) = std::sqrt(td);
  }
}

inline SampleData allocate_samples(const Activation& phi, Eigen::Index n, int hermite_terms) {
  SampleData sd;
  sd.d.resize(n);
  sd.m2.resize(n);
  sd.e2.resize(n);
  if (pair_method(phi) == PairMethod::Mehler) {
    const int K = phi.is_polynomial() ? int(phi.coef.size()) : hermite_terms;
    sd.herm.resize(n, K);
    sd.rtail.resize(n, K + 1);
    sd.rdtail.resize(n, K + 1);
  }
  return sd;
}

/// Per-sample data at given variances d_i > 0 (no fixed point): the Gaussian map of one
/// explicit layer, K = F_phi(S), needs exactly this (THEORY.md §5).
inline SampleData samples_at(const Activation& phi, const Eigen::Ref<const Eigen::VectorXd>& d, int hermite_terms) {
  const Eigen::Index n = d.size();
  SampleData sd = allocate_samples(phi, n, hermite_terms);
  for (Eigen::Index i = 0; i < n; ++i)
    if (!(d[i] > 0) || !std::isfinite(d[i]))
      throw std::domain_error("variance of sample " + std::to_string(i) + " must be finite and > 0");
  sd.d = d;
  const int K = int(sd.herm.cols());
#pragma omp parallel for schedule(dynamic, 16) if (n > 64)
  for (Eigen::Index i = 0; i < n; ++i) fill_sample(phi, sd, i, gaussian_moments(phi, std::sqrt(d[i])), K);
  return sd;
}

/// Solve d_i = sigma_a2 m2(sqrt d_i) + sigma_b2 |x_i|^2 for every sample (safeguarded Newton).
inline SampleData solve_diagonal(const Activation& phi, const Eigen::Ref<const Eigen::VectorXd>& sqnorm,
                                 const KernelOptions& o) {
  const Eigen::Index n = sqnorm.size();
  SampleData sd = allocate_samples(phi, n, o.hermite_terms);
  const int K = int(sd.herm.cols());
  std::vector<std::string> errors, failures;  // bad input / non-convergence
  int max_it = 0;
  double max_res = 0;
#ifdef DEQFAST_HAVE_OPENMP
  const int nt = o.num_threads > 0 ? o.num_threads : omp_get_max_threads();
#endif
#pragma omp parallel for schedule(dynamic, 16) reduction(max : max_it, max_res) num_threads(nt) if (n > 64)
  for (Eigen::Index i = 0; i < n; ++i) {
    const double c = o.sigma_b2 * sqnorm[i];
    if (!(c > 0)) {
#pragma omp critical
      errors.push_back("sample " + std::to_string(i) + " has zero norm");
      continue;
    }
    double d = c, res = 0;
    int it = 0;
    Moments m;
    for (; it < o.max_iter; ++it) {
      m = gaussian_moments(phi, std::sqrt(d));
      const double F = d - o.sigma_a2 * m.m2 - c;
      const double Fp = 1.0 - o.sigma_a2 * m.m2_dot;
      res = std::abs(F);
      double dn = (Fp > 0.05) ? d - F / Fp : o.sigma_a2 * m.m2 + c;  // Newton, else Picard
      if (!(dn >= c) || !std::isfinite(dn)) dn = std::max(c, o.sigma_a2 * m.m2 + c);
      const double step = std::abs(dn - d);
      d = dn;
      if (step <= o.tol * d) {  // relative: data of any magnitude
        m = gaussian_moments(phi, std::sqrt(d));
        res = std::abs(d - o.sigma_a2 * m.m2 - c);
        break;
      }
    }
    if ((it >= o.max_iter || !std::isfinite(d)) && o.sigma_a2 * m.m2_dot >= 1.0) {
#pragma omp critical
      errors.push_back("no diagonal fixed point for sample " + std::to_string(i) +
                       ": sigma_a2 * d E[phi^2]/d(tau^2) = " + std::to_string(o.sigma_a2 * m.m2_dot) +
                       " >= 1, the variance map is not a contraction; reduce sigma_a2");
      continue;
    }
    if (it >= o.max_iter || !std::isfinite(d)) {
#pragma omp critical
      failures.push_back("diagonal fixed point of sample " + std::to_string(i) + " did not converge within " +
                         std::to_string(o.max_iter) + " iterations (residual " + std::to_string(res) + ")");
      continue;
    }
    if (o.sigma_a2 * m.e2 >= 1.0) {
#pragma omp critical
      errors.push_back("sigma_a2 * E phi'(u)^2 = " + std::to_string(o.sigma_a2 * m.e2) + " >= 1 at sample " +
                       std::to_string(i) + ": the pair fixed points are not contractions; reduce sigma_a2");
      continue;
    }
    sd.d[i] = d;
    fill_sample(phi, sd, i, m, K);
    max_it = std::max(max_it, it + 1);
    max_res = std::max(max_res, res);
  }
  if (!errors.empty()) throw std::domain_error(errors.front());
  if (!failures.empty()) throw std::runtime_error(failures.front());
  sd.iterations = max_it;
  sd.residual = max_res;
  return sd;
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

  /// Two-dimensional composite quadrature (split at kinks) for rho near +-1.
  void eval_quadrature(Eigen::Index i, Eigen::Index j, double s, double& g, double& gd) const {
    const double si = std::sqrt(a_.d[i]), sj = std::sqrt(b_.d[j]);
    const double rho = std::clamp(s / (si * sj), -1.0, 1.0), r2 = std::sqrt(std::max(0.0, 1.0 - rho * rho));
    const Rule outer = gaussian_composite_rule(scaled_kinks(phi_, si), 9.0, 1.0, 12);
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
        const double b = sj * r2;
        std::vector<double> br = phi_.kinks();
        for (double& k : br) k = (k - a) / b;
        const Rule inner = gaussian_composite_rule(br, 9.0, 1.0, 12);
        for (std::size_t q = 0; q < inner.x.size(); ++q) {
          const double v = a + b * inner.x[q];
          fv += inner.w[q] * phi_(v);
          dv += inner.w[q] * phi_.deriv(v);
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

// The vectorised pair solvers below run solve_pair's first steps for many pairs at once: the
// start from the linearisation at s = 0, two evaluations, and solve_pair's stopping rule.
// Nearly every pair stops there (2.0 evaluations on average); a pair that does not, or where a
// safeguard would act, is flagged (evals = 0) for the scalar solve_pair. The helpers are
// branch-free (bitwise & on bools, selects) so that the compiler vectorises the lane loops.

/// solve_pair's start when it lies outside the bracket |s| < bound: b clamped into it.
inline double keep_in_bracket(double s, double b, double bound) {
  return std::abs(s) < bound ? s : (b > bound ? bound : (b < -bound ? -bound : b));
}

/// One Newton step for s = sa2 g(s) + b from (s, g, gd); `ok` is false where solve_pair's
/// safeguard would take a Picard step instead (f' <= 0 or leaving the bracket).
inline double newton_step(double s, double g, double gd, double b, double sa2, double bound, bool& ok) {
  const double fp = 1.0 - sa2 * gd, sn = s - (s - sa2 * g - b) / fp;
  ok = (fp > 0) & (std::abs(sn) <= bound);
  return sn;
}

/// solve_pair's stopping rule after evaluations at s1 (g1, gd1) and s2 = s1's Newton step
/// (g2, gd2; ok1 from newton_step): writes the accepted S, G, Gdot, the error estimate of S and
/// the number of evaluations used (1 or 2), or evals = 0 where solve_pair would go on.
inline void accept_two_steps(double s1, double g1, double gd1, double s2, double g2, double gd2, bool ok1, double b,
                             double bound, double sa2, double tol, double& s_out, double& g_out, double& gd_out,
                             double& err_out, double& evals) {
  // S's tolerance is relative to the pair's scale sqrt(S_ii S_jj), like the diagonal's; Gdot's
  // criterion is scale-free
  const double ts = tol * bound;
  const double step1 = s2 - s1;
  const double fp2 = 1.0 - sa2 * gd2, ifp2 = 1.0 / fp2;
  const double s3 = s2 - (s2 - sa2 * g2 - b) * ifp2;
  const bool ok2 = (fp2 > 0) & (std::abs(s3) <= bound);
  const double step2 = s3 - s2;
  double curv, spread;
  hermite_curvature(step1, g1, gd1, g2, gd2, curv, spread);
  const double pred = 0.5 * sa2 * std::abs(curv) * step2 * step2 * ifp2;
  const bool predicted = (pred <= 0.01 * ts) & (spread * std::abs(step2) <= tol);
  const bool acc1 = ok1 & (std::abs(step1) <= ts);
  const bool acc2 = ok1 & ok2 & ((std::abs(step2) <= ts) | predicted);
  s_out = acc1 ? s2 : s3;
  g_out = acc1 ? g1 + gd1 * step1 : g2 + gd2 * step2 + 0.5 * curv * step2 * step2;
  gd_out = acc1 ? gd1 : gd2 + curv * step2;
  err_out = acc1 ? std::abs(step1) : (predicted ? std::min(std::abs(step2), pred) : std::abs(step2));
  evals = acc1 ? 1.0 : (acc2 ? 2.0 : 0.0);
}

/// solve_pair's first two steps from the start s1 for one pair whose closed form is
/// eval(s, g, gd) (inlined into the callers' vectorised loops).
template <class Eval>
inline void two_steps(const Eval& eval, double s1, double b, double bound, double sa2, double tol, double& s_out,
                      double& g_out, double& gd_out, double& err_out, double& evals) {
  double g1, gd1, g2, gd2;
  bool ok1;
  eval(s1, g1, gd1);
  const double s2 = newton_step(s1, g1, gd1, b, sa2, bound, ok1);
  eval(ok1 ? s2 : s1, g2, gd2);
  accept_two_steps(s1, g1, gd1, s2, g2, gd2, ok1, b, bound, sa2, tol, s_out, g_out, gd_out, err_out, evals);
}

/// The arc-cosine family (linear, ReLU, leaky ReLU) for a run of pairs (i, j_0 .. j_{m-1}):
/// one loop over the pairs, vectorised whole (acos_vec instead of the C library's acos).
class ArcCosineRun {
 public:
  ArcCosineRun(const Activation& phi, const KernelOptions& o)
      : sa2_(o.sigma_a2), tol_(o.tol), c_(phi.shift), a1_(phi.p1 * phi.p1 + phi.p1 * (phi.p0 - phi.p1)),
        d2_((phi.p0 - phi.p1) * (phi.p0 - phi.p1)), lin_(phi.p0 - phi.p1) {
    const double gd0 = (phi.p1 + 0.5 * lin_) * (phi.p1 + 0.5 * lin_);  // E phi'(u) E phi'(v)
    inv0_ = 1.0 / (1.0 - sa2_ * gd0);
  }

  /// E[ReLU-part(u)] / (p0 - p1) = sqrt(d) / sqrt(2 pi), per sample: lu = (p0 - p1) sqrt(d / 2 pi).
  double lu(double r) const { return lin_ * r / kSqrt2Pi; }

  /// Pairs (r_i, r_j[k]) with r = sqrt(S*_ii), ir = 1 / r, l = lu(r), gram[k] = x_i.x_j;
  /// sb2 = sigma_b2. Divisions are the costly vector instructions here: five per pair.
  void solve(double ri, double iri, double li, const double* rj, const double* irj, const double* lj,
             const double* gram, double sb2, int m, double* s_out, double* g_out, double* gd_out, double* err_out,
             double* evals) const {
    const double sa2 = sa2_, tol = tol_, c = c_, a1 = a1_, d2 = d2_, inv0 = inv0_;
    const double k2pi = 1.0 / (2.0 * kPi);
#pragma omp simd
    for (int k = 0; k < m; ++k) {
      const double sq = ri * rj[k], isq = iri * irj[k], bound = sq, b = sb2 * gram[k];
      const double cst = c * c - c * (li + lj[k]);
      // g(s), gd(s): the arc-cosine closed form of PairEvaluator::eval
      auto eval = [&](double s, double& g, double& gd) {
        const double rho = std::min(1.0, std::max(-1.0, s * isq));
        const double th = acos_vec(rho), sn = std::sqrt(std::max(0.0, 1.0 - rho * rho));
        g = a1 * rho * sq + d2 * (sq * k2pi * (sn + (kPi - th) * rho)) + cst;
        gd = a1 + d2 * (kPi - th) * k2pi;
      };
      const double s1 = keep_in_bracket((b + sa2 * (li - c) * (lj[k] - c)) * inv0, b, bound);
      two_steps(eval, s1, b, bound, sa2, tol, s_out[k], g_out[k], gd_out[k], err_out[k], evals[k]);
    }
  }

 private:
  double sa2_, tol_, c_, a1_, d2_, lin_, inv0_ = 1.0;
};

/// erf (arcsine kernel) for a run of pairs (i, j_0 .. j_{m-1}), vectorised whole like
/// ArcCosineRun (asin_vec instead of the C library's asin). Per sample: r = sqrt(S*_ii),
/// w = 1 / sqrt(1 + 2 S*_ii), so that 2 s / sqrt((1 + 2 d_i)(1 + 2 d_j)) = 2 s w_i w_j.
class ArcSineRun {
 public:
  ArcSineRun(const Activation& phi, const KernelOptions& o) : sa2_(o.sigma_a2), tol_(o.tol), c2_(phi.shift * phi.shift) {}

  void solve(double ri, double wi, const double* rj, const double* wj, const double* gram, double sb2, int m,
             double* s_out, double* g_out, double* gd_out, double* err_out, double* evals) const {
    const double sa2 = sa2_, tol = tol_, c2 = c2_;
#pragma omp simd
    for (int k = 0; k < m; ++k) {
      const double bound = ri * rj[k], w = wi * wj[k], b = sb2 * gram[k];
      // g(s), gd(s): the arcsine closed form of PairEvaluator::eval
      auto eval = [&](double s, double& g, double& gd) {
        const double sc = s > bound ? bound : (s < -bound ? -bound : s), z = 2.0 * sc * w;
        g = (2.0 / kPi) * asin_vec(z) + c2;
        gd = (4.0 / kPi) * w / std::sqrt((1.0 - z) * (1.0 + z));
      };
      const double s1 = keep_in_bracket((b + sa2 * c2) / (1.0 - sa2 * (4.0 / kPi) * w), b, bound);
      two_steps(eval, s1, b, bound, sa2, tol, s_out[k], g_out[k], gd_out[k], err_out[k], evals[k]);
    }
  }

 private:
  double sa2_, tol_, c2_;
};

/// Mehler's series (generic activations) for a run of pairs (i, j_0 .. j_{m-1}), eight pairs per
/// lane group: one series length per group (the longest any lane needs; extra terms only add
/// accuracy) and Horner's rule across the lanes, on the columns' Hermite coefficients and tail
/// roots transposed per tile so that every lane load is contiguous. One object per thread.
class MehlerRun {
 public:
  static constexpr int W = 8;

  MehlerRun(const SampleData& A, const SampleData& B, const KernelOptions& o)
      : A_(A), B_(B), K_(int(A.herm.cols())), sa2_(o.sigma_a2), tol_(o.tol) {}

  /// Take columns [j0, j0 + nj) of set B: transposed coefficients and tail roots, per-column
  /// scales, padded by W columns (a lane group may start at any column c < nj and read c + W - 1).
  void load_columns(Eigen::Index j0, Eigen::Index nj) {
    ld_ = (nj + W - 1) / W * W + W;
    hT_.assign(std::size_t(K_) * ld_, 0.0);
    tT_.assign(std::size_t(K_ + 1) * ld_, 0.0);
    dT_.assign(std::size_t(K_ + 1) * ld_, 0.0);
    col_.assign(std::size_t(4) * ld_, 1.0);
    for (Eigen::Index c = 0; c < nj; ++c) {
      const Eigen::Index j = j0 + c;
      for (int k = 0; k < K_; ++k) hT_[k * ld_ + c] = B_.herm(j, k);
      for (int k = 0; k <= K_; ++k) {
        tT_[k * ld_ + c] = B_.rtail(j, k);
        dT_[k * ld_ + c] = B_.rdtail(j, k);
      }
      const double r = std::sqrt(B_.d[j]);
      col_[c] = r;                              // sqrt(d_j)
      col_[ld_ + c] = 1.0 / r;                  // 1 / sqrt(d_j)
      col_[2 * ld_ + c] = std::sqrt(B_.m2[j]);  // scales of the tail-bound targets
      col_[3 * ld_ + c] = std::sqrt(B_.e2[j]);
    }
  }

  /// Pairs (i, c0 .. c0 + m - 1) of the loaded columns, gram[k] = x_i.x_(j0 + c0 + k).
  void solve(Eigen::Index i, Eigen::Index c0, const double* gram, double sb2, int m, double* s_out, double* g_out,
             double* gd_out, double* err_out, double* evals) {
    const double ri = std::sqrt(A_.d[i]), iri = 1.0 / ri;
    const double sm2i = std::sqrt(A_.m2[i]), se2i = std::sqrt(A_.e2[i]);
    const double* hi = A_.herm.row(i).data();
    ti_ = A_.rtail.row(i).data();
    di_ = A_.rdtail.row(i).data();
    const double sa2 = sa2_, tol = tol_;
    for (int q = 0; q < m; q += W) {
      const Eigen::Index c = c0 + q;
      const int L = std::min(W, m - q);
      Lanes z;
      double b[W], bound[W], s1[W], g1[W], gd1[W], s2[W], g2[W], gd2[W], out[5][W];
      double ok1[W], okA[W], okB[W];  // masks 0/1 (see eval)
      for (int l = 0; l < W; ++l) {
        z.pad[l] = l < L ? 0.0 : 1.0;
        b[l] = sb2 * gram[q + std::min(l, L - 1)];
      }
#pragma omp simd
      for (int l = 0; l < W; ++l) {
        z.sq[l] = ri * col_[c + l];
        z.isq[l] = iri * col_[ld_ + c + l];
        z.tg[l] = 1e-15 * sm2i * col_[2 * ld_ + c + l] + 1e-300;
        z.tgd[l] = 1e-14 * se2i * col_[3 * ld_ + c + l] * z.sq[l] + 1e-300;
        bound[l] = z.sq[l];
        // eval_zero: products of one-point moments
        const double g0 = hi[0] * hT_[c + l];
        const double gd0 = hi[1] * hT_[ld_ + c + l] * z.isq[l];
        s1[l] = keep_in_bracket((b[l] + sa2 * g0) / (1.0 - sa2 * gd0), b[l], bound[l]);
      }
      eval(hi, c, z, s1, g1, gd1, okA);
#pragma omp simd
      for (int l = 0; l < W; ++l) {
        bool ok;
        s2[l] = newton_step(s1[l], g1[l], gd1[l], b[l], sa2, bound[l], ok);
        ok1[l] = ok ? 1.0 : 0.0;
        z.s[l] = ok ? s2[l] : s1[l];
      }
      eval(hi, c, z, z.s, g2, gd2, okB);
#pragma omp simd
      for (int l = 0; l < W; ++l) {
        accept_two_steps(s1[l], g1[l], gd1[l], s2[l], g2[l], gd2[l], ok1[l] != 0.0, b[l], bound[l], sa2, tol,
                         out[0][l], out[1][l], out[2][l], out[3][l], out[4][l]);
        // a series that could not meet its bound: the scalar solver (quadrature) takes the pair
        out[4][l] = okA[l] != 0.0 ? (out[4][l] == 1.0 ? 1.0 : (okB[l] != 0.0 ? out[4][l] : 0.0)) : 0.0;
      }
      for (int l = 0; l < L; ++l) {
        s_out[q + l] = out[0][l];
        g_out[q + l] = out[1][l];
        gd_out[q + l] = out[2][l];
        err_out[q + l] = out[3][l];
        evals[q + l] = out[4][l];
      }
    }
  }

 private:
  struct Lanes {
    double sq[W], isq[W], tg[W], tgd[W], s[W];
    double pad[W];  // 1 for the padding lanes of a short group
  };

  /// g and gd at s for the lane group at column c (PairEvaluator::eval's Mehler branch with a
  /// common series length); ok[l] = 0 where K terms cannot meet the tail bounds, else 1.
  void eval(const double* hi, Eigen::Index c, const Lanes& z, const double* s, double* g, double* gd,
            double* ok) const {
    double rho[W], ar[W], pk[W];
#pragma omp simd
    for (int l = 0; l < W; ++l) {
      rho[l] = std::min(1.0, std::max(-1.0, s[l] * z.isq[l]));
      ar[l] = std::abs(rho[l]);
      pk[l] = 1.0;  // |rho|^(k-1)
    }
    // the shortest common series: first k where every valid lane's tail bounds hold
    // (masks as doubles 0/1: the compiler vectorises selects on doubles, not on bools)
    double good[W];
    int k = 1;
    for (;; ++k) {
      double bad = 0.0;
      const double tik = ti_[k], dik = di_[k], k2 = k >= 2 ? 1.0 : 0.0;
      const double *tj = tT_.data() + k * ld_ + c, *dj = dT_.data() + k * ld_ + c;
#pragma omp simd reduction(+ : bad)
      for (int l = 0; l < W; ++l) {
        const double g1 = pk[l] * ar[l] * tik * tj[l] <= z.tg[l] ? 1.0 : 0.0;
        const double g2 = pk[l] * dik * dj[l] <= z.tgd[l] ? 1.0 : 0.0;
        const double exact = ar[l] == 0.0 ? k2 : 0.0;  // rho = 0: two terms are exact
        good[l] = std::max(std::max(g1 * g2, exact), z.pad[l]);
        bad += 1.0 - good[l];
      }
      if (bad == 0.0 || k == K_) break;
#pragma omp simd
      for (int l = 0; l < W; ++l) pk[l] *= ar[l];
    }
    std::copy(good, good + W, ok);
    double gs[W] = {0}, gds[W] = {0};
    for (int t = k - 1; t >= 1; --t) {
      const double hit = hi[t], tt = double(t);
      const double* hj = hT_.data() + t * ld_ + c;
#pragma omp simd
      for (int l = 0; l < W; ++l) {
        const double u = hit * hj[l];
        gs[l] = gs[l] * rho[l] + u;
        gds[l] = gds[l] * rho[l] + tt * u;
      }
    }
#pragma omp simd
    for (int l = 0; l < W; ++l) {
      g[l] = gs[l] * rho[l] + hi[0] * hT_[c + l];
      gd[l] = gds[l] * z.isq[l];
    }
  }

  const SampleData& A_;
  const SampleData& B_;
  int K_;
  double sa2_, tol_;
  Eigen::Index ld_ = 0;  // row stride of the transposed column data (padded, see load_columns)
  std::vector<double> hT_, tT_, dT_, col_;
  const double* ti_ = nullptr;  // row i's tail roots (set A)
  const double* di_ = nullptr;
};

/// Which kernels to write (bit mask).
enum Output : unsigned { kS = 1, kG = 2, kGdot = 4, kK = 8, kTheta = 16 };

struct Outputs {
  double* S = nullptr;
  double* G = nullptr;
  double* Gdot = nullptr;
  double* K = nullptr;
  double* Theta = nullptr;
  Eigen::Index rows = 0, ld = 0;  // rows and leading dimension (row stride) of every output
};

struct AssemblyStats {
  long long pairs = 0, newton_steps = 0, picard_steps = 0, quadrature_pairs = 0, unconverged = 0;
  int max_iterations = 0;
  double max_error = 0;  // largest estimated absolute error of S over all pairs
};

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

/// dst(c, r) = src(r, c) for the ni x nj tile src, dst with row stride ld: eight source columns
/// at a time, so each step reads one contiguous run of eight and appends one entry to each of
/// eight destination rows (Eigen's transposed block copy moves two entries per step here and
/// took twice as long; 8 x 8 register blocks were no faster).
inline void mirror(const RowMatrix& src, double* dst, Eigen::Index ld) {
  const Eigen::Index ni = src.rows(), nj = src.cols(), nj8 = nj - nj % 8;
  for (Eigen::Index c = 0; c < nj8; c += 8)
    for (Eigen::Index r = 0; r < ni; ++r) {
      const double* s = src.data() + r * nj + c;
      for (int k = 0; k < 8; ++k) dst[(c + k) * ld + r] = s[k];
    }
  for (Eigen::Index c = nj8; c < nj; ++c)
    for (Eigen::Index r = 0; r < ni; ++r) dst[c * ld + r] = src(r, c);
}

/// Assemble rows [r0, r1) x columns [c0, c1) of the kernels between sample sets A (rows) and
/// B (columns), in cache-sized tiles, in parallel. With `symmetric` (A == B), only tiles on or
/// above the diagonal are solved and mirrored, so rows [r0, r1) x columns [max(c0, r0), c1)
/// and their transposes are written; diagonal entries come from the diagonal solve.
inline AssemblyStats assemble(const Activation& phi, const Eigen::Ref<const RowMatrix>& XA,
                              const Eigen::Ref<const RowMatrix>& XB, const SampleData& A, const SampleData& B,
                              bool symmetric, Eigen::Index r0, Eigen::Index r1, Eigen::Index c0,
                              Eigen::Index c1, const Outputs& out, const KernelOptions& o) {
  const PairEvaluator ev(phi, A, B);
  const Eigen::Index bs = std::max(8, o.block);
  struct Tile {
    Eigen::Index i0, j0;
  };
  std::vector<Tile> tiles;
  for (Eigen::Index i0 = r0; i0 < r1; i0 += bs)
    for (Eigen::Index j0 = c0; j0 < c1; j0 += bs)
      if (!symmetric || j0 + bs > i0) tiles.push_back({i0, j0});

  AssemblyStats st;
  long long pairs = 0, newton = 0, picard = 0, quad_pairs = 0, unconv = 0;
  int max_it = 0;
  double max_error = 0;
  const double sa2 = o.sigma_a2, sb2 = o.sigma_b2;
  const Eigen::Index ld = out.ld;
  // The arc-cosine family runs through the vectorised ArcCosineRun: sqrt(S*_ii) and lu per sample.
  // Pairs run through the vectorised ArcCosineRun, ArcSineRun and MehlerRun; the scalar
  // solve_pair takes the pairs they flag (and polynomials of degree < 2).
  const bool arc = ev.method() == PairMethod::ArcCosine, asn = ev.method() == PairMethod::ArcSine;
  const bool mehler = ev.method() == PairMethod::Mehler && A.herm.cols() >= 2;
  const bool vec = arc || asn || mehler;
  const ArcCosineRun run(phi, o);
  const ArcSineRun srun(phi, o);
  // per sample: sqrt(S*_ii); arc-cosine: its inverse and lu; arcsine: w = 1 / sqrt(1 + 2 S*_ii)
  Eigen::VectorXd rA, rB, iA, iB, lA, lB, wA, wB;
  if (arc || asn) {
    rA = A.d.cwiseSqrt();
    rB = B.d.cwiseSqrt();
  }
  if (asn) {
    wA = (1.0 + 2.0 * A.d.array()).rsqrt().matrix();
    wB = (1.0 + 2.0 * B.d.array()).rsqrt().matrix();
  }
  if (arc) {
    iA = rA.cwiseInverse();
    iB = rB.cwiseInverse();
    lA = rA.unaryExpr([&](double r) { return run.lu(r); });
    lB = rB.unaryExpr([&](double r) { return run.lu(r); });
  }

#ifdef DEQFAST_HAVE_OPENMP
  const int nt = o.num_threads > 0 ? o.num_threads : omp_get_max_threads();
#endif
#pragma omp parallel num_threads(nt) reduction(+ : pairs, newton, picard, quad_pairs, unconv) \
    reduction(max : max_it, max_error)
  {
    RowMatrix gram;
    std::optional<MehlerRun> mrun;
    if (mehler) mrun.emplace(A, B, o);
    RowMatrix buf[5];  // the tile of each requested output, written back as whole blocks
    double* ptrs[5] = {out.S, out.G, out.Gdot, out.K, out.Theta};
    std::vector<double> rs(bs), rg(bs), rgd(bs), rerr(bs);  // one row of a tile (vectorised path)
    std::vector<double> revals(bs);
    // Solve pair (i, j) by the scalar solve_pair into position k of the row arrays.
    auto scalar = [&](Eigen::Index a, Eigen::Index bcol, Eigen::Index i, Eigen::Index j, Eigen::Index k) {
      const double bij = sb2 * gram(a, bcol);
      const double bound = std::sqrt(A.d[i] * B.d[j]);
      bool quad = false;
      double last = 0;
      const int it = solve_pair(ev, i, j, bij, bound, o, rs[k], rg[k], rgd[k], quad, picard, last);
      newton += it;
      if (quad) ++quad_pairs;
      if (it > o.max_iter) ++unconv;
      max_it = std::max(max_it, it);
      max_error = std::max(max_error, last);
    };
    // Write the row arrays (S, G, Gdot of m pairs) into columns [start, start + m) of row a of
    // every requested tile buffer, with the NTKs K = G / (1 - sa2 Gdot), Theta = G + Gdot S / (...).
    auto write_row = [&](Eigen::Index a, Eigen::Index start, Eigen::Index m) {
      const double *S_ = rs.data(), *G_ = rg.data(), *D_ = rgd.data();
      if (ptrs[0]) std::copy(S_, S_ + m, buf[0].row(a).data() + start);
      if (ptrs[1]) std::copy(G_, G_ + m, buf[1].row(a).data() + start);
      if (ptrs[2]) std::copy(D_, D_ + m, buf[2].row(a).data() + start);
      if (ptrs[3]) {
        double* K_ = buf[3].row(a).data() + start;
#pragma omp simd
        for (Eigen::Index k = 0; k < m; ++k) K_[k] = G_[k] / (1.0 - sa2 * D_[k]);
      }
      if (ptrs[4]) {
        double* T_ = buf[4].row(a).data() + start;
#pragma omp simd
        for (Eigen::Index k = 0; k < m; ++k) T_[k] = G_[k] + D_[k] * S_[k] / (1.0 - sa2 * D_[k]);
      }
    };
#pragma omp for schedule(dynamic, 1)
    for (std::size_t t = 0; t < tiles.size(); ++t) {
      const Eigen::Index i0 = tiles[t].i0, j0 = tiles[t].j0;
      const Eigen::Index ni = std::min(bs, r1 - i0), nj = std::min(bs, c1 - j0);
      gram.noalias() = XA.middleRows(i0, ni) * XB.middleRows(j0, nj).transpose();
      if (mehler) mrun->load_columns(j0, nj);
      for (int q = 0; q < 5; ++q)
        if (ptrs[q]) buf[q].resize(ni, nj);
      for (Eigen::Index a = 0; a < ni; ++a) {
        const Eigen::Index i = i0 + a;
        // columns left of `start` are filled by symmetry below (diagonal tiles only)
        Eigen::Index start = 0;
        if (symmetric && j0 <= i) {  // the diagonal entry comes from the diagonal solve
          start = i - j0;
          rs[0] = A.d[i];
          rg[0] = A.m2[i];
          rgd[0] = A.e2[i];
          write_row(a, start, 1);
          ++start;
        }
        const Eigen::Index m = nj - start;
        if (m <= 0) continue;
        pairs += m;
        if (!vec) {
          for (Eigen::Index k = 0; k < m; ++k) scalar(a, start + k, i, j0 + start + k, k);
          write_row(a, start, m);
          continue;
        }
        const Eigen::Index j = j0 + start;
        if (arc)
          run.solve(rA[i], iA[i], lA[i], rB.data() + j, iB.data() + j, lB.data() + j, gram.row(a).data() + start,
                    sb2, int(m), rs.data(), rg.data(), rgd.data(), rerr.data(), revals.data());
        else if (asn)
          srun.solve(rA[i], wA[i], rB.data() + j, wB.data() + j, gram.row(a).data() + start, sb2, int(m), rs.data(),
                     rg.data(), rgd.data(), rerr.data(), revals.data());
        else
          mrun->solve(i, start, gram.row(a).data() + start, sb2, int(m), rs.data(), rg.data(), rgd.data(),
                      rerr.data(), revals.data());
        double evsum = 0, evmax = 0, errmax = 0;
        int failed = 0;
#pragma omp simd reduction(+ : evsum, failed) reduction(max : evmax, errmax)
        for (Eigen::Index k = 0; k < m; ++k) {
          evsum += revals[k];
          evmax = std::max(evmax, revals[k]);
          failed += revals[k] == 0.0;
          errmax = std::max(errmax, revals[k] == 0.0 ? 0.0 : rerr[k]);
        }
        newton += (long long)evsum;
        max_error = std::max(max_error, errmax);
        max_it = std::max(max_it, int(evmax));
        if (failed)
          for (Eigen::Index k = 0; k < m; ++k)
            if (revals[k] == 0.0) scalar(a, start + k, i, j0 + start + k, k);
        write_row(a, start, m);
      }
      for (int q = 0; q < 5; ++q) {
        if (!ptrs[q]) continue;
        Eigen::Map<RowMatrix, 0, Eigen::OuterStride<>> M(ptrs[q], out.rows, ld, Eigen::OuterStride<>(ld));
        if (symmetric && i0 == j0) {  // diagonal tile: complete its lower triangle, write once
          buf[q].template triangularView<Eigen::StrictlyLower>() = buf[q].transpose();
          M.block(i0, j0, ni, nj) = buf[q];
        } else {
          M.block(i0, j0, ni, nj) = buf[q];
          if (symmetric) mirror(buf[q], ptrs[q] + j0 * ld + i0, ld);
        }
      }
    }
  }
  st.pairs = pairs;
  st.newton_steps = newton;
  st.picard_steps = picard;
  st.quadrature_pairs = quad_pairs;
  st.unconverged = unconv;
  st.max_iterations = max_it;
  st.max_error = max_error;
  return st;
}

/// The Gaussian map of an explicit layer, elementwise: G = F_phi(S), Gdot = F_phi'(S) for the
/// block S (rows of set A, columns of set B; THEORY.md §5). No fixed point: one evaluation per
/// pair (2-D quadrature where the Mehler series cannot meet its bound). With `symmetric`, S is
/// square, only its upper triangle is read and the outputs are mirrored.
inline AssemblyStats gaussian_map(const Activation& phi, const Eigen::Ref<const RowMatrix>& S, const SampleData& A,
                                  const SampleData& B, bool symmetric, double* G, double* Gdot,
                                  const KernelOptions& o) {
  const PairEvaluator ev(phi, A, B);
  const Eigen::Index n1 = S.rows(), n2 = S.cols(), ld = n2;
  long long quad = 0;
#ifdef DEQFAST_HAVE_OPENMP
  const int nt = o.num_threads > 0 ? o.num_threads : omp_get_max_threads();
#endif
#pragma omp parallel for schedule(dynamic, 8) num_threads(nt) reduction(+ : quad)
  for (Eigen::Index i = 0; i < n1; ++i) {
    for (Eigen::Index j = symmetric ? i : 0; j < n2; ++j) {
      double g, gd;
      if (symmetric && i == j) {
        g = A.m2[i];
        gd = A.e2[i];
      } else if (!ev.eval(i, j, S(i, j), g, gd)) {
        ev.eval_quadrature(i, j, S(i, j), g, gd);
        ++quad;
      }
      if (G) G[i * ld + j] = g;
      if (Gdot) Gdot[i * ld + j] = gd;
      if (symmetric) {
        if (G) G[j * ld + i] = g;
        if (Gdot) Gdot[j * ld + i] = gd;
      }
    }
  }
  AssemblyStats st;
  st.pairs = symmetric ? n1 * (n1 + 1) / 2 : n1 * n2;
  st.quadrature_pairs = quad;
  return st;
}

}  // namespace deqfast
