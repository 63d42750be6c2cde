"""CPU seconds of :func:`deqfast.compare_spectra` and :func:`deqfast.spectra.relative_errors`
on the report's matrices, with BLAS on one thread (the report's setting).

The exact ``G*``, ``K*`` (ReLU and tanh, σ_a² = 0.2) and their surrogates ``Ḡ``, ``K̄`` on
the authors' mixture ``GaussianMixture.paper(p).sample(0.8 p, seed=0)``, as in
``deqfast reproduce``: ``compare_spectra(A, B, labels=..., top=3)`` with an empty cache
(both matrices decomposed: what every new pair costs) at ``spectra_p``, and
``relative_errors(A, B)`` at every ``p``.  Each figure is the median over ``--repeats``
interleaved runs of ``time.process_time()`` (CPU seconds, robust to a loaded machine).
``--baseline FILE`` times another version of ``spectra.py`` (e.g.
``git show REV:python/deqfast/spectra.py > /tmp/old.py``) interleaved with this one, and
reports the largest differences between the two versions' results.

    python benchmarks/bench_spectra.py                          # p = 2048, 1024, 512
    python benchmarks/bench_spectra.py --baseline /tmp/old.py
    python benchmarks/bench_spectra.py --ps 512 --repeats 3     # smoke run

Writes ``benchmarks/results/spectra.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

HERE = os.path.dirname(os.path.abspath(__file__))


def _load(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("spectra_baseline", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # (dataclasses look their module up)
    spec.loader.exec_module(mod)
    return mod


def _matrices(p: int) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    from deqfast.data import GaussianMixture
    from deqfast.deq import DEQ

    s = GaussianMixture.paper(p).sample(round(0.8 * p), seed=0)
    pairs = {}
    for act in ("relu", "tanh"):
        deq = DEQ(act, sigma_a2=0.2, tau0=s.stats.tau0)
        kr = deq.kernels(s.X)
        pairs[f"{act} G*"] = (kr.G, deq.ck_surrogate(s.X, s.stats))
        pairs[f"{act} K*"] = (kr.K, deq.ntk_surrogate(s.X, s.stats))
    return pairs, s.labels


def _time(f: Any) -> tuple[float, Any]:
    t = time.process_time()
    out = f()
    return time.process_time() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ps", type=int, nargs="+", default=[2048, 1024, 512])
    ap.add_argument("--spectra-p", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline", help="another spectra.py to time alongside")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "spectra.json"))
    args = ap.parse_args()

    import deqfast.spectra as current

    versions = {"current": current}
    if args.baseline:
        versions["baseline"] = _load(args.baseline)
    rows = []
    with threadpool_limits(1):
        for p in args.ps:
            pairs, labels = _matrices(p)
            n = labels.shape[0]
            tasks = {"relative_errors": lambda m, A, B: m.relative_errors(A, B)}
            if p == args.spectra_p:
                tasks["compare_spectra"] = lambda m, A, B, y=labels: m.compare_spectra(
                    A, B, labels=y, top=3
                )
            times: dict[tuple[str, str, str], list[float]] = {}
            results: dict[tuple[str, str, str], Any] = {}
            for _ in range(args.repeats):
                for name, (A, B) in pairs.items():
                    for task, f in tasks.items():
                        for v, mod in versions.items():
                            mod._CACHE.clear()
                            dt, out = _time(lambda: f(mod, A, B))  # noqa: B023
                            times.setdefault((name, task, v), []).append(dt)
                            results[(name, task, v)] = out
            for (name, task, v), ts in times.items():
                row: dict[str, Any] = {"p": p, "n": n, "pair": name, "task": task}
                row.update(version=v, cpu_s=float(np.median(ts)), runs=len(ts))
                if v == "baseline":
                    row["max_rel_diff"] = _difference(
                        results[(name, task, "current")], results[(name, task, v)]
                    )
                rows.append(row)
                extra = f"  max rel diff {row['max_rel_diff']:.1e}" if v == "baseline" else ""
                print(f"p={p} n={n} {name:8s} {task:16s} {v:8s} {row['cpu_s']:.4f} s{extra}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        meta = {"load": os.getloadavg(), "baseline": args.baseline, "repeats": args.repeats}
        json.dump({**meta, "rows": rows}, fh, indent=1)


def _difference(a: Any, b: Any) -> float:
    """Largest relative difference of two results (error pairs or comparisons)."""
    if isinstance(a, tuple):
        return max(abs(x - y) / abs(y) for x, y in zip(a, b))
    diffs = [abs(a.op_error - b.op_error) / b.op_error, abs(a.wasserstein - b.wasserstein)]
    scale = np.abs(b.eigvals_a).max()
    diffs.append(np.abs(a.eigvals_a - b.eigvals_a).max() / scale)
    diffs.append(np.abs(a.eigvecs_a - b.eigvecs_a).max())
    diffs.append(np.abs(a.eigvecs_b - b.eigvecs_b).max())
    diffs.append(np.abs(a.alignment_a - b.alignment_a).max())
    diffs.append(np.abs(a.overlap - b.overlap).max())
    return float(max(diffs))


if __name__ == "__main__":
    main()
