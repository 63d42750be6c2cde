// Activations, Gaussian moments and Hermite expansions (docs/theory.md §2).
#include "bindings/pybind11.hpp"
#include "deqfast/activation.hpp"
#include "deqfast/elementwise.hpp"
#include "deqfast/moments.hpp"
#include "deqfast/simd_math.hpp"

using deqfast::Activation;

namespace {

py::array_t<double> apply(const Activation& a, py::array_t<double, py::array::c_style | py::array::forcecast> x,
                          bool derivative) {
  py::array_t<double> out(x.request().shape);
  const double* in = x.data();
  double* o = out.mutable_data();
  const py::ssize_t n = x.size();
  {
    py::gil_scoped_release release;
    if (derivative)
      for (py::ssize_t i = 0; i < n; ++i) o[i] = a.deriv(in[i]);
    else
      for (py::ssize_t i = 0; i < n; ++i) o[i] = a(in[i]);
  }
  return out;
}

/// phi (or phi') of x by the loops of the DEQ forward map and adjoint (elementwise.hpp).
template <class Scalar>
py::array_t<Scalar> elementwise(const Activation& a, py::array_t<Scalar, py::array::c_style> x, bool derivative) {
  py::array_t<Scalar> out(x.request().shape);
  const Scalar* in = x.data();
  Scalar* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    deqfast::activation_elementwise<Scalar>(a, in, o, std::ptrdiff_t(x.size()), derivative);
  }
  return out;
}

}  // namespace

void bind_activations(py::module_& m) {
  py::class_<deqfast::Moments>(m, "Moments")
      .def_readonly("a0", &deqfast::Moments::a0)
      .def_readonly("a1", &deqfast::Moments::a1)
      .def_readonly("a2", &deqfast::Moments::a2)
      .def_readonly("a3", &deqfast::Moments::a3)
      .def_readonly("m2", &deqfast::Moments::m2)
      .def_readonly("m2_dot", &deqfast::Moments::m2_dot)
      .def_readonly("e2", &deqfast::Moments::e2);

  py::class_<Activation>(m, "Activation")
      .def(py::init(&deqfast::make_activation), py::arg("kind"), py::arg("params"), py::arg("coef"),
           py::arg("shift"))
      .def_readonly("shift", &Activation::shift)
      .def("__call__", [](const Activation& a, py::array_t<double, py::array::c_style | py::array::forcecast> x) {
        return apply(a, x, false);
      })
      .def("derivative", [](const Activation& a, py::array_t<double, py::array::c_style | py::array::forcecast> x) {
        return apply(a, x, true);
      })
      .def("kinks", &Activation::kinks)
      .def("moments", &deqfast::gaussian_moments, py::arg("tau"),
           "Gaussian moments a0..a3, m2, m2_dot, e2 at scale tau (theory page §2).")
      .def(
          "hermite",
          [](const Activation& a, double tau, int K) {
            if (!(tau > 0)) throw py::value_error("tau must be > 0");
            const deqfast::HermiteExpansion he = deqfast::hermite_expansion(a, tau, K);
            return py::make_tuple(py::array_t<double>(py::ssize_t(he.h.size()), he.h.data()), he.rem, he.remd);
          },
          py::arg("tau"), py::arg("terms"),
          "Normalised Hermite coefficients h_k = E[phi(tau xi) He_k(xi)]/sqrt(k!) and Parseval remainders.");
  m.def("_activation_elementwise", &elementwise<float>, py::arg("phi"), py::arg("x"), py::arg("derivative"),
        "phi(x) (or phi'(x)) of a C-contiguous float32 array by the DEQ forward map's loops (exposed for tests).");
  m.def("_activation_elementwise", &elementwise<double>, py::arg("phi"), py::arg("x"), py::arg("derivative"),
        "phi(x) (or phi'(x)) of a C-contiguous float64 array by the DEQ forward map's loops (exposed for tests).");
  using Vec = Eigen::ArrayXd;
  m.def(
      "_exp_vec", [](const Eigen::Ref<const Vec>& x) -> Vec { return x.unaryExpr(&deqfast::exp_vec); }, py::arg("x"),
      "The branch-free exp of the pair series about |rho| = 1 (exposed for its accuracy test).");
  m.def(
      "_tanh_vec", [](const Eigen::Ref<const Vec>& x) -> Vec { return x.unaryExpr(&deqfast::tanh_vec); },
      py::arg("x"), "The branch-free tanh of the pair series about |rho| = 1 (exposed for its accuracy test).");
  m.def(
      "_sigmoid_vec", [](const Eigen::Ref<const Vec>& x) -> Vec { return x.unaryExpr(&deqfast::sigmoid_vec); },
      py::arg("x"), "The branch-free sigmoid of the pair series about |rho| = 1 (exposed for its accuracy test).");
}
