"""Ten-class classification with random features and the inference-time comparison
(:ref:`§5 <theory-5>`).  ``compute_classification`` returns a frozen result object; nothing here
formats or draws."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from deqfast._shared import blas_threads
from deqfast.report._config import (
    KERNEL_LIMITS,
    Progress,
    ReproduceConfig,
    paper_models_of,
    ten_class_data,
    ten_class_kernel_limits,
)
from deqfast.report._mixture import Workspace

__all__ = [
    "ClassificationSection",
    "DesignedVsDEQ",
    "compare_designed",
    "compute_classification",
    "full_width_estimate",
]

#: (DEQ, designed explicit net) pairs of :func:`deqfast.random_features.paper_models`.
PAIRS = (("ReLU DEQ", "L-ReLU net (designed)"), ("tanh DEQ", "H-tanh net (designed)"))

#: Timed passes of each model in the inference timing (the best is reported).  The DEQ's
#: first pass is the slowest (its work buffers are new); in three runs of the default
#: configuration on a busy machine the best of the first two was within 4.3 % of the best
#: of three (0 % in four of the six pairs), for two thirds of the time.
TIMING_REPEATS = 2


@dataclasses.dataclass(frozen=True)
class DesignedVsDEQ:
    """A designed net's mean test accuracy against its DEQ's at one width and read-out:
    ``within`` is ``|net_mean − deq_mean| ≤ deq_std`` (the DEQ's sample standard deviation
    over the weight seeds)."""

    deq: str
    net: str
    readout: str
    width: int
    deq_mean: float
    deq_std: float
    net_mean: float
    net_std: float
    within: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def sentence(self) -> str:
        """The verdict in words, with the numbers it rests on (percentages)."""
        verdict = "within" if self.within else "NOT within"
        return (
            f"{self.net} vs {self.deq} ({self.readout}, m = {self.width}): "
            f"{100 * self.net_mean:.1f} % against {100 * self.deq_mean:.1f} ± "
            f"{100 * self.deq_std:.1f} %, {verdict} one standard deviation of the DEQ"
        )


def compare_designed(grid: Any, width: int) -> tuple[DesignedVsDEQ, ...]:
    """Every (DEQ, designed net) pair of :data:`PAIRS` in ``grid`` (a
    :class:`~deqfast.random_features.ClassificationResult`), per read-out, at ``width``."""
    out = []
    for deq, net in PAIRS:
        if deq not in grid.models or net not in grid.models:
            continue
        for readout in grid.readouts:
            m0, s0 = grid.accuracy(deq, readout, width)
            m1, s1 = grid.accuracy(net, readout, width)
            out.append(DesignedVsDEQ(
                deq=deq, net=net, readout=readout, width=int(width), deq_mean=m0, deq_std=s0,
                net_mean=m1, net_std=s1, within=grid.within_one_std(net, deq, readout, width),
            ))  # fmt: skip
    return tuple(out)


def full_width_estimate(grid: Any, widths: tuple[int, ...]) -> dict[str, Any]:
    """What the widths left out of the run (``widths``, the ``full`` configuration's) would
    cost: the DEQs' forward solves scale as ``m² n`` per map evaluation, so the measured
    feature time of the DEQs at the largest width run, times ``(M / m)²``, estimates it."""
    if not widths:
        return {}
    m = max(grid.widths)
    j = grid.widths.index(m)
    deqs = [i for i, name in enumerate(grid.models) if name in {d for d, _ in PAIRS}]
    measured = float(grid.feature_seconds[deqs, j, :].sum()) if deqs else 0.0
    n = grid.n_train + grid.n_test
    return {
        "largest_width_run": m,
        "left_out_widths": list(widths),
        "deq_feature_seconds_at_largest_width": measured,
        "gflop_per_map_evaluation": {str(w): 2.0 * w * w * n / 1e9 for w in widths},
        "estimated_deq_feature_seconds": {str(w): measured * (w / m) ** 2 for w in widths},
    }


@dataclasses.dataclass(frozen=True, eq=False)
class ClassificationSection:
    """The accuracy grid (:class:`~deqfast.random_features.ClassificationResult`) of the
    authors' six models and, per (DEQ, designed net) pair, the measured inference times
    (:class:`~deqfast.random_features.InferenceTiming`) at ``timing_width``, on
    ``timing_threads`` BLAS and OpenMP threads."""

    source: str
    n_classes: int
    p: int
    grid: Any
    timing_width: int
    timings: dict[str, Any]
    forward_options: dict[str, Any]
    designed_vs_deq: tuple[DesignedVsDEQ, ...]
    full: bool
    left_out: dict[str, Any]
    timing_threads: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "n_classes": self.n_classes,
            "p": self.p,
            **self.grid.to_dict(),
            "deq_forward_options": {
                k: np.dtype(v).name if k == "dtype" else v for k, v in self.forward_options.items()
            },
            "designed_vs_deq": [v.to_dict() for v in self.designed_vs_deq],
            "full": self.full,
            "left_out_widths": self.left_out,
            "efficiency": {deq: t.to_dict() for deq, t in self.timings.items()},
            "timing_threads": self.timing_threads,
        }


def compute_classification(
    cfg: ReproduceConfig, ws: Workspace, bars: Progress
) -> ClassificationSection:
    """All classes of MNIST (or ``cfg.data``), ``cfg.cls_n_per_class`` samples per class at
    most, a stratified ``1 − cfg.cls_test_size`` / ``cfg.cls_test_size`` split (seed
    ``cfg.seed``): the six random-feature models over ``cfg.classification_widths`` and
    ``cfg.rf_seeds`` with both read-outs and the kernel limits (the DEQs' features solved with
    ``cfg.rf_forward_options``), each designed net against its DEQ at the largest width, the
    cost of the widths left out, then the inference timings."""
    from deqfast.random_features import classification_grid, inference_timing

    ds, Xtr, ytr, Xte, yte = ten_class_data(cfg)
    options = cfg.rf_forward_options
    models = paper_models_of(cfg, ds)
    widths = cfg.classification_widths
    elsewhere = ws.jobs.submitted(KERNEL_LIMITS)  # a worker computes the kernel limits
    grid = classification_grid(
        models, Xtr, ytr, Xte, yte, widths=widths, seeds=cfg.rf_seeds, ridge=cfg.ridge,
        logistic_dtype=np.dtype(cfg.rf_logistic_dtype), kernel_limit=not elsewhere,
        n_jobs=cfg.rf_fit_jobs, progress=bars.enabled,
    )  # fmt: skip
    if elsewhere:
        limits = ws.jobs.result(KERNEL_LIMITS, ten_class_kernel_limits, cfg)
        grid = dataclasses.replace(
            grid, kernel_accuracy={n: acc for n, (acc, _) in limits.items()},
            kernel_seconds={n: sec for n, (_, sec) in limits.items()},
        )  # fmt: skip
    left_out = tuple(w for w in cfg.rf_full_widths if w not in widths)
    width = max(w for w in widths if w <= cfg.timing_width)
    # inference on every core, as a user would run it (the rest of the run keeps BLAS on one
    # thread per task); nothing else of the run is computing by now
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = threads or 1
    with blas_threads(threads):
        timings = {
            deq: inference_timing(
                models[deq].model, models[net].model, Xte, width, seed=cfg.seed,
                repeats=TIMING_REPEATS, num_threads=threads,
            )
            for deq, net in bars.bar(list(PAIRS), "inference timing")
        }  # fmt: skip
    return ClassificationSection(
        source="mnist" if cfg.data is None else str(cfg.data), n_classes=len(ds.class_names),
        p=ds.p, grid=grid, timing_width=width, timings=timings, forward_options=options,
        designed_vs_deq=compare_designed(grid, max(widths)), full=cfg.full,
        left_out=full_width_estimate(grid, left_out), timing_threads=threads,
    )  # fmt: skip
