"""Spikes of a GMM-structured kernel's surrogate: isolated eigenvalues and their alignments.

Private: the public face is :func:`deqfast.theory.theory_spectrum`. An eigenvalue
``ρ = s + c1 λ`` outside the bulk is a root of ``det H(λ) = 0`` with
``H(λ) = c1 B⁻¹ + Ξ(λ)`` (see :mod:`deqfast.theory` and :doc:`/theory-spectra`);
roots are bracketed by counting negative eigenvalues of ``H`` (multisection) and
refined by the Illinois method; the alignments come from the residue formula.
"""

from __future__ import annotations

import numpy as np

from deqfast._mp import CovModel, solve_line
from deqfast.coefficients import KernelCoefficients


# --------------------------------------------------------------------------- #
# Spikes
# --------------------------------------------------------------------------- #
class SpikeSystem:
    """``H(λ) = c1 B⁻¹ + Ξ(λ)`` for ``M̄ − ρ = c1 (ΩΩᵀ − λ) + U B Uᵀ``, ``U = [J/√p, ψ, ΩMᵀ]``."""

    def __init__(self, model: CovModel, coef: KernelCoefficients, t: np.ndarray, T: np.ndarray):
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


def _delta_at(model: CovModel, lam: np.ndarray, scale: float) -> np.ndarray:
    """``δ(λ + i0)`` at real points outside the bulk, on the Stieltjes branch.

    Solved at ``λ + iη`` with ``η = 1e-13 · scale`` by continuation in ``η`` (so the branch
    is always the physical one, also across ``λ = 0`` where ``δ`` has a pole when
    ``n < p``); outside the bulk the imaginary part is ``O(η)`` and is dropped.
    """
    return solve_line(model, lam, 1e-13 * scale, scale)


def _count_neg(system: SpikeSystem, lam: np.ndarray, delta: np.ndarray) -> np.ndarray:
    H = system.H(lam, delta)
    return np.sum(np.linalg.eigvalsh(H) < 0, axis=1)


def find_spikes(
    system: SpikeSystem, lo_edge: float, hi_edge: float, atom: float, scale: float
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
    system: SpikeSystem, a: float, b: float, scale: float
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
    system: SpikeSystem, a: float, b: float, fa: float, fb: float, idx: int, scale: float
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


def _alignments(system: SpikeSystem, lam: float, mult: int, scale: float) -> list[np.ndarray]:
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
