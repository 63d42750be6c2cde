"""Limiting spectra of GMM-structured kernels, straight from the equations.

The surrogate of :ref:`§4 <theory-4>`, ``M̄ = c1 XXᵀ + V A Vᵀ + (d − c1 τ0²) I``, is a
finite-rank perturbation of ``c1 ΩΩᵀ + s I`` (``Ω`` the ``n × p`` matrix of rows
``ω_i ~ N(0, C_a/p)``, ``s = d − c1 τ0²``).  This module predicts, without any
``n × n`` matrix,

* the **bulk**: the limiting eigenvalue density of ``ΩΩᵀ`` from the mixture
  Marchenko–Pastur fixed point (``c = n/p``, class fractions ``c_a``)::

      δ_a(z) = (1/p) tr C_a (c Σ_b c_b C_b/(1 + δ_b(z)) − z I_p)⁻¹
      m(z)   = Σ_a c_a g_a(z),   g_a(z) = −1/(z (1 + δ_a(z)))

  density ``Im m(x + iε)/π`` with the atom ``1 − p/n`` at 0 (``n > p``) removed
  and reported separately, then mapped to kernel units ``s + c1 λ``;
* the **spikes**: eigenvalues ``ρ = s + c1 λ`` outside the bulk at which the
  symmetric ``r × r`` matrix ``H(λ) = c1 B⁻¹ + Ξ(λ)`` is singular, where
  ``M̄ − ρ I = c1 (ΩΩᵀ − λ I) + U B Uᵀ`` with ``U = [J/√p, ψ, Ω Mᵀ]`` (``M`` the
  ``K × p`` class means) and ``Ξ(λ)`` the deterministic equivalent of
  ``Uᵀ (ΩΩᵀ − λ)⁻¹ U``;
* the **alignments** ``|u_kᵀ j_a|²/n_a`` of the spikes' eigenvectors with the
  class indicators, by the residue formula
  ``c c_a g_a(λ_k)² v_a² / (vᵀ Ξ'(λ_k) v)``, ``v`` the unit null vector of
  ``H(λ_k)``.

The derivation, the approximations and the checks against simulation are in
:doc:`/theory-spectra`.

Solvers: covariances that commute (scalar, diagonal, or full matrices sharing
an eigenbasis) are reduced to their joint eigenvalues, so one iteration costs
``O(K r)`` for ``r`` distinct joint eigenvalues (``r = 1`` for scalar
covariances, ``r ≤ p`` for diagonal ones); the fixed point is solved for the
whole grid at once by Newton's method on the ``K`` unknowns, with continuation
in ``ε`` (from the spectral scale down to ``eps``) and a damped fixed-point
iteration as fall-back.  Non-commuting full covariances cost ``O(K p³)`` per
Newton step and grid point.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from deqfast._mp import (
    DEFAULT_EPS,
    DEFAULT_POINTS,
    atom_mass,
    density_safe,
    edge_grid,
    model_from_covs,
    model_from_mixture,
    model_from_stats,
    support,
)
from deqfast._shared import blas_threads
from deqfast._spikes import SpikeSystem, find_spikes
from deqfast._validation import as_finite_array, check_integer, check_positive
from deqfast._vocabulary import (
    OLD_KERNEL_NAMES,
    check_kernel,
    deprecated_module_attributes,
    renamed_keywords,
)
from deqfast.coefficients import KernelCoefficients
from deqfast.data import GaussianMixture, MixtureStats, Sample

__all__ = [
    "MPDensity",
    "TheorySpectrum",
    "mp_mixture_density",
    "theory_spectrum",
]

_F = TypeVar("_F", bound=Callable[..., Any])


def _single_threaded(func: _F) -> _F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with blas_threads(1):  # thin products (G × r by r × K²): ten times slower threaded
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


__getattr__ = deprecated_module_attributes(
    __name__,
    {
        "KINDS": (
            OLD_KERNEL_NAMES,
            lambda: ("ck", "ntk", "ntk_all", "pre"),
        )
    },
)


def _fmt_arr(a: np.ndarray, digits: int = 5) -> str:
    return "[" + ", ".join(f"{float(v):.{digits}g}" for v in np.asarray(a).ravel()) + "]"


@dataclasses.dataclass(frozen=True, repr=False)
class MPDensity:
    """Limiting eigenvalue density of ``ΩΩᵀ`` (rows ``ω_i ~ N(0, C_a/p)``).

    Attributes
    ----------
    grid, density : ndarray
        The continuous part of the law on ``grid``; it integrates to ``1 − atom``.
    atom : float
        Mass of the eigenvalue 0 (``1 − p/n`` when ``n > p``, else 0).
    edges : tuple of float
        Outer edges of the continuous part.
    n, p : int
    """

    grid: np.ndarray
    density: np.ndarray
    atom: float
    edges: tuple[float, float]
    n: int
    p: int

    def __repr__(self) -> str:
        return (
            f"MPDensity(n={self.n}, p={self.p}, edges=({self.edges[0]:.6g}, {self.edges[1]:.6g}), "
            f"atom={self.atom:.4g}, grid=<{self.grid.size} points>)"
        )


def _check_eps(eps: Any) -> float:
    e = check_positive(eps, "eps")
    if e >= 0.1:
        raise ValueError(f"eps must be in (0, 0.1) (relative to the spectral scale); got {eps!r}")
    return e


def _check_grid(grid: Any, name: str = "grid") -> np.ndarray:
    g = as_finite_array(grid, name, ndim=1)
    if g.size < 2:
        raise ValueError(f"{name} must have at least 2 points; got {g.size}")
    if np.any(np.diff(g) <= 0):
        raise ValueError(f"{name} must be strictly increasing")
    return g


@_single_threaded
def mp_mixture_density(
    covs_or_mixture: Any,
    n: int,
    grid: Any = None,
    *,
    p: int | None = None,
    priors: Any = None,
    eps: float = DEFAULT_EPS,
    points: int = DEFAULT_POINTS,
) -> MPDensity:
    """Limiting spectral density of the ``n × n`` Gram matrix ``ΩΩᵀ``, ``ω_i ~ N(0, C_a/p)``.

    Solves the mixture Marchenko–Pastur fixed point (``c = n/p``, class fractions
    ``c_a = n_a/n``)::

        δ_a(z) = (1/p) tr C_a (c Σ_b c_b C_b/(1 + δ_b(z)) − z I)⁻¹
        m(z)   = Σ_a c_a · (−1/(z (1 + δ_a(z))))

    and returns ``Im m(x + iε)/π`` without the atom at 0.

    Parameters
    ----------
    covs_or_mixture
        A :class:`~deqfast.GaussianMixture` (means ignored) or covariances of shape
        ``(K, p, p)``, ``(K, p)`` (diagonal) or ``(K,)`` (scalars, then ``p`` is required).
    n : int
        Number of samples (rows of ``Ω``).
    grid : array_like, optional
        Strictly increasing points; default: ``points`` points clustered at the edges of the
        bulk (located numerically).
    p : int, optional
        Dimension, needed only for scalar covariances.
    priors : array_like, optional
        Class proportions (default uniform); ignored for a mixture.
    eps : float
        Final imaginary part ``ε``, relative to the scale of the bulk (default ``1e-6``).
    points : int
        Number of default grid points.
    """
    n = check_integer(n, "n", min_value=1)
    eps = _check_eps(eps)
    points = check_integer(points, "points", min_value=10)
    if p is not None:
        p = check_integer(p, "p", min_value=1)
    if isinstance(covs_or_mixture, Sample):
        covs_or_mixture = covs_or_mixture.mixture
    if isinstance(covs_or_mixture, GaussianMixture):
        model = model_from_mixture(covs_or_mixture, n)
    else:
        model = model_from_covs(covs_or_mixture, n, p, priors)
    lo, hi, top = support(model, eps)
    if grid is None:
        x = edge_grid(lo, hi, points)
    else:
        x = _check_grid(grid)
    dens = density_safe(model, x, eps * top, top)
    return MPDensity(
        grid=_ro(x), density=_ro(dens), atom=atom_mass(model), edges=(lo, hi), n=n, p=model.p
    )


def _ro(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64, copy=True)
    a.setflags(write=False)
    return a


# --------------------------------------------------------------------------- #
# TheorySpectrum
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True, repr=False)
class TheorySpectrum:
    """Predicted spectrum of a GMM-structured kernel (see :doc:`/theory-spectra`).

    Attributes
    ----------
    grid, density : ndarray
        Limiting density of the bulk in kernel units (the continuous part; it integrates
        to ``1 − atom``).  Overlay with ``plt.plot(ts.grid, ts.density)`` on a histogram
        drawn with ``density=True``.
    atom : float
        Mass of the point ``atom_position = d − c1 τ0²`` (``1 − p/n`` when ``n > p``).
    atom_position : float
    edges : tuple of float
        Outer edges of the bulk in kernel units.
    spikes : ndarray
        Predicted isolated eigenvalues (descending, repeated with multiplicity).
    alignments : ndarray, shape (len(spikes), K)
        Predicted ``|u_kᵀ j_a|²/n_a`` of each spike's eigenvector.
    n, p : int
    kernel, trained : str
        The kernel (``"pre"``, ``"ck"`` or ``"ntk"``) and, for the NTK, which weights are
        trained (``"hidden"`` or ``"all"``).
    coefficients : KernelCoefficients
    """

    grid: np.ndarray
    density: np.ndarray
    atom: float
    atom_position: float
    edges: tuple[float, float]
    spikes: np.ndarray
    alignments: np.ndarray
    n: int
    p: int
    kernel: str
    trained: str
    coefficients: KernelCoefficients
    approximate_covariances: bool = False

    @property
    def kind(self) -> str:
        """Deprecated: the kernel in the old single-name spelling (``"ntk_all"`` for
        ``kernel="ntk", trained="all"``); use :attr:`kernel` and :attr:`trained`."""
        warnings.warn(
            "TheorySpectrum.kind is deprecated; use TheorySpectrum.kernel and .trained",
            DeprecationWarning,
            stacklevel=2,
        )
        return "ntk_all" if (self.kernel, self.trained) == ("ntk", "all") else self.kernel

    def __repr__(self) -> str:
        sp = _fmt_arr(self.spikes)
        al = (
            "[" + ", ".join(_fmt_arr(a, 3) for a in self.alignments) + "]"
            if self.alignments.size
            else "[]"
        )
        note = (
            ", covariances approximated from MixtureStats" if self.approximate_covariances else ""
        )
        trained = f", trained={self.trained!r}" if self.kernel == "ntk" else ""
        return (
            f"TheorySpectrum(kernel={self.kernel!r}{trained}, n={self.n}, p={self.p}, "
            f"bulk=[{self.edges[0]:.6g}, {self.edges[1]:.6g}], atom={self.atom:.4g} at "
            f"{self.atom_position:.6g}, spikes={sp}, alignments={al}{note})"
        )

    # -- distribution function --------------------------------------------------------------
    def _parts(self, n_eigs: int) -> tuple[np.ndarray, float, np.ndarray, float]:
        """CDF of the bulk on the grid (normalised), its weight, spikes, atom weight."""
        x, f = self.grid, self.density
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(x))])
        total = cdf[-1]
        cdf = cdf / total if total > 0 else np.linspace(0.0, 1.0, x.size)
        k = self.spikes.size
        w_spike = 1.0 / n_eigs
        w_bulk = max(0.0, 1.0 - self.atom - k * w_spike)
        return cdf, w_bulk, self.spikes, w_spike

    def cdf(self, x: Any, *, n_eigs: int | None = None) -> np.ndarray:
        """Predicted distribution function of the ``n`` eigenvalues (bulk, atom, spikes)."""
        xs = as_finite_array(x, "x")
        n_eigs = self.n if n_eigs is None else n_eigs
        cdf, w_bulk, spikes, w_spike = self._parts(n_eigs)
        out = w_bulk * np.interp(xs, self.grid, cdf, left=0.0, right=1.0)
        out = out + self.atom * (xs >= self.atom_position)
        for s in spikes:
            out = out + w_spike * (xs >= s)
        return out

    def wasserstein(self, eigenvalues: Any, *, relative: bool = False) -> float:
        """1-Wasserstein distance ``∫ |F_emp − F_theory| dx`` to an empirical spectrum.

        The predicted measure puts ``1/n`` on each predicted spike, the atom's mass at
        ``atom_position`` and the rest on the bulk density (``n = len(eigenvalues)``).
        With ``relative=True`` the distance is divided by the empirical spectral spread
        ``λ_max − λ_min`` (:ref:`§6 <theory-6>`).
        """
        ev = as_finite_array(eigenvalues, "eigenvalues", ndim=1)
        if ev.size < 2:
            raise ValueError("eigenvalues must have at least 2 entries")
        ev = np.sort(ev)
        m = ev.size
        cdf, w_bulk, spikes, w_spike = self._parts(m)
        jumps = [self.atom_position] if self.atom > 0 else []
        pts = np.unique(np.concatenate([self.grid, ev, spikes, np.asarray(jumps, float)]))
        # on each interval [pts_i, pts_{i+1}] every step function is constant and the bulk
        # CDF (linear interpolation of its trapezoidal integral) is linear: integrate exactly
        a, b = pts[:-1], pts[1:]
        mid = 0.5 * (a + b)
        steps_th = self.atom * (mid >= self.atom_position) if self.atom > 0 else 0.0
        steps_th = steps_th + w_spike * np.searchsorted(np.sort(spikes), mid, side="right")
        f_emp = np.searchsorted(ev, mid, side="right") / m
        ga = w_bulk * np.interp(a, self.grid, cdf, left=0.0, right=1.0)
        gb = w_bulk * np.interp(b, self.grid, cdf, left=0.0, right=1.0)
        ua = ga + steps_th - f_emp
        ub = gb + steps_th - f_emp
        h = b - a
        same = ua * ub >= 0
        area = np.where(
            same,
            0.5 * h * np.abs(ua + ub),
            0.5 * h * (ua * ua + ub * ub) / np.maximum(np.abs(ua) + np.abs(ub), 1e-300),
        )
        w1 = float(area.sum())
        # mass outside the covered range (eigenvalues beyond every breakpoint are included)
        if relative:
            spread = float(ev[-1] - ev[0])
            return w1 / spread if spread > 0 else math.inf
        return w1

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python summary (JSON-ready)."""
        return {
            "kernel": self.kernel,
            "trained": self.trained,
            "n": self.n,
            "p": self.p,
            "edges": list(self.edges),
            "atom": self.atom,
            "atom_position": self.atom_position,
            "spikes": self.spikes.tolist(),
            "alignments": self.alignments.tolist(),
            "coefficients": list(self.coefficients.as_tuple()),
        }


@renamed_keywords(kind="kernel")
@_single_threaded
def theory_spectrum(
    deq_or_net: Any,
    stats_or_mixture: Any,
    n: int,
    *,
    kernel: str = "ck",
    trained: str = "hidden",
    grid: Any = None,
    eps: float = DEFAULT_EPS,
    points: int = DEFAULT_POINTS,
) -> TheorySpectrum:
    """Predict the spectrum of a DEQ's (or explicit net's) kernel on ``n`` mixture samples.

    The kernel is replaced by its surrogate ``M̄ = c1 XXᵀ + V A Vᵀ + (d − c1 τ0²) I``
    (:ref:`§4 <theory-4>`) with ``(d, c1, c2, c3) = deq_or_net.coefficients(kernel,
    trained=trained)``; its bulk is
    ``c1 · MP-mixture + (d − c1 τ0²)`` and its spikes are the roots of
    ``det(c1 B⁻¹ + Ξ(λ)) = 0`` outside the bulk (:doc:`/theory-spectra`).

    Parameters
    ----------
    deq_or_net
        Any object with ``.coefficients(kernel)`` (and ``trained=`` for the NTK) returning
        :class:`~deqfast.KernelCoefficients` (:class:`~deqfast.DEQ`, ``ExplicitNet``),
        or a :class:`~deqfast.KernelCoefficients` directly.
    stats_or_mixture
        A :class:`~deqfast.GaussianMixture` (or a :class:`~deqfast.Sample` of one): exact
        covariances and means.  A :class:`~deqfast.MixtureStats` carries neither: the
        covariances are then taken as ``(tr C_a/p) I`` and the class means as zero (so
        the mean spikes are missing) — prefer a mixture.
    n : int
        Number of samples (``c = n/p``).
    kernel : {"ck", "ntk", "pre"}
        Which kernel.
    trained : {"hidden", "all"}
        For ``kernel="ntk"``: ``K*`` (hidden weights trained) or ``Θ*`` (input weights too).
    grid : array_like, optional
        Points (kernel units) for the density; default: ``points`` points clustered at
        the bulk edges.
    eps : float
        Final imaginary part of the Stieltjes evaluation, relative to the bulk scale.
    points : int
        Size of the default grid.

    Returns
    -------
    TheorySpectrum
    """
    n = check_integer(n, "n", min_value=2)
    kernel, trained = check_kernel(kernel, trained)
    eps = _check_eps(eps)
    points = check_integer(points, "points", min_value=10)
    if isinstance(deq_or_net, KernelCoefficients):
        coef = deq_or_net
    else:
        method = getattr(deq_or_net, "coefficients", None)
        if not callable(method):
            raise TypeError(
                "deq_or_net must have a .coefficients(kernel, trained=...) method (DEQ, "
                f"ExplicitNet) or be KernelCoefficients; got {type(deq_or_net).__name__}"
            )
        # ``trained`` only for the NTK: an object with ``.coefficients(kernel)`` serves the rest
        coef = method(kernel, trained=trained) if kernel == "ntk" else method(kernel)
        if not isinstance(coef, KernelCoefficients):
            raise TypeError(
                f"deq_or_net.coefficients({kernel!r}) must return KernelCoefficients; got "
                f"{type(coef).__name__}"
            )
    d, c1, c2, c3 = coef.as_tuple()
    if not all(math.isfinite(v) for v in (d, c1, c2, c3)):
        raise ValueError(f"coefficients must be finite; got {coef!r}")
    if not c1 > 0:
        raise ValueError(
            f"the theory needs c1 > 0 (the weight of XXᵀ); got c1 = {c1!r} for kernel={kernel!r}"
        )
    approx = False
    if isinstance(stats_or_mixture, Sample):
        stats_or_mixture = stats_or_mixture.mixture
    if isinstance(stats_or_mixture, GaussianMixture):
        mix = stats_or_mixture
        model = model_from_mixture(mix, n)
        tau0, t, T = mix.tau0, np.asarray(mix.t), np.asarray(mix.T)
    elif isinstance(stats_or_mixture, MixtureStats):
        st = stats_or_mixture
        model = model_from_stats(st, n)
        tau0, t, T = st.tau0, np.asarray(st.t), np.asarray(st.T)
        approx = True
    else:
        raise TypeError(
            "stats_or_mixture must be a GaussianMixture, a Sample or a MixtureStats; got "
            f"{type(stats_or_mixture).__name__}"
        )
    shift = d - c1 * tau0**2
    lo, hi, top = support(model, eps)
    user_grid = None
    if grid is None:
        lam_grid = edge_grid(lo, hi, points)
    else:
        user_grid = _check_grid(grid)
        lam_grid = (user_grid - shift) / c1
    dens = density_safe(model, lam_grid, eps * top, top) if lam_grid.size else lam_grid
    atom = atom_mass(model)
    system = SpikeSystem(model, coef, t, T)
    roots, aligns = find_spikes(system, lo, hi, atom, top)
    return TheorySpectrum(
        grid=_ro(shift + c1 * lam_grid if user_grid is None else user_grid),
        density=_ro(dens / c1),
        atom=atom,
        atom_position=shift,
        edges=(shift + c1 * lo, shift + c1 * hi),
        spikes=_ro(shift + c1 * roots),
        alignments=_ro(aligns.reshape(-1, model.K)),
        n=n,
        p=model.p,
        kernel=kernel,
        trained=trained,
        coefficients=coef,
        approximate_covariances=approx,
    )
