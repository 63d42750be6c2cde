// Finite-width deep equilibrium model, batched (docs/theory.md §3, "finite width").
//
//   Z = (sigma_a/sqrt m) A phi(Z) + sigma_b B X^T          Z: m x n (one column per sample)
//
// with A (m x m), B (m x p) and X (n x p) given. One GEMM per evaluation of the
// map; the constant sigma_b B X^T is formed once. The adjoint of the read-out
// f(x) = v^T phi(z*) / sqrt m solves the linear fixed point
//
//   W = Gv + (sigma_a/sqrt m) D o (A^T W),   D = phi'(Z*),   Gv = D o v / sqrt m
//
// (o: elementwise, v broadcast along the columns), with the same solvers. The
// n x n Gram matrices are formed by the caller once the loop is over.
//
// States are column-major m x n Eigen matrices, i.e. the memory of a row-major
// (n, m) array: the caller can hand in NumPy (n, m) buffers without a copy.
// Threads split the n columns (GEMM and elementwise work); Eigen itself runs
// single-threaded inside each block.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "deqfast/activation.hpp"
#include "deqfast/anderson.hpp"
#include "deqfast/elementwise.hpp"
#include "deqfast/matrix.hpp"
#include "deqfast/parallel.hpp"
#include "deqfast/workspace.hpp"

namespace deqfast {

/// Optional Fortran-BLAS ?gemm (column-major) used for the products instead of Eigen's
/// own kernel; the bindings hand in the one SciPy ships (scipy.linalg.cython_blas),
/// which is threaded and dispatched at run time to the CPU's widest vector unit.
template <class Scalar>
using GemmFn = void (*)(char* transa, char* transb, int* m, int* n, int* k, Scalar* alpha, Scalar* a, int* lda,
                        Scalar* b, int* ldb, Scalar* beta, Scalar* c, int* ldc);

struct ForwardOptions {
  FixedPointMethod method = FixedPointMethod::Anderson;
  SolverOptions solver;
  int num_threads = 0;             // 0: OpenMP default (clamped by resolve_threads)
  GemmFn<double> dgemm = nullptr;  // nullptr: Eigen products, threaded over column blocks
  GemmFn<float> sgemm = nullptr;
  Cancel* cancel = nullptr;        // polled between product blocks and evaluations (nullptr: never)
};

namespace detail {

/// The end of column block b of nb over [0, n): on a multiple of 64 columns (the last at n).
/// Eigen's product kernel treats a column by its place in its block (full register panels,
/// then a remainder kernel that sums in another order), so edges that moved with the number
/// of blocks would make the products' rounding depend on it (on the thread count, say).
inline Eigen::Index column_edge(Eigen::Index n, Eigen::Index b, Eigen::Index nb) {
  return b == nb ? n : (n * b / nb) / 64 * 64;
}

/// Run body(j0, j1) over contiguous column blocks of [0, n) in parallel, one per thread, but
/// only as many threads as there are ~2^17 units of `work_per_col` work (a thread team costs
/// more than it saves on small problems). An exception in a block is rethrown here.
template <class Body>
void for_column_blocks(Eigen::Index n, int threads, Body&& body, double work_per_col = 1.0) {
  const double chunks = std::max(1.0, std::floor(double(n) * work_per_col / 131072.0));
  const int nb = int(std::max<Eigen::Index>(
      1, std::min<Eigen::Index>(std::min<Eigen::Index>(threads, n), Eigen::Index(std::min(chunks, 1e6)))));
  ParallelErrors errors;
#ifdef DEQFAST_HAVE_OPENMP
#pragma omp parallel for num_threads(nb) schedule(static, 1) if (nb > 1)
#endif
  for (int b = 0; b < nb; ++b) {
    const Eigen::Index j0 = column_edge(n, b, nb), j1 = column_edge(n, b + 1, nb);
    if (j1 > j0) errors.guard([&] { body(j0, j1); });
  }
  errors.rethrow();
}

/// Splits a long product into column blocks of at most about kBlockFlops (float64-equivalent)
/// and polls the Cancel token between blocks, so a stop request is honoured within about
/// one block even when one product takes seconds. The split depends only on the sizes (never
/// on timing) and falls on multiples of 64 columns, so results are reproducible run to run.
/// The products of the usual sizes (m = 2048, n <= 1024 in float64) are not split.
class ProductPacer {
 public:
  static constexpr double kBlockFlops = 1.1e10;  // ~0.1 s of float64 GEMM on two idle cores
  explicit ProductPacer(Cancel* cancel) : cancel_(cancel) {}

  /// block(j0, j1) computes columns [j0, j1) of a product costing `flops_per_col` per column
  /// in a type of `scalar_bytes` bytes.
  template <class Block>
  void run(Eigen::Index n, double flops_per_col, std::size_t scalar_bytes, Block&& block) {
    const double work = double(n) * flops_per_col * double(scalar_bytes) / 8.0;
    const Eigen::Index max_blocks = std::max<Eigen::Index>(1, n / 64);
    const Eigen::Index nb = std::min<Eigen::Index>(max_blocks, Eigen::Index(std::ceil(work / kBlockFlops)));
    Eigen::Index j0 = 0;
    for (Eigen::Index b = 1; b <= nb; ++b) {
      const Eigen::Index j1 = column_edge(n, b, nb);
      if (j1 <= j0) continue;
      block(j0, j1);
      j0 = j1;
      if (cancel_ && cancel_->check()) throw Interrupted();
    }
  }

 private:
  Cancel* cancel_;
};

/// phi (or phi') elementwise on a range: see elementwise.hpp (vectorised for the smooth kinds).
template <class Scalar>
void apply_activation(const Activation& phi, const Scalar* in, Scalar* out, Eigen::Index len, bool deriv) {
  activation_elementwise<Scalar>(phi, in, out, std::ptrdiff_t(len), deriv);
}

template <class Scalar>
GemmFn<Scalar> gemm_of(const ForwardOptions& o) {
  if constexpr (std::is_same_v<Scalar, double>)
    return o.dgemm;
  else
    return o.sgemm;
}

/// C (m x n, col-major, ld m) = alpha op(M) Y + beta C with M given row-major (rows x cols, outer
/// stride ld_m) and Y column-major (k x n, ld k). op(M) = M when `transpose` is false, else M^T.
template <class Scalar>
void blas_product(GemmFn<Scalar> gemm, bool transpose, const Scalar* M, Eigen::Index rows, Eigen::Index cols,
                  Eigen::Index ld_m, const Scalar* Y, Eigen::Index n, Eigen::Index ld_y, Scalar alpha, Scalar beta,
                  Scalar* C) {
  // Row-major M is column-major M^T: op(M) = M needs 'T', op(M) = M^T needs 'N'.
  char ta = transpose ? 'N' : 'T', tb = 'N';
  int mm = int(transpose ? cols : rows), nn = int(n), kk = int(transpose ? rows : cols);
  int lda = int(ld_m), ldb = int(ld_y), ldc = mm;
  gemm(&ta, &tb, &mm, &nn, &kk, &alpha, const_cast<Scalar*>(M), &lda, const_cast<Scalar*>(Y), &ldb, &beta, C, &ldc);
}

/// The DEQ map G(z) = U + c A phi(z) split for the solvers (see PlainMap in anderson.hpp):
/// prepare writes Phi = phi(z) and, with BLAS, copies U into the output, elementwise on a
/// range; complete adds the product c A Phi (BLAS ?gemm with beta = 1 on the prepared
/// output, or Eigen: U + c A Phi over column blocks in parallel).
template <class Scalar>
struct ForwardMap {
  static constexpr bool kHasPrepare = true;
  const Activation& phi;
  const Eigen::Ref<const RowMat<Scalar>>& A;
  Eigen::Map<const ColMat<Scalar>> U;
  ColMat<Scalar>& Phi;
  Scalar c;
  GemmFn<Scalar> gemm;
  ProductPacer& pacer;
  int threads;
  Cancel* cancel;

  /// read z, write Phi; with BLAS also read U, write the output
  double prepare_passes() const { return gemm ? 4.0 : 2.0; }

  void prepare(Eigen::Index i0, Eigen::Index i1, const Scalar* z, Scalar* out) {
    apply_activation<Scalar>(phi, z + i0, Phi.data() + i0, i1 - i0, false);
    if (gemm) std::copy(U.data() + i0, U.data() + i1, out + i0);
  }

  void complete(const Scalar*, Scalar* out) {
    const Eigen::Index m = A.rows(), n = Phi.cols();
    if (gemm) {
      pacer.run(n, 2.0 * double(m) * double(m), sizeof(Scalar), [&](Eigen::Index j0, Eigen::Index j1) {
        blas_product<Scalar>(gemm, false, A.data(), m, m, A.outerStride(), Phi.data() + j0 * m, j1 - j0, m, c,
                             Scalar(1), out + j0 * m);
      });
      return;
    }
    Eigen::Map<ColMat<Scalar>> o(out, m, n);
    for_column_blocks(
        n, threads,
        [&](Eigen::Index j0, Eigen::Index j1) {
          auto oc = o.middleCols(j0, j1 - j0);
          oc = U.middleCols(j0, j1 - j0);
          oc.noalias() += c * A * Phi.middleCols(j0, j1 - j0);
        },
        double(m) * double(m));
    if (cancel && cancel->check()) throw Interrupted();
  }
};

}  // namespace detail

/// Elementwise phi (or phi') of an m x n state, threaded over columns.
template <class Scalar>
void activation_map(const Activation& phi, const ColMat<Scalar>& Z, ColMat<Scalar>& out, bool deriv, int threads) {
  out.resize(Z.rows(), Z.cols());
  const Eigen::Index m = Z.rows();
  detail::for_column_blocks(
      Z.cols(), resolve_threads(threads),
      [&](Eigen::Index j0, Eigen::Index j1) {
        detail::apply_activation<Scalar>(phi, Z.data() + j0 * m, out.data() + j0 * m, (j1 - j0) * m, deriv);
      },
      double(m));
}

/// Solve the batched DEQ forward pass.
///
/// A: m x m, B: m x p, X: n x p (rows are samples). On entry Z (m x n) holds the
/// initial guess (zeros for a cold start); on exit it holds the equilibrium (the
/// last evaluation of the map) and Phi = phi(Z).
template <class Scalar>
SolverReport deq_forward(const Activation& phi, const Eigen::Ref<const RowMat<Scalar>>& A,
                         const Eigen::Ref<const RowMat<Scalar>>& B, const Eigen::Ref<const RowMat<Scalar>>& X,
                         double sigma_a, double sigma_b, ColMat<Scalar>& Z, ColMat<Scalar>& Phi,
                         const ForwardOptions& opt) {
  const Eigen::Index m = A.rows(), n = X.rows();
  if (A.cols() != m) throw std::invalid_argument("A must be square (m x m)");
  if (B.rows() != m) throw std::invalid_argument("B must have m = A.rows() rows");
  if (B.cols() != X.cols()) throw std::invalid_argument("B must have p = X.cols() columns");
  if (Z.rows() != m || Z.cols() != n) throw std::invalid_argument("Z must be m x n");
  const int threads = resolve_threads(opt.num_threads);
  const Scalar c = Scalar(sigma_a / std::sqrt(double(m)));
  detail::ProductPacer pacer(opt.cancel);
  const auto t0 = std::chrono::steady_clock::now();

  const auto gemm = detail::gemm_of<Scalar>(opt);
  const Eigen::Index p = X.cols();

  // U = sigma_b B X^T, once (in a pooled buffer: see workspace.hpp).
  PooledArrays<Scalar> u_buf(m * n, 1);
  Eigen::Map<ColMat<Scalar>> U(u_buf[0], m, n);
  if (gemm && p > 0) {
    // X row-major (n x p) is column-major X^T (p x n, ld = outer stride).
    pacer.run(n, 2.0 * double(m) * double(p), sizeof(Scalar), [&](Eigen::Index j0, Eigen::Index j1) {
      detail::blas_product<Scalar>(gemm, false, B.data(), m, p, B.outerStride(), X.data() + j0 * X.outerStride(),
                                   j1 - j0, X.outerStride(), Scalar(sigma_b), Scalar(0), U.data() + j0 * m);
    });
  } else {
    detail::for_column_blocks(
        n, threads,
        [&](Eigen::Index j0, Eigen::Index j1) {
          U.middleCols(j0, j1 - j0).noalias() = Scalar(sigma_b) * B * X.middleRows(j0, j1 - j0).transpose();
        },
        double(m) * double(p));
  }
  Phi.resize(m, n);
  const double input_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  detail::ForwardMap<Scalar> G{phi, A, Eigen::Map<const ColMat<Scalar>>(U.data(), m, n), Phi, c, gemm, pacer, threads,
                              opt.cancel};
  SolverOptions so = opt.solver;
  so.cancel = opt.cancel;
  SolverReport rep = solve_fixed_point<Scalar>(opt.method, G, Z, so);
  activation_map<Scalar>(phi, Z, Phi, false, threads);
  rep.array_passes += 2.0;
  rep.product_seconds += input_seconds;
  rep.solve_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

/// Solve the adjoint fixed point W = D o v / sqrt m + (sigma_a/sqrt m) D o (A^T W), D = phi'(Z).
///
/// On entry W (m x n) holds the initial guess; on exit the solution.
template <class Scalar>
SolverReport deq_adjoint(const Activation& phi, const Eigen::Ref<const RowMat<Scalar>>& A, const ColMat<Scalar>& Z,
                         const Eigen::Ref<const Eigen::Matrix<Scalar, Eigen::Dynamic, 1>>& v, double sigma_a,
                         ColMat<Scalar>& W, const ForwardOptions& opt) {
  const Eigen::Index m = A.rows(), n = Z.cols();
  if (A.cols() != m) throw std::invalid_argument("A must be square (m x m)");
  if (Z.rows() != m) throw std::invalid_argument("Z must have m rows");
  if (v.size() != m) throw std::invalid_argument("v must have length m");
  if (W.rows() != m || W.cols() != n) throw std::invalid_argument("W must be m x n");
  const int threads = resolve_threads(opt.num_threads);
  detail::ProductPacer pacer(opt.cancel);
  const double inv_sqrt_m = 1.0 / std::sqrt(double(m));
  const Scalar c = Scalar(sigma_a * inv_sqrt_m);

  ColMat<Scalar> D;
  activation_map<Scalar>(phi, Z, D, true, threads);
  ColMat<Scalar> Gv = D.array().colwise() * (v.array() * Scalar(inv_sqrt_m));
  PooledArrays<Scalar> t_buf(m * n, 1);
  Eigen::Map<ColMat<Scalar>> T(t_buf[0], m, n);

  const auto gemm = detail::gemm_of<Scalar>(opt);

  auto G = [&](const Scalar* w, Scalar* out) {
    Eigen::Map<const ColMat<Scalar>> wm(w, m, n);
    Eigen::Map<ColMat<Scalar>> o(out, m, n);
    if (gemm)
      pacer.run(n, 2.0 * double(m) * double(m), sizeof(Scalar), [&](Eigen::Index j0, Eigen::Index j1) {
        detail::blas_product<Scalar>(gemm, true, A.data(), m, m, A.outerStride(), w + j0 * m, j1 - j0, m, Scalar(1),
                                     Scalar(0), T.data() + j0 * m);
      });
    detail::for_column_blocks(
        n, threads,
        [&](Eigen::Index j0, Eigen::Index j1) {
          const Eigen::Index k = j1 - j0;
          auto t = T.middleCols(j0, k);
          if (!gemm) t.noalias() = A.transpose() * wm.middleCols(j0, k);
          o.middleCols(j0, k) = Gv.middleCols(j0, k) + c * D.middleCols(j0, k).cwiseProduct(t);
        },
        gemm ? double(m) : double(m) * double(m));
    if (!gemm && opt.cancel && opt.cancel->check()) throw Interrupted();
  };
  SolverOptions so = opt.solver;
  so.cancel = opt.cancel;
  return solve_fixed_point<Scalar>(opt.method, G, W, so);
}

}  // namespace deqfast
