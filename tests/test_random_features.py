"""Tests of deqfast.random_features: read-outs, the kernel limit, the experiment driver."""

from __future__ import annotations

import math

import numpy as np
import pytest

import deqfast as df
from deqfast.random_features import (
    RandomFeatureResult,
    accuracy_table,
    deq_features,
    explicit_features,
    fit_readout,
    kernel_ridge_accuracy,
    random_feature_accuracy,
    relu_features,
    relu_kernel,
)


@pytest.fixture
def blobs(rng):
    """Two well-separated Gaussian classes, split in train and test."""
    p = 20
    mu = np.zeros(p)
    mu[0] = 3.0
    X = rng.standard_normal((120, p)) / np.sqrt(p)
    y = np.repeat([0, 1], 60)
    X[y == 1] += mu / np.sqrt(p)
    X[y == 0] -= mu / np.sqrt(p)
    idx = rng.permutation(120)
    tr, te = idx[:80], idx[80:]
    return X[tr], y[tr], X[te], y[te]


def test_relu_kernel_is_the_limit_of_relu_features(rng):
    X = rng.standard_normal((15, 6)) / np.sqrt(6)
    K = relu_kernel(X)
    F = relu_features(X, 200_000, seed=1)
    np.testing.assert_allclose(F @ F.T, K, atol=0.01 * np.abs(K).max())
    # closed form at θ = 0: ‖x‖²/2
    np.testing.assert_allclose(np.diag(K), 0.5 * np.sum(X**2, axis=1))
    Y = rng.standard_normal((4, 6))
    assert relu_kernel(X, Y).shape == (15, 4)
    with pytest.raises(ValueError, match="columns"):
        relu_kernel(X, Y[:, :3])


def test_ridge_readout_matches_normal_equations(rng):
    F = rng.standard_normal((30, 8))
    y = rng.integers(0, 3, size=30)
    predict = fit_readout(F, y, readout="ridge", ridge=0.5)
    Y = -np.ones((30, 3))
    Y[np.arange(30), y] = 1
    W = np.linalg.solve(F.T @ F + 0.5 * np.eye(8), F.T @ Y)
    Ft = rng.standard_normal((10, 8))
    np.testing.assert_array_equal(predict(Ft), np.argmax(Ft @ W, axis=1))
    # the dual form (width > n) gives the same predictor
    G = rng.standard_normal((12, 40))
    yy = np.arange(12) % 2
    Wp = np.linalg.solve(G.T @ G + 0.1 * np.eye(40), G.T @ (2 * np.eye(2)[yy] - 1))
    Gt = rng.standard_normal((9, 40))
    np.testing.assert_array_equal(fit_readout(G, yy, ridge=0.1)(Gt), np.argmax(Gt @ Wp, axis=1))


def test_logistic_readout_separates_separable_data(blobs):
    Xtr, ytr, Xte, yte = blobs
    predict = fit_readout(Xtr, ytr, readout="logistic", ridge=1e-3)
    assert np.mean(predict(Xtr) == ytr) == 1.0
    assert np.mean(predict(Xte) == yte) > 0.9
    with pytest.raises(ValueError, match="readout"):
        fit_readout(Xtr, ytr, readout="svm")
    with pytest.raises(ValueError, match="integer class codes"):
        fit_readout(Xtr, ytr.astype(float))
    with pytest.raises(ValueError, match="columns"):
        fit_readout(Xtr, ytr)(Xte[:, :3])


def test_random_features_tend_to_kernel_ridge(blobs):
    """With features h/√m, ridge on random features → kernel ridge with the exact kernel."""
    Xtr, ytr, Xte, yte = blobs
    lam = 1e-2
    exact = kernel_ridge_accuracy(relu_kernel(Xtr), relu_kernel(Xte, Xtr), ytr, yte, ridge=lam)
    res = random_feature_accuracy(
        relu_features, Xtr, ytr, Xte, yte, widths=[8, 20_000], seeds=[0, 1], ridge=lam, name="relu"
    )
    assert isinstance(res, RandomFeatureResult)
    assert res.test_accuracy.shape == (2, 2)
    assert abs(res.mean[1] - exact) <= 0.05 + 1e-12
    assert exact > 0.9
    assert res.std.shape == (2,) and np.all(res.std >= 0)
    d = res.to_dict()
    assert d["widths"] == [8, 20_000] and len(d["test_accuracy"][0]) == 2
    assert "relu" in repr(res) and "±" in str(res)


def test_feature_fn_is_called_once_per_width_and_seed_on_stacked_data(blobs):
    Xtr, ytr, Xte, yte = blobs
    calls = []

    def fn(X, width, seed):
        calls.append((X.shape, width, seed))
        return relu_features(X, width, seed)

    random_feature_accuracy(fn, Xtr, ytr, Xte, yte, [4, 6], [3, 5], readout="logistic")
    assert calls == [((120, 20), w, s) for w in (4, 6) for s in (3, 5)]


def test_random_feature_accuracy_validation(blobs):
    Xtr, ytr, Xte, yte = blobs
    with pytest.raises(TypeError, match="callable"):
        random_feature_accuracy("relu", Xtr, ytr, Xte, yte, [4])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Xte"):
        random_feature_accuracy(relu_features, Xtr, ytr, Xte[:, :3], yte, [4])
    with pytest.raises(ValueError, match="ytr"):
        random_feature_accuracy(relu_features, Xtr, ytr[:5], Xte, yte, [4])
    with pytest.raises(ValueError, match="2 classes"):
        random_feature_accuracy(relu_features, Xtr, np.zeros_like(ytr), Xte, yte, [4])
    with pytest.raises(ValueError, match="ridge"):
        random_feature_accuracy(relu_features, Xtr, ytr, Xte, yte, [4], ridge=0.0)
    with pytest.raises(ValueError, match="rows"):
        random_feature_accuracy(lambda X, w, s: np.ones((3, w)), Xtr, ytr, Xte, yte, [4])
    with pytest.raises(ValueError, match="finite"):
        random_feature_accuracy(
            lambda X, w, s: np.full((len(X), w), np.nan), Xtr, ytr, Xte, yte, [4]
        )
    with pytest.raises(ValueError, match="at least one"):
        random_feature_accuracy(relu_features, Xtr, ytr, Xte, yte, [])


def test_kernel_ridge_accuracy_validation(rng):
    K = np.eye(4)
    with pytest.raises(ValueError, match="square"):
        kernel_ridge_accuracy(np.ones((4, 3)), np.ones((2, 3)), [0, 1, 0, 1], [0, 1])
    with pytest.raises(ValueError, match="columns"):
        kernel_ridge_accuracy(K, np.ones((2, 3)), [0, 1, 0, 1], [0, 1])
    with pytest.raises(ValueError, match="yte"):
        kernel_ridge_accuracy(K, np.ones((2, 4)), [0, 1, 0, 1], [0])
    # labels of any kind, encoded jointly
    assert kernel_ridge_accuracy(K, K[:2], ["a", "b", "a", "b"], ["a", "b"]) == 1.0


def test_deq_and_explicit_feature_maps(blobs):
    pytest.importorskip("deqfast.finite")
    from deqfast.explicit import ExplicitNet

    Xtr, ytr, Xte, yte = blobs
    X = np.vstack([Xtr, Xte])
    tau0 = float(np.sqrt(np.mean(np.sum(X**2, axis=1))))
    deq = df.DEQ("relu", sigma_a2=0.2, tau0=tau0)
    F = deq_features(deq)(X, 64, 0)
    assert F.shape == (120, 64)
    from deqfast.finite import forward

    np.testing.assert_allclose(F, forward(deq, X, 64, seed=0).features / math.sqrt(64))
    net = ExplicitNet(["relu", "relu"], tau0=tau0)
    H = explicit_features(net)(X, 32, 1)
    np.testing.assert_allclose(H, net.forward(X, 32, seed=1).features / math.sqrt(32))
    r = random_feature_accuracy(deq_features(deq), Xtr, ytr, Xte, yte, [128], [0], name="deq")
    assert r.mean[0] > 0.9


def test_accuracy_table(blobs):
    Xtr, ytr, Xte, yte = blobs
    r = random_feature_accuracy(relu_features, Xtr, ytr, Xte, yte, [4, 16], [0, 1], name="relu")
    md = accuracy_table({"relu": r}, kernel_accuracy={"relu": 0.975, "other": 0.5})
    lines = md.splitlines()
    assert lines[0] == "| model | m = 4 | m = 16 | exact kernel (m = ∞) |"
    assert lines[2].startswith("| relu | ") and lines[2].endswith("| 97.5 |")
    assert f"{100 * r.mean[1]:.1f} ± {100 * r.std[1]:.1f}" in lines[2]
    assert lines[3] == "| other | – | – | 50.0 |"
    text = accuracy_table({"relu": r}, fmt="text")
    assert "m = 16" in text and "|" not in text
