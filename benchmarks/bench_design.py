"""Explicit-net design: every DEQ activation × kernel × σ_a² (docs/theory.md §5, docs/design.md).

For every DEQ activation (relu, leaky_relu, elu, tanh, erf, swish, gelu, softplus),
target (CK, default NTK, NTK with ``trained="all"``) and σ_a² ∈ {0.2, 0.5}, on
``GaussianMixture.paper(p).sample(int(0.8 p), seed=0)``, run ``design_explicit`` with
the families that apply to that activation and record every candidate's coefficient
residual, exact-kernel relative operator-norm distance to the DEQ's kernel and mean
absolute eigenvalue gap, the chosen net (closest on the probe), the closest matched
net (asymptotically exact) and the authors' published design. Writes
``benchmarks/results/design.json`` (``--p 2048 --out ...`` for the size check).

    python benchmarks/bench_design.py [--p 1024] [--jobs 2]
    python benchmarks/bench_design.py --merge grid_swish.json ... [--out FILE]

``--merge`` replaces the rows of ``--out`` that the given runs (one activation per
process, written with ``--out``) re-computed, marks them ``rerun: true`` and records
each run's load and duration under ``setting.merged``.

The kernel fits run one OpenMP thread per process (``OMP_NUM_THREADS=1`` is set
before deqfast is imported); ``--jobs`` runs cells in that many processes.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import math
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ACTIVATIONS = ("relu", "leaky_relu", "elu", "tanh", "erf", "swish", "gelu", "softplus")
CELLS = (("ck", "hidden"), ("ntk", "hidden"), ("ntk", "all"))

#: Families per DEQ activation: the piecewise-linear ones for piecewise-linear DEQs, the
#: mixed skip-like layer, the input-skip net and the coefficient-exact Hermite net for
#: smooth ones, the clip and scaled nets for odd ones, and the authors' published design
#: for every DEQ.
FAMILIES = {
    "relu": ("lrelu", "lrelu3", "authors"),
    "leaky_relu": ("lrelu", "lrelu3", "authors"),
    "tanh": ("clip", "scaled", "mixed", "skip", "lrelu", "authors"),
    "erf": ("clip", "scaled", "mixed", "skip", "lrelu", "authors"),
}
SMOOTH = ("mixed", "skip", "lrelu", "hermite", "authors")


def _cell(args: tuple[str, str, str, float, int, int, tuple[str, ...] | None]) -> dict:
    import deqfast as df
    from deqfast.design import DesignWarning, design_explicit

    act, target, trained, sigma_a2, p, seed, only = args
    if p == 0:  # scikit-learn digits 6 vs 8, prepared (centred, mean ‖x‖² = 1)
        sample = df.datasets.load_digits((6, 8))
    else:
        sample = df.GaussianMixture.paper(p).sample(int(0.8 * p), seed=seed)
    deq = df.DEQ(act, sigma_a2=sigma_a2, tau0=sample.stats.tau0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DesignWarning)
        res = design_explicit(
            deq, kernel=target, trained=trained, probe=sample,
            family=only or FAMILIES.get(act, SMOOTH),
        )  # fmt: skip
    dt = time.perf_counter() - t0
    print(res.summary(), f"\n  ({dt:.1f} s)\n", flush=True)

    def rec(c) -> dict | None:
        if c is None:
            return None
        return {
            "family": c.family,
            "layers": None if c.net is None else c.net.depth,
            "residual": c.residual,
            "matched": c.matched,
            "distance": c.distance,
            "eigen_gap": c.eigen_gap,
            "note": c.note,
            "net": repr(c.net),
        }

    best_per_family: dict[str, dict] = {}
    for c in res.candidates:
        r = rec(c)
        cur = best_per_family.get(c.family)
        dist = c.distance if not math.isnan(c.distance) else math.inf
        if cur is None or dist < cur["distance"]:
            best_per_family[c.family] = r  # type: ignore[assignment]
    authors = [rec(c) for c in res.candidates if c.family == "authors"]
    return {
        "activation": act,
        "target": target,
        "trained": trained,
        "sigma_a2": sigma_a2,
        "p": int(sample.X.shape[1]),
        "n": int(sample.X.shape[0]),
        "chosen": res.family,
        "matched": res.converged,
        "residual": res.residual,
        "distance": res.distance,
        "eigen_gap": res.eigen_gap,
        "net": repr(res.net),
        "note": res.note,
        "closest": rec(res.closest),
        "exact": rec(res.exact),
        "authors": authors,
        "families": best_per_family,
        "candidates": [rec(c) for c in res.candidates],
        "seconds": dt,
    }


def _fmt(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.2g}"


def markdown(results: dict, *, goal: float = 1e-3, goal_pl: float = 1e-4) -> str:
    """The docs/design.md table: chosen net (closest), the closest matched net and the
    authors' published design, per DEQ activation, target and σ_a² (``†``: a row kept
    from an earlier run of a subset grid, ``rerun: false`` in the results file)."""
    lines = [
        "| DEQ | σ_a² | target | chosen (closest) | distance | residual | goal met "
        "| closest matched | authors as published (own σ_a², τ0) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        tgt = "CK" if r["target"] == "ck" else f"NTK {r['trained']}"
        g = goal_pl if r["activation"] in ("relu", "leaky_relu") else goal
        ex = r["exact"]
        exact = "none" if ex is None else f"{ex['family']} {_fmt(ex['distance'])}"
        au = r["authors"]
        auth = "–" if not au else f"{_fmt(au[0]['distance'])} ({_fmt(au[1]['distance'])})"
        kept = "" if r.get("rerun", True) else " †"
        lines.append(
            f"| {r['activation']} | {r['sigma_a2']:g} | {tgt} | {r['chosen']}"
            f"{'' if r['matched'] else ' ✗m'} | {_fmt(r['distance'])}{kept} "
            f"| {r['residual']:.1e} "
            f"| {'yes' if r['distance'] <= g else 'no'} | {exact} | {auth} |"
        )
    return "\n".join(lines)


def _key(row: dict) -> tuple:
    return (row["activation"], row["target"], row["trained"], row["sigma_a2"], row["p"])


def merge(out: str, paths: list[str], section: str = "rows") -> dict:
    """The results file ``out`` with the rows of the runs in ``paths`` put in place in its
    list ``section`` (``"rows"``: the main grid)."""
    with open(out) as fh:
        base = json.load(fh)
    new: dict[tuple, dict] = {}
    runs = []
    for path in paths:
        with open(path) as fh:
            run = json.load(fh)
        for row in run["rows"]:
            new[_key(row)] = dict(row, rerun=True)
        st = run["setting"]
        runs.append({"file": os.path.basename(path), "load": st["load"], "seconds": st["seconds"],
                     "date": st.get("date"), "cells": len(run["rows"])})  # fmt: skip
        if section == "rows":
            base["setting"]["families"].update(st["families"])
        runs[-1].update(section=section, families=st["families"])
    old = base.get(section, [])
    base[section] = [new.pop(_key(r), r) for r in old] + list(new.values())
    base["setting"].setdefault("merged", []).extend(runs)
    return base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, default=1024, help="mixture dimension; 0: digits 6 vs 8")
    ap.add_argument("--sigma-a2", type=float, nargs="+", default=[0.2, 0.5])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--activations", nargs="+", default=list(ACTIVATIONS))
    ap.add_argument(
        "--cells", nargs="+", default=[f"{t}:{tr}" for t, tr in CELLS],
        help="target:trained pairs (default: ck:hidden ntk:hidden ntk:all)",
    )  # fmt: skip
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument(
        "--families", nargs="+", help="only these families (default: the ones per activation)"
    )
    ap.add_argument("--out", default=os.path.join(HERE, "results", "design.json"))
    ap.add_argument("--table", metavar="JSON", help="print the Markdown table of a results file")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="merge these runs into --out")
    ap.add_argument("--section", default="rows", help="list of --out that --merge updates")
    args = ap.parse_args()
    if args.table:
        with open(args.table) as fh:
            print(markdown(json.load(fh)))
        return
    if args.merge:
        merged = merge(args.out, args.merge, args.section)
        with open(args.out, "w") as fh:
            json.dump(merged, fh, indent=1, default=float)
        print("merged", len(args.merge), "runs into", args.out)
        return

    cells = [tuple(c.split(":")) for c in args.cells]
    only = tuple(args.families) if args.families else None
    work = [
        (act, t, tr, s, args.p, args.seed, only)
        for s in args.sigma_a2
        for act in args.activations
        for t, tr in cells
    ]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as ex:
        rows = list(ex.map(_cell, work))
    out = {
        "setting": {
            "data": (
                f"GaussianMixture.paper({args.p}).sample({int(0.8 * args.p)})"
                if args.p
                else "scikit-learn digits 6 vs 8 (deqfast.datasets.load_digits)"
            ),
            "seed": args.seed,
            "sigma_a2": args.sigma_a2,
            "sigma_b2": "1 - sigma_a2",
            "distance": "||A - B||_2 / ||A||_2, A the DEQ's exact kernel",
            "eigen_gap": "(1/n) sum |lambda_i(A) - lambda_i(B)| (sorted)",
            "chosen": "closest candidate on the probe (design_explicit's default)",
            "exact": "closest candidate whose coefficients match (asymptotically exact)",
            "families": {a: list(only or FAMILIES.get(a, SMOOTH)) for a in args.activations},
            "load": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "seconds": time.perf_counter() - t0,
        },
        "rows": rows,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1, default=float)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
