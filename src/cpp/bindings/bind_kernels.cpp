// Exact infinite-width kernels: diagonal fixed points and tiled pair assembly (THEORY.md §3).
#include <optional>

#include "bindings/pybind11.hpp"
#include "deqfast/kernels.hpp"

namespace dq = deqfast;

namespace {

using OutArray = std::optional<py::array_t<double, py::array::c_style>>;

dq::KernelOptions make_options(double sigma_a2, double sigma_b2, double tol, int max_iter, int hermite_terms,
                               int block, int num_threads) {
  dq::KernelOptions o;
  o.sigma_a2 = sigma_a2;
  o.sigma_b2 = sigma_b2;
  o.tol = tol;
  o.max_iter = max_iter;
  o.hermite_terms = hermite_terms;
  o.block = block;
  o.num_threads = num_threads;
  return o;
}

}  // namespace

void bind_kernels(py::module_& m) {
  py::class_<dq::SampleData>(m, "SampleData",
                             "Per-sample diagonal fixed points d_i = S*_ii with m2 = G*_ii, e2 = Gdot*_ii.")
      .def_readonly("d", &dq::SampleData::d)
      .def_readonly("m2", &dq::SampleData::m2)
      .def_readonly("e2", &dq::SampleData::e2)
      .def_readonly("hermite", &dq::SampleData::herm)
      .def_readonly("iterations", &dq::SampleData::iterations)
      .def_readonly("residual", &dq::SampleData::residual)
      .def_property_readonly("n", [](const dq::SampleData& s) { return s.d.size(); });

  py::class_<dq::AssemblyStats>(m, "AssemblyStats")
      .def_readonly("pairs", &dq::AssemblyStats::pairs)
      .def_readonly("newton_steps", &dq::AssemblyStats::newton_steps)
      .def_readonly("picard_steps", &dq::AssemblyStats::picard_steps)
      .def_readonly("quadrature_pairs", &dq::AssemblyStats::quadrature_pairs)
      .def_readonly("unconverged", &dq::AssemblyStats::unconverged)
      .def_readonly("max_iterations", &dq::AssemblyStats::max_iterations)
      .def_readonly("max_error", &dq::AssemblyStats::max_error);

  m.def(
      "solve_diagonal",
      [](const dq::Activation& phi, const Eigen::Ref<const Eigen::VectorXd>& sqnorm, double sigma_a2,
         double sigma_b2, double tol, int max_iter, int hermite_terms, int num_threads) {
        const auto o = make_options(sigma_a2, sigma_b2, tol, max_iter, hermite_terms, 64, num_threads);
        py::gil_scoped_release release;
        try {
          return dq::solve_diagonal(phi, sqnorm, o);
        } catch (const std::domain_error& e) {
          throw std::invalid_argument(e.what());
        }
      },
      py::arg("phi"), py::arg("sqnorm"), py::arg("sigma_a2"), py::arg("sigma_b2"), py::arg("tol") = 1e-12,
      py::arg("max_iter") = 100, py::arg("hermite_terms") = 64, py::arg("num_threads") = 0,
      "Diagonal fixed points d_i = sigma_a2 m2(sqrt d_i) + sigma_b2 |x_i|^2 (THEORY.md §3).");

  m.def(
      "assemble",
      [](const dq::Activation& phi, const Eigen::Ref<const dq::RowMatrix>& XA,
         const Eigen::Ref<const dq::RowMatrix>& XB, const dq::SampleData& A, const dq::SampleData& B,
         bool symmetric, Eigen::Index r0, Eigen::Index r1, Eigen::Index c0, Eigen::Index c1, double sigma_a2,
         double sigma_b2, OutArray S, OutArray G, OutArray Gdot, OutArray K, OutArray Theta, double tol,
         int max_iter, int block, int num_threads) {
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
        auto take = [&](OutArray& a, const char* name) -> double* {
          if (!a) return nullptr;
          if (a->ndim() != 2 || a->shape(0) != na || a->shape(1) != nb)
            throw py::value_error(std::string(name) + " must have shape (len(XA), len(XB))");
          return a->mutable_data();
        };
        out.S = take(S, "S");
        out.G = take(G, "G");
        out.Gdot = take(Gdot, "Gdot");
        out.K = take(K, "K");
        out.Theta = take(Theta, "Theta");
        const auto o = make_options(sigma_a2, sigma_b2, tol, max_iter, 64, block, num_threads);
        py::gil_scoped_release release;
        return dq::assemble(phi, XA, XB, A, B, symmetric, r0, r1, c0, c1, out, o);
      },
      py::arg("phi"), py::arg("XA"), py::arg("XB"), py::arg("A"), py::arg("B"), py::arg("symmetric"),
      py::arg("r0"), py::arg("r1"), py::arg("c0"), py::arg("c1"), py::arg("sigma_a2"), py::arg("sigma_b2"),
      py::arg("S") = py::none(), py::arg("G") = py::none(), py::arg("Gdot") = py::none(),
      py::arg("K") = py::none(), py::arg("Theta") = py::none(), py::arg("tol") = 1e-12,
      py::arg("max_iter") = 100, py::arg("block") = 64, py::arg("num_threads") = 0,
      "Solve every pair fixed point in rows [r0, r1) x columns [c0, c1) and write the requested kernels "
      "(THEORY.md §3). With symmetric=True only the upper triangle is solved and mirrored.");

  m.def(
      "samples_at",
      [](const dq::Activation& phi, const Eigen::Ref<const Eigen::VectorXd>& d, int hermite_terms) {
        py::gil_scoped_release release;
        try {
          return dq::samples_at(phi, d, hermite_terms);
        } catch (const std::domain_error& e) {
          throw std::invalid_argument(e.what());
        }
      },
      py::arg("phi"), py::arg("d"), py::arg("hermite_terms") = 64,
      "Per-sample data (m2, e2, Hermite expansion) at given variances d_i (no fixed point).");

  m.def(
      "gaussian_map",
      [](const dq::Activation& phi, const Eigen::Ref<const dq::RowMatrix>& S, const dq::SampleData& A,
         const dq::SampleData& B, bool symmetric, OutArray G, OutArray Gdot, int num_threads) {
        if (A.d.size() != S.rows() || B.d.size() != S.cols())
          throw py::value_error("sample data do not match the shape of S");
        if (symmetric && S.rows() != S.cols()) throw py::value_error("symmetric map needs a square S");
        auto take = [&](OutArray& a, const char* name) -> double* {
          if (!a) return nullptr;
          if (a->ndim() != 2 || a->shape(0) != S.rows() || a->shape(1) != S.cols())
            throw py::value_error(std::string(name) + " must have the shape of S");
          return a->mutable_data();
        };
        double* g = take(G, "G");
        double* gd = take(Gdot, "Gdot");
        dq::KernelOptions o;
        o.num_threads = num_threads;
        py::gil_scoped_release release;
        return dq::gaussian_map(phi, S, A, B, symmetric, g, gd, o);
      },
      py::arg("phi"), py::arg("S"), py::arg("A"), py::arg("B"), py::arg("symmetric"), py::arg("G") = py::none(),
      py::arg("Gdot") = py::none(), py::arg("num_threads") = 0,
      "G = F_phi(S) and Gdot = F_phi'(S) elementwise (THEORY.md §5): one explicit layer's kernel map.");

  m.def(
      "_acos_vec",
      [](const Eigen::Ref<const Eigen::ArrayXd>& x) -> Eigen::ArrayXd { return x.unaryExpr(&dq::acos_vec); },
      py::arg("x"), "The vectorisable arccos of the arc-cosine pair solver (exposed for its accuracy test).");
  m.def(
      "_asin_vec",
      [](const Eigen::Ref<const Eigen::ArrayXd>& x) -> Eigen::ArrayXd { return x.unaryExpr(&dq::asin_vec); },
      py::arg("x"), "The vectorisable arcsin of the arcsine (erf) pair solver (exposed for its accuracy test).");
}
