"""Small, obviously-correct NumPy/SciPy reference for the deqfast tests.

Everything here is written straight from the theory page (``docs/theory.md``) with no attempt at
speed: Gaussian moments by adaptive quadrature split at the kinks, the DEQ
equilibrium by ``brentq``, exact ReLU / erf DEQ kernels by plain Picard
iteration on the full matrix with the arc-cosine / arcsine closed forms, and a
slow generic per-pair kernel by nested quadrature.

This module must never import ``deqfast``.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import integrate, optimize, special

__all__ = [
    "ACTIVATION_NAMES",
    "RefActivation",
    "equilibrium",
    "erf_deq_kernels",
    "expect",
    "generic_deq_kernels",
    "get",
    "mixture_sample",
    "moments",
    "paper_mixture_sample",
    "rel_op_err",
    "relu_deq_kernels",
    "relu_pair",
    "surrogate_coefficients",
    "surrogate_matrix",
    "two_class_sample",
    "two_point",
    "two_point_near",
]

SQRT2 = math.sqrt(2.0)
SQRT2PI = math.sqrt(2.0 * math.pi)

# ---------------------------------------------------------------------------
# 1. Activations (value, first derivative, kink locations in x-space)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RefActivation:
    name: str
    phi: Callable[[np.ndarray], np.ndarray]
    dphi: Callable[[np.ndarray], np.ndarray]
    kinks: tuple = field(default_factory=tuple)

    def __call__(self, x):
        return self.phi(np.asarray(x, dtype=float))

    def derivative(self, x):
        return self.dphi(np.asarray(x, dtype=float))


def _sigmoid(x):
    x = np.asarray(x, dtype=float)
    return special.expit(x)


def _softplus(x):
    x = np.asarray(x, dtype=float)
    # log(1 + e^x) = max(x, 0) + log1p(e^{-|x|})
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _Phi(x):
    return 0.5 * special.erfc(-np.asarray(x, dtype=float) / SQRT2)


def _npdf(x):
    x = np.asarray(x, dtype=float)
    return np.exp(-0.5 * x * x) / SQRT2PI


def get(name: str, **params) -> RefActivation:
    """Reference activation by name (same names/parameters as deqfast)."""
    n = name.lower()
    if n == "linear":
        return RefActivation(
            n, lambda x: 1.0 * np.asarray(x, float), lambda x: np.ones_like(np.asarray(x, float))
        )
    if n == "relu":
        return RefActivation(
            n, lambda x: np.maximum(x, 0.0), lambda x: (np.asarray(x) > 0).astype(float), (0.0,)
        )
    if n in ("leaky_relu", "lrelu"):
        if n == "leaky_relu":
            sp, sn = 1.0, float(params.get("slope", 0.01))
        else:
            sp, sn = float(params.get("s_pos", 1.0)), float(params.get("s_neg", 0.0))
        return RefActivation(
            n,
            lambda x: np.where(
                np.asarray(x) > 0, sp * np.asarray(x, float), sn * np.asarray(x, float)
            ),
            lambda x: np.where(np.asarray(x) > 0, sp, sn) * np.ones_like(np.asarray(x, float)),
            (0.0,),
        )
    if n == "tanh":
        return RefActivation(n, np.tanh, lambda x: 1.0 / np.cosh(x) ** 2)
    if n == "erf":
        return RefActivation(
            n,
            special.erf,
            lambda x: 2.0 / math.sqrt(math.pi) * np.exp(-(np.asarray(x, float) ** 2)),
        )
    if n == "sigmoid":
        return RefActivation(n, _sigmoid, lambda x: _sigmoid(x) * (1.0 - _sigmoid(x)))
    if n in ("swish", "silu"):
        return RefActivation(
            n,
            lambda x: np.asarray(x, float) * _sigmoid(x),
            lambda x: _sigmoid(x) + np.asarray(x, float) * _sigmoid(x) * (1.0 - _sigmoid(x)),
        )
    if n == "gelu":
        return RefActivation(
            n,
            lambda x: np.asarray(x, float) * _Phi(x),
            lambda x: _Phi(x) + np.asarray(x, float) * _npdf(x),
        )
    if n == "softplus":
        return RefActivation(n, _softplus, _sigmoid)
    if n == "elu":
        al = float(params.get("alpha", 1.0))
        return RefActivation(
            n,
            lambda x: np.where(
                np.asarray(x) > 0, np.asarray(x, float), al * np.expm1(np.minimum(x, 0.0))
            ),
            lambda x: np.where(np.asarray(x) > 0, 1.0, al * np.exp(np.minimum(x, 0.0))),
            (0.0,),
        )
    if n == "clip":
        a, c = float(params.get("a", 1.0)), float(params.get("c", 1.0))
        return RefActivation(
            n,
            lambda x: a * np.clip(x, -c, c),
            lambda x: a * (np.abs(np.asarray(x, float)) < c).astype(float),
            (-c, c),
        )
    raise ValueError(f"unknown activation {name!r}")


ACTIVATION_NAMES = (
    "linear",
    "relu",
    "leaky_relu",
    "lrelu",
    "tanh",
    "erf",
    "sigmoid",
    "swish",
    "silu",
    "gelu",
    "softplus",
    "elu",
    "clip",
)

# ---------------------------------------------------------------------------
# 2. One-dimensional Gaussian expectations and moments (docs/theory.md §2)
# ---------------------------------------------------------------------------

_L = 40.0  # |xi| > 40 carries Gaussian mass e^{-800}: nothing in double precision
_GRID = (-12.0, -6.0, -3.0, 0.0, 3.0, 6.0, 12.0)


def _breaks(tau: float, kinks) -> list:
    pts = {-_L, _L, *_GRID}
    for k in kinks:
        xi = k / tau
        if -_L < xi < _L:
            pts.add(float(xi))
    return sorted(pts)


def expect(
    h: Callable[[float], float], tau: float, kinks=(), *, epsabs=1e-15, epsrel=1e-13
) -> float:
    """E h(xi), xi ~ N(0,1), where h is smooth except at x-kinks k (xi = k/tau)."""
    pts = _breaks(tau, kinks)
    tot = 0.0
    with warnings.catch_warnings():
        # epsabs=1e-15 is at the round-off floor of some pieces; quad then warns
        # although the piece is accurate to ~1e-16 (checked against closed forms).
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        for lo, hi in zip(pts[:-1], pts[1:]):
            val, _ = integrate.quad(
                lambda t: h(t) * math.exp(-0.5 * t * t) / SQRT2PI,
                lo,
                hi,
                epsabs=epsabs,
                epsrel=epsrel,
                limit=200,
            )
            tot += val
    return tot


def _scalar(f):
    return lambda x: float(f(np.float64(x)))


def moments(phi, dphi, tau: float, kinks=(), center: float = 0.0) -> dict:
    """Gaussian moments of ``phi - center`` at scale tau (docs/theory.md §2, Stein forms).

    Returns dict with a0, a1, a2, a3, m2, m2_dot, e2.  m2_dot is d m2/d(tau^2)
    at fixed ``center``.
    """
    f = _scalar(phi)
    g = _scalar(dphi)
    c = float(center)
    t = float(tau)
    a0 = expect(lambda x: f(t * x) - c, t, kinks)
    a1 = expect(lambda x: x * (f(t * x) - c), t, kinks) / t
    a2 = expect(lambda x: (x * x - 1.0) * (f(t * x) - c), t, kinks) / t**2
    a3 = expect(lambda x: (x**3 - 3.0 * x) * (f(t * x) - c), t, kinks) / t**3
    m2 = expect(lambda x: (f(t * x) - c) ** 2, t, kinks)
    m2_dot = expect(lambda x: (x * x - 1.0) * (f(t * x) - c) ** 2, t, kinks) / (2.0 * t * t)
    e2 = expect(lambda x: g(t * x) ** 2, t, kinks)
    return dict(a0=a0, a1=a1, a2=a2, a3=a3, m2=m2, m2_dot=m2_dot, e2=e2)


def a1_direct(phi, dphi, tau, kinks=()):
    """E phi'(tau xi) by direct quadrature (vs the Stein form in ``moments``)."""
    g = _scalar(dphi)
    return expect(lambda x: g(tau * x), tau, kinks)


# ---------------------------------------------------------------------------
# 3. Equilibrium (docs/theory.md §4, E1-E4) and surrogate coefficients
# ---------------------------------------------------------------------------


def _mean_var(phi, tau, kinks):
    f = _scalar(phi)
    mu = expect(lambda x: f(tau * x), tau, kinks)
    var = expect(lambda x: (f(tau * x) - mu) ** 2, tau, kinks)
    return mu, var


def equilibrium(phi, dphi, kinks, sigma_a2: float, sigma_b2: float, tau0: float) -> dict:
    """Solve tau*^2 = sigma_a2 Var[phi(tau* xi)] + sigma_b2 tau0^2, then E2-E4."""
    sa, sb = float(sigma_a2), float(sigma_b2)
    q0 = sb * tau0**2

    def F(q):
        return q - sa * _mean_var(phi, math.sqrt(q), kinks)[1] - q0

    lo = q0
    if F(lo) >= 0:  # Var == 0 (constant phi): tau^2 = q0
        hi = lo
        q = lo
    else:
        hi = 2.0 * lo
        while F(hi) <= 0:
            hi *= 2.0
            if hi > 1e12:
                raise ValueError("no equilibrium (sigma_a2 too large?)")
        q = optimize.brentq(F, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
    tau = math.sqrt(q)
    center = _mean_var(phi, tau, kinks)[0]
    m = moments(phi, dphi, tau, kinks, center)
    D = 1.0 - sa * m["a1"] ** 2
    alpha1 = sb / D
    alpha4 = sb / (1.0 - sa * m["m2_dot"])
    alpha2 = sa * m["a2"] ** 2 * alpha4**2 / (4.0 * D)
    alpha3 = sa * m["a2"] ** 2 * alpha1**2 / (2.0 * D)
    out = dict(tau=tau, tau0=float(tau0), center=center, sigma_a2=sa, sigma_b2=sb)
    out.update(m)
    out.update(D=D, alpha1=alpha1, alpha2=alpha2, alpha3=alpha3, alpha4=alpha4)
    return out


def surrogate_coefficients(eq: dict, kind: str = "ntk") -> dict:
    """(d, c1, c2, c3) of the docs/theory.md §4 table for kind in pre / ck / ntk / ntk_all."""
    sa, sb = eq["sigma_a2"], eq["sigma_b2"]
    a1, a2, m2, e2, tau = eq["a1"], eq["a2"], eq["m2"], eq["e2"], eq["tau"]
    D, al1, al2, al3 = eq["D"], eq["alpha1"], eq["alpha2"], eq["alpha3"]
    g1, g2, g3 = (al1 - sb) / sa, al2 / sa, al3 / sa
    if kind == "pre":
        return dict(d=tau**2, c1=al1, c2=al2, c3=al3)
    if kind == "ck":
        return dict(d=m2, c1=g1, c2=g2, c3=g3)
    if kind == "ntk":
        return dict(
            d=m2 / (1.0 - sa * e2),
            c1=g1 / D,
            c2=g2 / D,
            c3=(g3 + sa * a2**2 * al1 * g1 / D) / D,
        )
    if kind == "ntk_all":
        return dict(
            d=m2 + e2 * tau**2 / (1.0 - sa * e2),
            c1=g1 + a1**2 * al1 / D,
            c2=g2 + a1**2 * al2 / D,
            c3=g3 + a1**2 * al3 / D + a2**2 * al1**2 * (1.0 / D + sa * a1**2 / D**2),
        )
    raise ValueError(f"unknown kind {kind!r}")


# ---------------------------------------------------------------------------
# 4. Exact DEQ kernels by Picard iteration with closed forms (docs/theory.md §3)
# ---------------------------------------------------------------------------


def relu_pair(S: np.ndarray):
    """Arc-cosine closed forms for a covariance matrix S.

    Returns (E[relu(u) relu(v)], E relu(u) as a vector, E[1{u>0} 1{v>0}]).
    """
    d = np.diag(S).copy()
    sd = np.sqrt(d)
    nrm = np.outer(sd, sd)
    cos = np.clip(S / nrm, -1.0, 1.0)
    np.fill_diagonal(cos, 1.0)
    theta = np.arccos(cos)
    EE = nrm / (2.0 * np.pi) * (np.sin(theta) + (np.pi - theta) * cos)
    np.fill_diagonal(EE, d / 2.0)
    Eu = sd / SQRT2PI
    Edd = (np.pi - theta) / (2.0 * np.pi)
    np.fill_diagonal(Edd, 0.5)
    return EE, Eu, Edd


def _picard(step, S0, tol, max_iter):
    S = S0
    for it in range(1, max_iter + 1):
        Snew = step(S)
        delta = np.max(np.abs(Snew - S))
        S = Snew
        if delta < tol:
            return S, it
    raise RuntimeError(
        f"Picard iteration did not converge: change {delta:.3e} after {max_iter} iterations"
    )


def _finish(S, G, Gdot, sigma_a2):
    den = 1.0 - sigma_a2 * Gdot
    K = G / den
    Theta = G + Gdot * (S / den)
    return dict(S=S, G=G, Gdot=Gdot, K=K, Theta=Theta)


def relu_deq_kernels(X, sigma_a2, sigma_b2, center, tol=1e-13, max_iter=500) -> dict:
    """Exact infinite-width DEQ kernels for phi = relu - center (X is (n, p))."""
    X = np.asarray(X, dtype=float)
    c = float(center)
    XXt = X @ X.T
    B = sigma_b2 * XXt

    def F(S):
        EE, Eu, _ = relu_pair(S)
        return EE - c * (Eu[:, None] + Eu[None, :]) + c * c

    S, it = _picard(lambda S: sigma_a2 * F(S) + B, B.copy(), tol, max_iter)
    G = F(S)
    Gdot = relu_pair(S)[2]
    out = _finish(S, G, Gdot, sigma_a2)
    out["iterations"] = it
    return out


def erf_deq_kernels(X, sigma_a2, sigma_b2, center=0.0, tol=1e-13, max_iter=500) -> dict:
    """Exact infinite-width DEQ kernels for phi = erf - center (arcsine forms)."""
    X = np.asarray(X, dtype=float)
    c = float(center)
    B = sigma_b2 * (X @ X.T)

    def parts(S):
        d = np.diag(S)
        P = np.outer(1.0 + 2.0 * d, 1.0 + 2.0 * d)
        EE = (2.0 / np.pi) * np.arcsin(np.clip(2.0 * S / np.sqrt(P), -1.0, 1.0))
        Edd = (4.0 / np.pi) / np.sqrt(P - 4.0 * S * S)
        return EE + c * c, Edd  # E erf(u) = 0

    S, it = _picard(lambda S: sigma_a2 * parts(S)[0] + B, B.copy(), tol, max_iter)
    G, Gdot = parts(S)
    out = _finish(S, G, Gdot, sigma_a2)
    out["iterations"] = it
    return out


# ---------------------------------------------------------------------------
# 5. Generic two-point expectation and slow per-pair kernels
# ---------------------------------------------------------------------------


def two_point(f, g, d_i, d_j, s, kinks_f=(), kinks_g=(), *, epsabs=1e-13, epsrel=1e-11) -> float:
    """E[f(u) g(v)], (u, v) ~ N(0, [[d_i, s], [s, d_j]]), by nested adaptive quadrature.

    u = sqrt(d_i) x1, v = sqrt(d_j) (rho x1 + sqrt(1 - rho^2) x2), splitting the
    outer integral at the kinks of f and the inner one at the kinks of g.
    """
    f = _scalar(f)
    g = _scalar(g)
    si, sj = math.sqrt(d_i), math.sqrt(d_j)
    rho = max(-1.0, min(1.0, s / (si * sj)))
    r = math.sqrt(max(0.0, 1.0 - rho * rho))
    if r < 1e-12:  # degenerate: v = sign(rho) sqrt(d_j/d_i) u
        sgn = 1.0 if rho > 0 else -1.0
        kk = tuple(k for k in kinks_f) + tuple(sgn * k * si / sj for k in kinks_g)
        return expect(lambda x: f(si * x) * g(sgn * sj * x), si, kk, epsabs=epsabs, epsrel=epsrel)

    def inner(x1):
        kin = [(k / sj - rho * x1) / r for k in kinks_g]  # xi2-locations of g's kinks
        return expect(
            lambda x2: g(sj * (rho * x1 + r * x2)), 1.0, kin, epsabs=epsabs, epsrel=epsrel
        )

    return expect(lambda x1: f(si * x1) * inner(x1), si, kinks_f, epsabs=epsabs, epsrel=epsrel)


def two_point_near(f, g, d_i, d_j, s, kinks_f=(), kinks_g=(), *, epsabs=1e-13, epsrel=1e-11):
    """``two_point`` for |ρ| near 1 with a kinked g: the inner expectation over x2 is a smoothed
    kink of width w = √(1 − ρ²)/|ρ| in x1 around x1 = k/(√d_j ρ), which an outer adaptive rule
    split only at f's kinks can step over (errors ~w² were seen); here the outer integral is
    also split at those points and at ±w, ±3w, ±9w from them."""
    si, sj = math.sqrt(d_i), math.sqrt(d_j)
    rho = max(-1.0, min(1.0, s / (si * sj)))
    r = math.sqrt(max(0.0, 1.0 - rho * rho))
    if r < 1e-12 or not kinks_g:
        return two_point(f, g, d_i, d_j, s, kinks_f, kinks_g, epsabs=epsabs, epsrel=epsrel)
    f = _scalar(f)
    g = _scalar(g)
    w = r / abs(rho)
    # expect() takes kinks in units of its scale (x1 = k / si): pass x1-points times si
    extra = [si * (k / (sj * rho) + m * w) for k in kinks_g for m in (0, 1, -1, 3, -3, 9, -9)]

    def inner(x1):
        kin = [(k / sj - rho * x1) / r for k in kinks_g]
        return expect(
            lambda x2: g(sj * (rho * x1 + r * x2)), 1.0, kin, epsabs=epsabs, epsrel=epsrel
        )

    return expect(
        lambda x1: f(si * x1) * inner(x1),
        si,
        tuple(kinks_f) + tuple(extra),
        epsabs=epsabs,
        epsrel=epsrel,
    )


def generic_deq_kernels(X, phi, dphi, kinks, sigma_a2, sigma_b2, center=0.0) -> dict:
    """Slow exact DEQ kernels for any activation (n <= 8): per-entry brentq."""
    X = np.asarray(X, dtype=float)
    n = X.shape[0]
    c = float(center)
    sa, sb = float(sigma_a2), float(sigma_b2)
    XXt = X @ X.T
    f_c = lambda x: phi(x) - c  # noqa: E731
    d = np.empty(n)
    for i in range(n):
        q0 = sb * XXt[i, i]

        def Fd(q, q0=q0):
            return q - sa * moments(phi, dphi, math.sqrt(q), kinks, c)["m2"] - q0

        hi = 2.0 * q0 + 1.0
        while Fd(hi) <= 0:
            hi *= 2.0
        d[i] = optimize.brentq(
            Fd, q0 * 1e-3 if Fd(q0 * 1e-3) < 0 else 1e-12, hi, xtol=1e-14, rtol=1e-13
        )
    S = np.diag(d)
    G = np.zeros((n, n))
    Gd = np.zeros((n, n))
    for i in range(n):
        mi = moments(phi, dphi, math.sqrt(d[i]), kinks, c)
        G[i, i], Gd[i, i] = mi["m2"], mi["e2"]
        for j in range(i + 1, n):
            b = sb * XXt[i, j]
            lim = math.sqrt(d[i] * d[j]) * (1.0 - 1e-12)

            def Fs(s, di=d[i], dj=d[j], b=b):
                return s - sa * two_point(f_c, f_c, di, dj, s, kinks, kinks) - b

            s = optimize.brentq(Fs, -lim, lim, xtol=1e-13, rtol=1e-12)
            S[i, j] = S[j, i] = s
            G[i, j] = G[j, i] = two_point(f_c, f_c, d[i], d[j], s, kinks, kinks)
            Gd[i, j] = Gd[j, i] = two_point(dphi, dphi, d[i], d[j], s, kinks, kinks)
    return _finish(S, G, Gd, sa)


# ---------------------------------------------------------------------------
# 6. Surrogate matrix and mixture data (docs/theory.md §1, §4)
# ---------------------------------------------------------------------------


def surrogate_matrix(XXt, J, psi, t, T, tau0, p, d, c1, c2, c3) -> np.ndarray:
    """M = c1 XX^T + V A V^T + (d - c1 tau0^2) I, V = [J/sqrt p, psi]."""
    XXt = np.asarray(XXt, float)
    n = XXt.shape[0]
    J = np.asarray(J, float)
    t = np.asarray(t, float).reshape(-1)
    T = np.asarray(T, float)
    psi = np.asarray(psi, float).reshape(n, 1)
    V = np.hstack([J / math.sqrt(p), psi])
    K = J.shape[1]
    A = np.zeros((K + 1, K + 1))
    A[:K, :K] = c2 * np.outer(t, t) + c3 * T
    A[:K, K] = c2 * t
    A[K, :K] = c2 * t
    A[K, K] = c2
    return c1 * XXt + V @ A @ V.T + (d - c1 * tau0**2) * np.eye(n)


def mixture_sample(means, cov_scales, sizes, p, rng) -> dict:
    """Sample x_i = (mu_a + z_i)/sqrt(p), z_i ~ N(0, s_a I), classes in order.

    ``means`` is (K, p); ``cov_scales`` (K,) gives C_a = s_a I; ``sizes`` (K,).
    Population statistics use priors = sizes / n.
    """
    means = np.asarray(means, float)
    sc = np.asarray(cov_scales, float)
    sizes = [int(s) for s in sizes]
    K = len(sizes)
    n = sum(sizes)
    labels = np.repeat(np.arange(K), sizes)
    Z = rng.standard_normal((n, p)) * np.sqrt(sc[labels])[:, None]
    X = (means[labels] + Z) / math.sqrt(p)
    priors = np.asarray(sizes, float) / n
    trC = sc  # tr(C_a)/p
    tau0_2 = float(priors @ trC)
    t = math.sqrt(p) * (trC - tau0_2)
    T = np.outer(sc, sc)  # tr(C_a C_b)/p for C_a = s_a I
    psi = np.sum(Z * Z, axis=1) / p - trC[labels]
    J = np.zeros((n, K))
    J[np.arange(n), labels] = 1.0
    return dict(
        X=X, labels=labels, J=J, tau0=math.sqrt(tau0_2), t=t, T=T, psi=psi, p=p, priors=priors
    )


def paper_mixture_sample(p: int, n: int, rng) -> dict:
    """The authors' two-class mixture: mu_a = 8 e_{8a}, C_a = (1 + 8a/sqrt p) I.

    Class sizes n - n//2 (class 0, first) and n//2 -- largest-remainder
    rounding with ties to the lower class, as deqfast.data does.  Priors for the population
    statistics are 1/2 each (the generating model), so tau0^2 = 1 + 4/sqrt(p).
    """
    means = np.zeros((2, p))
    means[0, 0] = 8.0
    means[1, 8] = 8.0
    sc = np.array([1.0, 1.0 + 8.0 / math.sqrt(p)])
    out = mixture_sample(means, sc, [n - n // 2, n // 2], p, rng)
    return _with_priors(out, sc, np.array([0.5, 0.5]))


def two_class_sample(p: int, n: int, rng) -> dict:
    """docs/theory.md §4 n = p check: mu = +-(1, -1, 0, ...), C_1 = I, C_2 = (1 + 2/sqrt p) I."""
    means = np.zeros((2, p))
    means[0, :2] = (1.0, -1.0)
    means[1, :2] = (-1.0, 1.0)
    sc = np.array([1.0, 1.0 + 2.0 / math.sqrt(p)])
    out = mixture_sample(means, sc, [n - n // 2, n // 2], p, rng)
    return _with_priors(out, sc, np.array([0.5, 0.5]))


def _with_priors(out, sc, priors):
    p = out["p"]
    tau0_2 = float(priors @ sc)
    out["priors"] = priors
    out["tau0"] = math.sqrt(tau0_2)
    out["t"] = math.sqrt(p) * (sc - tau0_2)
    return out


def rel_op_err(A, B) -> float:
    """||A - B||_2 / ||A||_2 (largest |eigenvalue| for symmetric matrices: faster than SVD)."""

    def op(M):
        if np.allclose(M, M.T, rtol=0.0, atol=1e-13 * np.max(np.abs(M))):
            return float(np.max(np.abs(np.linalg.eigvalsh(0.5 * (M + M.T)))))
        return float(np.linalg.norm(M, 2))

    return op(A - B) / op(A)


if __name__ == "__main__":  # pragma: no cover - reproduces docs/theory.md §4 tables
    import sys

    seeds = [int(s) for s in sys.argv[1:]] or [0]
    relu = get("relu")
    print("authors' mixture, ReLU, sigma_a2=0.2, sigma_b2=0.8, n=0.8p")
    for p in (128, 256, 512, 1024):
        errs = []
        for sd in seeds:
            smp = paper_mixture_sample(p, int(0.8 * p), np.random.default_rng(sd))
            eq = equilibrium(relu.phi, relu.dphi, relu.kinks, 0.2, 0.8, smp["tau0"])
            ex = relu_deq_kernels(smp["X"], 0.2, 0.8, eq["center"])
            XXt = smp["X"] @ smp["X"].T
            row = []
            for kind, key in (("pre", "S"), ("ck", "G"), ("ntk", "K")):
                cf = surrogate_coefficients(eq, kind)
                M = surrogate_matrix(
                    XXt, smp["J"], smp["psi"], smp["t"], smp["T"], smp["tau0"], p, **cf
                )
                row.append(rel_op_err(ex[key], M))
                if kind == "ck":
                    M = surrogate_matrix(
                        XXt,
                        smp["J"],
                        smp["psi"],
                        smp["t"],
                        smp["T"],
                        smp["tau0"],
                        p,
                        cf["d"],
                        cf["c1"],
                        0.0,
                        0.0,
                    )
                    row.append(rel_op_err(ex[key], M))
            errs.append(row)
        print(p, "S, G, G(lin), K:", np.round(np.mean(errs, axis=0), 4), np.round(errs, 4).tolist())


# ---------------------------------------------------------------------------
# 8. Explicit nets (docs/theory.md §5): per-layer centring, coefficient algebra and exact
#    kernels, written independently of deqfast (quadrature and closed forms)
# ---------------------------------------------------------------------------


def polynomial(coef) -> RefActivation:
    """sum_k coef[k] x^k (value and derivative by numpy.polynomial)."""
    P = np.polynomial.Polynomial(np.asarray(coef, float))
    dP = P.deriv()
    return RefActivation(
        "polynomial", lambda x: P(np.asarray(x, float)), lambda x: dP(np.asarray(x, float))
    )


def _layer_center(act: RefActivation, tau: float):
    """Centring constant E act(tau xi) and the output level Var act(tau xi)."""
    return _mean_var(act.phi, tau, act.kinks)


def explicit_net_coefficients(
    layers, tau0: float, kind: str = "ck", trained: str = "hidden", input_skip: float = 0.0
) -> dict:
    """(d, c1, c2, c3) of an explicit net's CK or NTK by the docs/theory.md §5 algebra, with every
    moment by adaptive quadrature; each layer centred at its input level. ``input_skip`` s_k
    (a number: the last layer's; or one per layer) adds s_k² XXᵀ to layer k's input (and to
    Θ^z with ``trained="all"``)."""
    skips = _per_layer(input_skip, len(layers))
    S = dict(d=tau0 * tau0, c1=1.0, c2=0.0, c3=0.0, c4=1.0)
    theta = dict(d=tau0 * tau0, c1=1.0, c2=0.0, c3=0.0) if trained == "all" else None
    out = None
    for k, act in enumerate(layers):
        if skips[k]:
            s2 = skips[k] ** 2
            S = dict(S, d=S["d"] + s2 * tau0 * tau0, c1=S["c1"] + s2, c4=S["c4"] + s2)
            if theta is not None and trained == "all":
                theta = dict(theta, d=theta["d"] + s2 * tau0 * tau0, c1=theta["c1"] + s2)
        tau = math.sqrt(S["d"])
        mu, _ = _layer_center(act, tau)
        m = moments(act.phi, act.dphi, tau, act.kinks, center=mu)
        a1s, a2s = m["a1"] ** 2, m["a2"] ** 2
        K = dict(
            d=m["m2"],
            c1=a1s * S["c1"],
            c2=a1s * S["c2"] + a2s * S["c4"] ** 2 / 4.0,
            c3=a1s * S["c3"] + a2s * S["c1"] ** 2 / 2.0,
            c4=m["m2_dot"] * S["c4"],
        )
        ntk = {k: K[k] for k in ("d", "c1", "c2", "c3")}
        if theta is not None:  # K + Kdot o Theta
            ntk["d"] += m["e2"] * theta["d"]
            ntk["c1"] += a1s * theta["c1"]
            ntk["c2"] += a1s * theta["c2"]
            ntk["c3"] += a1s * theta["c3"] + a2s * S["c1"] * theta["c1"]
        theta, S = ntk, K
        out = K if kind == "ck" else ntk
    assert out is not None
    return {k: out[k] for k in ("d", "c1", "c2", "c3")}


def _per_layer(input_skip, depth: int) -> list:
    """Per-layer skip scales: a number is the last layer's."""
    if np.ndim(input_skip) == 0:
        return [0.0] * (depth - 1) + [float(input_skip)]
    assert len(input_skip) == depth
    return [float(v) for v in input_skip]


def _lrelu_pair(S, tau, s_pos, s_neg):
    """Centred s_pos max(t,0) + s_neg min(t,0): E[σ(u)σ(v)] and E[σ'(u)σ'(v)] in closed form
    (arc-cosine kernels), centred at level tau: σ = s_neg t + δ relu(t) − δ tau/√(2π)."""
    dl = s_pos - s_neg
    EE, Eu, Edd = relu_pair(S)
    c = dl * tau / SQRT2PI
    K = s_neg**2 * S + s_neg * dl * S + dl**2 * EE - c * dl * (Eu[:, None] + Eu[None, :]) + c * c
    Kd = s_neg**2 + s_neg * dl + dl**2 * Edd
    return K, Kd


def gauss_hermite_pair(f, g, d_i, d_j, s, kinks_f=(), kinks_g=(), nodes: int = 80) -> float:
    """E[f(u) g(v)] for smooth f, g by a tensor Gauss–Hermite rule (u = √d_i x1,
    v = √d_j (ρ x1 + √(1 − ρ²) x2)); kinks are not allowed (use ``two_point``)."""
    assert not kinks_f and not kinks_g
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    si, sj = math.sqrt(d_i), math.sqrt(d_j)
    rho = max(-1.0, min(1.0, s / (si * sj)))
    r = math.sqrt(max(0.0, 1.0 - rho * rho))
    X1, X2 = np.meshgrid(x, x, indexing="ij")
    vals = np.asarray(f(si * X1), float) * np.asarray(g(sj * (rho * X1 + r * X2)), float)
    return float(w @ vals @ w)


def explicit_net_kernels(
    X, layers, tau0: float, trained: str = "hidden", lrelu=None, input_skip: float = 0.0,
    nodes: int = 80,
) -> dict:  # fmt: skip
    """Exact CK and NTK of an explicit net (docs/theory.md §5) on a few samples.

    ``layers`` are RefActivations; ``lrelu[k] = (s_pos, s_neg)`` marks layer k as
    piecewise linear (closed forms), otherwise every pair is a nested adaptive
    quadrature (``two_point``). Layer k is centred at the level tau_k of its input
    kernel (tau_1 = tau0, tau_{k+1}^2 = Var of layer k at tau_k). ``input_skip`` s_k (a
    number: the last layer's; or one per layer) adds s_k² XXᵀ to layer k's input (level
    tau_k² + s_k² tau0²) and, with ``trained="all"``, to Θ^z. ``nodes``: of the tensor
    Gauss–Hermite rule for smooth layers (80 gives tanh' pairs at level 2 to ~1e-7 only,
    200 to ~1e-15).
    """
    X = np.asarray(X, float)
    skips = _per_layer(input_skip, len(layers))
    S = X @ X.T
    gram = S.copy()
    n = S.shape[0]
    theta = S.copy() if trained == "all" else np.zeros_like(S)
    tau = tau0
    K = Kd = S
    for k, act in enumerate(layers):
        if skips[k]:
            S = S + skips[k] ** 2 * gram
            tau = math.sqrt(tau * tau + skips[k] ** 2 * tau0 * tau0)
            if trained == "all":
                theta = theta + skips[k] ** 2 * gram
        mu, var = _layer_center(act, tau)
        if lrelu is not None and lrelu[k] is not None:
            K, Kd = _lrelu_pair(S, tau, *lrelu[k])
        else:
            K, Kd = np.empty_like(S), np.empty_like(S)
            f = lambda x, a=act, c=mu: a.phi(x) - c  # noqa: E731
            pair = two_point if act.kinks else functools.partial(gauss_hermite_pair, nodes=nodes)
            for i in range(n):
                for j in range(i, n):
                    K[i, j] = K[j, i] = pair(f, f, S[i, i], S[j, j], S[i, j], act.kinks, act.kinks)
                    Kd[i, j] = Kd[j, i] = pair(
                        act.dphi, act.dphi, S[i, i], S[j, j], S[i, j], act.kinks, act.kinks
                    )
        theta = K + Kd * theta
        S = K
        tau = math.sqrt(var)
    return {"ck": K, "ntk": theta}
