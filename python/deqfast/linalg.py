"""Matrix-free spectra of large symmetric kernels: Lanczos spikes and SLQ densities.

Everything here needs only the product ``M v`` (a :class:`scipy.sparse.linalg.LinearOperator`,
a dense array, or anything :func:`scipy.sparse.linalg.aslinearoperator` accepts), so the same
code serves

* the exact kernels of :ref:`§3 <theory-3>` on one machine (a dense array) or spread over a Dask
  cluster as tiles (:func:`deqfast.distributed.tiled_operator`), and
* the random-matrix surrogates of :ref:`§4 <theory-4>` through their low-rank form
  (:func:`deqfast.surrogate.surrogate_operator`),
  ``M̄ v = c1 X (Xᵀ v) + V (A (Vᵀ v)) + (d − c1 τ0²) v`` in ``O(np)`` — ``M̄`` is never
  formed, so ``n`` can be in the millions.

:func:`lanczos_top`
    The extreme eigenpairs ("spikes", :ref:`§6 <theory-6>`) by the Lanczos process with full
    reorthogonalisation (classical Gram–Schmidt, twice), stopping when every wanted Ritz
    pair has residual ``‖M u − θ u‖ ≤ tol · max|θ|``.
:func:`slq_density`
    Stochastic Lanczos quadrature (Golub–Meurant; Ubaru, Chen & Saad 2017): for Rademacher
    probes ``v`` (``‖v‖ = 1``), ``m`` Lanczos steps give the Gauss quadrature
    ``vᵀ f(M) v ≈ Σ_k τ_k² f(θ_k)`` with Ritz values ``θ_k`` and squared first components
    ``τ_k²`` of the tridiagonal's eigenvectors; averaging over probes estimates the
    spectral measure ``(1/n) Σ_i δ_{λ_i}`` as a discrete measure on the Ritz values. All
    probes advance in lock-step, so each step is one ``M V`` product with ``V`` of shape
    ``(n, probes)`` — one pass over the data or the tiles per step.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse.linalg as spla

from deqfast._shared import progress_bar
from deqfast._validation import (
    as_rng,
    check_choice,
    check_integer,
    check_positive,
)
from deqfast._vocabulary import deprecated_alias
from deqfast.surrogate import SurrogateOperator, surrogate_operator

__all__ = [
    "EigenResult",
    "SpectralDensity",
    "SurrogateOperator",  # defined in deqfast.surrogate, with the dense surrogate
    "lanczos_top",
    "slq_density",
    "surrogate_operator",
]

_WHICH = ("LA", "SA")
#: Default memory budget for the Lanczos bases kept by :func:`slq_density` for reorthogonalisation.
SLQ_BASIS_BYTES = 1 << 30


# --------------------------------------------------------------------------- #
# operators
# --------------------------------------------------------------------------- #
def _as_operator(M: Any, name: str = "M") -> spla.LinearOperator:
    try:
        op = spla.aslinearoperator(M)
    except TypeError as exc:
        raise TypeError(
            f"{name} must be a square matrix or a scipy LinearOperator; got {type(M).__name__}"
        ) from exc
    if len(op.shape) != 2 or op.shape[0] != op.shape[1]:
        raise ValueError(f"{name} must be square; got shape {op.shape}")
    if op.shape[0] < 2:
        raise ValueError(f"{name} must be at least 2 × 2; got shape {op.shape}")
    return op


def _matmat(op: spla.LinearOperator, V: np.ndarray) -> np.ndarray:
    W = np.asarray(op.matmat(V), dtype=np.float64)
    if W.shape != V.shape:
        raise ValueError(f"the operator returned shape {W.shape} for an input of shape {V.shape}")
    if not np.all(np.isfinite(W)):
        raise ValueError("the operator returned NaN/inf")
    return W


# --------------------------------------------------------------------------- #
# Lanczos: extreme eigenpairs
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class EigenResult:
    """Extreme eigenpairs from :func:`lanczos_top`.

    Attributes
    ----------
    eigenvalues : ndarray, shape (k,)
        Descending for ``which="LA"``, ascending for ``"SA"``.
    eigenvectors : ndarray, shape (n, k)
        Orthonormal Ritz vectors, column ``j`` for ``eigenvalues[j]``.
    residuals : ndarray, shape (k,)
        ``‖M u_j − θ_j u_j‖`` (the Lanczos estimate ``|β_m s_mj|``).
    iterations : int
        Lanczos steps (= matrix-vector products).
    converged : bool
        Whether every residual is ``≤ tol · max|θ|``.
    status : str
        ``"converged"`` or ``"max_iter"`` (``max_steps`` reached first).
    message : str
        What happened, in words.
    residual : float
        The largest relative residual ``max_j |β_m s_mj| / max|θ|`` (compared with ``tol``).
    tol : float
        The requested tolerance.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    residuals: np.ndarray
    iterations: int
    converged: bool
    status: str
    message: str
    residual: float
    tol: float

    steps = deprecated_alias("iterations", "steps")

    def __repr__(self) -> str:
        vals = ", ".join(f"{v:.8g}" for v in self.eigenvalues)
        return (
            f"EigenResult(eigenvalues=[{vals}], iterations={self.iterations}, "
            f"max residual={float(self.residuals.max()):.2e}, converged={self.converged})"
        )


def _tridiag_eig(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if alpha.size == 1:
        return alpha.copy(), np.ones((1, 1))
    return scipy.linalg.eigh_tridiagonal(alpha, beta, lapack_driver="stemr")


def lanczos_top(
    M: Any,
    k: int = 6,
    *,
    which: str = "LA",
    tol: float = 1e-10,
    max_steps: int | None = None,
    check_every: int = 5,
    seed: Any = 0,
    v0: Any = None,
    strict: bool = True,
    progress: bool | None = None,
) -> EigenResult:
    """The ``k`` largest (``which="LA"``) or smallest (``"SA"``) eigenpairs of a symmetric ``M``.

    Lanczos with full reorthogonalisation (classical Gram–Schmidt applied twice per step),
    one product ``M v`` per step; the basis (``n × steps`` float64) is kept. Every
    ``check_every`` steps the tridiagonal ``T_m`` is diagonalised and the run stops when
    the wanted Ritz pairs have ``|β_m s_mj| ≤ tol · max|θ|``. An invariant subspace found
    early is continued with a fresh random direction orthogonal to the basis, so the
    result is right even for ``M`` of low rank.

    Parameters
    ----------
    M
        Symmetric ``n × n`` matrix or :class:`~scipy.sparse.linalg.LinearOperator`
        (e.g. :func:`surrogate_operator`, :func:`deqfast.distributed.tiled_operator`).
    k
        Number of eigenpairs, ``1 ≤ k < n``.
    which
        ``"LA"`` (largest algebraic) or ``"SA"`` (smallest).
    tol
        Relative residual tolerance; the eigenvalue error is about ``residual² / gap``.
    max_steps
        Cap on the Lanczos steps (default ``min(n, max(20 k, 300))``); reaching it raises
        ``RuntimeError`` (or warns with ``strict=False``) quoting the residuals.
    check_every
        Steps between convergence checks.
    seed, v0
        Start vector: ``v0`` if given, else Gaussian from ``numpy.random.default_rng(seed)``.
    progress
        Show a progress bar over the steps (default ``None``: on a terminal).
    """
    op = _as_operator(M)
    n = op.shape[0]
    k = check_integer(k, "k", min_value=1, max_value=n - 1)
    which = check_choice(which, "which", _WHICH)
    tol = check_positive(tol, "tol")
    cap = (
        min(n, max(20 * k, 300))
        if max_steps is None
        else check_integer(max_steps, "max_steps", min_value=k, max_value=n)
    )
    check_every = check_integer(check_every, "check_every", min_value=1)
    rng = as_rng(seed)
    if v0 is None:
        q = rng.standard_normal(n)
    else:
        q = np.array(v0, dtype=np.float64).reshape(-1)
        if q.shape != (n,) or not np.all(np.isfinite(q)) or not np.any(q):
            raise ValueError(f"v0 must be a finite non-zero vector of length n = {n}")
    Q = np.empty((n, cap), order="F")  # columns contiguous: only the used ones are touched
    Q[:, 0] = q / np.linalg.norm(q)
    alpha = np.empty(cap)
    beta = np.zeros(cap)
    bar = progress_bar(progress, total=cap, desc=f"Lanczos ({which}, k={k})", unit="step")

    def wanted(theta: np.ndarray) -> np.ndarray:
        order = np.argsort(theta)
        return order[::-1][:k] if which == "LA" else order[:k]

    theta = S = idx = res = None
    m, scale, converged = 0, 0.0, False
    try:
        for j in range(cap):
            w = _matmat(op, Q[:, j : j + 1])[:, 0]
            alpha[j] = Q[:, j] @ w
            for _ in range(2):  # CGS2 against the whole basis (includes the 3-term recurrence)
                w -= Q[:, : j + 1] @ (Q[:, : j + 1].T @ w)
            b = float(np.linalg.norm(w))
            m = j + 1
            if bar is not None:
                bar.update(1)
            scale = max(scale, abs(float(alpha[j])), b)
            breakdown = b <= 1e-13 * max(scale, np.finfo(float).tiny)
            b_next = 0.0 if breakdown else b
            if m >= k and (m % check_every == 0 or m == cap or breakdown):
                theta, S = _tridiag_eig(alpha[:m], beta[1:m])
                idx = wanted(theta)
                res = np.abs(b_next * S[-1, idx])
                converged = bool(np.all(res <= tol * float(np.max(np.abs(theta)))))
                if converged:
                    break
            if m == cap:
                break
            if breakdown:
                # Invariant subspace: go on in its orthogonal complement (β = 0 there).
                w = rng.standard_normal(n)
                for _ in range(2):
                    w -= Q[:, :m] @ (Q[:, :m].T @ w)
                Q[:, m] = w / np.linalg.norm(w)
                beta[m] = 0.0
            else:
                Q[:, m] = w / b
                beta[m] = b
    finally:
        if bar is not None:
            bar.close()
    assert theta is not None and S is not None and idx is not None and res is not None
    big = float(np.max(np.abs(theta)))
    worst = float(np.max(res))
    relative = worst / big if big > 0 else (0.0 if worst == 0 else math.inf)
    if converged:
        msg = f"Lanczos converged in {m} steps (relative residual {relative:.2e} <= tol {tol:g})"
    else:
        msg = (
            f"Lanczos did not converge in {m} steps (max_steps={cap}): Ritz residuals "
            f"{np.array2string(res, precision=2)} > tol·max|θ| = {tol * big:.2e}; raise "
            "max_steps or tol, or ask for fewer eigenpairs"
        )
        if strict:
            raise RuntimeError(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    U = Q[:, :m] @ S[:, idx]
    return EigenResult(
        eigenvalues=np.asarray(theta[idx]),
        eigenvectors=U,
        residuals=np.asarray(res),
        iterations=m,
        converged=converged,
        status="converged" if converged else "max_iter",
        message=msg,
        residual=relative,
        tol=tol,
    )


# --------------------------------------------------------------------------- #
# stochastic Lanczos quadrature: spectral densities
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class SpectralDensity:
    """A discrete estimate ``Σ_k w_k δ_{x_k}`` of the spectral measure ``(1/n) Σ_i δ_{λ_i}``.

    From :func:`slq_density`: ``nodes`` are the Ritz values of every probe, ``weights``
    their Gauss weights divided by the number of probes (they sum to 1).

    Attributes
    ----------
    nodes, weights : ndarray
        Sorted nodes and their weights.
    n : int
        Matrix size (``n · weights`` estimates eigenvalue counts).
    probes, iterations : int
        Number of probe vectors and Lanczos steps per probe (a fixed count, not a
        convergence test: the estimate has no residual).
    reorthogonalized : bool
        Whether the Lanczos bases were fully reorthogonalised.
    """

    nodes: np.ndarray
    weights: np.ndarray
    n: int
    probes: int
    iterations: int
    reorthogonalized: bool

    steps = deprecated_alias("iterations", "steps")

    @property
    def support(self) -> tuple[float, float]:
        """Smallest and largest node (Ritz values lie inside ``[λ_min, λ_max]``)."""
        return float(self.nodes[0]), float(self.nodes[-1])

    def cdf(self, x: Any) -> np.ndarray:
        """Estimated fraction of eigenvalues ``≤ x``."""
        c = np.concatenate([[0.0], np.cumsum(self.weights)])
        return c[np.searchsorted(self.nodes, np.asarray(x, dtype=np.float64), side="right")]

    def count_above(self, x: float) -> float:
        """Estimated number of eigenvalues ``> x``."""
        return float(self.n * (1.0 - self.cdf(x)))

    def histogram(
        self, bins: Any = 50, range: tuple[float, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(density, edges)`` like ``numpy.histogram(..., density=True)``."""
        return np.histogram(self.nodes, bins=bins, range=range, weights=self.weights, density=True)

    def smooth(self, x: Any, width: float) -> np.ndarray:
        """Gaussian-smoothed density ``Σ_k w_k N(x; x_k, width²)`` at points ``x``."""
        width = check_positive(width, "width")
        x = np.asarray(x, dtype=np.float64)
        z = (x[..., None] - self.nodes) / width
        return (np.exp(-0.5 * z * z) @ self.weights) / (width * math.sqrt(2.0 * math.pi))

    def wasserstein(self, eigenvalues: Any) -> float:
        """1-Wasserstein distance to the empirical measure of ``eigenvalues``."""
        from scipy.stats import wasserstein_distance

        ev = np.asarray(eigenvalues, dtype=np.float64).reshape(-1)
        return float(wasserstein_distance(self.nodes, ev, u_weights=self.weights))

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes.tolist(),
            "weights": self.weights.tolist(),
            "n": self.n,
            "probes": self.probes,
            "iterations": self.iterations,
            "reorthogonalized": self.reorthogonalized,
        }

    def __repr__(self) -> str:
        lo, hi = self.support
        return (
            f"SpectralDensity(n={self.n}, probes={self.probes}, iterations={self.iterations}, "
            f"support=[{lo:.6g}, {hi:.6g}], reorthogonalized={self.reorthogonalized})"
        )


def slq_density(
    M: Any,
    *,
    probes: int = 16,
    steps: int = 60,
    seed: Any = 0,
    reorthogonalize: bool | None = None,
    max_basis_bytes: int = SLQ_BASIS_BYTES,
    progress: bool | None = None,
) -> SpectralDensity:
    """Stochastic Lanczos quadrature estimate of the spectral density of a symmetric ``M``.

    ``probes`` Rademacher vectors run ``steps`` Lanczos steps in lock-step (one
    ``M V`` product with ``V`` of shape ``(n, probes)`` per step). Each probe ``v``
    gives the Gauss rule ``Σ_k τ_k² δ_{θ_k}`` of its spectral measure
    ``Σ_i (u_iᵀ v)² δ_{λ_i}``, whose expectation is ``(1/n) Σ_i δ_{λ_i}``; the
    estimate is their average. The error of the cumulative distribution is about
    ``1/√(n · probes)`` (probe noise) plus the quadrature error, which falls fast with
    ``steps``.

    Parameters
    ----------
    M
        Symmetric matrix or :class:`~scipy.sparse.linalg.LinearOperator`.
    probes, steps
        Number of probe vectors and Lanczos steps (``steps ≤ n``).
    seed
        Probe generator (``numpy.random.default_rng``).
    reorthogonalize
        Keep each probe's basis and reorthogonalise fully (CGS2). Default: only when the
        bases fit in ``max_basis_bytes`` (``n · steps · probes · 8``); without it
        the plain three-term recurrence is used, which still gives an accurate
        quadrature (Ritz values that repeat after loss of orthogonality split their
        weight between copies) but the nodes are less clean.
    progress
        Show a progress bar over the steps (default ``None``: on a terminal).
    """
    op = _as_operator(M)
    n = op.shape[0]
    probes = check_integer(probes, "probes", min_value=1)
    steps = check_integer(steps, "steps", min_value=1, max_value=n)
    max_basis_bytes = check_integer(max_basis_bytes, "max_basis_bytes", min_value=0)
    if reorthogonalize is None:
        reorthogonalize = n * steps * probes * 8 <= max_basis_bytes
    reorth = bool(reorthogonalize)
    rng = as_rng(seed)
    V = rng.choice(np.array([-1.0, 1.0]), size=(n, probes)) / math.sqrt(n)
    Q = np.empty((steps, n, probes)) if reorth else None
    alpha = np.zeros((steps, probes))
    beta = np.zeros((steps, probes))  # beta[j] couples steps j and j + 1
    length = np.full(probes, steps)  # steps actually taken by each probe
    active = np.ones(probes, dtype=bool)
    V_prev = np.zeros_like(V)
    bar = progress_bar(progress, total=steps, desc=f"SLQ ({probes} probes)", unit="step")
    scale = 0.0
    try:
        for j in range(steps):
            if Q is not None:
                Q[j] = V
            W = _matmat(op, V)
            a = np.einsum("ij,ij->j", V, W)
            alpha[j] = np.where(active, a, 0.0)
            if Q is not None:
                for _ in range(2):
                    h = np.einsum("snc,nc->sc", Q[: j + 1], W)
                    W -= np.einsum("snc,sc->nc", Q[: j + 1], h)
            else:
                W -= V * a
                if j > 0:
                    W -= V_prev * beta[j - 1]
            b = np.linalg.norm(W, axis=0)
            scale = max(scale, float(np.max(np.abs(a))), float(np.max(b)))
            if bar is not None:
                bar.update(1)
            if j == steps - 1:
                break
            stop = active & (b <= 1e-12 * max(scale, np.finfo(float).tiny))
            length[stop] = j + 1  # invariant subspace: the rule is exact with j + 1 nodes
            active &= ~stop
            if not active.any():
                break
            beta[j] = np.where(active, b, 0.0)
            V_prev = V
            V = np.where(active, W / np.where(b > 0, b, 1.0), 0.0)
    finally:
        if bar is not None:
            bar.close()
    nodes, weights = [], []
    for c in range(probes):
        m = int(length[c])
        theta, S = _tridiag_eig(alpha[:m, c], beta[: m - 1, c])
        nodes.append(theta)
        weights.append(S[0] ** 2)
    x = np.concatenate(nodes)
    w = np.concatenate(weights) / probes
    order = np.argsort(x, kind="stable")
    x, w = x[order], w[order]
    w = w / w.sum()
    return SpectralDensity(
        nodes=x,
        weights=w,
        n=n,
        probes=probes,
        iterations=int(length.max()),
        reorthogonalized=reorth,
    )
