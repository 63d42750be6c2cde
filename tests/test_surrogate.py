"""RMT surrogates of the DEQ kernels (docs/theory.md §4) against exact ReLU kernels.

The exact infinite-width kernels S*, G*, K*, Theta* come from the reference's
plain Picard iteration with the arc-cosine closed forms; the surrogates from
deqfast.  The docs/theory.md §4 figures are reproduced by the reference alone with
``np.random.default_rng(seed)`` draws (class 0 first), which is also the
stream ``GaussianMixture.sample(n, seed=seed)`` uses.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

import deqfast as df
import reference as R

SA, SB = 0.2, 0.8  # authors' mixture
SA2, SB2 = 0.36, 1.0  # the n = p two-class check
PS = (128, 256, 512)
# docs/theory.md §4 tables at p = 512
THEORY_512 = {"S": 0.0047, "G": 0.083, "K": 0.086}
THEORY_NP_512 = {"S": 0.0021, "K": 0.028, "Theta": 0.040}
REL_TOL = 0.15
SEEDS_512 = (0, 1)  # average over two draws to tame the seed variance


def _err(A, B):
    return R.rel_op_err(A, B)


def _two_class_mixture(p):
    means = np.zeros((2, p))
    means[0, :2] = (1.0, -1.0)
    means[1, :2] = (-1.0, 1.0)
    return df.GaussianMixture(means, np.array([1.0, 1.0 + 2.0 / math.sqrt(p)]))


@functools.cache
def paper_case(p, seed):
    sample = df.GaussianMixture.paper(p).sample(int(0.8 * p), seed=seed)
    st = sample.stats
    deq = df.DEQ("relu", sigma_a2=SA, sigma_b2=SB, tau0=st.tau0)
    eq = deq.equilibrium()
    ex = R.relu_deq_kernels(sample.X, SA, SB, eq.center)
    sur = {
        "S": deq.pre_surrogate(sample.X, st),
        "G": deq.ck_surrogate(sample.X, st),
        "K": deq.ntk_surrogate(sample.X, st),
    }
    err = {k: _err(ex[k], sur[k]) for k in sur}
    # linear-only CK surrogate (c2 = c3 = 0)
    cf = deq.coefficients("ck")
    XXt = sample.X @ sample.X.T
    lin = R.surrogate_matrix(XXt, st.J, st.psi, st.t, st.T, st.tau0, p, cf.d, cf.c1, 0.0, 0.0)
    err["G_lin"] = _err(ex["G"], lin)
    return sample, deq, ex, sur, err


@functools.cache
def two_class_case(p, seed):
    sample = _two_class_mixture(p).sample(p, seed=seed)
    st = sample.stats
    deq = df.DEQ("relu", sigma_a2=SA2, sigma_b2=SB2, tau0=st.tau0)
    ex = R.relu_deq_kernels(sample.X, SA2, SB2, deq.equilibrium().center)
    err = {
        "S": _err(ex["S"], deq.pre_surrogate(sample.X, st)),
        "K": _err(ex["K"], deq.ntk_surrogate(sample.X, st)),
        "Theta": _err(ex["Theta"], deq.ntk_surrogate(sample.X, st, trained="all")),
    }
    return err


# --------------------------------------------------------------------------- #
# Data conventions: deqfast's sampler vs the reference's
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("p", (128, 256))
def test_paper_sample_matches_reference(p):
    n = int(0.8 * p)
    s = df.GaussianMixture.paper(p).sample(n, seed=3)
    r = R.paper_mixture_sample(p, n, np.random.default_rng(3))
    np.testing.assert_array_equal(s.labels, r["labels"])
    np.testing.assert_allclose(s.X, r["X"], rtol=1e-14, atol=1e-15)
    st = s.stats
    assert st.tau0 == pytest.approx(r["tau0"], rel=1e-14)
    assert st.tau0**2 == pytest.approx(1.0 + 4.0 / math.sqrt(p), rel=1e-14)
    np.testing.assert_allclose(st.t, r["t"], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(st.T, r["T"], rtol=1e-14)
    np.testing.assert_allclose(st.psi, r["psi"], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(st.priors, [0.5, 0.5], rtol=1e-15)
    np.testing.assert_array_equal(st.J, r["J"])


# --------------------------------------------------------------------------- #
# deqfast's surrogate matrices == the reference formula, same coefficients
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", ("relu", "tanh", "gelu"))
def test_surrogate_equals_reference_formula(name):
    p = 128
    sample = df.GaussianMixture.paper(p).sample(int(0.8 * p), seed=5)
    st = sample.stats
    deq = df.DEQ(name, sigma_a2=SA, sigma_b2=SB, tau0=st.tau0)
    a = R.get(name)
    eq = R.equilibrium(a.phi, a.dphi, a.kinks, SA, SB, st.tau0)
    XXt = sample.X @ sample.X.T
    got = {
        "pre": deq.pre_surrogate(sample.X, st),
        "ck": deq.ck_surrogate(sample.X, st),
        "ntk": deq.ntk_surrogate(sample.X, st),
        "ntk_all": deq.ntk_surrogate(sample.X, st, trained="all"),
    }
    for kind, M in got.items():
        kernel, trained = ("ntk", "all") if kind == "ntk_all" else (kind, "hidden")
        cf = deq.coefficients(kernel, trained=trained)
        want = R.surrogate_matrix(
            XXt, st.J, st.psi, st.t, st.T, st.tau0, p, cf.d, cf.c1, cf.c2, cf.c3
        )
        assert M.shape == (sample.n, sample.n)
        scale = np.max(np.abs(want))
        np.testing.assert_allclose(M, want, rtol=0, atol=1e-12 * scale, err_msg=kind)
        np.testing.assert_allclose(M, M.T, rtol=0, atol=1e-14 * scale, err_msg=kind)
        # and with the reference's own coefficients
        w = R.surrogate_coefficients(eq, kind)
        want2 = R.surrogate_matrix(XXt, st.J, st.psi, st.t, st.T, st.tau0, p, **w)
        np.testing.assert_allclose(M, want2, rtol=0, atol=1e-10 * scale, err_msg=kind)


# --------------------------------------------------------------------------- #
# docs/theory.md §4 table: the authors' mixture, ReLU, sigma_a2 = 0.2, n = 0.8 p
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("kernel", ("S", "G", "K"))
def test_errors_decrease_with_p(kernel):
    errs = [paper_case(p, 0)[4][kernel] for p in PS]
    assert errs[0] > errs[1] > errs[2], errs


@pytest.mark.parametrize("kernel", ("S", "G", "K"))
def test_errors_at_512_match_theory(kernel):
    err = np.mean([paper_case(512, s)[4][kernel] for s in SEEDS_512])
    want = THEORY_512[kernel]
    assert abs(err / want - 1.0) < REL_TOL, (kernel, err, want)


@pytest.mark.parametrize("p", PS)
def test_full_surrogate_beats_linear_only_for_ck(p):
    err = paper_case(p, 0)[4]
    assert err["G"] < err["G_lin"], err


def test_exact_kernels_are_fixed_points():
    """The reference's exact S* satisfies S = sa F(S) + sb XX^T (and is PSD)."""
    sample, deq, ex, _, _ = paper_case(128, 0)
    center = deq.equilibrium().center
    EE, Eu, _ = R.relu_pair(ex["S"])
    F = EE - center * (Eu[:, None] + Eu[None, :]) + center**2
    resid = ex["S"] - (SA * F + SB * sample.X @ sample.X.T)
    assert np.max(np.abs(resid)) < 1e-12
    assert np.linalg.eigvalsh(ex["S"]).min() > 0


# --------------------------------------------------------------------------- #
# docs/theory.md §4 n = p check: sigma_a2 = 0.36, sigma_b2 = 1, mu = +-(1, -1, 0, ...)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("kernel", ("S", "K", "Theta"))
def test_two_class_np_check_at_512(kernel):
    err = np.mean([two_class_case(512, s)[kernel] for s in SEEDS_512])
    want = THEORY_NP_512[kernel]
    assert abs(err / want - 1.0) < REL_TOL, (kernel, err, want)


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def small():
    sample = df.GaussianMixture.paper(64).sample(40, seed=1)
    deq = df.DEQ("relu", sigma_a2=SA, sigma_b2=SB, tau0=sample.stats.tau0)
    return sample, deq


@pytest.mark.parametrize("method", ("pre_surrogate", "ck_surrogate", "ntk_surrogate"))
def test_nan_in_X_raises(small, method):
    sample, deq = small
    X = sample.X.copy()
    X[3, 5] = np.nan
    with pytest.raises(ValueError):
        getattr(deq, method)(X, sample.stats)


@pytest.mark.parametrize("method", ("pre_surrogate", "ck_surrogate", "ntk_surrogate"))
def test_wrong_shape_raises(small, method):
    sample, deq = small
    X = sample.X
    with pytest.raises(ValueError):
        getattr(deq, method)(X[:-1], sample.stats)  # n disagrees with stats.psi
    with pytest.raises(ValueError):
        getattr(deq, method)(X[:, :-1], sample.stats)  # p disagrees with stats.p
    with pytest.raises(ValueError):
        getattr(deq, method)(X[0], sample.stats)  # 1-D


def test_bad_trained_option_raises(small):
    sample, deq = small
    with pytest.raises(ValueError):
        deq.ntk_surrogate(sample.X, sample.stats, trained="nonsense")


def test_surrogate_without_tau0_raises(small):
    sample, _ = small
    deq = df.DEQ("relu", sigma_a2=SA, sigma_b2=SB, tau0=None)
    with pytest.raises(ValueError, match="tau0"):
        deq.equilibrium()
    for method in ("pre_surrogate", "ck_surrogate", "ntk_surrogate"):
        with pytest.raises(ValueError, match="tau0"):
            getattr(deq, method)(sample.X, sample.stats)


@pytest.mark.parametrize("scale", (1e-200, 1e200))
def test_extreme_scales_raise_clearly(small, scale):
    sample, deq = small
    with pytest.raises(
        ValueError, match=r"X has 40 row\(s\) too (small|large) for float64.*rescale X"
    ):
        deq.ck_surrogate(sample.X * scale, sample.stats)


def test_large_but_representable_scale_is_exact_and_overflow_raises(small):
    sample, deq = small
    st = sample.stats
    cf = deq.coefficients("ck")
    X = sample.X * 1e100
    got = df.surrogate_matrix(X, st, cf)
    ref = R.surrogate_matrix(X @ X.T, st.J, st.psi, st.t, st.T, st.tau0, st.p, *cf.as_tuple())
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    big = df.KernelCoefficients(d=1.0, c1=1e30, c2=0.0, c3=0.0)  # c1 ‖x‖² = 1e330
    with pytest.raises(ValueError, match=r"surrogate overflows float64 .*c1 = 1e\+30"):
        df.surrogate_matrix(sample.X * 1e150, st, big)


def test_shared_gram_gives_the_same_surrogates(small):
    # X Xᵀ passed in (shared by several models on one sample) gives the same matrices as
    # computing it inside, bit for bit, and against the NumPy reference
    sample, deq = small
    st = sample.stats
    G = sample.X @ sample.X.T
    for kind in ("ck", "ntk"):
        cf = deq.coefficients(kind)
        got = df.surrogate_matrix(sample.X, st, cf, gram=G)
        np.testing.assert_array_equal(got, df.surrogate_matrix(sample.X, st, cf))
        ref = R.surrogate_matrix(G, st.J, st.psi, st.t, st.T, st.tau0, st.p, *cf.as_tuple())
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    np.testing.assert_array_equal(
        deq.ck_surrogate(sample.X, st, gram=G), deq.ck_surrogate(sample.X, st)
    )
    np.testing.assert_array_equal(
        deq.ntk_surrogate(sample.X, st, gram=G), deq.ntk_surrogate(sample.X, st)
    )
    assert not np.shares_memory(deq.ck_surrogate(sample.X, st, gram=G), G)  # not written in


@pytest.mark.parametrize(
    "bad", (np.eye(3), np.eye(40, dtype=np.float32), [[1.0]], np.zeros((40, 41)))
)
def test_gram_of_wrong_shape_or_type_raises(small, bad):
    sample, deq = small
    with pytest.raises(ValueError, match=r"gram must be X @ X.T, a float64 array of shape"):
        deq.ck_surrogate(sample.X, sample.stats, gram=bad)
