"""Random-matrix surrogates of GMM-structured kernels (:ref:`§4 <theory-4>`).

    M̄(d, c1, c2, c3) = c1 XXᵀ + V A Vᵀ + (d − c1 τ0²) I
    V = [J/√p, ψ],   A = [[c2 t tᵀ + c3 T, c2 t], [c2 tᵀ, c2]]

One builder serves every kernel (``S̄``, ``Ḡ``, ``K̄``, ``Θ̄`` and explicit nets'):
only the coefficients change. :func:`surrogate_matrix` forms ``M̄`` densely;
:func:`surrogate_operator` gives the same ``M̄`` as a matrix-free
:class:`SurrogateOperator` (products in ``O(np)``) for the spectra of
:mod:`deqfast.linalg` at any ``n``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse.linalg as spla

from deqfast._stats import check_stats
from deqfast._validation import as_data_matrix
from deqfast._vocabulary import check_kernel, renamed_keywords
from deqfast.coefficients import KernelCoefficients
from deqfast.data import MixtureStats

__all__ = ["SurrogateOperator", "low_rank_factors", "surrogate_matrix", "surrogate_operator"]


def low_rank_factors(
    stats: MixtureStats, coef: KernelCoefficients
) -> tuple[np.ndarray, np.ndarray]:
    """``V`` (n × (K+1)) and ``A`` ((K+1) × (K+1)) of the surrogate's low-rank part."""
    p = stats.p
    V = np.hstack([stats.J / np.sqrt(p), stats.psi[:, None]])
    t = np.asarray(stats.t, dtype=np.float64)[:, None]
    K = t.shape[0]
    A = np.empty((K + 1, K + 1))
    A[:K, :K] = coef.c2 * (t @ t.T) + coef.c3 * np.asarray(stats.T)
    A[:K, K:] = coef.c2 * t
    A[K:, :K] = coef.c2 * t.T
    A[K, K] = coef.c2
    return V, A


def surrogate_matrix(
    X: Any, stats: MixtureStats, coef: KernelCoefficients, *, gram: np.ndarray | None = None
) -> np.ndarray:
    """Dense ``M̄(d, c1, c2, c3)`` of :ref:`§4 <theory-4>` for data ``X`` (n, p), in ``O(n² p)``
    (``O(n²)`` with ``gram``).

    Parameters
    ----------
    X
        Data, rows are samples, normalised as ``x = (μ_a + z)/√p``.
    stats
        Mixture statistics of the same samples (``τ0, t, T, ψ, labels``).
    coef
        Surrogate coefficients, e.g. ``DEQ.coefficients("ck")``.
    gram : ndarray, shape (n, n), optional
        ``X Xᵀ`` when the caller already has it (the surrogates of several models on the
        same data share it): used as given, not recomputed, so it must be that product.

    Raises
    ------
    ValueError
        If ``gram`` is not a float64 ``(n, n)`` array, if ``X`` is invalid (see
        :func:`deqfast._validation.as_data_matrix`: NaN/inf, or row norms outside
        ``[1.49e-154, 1.34e154]``), does not match ``stats``, or the matrix overflows
        float64 (data far from the ``‖x_i‖² ≈ τ0²`` scale of :ref:`§1 <theory-1>`):
        never a non-finite entry.
    """
    X = as_data_matrix(X, "X")
    n, p = X.shape
    if stats.n != n or stats.p != p:
        raise ValueError(
            f"stats describe n={stats.n}, p={stats.p} samples but X has shape {X.shape}"
        )
    if gram is not None and (
        not isinstance(gram, np.ndarray) or gram.dtype != np.float64 or gram.shape != (n, n)
    ):
        raise ValueError(
            f"gram must be X @ X.T, a float64 array of shape {(n, n)}; got "
            f"{getattr(gram, 'dtype', type(gram).__name__)} of shape {np.shape(gram)}"
        )
    V, A = low_rank_factors(stats, coef)
    with np.errstate(over="ignore", invalid="ignore"):
        if gram is None:
            M = X @ X.T
            M *= coef.c1
        else:
            M = coef.c1 * gram
        M += (V @ A) @ V.T
        M[np.diag_indices(n)] += coef.d - coef.c1 * stats.tau0**2
    if not np.all(np.isfinite(M)):
        peak = float(np.sqrt(np.max(np.einsum("ij,ij->i", X, X))))  # finite: as_data_matrix
        raise ValueError(
            f"the surrogate overflows float64 for this data (largest ‖x_i‖ = {peak:.3g}, "
            f"c1 = {coef.c1:.3g}, tau0 = {stats.tau0:.3g}); rescale X to ‖x_i‖² of order 1 "
            "(§1 of the theory page)"
        )
    return M


def _check_data(X: Any, name: str = "X") -> np.ndarray:
    """A float32/float64 ``(n, p)`` array, kept as is (no copy) when already contiguous."""
    if isinstance(X, np.ndarray) and X.dtype in (np.float32, np.float64) and X.ndim == 2:
        if not (X.flags.c_contiguous or X.flags.f_contiguous):
            X = np.ascontiguousarray(X)
        n, p = X.shape
        if n == 0 or p == 0:
            raise ValueError(f"{name} must be non-empty; got shape {X.shape}")
        step = max(1, (1 << 24) // p)  # finiteness check in 16M-entry slices: no n × p mask
        for r in range(0, n, step):
            if not np.all(np.isfinite(X[r : r + step])):
                raise ValueError(f"{name} must be finite; found NaN/inf in rows {r}..{r + step}")
        return X
    return as_data_matrix(X, name)


class SurrogateOperator(spla.LinearOperator):
    """``M̄ = c1 XXᵀ + V A Vᵀ + (d − c1 τ0²) I`` as a matrix-free operator (:ref:`§4 <theory-4>`).

    ``M̄ W = c1 X (Xᵀ W) + V (A (Vᵀ W)) + (d − c1 τ0²) W`` costs ``O(n p k)`` for
    ``W`` of shape ``(n, k)``; memory is ``X`` (kept in its own dtype: a float32 ``X``
    is used in single precision for the ``XXᵀ`` part, everything else in float64)
    plus ``O(n (K + 1 + k))``. Build with :func:`surrogate_operator`.
    """

    def __init__(
        self, X: np.ndarray, c1: float, V: np.ndarray, A: np.ndarray, shift: float
    ) -> None:
        n = X.shape[0]
        super().__init__(dtype=np.dtype(np.float64), shape=(n, n))
        self.X = X
        self.c1 = float(c1)
        self.V = np.ascontiguousarray(V, dtype=np.float64)
        self.A = np.ascontiguousarray(A, dtype=np.float64)
        self.shift = float(shift)

    def _matmat(self, W: np.ndarray) -> np.ndarray:
        W = np.asarray(W)
        if W.ndim == 1:
            W = W[:, None]
        W64 = np.asarray(W, dtype=np.float64)
        Wx = np.asarray(W64, dtype=self.X.dtype)
        out = np.asarray(self.X @ (self.X.T @ Wx), dtype=np.float64)
        out *= self.c1
        out += self.V @ (self.A @ (self.V.T @ W64))
        out += self.shift * W64
        return out

    def _matvec(self, w: np.ndarray) -> np.ndarray:
        return self._matmat(np.asarray(w).reshape(-1, 1)).reshape(-1)

    def _rmatmat(self, W: np.ndarray) -> np.ndarray:
        return self._matmat(W)

    def _rmatvec(self, w: np.ndarray) -> np.ndarray:
        return self._matvec(w)

    def _adjoint(self) -> SurrogateOperator:
        return self

    def to_dense(self) -> np.ndarray:
        """The ``n × n`` matrix (small ``n`` only: for checks)."""
        X = np.asarray(self.X, dtype=np.float64)
        M = self.c1 * (X @ X.T) + (self.V @ self.A) @ self.V.T
        M[np.diag_indices_from(M)] += self.shift
        return M

    def __repr__(self) -> str:
        n, p = self.X.shape
        return (
            f"SurrogateOperator(n={n}, p={p}, rank={self.V.shape[1]}+{p}, c1={self.c1:.6g}, "
            f"shift={self.shift:.6g}, X dtype={self.X.dtype})"
        )


@renamed_keywords(kind="kernel")
def surrogate_operator(
    deq: Any, X: Any, stats: MixtureStats, *, kernel: str = "ck", trained: str = "hidden"
) -> SurrogateOperator:
    """The surrogate of a DEQ kernel as a matrix-free :class:`SurrogateOperator`.

    ``M̄`` of :ref:`§4 <theory-4>` with the DEQ's coefficients of ``kernel``.

    Parameters
    ----------
    deq
        A :class:`deqfast.DEQ` built with ``tau0=stats.tau0``.
    X
        Data ``(n, p)``; a float32 or float64 NumPy array is used without a copy (so an
        ``X`` of several GB can be used as long as it fits in memory once).
    stats
        :class:`deqfast.MixtureStats` of the same samples.
    kernel, trained
        ``"pre"`` (``S̄``), ``"ck"`` (``Ḡ``) or ``"ntk"``: ``K̄`` with ``trained="hidden"``,
        ``Θ̄`` with ``trained="all"``.

    Examples
    --------
    >>> import deqfast as df
    >>> from deqfast.linalg import surrogate_operator, lanczos_top
    >>> mix = df.GaussianMixture.paper(64)
    >>> s = mix.sample(200, seed=0)
    >>> deq = df.DEQ("relu", tau0=s.stats.tau0)
    >>> op = surrogate_operator(deq, s.X, s.stats)
    >>> lanczos_top(op, 2).eigenvalues.shape
    (2,)
    """
    kernel, trained = check_kernel(kernel, trained)
    stats = check_stats(stats, deq.equilibrium().tau0, "DEQ")
    Xa = _check_data(X)
    n, p = Xa.shape
    if stats.n != n or stats.p != p:
        raise ValueError(
            f"stats describe n={stats.n}, p={stats.p} samples but X has shape {Xa.shape}"
        )
    coef = deq.coefficients(kernel, trained=trained)
    V, A = low_rank_factors(stats, coef)
    return SurrogateOperator(Xa, coef.c1, V, A, coef.d - coef.c1 * stats.tau0**2)
