"""The raw kernel bindings of ``deqfast._core`` (docs/theory.md §3, §5): argument checks that the
Python layer relies on, and agreement of the plain-value entry point with the DEQ's."""

from __future__ import annotations

import numpy as np
import pytest

import deqfast as df
from deqfast import _core
from deqfast.kernels import compute_kernels, diagonal


@pytest.fixture
def setup(rng):
    X = rng.standard_normal((12, 5)) / np.sqrt(5)
    phi = df.activations.tanh()
    A = diagonal(phi, X, sigma_a2=0.2, sigma_b2=0.8)
    return phi, X, A


def _assemble(phi, X, A, **outputs):
    n = len(X)
    return _core.assemble(
        phi.core, X, X, A, A, True, 0, n, 0, n, sigma_a2=0.2, sigma_b2=0.8, **outputs
    )


def test_assemble_writes_into_a_c_ordered_float64_output(setup):
    phi, X, A = setup
    G = np.zeros((len(X), len(X)))
    _assemble(phi, X, A, G=G)
    want = compute_kernels(phi, X, sigma_a2=0.2, sigma_b2=0.8, outputs=("G",)).G
    np.testing.assert_array_equal(G, want)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda n: np.zeros((n, n), order="F"), ValueError, "C-contiguous"),
        (lambda n: np.zeros((n, n), dtype=np.float32), TypeError, "float64"),
        (lambda n: np.zeros((n, 2 * n))[:, ::2], ValueError, "C-contiguous"),
        (lambda n: np.zeros((n, n + 1)), ValueError, "shape"),
        (lambda n: np.zeros((n, n)).tolist(), TypeError, "ndarray"),
    ],
)
def test_assemble_refuses_outputs_it_would_copy(setup, make, error, match):
    """A converted output would receive the results in a temporary copy and leave the
    caller's array untouched: every such output must be refused."""
    phi, X, A = setup
    out = make(len(X))
    with pytest.raises(error, match=match):
        _assemble(phi, X, A, G=out)
    if isinstance(out, np.ndarray):
        assert not np.any(out)


def test_assemble_refuses_read_only_output(setup):
    phi, X, A = setup
    G = np.zeros((len(X), len(X)))
    G.setflags(write=False)
    with pytest.raises(ValueError, match="writeable"):
        _assemble(phi, X, A, G=G)


def test_gaussian_map_refuses_fortran_output(setup):
    phi, X, _ = setup
    S = X @ X.T
    A = _core.samples_at(phi.core, np.diag(S).copy(), 64)
    G = np.zeros(S.shape, order="F")
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.gaussian_map(phi.core, S, A, A, True, G=G)


def test_plain_values_and_deq_give_identical_kernels(rng):
    X = rng.standard_normal((20, 6))
    deq = df.DEQ("relu", sigma_a2=0.3, tau0=1.0)
    plain = compute_kernels(deq.phi, X, sigma_a2=0.3, sigma_b2=0.7, outputs=("G", "K"))
    via_deq = compute_kernels(deq, X, outputs=("G", "K"))
    np.testing.assert_array_equal(plain.G, via_deq.G)
    np.testing.assert_array_equal(plain.K, via_deq.K)
    with pytest.raises(TypeError, match="sigma_a2"):
        compute_kernels(deq.phi, X)
    with pytest.raises(TypeError, match="not both"):
        compute_kernels(deq, X, sigma_a2=0.3, sigma_b2=0.7)
