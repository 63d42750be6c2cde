"""The elementwise activation loops of the finite-width DEQ's forward map and adjoint
(src/cpp/include/deqfast/elementwise.hpp; docs/theory.md §2, §3): the vectorised kinds
against NumPy/SciPy and against the scalar ``Activation`` they replace."""

from __future__ import annotations

import math

import numpy as np
import pytest

import deqfast as df
import reference as ref
from deqfast import _core, finite
from deqfast.activations import get

#: The kinds with a vectorised loop (relu is the piecewise-linear one), with parameters.
VECTORISED = [
    ("tanh", {}),
    ("sigmoid", {}),
    ("swish", {}),
    ("softplus", {}),
    ("elu", {"alpha": 1.3}),
    ("clip", {"a": 1.0, "c": 0.7}),
    ("relu", {}),
]


def _arguments(rng):
    """Tiny, moderate and large arguments of both signs, the branch points of the
    vectorised functions (|x| = 1/2, 0.625, e^-|x| = sqrt 2 - 1) and the clip's corners.
    |x| < 700: exp_vec clamps its argument there (e^-700 ~ 1e-304)."""
    mag = np.logspace(-300, 2.8, 4001)
    special = [0.0, 0.5, 0.625, 0.7, math.log(1 + math.sqrt(2)), 1e-8, 20.0]
    pts = np.concatenate([mag, special, np.nextafter(special, 1.0), np.nextafter(special, -1.0)])
    return np.concatenate([pts, -pts, 3.0 * rng.standard_normal(50_000)])


def _map(phi, x, derivative=False):
    return _core._activation_elementwise(phi.core, x, derivative)


@pytest.mark.parametrize(("name", "params"), VECTORISED)
def test_float64_values_match_numpy(rng, name, params):
    """phi to 3 ulp of the SciPy/NumPy reference (tanh, sigmoid, softplus to 2); phi' to
    4 ulp of max(|phi'|, 1): tanh' = 1 - tanh², sigmoid' = s(1 - s) and swish' cancel where
    they are small, exactly as the scalar Activation::deriv does."""
    phi, want = get(name, **params), ref.get(name, **params)
    x = _arguments(rng)
    ulps = 2 if name in ("tanh", "sigmoid", "softplus") else 3
    v, w = _map(phi, x), want(x)
    assert np.all(np.abs(v - w) <= ulps * np.spacing(np.abs(w))), name
    with np.errstate(over="ignore"):  # the reference's cosh overflows at large |x|
        d, wd = _map(phi, x, True), want.derivative(x)
    assert np.all(np.abs(d - wd) <= 4 * np.spacing(np.maximum(np.abs(wd), 1.0))), name
    # the scalar path (Activation.__call__ / .derivative) within the same bounds
    assert np.all(np.abs(v - phi(x)) <= (ulps + 2) * np.spacing(np.abs(w)))
    assert np.all(np.abs(d - phi.derivative(x)) <= 4 * np.spacing(np.maximum(np.abs(wd), 1.0)))


@pytest.mark.parametrize(("name", "params"), VECTORISED)
def test_float32_is_the_rounded_double_value(rng, name, params):
    """float32 computes in double and rounds once: the scalar double value rounded to
    float32, to 1 float ulp (a different rounding only at a near-tie)."""
    phi = get(name, **params)
    x32 = _arguments(rng).astype(np.float32)
    for derivative in (False, True):
        got = _map(phi, x32, derivative)
        assert got.dtype == np.float32
        x = x32.astype(np.float64)
        want = (phi.derivative(x) if derivative else phi(x)).astype(np.float32)
        floor = np.float32(1.0 if derivative else 0.0)
        assert np.all(np.abs(got - want) <= np.spacing(np.maximum(np.abs(want), floor)))


@pytest.mark.parametrize(("name", "params"), VECTORISED)
def test_centring_shift_and_nan(rng, name, params):
    """The centred activation of a DEQ is raw - shift (phi' unchanged); NaN stays NaN (and
    its derivative too, except at the kinked kinds, whose phi'(NaN) is the scalar's 0)."""
    deq = df.DEQ(get(name, **params), sigma_a2=0.5, tau0=1.0)
    shift = deq.phi.shift
    assert shift != 0.0 or name in ("tanh", "clip")
    raw = get(name, **params)
    x = 3.0 * rng.standard_normal(10_000)
    r = _map(raw, x)
    bound = 2 * np.spacing(np.maximum(np.abs(r), abs(shift)))  # 2: x * s - shift may fuse
    assert np.all(np.abs(_map(deq.phi, x) - (r - shift)) <= bound)
    np.testing.assert_array_equal(_map(deq.phi, x, True), _map(raw, x, True))
    nan = np.array([np.nan])
    assert np.isnan(_map(deq.phi, nan))
    np.testing.assert_array_equal(_map(deq.phi, nan, True), deq.phi.derivative(nan))
    assert np.isnan(_map(deq.phi, nan, True)) or name in ("relu", "clip")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("name", "params"), VECTORISED[:-1])
def test_forward_and_adjoint_against_numpy(rng, name, params, dtype):
    """The batched forward's fixed point against a NumPy Picard iteration with NumPy's
    activation (float64: 1e-12 relative; float32, tol 1e-6: 1e-5), and the adjoint's
    solution against its linear system solved by NumPy, with D = phi'(z*) from the reference."""
    act, want = get(name, **params), ref.get(name, **params)
    deq = df.DEQ(act, sigma_a2=0.5, tau0=1.0)
    shift = deq.phi.shift
    m, n, p = 96, 24, 12
    X = rng.standard_normal((n, p)) / math.sqrt(p)
    A, B, v = finite.draw_weights(m, p, seed=rng)
    c, sb = math.sqrt(deq.sigma_a2 / m), math.sqrt(deq.sigma_b2)
    U = sb * B @ X.T
    Z = np.zeros_like(U)
    for _ in range(2000):
        Zn = c * A @ (want(Z) - shift) + U
        done = np.linalg.norm(Zn - Z) <= 1e-15 * np.linalg.norm(Zn)
        Z = Zn
        if done:
            break
    f64 = dtype == np.float64
    res = finite.forward(deq, X, m, weights=(A, B, v), dtype=dtype, tol=1e-13 if f64 else 1e-6)
    err = np.linalg.norm(res.Z.T - Z) / np.linalg.norm(Z)
    assert err < (1e-12 if f64 else 1e-5), err
    if not f64:
        return
    W, rep = _core.deq_adjoint(deq.phi.core, A, res.Z, v, math.sqrt(deq.sigma_a2), tol=1e-13)
    assert rep.converged
    D = want.derivative(Z)
    M = np.eye(m)[None] - c * D.T[:, :, None] * A.T[None]  # (I - c diag(D_j) Aᵀ), per column j
    Wref = np.linalg.solve(M, (D.T * v / math.sqrt(m))[:, :, None])[:, :, 0].T
    assert np.linalg.norm(W - Wref) / np.linalg.norm(Wref) < 1e-12
