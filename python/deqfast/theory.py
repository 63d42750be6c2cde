"""Limiting spectra of GMM-structured kernels, straight from the equations (issue 8).

The surrogate of THEORY.md §4, ``M̄ = c1 XXᵀ + V A Vᵀ + (d − c1 τ0²) I``, is a
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
``docs/theory-spectra.md``.

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

import contextlib
import dataclasses
import functools
import math
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np

from deqfast._validation import as_finite_array, check_integer, check_positive
from deqfast.coefficients import KernelCoefficients
from deqfast.data import GaussianMixture, MixtureStats, Sample

__all__ = [
    "MPDensity",
    "TheorySpectrum",
    "mp_mixture_density",
    "theory_spectrum",
]

_F = TypeVar("_F", bound=Callable[..., Any])


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """One BLAS thread: every product here is thin (``G × r`` by ``r × K²``), and on a busy
    machine multi-threaded OpenBLAS makes such products ten times slower.  Needs
    ``threadpoolctl``; without it this does nothing."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _single_threaded(func: _F) -> _F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _one_blas_thread():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


#: Kernel kinds forwarded to ``deq_or_net.coefficients(kind)``.
KINDS = ("ck", "ntk", "ntk_all", "pre")

_DEFAULT_POINTS = 400
_DEFAULT_EPS = 1e-6
_NEWTON_TOL = 1e-11
_MAX_NEWTON = 40
_MAX_DAMPED = 4000


# --------------------------------------------------------------------------- #
# Covariance model: joint eigenvalues of commuting covariances, or full matrices
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True)
class _CovModel:
    """The covariances as the fixed point sees them.

    Commuting case: ``lam[a, u]`` joint eigenvalue ``u`` of ``C_a`` with weight
    ``w[u]`` (multiplicity / p), and ``S[u]`` the ``K × K`` sum of ``μ̂_a μ̂_b``
    over the coordinates of group ``u`` in the common eigenbasis (``None`` when
    the means are not known or zero).  Non-commuting case: ``full`` ``(K, p, p)``
    and ``means`` ``(K, p)``.
    """

    p: int
    c: float  # n / p
    fractions: np.ndarray  # (K,) class fractions c_a = n_a / n
    lam: np.ndarray | None  # (K, r)
    w: np.ndarray | None  # (r,)
    S: np.ndarray | None  # (r, K, K)
    full: np.ndarray | None  # (K, p, p)
    means: np.ndarray | None  # (K, p)
    rank: int  # rank of Σ_a C_a (dimension of the noise space)
    _wlam_t: np.ndarray | None = dataclasses.field(default=None, repr=False)
    _ll_t: np.ndarray | None = dataclasses.field(default=None, repr=False)
    _L2: np.ndarray | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.lam is not None:
            assert self.w is not None
            K = self.fractions.shape[0]
            wl = self.w * self.lam
            ll = wl[:, None, :] * self.lam[None, :, :]
            L = (self.c * self.fractions)[:, None] * self.lam
            object.__setattr__(self, "_wlam_t", _interleaved(wl.T))
            object.__setattr__(self, "_ll_t", _interleaved(ll.reshape(K * K, -1).T))
            object.__setattr__(self, "_L2", _interleaved(L))

    @property
    def K(self) -> int:
        return int(self.fractions.shape[0])

    @property
    def commuting(self) -> bool:
        return self.lam is not None

    def trace_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """``tr(C_a)/p`` and ``tr(C_a²)/p``."""
        if self.lam is not None:
            assert self.w is not None
            return self.lam @ self.w, (self.lam**2) @ self.w
        assert self.full is not None
        tr1 = np.trace(self.full, axis1=1, axis2=2) / self.p
        tr2 = np.einsum("aij,aji->a", self.full, self.full) / self.p
        return tr1, tr2

    def max_eig(self) -> float:
        if self.lam is not None:
            return float(self.lam.max())
        assert self.full is not None
        return float(max(np.linalg.eigvalsh(C)[-1] for C in self.full))

    def means_gram(self) -> np.ndarray:
        """``M Mᵀ`` (``μ_aᵀ μ_b``)."""
        if self.S is not None:
            return self.S.sum(axis=0)
        if self.means is not None:
            return self.means @ self.means.T
        return np.zeros((self.K, self.K))

    @property
    def has_means(self) -> bool:
        return self.S is not None or self.means is not None

    # -- the fixed-point map and its Jacobian -------------------------------------------
    def evaluate(self, delta: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``F(δ)`` (G, K) and ``∂F/∂δ`` (G, K, K) at the points ``z`` (G,)."""
        inv1 = 1.0 / (1.0 + delta)  # (G, K)
        coef = self.c * self.fractions  # c c_b
        if self.lam is not None:
            assert self.w is not None
            K = self.K
            assert self._wlam_t is not None and self._ll_t is not None
            R = 1.0 / self._denominators(inv1, z)  # (G, r)
            F = _cmatmul(R, self._wlam_t)  # (G, K)
            P = _cmatmul(R * R, self._ll_t)  # (G, K*K)
            Jac = P.reshape(-1, K, K) * (coef * inv1 * inv1)[:, None, :]
            return F, Jac
        assert self.full is not None
        G, K = delta.shape
        p = self.p
        F = np.empty((G, K), dtype=complex)
        Jac = np.empty((G, K, K), dtype=complex)
        eye = np.eye(p)
        for g in range(G):
            Rm = np.tensordot(coef * inv1[g], self.full, axes=1) - z[g] * eye
            Rinv = np.linalg.inv(Rm)
            CR = self.full @ Rinv  # (K, p, p): C_a R⁻¹
            F[g] = np.trace(CR, axis1=1, axis2=2) / p
            Jac[g] = np.einsum("aij,bji->ab", CR, CR) / p * (coef * inv1[g] ** 2)[None, :]
        return F, Jac

    def _denominators(self, inv1: np.ndarray, z: np.ndarray) -> np.ndarray:
        """``D_u = c Σ_b c_b λ_bu/(1 + δ_b) − z`` (G, r), by K broadcast multiply-adds."""
        assert self._L2 is not None
        D = _cmatmul(inv1, self._L2)
        D -= z[:, None]
        return D

    def resolvent_means(self, delta: np.ndarray, z: np.ndarray) -> np.ndarray:
        """``M Q̄̃(z) Mᵀ`` (G, K, K) with ``Q̄̃ = (c Σ_b c_b C_b/(1+δ_b) − z)⁻¹``."""
        G = delta.shape[0]
        K = self.K
        inv1 = 1.0 / (1.0 + delta)
        coef = self.c * self.fractions
        if self.S is not None:
            D = self._denominators(inv1, z)
            return _cmatmul(1.0 / D, _interleaved(self.S.reshape(-1, K * K))).reshape(G, K, K)
        if self.means is None:
            return np.zeros((G, K, K), dtype=delta.dtype)
        assert self.full is not None
        out = np.empty((G, K, K), dtype=complex)
        eye = np.eye(self.p)
        for g in range(G):
            Rm = np.tensordot(coef * inv1[g], self.full, axes=1) - z[g] * eye
            out[g] = self.means @ np.linalg.solve(Rm, self.means.T)
        return out


def _interleaved(W: np.ndarray) -> np.ndarray:
    """Real ``(r, m)`` → ``(2r, 2m)`` with ``W`` on the (re, re) and (im, im) positions."""
    r, m = W.shape
    out = np.zeros((2 * r, 2 * m))
    out[0::2, 0::2] = W
    out[1::2, 1::2] = W
    return out


def _cmatmul(Z: np.ndarray, W2: np.ndarray) -> np.ndarray:
    """Complex ``Z`` (G, r) times a real matrix given as ``_interleaved(W)``: one real BLAS
    product on the interleaved float view of ``Z`` (numpy has no complex-by-real gemm)."""
    Z = np.ascontiguousarray(Z, dtype=np.complex128)
    return (Z.view(np.float64) @ W2).view(np.complex128)


def _model_from_mixture(mix: GaussianMixture, n: int) -> _CovModel:
    p = mix.p
    counts = mix.class_counts(n)
    if counts.min() < 1:
        raise ValueError(f"n = {n} is too small: every class of the mixture needs n_a >= 1")
    fractions = counts / n
    means = np.asarray(mix.means, dtype=np.float64)
    nonzero_means = bool(np.any(means != 0))
    kind = mix.cov_kind
    C = np.asarray(mix.covs, dtype=np.float64)
    K = mix.K
    if kind == "scalar":
        lam = C[:, None].copy()
        w = np.ones(1)
        S = (means.T[:, :, None] * means.T[:, None, :]).sum(axis=0)[None] if nonzero_means else None
        rank = p if np.any(C > 0) else 0
        return _CovModel(p, n / p, fractions, lam, w, S, None, None, rank)
    if kind == "full":
        # commuting covariances share an eigenbasis: diagonalise a generic combination
        gen = np.random.default_rng(12345).uniform(1.0, 2.0, K)
        _, U = np.linalg.eigh(np.tensordot(gen, C, axes=1))
        rot = np.einsum("ji,ajk,kl->ail", U, C, U)  # Uᵀ C_a U
        diag = np.einsum("aii->ai", rot)
        off = rot - np.einsum("ai,ij->aij", diag, np.eye(p))
        scale = max(1.0, float(np.abs(C).max()))
        if float(np.abs(off).max()) > 1e-9 * scale:
            rank = int(np.linalg.matrix_rank(C.sum(axis=0)))
            return _CovModel(
                p, n / p, fractions, None, None, None, C, means if nonzero_means else None, rank
            )
        diag_cov = diag
        mhat = means @ U  # μ̂_a = Uᵀ μ_a
    else:
        diag_cov = C
        mhat = means
    # group coordinates with identical joint eigenvalues (exactly), keep per-group mean products
    rows, inverse, counts_u = np.unique(diag_cov.T, axis=0, return_inverse=True, return_counts=True)
    inverse = np.asarray(inverse).reshape(-1)
    lam = np.ascontiguousarray(rows.T)
    w = counts_u / p
    S = None
    if nonzero_means:
        outer = mhat.T[:, :, None] * mhat.T[:, None, :]  # (p, K, K)
        S = np.zeros((lam.shape[1], K, K))
        np.add.at(S, inverse, outer)
    rank = int(np.count_nonzero(diag_cov.sum(axis=0) > 0))
    return _CovModel(p, n / p, fractions, lam, w, S, None, None, rank)


def _model_from_stats(stats: MixtureStats, n: int) -> _CovModel:
    """Scalar covariances ``C_a = (tr C_a/p) I``: all that :class:`MixtureStats` carries."""
    p = stats.p
    tr = stats.tau0**2 + np.asarray(stats.t) / math.sqrt(p)
    if np.any(tr <= 0):
        raise ValueError(f"stats imply a non-positive tr(C_a)/p = {tr.tolist()}")
    if stats.n == n:
        fractions = stats.class_counts / n
        if fractions.min() <= 0:
            raise ValueError("stats: every class needs at least one sample")
    else:
        fractions = np.asarray(stats.priors, dtype=np.float64)
    return _CovModel(p, n / p, fractions, tr[:, None].copy(), np.ones(1), None, None, None, p)


def _model_from_covs(covs: Any, n: int, p: int | None, priors: Any) -> _CovModel:
    C = as_finite_array(covs, "covs")
    if C.ndim == 1:
        if p is None:
            raise ValueError("p is required with scalar covariances covs of shape (K,)")
        K = C.shape[0]
        means = np.zeros((K, p))
    elif C.ndim == 2:
        K, pp = C.shape
        means = np.zeros((K, pp))
    elif C.ndim == 3:
        K, pp = C.shape[0], C.shape[1]
        means = np.zeros((K, pp))
    else:
        raise ValueError(f"covs must have shape (K, p, p), (K, p) or (K,); got shape {C.shape}")
    if p is not None and C.ndim > 1 and p != means.shape[1]:
        raise ValueError(f"p = {p} does not match covs of shape {C.shape}")
    if K == 1:  # GaussianMixture needs K >= 2: split the class into two identical halves
        if priors is not None:
            P = as_finite_array(priors, "priors", shape=(1,))
            if abs(P[0] - 1.0) > 1e-8:
                raise ValueError(f"priors must sum to 1; got {P.tolist()}")
        C = np.concatenate([C, C])
        return _model_from_mixture(GaussianMixture(np.concatenate([means, means]), C), n)
    return _model_from_mixture(GaussianMixture(means, C, priors), n)


# --------------------------------------------------------------------------- #
# Fixed-point solvers
# --------------------------------------------------------------------------- #
def _residual(model: _CovModel, delta: np.ndarray, z: np.ndarray) -> np.ndarray:
    F, _ = model.evaluate(delta, z)
    return np.max(np.abs(delta - F) / (1.0 + np.abs(delta)), axis=1)


def _newton(
    model: _CovModel, delta: np.ndarray, z: np.ndarray, *, max_iter: int = _MAX_NEWTON
) -> tuple[np.ndarray, np.ndarray]:
    """Newton on ``δ − F(δ) = 0`` for every point; returns ``δ`` and a converged mask."""
    delta = delta.copy()
    K = model.K
    active = np.ones(delta.shape[0], dtype=bool)
    ok = np.zeros(delta.shape[0], dtype=bool)
    upper = z.imag > 0
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        d = delta[idx]
        F, Jac = model.evaluate(d, z[idx])
        res = d - F
        err = np.max(np.abs(res) / (1.0 + np.abs(d)), axis=1)
        done = err < _NEWTON_TOL
        ok[idx[done]] = True
        active[idx[done]] = False
        todo = ~done
        if not np.any(todo):
            break
        sys = np.eye(K)[None] - Jac[todo]
        try:
            step = np.linalg.solve(sys, res[todo][..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.stack([np.linalg.lstsq(m, r, rcond=None)[0] for m, r in zip(sys, res[todo])])
        # limit the step to keep 1 + δ away from 0
        size = np.max(np.abs(step) / (0.5 * np.abs(1.0 + d[todo]) + 1e-300), axis=1)
        step = step / np.maximum(1.0, size)[:, None]
        new = d[todo] - step
        bad = ~np.all(np.isfinite(new), axis=1)
        new[bad] = d[todo][bad]
        delta[idx[todo]] = new
        active[idx[todo][bad]] = False
    # points in the upper half plane must stay on the Stieltjes branch: Im δ_a >= 0
    wrong = upper & np.any(delta.imag < -1e-9 * (1.0 + np.abs(delta)), axis=1)
    ok &= ~wrong
    return delta, ok


def _damped(
    model: _CovModel, delta: np.ndarray, z: np.ndarray, *, omega: float = 0.5
) -> np.ndarray:
    """Damped fixed-point iteration ``δ ← (1−ω) δ + ω F(δ)`` (always on the right branch)."""
    delta = delta.copy()
    active = np.arange(delta.shape[0])
    for _ in range(_MAX_DAMPED):
        F, _ = model.evaluate(delta[active], z[active])
        new = (1.0 - omega) * delta[active] + omega * F
        err = np.max(np.abs(new - delta[active]) / (1.0 + np.abs(new)), axis=1)
        delta[active] = new
        active = active[err > 1e-9]
        if active.size == 0:
            break
    return delta


def _solve(
    model: _CovModel, z: np.ndarray, delta0: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Solve at points ``z`` (Im z >= 0) from ``delta0`` (or the large-``|z|`` guess)."""
    tr1, _ = model.trace_moments()
    if delta0 is None:
        delta0 = -tr1[None, :] / z[:, None]
    delta, ok = _newton(model, delta0.astype(complex), z)
    if not np.all(ok):
        bad = np.flatnonzero(~ok)
        upper = z[bad].imag > 0
        if np.any(upper):
            b = bad[upper]
            start = _damped(model, delta0[b].astype(complex), z[b])
            d2, ok2 = _newton(model, start, z[b])
            delta[b] = np.where(ok2[:, None], d2, start)
            ok[b] = ok2 | (_residual(model, start, z[b]) < 1e-7)
    return delta, ok


def _solve_line(model: _CovModel, x: np.ndarray, eps: float, scale: float) -> np.ndarray:
    """``δ(x + i eps)`` for real ``x``, by adaptive continuation in the imaginary part.

    Start at ``η = scale`` (where the fixed point is a strong contraction), then lower ``η``
    toward ``eps`` point by point: each point tries a large step (``η / 1000``), and on
    failure (no Newton convergence, or a step off the branch ``Im δ_a ≥ 0``) retries with
    the square root of its step factor; a point whose factor falls below 1.2 is advanced by
    the damped fixed-point iteration instead.
    """
    G = x.size
    delta, ok = _solve(model, x + 1j * scale)
    if not np.all(ok):
        raise _no_convergence(model, x, delta, x + 1j * scale, scale)
    eta = np.full(G, float(scale))
    factor = np.full(G, 1000.0)
    for _ in range(400):
        pend = np.flatnonzero(eta > eps * 1.000001)
        if pend.size == 0:
            break
        nxt = np.maximum(eps, eta[pend] / factor[pend])
        z = x[pend] + 1j * nxt
        d, ok = _newton(model, delta[pend], z, max_iter=14)
        good, bad = pend[ok], pend[~ok]
        delta[good] = d[ok]
        eta[good] = nxt[ok]
        factor[good] = np.minimum(factor[good] ** 1.5, 1000.0)
        factor[bad] = np.sqrt(factor[bad])
        slow = bad[factor[bad] < 1.2]
        if slow.size:
            zs = x[slow] + 1j * np.maximum(eps, eta[slow] / 1.2)
            ds = _damped(model, delta[slow], zs)
            res = _residual(model, ds, zs)
            if np.any(res > 1e-7):
                raise _no_convergence(model, x[slow], ds, zs, float(np.max(zs.imag)))
            delta[slow] = ds
            eta[slow] = zs.imag
            factor[slow] = 4.0
    else:  # pragma: no cover - the loop always ends long before
        raise RuntimeError("continuation in eta did not reach the target")
    return delta


def _no_convergence(
    model: _CovModel, x: np.ndarray, delta: np.ndarray, z: np.ndarray, eta: float
) -> RuntimeError:
    res = _residual(model, delta, z)
    return RuntimeError(
        f"mixture Marchenko–Pastur fixed point did not converge at {int(np.sum(res > 1e-7))} "
        f"of {x.size} points (eta = {eta:.3g}; worst residual {float(res.max()):.3g} after "
        f"{_MAX_NEWTON} Newton and {_MAX_DAMPED} damped iterations)"
    )


def _stieltjes(model: _CovModel, delta: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``m(z) = Σ_a c_a (−1/(z(1 + δ_a)))``."""
    return (-(1.0 / (1.0 + delta)) @ model.fractions) / z


def _atom(model: _CovModel) -> float:
    """Mass of the eigenvalue 0 of ``ΩΩᵀ``: ``max(0, 1 − rank/n)``."""
    n = model.c * model.p
    return max(0.0, 1.0 - model.rank / n)


def _density(model: _CovModel, x: np.ndarray, eps: float, scale: float) -> np.ndarray:
    z = x + 1j * eps
    delta = _solve_line(model, x, eps, scale)
    m = _stieltjes(model, delta, z)
    atom = _atom(model)
    dens = (m.imag - atom * eps / (x * x + eps * eps)) / math.pi
    return np.maximum(dens, 0.0)


def _support(model: _CovModel, eps_rel: float) -> tuple[float, float, float]:
    """Outer edges ``(lo, hi)`` of the continuous part of the bulk of ``ΩΩᵀ``, and a scale.

    A coarse scan (200 points) brackets the support; 65 points between the last point
    outside and the first inside then place each edge to ``1/12800`` of the scan range.
    Both use ``ε = 1e-7`` of the scale and the threshold ``1e-3`` of the largest density,
    far above the ``O(ε/distance^{3/2})`` leakage of ``Im m`` outside the support.
    """
    c = model.c
    top = model.max_eig() * (1.0 + math.sqrt(c)) ** 2 * 1.05 + 1e-12
    if model.commuting:
        assert model.lam is not None
        pos = model.lam[model.lam > 0]
        low = float(pos.min()) if pos.size else 0.0
    else:
        low = 0.0
    bottom = max(0.0, low * (1.0 - math.sqrt(c)) ** 2 * 0.5) if abs(c - 1.0) > 0.05 else 0.0
    x = np.linspace(bottom, top, 201)[1:]
    eta = min(eps_rel, 1e-7) * top
    dens = _density(model, x, eta, top)
    peak = float(dens.max())
    inside = np.flatnonzero(dens > 1e-3 * peak)
    if inside.size == 0:  # pragma: no cover - degenerate covariances
        raise RuntimeError("could not locate the bulk of the mixture Marchenko–Pastur law")
    # the edge lies between the last point outside and the first inside: 65 points there
    k0, k1 = int(inside[0]), int(inside[-1])
    windows = (
        (max(x[k0 - 1] if k0 > 0 else bottom, 1e-9 * top), x[k0]),
        (x[k1], x[k1 + 1] if k1 + 1 < x.size else top),
    )
    edges = []
    for side, (a, b) in enumerate(windows):
        xf = np.linspace(a, b, 65)
        inn = np.flatnonzero(_density(model, xf, eta, top) > 1e-3 * peak)
        if inn.size == 0:  # pragma: no cover - the density peaks inside the window
            edges.append(float(b if side == 0 else a))
        elif side == 0:
            edges.append(float(xf[max(inn[0] - 1, 0)]))
        else:
            edges.append(float(xf[min(inn[-1] + 1, xf.size - 1)]))
    lo = edges[0] if edges[0] > 1e-6 * top else 0.0  # a hard edge at 0 (n = p)
    return max(0.0, lo), edges[1], top


def _edge_grid(lo: float, hi: float, points: int) -> np.ndarray:
    """Points on ``[lo, hi]`` clustered at both ends (square-root edges)."""
    t = np.linspace(0.0, math.pi, points)
    return lo + (hi - lo) * 0.5 * (1.0 - np.cos(t))


# --------------------------------------------------------------------------- #
# Low-level bulk density
# --------------------------------------------------------------------------- #
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
    eps: float = _DEFAULT_EPS,
    points: int = _DEFAULT_POINTS,
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
        model = _model_from_mixture(covs_or_mixture, n)
    else:
        model = _model_from_covs(covs_or_mixture, n, p, priors)
    lo, hi, top = _support(model, eps)
    if grid is None:
        x = _edge_grid(lo, hi, points)
    else:
        x = _check_grid(grid)
    dens = _density_safe(model, x, eps * top, top)
    return MPDensity(
        grid=_ro(x), density=_ro(dens), atom=_atom(model), edges=(lo, hi), n=n, p=model.p
    )


def _density_safe(model: _CovModel, x: np.ndarray, eps: float, scale: float) -> np.ndarray:
    """Density on any real grid (points at exactly 0 are moved off the atom)."""
    x = np.where(np.abs(x) < eps, eps, x)
    return _density(model, x, eps, scale)


def _ro(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64, copy=True)
    a.setflags(write=False)
    return a


# --------------------------------------------------------------------------- #
# Spikes
# --------------------------------------------------------------------------- #
class _SpikeSystem:
    """``H(λ) = c1 B⁻¹ + Ξ(λ)`` for ``M̄ − ρ = c1 (ΩΩᵀ − λ) + U B Uᵀ``, ``U = [J/√p, ψ, ΩMᵀ]``."""

    def __init__(self, model: _CovModel, coef: KernelCoefficients, t: np.ndarray, T: np.ndarray):
        K = model.K
        c1, c2, c3 = coef.c1, coef.c2, coef.c3
        self.model = model
        self.c1 = c1
        AJJ = c2 * np.outer(t, t) + c3 * T
        blocks = ["J"]
        use_psi = c2 != 0.0
        use_means = model.has_means and bool(np.any(model.means_gram() != 0))
        MM = model.means_gram()
        size = K + (1 if use_psi else 0) + (K if use_means else 0)
        B = np.zeros((size, size))
        B[:K, :K] = AJJ + (c1 * MM if use_means else 0.0)
        pos = K
        if use_psi:
            B[:K, pos] = B[pos, :K] = c2 * t
            B[pos, pos] = c2
            self.psi = pos
            blocks.append("psi")
            pos += 1
        else:
            self.psi = -1
        if use_means:
            B[:K, pos : pos + K] = c1 * np.eye(K)
            B[pos : pos + K, :K] = c1 * np.eye(K)
            self.mean0 = pos
        else:
            self.mean0 = -1
        self.B = B
        self.size = size
        self.Binv_c1 = c1 * np.linalg.inv(B) if np.linalg.cond(B) < 1e14 else None
        _, tr2 = model.trace_moments()
        self.psi_weight = 2.0 * model.c * model.fractions * tr2  # 2 c c_a T_aa
        self.MM = MM

    def xi(self, lam: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """Deterministic equivalent of ``Uᵀ (ΩΩᵀ − λ)⁻¹ U`` at real ``λ`` (G, r, r)."""
        model = self.model
        K = model.K
        G = lam.shape[0]
        g = -1.0 / (lam[:, None] * (1.0 + delta))  # (G, K)
        X = np.zeros((G, self.size, self.size), dtype=complex)
        X[:, range(K), range(K)] = model.c * model.fractions * g
        if self.psi >= 0:
            X[:, self.psi, self.psi] = g @ self.psi_weight
        if self.mean0 >= 0:
            RM = model.resolvent_means(delta, lam.astype(complex))
            sl = slice(self.mean0, self.mean0 + K)
            X[:, sl, sl] = self.MM[None] + lam[:, None, None] * RM
        return X.real

    def H(self, lam: np.ndarray, delta: np.ndarray) -> np.ndarray:
        assert self.Binv_c1 is not None
        return self.Binv_c1[None] + self.xi(lam, delta)


def _delta_at(model: _CovModel, lam: np.ndarray, scale: float) -> np.ndarray:
    """``δ(λ + i0)`` at real points outside the bulk, on the Stieltjes branch.

    Solved at ``λ + iη`` with ``η = 1e-13 · scale`` by continuation in ``η`` (so the branch
    is always the physical one, also across ``λ = 0`` where ``δ`` has a pole when
    ``n < p``); outside the bulk the imaginary part is ``O(η)`` and is dropped.
    """
    return _solve_line(model, lam, 1e-13 * scale, scale)


def _count_neg(system: _SpikeSystem, lam: np.ndarray, delta: np.ndarray) -> np.ndarray:
    H = system.H(lam, delta)
    return np.sum(np.linalg.eigvalsh(H) < 0, axis=1)


def _find_spikes(
    system: _SpikeSystem, lo_edge: float, hi_edge: float, atom: float, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Roots ``λ_k`` of ``det H(λ) = 0`` outside ``[lo_edge, hi_edge]`` and their alignments.

    ``Ξ(λ)`` increases with ``λ`` on every interval outside the spectrum, so the eigenvalues
    of ``H`` cross 0 one at a time and the number of roots in ``(a, b)`` is the change of
    the inertia of ``H`` between ``a`` and ``b``: brackets are found on a grid, then refined
    by multisection (``Ξ`` is evaluated 33 points at a time) to 1e-13 relative precision.
    """
    model = system.model
    if system.Binv_c1 is None:
        return np.empty(0), np.empty((0, model.K))
    # a bound on how far spikes can be: ‖B‖ ‖UᵀU‖ / c1
    normB = float(np.max(np.abs(np.linalg.eigvalsh(system.B))))
    _, tr2 = model.trace_moments()
    normU = float(
        np.max(model.c * model.fractions)
        + 2 * model.c * model.fractions @ tr2
        + model.c * np.abs(system.MM).sum() * model.max_eig()
    )
    reach = 2.0 * normB * normU / system.c1 + hi_edge + 1e-9
    tiny = 1e-6 * scale
    t = np.geomspace(1e-8, 1.0, 240)
    gaps = [hi_edge + reach * t]
    if atom > 0:
        gaps.append(-tiny - reach * t[::-1])
        gaps.append(tiny + (lo_edge - tiny) * (1.0 - t[::-1]))
    elif lo_edge > 10 * tiny:
        lam = lo_edge - (lo_edge + reach) * t[::-1]
        gaps.append(lam[np.abs(lam) > tiny])
    else:  # hard edge at 0 (n = p): only negative eigenvalues can be isolated on the left
        gaps.append(-tiny - reach * t[::-1])
    roots: list[float] = []
    aligns: list[np.ndarray] = []
    for lam in gaps:
        lam = np.sort(lam)
        if lam.size < 2:
            continue
        delta = _delta_at(model, lam, scale)
        # H increases with λ: the inertia is non-increasing; the envelope discards rounding
        # noise where an eigenvalue of H grazes 0 (e.g. near a hard edge)
        nneg = np.minimum.accumulate(_count_neg(system, lam, delta))
        for i in np.flatnonzero(nneg[1:] != nneg[:-1]):
            for r in _multisection(system, float(lam[i]), float(lam[i + 1]), scale):
                roots.append(r[0])
                aligns.append(r[1])
    if not roots:
        return np.empty(0), np.empty((0, model.K))
    order = np.argsort(roots)[::-1]
    return np.asarray(roots)[order], np.asarray(aligns)[order]


def _multisection(
    system: _SpikeSystem, a: float, b: float, scale: float
) -> list[tuple[float, np.ndarray]]:
    """Roots of ``det H`` in ``(a, b)``.

    Multisection (33 points at a time) on the inertia of ``H`` until every sub-bracket holds
    one crossing, then the Illinois variant of regula falsi on the crossing eigenvalue of
    ``H`` (continuous and increasing in ``λ``), to ``1e-13`` relative.  Degenerate roots
    (several eigenvalues of ``H`` crossing at one ``λ``) are narrowed by multisection to
    ``1e-12``; roots closer than ``1e-9`` (relative) are merged and their multiplicity is
    the net inertia change across the cluster.
    """
    model = system.model
    brackets = [(a, b)]
    found: list[float] = []
    while brackets:
        a, b = brackets.pop()
        if b - a <= 1e-12 * max(abs(a), abs(b), 1e-300):
            found.append(0.5 * (a + b))
            continue
        lam = np.linspace(a, b, 33)
        delta = _delta_at(model, lam, scale)
        H = system.H(lam, delta)
        theta = np.linalg.eigvalsh(H)
        cnt = np.minimum.accumulate(np.sum(theta < 0, axis=1))
        for i in np.flatnonzero(cnt[1:] != cnt[:-1]):
            if cnt[i] - cnt[i + 1] == 1:
                idx = int(cnt[i + 1])  # the eigenvalue of H that crosses 0 (ascending order)
                found.append(
                    _illinois(
                        system,
                        float(lam[i]),
                        float(lam[i + 1]),
                        float(theta[i, idx]),
                        float(theta[i + 1, idx]),
                        idx,
                        scale,
                    )
                )
            else:
                brackets.append((float(lam[i]), float(lam[i + 1])))
    found.sort()
    clusters: list[list[float]] = []
    for r in found:
        if clusters and r - clusters[-1][-1] <= 1e-9 * max(abs(r), 1e-300):
            clusters[-1].append(r)
        else:
            clusters.append([r])
    out: list[tuple[float, np.ndarray]] = []
    for cl in clusters:
        pad = 1e-9 * max(abs(cl[0]), abs(cl[-1]), 1e-300)
        ends = np.array([cl[0] - pad, cl[-1] + pad])
        cnt = _count_neg(system, ends, _delta_at(model, ends, scale))
        mult = abs(int(cnt[0]) - int(cnt[1]))
        if mult:
            root = float(np.mean(cl))
            out += [(root, al) for al in _alignments(system, root, mult, scale)]
    return out


def _illinois(
    system: _SpikeSystem, a: float, b: float, fa: float, fb: float, idx: int, scale: float
) -> float:
    """Zero of the ``idx``-th eigenvalue of ``H(λ)`` in ``[a, b]`` (``fa < 0 < fb``)."""
    side = 0
    x = 0.5 * (a + b)
    for _ in range(100):
        if b - a <= 1e-13 * max(abs(a), abs(b), 1e-300):
            break
        x = (a * fb - b * fa) / (fb - fa)
        if not a < x < b:
            x = 0.5 * (a + b)
        lam = np.array([x])
        fx = float(np.linalg.eigvalsh(system.H(lam, _delta_at(system.model, lam, scale)))[0, idx])
        if fx == 0.0:
            return x
        if fx < 0:
            a, fa = x, fx
            if side == -1:
                fb *= 0.5
            side = -1
        else:
            b, fb = x, fx
            if side == 1:
                fa *= 0.5
            side = 1
        if abs(fx) <= 1e-14 * (1.0 + abs(fa) + abs(fb)):
            break
    return x


def _alignments(system: _SpikeSystem, lam: float, mult: int, scale: float) -> list[np.ndarray]:
    """Residue formula ``c c_a g_a² v_a² / (vᵀ Ξ' v)`` for the ``mult`` null vectors of ``H``."""
    model = system.model
    K = model.K
    h = 1e-6 * max(abs(lam), 1e-3 * scale)
    lams = np.array([lam - h, lam, lam + h])
    ds = _delta_at(model, lams, scale)
    Xi = system.xi(lams, ds)
    dXi = (Xi[2] - Xi[0]) / (2 * h)
    assert system.Binv_c1 is not None
    w, V = np.linalg.eigh(system.Binv_c1 + Xi[1])
    g = (-1.0 / (lam * (1.0 + ds[1]))).real
    out = []
    for k in np.argsort(np.abs(w))[:mult]:
        v = V[:, k]
        theta = float(v @ dXi @ v)
        al = model.c * model.fractions * g**2 * v[:K] ** 2 / theta
        out.append(np.asarray(al, dtype=np.float64))
    return out


# --------------------------------------------------------------------------- #
# TheorySpectrum
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True, repr=False)
class TheorySpectrum:
    """Predicted spectrum of a GMM-structured kernel (issue 8; see ``docs/theory-spectra.md``).

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
    kind : str
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
    kind: str
    coefficients: KernelCoefficients
    approximate_covariances: bool = False

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
        return (
            f"TheorySpectrum(kind={self.kind!r}, n={self.n}, p={self.p}, "
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
        ``λ_max − λ_min`` (THEORY.md §6).
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
            "kind": self.kind,
            "n": self.n,
            "p": self.p,
            "edges": list(self.edges),
            "atom": self.atom,
            "atom_position": self.atom_position,
            "spikes": self.spikes.tolist(),
            "alignments": self.alignments.tolist(),
            "coefficients": list(self.coefficients.as_tuple()),
        }


@_single_threaded
def theory_spectrum(
    deq_or_net: Any,
    stats_or_mixture: Any,
    n: int,
    *,
    kind: str = "ck",
    grid: Any = None,
    eps: float = _DEFAULT_EPS,
    points: int = _DEFAULT_POINTS,
) -> TheorySpectrum:
    """Predict the spectrum of a DEQ's (or explicit net's) kernel on ``n`` mixture samples.

    The kernel is replaced by its surrogate ``M̄ = c1 XXᵀ + V A Vᵀ + (d − c1 τ0²) I``
    (THEORY.md §4) with ``(d, c1, c2, c3) = deq_or_net.coefficients(kind)``; its bulk is
    ``c1 · MP-mixture + (d − c1 τ0²)`` and its spikes are the roots of
    ``det(c1 B⁻¹ + Ξ(λ)) = 0`` outside the bulk (``docs/theory-spectra.md``).

    Parameters
    ----------
    deq_or_net
        Any object with ``.coefficients(kind)`` returning
        :class:`~deqfast.KernelCoefficients` (:class:`~deqfast.DEQ`, ``ExplicitNet``),
        or a :class:`~deqfast.KernelCoefficients` directly.
    stats_or_mixture
        A :class:`~deqfast.GaussianMixture` (or a :class:`~deqfast.Sample` of one): exact
        covariances and means.  A :class:`~deqfast.MixtureStats` carries neither: the
        covariances are then taken as ``(tr C_a/p) I`` and the class means as zero (so
        the mean spikes are missing) — prefer a mixture.
    n : int
        Number of samples (``c = n/p``).
    kind : {"ck", "ntk", "ntk_all", "pre"}
        Which kernel.
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
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    eps = _check_eps(eps)
    points = check_integer(points, "points", min_value=10)
    if isinstance(deq_or_net, KernelCoefficients):
        coef = deq_or_net
    else:
        method = getattr(deq_or_net, "coefficients", None)
        if not callable(method):
            raise TypeError(
                "deq_or_net must have a .coefficients(kind) method (DEQ, ExplicitNet) or be "
                f"KernelCoefficients; got {type(deq_or_net).__name__}"
            )
        coef = method(kind)
        if not isinstance(coef, KernelCoefficients):
            raise TypeError(
                f"deq_or_net.coefficients({kind!r}) must return KernelCoefficients; got "
                f"{type(coef).__name__}"
            )
    d, c1, c2, c3 = coef.as_tuple()
    if not all(math.isfinite(v) for v in (d, c1, c2, c3)):
        raise ValueError(f"coefficients must be finite; got {coef!r}")
    if not c1 > 0:
        raise ValueError(
            f"the theory needs c1 > 0 (the weight of XXᵀ); got c1 = {c1!r} for kind={kind!r}"
        )
    approx = False
    if isinstance(stats_or_mixture, Sample):
        stats_or_mixture = stats_or_mixture.mixture
    if isinstance(stats_or_mixture, GaussianMixture):
        mix = stats_or_mixture
        model = _model_from_mixture(mix, n)
        tau0, t, T = mix.tau0, np.asarray(mix.t), np.asarray(mix.T)
    elif isinstance(stats_or_mixture, MixtureStats):
        st = stats_or_mixture
        model = _model_from_stats(st, n)
        tau0, t, T = st.tau0, np.asarray(st.t), np.asarray(st.T)
        approx = True
    else:
        raise TypeError(
            "stats_or_mixture must be a GaussianMixture, a Sample or a MixtureStats; got "
            f"{type(stats_or_mixture).__name__}"
        )
    shift = d - c1 * tau0**2
    lo, hi, top = _support(model, eps)
    user_grid = None
    if grid is None:
        lam_grid = _edge_grid(lo, hi, points)
    else:
        user_grid = _check_grid(grid)
        lam_grid = (user_grid - shift) / c1
    dens = _density_safe(model, lam_grid, eps * top, top) if lam_grid.size else lam_grid
    atom = _atom(model)
    system = _SpikeSystem(model, coef, t, T)
    roots, aligns = _find_spikes(system, lo, hi, atom, top)
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
        kind=kind,
        coefficients=coef,
        approximate_covariances=approx,
    )
