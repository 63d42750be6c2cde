"""Scale benchmark (issue 7): tiled exact kernels on a LocalCluster; surrogate spectra at n = 10⁶.

Part 1 — exact Implicit-CK ``G*`` (ReLU, σ_a² = 0.2, the authors' mixture, p = 1024) for
each ``n`` through a ``LocalCluster`` (2 worker processes × 1 thread, 127.0.0.1): the
diagonal fixed points on the client, the upper tiles on the workers, spilled to a zarr
store; then Lanczos for the top eigenvalues ("spikes") and SLQ for the spectral density,
with every product reading the stored tiles (out of core). Reported: wall time per stage,
peak RSS per worker and of the client, zarr size, a spot check of one stored tile against
``DEQ.ck`` on the same rows/columns, and the surrogate ``Ḡ``'s top eigenvalues at the same
``n`` (matrix-free) next to ``G*``'s.

Part 2 — surrogate-only spectral density at n = 10⁶, p = 1000 (float32 ``X``, 4 GB, drawn
in chunks from the authors' mixture; ``M̄`` never formed): Lanczos spikes and SLQ density of
``Ḡ``, time and peak RSS, and the SLQ trace ``Σ w θ`` against the exact ``tr(Ḡ)/n``.

    python benchmarks/bench_scale.py                  # n = 8192, 32768 and the 10⁶ surrogate
    python benchmarks/bench_scale.py --quick          # n = 2048, surrogate at 2·10⁴ (smoke run)
    python benchmarks/bench_scale.py --n 4096 16384 --surrogate-n 0   # skip part 2

Writes ``benchmarks/results/scale.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np
from _memory import reset_peak, status_mib  # benchmarks/_memory.py

HERE = os.path.dirname(os.path.abspath(__file__))
SIGMA_A2 = 0.2


def _du_mib(path: str) -> float:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total / 2**20


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- part 1
def exact_run(n, p, block, client, workdir, k, tol, probes, steps):
    import deqfast as df
    from deqfast import distributed as dd
    from deqfast.linalg import lanczos_top, slq_density, surrogate_operator

    out: dict = {"n": n, "p": p, "block": block, "tiles": (-(-n // block)) ** 2}
    sample = df.GaussianMixture.paper(p).sample(n, seed=0)
    deq = df.DEQ("relu", sigma_a2=SIGMA_A2, tau0=sample.stats.tau0)
    path = os.path.join(workdir, f"ck_{n}.zarr")
    dd.reset_peak_memory(client)
    reset_peak()

    t0 = time.perf_counter()
    K = dd.kernels_blocked(
        deq, sample.X, client=client, block=block, zarr_path=path, overwrite=True, progress=False
    )
    out["kernel_seconds"] = time.perf_counter() - t0
    import zarr

    meta = dict(zarr.open_array(path, mode="r").attrs)["deqfast"]
    out["pairs"] = meta["pairs"]
    out["pairs_per_second"] = meta["pairs"] / out["kernel_seconds"]
    out["tile_cpu_seconds"] = meta["tile_seconds"]
    out["max_newton_iterations"] = meta["max_iterations"]
    out["zarr_mib"] = _du_mib(path)
    out["worker_peak_mib_kernel"] = {a: m["peak_mib"] for a, m in dd.worker_memory(client).items()}
    _log(f"n={n}: tiles -> zarr in {out['kernel_seconds']:.1f} s ({out['zarr_mib']:.0f} MiB)")

    # spot check: the last upper tile's corner against the single-machine kernel
    r = slice(0, min(256, n))
    c = slice(n - min(256, n), n)
    ref = deq.ck(sample.X[r], sample.X[c])
    out["spot_check_max_abs_diff"] = float(np.abs(K[r, c].compute() - ref).max())

    op = dd.tiled_operator(K, client=client)
    dd.reset_peak_memory(client)
    t0 = time.perf_counter()
    top = lanczos_top(op, k, tol=tol, strict=False)
    out["lanczos_seconds"] = time.perf_counter() - t0
    out["lanczos_steps"] = top.iterations
    out["lanczos_converged"] = top.converged
    out["top_eigenvalues"] = top.eigenvalues.tolist()
    out["top_residuals"] = top.residuals.tolist()
    _log(f"n={n}: Lanczos {top.iterations} steps in {out['lanczos_seconds']:.1f} s: {top}")

    t0 = time.perf_counter()
    dens = slq_density(op, probes=probes, steps=steps, seed=0)
    out["slq_seconds"] = time.perf_counter() - t0
    out["slq"] = {
        "probes": probes,
        "steps": dens.iterations,
        "reorthogonalized": dens.reorthogonalized,
        "support": list(dens.support),
        "count_above_half_top": dens.count_above(0.5 * top.eigenvalues[-1]),
    }
    edges = np.linspace(dens.support[0], 3.0, 31)
    h, _ = dens.histogram(edges)
    out["slq"]["bulk_histogram"] = {"edges": edges.tolist(), "density": h.tolist()}
    out["worker_peak_mib_spectra"] = {a: m["peak_mib"] for a, m in dd.worker_memory(client).items()}
    out["client_peak_mib"] = status_mib("VmHWM")
    _log(f"n={n}: SLQ {probes}×{dens.iterations} in {out['slq_seconds']:.1f} s")

    sop = surrogate_operator(deq, sample.X, sample.stats, kernel="ck")
    stop = lanczos_top(sop, k, tol=tol, strict=False)
    out["surrogate_top_eigenvalues"] = stop.eigenvalues.tolist()
    shutil.rmtree(path, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- part 2
def _paper_sample_float32(n: int, p: int, seed: int):
    """Draw the authors' mixture in float32 chunks (class 0 first), with exact ψ."""
    import deqfast as df

    mix = df.GaussianMixture.paper(p)
    counts = mix.class_counts(n)
    rng = np.random.default_rng(seed)
    X = np.empty((n, p), dtype=np.float32)
    psi = np.empty(n)
    labels = np.repeat(np.arange(mix.K), counts)
    tr = mix.trace_ratios
    scale = np.sqrt(np.asarray(mix.covs, dtype=np.float64))
    chunk = 1 << 15
    start = 0
    for a in range(mix.K):
        mu = (mix.means[a] / np.sqrt(p)).astype(np.float32)
        for s0 in range(start, start + int(counts[a]), chunk):
            s1 = min(start + int(counts[a]), s0 + chunk)
            z = rng.standard_normal((s1 - s0, p), dtype=np.float32)
            z *= np.float32(scale[a])
            psi[s0:s1] = np.einsum("ij,ij->i", z, z, dtype=np.float64) / p - tr[a]
            z *= np.float32(1 / np.sqrt(p))
            z += mu
            X[s0:s1] = z
        start += int(counts[a])
    stats = df.MixtureStats(
        tau0=mix.tau0, t=mix.t, T=mix.T, psi=psi, labels=labels, p=p, priors=mix.priors
    )
    return X, stats


def surrogate_run(n: int, p: int, k: int, tol: float, probes: int, steps: int):
    import deqfast as df
    from deqfast.linalg import lanczos_top, slq_density, surrogate_operator

    out: dict = {"n": n, "p": p, "X_dtype": "float32"}
    rss0 = reset_peak()
    t0 = time.perf_counter()
    X, stats = _paper_sample_float32(n, p, seed=0)
    out["sample_seconds"] = time.perf_counter() - t0
    out["X_mib"] = X.nbytes / 2**20
    deq = df.DEQ("relu", sigma_a2=SIGMA_A2, tau0=stats.tau0)
    op = surrogate_operator(deq, X, stats, kernel="ck")
    _log(f"surrogate n={n}: X drawn in {out['sample_seconds']:.1f} s; {op}")

    v = np.random.default_rng(1).standard_normal((n, 1))
    t0 = time.perf_counter()
    op.matmat(v)
    out["matvec_seconds"] = time.perf_counter() - t0
    V = np.random.default_rng(1).standard_normal((n, probes))
    t0 = time.perf_counter()
    op.matmat(V)
    out[f"matmat_{probes}_seconds"] = time.perf_counter() - t0
    del V

    t0 = time.perf_counter()
    top = lanczos_top(op, k, tol=tol, max_steps=200, strict=False)
    out["lanczos_seconds"] = time.perf_counter() - t0
    out["lanczos_steps"] = top.iterations
    out["lanczos_converged"] = top.converged
    out["top_eigenvalues"] = top.eigenvalues.tolist()
    out["top_residuals"] = top.residuals.tolist()
    _log(f"surrogate: Lanczos {top.iterations} steps in {out['lanczos_seconds']:.1f} s: {top}")
    del top

    t0 = time.perf_counter()
    dens = slq_density(op, probes=probes, steps=steps, seed=0)
    out["slq_seconds"] = time.perf_counter() - t0
    # exact tr(Ḡ)/n = c1 ‖X‖_F²/n + tr(V A Vᵀ)/n + shift, in O(np)
    sq = sum(
        float(np.einsum("ij,ij->", X[s : s + 65536], X[s : s + 65536], dtype=np.float64))
        for s in range(0, n, 65536)
    )
    trace = (op.c1 * sq + float(np.einsum("ij,jk,ik->", op.V, op.A, op.V)) + n * op.shift) / n
    out["slq"] = {
        "probes": probes,
        "steps": dens.iterations,
        "reorthogonalized": dens.reorthogonalized,
        "support": list(dens.support),
        "mean_eigenvalue_slq": float(np.sum(dens.weights * dens.nodes)),
        "mean_eigenvalue_exact": trace,
        "shift_d_minus_c1_tau0sq": op.shift,
        "mass_within_0.01_of_shift": float(dens.cdf(op.shift + 0.01) - dens.cdf(op.shift - 0.01)),
        "exact_mass_at_shift_at_least": 1.0 - (p + stats.K + 1) / n,
        "count_above_shift_plus_1": dens.count_above(op.shift + 1.0),
    }
    out["peak_rss_mib"] = status_mib("VmHWM")
    out["rss_before_mib"] = rss0
    _log(f"surrogate: SLQ {probes}×{dens.iterations} in {out['slq_seconds']:.1f} s; {dens}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, nargs="*", default=None)
    ap.add_argument("--p", type=int, default=1024)
    ap.add_argument("--block", type=int, default=4096)
    ap.add_argument("--top", type=int, default=4)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--probes", type=int, default=16)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--surrogate-n", type=int, default=None)
    ap.add_argument("--surrogate-p", type=int, default=1000)
    ap.add_argument("--workdir", default=None, help="zarr stores go here (default: a temp dir)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "scale.json"))
    args = ap.parse_args()
    sizes = args.n if args.n is not None else ([2048] if args.quick else [8192, 32768])
    block = min(args.block, 1024) if args.quick else args.block
    sn = args.surrogate_n if args.surrogate_n is not None else (20_000 if args.quick else 10**6)

    import dask
    import distributed
    import zarr

    import deqfast as df

    result: dict = {
        "setting": {
            "mixture": "GaussianMixture.paper(p)",
            "activation": "relu (centred)",
            "sigma_a2": SIGMA_A2,
            "kernel": "ck (G*)",
            "cluster": "LocalCluster(n_workers=2, threads_per_worker=1, processes=True, 127.0.0.1)",
            "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
            "versions": {
                "deqfast": df.__version__,
                "dask": dask.__version__,
                "distributed": distributed.__version__,
                "zarr": zarr.__version__,
                "numpy": np.__version__,
            },
        },
        "exact": [],
        "surrogate": None,
    }
    workdir = args.workdir or tempfile.mkdtemp(prefix="deqfast_scale_")
    if sizes:
        with (
            distributed.LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            for n in sizes:
                t0 = time.perf_counter()
                row = exact_run(
                    n, args.p, block, client, workdir, args.top, args.tol, args.probes, args.steps
                )
                row["total_seconds"] = time.perf_counter() - t0
                result["exact"].append(row)
                _log(f"n={n}: total {row['total_seconds']:.1f} s")
        if len(result["exact"]) > 1:
            a, b = result["exact"][0], result["exact"][-1]
            result["exact_scaling_exponent"] = float(
                np.log(b["kernel_seconds"] / a["kernel_seconds"]) / np.log(b["n"] / a["n"])
            )
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    if sn:
        result["surrogate"] = surrogate_run(sn, args.surrogate_p, 3, args.tol, args.probes, 50)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
