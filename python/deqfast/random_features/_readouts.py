"""Linear read-outs on fixed features, input checks shared by the experiments, and the
kernel-ridge limit of the ridge read-out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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

__all__ = ["GRID_READOUTS", "fit_readout", "kernel_ridge_accuracy"]

_READOUTS = ("ridge", "logistic")

#: Read-outs of :func:`classification_grid`: scikit-learn's multinomial
#: ``LogisticRegression`` (cross-entropy, the authors' loss) and ``RidgeClassifier``.
GRID_READOUTS = ("logistic", "ridge")


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


def _readout_estimator(readout: str, ridge: float, max_iter: int, tol: float = 1e-4) -> Any:
    from sklearn.linear_model import LogisticRegression, RidgeClassifier

    if readout == "ridge":
        # targets ±1 (LabelBinarizer), no intercept: exactly W = argmin ‖FW − Y‖² + λ‖W‖²,
        # whose m → ∞ limit is kernel ridge with the exact kernel (kernel_ridge_accuracy)
        return RidgeClassifier(alpha=ridge, fit_intercept=False)
    # multinomial cross-entropy + (λ/2)‖W‖² with an unpenalised intercept: C = 1/λ
    return LogisticRegression(C=1.0 / ridge, max_iter=max_iter, tol=tol)
