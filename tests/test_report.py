"""Tests of the report package: sections compute plain result objects, the document layer
renders them, and the two can be used apart."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import deqfast as df
from deqfast.cli import main
from deqfast.finite import empirical_ck, empirical_ntk
from deqfast.report import ReproduceConfig, reproduce, sample_mixture
from deqfast.report._config import Progress, single_blas
from deqfast.report._document import Document, to_html, to_markdown
from deqfast.report._mixture import (
    FiniteWidthResult,
    Workspace,
    compute_finite_width,
    compute_mixture,
)
from deqfast.report._render import render_finite_width


def _op(A, B):
    return np.linalg.norm(A - B, 2) / np.linalg.norm(A, 2)


def test_render_a_hand_made_result():
    """Rendering needs only the result object: the numbers appear, formatted, in the
    Markdown table and the headline; the figure is a recipe, drawn only when asked."""
    r = FiniteWidthResult(
        p=64, n=51, widths=(100, 400), trials=3, activations=("relu", "tanh"),
        ck_op={"relu": np.array([0.5, 0.25]), "tanh": np.array([0.125, 0.0625])},
        ck_fro={"relu": np.array([0.4, 0.2]), "tanh": np.array([0.1, 0.05])},
        ntk_op={"relu": np.array([0.75, 0.375]), "tanh": np.array([0.3, 0.15])},
    )  # fmt: skip
    doc, headline = Document(), []
    render_finite_width(r, doc, headline)
    md = to_markdown(doc)
    assert (
        "| width m | relu: ‖CK_m−G*‖/‖G*‖ | relu: ‖NTK_m−K*‖/‖K*‖ | tanh: ‖CK_m−G*‖/‖G*‖ "
        "| tanh: ‖NTK_m−K*‖/‖K*‖ |"
    ) in md
    assert (
        "| 100 | 0.5 | 0.75 | 0.125 | 0.3 |" in md
        and "| 400 | 0.25 | 0.375 | 0.0625 | 0.15 |" in md
    )
    assert "(p = 64, n = 51)" in md and "averaged over 3 weight draw(s)" in md
    assert "![" in md and "(figures/finite_width_ck.png)" in md
    assert headline == [
        ("finite width p = 64, relu DEQ: ‖CK_m−G*‖/‖G*‖ at m = 400", "0.25"),
        ("finite width p = 64, relu DEQ: ‖NTK_m−K*‖/‖K*‖ at m = 400", "0.375"),
        ("finite width p = 64, tanh DEQ: ‖CK_m−G*‖/‖G*‖ at m = 400", "0.0625"),
        ("finite width p = 64, tanh DEQ: ‖NTK_m−K*‖/‖K*‖ at m = 400", "0.15"),
    ]
    ck_fig, ntk_fig = doc.figures
    assert ntk_fig.path == "figures/finite_width_ntk.png"
    assert ck_fig.make().axes  # the recipe draws from the result's arrays


def test_markdown_and_html_rendering(tmp_path):
    doc = Document()
    doc.h(2, "Title <b>")
    doc.p("text with `code`")
    doc.table(["a|b", "c"], [["1", "x|y"]])
    doc.pre("raw <text>")
    md = to_markdown(doc)
    assert md == (
        "## Title <b>\n\ntext with `code`\n\n| a\\|b | c |\n|---|---|\n| 1 | x\\|y |\n\n"
        "```\nraw <text>\n```\n"
    )
    page = to_html(doc, "t", figure_dir=str(tmp_path))
    assert "<h2>Title &lt;b&gt;</h2>" in page and "<code>code</code>" in page
    assert "<td>x|y</td>" in page and "<pre>raw &lt;text&gt;</pre>" in page


def test_compute_mixture_matches_the_library():
    """The section's numbers are those of the public functions called directly."""
    cfg = ReproduceConfig.make(p=32, seed=5)
    ws = Workspace(cfg)
    r = compute_mixture(cfg, ws, Progress(False))
    s = df.GaussianMixture.paper(32).sample(round(0.8 * 32), seed=np.random.default_rng([5, 32, 0]))
    np.testing.assert_array_equal(s.X, sample_mixture(32, 0, cfg).X)
    for act in cfg.activations:
        deq = df.DEQ(act, sigma_a2=cfg.sigma_a2, tau0=s.stats.tau0)
        G, K = deq.ck(s.X), deq.ntk(s.X)
        Gb, Kb = deq.ck_surrogate(s.X, s.stats), deq.ntk_surrogate(s.X, s.stats)
        assert r.errors[act]["ck_op"][0, 0] == pytest.approx(_op(G, Gb), rel=1e-8)
        assert r.errors[act]["ntk_op"][0, 0] == pytest.approx(_op(K, Kb), rel=1e-8)
        assert r.errors[act]["ck_fro"][0, 0] == pytest.approx(
            np.linalg.norm(G - Gb) / np.linalg.norm(G), rel=1e-8
        )
        m = r.spectra[act]
        np.testing.assert_allclose(m.ck.eigvals_a, np.linalg.eigvalsh(G), atol=1e-10)
        np.testing.assert_allclose(m.ntk.eigvals_b, np.linalg.eigvalsh(Kb), atol=1e-10)
    d = r.to_dict()
    assert d["ps"] == [32] and d["relu"]["ck_op"] == [r.errors["relu"]["ck_op"][0, 0]]
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.ps = (64,)  # type: ignore[misc]


def test_compute_finite_width_matches_the_library():
    cfg = dataclasses.replace(ReproduceConfig.make(p=24, seed=2), finite_widths=(32, 64))
    ws = Workspace(cfg)
    r = compute_finite_width(cfg, ws, Progress(False))
    s = sample_mixture(24, 0, cfg)
    for act in cfg.spectra_activations:
        deq = df.DEQ(act, sigma_a2=cfg.sigma_a2, tau0=s.stats.tau0)
        G, K = deq.ck(s.X), deq.ntk(s.X)
        for i, w in enumerate(cfg.finite_widths):
            C = empirical_ck(
                deq, s.X, w, seed=np.random.default_rng([2, 7, w]), tol=cfg.finite_tol,
                progress=False,
            )  # fmt: skip
            assert r.ck_op[act][i] == pytest.approx(_op(G, C), rel=1e-8)
            N = empirical_ntk(
                deq, s.X, w, seed=np.random.default_rng([2, 7, w]), tol=cfg.finite_tol,
                progress=False,
            )  # fmt: skip
            assert r.ntk_op[act][i] == pytest.approx(_op(K, 0.5 * (N + N.T)), rel=1e-8)


def test_the_ck_of_the_ntk_draws_is_the_empirical_ck(rng):
    """The finite-width section takes the CK from the NTK's forward passes: it must be the
    CK that empirical_ck computes from the same seed (two draws), and the NTK unchanged."""
    X = rng.standard_normal((30, 40)) / np.sqrt(40)
    deq = df.DEQ("tanh", sigma_a2=0.2)
    C = np.empty((30, 30))
    N = empirical_ntk(deq, X, 48, trials=2, seed=5, tol=1e-6, progress=False, ck_out=C)
    ref = empirical_ck(deq, X, 48, trials=2, seed=5, tol=1e-6, progress=False)
    np.testing.assert_allclose(C, ref, rtol=1e-12, atol=1e-14)
    alone = empirical_ntk(deq, X, 48, trials=2, seed=5, tol=1e-6, progress=False)
    np.testing.assert_array_equal(N, alone)
    frozen = np.empty((30, 30))
    frozen.setflags(write=False)
    bad_outs = (np.empty((30, 29)), np.empty((30, 30), dtype=np.float32), [[0.0] * 30] * 30, frozen)
    for bad in bad_outs:
        with pytest.raises(ValueError, match="ck_out"):
            empirical_ntk(deq, X, 48, seed=5, progress=False, ck_out=bad)


def test_workspace_builds_each_deq_and_kernel_once(monkeypatch):
    cfg = ReproduceConfig.make(p=24)
    ws = Workspace(cfg)
    s = ws.sample(24, 0)
    assert ws.sample(24, 0) is s  # kept: the spectra and finite-width sections reuse it
    assert ws.deq("relu", s.stats.tau0) is ws.deq("relu", s.stats.tau0)
    calls = []
    real = df.DEQ.kernels
    monkeypatch.setattr(
        df.DEQ, "kernels", lambda self, X, **k: calls.append(1) or real(self, X, **k)
    )
    a = ws.mixture_kernels("relu", 24, 0)
    assert ws.mixture_kernels("relu", 24, 0) is a and len(calls) == 1


# --------------------------------------------------------------------------- output directory
def _fake_report(path, text="old"):
    """A complete earlier report: the manifest and two files of known content."""
    from deqfast.report._output import ReportOutput

    with ReportOutput(path) as target:
        target.write_text("report.md", text)
        target.write_text("results.json", '{"x": 1}')
        target.commit()


def _tree(path):
    from pathlib import Path

    return {
        os.path.relpath(os.path.join(root, f), path): Path(root, f).read_bytes()
        for root, _, names in os.walk(path)
        for f in names
    }


def test_output_replaces_an_earlier_report_only_when_complete(tmp_path):
    from deqfast.report._output import MANIFEST, ReportOutput, is_report

    out = tmp_path / "rep"
    _fake_report(out)
    old = _tree(out)
    assert is_report(str(out)) and set(old) == {MANIFEST, "report.md", "results.json"}
    with ReportOutput(out) as target:
        target.write_text("report.md", "new")
        assert _tree(out) == old  # untouched while the new report is written
        target.commit()
    assert (out / "report.md").read_text() == "new" and not (out / "results.json").exists()
    assert json.loads((out / MANIFEST).read_text())["files"] == ["report.md"]
    assert os.listdir(tmp_path) == ["rep"]  # no temporary or old directory left

    with pytest.raises(KeyboardInterrupt), ReportOutput(out) as target:
        target.write_text("report.md", "half")
        raise KeyboardInterrupt
    assert (out / "report.md").read_text() == "new" and os.listdir(tmp_path) == ["rep"]


def test_output_refuses_what_is_not_a_report(tmp_path):
    from deqfast.report._output import ReportOutput

    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.png").write_bytes(b"\x89PNG")
    with pytest.raises(FileExistsError, match=r"not a deqfast report.*--force"):
        ReportOutput(other)
    assert os.listdir(tmp_path) == ["photos"]
    with ReportOutput(other, force=True) as target:
        target.write_text("report.md", "r")
        target.commit()
    assert sorted(os.listdir(other)) == ["deqfast-report.json", "report.md"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        ReportOutput(tmp_path / "file")
    with pytest.raises(PermissionError, match="cannot write beside"):
        ReportOutput(tmp_path / "file" / "rep")  # parent is a file: refused before any work
    empty = tmp_path / "empty"
    empty.mkdir()
    ReportOutput(empty).discard()  # an empty directory is fine


def test_reproduce_checks_out_before_computing(tmp_path, monkeypatch):
    from deqfast.report import _run

    monkeypatch.setattr(_run, "compute_sections", lambda *a: pytest.fail("computed"))
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a deqfast report"):
        reproduce(tmp_path, config=ReproduceConfig.make(p=16), progress=False)
    assert main(["reproduce", "--p", "16", "--out", str(tmp_path), "--no-progress"]) == 2
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_killed_run_leaves_the_earlier_report_whole(tmp_path):
    """SIGKILL in the middle of a real run: the earlier report is byte-for-byte intact."""
    out = tmp_path / "rep"
    _fake_report(out)
    old = _tree(out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "deqfast", "reproduce", "--p", "16", "--out", str(out)]
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [*cmd, "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=err
        )
        try:
            deadline = time.monotonic() + 300
            while not any(  # kill while the new report's figures are being written
                f.endswith(".png") for f in _tree(tmp_path) if f.startswith(".rep.partial-")
            ):
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the run never started writing figures"
                time.sleep(0.05)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert _tree(out) == old


# --------------------------------------------------------------------------- real data
def _real_cfg(**changes):
    base = ReproduceConfig.make(p=32)
    return dataclasses.replace(base, **changes)


def test_mnist_surrogate_errors_match_an_independent_computation():
    """MNIST 6 vs 8, n = 1000, σ_a² = 0.2: the reported ‖G*−Ḡ‖/‖G*‖ and ‖K*−K̄‖/‖K*‖ of relu
    against tests/reference.py (NumPy kernels, equilibrium and surrogate); for tanh the
    surrogate is the reference's and the exact kernels the library's."""
    from deqfast.report._realdata import compute_real_data

    cfg = _real_cfg(
        real_n_per_class=500, real_subsets=1, real_subset_n=40, spectra_activations=(),
        real_activations=("relu", "tanh"), real_designs=(),
    )  # fmt: skip
    with single_blas():  # n = 1000 decompositions: threads only oversubscribe a busy machine
        _check_mnist_errors(compute_real_data(cfg, Workspace(cfg), Progress(False)))


def _check_mnist_errors(r):
    import reference
    from deqfast.datasets import load_mnist

    ds = load_mnist(classes=[6, 8])
    assert (r.n, r.p, r.class_counts) == (1000, 784, (500, 500))
    st = ds.stats
    J = np.eye(2)[ds.labels]
    XXt = ds.X @ ds.X.T
    for act in ("relu", "tanh"):
        ref = reference.get(act)
        eq = reference.equilibrium(ref.phi, ref.dphi, ref.kinks, 0.2, 0.8, st.tau0)
        if act == "relu":
            ex = reference.relu_deq_kernels(ds.X, 0.2, 0.8, eq["center"])
        else:
            deq = df.DEQ("tanh", sigma_a2=0.2, tau0=st.tau0)
            ex = {"G": deq.ck(ds.X), "K": deq.ntk(ds.X)}
        for kind, key in (("ck", "G"), ("ntk", "K")):
            cf = reference.surrogate_coefficients(eq, kind)
            M = reference.surrogate_matrix(XXt, J, st.psi, st.t, st.T, st.tau0, ds.p, **cf)
            expected = reference.rel_op_err(ex[key], M)
            assert r.matching[act].comparison(kind).op_error == pytest.approx(expected, rel=1e-6)
    assert 0.05 < r.matching["relu"].ck.op_error < 0.2  # the regime the paper reports


def _idx_dir(directory, rng, classes=(3, 4), per_class=12):
    import gzip
    import struct

    directory.mkdir()
    labels = np.repeat(np.array(classes, dtype=np.uint8), per_class)
    images = rng.integers(0, 256, size=(labels.size, 28, 28), dtype=np.uint8)
    for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
        head = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim)
        head += b"".join(struct.pack(">I", d) for d in arr.shape)
        (directory / f"train-{kind}-ubyte.gz").write_bytes(gzip.compress(head + arr.tobytes()))
    return images, labels


def test_data_option_runs_the_real_data_part_on_an_idx_directory_and_a_npz(tmp_path, rng):
    from deqfast.datasets import prepare
    from deqfast.report._realdata import compute_real_data

    images, labels = _idx_dir(tmp_path / "idx", rng)
    cfg = _real_cfg(data=str(tmp_path / "idx"), real_classes=(3, 4), real_subset_n=16)
    r = compute_real_data(cfg, Workspace(cfg), Progress(False))
    ds = prepare(images, labels, classes=[3, 4])
    assert (r.n, r.p, r.source) == (24, 784, str(tmp_path / "idx"))
    deq = df.DEQ("relu", sigma_a2=0.2, tau0=ds.stats.tau0)
    G = deq.ck(ds.X)
    assert r.matching["relu"].ck.op_error == pytest.approx(
        _op(G, deq.ck_surrogate(ds.X, ds.stats)), rel=1e-8
    )
    assert r.subset_errors["relu"][0].shape == (2,)

    feats = rng.standard_normal((30, 50))
    names = np.repeat(np.array(["cat", "dog"]), 15)
    np.savez(tmp_path / "f.npz", X=feats, y=names)
    cfg = _real_cfg(data=str(tmp_path / "f.npz"), real_classes=("cat", "dog"), real_subset_n=20)
    r = compute_real_data(cfg, Workspace(cfg), Progress(False))
    assert (r.n, r.p, r.class_names) == (30, 50, ("cat", "dog"))


def test_data_option_errors_name_the_path(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["reproduce", "--data", str(missing), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "IDX" in err
    (tmp_path / "x.txt").write_text("not data")
    assert main(["reproduce", "--data", str(tmp_path / "x.txt"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "x.txt" in err and ".npz" in err
    assert not (tmp_path / "o").exists()  # nothing computed, nothing written


# --------------------------------------------------------------------------- ten-class section
def _grid_by_hand(deq_acc, net_acc, width=64):
    """A ClassificationResult holding only the two ReLU models at one width, test accuracies
    over seeds given by hand (the same numbers for both read-outs)."""
    from deqfast.random_features import ClassificationResult, RandomFeatureResult

    seeds = tuple(range(len(deq_acc)))
    results = {}
    for name, acc in (("ReLU DEQ", deq_acc), ("L-ReLU net (designed)", net_acc)):
        for ro in ("logistic", "ridge"):
            a = np.array([acc], dtype=float)
            results[(name, ro)] = RandomFeatureResult(
                widths=(width,), seeds=seeds, test_accuracy=a, train_accuracy=a, readout=ro,
                ridge=1e-2, name=name,
            )  # fmt: skip
    shape = (2, 1, len(seeds))
    return ClassificationResult(
        models=("ReLU DEQ", "L-ReLU net (designed)"), widths=(width,), seeds=seeds,
        readouts=("logistic", "ridge"), results=results, kernel_accuracy={},
        feature_seconds=np.array([[[2.0, 3.0, 4.0][: len(seeds)]], [[0.1] * len(seeds)]]),
        fit_seconds={ro: np.zeros(shape) for ro in ("logistic", "ridge")}, kernel_seconds={},
        converged={ro: np.ones(shape, dtype=bool) for ro in ("logistic", "ridge")},
        n_train=80, n_test=20, ridge=1e-2, max_iter=10, model_notes={},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("net_acc", "within"),
    [
        ([0.83, 0.835, 0.84], True),  # mean 0.835, 0.015 above the DEQ's 0.82 ± 0.02
        ([0.84, 0.845, 0.85], False),  # mean 0.845, 0.025 above
        ([0.80, 0.805, 0.81], True),  # mean 0.805, 0.015 below
        ([0.79, 0.795, 0.80], False),  # mean 0.795, 0.025 below
    ],
)
def test_designed_net_within_one_std_of_its_deq(net_acc, within):
    from deqfast.report._classification import compare_designed

    deq_acc = [0.80, 0.82, 0.84]  # mean 0.82, sample std 0.02
    verdicts = compare_designed(_grid_by_hand(deq_acc, net_acc), 64)
    assert [(v.deq, v.net, v.readout) for v in verdicts] == [
        ("ReLU DEQ", "L-ReLU net (designed)", "logistic"),
        ("ReLU DEQ", "L-ReLU net (designed)", "ridge"),
    ]  # the tanh pair is not in the grid: skipped
    for v in verdicts:
        assert v.deq_mean == pytest.approx(np.mean(deq_acc))
        assert v.deq_std == pytest.approx(np.std(deq_acc, ddof=1))
        assert v.net_mean == pytest.approx(np.mean(net_acc))
        assert v.within is within
        assert ("NOT within" in v.sentence()) is not within
        assert f"{100 * np.mean(net_acc):.1f} %" in v.sentence()


def test_left_out_widths_are_estimated_from_the_run():
    from deqfast.report._classification import full_width_estimate

    grid = _grid_by_hand([0.8, 0.82, 0.84], [0.8, 0.8, 0.8], width=64)
    est = full_width_estimate(grid, (256,))
    assert est["largest_width_run"] == 64 and est["left_out_widths"] == [256]
    assert est["deq_feature_seconds_at_largest_width"] == pytest.approx(9.0)  # DEQ only
    assert est["estimated_deq_feature_seconds"]["256"] == pytest.approx(9.0 * 16)
    assert est["gflop_per_map_evaluation"]["256"] == pytest.approx(2 * 256**2 * 100 / 1e9)
    assert full_width_estimate(grid, ()) == {}


def test_full_adds_the_large_widths_and_quick_excludes_it():
    default, full = ReproduceConfig.make(), ReproduceConfig.make(full=True)
    assert default.classification_widths == (32, 128, 512, 1024)
    assert full.classification_widths == (32, 128, 512, 1024, 4096)
    assert full.to_dict()["full"] is True
    with pytest.raises(ValueError, match="quick and full"):
        ReproduceConfig.make(quick=True, full=True)


def test_classification_section_with_full_and_the_statement_without():
    """A small run of the ten-class section (100 digits) with ``full``: the left-out width is
    run and the designed nets are judged there.  Without ``full`` the report says where the
    run stops, with the cost estimated from the run (rendered from the same result)."""
    from deqfast.report._classification import compute_classification, full_width_estimate
    from deqfast.report._render import render_classification

    cfg = dataclasses.replace(
        ReproduceConfig.make(p=16, full=True), rf_widths=(16,), rf_full_widths=(32,)
    )
    res = compute_classification(cfg, Workspace(cfg), Progress(False))
    d = res.to_dict()
    assert d["widths"] == [16, 32] and d["full"] is True and d["left_out_widths"] == {}
    assert {v["width"] for v in d["designed_vs_deq"]} == {32}
    assert len(d["designed_vs_deq"]) == 4  # two (DEQ, designed net) pairs x two read-outs
    for v in d["designed_vs_deq"]:
        for who in ("deq", "net"):
            acc = d["accuracy"][v["readout"]][v[who]]["test_accuracy"][-1]  # m = 32, seeds
            assert v[f"{who}_mean"] == pytest.approx(np.mean(acc))
        assert v["within"] is (abs(v["net_mean"] - v["deq_mean"]) <= v["deq_std"])
    assert d["deq_forward_options"] == {"dtype": "float32", "tol": 1e-4}
    doc = Document()
    render_classification(res, doc, [])
    md = to_markdown(doc)
    assert "at the largest width run (m = 32" in md and "--full" not in md
    assert md.count("one standard deviation of the DEQ") == 4

    stopped = dataclasses.replace(res, full=False, left_out=full_width_estimate(res.grid, (64,)))
    doc = Document()
    render_classification(stopped, doc, [])
    md = to_markdown(doc)
    assert "This run stops at width m = 32" in md and "deqfast reproduce --full" in md
    assert stopped.to_dict()["left_out_widths"]["left_out_widths"] == [64]


def test_figures_drawn_by_workers_are_the_same_files(tmp_path):
    pytest.importorskip("matplotlib")
    from deqfast.plots import plot_errors_vs_p
    from deqfast.report._document import FigureDrawing

    doc = Document()
    for k in range(3):
        curve = {"relu": np.array([0.3, 0.2, 0.1]) * (k + 1)}
        doc.figure(lambda c=curve: plot_errors_vs_p([16, 32, 64], c), f"f{k}.png", f"figure {k}")
    FigureDrawing(doc.figures, str(tmp_path / "serial"), jobs=1).wait()
    FigureDrawing(doc.figures, str(tmp_path / "forked"), jobs=2).wait()
    for fig in doc.figures:
        a = (tmp_path / "serial" / fig.path).read_bytes()
        assert a[:4] == b"\x89PNG" and a == (tmp_path / "forked" / fig.path).read_bytes()


# --------------------------------------------------------------------------- concurrency
def _numbers(results):
    """A results dictionary without its timings (wall and CPU seconds, speed-ups)."""
    if isinstance(results, dict):
        return {
            k: _numbers(v)
            for k, v in results.items()
            if k not in ("created", "load_average")
            and not any(t in k for t in ("seconds", "speedup", "per_sample", "speed-up"))
        }
    if isinstance(results, list):
        return [_numbers(v) for v in results]
    return results


def test_designs_in_a_worker_and_early_figures_change_nothing(tmp_path):
    """The designs computed by the worker process and the figures drawn during the last
    section give the same results.json numbers and the same figure files as the run with
    both in the run's own process, one after the other."""
    pytest.importorskip("matplotlib")
    base = dataclasses.replace(
        ReproduceConfig.make(p=24, seed=3),
        designs=(("relu", "ck", "lrelu"), ("tanh", "ck", "clip"), ("relu", "ntk", "hermite")),
        real_designs=(("relu", "ck", "lrelu"), ("tanh", "ntk", "hermite")),
    )  # fmt: skip
    runs = {}
    for name, jobs in (("serial", 0), ("parallel", 1)):
        cfg = dataclasses.replace(base, design_jobs=jobs, figure_jobs=jobs)
        res = reproduce(tmp_path / name, config=cfg, progress=False)
        figures = tmp_path / name / "figures"
        runs[name] = (_numbers(res), {f: (figures / f).read_bytes() for f in os.listdir(figures)})
    assert runs["serial"][0] == runs["parallel"][0]
    assert runs["serial"][1] == runs["parallel"][1] and len(runs["serial"][1]) > 10


def test_design_jobs_fall_back_to_this_process_when_the_worker_dies():
    from deqfast.report._background import BackgroundJobs, design

    keys = [("relu", 0.2, 1.1, "ck", "lrelu"), ("tanh", 0.2, 1.1, "ck", "clip")]
    jobs = BackgroundJobs(1)
    for k in keys:
        jobs.submit(k, design, k)
    assert all(jobs.submitted(k) for k in keys)
    first = jobs.result(keys[0], design, keys[0])
    assert jobs.cpu_seconds > 0
    assert jobs._proc is not None
    jobs._proc.kill()
    jobs._proc.wait()
    second = jobs.result(keys[1], design, keys[1])  # read fails: computed here instead
    assert jobs._proc is None and jobs.jobs == 0
    for k, d in zip(keys, (first, second)):
        alone = design(k)
        assert repr(d.net) == repr(alone.net) and d.distance == alone.distance
    jobs.close()


def test_design_jobs_re_emit_the_workers_warnings():
    from deqfast.design import DesignWarning
    from deqfast.report._background import BackgroundJobs, design

    key = ("tanh", 0.2, 1.0, "ntk", "lrelu")  # an L-ReLU net cannot match a tanh NTK
    jobs = BackgroundJobs(1)
    jobs.submit(key, design, key)
    try:
        with pytest.warns(DesignWarning, match="NOT the DEQ's"):
            d = jobs.result(key, design, key)
    finally:
        jobs.close()
    assert not d.converged
