// Fixed-point solvers for x = G(x) on a flat state of N numbers: plain (damped) Picard
// iteration, Anderson acceleration in the Walker–Ni least-squares form (H. F. Walker &
// P. Ni, "Anderson acceleration for fixed-point iterations", SIAM J. Numer. Anal. 49 (2011)
// 1715–1735), and an automatic choice between the two.
//
// Notation: x_k the iterate, g_k = G(x_k), f_k = g_k - x_k the residual.
// Anderson(mem) keeps the window of the mk + 1 <= mem + 1 most recent pairs (f_i, g_i) in
// a ring of mem + 1 slots (one N-array each for f_i and g_i; G writes g_k straight into its
// slot) and the Gram matrix H(s, t) = f_s . f_t of the stored residuals. With the differences
//   dF = [f_{i+1} - f_i],   dG = [g_{i+1} - g_i]
// each step solves the small least-squares problem  gamma = argmin |f_k - dF gamma|
// through its normal equations (dF^T dF = D^T H D, dF^T f_k = D^T H e_k with D the
// differencing matrix; Jacobi-scaled Cholesky) and moves to
//   x_{k+1} = g_k - dG gamma - (1 - beta) (f_k - dF gamma)          (damping beta)
//           = sum_i alpha_i (g_i - (1 - beta) f_i),   alpha = e_k - D gamma.
// Per iteration the O(N) work is two sweeps over the window: one forms f_k and its dot
// products with every stored residual (a matrix–vector product), one forms x_{k+1}
// (another); no column is ever copied or shifted. For windows of up to kFusedColumns
// columns each sweep reads all of them in one loop (one stream per column), beyond that
// column by column over cache blocks.
//
// Work arrays (Picard's second buffer, the Anderson window) come from the WorkspacePool
// (workspace.hpp), which keeps them for the next solve: first-touch page faults, which cost
// as much as a solve's vector arithmetic, are paid once per process, not once per solve.
//
// The map is split (see PlainMap): `prepare` is its elementwise part at the next point
// (for the DEQ: phi of the point and the copy of the input term into the output), done by
// the solvers inside the sweep that produces that point, block by block while the block is
// in cache, so it costs no pass of its own; `complete` is the rest (the matrix product).
// Full-length array reads and writes outside the products, per evaluation with memory mem
// and a full window (undamped; the DEQ map's prepare reads U and writes Phi and the output):
//   Picard:   residual sweep reads g, x; fused prepare writes Phi, reads U, writes the next
//             output                                                        5 passes
//   Anderson: sweep 1 reads g, x, mem residuals, writes f; sweep 2 reads mem + 1
//             evaluations, writes x; fused prepare as above          2 mem + 7 passes
// SolverReport counts them (array_passes) and times the products (product_seconds).
// Columns are dropped (oldest first) while the condition estimate of the scaled Cholesky
// factor, max L_ii / min L_ii, exceeds min(drop_tol, kMaxGramCond); the history is cleared
// every `restart` iterations (0: never) and whenever the step is not finite.
//
// Auto: Picard first; once the observed contraction rate (geometric mean of the last three
// residual ratios) exceeds `auto_rate` and plain iteration still has many evaluations to
// go, switch to Anderson; if over its first mem + 2 evaluations Anderson's observed rate is
// not clearly better than Picard's (its log-rate at least `auto_gain` times Picard's),
// switch back to Picard for good, otherwise keep Anderson for good. (Picard's rate on a
// spread spectrum only gets worse as the fast modes die out, so the early comparison is
// the conservative one.) The phases are recorded in the report.
//
// Stopping test: the relative residual |G(x) - x|_F / |G(x)|_F <= tol, one Frobenius norm
// per evaluation. The state returned is the last evaluation G(x_k). Divergence (|f_k|
// above `divergence` times the smallest |f| seen) and NaN/inf stop the iteration. An
// optional Cancel token is polled after every evaluation (G may poll it too); a stop
// throws Interrupted. Every OpenMP region runs under ParallelErrors.
//
// Plain C++17 + Eigen: no pybind11 here.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "deqfast/parallel.hpp"
#include "deqfast/workspace.hpp"

namespace deqfast {

enum class FixedPointMethod { Picard, Anderson, Auto };

constexpr int kMaxMemory = 64;  // Anderson memory cap

/// Largest condition estimate of the scaled Cholesky factor of dF^T dF kept: the normal
/// equations square it, and 1e6^2 = 1e12 leaves four digits of a double solve.
constexpr double kMaxGramCond = 1e6;

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

inline const char* method_name(FixedPointMethod m) {
  switch (m) {
    case FixedPointMethod::Picard: return "picard";
    case FixedPointMethod::Anderson: return "anderson";
    case FixedPointMethod::Auto: return "auto";
  }
  return "unknown";
}

struct SolverOptions {
  double tol = 1e-8;        // on |G(x) - x|_F / |G(x)|_F
  int max_iter = 500;       // maximum number of evaluations of G
  int memory = 5;           // Anderson memory (number of difference columns)
  double damping = 1.0;     // beta in (0, 1]
  double drop_tol = 1e10;   // maximal condition estimate before dropping columns (capped at kMaxGramCond)
  int restart = 0;          // clear the Anderson history every `restart` iterations (0: never)
  double divergence = 1e6;  // stop when |f| > divergence * min |f| seen
  int num_threads = 0;      // OpenMP threads for the O(N) vector work (0: default)
  double auto_rate = 0.7;   // Auto: switch to Anderson when Picard's observed rate exceeds this
  double auto_gain = 1.25;  // Auto: keep Anderson only if log(rate_A) >= auto_gain * log(rate_P)
  Cancel* cancel = nullptr; // polled after every evaluation (nullptr: never)
};

/// One stretch of evaluations done by one method.
struct SolverPhase {
  FixedPointMethod method;
  int first_evaluation;  // 1-based index of its first evaluation
};

struct SolverReport {
  SolverStatus status = SolverStatus::MaxIter;
  int iterations = 0;                                         // number of updates x_k -> x_{k+1}
  int evaluations = 0;                                        // number of evaluations of G
  double residual = std::numeric_limits<double>::infinity();  // final relative residual
  std::vector<double> residuals;                              // relative residual after every evaluation
  int dropped = 0;                                            // columns dropped for ill-conditioning
  int restarts = 0;                                           // history clears (periodic or non-finite step)
  std::vector<SolverPhase> phases;                            // methods used, in order
  double array_passes = 0;     // full-length array reads + writes outside the map's product
  double product_seconds = 0;  // wall time inside the map's product (`complete`)
  double solve_seconds = 0;    // wall time of the whole solve
  bool converged() const { return status == SolverStatus::Converged; }
};

namespace detail {

template <class Scalar>
using Mat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

/// Elements per cache block of the fused sweeps (the block of f or x stays in L1/L2 while
/// every window column streams past it once).
constexpr Eigen::Index kSweepBlock = 2048;

inline int vector_threads(Eigen::Index N, int requested) {
  const int t = resolve_threads(requested);
  const Eigen::Index useful = std::max<Eigen::Index>(1, N / (Eigen::Index(1) << 16));
  return int(std::min<Eigen::Index>(t, useful));
}

/// body(i0, i1, thread) over `threads` contiguous chunks of [0, N); an exception in any
/// chunk is carried out and rethrown here.
///
/// The chunks run on plain threads started for the sweep and joined at its end (~tens of
/// microseconds against sweeps of milliseconds), not on an OpenMP team: an idle OpenMP
/// worker spins for milliseconds after each region, and every sweep here is followed by a
/// threaded BLAS product whose threads it would compete with for the cores.
template <class Body>
void for_chunks(Eigen::Index N, int threads, Body&& body) {
  ParallelErrors errors;
  auto chunk = [&](int t) { errors.guard([&] { body(N * t / threads, N * (t + 1) / threads, t); }); };
  std::vector<std::thread> team;
  int started = 1;
  if (threads > 1) {
    team.reserve(std::size_t(threads - 1));
    try {
      for (; started < threads; ++started) team.emplace_back(chunk, started);
    } catch (const std::system_error&) {  // no more threads: the caller runs the rest
    }
  }
  chunk(0);
  for (int t = started; t < threads; ++t) chunk(t);
  for (auto& th : team) th.join();
  errors.rethrow();
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

/// sum_r a[r] b[r] in double.
template <class Scalar>
inline double dot(const Scalar* a, const Scalar* b, Eigen::Index len) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (Eigen::Index r = 0; r < len; ++r) s += double(a[r]) * double(b[r]);
  return s;
}

/// Window sizes up to which the Anderson sweeps read all window columns in one loop (one
/// stream per column, the accumulators in registers); larger windows go column by column
/// over cache blocks.
constexpr int kFusedColumns = 8;

/// body(std::integral_constant<int, K>{}) for K = k when 0 <= k <= kFusedColumns, else
/// body(std::integral_constant<int, -1>{}).
template <int K = 0, class Body>
void with_fused_count(int k, Body&& body) {
  if constexpr (K > kFusedColumns) {
    body(std::integral_constant<int, -1>{});
  } else {
    if (k == K)
      body(std::integral_constant<int, K>{});
    else
      with_fused_count<K + 1>(k, std::forward<Body>(body));
  }
}

/// On [0, len): f = g - x, and acc[j] += f . old[j] (j < K), acc[K] += |g|^2,
/// acc[K + 1] += |f|^2, in one pass.
template <int K, class Scalar>
void residual_and_dots(const Scalar* g, const Scalar* x, Scalar* f, const Scalar* const* old, Eigen::Index len,
                       double* acc) {
  const Scalar* o[K + 1] = {};
  for (int j = 0; j < K; ++j) o[j] = old[j];
  double s[K + 1] = {};
  double gg = 0, ff = 0;
#pragma omp simd reduction(+ : gg, ff, s[:K + 1])
  for (Eigen::Index r = 0; r < len; ++r) {
    const Scalar d = g[r] - x[r];
    f[r] = d;
    gg += double(g[r]) * double(g[r]);
    ff += double(d) * double(d);
    for (int j = 0; j < K; ++j) s[j] += double(o[j][r]) * double(d);
  }
  for (int j = 0; j < K; ++j) acc[j] += s[j];
  acc[K] += gg;
  acc[K + 1] += ff;
}

/// On [0, len): x = a[W-1] g[W-1] + a[0] g[0] + ... + a[W-2] g[W-2], in one pass.
template <int W, class Scalar>
void mix_columns(Scalar* x, const Scalar* const* g, const Scalar* a, Eigen::Index len) {
  const Scalar* p[W];
  Scalar c[W];
  for (int j = 0; j < W; ++j) {
    p[j] = g[j];
    c[j] = a[j];
  }
#pragma omp simd
  for (Eigen::Index r = 0; r < len; ++r) {
    Scalar v = c[W - 1] * p[W - 1][r];
    for (int j = 0; j + 1 < W; ++j) v += c[j] * p[j][r];
    x[r] = v;
  }
}

/// A map given as one callable G(const Scalar* x, Scalar* out), with no elementwise part to
/// fuse. A map for the solvers provides:
///   kHasPrepare       whether prepare does anything;
///   prepare_passes()  full-length array reads + writes of a stand-alone prepare pass;
///   prepare(i0, i1, z, out)  the elementwise part of evaluating at z, on [i0, i1) only;
///   complete(z, out)  the rest, once prepare has covered [0, N).
template <class Func>
struct PlainMap {
  static constexpr bool kHasPrepare = false;
  Func& f;
  double prepare_passes() const { return 0.0; }
  template <class Scalar>
  void prepare(Eigen::Index, Eigen::Index, const Scalar*, Scalar*) {}
  template <class Scalar>
  void complete(const Scalar* z, Scalar* out) {
    f(z, out);
  }
};

/// Book-keeping shared by every phase: residuals, stopping and divergence tests, cancellation.
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
    if (o.cancel && o.cancel->check()) throw Interrupted();
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

  /// Geometric-mean contraction rate of the residual over the last `span` evaluations
  /// (NaN when fewer are recorded).
  double rate(int span) const {
    const int e = int(rep.residuals.size());
    if (span < 1 || e <= span) return std::numeric_limits<double>::quiet_NaN();
    const double a = rep.residuals[e - 1 - span], b = rep.residuals[e - 1];
    return a > 0 && b > 0 ? std::pow(b / a, 1.0 / span) : std::numeric_limits<double>::quiet_NaN();
  }

  /// out = G(z). `prepared`: a sweep has already done G.prepare(z, out) over [0, N).
  template <class Scalar, class Map>
  void evaluate(Map& G, const Scalar* z, Scalar* out, bool prepared, Eigen::Index N, int threads) {
    if (Map::kHasPrepare && !prepared) {
      for_chunks(N, threads, [&](Eigen::Index i0, Eigen::Index i1, int) { G.prepare(i0, i1, z, out); });
      rep.array_passes += G.prepare_passes();
    }
    const auto t0 = std::chrono::steady_clock::now();
    G.complete(z, out);
    rep.product_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
};

/// Passes of a prepare fused into the sweep that writes its point (the point is in cache).
template <class Map>
double fused_prepare_passes(const Map& G) {
  return Map::kHasPrepare ? G.prepare_passes() - 1.0 : 0.0;
}

/// What a phase asks the driver to do when it returns.
enum class PhaseEnd { Stop, ToAnderson, ToPicard };

/// Picard phase. `x` is the next point to evaluate. With `watch`, returns ToAnderson once
/// the observed rate says acceleration will pay. On Stop, `x` holds the last evaluation.
///
/// Two buffers, x's and one from the pool, alternate: undamped, the next point is g itself
/// and the point's buffer is free once its block has been read, so the residual sweep runs
/// G.prepare(g -> the point's buffer) block by block and the roles swap. On return the
/// point (or the last evaluation) is copied into `x` if it sits in the pool's buffer.
template <class Scalar, class Map>
PhaseEnd picard_phase(Map& G, Mat<Scalar>& x, Monitor& mon, bool watch) {
  using Index = Eigen::Index;
  const SolverOptions& o = mon.o;
  const Index N = x.size();
  const int threads = vector_threads(N, o.num_threads);
  PooledArrays<Scalar> work(N, 1, 1);
  Scalar* xp = x.data();  // the point
  Scalar* gp = work[0];   // its evaluation
  auto finish = [&](PhaseEnd end) {
    if (xp != x.data()) {
      for_chunks(N, threads, [&](Index i0, Index i1, int) { std::copy(xp + i0, xp + i1, x.data() + i0); });
      mon.rep.array_passes += 2.0;
    }
    return end;
  };
  Partials part(threads, 2);
  const double omb = 1.0 - o.damping;
  const int start = mon.rep.evaluations;
  bool prepared = false;
  while (true) {
    mon.evaluate(G, static_cast<const Scalar*>(xp), gp, prepared, N, threads);
    // one fused sweep: |g|^2, |g - x|^2 and, when damped, the next iterate x + beta (g - x);
    // undamped, the next evaluation's prepare (the point g, the output in x's buffer)
    part.reset(2);
    for_chunks(N, threads, [&](Index i0, Index i1, int t) {
      double gg = 0, ff = 0;
      if (omb != 0.0) {
        for (Index r = i0; r < i1; ++r) {
          const double gv = double(gp[r]), d = gv - double(xp[r]);
          gg += gv * gv;
          ff += d * d;
          xp[r] = Scalar(gv - omb * d);
        }
      } else {
        for (Index b0 = i0; b0 < i1; b0 += kSweepBlock) {
          const Index b1 = std::min(b0 + kSweepBlock, i1);
#pragma omp simd reduction(+ : gg, ff)
          for (Index r = b0; r < b1; ++r) {
            const double gv = double(gp[r]), d = gv - double(xp[r]);
            gg += gv * gv;
            ff += d * d;
          }
          G.prepare(b0, b1, static_cast<const Scalar*>(gp), xp);
        }
      }
      part.at(t, 0) += gg;
      part.at(t, 1) += ff;
    });
    mon.rep.array_passes += omb != 0.0 ? 3.0 : 2.0 + fused_prepare_passes(G);
    prepared = omb == 0.0;
    const auto tot = part.sum();
    const bool stop = mon.record(std::sqrt(tot[1]), std::sqrt(tot[0]));
    if (stop || omb == 0.0) std::swap(xp, gp);  // undamped: the next iterate is g itself
    if (stop) return finish(PhaseEnd::Stop);
    ++mon.rep.iterations;
    if (watch && mon.rep.evaluations - start >= 4) {
      const double rate = mon.rate(3);
      // evaluations plain iteration still needs at this rate (infinite when not contracting)
      const double remaining = rate < 1 ? std::log(o.tol / mon.rep.residual) / std::log(rate)
                                        : std::numeric_limits<double>::infinity();
      if (rate >= o.auto_rate && remaining >= 4.0 * (std::min(o.memory, kMaxMemory) + 1))
        return finish(PhaseEnd::ToAnderson);
    }
  }
}

/// The Anderson window: ring buffers of residuals and evaluations (one pooled array per
/// slot), and their Gram matrix.
template <class Scalar>
struct AndersonHistory {
  using Index = Eigen::Index;
  Index N;
  int cap;                    // mem + 1 slots
  PooledArrays<Scalar> cols;  // slot s: residual cols[s], evaluation cols[cap + s]
  Eigen::MatrixXd H;          // H(s, t) = f_s . f_t by physical slot
  int head = 0, count = 0;

  AndersonHistory(Index n, int mem) : N(n), cap(mem + 1), cols(n, 2 * (mem + 1), 2), H(mem + 1, mem + 1) {}
  int slot(int j) const { return (head + j) % cap; }  // logical j: 0 oldest
  Scalar* fcol(int s) { return cols[s]; }
  Scalar* gcol(int s) { return cols[cap + s]; }
  /// Slot for the next pair, evicting the oldest when full.
  int claim() {
    if (count == cap) drop_oldest();
    return slot(count);
  }
  void drop_oldest() {
    head = (head + 1) % cap;
    --count;
  }
  void keep_newest() {
    head = slot(count - 1);
    count = 1;
  }
  double h(int i, int j) const { return H(slot(i), slot(j)); }  // logical indices
};

/// Anderson phase (Walker–Ni, see the file header). `x` is the next point to evaluate. With
/// `watch`, returns ToPicard when acceleration does not beat `picard_rate`. On Stop, `x`
/// holds the last evaluation. Sweep 2 runs the next evaluation's G.prepare into the slot the
/// next claim() returns.
template <class Scalar, class Map>
PhaseEnd anderson_phase(Map& G, Mat<Scalar>& x, Monitor& mon, bool watch, double picard_rate) {
  using Index = Eigen::Index;
  const SolverOptions& o = mon.o;
  SolverReport& rep = mon.rep;
  const Index N = x.size();
  const int mem = std::min(std::max(0, o.memory), kMaxMemory);
  const double omb = 1.0 - o.damping;
  const double max_cond = std::min(o.drop_tol, kMaxGramCond);
  const int threads = vector_threads(N, o.num_threads);
  AndersonHistory<Scalar> hist(N, mem);
  Partials part(threads, mem + 3);
  const int start = rep.evaluations;
  int since_restart = 0;
  std::vector<int> win;            // physical slots of the window, oldest first
  std::vector<double> alpha;       // mixing coefficients over the window
  std::vector<const Scalar*> gc, fc;
  int prepared_slot = -1;  // slot whose output sweep 2 prepared for the point x (-1: none)

  while (true) {
    const int s = hist.claim();
    Scalar* gp = hist.gcol(s);
    Scalar* fp = hist.fcol(s);
    mon.evaluate(G, static_cast<const Scalar*>(x.data()), gp, prepared_slot == s, N, threads);
    // Sweep 1: f = g - x, |g|^2, and f . f_t for every stored residual t (f . f last), in
    // one pass over all columns for small windows, else cache block by cache block.
    const int k_old = hist.count;
    win.resize(k_old);
    fc.resize(k_old);
    for (int j = 0; j < k_old; ++j) {
      win[j] = hist.slot(j);
      fc[j] = hist.fcol(win[j]);
    }
    part.reset(k_old + 2);
    {
      const Scalar* xp = x.data();
      with_fused_count(k_old, [&](auto kc) {
        constexpr int K = decltype(kc)::value;
        for_chunks(N, threads, [&](Index i0, Index i1, int t) {
          double acc[kMaxMemory + 3] = {0};
          if constexpr (K >= 0) {
            const Scalar* old[K + 1] = {};
            for (int j = 0; j < K; ++j) old[j] = fc[j] + i0;
            residual_and_dots<K, Scalar>(gp + i0, xp + i0, fp + i0, old, i1 - i0, acc);
          } else {
            for (Index b0 = i0; b0 < i1; b0 += kSweepBlock) {
              const Index len = std::min(kSweepBlock, i1 - b0);
              residual_and_dots<0, Scalar>(gp + b0, xp + b0, fp + b0, nullptr, len, acc + k_old);
              for (int j = 0; j < k_old; ++j) acc[j] += dot(fc[j] + b0, static_cast<const Scalar*>(fp + b0), len);
            }
          }
          for (int j = 0; j < k_old + 2; ++j) part.at(t, j) += acc[j];
        });
      });
    }
    rep.array_passes += 3.0 + k_old;
    const auto tot = part.sum();
    for (int j = 0; j < k_old; ++j) hist.H(s, win[j]) = hist.H(win[j], s) = tot[j];
    hist.H(s, s) = tot[k_old + 1];
    ++hist.count;
    if (mon.record(std::sqrt(tot[k_old + 1]), std::sqrt(tot[k_old]))) {
      std::copy(gp, gp + N, x.data());
      rep.array_passes += 2.0;
      return PhaseEnd::Stop;
    }
    if (watch && rep.evaluations - start == mem + 2) {  // one trial window, then the choice stands
      const double rate_a = mon.rate(rep.evaluations - start - 1);
      if (!(std::log(rate_a) <= o.auto_gain * std::log(picard_rate))) {
        // hand over the plain step from x_k: x + beta f = g - (1 - beta) f
        Scalar* xp = x.data();
        for_chunks(N, threads, [&](Index i0, Index i1, int) {
          for (Index r = i0; r < i1; ++r) xp[r] = Scalar(double(gp[r]) - omb * double(fp[r]));
        });
        rep.array_passes += 3.0;
        return PhaseEnd::ToPicard;
      }
    }
    if (o.restart > 0 && since_restart >= o.restart) {
      hist.keep_newest();
      ++rep.restarts;
      since_restart = 0;
    }
    ++since_restart;

    // Small least-squares problem over the window (logical 0..count-1, newest last).
    Eigen::VectorXd gamma;
    while (true) {
      const int k = hist.count - 1;
      if (k == 0) break;
      Eigen::MatrixXd Mk(k, k);
      Eigen::VectorXd bk(k), d(k);
      for (int a = 0; a < k; ++a) {
        for (int b = 0; b <= a; ++b)
          Mk(a, b) = Mk(b, a) = hist.h(a + 1, b + 1) - hist.h(a + 1, b) - hist.h(a, b + 1) + hist.h(a, b);
        bk[a] = hist.h(a + 1, k) - hist.h(a, k);
      }
      bool ok = true;
      for (int a = 0; a < k && ok; ++a) {
        ok = Mk(a, a) > 0 && std::isfinite(Mk(a, a));
        if (ok) d[a] = 1.0 / std::sqrt(Mk(a, a));
      }
      if (ok) {
        const Eigen::MatrixXd Ms = d.asDiagonal() * Mk * d.asDiagonal();
        Eigen::LLT<Eigen::MatrixXd> llt(Ms);
        if (llt.info() == Eigen::Success) {
          double lo = std::numeric_limits<double>::infinity(), hi = 0.0;
          for (int a = 0; a < k; ++a) {
            const double v = std::abs(llt.matrixLLT()(a, a));
            lo = std::min(lo, v);
            hi = std::max(hi, v);
          }
          if (lo > 0 && hi / lo <= max_cond) {
            gamma = d.asDiagonal() * llt.solve(d.asDiagonal() * bk);
            if (gamma.allFinite()) break;
          }
        }
      }
      hist.drop_oldest();
      ++rep.dropped;
    }
    const int w = hist.count;
    alpha.assign(w, 0.0);
    alpha[w - 1] = 1.0;
    for (int i = 0; i + 1 < w; ++i) {  // alpha = e_k - D gamma
      alpha[i] += gamma[i];
      alpha[i + 1] -= gamma[i];
    }
    // Sweep 2, blocked: x = sum_i alpha_i (g_i - (1 - beta) f_i), then the next evaluation's
    // prepare on the block (into the slot claim() returns next: the oldest one when the
    // window is full, whose block the mixing has just read).
    const int next = hist.count == hist.cap ? hist.head : hist.slot(hist.count);
    Scalar* next_out = hist.gcol(next);
    gc.resize(w);
    fc.resize(w);
    std::vector<Scalar> a(std::size_t(w), Scalar(0));
    for (int j = 0; j < w; ++j) {
      gc[j] = hist.gcol(hist.slot(j));
      fc[j] = hist.fcol(hist.slot(j));
      a[std::size_t(j)] = Scalar(alpha[j]);
    }
    {
      Scalar* xp = x.data();
      with_fused_count(omb == 0.0 ? w : -1, [&](auto wc) {
        constexpr int W = decltype(wc)::value;
        for_chunks(N, threads, [&](Index i0, Index i1, int) {
          for (Index b0 = i0; b0 < i1; b0 += kSweepBlock) {
            const Index len = std::min(kSweepBlock, i1 - b0);
            Scalar* xb = xp + b0;
            if constexpr (W > 0) {
              const Scalar* cols[W];
              for (int j = 0; j < W; ++j) cols[j] = gc[j] + b0;
              mix_columns<W, Scalar>(xb, cols, a.data(), len);
            } else {
              {
                const Scalar c = a[std::size_t(w - 1)];
                const Scalar* gb = gc[w - 1] + b0;
#pragma omp simd
                for (Index r = 0; r < len; ++r) xb[r] = c * gb[r];
              }
              for (int j = 0; j + 1 < w; ++j) {
                const Scalar c = a[std::size_t(j)];
                const Scalar* gb = gc[j] + b0;
#pragma omp simd
                for (Index r = 0; r < len; ++r) xb[r] += c * gb[r];
              }
              if (omb != 0.0) {
                for (int j = 0; j < w; ++j) {
                  const Scalar c = Scalar(-omb * alpha[j]);
                  const Scalar* fb = fc[j] + b0;
#pragma omp simd
                  for (Index r = 0; r < len; ++r) xb[r] += c * fb[r];
                }
              }
            }
            G.prepare(b0, b0 + len, static_cast<const Scalar*>(xp), next_out);
          }
        });
      });
    }
    rep.array_passes += 1.0 + w * (omb != 0.0 ? 2.0 : 1.0) + fused_prepare_passes(G);
    prepared_slot = next;
    ++rep.iterations;
  }
}

}  // namespace detail

/// Solve x = G(x) with `method`.
///
/// `G` is a map as described at PlainMap (a plain callable G(const Scalar* x, Scalar* out)
/// is wrapped in one): it writes G(x) into `out` (both flat, N = x.size() numbers; `out`
/// never aliases `x`). On entry `x` is the initial guess; on exit it holds the last
/// evaluation G(x_k). Anderson with memory 0 is damped Picard.
template <class Scalar, class Map, class = decltype(Map::kHasPrepare)>
SolverReport solve_fixed_point(FixedPointMethod method, Map& G, detail::Mat<Scalar>& x, const SolverOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  SolverReport rep;
  detail::Monitor mon{o, rep};
  const bool can_accelerate = o.memory > 0;
  auto done = [&] {
    rep.solve_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rep;
  };
  if (method == FixedPointMethod::Anderson && can_accelerate) {
    rep.phases.push_back({FixedPointMethod::Anderson, 1});
    detail::anderson_phase<Scalar>(G, x, mon, false, 0.0);
    return done();
  }
  const bool watch = method == FixedPointMethod::Auto && can_accelerate;
  rep.phases.push_back({FixedPointMethod::Picard, 1});
  if (detail::picard_phase<Scalar>(G, x, mon, watch) == detail::PhaseEnd::Stop) return done();
  // Auto: Picard's rate says acceleration may pay; try Anderson, fall back if it does not.
  const double picard_rate = mon.rate(3);
  rep.phases.push_back({FixedPointMethod::Anderson, rep.evaluations + 1});
  if (detail::anderson_phase<Scalar>(G, x, mon, true, picard_rate) == detail::PhaseEnd::Stop) return done();
  rep.phases.push_back({FixedPointMethod::Picard, rep.evaluations + 1});
  detail::picard_phase<Scalar>(G, x, mon, false);
  return done();
}

/// Overload for a plain callable G(const Scalar* x, Scalar* out).
template <class Scalar, class Func, class = decltype(std::declval<Func&>()(std::declval<const Scalar*>(),
                                                                              std::declval<Scalar*>()))>
SolverReport solve_fixed_point(FixedPointMethod method, Func&& G, detail::Mat<Scalar>& x, const SolverOptions& o) {
  detail::PlainMap<std::remove_reference_t<Func>> map{G};
  return solve_fixed_point<Scalar>(method, map, x, o);
}

}  // namespace deqfast
