// The single place the pybind11 headers are included (STYLE.md).
#pragma once

#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

namespace py = pybind11;

#include <utility>

#include "deqfast/parallel.hpp"

/// A cancellation token whose poll checks Python's signal handlers (Ctrl-C raises
/// KeyboardInterrupt there). Create it on the calling thread while holding the GIL; the poll
/// re-acquires the GIL, so it may run inside a `py::gil_scoped_release` region.
inline deqfast::Cancel python_cancel() {
  return deqfast::Cancel([] {
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
  });
}

/// Run `body` (which releases the GIL itself) and turn a stop requested through a
/// python_cancel() token into the pending Python exception (KeyboardInterrupt for Ctrl-C).
/// Other exceptions pass through to pybind11's translation (std::domain_error and
/// std::invalid_argument become ValueError, std::bad_alloc MemoryError, the rest
/// RuntimeError).
template <class Body>
auto call_core(Body&& body) -> decltype(body()) {
  try {
    return std::forward<Body>(body)();
  } catch (const deqfast::Interrupted&) {
    if (!PyErr_Occurred()) PyErr_SetNone(PyExc_KeyboardInterrupt);
    throw py::error_already_set();
  }
}
