// deqfast._core: the compiled hot loops. Each concept binds itself.
#include <Eigen/Core>
#include <string>

#include "bindings/pybind11.hpp"

void bind_activations(py::module_& m);
void bind_kernels(py::module_& m);
void bind_forward(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "deqfast compiled core (C++17, Eigen, OpenMP)";
#ifdef DEQFAST_HAVE_OPENMP
  m.attr("has_openmp") = true;
#else
  m.attr("has_openmp") = false;
#endif
  // The vector instruction sets Eigen's own kernels (products, elementwise) were compiled
  // for, e.g. "AVX512, FMA, AVX2, AVX, SSE, ...": deqfast.finite picks the forward's
  // product engine from it.
  m.attr("eigen_simd") = std::string(Eigen::SimdInstructionSetsInUse());
  bind_activations(m);
  bind_kernels(m);
  bind_forward(m);
}
