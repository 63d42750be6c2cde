"""Scale benchmark: tiled exact kernels on a LocalCluster; surrogate spectra at n = 10⁶.

Part 0 — throughput: the same exact CK (ReLU, σ_a² = 0.2, the authors' mixture, p = 1024) at
each ``n`` (default 16384) in process (``deqfast.kernels.compute_kernels``, CK only,
``num_threads=2``) and on a ``LocalCluster`` (2 worker processes × 1 thread, one C++ thread
each) through ``deqfast.distributed.kernels_blocked``, interleaved ``--repeats`` times in one
run. The cluster's result goes to three places: ``workers`` (the tiles persisted in the
workers' memory), ``zarr`` (each worker writes its tiles to a store on the local disk) and
``client`` (``.compute()``: an ``n × n`` array in this process). Reported: pairs/s
(``n(n−1)/2`` over the wall time of the whole call), the median of the paired ratios
cluster / in process (``ratio`` is the ``workers`` one), the load, and per-phase seconds from
the Dask task stream (before the first tile: diagonal solve, scatter, scheduling; the tiles'
span, compute and transfer sums, worker idle time; after the last tile: gathering and
assembly), plus the C++ assembly and zarr write sums of the zarr run.

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

    python benchmarks/bench_scale.py --n 16384 --parts throughput   # part 0 only: the ratio
    python benchmarks/bench_scale.py                  # n = 8192, 32768 and the 10⁶ surrogate
    python benchmarks/bench_scale.py --quick          # n = 2048, surrogate at 2·10⁴ (smoke run)
    python benchmarks/bench_scale.py --n 4096 16384 --surrogate-n 0   # skip part 2

Writes ``benchmarks/results/scale.json`` (``--out`` to change) after each part, keeping the
figures of parts not run (each part records its date and load).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from typing import Any

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


# --------------------------------------------------------------------------- part 0
DESTINATIONS = ("workers", "zarr", "client")


def _lanczos_into(out: dict, label: str, op: Any, k: int, **options: Any) -> Any:
    """Top-k Lanczos of ``op``, its time, steps, convergence and values recorded into ``out``."""
    from deqfast.linalg import lanczos_top

    t0 = time.perf_counter()
    top = lanczos_top(op, k, strict=False, **options)
    out["lanczos_seconds"] = time.perf_counter() - t0
    out["lanczos_steps"] = top.iterations
    out["lanczos_converged"] = top.converged
    out["top_eigenvalues"] = top.eigenvalues.tolist()
    out["top_residuals"] = top.residuals.tolist()
    _log(f"{label}: Lanczos {top.iterations} steps in {out['lanczos_seconds']:.1f} s: {top}")
    return top


def _tile_phases(stream: list[dict], t_start: float, t_end: float) -> dict:
    """Per-phase seconds of one tiled run from the Dask task stream (wall-clock times)."""
    computes = [
        ss for rec in stream for ss in rec.get("startstops", ()) if ss["action"] == "compute"
    ]
    transfers = [
        ss for rec in stream for ss in rec.get("startstops", ()) if ss["action"] == "transfer"
    ]
    if not computes:
        return {}
    first = min(ss["start"] for ss in computes)
    last = max(ss["stop"] for ss in computes)
    busy = sum(ss["stop"] - ss["start"] for ss in computes)
    return {
        "before_first_tile": first - t_start,  # diagonal solve, scatter, graph, scheduling
        "tiles_span": last - first,
        "task_compute_sum": busy,
        "worker_idle_in_span": 2 * (last - first) - busy,
        "transfer_sum": sum(ss["stop"] - ss["start"] for ss in transfers),
        "after_last_tile": t_end - last,  # gather to the client and assembly, or attrs
    }


def throughput_run(n, p, block, client, workdir, repeats):
    """In-process vs LocalCluster pairs/s on the same kernel, interleaved ``repeats`` times.

    In process: :func:`deqfast.kernels.compute_kernels` (CK only, ``num_threads=2``, the
    ``n × n`` result in this process's memory). On the cluster: :func:`kernels_blocked`
    with the result left in three places — ``workers`` (tiles persisted in the workers'
    memory, a dask array ready for :func:`tiled_operator`), ``zarr`` (each worker writes its
    tiles to a store on the local disk) and ``client`` (``.compute()``: an ``n × n`` NumPy
    array here). Every figure is ``n(n−1)/2`` pairs over the wall time of the whole call.
    """
    from distributed import get_task_stream, wait

    import deqfast as df
    from deqfast import distributed as dd
    from deqfast.kernels import compute_kernels

    sample = df.GaussianMixture.paper(p).sample(n, seed=0)
    deq = df.DEQ("relu", sigma_a2=SIGMA_A2, tau0=sample.stats.tau0)
    X = sample.X
    pairs = n * (n - 1) // 2
    path = os.path.join(workdir, f"throughput_{n}.zarr")
    # warm-up, not timed: imports (deqfast, zarr) and first calls in the workers and here
    small = X[: min(n, 512)]
    compute_kernels(deq, small, outputs=("G",), num_threads=2, progress=False)
    client.persist(dd.kernels_blocked(deq, small, client=client, block=256, progress=False))
    dd.kernels_blocked(
        deq, small, client=client, block=256, zarr_path=path, overwrite=True, progress=False
    )
    shutil.rmtree(path, ignore_errors=True)
    runs: list[dict] = []
    for rep in range(repeats):
        for what in ("in_process", *DESTINATIONS):
            row: dict = {"repeat": rep, "what": what, "load_before": os.getloadavg()[0]}
            gc.collect()
            t0 = time.time()
            if what == "in_process":
                res = compute_kernels(deq, X, outputs=("G",), num_threads=2, progress=False)
                seconds = time.time() - t0
                row["newton_steps"] = res.newton_steps
                del res
            else:
                with get_task_stream(client) as ts:
                    if what == "workers":
                        K = dd.kernels_blocked(deq, X, client=client, block=block, progress=False)
                        K = client.persist(K)
                        wait(K)
                    elif what == "zarr":
                        K = dd.kernels_blocked(
                            deq, X, client=client, block=block, zarr_path=path,
                            overwrite=True, progress=False,
                        )  # fmt: skip
                    else:
                        G = dd.kernels_blocked(deq, X, client=client, block=block, progress=False)
                        G = G.compute()
                    seconds = time.time() - t0
                row.update(_tile_phases(ts.data, t0, t0 + seconds))
                if what == "zarr":
                    import zarr

                    meta = dict(zarr.open_array(path, mode="r").attrs)["deqfast"]
                    row["cxx_assemble_sum"] = meta.get("assemble_seconds")
                    row["zarr_write_sum"] = meta.get("write_seconds")
                    shutil.rmtree(path, ignore_errors=True)
                K = G = None
            row["seconds"] = seconds
            row["pairs_per_second"] = pairs / seconds
            row["load_after"] = os.getloadavg()[0]
            runs.append(row)
            phases = ", ".join(
                f"{k} {v:.2f}" for k, v in row.items() if isinstance(v, float) and "load" not in k
            )
            _log(f"n={n} repeat {rep} {what}: {pairs / seconds / 1e6:.2f} M pairs/s; {phases}")
    out: dict = {"n": n, "p": p, "block": block, "pairs": pairs, "repeats": repeats}
    ref = [r["seconds"] for r in runs if r["what"] == "in_process"]
    out["in_process_pairs_per_second"] = pairs / float(np.median(ref))
    for what in DESTINATIONS:
        mine = [r["seconds"] for r in runs if r["what"] == what]
        # paired: each cluster run against the in-process run just before it
        paired = [a / b for a, b in zip(ref, mine)]
        out[f"{what}_pairs_per_second"] = pairs / float(np.median(mine))
        out[f"{what}_ratio_median_paired"] = float(np.median(paired))
        out[f"{what}_ratios"] = paired
    out["ratio"] = out["workers_ratio_median_paired"]
    out["load"] = [min(r["load_before"] for r in runs), max(r["load_after"] for r in runs)]
    out["runs"] = runs
    return out


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
    top = _lanczos_into(out, f"n={n}", op, k, tol=tol)

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
    from deqfast.linalg import slq_density, surrogate_operator

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

    top = _lanczos_into(out, "surrogate", op, k, tol=tol, max_steps=200)
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


def _save(path: str, result: dict) -> None:
    """Write ``result`` over the parts it holds; parts not run now keep their last figures
    (each part records its own date and load)."""
    old: dict = {}
    if os.path.exists(path):
        with open(path) as fh:
            old = json.load(fh)
    old.update(result)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(old, fh, indent=1)


def _stamp() -> dict:
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load": os.getloadavg()}


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
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of part 0")
    ap.add_argument(
        "--parts", default="throughput,spectra,surrogate",
        help="comma-separated subset of throughput (part 0), spectra (1), surrogate (2)",
    )  # fmt: skip
    ap.add_argument("--surrogate-n", type=int, default=None)
    ap.add_argument("--surrogate-p", type=int, default=1000)
    ap.add_argument("--workdir", default=None, help="zarr stores go here (default: a temp dir)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "scale.json"))
    args = ap.parse_args()
    parts = {x.strip() for x in args.parts.split(",") if x.strip()}
    if parts - {"throughput", "spectra", "surrogate"}:
        ap.error(f"--parts: unknown {sorted(parts - {'throughput', 'spectra', 'surrogate'})}")
    sizes = args.n if args.n is not None else ([2048] if args.quick else [8192, 32768])
    compare = args.n if args.n is not None else ([2048] if args.quick else [16384])
    block = min(args.block, 1024) if args.quick else args.block
    sn = args.surrogate_n if args.surrogate_n is not None else (20_000 if args.quick else 10**6)

    import dask
    import distributed
    import zarr

    import deqfast as df

    cluster_kw = dict(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )  # fmt: skip
    result: dict = {
        "setting": {
            "mixture": "GaussianMixture.paper(p)",
            "activation": "relu (centred)",
            "sigma_a2": SIGMA_A2,
            "kernel": "ck (G*)",
            "cluster": "LocalCluster(n_workers=2, threads_per_worker=1, processes=True, 127.0.0.1)",
            "in_process": "deqfast.kernels.compute_kernels(outputs=('G',), num_threads=2)",
            "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
            "versions": {
                "deqfast": df.__version__,
                "dask": dask.__version__,
                "distributed": distributed.__version__,
                "zarr": zarr.__version__,
                "numpy": np.__version__,
            },
        },
    }
    workdir = args.workdir or tempfile.mkdtemp(prefix="deqfast_scale_")
    if parts & {"throughput", "spectra"}:
        with (
            distributed.LocalCluster(**cluster_kw) as cluster,
            distributed.Client(cluster) as client,
        ):
            if "throughput" in parts:
                rows = [
                    throughput_run(n, args.p, block, client, workdir, args.repeats) for n in compare
                ]
                result["throughput"] = {**_stamp(), "rows": rows}
                for r in rows:
                    print(
                        f"n = {r['n']}: in process {r['in_process_pairs_per_second'] / 1e6:.2f} M "
                        "pairs/s; LocalCluster (2 workers x 1 thread), median of paired ratios: "
                        + ", ".join(
                            f"{w} {r[f'{w}_pairs_per_second'] / 1e6:.2f} M pairs/s "
                            f"(ratio {r[f'{w}_ratio_median_paired']:.2f})"
                            for w in DESTINATIONS
                        )
                        + f"; load {r['load'][0]:.1f}-{r['load'][1]:.1f}",
                        flush=True,
                    )
                _save(args.out, result)
            if "spectra" in parts:
                exact = []
                for n in sizes:
                    t0 = time.perf_counter()
                    row = exact_run(
                        n, args.p, block, client, workdir, args.top, args.tol, args.probes,
                        args.steps,
                    )  # fmt: skip
                    row["total_seconds"] = time.perf_counter() - t0
                    exact.append(row)
                    _log(f"n={n}: total {row['total_seconds']:.1f} s")
                result["exact"] = exact
                if len(exact) > 1:
                    a, b = exact[0], exact[-1]
                    result["exact_scaling_exponent"] = float(
                        np.log(b["kernel_seconds"] / a["kernel_seconds"]) / np.log(b["n"] / a["n"])
                    )
                result["exact_stamp"] = _stamp()
                _save(args.out, result)
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    if "surrogate" in parts and sn:
        result["surrogate"] = surrogate_run(sn, args.surrogate_p, 3, args.tol, args.probes, 50)
        result["surrogate"].update(_stamp())
        _save(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "throughput"}, indent=1))


if __name__ == "__main__":
    main()
