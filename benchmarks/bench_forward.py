"""Benchmark: finite-width DEQ forward pass, deqfast against the published loop. Not a test.

One weight draw at m = 2048 on n = 1024 samples of the authors' mixture
(GaussianMixture.paper(1280), n = 0.8 p), ReLU centred at τ*, tol = 1e-6,
σ_a² ∈ {0.2, 0.8}, σ_b² = 1 − σ_a². Compared in one run:

* ``anderson`` — deqfast.finite.forward(solver="anderson")
* ``picard``   — deqfast.finite.forward(solver="picard")
* ``published`` — a NumPy reimplementation of the loop of the authors' scripts
  (StephenLi24/INN_eqvi_ENN, ck_ntk/ck_gmm_matching.py): Picard on
  ``Z_ = φ(√σa² A Z + √σb² B X)/√m`` with both products recomputed every
  iteration and the stopping test ``np.linalg.norm(Z − Z_, 2) ≤ tol`` (a spectral
  norm, i.e. an SVD, per iteration; their absolute threshold, here 1e-6 instead of
  their 5e-6, and 500 iterations instead of their 25 so that it converges).
* ``torchdeq`` — torchdeq's ``anderson_solver`` on CPU with the same stopping
  tolerance, when the package is importable (it is not a dependency).

Also records, at full size (σ_a² = 0.8, tol = 1e-8), how many evaluations Anderson
and Picard need.

Solver section (``"solvers"`` in the JSON): ``picard``, ``anderson`` and ``auto`` in
float64 and float32 on the same problems, each against the bare matrix products of
the same number of evaluations (SciPy's ``?gemm``, the BLAS and thread pool the core
calls, on the same operands: the evaluations' products plus the input term σ_b·B·Xᵀ
formed once), plus a structured map (symmetric Gaussian Ã, real Jacobian spectrum,
σ_a² = 0.35) where acceleration pays. Each cell runs ``--repeats`` interleaved rounds
(the three solvers, then the bare products) and reports medians, with the load average
of every round. Ratios reported: Anderson / Picard time, auto / min(Picard, Anderson)
time, Picard / bare products. The core keeps its work arrays for the next solve, so each dtype
starts with one full-size Anderson solve on cold memory (recorded on its own, not in the
ratios) and the rounds measure repeated solves; the order of the solvers rotates from round
to round. Per solver it also records the core's own split (time
inside its products vs the whole solve, ``core_non_product_fraction``) and the
full-length array passes per evaluation outside the products (the core's count), which
stay meaningful when the machine is too loaded for wall-time ratios.

Activation section (``"activations"`` in the JSON; ``--activations-only`` runs it alone and
writes ``benchmarks/results/forward_activations.json``): single-thread CPU seconds of the
forward pass for ReLU, tanh, ELU and swish DEQs in the settings of ``reproduce`` (MNIST
digits, float32), one float64 row and the adjoint empirical NTK, each against ReLU's (see
``activation_section``; about two minutes with the default three rounds).

Every method's final iterate is scored with the same metric,
``‖f(Z) − Z‖_F / ‖f(Z)‖_F``, and against deqfast's Anderson equilibrium.
Writes ``benchmarks/results/forward.json``. Run: ``python benchmarks/bench_forward.py``
(about six minutes on two idle cores, half of it the solver section); ``--solvers-only``
runs the solver section alone and writes ``benchmarks/results/forward_solvers.json``.

The solver section runs with SciPy's BLAS for the core's products (``DEQFAST_GEMM=blas``),
the engine of its bare products; ``--solvers-only`` then adds an engine section
(``"engines"``): Picard solves with each engine, SciPy's BLAS and Eigen's kernel, and the
engine that ``deqfast.finite.product_engine()`` picks on this machine. ``--engines-only`` runs
that section alone and files it in ``benchmarks/results/forward_engines.json`` under the
BLAS's core type (run it once as is and once with another ``OPENBLAS_CORETYPE``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

import deqfast as df
from deqfast import finite

M, N, P = 2048, 1024, 1280
TOL = 1e-6
SIGMA_A2 = (0.2, 0.8)
SEED = 0
OUT = Path(__file__).resolve().parent / "results" / "forward.json"
OUT_SOLVERS = OUT.with_name("forward_solvers.json")
OUT_ENGINES = OUT.with_name("forward_engines.json")
SOLVERS = ("picard", "anderson", "auto")
STRUCTURED_SIGMA_A2 = 0.35
REPEATS = 3  # interleaved rounds per cell of the solver section (medians reported)
ACTIVATIONS = ("relu", "tanh", "elu", "swish")  # the activation section's forward rows
OUT_ACTIVATIONS = OUT.with_name("forward_activations.json")


def rel_residual(deq: Any, A: np.ndarray, B: np.ndarray, X: np.ndarray, Z: np.ndarray) -> float:
    """‖f(Z) − Z‖_F / ‖f(Z)‖_F for the (m, n) pre-activations Z."""
    m = A.shape[0]
    fz = math.sqrt(deq.sigma_a2 / m) * (A @ deq.phi(Z)) + math.sqrt(deq.sigma_b2) * (B @ X.T)
    return float(np.linalg.norm(fz - Z) / np.linalg.norm(fz))


def published_loop(deq: Any, A: np.ndarray, B: np.ndarray, X: np.ndarray, tol: float):
    """The authors' Picard loop (ck_gmm_matching.py), X as (n, p) rows."""
    m = A.shape[0]
    sa, sb = deq.sigma_a2, deq.sigma_b2
    phi = deq.phi
    Xt = X.T
    Zf = np.zeros((m, X.shape[0]))  # their Z: φ(z)/√m
    its = 0
    while its < 500:
        its += 1
        Z_ = phi(np.sqrt(sa) * A @ Zf + np.sqrt(sb) * B @ Xt) / np.sqrt(m)
        if np.linalg.norm(Zf - Z_, 2) > tol:
            Zf = Z_
        else:
            break
    # pre-activations of the last iterate, for scoring
    z = np.sqrt(sa) * A @ Zf + np.sqrt(sb) * B @ Xt
    return z, its


def torchdeq_run(deq: Any, A: np.ndarray, B: np.ndarray, X: np.ndarray, tol: float):
    try:
        import torch
        from torchdeq.solver import anderson_solver  # type: ignore[import-not-found]
    except Exception as exc:  # not installed: recorded, not an error
        return None, f"unavailable ({type(exc).__name__}: {exc})"
    m = A.shape[0]
    At = torch.from_numpy(A)
    U = torch.from_numpy(math.sqrt(deq.sigma_b2) * (B @ X.T))
    c = math.sqrt(deq.sigma_a2 / m)
    shift = float(deq.phi.core.shift)

    def f(z):
        return c * At @ (torch.relu(z) - shift) + U

    z0 = torch.zeros_like(U)
    t = time.perf_counter()
    z, _, info = anderson_solver(f, z0, max_iter=500, tol=tol, stop_mode="rel")
    elapsed = time.perf_counter() - t
    return (z.numpy(), elapsed, info), "ok"


def timed(fn, repeat: int = 1):
    best, out = math.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


class ReportTap:
    """Keeps the core's report of the last ``_core.deq_forward`` call made through
    ``deqfast.finite`` (its product timer and pass count are not part of ForwardResult)."""

    def __init__(self) -> None:
        self.last: Any = None
        self._orig = finite._core.deq_forward

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self._orig(*args, **kwargs)
        self.last = out[2]
        return out

    def __enter__(self) -> ReportTap:
        finite._core.deq_forward = self  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: Any) -> None:
        finite._core.deq_forward = self._orig  # type: ignore[attr-defined]


def bare_products(
    A: np.ndarray, B: np.ndarray, X: np.ndarray, dtype: Any, repeat: int = 3
) -> tuple[list[float], list[float]]:
    """Times of the products the solver cannot avoid, with SciPy's ?gemm (the BLAS the core
    calls, same thread pool) on the same operands and layouts as the core: one evaluation's
    ``c·A·Φ + U`` (β = 1 on a prepared output) and the input term ``σ_b·B·Xᵀ`` formed once
    per solve."""
    from scipy.linalg import blas

    gemm = blas.dgemm if dtype == np.float64 else blas.sgemm
    m, n = A.shape[0], X.shape[0]
    At = np.ascontiguousarray(A, dtype=dtype).T  # Fortran views of the transposes: no copies
    Bt = np.ascontiguousarray(B, dtype=dtype).T
    Xt = np.ascontiguousarray(X, dtype=dtype).T
    Phi = np.asfortranarray(np.random.default_rng(1).standard_normal((m, n)).astype(dtype))
    C = np.asfortranarray(np.ones((m, n), dtype=dtype))
    t_eval, t_input = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        gemm(0.5, At, Phi, beta=1.0, c=C, trans_a=1, overwrite_c=True)
        t_eval.append(time.perf_counter() - t)
        t = time.perf_counter()
        gemm(0.5, Bt, Xt, trans_a=1)
        t_input.append(time.perf_counter() - t)
    return t_eval, t_input


def structured_weights(m: int, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric Gaussian Ã (GOE scaling): J = c·Ã·diag φ' has a real spectrum."""
    A, B, v = finite.draw_weights(m, p, seed=SEED + 1)
    return (A + A.T) / math.sqrt(2.0), B, v


def solver_section(
    sample: Any, X: np.ndarray, weights: tuple[Any, ...], repeats: int = REPEATS
) -> dict[str, Any]:
    """picard / anderson / auto in float64 and float32 against the bare products.

    Per cell, ``repeats`` rounds, each running the three solvers one after another and then
    timing the bare products; every figure is the median over the rounds, so that a burst of
    machine load during one solve does not decide a ratio. The bare time of a solver is
    ``median(input term) + evaluations × median(one evaluation's product)``.
    """
    with product_engine("blas"):  # the bare products below are SciPy's ?gemm
        return _solver_section(sample, X, weights, repeats)


def _solver_section(
    sample: Any, X: np.ndarray, weights: tuple[Any, ...], repeats: int
) -> dict[str, Any]:
    cases = [(f"sigma_a2={sa2}", sa2, weights) for sa2 in SIGMA_A2]
    cases.append(
        (
            f"structured sigma_a2={STRUCTURED_SIGMA_A2}",
            STRUCTURED_SIGMA_A2,
            structured_weights(M, P),
        )
    )
    out: dict[str, Any] = {}
    for dtype in (np.float64, np.float32):
        dname = np.dtype(dtype).name
        # One full-size Anderson solve first: the core keeps its work buffers for the next
        # solve (src/cpp/include/deqfast/workspace.hpp), so every timed round sees the steady
        # state of repeated solves; this first, cold solve is recorded on its own.
        deq = df.DEQ("relu", sigma_a2=SIGMA_A2[0], tau0=sample.stats.tau0)
        _, t_cold = timed(
            lambda d=deq, dt=dtype: finite.forward(
                d, X, M, weights=weights, solver="anderson", tol=TOL, dtype=dt
            )
        )
        print(f"{dname}: first (cold) anderson solve {t_cold:.2f} s", flush=True)
        out[f"{dname} first solve (cold work buffers)"] = {"anderson_seconds": t_cold}
        for label, sa2, W in cases:
            if label.startswith("structured") and dtype == np.float32:
                continue
            deq = df.DEQ("relu", sigma_a2=sa2, tau0=sample.stats.tau0)
            runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SOLVERS}
            t_eval: list[float] = []
            t_input: list[float] = []
            load = [load_note()["loadavg"]]
            for round_ in range(repeats):
                # each round starts with a different solver, so that no solver always runs
                # right after the bare products (or after one particular other solver)
                for solver in SOLVERS[round_ % 3 :] + SOLVERS[: round_ % 3]:
                    with ReportTap() as tap:
                        res, t = timed(
                            lambda s=solver, d=deq, w=W, dt=dtype: finite.forward(
                                d, X, M, weights=w, solver=s, tol=TOL, dtype=dt, max_iter=2000
                            )
                        )
                    rep = tap.last
                    runs[solver].append(
                        {
                            "seconds": t,
                            "evaluations": res.evaluations,
                            "phases": [list(ph) for ph in res.phases],
                            "residual": res.residual,
                            "core_product_seconds": rep.product_seconds,
                            "core_solve_seconds": rep.solve_seconds,
                            "array_passes": rep.array_passes,
                        }
                    )
                te, ti = bare_products(W[0], W[1], X, dtype)
                t_eval += te
                t_input += ti
                load.append(load_note()["loadavg"])
            med_eval, med_input = float(np.median(t_eval)), float(np.median(t_input))
            row: dict[str, Any] = {
                "repeats": repeats,
                "loadavg_per_round": load,
                "bare_product_seconds": {"evaluation": med_eval, "input_term": med_input},
            }
            for solver in SOLVERS:
                rs = runs[solver]
                evals = rs[-1]["evaluations"]
                t = float(np.median([r["seconds"] for r in rs]))
                prod = float(np.median([r["core_product_seconds"] for r in rs]))
                core = float(np.median([r["core_solve_seconds"] for r in rs]))
                bare = med_input + med_eval * evals
                row[solver] = {
                    "seconds": t,
                    "seconds_all": [r["seconds"] for r in rs],
                    "evaluations": evals,
                    "phases": rs[-1]["phases"],
                    "residual": rs[-1]["residual"],
                    "bare_products_seconds": bare,
                    "over_bare_products": t / bare,
                    # the core's own split: time in its products vs the rest of the solve
                    "core_product_seconds": prod,
                    "core_solve_seconds": core,
                    "core_non_product_fraction": (core - prod) / prod,
                    "array_passes_per_evaluation": rs[-1]["array_passes"] / evals,
                }
                print(
                    f"{dname} {label}: {solver:8s} {t:7.2f} s  {evals:4d} evaluations  "
                    f"{row[solver]['over_bare_products']:.2f}x bare products  "
                    f"non-product {row[solver]['core_non_product_fraction']:.1%}  "
                    f"{row[solver]['array_passes_per_evaluation']:.1f} passes/evaluation  "
                    f"{'+'.join(ph[0] for ph in rs[-1]['phases'])}",
                    flush=True,
                )
            tp, ta, tau = (row[k]["seconds"] for k in SOLVERS)
            row["ratios"] = {
                "anderson_over_picard_time": ta / tp,
                "auto_over_best_time": tau / min(tp, ta),
                "picard_over_bare_products": row["picard"]["over_bare_products"],
                "anderson_over_picard_evaluations": row["anderson"]["evaluations"]
                / row["picard"]["evaluations"],
            }
            print(f"{dname} {label}: {json.dumps(row['ratios'])}", flush=True)
            out[f"{dname} {label}"] = row
    return out


def load_note() -> dict[str, Any]:
    """Machine load around a measurement (os.getloadavg: 1, 5, 15 min)."""
    try:
        return {"loadavg": list(os.getloadavg()), "cpu_count": os.cpu_count()}
    except OSError:
        return {"loadavg": None, "cpu_count": os.cpu_count()}


def activation_section(repeats: int = REPEATS) -> dict[str, Any]:
    """CPU seconds (time.process_time, one thread, median of ``repeats`` interleaved rounds)
    of the forward pass per activation, against ReLU's in the same setting: the elementwise
    activation work (src/cpp/include/deqfast/elementwise.hpp) is what differs between them.
    The ``reproduce`` settings: 5000 MNIST digits, m = 1024, float32, tol 1e-4, sigma_a2 = 0.2
    (evaluation counts recorded: equal counts make the ratio a per-evaluation cost); one
    float64 tol 1e-8 row on 2000 digits; and the adjoint empirical NTK (forward + adjoint,
    float32, tol 1e-5) at m = 4096 on 410 mixture samples of p = 512, as ``reproduce`` runs it."""
    from threadpoolctl import threadpool_limits

    ds = df.datasets.load_mnist()
    X = np.ascontiguousarray(ds.X[:5000])
    W = finite.draw_weights(1024, X.shape[1], seed=SEED)
    mix = df.GaussianMixture.paper(512).sample(410, seed=SEED)
    Wn = [finite.draw_weights(4096, 512, seed=SEED)]

    def forward(act: str, n: int, dtype: Any, tol: float) -> Callable[[], dict[str, Any]]:
        deq = df.DEQ(act, sigma_a2=0.2, tau0=ds.stats.tau0)
        return lambda: {
            "evaluations": finite.forward(
                deq, X[:n], 1024, weights=W, dtype=dtype, tol=tol, num_threads=1
            ).evaluations
        }

    def ntk(act: str) -> Callable[[], dict[str, Any]]:
        deq = df.DEQ(act, sigma_a2=0.2, tau0=mix.stats.tau0)
        return lambda: {
            "shape": finite.empirical_ntk(
                deq, mix.X, 4096, weights=Wn, tol=1e-5, progress=False, num_threads=1
            ).shape
        }

    # (activation, setting) -> the timed call
    cases: dict[tuple[str, str], Callable[[], dict[str, Any]]] = {}
    for act in ACTIVATIONS:
        cases[act, "float32 tol=1e-4 n=5000"] = forward(act, 5000, np.float32, 1e-4)
    for act in ("relu", "tanh"):
        cases[act, "float64 tol=1e-8 n=2000"] = forward(act, 2000, np.float64, 1e-8)
        cases[act, "empirical NTK (adjoint) m=4096 n=410"] = ntk(act)
    times: dict[tuple[str, str], list[float]] = {k: [] for k in cases}
    info: dict[tuple[str, str], dict[str, Any]] = {}
    load_before = load_note()
    with threadpool_limits(1):
        for r in range(repeats):
            for key, fn in cases.items():
                t = time.process_time()
                info[key] = fn()
                times[key].append(time.process_time() - t)
            print(f"activation round {r + 1}/{repeats} done", flush=True)
    cells: dict[str, Any] = {}
    for (act, setting), ts in times.items():
        cpu = float(np.median(ts))
        ratio = cpu / float(np.median(times["relu", setting]))
        cells[f"{act} {setting}"] = {**info[act, setting], "cpu_seconds": cpu, "over_relu": ratio}
        print(f"{act} {setting}: {cpu:.3f} s CPU, {ratio:.3f}x relu", flush=True)
    return {"load_before": load_before, "cells": cells, "load_after": load_note()}


@contextlib.contextmanager
def product_engine(name: str | None) -> Iterator[None]:
    """Run the block with ``finite.product_engine()`` fixed to ``name`` (``None``: its
    automatic choice; its environment variable set or unset, its cache cleared), then
    restore both."""
    old = os.environ.get(finite.GEMM_ENV)
    if name is None:
        os.environ.pop(finite.GEMM_ENV, None)
    else:
        os.environ[finite.GEMM_ENV] = name
    finite.product_engine.cache_clear()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(finite.GEMM_ENV, None)
        else:
            os.environ[finite.GEMM_ENV] = old
        finite.product_engine.cache_clear()


def engine_section(repeats: int = REPEATS) -> dict[str, Any]:
    """Picard forward solves with each product engine (SciPy's BLAS, Eigen's kernel) on the
    same problems, interleaved: the solver section's problem in float64 and float32, and the
    shape of ``reproduce``'s ten-class features (m = 1024, n = 5000, p = 784, float32, one
    thread, as the grid's tasks run). Medians of ``repeats`` rounds; the ratio eigen / blas,
    and the engine ``finite.product_engine()`` picks on this machine."""
    from threadpoolctl import threadpool_info, threadpool_limits

    with product_engine(None):
        chosen = finite.product_engine()
    out: dict[str, Any] = {
        "chosen": chosen,
        "eigen_simd": df._core.eigen_simd,
        "blas": [
            {k: i.get(k) for k in ("internal_api", "version", "architecture", "filepath")}
            for i in threadpool_info()
            if i.get("user_api") == "blas"
        ],
        "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
        "cases": {},
    }
    cases = [
        ("m=2048 n=1024 p=1280 float64, 2 threads", 2048, 1024, 1280, np.float64, None),
        ("m=2048 n=1024 p=1280 float32, 2 threads", 2048, 1024, 1280, np.float32, None),
        ("m=1024 n=5000 p=784 float32, 1 thread", 1024, 5000, 784, np.float32, 1),
    ]
    for label, m, n, p, dtype, threads in cases:
        sample = df.GaussianMixture.paper(p).sample(n, seed=SEED)
        X = np.ascontiguousarray(sample.X)
        W = finite.draw_weights(m, p, seed=SEED)
        deq = df.DEQ("relu", sigma_a2=SIGMA_A2[0], tau0=sample.stats.tau0)
        times: dict[str, list[float]] = {"blas": [], "eigen": []}
        evals = {}
        for round_ in range(repeats + 1):  # round 0 warms both engines up, not recorded
            for engine in ("blas", "eigen") if round_ % 2 else ("eigen", "blas"):
                with product_engine(engine), threadpool_limits(limits=threads):
                    res, t = timed(
                        lambda d=deq, x=X, m=m, w=W, dt=dtype, th=threads: finite.forward(
                            d, x, m, weights=w, solver="picard", tol=1e-4 if dt == np.float32
                            else TOL, dtype=dt, num_threads=th,
                        )
                    )  # fmt: skip
                if round_:
                    times[engine].append(t)
                evals[engine] = res.evaluations
        med = {k: float(np.median(v)) for k, v in times.items()}
        out["cases"][label] = {
            "seconds": med,
            "seconds_all": times,
            "evaluations": evals,
            "eigen_over_blas": med["eigen"] / med["blas"],
            "load": load_note()["loadavg"],
        }
        print(
            f"engines {label}: blas {med['blas']:.3f} s, eigen {med['eigen']:.3f} s "
            f"(eigen/blas {med['eigen'] / med['blas']:.2f}), {evals} evaluations; "
            f"auto picks {chosen}",
            flush=True,
        )
    return out


def main_solvers(repeats: int = REPEATS) -> dict[str, Any]:
    sample = df.GaussianMixture.paper(P).sample(N, seed=SEED)
    X = np.ascontiguousarray(sample.X)
    W = finite.draw_weights(M, P, seed=SEED)
    deq = df.DEQ("relu", sigma_a2=0.5, tau0=sample.stats.tau0)
    finite.forward(deq, X[:64], 256, seed=1)  # warm-up
    results = {
        "setting": {"m": M, "n": N, "p": P, "tol": TOL, "activation": "relu (centred at tau*)"},
        "load_before": load_note(),
        "solvers": solver_section(sample, X, W, repeats),
        "engines": engine_section(repeats),
        "load_after": load_note(),
    }
    OUT_SOLVERS.parent.mkdir(parents=True, exist_ok=True)
    OUT_SOLVERS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT_SOLVERS}")
    return results


def main(repeats: int = REPEATS) -> dict[str, Any]:
    sample = df.GaussianMixture.paper(P).sample(N, seed=SEED)
    X = np.ascontiguousarray(sample.X)
    A, B, v = finite.draw_weights(M, P, seed=SEED)
    results: dict[str, Any] = {
        "setting": {
            "m": M,
            "n": N,
            "p": P,
            "tol": TOL,
            "activation": "relu (centred at tau*)",
            "data": "GaussianMixture.paper(1280).sample(1024, seed=0)",
            "weights_seed": SEED,
        },
        "machine": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "deqfast_openmp": bool(df._core.has_openmp),
        },
        "load_before": load_note(),
        "runs": {},
    }
    # warm-up (BLAS thread pools, page faults)
    np.linalg.norm(np.ones((256, 128)), 2)
    for sa2 in SIGMA_A2:
        deq = df.DEQ("relu", sigma_a2=sa2, tau0=sample.stats.tau0)
        finite.forward(deq, X[:64], 256, seed=1)
        run: dict[str, Any] = {}
        ours: dict[str, Any] = {}
        for solver in ("anderson", "picard"):
            res, t = timed(
                lambda s=solver, d=deq: finite.forward(
                    d, X, M, weights=(A, B, v), solver=s, tol=TOL
                )
            )
            ours[solver] = res
            run[solver] = {
                "seconds": t,
                "evaluations": res.evaluations,
                "iterations": res.iterations,
                "seconds_per_evaluation": t / res.evaluations,
                "residual": res.residual,
                "converged": res.converged,
            }
            print(
                f"sigma_a2={sa2}: {solver:9s} {t:7.2f} s  {res.evaluations:3d} evaluations  "
                f"residual {res.residual:.2e}",
                flush=True,
            )
        Zref = ours["anderson"].Z.T
        run["picard"]["rel_diff_to_anderson"] = float(
            np.linalg.norm(ours["picard"].Z.T - Zref) / np.linalg.norm(Zref)
        )

        (zpub, its), t = timed(lambda d=deq: published_loop(d, A, B, X, TOL))
        run["published"] = {
            "seconds": t,
            "iterations": its,
            "evaluations": its,
            "seconds_per_evaluation": t / its,
            "residual": rel_residual(deq, A, B, X, zpub),
            "rel_diff_to_anderson": float(np.linalg.norm(zpub - Zref) / np.linalg.norm(Zref)),
        }
        print(
            f"sigma_a2={sa2}: published {t:7.2f} s  {its:3d} iterations   "
            f"residual {run['published']['residual']:.2e}",
            flush=True,
        )

        tdq, status = torchdeq_run(deq, A, B, X, TOL)
        if tdq is None:
            run["torchdeq"] = {"status": status}
        else:
            z, t, info = tdq
            run["torchdeq"] = {
                "status": status,
                "seconds": t,
                "residual": rel_residual(deq, A, B, X, z),
                "info": {
                    k: (float(v_) if np.ndim(v_) == 0 else None) for k, v_ in dict(info).items()
                },
            }
        print(f"sigma_a2={sa2}: torchdeq  {run['torchdeq'].get('status')}", flush=True)

        t_pub, t_and, t_pic = (run[k]["seconds"] for k in ("published", "anderson", "picard"))
        run["ratios"] = {
            "published_over_anderson_time": t_pub / t_and,
            "published_over_picard_time": t_pub / t_pic,
            "picard_over_anderson_time": t_pic / t_and,
            "picard_over_anderson_evaluations": run["picard"]["evaluations"]
            / run["anderson"]["evaluations"],
        }
        if "seconds" in run["torchdeq"]:
            run["ratios"]["torchdeq_over_anderson_time"] = (
                run["torchdeq"]["seconds"] / run["anderson"]["seconds"]
            )
        results["runs"][f"sigma_a2={sa2}"] = run
        print(json.dumps(run["ratios"], indent=2), flush=True)

    # Full size, sigma_a2 = 0.8, tol = 1e-8: evaluation counts only.
    deq = df.DEQ("relu", sigma_a2=0.8, tau0=sample.stats.tau0)
    acc: dict[str, Any] = {"sigma_a2": 0.8, "tol": 1e-8}
    eq = {}
    for solver in ("anderson", "picard"):
        res, t = timed(
            lambda s=solver: finite.forward(deq, X, M, weights=(A, B, v), solver=s, tol=1e-8)
        )
        eq[solver] = res
        acc[solver] = {"evaluations": res.evaluations, "seconds": t, "residual": res.residual}
    acc["picard_over_anderson_evaluations"] = (
        acc["picard"]["evaluations"] / acc["anderson"]["evaluations"]
    )
    acc["rel_diff"] = float(
        np.linalg.norm(eq["anderson"].Z - eq["picard"].Z) / np.linalg.norm(eq["picard"].Z)
    )
    results["acceptance_1"] = acc
    print(json.dumps(acc, indent=2), flush=True)
    results["solvers"] = solver_section(sample, X, (A, B, v), repeats)
    results["activations"] = activation_section(repeats)
    results["load_after"] = load_note()

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")
    return results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--solvers-only", action="store_true", help="run only the solver section (see above)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=REPEATS,
        help=f"interleaved rounds per cell of the solver section (default {REPEATS})",
    )
    parser.add_argument(
        "--engines-only",
        action="store_true",
        help="run only the engine section; its result is merged into "
        "benchmarks/results/forward_engines.json under the BLAS's core type",
    )
    parser.add_argument(
        "--activations-only",
        action="store_true",
        help="run only the activation section (see above)",
    )
    args = parser.parse_args()
    if args.solvers_only:
        main_solvers(args.repeats)
    elif args.engines_only:
        eng = engine_section(args.repeats)
        key = ",".join(sorted({str(b["architecture"]) for b in eng["blas"]})) or "unknown"
        old = json.loads(OUT_ENGINES.read_text()) if OUT_ENGINES.exists() else {}
        old[f"OpenBLAS {key}"] = eng
        OUT_ENGINES.write_text(json.dumps(old, indent=2) + "\n")
        print(f"wrote {OUT_ENGINES}")
    elif args.activations_only:
        act = activation_section(args.repeats)
        OUT_ACTIVATIONS.parent.mkdir(parents=True, exist_ok=True)
        OUT_ACTIVATIONS.write_text(json.dumps(act, indent=2) + "\n")
        print(f"wrote {OUT_ACTIVATIONS}")
    else:
        main(args.repeats)
