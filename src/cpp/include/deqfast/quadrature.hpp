// Gaussian quadrature rules and Gaussian expectations E g(xi), xi ~ N(0,1).
//
// Composite Gauss–Legendre split at breakpoints: plain Gauss–Hermite converges
// slowly across a kink (docs/theory.md §2: 200 nodes are 0.4 % off in ReLU's a2),
// whereas panels that end on every kink keep spectral accuracy on each piece.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "deqfast/activation.hpp"

namespace deqfast {

struct Rule {
  std::vector<double> x, w;
};

/// n-point Gauss–Legendre rule on [-1, 1] (Newton on the three-term recurrence).
inline Rule gauss_legendre(int n) {
  Rule r;
  r.x.resize(n);
  r.w.resize(n);
  for (int i = 0; i < (n + 1) / 2; ++i) {
    double z = std::cos(kPi * (i + 0.75) / (n + 0.5));
    double dp = 0.0;
    for (int it = 0; it < 100; ++it) {
      double p0 = 1.0, p1 = 0.0;
      for (int k = 1; k <= n; ++k) {
        const double p2 = p1;
        p1 = p0;
        p0 = ((2.0 * k - 1.0) * z * p1 - (k - 1.0) * p2) / k;
      }
      dp = n * (z * p0 - p1) / (z * z - 1.0);
      const double dz = p0 / dp;
      z -= dz;
      if (std::abs(dz) < 1e-16) break;
    }
    r.x[i] = -z;
    r.x[n - 1 - i] = z;
    r.w[i] = r.w[n - 1 - i] = 2.0 / ((1.0 - z * z) * dp * dp);
  }
  return r;
}

/// n-point Gauss–Hermite rule for the standard normal weight (probabilists'),
/// by Golub–Welsch; exact for polynomials of degree <= 2n - 1.
inline Rule gauss_hermite_prob_uncached(int n) {
  Eigen::MatrixXd J = Eigen::MatrixXd::Zero(n, n);
  for (int k = 1; k < n; ++k) J(k, k - 1) = J(k - 1, k) = std::sqrt(double(k));
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(J);
  Rule r;
  r.x.resize(n);
  r.w.resize(n);
  for (int i = 0; i < n; ++i) {
    r.x[i] = es.eigenvalues()(i);
    const double v = es.eigenvectors()(0, i);
    r.w[i] = v * v;
  }
  return r;
}

/// gauss_hermite_prob_uncached(n), computed once per n and thread: the explicit layers' per-sample
/// moments and Hermite expansions of polynomial activations ask for the same few rules for every
/// sample, and each Golub–Welsch eigendecomposition cost more than the sums it serves.
/// The reference stays valid for the thread's lifetime (map nodes do not move).
inline const Rule& gauss_hermite_prob(int n) {
  thread_local std::map<int, Rule> cache;
  auto it = cache.find(n);
  if (it == cache.end()) it = cache.emplace(n, gauss_hermite_prob_uncached(n)).first;
  return it->second;
}

/// Nodes and weights (including the N(0,1) density) of a composite Gauss–Legendre
/// rule on [-L, L], panels no wider than h, split at every breakpoint in (-L, L).
inline Rule gaussian_composite_rule(std::vector<double> breaks, double L = 12.0, double h = 0.5,
                                    int order = 16) {
  static const Rule gl = gauss_legendre(16);
  const Rule base = order == 16 ? gl : gauss_legendre(order);
  std::vector<double> pts{-L, L};
  for (double b : breaks)
    if (b > -L && b < L) pts.push_back(b);
  std::sort(pts.begin(), pts.end());
  pts.erase(std::unique(pts.begin(), pts.end()), pts.end());
  Rule r;
  for (std::size_t s = 0; s + 1 < pts.size(); ++s) {
    const double a = pts[s], b = pts[s + 1];
    if (b - a <= 0) continue;
    const int panels = std::max(1, int(std::ceil((b - a) / h)));
    const double step = (b - a) / panels;
    for (int q = 0; q < panels; ++q) {
      const double lo = a + q * step, half = 0.5 * step, mid = lo + half;
      for (std::size_t i = 0; i < base.x.size(); ++i) {
        const double xi = mid + half * base.x[i];
        r.x.push_back(xi);
        r.w.push_back(half * base.w[i] * std::exp(-0.5 * xi * xi) / kSqrt2Pi);
      }
    }
  }
  return r;
}

/// Composite rule on [0, L] for the symmetrised expectation E g = sum_i w_i (g(x_i) + g(-x_i)),
/// split at |b| for every breakpoint b (weights include the N(0,1) density).
inline Rule gaussian_half_rule(std::vector<double> breaks, double L = 12.0, double h = 0.5) {
  std::vector<double> pos{0.0};
  for (double b : breaks) pos.push_back(std::abs(b));
  Rule full = gaussian_composite_rule(pos, L, h);
  Rule r;
  for (std::size_t i = 0; i < full.x.size(); ++i)
    if (full.x[i] > 0) {
      r.x.push_back(full.x[i]);
      r.w.push_back(full.w[i]);
    }
  return r;
}

/// The last rule built on this thread for (breaks, L, h), one slot for half rules and one for
/// full ones: an activation whose kinks do not move with the scale (ELU's at 0, for one) asks
/// for the same two rules (the moments' half rule, the Hermite expansion's full one) for every
/// sample of a diagonal solve or an explicit layer, and building them (hundreds of nodes, an exp
/// each) cost more than the sums they serve. The reference stays valid until the thread's next
/// call with the same `half`.
inline const Rule& cached_rule(const std::vector<double>& breaks, double L, double h, bool half) {
  struct Slot {
    std::vector<double> breaks;
    double L = -1.0, h = -1.0;
    Rule rule;
  };
  thread_local Slot slots[2];
  Slot& s = slots[half ? 1 : 0];
  if (s.L != L || s.h != h || s.breaks != breaks) {
    s.rule = half ? gaussian_half_rule(breaks, L, h) : gaussian_composite_rule(breaks, L, h);
    s.breaks = breaks;
    s.L = L;
    s.h = h;
  }
  return s.rule;
}

/// Breakpoints in xi-space of phi(tau * xi).
inline std::vector<double> scaled_kinks(const Activation& phi, double tau) {
  std::vector<double> k = phi.kinks();
  for (double& v : k) v /= tau;
  return k;
}

}  // namespace deqfast
