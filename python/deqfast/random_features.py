"""Random-feature classification: the authors' training experiment (:ref:`§5 <theory-5>`).

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

The ten-class experiment of the paper: :func:`paper_models` builds the
authors' six models (ReLU and tanh DEQs, the designed L-ReLU and H-tanh nets,
the undesigned ReLU and tanh nets) with their exact kernels;
:func:`classification_grid` trains scikit-learn's ``LogisticRegression``
(cross-entropy, the authors' loss) and ``RidgeClassifier`` on the same
features for every model, width and seed, adds each model's exact-kernel ridge
accuracy (the ``m → ∞`` limit) and returns a :class:`ClassificationResult`;
:func:`inference_timing` measures the per-sample cost of a DEQ against an
explicit net of the same width (:class:`InferenceTiming`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.linalg
import scipy.optimize

from deqfast._shared import blas_threads, markdown_table, progress_bar
from deqfast._validation import (
    as_data_matrix,
    as_finite_array,
    as_labels,
    check_choice,
    check_integer,
    check_positive,
)

__all__ = [
    "GRID_READOUTS",
    "PAPER_WIDTHS",
    "ClassificationResult",
    "FeatureModel",
    "InferenceTiming",
    "RandomFeatureResult",
    "accuracy_rows",
    "accuracy_table",
    "classification_grid",
    "deq_features",
    "explicit_features",
    "fit_readout",
    "inference_timing",
    "kernel_ridge_accuracy",
    "paper_models",
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
    """Feature map of a finite-width DEQ: ``φ(z*(x))/√m`` (:ref:`§3 <theory-3>`).

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


def _check_split(
    Xtr: Any, ytr: Any, Xte: Any, yte: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    A = as_data_matrix(Xtr, "Xtr")
    B = as_data_matrix(Xte, "Xte")
    if B.shape[1] != A.shape[1]:
        raise ValueError(f"Xte must have p = {A.shape[1]} columns like Xtr; got shape {B.shape}")
    ctr, cte = _encode(ytr, yte, A.shape[0], B.shape[0])
    return A, B, ctr, cte


def _check_widths_seeds(
    widths: Sequence[int], seeds: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    ws = tuple(check_integer(w, "widths", min_value=1) for w in widths)
    ss = tuple(check_integer(s, "seeds", min_value=0) for s in seeds)
    if not ws or not ss:
        raise ValueError("widths and seeds must each contain at least one entry")
    return ws, ss


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
    progress: bool | None = None,
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
    progress : bool or None, default None
        Show a tqdm progress bar over the ``(width, seed)`` pairs (``None``: on a terminal).

    Returns
    -------
    RandomFeatureResult
    """
    A, B, ctr, cte = _check_split(Xtr, ytr, Xte, yte)
    if not callable(feature_fn):
        raise TypeError(f"feature_fn must be callable; got {type(feature_fn).__name__}")
    ws, ss = _check_widths_seeds(widths, seeds)
    check_choice(readout, "readout", _READOUTS)
    lam = check_positive(ridge, "ridge")
    X = np.vstack([A, B])
    ntr = A.shape[0]
    test = np.empty((len(ws), len(ss)))
    train = np.empty((len(ws), len(ss)))
    bar = progress_bar(progress, total=len(ws) * len(ss), desc=f"random features {name}".strip())
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


def accuracy_rows(
    results: Mapping[str, Any], kernel_accuracy: Mapping[str, float] | None = None
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of an accuracy table (%): one row per model, ``mean ± std`` per width
    (``results`` hold ``widths``, ``mean`` and ``std`` like :class:`RandomFeatureResult`),
    then the kernel limit; ``–`` where a model has no value."""
    widths = sorted({w for r in results.values() for w in r.widths})
    kacc = dict(kernel_accuracy or {})
    header = ["model", *[f"m = {w}" for w in widths], "exact kernel (m = ∞)"]
    rows = []
    for name in list(results) + [k for k in kacc if k not in results]:
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
    return header, rows


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
    header, rows = accuracy_rows(results, kernel_accuracy)
    if fmt == "markdown":
        return markdown_table(header, rows)
    cols = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header))]
    out = ["  ".join(h.rjust(c) for h, c in zip(header, cols))]
    out += ["  ".join(v.rjust(c) for v, c in zip(r, cols)) for r in rows]
    return "\n".join(out)


# --------------------------------------------------------------------------- #
# The paper's six models, both read-outs, the kernel limit, inference timing
# --------------------------------------------------------------------------- #
KernelFn = Callable[..., np.ndarray]

#: Read-outs of :func:`classification_grid`: scikit-learn's multinomial
#: ``LogisticRegression`` (cross-entropy, the authors' loss) and ``RidgeClassifier``.
GRID_READOUTS = ("logistic", "ridge")

#: Widths of the authors' random-feature experiment.
PAPER_WIDTHS = (32, 128, 512, 1024, 4096)


def _threads_for(work: float) -> int | None:
    """One BLAS thread for jobs whose largest product has fewer than ``2e9`` flops."""
    return 1 if work < 2e9 else None


def _readout_work(readout: str, n: int, m: int, n_classes: int) -> float:
    """Flops of the largest product of a read-out fit on ``n × m`` features.

    Ridge: the Gram matrix of the smaller side, ``2 n m min(n, m)``; logistic:
    one gradient, ``2 n m K`` per L-BFGS iteration (hundreds of small products).
    """
    if readout == "ridge":
        return 2.0 * n * m * min(n, m)
    return 2.0 * n * m * n_classes


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureModel:
    """A random-feature model: its feature map and its infinite-width kernel.

    Attributes
    ----------
    name : str
        Display name (a key of :func:`paper_models`).
    features : callable ``(X, width, seed) -> ndarray (n, width)``
        Features ``h/√m`` of the last hidden layer, weights drawn from ``seed``.
    kernel : callable ``(X, X2=None) -> ndarray``
        The exact infinite-width CK of the same features (``E[FFᵀ]`` as
        ``m → ∞``): kernel ridge with it is the limit of the ridge read-out.
    kind : {"deq", "explicit"}
    model : DEQ or ExplicitNet
        The underlying model.
    note : str
        How the model was built.
    """

    name: str
    features: FeatureFn = dataclasses.field(repr=False)
    kernel: KernelFn = dataclasses.field(repr=False)
    kind: str
    model: Any
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description."""
        return {"name": self.name, "kind": self.kind, "model": repr(self.model), "note": self.note}


def paper_models(
    tau0: float,
    *,
    sigma_a2: float = 0.2,
    sigma_b2: float | None = None,
    forward_options: Mapping[str, Any] | None = None,
) -> dict[str, FeatureModel]:
    """The authors' six random-feature models (:ref:`§5 <theory-5>`), for inputs at scale ``τ0``.

    In the order of the authors' scripts (``inn``, ``l_relu_enn``, ``relu_enn``,
    ``tanh_inn``, ``h_tanh_enn``, ``tanh_enn``):

    * ``"ReLU DEQ"`` — the finite-width DEQ with ReLU (centred at ``τ*``);
    * ``"L-ReLU net (designed)"`` — two hidden L-ReLU layers designed for the
      ReLU DEQ's CK (``design_explicit(deq, kernel="ck", family="lrelu")``);
    * ``"ReLU net (2 layers)"`` — the undesigned two-hidden-layer ReLU net, its
      output scale set to the DEQ's diagonal level (``family="relu"``);
    * ``"tanh DEQ"``;
    * ``"H-tanh net (designed)"`` — one hidden ``a·clip(t, −c, c)`` layer
      designed for the tanh DEQ's CK (``family="clip"``);
    * ``"tanh net (1 layer)"`` — one hidden tanh layer, undesigned (the
      authors' ``tanh_enn`` has one hidden layer, like the H-tanh net).

    Parameters
    ----------
    tau0 : float
        Input scale (``stats.tau0`` of the prepared data).
    sigma_a2, sigma_b2 : float
        The DEQs' weight variances (``sigma_b2`` defaults to ``1 − sigma_a2``).
    forward_options : mapping, optional
        Passed to :func:`deqfast.finite.forward` for the DEQ features (e.g.
        ``{"dtype": np.float32, "tol": 1e-4}``); default: its defaults.

    Returns
    -------
    dict of str to FeatureModel
    """
    import warnings

    from deqfast.deq import DEQ
    from deqfast.design import DesignWarning, design_explicit
    from deqfast.explicit import ExplicitNet

    t0 = check_positive(tau0, "tau0")
    opts = dict(forward_options or {})
    models: dict[str, FeatureModel] = {}
    for act, family, baseline in (("relu", "lrelu", "relu"), ("tanh", "clip", None)):
        deq = DEQ(act, sigma_a2=sigma_a2, sigma_b2=sigma_b2, tau0=t0)
        label = "ReLU" if act == "relu" else "tanh"
        models[f"{label} DEQ"] = FeatureModel(
            f"{label} DEQ", deq_features(deq, **opts), deq.ck, "deq", deq,
            f"finite-width DEQ, Anderson forward pass ({opts or 'default options'})",
        )  # fmt: skip
        design = design_explicit(deq, kernel="ck", family=family, matched_only=True)
        if not design.converged:
            raise RuntimeError(f"design_explicit({family!r}) did not match {deq!r}: {design!r}")
        name = "L-ReLU net (designed)" if act == "relu" else "H-tanh net (designed)"
        # the clip kernel: a kinked activation's Mehler series converges slowly, and pairs
        # it cannot resolve go to 2-D quadrature; 256 terms resolve most MNIST pairs (same
        # kernel to 1e-15, measured 8 times faster than 64 terms on 1,200 digits)
        kernel = functools.partial(design.net.ck, hermite_terms=256 if act == "tanh" else 64)
        models[name] = FeatureModel(
            name, explicit_features(design.net), kernel, "explicit", design.net,
            f"designed for the {label} DEQ's CK (family {family!r}, coefficient residual "
            f"{design.residual:.1e})",
        )  # fmt: skip
        if baseline is not None:
            with warnings.catch_warnings():  # the baseline is unfitted: no match is expected
                warnings.simplefilter("ignore", DesignWarning)
                net = design_explicit(deq, kernel="ck", family=baseline).net
            note = "undesigned two-layer ReLU net, output scale set to the DEQ's d"
            name = "ReLU net (2 layers)"
        else:
            net = ExplicitNet(["tanh"], tau0=t0)
            note = "undesigned one-layer tanh net"
            name = "tanh net (1 layer)"
        models[name] = FeatureModel(
            name, explicit_features(net), net.ck, "explicit", net, note
        )  # fmt: skip
    return models


def _readout_estimator(readout: str, ridge: float, max_iter: int, tol: float = 1e-4) -> Any:
    from sklearn.linear_model import LogisticRegression, RidgeClassifier

    if readout == "ridge":
        # targets ±1 (LabelBinarizer), no intercept: exactly W = argmin ‖FW − Y‖² + λ‖W‖²,
        # whose m → ∞ limit is kernel ridge with the exact kernel (kernel_ridge_accuracy)
        return RidgeClassifier(alpha=ridge, fit_intercept=False)
    # multinomial cross-entropy + (λ/2)‖W‖² with an unpenalised intercept: C = 1/λ
    return LogisticRegression(C=1.0 / ridge, max_iter=max_iter, tol=tol)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ClassificationResult:
    """Test accuracies of random-feature models over widths, seeds and read-outs.

    Attributes
    ----------
    models : tuple of str
    widths : tuple of int
    seeds : tuple of int
    readouts : tuple of str
        Subset of :data:`GRID_READOUTS`.
    results : dict of (model, readout) to RandomFeatureResult
        Accuracies per width and seed.
    kernel_accuracy : dict of str to float
        Kernel ridge with each model's exact kernel (same ``ridge``), the
        ``m → ∞`` limit of the ridge read-out (empty if not computed).
    feature_seconds : ndarray, shape (models, widths, seeds)
        Wall time of each feature computation (all ``n_train + n_test`` samples).
    fit_seconds : dict of str to ndarray (models, widths, seeds)
        Wall time of each read-out fit.
    kernel_seconds : dict of str to float
        Wall time of each exact kernel and its kernel ridge fit.
    converged : dict of str to ndarray of bool (models, widths, seeds)
        Whether each logistic fit converged within ``max_iter`` (all ``True``
        for ridge).
    n_train, n_test : int
    ridge : float
        ``λ`` of both read-outs and of kernel ridge.
    max_iter : int
        L-BFGS iterations allowed to the logistic read-out.
    model_notes : dict of str to str
    """

    models: tuple[str, ...]
    widths: tuple[int, ...]
    seeds: tuple[int, ...]
    readouts: tuple[str, ...]
    results: dict[tuple[str, str], RandomFeatureResult]
    kernel_accuracy: dict[str, float]
    feature_seconds: np.ndarray
    fit_seconds: dict[str, np.ndarray]
    kernel_seconds: dict[str, float]
    converged: dict[str, np.ndarray]
    n_train: int
    n_test: int
    ridge: float
    max_iter: int
    model_notes: dict[str, str]

    def result(self, model: str, readout: str) -> RandomFeatureResult:
        """The accuracies of one model with one read-out."""
        try:
            return self.results[(model, readout)]
        except KeyError:
            raise KeyError(
                f"no result for model {model!r} with read-out {readout!r}; models "
                f"{list(self.models)}, read-outs {list(self.readouts)}"
            ) from None

    def accuracy(self, model: str, readout: str, width: int) -> tuple[float, float]:
        """``(mean, std)`` test accuracy of one model, read-out and width."""
        r = self.result(model, readout)
        if width not in r.widths:
            raise ValueError(f"width {width} was not run; widths {list(r.widths)}")
        i = r.widths.index(width)
        return float(r.mean[i]), float(r.std[i])

    def table(self, readout: str, *, fmt: str = "markdown") -> str:
        """Accuracy table of one read-out (:func:`accuracy_table`); the kernel-limit
        column (kernel ridge) is shown with the ridge read-out only."""
        check_choice(readout, "readout", self.readouts)
        res = {m: self.results[(m, readout)] for m in self.models}
        kacc = self.kernel_accuracy if readout == "ridge" else None
        return accuracy_table(res, kernel_accuracy=kacc, fmt=fmt)

    def within_one_std(self, designed: str, deq: str, readout: str, width: int) -> bool:
        """Whether ``|mean(designed) − mean(deq)| ≤ std(deq)`` at ``width``."""
        m1, _ = self.accuracy(designed, readout, width)
        m0, s0 = self.accuracy(deq, readout, width)
        return abs(m1 - m0) <= s0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (every number of the experiment)."""
        return {
            "models": list(self.models),
            "widths": list(self.widths),
            "seeds": list(self.seeds),
            "readouts": list(self.readouts),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "ridge": self.ridge,
            "max_iter": self.max_iter,
            "accuracy": {
                ro: {m: self.results[(m, ro)].to_dict() for m in self.models}
                for ro in self.readouts
            },
            "kernel_ridge_accuracy": dict(self.kernel_accuracy),
            "feature_seconds": {
                m: self.feature_seconds[i].tolist() for i, m in enumerate(self.models)
            },
            "fit_seconds": {
                ro: {m: t[i].tolist() for i, m in enumerate(self.models)}
                for ro, t in self.fit_seconds.items()
            },
            "kernel_seconds": dict(self.kernel_seconds),
            "converged": {
                ro: {m: c[i].tolist() for i, m in enumerate(self.models)}
                for ro, c in self.converged.items()
            },
            "model_notes": dict(self.model_notes),
        }

    def __repr__(self) -> str:
        return (
            f"ClassificationResult(models={len(self.models)}, widths={list(self.widths)}, "
            f"seeds={len(self.seeds)}, readouts={list(self.readouts)}, "
            f"n_train={self.n_train}, n_test={self.n_test}, ridge={self.ridge:g})"
        )


def classification_grid(
    models: Mapping[str, FeatureModel],
    Xtr: Any,
    ytr: Any,
    Xte: Any,
    yte: Any,
    *,
    widths: Sequence[int] = PAPER_WIDTHS,
    seeds: Sequence[int] = (0, 1, 2),
    readouts: Sequence[str] = GRID_READOUTS,
    ridge: float = 1e-2,
    max_iter: int = 1000,
    logistic_tol: float = 1e-4,
    kernel_limit: bool = True,
    progress: bool | None = None,
) -> ClassificationResult:
    """Random features + trained linear read-outs over models, widths and seeds.

    See :ref:`§5 <theory-5>`.

    For every model, width and seed the features of ``[Xtr; Xte]`` are computed
    once (same random weights for training and test samples) and every read-out
    is trained on them: ``"logistic"`` — scikit-learn's multinomial
    ``LogisticRegression`` (cross-entropy ``+ (λ/2)‖W‖²``, unpenalised
    intercept, L-BFGS), the authors' loss; ``"ridge"`` — ``RidgeClassifier``
    (targets ±1, no intercept).  With ``kernel_limit`` each model's exact
    infinite-width kernel is computed on all samples and kernel ridge with the
    same ``λ`` gives the ``m → ∞`` limit of the ridge read-out.

    Small fits run on one BLAS thread.

    Parameters
    ----------
    models : mapping of str to FeatureModel
        E.g. :func:`paper_models`.
    Xtr, ytr, Xte, yte
        Training and test data (rows are samples) and labels (encoded jointly).
    widths, seeds : sequence of int
    readouts : sequence of str
        Subset of :data:`GRID_READOUTS`.
    ridge : float
        ``λ > 0`` of both read-outs and of kernel ridge.
    max_iter : int
        L-BFGS iterations allowed to the logistic read-out; a fit that stops
        there is recorded in ``converged`` (no warning).
    logistic_tol : float
        L-BFGS stopping tolerance of the logistic read-out (scikit-learn's
        default).  On the MNIST features of width 512, ``1e-6`` took 2.7 times
        the CPU time for +0.2 % test accuracy (measured, benchmarks/bench_mnist.py).
    kernel_limit : bool
        Compute the exact-kernel ridge accuracies.
    progress : bool or None, default None
        A tqdm progress bar over the feature computations (``None``: on a terminal).

    Returns
    -------
    ClassificationResult
    """
    import time
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    A, B, ctr, cte = _check_split(Xtr, ytr, Xte, yte)
    if not isinstance(models, Mapping) or not models:
        raise TypeError("models must be a non-empty mapping of names to FeatureModel")
    for key, mdl in models.items():
        if not isinstance(mdl, FeatureModel):
            raise TypeError(f"models[{key!r}] must be a FeatureModel; got {type(mdl).__name__}")
    ws, ss = _check_widths_seeds(widths, seeds)
    if isinstance(readouts, str):
        readouts = (readouts,)
    ros = tuple(check_choice(r, "readouts", GRID_READOUTS) for r in readouts)
    if not ros or len(set(ros)) != len(ros):
        raise ValueError(f"readouts must be distinct entries of {GRID_READOUTS}; got {readouts}")
    lam = check_positive(ridge, "ridge")
    iters = check_integer(max_iter, "max_iter", min_value=1)
    ltol = check_positive(logistic_tol, "logistic_tol")
    names = tuple(models)
    X = np.vstack([A, B])
    ntr = A.shape[0]
    n_classes = int(max(ctr.max(), cte.max())) + 1
    shape = (len(names), len(ws), len(ss))
    test = {ro: np.empty(shape) for ro in ros}
    train = {ro: np.empty(shape) for ro in ros}
    fit_s = {ro: np.empty(shape) for ro in ros}
    conv = {ro: np.ones(shape, dtype=bool) for ro in ros}
    feat_s = np.empty(shape)
    bar = progress_bar(progress, total=int(np.prod(shape)), desc="random features")
    try:
        for i, name in enumerate(names):
            for j, w in enumerate(ws):
                for k, s in enumerate(ss):
                    t0 = time.perf_counter()
                    F = as_finite_array(models[name].features(X, w, s), f"{name} features", ndim=2)
                    feat_s[i, j, k] = time.perf_counter() - t0
                    if F.shape != (X.shape[0], w):
                        raise ValueError(
                            f"{name}: features of shape {F.shape}; expected {(X.shape[0], w)}"
                        )
                    for ro in ros:
                        est = _readout_estimator(ro, lam, iters, ltol)
                        t0 = time.perf_counter()
                        with blas_threads(_threads_for(_readout_work(ro, ntr, w, n_classes))):
                            with warnings.catch_warnings(record=True) as caught:
                                warnings.simplefilter("always", ConvergenceWarning)
                                est.fit(F[:ntr], ctr)
                            test[ro][i, j, k] = float(np.mean(est.predict(F[ntr:]) == cte))
                            train[ro][i, j, k] = float(np.mean(est.predict(F[:ntr]) == ctr))
                        fit_s[ro][i, j, k] = time.perf_counter() - t0
                        conv[ro][i, j, k] = not any(
                            issubclass(c.category, ConvergenceWarning) for c in caught
                        )
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    results = {
        (name, ro): RandomFeatureResult(
            widths=ws,
            seeds=ss,
            test_accuracy=test[ro][i],
            train_accuracy=train[ro][i],
            readout=ro,
            ridge=lam,
            name=name,
        )
        for i, name in enumerate(names)
        for ro in ros
    }
    kacc: dict[str, float] = {}
    ksec: dict[str, float] = {}
    if kernel_limit:
        for name in names:
            t0 = time.perf_counter()
            K = np.asarray(models[name].kernel(X), dtype=np.float64)
            with blas_threads(_threads_for(ntr**3 / 3.0)):
                kacc[name] = kernel_ridge_accuracy(
                    K[:ntr, :ntr], K[ntr:, :ntr], ctr, cte, ridge=lam
                )
            ksec[name] = time.perf_counter() - t0
    return ClassificationResult(
        models=names, widths=ws, seeds=ss, readouts=ros, results=results, kernel_accuracy=kacc,
        feature_seconds=feat_s, fit_seconds=fit_s, kernel_seconds=ksec, converged=conv,
        n_train=ntr, n_test=int(B.shape[0]), ridge=lam, max_iter=iters,
        model_notes={name: models[name].note for name in names},
    )  # fmt: skip


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class InferenceTiming:
    """Per-sample inference time of a finite-width DEQ and of an explicit net of the same width.

    Both compute the last hidden layer of a batch of ``n`` samples with weights
    drawn beforehand (drawing them is not timed); the read-out, the same
    ``m × K`` product for both, is not included.

    Attributes
    ----------
    width, n : int
    deq_seconds, net_seconds : ndarray
        Wall time of every repetition for the whole batch.
    deq_cpu_seconds, net_cpu_seconds : ndarray
        CPU time of the process (all its threads) for the same repetitions:
        less disturbed than wall time on a busy machine.
    deq_evaluations : int
        Evaluations of the DEQ map (one ``m × m × n`` product each).
    deq_residual, tol : float
        Final relative residual and the tolerance asked for.
    solver, dtype : str
    net_layers : int
        Hidden layers of the explicit net (one product each).
    deq, net : str
        ``repr`` of the two models.
    """

    width: int
    n: int
    deq_seconds: np.ndarray
    net_seconds: np.ndarray
    deq_cpu_seconds: np.ndarray
    net_cpu_seconds: np.ndarray
    deq_evaluations: int
    deq_residual: float
    tol: float
    solver: str
    dtype: str
    net_layers: int
    deq: str
    net: str

    @property
    def deq_per_sample(self) -> float:
        """Best-of-repeats seconds per sample of the DEQ."""
        return float(self.deq_seconds.min() / self.n)

    @property
    def net_per_sample(self) -> float:
        """Best-of-repeats seconds per sample of the explicit net."""
        return float(self.net_seconds.min() / self.n)

    @property
    def speedup(self) -> float:
        """``deq_per_sample / net_per_sample``."""
        return self.deq_per_sample / self.net_per_sample

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "width": self.width, "n": self.n,
            "deq_seconds": self.deq_seconds.tolist(), "net_seconds": self.net_seconds.tolist(),
            "deq_cpu_seconds": self.deq_cpu_seconds.tolist(),
            "net_cpu_seconds": self.net_cpu_seconds.tolist(),
            "deq_per_sample_s": self.deq_per_sample, "net_per_sample_s": self.net_per_sample,
            "speedup": self.speedup, "deq_evaluations": self.deq_evaluations,
            "deq_residual": self.deq_residual, "tol": self.tol, "solver": self.solver,
            "dtype": self.dtype, "net_layers": self.net_layers, "deq": self.deq, "net": self.net,
        }  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"InferenceTiming(width={self.width}, n={self.n}, "
            f"deq={1e6 * self.deq_per_sample:.1f} µs/sample ({self.deq_evaluations} evaluations), "
            f"net={1e6 * self.net_per_sample:.1f} µs/sample, speedup={self.speedup:.1f})"
        )


def _explicit_weights(net: Any, p: int, width: int, seed: Any) -> list[np.ndarray]:
    """The weights ``ExplicitNet.forward(X, width, seed=seed)`` draws, in its order."""
    from deqfast._validation import as_rng

    rng = as_rng(seed, "seed")
    Ws = []
    d = p
    for k in range(net.depth):
        W = rng.standard_normal((d, width))
        if k > 0:
            W *= 1.0 / math.sqrt(d)
        Ws.append(W)
        d = width
    return Ws


def _explicit_hidden(net: Any, X: np.ndarray, Ws: Sequence[np.ndarray]) -> np.ndarray:
    """``h_L`` of ``net`` with the given weights (the products of ``ExplicitNet.forward``)."""
    h = X
    for layer, W in zip(net.layers, Ws):
        h = layer.activation(h @ W)
    return h


def inference_timing(
    deq: Any,
    net: Any,
    X: Any,
    width: int,
    *,
    seed: int = 0,
    repeats: int = 3,
    **forward_options: Any,
) -> InferenceTiming:
    """Measure the per-sample inference time of a width-``m`` DEQ and explicit net.

    The DEQ solves its fixed point for the batch with :func:`deqfast.finite.forward`
    (Anderson to its default tolerance unless ``forward_options`` say otherwise);
    the explicit net computes its hidden layers (one product each, the
    products of :meth:`ExplicitNet.forward`).  Weights are drawn once from
    ``seed`` before timing; each is timed ``repeats`` times.

    Parameters
    ----------
    deq : DEQ
    net : ExplicitNet
        E.g. the net designed for ``deq``.
    X : array_like, shape (n, p)
        The batch (e.g. the test set).
    width : int
    seed : int
    repeats : int
    **forward_options
        Passed to :func:`deqfast.finite.forward` (``solver``, ``tol``, ``dtype``, ...).

    Returns
    -------
    InferenceTiming
    """
    import time

    from deqfast.explicit import ExplicitNet
    from deqfast.finite import draw_weights, forward

    if not isinstance(net, ExplicitNet):
        raise TypeError(f"net must be a deqfast ExplicitNet; got {type(net).__name__}")
    Xm = as_data_matrix(X, "X")
    m = check_integer(width, "width", min_value=1)
    reps = check_integer(repeats, "repeats", min_value=1)
    weights = draw_weights(m, Xm.shape[1], seed=seed)
    Ws = _explicit_weights(net, Xm.shape[1], m, seed)
    deq_t, net_t, deq_c, net_c = (np.empty(reps) for _ in range(4))
    res = None
    for r in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        res = forward(deq, Xm, m, weights=weights, **forward_options)
        deq_t[r], deq_c[r] = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        _explicit_hidden(net, Xm, Ws)
        net_t[r], net_c[r] = time.perf_counter() - t0, time.process_time() - c0
    assert res is not None
    return InferenceTiming(
        width=m, n=int(Xm.shape[0]), deq_seconds=deq_t, net_seconds=net_t,
        deq_cpu_seconds=deq_c, net_cpu_seconds=net_c,
        deq_evaluations=res.evaluations, deq_residual=res.residual, tol=res.tol,
        solver=res.solver, dtype=np.dtype(forward_options.get("dtype", np.float64)).name,
        net_layers=net.depth, deq=repr(deq), net=repr(net),
    )  # fmt: skip
