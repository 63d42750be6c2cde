"""Tests of the ten-class random-feature experiment in deqfast.random_features (docs/theory.md §5):
the paper's six models, scikit-learn read-outs, the kernel limit and inference timing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize

import deqfast as df
from deqfast.random_features import (
    ClassificationResult,
    FeatureModel,
    classification_grid,
    explicit_features,
    inference_timing,
    kernel_limits,
    kernel_ridge_accuracy,
    paper_models,
    relu_features,
    relu_kernel,
)
from deqfast.random_features._grid import _takes_gram
from deqfast.random_features._maps import shared_explicit_features
from deqfast.random_features._readouts import (
    _grid_readouts,
    _logistic_lbfgs,
    _readout_estimator,
    _spd_solve,
)
from deqfast.random_features._timing import _explicit_hidden, _explicit_weights

NAMES = (
    "ReLU DEQ",
    "L-ReLU net (designed)",
    "ReLU net (2 layers)",
    "tanh DEQ",
    "H-tanh net (designed)",
    "tanh net (1 layer)",
)


@pytest.fixture
def three_class(rng):
    """Three Gaussian classes in p = 12 at the scale of docs/theory.md §1, split 60/30."""
    p, per = 12, 30
    means = 2.5 * np.eye(3, p)
    y = np.repeat([0, 1, 2], per)
    X = (means[y] + rng.standard_normal((3 * per, p))) / math.sqrt(p)
    idx = rng.permutation(3 * per)
    tr, te = idx[:60], idx[60:]
    return X[tr], y[tr], X[te], y[te]


@pytest.fixture(scope="module")
def models():
    return paper_models(0.9, sigma_a2=0.2)


def test_paper_models_are_the_six_of_the_paper(models):
    assert tuple(models) == NAMES
    assert [m.kind for m in models.values()] == ["deq", "explicit", "explicit"] * 2
    assert models["L-ReLU net (designed)"].model.depth == 2
    assert models["ReLU net (2 layers)"].model.depth == 2
    assert models["H-tanh net (designed)"].model.depth == 1
    assert models["tanh net (1 layer)"].model.depth == 1
    assert "clip" in repr(models["H-tanh net (designed)"].model)
    json.dumps([m.to_dict() for m in models.values()])


def test_features_tend_to_their_kernels(models, rng):
    """The empirical CK FFᵀ of each model's features is a Monte-Carlo estimate of its kernel."""
    X = rng.standard_normal((6, 10))
    X *= 0.9 / np.sqrt(np.mean(np.sum(X**2, axis=1)))
    for name, mdl in models.items():
        K = mdl.kernel(X)
        m = 2000
        F = mdl.features(X, m, 1)
        assert F.shape == (6, m)
        err = np.linalg.norm(F @ F.T - K, 2) / np.linalg.norm(K, 2)
        assert err < 5.0 / math.sqrt(m), name  # Monte-Carlo error ~ 1/√m


def test_kernel_limits_with_more_mehler_terms_are_the_models_kernels(models, rng):
    """The kernel limits use longer Mehler series (HERMITE_TERMS) so that near-duplicate
    samples skip 2-D quadrature: they must equal each model's kernel at its defaults."""
    X = rng.standard_normal((12, 20))
    X[6:] = X[:6] + 1e-4 * rng.standard_normal((6, 20))  # correlations within 1e-8 of one
    X *= 0.9 / np.sqrt(np.mean(np.sum(X**2, axis=1)))
    for mdl in models.values():
        np.testing.assert_allclose(mdl.kernel(X), mdl.model.ck(X), rtol=1e-10, atol=1e-12)


def test_designed_nets_have_their_deqs_kernel(models, rng):
    X = rng.standard_normal((40, 30))
    X *= 0.9 / np.sqrt(np.mean(np.sum(X**2, axis=1)))
    for deq, net in (("ReLU DEQ", "L-ReLU net (designed)"), ("tanh DEQ", "H-tanh net (designed)")):
        G = models[deq].kernel(X)
        assert np.linalg.norm(models[net].kernel(X) - G, 2) / np.linalg.norm(G, 2) < 0.05
    G = models["ReLU DEQ"].kernel(X)
    # the undesigned baseline is visibly further away than the designed net
    d_base = np.linalg.norm(models["ReLU net (2 layers)"].kernel(X) - G, 2)
    d_des = np.linalg.norm(models["L-ReLU net (designed)"].kernel(X) - G, 2)
    assert d_des < 0.1 * d_base


# --------------------------------------------------------------------------- #
# read-outs: scikit-learn estimators against closed forms / an independent fit
# --------------------------------------------------------------------------- #
def test_ridge_readout_is_the_closed_form(rng):
    F = rng.standard_normal((50, 8))
    y = rng.integers(0, 4, size=50)
    est = _readout_estimator("ridge", 0.3, 100).fit(F, y)
    Y = -np.ones((50, 4))
    Y[np.arange(50), y] = 1.0
    W = np.linalg.solve(F.T @ F + 0.3 * np.eye(8), F.T @ Y)
    Ft = rng.standard_normal((20, 8))
    np.testing.assert_allclose(est.decision_function(Ft), Ft @ W, rtol=1e-9, atol=1e-12)


def test_logistic_readout_minimises_penalised_cross_entropy(rng):
    F = rng.standard_normal((60, 5))
    y = rng.integers(0, 3, size=60)
    lam = 0.5
    est = _readout_estimator("logistic", lam, 1000, 1e-8).fit(F, y)
    onehot = np.eye(3)[y]

    def loss(theta):  # Σ cross-entropy + (λ/2)‖W‖², unpenalised intercept
        W, b = theta[:15].reshape(5, 3), theta[15:]
        Z = F @ W + b
        Z -= Z.max(axis=1, keepdims=True)
        logp = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
        return -(onehot * logp).sum() + 0.5 * lam * np.sum(W**2)

    ref = scipy.optimize.minimize(loss, np.zeros(18), method="BFGS", options={"gtol": 1e-10})
    W_ref = ref.x[:15].reshape(5, 3)
    # the softmax is invariant to a common shift of the class scores: compare centred scores
    W_sk = est.coef_.T
    np.testing.assert_allclose(
        W_sk - W_sk.mean(axis=1, keepdims=True),
        W_ref - W_ref.mean(axis=1, keepdims=True),
        atol=1e-4,
    )
    assert loss(np.concatenate([W_sk.ravel(), est.intercept_])) <= ref.fun + 1e-6


def _softmax_problem(rng, n=90, m=12, K=4):
    F = rng.standard_normal((n, m)) / math.sqrt(m) + 0.3
    y = np.arange(n) % K  # every class present
    rng.shuffle(y)
    return F, y


# preconditioned (m ≤ n), and on the coefficients themselves (more features than samples)
@pytest.mark.parametrize(("shape", "lam"), [((90, 12), 0.5), ((90, 12), 1e-2), ((30, 40), 0.5)])
def test_preconditioned_logistic_readout_is_scikit_learns_optimum(rng, shape, lam):
    """docs/theory.md §5: the grid's logistic read-out minimises scikit-learn's
    LogisticRegression(C=1/λ) objective; both converged tightly, the coefficients agree
    (the intercept up to the common shift no prediction sees)."""
    F, y = _softmax_problem(rng, *shape)
    sk = _readout_estimator("logistic", lam, 100_000, 1e-12).fit(F, y)
    W, b, iterations, converged = _logistic_lbfgs(F, y, 4, lam, max_iter=2000, tol=1e-10)
    assert converged and 0 < iterations < 2000
    scale = np.abs(sk.coef_).max()
    np.testing.assert_allclose(W, sk.coef_.T, atol=1e-6 * scale)
    np.testing.assert_allclose(
        b - b.mean(), sk.intercept_ - sk.intercept_.mean(), atol=1e-6 * scale
    )
    Ft = rng.standard_normal((50, shape[1]))
    np.testing.assert_array_equal(np.argmax(Ft @ W + b, axis=1), sk.predict(Ft))


def test_logistic_readout_with_a_given_gram_and_in_float32(rng):
    """The caller's FᵀF gives the same preconditioner; float32 products stop near the same
    optimum (the objective within the tolerance's reach)."""
    F, y = _softmax_problem(rng)
    lam = 1e-2
    W0, b0, _, _ = _logistic_lbfgs(F, y, 4, lam, max_iter=2000, tol=1e-10)
    W1, b1, _, _ = _logistic_lbfgs(F, y, 4, lam, max_iter=2000, tol=1e-10, gram=F.T @ F)
    np.testing.assert_allclose(W1, W0, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(b1 - b1.mean(), b0 - b0.mean(), rtol=1e-6, atol=1e-8)
    W2, b2, _, ok = _logistic_lbfgs(F, y, 4, lam, max_iter=2000, tol=1e-4, dtype=np.float32)
    assert ok

    def objective(W, b):
        Z = F @ W + b
        Z -= Z.max(axis=1, keepdims=True)
        logp = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
        return (-logp[np.arange(len(y)), y].sum() + 0.5 * lam * np.sum(W**2)) / len(y)

    assert objective(W0, b0) <= objective(W2, b2) <= objective(W0, b0) + 1e-5
    _, _, it, ok = _logistic_lbfgs(F, y, 4, lam, max_iter=2, tol=1e-10)
    assert it == 2 and not ok


def test_grid_readouts_are_scikit_learns(rng):
    """Ridge: RidgeClassifier(alpha=λ, fit_intercept=False) to rounding; logistic: the same
    predictions as LogisticRegression converged tightly."""
    F, y = _softmax_problem(rng, n=140)
    ntr, lam = 100, 0.05
    out = _grid_readouts(
        F, ntr, y[:ntr], y[ntr:], 4, ("logistic", "ridge"), lam, max_iter=2000, tol=1e-10,
        dtype=np.float64,
    )  # fmt: skip
    for ro, tol in (("ridge", 1e-4), ("logistic", 1e-12)):
        est = _readout_estimator(ro, lam, 100_000, tol).fit(F[:ntr], y[:ntr])
        te, tr, sec, ok = out[ro]
        assert te == np.mean(est.predict(F[ntr:]) == y[ntr:]), ro
        assert tr == np.mean(est.predict(F[:ntr]) == y[:ntr]), ro
        assert sec >= 0 and ok


def test_spd_solve_is_a_float64_solve(rng):
    """Mixed-precision refinement reaches a float64 Cholesky solve's accuracy, and falls back to
    float64 where float32 cannot factorise or refine the matrix."""
    Q, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    B = rng.standard_normal((200, 3))
    for cond in (1e2, 1e5, 1e9, 1e13):
        A = (Q * np.geomspace(1.0, 1.0 / cond, 200)) @ Q.T
        A = 0.5 * (A + A.T)
        X = _spd_solve(A, B)
        ref = scipy.linalg.solve(A, B, assume_a="pos")
        # a backward-stable solve: residual at float64's rounding of ‖A‖‖X‖
        assert np.linalg.norm(B - A @ X) <= 1e-13 * np.linalg.norm(A, 2) * np.linalg.norm(X)
        assert np.linalg.norm(X - ref) <= 1e-14 * cond * np.linalg.norm(ref), cond


# --------------------------------------------------------------------------- #
# the grid
# --------------------------------------------------------------------------- #
def _relu_model() -> FeatureModel:
    return FeatureModel("relu", relu_features, relu_kernel, "explicit", None)


def test_classification_grid_matches_a_hand_computation(three_class):
    Xtr, ytr, Xte, yte = three_class
    models = {"relu": _relu_model()}
    res = classification_grid(models, Xtr, ytr, Xte, yte, widths=(16, 64), seeds=(0, 3), ridge=0.1)
    assert isinstance(res, ClassificationResult)
    X = np.vstack([Xtr, Xte])
    for j, w in enumerate((16, 64)):
        for k, s in enumerate((0, 3)):
            F = relu_features(X, w, s)
            Y = -np.ones((60, 3))
            Y[np.arange(60), ytr] = 1.0
            W = np.linalg.solve(F[:60].T @ F[:60] + 0.1 * np.eye(w), F[:60].T @ Y)
            acc = np.mean(np.argmax(F[60:] @ W, axis=1) == yte)
            assert res.result("relu", "ridge").test_accuracy[j, k] == pytest.approx(acc)
    K = relu_kernel(X)
    kacc = kernel_ridge_accuracy(K[:60, :60], K[60:, :60], ytr, yte, ridge=0.1)
    assert res.kernel_accuracy == {"relu": kacc}
    mean, std = res.accuracy("relu", "logistic", 64)
    r = res.result("relu", "logistic")
    assert mean == pytest.approx(r.test_accuracy[1].mean())
    assert std == pytest.approx(r.test_accuracy[1].std(ddof=1))
    assert res.feature_seconds.shape == (1, 2, 2) and np.all(res.feature_seconds >= 0)
    assert res.converged["ridge"].all() and res.converged["logistic"].all()
    d = json.loads(json.dumps(res.to_dict()))
    assert d["accuracy"]["ridge"]["relu"]["widths"] == [16, 64]
    assert d["kernel_ridge_accuracy"]["relu"] == kacc
    assert "exact kernel" in res.table("ridge") and "relu" in res.table("logistic", fmt="text")
    assert res.within_one_std("relu", "relu", "ridge", 16)


def test_classification_grid_records_unconverged_logistic_fits(three_class):
    Xtr, ytr, Xte, yte = three_class
    res = classification_grid(
        {"relu": _relu_model()}, Xtr, ytr, Xte, yte, widths=(32,), seeds=(0,),
        readouts=("logistic",), max_iter=1, kernel_limit=False,
    )  # fmt: skip
    assert not res.converged["logistic"].any()  # recorded, not warned (warnings are errors)
    assert res.kernel_accuracy == {} and res.readouts == ("logistic",)


def test_classification_grid_rejects_bad_input(three_class):
    Xtr, ytr, Xte, yte = three_class
    models = {"relu": _relu_model()}
    with pytest.raises(ValueError, match="readouts"):
        classification_grid(models, Xtr, ytr, Xte, yte, widths=(8,), readouts=("svm",))
    with pytest.raises(TypeError, match="FeatureModel"):
        classification_grid({"x": relu_features}, Xtr, ytr, Xte, yte, widths=(8,))
    with pytest.raises(ValueError, match="columns"):
        classification_grid(models, Xtr, ytr, Xte[:, :3], yte, widths=(8,))
    bad = FeatureModel("bad", lambda X, w, s: np.ones((X.shape[0], w + 1)), relu_kernel, "x", None)
    with pytest.raises(ValueError, match="expected"):
        classification_grid({"bad": bad}, Xtr, ytr, Xte, yte, widths=(8,), kernel_limit=False)
    res = classification_grid(models, Xtr, ytr, Xte, yte, widths=(8,), seeds=(0,))
    with pytest.raises(KeyError, match="no result"):
        res.result("relu", "hinge")
    with pytest.raises(ValueError, match="width 9"):
        res.accuracy("relu", "ridge", 9)


def test_classification_grid_in_parallel_is_the_serial_grid(three_class, models):
    """Tasks on two threads (one OpenMP and BLAS thread each) give the serial results."""
    Xtr, ytr, Xte, yte = three_class
    kw = dict(widths=(8, 32), seeds=(0, 1), ridge=0.05)
    a = classification_grid(models, Xtr, ytr, Xte, yte, n_jobs=1, **kw)
    b = classification_grid(models, Xtr, ytr, Xte, yte, n_jobs=2, **kw)
    for key, r in a.results.items():
        np.testing.assert_array_equal(b.results[key].test_accuracy, r.test_accuracy)
        np.testing.assert_array_equal(b.results[key].train_accuracy, r.train_accuracy)
    assert b.kernel_accuracy == a.kernel_accuracy and list(b.kernel_accuracy) == list(models)
    assert np.all(b.feature_seconds > 0)
    # the limits on their own (as a background worker computes them for the report), where
    # the explicit nets' kernels share one X Xᵀ (the DEQs' do not take one)
    takes = [_takes_gram(m.kernel) for m in models.values()]
    assert takes == [m.kind == "explicit" for m in models.values()] and any(takes)
    alone = kernel_limits({n: m.kernel for n, m in models.items()}, Xtr, ytr, Xte, yte, ridge=0.05)
    assert {n: acc for n, (acc, _) in alone.items()} == a.kernel_accuracy
    assert all(sec > 0 for _, sec in alone.values())
    with pytest.raises(TypeError, match="kernels must be a non-empty mapping"):
        kernel_limits({}, Xtr, ytr, Xte, yte)


def test_shared_explicit_features_are_each_nets_features(rng):
    """One first-layer product for nets drawn from the same seed: the same features, bit for bit."""
    X = rng.standard_normal((9, 7)) / 3.0
    nets = [
        df.explicit.ExplicitNet(["relu", "tanh"], tau0=1.0),
        df.explicit.ExplicitNet(["tanh"], tau0=1.0, input_skip=0.5),
        df.explicit.ExplicitNet(["lrelu", "relu", "tanh"], tau0=1.0, input_skip=(0.3, 0.0, 0.2)),
    ]
    maps = [explicit_features(net) for net in nets]
    shared = shared_explicit_features(maps, X, 24, 5)  # type: ignore[arg-type]
    for fn, net, (F, sec) in zip(maps, nets, shared):
        np.testing.assert_array_equal(F, fn(X, 24, 5))
        np.testing.assert_array_equal(F, net.forward(X, 24, seed=5).features / math.sqrt(24))
        assert sec >= 0


def test_paper_models_on_a_small_grid(three_class, models):
    """All six models run through the grid and beat chance by far on separable data."""
    Xtr, ytr, Xte, yte = three_class
    res = classification_grid(models, Xtr, ytr, Xte, yte, widths=(64,), seeds=(0, 1))
    assert res.models == NAMES
    for name in NAMES:
        for ro in ("logistic", "ridge"):
            assert res.accuracy(name, ro, 64)[0] > 0.6
        assert res.kernel_accuracy[name] > 0.6


# --------------------------------------------------------------------------- #
# inference timing
# --------------------------------------------------------------------------- #
def test_timed_explicit_pass_is_the_nets_forward(models, rng):
    X = rng.standard_normal((7, 9)) / 3.0
    for name in ("L-ReLU net (designed)", "H-tanh net (designed)"):
        net = models[name].model
        h = _explicit_hidden(net, X, _explicit_weights(net, 9, 40, 5))
        np.testing.assert_array_equal(h, net.forward(X, 40, seed=5).features)


def test_inference_timing(models, rng):
    X = rng.standard_normal((20, 9)) / 3.0
    deq, net = models["ReLU DEQ"].model, models["L-ReLU net (designed)"].model
    t = inference_timing(deq, net, X, 64, seed=2, repeats=2)
    ref = df.finite.forward(deq, X, 64, seed=2)
    assert t.deq_evaluations == ref.evaluations and t.deq_residual <= t.tol == ref.tol
    assert t.deq_seconds.shape == (2,) and np.all(t.deq_seconds > 0) and np.all(t.net_seconds > 0)
    assert t.deq_cpu_seconds.shape == (2,) and np.all(t.net_cpu_seconds >= 0)
    assert t.speedup == pytest.approx(t.deq_per_sample / t.net_per_sample)
    assert t.deq_per_sample == pytest.approx(t.deq_seconds.min() / 20)
    assert t.net_layers == 2 and t.dtype == "float64"
    assert json.loads(json.dumps(t.to_dict()))["n"] == 20
    t32 = inference_timing(deq, net, X, 64, repeats=1, dtype=np.float32, tol=1e-5)
    assert t32.dtype == "float32" and t32.tol == 1e-5
    with pytest.raises(TypeError, match="ExplicitNet"):
        inference_timing(deq, deq, X, 64)
