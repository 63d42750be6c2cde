"""K-class Gaussian mixtures in the high-dimensional regime (:ref:`§1 <theory-1>`).

A sample is ``x_i = (μ_a + z_i)/√p`` with ``z_i ~ N(0, C_a)`` for ``i`` in class
``a``.  The surrogate kernels of :ref:`§4 <theory-4>` depend on the data only through a
handful of statistics, collected in :class:`MixtureStats`:

========  ==============================================================
``tau0``  ``τ0 = sqrt(tr(C̄)/p)``, ``C̄ = Σ_a c_a C_a``
``t``     ``t_a = √p (tr(C_a)/p − τ0²)``
``T``     ``T_ab = tr(C_a C_b)/p`` (the covariances themselves, not
          ``C_a − C̄``; :ref:`§4 <theory-4>` explains why)
``psi``   ``ψ_i = ‖ω_i‖² − tr(C_a)/p``, ``ω_i = z_i/√p``
``J``     the ``n × K`` class indicator matrix
========  ==============================================================

:class:`GaussianMixture` holds the population model, draws :class:`Sample`
objects and computes the population statistics; :meth:`MixtureStats.from_data`
estimates the same statistics from labelled data.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np

from deqfast._stats import _PRIOR_SUM_TOL, MixtureStats, _fmt, _readonly
from deqfast._validation import as_data_matrix, as_finite_array, as_rng, check_integer

__all__ = ["CovKind", "GaussianMixture", "LabelledRows", "MixtureStats", "Sample"]

CovKind = Literal["full", "diag", "scalar"]


def _largest_remainder(n: int, priors: np.ndarray) -> np.ndarray:
    """Integer counts summing to ``n`` closest to ``n * priors`` (Hamilton's method).

    Ties in the fractional parts go to the lower class index.
    """
    quotas = n * priors
    counts = np.floor(quotas).astype(np.int64)
    frac = quotas - counts
    short = n - int(counts.sum())
    order = np.argsort(-frac, kind="stable")
    if short > 0:
        counts[order[:short]] += 1
    elif short < 0:  # only possible through rounding of priors summing to 1 + eps
        for a in order[::-1][:-short]:
            counts[a] -= 1
    return counts


class LabelledRows:
    """Labelled samples as the rows of ``X`` with their :class:`MixtureStats`: the sizes
    shared by :class:`Sample` and :class:`deqfast.datasets.Dataset`."""

    X: np.ndarray
    labels: np.ndarray
    stats: MixtureStats

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.X.shape[0])

    @property
    def p(self) -> int:
        """Dimension."""
        return int(self.X.shape[1])

    @property
    def K(self) -> int:
        """Number of classes."""
        return self.stats.K

    @property
    def class_counts(self) -> np.ndarray:
        """Number of samples per class, int64 of shape ``(K,)``."""
        return self.stats.class_counts


# --------------------------------------------------------------------------- #
# Sample
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Sample(LabelledRows):
    """A draw from a :class:`GaussianMixture` (:ref:`§1 <theory-1>`).

    Attributes
    ----------
    X : ndarray, shape (n, p)
        ``x_i = (μ_a + z_i)/√p``, one sample per row, ordered by class.
    labels : ndarray of int64, shape (n,)
        Class of each row (non-decreasing).
    stats : MixtureStats
        Population ``τ0, t, T`` of the mixture with ``ψ`` from the actual draws.
    mixture : GaussianMixture
        The mixture the sample was drawn from.
    """

    X: np.ndarray
    labels: np.ndarray
    stats: MixtureStats
    mixture: GaussianMixture

    def __post_init__(self) -> None:
        X = as_data_matrix(self.X, "X")
        labels = np.asarray(self.labels)
        if labels.shape != (X.shape[0],):
            raise ValueError(
                f"labels must have shape ({X.shape[0]},) to match X; got {labels.shape}"
            )
        if not isinstance(self.stats, MixtureStats):
            raise TypeError(f"stats must be a MixtureStats; got {type(self.stats).__name__}")
        if self.stats.n != X.shape[0] or self.stats.p != X.shape[1]:
            raise ValueError(
                f"stats (n={self.stats.n}, p={self.stats.p}) do not match X of shape {X.shape}"
            )
        object.__setattr__(self, "X", _readonly(X))
        object.__setattr__(self, "labels", _readonly(labels.astype(np.int64)))

    def __repr__(self) -> str:
        return (
            f"Sample(n={self.n}, p={self.p}, K={self.K}, "
            f"class_counts={self.class_counts.tolist()}, X=<{self.X.dtype} {self.X.shape}>)"
        )


# --------------------------------------------------------------------------- #
# GaussianMixture
# --------------------------------------------------------------------------- #
class GaussianMixture:
    """K-class Gaussian mixture ``x = (μ_a + z)/√p``, ``z ~ N(0, C_a)`` (:ref:`§1 <theory-1>`).

    Parameters
    ----------
    means : array_like, shape (K, p)
        Class means ``μ_a`` (on the ``z`` scale, i.e. before division by √p).
    covs : array_like, shape (K, p, p), (K, p) or (K,)
        Class covariances ``C_a``: full symmetric positive semi-definite
        matrices, diagonals (non-negative), or non-negative scalars times the
        identity.  Diagonal and scalar covariances are stored as given (no
        ``p × p`` matrix is built).
    priors : array_like, shape (K,), optional
        Class priors ``c_a``, positive and summing to 1 (within 1e-8; they
        are then renormalised).  Default: uniform.

    Raises
    ------
    TypeError
        If an argument is not real numeric.
    ValueError
        If ``K < 2``, shapes disagree, values are not finite, a covariance is
        not symmetric PSD (or a diagonal/scalar is negative), all covariances
        are zero, or the priors are not positive / do not sum to 1.

    Examples
    --------
    >>> gm = GaussianMixture.paper(64)
    >>> s = gm.sample(50, seed=0)
    >>> s.X.shape, s.class_counts.tolist()
    ((50, 64), [25, 25])
    """

    __slots__ = ("_covs", "_factors", "_kind", "_means", "_near_singular", "_priors")

    def __init__(self, means: Any, covs: Any, priors: Any = None) -> None:
        M = as_finite_array(means, "means")
        if M.ndim != 2:
            raise ValueError(f"means must be 2-D with shape (K, p); got shape {M.shape}")
        K, p = M.shape
        if K < 2:
            raise ValueError(
                f"means must describe at least K = 2 classes (the theory of §1 of the theory page "
                f"needs K >= 2 classes to separate); got K = {K}"
            )
        if p < 1:
            raise ValueError(f"means must have p >= 1 columns; got shape {M.shape}")

        C = as_finite_array(covs, "covs")
        kind: CovKind
        near_singular: list[bool] = []
        if C.ndim == 1:
            kind = "scalar"
            if C.shape != (K,):
                raise ValueError(f"scalar covs must have shape (K,) = ({K},); got {C.shape}")
            if np.any(C < 0):
                raise ValueError(f"scalar covs must be in [0, inf); got {_fmt(C)}")
        elif C.ndim == 2:
            kind = "diag"
            if C.shape != (K, p):
                raise ValueError(
                    f"diagonal covs must have shape (K, p) = ({K}, {p}); got {C.shape}"
                )
            if np.any(C < 0):
                bad = np.argwhere(C < 0)[0]
                raise ValueError(
                    f"diagonal covs must be in [0, inf); covs[{bad[0]}, {bad[1]}] = {C[tuple(bad)]}"
                )
        elif C.ndim == 3:
            kind = "full"
            if C.shape != (K, p, p):
                raise ValueError(
                    f"full covs must have shape (K, p, p) = ({K}, {p}, {p}); got {C.shape}"
                )
            C = C.copy()
            for a in range(K):
                Ca = C[a]
                scale = max(1.0, float(np.abs(Ca).max()))
                if not np.allclose(Ca, Ca.T, rtol=0.0, atol=1e-10 * scale):
                    raise ValueError(f"covs[{a}] must be symmetric")
                Ca = 0.5 * (Ca + Ca.T)
                w = np.linalg.eigvalsh(Ca)
                tol = 100 * p * np.finfo(np.float64).eps * max(1.0, float(np.abs(w).max()))
                if w[0] < -tol:
                    raise ValueError(
                        f"covs[{a}] must be positive semi-definite; smallest eigenvalue {w[0]:.3g}"
                    )
                C[a] = Ca
                near_singular.append(bool(w[0] <= 1e-10 * max(float(w[-1]), 0.0)))
        else:
            raise ValueError(f"covs must have shape (K, p, p), (K, p) or (K,); got shape {C.shape}")

        if priors is None:
            P = np.full(K, 1.0 / K)
        else:
            P = as_finite_array(priors, "priors")
            if P.shape != (K,):
                raise ValueError(f"priors must have shape (K,) = ({K},); got {P.shape}")
            if np.any(P <= 0):
                raise ValueError(f"priors must all be in (0, 1]; got {_fmt(P)}")
            if abs(P.sum() - 1.0) > _PRIOR_SUM_TOL:
                raise ValueError(f"priors must sum to 1; got sum {P.sum()!r}")
            P = P / P.sum()

        self._means = _readonly(M)
        self._covs = _readonly(C)
        self._kind: CovKind = kind
        self._priors = _readonly(P)
        self._factors: dict[int, np.ndarray] = {}
        self._near_singular = tuple(near_singular) if kind == "full" else ()
        if not self.tau0 > 0:
            raise ValueError("covs must not all be zero (tau0 = sqrt(tr(C̄)/p) must be > 0)")

    # ------------------------------------------------------------------ #
    @classmethod
    def paper(cls, p: int) -> GaussianMixture:
        """The authors' two-class mixture (:ref:`§5 <theory-5>` intro).

        Priors ``1/2`` each, ``μ_a = 8 e_{8a}`` (class 0: 8 at coordinate 0;
        class 1: 8 at coordinate 8) and ``C_a = (1 + 8a/√p) I`` (scalar
        covariances ``1`` and ``1 + 8/√p``).  Then ``τ0² = 1 + 4/√p``,
        ``t = (−4, 4)`` and ``T = [[1, 1 + 8/√p], [1 + 8/√p, (1 + 8/√p)²]]``.

        Parameters
        ----------
        p : int
            Dimension, at least 9 (coordinate 8 must exist).
        """
        p = check_integer(p, "p", min_value=9)
        means = np.zeros((2, p))
        means[0, 0] = 8.0
        means[1, 8] = 8.0
        covs = np.array([1.0, 1.0 + 8.0 / np.sqrt(p)])
        return cls(means, covs, priors=[0.5, 0.5])

    # ------------------------------------------------------------------ #
    @property
    def K(self) -> int:
        """Number of classes."""
        return int(self._means.shape[0])

    @property
    def p(self) -> int:
        """Dimension."""
        return int(self._means.shape[1])

    @property
    def priors(self) -> np.ndarray:
        """Class priors ``c_a``, shape ``(K,)`` (read-only)."""
        return self._priors

    @property
    def means(self) -> np.ndarray:
        """Class means ``μ_a``, shape ``(K, p)`` (read-only)."""
        return self._means

    @property
    def covs(self) -> np.ndarray:
        """Covariances as stored: ``(K, p, p)``, ``(K, p)`` or ``(K,)`` (see :attr:`cov_kind`)."""
        return self._covs

    @property
    def cov_kind(self) -> CovKind:
        """``"full"``, ``"diag"`` or ``"scalar"``."""
        return self._kind

    def covariance(self, a: int) -> np.ndarray:
        """Dense ``p × p`` covariance ``C_a`` of class ``a`` (builds it for diag/scalar)."""
        a = check_integer(a, "a", min_value=0, max_value=self.K - 1)
        if self._kind == "full":
            return np.array(self._covs[a])
        if self._kind == "diag":
            return np.diag(self._covs[a])
        return float(self._covs[a]) * np.eye(self.p)

    @property
    def trace_ratios(self) -> np.ndarray:
        """``tr(C_a)/p`` for each class, shape ``(K,)``."""
        C = self._covs
        if self._kind == "scalar":
            return np.array(C, dtype=np.float64)
        if self._kind == "diag":
            return C.mean(axis=1)
        return np.trace(C, axis1=1, axis2=2) / self.p

    @property
    def tau0(self) -> float:
        """``τ0 = sqrt(tr(C̄)/p)`` with ``C̄ = Σ_a c_a C_a``."""
        return float(np.sqrt(self._priors @ self.trace_ratios))

    @property
    def t(self) -> np.ndarray:
        """``t_a = √p (tr(C_a)/p − τ0²)``, shape ``(K,)``."""
        tr = self.trace_ratios
        return np.sqrt(self.p) * (tr - self._priors @ tr)

    @property
    def T(self) -> np.ndarray:
        """``T_ab = tr(C_a C_b)/p``, shape ``(K, K)`` (:ref:`§4 <theory-4>`: not centred)."""
        C = self._covs
        if self._kind == "scalar":
            return np.outer(C, C)
        if self._kind == "diag":
            return (C @ C.T) / self.p
        flat = C.reshape(self.K, -1)  # symmetric, so tr(C_a C_b) = <C_a, C_b>_F
        return (flat @ flat.T) / self.p

    def class_counts(self, n: int) -> np.ndarray:
        """Deterministic class sizes for ``n`` samples: largest-remainder rounding of ``n c_a``.

        Ties in the fractional parts go to the lower class index.  Counts may
        be zero; :meth:`sample` rejects that.
        """
        n = check_integer(n, "n", min_value=1)
        return _largest_remainder(n, self._priors)

    # ------------------------------------------------------------------ #
    def _factor(self, a: int) -> np.ndarray:
        """``L`` with ``L Lᵀ = C_a``.

        Cholesky for well-conditioned ``C_a``; ``V √w`` from ``eigh`` when ``C_a``
        is (numerically) singular, with round-off eigenvalues set to 0 so that
        null directions get exactly no noise.
        """
        if a not in self._factors:
            Ca = self._covs[a]
            L = None
            if not self._near_singular[a]:
                try:
                    L = np.linalg.cholesky(Ca)
                except np.linalg.LinAlgError:
                    L = None
            if L is None:
                w, V = np.linalg.eigh(Ca)
                tol = 100 * self.p * np.finfo(np.float64).eps * max(float(np.abs(w).max()), 1e-300)
                L = V * np.sqrt(np.where(w > tol, w, 0.0))
            self._factors[a] = L
        return self._factors[a]

    def sample(self, n: int, *, seed: Any = None) -> Sample:
        """Draw ``n`` samples ``x_i = (μ_a + z_i)/√p`` (:ref:`§1 <theory-1>`).

        Parameters
        ----------
        n : int
            Number of samples.  Class sizes are deterministic,
            ``n_a`` = largest-remainder rounding of ``n c_a``
            (:meth:`class_counts`); every class must get at least one sample.
        seed : None, int or numpy.random.Generator, optional
            Passed to ``np.random.default_rng`` (a ``Generator`` is used
            directly).  For each class ``a = 0..K-1`` in turn, an
            ``(n_a, p)`` block of ``standard_normal`` draws ``g`` is taken and
            ``z = g Lᵀ`` with ``L Lᵀ = C_a`` (Cholesky, or an eigendecomposition
            for singular PSD ``C_a``); ``z = g √diag`` for diagonal and
            ``z = √s g`` for scalar covariances.

        Returns
        -------
        Sample
            Rows ordered by class (class 0 first).  ``sample.stats`` holds the
            population ``τ0, t, T`` and ``ψ_i = ‖z_i‖²/p − tr(C_a)/p`` of the
            actual draws.

        Raises
        ------
        TypeError
            If ``n`` is not an integer or ``seed`` has a wrong type.
        ValueError
            If ``n < 1`` or some class would get no sample.
        """
        n = check_integer(n, "n", min_value=1)
        counts = _largest_remainder(n, self._priors)
        if counts.min() < 1:
            empty = [a for a in range(self.K) if counts[a] < 1]
            raise ValueError(
                f"n = {n} is too small: class(es) {empty} (priors {_fmt(self._priors[empty])}) "
                f"would get no sample; every one of the K = {self.K} classes needs n_a >= 1"
            )
        rng = as_rng(seed, "seed")
        p = self.p
        tr = self.trace_ratios
        X = np.empty((n, p))
        psi = np.empty(n)
        labels = np.repeat(np.arange(self.K, dtype=np.int64), counts)
        start = 0
        for a in range(self.K):
            na = int(counts[a])
            g = rng.standard_normal((na, p))
            if self._kind == "scalar":
                z = np.sqrt(self._covs[a]) * g
            elif self._kind == "diag":
                z = g * np.sqrt(self._covs[a])
            else:
                z = g @ self._factor(a).T
            block = slice(start, start + na)
            psi[block] = np.einsum("ij,ij->i", z, z) / p - tr[a]
            X[block] = (self._means[a] + z) / np.sqrt(p)
            start += na
        stats = self._population_stats(psi, labels)
        return Sample(X=X, labels=labels, stats=stats, mixture=self)

    def _population_stats(self, psi: np.ndarray, labels: np.ndarray) -> MixtureStats:
        return MixtureStats(
            tau0=self.tau0,
            t=self.t,
            T=self.T,
            psi=psi,
            labels=labels,
            p=self.p,
            priors=self._priors,
        )

    def stats(self, sample: Sample) -> MixtureStats:
        """Population statistics for ``sample`` (:ref:`§1 <theory-1>`).

        ``τ0² = tr(C̄)/p``, ``t_a = √p (tr(C_a)/p − τ0²)``,
        ``T_ab = tr(C_a C_b)/p`` from the mixture (traces computed per
        covariance kind, never forming ``p × p`` products for diag/scalar);
        ``ψ`` and labels from the sample's actual draws.

        Raises
        ------
        TypeError
            If ``sample`` is not a :class:`Sample`.
        ValueError
            If ``sample`` was drawn from a different mixture (its ``ψ`` refers
            to that mixture's covariances).
        """
        if not isinstance(sample, Sample):
            raise TypeError(f"sample must be a Sample; got {type(sample).__name__}")
        if sample.mixture is not self and sample.mixture != self:
            raise ValueError("sample was drawn from a different GaussianMixture")
        return self._population_stats(sample.stats.psi, sample.labels)

    # ------------------------------------------------------------------ #
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GaussianMixture):
            return NotImplemented
        return (
            self._kind == other._kind
            and np.array_equal(self._means, other._means)
            and np.array_equal(self._covs, other._covs)
            and np.array_equal(self._priors, other._priors)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"GaussianMixture(K={self.K}, p={self.p}, cov_kind={self._kind!r}, "
            f"priors={_fmt(self._priors)}, tau0={self.tau0:.6g})"
        )
