"""Statistics of labelled data that the surrogate kernels depend on (:ref:`§1 <theory-1>`).

:class:`MixtureStats` (exported by :mod:`deqfast.data`, documented there) and the check
that a model and a set of statistics share their input scale ``τ0``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from deqfast._shared import exported_from, set_frozen
from deqfast._validation import (
    as_data_matrix,
    as_finite_array,
    as_labels,
    check_integer,
)

_PRIOR_SUM_TOL = 1e-8

#: ``from_data`` refuses a class whose within-class spread ``sqrt(tr(Ĉ_a)/p)`` is
#: below this fraction of its rows' RMS norm (rounding leaves ~1e-16).
_DEGENERATE_SPREAD = 1e-10


def _fmt(arr: np.ndarray) -> str:
    """Compact one-line rendering of a small array for reprs."""
    text = np.array2string(
        np.asarray(arr), precision=4, suppress_small=True, separator=", ", max_line_width=10**6
    )
    return " ".join(text.split())


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr = np.array(arr, copy=True, order="C")
    arr.setflags(write=False)
    return arr


# --------------------------------------------------------------------------- #
# MixtureStats
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
@exported_from("deqfast.data")
class MixtureStats:
    """Statistics of a labelled data set used by the surrogate kernels.

    See :ref:`§1 <theory-1>` and :ref:`§4 <theory-4>`.

    Parameters
    ----------
    tau0 : float
        ``τ0 = sqrt(tr(C̄)/p) > 0``; every ``‖x_i‖²`` concentrates around ``τ0²``.
    t : ndarray, shape (K,)
        ``t_a = √p (tr(C_a)/p − τ0²)``.
    T : ndarray, shape (K, K)
        ``T_ab = tr(C_a C_b)/p`` (symmetric).
    psi : ndarray, shape (n,)
        ``ψ_i = ‖ω_i‖² − tr(C_a)/p`` per sample.
    labels : ndarray of int, shape (n,)
        Class of each sample, in ``0..K-1``.
    p : int
        Dimension of the data.
    priors : ndarray, shape (K,)
        Class proportions ``c_a`` (positive, summing to 1) used in ``C̄``.

    Notes
    -----
    All arrays are stored as read-only copies.  Equality is identity (the
    fields are arrays).  ``K = 1`` is accepted by the container, although the
    theory and :meth:`from_data` need ``K >= 2``.
    """

    tau0: float
    t: np.ndarray
    T: np.ndarray
    psi: np.ndarray
    labels: np.ndarray
    p: int
    priors: np.ndarray

    def __post_init__(self) -> None:
        p = check_integer(self.p, "p", min_value=1)
        try:
            tau0 = float(self.tau0)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"tau0 must be a real number; got {self.tau0!r}") from exc
        if not np.isfinite(tau0) or tau0 <= 0:
            raise ValueError(f"tau0 must be finite and in (0, inf); got {tau0}")
        t = as_finite_array(self.t, "t", ndim=1)
        K = t.shape[0]
        if K < 1:
            raise ValueError("t must have at least one entry (one per class)")
        T = as_finite_array(self.T, "T", shape=(K, K))
        scale = max(1.0, float(np.abs(T).max()))
        if not np.allclose(T, T.T, rtol=0.0, atol=1e-10 * scale):
            raise ValueError("T must be symmetric (T_ab = tr(C_a C_b)/p)")
        T = 0.5 * (T + T.T)
        priors = as_finite_array(self.priors, "priors", shape=(K,))
        if np.any(priors <= 0):
            raise ValueError(f"priors must all be in (0, 1]; got {_fmt(priors)}")
        if abs(priors.sum() - 1.0) > _PRIOR_SUM_TOL:
            raise ValueError(f"priors must sum to 1; got sum {priors.sum()!r}")
        psi = as_finite_array(self.psi, "psi", ndim=1)
        n = psi.shape[0]
        if n < 1:
            raise ValueError("psi must have at least one entry (one per sample)")
        labels = np.asarray(self.labels)
        if labels.dtype.kind not in "iu":
            raise TypeError(f"labels must be an integer array of class codes; got {labels.dtype}")
        if labels.shape != (n,):
            raise ValueError(
                f"labels must have shape ({n},) to match psi; got shape {labels.shape}"
            )
        if labels.min() < 0 or labels.max() >= K:
            raise ValueError(
                f"labels must lie in 0..{K - 1} (K = {K} from t); "
                f"got range {labels.min()}..{labels.max()}"
            )
        set_frozen(
            self, tau0=tau0, p=p, t=_readonly(t), T=_readonly(T), priors=_readonly(priors),
            psi=_readonly(psi), labels=_readonly(labels.astype(np.int64)),
        )  # fmt: skip

    # ------------------------------------------------------------------ #
    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.psi.shape[0])

    @property
    def K(self) -> int:
        """Number of classes."""
        return int(self.t.shape[0])

    @property
    def J(self) -> np.ndarray:
        """Class indicator matrix, float64 of shape ``(n, K)``: ``J[i, a] = 1{label_i = a}``."""
        J = np.zeros((self.n, self.K), dtype=np.float64)
        J[np.arange(self.n), self.labels] = 1.0
        return J

    @property
    def class_counts(self) -> np.ndarray:
        """Number of samples per class, int64 of shape ``(K,)``."""
        return np.bincount(self.labels, minlength=self.K).astype(np.int64)

    def __repr__(self) -> str:
        return (
            f"MixtureStats(tau0={self.tau0:.6g}, t={_fmt(self.t)}, T={_fmt(self.T)}, "
            f"K={self.K}, n={self.n}, p={self.p})"
        )

    # ------------------------------------------------------------------ #
    @classmethod
    def from_data(cls, X: Any, labels: Any) -> MixtureStats:
        """Estimate the statistics from labelled data (:ref:`§1 <theory-1>`).

        With ``m_a`` the class sample means and ``ω̂_i = x_i − m_a``:

        * ``tr(Ĉ_a)/p = mean_{i∈a} ‖ω̂_i‖²``,
        * ``T̂_ab = p · mean_{i∈a, j∈b, i≠j} (ω̂_iᵀ ω̂_j)²``,
        * ``ψ̂_i = ‖ω̂_i‖² − tr(Ĉ_a)/p``,
        * ``τ̂0² = Σ_a (n_a/n) tr(Ĉ_a)/p``, priors ``n_a/n``,
        * ``t̂_a = √p (tr(Ĉ_a)/p − τ̂0²)``.

        ``X`` is used **as given**: it must already be on the ``x = (μ + z)/√p``
        scale of §1 (no centring or rescaling is done here; real data is
        preprocessed elsewhere so that the mean of ``‖x_i‖²`` is 1).

        Parameters
        ----------
        X : array_like, shape (n, p)
            Data, one sample per row.
        labels : array_like, shape (n,)
            Class labels of any kind; classes are numbered in ``np.unique``
            order (sorted original labels).

        Returns
        -------
        MixtureStats

        Raises
        ------
        TypeError
            If ``X`` is not real numeric or ``labels`` are not valid labels.
        ValueError
            If shapes disagree, ``X`` has NaN/inf, there are fewer than 2
            classes, a class has fewer than 2 samples, or a class's rows are
            (numerically) identical: within-class spread below ``1e-10`` of
            the rows' norm, which would make ``τ0``, ``t``, ``T`` rounding noise.

        Notes
        -----
        ``Σ_{i∈a, j∈b} (ω̂_iᵀω̂_j)² = ‖Ω_a Ω_bᵀ‖_F² = ⟨Ω_aᵀΩ_a, Ω_bᵀΩ_b⟩_F``
        is computed from the ``p × p`` Gram matrices of all classes when that takes fewer
        flops and ``K p ≤ 2n`` (many classes), otherwise pair by pair from whichever of the
        ``n_a × n_b`` block or the two Gram matrices is smaller; for ``a = b`` the ``i = j``
        terms ``‖ω̂_i‖⁴`` are subtracted.  Memory is ``O(np + min(n_a n_b, p²))``, or
        ``O(np)`` with all Gram matrices kept.

        Because ``ω̂`` uses the estimated class means, ``T̂_aa`` carries a bias of
        about ``p (tr(C_a)/p)² / n_a²`` (and ``ψ̂``, ``t̂`` errors of order
        ``1/√n_a``): the estimates are accurate when ``n_a ≫ √p``.
        """
        Xa = as_data_matrix(X, "X", min_rows=4)
        n, p = Xa.shape
        codes, classes = as_labels(labels, n, "labels")
        K = int(classes.shape[0])
        if K < 2:
            raise ValueError(
                f"labels must contain at least 2 classes (the GMM theory of §1 of the theory page "
                f"compares K >= 2 classes); got K = {K}"
            )
        counts = np.bincount(codes, minlength=K)
        if counts.min() < 2:
            small = classes[counts < 2].tolist()
            raise ValueError(
                f"labels: every class needs at least 2 samples to estimate its covariance; "
                f"class(es) {small} have fewer"
            )
        order = [np.flatnonzero(codes == a) for a in range(K)]
        W = np.empty_like(Xa)  # ω̂_i = x_i − m_a, rows in original order
        for idx in order:
            W[idx] = Xa[idx] - Xa[idx].mean(axis=0)
        sq = np.einsum("ij,ij->i", W, W)  # ‖ω̂_i‖²
        tr = np.array([sq[idx].mean() for idx in order])  # tr(Ĉ_a)/p
        # A class whose rows coincide up to rounding has no covariance to estimate:
        # its tr(Ĉ_a)/p is rounding noise (~eps² ‖x‖²) and τ0, t, T would be noise too.
        scale = np.array([np.einsum("ij,ij->", Xa[idx], Xa[idx]) / idx.size for idx in order])
        flat = np.flatnonzero(tr <= _DEGENERATE_SPREAD**2 * scale)
        if flat.size:
            a = int(flat[0])
            rel = float(np.sqrt(tr[a] / scale[a])) if scale[a] > 0 else 0.0
            raise ValueError(
                f"X has (numerically) identical rows within class {classes[a].tolist()!r} "
                f"({flat.size} of {K} classes like this): the within-class spread is "
                f"{rel:.1e} of the rows' norm, below {_DEGENERATE_SPREAD:g}, so its covariance "
                "cannot be estimated and tau0, t, T would be rounding noise; remove duplicated "
                "rows or check the labels"
            )
        priors = counts / n
        tau0_sq = float(priors @ tr)
        if not tau0_sq > 0:
            raise ValueError("X has zero within-class variance; tau0 would be 0")
        blocks = [W[idx] for idx in order]
        grams: dict[int, np.ndarray] = {}

        def gram(a: int) -> np.ndarray:
            if a not in grams:
                grams[a] = blocks[a].T @ blocks[a]
            return grams[a]

        # Every class's p × p Gram costs p² n flops in all, the n_a × n_b blocks n_a n_b p
        # each: with many classes the Grams are cheaper (MNIST, 10 classes of 500, p = 784:
        # 1.7 s by blocks, 0.3 s by Grams). They are all kept, so only while K p² ≤ 2 n p.
        pair_work = sum(int(counts[a]) * int(counts[b]) for a in range(K) for b in range(a, K))
        by_grams = p * n < pair_work and K * p <= 2 * n
        T = np.empty((K, K))
        for a in range(K):
            for b in range(a, K):
                na, nb = int(counts[a]), int(counts[b])
                if na * nb <= p * p and not by_grams:
                    B = blocks[a] @ blocks[b].T
                    s = float(np.vdot(B, B))
                else:
                    s = float(np.vdot(gram(a), gram(b)))
                if a == b:
                    s -= float(np.sum(sq[order[a]] ** 2))
                    pairs = na * (na - 1)
                else:
                    pairs = na * nb
                T[a, b] = T[b, a] = p * s / pairs
        psi = sq - tr[codes]
        t = np.sqrt(p) * (tr - tau0_sq)
        return cls(
            tau0=float(np.sqrt(tau0_sq)), t=t, T=T, psi=psi, labels=codes, p=p, priors=priors
        )


def check_stats(stats: Any, tau0: float, model: str) -> MixtureStats:
    """``stats`` checked to be :class:`MixtureStats` with the input scale ``tau0`` of ``model``.

    A model's activation is centred for its ``τ0`` (:ref:`§4 <theory-4>`), so surrogates
    built from statistics of another ``τ0`` would be silently wrong. ``model`` names the
    model in the messages (``"DEQ"``, ``"net"``).
    """
    if not isinstance(stats, MixtureStats):
        raise TypeError(f"stats must be a deqfast.MixtureStats, got {type(stats).__name__}")
    if not math.isclose(stats.tau0, tau0, rel_tol=1e-9):
        raise ValueError(
            f"the {model} was centred for tau0={tau0!r} but stats has tau0={stats.tau0!r}; "
            f"build the {model} with tau0=stats.tau0"
        )
    return stats
