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

#: Read-outs of :func:`classification_grid`: the objectives of scikit-learn's multinomial
#: ``LogisticRegression`` (cross-entropy, the authors' loss) and ``RidgeClassifier``.
GRID_READOUTS = ("logistic", "ridge")


def _targets(codes: np.ndarray, K: int) -> np.ndarray:
    Y = -np.ones((codes.shape[0], K))
    Y[np.arange(codes.shape[0]), codes] = 1.0
    return Y


def _ridge_fit(
    F: np.ndarray, Y: np.ndarray, lam: float, gram: np.ndarray | None = None
) -> np.ndarray:
    """``argmin ‖F W − Y‖² + λ‖W‖²``: primal (``gram`` = ``FᵀF`` if given) when ``m ≤ n``,
    dual otherwise."""
    n, m = F.shape
    if m <= n:
        A = F.T @ F if gram is None else gram.copy()
        A[np.diag_indices_from(A)] += lam
        return scipy.linalg.solve(A, F.T @ Y, assume_a="pos", overwrite_a=True)
    A = F @ F.T
    A[np.diag_indices_from(A)] += lam
    return F.T @ scipy.linalg.solve(A, Y, assume_a="pos", overwrite_a=True)


#: Curvature ``c`` of the logistic read-out's preconditioner ``c [F 1]ᵀ[F 1] + λ I``
#: (:func:`_logistic_lbfgs`), a guess at the softmax Hessian of a typical training sample
#: near the optimum (``1/K`` at the start, far less once the sample is well classified).
#: Any ``c > 0`` gives the same minimiser; measured L-BFGS iterations to scikit-learn's
#: tolerance 1e-4 on the MNIST features (λ = 0.01, widths 128-1024): 24-38 with 0.01, 28-45
#: with 0.03 and 0.1, 38-57 with 1, against 112-179 for scikit-learn's unpreconditioned
#: L-BFGS.
LOGISTIC_CURVATURE = 0.01


def _logistic_lbfgs(
    F: np.ndarray,
    codes: np.ndarray,
    n_classes: int,
    lam: float,
    *,
    max_iter: int,
    tol: float,
    dtype: Any = np.float64,
    gram: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """The multinomial logistic read-out: ``(W, b)`` minimising

        J(W, b) = (1/n) [ Σ_i −log softmax(Wᵀf_i + b)_{y_i} + (λ/2) ‖W‖_F² ]

    (unpenalised intercept ``b``), scikit-learn's ``LogisticRegression(C=1/λ)`` objective.

    ``J`` is strictly convex in ``W`` (the intercept is unique up to a common shift of its
    entries, which no prediction sees).  L-BFGS (SciPy's, memory 10, at most 50 line-search
    steps, relative-reduction tolerance ``64 ε`` as scikit-learn sets it) runs in the
    coordinates ``ψ = Lᵀθ`` of ``θ = [W; b]``, ``L`` the Cholesky factor of
    ``c [F 1]ᵀ[F 1] + λ I`` (``c`` = :data:`LOGISTIC_CURVATURE`; ``gram`` is ``FᵀF`` when the
    caller has it): a change of variables, so the minimiser is the same, but its Hessian is
    far better conditioned, and L-BFGS needs a third to a fifth of the iterations.  Without
    ``gram`` and with more features than samples it runs on ``θ`` itself.  It stops when
    ``max |∂J/∂θ| ≤ tol`` (scikit-learn's test, on the same gradient), when an iteration
    lowers ``J`` by less than ``64 ε`` relatively (both count as converged) or after
    ``max_iter`` iterations.  The ``n × m`` products run in ``dtype``.

    Returns ``(W (m, K), b (K,), iterations, converged)``.
    """
    n, m = F.shape
    K = n_classes
    rows = np.arange(n)
    Fd = np.ascontiguousarray(F, dtype=dtype)
    if gram is None and m <= n:
        gram = F.T @ F
    L = None
    if gram is not None:
        s = F.sum(axis=0, dtype=np.float64)
        A = np.empty((m + 1, m + 1))
        A[:m, :m], A[m, :m], A[:m, m], A[m, m] = gram, s, s, n
        A *= LOGISTIC_CURVATURE
        A[np.diag_indices_from(A)] += lam
        L = scipy.linalg.cholesky(A, lower=True, overwrite_a=True, check_finite=False)

    def theta_of(psi: np.ndarray) -> np.ndarray:
        if L is None:
            return psi
        return scipy.linalg.solve_triangular(L, psi, lower=True, trans="T", check_finite=False)

    last: dict[str, np.ndarray] = {}

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        theta = theta_of(x.reshape(m + 1, K))
        W, b = theta[:m], theta[m]
        Z = Fd @ W.astype(dtype)
        Z += b.astype(dtype)
        Z -= Z.max(axis=1, keepdims=True)
        E = np.exp(Z)
        se = E.sum(axis=1, dtype=np.float64)
        val = np.log(se).sum() - Z[rows, codes].sum(dtype=np.float64) + 0.5 * lam * np.vdot(W, W)
        E /= se[:, None]  # softmax − onehot: the gradient of the cross-entropy in Z
        E[rows, codes] -= 1.0
        g = np.empty((m + 1, K))
        g[:m] = Fd.T @ E
        g[:m] += lam * W
        g[m] = E.sum(axis=0, dtype=np.float64)
        g /= n
        last["x"], last["g"] = x.copy(), g
        gpsi = (
            g if L is None else scipy.linalg.solve_triangular(L, g, lower=True, check_finite=False)
        )
        return float(val) / n, gpsi.ravel()

    iterations = 0
    small_gradient = False

    def callback(intermediate_result: Any) -> None:
        nonlocal iterations, small_gradient
        iterations += 1
        if not np.array_equal(last["x"], intermediate_result.x):
            objective(intermediate_result.x)
        if float(np.max(np.abs(last["g"]))) <= tol:
            small_gradient = True
            raise StopIteration

    res = scipy.optimize.minimize(
        objective, np.zeros((m + 1) * K), jac=True, method="L-BFGS-B", callback=callback,
        options={"maxiter": max_iter, "maxls": 50, "gtol": 0.0, "ftol": 64 * np.finfo(float).eps},
    )  # fmt: skip
    theta = theta_of(res.x.reshape(m + 1, K))
    converged = small_gradient or (res.status == 0 and iterations < max_iter)
    return theta[:m], theta[m], iterations, converged


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
    preconditioned L-BFGS until no entry of the gradient exceeds ``1e-8``
    (``max_iter`` iterations at most).  Labels must be codes ``0..K-1``.
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
        iters = check_integer(max_iter, "max_iter", min_value=1)
        W, b, _, _ = _logistic_lbfgs(F, codes, K, lam, max_iter=iters, tol=1e-8 / F.shape[0])

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
    A = Ktr + Ktr.T
    A *= 0.5
    A[np.diag_indices_from(A)] += lam
    alpha = _spd_solve(A, _targets(ctr, K))
    return float(np.mean(np.argmax(Kte @ alpha, axis=1) == cte))


def _spd_solve(A: np.ndarray, B: np.ndarray, *, max_refinements: int = 10) -> np.ndarray:
    """``A⁻¹ B`` for a symmetric positive definite float64 ``A``, as accurate as a float64
    Cholesky solve, by LAPACK's mixed-precision scheme (``dsposv``): Cholesky factor of ``A``
    in float32 (half the time of float64), then refinement ``X += A⁻¹(B − A X)`` with the
    float32 factor and float64 residuals until every column's residual is below
    ``‖A‖_∞ ε √n`` times its ``‖X‖_∞`` (``ε`` float64's unit roundoff, the bound of
    ``dsposv``).  When the float32 factorisation fails, or a step does not divide the
    largest such ratio by ten, or ``max_refinements`` steps do not get there (``A`` too
    ill-conditioned for float32, ``κ(A) ≳ 10⁶``), ``A`` is factorised in float64 instead."""
    n = A.shape[0]
    # ‖A‖_∞ by blocks of rows: the same row sums as over the whole matrix, without an n × n
    # temporary (fresh pages of 128 MB at n = 4000 cost more than the sums)
    norm_inf = max(float(np.sum(np.abs(A[i : i + 256]), axis=1).max()) for i in range(0, n, 256))
    cte = norm_inf * (np.finfo(np.float64).eps / 2) * np.sqrt(n)
    try:
        factor = scipy.linalg.cho_factor(A.astype(np.float32), lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        factor = None
    if factor is not None:
        X = scipy.linalg.cho_solve(factor, B.astype(np.float32), check_finite=False)
        X = X.astype(np.float64)
        previous = np.inf
        for _ in range(max_refinements + 1):
            R = B - A @ X
            ratio = float(np.max(np.max(np.abs(R), axis=0) / (cte * np.max(np.abs(X), axis=0))))
            if ratio <= 1.0:
                return X
            if not ratio < 0.1 * previous:  # too slow: float32 cannot resolve A
                break
            previous = ratio
            X += scipy.linalg.cho_solve(factor, R.astype(np.float32), check_finite=False)
    factor64 = scipy.linalg.cho_factor(A, lower=True, check_finite=False)
    return scipy.linalg.cho_solve(factor64, B, check_finite=False)


def _threads_for(work: float) -> int | None:
    """One BLAS thread for jobs whose largest product has fewer than ``2e9`` flops."""
    return 1 if work < 2e9 else None


def _grid_readouts(
    F: np.ndarray,
    ntr: int,
    ctr: np.ndarray,
    cte: np.ndarray,
    n_classes: int,
    readouts: Sequence[str],
    lam: float,
    *,
    max_iter: int,
    tol: float,
    dtype: Any,
) -> dict[str, tuple[float, float, float, bool]]:
    """The read-outs of ``classification_grid`` trained on the first ``ntr`` rows of the
    features ``F`` of ``[train; test]``: per read-out ``(test accuracy, train accuracy,
    seconds, converged)``.

    ``"ridge"``: :func:`_ridge_fit` with the targets ±1, no intercept (scikit-learn's
    ``RidgeClassifier(alpha=λ, fit_intercept=False)``); ``"logistic"``:
    :func:`_logistic_lbfgs` in ``dtype`` (scikit-learn's ``LogisticRegression(C=1/λ,
    tol=tol)`` objective).  Both use the one Gram matrix ``FᵀF`` of the training rows
    (``m ≤ n``), whose time each read-out's seconds include.
    """
    import time

    Ftr = F[:ntr]
    t0 = time.perf_counter()
    gram = Ftr.T @ Ftr if F.shape[1] <= ntr else None
    t_gram = time.perf_counter() - t0
    out = {}
    for ro in readouts:
        t0 = time.perf_counter()
        if ro == "ridge":
            W = _ridge_fit(Ftr, _targets(ctr, n_classes), lam, gram)
            b, ok = np.zeros(n_classes), True
        else:
            W, b, _, ok = _logistic_lbfgs(
                Ftr, ctr, n_classes, lam, max_iter=max_iter, tol=tol, dtype=dtype, gram=gram
            )
        pred = np.argmax(F @ W + b, axis=1)
        sec = t_gram + time.perf_counter() - t0
        out[ro] = (float(np.mean(pred[ntr:] == cte)), float(np.mean(pred[:ntr] == ctr)), sec, ok)
    return out


def _readout_estimator(readout: str, ridge: float, max_iter: int, tol: float = 1e-4) -> Any:
    """The scikit-learn estimator whose objective each grid read-out minimises
    (:func:`_grid_readouts`): the reference of the tests and of benchmarks/bench_mnist.py."""
    from sklearn.linear_model import LogisticRegression, RidgeClassifier

    if readout == "ridge":
        # targets ±1 (LabelBinarizer), no intercept: exactly W = argmin ‖FW − Y‖² + λ‖W‖²,
        # whose m → ∞ limit is kernel ridge with the exact kernel (kernel_ridge_accuracy)
        return RidgeClassifier(alpha=ridge, fit_intercept=False)
    # multinomial cross-entropy + (λ/2)‖W‖² with an unpenalised intercept: C = 1/λ
    return LogisticRegression(C=1.0 / ridge, max_iter=max_iter, tol=tol)
