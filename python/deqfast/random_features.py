"""Random-feature classification: the authors' training experiment (THEORY.md §5).

The hidden weights of a network are drawn at random and frozen; only a linear
read-out on the last hidden layer is trained.  With features scaled as
``Φ = h / √m`` (so that ``ΦΦᵀ`` is the network's empirical conjugate kernel),
the ridge read-out

    W = argmin ‖Φ_train W − Y‖_F² + λ ‖W‖_F²,     Y = 2·onehot − 1

tends, as the width ``m → ∞``, to kernel ridge regression with the exact CK,
``f(x) = K(x, X_train) (K_train + λ I)⁻¹ Y`` — which :func:`kernel_ridge_accuracy`
computes directly (no intercept in either, so the limit is exact).  The
multinomial logistic read-out (L-BFGS, an unpenalised intercept and
``(λ/2)‖W‖_F²``) is the other classical choice.

:func:`random_feature_accuracy` is generic in the feature map
``feature_fn(X, width, seed) -> (n, width)``; the factories
:func:`deq_features` (finite-width DEQ equilibrium ``φ(z*)``),
:func:`explicit_features` (an :class:`~deqfast.explicit.ExplicitNet`, e.g. a
designed one) and :func:`relu_features` (plain one-layer ReLU, the baseline)
provide the maps of the paper's comparison, and :func:`relu_kernel` the
baseline's infinite-width kernel.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.linalg
import scipy.optimize

from deqfast._validation import (
    as_data_matrix,
    as_finite_array,
    as_labels,
    check_choice,
    check_integer,
    check_positive,
)

__all__ = [
    "RandomFeatureResult",
    "accuracy_table",
    "deq_features",
    "explicit_features",
    "fit_readout",
    "kernel_ridge_accuracy",
    "random_feature_accuracy",
    "relu_features",
    "relu_kernel",
]

FeatureFn = Callable[[np.ndarray, int, int], np.ndarray]
_READOUTS = ("ridge", "logistic")


# --------------------------------------------------------------------------- #
# Feature maps
# --------------------------------------------------------------------------- #
def relu_features(X: Any, width: int, seed: Any = None) -> np.ndarray:
    """Plain one-layer ReLU random features ``max(X W, 0)/√m``, ``W`` ``(p, m)`` standard normal.

    The baseline of the paper's comparison (not centred); its infinite-width
    kernel is :func:`relu_kernel`.
    """
    from deqfast._validation import as_rng

    Xm = as_data_matrix(X, "X")
    m = check_integer(width, "width", min_value=1)
    W = as_rng(seed, "seed").standard_normal((Xm.shape[1], m))
    return np.maximum(Xm @ W, 0.0) / math.sqrt(m)


def relu_kernel(X: Any, Y: Any = None) -> np.ndarray:
    """Infinite-width kernel of :func:`relu_features`: ``E[relu(wᵀx) relu(wᵀy)]``.

    The arc-cosine kernel ``‖x‖‖y‖ (sin θ + (π − θ) cos θ) / (2π)``, ``θ`` the
    angle between ``x`` and ``y``.  Shape ``(n, n)``, or ``(n, n2)`` with ``Y``.
    """
    Xm = as_data_matrix(X, "X")
    Ym = Xm if Y is None else as_data_matrix(Y, "Y")
    if Ym.shape[1] != Xm.shape[1]:
        raise ValueError(f"Y must have p = {Xm.shape[1]} columns like X; got shape {Ym.shape}")
    nx = np.sqrt(np.einsum("ij,ij->i", Xm, Xm))
    ny = np.sqrt(np.einsum("ij,ij->i", Ym, Ym))
    G = Xm @ Ym.T
    denom = np.outer(nx, ny)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(denom > 0, G / np.where(denom > 0, denom, 1.0), 1.0)
    cos = np.clip(cos, -1.0, 1.0)
    theta = np.arccos(cos)
    K = denom * (np.sin(theta) + (np.pi - theta) * cos) / (2 * np.pi)
    if Y is None:
        K = 0.5 * (K + K.T)
    return K


def deq_features(deq: Any, **forward_options: Any) -> FeatureFn:
    """Feature map of a finite-width DEQ: ``φ(z*(x))/√m`` (THEORY.md §3).

    Uses :func:`deqfast.finite.forward` (``forward_options`` are passed on,
    e.g. ``tol=1e-6``); the weights are drawn from ``seed``.
    """
    from deqfast.finite import forward

    def fn(X: np.ndarray, width: int, seed: Any) -> np.ndarray:
        res = forward(deq, X, width, seed=seed, **forward_options)
        return np.asarray(res.features, dtype=np.float64) / math.sqrt(width)

    fn.__name__ = f"deq_features({deq!r})"
    return fn


def explicit_features(net: Any) -> FeatureFn:
    """Feature map of an explicit net (e.g. ``design_explicit(...).net``): ``h_L/√m``.

    Every hidden layer gets the width ``m``; the weights are drawn from ``seed``
    by ``net.forward``.
    """

    def fn(X: np.ndarray, width: int, seed: Any) -> np.ndarray:
        h = net.forward(X, width, seed=seed).features
        return np.asarray(h, dtype=np.float64) / math.sqrt(width)

    fn.__name__ = f"explicit_features({net!r})"
    return fn


# --------------------------------------------------------------------------- #
# Read-outs
# --------------------------------------------------------------------------- #
def _targets(codes: np.ndarray, K: int) -> np.ndarray:
    Y = -np.ones((codes.shape[0], K))
    Y[np.arange(codes.shape[0]), codes] = 1.0
    return Y


def _ridge_fit(F: np.ndarray, Y: np.ndarray, lam: float) -> np.ndarray:
    n, m = F.shape
    if m <= n:
        A = F.T @ F
        A[np.diag_indices_from(A)] += lam
        return scipy.linalg.solve(A, F.T @ Y, assume_a="pos")
    A = F @ F.T
    A[np.diag_indices_from(A)] += lam
    return F.T @ scipy.linalg.solve(A, Y, assume_a="pos")


def _logistic_fit(
    F: np.ndarray, codes: np.ndarray, K: int, lam: float, max_iter: int
) -> tuple[np.ndarray, np.ndarray]:
    n, m = F.shape
    onehot = np.zeros((n, K))
    onehot[np.arange(n), codes] = 1.0

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W = theta[: m * K].reshape(m, K)
        b = theta[m * K :]
        Z = F @ W + b
        Z -= Z.max(axis=1, keepdims=True)
        logsum = np.log(np.exp(Z).sum(axis=1))
        P = np.exp(Z - logsum[:, None])
        val = float(-(onehot * (Z - logsum[:, None])).sum() + 0.5 * lam * np.vdot(W, W))
        R = P - onehot
        gW = F.T @ R + lam * W
        gb = R.sum(axis=0)
        return val, np.concatenate([gW.ravel(), gb])

    theta0 = np.zeros(m * K + K)
    res = scipy.optimize.minimize(
        loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter, "gtol": 1e-8}
    )
    theta = res.x
    return theta[: m * K].reshape(m, K), theta[m * K :]


def fit_readout(
    F_train: Any,
    y_train: Any,
    *,
    readout: str = "ridge",
    ridge: float = 1e-2,
    max_iter: int = 500,
) -> Callable[[Any], np.ndarray]:
    """Train a linear read-out on fixed features and return ``predict(F) -> class codes``.

    ``readout="ridge"``: ``W = argmin ‖F W − Y‖² + λ‖W‖²`` with ``Y = 2·onehot − 1``
    (closed form, primal or dual whichever is smaller); ``"logistic"``:
    multinomial cross-entropy ``+ (λ/2)‖W‖²`` with an unpenalised intercept, by
    L-BFGS (``max_iter`` iterations at most).  Labels must be codes ``0..K-1``.
    """
    F = as_data_matrix(F_train, "F_train")
    codes = np.asarray(y_train)
    if codes.shape != (F.shape[0],) or codes.dtype.kind not in "iu":
        raise ValueError(
            f"y_train must be integer class codes of shape ({F.shape[0]},); got "
            f"{codes.dtype} array of shape {codes.shape}"
        )
    K = max(int(codes.max()) + 1, 2)
    check_choice(readout, "readout", _READOUTS)
    lam = check_positive(ridge, "ridge")
    if readout == "ridge":
        W = _ridge_fit(F, _targets(codes, K), lam)
        b = np.zeros(K)
    else:
        W, b = _logistic_fit(F, codes, K, lam, check_integer(max_iter, "max_iter", min_value=1))

    def predict(Fx: Any) -> np.ndarray:
        Fm = as_data_matrix(Fx, "F")
        if Fm.shape[1] != W.shape[0]:
            raise ValueError(f"F must have {W.shape[0]} columns; got shape {Fm.shape}")
        return np.argmax(Fm @ W + b, axis=1)

    return predict


# --------------------------------------------------------------------------- #
# Experiments
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class RandomFeatureResult:
    """Test accuracies of a random-feature model over widths and seeds.

    Attributes
    ----------
    widths : tuple of int
    seeds : tuple of int
    test_accuracy : ndarray, shape (len(widths), len(seeds))
        Fraction of correctly classified test samples.
    train_accuracy : ndarray, shape (len(widths), len(seeds))
    readout : str
    ridge : float
    name : str
    """

    widths: tuple[int, ...]
    seeds: tuple[int, ...]
    test_accuracy: np.ndarray
    train_accuracy: np.ndarray
    readout: str
    ridge: float
    name: str = ""

    @property
    def mean(self) -> np.ndarray:
        """Mean test accuracy per width."""
        return self.test_accuracy.mean(axis=1)

    @property
    def std(self) -> np.ndarray:
        """Standard deviation (``ddof=1``; 0 for a single seed) of the test accuracy per width."""
        if self.test_accuracy.shape[1] < 2:
            return np.zeros(len(self.widths))
        return self.test_accuracy.std(axis=1, ddof=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "name": self.name,
            "widths": list(self.widths),
            "seeds": list(self.seeds),
            "readout": self.readout,
            "ridge": self.ridge,
            "test_accuracy": self.test_accuracy.tolist(),
            "train_accuracy": self.train_accuracy.tolist(),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }

    def table(self) -> str:
        """Plain-text table: width, mean ± std test accuracy (%), train accuracy (%)."""
        lines = [f"{'width':>6}  {'test accuracy (%)':>18}  {'train (%)':>9}"]
        for i, w in enumerate(self.widths):
            lines.append(
                f"{w:>6}  {100 * self.mean[i]:>10.2f} ± {100 * self.std[i]:<5.2f}  "
                f"{100 * self.train_accuracy[i].mean():>9.2f}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        head = f"{self.name or 'random features'}: {self.readout} read-out, λ = {self.ridge:g}, "
        return head + f"{len(self.seeds)} seeds\n" + self.table()

    def __repr__(self) -> str:
        acc = ", ".join(f"{w}: {100 * m:.1f}%" for w, m in zip(self.widths, self.mean))
        return (
            f"RandomFeatureResult(name={self.name!r}, readout={self.readout!r}, "
            f"ridge={self.ridge:g}, seeds={len(self.seeds)}, mean test accuracy {{{acc}}})"
        )


def _encode(ytr: Any, yte: Any, ntr: int, nte: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(ytr)
    b = np.asarray(yte)
    if a.ndim != 1 or a.shape[0] != ntr:
        raise ValueError(f"ytr must be 1-D with {ntr} entries; got shape {a.shape}")
    if b.ndim != 1 or b.shape[0] != nte:
        raise ValueError(f"yte must be 1-D with {nte} entries; got shape {b.shape}")
    codes, _ = as_labels(np.concatenate([a, b]), ntr + nte, "labels")
    ctr, cte = codes[:ntr], codes[ntr:]
    if np.unique(ctr).size < 2:
        raise ValueError("ytr must contain at least 2 classes")
    return ctr, cte


def random_feature_accuracy(
    feature_fn: FeatureFn,
    Xtr: Any,
    ytr: Any,
    Xte: Any,
    yte: Any,
    widths: Sequence[int],
    seeds: Sequence[int] = (0, 1, 2),
    *,
    readout: str = "ridge",
    ridge: float = 1e-2,
    max_iter: int = 500,
    name: str = "",
    progress: bool = False,
) -> RandomFeatureResult:
    """Test accuracy of random features + trained linear read-out over widths and seeds.

    Parameters
    ----------
    feature_fn : callable ``(X, width, seed) -> ndarray (n, width)``
        The random feature map (e.g. :func:`deq_features`); it is called once
        per ``(width, seed)`` on the stacked ``[Xtr; Xte]`` so that training and
        test samples see the same random weights.  Scale features so that
        ``FFᵀ`` is the empirical kernel (``h/√m``) for ``ridge`` to mean the same
        as in :func:`kernel_ridge_accuracy`.
    Xtr, ytr, Xte, yte
        Training and test data (rows are samples) and labels (any kind;
        encoded jointly).
    widths : sequence of int
        Widths ``m``.
    seeds : sequence of int
        One independent draw of the random weights per seed.
    readout : {"ridge", "logistic"}
        See :func:`fit_readout`.
    ridge : float
        Regularisation ``λ > 0``.
    max_iter : int
        L-BFGS iterations for the logistic read-out.
    name : str
        Stored in the result.
    progress : bool
        Show a tqdm progress bar over the ``(width, seed)`` pairs.

    Returns
    -------
    RandomFeatureResult
    """
    A = as_data_matrix(Xtr, "Xtr")
    B = as_data_matrix(Xte, "Xte")
    if B.shape[1] != A.shape[1]:
        raise ValueError(f"Xte must have p = {A.shape[1]} columns like Xtr; got shape {B.shape}")
    ctr, cte = _encode(ytr, yte, A.shape[0], B.shape[0])
    if not callable(feature_fn):
        raise TypeError(f"feature_fn must be callable; got {type(feature_fn).__name__}")
    ws = tuple(check_integer(w, "widths", min_value=1) for w in widths)
    ss = tuple(check_integer(s, "seeds", min_value=0) for s in seeds)
    if not ws or not ss:
        raise ValueError("widths and seeds must each contain at least one entry")
    check_choice(readout, "readout", _READOUTS)
    lam = check_positive(ridge, "ridge")
    X = np.vstack([A, B])
    ntr = A.shape[0]
    test = np.empty((len(ws), len(ss)))
    train = np.empty((len(ws), len(ss)))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ws) * len(ss), desc=f"random features {name}".strip(), leave=False)
    try:
        for i, w in enumerate(ws):
            for j, s in enumerate(ss):
                F = as_finite_array(feature_fn(X, w, s), "feature_fn(X, width, seed)", ndim=2)
                if F.shape[0] != X.shape[0]:
                    raise ValueError(
                        f"feature_fn returned {F.shape[0]} rows for {X.shape[0]} samples"
                    )
                predict = fit_readout(F[:ntr], ctr, readout=readout, ridge=lam, max_iter=max_iter)
                train[i, j] = float(np.mean(predict(F[:ntr]) == ctr))
                test[i, j] = float(np.mean(predict(F[ntr:]) == cte))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return RandomFeatureResult(
        widths=ws, seeds=ss, test_accuracy=test, train_accuracy=train, readout=readout,
        ridge=lam, name=name,
    )  # fmt: skip


def kernel_ridge_accuracy(
    K_train: Any, K_test_train: Any, ytr: Any, yte: Any, *, ridge: float = 1e-2
) -> float:
    """Test accuracy of kernel ridge regression, the infinite-width limit of the ridge read-out.

    ``f(X_test) = K_test_train (K_train + λ I)⁻¹ Y`` with ``Y = 2·onehot − 1``,
    predicted class ``argmax f``.

    Parameters
    ----------
    K_train : array_like, shape (n_train, n_train)
        Symmetric positive semi-definite kernel on the training set.
    K_test_train : array_like, shape (n_test, n_train)
        Kernel between test and training samples.
    ytr, yte : array_like
        Labels (any kind; encoded jointly).
    ridge : float
        ``λ > 0``.
    """
    Ktr = as_finite_array(K_train, "K_train", ndim=2)
    n = Ktr.shape[0]
    if Ktr.shape != (n, n):
        raise ValueError(f"K_train must be square; got shape {Ktr.shape}")
    Kte = as_finite_array(K_test_train, "K_test_train", ndim=2)
    if Kte.shape[1] != n:
        raise ValueError(f"K_test_train must have n_train = {n} columns; got shape {Kte.shape}")
    lam = check_positive(ridge, "ridge")
    ctr, cte = _encode(ytr, yte, n, Kte.shape[0])
    K = max(int(max(ctr.max(), cte.max())) + 1, 2)
    A = 0.5 * (Ktr + Ktr.T)
    A[np.diag_indices_from(A)] += lam
    alpha = scipy.linalg.solve(A, _targets(ctr, K), assume_a="pos")
    return float(np.mean(np.argmax(Kte @ alpha, axis=1) == cte))


def accuracy_table(
    results: Mapping[str, RandomFeatureResult],
    *,
    kernel_accuracy: Mapping[str, float] | None = None,
    fmt: str = "markdown",
) -> str:
    """Table of test accuracies (%): one row per model, ``mean ± std`` per width, kernel limit.

    ``fmt`` is ``"markdown"`` or ``"text"``.
    """
    check_choice(fmt, "fmt", ("markdown", "text"))
    widths = sorted({w for r in results.values() for w in r.widths})
    kacc = dict(kernel_accuracy or {})
    names = list(results) + [k for k in kacc if k not in results]
    header = ["model", *[f"m = {w}" for w in widths], "exact kernel (m = ∞)"]
    rows = []
    for name in names:
        row = [name]
        r = results.get(name)
        for w in widths:
            if r is not None and w in r.widths:
                i = r.widths.index(w)
                row.append(f"{100 * r.mean[i]:.1f} ± {100 * r.std[i]:.1f}")
            else:
                row.append("–")
        row.append(f"{100 * kacc[name]:.1f}" if name in kacc else "–")
        rows.append(row)
    if fmt == "markdown":
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    cols = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header))]
    out = ["  ".join(h.rjust(c) for h, c in zip(header, cols))]
    out += ["  ".join(v.rjust(c) for v, c in zip(r, cols)) for r in rows]
    return "\n".join(out)
