"""Tests for deqfast.data (docs/theory.md §1) and the shared argument checks.

Checks are independent of the implementation: closed forms for the authors'
preset, brute-force loops for the estimators, and empirical moments of many
draws against the population (with loose but falsifiable bounds).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deqfast._validation import (
    as_data_matrix,
    as_labels,
    as_rng,
    check_choice,
    check_in_range,
    check_integer,
    check_positive,
)
from deqfast.data import GaussianMixture, MixtureStats, Sample


def _random_spd(rng: np.random.Generator, p: int) -> np.ndarray:
    A = rng.standard_normal((p, p))
    return A @ A.T / p + 0.5 * np.eye(p)


def _brute_stats(X: np.ndarray, labels: np.ndarray):
    """Obviously-correct loops for the docs/theory.md §1 estimators."""
    n, p = X.shape
    classes = sorted(set(labels.tolist()))
    codes = np.array([classes.index(lab) for lab in labels.tolist()])
    K = len(classes)
    members = [[i for i in range(n) if codes[i] == a] for a in range(K)]
    W = np.zeros_like(X)
    for a in range(K):
        m = sum(X[i] for i in members[a]) / len(members[a])
        for i in members[a]:
            W[i] = X[i] - m
    tr = np.array([np.mean([W[i] @ W[i] for i in members[a]]) for a in range(K)])
    priors = np.array([len(members[a]) / n for a in range(K)])
    tau0_sq = sum(priors[a] * tr[a] for a in range(K))
    T = np.zeros((K, K))
    for a in range(K):
        for b in range(K):
            vals = [(W[i] @ W[j]) ** 2 for i in members[a] for j in members[b] if i != j]
            T[a, b] = p * np.mean(vals)
    psi = np.array([W[i] @ W[i] - tr[codes[i]] for i in range(n)])
    t = np.sqrt(p) * (tr - tau0_sq)
    return np.sqrt(tau0_sq), t, T, psi, codes, priors


# --------------------------------------------------------------------------- #
# Sampling
# --------------------------------------------------------------------------- #
def test_sample_shapes_dtypes_and_ordering():
    gm = GaussianMixture.paper(16)
    s = gm.sample(11, seed=3)
    assert isinstance(s, Sample)
    assert s.X.shape == (11, 16) and s.X.dtype == np.float64 and s.X.flags.c_contiguous
    assert s.labels.dtype == np.int64 and s.labels.shape == (11,)
    # 5.5 / 5.5: the tie goes to the lower class index; class 0 block first
    assert s.labels.tolist() == [0] * 6 + [1] * 5
    assert s.class_counts.tolist() == [6, 5]
    assert (s.n, s.p, s.K) == (11, 16, 2)
    assert s.stats.psi.shape == (11,) and np.array_equal(s.stats.labels, s.labels)


def test_largest_remainder_counts():
    gm = GaussianMixture(np.zeros((3, 4)), [1.0, 1.0, 1.0], priors=[0.2, 0.3, 0.5])
    # quotas 1.4, 2.1, 3.5 -> floors 1, 2, 3; the spare sample goes to the 0.5 remainder
    assert gm.class_counts(7).tolist() == [1, 2, 4]
    assert gm.sample(7, seed=0).labels.tolist() == [0, 1, 1, 2, 2, 2, 2]
    assert gm.class_counts(10).tolist() == [2, 3, 5]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=10_000),
    weights=st.lists(st.floats(min_value=0.01, max_value=1.0), min_size=2, max_size=6),
)
def test_class_counts_property(n, weights):
    w = np.array(weights)
    priors = w / w.sum()
    gm = GaussianMixture(np.zeros((len(w), 2)), np.ones(len(w)), priors=priors)
    counts = gm.class_counts(n)
    assert counts.sum() == n
    assert np.all(counts >= 0)
    assert np.all(np.abs(counts - n * gm.priors) < 1.0)


def test_seed_reproducibility():
    gm = GaussianMixture.paper(12)
    a = gm.sample(20, seed=123)
    b = gm.sample(20, seed=123)
    c = gm.sample(20, seed=124)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.stats.psi, b.stats.psi)
    assert not np.allclose(a.X, c.X)
    # a Generator is used as is, and an int seed means default_rng(seed)
    d = gm.sample(20, seed=np.random.default_rng(123))
    assert np.array_equal(a.X, d.X)
    # documented stream: per class, an (n_a, p) standard_normal block
    g = np.random.default_rng(123)
    z0 = g.standard_normal((10, 12))
    z1 = np.sqrt(1 + 8 / np.sqrt(12)) * g.standard_normal((10, 12))
    expect = (np.vstack([z0, z1]) + np.repeat(gm.means, 10, axis=0)) / np.sqrt(12)
    np.testing.assert_allclose(a.X, expect, rtol=1e-14, atol=1e-15)
    assert gm.sample(5).X.shape == (5, 12)  # seed=None works


def test_empirical_moments_full_covariance():
    rng = np.random.default_rng(0)
    p, n = 4, 40_000
    covs = np.stack([_random_spd(rng, p), _random_spd(rng, p)])
    means = rng.standard_normal((2, p)) * 3
    gm = GaussianMixture(means, covs, priors=[0.25, 0.75])
    s = gm.sample(n, seed=1)
    assert s.class_counts.tolist() == [10_000, 30_000]
    for a in range(2):
        Z = np.sqrt(p) * s.X[s.labels == a]  # mu_a + z
        na = Z.shape[0]
        C = covs[a]
        d = np.sqrt(np.diag(C))
        # sample mean: 5 standard errors
        assert np.all(np.abs(Z.mean(axis=0) - means[a]) < 5 * d / np.sqrt(na))
        # sample covariance: Var(S_jk) ~ (C_jj C_kk + C_jk^2)/n, 5 standard errors
        S = np.cov(Z, rowvar=False)
        se = np.sqrt((np.outer(d**2, d**2) + C**2) / na)
        assert np.all(np.abs(S - C) < 5 * se)


def test_empirical_moments_diag_and_scalar():
    p, n = 3, 30_000
    diag = np.array([[0.5, 1.0, 2.0], [3.0, 0.0, 1.0]])
    gm = GaussianMixture(np.zeros((2, p)), diag)
    s = gm.sample(n, seed=2)
    for a in range(2):
        Z = np.sqrt(p) * s.X[s.labels == a]
        var = Z.var(axis=0)
        assert np.all(np.abs(var - diag[a]) < 5 * np.sqrt(2 / Z.shape[0]) * diag[a] + 1e-12)
    assert np.all(s.X[s.labels == 1][:, 1] == 0.0)  # zero variance coordinate stays at mean


def test_psi_from_actual_draws():
    rng = np.random.default_rng(5)
    p = 7
    covs = np.stack([_random_spd(rng, p) for _ in range(3)])
    means = rng.standard_normal((3, p))
    gm = GaussianMixture(means, covs, priors=[0.3, 0.3, 0.4])
    s = gm.sample(30, seed=9)
    psi = np.empty(s.n)
    for i in range(s.n):
        a = s.labels[i]
        z = np.sqrt(p) * s.X[i] - means[a]
        psi[i] = z @ z / p - np.trace(covs[a]) / p
    np.testing.assert_allclose(s.stats.psi, psi, rtol=1e-10, atol=1e-12)


def test_singular_psd_covariance_samples_in_range():
    p = 5
    v = np.arange(1.0, p + 1)
    C1 = np.outer(v, v) / (v @ v)  # rank one projector, Cholesky fails
    gm = GaussianMixture(np.zeros((2, p)), np.stack([np.eye(p), C1]))
    s = gm.sample(40, seed=0)
    Z = np.sqrt(p) * s.X[s.labels == 1]
    residual = Z - np.outer(Z @ v, v) / (v @ v)
    assert np.max(np.abs(residual)) < 1e-12
    assert np.std(Z @ v / np.linalg.norm(v)) > 0.3  # not degenerate along v


def test_full_diag_scalar_equivalence():
    p = 10
    means = np.zeros((2, p))
    means[1, 3] = 2.0
    scal = np.array([1.5, 0.7])
    diag = np.outer(scal, np.ones(p))
    full = np.stack([s_ * np.eye(p) for s_ in scal])
    mixtures = [GaussianMixture(means, c, priors=[0.4, 0.6]) for c in (scal, diag, full)]
    assert [m.cov_kind for m in mixtures] == ["scalar", "diag", "full"]
    samples = [m.sample(25, seed=11) for m in mixtures]
    for m, s in zip(mixtures[1:], samples[1:]):
        np.testing.assert_allclose(s.X, samples[0].X, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(s.stats.psi, samples[0].stats.psi, rtol=1e-12, atol=1e-14)
        st_ = m.stats(s)
        assert st_.tau0 == pytest.approx(samples[0].stats.tau0, rel=1e-14)
        np.testing.assert_allclose(st_.t, samples[0].stats.t, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(st_.T, samples[0].stats.T, rtol=1e-12)
    # non-isotropic diagonal vs the same full matrix
    d = np.array([np.linspace(0.5, 2, p), np.linspace(2, 0.1, p)])
    gd = GaussianMixture(means, d)
    gf = GaussianMixture(means, np.stack([np.diag(r) for r in d]))
    np.testing.assert_allclose(gd.T, gf.T, rtol=1e-13)
    np.testing.assert_allclose(gd.t, gf.t, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(gd.covariance(1), gf.covariance(1))


def test_population_stats_full_covariance_by_hand():
    rng = np.random.default_rng(8)
    p = 6
    covs = np.stack([_random_spd(rng, p) for _ in range(3)])
    priors = np.array([0.2, 0.5, 0.3])
    gm = GaussianMixture(np.zeros((3, p)), covs, priors=priors)
    Cbar = sum(priors[a] * covs[a] for a in range(3))
    tau0_sq = np.trace(Cbar) / p
    s = gm.sample(12, seed=0)
    st_ = gm.stats(s)
    assert st_.tau0 == pytest.approx(np.sqrt(tau0_sq), rel=1e-13)
    for a in range(3):
        assert st_.t[a] == pytest.approx(np.sqrt(p) * (np.trace(covs[a]) / p - tau0_sq))
        for b in range(3):
            # the covariances themselves, not C_a - C̄ (docs/theory.md §4)
            assert st_.T[a, b] == pytest.approx(np.trace(covs[a] @ covs[b]) / p, rel=1e-12)
    np.testing.assert_allclose(st_.priors, priors)
    assert np.array_equal(st_.psi, s.stats.psi) and st_.p == p


@pytest.mark.parametrize("p", [9, 64, 1000])
def test_paper_preset_closed_forms(p):
    gm = GaussianMixture.paper(p)
    assert gm.K == 2 and gm.p == p and gm.cov_kind == "scalar"
    np.testing.assert_array_equal(gm.priors, [0.5, 0.5])
    assert gm.means[0, 0] == 8.0 and gm.means[1, 8] == 8.0
    assert np.count_nonzero(gm.means) == 2
    r = 1 + 8 / np.sqrt(p)
    np.testing.assert_allclose(gm.covariance(1), r * np.eye(p))
    s = gm.sample(20, seed=0)
    st_ = s.stats
    assert st_.tau0**2 == pytest.approx(1 + 4 / np.sqrt(p), rel=1e-14)
    # tr(C_0)/p - tau0^2 = -4/sqrt(p), tr(C_1)/p - tau0^2 = +4/sqrt(p)
    np.testing.assert_allclose(st_.t, [-4.0, 4.0], rtol=1e-12)
    np.testing.assert_allclose(st_.T, [[1.0, r], [r, r * r]], rtol=1e-14)


# --------------------------------------------------------------------------- #
# MixtureStats
# --------------------------------------------------------------------------- #
def _assert_matches_brute_force(X: np.ndarray, labels: np.ndarray) -> MixtureStats:
    st_ = MixtureStats.from_data(X, labels)
    tau0, t, T, psi, codes, priors = _brute_stats(X, labels)
    assert st_.tau0 == pytest.approx(tau0, rel=1e-12)
    np.testing.assert_allclose(st_.t, t, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(st_.T, T, rtol=1e-10)
    np.testing.assert_allclose(st_.psi, psi, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(st_.labels, codes)
    np.testing.assert_allclose(st_.priors, priors)
    return st_


def test_from_data_matches_brute_force_loops():
    rng = np.random.default_rng(4)
    n, p = 11, 5
    X = rng.standard_normal((n, p))
    labels = np.array(["b", "a", "c", "a", "b", "c", "a", "b", "c", "c", "a"])
    st_ = _assert_matches_brute_force(X, labels)
    assert (st_.n, st_.K, st_.p) == (n, 3, p)
    for a in range(3):  # psi-hat sums to zero within each class
        assert abs(st_.psi[st_.labels == a].sum()) < 1e-12


def test_from_data_gram_path_matches_brute_force():
    # p*p < n_a*n_b, so the p x p Gram route is taken; loops must agree
    rng = np.random.default_rng(6)
    n, p = 40, 3
    X = rng.standard_normal((n, p)) * np.array([1.0, 2.0, 0.5])
    labels = rng.permutation(np.repeat([7, -2], [25, 15]))
    st_ = _assert_matches_brute_force(X, labels)
    np.testing.assert_array_equal(st_.labels, (labels == 7).astype(int))  # -2 -> 0, 7 -> 1


def test_from_data_routes_match_brute_force():
    # many small classes with p < n: every class's p x p Gram is built once (K p <= 2 n and
    # p n below the block work); two classes with p > n_a: the n_a x n_b blocks
    rng = np.random.default_rng(8)
    labels = rng.permutation(np.repeat(np.arange(6), 10))
    _assert_matches_brute_force(rng.standard_normal((60, 8)), labels)
    labels = rng.permutation(np.repeat(["x", "y"], [9, 11]))
    _assert_matches_brute_force(rng.standard_normal((20, 30)), labels)


def test_from_data_approximates_population():
    rng = np.random.default_rng(10)
    p = 100
    diag = np.stack([np.full(p, 1.0), rng.uniform(0.5, 2.0, p), np.linspace(0.2, 1.5, p)])
    means = rng.standard_normal((3, p))
    gm = GaussianMixture(means, diag, priors=[0.3, 0.3, 0.4])
    s = gm.sample(6000, seed=12)
    est = MixtureStats.from_data(s.X, s.labels)
    pop = s.stats
    # tau0: relative error ~ 1/sqrt(n p); 0.5 % is > 20 standard errors
    assert est.tau0 == pytest.approx(pop.tau0, rel=5e-3)
    # t_a: standard error ~ sqrt(2 T_aa / n_a) <= 0.05 here
    np.testing.assert_allclose(est.t, pop.t, atol=0.25)
    # T: U-statistic, relative error typically < 1 %; bias ~ p tau^4 / n_a^2 ~ 3e-5
    np.testing.assert_allclose(est.T, pop.T, rtol=0.02)
    # psi-hat vs psi of the actual draws: differ only by the mean-estimation error
    assert np.max(np.abs(est.psi - pop.psi)) < 0.05
    np.testing.assert_allclose(est.priors, [0.3, 0.3, 0.4])
    np.testing.assert_array_equal(est.labels, s.labels)


def test_mixture_stats_properties_and_repr():
    st_ = GaussianMixture.paper(16).sample(9, seed=0).stats
    J = st_.J
    assert J.shape == (9, 2) and J.dtype == np.float64
    np.testing.assert_array_equal(J.sum(axis=1), np.ones(9))
    np.testing.assert_array_equal(J.argmax(axis=1), st_.labels)
    assert st_.class_counts.tolist() == [5, 4] and (st_.n, st_.K) == (9, 2)
    text = repr(st_)
    assert text.startswith("MixtureStats(tau0=") and "\n" not in text
    assert "K=2" in text and "n=9" in text and "p=16" in text
    srep = repr(GaussianMixture.paper(16).sample(9, seed=0))
    assert "class_counts=[5, 4]" in srep and "(9, 16)" in srep and len(srep) < 200


def test_results_are_immutable():
    s = GaussianMixture.paper(10).sample(6, seed=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.X = np.zeros((6, 10))  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        s.X[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        s.stats.T[0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.stats.tau0 = 2.0  # type: ignore[misc]


def test_stats_requires_own_sample():
    gm = GaussianMixture.paper(10)
    s = gm.sample(6, seed=0)
    assert GaussianMixture.paper(10).stats(s).tau0 == gm.tau0  # equal mixture is fine
    with pytest.raises(ValueError, match="different GaussianMixture"):
        GaussianMixture.paper(11).stats(s)
    with pytest.raises(TypeError, match="sample must be a Sample"):
        gm.stats(s.X)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- #
# Validation errors
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    ("means", "covs", "priors", "exc", "match"),
    [
        (np.zeros((1, 3)), [1.0], None, ValueError, r"means .*K >= 2 classes"),
        (np.zeros(3), [1.0, 1.0], None, ValueError, r"means must be 2-D"),
        (np.zeros((2, 3)), [1.0, 1.0, 1.0], None, ValueError, r"covs .*shape \(K,\)"),
        (np.zeros((2, 3)), np.ones((2, 4)), None, ValueError, r"covs .*\(K, p\)"),
        (np.zeros((2, 3)), np.ones((2, 3, 4)), None, ValueError, r"covs .*\(K, p, p\)"),
        (np.zeros((2, 3)), np.ones((2, 3, 3, 1)), None, ValueError, r"covs must have shape"),
        (np.zeros((2, 3)), [1.0, 1.0], [0.5, 0.3, 0.2], ValueError, r"priors .*shape"),
        (
            np.array([[np.nan, 0, 0], [0, 0, 0]]),
            [1.0, 1.0],
            None,
            ValueError,
            "means must be finite",
        ),
        (np.zeros((2, 3)), [1.0, np.inf], None, ValueError, "covs must be finite"),
        (np.zeros((2, 3)), [1.0, -0.1], None, ValueError, r"covs .*\[0, inf\)"),
        (np.zeros((2, 3)), [[1, 1, 1], [1, -1, 1]], None, ValueError, r"covs\[1, 1\]"),
        (
            np.zeros((2, 2)),
            [np.eye(2), [[1, 2], [2, 1]]],
            None,
            ValueError,
            r"covs\[1\] .*semi-definite",
        ),
        (
            np.zeros((2, 2)),
            [np.eye(2), [[1, 0.5], [0, 1]]],
            None,
            ValueError,
            r"covs\[1\] .*symmetric",
        ),
        (np.zeros((2, 3)), [0.0, 0.0], None, ValueError, "covs must not all be zero"),
        (np.zeros((2, 3)), [1.0, 1.0], [1.2, -0.2], ValueError, r"priors .*\(0, 1\]"),
        (np.zeros((2, 3)), [1.0, 1.0], [0.5, 0.0], ValueError, r"priors .*\(0, 1\]"),
        (np.zeros((2, 3)), [1.0, 1.0], [0.5, 0.6], ValueError, "priors must sum to 1"),
        (np.zeros((2, 3)) + 1j, [1.0, 1.0], None, TypeError, "means must be real"),
        (np.zeros((2, 3)), ["a", "b"], None, TypeError, "covs must be a real numeric"),
    ],
)
def test_mixture_validation(means, covs, priors, exc, match):
    with pytest.raises(exc, match=match):
        GaussianMixture(means, covs, priors)


def test_sample_validation():
    gm = GaussianMixture(np.zeros((3, 4)), [1.0, 1.0, 1.0], priors=[0.1, 0.1, 0.8])
    # quotas 0.5, 0.5, 4.0: the tie goes to class 0, leaving class 1 empty
    assert gm.class_counts(5).tolist() == [1, 0, 4]
    with pytest.raises(ValueError, match=r"n = 5 is too small: class\(es\) \[1\]"):
        gm.sample(5)
    assert gm.sample(10, seed=0).class_counts.tolist() == [1, 1, 8]
    with pytest.raises(ValueError, match=r"n must be an integer in \[1, inf\]"):
        gm.sample(0)
    with pytest.raises(TypeError, match="n must be an integer"):
        gm.sample(10.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed must be None"):
        gm.sample(10, seed="abc")
    with pytest.raises(ValueError, match="seed must be a non-negative"):
        gm.sample(10, seed=-1)
    with pytest.raises(ValueError, match=r"p must be an integer in \[9, inf\]"):
        GaussianMixture.paper(8)
    with pytest.raises(TypeError, match="p must be an integer"):
        GaussianMixture.paper(16.0)  # type: ignore[arg-type]


def test_from_data_validation():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 3))
    with pytest.raises(ValueError, match=r"labels must contain at least 2 classes"):
        MixtureStats.from_data(X, np.zeros(8, dtype=int))
    with pytest.raises(ValueError, match=r"at least 2 samples .*\['z'\]"):
        MixtureStats.from_data(X, list("aaaabbbz"))
    with pytest.raises(ValueError, match=r"labels must have length n = 8"):
        MixtureStats.from_data(X, [0, 1] * 3)
    Xbad = X.copy()
    Xbad[2, 1] = np.nan
    with pytest.raises(ValueError, match="X must be finite"):
        MixtureStats.from_data(Xbad, [0, 1] * 4)
    with pytest.raises(ValueError, match=r"X must be a 2-D array .*got shape \(8,\)"):
        MixtureStats.from_data(X[:, 0], [0, 1] * 4)
    with pytest.raises(TypeError, match="X must be real-valued"):
        MixtureStats.from_data(X + 1j, [0, 1] * 4)
    with pytest.raises(ValueError, match="identical rows within class 0"):
        MixtureStats.from_data(np.ones((8, 3)), [0, 1] * 4)


def test_mixture_stats_from_data_refuses_degenerate_classes():
    sample = GaussianMixture.paper(64).sample(40, seed=0)
    X, y = sample.X.copy(), sample.labels
    X[y == 1] = X[y == 1][0]  # class 1: copies of one row (centring leaves ~1e-16 noise)
    with pytest.raises(ValueError, match=r"identical rows within class 1 \(1 of 2 .*spread is"):
        MixtureStats.from_data(X, y)
    X[y == 0] = X[y == 0][0]  # both classes: tau0 would be ~1e-16
    with pytest.raises(ValueError, match=r"class 0 \(2 of 2 classes.*tau0, t, T would be"):
        MixtureStats.from_data(X, y)
    # a small but genuine spread (1e-6 of the norm) is estimated, not refused
    Z = sample.X.copy()
    for a in (0, 1):
        Z[y == a] = Z[y == a][0] + 1e-6 * (sample.X[y == a] - sample.X[y == a].mean(axis=0))
    st = MixtureStats.from_data(Z, y)
    W = np.vstack([Z[y == a] - Z[y == a].mean(axis=0) for a in (0, 1)])
    assert st.tau0 == pytest.approx(np.sqrt(np.mean(np.sum(W**2, axis=1))), rel=1e-9)


def test_mixture_stats_validation():
    good = dict(
        tau0=1.0,
        t=[0.0, 0.0],
        T=np.eye(2),
        psi=np.zeros(4),
        labels=np.array([0, 0, 1, 1]),
        p=5,
        priors=[0.5, 0.5],
    )
    assert MixtureStats(**good).n == 4
    cases = [
        ({"tau0": 0.0}, ValueError, r"tau0 must be finite and in \(0, inf\)"),
        ({"tau0": np.nan}, ValueError, "tau0"),
        ({"T": [[1.0, 0.2], [0.1, 1.0]]}, ValueError, "T must be symmetric"),
        ({"T": np.eye(3)}, ValueError, r"T must have shape \(2, 2\)"),
        ({"psi": np.zeros(3)}, ValueError, r"labels must have shape \(3,\)"),
        ({"psi": [0.0, np.inf, 0.0, 0.0]}, ValueError, "psi must be finite"),
        ({"labels": np.array([0, 0, 1, 2])}, ValueError, r"labels must lie in 0\.\.1"),
        ({"labels": np.array([0.0, 0.0, 1.0, 1.0])}, TypeError, "labels must be an integer"),
        ({"priors": [0.7, 0.7]}, ValueError, "priors must sum to 1"),
        ({"priors": [1.0]}, ValueError, r"priors must have shape \(2,\)"),
        ({"p": 0}, ValueError, r"p must be an integer in \[1, inf\]"),
    ]
    for change, exc, match in cases:
        with pytest.raises(exc, match=match):
            MixtureStats(**{**good, **change})


# --------------------------------------------------------------------------- #
# deqfast._validation
# --------------------------------------------------------------------------- #
def test_as_data_matrix():
    out = as_data_matrix([[1, 2], [3, 4]])
    assert out.dtype == np.float64 and out.flags.c_contiguous and out.shape == (2, 2)
    F = np.asfortranarray(np.ones((3, 2)))
    assert as_data_matrix(F).flags.c_contiguous
    with pytest.raises(ValueError, match=r"Y must be a 2-D array .*shape \(2, 2, 1\)"):
        as_data_matrix(np.ones((2, 2, 1)), "Y")
    with pytest.raises(ValueError, match=r"X must have at least 1 row"):
        as_data_matrix(np.ones((0, 3)))
    with pytest.raises(ValueError, match=r"X must have at least 3 row"):
        as_data_matrix(np.ones((2, 3)), min_rows=3)
    with pytest.raises(ValueError, match="X must be finite; found 1 NaN/inf entry"):
        as_data_matrix([[1.0, np.inf]])
    with pytest.raises(TypeError, match="X must be a real numeric array"):
        as_data_matrix([["a", "b"]])
    with pytest.raises(TypeError, match="X must be real-valued"):
        as_data_matrix(np.ones((2, 2), dtype=complex))


def test_as_data_matrix_row_norms():
    base = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 1.0]])
    np.testing.assert_array_equal(as_data_matrix(base), base)  # an all-zero row passes
    # representable extremes: ‖x‖² = 25e-300 and 25e300 are normal doubles
    as_data_matrix(base * 1e-150)
    as_data_matrix(base * 1e150)
    with pytest.raises(
        ValueError,
        match=(
            r"X has 2 row\(s\) too small for float64: their squared norms underflow below "
            r"2\.23e-308 \(‖x_i‖ < 1\.49e-154; first: row 0, ‖x_i‖ = 5e-300\); rescale X"
        ),
    ):
        as_data_matrix(base * 1e-300)
    big = base.copy()
    big[2] *= 1e160
    with pytest.raises(
        ValueError,
        match=(
            r"Z has 1 row\(s\) too large .*above 1\.8e\+308 \(‖x_i‖ > 1\.34e\+154; first: row 2, "
            r"‖x_i‖ = 1\.41e\+160\)"
        ),
    ):
        as_data_matrix(big, "Z")
    np.testing.assert_array_equal(as_data_matrix(big, check_norms=False), big)


def test_as_labels_and_scalar_checks():
    codes, classes = as_labels(["dog", "cat", "dog", "eel"], 4)
    assert codes.tolist() == [1, 0, 1, 2] and classes.tolist() == ["cat", "dog", "eel"]
    assert codes.dtype == np.int64
    codes, classes = as_labels(np.array([3.0, -1.0, 3.0]))
    assert codes.tolist() == [1, 0, 1] and classes.tolist() == [-1.0, 3.0]
    with pytest.raises(TypeError, match="y must be integer-valued"):
        as_labels([0.5, 1.0], name="y")
    with pytest.raises(ValueError, match="labels must be 1-dimensional"):
        as_labels(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="labels must not be empty"):
        as_labels([])
    assert check_positive(2, "s") == 2.0
    with pytest.raises(ValueError, match=r"s must be in \(0, inf\); got 0.0"):
        check_positive(0, "s")
    assert check_positive(0, "s", allow_zero=True) == 0.0
    with pytest.raises(TypeError, match="s must be a real number"):
        check_positive("1", "s")
    assert check_in_range(0.2, "sigma_a2", 0, 1, inclusive=(False, True)) == 0.2
    with pytest.raises(ValueError, match=r"sigma_a2 must be in \(0, 1\]; got 0.0"):
        check_in_range(0.0, "sigma_a2", 0, 1, inclusive=(False, True))
    with pytest.raises(ValueError, match=r"x must be in \[0, 1\]; got 1.5"):
        check_in_range(1.5, "x", 0, 1)
    assert check_choice("ck", "kernel", ("ck", "ntk")) == "ck"
    with pytest.raises(ValueError, match="kernel must be one of 'ck', 'ntk'; got 'nngp'"):
        check_choice("nngp", "kernel", ("ck", "ntk"))
    with pytest.raises(TypeError, match="k must be an integer"):
        check_integer(True, "k")
    g = np.random.default_rng(0)
    assert as_rng(g) is g
    assert as_rng(5).integers(1 << 30) == np.random.default_rng(5).integers(1 << 30)
