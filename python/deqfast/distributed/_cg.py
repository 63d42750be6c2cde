"""Kernel ridge regression out of core: conjugate gradients on the tiled operator."""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from typing import Any

import numpy as np
import scipy.sparse.linalg as spla

from deqfast._shared import progress_bar, show_progress
from deqfast._validation import as_data_matrix, check_integer, check_positive
from deqfast._vocabulary import check_kernel
from deqfast.distributed._common import BLOCKED_KERNELS, matrix
from deqfast.distributed._operator import tiled_operator
from deqfast.distributed._tiles import kernels_blocked


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class CGResult:
    """The solution of ``(A + λ I) X = B`` by conjugate gradients (see :func:`conjugate_gradient`).

    Attributes
    ----------
    x : ndarray, shape (n,) or (n, k)
        The solution, shaped like ``B``.
    converged : bool
        Whether ``residual ≤ tol``.
    status : str
        ``"converged"``, ``"max_iter"`` or ``"breakdown"`` (a search direction with
        ``pᵀ(A + λI)p ≤ 0``: the operator is not positive definite).
    message : str
        A sentence saying what happened.
    iterations : int
        CG iterations (each one product of ``A`` with every unconverged column at once).
    residual : float
        The largest relative residual ``‖b − (A + λI)x‖ / ‖b‖`` over the columns, computed
        from an explicit product at the end (not the recursively updated one).
    residuals : ndarray
        The largest recursively updated relative residual after every iteration.
    products : int
        Products with ``A`` (iterations, plus one per true-residual check).
    restarts : int
        Restarts from the true residual, made when the recursive residual met ``tol``
        but the true one did not (rounding drift).
    seconds : float
        Wall time.
    ridge, tol : float
        The ``λ`` and tolerance used.
    """

    x: np.ndarray
    converged: bool
    status: str
    message: str
    iterations: int
    residual: float
    residuals: np.ndarray
    products: int
    restarts: int
    seconds: float
    ridge: float
    tol: float

    def __repr__(self) -> str:
        return (
            f"CGResult(status={self.status!r}, iterations={self.iterations}, "
            f"residual={self.residual:.3e}, tol={self.tol:g}, ridge={self.ridge:g}, "
            f"products={self.products}, restarts={self.restarts}, seconds={self.seconds:.3g})"
        )


def conjugate_gradient(
    A: Any,
    B: Any,
    *,
    ridge: float = 0.0,
    tol: float = 1e-10,
    max_iter: int | None = None,
    x0: Any = None,
    preconditioner: Any = None,
    max_restarts: int = 5,
    strict: bool = True,
    progress: bool | None = None,
) -> CGResult:
    """Solve ``(A + λ I) X = B`` for a symmetric positive (semi-)definite ``A`` by CG.

    Every column of ``B`` runs its own conjugate-gradient recursion (Hestenes–Stiefel),
    but the products are batched: an iteration makes one product ``A P`` with the search
    directions of all unconverged columns, so with a :class:`TiledOperator` every stored
    tile is read once per iteration whatever the number of right-hand sides. A column
    stops when its relative residual ``‖b − (A + λI)x‖ / ‖b‖`` is at most ``tol``. When
    all have stopped the residual is recomputed from an explicit product; a column whose
    true residual still exceeds ``tol`` (rounding drift of the recursion) restarts from it,
    at most ``max_restarts`` times.

    Parameters
    ----------
    A
        A square symmetric operator: an array, a :class:`scipy.sparse.linalg.LinearOperator`
        or a :class:`TiledOperator` (from :func:`tiled_operator`).
    B : array_like, shape (n,) or (n, k)
        Right-hand sides.
    ridge
        ``λ ≥ 0`` added to the diagonal (never formed: ``(A + λI)p = Ap + λp``).
    tol
        Relative residual to reach, in ``(0, 1)``.
    max_iter
        Iteration cap over all restarts (default ``n``, CG's exact-arithmetic bound).
    x0 : array_like, optional
        Starting point shaped like ``B`` (default zero).
    preconditioner : callable, optional
        ``M(R) ≈ (A + λI)⁻¹ R`` for an ``(n, j)`` block ``R``, symmetric positive definite
        (preconditioned CG), e.g. :func:`nystrom_preconditioner`. The stopping test is on
        the unpreconditioned residual.
    max_restarts
        Restarts from the true residual allowed (see above).
    strict
        Raise ``RuntimeError`` (with the residual and the iteration count) when ``tol``
        is not reached; with ``False`` warn (``RuntimeWarning``) and return the result.
    progress
        tqdm bar over the iterations with the current residual (default: on when stderr
        is a terminal).

    Returns
    -------
    CGResult
    """
    t_start = time.perf_counter()
    op = spla.aslinearoperator(A)
    n = op.shape[0]
    if op.shape != (n, n):
        raise ValueError(f"A must be square; got shape {op.shape}")
    Bm = np.asarray(B, dtype=np.float64)
    single = Bm.ndim == 1
    if single:
        Bm = Bm[:, None]
    if Bm.ndim != 2 or Bm.shape[0] != n:
        raise ValueError(f"B must have shape ({n},) or ({n}, k); got {np.shape(B)}")
    if not np.all(np.isfinite(Bm)):
        raise ValueError("B must not contain NaN or inf")
    lam = check_positive(ridge, "ridge", allow_zero=True)
    tol = check_positive(tol, "tol")
    if tol >= 1:
        raise ValueError(f"tol must be in (0, 1); got {tol}")
    cap = n if max_iter is None else check_integer(max_iter, "max_iter", min_value=1)
    max_restarts = check_integer(max_restarts, "max_restarts", min_value=0)
    show = show_progress(progress)

    def apply(V: np.ndarray) -> np.ndarray:
        return np.asarray(op.matmat(V), dtype=np.float64).reshape(V.shape) + lam * V

    if preconditioner is not None and not callable(preconditioner):
        raise TypeError(
            f"preconditioner must be a callable R -> M R; got {type(preconditioner).__name__}"
        )

    def precondition(V: np.ndarray) -> np.ndarray:
        if preconditioner is None:
            return V.copy()
        return np.asarray(preconditioner(V), dtype=np.float64).reshape(V.shape)

    bnorm = np.linalg.norm(Bm, axis=0)
    safe = np.where(bnorm > 0, bnorm, 1.0)
    if x0 is None:
        Xs = np.zeros_like(Bm)
        R = Bm.copy()
        products = 0
    else:
        Xs = np.array(x0, dtype=np.float64).reshape(Bm.shape)
        R = Bm - apply(Xs)
        products = 1
    history: list[float] = []
    iterations = restarts = 0
    status = ""
    bar = progress_bar(show, total=cap, desc="conjugate gradients")
    try:
        while True:
            Z = precondition(R)
            P = Z.copy()
            rz = np.einsum("ij,ij->j", R, Z)
            active = np.linalg.norm(R, axis=0) / safe > tol
            while active.any() and iterations < cap:
                Pa = P[:, active]
                Q = apply(Pa)
                products += 1
                iterations += 1
                pq = np.einsum("ij,ij->j", Pa, Q)
                if np.any(pq <= 0):
                    status = "breakdown"
                    break
                step = rz[active] / pq
                Xs[:, active] += step * Pa
                Ra = R[:, active] - step * Q
                R[:, active] = Ra
                Za = precondition(Ra)
                rz_new = np.einsum("ij,ij->j", Ra, Za)
                P[:, active] = Za + (rz_new / rz[active]) * Pa
                rz[active] = rz_new
                rel = np.linalg.norm(R, axis=0) / safe
                history.append(float(rel.max()))
                active = rel > tol
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(residual=f"{history[-1]:.2e}", refresh=False)
            R = Bm - apply(Xs)
            products += 1
            true = np.linalg.norm(R, axis=0) / safe
            if status or true.max() <= tol or iterations >= cap or restarts >= max_restarts:
                break
            restarts += 1
    finally:
        if bar is not None:
            bar.close()
    residual = float(true.max())
    if not status:
        status = "converged" if residual <= tol else "max_iter"
    if status == "converged":
        message = f"relative residual {residual:.3e} <= tol {tol:g} after {iterations} iterations"
    elif status == "breakdown":
        message = (
            f"breakdown after {iterations} iterations (relative residual {residual:.3e}): "
            "p^T (A + ridge I) p <= 0, the operator is not positive definite; increase ridge"
        )
    else:
        message = (
            f"relative residual {residual:.3e} > tol {tol:g} after {iterations} iterations "
            f"(max_iter {cap}, {restarts} restarts); raise max_iter, increase ridge or loosen tol"
        )
    out = CGResult(
        x=Xs[:, 0] if single else Xs, converged=status == "converged", status=status,
        message=message, iterations=iterations, residual=residual,
        residuals=np.array(history), products=products, restarts=restarts,
        seconds=time.perf_counter() - t_start, ridge=lam, tol=tol,
    )  # fmt: skip
    if not out.converged:
        if strict:
            raise RuntimeError(f"conjugate gradients: {message}")
        warnings.warn(f"conjugate gradients: {message}", RuntimeWarning, stacklevel=2)
    return out


def kernel_ridge_cg(
    deq: Any,
    X: Any,
    Y: Any,
    *,
    ridge: float,
    kernel: str = "ck",
    trained: str = "hidden",
    client: Any = None,
    block: int = 2048,
    zarr_path: str | os.PathLike[str] | None = None,
    tol: float = 1e-10,
    max_iter: int | None = None,
    x0: Any = None,
    landmarks: int = 1024,
    seed: Any = 0,
    strict: bool = True,
    progress: bool | None = None,
    **kernel_options: Any,
) -> CGResult:
    """Kernel ridge coefficients ``α = (K + λ I)⁻¹ Y`` without holding ``K`` in memory.

    The exact kernel ``K`` of ``deq`` on ``X`` (:ref:`§3 <theory-3>`) is written tile by tile to a
    zarr store by :func:`kernels_blocked`, wrapped by :func:`tiled_operator` (every product
    reads each stored upper tile once) and the system is solved by
    :func:`conjugate_gradient`, preconditioned by :func:`nystrom_preconditioner` on
    ``landmarks`` random training samples (their ``n × landmarks`` kernel columns are
    computed here, on the client: ``8 n · landmarks`` bytes). Predictions are then
    ``K(X_new, X) α`` (an ``n_new × n`` cross kernel, e.g. ``deq.ck(X_new, X) @ res.x``).

    Parameters
    ----------
    deq
        A :class:`deqfast.DEQ`.
    X : array_like, shape (n, p)
        Training samples.
    Y : array_like, shape (n,) or (n, k)
        Targets (all columns are solved together, one tiled product per iteration).
    ridge
        ``λ ≥ 0``.
    kernel, trained
        As in :func:`kernels_blocked` (``"ck"``; ``"ntk"`` with ``trained="hidden"`` or
        ``"all"``; ...).
    client
        ``dask.distributed.Client`` for the tiles and the products (default: Dask's
        current scheduler).
    block
        Tile edge (``8 block²`` bytes per tile in memory at a time on a worker).
    zarr_path
        Where to store the tiles; default a temporary directory removed afterwards.
    tol, max_iter, x0, strict
        As in :func:`conjugate_gradient`.
    landmarks
        Nyström rank of the preconditioner (``0``: plain CG). Measured on the authors'
        mixture (ReLU CK, λ = 1e-3, tol 1e-9): 138 iterations without, 29 with 1024
        landmarks at n = 4096.
    seed
        Seed of the landmark choice (``numpy.random.default_rng``).
    progress
        Progress bars for the tiles and the iterations (default: when stderr is a terminal).
    kernel_options
        Passed to :func:`kernels_blocked` (``tol`` of the pair solver is ``kernel_tol``
        here; ``max_iter``/``hermite_terms``/``num_threads``/``dtype``).

    Returns
    -------
    CGResult
        ``x`` is ``α``, shaped like ``Y``.
    """
    import shutil
    import tempfile

    kernel, trained = check_kernel(kernel, trained, allowed=BLOCKED_KERNELS)
    Xm = as_data_matrix(X, "X")
    Ym = np.asarray(Y, dtype=np.float64)
    if Ym.ndim not in (1, 2) or Ym.shape[0] != Xm.shape[0]:
        raise ValueError(
            f"Y must have shape ({Xm.shape[0]},) or ({Xm.shape[0]}, k); got {Ym.shape}"
        )
    options = dict(kernel_options)
    if "kernel_tol" in options:
        options["tol"] = options.pop("kernel_tol")
    tmp = None
    if zarr_path is None:
        tmp = tempfile.mkdtemp(prefix="deqfast-cg-")
        zarr_path = os.path.join(tmp, "kernel.zarr")
    try:
        K = kernels_blocked(
            deq, Xm, client=client, block=block, kernel=kernel, trained=trained,
            zarr_path=zarr_path,
            overwrite=tmp is not None, progress=progress, **options,
        )  # fmt: skip
        op = tiled_operator(K, client=client)
        precond = None
        r = min(check_integer(landmarks, "landmarks", min_value=0), Xm.shape[0])
        if r > 0:
            from deqfast._validation import as_rng
            from deqfast.kernels import compute_kernels

            idx = np.sort(as_rng(seed).choice(Xm.shape[0], r, replace=False))
            key = matrix(kernel, trained)
            pair_opts = {
                k: v for k, v in options.items() if k in ("tol", "max_iter", "hermite_terms")
            }
            cols = getattr(compute_kernels(deq, Xm, Xm[idx], outputs=(key,), **pair_opts), key)
            precond = nystrom_preconditioner(cols, idx, ridge=ridge)
        return conjugate_gradient(
            op, Ym, ridge=ridge, tol=tol, max_iter=max_iter, x0=x0, strict=strict,
            progress=progress, preconditioner=precond,
        )  # fmt: skip
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def nystrom_preconditioner(C: Any, landmarks: Any, *, ridge: float) -> Any:
    """A Nyström preconditioner for ``K + λI`` from the columns ``C = K[:, landmarks]``.

    With ``W = C[landmarks]`` the ``r × r`` kernel of the landmarks, ``K̂ = C W⁻¹ Cᵀ =
    U Λ̂ Uᵀ`` (``U`` of shape ``(n, r)``, from ``C L⁻ᵀ`` with ``W = L Lᵀ``)
    approximates ``K`` on its leading eigenspace, and

        M⁻¹ = (λ̂_r + λ) U (Λ̂ + λI)⁻¹ Uᵀ + (I − U Uᵀ)

    (Frangella, Tropp & Udell, *Randomized Nyström preconditioning*, SIAM J. Matrix Anal.
    Appl. 2023) maps the ``r`` leading directions to about ``λ̂_r + λ`` and leaves the
    others alone, so CG sees the condition number of the spectrum below ``λ̂_r``. The
    landmark columns are ``n × r`` numbers, e.g. ``deq.ck(X, X[landmarks])``.

    Parameters
    ----------
    C : array_like, shape (n, r)
        Kernel columns of the landmarks.
    landmarks : array_like of int, shape (r,)
        Their row indices in ``K``.
    ridge
        ``λ ≥ 0``.

    Returns
    -------
    callable
        ``R ↦ M⁻¹ R`` for blocks ``R`` of shape ``(n, j)`` (pass it as ``preconditioner``
        to :func:`conjugate_gradient`).
    """
    import scipy.linalg

    Cm = np.asarray(C, dtype=np.float64)
    idx = np.asarray(landmarks)
    if Cm.ndim != 2 or idx.shape != (Cm.shape[1],) or idx.dtype.kind not in "iu":
        raise ValueError(
            f"C must be (n, r) and landmarks r integer indices; got {Cm.shape} and {idx.shape}"
        )
    lam = check_positive(ridge, "ridge", allow_zero=True)
    W = 0.5 * (Cm[idx] + Cm[idx].T)
    # a small shift keeps the Cholesky factor of a numerically singular W finite
    shift = 1e-10 * max(float(np.trace(W)), 1e-300)
    L = np.linalg.cholesky(W + shift * np.eye(W.shape[0]))
    Bf = scipy.linalg.solve_triangular(L, Cm.T, lower=True).T  # C L⁻ᵀ, so K̂ = Bf Bfᵀ
    # eigenpairs of K̂ from the r × r Gram matrix Bfᵀ Bf (one GEMM; an SVD of the tall
    # Bf costs several times more): K̂ = U diag(w) Uᵀ with U = Bf V w^(-1/2)
    w, V = np.linalg.eigh(Bf.T @ Bf)
    keep = w > 1e-12 * w[-1]
    w, V = w[keep][::-1], V[:, keep][:, ::-1]
    U = Bf @ (V / np.sqrt(w))
    lam_hat = np.maximum(w - shift, 0.0)
    scale = (lam_hat[-1] + lam) / (lam_hat + lam)
    if not np.all(np.isfinite(scale)):
        raise ValueError(
            "the Nyström approximation has a zero eigenvalue and ridge=0; use ridge > 0"
        )

    def apply(R: np.ndarray) -> np.ndarray:
        UR = U.T @ R
        return R + U @ ((scale - 1.0)[:, None] * UR)

    return apply
