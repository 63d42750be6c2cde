"""Explicit networks (docs/theory.md §5).

Coefficient algebra, exact kernels, surrogates, finite width.

References written here: closed-form coefficients of a one-layer ReLU net, and the
exact two-layer ReLU CK/NTK by an arc-cosine composition in NumPy.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

import deqfast as df
import reference as R
from deqfast import activations as A
from deqfast.explicit import ExplicitNet


def _relu_layer(S: np.ndarray, center: float) -> tuple[np.ndarray, np.ndarray]:
    """``E[(relu(u) − c)(relu(v) − c)]`` and ``E[relu'(u) relu'(v)]`` (arc-cosine forms)."""
    d = np.sqrt(np.diag(S))
    nd = np.outer(d, d)
    th = np.arccos(np.clip(S / nd, -1.0, 1.0))
    E = nd / (2 * np.pi) * (np.sin(th) + (np.pi - th) * np.cos(th))
    m = d / math.sqrt(2 * np.pi)  # E relu(sqrt(d) xi)
    G = E - center * (m[:, None] + m[None, :]) + center**2
    Gdot = (np.pi - th) / (2 * np.pi)
    return G, Gdot


@pytest.fixture(scope="module")
def small():
    s = df.GaussianMixture.paper(96).sample(60, seed=3)
    return s


def test_one_layer_relu_coefficients_closed_form():
    tau0 = 1.3
    net = ExplicitNet(["relu"], tau0=tau0)
    a1, a2 = 0.5, 1.0 / (tau0 * math.sqrt(2 * math.pi))
    m2 = tau0**2 * (0.5 - 1.0 / (2 * math.pi))
    ck = net.coefficients("ck")
    want = (m2, a1**2, a2**2 / 4, a2**2 / 2, m2 / tau0**2)  # c4 = m2_dot = m2/tau^2
    assert np.allclose([ck.d, ck.c1, ck.c2, ck.c3, ck.c4], want, rtol=1e-13, atol=0)
    assert net.layers[0].center == pytest.approx(tau0 / math.sqrt(2 * math.pi), rel=1e-14)
    # NTK, input weights fixed: only the read-out is trained -> the CK itself
    nk = net.coefficients("ntk")
    assert (nk.d, nk.c1, nk.c2, nk.c3) == pytest.approx(want[:4], rel=1e-13)
    # NTK with W_1 trained: K + Kdot o XX^T, with Kdot o XX^T = (e2 tau0², a1², 0, a2²)
    na = net.coefficients("ntk", trained="all")
    e2 = 0.5
    want_all = (m2 + e2 * tau0**2, 2 * a1**2, a2**2 / 4, a2**2 / 2 + a2**2)
    assert (na.d, na.c1, na.c2, na.c3) == pytest.approx(want_all, rel=1e-13)


def test_two_layer_coefficients_compose_the_algebra():
    tau0 = 1.1
    net = ExplicitNet(["tanh", A.lrelu(1.0, 0.2)], tau0=tau0)
    S = df.coefficients.input_kernel(tau0)
    K1 = df.coefficients.gaussian_map(S, net.layers[0].activation.moments(tau0))
    assert net.layers[0].moments.a0 == pytest.approx(0.0, abs=1e-13)
    assert net.layers[1].tau == pytest.approx(math.sqrt(K1.d), rel=1e-14)
    assert net.layers[1].moments.a0 == pytest.approx(0.0, abs=1e-13)
    m2 = net.layers[1].moments
    K2 = df.coefficients.gaussian_map(K1, m2)
    assert net.coefficients("ck") == K2
    ntk = net.coefficients("ntk")
    hd = df.coefficients.hadamard_derivative(m2, K1.c1, K1)
    want = df.coefficients.add(df.coefficients.KernelCoefficients(K2.d, K2.c1, K2.c2, K2.c3), hd)
    assert ntk.as_tuple() == pytest.approx(want.as_tuple(), rel=1e-14)


def test_exact_two_layer_relu_against_arccos_composition(small):
    X = small.X
    tau0 = small.stats.tau0
    net = ExplicitNet(["relu", A.lrelu(1.5, 0.0)], tau0=tau0)
    c1, c2 = (layer.center for layer in net.layers)
    G1, D1 = _relu_layer(X @ X.T, c1)
    G2u, D2 = _relu_layer(G1, c2 / 1.5)
    G2, D2 = 1.5**2 * G2u, 1.5**2 * D2
    assert np.allclose(net.ck(X), G2, rtol=0, atol=1e-12)
    # F_relu' at rho -> 1 (the diagonal) is evaluated to ~1e-9 by the C++ closed form
    assert np.allclose(net.ntk(X), G2 + D2 * G1, rtol=1e-8, atol=1e-8)
    theta = G2 + D2 * (G1 + D1 * (X @ X.T))
    assert np.allclose(net.ntk(X, trained="all"), theta, rtol=1e-8, atol=1e-8)
    # cross kernel = block of the full kernel
    K = net.ck(X)
    assert np.allclose(net.ck(X[:20], X[20:]), K[:20, 20:], atol=1e-13)
    assert np.allclose(net.ntk(X[:7], X[7:], trained="all"), theta[:7, 7:], atol=1e-8)


def test_exact_kernel_is_symmetric_psd_for_polynomial_layers(small):
    net = ExplicitNet([A.polynomial([0.0, 0.9, 0.3]), A.hermite([0.0, 0.5, 0.2, 0.05])], tau0=1.0)
    K = net.ck(small.X)
    assert np.array_equal(K, K.T)
    assert np.linalg.eigvalsh(K).min() > -1e-10


def test_surrogate_error_decreases_with_p():
    # measured: CK 0.30, 0.22, 0.16 and NTK 0.28, 0.20, 0.14 at p = 128, 256, 512
    errs, errs_ntk = [], []
    for p in (128, 256):
        s = df.GaussianMixture.paper(p).sample(int(0.8 * p), seed=0)
        net = ExplicitNet(["relu", "relu"], tau0=s.stats.tau0)
        errs.append(R.rel_op_err(net.ck(s.X), net.ck_surrogate(s.X, s.stats)))
        errs_ntk.append(R.rel_op_err(net.ntk(s.X), net.ntk_surrogate(s.X, s.stats)))
    assert errs[1] < 0.85 * errs[0] < 0.3
    assert errs_ntk[1] < 0.85 * errs_ntk[0] < 0.3


def test_finite_width_converges_to_exact(small):
    X = small.X
    net = ExplicitNet(["tanh", "relu"], tau0=small.stats.tau0)
    K = net.ck(X)
    errs = [R.rel_op_err(K, net.empirical_ck(X, w, trials=2, seed=7)) for w in (64, 512, 4096)]
    assert errs[2] < errs[1] < errs[0]
    assert errs[2] < 0.1  # measured 0.07 (n = 60, two draws)


def test_forward_is_reproducible_and_documented_stream(small):
    X = small.X[:10]
    net = ExplicitNet(["relu", "tanh"], tau0=small.stats.tau0)
    a = net.forward(X, (16, 8), seed=5)
    b = net.forward(X, [16, 8], seed=5)
    assert np.array_equal(a.output, b.output)
    rng = np.random.default_rng(5)
    W1 = rng.standard_normal((X.shape[1], 16))
    W2 = rng.standard_normal((16, 8)) / 4.0
    v = rng.standard_normal(8)
    h1 = net.activations[0](X @ W1)
    h2 = net.activations[1](h1 @ W2)
    assert np.allclose(a.hidden[0], h1) and np.allclose(a.features, h2)
    assert np.allclose(a.output, h2 @ v / math.sqrt(8))
    assert a.widths == (16, 8) and a.ck().shape == (10, 10)


def test_repr_immutability_pickle_and_validation(small):
    net = ExplicitNet(["relu", A.lrelu(1.0, 0.1)], tau0=1.0)
    assert repr(net).startswith("ExplicitNet([Activation('relu', shift=0.398942)")
    with pytest.raises(AttributeError):
        net.tau0 = 2.0  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(net)).coefficients().as_tuple() == pytest.approx(
        net.coefficients().as_tuple(), rel=1e-14
    )
    with pytest.raises(ValueError, match="at least one hidden layer"):
        ExplicitNet([], tau0=1.0)
    with pytest.raises(TypeError, match="sequence"):
        ExplicitNet("relu", tau0=1.0)
    with pytest.raises(ValueError, match="tau0"):
        ExplicitNet(["relu"], tau0=-1.0)
    with pytest.raises(ValueError, match="unknown activation"):
        ExplicitNet(["nope"], tau0=1.0)
    with pytest.raises(ValueError, match="kernel"):
        net.coefficients("pre")
    with pytest.raises(ValueError, match="trained"):
        net.ntk(small.X, trained="some")
    with pytest.raises(ValueError, match="widths"):
        net.forward(small.X, (4, 4, 4))
    with pytest.raises(ValueError, match="X2"):
        net.ck(small.X, small.X[:, :5])
    with pytest.raises(ValueError, match="all-zero rows"):
        net.ck(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="tau0"):
        net.ck_surrogate(small.X, small.stats)
    with pytest.raises(TypeError, match="built-in activation"):
        ExplicitNet([A.custom(np.sin)], tau0=1.0).ck(small.X)


# -- input skip: z_L = W_Lᵀ h_{L−1} + s Uᵀ x (docs/theory.md §5) ---------------------------
SKIP = 0.8
_POLY = [0.05, 0.9, 0.2, 0.04]  # a first layer with odd and even parts


def _check_against_reference(net, acts, X, trained):
    """The net's CK and NTK coefficients against the reference algebra (quadrature moments)
    and its exact kernels on ``X`` against the reference recursion (200-node pairs)."""
    for kind in ("ck", "ntk"):
        ref = R.explicit_net_coefficients(acts, net.tau0, kind, trained, input_skip=net.input_skip)
        got = net.coefficients(kind, trained=trained)
        for k in ("d", "c1", "c2", "c3"):
            assert getattr(got, k) == pytest.approx(ref[k], rel=1e-9, abs=1e-12)
    K = R.explicit_net_kernels(X, acts, net.tau0, trained, input_skip=net.input_skip, nodes=200)
    for name, got in (("ck", net.ck(X)), ("ntk", net.ntk(X, trained=trained))):
        np.testing.assert_allclose(got, K[name], rtol=1e-10, atol=1e-12)
    return K


@pytest.mark.parametrize("trained", ["hidden", "all"])
def test_input_skip_against_reference(trained, small):
    """Coefficients against the docs/theory.md §5 algebra with quadrature moments, exact
    kernels against the layer recursion by Gauss–Hermite pairs (tests/reference.py)."""
    tau0 = small.stats.tau0
    net = ExplicitNet([A.polynomial(_POLY), "swish"], tau0=tau0, input_skip=SKIP)
    acts = [R.polynomial(_POLY), R.get("swish")]
    X = np.asarray(small.X)[:4]
    K = _check_against_reference(net, acts, X, trained)
    # the skip matters: without it the reference NTK is 0.19 (hidden) / 0.24 (all) away
    K0 = R.explicit_net_kernels(X, acts, tau0, trained)
    assert R.rel_op_err(K["ntk"], K0["ntk"]) > 0.1


@pytest.mark.parametrize("trained", ["hidden", "all"])
def test_per_layer_input_skip_against_reference(trained, small):
    """Skips into layers 2 and 3 of ``[√w t, poly, swish]``: ``S_2 = (w + s_2²) XXᵀ`` while
    the tangent term sees ``w XXᵀ`` only (the design family's third layer)."""
    tau0, w = small.stats.tau0, 0.3
    skips = (0.0, math.sqrt(1.0 - w), SKIP)
    net = ExplicitNet([A.linear(math.sqrt(w)), A.polynomial(_POLY), "swish"], tau0=tau0,
                      input_skip=skips)  # fmt: skip
    acts = [R.polynomial([0.0, math.sqrt(w)]), R.polynomial(_POLY), R.get("swish")]
    X = np.asarray(small.X)[:3]
    _check_against_reference(net, acts, X, trained)
    # the layer-2 input is XXᵀ: the CK is that of the two-layer skip net
    two = ExplicitNet([A.polynomial(_POLY), "swish"], tau0=tau0, input_skip=SKIP)
    np.testing.assert_allclose(net.ck(X), two.ck(X), rtol=1e-12, atol=1e-14)


def test_input_skip_on_one_layer_rescales_the_input(small):
    """With one hidden layer the skip is a second input projection: ``z = (W + sU)ᵀ x``,
    i.e. the net without skip on the inputs scaled by ``√(1 + s²)``."""
    X, tau0 = np.asarray(small.X), small.stats.tau0
    r = math.sqrt(1.0 + SKIP**2)
    net = ExplicitNet(["tanh"], tau0=tau0, input_skip=SKIP)
    same = ExplicitNet(["tanh"], tau0=tau0 * r)
    np.testing.assert_allclose(net.ck(X), same.ck(r * X), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        net.ntk(X, trained="all"), same.ntk(r * X, trained="all"), rtol=1e-12, atol=1e-14
    )
    np.testing.assert_allclose(net.ntk(X), same.ck(r * X), rtol=1e-12, atol=1e-14)  # W, U fixed
    # coefficients are of XXᵀ, not of (rX)(rX)ᵀ: c1 picks up r² (tanh is odd: c2 = c3 = 0)
    c, c_same = net.coefficients("ck"), same.coefficients("ck")
    assert (c.d, c.c1) == pytest.approx((c_same.d, r * r * c_same.c1), rel=1e-12)


def _empirical_ntk(net, X, widths, seed):
    """The finite net's NTK from its weights (drawn in the documented order: W_1, W_2, U, v)
    and hand-written gradients: ``v``, ``W_2`` (hidden), plus ``U`` and ``W_1`` (all)."""
    d1, d2 = widths
    rng = np.random.default_rng(seed)
    W1 = rng.standard_normal((X.shape[1], d1))
    W2 = rng.standard_normal((d1, d2)) / math.sqrt(d1)
    U = rng.standard_normal((X.shape[1], d2))
    v = rng.standard_normal(d2)
    s1, s2 = net.activations
    z1 = X @ W1
    h1 = s1(z1)
    z2 = h1 @ W2 + net.input_skip[-1] * (X @ U)
    h2 = s2(z2)
    fwd = net.forward(X, widths, seed=seed)
    np.testing.assert_allclose(fwd.output, h2 @ v / math.sqrt(d2), rtol=1e-10, atol=1e-12)
    g = s2.derivative(z2) * v / math.sqrt(d2)  # ∂f/∂z2
    gram = X @ X.T
    hidden = h2 @ h2.T / d2 + (h1 @ h1.T / d1) * (g @ g.T)
    back = s1.derivative(z1) * (g @ W2.T)  # ∂f/∂z1
    extra = net.input_skip[-1] ** 2 * gram * (g @ g.T) + gram * (back @ back.T)
    return hidden, hidden + extra


def test_input_skip_forward_monte_carlo_ntk(small):
    """The finite net that :meth:`ExplicitNet.forward` draws has, at large width, the NTK
    that :meth:`ExplicitNet.ntk` computes: the fixed skip is absent from the tangent
    term (``trained="hidden"``) and present with ``trained="all"``."""
    X = np.asarray(small.X)[:6]
    net = ExplicitNet([A.polynomial(_POLY), "tanh"], tau0=small.stats.tau0, input_skip=SKIP)
    emp = [_empirical_ntk(net, X, (3000, 3000), seed) for seed in (0, 1)]
    for k, trained in enumerate(("hidden", "all")):
        E = (emp[0][k] + emp[1][k]) / 2
        exact = net.ntk(X, trained=trained)
        # Monte-Carlo error, measured 0.025 (hidden) and 0.024 (all) with these two draws,
        # 0.012 with eight (0.035 per draw): it falls as 1/√draws, no bias left
        assert R.rel_op_err(exact, E) < 0.06
    # the other convention is far (measured 0.42): the test tells the two apart
    assert R.rel_op_err(net.ntk(X, trained="all"), (emp[0][0] + emp[1][0]) / 2) > 0.3


def test_input_skip_identity_pickle_and_validation(small):
    X = np.asarray(small.X)[:8]
    plain = ExplicitNet(["relu", "tanh"], tau0=1.0)
    zero = ExplicitNet(["relu", "tanh"], tau0=1.0, input_skip=0.0)
    assert zero == plain and hash(zero) == hash(plain) and repr(zero) == repr(plain)
    np.testing.assert_array_equal(zero.ntk(X, trained="all"), plain.ntk(X, trained="all"))
    np.testing.assert_array_equal(zero.forward(X, 8, seed=3).output,
                                  plain.forward(X, 8, seed=3).output)  # fmt: skip
    net = ExplicitNet(["relu", "tanh"], tau0=1.0, input_skip=0.5)
    assert net != plain and net.input_skip == (0.0, 0.5) and repr(net).endswith("input_skip=0.5)")
    back = pickle.loads(pickle.dumps(net))
    assert back == net and back.input_skip == (0.0, 0.5)
    per_layer = ExplicitNet(["relu", "tanh"], tau0=1.0, input_skip=[0.0, 0.5])
    assert per_layer == net and hash(per_layer) == hash(net)
    both = ExplicitNet(["relu", "tanh"], tau0=1.0, input_skip=(0.3, 0.5))
    assert repr(both).endswith("input_skip=(0.3, 0.5))")
    assert pickle.loads(pickle.dumps(both)) == both
    # the last layer is centred at the level of K_1 + s² XXᵀ
    assert net.layers[1].input.d == pytest.approx(plain.layers[0].output.d + 0.25, rel=1e-14)
    np.testing.assert_allclose(net.ck(X[:3], X[3:]), net.ck(X)[:3, 3:], atol=1e-13)
    with pytest.raises(ValueError, match="input_skip"):
        ExplicitNet(["relu", "tanh"], tau0=1.0, input_skip=-0.1)
    with pytest.raises(TypeError, match="input_skip"):
        ExplicitNet(["relu", "tanh"], tau0=1.0, input_skip="0.5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one scale per hidden layer"):
        ExplicitNet(["relu", "tanh"], tau0=1.0, input_skip=(0.1, 0.2, 0.3))


def test_given_gram_gives_the_same_kernels_and_is_not_written(small):
    """``gram=X @ X.T`` (as :func:`deqfast.random_features.kernel_limits` shares it) gives the
    kernels bit for bit, with an input skip and the trained-input NTK too; the cross kernel
    takes ``X @ X2.T``; a gram of the wrong shape or dtype raises."""
    X = np.asarray(small.X)[:40]
    X2 = np.asarray(small.X)[40:55]
    net = ExplicitNet([A.polynomial(_POLY), "tanh"], tau0=small.stats.tau0, input_skip=SKIP)
    G = X @ X.T
    before = G.copy()
    np.testing.assert_array_equal(net.ck(X, gram=G), net.ck(X))
    for trained in ("hidden", "all"):
        got = net.ntk(X, trained=trained, gram=G)
        np.testing.assert_array_equal(got, net.ntk(X, trained=trained))
    np.testing.assert_array_equal(net.ck(X, X2, gram=X @ X2.T), net.ck(X, X2))
    np.testing.assert_array_equal(G, before)
    for bad in (G[:-1], G.astype(np.float32), G.tolist(), X @ X2.T):
        with pytest.raises(ValueError, match=r"gram must be X @ X2.T .* of shape \(40, 40\)"):
            net.ck(X, gram=bad)
