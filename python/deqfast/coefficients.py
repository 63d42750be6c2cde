"""The coefficient algebra of GMM-structured kernels (:ref:`§4 <theory-4>`–:ref:`§5 <theory-5>`).

In the high-dimensional mixture regime every kernel built from the data by
Gaussian maps, sums and Hadamard products is, in operator norm, the surrogate
``M̄(d, c1, c2, c3) = c1 XXᵀ + V A Vᵀ + (d − c1 τ0²) I`` (see
:mod:`deqfast.surrogate`). A kernel is summarised by ``(d, c1, c2, c3, c4)``
where ``c4 = ∂d_i / ∂‖x_i‖²``. This module is the single implementation of
that algebra: the DEQ's equilibrium equations (E2–E4) and the surrogate
coefficients of ``S*``, ``G*``, ``K*``, ``Θ*`` are computed as fixed points of
these maps, and explicit networks are finite compositions of the same maps.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

from deqfast.activations import Moments

__all__ = [
    "KernelCoefficients",
    "add",
    "affine_fixed_point",
    "gaussian_map",
    "hadamard_derivative",
    "input_kernel",
    "scale",
]


@dataclass(frozen=True)
class KernelCoefficients:
    """Surrogate coefficients of a kernel (:ref:`§4 <theory-4>`, :ref:`§5 <theory-5>`).

    ``d`` is the diagonal level, ``c1`` the weight of ``XXᵀ``, ``c2`` of the
    ``ψ``/trace terms, ``c3`` of the covariance-product term ``T``, and ``c4`` the
    sensitivity of the diagonal to ``‖x_i‖²`` (``nan`` where it is not tracked, e.g.
    for NTKs).
    """

    d: float
    c1: float
    c2: float
    c3: float
    c4: float = math.nan

    def as_tuple(self) -> tuple[float, float, float, float]:
        """``(d, c1, c2, c3)``: the arguments of the surrogate builder."""
        return (self.d, self.c1, self.c2, self.c3)

    def __repr__(self) -> str:
        c4 = "" if math.isnan(self.c4) else f", c4={self.c4:.10g}"
        return (
            f"KernelCoefficients(d={self.d:.10g}, c1={self.c1:.10g}, "
            f"c2={self.c2:.10g}, c3={self.c3:.10g}{c4})"
        )


def input_kernel(tau0: float) -> KernelCoefficients:
    """The input Gram matrix ``XXᵀ``: ``(τ0², 1, 0, 0, 1)``."""
    return KernelCoefficients(tau0 * tau0, 1.0, 0.0, 0.0, 1.0)


def gaussian_map(S: KernelCoefficients, m: Moments) -> KernelCoefficients:
    """``F_σ(S)`` for a σ centred at scale ``√S.d``, with ``m = σ.moments(√S.d)``.

    ``(d, c1, c2, c3, c4) ↦ (m2, a1² c1, a1² c2 + a2² c4²/4, a1² c3 + a2² c1²/2, ṁ2 c4)``.
    """
    a1s, a2s = m.a1 * m.a1, m.a2 * m.a2
    return KernelCoefficients(
        m.m2,
        a1s * S.c1,
        a1s * S.c2 + a2s * S.c4 * S.c4 / 4.0,
        a1s * S.c3 + a2s * S.c1 * S.c1 / 2.0,
        m.m2_dot * S.c4,
    )


def add(A: KernelCoefficients, B: KernelCoefficients) -> KernelCoefficients:
    """Coefficientwise sum (the kernel of a sum)."""
    return KernelCoefficients(A.d + B.d, A.c1 + B.c1, A.c2 + B.c2, A.c3 + B.c3, A.c4 + B.c4)


def scale(A: KernelCoefficients, s: float) -> KernelCoefficients:
    """Coefficients of ``s · A``."""
    return KernelCoefficients(s * A.d, s * A.c1, s * A.c2, s * A.c3, s * A.c4)


def hadamard_derivative(m: Moments, c1_S: float, Theta: KernelCoefficients) -> KernelCoefficients:
    """``K̇ ∘ Θ`` where ``K̇ = F_σ'(S)``, ``S`` has linear coefficient ``c1_S`` and ``m`` are
    σ's moments at ``√S.d``: ``(e2 θ, a1² b1, a1² b2, a1² b3 + a2² c1 b1)`` (:ref:`§5 <theory-5>`).
    """
    a1s, a2s = m.a1 * m.a1, m.a2 * m.a2
    return KernelCoefficients(
        m.e2 * Theta.d,
        a1s * Theta.c1,
        a1s * Theta.c2,
        a1s * Theta.c3 + a2s * c1_S * Theta.c1,
    )


def affine_fixed_point(
    step: Callable[[KernelCoefficients], KernelCoefficients],
    start: KernelCoefficients,
    *,
    rate: float,
    name: str,
    rtol: float = 1e-15,
    strict: bool = True,
) -> KernelCoefficients:
    """Iterate ``x ← step(x)`` to its fixed point.

    ``step`` must be a contraction of factor ``rate < 1`` on the coefficients (all
    maps above are, under ``σ_a² e2 < 1``), so the iteration converges geometrically;
    it stops when the change is below ``rtol`` relative to the coefficients' size.
    The iteration cap is ``200 + 60 / |log rate|`` steps (enough for a factor
    ``e⁻⁶⁰`` beyond the first 200).

    Parameters
    ----------
    step
        The map; coefficients it returns as ``nan`` (e.g. an untracked ``c4``) are ignored.
    start
        First iterate.
    rate
        The caller's bound on the contraction factor, in ``[0, 1)``.
    name
        What is being solved, for messages.
    rtol
        Relative tolerance of the change between iterates.
    strict
        If the cap is reached (``step`` contracts more slowly than ``rate``, or not at
        all), raise ``RuntimeError``; with ``strict=False`` warn (``RuntimeWarning``) and
        return the last iterate as a best effort.

    Raises
    ------
    ValueError
        If ``rate`` is not in ``[0, 1)``.
    RuntimeError
        If an iterate is not finite (the map diverges), or the cap is reached and
        ``strict`` is true; the message gives the last change (residual) and the
        iteration count.
    """
    if not (0.0 <= rate < 1.0):
        raise ValueError(f"{name}: the coefficient map is not a contraction (rate {rate:.6g} >= 1)")
    x = start
    max_iter = 200 + int(60.0 / max(1e-300, -math.log(max(rate, 1e-300))))
    change = math.inf
    for it in range(1, max_iter + 1):
        y = step(x)
        tracked = [(a, b) for a, b in zip(_vals(x), _vals(y)) if not math.isnan(b)]
        if not all(math.isfinite(b) for _, b in tracked):
            raise RuntimeError(
                f"{name}: the coefficient iteration diverged (non-finite coefficients after {it} "
                f"iterations: {y!r}); the map is not a contraction"
            )
        scale_ = max(1e-300, max(abs(b) for _, b in tracked))
        change = max(abs(a - b) for a, b in tracked)
        if change <= rtol * scale_:
            return y
        x = y
    msg = (
        f"{name}: did not converge within {max_iter} iterations (residual: last change "
        f"{change:.3e}, {change / scale_:.3e} relative, tolerance {rtol:g}); the map contracts "
        f"more slowly than the rate {rate:.6g} it was given, or not at all"
    )
    not_converged(msg, strict=strict)
    return x


def not_converged(msg: str, *, strict: bool) -> None:
    """Raise ``RuntimeError(msg)``, or with ``strict=False`` warn (``RuntimeWarning``) that
    the last iterate is returned as a best effort."""
    if strict:
        raise RuntimeError(msg)
    warnings.warn(msg + "; returning the last iterate", RuntimeWarning, stacklevel=3)


def _vals(k: KernelCoefficients) -> tuple[float, ...]:
    return (k.d, k.c1, k.c2, k.c3, k.c4)
