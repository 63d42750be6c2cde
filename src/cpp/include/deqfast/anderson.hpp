// Fixed-point solvers for x = G(x) on a flat Eigen state: plain (damped) Picard
// iteration and Anderson acceleration in the Walker–Ni least-squares form
// (H. F. Walker & P. Ni, "Anderson acceleration for fixed-point iterations",
// SIAM J. Numer. Anal. 49 (2011) 1715–1735).
//
// Notation: x_k the iterate, g_k = G(x_k), f_k = g_k - x_k the residual.
// Anderson(mem) keeps the mk <= mem most recent differences
//   dF = [f_{i+1} - f_i],   dG = [g_{i+1} - g_i]
// and a thin QR factorisation dF = Q R that is updated as columns enter
// (classical Gram–Schmidt with one reorthogonalisation, fused into streaming
// sweeps) and leave (Givens rotations; Q is never shifted, dG is a ring buffer). Each step solves the
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

#ifdef DEQFAST_HAVE_OPENMP
#include <omp.h>
#endif

namespace deqfast {

enum class FixedPointMethod { Picard, Anderson };

constexpr int kMaxMemory = 64;  // Anderson memory cap (fixed-size accumulators in the fused sweeps)

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
  double tol = 1e-8;        // on |G(x) - x|_F / |G(x)|_F
  int max_iter = 500;       // maximum number of evaluations of G
  int memory = 5;           // Anderson memory (number of difference columns)
  double damping = 1.0;     // beta in (0, 1]
  double drop_tol = 1e10;   // maximal condition estimate of R before dropping columns
  int restart = 0;          // clear the Anderson history every `restart` iterations (0: never)
  double divergence = 1e6;  // stop when |f| > divergence * min |f| seen
  int num_threads = 0;      // OpenMP threads for the O(N) vector work (0: default)
};

struct SolverReport {
  SolverStatus status = SolverStatus::MaxIter;
  int iterations = 0;                                         // number of updates x_k -> x_{k+1}
  int evaluations = 0;                                        // number of evaluations of G
  double residual = std::numeric_limits<double>::infinity();  // final relative residual
  std::vector<double> residuals;                              // relative residual after every evaluation
  int dropped = 0;                                            // columns dropped for ill-conditioning
  int restarts = 0;                                           // history clears (periodic or non-finite step)
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

inline int vector_threads(Eigen::Index N, int requested) {
#ifdef DEQFAST_HAVE_OPENMP
  const int t = requested > 0 ? requested : omp_get_max_threads();
  const Eigen::Index useful = std::max<Eigen::Index>(1, N / (Eigen::Index(1) << 16));
  return int(std::max<Eigen::Index>(1, std::min<Eigen::Index>(t, useful)));
#else
  (void)N;
  (void)requested;
  return 1;
#endif
}

/// body(i0, i1, thread) over `threads` contiguous chunks of [0, N).
template <class Body>
void for_chunks(Eigen::Index N, int threads, Body&& body) {
#ifdef DEQFAST_HAVE_OPENMP
  if (threads > 1) {
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int t = 0; t < threads; ++t) body(N * t / threads, N * (t + 1) / threads, t);
    return;
  }
#endif
  (void)threads;
  body(0, N, 0);
}

/// Per-thread partial sums (padded to a cache line) for fused reductions.
struct Partials {
  int threads, stride, used = 0;
  std::vector<double> buf;
  Partials(int t, int width) : threads(t), stride((width + 7) / 8 * 8), buf(std::size_t(t) * stride, 0.0) {}
  void reset(int width) {
    used = width;
    std::fill(buf.begin(), buf.end(), 0.0);
  }
  double& at(int t, int j) { return buf[std::size_t(t) * stride + j]; }
  std::vector<double> sum() const {
    std::vector<double> s(used, 0.0);
    for (int t = 0; t < threads; ++t)
      for (int j = 0; j < used; ++j) s[j] += buf[std::size_t(t) * stride + j];
    return s;
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
  using Index = Eigen::Index;
  SolverReport rep;
  detail::Monitor mon{o, rep};
  const Index N = x.size();
  const int threads = detail::vector_threads(N, o.num_threads);
  detail::Partials part(threads, 2);
  M g(x.rows(), x.cols());
  const double omb = 1.0 - o.damping;
  while (true) {
    G(static_cast<const M&>(x), g);
    // one fused sweep: |g|^2, |g - x|^2 and the next iterate x + beta (g - x) = g - (1 - beta)(g - x)
    const Scalar* gp = g.data();
    Scalar* xp = x.data();
    part.reset(2);
    detail::for_chunks(N, threads, [&](Index i0, Index i1, int t) {
      double gg = 0, ff = 0;
      for (Index r = i0; r < i1; ++r) {
        const double gv = double(gp[r]), d = gv - double(xp[r]);
        gg += gv * gv;
        ff += d * d;
        xp[r] = Scalar(gv - omb * d);
      }
      part.at(t, 0) += gg;
      part.at(t, 1) += ff;
    });
    const auto tot = part.sum();
    if (mon.record(std::sqrt(tot[1]), std::sqrt(tot[0]))) break;
    ++rep.iterations;
  }
  x.swap(g);
  return rep;
}

/// Anderson acceleration (Walker–Ni form, see the file header).
///
/// Same calling convention as `picard`. With memory 0 it is damped Picard.
/// Every O(N) operation is a fused sweep over row chunks, threaded with OpenMP
/// when the state is large: per iteration about 9 + 7 mk vector passes.
template <class Scalar, class Func>
SolverReport anderson(Func&& G, detail::Mat<Scalar>& x, const SolverOptions& o) {
  using M = detail::Mat<Scalar>;
  using Index = Eigen::Index;
  SolverReport rep;
  detail::Monitor mon{o, rep};
  const Index N = x.size();
  const int mem = std::min(std::max(0, o.memory), kMaxMemory);
  const double beta = o.damping;
  const int threads = detail::vector_threads(N, o.num_threads);

  M g(x.rows(), x.cols()), f(x.rows(), x.cols());
  M f_old(mem > 0 ? x.rows() : 0, x.cols()), g_old(mem > 0 ? x.rows() : 0, x.cols());
  // Q (N x mem): orthonormal basis of dF, logical column j in slot j.
  // dG (N x mem): circular, logical column j in slot (head + j) % mem.
  M Q(N, mem), dG(N, mem);
  Eigen::MatrixXd R = Eigen::MatrixXd::Zero(std::max(mem, 1), std::max(mem, 1));
  Eigen::VectorXd hf = Eigen::VectorXd::Zero(std::max(mem, 1));  // Q^T f_k
  int mk = 0, head = 0;
  bool have_old = false;
  int since_restart = 0;
  std::vector<double> cs(std::max(mem, 1)), sn(std::max(mem, 1));
  std::vector<const Scalar*> qc(std::max(mem, 1)), dgc(std::max(mem, 1));

  auto qcol = [&](int j) { return Q.data() + Index(j) * N; };
  auto dgcol = [&](int j) { return dG.data() + Index((head + j) % mem) * N; };

  // Remove the oldest column: R := R[:, 1:] is upper Hessenberg; Givens rotations restore the
  // triangle and are applied to the columns of Q (one fused sweep) and to hf = Q^T f.
  auto delete_first = [&]() {
    for (int i = 0; i + 1 < mk; ++i) {
      const double a = R(i, i + 1), b = R(i + 1, i + 1);
      const double r = std::hypot(a, b);
      const double c = r > 0 ? a / r : 1.0, s = r > 0 ? b / r : 0.0;
      cs[i] = c;
      sn[i] = s;
      for (int j = i + 1; j < mk; ++j) {
        const double t1 = R(i, j), t2 = R(i + 1, j);
        R(i, j) = c * t1 + s * t2;
        R(i + 1, j) = -s * t1 + c * t2;
      }
      const double h1 = hf[i], h2 = hf[i + 1];
      hf[i] = c * h1 + s * h2;
      hf[i + 1] = -s * h1 + c * h2;
    }
    if (mk > 1) {
      Scalar* q0 = Q.data();
      const int k = mk;
      detail::for_chunks(N, threads, [&](Index i0, Index i1, int) {
        for (int i = 0; i + 1 < k; ++i) {
          Scalar* a = q0 + Index(i) * N;
          Scalar* b = q0 + Index(i + 1) * N;
          const Scalar c = Scalar(cs[i]), s = Scalar(sn[i]);
          for (Index r = i0; r < i1; ++r) {
            const Scalar t1 = a[r], t2 = b[r];
            a[r] = c * t1 + s * t2;
            b[r] = -s * t1 + c * t2;
          }
        }
      });
    }
    for (int j = 0; j + 1 < mk; ++j) R.col(j).head(mk - 1) = R.col(j + 1).head(mk - 1);
    R.col(mk - 1).setZero();
    R.row(mk - 1).setZero();
    hf[mk - 1] = 0.0;
    head = (head + 1) % mem;
    --mk;
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

  detail::Partials part(threads, 2 * std::max(mem, 1) + 4);

  while (true) {
    G(static_cast<const M&>(x), g);
    // S0: f = g - x, |g|^2, |f|^2
    {
      const Scalar* gp = g.data();
      const Scalar* xp = x.data();
      Scalar* fp = f.data();
      part.reset(2);
      detail::for_chunks(N, threads, [&](Index i0, Index i1, int t) {
        double gg = 0, ff = 0;
        for (Index r = i0; r < i1; ++r) {
          const Scalar d = gp[r] - xp[r];
          fp[r] = d;
          gg += double(gp[r]) * double(gp[r]);
          ff += double(d) * double(d);
        }
        part.at(t, 0) += gg;
        part.at(t, 1) += ff;
      });
      const auto tot = part.sum();
      if (mon.record(std::sqrt(tot[1]), std::sqrt(tot[0]))) break;
    }

    if (mem > 0) {
      if (o.restart > 0 && since_restart >= o.restart) {
        mk = 0;
        R.setZero();
        ++rep.restarts;
        since_restart = 0;
        have_old = false;
      }
      if (have_old) {
        if (mk == mem) delete_first();
        const int k = mk;
        for (int j = 0; j < k; ++j) qc[j] = qcol(j);
        Scalar* q = Q.data() + Index(k) * N;
        Scalar* dgn = dG.data() + Index((head + k) % mem) * N;
        const Scalar *fp = f.data(), *fo = f_old.data(), *gp = g.data(), *go = g_old.data();
        // S1: q = f - f_old, new dG column, Q^T q, Q^T f, |q|^2
        part.reset(2 * k + 1);
        detail::for_chunks(N, threads, [&](Index i0, Index i1, int t) {
          double acc[2 * 64 + 1] = {0};
          for (Index r = i0; r < i1; ++r) {
            const Scalar d = fp[r] - fo[r];
            q[r] = d;
            dgn[r] = gp[r] - go[r];
            for (int j = 0; j < k; ++j) {
              const double qj = double(qc[j][r]);
              acc[j] += qj * double(d);
              acc[k + j] += qj * double(fp[r]);
            }
            acc[2 * k] += double(d) * double(d);
          }
          for (int j = 0; j < 2 * k + 1; ++j) part.at(t, j) += acc[j];
        });
        auto p1 = part.sum();
        Eigen::VectorXd h(std::max(k, 1));
        for (int j = 0; j < k; ++j) {
          h[j] = p1[j];
          hf[j] = p1[k + j];
        }
        const double dfn = std::sqrt(p1[2 * k]);
        // S2, S3: classical Gram–Schmidt twice (q -= Q h; again), then |q|^2 and q.f
        double rn2 = dfn * dfn, qf = 0.0;
        for (int pass = 0; pass < 2 && k > 0; ++pass) {
          const Eigen::VectorXd hh = h;
          part.reset(k + 2);
          detail::for_chunks(N, threads, [&](Index i0, Index i1, int t) {
            double acc[64 + 2] = {0};
            for (Index r = i0; r < i1; ++r) {
              double v = double(q[r]);
              for (int j = 0; j < k; ++j) v -= hh[j] * double(qc[j][r]);
              q[r] = Scalar(v);
              if (pass == 0) {
                for (int j = 0; j < k; ++j) acc[j] += double(qc[j][r]) * v;
              } else {
                acc[k] += v * v;
                acc[k + 1] += v * double(fp[r]);
              }
            }
            for (int j = 0; j < k + 2; ++j) part.at(t, j) += acc[j];
          });
          const auto p2 = part.sum();
          if (pass == 0) {
            for (int j = 0; j < k; ++j) {
              R(j, k) = h[j];
              h[j] = p2[j];
            }
          } else {
            for (int j = 0; j < k; ++j) R(j, k) += hh[j];
            rn2 = p2[k];
            qf = p2[k + 1];
          }
        }
        if (k == 0) {
          // q = df itself: q.f in one more pass
          part.reset(1);
          detail::for_chunks(N, threads, [&](Index i0, Index i1, int t) {
            double a = 0;
            for (Index r = i0; r < i1; ++r) a += double(q[r]) * double(fp[r]);
            part.at(t, 0) += a;
          });
          qf = part.sum()[0];
        }
        const double rn = std::sqrt(rn2);
        if (rn > 1e-14 * dfn && std::isfinite(rn)) {
          R(k, k) = rn;
          hf[k] = qf / rn;
          const Scalar inv = Scalar(1.0 / rn);
          detail::for_chunks(N, threads, [&](Index i0, Index i1, int) {
            for (Index r = i0; r < i1; ++r) q[r] *= inv;
          });
          ++mk;
          while (mk > 1 && cond_estimate() > o.drop_tol) {
            delete_first();
            ++rep.dropped;
          }
        } else {
          R.col(k).setZero();
          ++rep.dropped;
        }
      }
      have_old = true;
      ++since_restart;
    }

    // S5: x = g - dG gamma - (1 - beta)(f - Q hf)
    Eigen::VectorXd gamma;
    if (mk > 0) {
      gamma = R.topLeftCorner(mk, mk).triangularView<Eigen::Upper>().solve(hf.head(mk));
      if (!gamma.allFinite()) {
        mk = 0;
        R.setZero();
        ++rep.restarts;
      }
    }
    {
      const int k = mk;
      for (int j = 0; j < k; ++j) {
        qc[j] = qcol(j);
        dgc[j] = dgcol(j);
      }
      const Scalar *gp = g.data(), *fp = f.data();
      Scalar* xp = x.data();
      const double omb = 1.0 - beta;
      detail::for_chunks(N, threads, [&](Index i0, Index i1, int) {
        for (Index r = i0; r < i1; ++r) {
          double v = double(gp[r]);
          for (int j = 0; j < k; ++j) v -= gamma[j] * double(dgc[j][r]);
          if (omb != 0.0) {
            double res = double(fp[r]);
            for (int j = 0; j < k; ++j) res -= hf[j] * double(qc[j][r]);
            v -= omb * res;
          }
          xp[r] = Scalar(v);
        }
      });
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
SolverReport solve_fixed_point(FixedPointMethod method, Func&& G, detail::Mat<Scalar>& x, const SolverOptions& o) {
  if (method == FixedPointMethod::Picard) return picard<Scalar>(std::forward<Func>(G), x, o);
  return anderson<Scalar>(std::forward<Func>(G), x, o);
}

}  // namespace deqfast
