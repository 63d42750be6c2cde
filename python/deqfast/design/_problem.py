"""The design problem: the DEQ's target coefficients, the coefficient residual of a net,
and the least-squares fit of a net's kernel function on probe rows (docs/theory.md §5)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.optimize import least_squares
from threadpoolctl import threadpool_limits

from deqfast.coefficients import KernelCoefficients
from deqfast.deq import DEQ
from deqfast.design._result import Candidate
from deqfast.explicit import ExplicitNet


def _vec(c: KernelCoefficients) -> np.ndarray:
    return np.array([c.d, c.c1, c.c2, c.c3], dtype=np.float64)


def _net_coefficients(net: ExplicitNet, target: str, trained: str) -> KernelCoefficients:
    if target == "ck":
        return net.coefficients("ck")
    return net.coefficients("ntk", trained=trained)


def relative_residual(achieved: KernelCoefficients, target: KernelCoefficients) -> float:
    """``max_k |achieved_k − target_k| / max_k |target_k|`` over ``(d, c1, c2, c3)``."""
    a, t = _vec(achieved), _vec(target)
    return float(np.max(np.abs(a - t)) / max(np.max(np.abs(t)), 1e-300))


class _Problem:
    """The target and the map ``net ↦ coefficients`` shared by all family solvers."""

    def __init__(self, deq: DEQ, target: str, trained: str, tol: float) -> None:
        self.tau0 = float(deq.tau0)  # type: ignore[arg-type]
        self.target, self.trained, self.tol = target, trained, tol
        self.coef = deq.coefficients(target, trained=trained)
        self.t = _vec(self.coef)
        tmax = float(np.max(np.abs(self.t)))
        # per-coefficient weights for the least-squares solvers
        self.w = 1.0 / np.maximum(np.abs(self.t), 1e-2 * tmax)
        self.odd = abs(self.coef.c2) <= 1e-14 * tmax and abs(self.coef.c3) <= 1e-14 * tmax
        self.scale = tmax
        self.deq = deq
        self.sigma_a2 = float(deq.sigma_a2)
        self.tau_star = float(deq.equilibrium().tau)
        raw = deq.activation
        # the DEQ's own activation for the "mixed" family (smooth built-ins only)
        smooth = getattr(raw, "kind", "lrelu") not in ("lrelu", "custom")
        self.base = raw.uncentered() if smooth else None
        self.base_name = getattr(raw, "name", "phi")
        self.kfit: _KernelFit | None = None
        self.probe_sq: float | None = None
        #: coefficient least-squares L-ReLU slopes (a start for the kernel fits), cached
        self.lrelu_start: tuple[float, ...] | None = None

    def achieved(self, net: ExplicitNet) -> KernelCoefficients:
        return _net_coefficients(net, self.target, self.trained)

    def fun(self, build: Callable[[np.ndarray], ExplicitNet]) -> Callable[[np.ndarray], np.ndarray]:
        def f(theta: np.ndarray) -> np.ndarray:
            try:
                return (_vec(self.achieved(build(theta))) - self.t) * self.w
            except ValueError:  # degenerate parameters (e.g. a constant layer)
                return np.full(4, 1e6)

        return f

    def candidate(self, family: str, net: ExplicitNet | None, note: str = "") -> Candidate:
        if net is None:
            return Candidate(family, None, None, math.inf, False, note=note)
        ach = self.achieved(net)
        res = relative_residual(ach, self.coef)
        return Candidate(family, net, ach, res, bool(res <= self.tol), note=note)


def _multistart(
    f: Callable[[np.ndarray], np.ndarray],
    starts: Sequence[Sequence[float]],
    *,
    bounds: tuple[Any, Any] | None = None,
) -> list[Any]:
    sols = []
    for s in starts:
        x0 = np.asarray(s, dtype=np.float64)
        if bounds is None:
            r = least_squares(f, x0, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=600)
        else:
            r = least_squares(
                f, x0, bounds=bounds, xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=600
            )
        sols.append(r)
    sols.sort(key=lambda r: r.cost)
    return sols


# --------------------------------------------------------------------------------------
# kernel-function least squares (families "lrelu3", "mixed" and the L-ReLU kernel fit)
# --------------------------------------------------------------------------------------
#: Probe rows on which kernel functions are fitted (the full probe judges the result).
_FIT_ROWS = 64
#: Weight of the relative coefficient residual against the kernel residual in the fits.
_COEF_WEIGHT = 1e3
#: The same weight in the second, kernel-led fit of each family (started from the first
#: fit): the coefficients only anchor it, the kernel function on the probe decides.
_LIGHT_WEIGHT = 0.1


class _KernelFit:
    """The DEQ's exact kernel on a subsample of the probe, and the residual of a net.

    The residual stacks the weighted relative coefficient residual and the entries of
    ``E = K_net − K_DEQ`` on ``m`` of the probe's ``n`` rows. Two weightings:

    * ``probe=True`` (with ``probe_norm = ‖K_DEQ‖₂`` on the whole probe): the norm
      estimates the relative operator-norm distance on the whole probe. A smooth
      (rank-one-like) off-diagonal error of size ``e`` has norm ``≈ n e`` there, and the
      ``m`` rows see ``m²/2`` such entries: weight ``√2 n / (m ‖K_DEQ‖₂)``. A diagonal
      error ``e`` has norm ``≈ e``: weight ``1/(√m ‖K_DEQ‖₂)`` (their root mean square).
    * ``probe=False`` (the first weighting, kept for the candidates it gives): the same
      with the norm of ``K_DEQ`` on the ``m`` rows, ``√2/‖K_m‖₂`` and
      ``1/(√m ‖K_m‖₂)``. ``‖K_m‖₂`` is not ``(m/n) ‖K_DEQ‖₂``: at ``m = 64`` the
      kernel's own diagonal is a large part of it (``(n/m) ‖K_m‖₂ / ‖K_DEQ‖₂`` = 1.6–1.7
      at p = 1024, 2.2–2.3 at p = 2048, smooth CKs at σ_a² = 0.2), so against the
      off-diagonal this weighting counts the diagonal ``n/m`` times (12.8 at p = 1024,
      25.6 at p = 2048) more than the operator norm does.
    """

    def __init__(self, P: _Problem, deq: DEQ, X: np.ndarray, seed: int, probe_norm: float) -> None:
        n = X.shape[0]
        m = min(n, _FIT_ROWS)
        rows = np.sort(np.random.default_rng(seed).choice(n, m, replace=False))
        self.P = P
        self.X = np.ascontiguousarray(X[rows])
        self.ref = deq.ck(self.X) if P.target == "ck" else deq.ntk(self.X, trained=P.trained)
        self.iu = np.triu_indices(m, 1)
        norm = float(np.linalg.norm(self.ref, 2))
        self.w_off = math.sqrt(2.0) / norm
        self.w_diag = 1.0 / (math.sqrt(m) * norm)
        #: the probe weights (off-diagonal, diagonal)
        self.w_probe = (math.sqrt(2.0) * n / (m * probe_norm), 1.0 / (math.sqrt(m) * probe_norm))
        self.size = 4 + len(self.iu[0]) + m

    def kernel(self, net: ExplicitNet) -> np.ndarray:
        if self.P.target == "ck":
            return net.ck(self.X, num_threads=1)
        return net.ntk(self.X, trained=self.P.trained, num_threads=1)

    def residual(
        self,
        build: Callable[[np.ndarray], ExplicitNet],
        coef_weight: float = _COEF_WEIGHT,
        probe: bool = False,
    ) -> Callable[[np.ndarray], np.ndarray]:
        P = self.P
        w_off, w_diag = self.w_probe if probe else (self.w_off, self.w_diag)

        def f(theta: np.ndarray) -> np.ndarray:
            try:
                net = build(theta)
                E = self.kernel(net) - self.ref
                rc = (_vec(P.achieved(net)) - P.t) / P.scale * coef_weight
            except (ValueError, ArithmeticError):  # degenerate parameters
                return np.full(self.size, 1e3)
            out = np.concatenate([rc, E[self.iu] * w_off, np.diag(E) * w_diag])
            return out if np.all(np.isfinite(out)) else np.full(self.size, 1e3)

        return f

    def fit(
        self,
        build: Callable[[np.ndarray], ExplicitNet],
        starts: Sequence[Sequence[float] | np.ndarray],
        *,
        bounds: tuple[Any, Any] = (-np.inf, np.inf),
        max_nfev: int = 60,
        coef_weight: float = _COEF_WEIGHT,
        probe: bool = False,
    ) -> np.ndarray:
        """The best of the least-squares fits from ``starts`` (smallest residual norm)."""
        f = self.residual(build, coef_weight, probe)
        best = None
        with threadpool_limits(limits=1, user_api="openmp"):
            for s in starts:
                r = least_squares(f, np.asarray(s, dtype=np.float64), bounds=bounds,
                                  x_scale="jac", max_nfev=max_nfev)  # fmt: skip
                if best is None or r.cost < best.cost:
                    best = r
        assert best is not None
        return np.asarray(best.x)


def _match(
    P: _Problem,
    build: Callable[[np.ndarray], ExplicitNet],
    theta: np.ndarray,
    *,
    bounds: tuple[Any, Any] = (-np.inf, np.inf),
) -> np.ndarray:
    """Meet the four coefficient equations from ``theta`` (a nearby root, by TRF)."""
    r = least_squares(P.fun(build), theta, bounds=bounds, xtol=1e-15, ftol=1e-15, gtol=1e-15,
                      max_nfev=400)  # fmt: skip
    return np.asarray(r.x)


_LIGHT_NOTE = f"kernel-led fit (coefficient weight {_LIGHT_WEIGHT:g})"


def _refit(
    K: _KernelFit,
    build: Callable[[np.ndarray], ExplicitNet],
    theta: np.ndarray,
    *,
    bounds: tuple[Any, Any] = (-np.inf, np.inf),
) -> np.ndarray:
    """The kernel fit again from ``theta`` with the light coefficient weight."""
    return K.fit(build, [theta], bounds=bounds, coef_weight=_LIGHT_WEIGHT)


_PROBE_NOTE = f"probe-weighted kernel-led fit (coefficient weight {_LIGHT_WEIGHT:g})"


def _refit_probe(
    K: _KernelFit,
    build: Callable[[np.ndarray], ExplicitNet],
    starts: Sequence[np.ndarray],
    *,
    bounds: tuple[Any, Any] = (-np.inf, np.inf),
) -> np.ndarray:
    """The kernel-led fit with the probe weights (:class:`_KernelFit`), from the better of
    ``starts`` (the family's kernel fit and kernel-led fit). An additional candidate: the
    selection keeps the closest on the probe."""
    return K.fit(build, starts, bounds=bounds, coef_weight=_LIGHT_WEIGHT, probe=True)
