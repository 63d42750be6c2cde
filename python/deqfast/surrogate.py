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
    """
    X = as_data_matrix(X, "X")
    n, p = X.shape
    if stats.n != n or stats.p != p:
        raise ValueError(
            f"stats describe n={stats.n}, p={stats.p} samples but X has shape {X.shape}"
        )
    V, A = low_rank_factors(stats, coef)
    M = X @ X.T
    M *= coef.c1
    M += (V @ A) @ V.T
    M[np.diag_indices(n)] += coef.d - coef.c1 * stats.tau0**2
    return M
