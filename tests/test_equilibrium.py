"""deqfast.DEQ equilibrium (docs/theory.md §4, E1-E4) and surrogate coefficients."""

from __future__ import annotations

import functools
import json
import math
import pathlib

import numpy as np
import pytest

import deqfast as df
import reference as R

EQ_FIELDS = (
    "tau",
    "tau0",
    "center",
    "a1",
    "a2",
    "a3",
    "m2",
    "m2_dot",
    "e2",
    "D",
    "alpha1",
    "alpha2",
    "alpha3",
    "alpha4",
    "sigma_a2",
    "sigma_b2",
)
#: (kernel, trained) and the reference's name of the same kernel (tests/reference.py).
KERNELS = (
    ("pre", "hidden", "pre"),
    ("ck", "hidden", "ck"),
    ("ntk", "hidden", "ntk"),
    ("ntk", "all", "ntk_all"),
)
NAMES = ("relu", "tanh", "erf", "swish", "softplus", "gelu")
SIGMA_A2 = (0.2, 0.5)
TAU0 = (1.0, 1.3)

_JSON = pathlib.Path(__file__).resolve().parents[2] / "shared" / "reference" / "equilibria.json"


def _json_cases():
    if not _JSON.exists():
        return []
    return json.loads(_JSON.read_text())["cases"]


JSON_CASES = _json_cases()
needs_json = pytest.mark.skipif(not JSON_CASES, reason=f"{_JSON} not found")


def _json_id(c):
    return f"{c['activation']}-sa{c['sigma_a2']}-tau0{c['tau0']}"


def _close(x, r, rtol=1e-10, atol=1e-12):
    return abs(x - r) <= rtol * abs(r) + atol


@functools.cache
def ref_eq(name, sigma_a2, sigma_b2, tau0):
    a = R.get(name)
    return R.equilibrium(a.phi, a.dphi, a.kinks, sigma_a2, sigma_b2, tau0)


# --------------------------------------------------------------------------- #
# The reference against the published table (guards the reference itself)
# --------------------------------------------------------------------------- #


#: The equilibrium fields that shared/reference/equilibria.json records.
JSON_FIELDS = (
    "tau", "center", "a1", "a2", "m2", "m2_dot", "e2", "D",
    "alpha1", "alpha2", "alpha3", "alpha4",
)  # fmt: skip


@needs_json
@pytest.mark.parametrize("case", JSON_CASES, ids=_json_id)
def test_reference_matches_equilibria_json(case):
    eq = ref_eq(case["activation"], case["sigma_a2"], case["sigma_b2"], case["tau0"])
    for k in JSON_FIELDS:
        assert _close(eq[k], case[k], 1e-9, 1e-12), (k, eq[k], case[k])
    for kind, key in (("ck", "ck_coefficients"), ("ntk", "ntk_coefficients")):
        cf = R.surrogate_coefficients(eq, kind)
        for k in ("d", "c1", "c2", "c3"):
            assert _close(cf[k], case[key][k], 1e-9, 1e-12), (kind, k, cf[k], case[key][k])


# --------------------------------------------------------------------------- #
# deqfast vs the reference
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("tau0", TAU0)
@pytest.mark.parametrize("sigma_a2", SIGMA_A2)
@pytest.mark.parametrize("name", NAMES)
def test_equilibrium_matches_reference(name, sigma_a2, tau0):
    eq = df.DEQ(name, sigma_a2=sigma_a2, tau0=tau0).equilibrium()  # sigma_b2 = 1 - sigma_a2
    want = ref_eq(name, sigma_a2, 1.0 - sigma_a2, tau0)
    bad = {
        k: (getattr(eq, k), want[k])
        for k in EQ_FIELDS
        if not _close(float(getattr(eq, k)), want[k])
    }
    assert not bad, f"{name} sigma_a2={sigma_a2} tau0={tau0}: (deqfast, reference) {bad}"


@pytest.mark.parametrize("tau0", TAU0)
@pytest.mark.parametrize("sigma_a2", SIGMA_A2)
@pytest.mark.parametrize("name", NAMES)
def test_coefficients_match_reference(name, sigma_a2, tau0):
    deq = df.DEQ(name, sigma_a2=sigma_a2, tau0=tau0)
    want_eq = ref_eq(name, sigma_a2, 1.0 - sigma_a2, tau0)
    for kernel, trained, kind in KERNELS:
        cf = deq.coefficients(kernel, trained=trained)
        want = R.surrogate_coefficients(want_eq, kind)
        bad = {
            k: (getattr(cf, k), want[k])
            for k in ("d", "c1", "c2", "c3")
            if not _close(float(getattr(cf, k)), want[k])
        }
        assert not bad, f"{name} sa={sigma_a2} tau0={tau0} kind={kind}: {bad}"


def test_explicit_sigma_b2_matches_reference():
    """The n = p check of docs/theory.md §4 uses sigma_a2 = 0.36, sigma_b2 = 1.

    (Not variance preserving.)
    """
    deq = df.DEQ("relu", sigma_a2=0.36, sigma_b2=1.0, tau0=1.2)
    eq = deq.equilibrium()
    want = ref_eq("relu", 0.36, 1.0, 1.2)
    for k in EQ_FIELDS:
        assert _close(float(getattr(eq, k)), want[k]), (k, getattr(eq, k), want[k])
    for kernel, trained, kind in KERNELS:
        cf = deq.coefficients(kernel, trained=trained)
        w = R.surrogate_coefficients(want, kind)
        for k in ("d", "c1", "c2", "c3"):
            assert _close(float(getattr(cf, k)), w[k]), (kind, k)


@needs_json
@pytest.mark.parametrize("case", JSON_CASES, ids=_json_id)
def test_equilibrium_matches_equilibria_json(case):
    deq = df.DEQ(
        case["activation"], sigma_a2=case["sigma_a2"], sigma_b2=case["sigma_b2"], tau0=case["tau0"]
    )
    eq = deq.equilibrium()
    for k in JSON_FIELDS:
        assert _close(float(getattr(eq, k)), case[k], 1e-9, 1e-12), (k, getattr(eq, k), case[k])
    for kind, key in (("ck", "ck_coefficients"), ("ntk", "ntk_coefficients")):
        cf = deq.coefficients(kind)
        for k in ("d", "c1", "c2", "c3"):
            got = float(getattr(cf, k))
            assert _close(got, case[key][k], 1e-9, 1e-12), (kind, k, got, case[key][k])


# --------------------------------------------------------------------------- #
# Internal consistency of the equilibrium (E1-E4)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", (*NAMES, "sigmoid", "elu", "linear"))
def test_equilibrium_equations_hold(name):
    sa, sb, tau0 = 0.3, 0.6, 1.1
    eq = df.DEQ(name, sigma_a2=sa, sigma_b2=sb, tau0=tau0).equilibrium()
    # E1 with the centred m2 (= variance at tau*)
    assert eq.tau**2 == pytest.approx(sa * eq.m2 + sb * tau0**2, rel=1e-12)
    # centring: a0(tau*) = 0 for phi - center
    m = df.activations.get(name).centered(eq.center).moments(eq.tau)
    assert abs(m.a0) <= 1e-12 * max(1.0, abs(eq.center))
    for k in ("a1", "a2", "a3", "m2", "m2_dot", "e2"):
        assert _close(float(getattr(eq, k)), getattr(m, k)), k
    # E2-E4
    D = 1 - sa * eq.a1**2
    assert eq.D == pytest.approx(D, rel=1e-13)
    assert eq.alpha1 == pytest.approx(sb / D, rel=1e-13)
    assert eq.alpha4 == pytest.approx(sb / (1 - sa * eq.m2_dot), rel=1e-13)
    assert eq.alpha2 == pytest.approx(sa * eq.a2**2 * eq.alpha4**2 / (4 * D), rel=1e-12, abs=1e-15)
    assert eq.alpha3 == pytest.approx(sa * eq.a2**2 * eq.alpha1**2 / (2 * D), rel=1e-12, abs=1e-15)


def test_defaults_are_the_papers():
    """sigma_a2 = 0.2 and sigma_b2 = 1 - sigma_a2 by default (docs/theory.md §3)."""
    eq = df.DEQ("relu", tau0=1.0).equilibrium()
    assert eq.sigma_a2 == 0.2
    assert eq.sigma_b2 == pytest.approx(0.8, rel=1e-15)
    eq = df.DEQ("relu", sigma_a2=0.5, tau0=1.0).equilibrium()
    assert eq.sigma_b2 == pytest.approx(0.5, rel=1e-15)


def test_results_are_frozen():
    deq = df.DEQ("relu", sigma_a2=0.2, tau0=1.0)
    eq = deq.equilibrium()
    cf = deq.coefficients("ck")
    with pytest.raises(Exception):  # noqa: B017
        eq.tau = 1.0  # type: ignore[misc]
    with pytest.raises(Exception):  # noqa: B017
        cf.d = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("name", ("relu", "tanh", "swish"))
def test_equilibrium_is_the_centred_moments_at_tau(name):
    # The equilibrium carries the moments of phi centred at tau*; recompute them from the
    # activation directly (the centring constant is E phi(tau* xi) by definition).
    deq = df.DEQ(name, sigma_a2=0.3, tau0=1.1)
    eq = deq.equilibrium()
    phi = df.activations.get(name)
    center = phi.moments(eq.tau).a0
    want = phi.centered(center).moments(eq.tau)
    assert isinstance(eq, df.activations.Moments)
    assert eq.a0 == 0.0 and eq.center == pytest.approx(center, rel=1e-13, abs=1e-15)
    for k in ("a1", "a2", "a3", "m2", "m2_dot", "e2"):
        assert getattr(eq, k) == pytest.approx(getattr(want, k), rel=1e-12, abs=1e-14), k
    m = eq.moments
    assert type(m) is df.activations.Moments
    assert (m.tau, m.a0, m.a1, m.e2) == (eq.tau, 0.0, eq.a1, eq.e2)


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("bad", (-0.1, 0.0, math.nan, math.inf))
def test_bad_sigma_a2_raises(bad):
    with pytest.raises(ValueError, match="sigma_a2"):
        df.DEQ("relu", sigma_a2=bad, sigma_b2=0.8, tau0=1.0).equilibrium()


def test_negative_sigma_a2_raises_in_constructor():
    with pytest.raises(ValueError, match="sigma_a2"):
        df.DEQ("relu", sigma_a2=-0.1)


@pytest.mark.parametrize("bad", (-0.5, 0.0, math.nan))
def test_bad_sigma_b2_raises(bad):
    with pytest.raises(ValueError, match="sigma_b2"):
        df.DEQ("relu", sigma_a2=0.2, sigma_b2=bad, tau0=1.0).equilibrium()


@pytest.mark.parametrize("bad", (-1.0, 0.0, math.nan))
def test_bad_tau0_raises(bad):
    with pytest.raises(ValueError, match="tau0"):
        df.DEQ("relu", sigma_a2=0.2, tau0=bad).equilibrium()


def test_no_equilibrium_when_sigma_a2_e2_ge_1():
    """Linear: e2 = 1, so sigma_a2 = 1.5 violates sigma_a2 e2 < 1 (docs/theory.md §3)."""
    with pytest.raises(ValueError, match="sigma_a2"):
        df.DEQ("linear", sigma_a2=1.5, sigma_b2=0.5, tau0=1.0).equilibrium()
    with pytest.raises(ValueError, match="sigma_a2"):
        df.DEQ("linear", sigma_a2=1.0, sigma_b2=0.5, tau0=1.0).equilibrium()


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="kernel must be one of"):
        df.DEQ("relu", sigma_a2=0.2, tau0=1.0).coefficients("nonsense")


def test_reference_linear_equilibrium_closed_form():
    """Linear phi: tau*^2 = sb tau0^2 / (1 - sa) -- a sanity check of the reference."""
    eq = ref_eq("linear", 0.3, 0.7, 1.3)
    assert eq["tau"] ** 2 == pytest.approx(0.7 * 1.3**2 / 0.7, rel=1e-13)
    assert eq["alpha1"] == pytest.approx(0.7 / 0.7, rel=1e-13)
    assert eq["alpha2"] == pytest.approx(0.0, abs=1e-20)
    assert np.isfinite(eq["alpha4"])


def test_e1_iteration_cap_raises_with_residual_and_count():
    """E1 stopped by its iteration cap must not return an unconverged scale silently."""
    from deqfast.equilibrium import solve_equilibrium

    phi = df.activations.get("tanh")
    with pytest.raises(RuntimeError, match=r"E1 .*within max_iter=1 iterations.*residual"):
        solve_equilibrium(phi, sigma_a2=0.5, sigma_b2=0.5, tau0=1.0, max_iter=1)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        eq = solve_equilibrium(phi, sigma_a2=0.5, sigma_b2=0.5, tau0=1.0, max_iter=1, strict=False)
    assert eq.iterations == 1 and eq.residual > 1e-8
    full = solve_equilibrium(phi, sigma_a2=0.5, sigma_b2=0.5, tau0=1.0)
    assert full.residual <= 1e-14 * full.tau**2 and full.iterations < 20


@pytest.mark.parametrize("bad", (0.0, -1e-3, math.nan))
def test_e1_bad_tolerance_raises(bad):
    from deqfast.equilibrium import solve_equilibrium

    with pytest.raises(ValueError, match="tol"):
        solve_equilibrium(df.activations.get("relu"), sigma_a2=0.5, sigma_b2=0.5, tau0=1.0, tol=bad)


def test_diagonal_fixed_point_matches_closed_form():
    """ReLU: d = σ_a² d/2 + σ_b² s  ⇒  d = σ_b² s / (1 − σ_a²/2)."""
    from deqfast.equilibrium import diagonal_fixed_point

    m = diagonal_fixed_point(df.activations.get("relu"), sigma_a2=0.6, sigma_b2=0.4, sqnorm=2.5)
    assert m.tau**2 == pytest.approx(0.4 * 2.5 / (1 - 0.3), rel=1e-13)
