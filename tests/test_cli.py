"""Tests of the ``deqfast`` command line and the ``reproduce`` report."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import deqfast as df
from deqfast.cli import main

SUBCOMMANDS = ("reproduce", "kernels", "design", "spectra")


def test_python_m_deqfast_help():
    out = subprocess.run(
        [sys.executable, "-m", "deqfast", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("usage: deqfast")
    for cmd in SUBCOMMANDS:
        assert cmd in out


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_subcommand_help(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: deqfast {cmd}") and "--help" in out


def test_no_command_prints_help_and_bad_options_fail(capsys):
    assert main([]) == 0
    assert "usage: deqfast" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "--seed", "-1"])
    assert exc.value.code == 2
    assert "non-negative" in capsys.readouterr().err


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("report")
    assert (
        main(
            ["reproduce", "--quick", "--p", "48", "--seed", "3", "--out", str(out), "--no-progress"]
        )
        == 0
    )
    return out


def test_reproduce_writes_all_outputs(report_dir):
    for name in ("report.html", "report.md", "results.json", "config.json"):
        assert (report_dir / name).stat().st_size > 100, name
    figures = sorted(os.listdir(report_dir / "figures"))
    assert "mixture_relu_ck_spectra.png" in figures and "mixture_tanh_ntk_spectra.png" in figures
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == len(figures)  # self-contained
    md = (report_dir / "report.md").read_text(encoding="utf-8")
    for fig in figures:
        assert f"(figures/{fig})" in md
    assert "Headline numbers" in md


def test_config_json_is_the_exact_configuration(report_dir):
    from deqfast.report import ReproduceConfig

    cfg = json.loads((report_dir / "config.json").read_text())
    expected = ReproduceConfig.make(quick=True, seed=3, p=48).to_dict()
    for key, value in expected.items():
        assert cfg[key] == value, key
    assert cfg["ps"] == [48] and cfg["seed"] == 3


def test_results_json_matches_a_direct_computation(report_dir):
    res = json.loads((report_dir / "results.json").read_text())
    p, n = 48, round(0.8 * 48)
    sample = df.GaussianMixture.paper(p).sample(n, seed=np.random.default_rng([3, p, 0]))
    for act in ("relu", "tanh"):
        deq = df.DEQ(act, sigma_a2=0.2, tau0=sample.stats.tau0)
        G = deq.ck(sample.X)
        K = deq.ntk(sample.X)
        ck = np.linalg.norm(G - deq.ck_surrogate(sample.X, sample.stats), 2) / np.linalg.norm(G, 2)
        ntk = np.linalg.norm(K - deq.ntk_surrogate(sample.X, sample.stats), 2) / np.linalg.norm(
            K, 2
        )
        assert res["mixture"][act]["ck_op"][0] == pytest.approx(ck, rel=1e-6)
        assert res["mixture"][act]["ntk_op"][0] == pytest.approx(ntk, rel=1e-6)
        assert res["mixture"]["spectra"][act]["ck"]["op_error"] == pytest.approx(ck, rel=1e-6)
        # the theory curve's distance to the exact spectrum, recomputed from the equations
        ts = df.theory_spectrum(deq, sample, n, kernel="ck")
        theory = res["mixture"]["spectra"][act]["theory"]["ck"]
        assert theory["w1_to_exact"] == pytest.approx(
            ts.wasserstein(np.linalg.eigvalsh(G)), rel=1e-6
        )
        assert theory["spikes"] == pytest.approx(ts.spikes.tolist(), rel=1e-9)
    assert res["timings_seconds"]["total"] > 0
    # the real-data part: MNIST 6 vs 8, all samples (30 per class in this test mode)
    from deqfast.datasets import load_mnist, prepare

    raw = load_mnist(classes=[6, 8])
    ds = prepare(
        raw.X, raw.labels, n_per_class=30, seed=np.random.default_rng([3, 11]),
        class_names=raw.class_names,
    )  # fmt: skip
    real = res["real_data"]
    assert real["n"] == 60 and real["p"] == 784 and real["classes"] == ["6", "8"]
    deq = df.DEQ("relu", sigma_a2=0.2, tau0=ds.stats.tau0)
    G = deq.ck(ds.X)
    err = np.linalg.norm(G - deq.ck_surrogate(ds.X, ds.stats), 2) / np.linalg.norm(G, 2)
    assert real["spectra"]["relu"]["ck"]["op_error"] == pytest.approx(err, rel=1e-6)
    sub = real["subsets"]["relu"]
    assert len(sub["ck_op"]) == 2 and sub["ck_op_mean"] == pytest.approx(np.mean(sub["ck_op"]))
    assert real["design"]["relu_ck"]["designed"]["op_error"] < 0.01
    assert "spikes" in real["spectra"]["tanh"]["theory"]["ck"]

    # ten-class classification: six models x widths x two read-outs, kernel limits, timings
    cls = res["classification"]
    assert len(cls["models"]) == 6 and cls["readouts"] == ["logistic", "ridge"]
    for readout in cls["readouts"]:
        for model in cls["models"]:
            acc = np.array(cls["accuracy"][readout][model]["test_accuracy"])
            assert acc.shape == (2, 2)  # widths (16, 64) x seeds (0, 1)
    from deqfast.datasets import train_test_split

    raw = load_mnist()
    ds = prepare(
        raw.X, raw.labels, n_per_class=10, seed=np.random.default_rng([3, 12]),
        class_names=raw.class_names,
    )  # fmt: skip
    Xtr, ytr, Xte, yte = train_test_split(ds.X, ds.labels, test_size=0.2, seed=3)
    deq = df.DEQ("relu", sigma_a2=0.2, tau0=ds.stats.tau0)
    Y = -np.ones((ytr.size, 10))
    Y[np.arange(ytr.size), ytr] = 1.0
    alpha = np.linalg.solve(deq.ck(Xtr) + 1e-2 * np.eye(ytr.size), Y)
    expected = np.mean(np.argmax(deq.ck(Xte, Xtr) @ alpha, axis=1) == yte)
    assert cls["kernel_ridge_accuracy"]["ReLU DEQ"] == pytest.approx(expected)
    for deq_name in ("ReLU DEQ", "tanh DEQ"):
        t = cls["efficiency"][deq_name]
        assert t["width"] == 64 and t["deq_per_sample_s"] > 0 and t["net_per_sample_s"] > 0


@pytest.fixture
def kernel_file(tmp_path, rng):
    sample = df.GaussianMixture.paper(40).sample(32, seed=1)
    path = tmp_path / "data.npz"
    np.savez(path, X=sample.X, y=sample.labels)
    return path


def test_kernels_and_spectra_commands(kernel_file, tmp_path, capsys):
    out = tmp_path / "k.npz"
    assert main(["kernels", str(kernel_file), "--activation", "tanh", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "‖G − G_bar‖₂/‖G‖₂" in printed
    with np.load(out) as z:
        assert {"G", "G_bar", "K", "K_bar", "S", "labels", "X"} <= set(z.files)
        X, G, labels = z["X"], z["G"], z["labels"]
    from deqfast.datasets import load_npz, prepare

    ds = prepare(*load_npz(kernel_file))
    np.testing.assert_allclose(X, ds.X)
    np.testing.assert_array_equal(labels, ds.labels)
    deq = df.DEQ("tanh", sigma_a2=0.2, tau0=ds.stats.tau0)
    np.testing.assert_allclose(G, deq.ck(X), rtol=1e-10, atol=1e-12)

    assert main(["spectra", f"{out}:G", f"{out}:G_bar", "--labels", f"{out}:labels", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    with np.load(out) as z:
        ref = np.linalg.norm(G - z["G_bar"], 2) / np.linalg.norm(G, 2)
    assert d["op_error"] == pytest.approx(ref, rel=1e-8) and len(d["alignment_a"]) == 3
    pytest.importorskip("matplotlib")
    plot = tmp_path / "s.png"
    assert main(["spectra", f"{out}:G", f"{out}:K", "--plot", str(plot)]) == 0
    assert plot.exists() and "W1 / spread" in capsys.readouterr().out


def test_cli_errors_are_reported_not_raised(kernel_file, tmp_path, capsys):
    assert main(["spectra", str(tmp_path / "none.npz:G"), str(tmp_path / "none.npz:G")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["kernels", str(kernel_file), "--features-key", "nope"]) == 2
    assert "available keys" in capsys.readouterr().err
    assert main(["kernels", str(kernel_file), "--classes", "7", "8"]) == 2
    assert "not among the labels" in capsys.readouterr().err


def test_kernels_rejects_invalid_npz_without_suggesting_pickle(tmp_path, capsys):
    bad = tmp_path / "garbage.npz"
    bad.write_bytes(b"garbage, not an archive")
    assert main(["kernels", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "data: " in err and "is not a valid .npz file" in err and "allow_pickle" not in err
    bad.write_bytes(b"PK\x03\x04 a broken zip")
    assert main(["kernels", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "is not a valid .npz file" in err and "allow_pickle" not in err
    np.savez(bad, X=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2))
    assert main(["kernels", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "holds object arrays ['X.npy']" in err and "allow_pickle" not in err
    np.save(tmp_path / "obj.npy", np.array([None]), allow_pickle=True)
    assert main(["spectra", str(tmp_path / "obj.npy"), str(tmp_path / "obj.npy")]) == 2
    err = capsys.readouterr().err
    assert "a: " in err and "holds object arrays ['obj.npy']" in err and "allow_pickle" not in err


def _never(*args, **kwargs):
    raise AssertionError("computed before checking the output path")


@pytest.mark.parametrize(
    ("out", "match"),
    [
        ("missing/k.npz", r"--out: '.*missing' is not an existing directory"),
        ("data.npz/k.npz", r"--out: '.*data\.npz' is not an existing directory"),
        (".", r"--out: '\.' is a directory; give a file name"),
    ],
)
def test_kernels_out_is_checked_before_computing(
    kernel_file, tmp_path, monkeypatch, capsys, out, match
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(df.DEQ, "kernels", _never)
    assert main(["kernels", str(kernel_file), "--out", out]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err) and "Traceback" not in err


def test_kernels_out_unwritable_directory(kernel_file, monkeypatch, capsys):
    if not os.path.isdir("/proc/self"):
        pytest.skip("needs Linux's /proc, a directory no one can create files in")
    monkeypatch.setattr(df.DEQ, "kernels", _never)
    assert main(["kernels", str(kernel_file), "--out", "/proc/k.npz"]) == 2
    assert "--out: cannot write to '/proc'" in capsys.readouterr().err


def test_kernels_out_gets_npz_suffix_and_reports_it(kernel_file, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["kernels", str(kernel_file), "--out", "result", "--no-surrogate"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("to result.npz")
    with np.load(tmp_path / "result.npz") as z:
        assert {"G", "K", "S", "Gdot", "X", "labels"} == set(z.files)
    assert not (tmp_path / "result").exists()
    # a failing run leaves neither a partial result nor its temporary file
    before = sorted(os.listdir(tmp_path))
    assert main(["kernels", str(kernel_file), "--features-key", "nope", "--out", "r2"]) == 2
    assert sorted(os.listdir(tmp_path)) == before


def test_spectra_plot_path_is_checked_first(kernel_file, tmp_path, monkeypatch, capsys):
    import deqfast.spectra

    monkeypatch.setattr(deqfast.spectra, "compare_spectra", _never)
    np.save(tmp_path / "a.npy", np.eye(3))
    plot = str(tmp_path / "missing" / "s.png")
    assert main(["spectra", str(tmp_path / "a.npy"), str(tmp_path / "a.npy"), "--plot", plot]) == 2
    assert "--plot: " in capsys.readouterr().err


def test_design_command(capsys):
    pytest.importorskip("deqfast.design")
    assert main(["design", "relu", "--family", "lrelu"]) == 0
    out = capsys.readouterr().out
    assert "lrelu" in out and "residual" in out


def test_quick_report_has_every_section(report_dir):
    from deqfast.report._run import SECTIONS

    res = json.loads((report_dir / "results.json").read_text())
    md = (report_dir / "report.md").read_text(encoding="utf-8")
    for i, (key, _, _) in enumerate(SECTIONS, start=1):
        assert res[key], key
        assert f"\n## {i}. " in md, key
        # every section timed in the run: wall and CPU seconds, load average at its end
        assert res["timings_seconds"][key] >= 0 and res["cpu_seconds"][key] >= 0, key
        assert key in res["load_average"] or not hasattr(os, "getloadavg"), key
    assert res["cpu_seconds"]["total"] > 0


def test_reproduce_full_option(monkeypatch, tmp_path, capsys):
    import deqfast.report as report

    seen = []
    monkeypatch.setattr(report, "reproduce", lambda out, config, **k: seen.append(config) or {})
    assert main(["reproduce", "--full", "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    assert seen[0].full and 4096 in seen[0].classification_widths
    assert main(["reproduce", "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    assert not seen[1].full and 4096 not in seen[1].classification_widths
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "--quick", "--full"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    helptext = " ".join(capsys.readouterr().out.split())
    assert "--full" in helptext and "width 4096" in helptext and "stops at 1024" in helptext
