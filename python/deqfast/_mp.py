"""The mixture Marchenko–Pastur law: its fixed point, Stieltjes transform, density and support.

Private: the public face is :func:`deqfast.theory.mp_mixture_density` and
:func:`deqfast.theory.theory_spectrum` (the equations are in the module docstring of
:mod:`deqfast.theory` and in :doc:`/theory-spectra`).

Covariances that commute (scalar, diagonal, or full matrices sharing an eigenbasis) are
reduced to their joint eigenvalues (:class:`CovModel`), so one iteration costs ``O(K r)``
for ``r`` distinct joint eigenvalues; the fixed point is solved for a whole grid at once
by Newton's method on the ``K`` unknowns, with continuation in ``ε`` and a damped
fixed-point iteration as fall-back.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from deqfast._validation import as_finite_array
from deqfast.data import GaussianMixture, MixtureStats

DEFAULT_POINTS = 400
DEFAULT_EPS = 1e-6
_NEWTON_TOL = 1e-11
_MAX_NEWTON = 40
_MAX_DAMPED = 4000


# --------------------------------------------------------------------------- #
# Covariance model: joint eigenvalues of commuting covariances, or full matrices
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True)
class CovModel:
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


def model_from_mixture(mix: GaussianMixture, n: int) -> CovModel:
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
        return CovModel(p, n / p, fractions, lam, w, S, None, None, rank)
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
            return CovModel(
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
    return CovModel(p, n / p, fractions, lam, w, S, None, None, rank)


def model_from_stats(stats: MixtureStats, n: int) -> CovModel:
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
    return CovModel(p, n / p, fractions, tr[:, None].copy(), np.ones(1), None, None, None, p)


def model_from_covs(covs: Any, n: int, p: int | None, priors: Any) -> CovModel:
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
        return model_from_mixture(GaussianMixture(np.concatenate([means, means]), C), n)
    return model_from_mixture(GaussianMixture(means, C, priors), n)


# --------------------------------------------------------------------------- #
# Fixed-point solvers
# --------------------------------------------------------------------------- #
def _residual(model: CovModel, delta: np.ndarray, z: np.ndarray) -> np.ndarray:
    F, _ = model.evaluate(delta, z)
    return np.max(np.abs(delta - F) / (1.0 + np.abs(delta)), axis=1)


def _newton(
    model: CovModel, delta: np.ndarray, z: np.ndarray, *, max_iter: int = _MAX_NEWTON
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


def _damped(model: CovModel, delta: np.ndarray, z: np.ndarray, *, omega: float = 0.5) -> np.ndarray:
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
    model: CovModel, z: np.ndarray, delta0: np.ndarray | None = None
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


def solve_line(model: CovModel, x: np.ndarray, eps: float, scale: float) -> np.ndarray:
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
    model: CovModel, x: np.ndarray, delta: np.ndarray, z: np.ndarray, eta: float
) -> RuntimeError:
    res = _residual(model, delta, z)
    return RuntimeError(
        f"mixture Marchenko–Pastur fixed point did not converge at {int(np.sum(res > 1e-7))} "
        f"of {x.size} points (eta = {eta:.3g}; worst residual {float(res.max()):.3g} after "
        f"{_MAX_NEWTON} Newton and {_MAX_DAMPED} damped iterations)"
    )


def _stieltjes(model: CovModel, delta: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``m(z) = Σ_a c_a (−1/(z(1 + δ_a)))``."""
    return (-(1.0 / (1.0 + delta)) @ model.fractions) / z


def atom_mass(model: CovModel) -> float:
    """Mass of the eigenvalue 0 of ``ΩΩᵀ``: ``max(0, 1 − rank/n)``."""
    n = model.c * model.p
    return max(0.0, 1.0 - model.rank / n)


def _density(model: CovModel, x: np.ndarray, eps: float, scale: float) -> np.ndarray:
    z = x + 1j * eps
    delta = solve_line(model, x, eps, scale)
    m = _stieltjes(model, delta, z)
    atom = atom_mass(model)
    dens = (m.imag - atom * eps / (x * x + eps * eps)) / math.pi
    return np.maximum(dens, 0.0)


def support(model: CovModel, eps_rel: float) -> tuple[float, float, float]:
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


def edge_grid(lo: float, hi: float, points: int) -> np.ndarray:
    """Points on ``[lo, hi]`` clustered at both ends (square-root edges)."""
    t = np.linspace(0.0, math.pi, points)
    return lo + (hi - lo) * 0.5 * (1.0 - np.cos(t))


def density_safe(model: CovModel, x: np.ndarray, eps: float, scale: float) -> np.ndarray:
    """Density on any real grid (points at exactly 0 are moved off the atom)."""
    x = np.where(np.abs(x) < eps, eps, x)
    return _density(model, x, eps, scale)
