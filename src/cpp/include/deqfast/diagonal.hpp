// Per-sample data of the exact kernels (docs/theory.md §3): the diagonal fixed points
//   d_i = sigma_a2 E[phi(sqrt(d_i) xi)^2] + sigma_b2 |x_i|^2
// (solve_diagonal), or per-sample data at given variances (samples_at, explicit layers), with
// what the pair kernels need of each sample (one-point moments, Hermite expansion and tails).
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "deqfast/activation.hpp"
#include "deqfast/matrix.hpp"
#include "deqfast/moments.hpp"
#include "deqfast/parallel.hpp"

namespace deqfast {

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
  int num_threads = 0;     // 0: OpenMP default (resolve_threads clamps)
  Cancel* cancel = nullptr;  // polled between rows / samples; a stop throws Interrupted
};

/// Whether `cancel` (may be null) asks the computation to stop; polls it on its owning thread.
inline bool stop_requested(Cancel* cancel) { return cancel != nullptr && cancel->check(); }

/// After a parallel region: rethrow its first error, or Interrupted if it was cancelled.
inline void finish_region(const ParallelErrors& errors, const Cancel* cancel) {
  errors.rethrow();
  if (cancel) cancel->throw_if_stopped();
}

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
/// explicit layer, K = F_phi(S), needs exactly this (docs/theory.md §5).
inline SampleData samples_at(const Activation& phi, const Eigen::Ref<const Eigen::VectorXd>& d, int hermite_terms,
                             Cancel* cancel = nullptr) {
  const Eigen::Index n = d.size();
  SampleData sd = allocate_samples(phi, n, hermite_terms);
  for (Eigen::Index i = 0; i < n; ++i)
    if (!(d[i] > 0) || !std::isfinite(d[i]))
      throw std::domain_error("variance of sample " + std::to_string(i) + " must be finite and > 0");
  sd.d = d;
  const int K = int(sd.herm.cols());
  ParallelErrors errors;
#pragma omp parallel for schedule(dynamic, 16) if (n > 64)
  for (Eigen::Index i = 0; i < n; ++i) {
    if (stop_requested(cancel)) continue;
    errors.guard([&] { fill_sample(phi, sd, i, gaussian_moments(phi, std::sqrt(d[i])), K); });
  }
  finish_region(errors, cancel);
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
  ParallelErrors guard;  // exceptions (e.g. from the moments) carried out of the region
  [[maybe_unused]] const int nt = resolve_threads(o.num_threads);
#pragma omp parallel for schedule(dynamic, 16) reduction(max : max_it, max_res) num_threads(nt) if (n > 64)
  for (Eigen::Index i = 0; i < n; ++i) {
    if (stop_requested(o.cancel)) continue;
    guard.guard([&] {
      const double c = o.sigma_b2 * sqnorm[i];
      if (!(c > 0)) {
#pragma omp critical
        errors.push_back("sample " + std::to_string(i) + " has zero norm");
        return;
      }
      if (!std::isfinite(c)) {
#pragma omp critical
        errors.push_back("sigma_b2 * |x_" + std::to_string(i) + "|^2 overflows (" + std::to_string(o.sigma_b2) +
                         " * " + std::to_string(sqnorm[i]) + "); scale X down or reduce sigma_b2");
        return;
      }
      double d = c, res = 0;
      int it = 0;
      Moments m;
      for (; it < o.max_iter; ++it) {
        if (!std::isfinite(d)) break;  // diverged: reported below
        m = gaussian_moments(phi, std::sqrt(d));
        const double F = d - o.sigma_a2 * m.m2 - c;
        const double Fp = 1.0 - o.sigma_a2 * m.m2_dot;
        res = std::abs(F);
        double dn = (Fp > 0.05) ? d - F / Fp : o.sigma_a2 * m.m2 + c;  // Newton, else Picard
        if (!(dn >= c) || !std::isfinite(dn)) dn = std::max(c, o.sigma_a2 * m.m2 + c);
        const double step = std::abs(dn - d);
        d = dn;
        if (std::isfinite(d) && step <= o.tol * d) {  // relative: data of any magnitude
          m = gaussian_moments(phi, std::sqrt(d));
          res = std::abs(d - o.sigma_a2 * m.m2 - c);
          break;
        }
      }
      if (!std::isfinite(d)) {
#pragma omp critical
        errors.push_back("the diagonal fixed point of sample " + std::to_string(i) +
                         " diverges (S_ii grows without bound: sigma_a2 E[phi(u)^2] outgrows the variance"
                         " at sigma_a2 = " + std::to_string(o.sigma_a2) +
                         "); reduce sigma_a2 or the activation's growth (coefficients, slope), or scale X down");
        return;
      }
      if (it >= o.max_iter && o.sigma_a2 * m.m2_dot >= 1.0) {
#pragma omp critical
        errors.push_back("no diagonal fixed point for sample " + std::to_string(i) +
                         ": sigma_a2 * d E[phi^2]/d(tau^2) = " + std::to_string(o.sigma_a2 * m.m2_dot) +
                         " >= 1, the variance map is not a contraction; reduce sigma_a2");
        return;
      }
      if (it >= o.max_iter) {
#pragma omp critical
        failures.push_back("diagonal fixed point of sample " + std::to_string(i) + " did not converge within " +
                           std::to_string(o.max_iter) + " iterations (residual " + std::to_string(res) + ")");
        return;
      }
      if (o.sigma_a2 * m.e2 >= 1.0) {
#pragma omp critical
        errors.push_back("sigma_a2 * E phi'(u)^2 = " + std::to_string(o.sigma_a2 * m.e2) + " >= 1 at sample " +
                         std::to_string(i) + ": the pair fixed points are not contractions; reduce sigma_a2");
        return;
      }
      sd.d[i] = d;
      fill_sample(phi, sd, i, m, K);
      max_it = std::max(max_it, it + 1);
      max_res = std::max(max_res, res);
    });
  }
  finish_region(guard, o.cancel);
  if (!errors.empty()) throw std::domain_error(errors.front());
  if (!failures.empty()) throw std::runtime_error(failures.front());
  sd.iterations = max_it;
  sd.residual = max_res;
  return sd;
}

}  // namespace deqfast
