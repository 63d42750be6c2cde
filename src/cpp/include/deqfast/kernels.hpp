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
#include <stdexcept>
#include <string>
#include <vector>

#ifdef DEQFAST_HAVE_OPENMP
#include <omp.h>
#endif

#include "deqfast/activation.hpp"
#include "deqfast/moments.hpp"
#include "deqfast/quadrature.hpp"

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
  double tol = 1e-12;   // absolute tolerance on each scalar fixed point
  int max_iter = 100;   // per scalar fixed point
  int hermite_terms = 64;  // Mehler series length for generic activations
  int block = 64;          // tile edge of the assembly
  int num_threads = 0;     // 0: OpenMP default
};

/// Per-sample quantities at the diagonal fixed point d_i.
struct SampleData {
  Eigen::VectorXd d, m2, e2;  // S*_ii, G*_ii, Gdot*_ii
  RowMatrix herm;             // n x K normalised Hermite coefficients (Mehler only)
  RowMatrix tail;             // n x (K+1): tail(i,k) = sum_{l>=k} h_l^2 (Parseval, incl. remainder)
  RowMatrix dtail;            // n x (K+1): dtail(i,k) = sum_{l>=k} l h_l^2 (incl. remainder)
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
  sd.tail(i, K) = t;
  sd.dtail(i, K) = td;
  for (int k = K - 1; k >= 0; --k) {
    sd.herm(i, k) = he.h[k];
    t += he.h[k] * he.h[k];
    td += k * he.h[k] * he.h[k];
    sd.tail(i, k) = t;
    sd.dtail(i, k) = td;
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
    sd.tail.resize(n, K + 1);
    sd.dtail.resize(n, K + 1);
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
      if (step <= o.tol * std::max(1.0, d)) {
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
        const double tg = 1e-15 * std::sqrt(a_.m2[i] * b_.m2[j]) + 1e-300;
        const double tgd = 1e-14 * std::sqrt(a_.e2[i] * b_.e2[j]) * sq + 1e-300;
        auto ok = [&](int kk, double pkm1) {  // pkm1 = |rho|^(kk-1)
          return pkm1 * ar * std::sqrt(a_.tail(i, kk) * b_.tail(j, kk)) <= tg &&
                 pkm1 * std::sqrt(a_.dtail(i, kk) * b_.dtail(j, kk)) <= tgd;
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
/// curvature g'' is estimated from two evaluations, the error left after the current step is
/// predicted as sigma_a2 |g''| step^2 / (2 f'); when that is below tol/100 the step is accepted
/// and G, Gdot are extrapolated to second order. The extrapolated Gdot errs by about
/// g''' * |previous step| * |step|, so that product must be below tol too. This saves the
/// confirming evaluation that a plain |step| <= tol test would cost.
inline int solve_pair(const PairEvaluator& ev, Eigen::Index i, Eigen::Index j, double b, double bound,
                      const KernelOptions& o, double& s_out, double& g_out, double& gd_out, bool& quad,
                      long long& picard, double& err) {
  const double sa2 = o.sigma_a2;
  double g = 0, gd = 0;
  ev.eval_zero(i, j, g, gd);
  double s = (b + sa2 * g) / (1.0 - sa2 * gd);
  if (!(std::abs(s) < bound)) s = std::clamp(b, -bound, bound);
  double s_prev = 0, gd_prev = 0;
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
    double curv = 0.0;  // estimate of g''
    if (have_prev && s != s_prev) curv = (gd - gd_prev) / (s - s_prev);
    const bool predicted = have_prev && fp > 0 &&
                           0.5 * sa2 * std::abs(curv) * step * step / fp <= 0.01 * o.tol &&
                           std::abs(s - s_prev) * last_step <= o.tol;  // bounds the error of curv * step
    if (last_step <= o.tol || predicted) {
      // error estimate of s: the quadratic-convergence prediction, else the last step
      err = predicted ? std::min(last_step, 0.5 * sa2 * std::abs(curv) * step * step / fp) : last_step;
      s_out = sn;
      g_out = g + gd * step + 0.5 * curv * step * step;
      gd_out = gd + curv * step;
      return it + 1;
    }
    s_prev = s;
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

#ifdef DEQFAST_HAVE_OPENMP
  const int nt = o.num_threads > 0 ? o.num_threads : omp_get_max_threads();
#endif
#pragma omp parallel num_threads(nt) reduction(+ : pairs, newton, picard, quad_pairs, unconv) \
    reduction(max : max_it, max_error)
  {
    RowMatrix gram;
    RowMatrix buf[5];  // the tile of each requested output, written back as whole blocks
    double* ptrs[5] = {out.S, out.G, out.Gdot, out.K, out.Theta};
#pragma omp for schedule(dynamic, 1)
    for (std::size_t t = 0; t < tiles.size(); ++t) {
      const Eigen::Index i0 = tiles[t].i0, j0 = tiles[t].j0;
      const Eigen::Index ni = std::min(bs, r1 - i0), nj = std::min(bs, c1 - j0);
      gram.noalias() = XA.middleRows(i0, ni) * XB.middleRows(j0, nj).transpose();
      for (int q = 0; q < 5; ++q)
        if (ptrs[q]) buf[q].resize(ni, nj);
      for (Eigen::Index a = 0; a < ni; ++a) {
        const Eigen::Index i = i0 + a;
        for (Eigen::Index bcol = 0; bcol < nj; ++bcol) {
          const Eigen::Index j = j0 + bcol;
          if (symmetric && j < i) continue;  // filled by symmetry below (diagonal tiles only)
          double s, g, gd;
          if (symmetric && j == i) {
            s = A.d[i];
            g = A.m2[i];
            gd = A.e2[i];
          } else {
            const double bij = sb2 * gram(a, bcol);
            const double bound = std::sqrt(A.d[i] * B.d[j]);
            bool quad = false;
            double last = 0;
            const int it = solve_pair(ev, i, j, bij, bound, o, s, g, gd, quad, picard, last);
            ++pairs;
            newton += it;
            if (quad) ++quad_pairs;
            if (it > o.max_iter) ++unconv;
            max_it = std::max(max_it, it);
            max_error = std::max(max_error, last);
          }
          const double den = 1.0 - sa2 * gd;
          const double vals[5] = {s, g, gd, g / den, g + gd * s / den};
          for (int q = 0; q < 5; ++q)
            if (ptrs[q]) buf[q](a, bcol) = vals[q];
        }
      }
      for (int q = 0; q < 5; ++q) {
        if (!ptrs[q]) continue;
        Eigen::Map<RowMatrix, 0, Eigen::OuterStride<>> M(ptrs[q], out.rows, ld, Eigen::OuterStride<>(ld));
        if (symmetric && i0 == j0) {  // diagonal tile: complete its lower triangle, write once
          buf[q].template triangularView<Eigen::StrictlyLower>() = buf[q].transpose();
          M.block(i0, j0, ni, nj) = buf[q];
        } else {
          M.block(i0, j0, ni, nj) = buf[q];
          if (symmetric) M.block(j0, i0, nj, ni) = buf[q].transpose();
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
