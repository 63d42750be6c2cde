"""Benchmark and accuracy record of deqfast.theory.

1. Runtime of ``mp_mixture_density`` and ``theory_spectrum`` for p = 1000 diagonal
   covariances (K = 2, 3; n/p = 0.5, 2), best of 3.
2. 1-Wasserstein distance (relative to the spectral spread) between the predicted law and
   simulated surrogate spectra as n grows (K = 2 and 3, n/p = 0.5 and 2).
3. For the DEQ's exact Implicit-CK ``G*`` at n = p = 1024 on ``GaussianMixture.paper``
   (ReLU and tanh, σ_a² = 0.2): W1 of the theory curve vs the exact spectrum, next to the
   surrogate's own W1, spikes; writes the overlay PNG to docs/figures/.

    python benchmarks/bench_theory.py            # writes benchmarks/results/theory.json
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

import numpy as np
import scipy.linalg as sla

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import deqfast as df  # noqa: E402
from deqfast.coefficients import KernelCoefficients  # noqa: E402
from deqfast.surrogate import surrogate_matrix  # noqa: E402
from deqfast.theory import mp_mixture_density, theory_spectrum  # noqa: E402
from test_theory import COEF, _mixture  # noqa: E402

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None


def _best(f, repeat: int = 3) -> float:
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def runtime() -> list[dict]:
    rows = []
    for K in (2, 3):
        gm = _mixture(1000, K, seed=0)
        for c in (0.5, 2.0):
            n = int(c * 1000)
            t_bulk = _best(lambda gm=gm, n=n: mp_mixture_density(gm, n))
            t_full = _best(lambda gm=gm, n=n: theory_spectrum(COEF, gm, n))
            rows.append({"K": K, "n": n, "p": 1000, "bulk_s": t_bulk, "theory_spectrum_s": t_full})
            print(f"runtime K={K} n={n} p=1000: bulk {t_bulk:.3f} s, full {t_full:.3f} s")
    return rows


def wasserstein_vs_n() -> list[dict]:
    rows = []
    for K in (2, 3):
        for c in (0.5, 2.0):
            for p in (100, 200, 400, 800):
                n = int(c * p)
                gm = _mixture(p, K, seed=K)
                ts = theory_spectrum(COEF, gm, n)
                vals = []
                for seed in range(3):
                    s = gm.sample(n, seed=seed)
                    w = sla.eigvalsh(surrogate_matrix(s.X, s.stats, COEF))
                    vals.append(ts.wasserstein(w, relative=True))
                rows.append({"K": K, "c": c, "p": p, "n": n, "w1_rel_mean": float(np.mean(vals))})
                print(f"W1/spread K={K} n/p={c} p={p}: {np.mean(vals):.5f}")
    return rows


def deq_overlay() -> list[dict]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = n = 1024
    gm = df.GaussianMixture.paper(p)
    s = gm.sample(n, seed=0)
    rows = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, act in zip(axes, ("relu", "tanh")):
        deq = df.DEQ(act, sigma_a2=0.2, tau0=gm.tau0)
        G = deq.ck(s.X)
        Gs = deq.ck_surrogate(s.X, s.stats)
        t = time.perf_counter()
        ts = theory_spectrum(deq, gm, n, kernel="ck")
        t_theory = time.perf_counter() - t
        we, ws = sla.eigvalsh(G), sla.eigvalsh(Gs)
        spread = float(we[-1] - we[0])
        row = {
            "activation": act,
            "theory_s": t_theory,
            "w1_theory_vs_exact": ts.wasserstein(we),
            "w1_surrogate_vs_exact": float(np.mean(np.abs(we - ws))),
            "w1_theory_vs_surrogate": ts.wasserstein(ws),
            "spread": spread,
            "spikes_theory": ts.spikes.tolist(),
            "spikes_surrogate": np.sort(ws)[::-1][: ts.spikes.size].tolist(),
            "spikes_exact": np.sort(we)[::-1][: ts.spikes.size].tolist(),
            "alignments_theory": ts.alignments.tolist(),
            "bulk_edges_theory": list(ts.edges),
        }
        rows.append(row)
        print(act, json.dumps(row))
        bulk = we[we <= ts.edges[1] * 1.05]
        heights, _, _ = ax.hist(
            bulk, bins=70, density=True, color="0.75", label=f"exact G* eigenvalues (n = p = {n})"
        )
        frac = 1.0 - ts.spikes.size / n  # the histogram shows the bulk only
        ax.plot(ts.grid, ts.density / frac, "C3", lw=1.8, label="theory (mixture MP law)")
        ax.set_title(
            f"{act} DEQ, σ_a² = 0.2: W1 theory {row['w1_theory_vs_exact']:.4f}, "
            f"surrogate {row['w1_surrogate_vs_exact']:.4f}",
            fontsize=10,
        )
        ax.set_ylim(0, 1.5 * float(np.max(heights)))  # n = p: the density diverges at 0+
        ax.set_xlabel("eigenvalue (bulk; the two spikes are far right)")
        ax.set_ylabel("density")
        text = "spikes: theory " + ", ".join(f"{v:.3f}" for v in ts.spikes)
        text += "\n        exact  " + ", ".join(f"{v:.3f}" for v in row["spikes_exact"])
        ax.text(
            0.97, 0.55, text, transform=ax.transAxes, ha="right", fontsize=8, family="monospace"
        )
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    out = os.path.join(ROOT, "docs", "figures", "theory_ck_relu_tanh_n1024.png")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    fig.savefig(out, dpi=110)
    print("wrote", out)
    return rows


def main() -> None:
    ctx = threadpool_limits(limits=1, user_api="blas") if threadpool_limits else None
    if ctx is not None:
        ctx.__enter__()
    result = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "runtime_p1000_diag": runtime(),
        "w1_relative_vs_n": wasserstein_vs_n(),
        "deq_ck_n1024": deq_overlay(),
    }
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "theory.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    print("wrote benchmarks/results/theory.json")


if __name__ == "__main__":
    _ = KernelCoefficients  # re-exported for readers of this script
    main()
