"""deqfast.activations against the quadrature reference (docs/theory.md §2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st

import deqfast as df
import reference as R

MOMENTS = ("a0", "a1", "a2", "a3", "m2", "m2_dot", "e2")
RTOL = 1e-10
ATOL = 1e-12  # for moments that vanish (a2 of odd activations, a3 of ReLU, ...)

SPECS = [
    ("relu", {}),
    ("tanh", {}),
    ("erf", {}),
    ("swish", {}),
    ("softplus", {}),
    ("gelu", {}),
    ("sigmoid", {}),
    ("elu", {"alpha": 1.0}),
    ("elu", {"alpha": 0.5}),
    ("leaky_relu", {"slope": 0.1}),
    ("lrelu", {"s_pos": 1.0, "s_neg": 0.2}),
    ("lrelu", {"s_pos": 1.3, "s_neg": -0.4}),
    ("clip", {"a": 1.0, "c": 1.0}),
    ("clip", {"a": 2.0, "c": 0.7}),
    ("linear", {}),
]
TAUS = (0.3, 0.9265661260274546, 1.7)
CENTERS = (None, 0.37)


def _ids(spec):
    name, params = spec
    return name + "".join(f"-{k}={v}" for k, v in params.items())


def _pair(name, params, center):
    act = df.activations.get(name, **params)
    ref = R.get(name, **params)
    if center is not None:
        act = act.centered(center)
    return act, ref, (0.0 if center is None else center)


def _close(x, r, rtol=RTOL, atol=ATOL):
    return abs(x - r) <= rtol * abs(r) + atol


# --------------------------------------------------------------------------- #
# The reference itself: closed forms (guards against a wrong reference)
# --------------------------------------------------------------------------- #


def _relu_closed(t, c):
    s = math.sqrt(2.0 * math.pi)
    return dict(
        a0=t / s - c,
        a1=0.5,
        a2=1.0 / (t * s),
        a3=0.0,
        m2=t * t / 2 - 2 * c * t / s + c * c,
        m2_dot=0.5 - c / (t * s),
        e2=0.5,
    )


def _erf_closed(t, c):
    q, sp = t * t, math.sqrt(math.pi)
    return dict(
        a0=-c,
        a1=2 / sp / math.sqrt(1 + 2 * q),
        a2=0.0,
        a3=-4 / sp * (1 + 2 * q) ** -1.5,
        m2=2 / math.pi * math.asin(2 * q / (1 + 2 * q)) + c * c,
        m2_dot=4 / math.pi / ((1 + 2 * q) * math.sqrt(1 + 4 * q)),
        e2=4 / math.pi / math.sqrt(1 + 4 * q),
    )


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("center", (0.0, 0.37))
@pytest.mark.parametrize(("name", "closed"), [("relu", _relu_closed), ("erf", _erf_closed)])
def test_reference_moments_closed_forms(name, closed, tau, center):
    ref = R.get(name)
    got = R.moments(ref.phi, ref.dphi, tau, ref.kinks, center)
    want = closed(tau, center)
    for k in MOMENTS:
        assert _close(got[k], want[k], 1e-13, 1e-14), (k, got[k], want[k])


# --------------------------------------------------------------------------- #
# Values, derivatives, kinks
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("spec", SPECS, ids=_ids)
def test_values_and_derivatives(spec, rng):
    name, params = spec
    act = df.activations.get(name, **params)
    ref = R.get(name, **params)
    x = np.concatenate(
        [
            np.linspace(-6, 6, 1201),
            rng.normal(scale=3.0, size=200),
            [-50.0, -30.0, -1e-9, 1e-9, 30.0, 50.0],
        ]
    )
    kinks = np.asarray(ref.kinks, dtype=float)
    if kinks.size:  # the derivative at a kink itself is a convention
        x = x[np.min(np.abs(x[:, None] - kinks[None, :]), axis=1) > 1e-12]
    np.testing.assert_allclose(act(x), ref(x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(act.derivative(x), ref.derivative(x), rtol=1e-12, atol=1e-14)
    # values at the kinks (continuous activations: unambiguous)
    if kinks.size:
        np.testing.assert_allclose(act(kinks), ref(kinks), rtol=1e-12, atol=1e-14)
    # centring only shifts the values
    c = 0.37
    np.testing.assert_allclose(act.centered(c)(x), ref(x) - c, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        act.centered(c).derivative(x), ref.derivative(x), rtol=1e-12, atol=1e-14
    )


@pytest.mark.parametrize("spec", SPECS, ids=_ids)
def test_kinks(spec):
    name, params = spec
    act = df.activations.get(name, **params)
    ref = R.get(name, **params)
    got = sorted(float(k) for k in act.kinks)
    if name == "elu" and params.get("alpha", 1.0) == 1.0:
        # C^1 at 0 (only phi'' jumps): listing the kink is optional
        assert got in ([], [0.0])
    else:
        assert got == pytest.approx(sorted(ref.kinks), abs=1e-15)


def test_silu_is_swish(rng):
    x = rng.normal(scale=3.0, size=100)
    np.testing.assert_allclose(
        df.activations.get("silu")(x), df.activations.get("swish")(x), rtol=1e-15, atol=0
    )
    m1 = df.activations.get("silu").moments(0.9)
    m2 = df.activations.get("swish").moments(0.9)
    for k in MOMENTS:
        assert getattr(m1, k) == pytest.approx(getattr(m2, k), rel=1e-14, abs=1e-15)


def test_unknown_activation_raises():
    with pytest.raises((ValueError, KeyError)):
        df.activations.get("no_such_activation")


# --------------------------------------------------------------------------- #
# Gaussian moments (docs/theory.md §2) vs adaptive quadrature split at the kinks
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("center", CENTERS, ids=("raw", "centred"))
@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("spec", SPECS, ids=_ids)
def test_moments_match_reference(spec, tau, center):
    name, params = spec
    act, ref, c = _pair(name, params, center)
    m = act.moments(tau)
    want = R.moments(ref.phi, ref.dphi, tau, ref.kinks, c)
    bad = {k: (getattr(m, k), want[k]) for k in MOMENTS if not _close(getattr(m, k), want[k])}
    assert not bad, f"{name}{params} tau={tau} center={c}: (deqfast, reference) {bad}"


@pytest.mark.parametrize("spec", SPECS, ids=_ids)
def test_moments_is_frozen_dataclass(spec):
    name, params = spec
    m = df.activations.get(name, **params).moments(1.0)
    for k in MOMENTS:
        assert isinstance(getattr(m, k), float)
    with pytest.raises(Exception):  # noqa: B017 - FrozenInstanceError or AttributeError
        m.a1 = 0.0  # type: ignore[misc]


# --------------------------------------------------------------------------- #
# Properties (hypothesis)
# --------------------------------------------------------------------------- #

_spec = st.sampled_from(SPECS)
_tau = st.floats(min_value=0.2, max_value=3.0)
_center = st.floats(min_value=-1.0, max_value=1.0)


@settings(max_examples=40, deadline=None)
@given(spec=_spec, tau=_tau)
def test_a1_stein_equals_mean_derivative(spec, tau):
    """a1 = E phi'(tau xi) (direct) = E[xi phi(tau xi)]/tau (Stein), docs/theory.md §2."""
    name, params = spec
    ref = R.get(name, **params)
    m = df.activations.get(name, **params).moments(tau)
    direct = R.a1_direct(ref.phi, ref.dphi, tau, ref.kinks)
    assert _close(m.a1, direct, 1e-10, 1e-12)


@settings(max_examples=40, deadline=None)
@given(spec=_spec, tau=_tau, center=_center)
def test_variance_and_jensen(spec, tau, center):
    """m2 >= a0^2 (variance >= 0) and e2 >= a1^2 (Jensen), for any centring."""
    name, params = spec
    m = df.activations.get(name, **params).centered(center).moments(tau)
    assert m.m2 - m.a0**2 >= -1e-12 * max(1.0, m.m2)
    assert m.e2 - m.a1**2 >= -1e-12 * max(1.0, m.e2)
    # centring shifts a0 and m2 only
    m0 = df.activations.get(name, **params).moments(tau)
    assert _close(m.a0, m0.a0 - center, 1e-10, 1e-12)
    assert _close(m.m2, m0.m2 - 2 * center * m0.a0 + center**2, 1e-10, 1e-12)
    for k in ("a1", "a2", "a3", "e2"):
        assert _close(getattr(m, k), getattr(m0, k), 1e-10, 1e-12), k


@settings(max_examples=25, deadline=None)
@given(spec=_spec, tau=st.floats(min_value=0.4, max_value=2.5), center=_center)
def test_m2_dot_is_derivative_in_tau_squared(spec, tau, center):
    """m2_dot = d m2 / d(tau^2) at fixed centre: central differences on deqfast's m2."""
    name, params = spec
    act = df.activations.get(name, **params).centered(center)
    q, h = tau * tau, 1e-4
    fd = (act.moments(math.sqrt(q + h)).m2 - act.moments(math.sqrt(q - h)).m2) / (2 * h)
    assert act.moments(tau).m2_dot == pytest.approx(fd, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize(
    ("name", "params", "exc", "match"),
    [
        (
            "leaky_relu",
            {"slope": "a"},
            TypeError,
            r"^leaky_relu: slope must be a real number; got 'a'",
        ),
        ("leaky_relu", {"slope": None}, TypeError, r"^leaky_relu: slope must be a real number"),
        ("leaky_relu", {"slope": math.nan}, ValueError, r"^leaky_relu: slope must be finite"),
        ("lrelu", {"s_neg": [0.1]}, TypeError, r"^lrelu: s_neg must be a real number"),
        ("linear", {"slope": math.inf}, ValueError, r"^linear: slope must be finite"),
        ("elu", {"alpha": True}, TypeError, r"^elu: alpha must be a real number; got True"),
        ("clip", {"c": "x"}, TypeError, r"^clip: c must be a real number"),
        ("polynomial", {"coef": ["a"]}, TypeError, r"^polynomial: coef must be a 1-D sequence"),
        ("leaky_relu", {"slop": 1}, TypeError, r"^activation 'leaky_relu': .*keyword.*'slop'"),
    ],
)
def test_bad_parameters_name_the_activation_and_parameter(name, params, exc, match):
    with pytest.raises(exc, match=match):
        df.activations.get(name, **params)
    with pytest.raises(exc, match=match):
        df.DEQ(name, **params)


# --------------------------------------------------------------------------- #
# Normalised Hermite coefficients (Mehler's series, docs/theory.md §3) vs adaptive quadrature
# (a Gauss–Hermite reference is not accurate enough: tanh(2.5 x) has poles at ±0.63i); tanh,
# sigmoid and swish take the vectorised evaluation path, softplus and gelu the scalar one
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "swish", "softplus", "gelu"])
@pytest.mark.parametrize("tau", [0.3, 1.0, 2.5])
def test_hermite_coefficients_match_quadrature(name, tau):
    import warnings

    from scipy.integrate import quad

    sig = scipy.special.expit
    phi = {
        "tanh": np.tanh,
        "sigmoid": sig,
        "swish": lambda x: x * sig(x),
        "softplus": lambda x: np.logaddexp(0.0, x),
        "gelu": lambda x: 0.5 * x * scipy.special.erfc(-x / np.sqrt(2.0)),
    }[name]
    K = 12
    he = np.polynomial.hermite_e.HermiteE

    def expect(g):
        def f(t):
            return g(t) * np.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return quad(f, -40, 40, points=[0.0], limit=400, epsabs=1e-17, epsrel=1e-14)[0]

    want = np.array([
        expect(lambda t, k=k: phi(tau * t) * he(np.eye(K)[k])(t)) / math.sqrt(math.factorial(k))
        for k in range(K)
    ])  # fmt: skip
    h, _, _ = df.activations.get(name).core.hermite(tau, K)
    np.testing.assert_allclose(h, want, rtol=0, atol=2e-14)
