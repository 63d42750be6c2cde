"""Exact infinite-width kernels (docs/theory.md §3) against independent NumPy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

import deqfast as df
import reference as ref
from deqfast import _core


def _rel(A: np.ndarray, B: np.ndarray) -> float:
    return float(np.abs(A - B).max() / np.abs(B).max())


@pytest.fixture
def mixture():
    return df.GaussianMixture.paper(128).sample(96, seed=3)


@pytest.mark.parametrize("sigma_a2", [0.2, 0.5])
def test_relu_matches_arccos_picard(mixture, sigma_a2):
    deq = df.DEQ("relu", sigma_a2=sigma_a2, tau0=mixture.stats.tau0)
    center = deq.equilibrium().center
    want = ref.relu_deq_kernels(mixture.X, sigma_a2, 1 - sigma_a2, center)
    got = deq.kernels(mixture.X)
    theta = deq.ntk(mixture.X, trained="all")
    assert _rel(got.S, want["S"]) < 1e-10
    assert _rel(got.G, want["G"]) < 1e-10
    assert _rel(got.K, want["K"]) < 1e-10
    assert _rel(theta, want["Theta"]) < 1e-10
    # The reference's arccos(clip(rho)) loses ~1e-8 on the diagonal (rho = 1 - eps);
    # off the diagonal both are exact.
    off = ~np.eye(len(mixture.X), dtype=bool)
    assert _rel(got.Gdot[off], want["Gdot"][off]) < 1e-10
    np.testing.assert_allclose(np.diag(got.Gdot), 0.5, rtol=0, atol=1e-15)


@pytest.mark.parametrize(("ours", "numpy_fn"), [("_acos_vec", np.arccos), ("_asin_vec", np.arcsin)])
def test_vectorised_arccos_arcsin_are_accurate_to_two_ulp(rng, ours, numpy_fn):
    """The branch-free arccos / arcsin of the vectorised ReLU / erf pair solvers (Cephes' asin
    rational with the half-angle reduction for |x| > 1/2) against NumPy's, including the
    branch points."""
    x = np.concatenate(
        [
            np.linspace(-1.0, 1.0, 200_001),
            rng.uniform(-1.0, 1.0, 200_000),
            1.0 - np.logspace(-16, -1, 400),
            -1.0 + np.logspace(-16, -1, 400),
            np.nextafter(0.5, [0.0, 1.0]),
            np.nextafter(-0.5, [-1.0, 0.0]),
            [-1.0, -0.5, 0.0, 0.5, 1.0],
        ]
    )
    want = numpy_fn(x)
    got = getattr(_core, ours)(x)
    assert np.all(np.abs(got - want) <= 2 * np.spacing(np.abs(want)))


def test_vectorised_exp_tanh_sigmoid_are_accurate(rng):
    """The branch-free exp (Cephes' rational on the reduced argument, 2^k built in the exponent)
    to 2 ulp over its whole range, and the tanh / sigmoid built on it (used by the series of
    G, Ġ about |rho| = 1, which needs absolute accuracy) to 3e-16 absolute, against NumPy."""
    x = np.concatenate(
        [np.linspace(-700.0, 700.0, 400_001), rng.uniform(-5.0, 5.0, 100_000), [0.0]]
    )
    want = np.exp(x)
    assert np.all(np.abs(_core._exp_vec(x) - want) <= 2 * np.spacing(want))
    y = np.concatenate([np.linspace(-40.0, 40.0, 400_001), rng.uniform(-3.0, 3.0, 100_000)])
    assert np.abs(_core._tanh_vec(y) - np.tanh(y)).max() <= 3e-16
    assert np.abs(_core._sigmoid_vec(y) - special.expit(y)).max() <= 3e-16
    np.testing.assert_array_equal(_core._tanh_vec(-y), -_core._tanh_vec(y))  # odd, as used
    # relative accuracy down to tiny arguments (explicit layers and diagonals at tiny scales
    # evaluate it at the quadrature nodes): the small-|y| rational, 2 ulp
    t = np.concatenate([np.logspace(-300, 0.5, 20_001), [0.6249999, 0.625, 0.6250001]])
    assert np.all(np.abs(_core._tanh_vec(t) - np.tanh(t)) <= 2 * np.spacing(np.tanh(t)))


def test_relu_over_the_whole_correlation_range(rng):
    """Strongly (anti-)correlated pairs: the vectorised arc-cosine path reduces |rho| > 1/2
    to arcsin(sqrt((1 - |rho|)/2)) and negative rho by symmetry; check every branch."""
    z = rng.standard_normal(64)
    noise = rng.standard_normal((30, 64))
    scales = np.linspace(0.02, 1.5, 30)[:, None]
    X = np.vstack([z + scales * noise, -z + scales * noise, noise]) / 8.0
    deq = df.DEQ("relu", sigma_a2=0.3, sigma_b2=0.7)
    want = ref.relu_deq_kernels(X, 0.3, 0.7, 0.0)
    got = deq.kernels(X)
    rho = got.S / np.sqrt(np.outer(np.diag(got.S), np.diag(got.S)))
    off = ~np.eye(len(X), dtype=bool)
    assert rho[off].max() > 0.99 and rho[off].min() < -0.6  # every branch is exercised
    assert ((np.abs(rho[off]) > 0.1) & (np.abs(rho[off]) < 0.5)).any()
    for key in ("S", "G", "K"):
        assert _rel(getattr(got, key), want[key]) < 1e-10, key
    assert _rel(got.Gdot[off], want["Gdot"][off]) < 1e-10


@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_kernels_of_large_and_small_data_scale_exactly(rng, act):
    """Uncentred positively homogeneous activations: S*(cX) = c² S*(X) exactly, so data
    of any magnitude must converge (the tolerance is relative to each entry's scale) and
    scale, the scale-free Ġ* included."""
    X = rng.standard_normal((40, 12)) / np.sqrt(12)
    deq = df.DEQ(act, sigma_a2=0.3, sigma_b2=0.7)
    base = deq.kernels(X)
    for c in (1e-4, 1e3):
        big = deq.kernels(c * X)
        for key in ("S", "G", "K"):
            assert _rel(getattr(big, key) / c**2, getattr(base, key)) < 1e-10, (c, key)
        assert _rel(big.Gdot, base.Gdot) < 1e-10, c


def test_erf_matches_arcsine_picard(mixture):
    deq = df.DEQ("erf", sigma_a2=0.3, tau0=mixture.stats.tau0)
    want = ref.erf_deq_kernels(mixture.X, 0.3, 0.7, center=deq.equilibrium().center)
    got = deq.kernels(mixture.X)
    for key in ("S", "G", "Gdot", "K"):
        assert _rel(getattr(got, key), want[key]) < 1e-10, key


def test_uncentred_leaky_relu_without_tau0(rng):
    X = rng.standard_normal((40, 30)) / math.sqrt(30)
    deq = df.DEQ("leaky_relu", slope=0.2, sigma_a2=0.4, sigma_b2=1.0)
    got = deq.ck(X)
    # leaky = 0.2 x + 0.8 relu(x); independent Picard with the arc-cosine pieces.
    XX = X @ X.T
    S = XX.copy()
    for _ in range(400):
        EE, _, _ = ref.relu_pair(S)
        G = 0.04 * S + 2 * 0.2 * 0.8 * S / 2 + 0.64 * EE
        S_new = 0.4 * G + XX
        if np.abs(S_new - S).max() < 1e-15:
            break
        S = S_new
    EE, _, _ = ref.relu_pair(S_new)
    G = 0.04 * S_new + 0.16 * S_new + 0.64 * EE
    assert _rel(got, G) < 1e-10


@pytest.mark.parametrize("name", ["tanh", "swish", "gelu", "softplus", "elu", "sigmoid"])
def test_generic_activations_match_adaptive_quadrature(rng, name):
    """The Mehler-series path against nested adaptive quadrature. Each G*_ij, Ġ*_ij is the
    reference's E φ(u)φ(v), E φ'(u)φ'(v) at the solved S*_ij, and S* solves its equations with
    the reference's expectations: S_ii = σa² E φ(√S_ii ξ)² + σb² |x_i|² (1-D quadrature) and
    S_ij = σa² G_ref + σb² x_i·x_j. The map s -> σa² g(s) + b contracts (σa² Ġ < 1), so a small
    residual pins S* down as tightly as solving the reference's equation would."""
    n, p = 3, 12  # pairs: one strongly correlated (rho near 1), two moderate
    X = rng.standard_normal((n, p)) / math.sqrt(p)
    X[1] = 0.95 * X[0] + 0.05 * X[1]
    sa2, sb2 = 0.4, 0.6
    deq = df.DEQ(name, sigma_a2=sa2, tau0=1.0)
    c = deq.equilibrium().center
    r = ref.get(name)
    got = deq.kernels(X)
    S, XX = got.S, X @ X.T

    def f(x):
        return r.phi(x) - c

    for i in range(n):
        t = math.sqrt(S[i, i])
        m2 = ref.expect(lambda x, t=t: float(f(t * x)) ** 2, t, r.kinks)
        e2 = ref.expect(lambda x, t=t: float(r.dphi(t * x)) ** 2, t, r.kinks)
        assert abs(S[i, i] - sa2 * m2 - sb2 * XX[i, i]) <= 1e-12 * S[i, i], i
        assert abs(got.G[i, i] - m2) <= 1e-12 * m2, i
        assert abs(got.Gdot[i, i] - e2) <= 1e-12 * e2, i
    scale = np.abs(got.G).max()
    for i, j in zip(*np.triu_indices(n, 1)):
        g = ref.two_point(f, f, S[i, i], S[j, j], S[i, j], r.kinks, r.kinks)
        gd = ref.two_point(r.dphi, r.dphi, S[i, i], S[j, j], S[i, j], r.kinks, r.kinks)
        assert abs(got.G[i, j] - g) <= 1e-10 * scale, (i, j)
        assert abs(got.Gdot[i, j] - gd) <= 1e-9, (i, j)
        assert abs(S[i, j] - sa2 * g - sb2 * XX[i, j]) <= 1e-11 * np.abs(S).max(), (i, j)
        assert abs(got.K[i, j] - g / (1.0 - sa2 * gd)) <= 1e-9 * np.abs(got.K).max(), (i, j)


def test_polynomial_kernel_closed_form(rng):
    """phi(x) = x + 0.3 x^2: E[phi(u)phi(v)] = s + 0.09 (d_i d_j + 2 s^2) (exact Mehler)."""
    X = rng.standard_normal((30, 20)) / math.sqrt(20)
    deq = df.DEQ("polynomial", coef=[0.0, 1.0, 0.3], sigma_a2=0.2, sigma_b2=0.8)
    res = deq.kernels(X)
    S = res.S
    d = np.diag(S)
    G = S + 0.09 * (np.outer(d, d) + 2 * S**2)
    Gdot = 1.0 + 0.36 * S  # E[(1 + 0.6u)(1 + 0.6v)]
    assert _rel(res.G, G) < 1e-12
    assert _rel(res.Gdot, Gdot) < 1e-12
    # and S is the fixed point
    assert _rel(S, 0.2 * G + 0.8 * X @ X.T) < 1e-12


def test_duplicate_samples_use_quadrature_fallback(rng):
    """rho = 1 between distinct rows: the Mehler bound fails, 2-D quadrature takes over."""
    X = rng.standard_normal((6, 10)) / math.sqrt(10)
    deq = df.DEQ("tanh", sigma_a2=0.3, tau0=1.0)
    res = deq.kernels(X[:3], X[:3].copy())
    assert res.quadrature_pairs >= 3  # the three (i, i) pairs of the cross kernel
    sym = deq.kernels(X[:3])
    for key in ("S", "G", "Gdot", "K"):
        assert _rel(getattr(res, key), getattr(sym, key)) < 1e-9, key


@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_symmetric_psd_and_cross_consistency(mixture, name):
    deq = df.DEQ(name, sigma_a2=0.2, tau0=mixture.stats.tau0)
    X = mixture.X
    res = deq.kernels(X)
    for key in ("S", "G", "K"):
        M = getattr(res, key)
        np.testing.assert_array_equal(M, M.T)
        assert np.linalg.eigvalsh(M).min() > -1e-12 * np.abs(M).max()
    # cross kernels on a split of the same data equal the blocks of the full kernel
    cross = deq.kernels(X[:30], X[30:70])
    assert _rel(cross.G, res.G[:30, 30:70]) < 1e-12
    assert _rel(cross.K, res.K[:30, 30:70]) < 1e-12
    assert _rel(deq.ck(X, X), deq.ck(X)) < 1e-12


def test_threads_and_tiles_do_not_change_results(mixture):
    deq = df.DEQ("swish", sigma_a2=0.2, tau0=mixture.stats.tau0)
    a = deq.ck(mixture.X, num_threads=1, block=32)
    b = deq.ck(mixture.X, num_threads=2, block=32, progress=True)
    np.testing.assert_array_equal(a, b)  # a tile's result does not depend on its thread
    # Other tile sizes change only the rounding of the tile Gram products (SIMD/FMA blocking).
    c = deq.ck(mixture.X, num_threads=2, block=8)
    assert _rel(c, a) < 1e-14


def test_result_repr_and_statistics(mixture):
    res = df.DEQ("relu", sigma_a2=0.2, tau0=mixture.stats.tau0).kernels(mixture.X)
    n = len(mixture.X)
    assert res.pairs == n * (n - 1) // 2
    assert 1.5 <= res.newton_steps / res.pairs <= 6
    assert res.residual <= 1e-12 * res.S.diagonal().max()  # tol is relative to the scale
    assert "pairs=" in repr(res)


# -- docs/theory.md §4 checked figures, with the C++ kernels ------------------------------------
def _errors(deq, sample, kinds=("pre", "ck", "ntk")):
    res = deq.kernels(sample.X)
    out = {}
    if "pre" in kinds:
        out["S"] = ref.rel_op_err(res.S, deq.pre_surrogate(sample.X, sample.stats))
    if "ck" in kinds:
        out["G"] = ref.rel_op_err(res.G, deq.ck_surrogate(sample.X, sample.stats))
    if "ntk" in kinds:
        out["K"] = ref.rel_op_err(res.K, deq.ntk_surrogate(sample.X, sample.stats))
    return out


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (512, {"S": 0.0047, "G": 0.083, "K": 0.086}),
        (1024, {"S": 0.0030, "G": 0.054, "K": 0.055}),
    ],
)
def test_theory_table_authors_mixture(p, expected):
    """docs/theory.md §4: ReLU, sigma_a2 = 0.2, n = 0.8 p, within 15 % of the quoted errors."""
    sample = df.GaussianMixture.paper(p).sample(int(0.8 * p), seed=0)
    deq = df.DEQ("relu", sigma_a2=0.2, tau0=sample.stats.tau0)
    got = _errors(deq, sample)
    for key, want in expected.items():
        assert abs(got[key] - want) <= 0.15 * want, (key, got[key], want)


def test_theory_n_equals_p_check():
    """docs/theory.md §4 n = p two-class check at p = 512 (sigma_a2 = 0.36, sigma_b2 = 1)."""
    p = 512
    means = np.zeros((2, p))
    means[0, :2] = (1.0, -1.0)
    means[1, :2] = (-1.0, 1.0)
    gm = df.GaussianMixture(means, np.array([1.0, 1.0 + 2.0 / math.sqrt(p)]))
    sample = gm.sample(p, seed=0)
    deq = df.DEQ("relu", sigma_a2=0.36, sigma_b2=1.0, tau0=sample.stats.tau0)
    res = deq.kernels(sample.X, trained="all")
    e_s = ref.rel_op_err(res.S, deq.pre_surrogate(sample.X, sample.stats))
    e_theta = ref.rel_op_err(res.Theta, deq.ntk_surrogate(sample.X, sample.stats, trained="all"))
    e_k = ref.rel_op_err(deq.ntk(sample.X), deq.ntk_surrogate(sample.X, sample.stats))
    for got, want in ((e_s, 0.0021), (e_theta, 0.040), (e_k, 0.028)):
        assert abs(got - want) <= 0.15 * want, (got, want)


# -- validation ----------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors(rng):
    deq = df.DEQ("relu", sigma_a2=0.2, tau0=1.0)
    X = rng.standard_normal((5, 4))
    with pytest.raises(ValueError, match="X2"):
        deq.ck(X, rng.standard_normal((3, 5)))
    bad = X.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="X"):
        deq.ck(bad)
    zero = X.copy()
    zero[2] = 0.0
    with pytest.raises(ValueError, match="zero rows"):
        deq.ck(zero)
    with pytest.raises(ValueError, match="outputs"):
        df.kernels.compute_kernels(deq, X, outputs=("Q",))
    with pytest.raises(ValueError, match="tol"):
        deq.ck(X, tol=0.0)
    with pytest.raises(TypeError, match="callable"):
        df.DEQ(np.tanh, sigma_a2=0.2).ck(X)


def test_non_contracting_sigma_is_refused(rng):
    X = rng.standard_normal((5, 4))
    with pytest.raises(ValueError, match="sigma_a2"):
        df.DEQ("linear", sigma_a2=1.2, sigma_b2=1.0).ck(X)


def test_max_iter_exhaustion_raises(mixture):
    deq = df.DEQ("tanh", sigma_a2=0.2, tau0=mixture.stats.tau0)
    with pytest.raises(RuntimeError, match="did not converge"):
        deq.ck(mixture.X[:10], max_iter=2)
