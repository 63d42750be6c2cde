"""The coefficient algebra (docs/theory.md §4–§5): maps and the affine fixed-point solver."""

from __future__ import annotations

import math
import pickle

import pytest

import deqfast as df
from deqfast import coefficients as alg

KC = alg.KernelCoefficients


def _affine(a: float, b: KC):
    """``x ↦ a x + b`` coefficientwise: fixed point ``b / (1 − a)`` in closed form."""
    return lambda x: alg.add(alg.scale(x, a), b)


def test_affine_fixed_point_matches_closed_form():
    b = KC(1.0, 0.5, -0.25, 2.0, 0.125)
    a = 0.7
    got = alg.affine_fixed_point(_affine(a, b), b, rate=a, name="test")
    for k in ("d", "c1", "c2", "c3", "c4"):
        assert getattr(got, k) == pytest.approx(getattr(b, k) / (1 - a), rel=1e-13), k


def test_affine_fixed_point_ignores_untracked_c4():
    b = KC(1.0, 0.5, 0.25, 2.0)  # c4 = nan: not tracked
    got = alg.affine_fixed_point(_affine(0.5, b), b, rate=0.5, name="test")
    assert got.c1 == pytest.approx(1.0, rel=1e-14)
    assert math.isnan(got.c4)


@pytest.mark.parametrize(
    ("factor", "rate", "exc", "match"),
    [
        # a claimed rate >= 1 is refused up front
        (0.5, 1.0, ValueError, "not a contraction"),
        # a map that expands although the caller claimed a contraction must not return silently
        (1.5, 0.5, RuntimeError, r"did not converge within \d+ iterations.*residual"),
        # contraction 0.999 with a claimed 0.5: the cap (set for 0.5) is too short
        (0.999, 0.5, RuntimeError, "test: did not converge"),
    ],
)
def test_bad_contraction_raises_with_residual_and_iterations(factor, rate, exc, match):
    b = KC(1.0, 1.0, 0.0, 0.0, 1.0)
    with pytest.raises(exc, match=match):
        alg.affine_fixed_point(_affine(factor, b), b, rate=rate, name="test")


def test_best_effort_warns_and_returns_last_iterate():
    b = KC(1.0, 1.0, 0.0, 0.0, 1.0)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        got = alg.affine_fixed_point(_affine(0.999, b), b, rate=0.5, name="slow", strict=False)
    assert 1.0 < got.d < 1000.0  # partway to the fixed point 1 / (1 − 0.999)


def test_diverging_map_raises_early():
    b = KC(1.0, 1.0, 0.0, 0.0, 1.0)
    with pytest.raises(RuntimeError, match="non-finite"):
        alg.affine_fixed_point(_affine(1e200, b), b, rate=0.5, name="blow-up")


def test_gaussian_map_of_linear_activation_is_identity():
    """``F_id(S) = S`` for the identity (a1 = 1, a2 = 0, m2 = d, ṁ2 = 1)."""
    S = KC(1.7, 0.9, 0.3, 0.2, 1.0)
    m = df.activations.get("linear").moments(math.sqrt(S.d))
    G = alg.gaussian_map(S, m)
    for k in ("d", "c1", "c2", "c3", "c4"):
        assert getattr(G, k) == pytest.approx(getattr(S, k), rel=1e-12), k


def test_gaussian_map_of_relu_matches_closed_form():
    """ReLU at scale τ: a1 = 1/2, a2 = φ(0)/τ = 1/(τ√(2π)), m2 = τ²/2, ṁ2 = 1/2."""
    tau = 1.3
    S = KC(tau * tau, 0.8, 0.1, 0.05, 0.9)
    m = df.activations.get("relu").moments(tau)
    G = alg.gaussian_map(S, m)
    a1, a2 = 0.5, 1.0 / (tau * math.sqrt(2 * math.pi))
    assert G.d == pytest.approx(tau * tau / 2, rel=1e-12)
    assert G.c1 == pytest.approx(a1**2 * S.c1, rel=1e-12)
    assert G.c2 == pytest.approx(a1**2 * S.c2 + a2**2 * S.c4**2 / 4, rel=1e-12)
    assert G.c3 == pytest.approx(a1**2 * S.c3 + a2**2 * S.c1**2 / 2, rel=1e-12)
    assert G.c4 == pytest.approx(0.5 * S.c4, rel=1e-12)


def test_add_scale_input_kernel():
    A, B = KC(1.0, 2.0, 3.0, 4.0, 5.0), KC(0.5, 0.25, 0.125, 1.0, 2.0)
    assert alg.add(A, B) == KC(1.5, 2.25, 3.125, 5.0, 7.0)
    assert alg.scale(A, 2.0) == KC(2.0, 4.0, 6.0, 8.0, 10.0)
    assert alg.input_kernel(1.5) == KC(2.25, 1.0, 0.0, 0.0, 1.0)


def test_coefficients_are_frozen_values():
    A = KC(1.0, 2.0, 3.0, 4.0)
    with pytest.raises(AttributeError):
        A.d = 2.0  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(A)).as_tuple() == A.as_tuple()
    assert "c4" not in repr(A) and "c4" in repr(KC(1, 2, 3, 4, 5))
