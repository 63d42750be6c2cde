// Fixed-point solvers for x = G(x) on a flat Eigen state: plain (damped) Picard
// iteration and Anderson acceleration in the Walker–Ni least-squares form
// (H. F. Walker & P. Ni, "Anderson acceleration for fixed-point iterations",
// SIAM J. Numer. Anal. 49 (2011) 1715–1735).
//
// Notation: x_k the iterate, g_k = G(x_k), f_k = g_k - x_k the residual.
// Anderson(mem) keeps the mk <= mem most recent differences
//   dF = [f_{i+1} - f_i],   dG = [g_{i+1} - g_i]
// and a thin QR factorisation dF = Q R that is updated as columns enter
// (modified Gram–Schmidt) and leave (Givens rotations). Each step solves the
// small least-squares problem  gamma = argmin |f_k - dF gamma|  as
// R gamma = Q^T f_k and moves to
//   x_{k+1} = g_k - dG gamma - (1 - beta) (f_k - Q Q^T f_k)        (damping beta)
// which is  x_k + beta f_k - (dX + beta dF) gamma  with dX = dG - dF.
// Columns are dropped (oldest first) while the condition estimate of R,
// max|R_ii| / min|R_ii|, exceeds `drop_tol`; the history is cleared every
// `restart` iterations (0: never) and whenever the step is not finite.
//
// Stopping test: the relative residual |G(x) - x|_F / |G(x)|_F <= tol, one
// Frobenius norm per evaluation; no spectral norm is ever computed. The state
// returned is the last evaluation G(x_k). Divergence (|f_k| above
// `divergence` times the smallest |f| seen) and NaN/inf stop the iteration.
//
// Plain C++17 + Eigen: no pybind11 here.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace deqfast {

enum class FixedPointMethod { Picard, Anderson };

enum class SolverStatus { Converged, MaxIter, Diverged, NonFinite };

inline const char* status_name(SolverStatus s) {
  switch (s) {
    case SolverStatus::Converged: return "converged";
    case SolverStatus::MaxIter: return "max_iter";
    case SolverStatus::Diverged: return "diverged";
    case SolverStatus::NonFinite: return "nonfinite";
  }
  return "unknown";
}

struct SolverOptions {
  double tol = 1e-8;         // on |G(x) - x|_F / |G(x)|_F
  int max_iter = 500;        // maximum number of evaluations of G
  int memory = 5;            // Anderson memory (number of difference columns)
  double damping = 1.0;      // beta in (0, 1]
  double drop_tol = 1e10;    // maximal condition estimate of R before dropping columns
  int restart = 0;           // clear the Anderson history every `restart` iterations (0: never)
  double divergence = 1e6;   // stop when |f| > divergence * min |f| seen
};

struct SolverReport {
  SolverStatus status = SolverStatus::MaxIter;
  int iterations = 0;            // number of updates x_k -> x_{k+1}
  int evaluations = 0;           // number of evaluations of G
  double residual = std::numeric_limits<double>::infinity();  // final relative residual
  std::vector<double> residuals;  // relative residual after every evaluation
  int dropped = 0;               // columns dropped for ill-conditioning
  int restarts = 0;              // history clears (periodic or non-finite step)
  bool converged() const { return status == SolverStatus::Converged; }
};

namespace detail {

template <class Scalar>
using Mat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
template <class Scalar>
using Vec = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

template <class Scalar>
Eigen::Map<Vec<Scalar>> flat(Mat<Scalar>& a) {
  return Eigen::Map<Vec<Scalar>>(a.data(), a.size());
}
template <class Scalar>
Eigen::Map<const Vec<Scalar>> flat(const Mat<Scalar>& a) {
  return Eigen::Map<const Vec<Scalar>>(a.data(), a.size());
}

/// Norm with double accumulation (float32 states lose accuracy in long sums).
template <class Scalar>
double norm2(const Mat<Scalar>& a) {
  if constexpr (std::is_same_v<Scalar, double>) {
    return flat(a).norm();
  } else {
    double s = 0.0;
    const Scalar* p = a.data();
    for (Eigen::Index i = 0; i < a.size(); ++i) s += double(p[i]) * double(p[i]);
    return std::sqrt(s);
  }
}

/// Book-keeping shared by both solvers: residual, stopping and divergence tests.
struct Monitor {
  const SolverOptions& o;
  SolverReport& rep;
  double best = std::numeric_limits<double>::infinity();

  /// Record one evaluation; returns true when the iteration must stop.
  bool record(double fnorm, double gnorm) {
    ++rep.evaluations;
    const double r = gnorm > 0 ? fnorm / gnorm : fnorm;
    rep.residuals.push_back(r);
    rep.residual = r;
    if (!std::isfinite(fnorm) || !std::isfinite(gnorm)) {
      rep.status = SolverStatus::NonFinite;
      return true;
    }
    if (r <= o.tol) {
      rep.status = SolverStatus::Converged;
      return true;
    }
    best = std::min(best, fnorm);
    if (fnorm > o.divergence * best) {
      rep.status = SolverStatus::Diverged;
      return true;
    }
    if (rep.evaluations >= o.max_iter) {
      rep.status = SolverStatus::MaxIter;
      return true;
    }
    return false;
  }
};

}  // namespace detail

/// Plain (damped) Picard iteration x <- (1 - beta) x + beta G(x).
///
/// `G(const Mat& x, Mat& out)` writes G(x) into `out` (same shape as x).
/// On entry `x` is the initial guess; on exit it holds the last evaluation G(x_k).
template <class Scalar, class Func>
SolverReport picard(Func&& G, detail::Mat<Scalar>& x, const SolverOptions& o) {
  using M = detail::Mat<Scalar>;
  SolverReport rep;
  detail::Monitor mon{o, rep};
  M g(x.rows(), x.cols());
  const Scalar beta = Scalar(o.damping);
  while (true) {
    G(static_cast<const M&>(x), g);
    const double gn = detail::norm2<Scalar>(g);
    x -= g;  // x now holds -f
    const double fn = detail::norm2<Scalar>(x);
    if (mon.record(fn, gn)) break;
    // x_{k+1} = x_k + beta f_k = g_k - (1 - beta) f_k; here x = -f_k.
    if (beta == Scalar(1)) {
      x.swap(g);
    } else {
      x = g + (Scalar(1) - beta) * x;
    }
    ++rep.iterations;
  }
  x.swap(g);
  return rep;
}

/// Anderson acceleration (Walker–Ni form, see the file header).
///
/// Same calling convention as `picard`. With memory 0 it is damped Picard.
template <class Scalar, class Func>
SolverReport anderson(Func&& G, detail::Mat<Scalar>& x, const SolverOptions& o) {
  using M = detail::Mat<Scalar>;
  using V = detail::Vec<Scalar>;
  SolverReport rep;
  detail::Monitor mon{o, rep};
  const Eigen::Index N = x.size();
  const int mem = std::max(0, o.memory);
  const Scalar beta = Scalar(o.damping);

  M g(x.rows(), x.cols()), f(x.rows(), x.cols());
  M f_old(mem > 0 ? x.rows() : 0, x.cols()), g_old(mem > 0 ? x.rows() : 0, x.cols());
  // Q (N x mem): orthonormal basis of dF; dG (N x mem) in the same column order.
  M Q(N, std::max(mem, 1)), dG(N, std::max(mem, 1));
  Eigen::MatrixXd R = Eigen::MatrixXd::Zero(std::max(mem, 1), std::max(mem, 1));
  int mk = 0;
  bool have_old = false;
  int since_restart = 0;

  // Remove the oldest column: R := R[:, 1:] is upper Hessenberg, Givens rotations
  // restore the triangle and are applied to the columns of Q.
  auto delete_first = [&]() {
    for (int i = 0; i + 1 < mk; ++i) {
      // column i+1 of the old R becomes column i
      const double a = R(i, i + 1), b = R(i + 1, i + 1);
      const double r = std::hypot(a, b);
      const double c = r > 0 ? a / r : 1.0, s = r > 0 ? b / r : 0.0;
      // rotate rows i, i+1 of R (columns i+1.. of old R)
      for (int j = i + 1; j < mk; ++j) {
        const double t1 = R(i, j), t2 = R(i + 1, j);
        R(i, j) = c * t1 + s * t2;
        R(i + 1, j) = -s * t1 + c * t2;
      }
      // rotate columns i, i+1 of Q
      auto qi = Q.col(i);
      auto qj = Q.col(i + 1);
      const Scalar cs = Scalar(c), sn = Scalar(s);
      for (Eigen::Index k = 0; k < N; ++k) {
        const Scalar t1 = qi[k], t2 = qj[k];
        qi[k] = cs * t1 + sn * t2;
        qj[k] = -sn * t1 + cs * t2;
      }
    }
    // shift R left by one column and drop the last row/column
    for (int j = 0; j + 1 < mk; ++j) R.col(j).head(mk - 1) = R.col(j + 1).head(mk - 1);
    R.col(mk - 1).setZero();
    R.row(mk - 1).setZero();
    // dG: shift columns left (mem is small; one pass over mk-1 columns)
    for (int j = 0; j + 1 < mk; ++j) dG.col(j) = dG.col(j + 1);
    --mk;
  };

  auto clear = [&]() {
    mk = 0;
    R.setZero();
    ++rep.restarts;
  };

  auto cond_estimate = [&]() {
    double lo = std::numeric_limits<double>::infinity(), hi = 0.0;
    for (int i = 0; i < mk; ++i) {
      const double d = std::abs(R(i, i));
      lo = std::min(lo, d);
      hi = std::max(hi, d);
    }
    return lo > 0 ? hi / lo : std::numeric_limits<double>::infinity();
  };

  while (true) {
    G(static_cast<const M&>(x), g);
    const double gn = detail::norm2<Scalar>(g);
    f = g - x;
    const double fn = detail::norm2<Scalar>(f);
    if (mon.record(fn, gn)) break;

    if (mem > 0) {
      if (o.restart > 0 && since_restart >= o.restart) {
        clear();
        since_restart = 0;
        have_old = false;
      }
      if (have_old) {
        if (mk == mem) delete_first();
        // new column df = f - f_old, orthogonalised against Q by modified Gram–Schmidt
        auto q = Q.col(mk);
        q = detail::flat<Scalar>(f) - detail::flat<Scalar>(f_old);
        const double dfn = q.template cast<double>().norm();
        for (int j = 0; j < mk; ++j) {
          const double h = Q.col(j).template cast<double>().dot(q.template cast<double>());
          R(j, mk) = h;
          q -= Scalar(h) * Q.col(j);
        }
        const double rn = q.template cast<double>().norm();
        if (rn > 1e-14 * dfn && std::isfinite(rn)) {
          R(mk, mk) = rn;
          q /= Scalar(rn);
          dG.col(mk) = detail::flat<Scalar>(g) - detail::flat<Scalar>(g_old);
          ++mk;
          while (mk > 1 && cond_estimate() > o.drop_tol) {
            delete_first();
            ++rep.dropped;
          }
        } else {
          R.col(mk).setZero();
          ++rep.dropped;
        }
      }
      have_old = true;
      ++since_restart;
    }

    if (mk > 0) {
      const auto ff = detail::flat<Scalar>(f);
      Eigen::VectorXd h(mk);
      for (int j = 0; j < mk; ++j) h[j] = Q.col(j).template cast<double>().dot(ff.template cast<double>());
      const Eigen::VectorXd gamma = R.topLeftCorner(mk, mk).triangularView<Eigen::Upper>().solve(h);
      if (!gamma.allFinite()) {
        clear();
        x = g - (Scalar(1) - beta) * f;
      } else {
        const V gam = gamma.cast<Scalar>();
        auto xf = detail::flat<Scalar>(x);
        xf = detail::flat<Scalar>(g);
        xf.noalias() -= dG.leftCols(mk) * gam;
        if (beta != Scalar(1)) {
          // (1 - beta) (f - Q Q^T f)
          const V hs = h.cast<Scalar>();
          V res = ff;
          res.noalias() -= Q.leftCols(mk) * hs;
          xf -= (Scalar(1) - beta) * res;
        }
      }
    } else {
      x = g - (Scalar(1) - beta) * f;
    }
    if (mem > 0) {  // keep f_k, g_k for the next difference (buffers are recycled)
      f_old.swap(f);
      g_old.swap(g);
    }
    ++rep.iterations;
  }
  x.swap(g);
  return rep;
}

/// Dispatch on the method.
template <class Scalar, class Func>
SolverReport solve_fixed_point(FixedPointMethod method, Func&& G, detail::Mat<Scalar>& x,
                               const SolverOptions& o) {
  if (method == FixedPointMethod::Picard) return picard<Scalar>(std::forward<Func>(G), x, o);
  return anderson<Scalar>(std::forward<Func>(G), x, o);
}

}  // namespace deqfast
