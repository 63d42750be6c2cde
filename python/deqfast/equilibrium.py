"""The equilibrium equations of the DEQ in the mixture regime (:ref:`§4 <theory-4>`).

``(E1)`` ``τ*² = σ_a² m2(τ*) + σ_b² τ0²`` is the only genuinely nonlinear
equation (solved with a bracketed Newton method, the activation being centred at
``τ*`` simultaneously); ``(E2)–(E4)`` and every surrogate coefficient follow
as fixed points of the coefficient algebra of :mod:`deqfast.coefficients`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, Union

from deqfast import coefficients as alg
from deqfast._validation import check_integer, check_positive
from deqfast._vocabulary import (
    OLD_KERNEL_NAMES,
    check_kernel,
    deprecated_module_attributes,
    renamed_keywords,
)
from deqfast.activations import Activation, CustomActivation, Moments

__all__ = [
    "Equilibrium",
    "diagonal_fixed_point",
    "solve_equilibrium",
    "surrogate_coefficients",
]

AnyActivation = Union[Activation, CustomActivation]

__getattr__ = deprecated_module_attributes(
    __name__,
    {
        "KINDS": (
            OLD_KERNEL_NAMES,
            lambda: ("pre", "ck", "ntk", "ntk_all"),
        )
    },
)


@dataclass(frozen=True)
class Equilibrium(Moments):
    """Solution of the equilibrium equations E1–E4 (:ref:`§4 <theory-4>`).

    An ``Equilibrium`` is the :class:`~deqfast.activations.Moments` of the activation centred
    at ``τ*`` (``tau``; ``a0 = 0`` by the centring, ``center`` is the subtracted constant
    ``E φ(τ* ξ)``), together with the input level ``tau0``, ``D = 1 − σ_a² a1²``, the
    surrogate coefficients ``alpha1``–``alpha4`` and the parameters ``sigma_a2``,
    ``sigma_b2``.

    The solve of E1 is reported like every deqfast solver result: ``converged`` (whether the
    last Newton step was at most ``tol · τ*²``), ``status`` (``"converged"`` or
    ``"max_iter"``), ``message``, ``iterations`` (Newton steps) and ``residual``
    (``|τ*² − σ_a² m2 − σ_b² τ0²|`` at the returned ``τ*``).
    """

    tau0: float
    center: float
    D: float
    alpha1: float
    alpha2: float
    alpha3: float
    alpha4: float
    sigma_a2: float
    sigma_b2: float
    iterations: int
    residual: float
    converged: bool
    status: str
    message: str

    @property
    def moments(self) -> Moments:
        """The centred activation's moments at ``τ*``, as a plain :class:`Moments`."""
        return Moments(*(getattr(self, f.name) for f in fields(Moments)))

    def __repr__(self) -> str:
        keys = ("tau", "center", "alpha1", "alpha2", "alpha3", "alpha4", "D", "m2", "e2")
        body = ", ".join(f"{k}={getattr(self, k):.10g}" for k in keys)
        return f"Equilibrium({body}, iterations={self.iterations}, residual={self.residual:.2e})"


def _variance_and_slope(phi: AnyActivation, u: float) -> tuple[float, float, Moments]:
    """``Var φ(√u ξ)`` and its derivative in ``u`` (= ṁ2 of the centred φ)."""
    m = phi.moments(math.sqrt(u))
    return m.m2 - m.a0 * m.a0, m.m2_dot - m.a0 * m.a2, m


class _NoBracket(Exception):
    """``F`` stayed ``<= 0`` (or became non-finite) while doubling ``u``: no root above ``base``."""


def _scalar_root(
    F: Callable[[float], tuple[float, float]], base: float, *, tol: float, max_iter: int
) -> tuple[float, int, bool]:
    """Root of ``F(u) = u − σ_a² v(u) − base`` on ``[base, ∞)`` with ``v ≥ 0``.

    ``F(base) ≤ 0``, so a bracket ``[lo, hi]`` with ``F(hi) > 0`` is found by doubling; then
    Newton steps (``F`` returns value and derivative) that fall back to bisection when they
    leave the bracket. Returns ``(u, iterations, converged)``; converged means the last step
    was at most ``tol · u``.
    """
    lo, hi = base, 2.0 * base
    f_hi, _ = F(hi)
    doublings = 0
    while f_hi <= 0:
        lo, hi = hi, 2.0 * hi
        f_hi, _ = F(hi)
        doublings += 1
        if doublings > 200 or not math.isfinite(f_hi):
            raise _NoBracket
    u = 0.5 * (lo + hi)
    for it in range(1, max_iter + 1):
        f, fp = F(u)
        if f == 0.0:
            return u, it, True
        if f > 0:
            hi = u
        else:
            lo = u
        un = u - f / fp if fp > 0 else 0.5 * (lo + hi)
        if not (lo <= un <= hi):
            un = 0.5 * (lo + hi)
        if abs(un - u) <= tol * u:
            return un, it, True
        u = un
    return u, max_iter, False


def solve_equilibrium(
    phi: AnyActivation,
    *,
    sigma_a2: float,
    sigma_b2: float,
    tau0: float,
    tol: float = 1e-14,
    max_iter: int = 200,
    strict: bool = True,
) -> Equilibrium:
    """Solve E1–E4 of :ref:`§4 <theory-4>` for the raw activation ``phi``.

    E1 is solved for ``u = τ²`` on the bracket ``[σ_b² τ0², u_hi]`` (the variance is
    non-negative, so ``F(u) = u − σ_a² Var φ(√u ξ) − σ_b² τ0²`` is ``≤ 0`` at the left
    end; ``u_hi`` is found by doubling) with Newton steps that fall back to bisection,
    until a step is at most ``tol · u`` (at most ``max_iter`` steps). E2–E4 follow as
    fixed points of the coefficient algebra.

    Parameters
    ----------
    phi
        The activation, centred or not (its centring at ``τ*`` is part of the solution).
    sigma_a2, sigma_b2, tau0
        ``σ_a²``, ``σ_b²`` and the input scale ``τ0``, all ``> 0``.
    tol, max_iter
        Relative step tolerance and iteration cap of E1's Newton iteration.
    strict
        If E1 does not converge within ``max_iter`` steps, raise ``RuntimeError``; with
        ``strict=False`` warn (``RuntimeWarning``) and return the last iterate.

    Raises
    ------
    ValueError
        If no equilibrium exists (``F`` never becomes positive: the variance grows
        faster than ``u / σ_a²``), or the equilibrium is not contracting
        (``σ_a² e2 ≥ 1`` at ``τ*``), naming ``sigma_a2``.
    RuntimeError
        If E1 or E2–E4 do not converge (with ``strict``): the message gives the
        residual and the iteration count.
    """
    tol = check_positive(tol, "tol")
    max_iter = check_integer(max_iter, "max_iter", min_value=1)
    phi = phi.uncentered()
    base = sigma_b2 * tau0 * tau0

    def F(u: float) -> tuple[float, float]:
        v, dv, _ = _variance_and_slope(phi, u)
        return u - sigma_a2 * v - base, 1.0 - sigma_a2 * dv

    try:
        u, it, converged = _scalar_root(F, base, tol=tol, max_iter=max_iter)
    except _NoBracket:
        raise ValueError(
            f"sigma_a2={sigma_a2!r} admits no equilibrium scale for {phi!r}: the variance "
            "E phi(tau xi)^2 grows faster than tau^2 / sigma_a2 (E1, §4 of the theory page "
            "docs/theory.md, has no solution); reduce sigma_a2"
        ) from None
    if not converged:
        msg = (
            f"E1 (tau*^2 = sigma_a2 Var phi(tau* xi) + sigma_b2 tau0^2) did not converge within "
            f"max_iter={max_iter} iterations for {phi!r}, sigma_a2={sigma_a2!r}: residual "
            f"{abs(F(u)[0]) / u:.3e} relative to tau^2 = {u:.6g} (tolerance {tol:g})"
        )
        alg.not_converged(msg, strict=strict)
    else:
        msg = f"E1 converged in {it} Newton steps (step <= tol={tol:g} relative to tau^2)"
    tau = math.sqrt(u)
    raw = phi.moments(tau)
    center = raw.a0
    cen = phi.centered(center).moments(tau)
    residual = abs(u - sigma_a2 * cen.m2 - base)
    if sigma_a2 * cen.e2 >= 1.0:
        raise ValueError(
            f"sigma_a2={sigma_a2!r} is not contracting for {phi!r}: sigma_a2 * E phi'(tau* xi)^2 "
            f"= {sigma_a2 * cen.e2:.6g} >= 1 at tau*={tau:.6g} (§3 of the theory page); reduce "
            "sigma_a2"
        )
    # E2–E4 as the fixed point of S -> sigma_a2 F_phi(S) + sigma_b2 XX^T in the algebra.
    S = pre_activation_coefficients(
        cen, sigma_a2=sigma_a2, sigma_b2=sigma_b2, tau0=tau0, strict=strict
    )
    D = 1.0 - sigma_a2 * cen.a1 * cen.a1
    return Equilibrium(
        tau=tau, a0=0.0, tau0=tau0, center=center, a1=cen.a1, a2=cen.a2, a3=cen.a3, m2=cen.m2,
        m2_dot=cen.m2_dot, e2=cen.e2, D=D, alpha1=S.c1, alpha2=S.c2, alpha3=S.c3, alpha4=S.c4,
        sigma_a2=sigma_a2, sigma_b2=sigma_b2, iterations=it, residual=residual,
        converged=converged, status="converged" if converged else "max_iter", message=msg,
    )  # fmt: skip


def diagonal_fixed_point(
    phi: AnyActivation, *, sigma_a2: float, sigma_b2: float, sqnorm: float
) -> Moments:
    """The exact kernels' diagonal for one sample (:ref:`§3 <theory-3>`), solved in Python.

    ``d = σ_a² E φ(√d ξ)² + σ_b² ‖x‖²`` with ``φ`` used as given (its shift is kept, as
    in :func:`deqfast.kernels.compute_kernels`). Returns ``φ``'s moments at ``τ = √d``;
    ``σ_a² ṁ2`` there is the factor by which the plain iteration of this equation
    contracts per step.

    Raises
    ------
    ValueError
        If the equation has no solution (``E φ²`` grows faster than ``d / σ_a²``).
    RuntimeError
        If Newton's method does not converge within 200 steps.
    """
    base = sigma_b2 * sqnorm

    def F(u: float) -> tuple[float, float]:
        m = phi.moments(math.sqrt(u))
        return u - sigma_a2 * m.m2 - base, 1.0 - sigma_a2 * m.m2_dot

    try:
        u, it, converged = _scalar_root(F, base, tol=1e-14, max_iter=200)
    except _NoBracket:
        raise ValueError(
            f"sigma_a2={sigma_a2!r}: the diagonal d = sigma_a2 E phi(sqrt(d) xi)^2 + sigma_b2 "
            f"|x|^2 has no solution for {phi!r} at |x|^2 = {sqnorm:.6g}; reduce sigma_a2"
        ) from None
    if not converged:
        raise RuntimeError(
            f"diagonal fixed point did not converge within {it} iterations (residual "
            f"{abs(F(u)[0]) / u:.3e} relative)"
        )
    return phi.moments(math.sqrt(u))


def pre_activation_coefficients(
    m: Moments, *, sigma_a2: float, sigma_b2: float, tau0: float, strict: bool = True
) -> alg.KernelCoefficients:
    """``S*``'s coefficients: the fixed point of ``S ↦ σ_a² F_φ(S) + σ_b² XXᵀ`` (E2–E4)."""
    X = alg.scale(alg.input_kernel(tau0), sigma_b2)
    rate = sigma_a2 * max(m.a1 * m.a1, abs(m.m2_dot))
    S = alg.affine_fixed_point(
        lambda S: alg.add(alg.scale(alg.gaussian_map(S, m), sigma_a2), X),
        X, rate=rate, name="E2-E4", strict=strict,
    )  # fmt: skip
    # The diagonal level is tau*^2 by E1 (the map above keeps m at tau*).
    return alg.KernelCoefficients(m.tau**2, S.c1, S.c2, S.c3, S.c4)


@renamed_keywords(kind="kernel")
def surrogate_coefficients(
    eq: Equilibrium, kernel: str = "ck", *, trained: str = "hidden"
) -> alg.KernelCoefficients:
    """Surrogate coefficients ``(d, c1, c2, c3)`` of the table in :ref:`§4 <theory-4>`.

    ``kernel``: ``"pre"`` (``S*``), ``"ck"`` (``G*``) or ``"ntk"``: ``K* = G* ⊘ (1 − σ_a² Ġ*)``
    (``trained="hidden"``, the paper's NTK) or ``Θ*`` (``trained="all"``, input weights
    trained too). All are computed in the coefficient algebra: ``G = F_φ(S*)``; ``K`` is the
    fixed point of ``Θ ↦ G + σ_a² Ġ∘Θ``; ``Θ* = G + Ġ∘Θ_z`` with ``Θ_z`` the fixed point of
    ``Θ ↦ S* + σ_a² Ġ∘Θ``.
    """
    kernel, trained = check_kernel(kernel, trained)
    m, sa2 = eq.moments, eq.sigma_a2
    S = alg.KernelCoefficients(eq.tau**2, eq.alpha1, eq.alpha2, eq.alpha3, eq.alpha4)
    if kernel == "pre":
        return S
    G = alg.gaussian_map(S, m)
    if kernel == "ck":
        return G
    rate = sa2 * m.e2  # >= sa2 a1^2 by Jensen
    G4 = alg.KernelCoefficients(G.d, G.c1, G.c2, G.c3)

    def theta_map(source: alg.KernelCoefficients):  # type: ignore[no-untyped-def]
        return lambda T: alg.add(source, alg.scale(alg.hadamard_derivative(m, S.c1, T), sa2))

    if trained == "hidden":
        return alg.affine_fixed_point(theta_map(G4), G4, rate=rate, name="NTK")
    S4 = alg.KernelCoefficients(S.d, S.c1, S.c2, S.c3)
    Tz = alg.affine_fixed_point(theta_map(S4), S4, rate=rate, name="NTK (B trained)")
    return alg.add(G4, alg.hadamard_derivative(m, S.c1, Tz))
