// Tiled assembly of the exact kernels (docs/theory.md §3) and the Gaussian map of explicit layers
// (docs/theory.md §5): pair solves over cache-sized tiles in parallel, written into caller-owned
// row-major outputs.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include "deqfast/activation.hpp"
#include "deqfast/diagonal.hpp"
#include "deqfast/matrix.hpp"
#include "deqfast/pair_kernels.hpp"
#include "deqfast/pair_solvers.hpp"
#include "deqfast/parallel.hpp"

namespace deqfast {

/// Caller-owned row-major outputs (null: not requested). Each kernel goes to its float64 pointer
/// or, when that is null, to its float32 one: the computation is the same in double precision and
/// only the stored value is rounded to the nearest float.
struct Outputs {
  double* S = nullptr;
  double* G = nullptr;
  double* Gdot = nullptr;
  double* K = nullptr;
  double* Theta = nullptr;
  float* S32 = nullptr;
  float* G32 = nullptr;
  float* Gdot32 = nullptr;
  float* K32 = nullptr;
  float* Theta32 = nullptr;
  Eigen::Index rows = 0, ld = 0;  // rows and leading dimension (row stride) of every output
};

struct AssemblyStats {
  long long pairs = 0, newton_steps = 0, picard_steps = 0, quadrature_pairs = 0, unconverged = 0;
  long long nonfinite = 0;  // pairs with a NaN or infinite S, G or Gdot (the caller must not return them)
  long long overflow32 = 0;  // float32 entries that overflowed to +-inf from a finite double
  int max_iterations = 0;
  double max_error = 0;  // largest estimated absolute error of S over all pairs
};

/// Rows of a tile are solved in groups of at most this many, kept in small per-thread buffers,
/// and each group is written to both triangles while it is in cache: its rows to their own rows
/// of the output, and its columns, transposed, as runs of consecutive entries into the rows below
/// the diagonal. A group is one cache line of the output type (8 float64 or 16 float32 rows),
/// aligned so that each transposed run is exactly one line of the output where the row stride
/// allows it (see assemble).
constexpr Eigen::Index kGroup = 16;

/// Store the doubles src[0, m) into dst[0, m) rounded to T: the whole cache lines of dst with
/// streaming stores, the partial lines at either end (shared with a neighbouring run) normally.
/// Returns the number of float entries that overflowed to +-inf from a finite double (0 for double).
template <class T>
long long store_run(const double* src, T* dst, Eigen::Index m) {
  long long over = 0;
  if constexpr (!std::is_same_v<T, double>) {
    constexpr double big = std::numeric_limits<double>::max(), top = std::numeric_limits<T>::max();
#pragma omp simd reduction(+ : over)
    for (Eigen::Index c = 0; c < m; ++c) over += std::abs(static_cast<T>(src[c])) > top && std::abs(src[c]) <= big;
  }
  constexpr Eigen::Index L = kLineEntries<T>;
  Eigen::Index head = entries_to_line(dst);
  if (head < 0 || head + L > m) head = m;  // no whole line to stream
  for (Eigen::Index c = 0; c < head; ++c) dst[c] = static_cast<T>(src[c]);
  Eigen::Index c = head;
  for (; c + L <= m; c += L) stream_line(dst + c, src + c);
  for (; c < m; ++c) dst[c] = static_cast<T>(src[c]);
  return over;
}

/// Write the gn x nj group buffer `g` (row stride bs) of one output: row r from column up[r] on
/// into dst row r (the upper part, stride ld), and, when `mirror`, entry (r, c) for c >= low[r]
/// into dst(c, r) relative to `tdst`. Returns the number of float entries that overflowed to
/// +-inf from a finite double (0 for double outputs).
template <class T>
long long write_group(const double* g, Eigen::Index bs, Eigen::Index gn, Eigen::Index nj,
                      const Eigen::Index* up, const Eigen::Index* low, T* dst, T* tdst, Eigen::Index ld,
                      bool mirror) {
  long long over = 0;
  for (Eigen::Index r = 0; r < gn; ++r) over += store_run(g + r * bs + up[r], dst + r * ld + up[r], nj - up[r]);
  if (!mirror) return over;
  // Columns every row of the group mirrors: full runs of gn entries; before them, a prefix.
  const Eigen::Index full = low[gn - 1];
  for (Eigen::Index c = low[0]; c < std::min(full, nj); ++c) {
    T* d = tdst + c * ld;
    for (Eigen::Index r = 0; r < gn && low[r] <= c; ++r) d[r] = static_cast<T>(g[r * bs + c]);
  }
  constexpr Eigen::Index L = kLineEntries<T>;
  if (gn % L == 0 && line_aligned(tdst) && (ld * Eigen::Index(sizeof(T))) % Eigen::Index(kLineBytes) == 0) {
    // every run is whole cache lines: gather each line's column entries, stream the line
    alignas(kLineBytes) double col[L];
    for (Eigen::Index c = full; c < nj; ++c)
      for (Eigen::Index l = 0; l < gn; l += L) {
        for (Eigen::Index r = 0; r < L; ++r) col[r] = g[(l + r) * bs + c];
        stream_line(tdst + c * ld + l, col);
      }
  } else {
    for (Eigen::Index c = full; c < nj; ++c) {
      T* d = tdst + c * ld;
      for (Eigen::Index r = 0; r < gn; ++r) d[r] = static_cast<T>(g[r * bs + c]);
    }
  }
  return over;
}

/// Assemble rows [r0, r1) x columns [c0, c1) of the kernels between sample sets A (rows) and
/// B (columns), in cache-sized tiles, in parallel. With `symmetric` (A == B), only entries on or
/// above the diagonal are solved and each is also written to its mirror position, so rows
/// [r0, r1) x columns [max(c0, r0), c1) and their transposes are written; diagonal entries come
/// from the diagonal solve. Every output entry is stored once, from a group of tile rows still in
/// cache, whole cache lines by streaming stores; the pages of the outputs are first touched by
/// the threads that write them.
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
  long long pairs = 0, newton = 0, picard = 0, quad_pairs = 0, unconv = 0, nonfinite = 0;
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

  double* const f64[5] = {out.S, out.G, out.Gdot, out.K, out.Theta};
  float* const f32[5] = {out.S32, out.G32, out.Gdot32, out.K32, out.Theta32};
  bool want[5];
  for (int q = 0; q < 5; ++q) want[q] = f64[q] || f32[q];
  // Rows per group: one cache line of the output type. Groups start at the rows i whose mirrored
  // entries (c, i) begin a cache line of the first requested output (in every row c when the
  // row stride is whole lines), so that each transposed run is one whole line, streamed.
  const bool single = std::any_of(f32, f32 + 5, [](const float* p) { return p != nullptr; });
  const Eigen::Index grp = single ? kLineEntries<float> : kLineEntries<double>;
  Eigen::Index phase = 0;
  for (int q = 0; q < 5; ++q)
    if (want[q]) {
      phase = single ? entries_to_line(f32[q]) : entries_to_line(f64[q]);
      phase = std::max<Eigen::Index>(phase, 0);
      break;
    }
  long long over32 = 0;
  [[maybe_unused]] const int nt = resolve_threads(o.num_threads);
  ParallelErrors errors;
#pragma omp parallel num_threads(nt) reduction(+ : pairs, newton, picard, quad_pairs, unconv, nonfinite, over32) \
    reduction(max : max_it, max_error)
  {
    RowMatrix gram;
    std::optional<MehlerRun> mrun;
    if (mehler) mrun.emplace(A, B, o);
    // grp rows of a tile for each requested output (row stride bs), written back by write_group
    RowMatrix buf[5];
    for (int q = 0; q < 5; ++q)
      if (want[q]) buf[q].resize(grp, bs);
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
    // every requested group buffer, with the NTKs K = G / (1 - sa2 Gdot), Theta = G + Gdot S / (...).
    auto write_row = [&](Eigen::Index a, Eigen::Index start, Eigen::Index m) {
      const double *S_ = rs.data(), *G_ = rg.data(), *D_ = rgd.data();
      long long bad = 0;  // NaN fails the comparison, so does an infinity
#pragma omp simd reduction(+ : bad)
      for (Eigen::Index k = 0; k < m; ++k)
        bad += !(std::abs(S_[k]) + std::abs(G_[k]) + std::abs(D_[k]) <= std::numeric_limits<double>::max());
      nonfinite += bad;
      if (want[0]) std::copy(S_, S_ + m, buf[0].row(a).data() + start);
      if (want[1]) std::copy(G_, G_ + m, buf[1].row(a).data() + start);
      if (want[2]) std::copy(D_, D_ + m, buf[2].row(a).data() + start);
      if (want[3]) {
        double* K_ = buf[3].row(a).data() + start;
#pragma omp simd
        for (Eigen::Index k = 0; k < m; ++k) K_[k] = G_[k] / (1.0 - sa2 * D_[k]);
      }
      if (want[4]) {
        double* T_ = buf[4].row(a).data() + start;
#pragma omp simd
        for (Eigen::Index k = 0; k < m; ++k) T_[k] = G_[k] + D_[k] * S_[k] / (1.0 - sa2 * D_[k]);
      }
    };
#pragma omp for schedule(dynamic, 1)
    for (std::size_t t = 0; t < tiles.size(); ++t) {
      if (errors.failed() || stop_requested(o.cancel)) continue;
      errors.guard([&] {
        const Eigen::Index i0 = tiles[t].i0, j0 = tiles[t].j0;
        const Eigen::Index ni = std::min(bs, r1 - i0), nj = std::min(bs, c1 - j0);
        gram.noalias() = XA.middleRows(i0, ni) * XB.middleRows(j0, nj).transpose();
        if (mehler) mrun->load_columns(j0, nj);
        for (Eigen::Index g0 = 0, gn = 0; g0 < ni; g0 += gn) {
          // up to the next row that starts a group (i - phase a multiple of grp)
          gn = std::min(grp - ((i0 + g0 - phase) % grp + grp) % grp, ni - g0);
          // per row of the group: first column written into its own row (up) and first column
          // written, transposed, below the diagonal (low); columns left of the diagonal are the
          // transposes of earlier rows (symmetric assembly only)
          Eigen::Index up[kGroup], low[kGroup];
          for (Eigen::Index a = g0; a < g0 + gn; ++a) {
            if (stop_requested(o.cancel)) return;  // abandon the tile: the caller discards the outputs
            const Eigen::Index i = i0 + a, r = a - g0;
            Eigen::Index start = 0;
            if (symmetric && j0 <= i) {  // the diagonal entry comes from the diagonal solve
              start = std::min(i - j0, nj);
              if (start < nj) {
                rs[0] = A.d[i];
                rg[0] = A.m2[i];
                rgd[0] = A.e2[i];
                write_row(r, start, 1);
              }
              up[r] = start;
              low[r] = ++start;
            } else {
              up[r] = low[r] = 0;
            }
            const Eigen::Index m = nj - start;
            if (m <= 0) continue;
            pairs += m;
            if (!vec) {
              for (Eigen::Index k = 0; k < m; ++k) {
                if (stop_requested(o.cancel)) return;
                scalar(a, start + k, i, j0 + start + k, k);
              }
              write_row(r, start, m);
              continue;
            }
            const Eigen::Index j = j0 + start;
            if (arc)
              run.solve(rA[i], iA[i], lA[i], rB.data() + j, iB.data() + j, lB.data() + j, gram.row(a).data() + start,
                        sb2, int(m), rs.data(), rg.data(), rgd.data(), rerr.data(), revals.data());
            else if (asn)
              srun.solve(rA[i], wA[i], rB.data() + j, wB.data() + j, gram.row(a).data() + start, sb2, int(m),
                         rs.data(), rg.data(), rgd.data(), rerr.data(), revals.data());
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
              for (Eigen::Index k = 0; k < m; ++k) {
                if (revals[k] != 0.0) continue;
                if (stop_requested(o.cancel)) return;  // flagged pairs may take milliseconds each
                scalar(a, start + k, i, j0 + start + k, k);
              }
            write_row(r, start, m);
          }
          // both triangles from the group buffers while they are in cache: each entry written once
          const Eigen::Index row = i0 + g0, at = row * ld + j0, tat = j0 * ld + row;
          for (int q = 0; q < 5; ++q) {
            if (!want[q]) continue;
            if (f64[q])
              write_group(buf[q].data(), bs, gn, nj, up, low, f64[q] + at, f64[q] + tat, ld, symmetric);
            else
              over32 += write_group(buf[q].data(), bs, gn, nj, up, low, f32[q] + at, f32[q] + tat, ld, symmetric);
          }
        }
      });
    }
    stream_fence();  // this thread's streamed lines are in memory before the region ends
  }
  finish_region(errors, o.cancel);
  st.pairs = pairs;
  st.nonfinite = nonfinite;
  st.overflow32 = over32;
  st.newton_steps = newton;
  st.picard_steps = picard;
  st.quadrature_pairs = quad_pairs;
  st.unconverged = unconv;
  st.max_iterations = max_it;
  st.max_error = max_error;
  return st;
}

/// The Gaussian map of an explicit layer, elementwise: G = F_phi(S), Gdot = F_phi'(S) for the
/// block S (rows of set A, columns of set B; docs/theory.md §5). No fixed point: one evaluation per
/// pair (2-D quadrature where the Mehler series cannot meet its bound). With `symmetric`, S is
/// square, only its upper triangle is read and the outputs are mirrored.
inline AssemblyStats gaussian_map(const Activation& phi, const Eigen::Ref<const RowMatrix>& S, const SampleData& A,
                                  const SampleData& B, bool symmetric, double* G, double* Gdot,
                                  const KernelOptions& o) {
  const PairEvaluator ev(phi, A, B);
  const Eigen::Index n1 = S.rows(), n2 = S.cols(), ld = n2;
  long long quad = 0, nonfinite = 0;
  ParallelErrors errors;
  [[maybe_unused]] const int nt = resolve_threads(o.num_threads);
#pragma omp parallel for schedule(dynamic, 8) num_threads(nt) reduction(+ : quad, nonfinite)
  for (Eigen::Index i = 0; i < n1; ++i) {
    if (errors.failed() || stop_requested(o.cancel)) continue;
    errors.guard([&] {
      for (Eigen::Index j = symmetric ? i : 0; j < n2; ++j) {
        double g, gd;
        if (symmetric && i == j) {
          g = A.m2[i];
          gd = A.e2[i];
        } else if (!ev.eval(i, j, S(i, j), g, gd)) {
          if (stop_requested(o.cancel)) return;  // quadrature pairs may take milliseconds each
          ev.eval_quadrature(i, j, S(i, j), g, gd);
          ++quad;
        }
        nonfinite += !(std::abs(g) + std::abs(gd) <= std::numeric_limits<double>::max());
        if (G) G[i * ld + j] = g;
        if (Gdot) Gdot[i * ld + j] = gd;
        if (symmetric) {
          if (G) G[j * ld + i] = g;
          if (Gdot) Gdot[j * ld + i] = gd;
        }
      }
    });
  }
  finish_region(errors, o.cancel);
  AssemblyStats st;
  st.nonfinite = nonfinite;
  st.pairs = symmetric ? n1 * (n1 + 1) / 2 : n1 * n2;
  st.quadrature_pairs = quad;
  return st;
}

}  // namespace deqfast
