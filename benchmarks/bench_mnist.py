"""Benchmark: cost of the ten-class MNIST random-feature experiment. Not a test.

The bundled 5,000 MNIST digits (``datasets.load_mnist()``), a fixed stratified
4,000/1,000 split, the authors' six models (``random_features.paper_models``).
Everything runs on ONE thread (``OMP_NUM_THREADS=1``, BLAS limited to 1) and
is timed in CPU seconds (``time.process_time``), which a busy shared machine
disturbs far less than wall time; the products that dominate scale almost
perfectly to two threads, so two-core wall time ≈ half of the figures.

Stages (each optional on the command line, default all):

* ``features`` — every model's features for all 5,000 samples at each width,
  one seed; the DEQ in float64 at tol 1e-8 (its default) and in float32 at
  tol 1e-6 and 1e-4 (evaluations and CPU time each);
* ``readouts`` — the two scikit-learn read-outs on those features (CPU time,
  L-BFGS iterations, test accuracy), and the accuracy change float64 → float32;
* ``kernels`` — each model's exact kernel on the 5,000 samples and its kernel
  ridge accuracy;
* ``timing`` — ``inference_timing`` at the given widths on the 1,000 test digits.

Writes ``benchmarks/results/mnist.json``.  Run:
``OMP_NUM_THREADS=1 python benchmarks/bench_mnist.py [stages] [--widths 32,128,...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from deqfast.datasets import load_mnist, train_test_split
from deqfast.random_features import (
    inference_timing,
    kernel_ridge_accuracy,
    paper_models,
)
from deqfast.random_features._readouts import _readout_estimator

OUT = Path(__file__).resolve().parent / "results" / "mnist.json"


def cpu(f, *args, **kwargs):
    """``(f(*args, **kwargs), CPU seconds)``."""
    t = time.process_time()
    out = f(*args, **kwargs)
    return out, time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("stages", nargs="*", default=["features", "readouts", "kernels", "timing"])
    ap.add_argument("--widths", default="32,128,512,1024")
    ap.add_argument("--timing-widths", default="1024")
    ap.add_argument("--ridge", type=float, default=1e-2)
    args = ap.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    out: dict = json.loads(OUT.read_text()) if OUT.exists() else {}
    out["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS")
    ds, t_load = cpu(load_mnist)
    out["load_cpu_s"] = t_load
    Xtr, ytr, Xte, yte = train_test_split(ds.X, ds.labels, test_size=0.2, seed=0)
    X = np.vstack([Xtr, Xte])
    ntr = Xtr.shape[0]
    models, t_models = cpu(paper_models, ds.stats.tau0)
    out["paper_models_cpu_s"] = t_models
    print(f"load {t_load:.1f} s, paper_models {t_models:.1f} s cpu", flush=True)
    from deqfast.finite import forward

    with threadpool_limits(1):
        if "features" in args.stages or "readouts" in args.stages:
            feats = out.setdefault("features", {})
            reads = out.setdefault("readouts", {})
            for name, mdl in models.items():
                for w in widths:
                    variants = {"default": {}}
                    if mdl.kind == "deq":
                        variants = {
                            "float64 tol 1e-8": {},
                            "float32 tol 1e-6": {"dtype": np.float32, "tol": 1e-6},
                            "float32 tol 1e-4": {"dtype": np.float32, "tol": 1e-4},
                        }
                    for vname, opts in variants.items():
                        key = f"{name} | m={w} | {vname}"
                        if mdl.kind == "deq":
                            res, t = cpu(forward, mdl.model, X, w, seed=0, **opts)
                            F = np.asarray(res.features, dtype=np.float64) / np.sqrt(w)
                            feats[key] = {"cpu_s": t, "evaluations": res.evaluations}
                        else:
                            F, t = cpu(mdl.features, X, w, 0)
                            feats[key] = {"cpu_s": t}
                        print(key, feats[key], flush=True)
                        if "readouts" not in args.stages:
                            continue
                        for ro in ("ridge", "logistic"):
                            est = _readout_estimator(ro, args.ridge, 1000)
                            _, t = cpu(est.fit, F[:ntr], ytr)
                            acc = float(np.mean(est.predict(F[ntr:]) == yte))
                            it = int(np.max(getattr(est, "n_iter_", None) or [0]))
                            rec = {"cpu_s": t, "test_accuracy": acc, "n_iter": it}
                            reads[f"{key} | {ro}"] = rec
                            print("   ", ro, rec, flush=True)
                        OUT.write_text(json.dumps(out, indent=1))
        if "kernels" in args.stages:
            kern = out.setdefault("kernels", {})
            for name, mdl in models.items():
                K, t = cpu(mdl.kernel, X)
                acc, t2 = cpu(
                    kernel_ridge_accuracy, K[:ntr, :ntr], K[ntr:, :ntr], ytr, yte, ridge=args.ridge
                )
                kern[name] = {"kernel_cpu_s": t, "ridge_cpu_s": t2, "test_accuracy": acc}
                print(name, kern[name], flush=True)
                OUT.write_text(json.dumps(out, indent=1))
        if "timing" in args.stages:
            tim = out.setdefault("timing", {})
            for act, designed in (("ReLU DEQ", "L-ReLU net (designed)"),
                                  ("tanh DEQ", "H-tanh net (designed)")):  # fmt: skip
                for w in (int(v) for v in args.timing_widths.split(",")):
                    r = inference_timing(
                        models[act].model, models[designed].model, Xte, w, repeats=2
                    )
                    tim[f"{act} vs {designed} | m={w}"] = r.to_dict()
                    print(r, flush=True)
                    OUT.write_text(json.dumps(out, indent=1))
    OUT.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
