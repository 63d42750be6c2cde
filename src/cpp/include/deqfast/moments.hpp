// Gaussian moments of an activation at scale tau (docs/theory.md §2):
//   a0 = E phi(tau xi), a1 = E phi'(tau xi), a2 = E phi'', a3 = E phi''',
//   m2 = E phi^2, m2_dot = d m2 / d(tau^2) (at a fixed centring shift), e2 = E phi'^2,
// and the normalised Hermite coefficients h_k = E[phi(tau xi) He_k(xi)] / sqrt(k!)
// used by Mehler's formula for the pair kernels.
#pragma once

#include <cmath>
#include <stdexcept>
#include <vector>

#include "deqfast/activation.hpp"
#include "deqfast/quadrature.hpp"
#include "deqfast/simd_math.hpp"

namespace deqfast {

struct Moments {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0, m2 = 0, m2_dot = 0, e2 = 0;
};

/// Apply the centring shift c to raw moments: phi_c = phi - c.
inline Moments apply_shift(Moments m, double c) {
  // E(phi-c)^2 = m2 - 2 c a0 + c^2 ; d/dtau^2 of it at fixed c = m2_dot - c * a2 (heat equation:
  // d a0 / d tau^2 = a2 / 2).
  m.m2 = m.m2 - 2.0 * c * m.a0 + c * c;
  m.m2_dot = m.m2_dot - c * m.a2;
  m.a0 -= c;
  return m;
}

/// Moments from the Gaussian sums E f, E xi f, E (xi^2-1) f, E (xi^3-3xi) f, E f^2,
/// E (xi^2-1) f^2 and E phi'^2 of f(xi) = phi(tau xi): Hermite coefficients scaled back to tau.
inline Moments moments_from_sums(double tau, double s0, double s1, double s2, double s3, double q0,
                                 double q2, double e) {
  Moments m;
  const double t2 = tau * tau;
  m.a0 = s0;
  m.a1 = s1 / tau;
  m.a2 = s2 / t2;
  m.a3 = s3 / (t2 * tau);
  m.m2 = q0;
  m.m2_dot = q2 / (2.0 * t2);
  m.e2 = e;
  return m;
}

/// phi.raw(t x_i) and phi'(t x_i) at n nodes. Tanh, sigmoid and swish use the branch-free
/// tanh_vec and sigmoid_vec of simd_math.hpp (about 1 ulp), which vectorise: the
/// scalar C library calls were half the cost of an explicit layer's per-sample moments and
/// Hermite expansions (samples_at). Other activations call the scalar functions.
inline void raw_and_deriv(const Activation& phi, double t, const double* x, std::size_t n, double* f, double* d) {
  switch (phi.kind) {
    case Kind::Tanh:
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) {
        const double v = tanh_vec(t * x[i]);
        f[i] = v;
        d[i] = 1.0 - v * v;
      }
      return;
    case Kind::Sigmoid:
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) {
        const double s = sigmoid_vec(t * x[i]);
        f[i] = s;
        d[i] = s * (1.0 - s);
      }
      return;
    case Kind::Swish:
#pragma omp simd
      for (std::size_t i = 0; i < n; ++i) {
        const double y = t * x[i], s = sigmoid_vec(y);
        f[i] = y * s;
        d[i] = s + y * s * (1.0 - s);
      }
      return;
    default:
      for (std::size_t i = 0; i < n; ++i) {
        f[i] = phi.raw(t * x[i]);
        d[i] = phi.deriv(t * x[i]);
      }
  }
}

/// Raw moments by the symmetric composite rule: every node xi > 0 is paired with -xi, so
/// odd activations give a0 = a2 = 0 exactly rather than rounding noise.
inline Moments raw_moments_quadrature(const Activation& phi, double tau) {
  static const Rule smooth = gaussian_half_rule({});  // no kinks: the rule does not depend on tau
  const std::vector<double> kinks = scaled_kinks(phi, tau);
  const Rule& r = kinks.empty() ? smooth : cached_rule(kinks, 12.0, 0.5, true);
  const std::size_t n = r.x.size();
  thread_local std::vector<double> buf;
  buf.resize(4 * n);
  double *fpv = buf.data(), *fmv = fpv + n, *dpv = fmv + n, *dmv = dpv + n;
  raw_and_deriv(phi, tau, r.x.data(), n, fpv, dpv);
  raw_and_deriv(phi, -tau, r.x.data(), n, fmv, dmv);
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0, q0 = 0, q2 = 0, e = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double xi = r.x[i], w = r.w[i];
    const double fp = fpv[i], fm = fmv[i], dp = dpv[i], dm = dmv[i];
    const double x2 = xi * xi, fe = fp + fm, fo = fp - fm, f2 = fp * fp + fm * fm;
    s0 += w * fe;
    s1 += w * xi * fo;
    s2 += w * (x2 - 1.0) * fe;
    s3 += w * (x2 - 3.0) * xi * fo;
    q0 += w * f2;
    q2 += w * (x2 - 1.0) * f2;
    e += w * (dp * dp + dm * dm);
  }
  return moments_from_sums(tau, s0, s1, s2, s3, q0, q2, e);
}

inline Moments raw_moments_polynomial(const Activation& phi, double tau) {
  const std::size_t deg = phi.coef.size();
  // m2 integrand has degree 2*deg + 2 (with the xi^2 weight): exact with deg + 3 nodes.
  const Rule& r = gauss_hermite_prob(int(deg) + 4);
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0, q0 = 0, q2 = 0, e = 0;
  for (std::size_t i = 0; i < r.x.size(); ++i) {
    const double xi = r.x[i], w = r.w[i];
    const double f = phi.raw(tau * xi), d = phi.deriv(tau * xi);
    const double x2 = xi * xi;
    s0 += w * f;
    s1 += w * xi * f;
    s2 += w * (x2 - 1.0) * f;
    s3 += w * (x2 - 3.0) * xi * f;
    q0 += w * f * f;
    q2 += w * (x2 - 1.0) * f * f;
    e += w * d * d;
  }
  return moments_from_sums(tau, s0, s1, s2, s3, q0, q2, e);
}

/// Gaussian moments of phi (including its shift) at scale tau > 0.
inline Moments gaussian_moments(const Activation& phi, double tau) {
  if (!(tau > 0) || !std::isfinite(tau)) throw std::invalid_argument("moments: tau must be > 0");
  Moments m;
  const double t2 = tau * tau;
  switch (phi.kind) {
    case Kind::PiecewiseLinear: {
      // phi = s_neg x + (s_pos - s_neg) relu(x)
      const double sp = phi.p0, sn = phi.p1, dlt = sp - sn;
      m.a0 = dlt * tau / kSqrt2Pi;
      m.a1 = 0.5 * (sp + sn);
      m.a2 = dlt / (tau * kSqrt2Pi);
      m.a3 = 0.0;
      m.m2 = 0.5 * (sp * sp + sn * sn) * t2;
      m.m2_dot = 0.5 * (sp * sp + sn * sn);
      m.e2 = 0.5 * (sp * sp + sn * sn);
      break;
    }
    case Kind::Erf: {
      const double u = 1.0 + 2.0 * t2, v = 1.0 + 4.0 * t2;
      m.a0 = 0.0;
      m.a1 = 2.0 * kInvSqrtPi / std::sqrt(u);
      m.a2 = 0.0;
      m.a3 = -4.0 * kInvSqrtPi / (u * std::sqrt(u));
      m.m2 = (2.0 / kPi) * std::asin(2.0 * t2 / u);
      m.m2_dot = 4.0 / (kPi * u * std::sqrt(v));
      m.e2 = (4.0 / kPi) / std::sqrt(v);
      break;
    }
    case Kind::Polynomial:
    case Kind::Hermite:
      m = raw_moments_polynomial(phi, tau);
      break;
    default:
      m = raw_moments_quadrature(phi, tau);
  }
  return apply_shift(m, phi.shift);
}

/// Normalised Hermite coefficients h_k = E[phi(tau xi) He_k(xi)] / sqrt(k!), k = 0..K-1,
/// of phi including its shift; also returns the Parseval remainders
///   rem   = E phi^2 - sum_k h_k^2                (tail of the CK series)
///   remd  = tau^2 E phi'^2 - sum_k k h_k^2      (tail of the derivative series)
/// clamped at 0 (they are exact up to rounding).
struct HermiteExpansion {
  std::vector<double> h;
  double rem = 0, remd = 0;
};

inline HermiteExpansion hermite_expansion(const Activation& phi, double tau, int K) {
  HermiteExpansion out;
  out.h.assign(K, 0.0);
  // He_k(xi) e^{-xi^2/4} / sqrt(k!) lives in |xi| < 2 sqrt(k); beyond that the Gaussian wins.
  const double L = std::max(12.0, 2.0 * std::sqrt(double(K)) + 8.0);
  const Rule* rule = nullptr;
  if (phi.is_polynomial()) {
    rule = &gauss_hermite_prob(int(phi.coef.size()) + K / 2 + 4);
  } else {  // the same rule for every sample of a smooth activation or fixed kinks (per thread)
    rule = &cached_rule(scaled_kinks(phi, tau), L, 0.5, false);
  }
  // normalised recurrence h_{k+1} = xi h_k / sqrt(k+1) - sqrt(k / (k+1)) h_{k-1}
  std::vector<double> a(K + 1), b(K + 1);
  for (int k = 0; k <= K; ++k) {
    a[k] = 1.0 / std::sqrt(double(k + 1));
    b[k] = std::sqrt(double(k) / double(k + 1));
  }
  // W nodes at a time, each lane its own recurrence and partial sums (the recurrence is a
  // dependency chain per node; across nodes it vectorises). One block's chain (a multiply,
  // then a fused multiply-add, per k) is latency-bound, so G independent blocks run
  // interleaved; each partial sum acc(k, l) still receives the nodes' terms in increasing
  // node order, so the coefficients are bit for bit those of one block at a time. G = 3:
  // 2.3x faster than one block (tanh, K = 64: 29 -> 12.4 us per sample, GCC 12, AVX-512);
  // G = 2 gave 1.7x, G = 4 1.4x (register pressure).
  constexpr int W = 8, G = 3;
  std::vector<double> acc(std::size_t(K) * W, 0.0);
  double m2 = 0, e2 = 0;
  const std::size_t N = rule->x.size();
  thread_local std::vector<double> fd;  // phi.raw and phi' at the nodes
  fd.resize(2 * N);
  raw_and_deriv(phi, tau, rule->x.data(), N, fd.data(), fd.data() + N);
  for (std::size_t i0 = 0; i0 < N; i0 += std::size_t(W) * G) {
    double xi[G][W], wf[G][W], hk[G][W], hm1[G][W];
    for (int g = 0; g < G; ++g)
      for (int l = 0; l < W; ++l) {
        const std::size_t i = i0 + std::size_t(g) * W + l;
        hk[g][l] = 1.0;
        hm1[g][l] = 0.0;
        xi[g][l] = wf[g][l] = 0.0;
        if (i >= N) continue;
        const double w = rule->w[i];
        xi[g][l] = rule->x[i];
        const double f = fd[i] - phi.shift, d = fd[N + i];
        wf[g][l] = w * f;
        m2 += wf[g][l] * f;
        e2 += w * d * d;
      }
    for (int k = 0; k < K; ++k) {
      double* ak = acc.data() + std::size_t(k) * W;
      const double ka = a[k], kb = b[k];
      double s[W];  // acc(k, .) in registers while the G blocks add to it, in order
#pragma omp simd
      for (int l = 0; l < W; ++l) s[l] = ak[l];
      for (int g = 0; g < G; ++g) {
#pragma omp simd
        for (int l = 0; l < W; ++l) {
          s[l] += wf[g][l] * hk[g][l];
          const double hp1 = xi[g][l] * hk[g][l] * ka - kb * hm1[g][l];
          hm1[g][l] = hk[g][l];
          hk[g][l] = hp1;
        }
      }
#pragma omp simd
      for (int l = 0; l < W; ++l) ak[l] = s[l];
    }
  }
  for (int k = 0; k < K; ++k)
    for (int l = 0; l < W; ++l) out.h[k] += acc[std::size_t(k) * W + l];
  double s = 0, sd = 0;
  for (int k = 0; k < K; ++k) {
    s += out.h[k] * out.h[k];
    sd += k * out.h[k] * out.h[k];
  }
  out.rem = std::max(0.0, m2 - s);
  out.remd = std::max(0.0, tau * tau * e2 - sd);
  return out;
}

}  // namespace deqfast
