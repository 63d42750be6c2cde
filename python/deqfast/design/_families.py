"""The explicit-net families of :func:`deqfast.design.design_explicit` (docs/theory.md §5):
L-ReLU (two and three layers), clip, Hermite polynomials, mixed skip-like layers, the input
skip net, plain ReLU."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from numpy.polynomial.hermite_e import herme2poly, hermegauss, hermevander
from scipy.optimize import brentq, least_squares

from deqfast import activations as _act
from deqfast.design._problem import (
    _LIGHT_NOTE,
    _PROBE_NOTE,
    _match,
    _multistart,
    _Problem,
    _refit,
    _refit_probe,
    _vec,
)
from deqfast.design._result import Candidate
from deqfast.explicit import ExplicitNet

#: Degree of the Hermite projection that turns a mixed activation into a polynomial.
_MIX_DEGREE = 8


def _probe_fit(
    P: _Problem,
    family: str,
    build: Any,
    starts: list[np.ndarray],
    describe: Any = None,
    *,
    bounds: tuple[Any, Any] = (-np.inf, np.inf),
) -> list[Candidate]:
    """The probe-weighted kernel-led candidate of a family; ``describe(theta)`` adds the
    parameters to the note."""
    assert P.kfit is not None
    th = _refit_probe(P.kfit, build, starts, bounds=bounds)
    return [P.candidate(family, build(th), _PROBE_NOTE + (f" {describe(th)}" if describe else ""))]


def _lrelu_net(theta: np.ndarray, tau0: float) -> ExplicitNet:
    a1, dl1, a2, dl2 = (float(v) for v in theta)
    return ExplicitNet(
        [_act.lrelu(a1 + dl1 / 2, a1 - dl1 / 2), _act.lrelu(a2 + dl2 / 2, a2 - dl2 / 2)],
        tau0=tau0,
    )


def _fit_lrelu_coefficients(P: _Problem) -> ExplicitNet:
    """Two L-ReLU layers, coefficient least squares; parameters ``(a1, s₊ − s₋)`` per layer."""
    f = P.fun(lambda th: _lrelu_net(th, P.tau0))
    starts = [
        (0.5, 0.5, 1.0, 1.5),
        (1.0, 1.5, 0.5, 0.5),
        (0.5, 1.5, 1.0, 0.5),
        (1.0, 0.5, 0.5, 1.5),
    ]
    best = _multistart(f, starts)[0]
    a1, dl1, a2, dl2 = best.x
    # gauge: rescale layer 1 to preserve the input level, layer 2 inversely (homogeneity)
    lvl = _lrelu_net(best.x, P.tau0).layers[0].output.d
    lam = math.sqrt(P.tau0**2 / lvl) if lvl > 0 else 1.0
    return _lrelu_net(np.array([a1 * lam, dl1 * lam, a2 / lam, dl2 / lam]), P.tau0)


def _lrelu_slopes(net: ExplicitNet) -> tuple[float, ...]:
    return tuple(float(v) for a in net.activations for v in a.params)


def _lrelu_start(P: _Problem) -> tuple[float, ...]:
    """The coefficient least-squares L-ReLU slopes (a start for the kernel fits), cached."""
    if P.lrelu_start is None:
        P.lrelu_start = _lrelu_slopes(_fit_lrelu_coefficients(P))
    return P.lrelu_start


def _fit_lrelu(P: _Problem) -> list[Candidate]:
    """Two L-ReLU layers: the coefficient fit, and (with a probe) the kernel fit."""
    net = _fit_lrelu_coefficients(P)
    P.lrelu_start = _lrelu_slopes(net)
    note = "" if P.candidate("lrelu", net).matched else "target off the 3-parameter L-ReLU set"
    out = [P.candidate("lrelu", net, note)]
    if P.kfit is not None:
        out += _fit_lrelu_kernel(P)
    return out


def _clip_net(theta: np.ndarray, tau0: float) -> ExplicitNet:
    a, c = float(theta[0]), float(theta[1])
    return ExplicitNet([_act.clip(a, max(c, 1e-12))], tau0=tau0)


def _fit_clip(P: _Problem) -> list[Candidate]:
    """One layer ``a·clip(t, −c, c)``: two parameters for ``d`` and ``c1``."""
    f = P.fun(lambda th: _clip_net(th, P.tau0))
    t = P.tau0
    starts = [(1.0, 0.5 * t), (1.0, t), (1.5, 2.0 * t), (0.7, 3.0 * t)]
    best = _multistart(f, starts, bounds=([0.0, 1e-6 * t], [np.inf, np.inf]))[0]
    net = _clip_net(best.x, P.tau0)
    cand = P.candidate("clip", net)
    if cand.matched:
        return [cand]
    why = "one layer forces c2 = c3 = 0 (odd) or c3/c2 = 2" if not P.odd else "no (a, c) fits"
    return [P.candidate("clip", net, why)]


def _scaled_net(theta: np.ndarray, base: Any, tau0: float) -> ExplicitNet:
    return ExplicitNet(
        [_act.linear(float(theta[0])), base, _act.linear(float(theta[1]))], tau0=tau0
    )


def _fit_scaled(P: _Problem) -> list[Candidate]:
    """``[γ t, φ, a t]``: the DEQ's own φ at input scale γ, output scale a (two
    parameters for ``d`` and ``c1``; matched for odd φ, whose ``c2 = c3 = 0``).

    Its CK is ``a² F_φ(γ² XXᵀ)``. The DEQ's ``S*`` is close to a multiple of ``XXᵀ``
    where the data lie, so this follows ``G* = F_φ(S*)`` far beyond the four matched
    orders (tanh CK at p = 1024: 3.4e-4, against 3.3e-3 for ``clip``). The linear layers
    are layers of the net: its NTK (``trained="hidden"``) is
    ``a² (2 F_φ(S₂) + F_φ'(S₂) ∘ S₂)`` with ``S₂ = γ² XXᵀ``.
    """
    assert P.base is not None
    base = P.base
    build = lambda th: _scaled_net(th, base, P.tau0)  # noqa: E731
    bounds = ([0.05, 0.05], [20.0, 20.0])
    starts = [(1.0, 1.0), (P.tau_star / P.tau0, 1.0), (0.5, 2.0)]
    best = _multistart(P.fun(build), starts, bounds=bounds)[0]
    note = f"coefficient fit γ={best.x[0]:.4g}, a={best.x[1]:.4g}"
    out = [P.candidate("scaled", build(best.x), note + ("" if P.odd else "; c2, c3 not free"))]
    if P.kfit is not None:
        th = _refit(P.kfit, build, np.asarray(best.x), bounds=bounds)
        out.append(P.candidate("scaled", build(th), f"{_LIGHT_NOTE} γ={th[0]:.4g}, a={th[1]:.4g}"))
        out += _probe_fit(P, "scaled", build, [np.asarray(best.x), th],
                          lambda t: f"γ={t[0]:.4g}, a={t[1]:.4g}", bounds=bounds)  # fmt: skip
    return out


def _quad_layer(x: float, tau: float, cubic: float = 0.0) -> Any:
    """``c2 (t² − τ²) + c1 t + c3 τ³ He3(t/τ)`` with ``c1² = x`` and the level kept at ``τ²``
    when ``cubic = 0`` (``x + 2 c2² τ² = 1``)."""
    c1 = math.sqrt(max(x, 0.0))
    c2 = math.sqrt(max(1.0 - x, 0.0) / (2.0 * tau * tau))
    return _act.polynomial([-c2 * tau * tau, c1 - 3.0 * cubic * tau * tau, c2, cubic])


def _last_layer(u: float, v: float, w: float, sign: float, tau: float) -> Any:
    c21, c22, c23 = math.sqrt(max(u, 0.0)), math.sqrt(max(v, 0.0)), sign * math.sqrt(max(w, 0.0))
    return _act.polynomial([-c22 * tau * tau, c21 - 3.0 * c23 * tau * tau, c22, c23])


def _hermite_net(
    x: float, u: float, v: float, w: float, sign: float, tau0: float, middle: float | None = None
) -> ExplicitNet:
    """Quadratic layer ``x`` [, quadratic layer ``middle``], then quadratic + cubic.

    With the gauge ``τ_ℓ = τ0`` every layer is centred at ``τ0``."""
    layers = [_quad_layer(x, tau0)]
    if middle is not None:
        layers.append(_quad_layer(middle, tau0))
    layers.append(_last_layer(u, v, w, sign, tau0))
    return ExplicitNet(layers, tau0=tau0)


def _hermite_matrix(P: _Problem, x: float, middle: float | None) -> np.ndarray:
    """Columns: the coefficients for unit ``(c21², c22², c23²)`` — they are linear in these."""
    cols = [
        _vec(P.achieved(_hermite_net(x, e[0], e[1], e[2], 1.0, P.tau0, middle))) for e in np.eye(3)
    ]
    return np.column_stack(cols)


def _fit_hermite_branches(P: _Problem, middle: float | None = None) -> tuple[list[Candidate], str]:
    """Enumerate the roots ``x = c11²`` of the off-diagonal equations (see module notes)."""
    t = P.t

    def g(x: float) -> float:
        M = _hermite_matrix(P, x, middle)
        return float(np.linalg.det(np.column_stack([M[1:, 0], M[1:, 1], t[1:]])))

    xs = np.linspace(1e-3, 1.0, 241)
    gs = np.array([g(x) for x in xs])
    roots = [
        brentq(g, a, b, xtol=1e-15, rtol=1e-15, maxiter=200)
        for a, b, ga, gb in zip(xs[:-1], xs[1:], gs[:-1], gs[1:])
        if ga * gb < 0
    ]
    roots += [x for x, gx in zip(xs, gs) if gx == 0.0]
    if abs(gs[-1]) <= 1e-12 * max(np.max(np.abs(gs)), 1e-300) or P.odd:
        roots.append(1.0)  # layer 1 linear: the odd case
    uniq: list[float] = []
    for x in sorted(roots):
        if not uniq or x - uniq[-1] > 1e-9:
            uniq.append(x)
        else:
            uniq[-1] = max(uniq[-1], x)
    out: list[Candidate] = []
    short = []
    depth = "2 layers" if middle is None else f"3 layers (middle x={middle:g})"
    for x in uniq:
        M = _hermite_matrix(P, x, middle)
        uv = np.linalg.lstsq(M[1:, :2], t[1:], rcond=None)[0]
        u, v = float(uv[0]), float(uv[1])
        w = float((t[0] - M[0, :2] @ uv) / M[0, 2])
        if u <= 0 or v < -1e-12 * abs(u) or w < -1e-12 * abs(t[0]):
            short.append(f"x={x:.4g}: c22²={v:.3g}, c23²={w:.3g}")
            if u > 0:  # best effort, clamped: reported as unmatched
                net = _hermite_net(x, u, max(v, 0.0), max(w, 0.0), -1.0, P.tau0, middle)
                out.append(P.candidate("hermite", net, f"{depth}, x={x:.4f} clamped (infeasible)"))
            continue
        for sign in (1.0, -1.0):
            net = _hermite_net(x, u, max(v, 0.0), max(w, 0.0), sign, P.tau0, middle)
            note = f"{depth}, branch x={x:.4f}, sign(c23/c21)={sign:+.0f}"
            cand = P.candidate("hermite", net, note)
            if not cand.matched:  # polish the four parameters once
                cand = _polish(P, x, u, max(v, 0.0), max(w, 0.0), sign, middle, note) or cand
            out.append(cand)
    return out, f"{depth}: " + "; ".join(short) if short else ""


def _polish(
    P: _Problem,
    x: float,
    u: float,
    v: float,
    w: float,
    sign: float,
    middle: float | None,
    note: str,
) -> Candidate | None:
    def build(th: np.ndarray) -> ExplicitNet:
        return _hermite_net(min(max(th[0], 1e-9), 1.0), th[1], th[2], th[3], sign, P.tau0, middle)

    r = least_squares(
        P.fun(build), np.array([x, u, v, w]),
        bounds=([1e-9, 0, 0, 0], [1.0, np.inf, np.inf, np.inf]),
        xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=200,
    )  # fmt: skip
    cand = P.candidate("hermite", build(r.x), note)
    return cand if cand.matched else None


#: Middle-layer shapes ``x2 = c²`` tried when two hidden layers cannot match (the
#: feasible windows are narrow and often just below 1, hence the logarithmic part).
_MIDDLE = tuple(
    sorted({*(1.0 - np.logspace(-4, 0, 25)[:-1]), *np.linspace(0.1, 0.9, 9)}, reverse=True)
)


def _fit_hermite(P: _Problem) -> list[Candidate]:
    two, short = _fit_hermite_branches(P)
    if any(c.matched for c in two):
        return two
    three: list[Candidate] = []
    found = 0
    for x2 in _MIDDLE:
        ok = [c for c in _fit_hermite_branches(P, float(x2))[0] if c.matched]
        three += ok
        found += bool(ok)
        if found == 2:  # two middle shapes are enough to choose from
            break
    why = "two hidden layers cannot reach this target" + (f" ({short})" if short else "")
    if three:
        return [
            Candidate(c.family, c.net, c.achieved, c.residual, c.matched, note=f"{c.note}; {why}")
            for c in three
        ]
    return two or [
        P.candidate("hermite", None, "no branch found" + (f" ({short})" if short else ""))
    ]


def _fit_relu(P: _Problem) -> list[Candidate]:
    """Plain two-layer ReLU, output scale set to the target's diagonal level."""
    base = ExplicitNet(["relu", "relu"], tau0=P.tau0)
    s = math.sqrt(P.t[0] / _vec(P.achieved(base))[0])
    net = ExplicitNet(["relu", _act.lrelu(s, 0.0)], tau0=P.tau0)
    return [P.candidate("relu", net, "baseline (unfitted, output scale set to d)")]


def _lrelu_layers(theta: np.ndarray, tau0: float) -> ExplicitNet:
    k = len(theta) // 2
    return ExplicitNet(
        [_act.lrelu(float(theta[2 * i]), float(theta[2 * i + 1])) for i in range(k)], tau0=tau0
    )


def _fit_lrelu_kernel(P: _Problem) -> list[Candidate]:
    """Two L-ReLU layers fitted to the DEQ's kernel function (coefficients weighted in)."""
    K = P.kfit
    assert K is not None
    build = lambda th: _lrelu_layers(th, P.tau0)  # noqa: E731
    starts = [(1.7, 0.0, 0.7, 0.4), (1.0, 0.5, 1.0, 0.5), _lrelu_start(P)]
    theta = K.fit(build, starts)
    light = _refit(K, build, theta)
    return [
        P.candidate("lrelu", build(theta), "kernel fit (coefficients weighted in)"),
        P.candidate("lrelu", build(light), _LIGHT_NOTE),
        *_probe_fit(P, "lrelu", build, [theta, light]),
    ]


def _fit_lrelu3(P: _Problem) -> list[Candidate]:
    """Three L-ReLU layers: four free slopes (two gauges), kernel fit, then matched."""
    K = P.kfit
    assert K is not None
    build = lambda th: _lrelu_layers(th, P.tau0)  # noqa: E731
    starts = [(*_lrelu_start(P), 1.0, 0.5), (1.7, 0.0, 0.7, 0.4, 1.0, 0.5)]
    theta = K.fit(build, starts)
    light = _refit(K, build, theta)
    out = [
        P.candidate("lrelu3", build(theta), "kernel fit"),
        P.candidate("lrelu3", build(light), _LIGHT_NOTE),
        *_probe_fit(P, "lrelu3", build, [theta, light]),
    ]
    matched = P.candidate("lrelu3", build(_match(P, build, theta)), "kernel fit, then matched")
    if matched.matched:
        out.append(matched)
    return out


@functools.lru_cache(maxsize=8)
def _projection_rule(degree: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, √w, √w·V)`` of :func:`mixed_activation`'s projection: the ``4·degree``
    Gauss–Hermite nodes, the square roots of their normalised weights and the weighted
    Hermite–Vandermonde matrix (read-only; a design builds thousands of mixed layers of one
    degree, and these do not depend on the layer)."""
    x, w = hermegauss(4 * degree)
    w = w / w.sum()
    sw = np.sqrt(w)
    Vw = hermevander(x, degree) * sw[:, None]
    for a in (x, sw, Vw):
        a.flags.writeable = False
    return x, sw, Vw


def mixed_activation(
    base: Any, alpha: float, beta: float, gamma: float, delta: float, tau: float,
    *, degree: int = _MIX_DEGREE,
) -> Any:  # fmt: skip
    """``α t + β base(γ t) + δ (t² − τ²)`` as a polynomial: its degree-``degree`` Hermite
    projection in ``L²(N(0, τ²))`` (Gauss–Hermite, ``4·degree`` nodes).

    The polynomial is the activation of the net (its kernels are exact for it); the
    projection only decides how closely it follows the mixed function around scale τ.
    """
    x, sw, Vw = _projection_rule(degree)
    t = tau * x
    f = alpha * t + beta * np.asarray(base(gamma * t)) + delta * (t * t - tau * tau)
    coef = np.linalg.lstsq(Vw, f * sw, rcond=None)[0]
    mono = herme2poly(coef)  # in x = t/τ; trailing zeros (odd functions) are trimmed
    mono = mono / tau ** np.arange(mono.size)
    return _act.polynomial(mono)


def _mixed_layer(P: _Problem, th: np.ndarray) -> Any:
    """The mixed layer ``α t + β φ(γ t) + δ (t² − τ0²)`` of ``th = (α, β, γ[, δ], ...)``
    (``δ = 0`` and absent from ``th`` for odd φ)."""
    d = 0.0 if P.odd else float(th[3])
    return mixed_activation(P.base, float(th[0]), float(th[1]), float(th[2]), d, P.tau0)


def _mixed_note(P: _Problem, th: np.ndarray) -> str:
    """``[mixed layer, φ]`` of ``th`` in words, for the candidates' notes."""
    d = 0.0 if P.odd else th[3]
    return (f"[{th[0]:.4g} t + {th[1]:.4g} {P.base_name}({th[2]:.4g} t) + {d:.3g} (t² − τ0²)"
            f" (degree-{_MIX_DEGREE} Hermite projection), {P.base_name}]")  # fmt: skip


def _fit_mixed(P: _Problem) -> list[Candidate]:
    """``[α t + β φ(γ t) + δ (t² − τ0²), φ]``: a skip-like layer, then the DEQ's own φ."""
    K = P.kfit
    assert K is not None and P.base is not None
    base = P.base
    odd = P.odd

    def build(th: np.ndarray) -> ExplicitNet:
        return ExplicitNet([_mixed_layer(P, th), base], tau0=P.tau0)

    sa, sb = math.sqrt(P.sigma_a2), math.sqrt(1.0 - min(P.sigma_a2, 0.99))
    starts: list[tuple[float, ...]] = [(sb, sa, 1.0, 0.0), (sb, sa, P.tau_star / P.tau0, 0.0)]
    # a skip-like layer: both parts positive, the inner scale near 1, a small quadratic
    lo, hi = [0.0, 0.0, 0.2, -0.5], [2.0, 2.0, 3.0, 0.5]
    if odd:
        starts, lo, hi = [s[:3] for s in starts], lo[:3], hi[:3]
    theta = K.fit(build, starts, bounds=(lo, hi))

    light = _refit(K, build, theta, bounds=(lo, hi))
    return [
        P.candidate("mixed", build(theta), "kernel fit " + _mixed_note(P, theta)),
        P.candidate("mixed", build(light), f"{_LIGHT_NOTE} {_mixed_note(P, light)}"),
        *_probe_fit(
            P, "mixed", build, [theta, light], lambda t: _mixed_note(P, t), bounds=(lo, hi)
        ),
    ]


#: A matched root is near the kernel fit (:func:`_fit_skip`) when its kernel residual on
#: the fit rows is at most this factor times the fit's.
_NEAR = 1.1


def _fit_skip(P: _Problem) -> list[Candidate]:
    """``[α t + β φ(γ t) + δ (t² − τ0²), φ]`` with an input skip ``s`` into the φ layer.

    The DEQ's kernels are ``G* = F_φ(S*)`` with ``S* = σ_b² XXᵀ + σ_a² G*`` and
    ``K* = G* + Ġ* ∘ σ_a² K*``: its tangent term carries ``σ_a² K*`` but not the injected
    ``σ_b² XXᵀ``. Here ``S₂ = K₁ + s² XXᵀ`` and the NTK is ``F_φ(S₂) + F_φ'(S₂) ∘ K₁``
    (``trained="hidden"``): the fixed skip carries the linear part that the tangent term
    must not see, the mixed layer ``K₁ ≈ σ_a² G*`` the rest. Five parameters (four for
    odd φ) for four equations: the kernel fit, the kernel-led fit and, when a root is
    near the kernel fit, the matched net are the candidates.

    A root counts as near when its kernel residual on the fit rows is at most ``_NEAR``
    times the kernel fit's (it is the same net up to ~1e-6 when the fit lands next to a
    root). A far root is still a candidate, but the three-layer variant is tried as if
    there were none (ELU NTK ``trained="all"`` at σ_a² = 0.5, p = 1024: from a kernel fit
    with β = 0.81, γ = 1.14 trust region reached a root at β = 1.64, γ = 0.69, 2.3× farther
    on the probe, 9.4e-3, which had stopped the three-layer variant).

    When no root is near, the tangent term needs more than ``K₁`` can give without
    raising ``S₂``'s diagonal (``σ_a⁴ Ġ* ∘ K*`` is large at σ_a² = 0.5): a linear layer
    ``√w t`` in front, with a skip ``√(1 − w)`` into the mixed layer (whose input stays
    ``XXᵀ``), adds ``w F_mix'(XXᵀ) ∘ XXᵀ`` to the tangent term alone — a sixth parameter
    (NTK targets only: the CK does not depend on ``w``).
    """
    K = P.kfit
    assert K is not None and P.base is not None
    base, odd = P.base, P.odd

    def build(th: np.ndarray) -> ExplicitNet:
        return ExplicitNet([_mixed_layer(P, th), base], tau0=P.tau0, input_skip=float(th[-1]))

    def build3(th: np.ndarray) -> ExplicitNet:
        w = float(th[-2])
        skips = (0.0, math.sqrt(max(1.0 - w, 0.0)), float(th[-1]))
        return ExplicitNet([_act.linear(math.sqrt(w)), _mixed_layer(P, th), base], tau0=P.tau0,
                           input_skip=skips)  # fmt: skip

    sa, sb = math.sqrt(P.sigma_a2), math.sqrt(1.0 - min(P.sigma_a2, 0.99))
    # the DEQ's split: the injection σ_b x through the skip, σ_a φ(·) through the layer
    start, lo, hi = [0.0, sa, 1.0, 0.0, sb], [-1.0, 0.0, 0.2, -0.5, 0.0], [2.0, 2.0, 3.0, 0.5, 2.0]
    if odd:
        start, lo, hi = (v[:3] + v[4:] for v in (start, lo, hi))

    def note(th: np.ndarray, three: bool = False) -> str:
        pre = f"3 layers [√w t, ...], w={th[-2]:.4g}: " if three else ""
        return f"{pre}{_mixed_note(P, th)}, input skip {th[-1]:.4g}"

    def fits(
        build: Any, start: list[float], bounds: tuple[Any, Any], three: bool
    ) -> tuple[list, bool]:
        theta = K.fit(build, [start], bounds=bounds)
        light = _refit(K, build, theta, bounds=bounds)
        out = [
            P.candidate("skip", build(theta), "kernel fit " + note(theta, three)),
            P.candidate("skip", build(light), f"{_LIGHT_NOTE} {note(light, three)}"),
            *_probe_fit(P, "skip", build, [theta, light], lambda t: note(t, three), bounds=bounds),
        ]
        root = _match(P, build, theta, bounds=bounds)
        matched = P.candidate("skip", build(root), "kernel fit, then matched " + note(root, three))
        if not matched.matched:
            return out, False
        kres = lambda th: float(np.linalg.norm(K.residual(build, 0.0)(th)))  # noqa: E731
        return [*out, matched], kres(root) <= _NEAR * kres(theta)

    out, near = fits(build, start, (lo, hi), False)
    if near or P.target == "ck":  # w changes the NTK only
        return out
    start3, lo3, hi3 = [*start[:-1], 0.5, sb], [*lo[:-1], 0.01, 0.0], [*hi[:-1], 1.0, 2.0]
    return out + fits(build3, start3, (lo3, hi3), True)[0]
