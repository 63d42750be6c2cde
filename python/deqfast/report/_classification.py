"""Ten-class classification with random features and the inference-time comparison
(:ref:`§5 <theory-5>`).  ``compute_classification`` returns a frozen result object; nothing here
formats or draws."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from deqfast.report._config import Progress, ReproduceConfig
from deqfast.report._mixture import Workspace
from deqfast.report._realdata import cap_per_class

__all__ = ["ClassificationSection", "compute_classification"]

#: (DEQ, designed explicit net) pairs of :func:`deqfast.random_features.paper_models`.
PAIRS = (("ReLU DEQ", "L-ReLU net (designed)"), ("tanh DEQ", "H-tanh net (designed)"))


@dataclasses.dataclass(frozen=True, eq=False)
class ClassificationSection:
    """The accuracy grid (:class:`~deqfast.random_features.ClassificationResult`) of the
    authors' six models and, per (DEQ, designed net) pair, the measured inference times
    (:class:`~deqfast.random_features.InferenceTiming`) at ``timing_width``."""

    source: str
    n_classes: int
    p: int
    grid: Any
    timing_width: int
    timings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "n_classes": self.n_classes,
            "p": self.p,
            **self.grid.to_dict(),
            "efficiency": {deq: t.to_dict() for deq, t in self.timings.items()},
        }


def compute_classification(
    cfg: ReproduceConfig, ws: Workspace, bars: Progress
) -> ClassificationSection:
    """All classes of MNIST (or ``cfg.data``), ``cfg.cls_n_per_class`` samples per class at
    most, a stratified ``1 − cfg.cls_test_size`` / ``cfg.cls_test_size`` split (seed
    ``cfg.seed``): the six random-feature models over ``cfg.rf_widths`` and ``cfg.rf_seeds``
    with both read-outs and the kernel limits, then the inference timings."""
    from deqfast.datasets import load_mnist, load_path, train_test_split
    from deqfast.random_features import classification_grid, inference_timing, paper_models

    ds = load_mnist() if cfg.data is None else load_path(cfg.data)
    ds = cap_per_class(ds, cfg.cls_n_per_class, np.random.default_rng([cfg.seed, 12]))
    Xtr, ytr, Xte, yte = train_test_split(
        ds.X, ds.labels, test_size=cfg.cls_test_size, seed=cfg.seed
    )
    models = paper_models(ds.stats.tau0, sigma_a2=cfg.sigma_a2)
    grid = classification_grid(
        models, Xtr, ytr, Xte, yte, widths=cfg.rf_widths, seeds=cfg.rf_seeds,
        ridge=cfg.ridge, progress=bars.enabled,
    )  # fmt: skip
    width = max(w for w in cfg.rf_widths if w <= cfg.timing_width)
    timings = {
        deq: inference_timing(models[deq].model, models[net].model, Xte, width, seed=cfg.seed)
        for deq, net in bars.bar(list(PAIRS), "inference timing")
    }
    return ClassificationSection(
        source="mnist" if cfg.data is None else str(cfg.data), n_classes=len(ds.class_names),
        p=ds.p, grid=grid, timing_width=width, timings=timings,
    )  # fmt: skip
