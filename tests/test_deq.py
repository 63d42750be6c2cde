"""``DEQ`` is a value: immutable, compared by value, hashable, picklable, varied by ``with_``."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest

import deqfast as df


@pytest.fixture(scope="module")
def sample():
    return df.GaussianMixture.paper(32).sample(40, seed=3)


def test_attributes_cannot_be_set():
    """Setting σ_a² on a DEQ whose equilibrium is cached would leave the cache stale."""
    deq = df.DEQ("relu", sigma_a2=0.2, tau0=1.0)
    deq.equilibrium()
    for name, value in (("sigma_a2", 0.5), ("sigma_b2", 0.5), ("tau0", 2.0), ("activation", 1)):
        with pytest.raises(AttributeError, match="immutable"):
            setattr(deq, name, value)
    with pytest.raises(AttributeError, match="immutable"):
        del deq.sigma_a2
    assert deq.sigma_a2 == 0.2
    assert deq.equilibrium() == df.DEQ("relu", sigma_a2=0.2, tau0=1.0).equilibrium()


def test_with_gives_the_same_model_as_a_fresh_one(sample):
    s = sample
    deq = df.DEQ("relu", sigma_a2=0.2, tau0=s.stats.tau0)
    deq.equilibrium()  # fill the cache of the original
    varied = deq.with_(sigma_a2=0.5, sigma_b2=None)
    fresh = df.DEQ("relu", sigma_a2=0.5, tau0=s.stats.tau0)
    assert varied == fresh
    assert varied.equilibrium() == fresh.equilibrium()
    np.testing.assert_array_equal(varied.ck(s.X), fresh.ck(s.X))
    # the original is untouched
    assert deq.sigma_a2 == 0.2 and deq.equilibrium().sigma_a2 == 0.2


def test_with_keeps_unnamed_fields():
    deq = df.DEQ("leaky_relu", slope=0.1, sigma_a2=0.3, tau0=1.2)
    v = deq.with_(sigma_a2=0.4)  # sigma_b2 stays 0.7 (pass sigma_b2=None for 1 - sigma_a2)
    assert (v.sigma_a2, v.sigma_b2, v.tau0) == (0.4, pytest.approx(0.7), 1.2)
    assert v.activation == deq.activation
    assert deq.with_(tau0=None).tau0 is None
    w = deq.with_(activation="leaky_relu", slope=0.3)
    assert w.activation == df.activations.get("leaky_relu", slope=0.3)
    assert deq.with_() == deq


def test_with_rejects_unknown_fields_and_stray_params():
    deq = df.DEQ("relu", tau0=1.0)
    with pytest.raises(TypeError, match="sigma_a"):
        deq.with_(sigma_a=0.3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="activation="):
        deq.with_(slope=0.2)


def test_equal_hashable_picklable():
    a = df.DEQ("tanh", sigma_a2=0.3, tau0=1.1)
    b = df.DEQ("tanh", sigma_a2=0.3, tau0=1.1)
    assert a == b and hash(a) == hash(b)
    assert a != a.with_(tau0=1.2) and a != a.with_(activation="relu")
    assert a != df.DEQ("tanh", sigma_a2=0.3, sigma_b2=0.5, tau0=1.1)
    assert len({a, b, a.with_(sigma_a2=0.2)}) == 2
    a.equilibrium()
    for c in (pickle.loads(pickle.dumps(a)), copy.deepcopy(a), copy.copy(a)):
        assert c == a and hash(c) == hash(a)
        assert c.equilibrium() == a.equilibrium()
    assert a != "tanh"


def test_repr_round_trips_fields():
    deq = df.DEQ("relu", sigma_a2=0.25, tau0=1.5)
    assert repr(deq) == "DEQ(Activation('relu'), sigma_a2=0.25, sigma_b2=0.75, tau0=1.5)"


@pytest.mark.parametrize("tau0", (1e-300, 1e-120, 1e120, 1e300))
def test_tau0_outside_the_supported_range_raises_clearly(tau0):
    with pytest.raises(ValueError, match=r"tau0 must be in \[1e-100, 1e\+100\]"):
        df.DEQ("tanh", sigma_a2=0.2, tau0=tau0)


@pytest.mark.parametrize("tau0", (1e-100, 1e100))
def test_tau0_at_the_range_ends_works(tau0):
    """The equilibrium scales with tau0 for a homogeneous activation: τ* = τ0 √(σ_b²/(1 − σ_a²/2))
    for ReLU centred at τ* (Var relu(τξ) = τ²(1/2 − 1/(2π)))."""
    sa2, sb2 = 0.2, 0.8
    eq = df.DEQ("relu", sigma_a2=sa2, sigma_b2=sb2, tau0=tau0).equilibrium()
    var = 0.5 - 1.0 / (2.0 * math.pi)
    assert eq.tau == pytest.approx(tau0 * math.sqrt(sb2 / (1 - sa2 * var)), rel=1e-12)


def test_slow_diagonal_iteration_suggests_max_iter(sample):
    """ReLU with σ_a² = 1.99 contracts by 0.995 per step: 100 iterations are too few, the error
    says so and names a max_iter that converges."""
    X = sample.X[:6]
    deq = df.DEQ("relu", sigma_a2=1.99, sigma_b2=1.0)
    with pytest.raises(RuntimeError, match=r"contracts by a factor 0\.995.*max_iter=(\d+)") as ei:
        deq.ck(X)
    import re

    suggested = int(re.search(r"max_iter=(\d+)", str(ei.value).split("contracts")[1]).group(1))
    G = deq.ck(X, max_iter=suggested)
    # Diagonal in closed form: d = 0.995 d + σ_b² ‖x‖²  ⇒  G_ii = d / 2 = σ_b² ‖x‖² / (2 · 0.005)
    sq = np.einsum("ij,ij->i", X, X)
    np.testing.assert_allclose(np.diag(G), sq / (2 * 0.005), rtol=1e-9)
