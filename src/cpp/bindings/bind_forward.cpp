// Finite-width DEQ forward pass and adjoint with Anderson / Picard (docs/theory.md §3, "finite width").
#include <algorithm>
#include <string>

#include "bindings/pybind11.hpp"
#include "deqfast/deq_forward.hpp"

namespace dq = deqfast;

namespace {

/// Fortran ?gemm from SciPy's BLAS (scipy.linalg.cython_blas), looked up once with the GIL held.
template <class Fn>
Fn scipy_gemm(const char* name) {
  try {
    py::dict capi = py::module_::import("scipy.linalg.cython_blas").attr("__pyx_capi__");
    py::object cap = capi[name];
    // LP64 Fortran interface expected: "void (char *, char *, int *, int *, int *, ..."
    const char* sig = PyCapsule_GetName(cap.ptr());
    if (!sig || std::string(sig).rfind("void (char *, char *, int *, int *, int *,", 0) != 0) return nullptr;
    void* ptr = PyCapsule_GetPointer(cap.ptr(), PyCapsule_GetName(cap.ptr()));
    if (!ptr) {
      PyErr_Clear();
      return nullptr;
    }
    return reinterpret_cast<Fn>(ptr);
  } catch (const py::error_already_set&) {
    return nullptr;
  }
}

void set_gemm(dq::ForwardOptions& o, const std::string& gemm) {
  if (gemm == "eigen") return;
  if (gemm != "blas") throw py::value_error("gemm must be 'blas' or 'eigen'; got '" + gemm + "'");
  static const auto d = scipy_gemm<dq::GemmFn<double>>("dgemm");
  static const auto s = scipy_gemm<dq::GemmFn<float>>("sgemm");
  o.dgemm = d;  // nullptr (SciPy BLAS unavailable): Eigen fallback
  o.sgemm = s;
}

constexpr long long kMaxIterLimit = 1LL << 30;  // evaluations; far beyond any useful solve

dq::ForwardOptions make_options(const std::string& solver, double tol, long long max_iter, long long memory,
                                double damping, double drop_tol, long long restart, double divergence,
                                long long num_threads, const std::string& gemm) {
  dq::ForwardOptions o;
  set_gemm(o, gemm);
  if (solver == "anderson")
    o.method = dq::FixedPointMethod::Anderson;
  else if (solver == "picard")
    o.method = dq::FixedPointMethod::Picard;
  else if (solver == "auto")
    o.method = dq::FixedPointMethod::Auto;
  else
    throw py::value_error("solver must be 'anderson', 'picard' or 'auto'; got '" + solver + "'");
  if (!(tol > 0)) throw py::value_error("tol must be > 0");
  if (max_iter < 1 || max_iter > kMaxIterLimit)
    throw py::value_error("max_iter must be in [1, " + std::to_string(kMaxIterLimit) + "]; got " +
                          std::to_string(max_iter));
  if (memory < 0 || memory > dq::kMaxMemory)
    throw py::value_error("memory must be in [0, " + std::to_string(dq::kMaxMemory) + "]");
  if (!(damping > 0 && damping <= 1)) throw py::value_error("damping must be in (0, 1]");
  if (!(drop_tol > 1)) throw py::value_error("drop_tol must be > 1");
  if (restart < 0 || restart > kMaxIterLimit)
    throw py::value_error("restart must be in [0, " + std::to_string(kMaxIterLimit) + "]");
  if (num_threads < 0) throw py::value_error("num_threads must be >= 0 (0: OpenMP default)");
  if (!(divergence > 1)) throw py::value_error("divergence must be > 1");
  o.solver.tol = tol;
  o.solver.max_iter = int(max_iter);
  o.solver.memory = int(memory);
  o.solver.damping = damping;
  o.solver.drop_tol = drop_tol;
  o.solver.restart = int(restart);
  o.solver.divergence = divergence;
  // requests beyond the cap are clamped (resolve_threads), never passed on as a team size
  o.num_threads = dq::resolve_threads(int(std::min<long long>(num_threads, dq::kMaxThreads)));
  o.solver.num_threads = o.num_threads;
  return o;
}

template <class Scalar>
py::tuple forward(const dq::Activation& phi, const Eigen::Ref<const dq::RowMat<Scalar>>& A,
                  const Eigen::Ref<const dq::RowMat<Scalar>>& B, const Eigen::Ref<const dq::RowMat<Scalar>>& X,
                  double sigma_a, double sigma_b, const dq::ForwardOptions& o) {
  const Eigen::Index m = A.rows(), n = X.rows();
  if (A.cols() != m) throw py::value_error("A must be square (m, m)");
  if (B.rows() != m || B.cols() != X.cols()) throw py::value_error("B must have shape (m, p) with p = X.shape[1]");
  dq::ColMat<Scalar> Z = dq::ColMat<Scalar>::Zero(m, n), Phi;
  dq::Cancel cancel = python_cancel();
  dq::ForwardOptions oc = o;
  oc.cancel = &cancel;
  const dq::SolverReport rep = call_core([&] {
    py::gil_scoped_release release;
    return dq::deq_forward<Scalar>(phi, A, B, X, sigma_a, sigma_b, Z, Phi, oc);
  });
  // Column-major m x n = row-major (n, m): Python transposes the (m, n) F-ordered arrays without a copy.
  return py::make_tuple(py::cast(std::move(Z)), py::cast(std::move(Phi)), rep);
}

template <class Scalar>
py::tuple adjoint(const dq::Activation& phi, const Eigen::Ref<const dq::RowMat<Scalar>>& A,
                  const Eigen::Ref<const dq::RowMat<Scalar>>& Zt,
                  const Eigen::Ref<const Eigen::Matrix<Scalar, Eigen::Dynamic, 1>>& v, double sigma_a,
                  const dq::ForwardOptions& o) {
  const Eigen::Index m = A.rows();
  if (A.cols() != m) throw py::value_error("A must be square (m, m)");
  if (Zt.cols() != m) throw py::value_error("Z must have shape (n, m)");
  if (v.size() != m) throw py::value_error("v must have length m");
  dq::ColMat<Scalar> W;
  dq::Cancel cancel = python_cancel();
  dq::ForwardOptions oc = o;
  oc.cancel = &cancel;
  const dq::SolverReport rep = call_core([&] {
    py::gil_scoped_release release;
    const dq::ColMat<Scalar> Z = Zt.transpose();  // (n, m) row-major -> m x n column-major: same memory order
    W = dq::ColMat<Scalar>::Zero(m, Z.cols());
    return dq::deq_adjoint<Scalar>(phi, A, Z, v, sigma_a, W, oc);
  });
  return py::make_tuple(py::cast(std::move(W)), rep);
}

template <class Scalar>
void def_typed(py::module_& m) {
  m.def(
      "deq_forward",
      [](const dq::Activation& phi, const Eigen::Ref<const dq::RowMat<Scalar>>& A,
         const Eigen::Ref<const dq::RowMat<Scalar>>& B, const Eigen::Ref<const dq::RowMat<Scalar>>& X, double sigma_a,
         double sigma_b, const std::string& solver, double tol, long long max_iter, long long memory,
         double damping, double drop_tol, long long restart, double divergence, long long num_threads,
         const std::string& gemm) {
        const auto o =
            make_options(solver, tol, max_iter, memory, damping, drop_tol, restart, divergence, num_threads, gemm);
        return forward<Scalar>(phi, A, B, X, sigma_a, sigma_b, o);
      },
      py::arg("phi"), py::arg("A").noconvert(), py::arg("B").noconvert(), py::arg("X").noconvert(), py::arg("sigma_a"),
      py::arg("sigma_b"), py::arg("solver") = "anderson", py::arg("tol") = 1e-8, py::arg("max_iter") = 500,
      py::arg("memory") = 5, py::arg("damping") = 1.0, py::arg("drop_tol") = 1e10, py::arg("restart") = 0,
      py::arg("divergence") = 1e6, py::arg("num_threads") = 0, py::arg("gemm") = "blas",
      "Batched finite-width DEQ Z = (sigma_a/sqrt m) A phi(Z) + sigma_b B X^T (theory page §3).\n"
      "solver: 'anderson', 'picard' or 'auto' (Picard, switching to Anderson when the observed rate says it pays).\n"
      "Interruptible (Ctrl-C raises KeyboardInterrupt within about one product block).\n"
      "A (m, m), B (m, p), X (n, p) C-contiguous, all float64 or all float32. Returns (Z, Phi, report) with\n"
      "Z and Phi as F-ordered (m, n) arrays (transpose for (n, m) rows-as-samples).");
  m.def(
      "deq_adjoint",
      [](const dq::Activation& phi, const Eigen::Ref<const dq::RowMat<Scalar>>& A,
         const Eigen::Ref<const dq::RowMat<Scalar>>& Z,
         const Eigen::Ref<const Eigen::Matrix<Scalar, Eigen::Dynamic, 1>>& v, double sigma_a, const std::string& solver,
         double tol, long long max_iter, long long memory, double damping, double drop_tol, long long restart,
         double divergence, long long num_threads, const std::string& gemm) {
        const auto o =
            make_options(solver, tol, max_iter, memory, damping, drop_tol, restart, divergence, num_threads, gemm);
        return adjoint<Scalar>(phi, A, Z, v, sigma_a, o);
      },
      py::arg("phi"), py::arg("A").noconvert(), py::arg("Z").noconvert(), py::arg("v").noconvert(), py::arg("sigma_a"),
      py::arg("solver") = "anderson", py::arg("tol") = 1e-8, py::arg("max_iter") = 500, py::arg("memory") = 5,
      py::arg("damping") = 1.0, py::arg("drop_tol") = 1e10, py::arg("restart") = 0, py::arg("divergence") = 1e6,
      py::arg("num_threads") = 0, py::arg("gemm") = "blas",
      "Adjoint W = D o v/sqrt m + (sigma_a/sqrt m) D o (A^T W), D = phi'(Z) (theory page §3).\n"
      "Z is the (n, m) equilibrium. Returns (W, report) with W an F-ordered (m, n) array.");
}

}  // namespace

void bind_forward(py::module_& m) {
  py::class_<dq::SolverReport>(m, "SolverReport", "Outcome of a fixed-point solve.")
      .def_property_readonly("status", [](const dq::SolverReport& r) { return std::string(dq::status_name(r.status)); })
      .def_property_readonly("converged", &dq::SolverReport::converged)
      .def_readonly("iterations", &dq::SolverReport::iterations)
      .def_readonly("evaluations", &dq::SolverReport::evaluations)
      .def_readonly("residual", &dq::SolverReport::residual)
      .def_property_readonly("residuals",
                             [](const dq::SolverReport& r) {
                               return py::array_t<double>(py::ssize_t(r.residuals.size()), r.residuals.data());
                             })
      .def_readonly("dropped", &dq::SolverReport::dropped)
      .def_readonly("restarts", &dq::SolverReport::restarts)
      .def_readonly("array_passes", &dq::SolverReport::array_passes,
                    "Full-length array reads + writes outside the matrix products (one N-element pass each).")
      .def_readonly("product_seconds", &dq::SolverReport::product_seconds,
                    "Wall time inside the matrix products (the forward pass includes the input term).")
      .def_readonly("solve_seconds", &dq::SolverReport::solve_seconds, "Wall time of the whole solve.")
      .def_property_readonly("phases",
                             [](const dq::SolverReport& r) {
                               py::list out;
                               for (const auto& ph : r.phases)
                                 out.append(py::make_tuple(std::string(dq::method_name(ph.method)),
                                                           ph.first_evaluation));
                               return out;
                             })
      .def("__repr__", [](const dq::SolverReport& r) {
        return "SolverReport(status='" + std::string(dq::status_name(r.status)) +
               "', evaluations=" + std::to_string(r.evaluations) + ", residual=" + std::to_string(r.residual) + ")";
      });
  m.def(
      "workspace_bytes", [] { return dq::WorkspacePool::instance().idle_bytes(); },
      "Bytes of solver work arrays kept for the next solve (freed ones stay mapped, up to 1 GiB).");
  m.def(
      "release_workspace", [] { return dq::WorkspacePool::instance().release_all(); },
      "Give the solvers' idle work arrays back to the system; returns the bytes released.");
  // float64 first: overload resolution tries it first; noconvert() keeps float32 arrays on the float32 path.
  def_typed<double>(m);
  def_typed<float>(m);
}
