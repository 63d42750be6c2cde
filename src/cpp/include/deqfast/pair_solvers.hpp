// Vectorised pair solvers: they run solve_pair's first steps for many pairs at once: the
// start from the linearisation at s = 0, two evaluations, and solve_pair's stopping rule.
// Nearly every pair stops there (2.0 evaluations on average); a pair that does not, or where a
// safeguard would act, is flagged (evals = 0) for the scalar solve_pair. The helpers are
// branch-free (bitwise & on bools, selects) so that the compiler vectorises the lane loops.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <vector>

#include "deqfast/activation.hpp"
#include "deqfast/diagonal.hpp"
#include "deqfast/pair_kernels.hpp"
#include "deqfast/simd_math.hpp"

namespace deqfast {

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

}  // namespace deqfast
