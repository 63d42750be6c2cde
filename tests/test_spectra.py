"""Tests of deqfast.spectra (docs/theory.md §6) and the spectral plots."""

from __future__ import annotations

import numpy as np
import pytest

from deqfast.spectra import SpectralComparison, compare_spectra, isolated_eigenvalues


def _wishart(
    rng: np.random.Generator, N: int, m: int, spikes: tuple[float, ...] = ()
) -> np.ndarray:
    """Sample covariance ``Y Yᵀ/m`` of ``m`` samples of ``N(0, I + Σ ℓ_k e_k e_kᵀ)``."""
    Z = rng.standard_normal((N, m))
    scale = np.ones(N)
    for k, ell in enumerate(spikes):
        scale[k] += ell
    Y = np.sqrt(scale)[:, None] * Z
    return Y @ Y.T / m


def test_errors_and_wasserstein_against_direct_formulas(rng):
    n = 40
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (Q * np.linspace(1, 3, n)) @ Q.T
    E = rng.standard_normal((n, n))
    B = A + 0.05 * (E + E.T)
    c = compare_spectra(A, B)
    assert c.op_error == pytest.approx(np.linalg.norm(A - B, 2) / np.linalg.norm(A, 2), rel=1e-10)
    assert c.fro_error == pytest.approx(np.linalg.norm(A - B) / np.linalg.norm(A), rel=1e-12)
    la, lb = np.sort(np.linalg.eigvalsh(A)), np.sort(np.linalg.eigvalsh(B))
    assert c.wasserstein == pytest.approx(np.mean(np.abs(la - lb)), rel=1e-10)
    assert c.spread == pytest.approx(la[-1] - la[0], rel=1e-10)
    assert c.wasserstein_rel == pytest.approx(c.wasserstein / c.spread)
    assert np.all(np.diff(c.eigvals_a) >= 0)
    assert c.eigvecs_a is None and c.alignment_a is None


def test_identical_matrices_compare_to_zero(rng):
    X = rng.standard_normal((30, 10))
    A = X @ X.T
    c = compare_spectra(A, A.copy(), labels=np.repeat([0, 1], 15))
    assert c.op_error == 0 and c.fro_error == 0 and c.wasserstein == 0
    np.testing.assert_allclose(c.overlap, 1.0, atol=1e-10)
    assert c.subspace_overlap == pytest.approx(1.0)


def test_pure_wishart_has_no_isolated_eigenvalues(rng):
    for N, m in ((300, 600), (400, 400)):
        lam = np.linalg.eigvalsh(_wishart(rng, N, m))
        top, bottom, bulk = isolated_eigenvalues(lam)
        assert top.size == 0 and bottom.size == 0
        assert bulk == (lam.min(), lam.max())


def test_spiked_wishart_finds_the_bbp_spikes(rng):
    """Above the BBP threshold ℓ > √c a spike of strength ℓ sits at (1 + ℓ)(1 + c/ℓ)."""
    N, m = 400, 800
    c = N / m
    spikes = (6.0, 3.0)
    M = _wishart(rng, N, m, spikes)
    top, bottom, (_lo, hi) = isolated_eigenvalues(np.linalg.eigvalsh(M))
    assert top.size == 2 and bottom.size == 0
    predicted = np.array([(1 + ell) * (1 + c / ell) for ell in spikes])
    np.testing.assert_allclose(top, predicted, rtol=0.08)
    assert hi < (1 + np.sqrt(c)) ** 2 * 1.05  # the bulk ends at the Marchenko–Pastur edge
    # the same matrix through compare_spectra, against its spike-free version
    c2 = compare_spectra(M, _wishart(rng, N, m))
    assert c2.spikes_a.size == 2 and c2.spikes_b.size == 0


def test_isolated_eigenvalues_below_the_bulk(rng):
    lam = np.linalg.eigvalsh(_wishart(rng, 300, 600))
    lam = np.concatenate([lam, [-2.0]])
    top, bottom, bulk = isolated_eigenvalues(lam)
    assert top.size == 0
    np.testing.assert_array_equal(bottom, [-2.0])
    assert bulk[0] > 0


def test_class_alignment_of_a_two_class_kernel(rng):
    n = 200
    labels = np.repeat([0, 1], n // 2)
    J = np.eye(2)[labels]
    noise = rng.standard_normal((n, n)) / np.sqrt(n)
    A = 3 * J @ np.diag([1.0, 0.6]) @ J.T / n * 4 + (noise + noise.T) / 2
    c = compare_spectra(A, A + 1e-3 * np.eye(n), labels=labels, top=2)
    assert c.alignment_a.shape == (2, 2)
    # u_1 is (almost) class 0's indicator, u_2 class 1's
    assert c.alignment_a[0, 0] > 0.9 and c.alignment_a[1, 1] > 0.9
    assert np.all(c.alignment_a.sum(axis=1) <= 1 + 1e-12)
    assert c.spikes_a.size == 2
    np.testing.assert_allclose(c.overlap, 1.0, atol=1e-8)


def test_table_and_repr_are_readable(rng):
    X = rng.standard_normal((50, 20))
    c = compare_spectra(
        X @ X.T, X @ X.T * 1.01, labels=np.repeat(["a", "b"], 25), names=("G*", "Ḡ")
    )
    text = str(c)
    assert "‖G* − Ḡ‖₂ / ‖G*‖₂" in text and "W1 / spread" in text and "u_1" in text
    md = c.table("markdown")
    assert md.startswith("| quantity | G* | Ḡ |") and md.count("\n") == len(c.rows()) + 1
    assert "op_error=0.01" in repr(c)
    d = c.to_dict()
    assert d["op_error"] == pytest.approx(0.01) and len(d["alignment_a"]) == 3
    with pytest.raises(ValueError, match="fmt"):
        c.table("latex")


def test_result_is_frozen(rng):
    c = compare_spectra(np.eye(5) * 2, np.eye(5))
    assert isinstance(c, SpectralComparison)
    with pytest.raises(AttributeError):
        c.op_error = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("A", "B", "match"),
    [
        (np.ones((3, 4)), np.ones((3, 4)), "square"),
        (np.ones(5), np.ones(5), "square"),
        (np.triu(np.ones((4, 4))), np.eye(4), "symmetric"),
        (np.eye(4), np.eye(5), "same shape"),
        (np.full((3, 3), np.nan), np.eye(3), "finite"),
        (np.zeros((4, 4)), np.eye(4), "zero matrix"),
    ],
)
def test_validation(A, B, match):
    with pytest.raises(ValueError, match=match):
        compare_spectra(A, B)


def test_validation_of_options(rng):
    A = np.eye(6)
    with pytest.raises(ValueError, match="labels"):
        compare_spectra(A, A, labels=[0, 1, 0])
    with pytest.raises(ValueError, match="top"):
        compare_spectra(A, A, labels=[0, 1] * 3, top=7)
    with pytest.raises(TypeError):
        compare_spectra(A.astype(complex), A)
    # tiny asymmetry within tolerance is accepted and symmetrised
    E = np.triu(np.full((6, 6), 1e-12), 1)
    assert compare_spectra(A + E, A).op_error < 1e-11


def test_spectral_plots(tmp_path, rng):
    pytest.importorskip("matplotlib")
    from deqfast.plots import plot_eigenvectors, plot_error_curves, plot_errors_vs_p, plot_spectra

    n = 120
    labels = np.repeat([0, 1], n // 2)
    A = _wishart(rng, n, 240, (5.0,))
    A[:60, :60] += 0.05
    c = compare_spectra(A, A + 0.01 * np.eye(n), labels=labels, names=("G*", "Ḡ"))
    fig = plot_spectra(c, path=tmp_path / "s.png")
    assert len(fig.axes) == 2 and (tmp_path / "s.png").stat().st_size > 1000
    fig = plot_eigenvectors(c, k=2, class_names=["x", "y"], path=tmp_path / "sub" / "v.png")
    assert len(fig.axes) == 4 and (tmp_path / "sub" / "v.png").exists()
    fig = plot_errors_vs_p([128, 256, 512], {"CK": [0.2, 0.14, 0.1]}, path=tmp_path / "e.png")
    assert "slope -0.5" in fig.axes[0].get_legend().get_texts()[0].get_text()
    with pytest.raises(ValueError, match="shape"):
        plot_error_curves([1, 2], {"x": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="labels"):
        plot_eigenvectors(compare_spectra(A, A))
    with pytest.raises(TypeError, match="SpectralComparison"):
        plot_spectra("not a comparison")  # type: ignore[arg-type]


def test_spectral_norm_matches_the_full_eigensolver(rng):
    """Lanczos ‖M‖₂ against numpy's full eigvalsh: indefinite, tied ±λ extremes, a spike
    over a bulk, the zero matrix and a small matrix (full solver path)."""
    from deqfast.spectra import spectral_norm

    def full(M):
        return float(np.abs(np.linalg.eigvalsh(M)).max())

    W = rng.standard_normal((300, 300))
    sym = (W + W.T) / np.sqrt(600)
    Q, _ = np.linalg.qr(rng.standard_normal((300, 300)))
    tied = Q @ np.diag(np.r_[3.0, -3.0, rng.uniform(-1, 1, 298)]) @ Q.T
    u = rng.standard_normal(300)
    spiked = sym + 5.0 * np.outer(u, u) / 300
    for M in (sym, tied, spiked, sym[:20, :20]):
        assert spectral_norm(M) == pytest.approx(full(M), rel=1e-13)
    assert spectral_norm(np.zeros((100, 100))) == 0.0
    with pytest.raises(ValueError, match="symmetric"):
        spectral_norm(W)


def _count_decompositions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """From now on, the shape of every matrix that compare_spectra decomposes (a spectrum,
    top eigenvectors, or both at once) is appended to the returned list."""
    import scipy.linalg

    import deqfast.spectra as spectra

    calls: list[tuple[int, ...]] = []

    def counting(f):
        return lambda M, *args: calls.append(M.shape) or f(M, *args)

    monkeypatch.setattr(scipy.linalg, "eigvalsh", counting(scipy.linalg.eigvalsh))
    for name in ("_top_eigvecs_uncached", "_spectrum_and_top_uncached"):
        monkeypatch.setattr(spectra, name, counting(getattr(spectra, name)))
    return calls


def test_repeated_references_reuse_their_decomposition_by_content(rng, monkeypatch):
    """compare_spectra caches eigendecompositions by matrix content: a repeated reference
    gives bit-identical results, an edited matrix (same object, new content) is
    recomputed, and editing a returned array cannot corrupt the cache."""
    A = _wishart(rng, 120, 200, spikes=(4.0,))
    B = A + 0.01 * _wishart(rng, 120, 200)
    labels = np.repeat([0, 1], 60)
    first = compare_spectra(A, B, labels=labels, top=2)
    vals, vecs = first.eigvals_a.copy(), first.eigvecs_a.copy()
    np.testing.assert_allclose(vals, np.linalg.eigvalsh(A), rtol=0, atol=1e-12)
    first.eigvals_a[:] = 0.0  # a caller scribbling on its result
    first.eigvecs_a[:] = 0.0
    calls = _count_decompositions(monkeypatch)
    again = compare_spectra(A, 0.5 * B, labels=labels, top=2)
    assert calls == [(120, 120)]  # only the new B was decomposed
    np.testing.assert_array_equal(again.eigvals_a, vals)
    np.testing.assert_array_equal(again.eigvecs_a, vecs)
    A[0, 0] += 1.0  # same array, new content
    edited = compare_spectra(A, B)
    np.testing.assert_allclose(edited.eigvals_a, np.linalg.eigvalsh(A), rtol=0, atol=1e-12)
    assert not np.allclose(edited.eigvals_a, again.eigvals_a)


def test_the_cache_keeps_a_reference_through_ten_labelled_comparisons(rng, monkeypatch):
    """The report's pattern: ten labelled comparisons (40 cached decompositions), then the
    first reference against a new matrix: only the new matrix is decomposed."""
    labels = np.repeat([0, 1], 60)
    refs = [_wishart(rng, 120, 200) for _ in range(10)]
    for A in refs:
        compare_spectra(A, A + 0.01 * _wishart(rng, 120, 200), labels=labels, top=2)
    calls = _count_decompositions(monkeypatch)
    c = compare_spectra(refs[0], 2.0 * refs[0], labels=labels, top=2)
    assert calls == [(120, 120)]
    np.testing.assert_allclose(c.eigvals_b, 2.0 * np.linalg.eigvalsh(refs[0]), atol=1e-11)


@pytest.mark.parametrize("n, top", [(300, 3), (300, 75), (40, 3), (300, 76)])
def test_top_eigenvectors_by_lanczos_match_a_full_eigh(rng, n, top):
    """The top eigenvectors (Lanczos above n = 64 for top <= n/4, a full eigh otherwise)
    agree with numpy's full eigendecomposition, in order and sign convention."""
    from deqfast.spectra import _top_eigvecs_uncached

    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.r_[np.linspace(9.0, 5.0, top), rng.uniform(-1.0, 1.0, n - top)]
    M = (Q * lam) @ Q.T
    M = 0.5 * (M + M.T)
    _, V = np.linalg.eigh(M)
    ref = V[:, ::-1][:, :top]
    ref = ref * np.sign(ref[np.argmax(np.abs(ref), axis=0), np.arange(top)])
    U = _top_eigvecs_uncached(M, top)
    assert U.shape == (n, top)
    np.testing.assert_allclose(U, ref, rtol=0, atol=1e-10)
    c = compare_spectra(M, M + 1e-3 * np.eye(n), labels=np.arange(n) % 2, top=top)
    np.testing.assert_allclose(c.eigvecs_a, ref, rtol=0, atol=1e-10)


def _top_reference(M: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """NumPy's full eigendecomposition: the spectrum and the ``top`` eigenvectors of the
    largest eigenvalues, each with its largest-magnitude entry positive."""
    lam, V = np.linalg.eigh(M)
    ref = V[:, ::-1][:, :top]
    return lam, ref * np.sign(ref[np.argmax(np.abs(ref), axis=0), np.arange(top)])


def _check_top(M: np.ndarray, top: int, lam: np.ndarray, U: np.ndarray) -> None:
    """``lam`` is M's spectrum and ``U`` spans the eigenspace of its ``top`` largest
    eigenvalues, orthonormally (whatever basis a degenerate eigenspace gets)."""
    ref_lam, ref = _top_reference(M, top)
    norm = np.abs(ref_lam).max()
    np.testing.assert_allclose(lam, ref_lam, rtol=0, atol=1e-13 * norm)
    assert U.shape == (M.shape[0], top)
    np.testing.assert_allclose(U.T @ U, np.eye(top), rtol=0, atol=1e-12)
    np.testing.assert_allclose(M @ U, U * ref_lam[::-1][:top], rtol=0, atol=1e-12 * norm)
    np.testing.assert_allclose(U @ U.T, ref @ ref.T, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "n, top, kind",
    [(300, 3, "separated"), (300, 3, "triple"), (300, 4, "close"), (300, 3, "split"),
     (200, 200, "separated"), (5, 2, "separated"), (2, 1, "separated"), (2, 2, "triple")],
)  # fmt: skip
def test_spectrum_and_top_eigenvectors_from_one_reduction(rng, n, top, kind):
    """The spectrum and top eigenvectors from one reduction to tridiagonal form agree with
    NumPy's full eigh: a separated top, an exactly threefold top eigenvalue, four top
    eigenvalues 1e-9 apart, a block-diagonal matrix (its tridiagonal form splits), all of
    a 200 × 200 matrix, and 5 × 5 and 2 × 2 matrices."""
    from deqfast.spectra import _spectrum_and_top_uncached, _tridiagonal_path

    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    bulk = rng.uniform(-1.0, 1.0, n)
    if kind == "triple":
        bulk[: min(3, n)] = 4.0
    elif kind == "close":
        bulk[:4] = 4.0 + 1e-9 * np.arange(4)
    else:
        bulk[:top] = np.linspace(9.0, 5.0, top)
    M = (Q * bulk) @ Q.T
    if kind == "split":  # two blocks, the top eigenvalues shared between them
        M[: n // 2, n // 2 :] = M[n // 2 :, : n // 2] = 0.0
    M = 0.5 * (M + M.T)
    assert _tridiagonal_path(M, top) is not None  # the one-reduction path, no fallback
    lam, U = _spectrum_and_top_uncached(M, top)
    _check_top(M, top, lam, U)
    if kind in ("separated", "split"):  # a unique basis: the vectors themselves agree
        np.testing.assert_allclose(U, _top_reference(M, top)[1], rtol=0, atol=1e-10)


def test_spectrum_and_top_eigenvectors_fallback(rng, monkeypatch):
    """Outside the unscaled range of dsyevr (here max|M| ~ 1e-150), or when a check of the
    one-reduction path fails, both results come from scipy's full eigh."""
    import deqfast.spectra as spectra

    Q, _ = np.linalg.qr(rng.standard_normal((100, 100)))
    M = (Q * np.r_[9.0, 7.0, 5.0, rng.uniform(-1, 1, 97)]) @ Q.T
    M = 0.5 * (M + M.T)
    tiny = 1e-150 * M
    assert spectra._tridiagonal_path(tiny, 3) is None
    lam, U = spectra._spectrum_and_top_uncached(tiny, 3)
    _check_top(tiny, 3, lam, U)
    monkeypatch.setattr(spectra, "_tridiagonal_path", lambda M, top: None)
    lam, U = spectra._spectrum_and_top_uncached(M, 3)
    _check_top(M, 3, lam, U)
    np.testing.assert_allclose(U, _top_reference(M, 3)[1], rtol=0, atol=1e-10)


def test_labelled_comparison_with_a_cached_spectrum_only(rng):
    """A matrix whose spectrum is cached (an unlabelled comparison) but not its top
    eigenvectors gets them by Lanczos: the same vectors as the one-reduction path."""
    A = _wishart(rng, 150, 300, spikes=(5.0, 3.0))
    B = A + 0.01 * _wishart(rng, 150, 300)
    labels = np.arange(150) % 2
    joint = compare_spectra(2.0 * A, B, labels=labels)  # 2A: a matrix not seen before
    compare_spectra(A, B)
    mixed = compare_spectra(A, B, labels=labels)
    np.testing.assert_allclose(2.0 * mixed.eigvals_a, joint.eigvals_a, rtol=0, atol=1e-12)
    np.testing.assert_allclose(mixed.eigvecs_a, joint.eigvecs_a, rtol=0, atol=1e-10)
    np.testing.assert_allclose(mixed.eigvecs_a, _top_reference(A, 3)[1], rtol=0, atol=1e-10)


@pytest.mark.parametrize("n, block", [(300, 256), (300, 7), (3, 256)])
def test_symmetry_check_by_blocks(rng, monkeypatch, n, block):
    """The blocked max|M − Mᵀ| equals the whole-matrix expression; a symmetric matrix
    passes unchanged (no copy), an almost symmetric one becomes (M + Mᵀ)/2 bit for bit."""
    import deqfast.spectra as spectra

    monkeypatch.setattr(spectra, "_SYM_BLOCK", block)
    W = rng.standard_normal((n, n))
    assert spectra._asymmetry(W) == np.abs(W - W.T).max()
    S = W + W.T
    assert spectra._asymmetry(S) == 0.0
    assert spectra._as_symmetric(S, "S") is S
    E = S.copy()
    E[n - 1, 0] += 1e-12
    assert spectra._asymmetry(E) == np.abs(E - E.T).max() > 0
    np.testing.assert_array_equal(spectra._as_symmetric(E, "E"), 0.5 * (E + E.T))
