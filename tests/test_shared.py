"""The helpers deqfast shares between modules (progress bars, BLAS limit, tables, checks)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import deqfast as df
from deqfast._shared import (
    MAX_THREADS,
    blas_threads,
    markdown_table,
    progress_bar,
    resolve_threads,
    show_progress,
)
from deqfast._validation import check_seed
from deqfast.spectra import relative_errors


def test_relative_errors_match_dense_norms(rng):
    """Operator and Frobenius errors against NumPy's SVD-based 2-norm (docs/theory.md §6)."""
    n = 90  # above the size where the spectral norm switches to Lanczos
    M = rng.standard_normal((n, n))
    A = M @ M.T / n
    E = rng.standard_normal((n, n))
    B = A + 0.01 * (E + E.T)
    op, fro = relative_errors(A, B)
    assert op == pytest.approx(np.linalg.norm(A - B, 2) / np.linalg.norm(A, 2), rel=1e-10)
    assert fro == pytest.approx(np.linalg.norm(A - B) / np.linalg.norm(A), rel=1e-12)


def test_relative_errors_agree_with_compare_spectra(rng):
    M = rng.standard_normal((30, 30))
    A, B = M @ M.T, M @ M.T + np.eye(30)
    c = df.compare_spectra(A, B)
    assert relative_errors(A, B) == pytest.approx((c.op_error, c.fro_error), rel=1e-12)


def test_relative_errors_reject_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        relative_errors(np.eye(3), np.eye(4))
    with pytest.raises(ValueError, match="zero matrix"):
        relative_errors(np.zeros((3, 3)), np.eye(3))
    with pytest.raises(ValueError, match="symmetric"):
        relative_errors(np.eye(3), np.triu(np.ones((3, 3))))


def test_markdown_table_escapes_pipes():
    text = markdown_table(("a", "|b|"), [("1", "x|y"), ("2", "3")])
    assert text.splitlines() == [
        "| a | \\|b\\| |",
        "|---|---|",
        "| 1 | x\\|y |",
        "| 2 | 3 |",
    ]


def test_progress_bar_off_is_inert_and_on_counts(capsys):
    items = [1, 2, 3]
    assert progress_bar(False, items, desc="x") is items
    bar = progress_bar(False, desc="x", total=3)
    bar.update(2)
    bar.set_postfix(residual="1e-3")
    bar.close()
    shown = progress_bar(True, desc="count", total=3)
    shown.update(3)
    assert shown.n == 3
    shown.close()
    assert list(progress_bar(True, iter(items), desc="wrap")) == items


def test_progress_default_follows_the_terminal(monkeypatch):
    """``progress=None`` (the default everywhere): a bar on a terminal, for long jobs."""
    for tty in (True, False):
        monkeypatch.setattr("sys.stderr.isatty", lambda tty=tty: tty)
        assert show_progress(None) is tty
        assert show_progress(None, long=False) is False
        assert show_progress(True) is True and show_progress(False) is False
        assert isinstance(progress_bar(None, [1], desc="x"), list) is not tty


def test_num_threads_default_is_all_cores(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert resolve_threads(None) == 0 and resolve_threads(0) == 0  # the core's default team
    assert resolve_threads(3) == 3
    assert resolve_threads(2**40) == 16  # eight per core
    monkeypatch.setattr("os.cpu_count", lambda: 4096)
    assert resolve_threads(2**40) == MAX_THREADS
    with pytest.raises(ValueError, match="num_threads"):
        resolve_threads(-1)
    with pytest.raises(TypeError, match="num_threads"):
        resolve_threads(1.5)


def _blas_limits() -> set[int]:
    return {int(i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"}


def test_blas_threads_caps_and_restores():
    before = _blas_limits()
    with blas_threads():
        assert _blas_limits() <= {1}
    assert _blas_limits() == before
    with blas_threads(None):
        assert _blas_limits() == before


def test_check_seed_streams():
    ss = np.random.SeedSequence(3)
    assert check_seed(ss, streams=np.random.SeedSequence) is ss
    assert check_seed(np.int64(4), streams=np.random.SeedSequence) == 4
    with pytest.raises(TypeError, match=r"numpy\.random\.SeedSequence"):
        check_seed(np.random.default_rng(0), streams=np.random.SeedSequence)
    with pytest.raises(TypeError, match=r"numpy\.random\.Generator"):
        check_seed(ss)
    with pytest.raises(ValueError, match="non-negative"):
        check_seed(-1, streams=np.random.SeedSequence)


def test_tau0_check_is_shared_by_every_model():
    s = df.GaussianMixture.paper(16).sample(40, seed=0)
    wrong = s.stats.tau0 * 1.1
    for model, name in (
        (df.DEQ("relu", tau0=wrong), "DEQ"),
        (df.ExplicitNet(["relu"], tau0=wrong), "net"),
    ):
        with pytest.raises(ValueError, match=f"the {name} was centred for tau0="):
            model.ck_surrogate(s.X, s.stats)
        with pytest.raises(TypeError, match="MixtureStats"):
            model.ck_surrogate(s.X, "stats")


def test_names_from_private_modules_keep_their_public_home():
    """Classes and loaders defined in private modules are documented and pickled under the
    public module that exports them."""
    from deqfast import data, datasets

    assert df.MixtureStats.__module__ == "deqfast.data" and data.MixtureStats is df.MixtureStats
    for name in ("load_idx", "load_cifar10", "load_npz", "find_idx_files"):
        assert getattr(datasets, name).__module__ == "deqfast.datasets"
    s = df.GaussianMixture.paper(16).sample(20, seed=1)
    again = pickle.loads(pickle.dumps(s.stats))
    assert np.array_equal(again.psi, s.stats.psi) and again.tau0 == s.stats.tau0
