"""Matrix-free spectra (deqfast.linalg): Lanczos spikes, SLQ densities, surrogate operator.

Everything is checked against dense NumPy/SciPy eigensolvers on small matrices.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
from hypothesis import given, settings
from hypothesis import strategies as st

import deqfast as df
from deqfast.linalg import (
    EigenResult,
    SpectralDensity,
    SurrogateOperator,
    lanczos_top,
    slq_density,
    surrogate_operator,
)


@pytest.fixture(scope="module")
def problem():
    mix = df.GaussianMixture.paper(128)
    s = mix.sample(300, seed=0)
    deq = df.DEQ("relu", sigma_a2=0.2, tau0=s.stats.tau0)
    G = deq.ck(s.X)
    return deq, s, G, np.linalg.eigvalsh(G)


# --------------------------------------------------------------------------- surrogate operator
@pytest.mark.parametrize(
    ("kernel", "trained"), [("pre", "hidden"), ("ck", "hidden"), ("ntk", "hidden"), ("ntk", "all")]
)
def test_surrogate_operator_matches_dense_surrogate(problem, rng, kernel, trained):
    deq, s, _, _ = problem
    op = surrogate_operator(deq, s.X, s.stats, kernel=kernel, trained=trained)
    M = df.surrogate_matrix(s.X, s.stats, deq.coefficients(kernel, trained=trained))
    V = rng.standard_normal((s.n, 3))
    scale = np.abs(M).max() * np.abs(V).sum(axis=0).max()
    np.testing.assert_allclose(op.matmat(V), M @ V, rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(op.matvec(V[:, 0]), M @ V[:, 0], rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(op.to_dense(), M, rtol=0, atol=1e-13 * np.abs(M).max())
    assert op.H is op
    assert "SurrogateOperator(n=300" in repr(op)


def test_surrogate_operator_float32_is_used_without_copy(problem, rng):
    deq, s, _, _ = problem
    X32 = s.X.astype(np.float32)
    op = surrogate_operator(deq, X32, s.stats)
    assert isinstance(op, SurrogateOperator)
    assert op.X is X32
    M = deq.ck_surrogate(s.X, s.stats)
    v = rng.standard_normal(s.n)
    err = np.abs(op.matvec(v) - M @ v).max() / np.abs(M @ v).max()
    assert 0 < err < 1e-5  # single precision XXᵀ part only


def test_surrogate_operator_validates(problem):
    deq, s, _, _ = problem
    with pytest.raises(TypeError, match=r"stats must be a deqfast\.MixtureStats"):
        surrogate_operator(deq, s.X, object())
    with pytest.raises(ValueError, match="kernel must be one of"):
        surrogate_operator(deq, s.X, s.stats, kernel="gram")
    with pytest.raises(ValueError, match="stats describe n=300"):
        surrogate_operator(deq, s.X[:10], s.stats)
    bad = s.X.copy()
    bad[5, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        surrogate_operator(deq, bad, s.stats)
    other = df.DEQ("relu", sigma_a2=0.2, tau0=2.0 * s.stats.tau0)
    with pytest.raises(ValueError, match="centred for tau0"):
        surrogate_operator(other, s.X, s.stats)


# --------------------------------------------------------------------------- Lanczos
def test_lanczos_top_matches_dense_eigh(problem):
    _, _, G, ev = problem
    res = lanczos_top(G, 5, tol=1e-10)
    assert isinstance(res, EigenResult) and res.converged
    top = ev[::-1][:5]
    np.testing.assert_allclose(res.eigenvalues, top, rtol=1e-8, atol=0)
    U = res.eigenvectors
    np.testing.assert_allclose(U.T @ U, np.eye(5), atol=1e-10)
    resid = np.linalg.norm(G @ U - U * res.eigenvalues, axis=0)
    assert np.all(resid <= 1e-9 * top[0])
    assert res.iterations < G.shape[0]
    assert "converged=True" in repr(res)


def test_lanczos_smallest(problem):
    _, _, G, ev = problem
    res = lanczos_top(G, 2, which="SA", tol=1e-10)
    np.testing.assert_allclose(res.eigenvalues, ev[:2], rtol=1e-8, atol=1e-12)


def test_lanczos_low_rank_restarts_after_breakdown(rng):
    """Rank 3: the Krylov space is exhausted after 4 steps; the rest are found after restarts."""
    U, _ = np.linalg.qr(rng.standard_normal((60, 3)))
    M = U @ np.diag([5.0, 3.0, 2.0]) @ U.T
    res = lanczos_top(M, 5)
    np.testing.assert_allclose(res.eigenvalues, [5.0, 3.0, 2.0, 0.0, 0.0], atol=1e-12)


def test_lanczos_reports_non_convergence(problem):
    _, _, G, _ = problem
    with pytest.raises(RuntimeError, match="did not converge in 6 steps"):
        lanczos_top(G, 5, max_steps=6, tol=1e-14)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        res = lanczos_top(G, 5, max_steps=6, tol=1e-14, strict=False)
    assert not res.converged and res.iterations == 6


def test_lanczos_validates(problem):
    _, _, G, _ = problem
    with pytest.raises(ValueError, match="k must be an integer in"):
        lanczos_top(G, G.shape[0])
    with pytest.raises(ValueError, match="which must be one of"):
        lanczos_top(G, 2, which="LM")
    with pytest.raises(ValueError, match="square"):
        lanczos_top(np.ones((3, 4)), 1)
    with pytest.raises(ValueError, match="v0 must be"):
        lanczos_top(G, 2, v0=np.zeros(G.shape[0]))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(5, 40), k=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_lanczos_property_random_symmetric(n, k, seed):
    r = np.random.default_rng(seed)
    B = r.standard_normal((n, n))
    M = B + B.T
    res = lanczos_top(M, k, tol=1e-11)
    ev = np.linalg.eigvalsh(M)[::-1][:k]
    scale = np.abs(np.linalg.eigvalsh(M)).max()
    np.testing.assert_allclose(res.eigenvalues, ev, rtol=0, atol=1e-9 * scale)


# --------------------------------------------------------------------------- SLQ
def test_slq_gauss_rule_reproduces_probe_moments(problem):
    """The m-node Gauss rule is exact for moments up to 2m − 1: check vᵀ M^j v, j = 0..3."""
    _, _, G, _ = problem
    dens = slq_density(G, probes=5, steps=10, seed=3)
    r = np.random.default_rng(3)
    V = r.choice(np.array([-1.0, 1.0]), size=(G.shape[0], 5)) / np.sqrt(G.shape[0])
    W = V.copy()
    for j in range(4):
        want = np.mean(np.einsum("ij,ij->j", V, W))
        got = float(np.sum(dens.weights * dens.nodes**j))
        assert got == pytest.approx(want, rel=1e-10)
        W = G @ W


@pytest.mark.parametrize("reorth", [True, False])
def test_slq_density_matches_dense_spectrum(problem, reorth):
    """Measured, n = 300, 40 probes × 40 steps: W1(SLQ, dense) = 0.0096 (4.5e-4 of the spread
    λ_max − λ_min = 21.2) with reorthogonalisation, 0.0093 without; the L1 distance of the
    bulk histograms (30 bins) is 0.082."""
    _, _, G, ev = problem
    dens = slq_density(G, probes=40, steps=40, seed=0, reorthogonalize=reorth)
    assert isinstance(dens, SpectralDensity) and dens.reorthogonalized is reorth
    assert dens.weights.sum() == pytest.approx(1.0)
    lo, hi = dens.support
    assert ev[0] - 1e-9 <= lo and hi <= ev[-1] + 1e-9
    w1 = dens.wasserstein(ev)
    assert w1 / (ev[-1] - ev[0]) < 2e-3
    # counts above the bulk: the two spikes of G*
    assert dens.count_above(10.0) == pytest.approx(2.0, abs=1.0)
    h, edges = dens.histogram(30, range=(ev[0], 3.0))
    hd, _ = np.histogram(ev, bins=edges, density=True)
    assert np.sum(np.abs(h - hd) * np.diff(edges)) < 0.25
    x = np.linspace(ev[0] - 1, ev[-1] + 1, 4001)
    mass = scipy.integrate.trapezoid(dens.smooth(x, 0.05), x)
    assert mass == pytest.approx(1.0, abs=1e-3)
    assert np.all(np.diff(dens.cdf(x)) >= 0)
    assert dens.to_dict()["probes"] == 40


def test_slq_on_surrogate_operator(problem):
    deq, s, _, _ = problem
    op = surrogate_operator(deq, s.X, s.stats)
    ev = np.linalg.eigvalsh(op.to_dense())
    dens = slq_density(op, probes=40, steps=40, seed=1)
    assert dens.wasserstein(ev) / (ev[-1] - ev[0]) < 4e-3  # measured 1.6e-3


def test_slq_validates(problem):
    _, _, G, _ = problem
    with pytest.raises(ValueError, match="steps must be an integer in"):
        slq_density(G, steps=G.shape[0] + 1)
    with pytest.raises(ValueError, match="probes must be an integer in"):
        slq_density(G, probes=0)
    with pytest.raises(TypeError, match="LinearOperator"):
        slq_density("not a matrix")
