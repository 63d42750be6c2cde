"""Sections computed on real data: surrogates with estimated statistics and random-feature
accuracies.  ``compute_*`` return frozen result objects; nothing here formats or draws."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from deqfast.report._config import Progress, ReproduceConfig, single_blas
from deqfast.report._mixture import KernelMatch, Workspace, match_kernels

__all__ = ["RealDataResult", "compute_digits"]


@dataclasses.dataclass(frozen=True, eq=False)
class RealDataResult:
    """A two-class real data set: kernel matching per activation and random features.

    ``random_features`` maps a model name to its
    :class:`~deqfast.random_features.RandomFeatureResult`; ``kernel_accuracy`` to the test
    accuracy of kernel ridge regression with the model's exact infinite-width kernel.
    """

    name: str
    class_names: tuple[str, ...]
    n: int
    p: int
    class_counts: tuple[int, ...]
    tau0: float
    t: np.ndarray
    T: np.ndarray
    sigma_a2: float
    matching: Mapping[str, KernelMatch]
    n_train: int
    n_test: int
    test_size: float
    random_features: Mapping[str, Any]
    kernel_accuracy: Mapping[str, float]
    readout: str
    ridge: float
    design_note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.class_names),
            "n": self.n,
            "p": self.p,
            "class_counts": list(self.class_counts),
            "tau0": self.tau0,
            "t": self.t.tolist(),
            "T": self.T.tolist(),
            "spectra": {a: m.to_dict() for a, m in self.matching.items()},
            "random_features": {k: r.to_dict() for k, r in self.random_features.items()},
            "kernel_ridge_accuracy": dict(self.kernel_accuracy),
            "split": {"n_train": self.n_train, "n_test": self.n_test},
        }


def compute_digits(cfg: ReproduceConfig, ws: Workspace, bars: Progress) -> RealDataResult:
    """scikit-learn's digits, classes ``cfg.digits_classes``: ``G*``/``K*`` against the
    surrogates from estimated statistics, and random-feature accuracies of the DEQ, the
    designed explicit net and a plain ReLU net over widths."""
    from deqfast.datasets import load_digits, train_test_split
    from deqfast.design import design_explicit
    from deqfast.random_features import (
        deq_features,
        explicit_features,
        kernel_ridge_accuracy,
        random_feature_accuracy,
        relu_features,
        relu_kernel,
    )

    ds = load_digits(cfg.digits_classes)
    st = ds.stats
    matching = {
        act: match_kernels(ws.deq(act, st.tau0), ds.X, st, ds.labels, top=cfg.top)
        for act in bars.bar(list(cfg.activations), "digits: G*, K* vs surrogates")
    }
    act = cfg.activations[0]
    Xtr, ytr, Xte, yte = train_test_split(
        ds.X, ds.labels, test_size=cfg.digits_test_size, seed=cfg.seed
    )
    deq = ws.deq(act, st.tau0)
    net = design_explicit(deq, target="ck", family=cfg.digits_design_family).net
    models: dict[str, Any] = {
        f"{act} DEQ": (deq_features(deq), lambda A, B=None: deq.ck(A, B)),
        "designed explicit net": (explicit_features(net), lambda A, B=None: net.ck(A, B)),
        "ReLU 1-layer (baseline)": (relu_features, relu_kernel),
    }
    rf: dict[str, Any] = {}
    kacc: dict[str, float] = {}
    for name, (fn, kern) in bars.bar(list(models.items()), "digits: random features"):
        rf[name] = random_feature_accuracy(
            fn, Xtr, ytr, Xte, yte, cfg.rf_widths, cfg.rf_seeds, readout=cfg.readout,
            ridge=cfg.ridge, name=name, progress=bars.enabled,
        )  # fmt: skip
        Ktr, Kte = kern(Xtr), kern(Xte, Xtr)
        with single_blas():
            kacc[name] = kernel_ridge_accuracy(Ktr, Kte, ytr, yte, ridge=cfg.ridge)
    return RealDataResult(
        name="digits", class_names=tuple(ds.class_names), n=ds.n, p=ds.p,
        class_counts=tuple(int(c) for c in ds.class_counts), tau0=float(st.tau0),
        t=np.asarray(st.t), T=np.asarray(st.T), sigma_a2=cfg.sigma_a2, matching=matching,
        n_train=int(Xtr.shape[0]), n_test=int(Xte.shape[0]), test_size=cfg.digits_test_size,
        random_features=rf, kernel_accuracy=kacc, readout=cfg.readout, ridge=cfg.ridge,
        design_note=repr(net),
    )  # fmt: skip
