"""Tests of deqfast.theory: limiting spectra and spikes vs closed forms and simulations.

Every prediction is checked against something computed another way: the closed-form
Marchenko–Pastur law, an independent fixed point (the dual ``g``-form, plain iteration),
or eigenvalues of simulated surrogate matrices (docs/theory.md §4).  Sizes are kept small
(p <= 1000, Lanczos for the top eigenvalues) so the module runs in well under a minute.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse.linalg as spla

import deqfast as df
from deqfast._mp import CovModel, _solve, model_from_mixture
from deqfast.coefficients import KernelCoefficients
from deqfast.surrogate import low_rank_factors, surrogate_matrix
from deqfast.theory import TheorySpectrum, mp_mixture_density, theory_spectrum

COEF = KernelCoefficients(1.3, 0.7, 0.4, 0.6)  # generic surrogate: c2, c3 != 0


@pytest.fixture(autouse=True)
def _one_blas_thread() -> Iterator[None]:
    """Thin products and n <= 4000 eigenproblems: one BLAS thread is faster on a busy host."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _mixture(
    p: int, K: int, *, seed: int = 0, spread: bool = True, norm: float = 3.0
) -> df.GaussianMixture:
    """K classes in the regime of docs/theory.md §1 with genuinely different covariances.

    Class ``a``: diagonal covariance of shape ``1 + (0.2 + 0.3 a)(2U − 1)`` (U uniform),
    rescaled so that ``tr(C_a)/p = 1 + (a − (K−1)/2)·2/√p`` (so ``t = O(1)``); mean of
    norm ``norm + a`` along a random direction (``spread``) or on coordinate ``a``.
    """
    rng = np.random.default_rng(seed)
    means = np.zeros((K, p))
    covs = np.empty((K, p))
    for a in range(K):
        if spread:
            v = rng.standard_normal(p)
            means[a] = (norm + a) * v / np.linalg.norm(v)
        else:
            means[a, a] = norm + a
        shape = 1.0 + (0.2 + 0.3 * a) * (2.0 * rng.uniform(size=p) - 1.0)
        covs[a] = shape / shape.mean() * (1.0 + (a - (K - 1) / 2) * 2.0 / np.sqrt(p))
    return df.GaussianMixture(means, covs)


def _mp_closed_form(x: np.ndarray, c: float) -> np.ndarray:
    """Marchenko–Pastur density of ΩΩᵀ (n × n, entries N(0, 1/p), c = n/p), without the atom."""
    a, b = (1 - np.sqrt(c)) ** 2, (1 + np.sqrt(c)) ** 2
    return np.sqrt(np.clip((b - x) * (x - a), 0.0, None)) / (2 * np.pi * c * x)


def _top_eigs(sample: df.Sample, coef: KernelCoefficients, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k eigenpairs of the surrogate by Lanczos with an O(np) mat-vec (no n × n matrix)."""
    X, st = sample.X, sample.stats
    V, A = low_rank_factors(st, coef)
    shift = coef.d - coef.c1 * st.tau0**2
    n = X.shape[0]

    def mv(v: np.ndarray) -> np.ndarray:
        v = v.reshape(-1)
        return coef.c1 * (X @ (X.T @ v)) + V @ (A @ (V.T @ v)) + shift * v

    op = spla.LinearOperator((n, n), matvec=mv, dtype=np.float64)
    w, U = spla.eigsh(op, k=k, which="LA", tol=1e-10, v0=np.ones(n))
    order = np.argsort(w)[::-1]
    return w[order], U[:, order]


# --------------------------------------------------------------------------- #
# The bulk
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("c", [0.5, 2.0])
def test_scalar_case_matches_closed_form_marchenko_pastur(c: float) -> None:
    p = 400
    n = int(c * p)
    res = mp_mixture_density(np.array([1.0]), n, p=p)
    exact = _mp_closed_form(res.grid, c)
    assert np.max(np.abs(res.density - exact)) < 2e-3 * exact.max()
    a, b = (1 - np.sqrt(c)) ** 2, (1 + np.sqrt(c)) ** 2
    assert abs(res.edges[0] - a) < 2e-3 and abs(res.edges[1] - b) < 2e-3
    assert res.atom == pytest.approx(max(0.0, 1.0 - 1.0 / c))
    assert np.trapezoid(res.density, res.grid) == pytest.approx(1.0 - res.atom, abs=2e-4)


def test_mixture_stieltjes_matches_dual_fixed_point() -> None:
    """δ-form (p × p side) vs the dual g_a = 1/(−z + (1/p) tr C_a (I + c Σ_b c_b g_b C_b)⁻¹)."""
    gm = _mixture(200, 3, seed=1)
    n = 300
    model = model_from_mixture(gm, n)
    z = np.array([0.7 + 0.3j, 2.0 + 0.05j, 5.0 + 0.2j])
    delta, ok = _solve(model, z)
    assert ok.all()
    m_delta = (-(1.0 / (1.0 + delta)) @ model.fractions) / z
    covs = np.asarray(gm.covs)  # (K, p) diagonal
    c, ca = n / gm.p, model.fractions
    g = np.full((z.size, 3), -1.0 / z[:, None])
    for _ in range(20000):  # plain damped iteration of the dual form, vectorised over z
        inner = 1.0 + c * (g * ca) @ covs  # (Z, p)
        new = 1.0 / (-z[:, None] + (1.0 / inner) @ covs.T / gm.p)
        if np.max(np.abs(new - g)) < 1e-14:
            break
        g = 0.5 * g + 0.5 * new
    np.testing.assert_allclose(m_delta, g @ ca, rtol=1e-9)


@pytest.mark.parametrize(("K", "c"), [(2, 0.5), (2, 2.0), (3, 0.5), (3, 2.0)])
def test_bulk_wasserstein_against_simulation(K: int, c: float) -> None:
    p = 300
    n = int(c * p)
    gm = _mixture(p, K, seed=K)
    ts = theory_spectrum(COEF, gm, n)
    w = sla.eigvalsh(surrogate_matrix(*_xs(gm.sample(n, seed=7)), COEF))
    rel = ts.wasserstein(w, relative=True)
    # measured: 0.0020 (K=2, c=0.5), 0.0005 (2, 2), 0.0022 (3, 0.5), 0.0006 (3, 2)
    assert rel < 6e-3
    spread = w[-1] - w[0]
    assert ts.wasserstein(w + 0.05 * spread, relative=True) > 0.04  # the distance can fail


def _xs(sample: df.Sample) -> tuple[np.ndarray, df.MixtureStats]:
    return sample.X, sample.stats


def test_wasserstein_shrinks_with_n() -> None:
    gm_small, gm_large = _mixture(100, 2, seed=3), _mixture(400, 2, seed=3)
    out = []
    for gm in (gm_small, gm_large):
        n = gm.p // 2
        ts = theory_spectrum(COEF, gm, n)
        vals = [
            ts.wasserstein(sla.eigvalsh(surrogate_matrix(*_xs(gm.sample(n, seed=s)), COEF)))
            for s in (0, 1)
        ]
        out.append(np.mean(vals))
    # measured: 0.0212 at p = 100 and 0.0064 at p = 400 (n = p/2): about 1/n
    assert out[1] < 0.5 * out[0]


# --------------------------------------------------------------------------- #
# Spikes and alignments
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    ("K", "c", "p", "norm", "coef", "rtol"),
    [
        # 1 % on the mean of 3 draws where the draws are large enough (measured errors:
        # 0.18 %, 0.80 % and 0.30 %, 0.65 %, 0.32 %); at p = 1000 one draw fluctuates by
        # 1-1.5 % (standard deviation), so 2.5 % there (measured: up to 1.8 %)
        (2, 2.0, 2000, 3.0, None, 0.01),  # c1 XXᵀ only: the class-mean spikes
        (3, 0.5, 2000, 4.0, COEF, 0.01),
        (2, 0.5, 1000, 3.0, COEF, 0.025),
        (3, 2.0, 1000, 3.0, COEF, 0.025),
    ],
)
def test_spikes_and_alignments_against_simulation(
    K: int, c: float, p: int, norm: float, coef: KernelCoefficients | None, rtol: float
) -> None:
    n = int(c * p)
    gm = _mixture(p, K, seed=11, norm=norm)
    if coef is None:
        coef = KernelCoefficients(gm.tau0**2, 1.0, 0.0, 0.0)
    ts = theory_spectrum(coef, gm, n)
    top = ts.spikes[ts.spikes > ts.edges[1]]
    assert top.size == K
    eigs, aligns = [], []
    for seed in range(3):
        s = gm.sample(n, seed=100 + seed)
        w, U = _top_eigs(s, coef, K + 1)
        J = s.stats.J
        eigs.append(w)
        aligns.append((U.T @ J) ** 2 / J.sum(axis=0))
    emp = np.mean(eigs, axis=0)
    # exactly the predicted number of eigenvalues leave the bulk ...
    assert emp[K] < ts.edges[1] + 0.02 * (ts.edges[1] - ts.edges[0])
    assert emp[K - 1] > ts.edges[1] + 0.1 * (ts.edges[1] - ts.edges[0])
    # ... where predicted, and their eigenvectors align with the classes as predicted
    np.testing.assert_allclose(emp[:K], top, rtol=rtol)
    np.testing.assert_allclose(np.mean(aligns, axis=0)[:K], ts.alignments[:K], atol=0.03)


def test_eigenvalues_next_to_the_atom_are_predicted() -> None:
    """n > p: the low-rank part lifts a few eigenvalues off the atom s = d − c1 τ0²."""
    p = 300
    n = 600
    gm = _mixture(p, 2, seed=2, spread=False)
    ts = theory_spectrum(COEF, gm, n)
    low = ts.spikes[(ts.spikes > ts.atom_position) & (ts.spikes < ts.edges[0])]
    assert low.size >= 1
    w = sla.eigvalsh(surrogate_matrix(*_xs(gm.sample(n, seed=5)), COEF))
    s = ts.atom_position
    assert np.sum(np.abs(w - s) < 1e-8 * np.abs(w).max()) >= n - p - 3  # the atom itself
    observed = w[(w > s + 1e-8) & (w < ts.edges[0])]
    assert observed.size >= low.size
    # each predicted eigenvalue next to the atom is observed (measured: within 0.02 %)
    nearest = np.array([observed[np.argmin(np.abs(observed - x))] for x in low])
    np.testing.assert_allclose(nearest, low, rtol=0.01)


def test_no_spike_without_signal() -> None:
    """Zero means and c2 = c3 = 0: a bare Marchenko–Pastur bulk, no isolated eigenvalue."""
    p = 200
    gm = df.GaussianMixture(np.zeros((2, p)), np.array([1.0, 2.0]))
    ts = theory_spectrum(KernelCoefficients(gm.tau0**2, 1.0, 0.0, 0.0), gm, 400)
    assert ts.spikes.size == 0
    assert ts.alignments.shape == (0, 2)


# --------------------------------------------------------------------------- #
# DEQ / explicit nets, API
# --------------------------------------------------------------------------- #
def test_deq_theory_matches_its_surrogate_spectrum() -> None:
    p = 256
    gm = df.GaussianMixture.paper(p)
    s = gm.sample(p, seed=0)
    deq = df.DEQ("relu", sigma_a2=0.2, tau0=gm.tau0)
    ts = theory_spectrum(deq, gm, p, kernel="ck")
    w = sla.eigvalsh(deq.ck_surrogate(s.X, s.stats))
    assert ts.wasserstein(w, relative=True) < 0.01
    assert ts.spikes.size >= 2
    # one draw at p = 256 with single-coordinate means: spikes fluctuate by a few %
    np.testing.assert_allclose(np.sort(w)[::-1][:2], ts.spikes[:2], rtol=0.05)
    ntk = theory_spectrum(deq, gm, p, kernel="ntk")
    assert ntk.coefficients.as_tuple() == deq.coefficients("ntk").as_tuple()
    assert (ntk.kernel, ntk.trained) == ("ntk", "hidden")
    theta = theory_spectrum(deq, gm, p, kernel="ntk", trained="all")
    assert theta.coefficients.as_tuple() == deq.coefficients("ntk", trained="all").as_tuple()
    assert "trained='all'" in repr(theta)


def test_accepts_any_object_with_coefficients_and_a_sample() -> None:
    class Net:
        def coefficients(self, kernel: str) -> KernelCoefficients:
            return COEF

    gm = _mixture(120, 2)
    a = theory_spectrum(Net(), gm, 240)
    b = theory_spectrum(COEF, gm.sample(240, seed=0), 240)
    np.testing.assert_allclose(a.spikes, b.spikes)
    np.testing.assert_allclose(a.density, b.density)


def test_stats_input_uses_scalar_covariances_and_says_so() -> None:
    gm = df.GaussianMixture(np.zeros((2, 200)), np.array([1.0, 1.5]))
    s = gm.sample(100, seed=0)
    from_stats = theory_spectrum(COEF, s.stats, 100)
    from_mix = theory_spectrum(COEF, gm, 100)
    assert from_stats.approximate_covariances and not from_mix.approximate_covariances
    assert "approximated" in repr(from_stats)
    np.testing.assert_allclose(from_stats.edges, from_mix.edges, rtol=1e-6)


def test_result_is_frozen_readable_and_user_grid() -> None:
    gm = _mixture(150, 2)
    ts = theory_spectrum(COEF, gm, 300)
    assert isinstance(ts, TheorySpectrum)
    text = repr(ts)
    assert text.startswith("TheorySpectrum(kernel='ck'") and "spikes=" in text and "bulk=" in text
    with pytest.raises(dataclasses.FrozenInstanceError):
        ts.atom = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        ts.density[0] = 1.0
    grid = np.linspace(ts.edges[0] - 0.1, ts.edges[1] + 0.1, 57)
    ts2 = theory_spectrum(COEF, gm, 300, grid=grid)
    np.testing.assert_array_equal(ts2.grid, grid)
    inside = (grid > ts.edges[0]) & (grid < ts.edges[1])
    np.testing.assert_allclose(
        ts2.density[inside], np.interp(grid[inside], ts.grid, ts.density), rtol=0.05, atol=1e-3
    )
    assert np.all(ts2.density[grid < ts.edges[0] - 0.01] < 1e-3)
    d = ts.to_dict()
    assert d["spikes"] == ts.spikes.tolist() and d["n"] == 300
    cdf = ts.cdf([ts.edges[0] - 1.0, ts.edges[1] + 1e3])
    assert cdf[0] == pytest.approx(0.0) and cdf[1] == pytest.approx(1.0)


def test_wasserstein_of_the_predicted_quantiles_is_small() -> None:
    gm = _mixture(150, 2)
    ts = theory_spectrum(COEF, gm, 300)
    n = 300
    u = (np.arange(n) + 0.5) / n
    xs = np.linspace(ts.edges[0] - 1, ts.spikes.max() + 1, 20001)
    q = np.interp(u, ts.cdf(xs), xs)
    assert ts.wasserstein(q) < 0.01 * (ts.edges[1] - ts.edges[0])
    assert ts.wasserstein(q + 0.2) == pytest.approx(0.2, rel=0.05)


def test_non_commuting_covariances_match_the_commuting_path() -> None:
    rng = np.random.default_rng(4)
    p = 40
    Q, _ = np.linalg.qr(rng.standard_normal((p, p)))
    d = rng.uniform(0.5, 2.0, (2, p))
    full = np.stack([Q @ np.diag(di) @ Q.T for di in d])
    mix_full = df.GaussianMixture(np.zeros((2, p)), full)
    commuting = model_from_mixture(mix_full, 60)
    assert commuting.commuting  # shared eigenbasis detected
    generic = CovModel(p, 1.5, commuting.fractions, None, None, None, full, None, p)
    delta = np.array([[0.3 + 0.1j, 0.2 + 0.05j]])
    z = np.array([1.0 + 0.2j])
    F1, J1 = commuting.evaluate(delta, z)
    F2, J2 = generic.evaluate(delta, z)
    np.testing.assert_allclose(F1, F2, rtol=1e-10)
    np.testing.assert_allclose(J1, J2, rtol=1e-10)
    # a genuinely non-commuting pair goes through the O(p³) path and still works
    Q2, _ = np.linalg.qr(rng.standard_normal((p, p)))
    full2 = np.stack([full[0], Q2 @ np.diag(d[1]) @ Q2.T])
    res = mp_mixture_density(full2, 60, points=40)
    assert res.atom == pytest.approx(1.0 - 40 / 60)
    assert np.trapezoid(res.density, res.grid) == pytest.approx(1.0 - res.atom, abs=0.02)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": 0}, ValueError, "n"),
        ({"kernel": "bogus"}, ValueError, "kernel"),
        ({"eps": 0.5}, ValueError, "eps"),
        ({"eps": -1.0}, ValueError, "eps"),
        ({"grid": [3.0, 2.0, 1.0]}, ValueError, "increasing"),
        ({"deq_or_net": object()}, TypeError, "coefficients"),
        ({"stats_or_mixture": np.eye(3)}, TypeError, "stats_or_mixture"),
        ({"deq_or_net": KernelCoefficients(1.0, 0.0, 0.1, 0.1)}, ValueError, "c1 > 0"),
        ({"deq_or_net": KernelCoefficients(1.0, np.nan, 0.1, 0.1)}, ValueError, "finite"),
    ],
)
def test_input_validation(kwargs: dict, error: type, match: str) -> None:
    args = {"deq_or_net": COEF, "stats_or_mixture": _mixture(50, 2), "n": 100}
    args.update(kwargs)
    deq_or_net = args.pop("deq_or_net")
    mixture = args.pop("stats_or_mixture")
    n = args.pop("n")
    with pytest.raises(error, match=match):
        theory_spectrum(deq_or_net, mixture, n, **args)


def test_mp_density_validation() -> None:
    with pytest.raises(ValueError, match="p is required"):
        mp_mixture_density(np.array([1.0, 2.0]), 10)
    with pytest.raises(ValueError, match="covs"):
        mp_mixture_density(np.ones((2, 2, 2, 2)), 10)
    with pytest.raises(ValueError, match="n"):
        mp_mixture_density(np.array([1.0]), 0, p=10)
