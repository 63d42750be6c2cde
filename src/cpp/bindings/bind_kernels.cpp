// Exact infinite-width kernels: diagonal fixed points and tiled pair assembly (docs/theory.md §3).
#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

#include "bindings/pybind11.hpp"
#include "deqfast/kernels.hpp"

namespace dq = deqfast;

namespace {

/// A caller-owned output array: None, or a writeable, C-contiguous ndarray of shape (rows, cols)
/// and dtype T (float64, or float32 when the caller asked for it). Anything else is refused (a
/// converting cast would write into a temporary copy and leave the caller's array untouched).
template <class T>
T* output_pointer(const py::object& a, const char* name, Eigen::Index rows, Eigen::Index cols) {
  if (a.is_none()) return nullptr;
  if (!py::isinstance<py::array>(a))
    throw py::type_error(std::string(name) + " must be a numpy.ndarray, got " +
                         std::string(py::str(a.get_type().attr("__name__"))));
  auto arr = py::reinterpret_borrow<py::array>(a);
  if (!arr.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + " must have dtype " +
                         (std::is_same_v<T, float> ? "float32" : "float64") + " (the output dtype requested), got " +
                         std::string(py::str(arr.dtype())));
  if (arr.ndim() != 2 || arr.shape(0) != rows || arr.shape(1) != cols)
    throw py::value_error(std::string(name) + " must have shape (" + std::to_string(rows) + ", " +
                          std::to_string(cols) + ")");
  if (!(arr.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous (np.empty(shape) or np.ascontiguousarray)");
  if (!arr.writeable()) throw py::value_error(std::string(name) + " must be writeable");
  return static_cast<T*>(arr.mutable_data());
}

/// Whether the output dtype requested is float32 (true) or float64 (false); anything else is a
/// ValueError.
bool single_precision(const py::object& dtype) {
  const py::dtype dt = py::dtype::from_args(dtype);
  if (dt.is(py::dtype::of<double>())) return false;
  if (dt.is(py::dtype::of<float>())) return true;
  throw py::value_error("dtype must be float64 or float32, got " + std::string(py::str(dt)));
}

/// An integer option in [lo, hi], or a ValueError naming it (pybind11 would otherwise refuse a
/// value beyond int with a dump of every argument type).
int checked_int(long long v, const char* name, long long lo, long long hi) {
  if (v < lo || v > hi)
    throw py::value_error(std::string(name) + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                          "], got " + std::to_string(v));
  return int(v);
}

/// num_threads: 0 (or negative) for the OpenMP default, else clamped to [1, kMaxThreads].
int clamp_threads(long long v) { return v <= 0 ? 0 : int(std::min<long long>(v, dq::kMaxThreads)); }

dq::KernelOptions make_options(double sigma_a2, double sigma_b2, double tol, long long max_iter,
                               long long hermite_terms, long long block, long long num_threads) {
  if (!(sigma_a2 > 0) || !std::isfinite(sigma_a2)) throw py::value_error("sigma_a2 must be finite and > 0");
  if (!(sigma_b2 > 0) || !std::isfinite(sigma_b2)) throw py::value_error("sigma_b2 must be finite and > 0");
  if (!(tol > 0) || !std::isfinite(tol)) throw py::value_error("tol must be finite and > 0");
  dq::KernelOptions o;
  o.sigma_a2 = sigma_a2;
  o.sigma_b2 = sigma_b2;
  o.tol = tol;
  o.max_iter = checked_int(max_iter, "max_iter", 1, 1 << 30);
  o.hermite_terms = checked_int(hermite_terms, "hermite_terms", 1, 4096);
  o.block = checked_int(block, "block", 8, 1 << 16);
  o.num_threads = clamp_threads(num_threads);
  return o;
}

}  // namespace

void bind_kernels(py::module_& m) {
  py::class_<dq::SampleData>(m, "SampleData",
                             "Per-sample diagonal fixed points d_i = S*_ii with m2 = G*_ii, e2 = Gdot*_ii.")
      .def_readonly("d", &dq::SampleData::d)
      .def_readonly("m2", &dq::SampleData::m2)
      .def_readonly("e2", &dq::SampleData::e2)
      .def_readonly("iterations", &dq::SampleData::iterations)
      .def_readonly("residual", &dq::SampleData::residual);

  py::class_<dq::AssemblyStats>(m, "AssemblyStats")
      .def_readonly("pairs", &dq::AssemblyStats::pairs)
      .def_readonly("newton_steps", &dq::AssemblyStats::newton_steps)
      .def_readonly("picard_steps", &dq::AssemblyStats::picard_steps)
      .def_readonly("quadrature_pairs", &dq::AssemblyStats::quadrature_pairs)
      .def_readonly("unconverged", &dq::AssemblyStats::unconverged)
      .def_readonly("nonfinite", &dq::AssemblyStats::nonfinite)
      .def_readonly("overflow32", &dq::AssemblyStats::overflow32)
      .def_readonly("max_iterations", &dq::AssemblyStats::max_iterations)
      .def_readonly("max_error", &dq::AssemblyStats::max_error);

  m.def(
      "solve_diagonal",
      [](const dq::Activation& phi, const Eigen::Ref<const Eigen::VectorXd>& sqnorm, double sigma_a2,
         double sigma_b2, double tol, long long max_iter, long long hermite_terms, long long num_threads) {
        auto o = make_options(sigma_a2, sigma_b2, tol, max_iter, hermite_terms, 64, num_threads);
        auto cancel = python_cancel();
        o.cancel = &cancel;
        return call_core([&] {
          py::gil_scoped_release release;
          try {
            return dq::solve_diagonal(phi, sqnorm, o);
          } catch (const std::domain_error& e) {
            throw std::invalid_argument(e.what());
          }
        });
      },
      py::arg("phi"), py::arg("sqnorm"), py::arg("sigma_a2"), py::arg("sigma_b2"), py::arg("tol") = 1e-12,
      py::arg("max_iter") = 100, py::arg("hermite_terms") = 64, py::arg("num_threads") = 0,
      "Diagonal fixed points d_i = sigma_a2 m2(sqrt d_i) + sigma_b2 |x_i|^2 (theory page §3).");

  m.def(
      "assemble",
      [](const dq::Activation& phi, const Eigen::Ref<const dq::RowMatrix>& XA,
         const Eigen::Ref<const dq::RowMatrix>& XB, const dq::SampleData& A, const dq::SampleData& B,
         bool symmetric, Eigen::Index r0, Eigen::Index r1, Eigen::Index c0, Eigen::Index c1, double sigma_a2,
         double sigma_b2, const py::object& S, const py::object& G, const py::object& Gdot, const py::object& K,
         const py::object& Theta, double tol, long long max_iter, long long block, long long num_threads,
         const py::object& dtype) {
        const Eigen::Index na = XA.rows(), nb = XB.rows();
        if (XA.cols() != XB.cols()) throw py::value_error("XA and XB must have the same number of columns");
        if (A.d.size() != na || B.d.size() != nb)
          throw py::value_error("sample data do not match the rows of XA / XB");
        if (symmetric && na != nb) throw py::value_error("symmetric assembly needs XA == XB");
        if (r0 < 0 || r1 > na || r0 > r1 || c0 < 0 || c1 > nb || c0 > c1)
          throw py::value_error("row/column range out of bounds");
        dq::Outputs out;
        out.rows = na;
        out.ld = nb;
        if (single_precision(dtype)) {
          out.S32 = output_pointer<float>(S, "S", na, nb);
          out.G32 = output_pointer<float>(G, "G", na, nb);
          out.Gdot32 = output_pointer<float>(Gdot, "Gdot", na, nb);
          out.K32 = output_pointer<float>(K, "K", na, nb);
          out.Theta32 = output_pointer<float>(Theta, "Theta", na, nb);
        } else {
          out.S = output_pointer<double>(S, "S", na, nb);
          out.G = output_pointer<double>(G, "G", na, nb);
          out.Gdot = output_pointer<double>(Gdot, "Gdot", na, nb);
          out.K = output_pointer<double>(K, "K", na, nb);
          out.Theta = output_pointer<double>(Theta, "Theta", na, nb);
        }
        auto o = make_options(sigma_a2, sigma_b2, tol, max_iter, 64, block, num_threads);
        auto cancel = python_cancel();
        o.cancel = &cancel;
        return call_core([&] {
          py::gil_scoped_release release;
          return dq::assemble(phi, XA, XB, A, B, symmetric, r0, r1, c0, c1, out, o);
        });
      },
      py::arg("phi"), py::arg("XA"), py::arg("XB"), py::arg("A"), py::arg("B"), py::arg("symmetric"),
      py::arg("r0"), py::arg("r1"), py::arg("c0"), py::arg("c1"), py::arg("sigma_a2"), py::arg("sigma_b2"),
      py::arg("S") = py::none(), py::arg("G") = py::none(), py::arg("Gdot") = py::none(),
      py::arg("K") = py::none(), py::arg("Theta") = py::none(), py::arg("tol") = 1e-12,
      py::arg("max_iter") = 100, py::arg("block") = 64, py::arg("num_threads") = 0, py::arg("dtype") = "float64",
      "Solve every pair fixed point in rows [r0, r1) x columns [c0, c1) and write the requested kernels "
      "(theory page §3). With symmetric=True only the upper triangle is solved and mirrored. dtype: of "
      "every output array, float64 or float32 (computed in float64, stored rounded to nearest).");

  m.def(
      "samples_at",
      [](const dq::Activation& phi, const Eigen::Ref<const Eigen::VectorXd>& d, long long hermite_terms) {
        const int terms = checked_int(hermite_terms, "hermite_terms", 1, 4096);
        auto cancel = python_cancel();
        return call_core([&] {
          py::gil_scoped_release release;
          try {
            return dq::samples_at(phi, d, terms, &cancel);
          } catch (const std::domain_error& e) {
            throw std::invalid_argument(e.what());
          }
        });
      },
      py::arg("phi"), py::arg("d"), py::arg("hermite_terms") = 64,
      "Per-sample data (m2, e2, Hermite expansion) at given variances d_i (no fixed point).");

  m.def(
      "gaussian_map",
      [](const dq::Activation& phi, const Eigen::Ref<const dq::RowMatrix>& S, const dq::SampleData& A,
         const dq::SampleData& B, bool symmetric, const py::object& G, const py::object& Gdot,
         long long num_threads) {
        if (A.d.size() != S.rows() || B.d.size() != S.cols())
          throw py::value_error("sample data do not match the shape of S");
        if (symmetric && S.rows() != S.cols()) throw py::value_error("symmetric map needs a square S");
        double* g = output_pointer<double>(G, "G", S.rows(), S.cols());
        double* gd = output_pointer<double>(Gdot, "Gdot", S.rows(), S.cols());
        dq::KernelOptions o;
        o.num_threads = clamp_threads(num_threads);
        auto cancel = python_cancel();
        o.cancel = &cancel;
        return call_core([&] {
          py::gil_scoped_release release;
          return dq::gaussian_map(phi, S, A, B, symmetric, g, gd, o);
        });
      },
      py::arg("phi"), py::arg("S"), py::arg("A"), py::arg("B"), py::arg("symmetric"), py::arg("G") = py::none(),
      py::arg("Gdot") = py::none(), py::arg("num_threads") = 0,
      "G = F_phi(S) and Gdot = F_phi'(S) elementwise (theory page §5): one explicit layer's kernel map.");

  m.def(
      "_acos_vec",
      [](const Eigen::Ref<const Eigen::ArrayXd>& x) -> Eigen::ArrayXd { return x.unaryExpr(&dq::acos_vec); },
      py::arg("x"), "The vectorisable arccos of the arc-cosine pair solver (exposed for its accuracy test).");
  m.def(
      "_asin_vec",
      [](const Eigen::Ref<const Eigen::ArrayXd>& x) -> Eigen::ArrayXd { return x.unaryExpr(&dq::asin_vec); },
      py::arg("x"), "The vectorisable arcsin of the arcsine (erf) pair solver (exposed for its accuracy test).");
}
