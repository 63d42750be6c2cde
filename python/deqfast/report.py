"""``deqfast reproduce``: the paper's core experiments and a self-contained report.

Sections (each number in the report is computed in the run):

1. **CK and NTK matching on the mixture** — ``GaussianMixture.paper(p)``,
   ``n = round(0.8 p)``, σ_a² = 0.2, ReLU and tanh: relative errors of the
   surrogates ``Ḡ``, ``K̄`` against the exact ``G*``, ``K*`` over a range of
   ``p`` (THEORY.md §4), and the full spectral comparison (§6) at the largest
   ``p``.
2. **Explicit-net design** (when :mod:`deqfast.design` is installed) — the
   designed not-so-deep net's exact CK against ``G*`` (§5), next to an
   undesigned one-layer ReLU net.
3. **Empirical CK at finite width** (when :mod:`deqfast.finite` is installed) —
   ``‖CK_m − G*‖/‖G*‖`` over widths ``m`` (§3).
4. **Real data** — scikit-learn's digits, two classes, estimated statistics:
   ``G*`` vs ``Ḡ`` and ``K*`` vs ``K̄``; random-feature test accuracies of the
   DEQ at finite width, the designed explicit net and a plain ReLU net over
   widths (mean ± std over seeds), and the exact kernels' ridge regression.

Outputs in the chosen directory: ``report.html`` (figures embedded as PNG),
``report.md`` (figures linked from ``figures/``), ``results.json`` (every
number) and ``config.json`` (the exact configuration).

Random draws: the mixture sample for dimension ``p`` and draw ``r`` uses
``np.random.default_rng([seed, p, r])``; other sections document their
generators in ``config.json``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import importlib.util
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np

from deqfast._validation import check_integer

__all__ = ["ReproduceConfig", "relative_errors", "reproduce", "sample_mixture"]


# --------------------------------------------------------------------------- #
# Configuration
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True)
class ReproduceConfig:
    """Everything that determines a ``reproduce`` run (written to ``config.json``)."""

    seed: int = 0
    quick: bool = False
    sigma_a2: float = 0.2
    activations: tuple[str, ...] = ("relu", "tanh")
    n_ratio: float = 0.8
    ps: tuple[int, ...] = (128, 256, 512, 1024, 2048)
    draws: int = 2
    spectra_p: int = 2048
    top: int = 3
    finite_p: int = 512
    finite_widths: tuple[int, ...] = (256, 1024, 4096)
    finite_trials: int = 2
    designs: tuple[tuple[str, str, str], ...] = (
        ("relu", "ck", "auto"),
        ("relu", "ntk", "auto"),
        ("tanh", "ck", "auto"),
        ("tanh", "ntk", "auto"),
    )
    digits_design_family: str = "lrelu"
    digits_classes: tuple[int, int] = (3, 5)
    digits_test_size: float = 0.5
    rf_widths: tuple[int, ...] = (32, 128, 512, 2048, 4096)
    rf_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    readout: str = "ridge"
    ridge: float = 1e-2

    @classmethod
    def make(cls, *, quick: bool = False, seed: int = 0, p: int | None = None) -> ReproduceConfig:
        """The default (``quick=False``) or smoke-test configuration.

        ``p`` (for tests) replaces every mixture dimension by that single value
        and shrinks the finite-width and random-feature sweeps.
        """
        seed = check_integer(seed, "seed", min_value=0)
        if quick:
            cfg = cls(
                seed=seed, quick=True, ps=(128, 256, 512), draws=1, spectra_p=512, finite_p=256,
                finite_widths=(256, 1024), finite_trials=1, rf_widths=(32, 128, 512),
                rf_seeds=(0, 1, 2), designs=(("relu", "ck", "lrelu"), ("tanh", "ck", "clip")),
            )  # fmt: skip
        else:
            cfg = cls(seed=seed)
        if p is not None:
            p = check_integer(p, "p", min_value=16)
            cfg = dataclasses.replace(
                cfg, ps=(p,), draws=1, spectra_p=p, finite_p=p, finite_widths=(64, 256),
                finite_trials=1, rf_widths=(16, 64), rf_seeds=(0, 1),
                designs=(("relu", "ck", "lrelu"),),
            )  # fmt: skip
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return json.loads(json.dumps(d))  # tuples -> lists


def sample_mixture(p: int, draw: int, cfg: ReproduceConfig) -> Any:
    """The mixture sample of the run for dimension ``p`` and draw ``draw``."""
    from deqfast.data import GaussianMixture

    n = round(cfg.n_ratio * p)
    return GaussianMixture.paper(p).sample(n, seed=np.random.default_rng([cfg.seed, p, draw]))


def relative_errors(A: np.ndarray, B: np.ndarray) -> tuple[float, float]:
    """``(‖A − B‖₂/‖A‖₂, ‖A − B‖_F/‖A‖_F)`` for symmetric matrices
    (:func:`deqfast.spectra.spectral_norm`)."""
    from deqfast.spectra import spectral_norm

    op = spectral_norm(A - B) / spectral_norm(A)
    fro = float(np.linalg.norm(A - B) / np.linalg.norm(A))
    return op, fro


@contextmanager
def _small_blas(n: int) -> Iterator[None]:
    """One BLAS thread for the dense linear algebra of matrices up to ``n = 2500``.

    On a busy two-core machine, multi-threaded OpenBLAS right after an OpenMP
    region (the exact kernels) can stall small ``eigh`` calls by a second or
    more; single-threaded they take milliseconds.  Needs ``threadpoolctl``
    (installed with scikit-learn); without it this does nothing.
    """
    if n > 2500:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# --------------------------------------------------------------------------- #
# Report document (rendered to Markdown and HTML)
# --------------------------------------------------------------------------- #
class _Doc:
    def __init__(self, out: str) -> None:
        self.out = out
        self.blocks: list[tuple[str, Any]] = []
        self.noted = False

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def pre(self, text: str) -> None:
        self.blocks.append(("pre", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(("table", (list(header), [list(r) for r in rows])))

    def figure(self, make: Callable[[], Any], name: str, caption: str) -> None:
        """Draw ``make()`` into ``figures/name`` (skipped, with one note, without matplotlib)."""
        if not _have("matplotlib"):
            if not self.noted:
                self.p("Figures skipped: matplotlib is not installed (`pip install matplotlib`).")
                self.noted = True
            return
        from deqfast.plots import save_figure

        rel = os.path.join("figures", name)
        save_figure(make(), os.path.join(self.out, rel))
        self.blocks.append(("fig", (rel, caption)))

    def markdown(self) -> str:
        out: list[str] = []
        for kind, val in self.blocks:
            if kind == "h":
                out.append("#" * val[0] + " " + val[1])
            elif kind == "p":
                out.append(val)
            elif kind == "pre":
                out.append("```\n" + val + "\n```")
            elif kind == "table":
                header, rows = val
                esc = [[c.replace("|", "\\|") for c in r] for r in [header, *rows]]
                out.append("| " + " | ".join(esc[0]) + " |")
                out[-1] += "\n|" + "---|" * len(header)
                out[-1] += "".join("\n| " + " | ".join(r) + " |" for r in esc[1:])
            elif kind == "fig":
                out.append(f"![{val[1]}]({val[0]})\n\n*{val[1]}*")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        e = html.escape
        body: list[str] = []
        for kind, val in self.blocks:
            if kind == "h":
                body.append(f"<h{val[0]}>{e(val[1])}</h{val[0]}>")
            elif kind == "p":
                body.append(f"<p>{_inline_html(val)}</p>")
            elif kind == "pre":
                body.append(f"<pre>{e(val)}</pre>")
            elif kind == "table":
                header, rows = val
                t = (
                    "<table><thead><tr>"
                    + "".join(f"<th>{e(c)}</th>" for c in header)
                    + "</tr></thead><tbody>"
                )
                t += "".join(
                    "<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows
                )
                body.append(t + "</tbody></table>")
            elif kind == "fig":
                with open(os.path.join(self.out, val[0]), "rb") as fh:
                    data = base64.b64encode(fh.read()).decode("ascii")
                body.append(
                    f'<figure><img alt="{e(val[1])}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{e(val[1])}</figcaption></figure>"
                )
        style = (
            "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;"
            "line-height:1.45;color:#222}"
            "table{border-collapse:collapse;margin:1em 0;font-size:0.92em}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
            "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
            "figure{margin:1.5em 0}figcaption{color:#555;font-size:0.9em}"
            "pre{background:#f6f6f6;padding:0.6em;overflow-x:auto;font-size:0.85em}code{background:#f3f3f3}"
        )
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{e(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
        )


def _inline_html(text: str) -> str:
    """Escape text and render `code` spans."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{s}</code>" if i % 2 else s for i, s in enumerate(parts))


def _f(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}g}" if math.isfinite(x) else "–"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


# --------------------------------------------------------------------------- #
# The run
# --------------------------------------------------------------------------- #
class _Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def bar(self, iterable: Any, desc: str, total: int | None = None) -> Any:
        if not self.enabled:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, leave=True, dynamic_ncols=True)


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = round(time.perf_counter() - t0, 3)


def reproduce(
    out: str | os.PathLike[str] = "deqfast-report",
    *,
    config: ReproduceConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the paper's core experiments and write the report to ``out``.

    Parameters
    ----------
    out : path-like
        Output directory (created).  Receives ``report.html``, ``report.md``,
        ``results.json``, ``config.json`` and ``figures/*.png``.
    config : ReproduceConfig, optional
        Default: :meth:`ReproduceConfig.make` ``()``.
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    dict
        The content of ``results.json``.
    """
    cfg = config if config is not None else ReproduceConfig.make()
    if not isinstance(cfg, ReproduceConfig):
        raise TypeError(f"config must be a ReproduceConfig; got {type(cfg).__name__}")
    out = os.fspath(out)
    os.makedirs(os.path.join(out, "figures"), exist_ok=True)
    import deqfast

    bars = _Progress(progress)
    doc = _Doc(out)
    timings: dict[str, float] = {}
    results: dict[str, Any] = {
        "deqfast_version": deqfast.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "timings_seconds": timings,
    }
    t_start = time.perf_counter()
    doc.h(1, "deqfast reproduction report")
    doc.p(
        "Deep equilibrium models (DEQs) vs not-so-deep explicit networks on high-dimensional "
        "Gaussian mixtures (Ling et al., ICML 2024), recomputed by deqfast "
        f"{deqfast.__version__}. Every number and figure below was computed in this run "
        f"({'quick' if cfg.quick else 'default'} configuration, seed {cfg.seed}; the exact "
        "configuration is in `config.json`, all numbers in `results.json`)."
    )
    headline: list[list[str]] = []

    with _timed(timings, "mixture"):
        results["mixture"] = _mixture_section(cfg, doc, bars, headline)
    with _timed(timings, "design"):
        results["design"] = _design_section(cfg, doc, bars, headline)
    with _timed(timings, "finite_width"):
        results["finite_width"] = _finite_section(cfg, doc, bars, headline)
    with _timed(timings, "digits"):
        results["digits"] = _digits_section(cfg, doc, bars, headline)
    timings["total"] = round(time.perf_counter() - t_start, 3)

    # headline table first, after the introduction
    doc.blocks.insert(2, ("h", (2, "Headline numbers")))
    doc.blocks.insert(3, ("table", (["quantity", "value"], headline)))
    results["headline"] = {k: v for k, v in headline}
    doc.h(2, "Run")
    doc.table(["step", "seconds"], [[k, f"{v:.1f}"] for k, v in timings.items()])
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as fh:
        json.dump(
            {
                **cfg.to_dict(),
                "sample_generator": "GaussianMixture.paper(p).sample(round(n_ratio*p), "
                "seed=np.random.default_rng([seed, p, draw]))",
                "finite_generator": "empirical_ck(..., "
                "seed=np.random.default_rng([seed, 7, width]))",
                "digits_split_seed": "train_test_split(..., seed=seed)",
                "rf_generator": "feature_fn(X, width, rf_seed) with the rf_seeds",
            },
            fh,
            indent=2,
        )
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=2, default=_json_default)
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as fh:
        fh.write(doc.markdown())
    with open(os.path.join(out, "report.html"), "w", encoding="utf-8") as fh:
        fh.write(doc.html("deqfast reproduction report"))
    return results


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# --------------------------------------------------------------------------- #
def _mixture_section(
    cfg: ReproduceConfig, doc: _Doc, bars: _Progress, headline: list[list[str]]
) -> dict[str, Any]:
    from deqfast.deq import DEQ
    from deqfast.plots import plot_eigenvectors, plot_errors_vs_p, plot_spectra
    from deqfast.spectra import compare_spectra
    from deqfast.theory import theory_spectrum

    doc.h(2, "1. CK and NTK matching on the Gaussian mixture")
    doc.p(
        f"The authors' two-class mixture `GaussianMixture.paper(p)` (THEORY.md §5), "
        f"n = {cfg.n_ratio:g}·p samples, σ_a² = {cfg.sigma_a2:g}, σ_b² = {1 - cfg.sigma_a2:g}, "
        "population statistics. Exact infinite-width kernels `G*` (Implicit-CK) and `K*` "
        "(Implicit-NTK, hidden weights and read-out trained) against the random-matrix "
        "surrogates `Ḡ`, `K̄` of THEORY.md §4; relative errors averaged over "
        f"{cfg.draws} draw(s) per p."
    )
    res: dict[str, Any] = {"ps": list(cfg.ps)}
    steps = [(p, r, a) for p in cfg.ps for r in range(cfg.draws) for a in cfg.activations]
    err: dict[str, dict[str, np.ndarray]] = {
        a: {k: np.zeros((len(cfg.ps), cfg.draws)) for k in ("ck_op", "ck_fro", "ntk_op", "ntk_fro")}
        for a in cfg.activations
    }
    keep: dict[str, Any] = {}
    cache: dict[tuple[int, int], Any] = {}
    for p, r, act in bars.bar(steps, "mixture: exact kernels vs surrogates"):
        if (p, r) not in cache:
            cache.clear()
            cache[(p, r)] = sample_mixture(p, r, cfg)
        s = cache[(p, r)]
        deq = DEQ(act, sigma_a2=cfg.sigma_a2, tau0=s.stats.tau0)
        kr = deq.kernels(s.X)
        assert kr.G is not None and kr.K is not None
        Gb = deq.ck_surrogate(s.X, s.stats)
        Kb = deq.ntk_surrogate(s.X, s.stats)
        i = cfg.ps.index(p)
        with _small_blas(s.n):
            err[act]["ck_op"][i, r], err[act]["ck_fro"][i, r] = relative_errors(kr.G, Gb)
            err[act]["ntk_op"][i, r], err[act]["ntk_fro"][i, r] = relative_errors(kr.K, Kb)
        if p == cfg.spectra_p and r == 0:
            keep[act] = (s, kr.G, Gb, kr.K, Kb)
    for act in cfg.activations:
        res[act] = {
            **{k: v.mean(axis=1).tolist() for k, v in err[act].items()},
            **{k + "_draws": v.tolist() for k, v in err[act].items()},
        }
    header = ["p", "n"] + [
        f"{a}: {k}" for a in cfg.activations for k in ("‖G*−Ḡ‖/‖G*‖", "‖K*−K̄‖/‖K*‖")
    ]
    rows = []
    for i, p in enumerate(cfg.ps):
        row = [str(p), str(round(cfg.n_ratio * p))]
        for a in cfg.activations:
            row += [_f(res[a]["ck_op"][i], 3), _f(res[a]["ntk_op"][i], 3)]
        rows.append(row)
    doc.h(3, "Relative operator-norm errors")
    doc.table(header, rows)
    if len(cfg.ps) >= 2:
        curves = {
            f"{a} {name}": res[a][key]
            for a in cfg.activations
            for name, key in (("CK ‖G*−Ḡ‖/‖G*‖", "ck_op"), ("NTK ‖K*−K̄‖/‖K*‖", "ntk_op"))
        }
        title = f"Surrogate error vs dimension (n = {cfg.n_ratio:g}p, σ_a² = {cfg.sigma_a2:g})"
        doc.figure(
            partial(plot_errors_vs_p, cfg.ps, curves, title=title),
            "mixture_errors_vs_p.png",
            "Relative operator-norm error of the surrogates against p "
            "(log–log, fitted slopes in the legend).",
        )

    res["spectra"] = {}
    for act in bars.bar(list(keep), "mixture: spectra"):
        s, G, Gb, K, Kb = keep[act]
        with _small_blas(s.n):
            cg = compare_spectra(G, Gb, labels=s.labels, top=cfg.top, names=("G*", "Ḡ"))
            ck = compare_spectra(K, Kb, labels=s.labels, top=cfg.top, names=("K*", "K̄"))
        # THEORY-side prediction of the same spectra from the equations alone (no n x n matrix)
        deq = DEQ(act, sigma_a2=cfg.sigma_a2, tau0=s.stats.tau0)
        theory = {kind: theory_spectrum(deq, s, s.n, kind=kind) for kind in ("ck", "ntk")}
        w_theory = {
            kind: theory[kind].wasserstein(cmp.eigvals_a) for kind, cmp in (("ck", cg), ("ntk", ck))
        }
        res["spectra"][act] = {
            "p": cfg.spectra_p,
            "n": s.n,
            "ck": cg.to_dict(),
            "ntk": ck.to_dict(),
            "theory": {
                kind: {
                    "spikes": theory[kind].spikes.tolist(),
                    "w1_to_exact": w_theory[kind],
                    "w1_surrogate_to_exact": cmp.wasserstein,
                }
                for kind, cmp in (("ck", cg), ("ntk", ck))
            },
        }
        doc.h(3, f"{act}: spectra at p = {cfg.spectra_p}, n = {s.n}")
        doc.table(["quantity", "G*", "Ḡ"], [list(r) for r in cg.rows()])
        doc.table(["quantity", "K*", "K̄"], [list(r) for r in ck.rows()])
        doc.table(
            ["kernel", "W1(theory, exact)", "W1(surrogate, exact)", "theory spikes"],
            [
                [name, _f(w_theory[kind], 3), _f(cmp.wasserstein, 3),
                 ", ".join(_f(v, 4) for v in theory[kind].spikes) or "none"]
                for name, kind, cmp in (("G*", "ck", cg), ("K*", "ntk", ck))
            ],
        )  # fmt: skip
        doc.figure(
            partial(
                plot_spectra,
                cg,
                theory=theory["ck"],
                title=f"{act} DEQ: Implicit-CK G* vs surrogate Ḡ (p = {cfg.spectra_p}, n = {s.n})",
            ),
            f"mixture_{act}_ck_spectra.png",
            f"{act}: eigenvalue histograms of G* and Ḡ (bulk) with the limiting density predicted "
            "by `theory_spectrum` from the equations alone, and the isolated eigenvalues.",
        )
        doc.figure(
            partial(
                plot_spectra,
                ck,
                theory=theory["ntk"],
                title=f"{act} DEQ: Implicit-NTK K* vs surrogate K̄ (p = {cfg.spectra_p}, n = {s.n})",
            ),
            f"mixture_{act}_ntk_spectra.png",
            f"{act}: eigenvalue histograms of K* and K̄ with the predicted limiting density.",
        )
        doc.figure(
            partial(
                plot_eigenvectors,
                cg,
                k=2,
                title=f"{act} DEQ: top eigenvectors of G* and Ḡ, coloured by class",
            ),
            f"mixture_{act}_ck_eigenvectors.png",
            f"{act}: the two top eigenvectors of G* and Ḡ; titles give |uᵀj_a|²/n_a per class.",
        )
        i = cfg.ps.index(cfg.spectra_p)
        headline.append(
            [f"mixture p = {cfg.spectra_p}, {act}: ‖G*−Ḡ‖/‖G*‖", _f(res[act]["ck_op"][i], 3)]
        )
        headline.append(
            [f"mixture p = {cfg.spectra_p}, {act}: ‖K*−K̄‖/‖K*‖", _f(res[act]["ntk_op"][i], 3)]
        )
    return res


# --------------------------------------------------------------------------- #
def _design_section(
    cfg: ReproduceConfig, doc: _Doc, bars: _Progress, headline: list[list[str]]
) -> dict[str, Any]:
    doc.h(2, "2. A not-so-deep explicit net with the DEQ's kernel")
    from deqfast.deq import DEQ
    from deqfast.design import design_explicit
    from deqfast.explicit import ExplicitNet
    from deqfast.plots import plot_spectra
    from deqfast.spectra import compare_spectra

    s = sample_mixture(cfg.spectra_p, 0, cfg)
    doc.p(
        "For each DEQ, `design_explicit` solves for the activations of an explicit net whose "
        "surrogate coefficients equal the DEQ's (THEORY.md §5); the design is then judged by "
        f"the exact kernels on the mixture sample (p = {cfg.spectra_p}, n = {s.n}), next to an "
        "undesigned one-layer ReLU net (centred)."
    )
    res: dict[str, Any] = {"p": cfg.spectra_p, "n": s.n}
    rows = []
    exact: dict[tuple[str, str], np.ndarray] = {}
    for act, target, family in bars.bar(list(cfg.designs), "design: explicit nets"):
        deq = DEQ(act, sigma_a2=cfg.sigma_a2, tau0=s.stats.tau0)
        key = (act, target)
        if key not in exact:
            exact[key] = deq.ck(s.X) if target == "ck" else deq.ntk(s.X)
        ref = exact[key]
        d = design_explicit(deq, target=target, family=family)
        net = d.net
        M = net.ck(s.X) if target == "ck" else net.ntk(s.X)
        base = ExplicitNet(["relu"], tau0=s.stats.tau0)
        Mb = base.ck(s.X) if target == "ck" else base.ntk(s.X)
        names = ("G*", "designed CK") if target == "ck" else ("K*", "designed NTK")
        with _small_blas(s.n):
            c = compare_spectra(ref, M, labels=s.labels, top=cfg.top, names=names)
            cb = compare_spectra(
                ref, Mb, labels=s.labels, top=cfg.top, names=(names[0], "1-layer ReLU")
            )
        summary = d.summary() if callable(getattr(d, "summary", None)) else repr(d)
        headline.append(
            [
                f"design p = {cfg.spectra_p}, {act} DEQ {target.upper()}: "
                f"‖{names[0]}−designed‖/‖{names[0]}‖ ({d.family}; 1-layer ReLU)",
                f"{_f(c.op_error, 3)} ({_f(cb.op_error, 3)})",
            ]
        )
        res[f"{act}_{target}"] = {
            "family": d.family,
            "matched": bool(d.matched),
            "net": repr(net),
            "summary": str(summary),
            "designed": c.to_dict(),
            "baseline_relu": cb.to_dict(),
        }
        rows.append(
            [
                act,
                target,
                family,
                d.family,
                "yes" if d.matched else "no",
                _f(c.op_error, 3),
                _f(c.wasserstein_rel, 3),
                _f(cb.op_error, 3),
                _f(cb.wasserstein_rel, 3),
            ]
        )
        if target == "ck":
            doc.figure(
                partial(
                    plot_spectra,
                    c,
                    title=f"{act} DEQ: G* vs the designed explicit net's exact CK "
                    f"(p = {cfg.spectra_p})",
                ),
                f"design_{act}_ck_spectra.png",
                f"{act}: spectra of the DEQ's G* and of the designed explicit net's CK.",
            )
    doc.table(
        [
            "DEQ",
            "target",
            "family asked",
            "family chosen",
            "matched",
            "‖A−B‖/‖A‖ designed",
            "W1/spread designed",
            "‖A−B‖/‖A‖ 1-layer ReLU",
            "W1/spread 1-layer ReLU",
        ],
        rows,
    )
    for k, v in res.items():
        if isinstance(v, dict) and "summary" in v:
            doc.h(4, k)
            doc.pre(v["summary"])
    return res


# --------------------------------------------------------------------------- #
def _finite_section(
    cfg: ReproduceConfig, doc: _Doc, bars: _Progress, headline: list[list[str]]
) -> dict[str, Any]:
    doc.h(2, "3. Empirical CK at finite width")
    from deqfast.deq import DEQ
    from deqfast.finite import empirical_ck
    from deqfast.plots import plot_error_curves

    s = sample_mixture(cfg.finite_p, 0, cfg)
    doc.p(
        f"Finite-width DEQs (weights N(0,1), width m) solved to equilibrium on the mixture "
        f"sample (p = {cfg.finite_p}, n = {s.n}); the empirical CK φ(Z*)ᵀφ(Z*)/m, averaged over "
        f"{cfg.finite_trials} weight draw(s), against the exact `G*` (THEORY.md §3)."
    )
    res: dict[str, Any] = {"p": cfg.finite_p, "n": s.n, "widths": list(cfg.finite_widths)}
    steps = [(a, w) for a in cfg.activations for w in cfg.finite_widths]
    exact = {}
    for act, w in bars.bar(steps, "finite width: empirical CK"):
        deq = DEQ(act, sigma_a2=cfg.sigma_a2, tau0=s.stats.tau0)
        if act not in exact:
            exact[act] = deq.ck(s.X)
        C = empirical_ck(
            deq, s.X, w, trials=cfg.finite_trials, seed=np.random.default_rng([cfg.seed, 7, w]),
            progress=False,
        )  # fmt: skip
        with _small_blas(s.n):
            op, fro = relative_errors(exact[act], C)
        res.setdefault(act, {"ck_op": [], "ck_fro": []})
        res[act]["ck_op"].append(op)
        res[act]["ck_fro"].append(fro)
    doc.table(
        ["width m", *[f"{a}: ‖CK_m−G*‖/‖G*‖" for a in cfg.activations]],
        [
            [str(w), *[_f(res[a]["ck_op"][i], 3) for a in cfg.activations]]
            for i, w in enumerate(cfg.finite_widths)
        ],
    )
    wmax = max(cfg.finite_widths)
    for act in cfg.activations:
        headline.append(
            [
                f"finite width p = {cfg.finite_p}, {act} DEQ: ‖CK_m−G*‖/‖G*‖ at m = {wmax}",
                _f(res[act]["ck_op"][cfg.finite_widths.index(wmax)], 3),
            ]
        )
    if len(cfg.finite_widths) >= 2:
        doc.figure(
            partial(
                plot_error_curves,
                cfg.finite_widths,
                {f"{a} DEQ": res[a]["ck_op"] for a in cfg.activations},
                xlabel="width m",
                ylabel="‖CK_m − G*‖₂ / ‖G*‖₂",
                title=f"Empirical CK → G* as the width grows (p = {cfg.finite_p}, n = {s.n})",
            ),
            "finite_width_ck.png",
            "Relative error of the finite-width empirical CK against the exact G* "
            "(slope −1/2 expected).",
        )
    return res


# --------------------------------------------------------------------------- #
def _digits_section(
    cfg: ReproduceConfig, doc: _Doc, bars: _Progress, headline: list[list[str]]
) -> dict[str, Any]:
    doc.h(2, "4. Real data: handwritten digits")
    if not _have("sklearn"):
        doc.p("Skipped: scikit-learn (which ships the digits data) is not installed.")
        return {"skipped": "scikit-learn not installed"}
    from deqfast.datasets import load_digits, train_test_split
    from deqfast.deq import DEQ
    from deqfast.plots import plot_accuracy, plot_eigenvectors, plot_spectra
    from deqfast.random_features import (
        accuracy_table,
        deq_features,
        explicit_features,
        kernel_ridge_accuracy,
        random_feature_accuracy,
        relu_features,
        relu_kernel,
    )
    from deqfast.spectra import compare_spectra

    ds = load_digits(cfg.digits_classes)
    st = ds.stats
    tag = f"digits {'/'.join(ds.class_names)}"
    doc.p(
        f"scikit-learn's 8×8 digits, classes {list(ds.class_names)} (n = {ds.n}, p = {ds.p}), "
        "centred and scaled to mean ‖x‖² = 1; the statistics τ0, t, T, ψ are estimated from "
        f"the labelled data (THEORY.md §1): τ0 = {st.tau0:.4f}, t = {np.round(st.t, 3).tolist()}, "
        f"T = {np.round(st.T, 3).tolist()}. σ_a² = {cfg.sigma_a2:g}."
    )
    res: dict[str, Any] = {
        "classes": list(ds.class_names), "n": ds.n, "p": ds.p,
        "class_counts": ds.class_counts.tolist(),
        "tau0": st.tau0, "t": st.t.tolist(), "T": st.T.tolist(), "spectra": {},
    }  # fmt: skip
    for act in bars.bar(list(cfg.activations), "digits: G*, K* vs surrogates"):
        deq = DEQ(act, sigma_a2=cfg.sigma_a2, tau0=st.tau0)
        kr = deq.kernels(ds.X)
        with _small_blas(ds.n):
            cg = compare_spectra(
                kr.G, deq.ck_surrogate(ds.X, st), labels=ds.labels, top=cfg.top, names=("G*", "Ḡ")
            )
            ck = compare_spectra(
                kr.K, deq.ntk_surrogate(ds.X, st), labels=ds.labels, top=cfg.top, names=("K*", "K̄")
            )
        res["spectra"][act] = {"ck": cg.to_dict(), "ntk": ck.to_dict()}
        doc.h(3, f"{act}: G* vs Ḡ and K* vs K̄ on digits")
        doc.table(["quantity", "G*", "Ḡ"], [list(r) for r in cg.rows()])
        doc.table(["quantity", "K*", "K̄"], [list(r) for r in ck.rows()])
        doc.figure(
            partial(plot_spectra, cg, title=f"{tag}, {act} DEQ: G* vs Ḡ (estimated statistics)"),
            f"digits_{act}_ck_spectra.png", f"digits, {act}: spectra of G* and Ḡ.",
        )  # fmt: skip
        doc.figure(
            partial(plot_spectra, ck, title=f"{tag}, {act} DEQ: K* vs K̄ (estimated statistics)"),
            f"digits_{act}_ntk_spectra.png", f"digits, {act}: spectra of K* and K̄.",
        )  # fmt: skip
        if act == cfg.activations[0]:
            doc.figure(
                partial(
                    plot_eigenvectors, cg, k=2, class_names=[f"digit {x}" for x in ds.class_names],
                    title=f"digits, {act} DEQ: top eigenvectors of G* and Ḡ",
                ),
                f"digits_{act}_ck_eigenvectors.png", f"digits, {act}: top eigenvectors by class.",
            )  # fmt: skip
        headline.append(
            [f"digits {'/'.join(ds.class_names)}, {act}: ‖G*−Ḡ‖/‖G*‖", _f(cg.op_error, 3)]
        )
        headline.append(
            [f"digits {'/'.join(ds.class_names)}, {act}: ‖K*−K̄‖/‖K*‖", _f(ck.op_error, 3)]
        )

    # random features ---------------------------------------------------------
    act = cfg.activations[0]
    Xtr, ytr, Xte, yte = train_test_split(
        ds.X, ds.labels, test_size=cfg.digits_test_size, seed=cfg.seed
    )
    deq = DEQ(act, sigma_a2=cfg.sigma_a2, tau0=st.tau0)
    models: dict[str, Any] = {}
    if _have("deqfast.finite"):
        models[f"{act} DEQ"] = (deq_features(deq), lambda A, B=None: deq.ck(A, B))
    design_note = "no design module"
    if _have("deqfast.design"):
        from deqfast.design import design_explicit

        net = design_explicit(deq, target="ck", family=cfg.digits_design_family).net
        design_note = repr(net)
        models["designed explicit net"] = (explicit_features(net), lambda A, B=None: net.ck(A, B))
    models["ReLU 1-layer (baseline)"] = (relu_features, relu_kernel)
    doc.h(3, "Random features: fixed random weights, trained read-out")
    doc.p(
        f"Train/test split {1 - cfg.digits_test_size:.0%}/{cfg.digits_test_size:.0%} "
        f"(n_train = {Xtr.shape[0]}, n_test = {Xte.shape[0]}), {cfg.readout} read-out with "
        f"λ = {cfg.ridge:g} on features h/√m; widths {list(cfg.rf_widths)}, {len(cfg.rf_seeds)} "
        "weight seeds (mean ± std). The last column is kernel ridge regression with the exact "
        f"infinite-width CK (same λ), the m → ∞ limit. Designed net: {design_note}."
    )
    rf: dict[str, Any] = {}
    kacc: dict[str, float] = {}
    results = {}
    for name, (fn, kern) in bars.bar(list(models.items()), "digits: random features"):
        r = random_feature_accuracy(
            fn, Xtr, ytr, Xte, yte, cfg.rf_widths, cfg.rf_seeds, readout=cfg.readout,
            ridge=cfg.ridge, name=name, progress=bars.enabled,
        )  # fmt: skip
        results[name] = r
        rf[name] = r.to_dict()
        Ktr, Kte = kern(Xtr), kern(Xte, Xtr)
        with _small_blas(ds.n):
            kacc[name] = kernel_ridge_accuracy(Ktr, Kte, ytr, yte, ridge=cfg.ridge)
    res["random_features"] = rf
    res["kernel_ridge_accuracy"] = kacc
    res["split"] = {"n_train": int(Xtr.shape[0]), "n_test": int(Xte.shape[0])}
    table = accuracy_table(results, kernel_accuracy=kacc, fmt="markdown").splitlines()
    head = [c.strip() for c in table[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    doc.p("Test accuracy (%), mean ± std over seeds:")
    doc.table(head, rows)
    doc.figure(
        partial(
            plot_accuracy,
            results,
            kernel_accuracy=kacc,
            title=f"digits {'/'.join(ds.class_names)}: random-feature test accuracy",
        ),
        "digits_random_features.png",
        "Random-feature test accuracy vs width (mean ± std over seeds); "
        "dashed/dotted: exact-kernel ridge regression.",
    )
    wmax = max(cfg.rf_widths)
    for name, r in results.items():
        i = r.widths.index(wmax)
        headline.append(
            [f"digits accuracy, {name}, m = {wmax}", f"{_pct(r.mean[i])} ± {_pct(r.std[i])} %"]
        )
    return res
