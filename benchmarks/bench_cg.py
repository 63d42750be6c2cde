"""Out-of-core kernel ridge regression by conjugate gradients on a LocalCluster.

The exact Implicit-CK ``G*`` (ReLU, σ_a² = 0.2, the authors' mixture
``GaussianMixture.paper(p)``) of ``n`` training samples is written tile by tile to a zarr
store by the workers (:func:`deqfast.distributed.kernels_blocked`), and
``(G* + λI) α = Y`` (one-vs-all ±1 targets, one column per class) is solved by
:func:`deqfast.distributed.conjugate_gradient` on :func:`~deqfast.distributed.tiled_operator`
(every iteration reads each stored upper tile once), preconditioned by
:func:`~deqfast.distributed.nystrom_preconditioner` on random landmark samples.
Predictions on ``n_test`` fresh samples are ``G*(X_test, X) α``. Up to ``--dense-max``
samples the same system is also solved densely in memory (Cholesky) and the predictions
compared; above it, the test accuracy is reported next to that of the largest dense solve
(a subset of the same training stream).
Recorded per ``n``: wall time of the tiles and of CG, iterations, the true relative
residual, peak RSS of every worker and of the client, and the load average.

    python benchmarks/bench_cg.py                     # n = 8192 (with dense) and 32768
    python benchmarks/bench_cg.py --n 2048 --quick    # smoke run

Writes ``benchmarks/results/cg.json`` (``--out``), after every ``n``.
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
import scipy.linalg
from _memory import reset_peak, status_mib  # benchmarks/_memory.py

HERE = os.path.dirname(os.path.abspath(__file__))
SIGMA_A2 = 0.2


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _peaks(dd, client) -> dict:
    return {a: round(m["peak_mib"], 1) for a, m in dd.worker_memory(client).items()}


def run(n, args, client, workdir, data, dense_ref):
    import zarr

    from deqfast import distributed as dd

    deq, X_all, y_all, Xte, yte, K = data
    X, y = X_all[:n], y_all[:n]
    Y = np.where(y[:, None] == np.arange(K), 1.0, -1.0)
    block = args.block or (2048 if n <= 8192 else 4096)
    out: dict = {
        "n": n,
        "block": block,
        "tiles_stored": (-(-n // block)) * (-(-n // block) + 1) // 2,
    }
    out["load_start"] = _load()
    path = os.path.join(workdir, f"ck_{n}.zarr")

    dd.reset_peak_memory(client)
    reset_peak()
    t0 = time.perf_counter()
    Kd = dd.kernels_blocked(
        deq, X, client=client, block=block, zarr_path=path, overwrite=True, progress=False
    )
    out["kernel_seconds"] = time.perf_counter() - t0
    meta = dict(zarr.open_array(path, mode="r").attrs)["deqfast"]
    out["pairs"] = meta["pairs"]
    out["worker_peak_mib_kernel"] = _peaks(dd, client)
    _log(f"n={n}: tiles -> zarr in {out['kernel_seconds']:.1f} s, load {_load()}")

    r = args.landmarks or 1024
    t0 = time.perf_counter()
    idx = np.sort(np.random.default_rng(0).choice(n, r, replace=False))
    precond = dd.nystrom_preconditioner(deq.ck(X, X[idx]), idx, ridge=args.ridge)
    out.update(landmarks=r, preconditioner_seconds=time.perf_counter() - t0)
    _log(f"n={n}: Nyström preconditioner ({r} landmarks) in {out['preconditioner_seconds']:.1f} s")

    op = dd.tiled_operator(Kd, client=client)
    dd.reset_peak_memory(client)
    res = dd.conjugate_gradient(
        op, Y, ridge=args.ridge, tol=args.tol, preconditioner=precond, progress=True
    )
    out.update(
        cg_seconds=res.seconds, iterations=res.iterations, products=res.products,
        restarts=res.restarts, relative_residual=res.residual, tol=args.tol, ridge=args.ridge,
        converged=res.converged, right_hand_sides=K,
        seconds_per_product=res.seconds / res.products,
    )  # fmt: skip
    out["worker_peak_mib_cg"] = _peaks(dd, client)
    _log(f"n={n}: {res!r}, load {_load()}")

    t0 = time.perf_counter()
    Kx = deq.ck(Xte, X)
    out["cross_kernel_seconds"] = time.perf_counter() - t0
    pred = Kx @ res.x
    out["test_accuracy"] = float(np.mean(pred.argmax(1) == yte))
    if n <= args.dense_max:
        t0 = time.perf_counter()
        G = deq.ck(X)
        G[np.diag_indices_from(G)] += args.ridge
        alpha = scipy.linalg.cho_solve(scipy.linalg.cho_factor(G, lower=True), Y)
        out["dense_seconds"] = time.perf_counter() - t0
        del G
        ref = Kx @ alpha
        out["dense_test_accuracy"] = float(np.mean(ref.argmax(1) == yte))
        out["prediction_max_rel_diff"] = float(np.abs(pred - ref).max() / np.abs(ref).max())
        out["alpha_max_rel_diff"] = float(np.abs(res.x - alpha).max() / np.abs(alpha).max())
        dense_ref.update(n=n, test_accuracy=out["dense_test_accuracy"])
        _log(f"n={n}: predictions vs dense: {out['prediction_max_rel_diff']:.2e}")
    elif dense_ref:
        out["dense_subset"] = dict(dense_ref)
    out["client_peak_mib"] = status_mib("VmHWM")
    out["load_end"] = _load()
    shutil.rmtree(path, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[8192, 32768])
    ap.add_argument("--p", type=int, default=256)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--ridge", type=float, default=1e-3)
    ap.add_argument("--tol", type=float, default=1e-9)
    ap.add_argument(
        "--block", type=int, default=0, help="tile edge (default 2048, 4096 above 8192)"
    )
    ap.add_argument("--dense-max", type=int, default=8192)
    ap.add_argument("--landmarks", type=int, default=0, help="Nyström rank (0: 1024)")
    ap.add_argument("--quick", action="store_true", help="n_test = 200")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "cg.json"))
    args = ap.parse_args()
    if args.quick:
        args.n_test = 200

    import dask
    import distributed
    import zarr

    import deqfast as df

    nmax = max(args.n)
    mix = df.GaussianMixture.paper(args.p)
    train = mix.sample(nmax, seed=0)
    test = mix.sample(args.n_test, seed=1)
    perm = np.random.default_rng(0).permutation(nmax)  # classes mixed in every prefix
    X_all, y_all = np.asarray(train.X)[perm], np.asarray(train.labels)[perm]
    deq = df.DEQ("relu", sigma_a2=SIGMA_A2, tau0=train.stats.tau0)
    K = int(y_all.max()) + 1
    data = (deq, X_all, y_all, np.asarray(test.X), np.asarray(test.labels), K)

    result: dict = {
        "setting": {
            "mixture": f"GaussianMixture.paper({args.p})", "classes": K, "n_test": args.n_test,
            "activation": "relu (centred)", "sigma_a2": SIGMA_A2, "kernel": "ck (G*)",
            "targets": "one-vs-all ±1, one column per class", "ridge": args.ridge,
            "tol": args.tol,
            "cluster": "LocalCluster(n_workers=2, threads_per_worker=1, processes=True)",
            "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
            "versions": {
                "deqfast": df.__version__, "dask": dask.__version__,
                "distributed": distributed.__version__, "zarr": zarr.__version__,
                "numpy": np.__version__,
            },
        },
        "runs": [],
    }  # fmt: skip
    workdir = tempfile.mkdtemp(prefix="deqfast-bench-cg-")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )  # fmt: skip
    client = distributed.Client(cluster)
    dense_ref: dict = {}
    try:
        for n in sorted(args.n):
            t0 = time.perf_counter()
            row = run(n, args, client, workdir, data, dense_ref)
            row["total_seconds"] = time.perf_counter() - t0
            result["runs"].append(row)
            os.makedirs(os.path.dirname(args.out), exist_ok=True)
            with open(args.out, "w") as fh:
                json.dump(result, fh, indent=1)
            _log(f"n={n} done in {row['total_seconds']:.0f} s -> {args.out}")
    finally:
        client.close()
        cluster.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
