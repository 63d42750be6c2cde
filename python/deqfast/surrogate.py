"""Random-matrix surrogates of GMM-structured kernels (THEORY.md §4).

    M̄(d, c1, c2, c3) = c1 XXᵀ + V A Vᵀ + (d − c1 τ0²) I
    V = [J/√p, ψ],   A = [[c2 t tᵀ + c3 T, c2 t], [c2 tᵀ, c2]]

One builder serves every kernel (``S̄``, ``Ḡ``, ``K̄``, ``Θ̄`` and explicit nets'):
only the coefficients change.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deqfast._validation import as_data_matrix
from deqfast.coefficients import KernelCoefficients
from deqfast.data import MixtureStats

__all__ = ["low_rank_factors", "surrogate_matrix"]


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


def surrogate_matrix(X: Any, stats: MixtureStats, coef: KernelCoefficients) -> np.ndarray:
    """Dense ``M̄(d, c1, c2, c3)`` of THEORY.md §4 for data ``X`` (n, p), in ``O(n² p)``.

    Parameters
    ----------
    X
        Data, rows are samples, normalised as ``x = (μ_a + z)/√p``.
    stats
        Mixture statistics of the same samples (``τ0, t, T, ψ, labels``).
    coef
        Surrogate coefficients, e.g. ``DEQ.coefficients("ck")``.

    Raises
    ------
    ValueError
        If ``X`` is invalid (see :func:`deqfast._validation.as_data_matrix`:
        NaN/inf, or row norms outside ``[1.49e-154, 1.34e154]``), does not
        match ``stats``, or the matrix overflows float64 (data far from the
        ``‖x_i‖² ≈ τ0²`` scale of THEORY.md §1): never a non-finite entry.
    """
    X = as_data_matrix(X, "X")
    n, p = X.shape
    if stats.n != n or stats.p != p:
        raise ValueError(
            f"stats describe n={stats.n}, p={stats.p} samples but X has shape {X.shape}"
        )
    V, A = low_rank_factors(stats, coef)
    with np.errstate(over="ignore", invalid="ignore"):
        M = X @ X.T
        M *= coef.c1
        M += (V @ A) @ V.T
        M[np.diag_indices(n)] += coef.d - coef.c1 * stats.tau0**2
    if not np.all(np.isfinite(M)):
        peak = float(np.sqrt(np.max(np.einsum("ij,ij->i", X, X))))  # finite: as_data_matrix
        raise ValueError(
            f"the surrogate overflows float64 for this data (largest ‖x_i‖ = {peak:.3g}, "
            f"c1 = {coef.c1:.3g}, tau0 = {stats.tau0:.3g}); rescale X to ‖x_i‖² of order 1 "
            "(THEORY.md §1)"
        )
    return M
