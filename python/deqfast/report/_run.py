"""``reproduce``: compute every section, then render and write the report."""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from deqfast._shared import show_progress
from deqfast.report._classification import compute_classification
from deqfast.report._config import Progress, ReproduceConfig, cpu_seconds, single_blas, timed
from deqfast.report._document import Document, FigureDrawing, to_html, to_markdown
from deqfast.report._mixture import (
    Workspace,
    compute_design,
    compute_finite_width,
    compute_mixture,
)
from deqfast.report._output import ReportOutput
from deqfast.report._realdata import compute_real_data
from deqfast.report._render import (
    Headline,
    render_classification,
    render_design,
    render_finite_width,
    render_mixture,
    render_real_data,
)

__all__ = ["reproduce"]

TITLE = "deqfast reproduction report"

#: ``results.json`` key, compute function and render function of each section, in order.
SECTIONS = (
    ("mixture", compute_mixture, render_mixture),
    ("design", compute_design, render_design),
    ("finite_width", compute_finite_width, render_finite_width),
    ("real_data", compute_real_data, render_real_data),
    ("classification", compute_classification, render_classification),
)

#: The order in which the sections are computed: the finite-width section before the design
#: sections, which gives the worker computing the designs time to finish them.
COMPUTE_ORDER = ("mixture", "finite_width", "design", "real_data", "classification")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def compute_sections(
    cfg: ReproduceConfig,
    bars: Progress,
    timings: dict[str, float],
    cpu: dict[str, float] | None = None,
    load: dict[str, float] | None = None,
    before: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every section's result object, keyed as in ``results.json`` (wall times in
    ``timings``, CPU times in ``cpu`` and the load average at each section's end in ``load``
    when given). ``before(key, results)``, when given, is called before each section is
    computed with the results so far."""
    ws = Workspace(cfg, design_jobs=cfg.design_jobs)
    computes = {key: compute for key, compute, _ in SECTIONS}
    results: dict[str, Any] = {}
    try:
        with single_blas():  # the OpenMP kernels keep their threads; BLAS calls run on one
            ws.submit_jobs()  # computed by a worker while the first sections run
            for key in COMPUTE_ORDER:
                if before is not None:
                    before(key, results)
                worker = ws.jobs.cpu_seconds
                with timed(timings, key, cpu, load):
                    results[key] = computes[key](cfg, ws, bars)
                if cpu is not None:  # the jobs this section took from the worker
                    cpu[key] = round(cpu[key] + ws.jobs.cpu_seconds - worker, 3)
    finally:
        ws.jobs.close()
    for d in (timings, cpu, load):  # in the report's order
        if d is not None:
            for key, _, _ in SECTIONS:
                if key in d:
                    d[key] = d.pop(key)
    return {key: results[key] for key, _, _ in SECTIONS}


def render_report(
    cfg: ReproduceConfig,
    sections: dict[str, Any],
    timings: dict[str, float],
    version: str,
    cpu: dict[str, float] | None = None,
    load: dict[str, float] | None = None,
) -> tuple[Document, Headline]:
    """The report document (headline table first) and the headline rows."""
    body = Document()
    headline: Headline = []
    for key, _, render in SECTIONS:
        render(sections[key], body, headline)
    doc = Document()
    doc.h(1, TITLE)
    doc.p(
        "Deep equilibrium models (DEQs) vs not-so-deep explicit networks on high-dimensional "
        "Gaussian mixtures (Ling et al., ICML 2024), recomputed by deqfast "
        f"{version}. Every number and figure below was computed in this run "
        f"({'quick' if cfg.quick else 'default'} configuration, seed {cfg.seed}; the exact "
        "configuration is in `config.json`, all numbers in `results.json`)."
    )
    doc.h(2, "Headline numbers")
    doc.table(["quantity", "value"], headline)
    doc.extend(body)
    doc.h(2, "Run")
    cpu, load = cpu or {}, load or {}
    doc.p(
        "Wall and CPU seconds (all threads of the process) of each step, and the machine's "
        "one-minute load average at its end: on a shared machine, wall time above CPU time "
        "divided by the cores says the step waited for other work."
    )
    doc.table(
        ["step", "wall seconds", "CPU seconds", "load average"],
        [
            [k, f"{v:.1f}", f"{cpu[k]:.1f}" if k in cpu else "–",
             f"{load[k]:.2f}" if k in load else "–"]
            for k, v in timings.items()
        ],
    )  # fmt: skip
    return doc, headline


def _config_json(cfg: ReproduceConfig) -> dict[str, Any]:
    return {
        **cfg.to_dict(),
        "sample_generator": "GaussianMixture.paper(p).sample(round(n_ratio*p), "
        "seed=np.random.default_rng([seed, p, draw]))",
        "finite_generator": "empirical_ck(..., seed=np.random.default_rng([seed, 7, width]))",
        "finite_ntk_generator": "empirical_ntk(..., method='adjoint', "
        "seed=np.random.default_rng([seed, 7, width])), the CK's draws",
        "real_subset_generator": "prepare(X, labels, n_per_class=real_subset_n // K, "
        "seed=np.random.default_rng([seed, real_subset_n, r]))",
        "rf_generator": "classification_grid(...): features(X, width, rf_seed) per seed",
        "classification_split": "train_test_split(..., test_size=cls_test_size, seed=seed)",
    }


def reproduce(
    out: str | os.PathLike[str] = "deqfast-report",
    *,
    config: ReproduceConfig | None = None,
    progress: bool | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Run the paper's core experiments and write the report to ``out``.

    Parameters
    ----------
    out : path-like
        Output directory.  Receives ``report.html``, ``report.md``,
        ``results.json``, ``config.json``, ``figures/*.png`` and the manifest
        ``deqfast-report.json`` that marks it as a report.  The report is built in a
        temporary directory beside ``out`` and moved into place when complete: an
        earlier report in ``out`` is replaced only then, and stays whole if the run
        is interrupted.
    config : ReproduceConfig, optional
        Default: :meth:`ReproduceConfig.make` ``()``.
    progress : bool or None, default None
        Show tqdm progress bars (``None``: on a terminal).
    force : bool
        Replace the contents of an ``out`` that is not empty and is not a deqfast
        report (refused otherwise).

    Returns
    -------
    dict
        The content of ``results.json``.

    Raises
    ------
    FileExistsError
        If ``out`` is a file, or a non-empty directory that is not a deqfast
        report and ``force`` is false (checked before any computation).
    PermissionError
        If nothing can be written beside ``out`` (checked before any computation).
    """
    cfg = config if config is not None else ReproduceConfig.make()
    if not isinstance(cfg, ReproduceConfig):
        raise TypeError(f"config must be a ReproduceConfig; got {type(cfg).__name__}")
    import deqfast

    with ReportOutput(out, force=force) as target:
        results = _run(cfg, target, show_progress(progress), deqfast.__version__)
        target.commit({"deqfast_version": deqfast.__version__})
    return results


def _run(
    cfg: ReproduceConfig, target: ReportOutput, progress: bool, version: str
) -> dict[str, Any]:
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    load: dict[str, float] = {}
    if hasattr(os, "getloadavg"):
        load["start"] = round(os.getloadavg()[0], 2)
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    t_start, c_start = time.perf_counter(), cpu_seconds()
    early: list[FigureDrawing] = []

    def draw_early(key: str, computed: dict[str, Any]) -> None:
        # the classification section leaves a core to spare: draw the figures of the
        # sections computed so far meanwhile (cfg.early_figure_jobs workers)
        if key == "classification" and cfg.figure_jobs > 0 and cfg.early_figure_jobs > 0:
            doc = Document()
            for k, _, render in SECTIONS:
                if k in computed:
                    render(computed[k], doc, [])
            jobs = cfg.early_figure_jobs
            early.append(FigureDrawing(doc.figures, target.tmp, jobs=jobs, background=True))

    try:
        sections = compute_sections(cfg, Progress(progress), timings, cpu, load, draw_early)
        with timed(timings, "figures", cpu, load):
            doc, headline = render_report(cfg, sections, timings, version, cpu, load)
            drawn = {f.name for d in early for f in d.figures}
            rest = [f for f in doc.figures if f.name not in drawn]
            FigureDrawing(rest, target.tmp, jobs=cfg.figure_jobs).wait()
            for d in early:
                d.wait()
    finally:
        for d in early:
            d.close()
    timings["total"] = round(time.perf_counter() - t_start, 3)
    cpu["total"] = round(cpu_seconds() - c_start, 3)
    results: dict[str, Any] = {
        "deqfast_version": version,
        "created": created,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "timings_seconds": timings,
        "cpu_seconds": cpu,
        "load_average": load,
        **{key: res.to_dict() for key, res in sections.items()},
        "headline": dict(headline),
    }
    files = {
        "config.json": json.dumps(_config_json(cfg), indent=2),
        "results.json": json.dumps(results, indent=2, default=_json_default),
        "report.md": to_markdown(doc),
        "report.html": to_html(doc, TITLE, figure_dir=target.tmp),
    }
    for name, text in files.items():
        target.write_text(name, text)
    return results
