"""Benchmark of the exact kernels' pairs near |rho| = 1 (the quadrature fallback of
docs/theory.md §3): the cases where Mehler's series cannot meet its bound.

(a) centred ELU on data far below its centring scale, ``DEQ("elu", tau0=tau0).kernels(X * 1e-3)``
    at n = 200: every pair has rho ~ 1;
(b) tanh (sigma_a2 = 0.2) on n = 1000 rows made of 20 groups of 50 near-copies (a base row plus
    noise of relative size 1e-4): the 24,500 pairs inside a group have rho ~ 1;
(c) with ``--large``, (b) at n = 3000 (20 groups of 150).

Each case is timed (wall clock and process CPU time, best of ``--repeat``) next to a baseline of
the same size without near-copies (unscaled data for (a), distinct rows for (b)), which gives
the cost of one quadrature pair relative to a typical pair. With ``--check`` two pairs per case
are compared with nested adaptive quadrature (tests/reference.py ``two_point_near``) and the
fixed-point residual of S is reported. The figures go to ``results/quadrature.json`` with the
date and the machine load.

    python benchmarks/bench_quadrature.py [--repeat 3] [--check] [--large]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

import numpy as np

import deqfast as df

HERE = os.path.dirname(os.path.abspath(__file__))


def near_copies(groups: int, per_group: int, rel_noise: float, seed: int = 0) -> np.ndarray:
    """``groups`` base rows of the paper's mixture (p = 64), each repeated ``per_group`` times
    with Gaussian noise of relative size ``rel_noise`` per row."""
    base = df.GaussianMixture.paper(64).sample(groups, seed=seed).X
    rng = np.random.default_rng(seed)
    X = np.repeat(base, per_group, axis=0)
    scale = rel_noise * np.linalg.norm(X, axis=1, keepdims=True) / np.sqrt(X.shape[1])
    return X + scale * rng.standard_normal(X.shape)


def cases(large: bool) -> list[dict]:
    s = df.GaussianMixture.paper(64).sample(200, seed=0)
    tau0 = s.stats.tau0
    out = [
        dict(
            name="a_elu_scaled_1e-3_n200",
            deq=df.DEQ("elu", tau0=tau0),
            X=s.X * 1e-3,
            baseline=s.X,
        ),
        dict(
            name="b_tanh_near_copies_n1000",
            deq=df.DEQ("tanh", sigma_a2=0.2, tau0=tau0),
            X=near_copies(20, 50, 1e-4),
            baseline=df.GaussianMixture.paper(64).sample(1000, seed=1).X,
        ),
    ]
    if large:
        out.append(
            dict(
                name="c_tanh_near_copies_n3000",
                deq=df.DEQ("tanh", sigma_a2=0.2, tau0=tau0),
                X=near_copies(20, 150, 1e-4),
                baseline=df.GaussianMixture.paper(64).sample(3000, seed=1).X,
            )
        )
    return out


def timed(deq, X, repeat: int):
    best_wall = best_cpu = float("inf")
    res = None
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        res = deq.kernels(X)
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return res, best_wall, best_cpu


def check(deq, X, res) -> dict:
    """Two near-|rho| = 1 pairs against nested adaptive quadrature, and S's equation."""
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    import reference as ref

    r = ref.get(deq.phi.name, **dict(deq.phi.display))
    shift = deq.phi.shift

    def f(x):
        return r.phi(x) - shift

    d = np.diag(res.S)
    rho = res.S / np.sqrt(np.outer(d, d))
    np.fill_diagonal(rho, 0.0)
    worst = np.unravel_index(np.argmax(rho), rho.shape)
    errs = []
    for i, j in (worst, (0, 1)):
        g = ref.two_point_near(f, f, d[i], d[j], res.S[i, j], r.kinks, r.kinks)
        gd = ref.two_point_near(r.dphi, r.dphi, d[i], d[j], res.S[i, j], r.kinks, r.kinks)
        errs.append(
            dict(
                pair=[int(i), int(j)],
                one_minus_rho=float(1.0 - rho[i, j]),
                G_rel_err=float(abs(res.G[i, j] - g) / abs(res.G).max()),
                Gdot_abs_err=float(abs(res.Gdot[i, j] - gd)),
            )
        )
    want = deq.sigma_a2 * res.G + deq.sigma_b2 * X @ X.T
    residual = float(np.abs(res.S - want).max() / np.abs(want).max())
    return dict(pairs=errs, S_equation_rel_residual=residual)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--check", action="store_true", help="compare two pairs with the reference")
    ap.add_argument("--large", action="store_true", help="also case (c), n = 3000")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "quadrature.json"))
    args = ap.parse_args(argv)
    rows = []
    load_before = list(os.getloadavg())
    for case in cases(args.large):
        deq, X = case["deq"], case["X"]
        res, wall, cpu = timed(deq, X, args.repeat)
        base, bwall, bcpu = timed(deq, case["baseline"], args.repeat)
        quad = int(res.quadrature_pairs)
        per_pair = bcpu / max(base.pairs, 1)
        per_quad = (cpu - bcpu) / quad if quad else float("nan")
        row = dict(
            case=case["name"],
            n=int(X.shape[0]),
            wall_s=round(wall, 4),
            cpu_s=round(cpu, 4),
            pairs=int(res.pairs),
            quadrature_pairs=quad,
            newton_steps=int(res.newton_steps),
            baseline_wall_s=round(bwall, 4),
            baseline_cpu_s=round(bcpu, 4),
            cpu_per_typical_pair_us=round(1e6 * per_pair, 3),
            cpu_per_quadrature_pair_us=round(1e6 * per_quad, 3),
            quadrature_pair_cost_ratio=round(per_quad / per_pair, 1) if quad else None,
            finite=bool(np.isfinite(res.G).all() and np.isfinite(res.Gdot).all()),
            symmetric=bool(np.array_equal(res.G, res.G.T) and np.array_equal(res.S, res.S.T)),
        )
        if args.check:
            row["check"] = check(deq, X, res)
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        machine=f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        loadavg_before=load_before,
        loadavg_after=list(os.getloadavg()),
        deqfast=df.__version__,
        repeat=args.repeat,
        results=rows,
    )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)
    print("saved to", args.out)


if __name__ == "__main__":
    main()
