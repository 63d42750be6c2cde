"""Sections computed on real data (MNIST 6 vs 8 by default, or a user's ``--data``):
surrogates with estimated statistics at two sample sizes, and explicit-net designs judged
by exact kernels.  ``compute_*`` return frozen result objects; nothing here formats or
draws."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from deqfast.report._config import (
    Progress,
    ReproduceConfig,
    cap_per_class,
    load_real_data,
    relative_errors,
)
from deqfast.report._mixture import (
    DesignSection,
    KernelMatch,
    Workspace,
    judge_designs,
    match_kernels,
)

__all__ = [
    "RealDataResult",
    "cap_per_class",
    "compute_real_data",
    "load_real_data",
    "sample_std",
]


@dataclasses.dataclass(frozen=True, eq=False)
class RealDataResult:
    """Kernel matching on a two-class real data set and designs judged on it.

    ``subset_errors[act]`` holds ``(ck_op, ntk_op)`` arrays over ``subsets`` random
    subsets of ``subset_n`` samples (statistics re-estimated on each); ``matching[act]``
    the full comparison on all ``n`` samples (with the theory for ``theory_activations``).
    """

    source: str
    description: str
    class_names: tuple[str, ...]
    n: int
    p: int
    class_counts: tuple[int, ...]
    tau0: float
    t: np.ndarray
    T: np.ndarray
    sigma_a2: float
    activations: tuple[str, ...]
    subset_n: int
    subsets: int
    subset_errors: Mapping[str, tuple[np.ndarray, np.ndarray]]
    matching: Mapping[str, KernelMatch]
    designs: DesignSection

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "description": self.description,
            "classes": list(self.class_names),
            "n": self.n,
            "p": self.p,
            "class_counts": list(self.class_counts),
            "tau0": self.tau0,
            "t": self.t.tolist(),
            "T": self.T.tolist(),
            "subsets": {
                "n": self.subset_n,
                "count": self.subsets,
                **{
                    a: {
                        "ck_op": ck.tolist(),
                        "ntk_op": ntk.tolist(),
                        "ck_op_mean": float(ck.mean()),
                        "ck_op_std": sample_std(ck),
                        "ntk_op_mean": float(ntk.mean()),
                        "ntk_op_std": sample_std(ntk),
                    }
                    for a, (ck, ntk) in self.subset_errors.items()
                },
            },
            "spectra": {a: m.to_dict() for a, m in self.matching.items()},
            "design": self.designs.to_dict(),
        }


def sample_std(x: np.ndarray) -> float:
    """Sample standard deviation (``ddof=1``; 0 for a single value)."""
    return float(x.std(ddof=1)) if x.size > 1 else 0.0


def compute_real_data(cfg: ReproduceConfig, ws: Workspace, bars: Progress) -> RealDataResult:
    """``G*``/``K*`` against the surrogates from estimated statistics (:ref:`§1 <theory-1>`,
    :ref:`§4 <theory-4>`) on
    random subsets of ``cfg.real_subset_n`` samples and on the whole set, for
    ``cfg.real_activations``; the designs ``cfg.real_designs`` judged by exact kernels."""
    from deqfast.datasets import prepare

    ds = ws.real_data()
    st = ds.stats
    K = len(ds.class_names)
    per_class = max(2, cfg.real_subset_n // K)
    errs: dict[str, tuple[np.ndarray, np.ndarray]] = {
        a: (np.zeros(cfg.real_subsets), np.zeros(cfg.real_subsets)) for a in cfg.real_activations
    }
    steps = [(r, a) for r in range(cfg.real_subsets) for a in cfg.real_activations]
    sub = None
    for r, act in bars.bar(steps, f"{ds.n} real samples: subsets of {per_class * K}"):
        if sub is None or sub[0] != r:
            d = prepare(
                ds.X, ds.labels, n_per_class=per_class, class_names=ds.class_names,
                seed=np.random.default_rng([cfg.seed, cfg.real_subset_n, r]),
            )  # fmt: skip
            sub = (r, d, d.X @ d.X.T)  # X Xᵀ, shared by the activations' surrogates
        _, d, gram = sub
        deq = ws.deq(act, d.stats.tau0)
        kr = deq.kernels(d.X, hermite_terms=cfg.real_hermite_terms)
        errs[act][0][r] = relative_errors(kr.G, deq.ck_surrogate(d.X, d.stats, gram=gram))[0]
        errs[act][1][r] = relative_errors(kr.K, deq.ntk_surrogate(d.X, d.stats, gram=gram))[0]

    full: dict[str, Any] = {}
    matching = {}
    gram = ds.X @ ds.X.T
    for act in bars.bar(list(cfg.real_activations), f"{ds.n} real samples: G*, K* vs surrogates"):
        deq = ws.deq(act, st.tau0)
        full[act] = deq.kernels(ds.X, hermite_terms=cfg.real_hermite_terms)
        theory = st if act in cfg.spectra_activations else None
        surrogates = (deq.ck_surrogate(ds.X, st, gram=gram), deq.ntk_surrogate(ds.X, st, gram=gram))
        matching[act] = match_kernels(
            deq, ds.X, st, ds.labels, top=cfg.top, kernels=full[act], surrogates=surrogates,
            theory_of=theory,
        )  # fmt: skip

    def exact(act: str, target: str) -> np.ndarray:
        if act not in full:
            full[act] = ws.deq(act, st.tau0).kernels(ds.X, hermite_terms=cfg.real_hermite_terms)
        return full[act].G if target == "ck" else full[act].K

    rows = judge_designs(
        cfg.real_designs, ws, exact, ds.X, ds.labels, st.tau0,
        top=cfg.top, bars=bars, desc="real data: designed nets",
    )  # fmt: skip
    return RealDataResult(
        source="mnist" if cfg.data is None else str(cfg.data), description=ds.description,
        class_names=tuple(ds.class_names), n=ds.n, p=ds.p,
        class_counts=tuple(int(c) for c in ds.class_counts), tau0=float(st.tau0),
        t=np.asarray(st.t), T=np.asarray(st.T), sigma_a2=cfg.sigma_a2,
        activations=tuple(cfg.real_activations), subset_n=per_class * K,
        subsets=cfg.real_subsets, subset_errors=errs, matching=matching,
        designs=DesignSection(p=ds.p, n=ds.n, rows=rows),
    )  # fmt: skip
