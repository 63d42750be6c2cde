"""Sections computed on the Gaussian mixture: surrogate errors and spectra, explicit-net
design, empirical CK at finite width.  Each ``compute_*`` returns a frozen result object;
nothing here formats or draws."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from deqfast.report._background import BackgroundJobs, DesignKey, design
from deqfast.report._config import (
    KERNEL_LIMITS,
    Progress,
    ReproduceConfig,
    load_real_data,
    relative_errors,
    sample_mixture,
    single_blas,
    ten_class_kernel_limits,
)
from deqfast.spectra import SpectralComparison, compare_spectra

__all__ = [
    "DesignRow",
    "DesignSection",
    "FiniteWidthResult",
    "KernelMatch",
    "MixtureResult",
    "Workspace",
    "compute_design",
    "compute_finite_width",
    "compute_mixture",
    "match_kernels",
]

_ERROR_KEYS = ("ck_op", "ck_fro", "ntk_op", "ntk_fro")


class Workspace:
    """Samples, DEQs and exact kernels shared by the sections of one run, and its
    background jobs (:class:`~deqfast.report._background.BackgroundJobs`).

    Each DEQ is built once per ``(activation, τ0)``; the mixture samples and exact
    kernels that a later section needs again (the spectra and finite-width
    dimensions, draw 0) are kept, the others dropped after use.
    """

    def __init__(self, cfg: ReproduceConfig, *, design_jobs: int = 0) -> None:
        self.cfg = cfg
        self.jobs = BackgroundJobs(design_jobs)
        self._real: Any = None
        self._keep = {(cfg.spectra_p, 0), (cfg.finite_p, 0)}
        self._samples: dict[tuple[int, int], Any] = {}
        self._last: tuple[tuple[int, int], Any] | None = None
        self._deqs: dict[tuple[str, float], Any] = {}
        self._kernels: dict[tuple[str, int, int], Any] = {}

    def sample(self, p: int, draw: int) -> Any:
        key = (p, draw)
        if key in self._samples:
            return self._samples[key]
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        s = sample_mixture(p, draw, self.cfg)
        if key in self._keep:
            self._samples[key] = s
        self._last = (key, s)
        return s

    def deq(self, activation: str, tau0: float) -> Any:
        from deqfast.deq import DEQ

        key = (activation, float(tau0))
        if key not in self._deqs:
            self._deqs[key] = DEQ(activation, sigma_a2=self.cfg.sigma_a2, tau0=tau0)
        return self._deqs[key]

    def real_data(self) -> Any:
        """The run's real data set (:func:`~deqfast.report._config.load_real_data`)."""
        if self._real is None:
            self._real = load_real_data(self.cfg)
        return self._real

    def design_key(self, design: tuple[str, str, str], tau0: float) -> DesignKey:
        act, target, family = design
        return (act, float(self.cfg.sigma_a2), float(tau0), target, family)

    def submit_jobs(self) -> None:
        """Queue the designs of both design sections (the real-data ones only when the data
        set loads) and the ten-class section's kernel limits, for the background worker
        (nothing without one: each section then computes its own)."""
        cfg = self.cfg

        def submit(designs: Any, tau0: float) -> None:
            for key in (self.design_key(d, tau0) for d in designs):
                self.jobs.submit(key, design, key)

        submit(cfg.designs, self.sample(cfg.spectra_p, 0).stats.tau0)  # the worker starts now
        try:
            tau0 = self.real_data().stats.tau0
        except Exception:  # the real-data section reports it
            pass
        else:
            submit(cfg.real_designs, tau0)
        self.jobs.submit(KERNEL_LIMITS, ten_class_kernel_limits, cfg)

    def design(self, key: DesignKey) -> Any:
        """The design of ``key`` (:meth:`design_key`), the worker's if it was submitted."""
        return self.jobs.result(key, design, key)

    def mixture_kernels(self, activation: str, p: int, draw: int) -> Any:
        """``deq.kernels(X)`` (``G*``, ``K*``, …) of the mixture sample ``(p, draw)``."""
        key = (activation, p, draw)
        if key in self._kernels:
            return self._kernels[key]
        s = self.sample(p, draw)
        kr = self.deq(activation, s.stats.tau0).kernels(s.X)
        if (p, draw) in self._keep:
            self._kernels[key] = kr
        return kr


@dataclasses.dataclass(frozen=True, eq=False)
class KernelMatch:
    """``G*`` vs ``Ḡ`` and ``K*`` vs ``K̄`` on one data set (:ref:`§4 <theory-4>`,
    :ref:`§6 <theory-6>`); with
    ``theory``, the limiting spectra predicted from the equations alone and their
    1-Wasserstein distance to the exact spectra."""

    ck: SpectralComparison
    ntk: SpectralComparison
    theory: Mapping[str, Any] | None = None
    w1_theory: Mapping[str, float] | None = None

    def comparison(self, kind: str) -> SpectralComparison:
        return self.ck if kind == "ck" else self.ntk

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ck": self.ck.to_dict(), "ntk": self.ntk.to_dict()}
        if self.theory is not None and self.w1_theory is not None:
            d["theory"] = {
                kind: {
                    "spikes": self.theory[kind].spikes.tolist(),
                    "w1_to_exact": self.w1_theory[kind],
                    "w1_surrogate_to_exact": self.comparison(kind).wasserstein,
                }
                for kind in ("ck", "ntk")
            }
        return d


def match_kernels(
    deq: Any, X: np.ndarray, stats: Any, labels: np.ndarray, *, top: int, kernels: Any = None,
    surrogates: tuple[np.ndarray, np.ndarray] | None = None, theory_of: Any = None,
) -> KernelMatch:  # fmt: skip
    """Compare the exact ``G*``, ``K*`` of ``deq`` on ``X`` with the surrogates from ``stats``.

    ``kernels`` reuses an already computed ``deq.kernels(X)`` and ``surrogates`` the
    pair ``(Ḡ, K̄)``; ``theory_of`` (the
    mixture sample, or anything :func:`deqfast.theory_spectrum` takes) adds the
    predicted limiting spectra.
    """
    kr = kernels if kernels is not None else deq.kernels(X)
    if surrogates is None:
        surrogates = (deq.ck_surrogate(X, stats), deq.ntk_surrogate(X, stats))
    Gb, Kb = surrogates
    with single_blas():
        cg = compare_spectra(kr.G, Gb, labels=labels, top=top, names=("G*", "Ḡ"))
        ck = compare_spectra(kr.K, Kb, labels=labels, top=top, names=("K*", "K̄"))
    if theory_of is None:
        return KernelMatch(cg, ck)
    from deqfast.theory import theory_spectrum

    n = X.shape[0]
    theory = {kind: theory_spectrum(deq, theory_of, n, kernel=kind) for kind in ("ck", "ntk")}
    w1 = {kind: theory[kind].wasserstein(c.eigvals_a) for kind, c in (("ck", cg), ("ntk", ck))}
    return KernelMatch(cg, ck, theory, w1)


# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True, eq=False)
class MixtureResult:
    """Surrogate errors over ``p`` (``errors[act][key]``, shape ``(len(ps), draws)``, keys
    ``ck_op``, ``ck_fro``, ``ntk_op``, ``ntk_fro``) and the spectra at ``spectra_p``."""

    ps: tuple[int, ...]
    ns: tuple[int, ...]
    draws: int
    activations: tuple[str, ...]
    sigma_a2: float
    n_ratio: float
    spectra_p: int
    errors: Mapping[str, Mapping[str, np.ndarray]]
    spectra: Mapping[str, KernelMatch]

    @property
    def spectra_n(self) -> int:
        return self.ns[self.ps.index(self.spectra_p)]

    def mean(self, activation: str, key: str) -> np.ndarray:
        """Errors averaged over the draws, one per ``p``."""
        return self.errors[activation][key].mean(axis=1)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ps": list(self.ps)}
        for a in self.activations:
            d[a] = {
                **{k: self.mean(a, k).tolist() for k in _ERROR_KEYS},
                **{k + "_draws": self.errors[a][k].tolist() for k in _ERROR_KEYS},
            }
        d["spectra"] = {
            a: {"p": self.spectra_p, "n": self.spectra_n, **m.to_dict()}
            for a, m in self.spectra.items()
        }
        return d


def compute_mixture(cfg: ReproduceConfig, ws: Workspace, bars: Progress) -> MixtureResult:
    """Exact kernels against the surrogates over ``cfg.ps`` and draws, spectra at
    ``cfg.spectra_p`` (:ref:`§4 <theory-4>`, :ref:`§6 <theory-6>`)."""
    err = {a: {k: np.zeros((len(cfg.ps), cfg.draws)) for k in _ERROR_KEYS} for a in cfg.activations}
    steps = [(p, r, a) for p in cfg.ps for r in range(cfg.draws) for a in cfg.activations]
    surrogates = {}
    gram: tuple[tuple[int, int], np.ndarray] | None = None  # X Xᵀ, shared by the activations
    for p, r, act in bars.bar(steps, "mixture: exact kernels vs surrogates"):
        s = ws.sample(p, r)
        deq = ws.deq(act, s.stats.tau0)
        kr = ws.mixture_kernels(act, p, r)
        if gram is None or gram[0] != (p, r):
            gram = ((p, r), s.X @ s.X.T)
        Gb = deq.ck_surrogate(s.X, s.stats, gram=gram[1])
        Kb = deq.ntk_surrogate(s.X, s.stats, gram=gram[1])
        if (p, r) == (cfg.spectra_p, 0) and act in cfg.spectra_activations:
            surrogates[act] = (Gb, Kb)
        i = cfg.ps.index(p)
        e = err[act]
        e["ck_op"][i, r], e["ck_fro"][i, r] = relative_errors(kr.G, Gb)
        e["ntk_op"][i, r], e["ntk_fro"][i, r] = relative_errors(kr.K, Kb)
    spectra = {}
    if cfg.spectra_p in cfg.ps:
        s = ws.sample(cfg.spectra_p, 0)
        for act in bars.bar(list(cfg.spectra_activations), "mixture: spectra"):
            spectra[act] = match_kernels(
                ws.deq(act, s.stats.tau0), s.X, s.stats, s.labels, top=cfg.top,
                kernels=ws.mixture_kernels(act, cfg.spectra_p, 0), surrogates=surrogates[act],
                theory_of=s,
            )  # fmt: skip
    return MixtureResult(
        ps=tuple(cfg.ps), ns=tuple(round(cfg.n_ratio * p) for p in cfg.ps), draws=cfg.draws,
        activations=tuple(cfg.activations), sigma_a2=cfg.sigma_a2, n_ratio=cfg.n_ratio,
        spectra_p=cfg.spectra_p, errors=err, spectra=spectra,
    )  # fmt: skip


# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True, eq=False)
class DesignRow:
    """One designed explicit net judged by exact kernels against an undesigned baseline."""

    activation: str
    target: str
    family_asked: str
    family: str
    matched: bool
    net: str
    summary: str
    designed: SpectralComparison
    baseline: SpectralComparison

    @property
    def key(self) -> str:
        return f"{self.activation}_{self.target}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "matched": self.matched,
            "net": self.net,
            "summary": self.summary,
            "designed": self.designed.to_dict(),
            "baseline_relu": self.baseline.to_dict(),
        }


@dataclasses.dataclass(frozen=True, eq=False)
class DesignSection:
    """Designs judged on one data set (``p``, ``n``), one :class:`DesignRow` per design."""

    p: int
    n: int
    rows: tuple[DesignRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"p": self.p, "n": self.n, **{r.key: r.to_dict() for r in self.rows}}


def judge_designs(
    designs: Any, ws: Workspace, exact_of: Any, X: np.ndarray, labels: np.ndarray, tau0: float,
    *, top: int, bars: Progress, desc: str,
) -> tuple[DesignRow, ...]:  # fmt: skip
    """Design an explicit net for each ``(activation, target, family)`` (for the DEQ with
    ``tau0``, by ``ws.design``) and compare its exact kernel with the DEQ's
    (``exact_of(activation, target)``) and with an undesigned one-layer ReLU net's."""
    from deqfast.explicit import ExplicitNet

    base = ExplicitNet(["relu"], tau0=tau0)
    base_kernel: dict[str, np.ndarray] = {}
    rows = []
    for act, target, family in bars.bar(list(designs), desc):
        ref = exact_of(act, target)
        d = ws.design(ws.design_key((act, target, family), tau0))
        net = d.net
        M = net.ck(X) if target == "ck" else net.ntk(X)
        if target not in base_kernel:
            base_kernel[target] = base.ck(X) if target == "ck" else base.ntk(X)
        names = ("G*", "designed CK") if target == "ck" else ("K*", "designed NTK")
        with single_blas():
            c = compare_spectra(ref, M, labels=labels, top=top, names=names)
            cb = compare_spectra(
                ref, base_kernel[target], labels=labels, top=top, names=(names[0], "1-layer ReLU")
            )
        rows.append(
            DesignRow(
                activation=act, target=target, family_asked=family, family=d.family,
                matched=bool(d.converged), net=repr(net), summary=str(d.summary()), designed=c,
                baseline=cb,
            )
        )  # fmt: skip
    return tuple(rows)


def compute_design(cfg: ReproduceConfig, ws: Workspace, bars: Progress) -> DesignSection:
    """The designed explicit nets of ``cfg.designs`` on the mixture sample at ``spectra_p``
    (:ref:`§5 <theory-5>`)."""
    s = ws.sample(cfg.spectra_p, 0)

    def exact(act: str, target: str) -> np.ndarray:
        kr = ws.mixture_kernels(act, cfg.spectra_p, 0)
        return kr.G if target == "ck" else kr.K

    rows = judge_designs(
        cfg.designs, ws, exact, s.X, s.labels, s.stats.tau0,
        top=cfg.top, bars=bars, desc="design: explicit nets",
    )  # fmt: skip
    return DesignSection(p=cfg.spectra_p, n=s.n, rows=rows)


# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True, eq=False)
class FiniteWidthResult:
    """``‖CK_m − G*‖/‖G*‖`` (``ck_op[act]``, and Frobenius ``ck_fro``) and the adjoint
    empirical NTK's ``‖NTK_m − K*‖/‖K*‖`` (``ntk_op[act]``) over ``widths``."""

    p: int
    n: int
    widths: tuple[int, ...]
    trials: int
    activations: tuple[str, ...]
    ck_op: Mapping[str, np.ndarray]
    ck_fro: Mapping[str, np.ndarray]
    ntk_op: Mapping[str, np.ndarray]

    def to_dict(self) -> dict[str, Any]:
        return {
            "p": self.p,
            "n": self.n,
            "widths": list(self.widths),
            **{
                a: {
                    "ck_op": self.ck_op[a].tolist(),
                    "ck_fro": self.ck_fro[a].tolist(),
                    "ntk_op": self.ntk_op[a].tolist(),
                }
                for a in self.activations
            },
        }


def compute_finite_width(cfg: ReproduceConfig, ws: Workspace, bars: Progress) -> FiniteWidthResult:
    """Empirical CK and adjoint empirical NTK of finite-width DEQs against ``G*``, ``K*`` on
    the sample at ``finite_p`` (:ref:`§3 <theory-3>`); the weights of width ``m`` come from
    ``default_rng([seed, 7, m])``.  Both estimates come from the same draws: the NTK's
    forward passes give the CK as well (``empirical_ntk(..., ck_out=...)``, equal to
    ``empirical_ck`` with the same seed), which saves one forward solve per draw.  Every
    activation gets the same draws of a width, drawn once (``empirical_ntk(...,
    weights=...)``), the next width's by a thread while the solves of this one run."""
    from concurrent.futures import ThreadPoolExecutor

    from deqfast.finite import draw_weights, empirical_ntk

    s = ws.sample(cfg.finite_p, 0)
    acts = tuple(cfg.spectra_activations)
    op, fro, ntk = ({a: np.zeros(len(cfg.finite_widths)) for a in acts} for _ in range(3))

    def draws(w: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([cfg.seed, 7, w])
        return [draw_weights(w, s.p, seed=rng) for _ in range(cfg.finite_trials)]

    steps = [(i, w, a) for i, w in enumerate(cfg.finite_widths) for a in acts]
    pool = ThreadPoolExecutor(1)  # numpy's generators release the GIL while they fill arrays
    try:
        ahead = {0: pool.submit(draws, cfg.finite_widths[0])}
        weights: Any = None
        for i, w, act in bars.bar(steps, "finite width: empirical CK and NTK"):
            if i in ahead:  # the first step of width i
                weights = ahead.pop(i).result()
                if i + 1 < len(cfg.finite_widths):
                    ahead[i + 1] = pool.submit(draws, cfg.finite_widths[i + 1])
            kr = ws.mixture_kernels(act, cfg.finite_p, 0)
            deq = ws.deq(act, s.stats.tau0)
            C = np.empty((s.n, s.n))
            N = empirical_ntk(
                deq, s.X, w, trials=cfg.finite_trials, weights=weights, method="adjoint",
                tol=cfg.finite_tol, progress=False, ck_out=C,
            )  # fmt: skip
            op[act][i], fro[act][i] = relative_errors(kr.G, C)
            ntk[act][i] = relative_errors(kr.K, 0.5 * (N + N.T))[0]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return FiniteWidthResult(
        p=cfg.finite_p, n=s.n, widths=tuple(cfg.finite_widths), trials=cfg.finite_trials,
        activations=acts, ck_op=op, ck_fro=fro, ntk_op=ntk,
    )  # fmt: skip
