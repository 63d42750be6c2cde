"""scikit-learn estimators (deqfast.estimators): conventions, predictions, gradient flow."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

import deqfast as df
import reference as R
from deqfast import estimators as estimators_module
from deqfast.estimators import (
    DEQKernelClassifier,
    DEQKernelRegressor,
    DEQRandomFeatures,
    ExplicitKernelClassifier,
    ExplicitKernelRegressor,
    ExplicitRandomFeatures,
)

# The explicit-net estimators are checked with tau0 fixed (one design for all checks) and
# the lrelu family, which matches the ReLU DEQ's CK exactly (docs/theory.md §5).
_EXPLICIT = dict(tau0=1.0, kernel="ck", family="lrelu")
ESTIMATORS = [
    DEQKernelRegressor(),
    DEQKernelRegressor(kernel="ck", t=1e4),
    DEQKernelClassifier(),
    ExplicitKernelRegressor(**_EXPLICIT),
    ExplicitKernelClassifier(**_EXPLICIT),
    DEQRandomFeatures(width=32),
    ExplicitRandomFeatures(width=32, tau0=1.0, family="lrelu"),
]

_ZERO_ROW = (
    "the check casts uniform data to integers, which makes an all-zero row; the exact "
    "infinite-width kernels are not defined at zero input variance and raise ValueError "
    "(test_dtypes checks the dtypes on data without zero rows)"
)


def _expected_failed(estimator):
    if isinstance(estimator, (DEQRandomFeatures, ExplicitRandomFeatures)):
        return {}  # finite-width features are defined at x = 0
    return {"check_estimators_dtypes": _ZERO_ROW}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed)
def test_sklearn_conventions(estimator, check):
    check(estimator)


@pytest.mark.parametrize("cls", [DEQKernelRegressor, ExplicitKernelRegressor])
def test_dtypes(cls, rng):
    """float32 and integer inputs give the float64 predictions (no zero rows here)."""
    X = rng.integers(1, 4, size=(30, 4))
    y = rng.standard_normal(30)
    est = cls(**(_EXPLICIT if cls is ExplicitKernelRegressor else {}))
    want = est.fit(X.astype(np.float64), y).predict(X.astype(np.float64))
    for dt in (np.float32, np.int64, np.int32):
        np.testing.assert_allclose(est.fit(X.astype(dt), y).predict(X.astype(dt)), want, rtol=1e-12)


# --------------------------------------------------------------------------- #
# predictions against independent computations
# --------------------------------------------------------------------------- #
def _mixture(rng, n_train=60, n_test=25, p=40):
    smp = R.paper_mixture_sample(p, n_train + n_test, rng)
    X = np.asarray(smp["X"])
    perm = rng.permutation(X.shape[0])
    return X[perm[:n_train]], X[perm[n_train:]]


@pytest.mark.parametrize("kernel", ["ck", "ntk"])
def test_kernel_regression_matches_numpy_solve(kernel, rng):
    """t = inf: K(x, X)(K + λI)⁻¹ y with the ReLU DEQ kernels of tests/reference.py."""
    Xtr, Xte = _mixture(rng)
    Y = rng.standard_normal((Xtr.shape[0], 2))
    sa2, ridge = 0.3, 1e-2
    tau0 = math.sqrt(np.mean(np.sum(Xtr**2, axis=1)))  # tau0="auto"
    relu = R.get("relu")
    eq = R.equilibrium(relu.phi, relu.dphi, relu.kinks, sa2, 1 - sa2, tau0)
    ker = R.relu_deq_kernels(np.vstack([Xtr, Xte]), sa2, 1 - sa2, eq["center"])
    K = ker["G" if kernel == "ck" else "K"]
    n = Xtr.shape[0]
    alpha = np.linalg.solve(K[:n, :n] + ridge * np.eye(n), Y)
    est = DEQKernelRegressor("relu", sigma_a2=sa2, kernel=kernel, ridge=ridge).fit(Xtr, Y)
    assert est.tau0_ == pytest.approx(tau0, rel=1e-14)
    assert est.solver_ == "dense" and est.cg_result_ is None
    np.testing.assert_allclose(est.predict(Xte), K[n:, :n] @ alpha, rtol=1e-8, atol=1e-10)
    # single target: 1-D in, 1-D out
    est1 = DEQKernelRegressor("relu", sigma_a2=sa2, kernel=kernel, ridge=ridge).fit(Xtr, Y[:, 0])
    assert est1.predict(Xte).shape == (Xte.shape[0],)
    np.testing.assert_allclose(est1.predict(Xte), K[n:, :n] @ alpha[:, 0], rtol=1e-8, atol=1e-10)


def test_classifier_matches_numpy_solve(rng):
    """One-vs-all ±1 targets, argmax of K(x, X)(K + λI)⁻¹ Y; string labels kept."""
    Xtr, Xte = _mixture(rng)
    labels = np.array(["a", "b", "c"])[rng.integers(0, 3, Xtr.shape[0])]
    deq = df.DEQ("relu", sigma_a2=0.2, tau0=1.0)
    K, Kx = deq.ntk(Xtr), deq.ntk(Xte, Xtr)
    Y = -np.ones((Xtr.shape[0], 3))
    Y[np.arange(Xtr.shape[0]), np.searchsorted(["a", "b", "c"], labels)] = 1.0
    S = Kx @ np.linalg.solve(K + 1e-3 * np.eye(K.shape[0]), Y)
    clf = DEQKernelClassifier("relu", tau0=1.0, ridge=1e-3).fit(Xtr, labels)
    np.testing.assert_allclose(clf.decision_function(Xte), S, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(clf.predict(Xte), np.array(["a", "b", "c"])[S.argmax(1)])
    # two classes: one score column, positive means classes_[1]
    two = labels != "c"
    clf2 = DEQKernelClassifier("relu", tau0=1.0, ridge=1e-3).fit(Xtr[two], labels[two])
    y2 = np.where(labels[two] == "b", 1.0, -1.0)
    s2 = deq.ntk(Xte, Xtr[two]) @ np.linalg.solve(
        K[np.ix_(two, two)] + 1e-3 * np.eye(two.sum()), y2
    )
    np.testing.assert_allclose(clf2.decision_function(Xte), s2, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(clf2.predict(Xte), np.where(s2 > 0, "b", "a"))


def test_explicit_estimator_uses_designed_net(rng):
    Xtr, Xte = _mixture(rng)
    y = rng.standard_normal(Xtr.shape[0])
    est = ExplicitKernelRegressor("relu", sigma_a2=0.2, kernel="ck", family="lrelu", ridge=1e-2)
    est.fit(Xtr, y)
    res = df.design_explicit(
        df.DEQ("relu", sigma_a2=0.2, tau0=est.tau0_), kernel="ck", family="lrelu"
    )
    assert est.design_.exact is not None and est.model_ == res.net  # a matched one exists
    K = res.net.ck(Xtr)
    want = res.net.ck(Xte, Xtr) @ np.linalg.solve(K + 1e-2 * np.eye(K.shape[0]), y)
    np.testing.assert_allclose(est.predict(Xte), want, rtol=1e-8, atol=1e-10)
    # the designed net's kernel is the DEQ's (docs/theory.md §5): so are the predictions, nearly
    deq_pred = DEQKernelRegressor("relu", kernel="ck", ridge=1e-2).fit(Xtr, y).predict(Xte)
    assert np.abs(deq_pred - want).max() < 0.05 * np.abs(want).max()


@pytest.mark.parametrize("ridge", [0.0, 0.05])
def test_finite_time_matches_gradient_flow(ridge, rng):
    """Finite t: the closed form against solve_ivp of the gradient flow.

    Network outputs on the training and the test samples evolve as
    ``d f(·)/dt = −(η/N) [Θ(·, X) (f(X) − Y) + λ a]`` with ``f(·) = Θ(·, X) a`` and
    ``da/dt = −(η/N) ((Θ + λI) a − Y)``; with λ = 0 it is integrated on the outputs
    alone, ``f_0 = 0`` (neural-tangents' convention, N = Y.size).
    """
    Xtr, Xte = _mixture(rng, n_train=24, n_test=10, p=16)
    Y = rng.standard_normal((Xtr.shape[0], 2))
    N, eta, t = Y.size, 0.7, 300.0
    deq = df.DEQ("tanh", sigma_a2=0.25, tau0=1.0)
    K, Kx = deq.ntk(Xtr), deq.ntk(Xte, Xtr)
    n, k = Y.shape

    if ridge == 0:

        def rhs(_, z):
            ftr = z[: n * k].reshape(n, k)
            g = ftr - Y
            return -(eta / N) * np.concatenate([(K @ g).ravel(), (Kx @ g).ravel()])

        z0 = np.zeros((n + Xte.shape[0]) * k)
    else:

        def rhs(_, a):
            A = a.reshape(n, k)
            return (-(eta / N) * ((K + ridge * np.eye(n)) @ A - Y)).ravel()

        z0 = np.zeros(n * k)
    sol = solve_ivp(rhs, (0.0, t), z0, method="DOP853", rtol=1e-11, atol=1e-13)
    assert sol.success
    end = sol.y[:, -1]
    want = end[n * k :].reshape(-1, k) if ridge == 0 else Kx @ end.reshape(n, k)
    est = DEQKernelRegressor(
        "tanh", sigma_a2=0.25, tau0=1.0, kernel="ntk", ridge=ridge, t=t, learning_rate=eta
    ).fit(Xtr, Y)
    np.testing.assert_allclose(est.predict(Xte), want, rtol=1e-7, atol=1e-9)
    # long training reaches kernel regression; t = 0 is the untrained mean output 0
    est.set_params(t=1e9, ridge=max(ridge, 1e-3)).fit(Xtr, Y)
    inf = DEQKernelRegressor("tanh", sigma_a2=0.25, tau0=1.0, ridge=max(ridge, 1e-3)).fit(Xtr, Y)
    np.testing.assert_allclose(est.predict(Xte), inf.predict(Xte), rtol=1e-7, atol=1e-9)
    assert np.all(est.set_params(t=0.0).fit(Xtr, Y).predict(Xte) == 0.0)


# --------------------------------------------------------------------------- #
# model selection, pipelines, features
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def digits():
    return df.datasets.load_digits((3, 5, 8), n_per_class=30, seed=0)


def test_grid_search_over_sigma_a2_and_activation(digits):
    grid = {"sigma_a2": [0.1, 0.4], "activation": ["relu", "tanh"]}
    cv = KFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(DEQKernelClassifier(kernel="ntk"), grid, cv=cv).fit(
        digits.X, digits.labels
    )
    manual = {
        (a, s): cross_val_score(
            DEQKernelClassifier(a, sigma_a2=s, kernel="ntk"), digits.X, digits.labels, cv=cv
        ).mean()
        for a in grid["activation"]
        for s in grid["sigma_a2"]
    }
    best = max(manual, key=manual.get)
    assert search.best_score_ == pytest.approx(manual[best], abs=1e-12)
    assert manual[best] > 0.8  # three digit classes, chance is 1/3
    assert (search.best_params_["activation"], search.best_params_["sigma_a2"]) in {
        k for k, v in manual.items() if v == manual[best]
    }


def test_random_features_are_the_equilibrium(digits):
    """transform returns φ(z*)/√m with z* = (σ_a/√m) Ã φ(z*) + σ_b B x for the drawn weights."""
    m = 64
    tr = DEQRandomFeatures(width=m, activation="tanh", sigma_a2=0.3, random_state=3)
    F = tr.fit_transform(digits.X)
    assert F.shape == (digits.n, m)
    A, B, _ = df.finite.draw_weights(m, digits.p, seed=tr.seed_)
    phi = tr.model_.phi
    Phi = F * math.sqrt(m)  # rows φ(z*(x_i))
    Z = math.sqrt(0.3 / m) * Phi @ A.T + math.sqrt(0.7) * digits.X @ B.T
    np.testing.assert_allclose(phi(Z), Phi, atol=1e-8)
    np.testing.assert_array_equal(tr.transform(digits.X), F)  # the same weights again
    assert list(tr.get_feature_names_out()[:2]) == ["deqrandomfeatures0", "deqrandomfeatures1"]


def test_explicit_random_features_are_the_forward_pass(digits):
    tr = ExplicitRandomFeatures(width=48, tau0=1.0, family="lrelu", random_state=1)
    F = tr.fit_transform(digits.X)
    net = tr.design_.net
    h = digits.X
    rng = np.random.default_rng(tr.seed_)
    for k, layer in enumerate(net.layers):  # the forward pass written out (docs/theory.md §5)
        W = rng.standard_normal((h.shape[1], 48)) / (1.0 if k == 0 else math.sqrt(h.shape[1]))
        h = layer.activation(h @ W)
    np.testing.assert_allclose(F, h / math.sqrt(48), rtol=1e-12, atol=1e-14)


def test_pipeline_and_calibration(digits):
    pipe = make_pipeline(DEQRandomFeatures(width=64, random_state=0), LogisticRegression())
    assert cross_val_score(pipe, digits.X, digits.labels, cv=3).mean() > 0.8
    cal = CalibratedClassifierCV(DEQKernelClassifier(), cv=3).fit(digits.X, digits.labels)
    P = cal.predict_proba(digits.X)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    assert not hasattr(DEQKernelClassifier(), "predict_proba")


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (dict(kernel="nngp"), "kernel"),
        (dict(trained="input"), "trained"),
        (dict(t=-1.0), "t must"),
        (dict(ridge=-1.0), "ridge"),
        (dict(tau0=-2.0), "tau0"),
        (dict(tau0="mean"), "tau0"),
        (dict(solver="lu"), "solver"),
        (dict(solver="cg", t=5.0), "finite t"),
        (dict(learning_rate=0.0), "learning_rate"),
    ],
)
def test_bad_parameters(params, match, rng):
    X = rng.standard_normal((10, 3))
    with pytest.raises(ValueError, match=match):
        DEQKernelRegressor(**params).fit(X, rng.standard_normal(10))


def test_explicit_cg_and_family_errors(rng):
    X = rng.standard_normal((10, 3))
    with pytest.raises(ValueError, match="DEQ estimators"):
        ExplicitKernelRegressor(solver="cg", **_EXPLICIT).fit(X, rng.standard_normal(10))
    with pytest.raises(ValueError, match="family"):
        ExplicitKernelRegressor(tau0=1.0, family="spline").fit(X, rng.standard_normal(10))
    with pytest.raises(ValueError, match="2 classes"):
        DEQKernelClassifier().fit(X, np.zeros(10))


def test_docstring_examples():
    result = doctest.testmod(estimators_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
