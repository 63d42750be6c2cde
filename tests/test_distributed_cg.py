"""Out-of-core kernel ridge regression: conjugate gradients on the tiled zarr operator.

Needs the ``distributed`` extra (``dask[distributed]``, ``zarr``). The n = 8192 and
n = 32768 runs of issue acceptance, on a LocalCluster, are in ``benchmarks/bench_cg.py``;
here n ≤ 320 on Dask's threaded scheduler.
"""

from __future__ import annotations

import numpy as np
import pytest

distributed = pytest.importorskip(
    "dask.distributed", reason="deqfast.distributed needs dask[distributed] (the distributed extra)"
)
pytest.importorskip("zarr", reason="the tiles are stored in zarr (the distributed extra)")

import deqfast as df  # noqa: E402
from deqfast import distributed as dd  # noqa: E402
from deqfast.estimators import DEQKernelClassifier, DEQKernelRegressor  # noqa: E402


def _spd(rng, n, cond=1e3):
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Q * np.geomspace(1.0, 1.0 / cond, n)) @ Q.T


def test_cg_multiple_right_hand_sides(rng):
    A = _spd(rng, 80)
    B = rng.standard_normal((80, 3))
    B[:, 2] = 0.0  # a zero column is solved by x = 0
    res = dd.conjugate_gradient(A, B, ridge=0.1, tol=1e-12, progress=False)
    want = np.linalg.solve(A + 0.1 * np.eye(80), B)
    assert res.converged and res.status == "converged"
    np.testing.assert_allclose(res.x, want, rtol=0, atol=1e-10)
    true = np.linalg.norm(B[:, :2] - (A + 0.1 * np.eye(80)) @ res.x[:, :2], axis=0)
    assert res.residual == pytest.approx(np.max(true / np.linalg.norm(B[:, :2], axis=0)), rel=1e-6)
    assert res.residual <= 1e-12
    assert res.products == res.iterations + 1 + res.restarts
    assert res.residuals.shape == (res.iterations,)
    # one right-hand side in, one out; a good starting point needs fewer iterations
    one = dd.conjugate_gradient(A, B[:, 0], ridge=0.1, tol=1e-12, progress=False)
    assert one.x.shape == (80,)
    warm = dd.conjugate_gradient(
        A, B[:, 0], ridge=0.1, tol=1e-12, x0=want[:, 0] + 1e-6, progress=False
    )
    assert warm.iterations < one.iterations
    np.testing.assert_allclose(warm.x, want[:, 0], atol=1e-10)


def test_cg_reports_failure(rng):
    A = _spd(rng, 60, cond=1e6)
    b = rng.standard_normal(60)
    with pytest.raises(RuntimeError, match=r"relative residual .* after 3 iterations"):
        dd.conjugate_gradient(A, b, tol=1e-12, max_iter=3, progress=False)
    with pytest.warns(RuntimeWarning, match="max_iter 3"):
        res = dd.conjugate_gradient(A, b, tol=1e-12, max_iter=3, strict=False, progress=False)
    assert not res.converged and res.status == "max_iter" and res.iterations == 3
    indefinite = np.diag(np.r_[np.ones(5), -np.ones(5)])
    with pytest.raises(RuntimeError, match="not positive definite"):
        dd.conjugate_gradient(indefinite, np.ones(10), progress=False)
    with pytest.raises(ValueError, match="ridge"):
        dd.conjugate_gradient(A, b, ridge=-1.0)
    with pytest.raises(ValueError, match="B must have shape"):
        dd.conjugate_gradient(A, b[:10])


@pytest.fixture(scope="module")
def mixture():
    s = df.GaussianMixture.paper(64).sample(400, seed=1)
    deq = df.DEQ("relu", sigma_a2=0.2, tau0=s.stats.tau0)
    perm = np.random.default_rng(0).permutation(400)  # the sample is ordered by class
    X, labels = np.asarray(s.X)[perm], np.asarray(s.labels)[perm]
    return deq, X[:320], X[320:], labels[:320]


def test_kernel_ridge_cg_equals_dense_solve(mixture, tmp_path):
    """Relative residual ≤ 1e-8 and predictions equal to the dense solve to 1e-8."""
    deq, X, Xte, labels = mixture
    Y = np.where(labels[:, None] == np.arange(3), 1.0, -1.0)
    res = dd.kernel_ridge_cg(
        deq, X, Y, ridge=1e-3, kernel="ntk", block=96, tol=1e-10, progress=False,
        zarr_path=tmp_path / "k.zarr",
    )  # fmt: skip
    assert res.converged and res.residual <= 1e-8
    K = deq.ntk(X)
    alpha = np.linalg.solve(K + 1e-3 * np.eye(K.shape[0]), Y)
    pred_cg, pred = deq.ntk(Xte, X) @ res.x, deq.ntk(Xte, X) @ alpha
    assert np.abs(pred_cg - pred).max() <= 1e-8 * np.abs(pred).max()
    assert (tmp_path / "k.zarr").exists()  # a given store is kept


def test_nystrom_preconditioner_cuts_iterations(mixture, rng):
    deq, X, _, _ = mixture
    K = deq.ck(X)
    B = rng.standard_normal((X.shape[0], 2))
    plain = dd.conjugate_gradient(K, B, ridge=1e-3, tol=1e-10, progress=False)
    idx = np.sort(rng.choice(X.shape[0], 160, replace=False))
    M = dd.nystrom_preconditioner(deq.ck(X, X[idx]), idx, ridge=1e-3)
    pre = dd.conjugate_gradient(K, B, ridge=1e-3, tol=1e-10, preconditioner=M, progress=False)
    assert pre.converged and pre.iterations < plain.iterations / 2
    want = np.linalg.solve(K + 1e-3 * np.eye(K.shape[0]), B)
    np.testing.assert_allclose(pre.x, want, rtol=0, atol=1e-8 * np.abs(want).max())
    # M⁻¹ is symmetric positive definite (CG's requirement)
    Mm = M(np.eye(K.shape[0]))
    np.testing.assert_allclose(Mm, Mm.T, atol=1e-12)
    assert np.linalg.eigvalsh(0.5 * (Mm + Mm.T)).min() > 0


def test_estimator_cg_solver_equals_dense(mixture):
    _, X, Xte, labels = mixture
    X, labels = X[:200], labels[:200]
    y = np.sin(4 * X[:, 0] * np.sqrt(X.shape[1]))
    dense = DEQKernelRegressor(kernel="ck", ridge=1e-2, solver="dense").fit(X, y)
    cg = DEQKernelRegressor(kernel="ck", ridge=1e-2, solver="cg", cg_block=128).fit(X, y)
    assert cg.solver_ == "cg" and cg.cg_result_.residual <= 1e-10
    ref = dense.predict(Xte)
    assert np.abs(cg.predict(Xte) - ref).max() <= 1e-8 * np.abs(ref).max()
    clf = DEQKernelClassifier(solver="cg", cg_block=128).fit(X, labels)
    want = DEQKernelClassifier(solver="dense").fit(X, labels).decision_function(Xte)
    np.testing.assert_allclose(clf.decision_function(Xte), want, rtol=0, atol=1e-8)


def test_auto_solver_switches_to_cg_above_the_threshold(mixture, monkeypatch):
    from deqfast import estimators

    _, X, _, _ = mixture
    X, y = X[:60], np.cos(3 * X[:60, 1] * np.sqrt(X.shape[1]))
    monkeypatch.setattr(estimators, "DENSE_MAX_SAMPLES", 50)
    assert DEQKernelRegressor(cg_block=32).fit(X, y).solver_ == "cg"
    assert DEQKernelRegressor(t=10.0).fit(X, y).solver_ == "dense"  # finite t: eigh
    explicit = estimators.ExplicitKernelRegressor(tau0=1.0, kernel="ck", family="lrelu")
    assert explicit.fit(X, y).solver_ == "dense"  # no tiles for explicit nets
    monkeypatch.setattr(estimators, "DENSE_MAX_SAMPLES", 60)
    assert DEQKernelRegressor().fit(X, y).solver_ == "dense"
