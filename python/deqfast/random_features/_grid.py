"""The paper's six random-feature models and the ten-class grid over models, widths,
seeds and read-outs (:ref:`§5 <theory-5>`)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from deqfast._shared import blas_threads, progress_bar
from deqfast._validation import (
    as_finite_array,
    check_choice,
    check_integer,
    check_positive,
)
from deqfast.random_features._maps import (
    ExplicitFeatures,
    FeatureFn,
    deq_features,
    explicit_features,
    shared_explicit_features,
)
from deqfast.random_features._readouts import (
    GRID_READOUTS,
    _check_split,
    _check_widths_seeds,
    _grid_readouts,
    _threads_for,
    kernel_ridge_accuracy,
)
from deqfast.random_features._sweep import RandomFeatureResult, accuracy_table

__all__ = [
    "PAPER_WIDTHS",
    "ClassificationResult",
    "FeatureModel",
    "classification_grid",
    "kernel_limits",
    "paper_models",
]

KernelFn = Callable[..., np.ndarray]

#: Widths of the authors' random-feature experiment.
PAPER_WIDTHS = (32, 128, 512, 1024, 4096)

#: Mehler series length of the exact kernels of :func:`paper_models`, by activation.  MNIST
#: has near-duplicate digits (input correlation near 1), where a Mehler series converges
#: slowly; a pair the series cannot resolve goes to 2-D quadrature, about a thousand times
#: slower.  Same kernels to 1e-15 either way; measured on 2,000 MNIST digits: tanh (DEQ and
#: one-layer net) 128 terms 13 times faster than 64, no faster with 96 or 192; the kinked clip
#: activation 256 terms 8 times faster than 64, 128 slower; ReLU and L-ReLU have closed forms.
HERMITE_TERMS = {"relu": 64, "lrelu": 64, "tanh": 128, "clip": 256}


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureModel:
    """A random-feature model: its feature map and its infinite-width kernel.

    Attributes
    ----------
    name : str
        Display name (a key of :func:`paper_models`).
    features : callable ``(X, width, seed) -> ndarray (n, width)``
        Features ``h/√m`` of the last hidden layer, weights drawn from ``seed``.
    kernel : callable ``(X, X2=None) -> ndarray``
        The exact infinite-width CK of the same features (``E[FFᵀ]`` as
        ``m → ∞``): kernel ridge with it is the limit of the ridge read-out.
    kind : {"deq", "explicit"}
    model : DEQ or ExplicitNet
        The underlying model.
    note : str
        How the model was built.
    """

    name: str
    features: FeatureFn = dataclasses.field(repr=False)
    kernel: KernelFn = dataclasses.field(repr=False)
    kind: str
    model: Any
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description."""
        return {"name": self.name, "kind": self.kind, "model": repr(self.model), "note": self.note}


def paper_models(
    tau0: float,
    *,
    sigma_a2: float = 0.2,
    sigma_b2: float | None = None,
    forward_options: Mapping[str, Any] | None = None,
) -> dict[str, FeatureModel]:
    """The authors' six random-feature models (:ref:`§5 <theory-5>`), for inputs at scale ``τ0``.

    In the order of the authors' scripts (``inn``, ``l_relu_enn``, ``relu_enn``,
    ``tanh_inn``, ``h_tanh_enn``, ``tanh_enn``):

    * ``"ReLU DEQ"`` — the finite-width DEQ with ReLU (centred at ``τ*``);
    * ``"L-ReLU net (designed)"`` — two hidden L-ReLU layers designed for the
      ReLU DEQ's CK (``design_explicit(deq, kernel="ck", family="lrelu")``);
    * ``"ReLU net (2 layers)"`` — the undesigned two-hidden-layer ReLU net, its
      output scale set to the DEQ's diagonal level (``family="relu"``);
    * ``"tanh DEQ"``;
    * ``"H-tanh net (designed)"`` — one hidden ``a·clip(t, −c, c)`` layer
      designed for the tanh DEQ's CK (``family="clip"``);
    * ``"tanh net (1 layer)"`` — one hidden tanh layer, undesigned (the
      authors' ``tanh_enn`` has one hidden layer, like the H-tanh net).

    Parameters
    ----------
    tau0 : float
        Input scale (``stats.tau0`` of the prepared data).
    sigma_a2, sigma_b2 : float
        The DEQs' weight variances (``sigma_b2`` defaults to ``1 − sigma_a2``).
    forward_options : mapping, optional
        Passed to :func:`deqfast.finite.forward` for the DEQ features (e.g.
        ``{"dtype": np.float32, "tol": 1e-4}``); default: its defaults.

    Returns
    -------
    dict of str to FeatureModel
    """
    import warnings

    from deqfast.deq import DEQ
    from deqfast.design import DesignWarning, design_explicit
    from deqfast.explicit import ExplicitNet

    t0 = check_positive(tau0, "tau0")
    opts = dict(forward_options or {})
    described = ", ".join(
        f"{k}={np.dtype(v).name if k == 'dtype' else v}" for k, v in sorted(opts.items())
    )
    models: dict[str, FeatureModel] = {}
    for act, family, baseline in (("relu", "lrelu", "relu"), ("tanh", "clip", None)):
        deq = DEQ(act, sigma_a2=sigma_a2, sigma_b2=sigma_b2, tau0=t0)
        label = "ReLU" if act == "relu" else "tanh"
        models[f"{label} DEQ"] = FeatureModel(
            f"{label} DEQ", deq_features(deq, **opts),
            functools.partial(deq.ck, hermite_terms=HERMITE_TERMS[act]), "deq", deq,
            f"finite-width DEQ, Anderson forward pass ({described or 'default options'})",
        )  # fmt: skip
        design = design_explicit(deq, kernel="ck", family=family, matched_only=True)
        if not design.converged:
            raise RuntimeError(f"design_explicit({family!r}) did not match {deq!r}: {design!r}")
        name = "L-ReLU net (designed)" if act == "relu" else "H-tanh net (designed)"
        kernel = functools.partial(design.net.ck, hermite_terms=HERMITE_TERMS[family])
        models[name] = FeatureModel(
            name, explicit_features(design.net), kernel, "explicit", design.net,
            f"designed for the {label} DEQ's CK (family {family!r}, coefficient residual "
            f"{design.residual:.1e})",
        )  # fmt: skip
        if baseline is not None:
            with warnings.catch_warnings():  # the baseline is unfitted: no match is expected
                warnings.simplefilter("ignore", DesignWarning)
                net = design_explicit(deq, kernel="ck", family=baseline).net
            note = "undesigned two-layer ReLU net, output scale set to the DEQ's d"
            name = "ReLU net (2 layers)"
        else:
            net = ExplicitNet(["tanh"], tau0=t0)
            note = "undesigned one-layer tanh net"
            name = "tanh net (1 layer)"
        kernel = functools.partial(net.ck, hermite_terms=HERMITE_TERMS[baseline or "tanh"])
        models[name] = FeatureModel(
            name, explicit_features(net), kernel, "explicit", net, note
        )  # fmt: skip
    return models


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ClassificationResult:
    """Test accuracies of random-feature models over widths, seeds and read-outs.

    Attributes
    ----------
    models : tuple of str
    widths : tuple of int
    seeds : tuple of int
    readouts : tuple of str
        Subset of :data:`GRID_READOUTS`.
    results : dict of (model, readout) to RandomFeatureResult
        Accuracies per width and seed.
    kernel_accuracy : dict of str to float
        Kernel ridge with each model's exact kernel (same ``ridge``), the
        ``m → ∞`` limit of the ridge read-out (empty if not computed).
    feature_seconds : ndarray, shape (models, widths, seeds)
        Wall time of each feature computation (all ``n_train + n_test`` samples; an
        explicit net's includes the first-layer product it shares with the others).
    fit_seconds : dict of str to ndarray (models, widths, seeds)
        Wall time of each read-out fit (each includes the Gram matrix both share).
    kernel_seconds : dict of str to float
        Wall time of each exact kernel and its kernel ridge fit.
    converged : dict of str to ndarray of bool (models, widths, seeds)
        Whether each logistic fit met a stopping test (gradient or relative decrease)
        within ``max_iter`` iterations (all ``True`` for ridge).
    n_train, n_test : int
    ridge : float
        ``λ`` of both read-outs and of kernel ridge.
    max_iter : int
        L-BFGS iterations allowed to the logistic read-out.
    model_notes : dict of str to str
    """

    models: tuple[str, ...]
    widths: tuple[int, ...]
    seeds: tuple[int, ...]
    readouts: tuple[str, ...]
    results: dict[tuple[str, str], RandomFeatureResult]
    kernel_accuracy: dict[str, float]
    feature_seconds: np.ndarray
    fit_seconds: dict[str, np.ndarray]
    kernel_seconds: dict[str, float]
    converged: dict[str, np.ndarray]
    n_train: int
    n_test: int
    ridge: float
    max_iter: int
    model_notes: dict[str, str]

    def result(self, model: str, readout: str) -> RandomFeatureResult:
        """The accuracies of one model with one read-out."""
        try:
            return self.results[(model, readout)]
        except KeyError:
            raise KeyError(
                f"no result for model {model!r} with read-out {readout!r}; models "
                f"{list(self.models)}, read-outs {list(self.readouts)}"
            ) from None

    def accuracy(self, model: str, readout: str, width: int) -> tuple[float, float]:
        """``(mean, std)`` test accuracy of one model, read-out and width."""
        r = self.result(model, readout)
        if width not in r.widths:
            raise ValueError(f"width {width} was not run; widths {list(r.widths)}")
        i = r.widths.index(width)
        return float(r.mean[i]), float(r.std[i])

    def table(self, readout: str, *, fmt: str = "markdown") -> str:
        """Accuracy table of one read-out (:func:`accuracy_table`); the kernel-limit
        column (kernel ridge) is shown with the ridge read-out only."""
        check_choice(readout, "readout", self.readouts)
        res = {m: self.results[(m, readout)] for m in self.models}
        kacc = self.kernel_accuracy if readout == "ridge" else None
        return accuracy_table(res, kernel_accuracy=kacc, fmt=fmt)

    def within_one_std(self, designed: str, deq: str, readout: str, width: int) -> bool:
        """Whether ``|mean(designed) − mean(deq)| ≤ std(deq)`` at ``width``."""
        m1, _ = self.accuracy(designed, readout, width)
        m0, s0 = self.accuracy(deq, readout, width)
        return abs(m1 - m0) <= s0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (every number of the experiment)."""
        return {
            "models": list(self.models),
            "widths": list(self.widths),
            "seeds": list(self.seeds),
            "readouts": list(self.readouts),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "ridge": self.ridge,
            "max_iter": self.max_iter,
            "accuracy": {
                ro: {m: self.results[(m, ro)].to_dict() for m in self.models}
                for ro in self.readouts
            },
            "kernel_ridge_accuracy": dict(self.kernel_accuracy),
            "feature_seconds": {
                m: self.feature_seconds[i].tolist() for i, m in enumerate(self.models)
            },
            "fit_seconds": {
                ro: {m: t[i].tolist() for i, m in enumerate(self.models)}
                for ro, t in self.fit_seconds.items()
            },
            "kernel_seconds": dict(self.kernel_seconds),
            "converged": {
                ro: {m: c[i].tolist() for i, m in enumerate(self.models)}
                for ro, c in self.converged.items()
            },
            "model_notes": dict(self.model_notes),
        }

    def __repr__(self) -> str:
        return (
            f"ClassificationResult(models={len(self.models)}, widths={list(self.widths)}, "
            f"seeds={len(self.seeds)}, readouts={list(self.readouts)}, "
            f"n_train={self.n_train}, n_test={self.n_test}, ridge={self.ridge:g})"
        )


def _kernel_limit(
    kernel: KernelFn, X: np.ndarray, ntr: int, ctr: np.ndarray, cte: np.ndarray, lam: float,
    threads: int | None, gram: Callable[[], np.ndarray] | None = None,
) -> tuple[float, float]:  # fmt: skip
    """Kernel ridge test accuracy with ``kernel`` on ``X`` (its first ``ntr`` rows train) and
    the wall seconds of the kernel and the fit (the fit on ``threads`` BLAS threads).
    ``gram`` (for a kernel that takes a ``gram`` keyword) gives ``X Xᵀ``."""
    import time

    t0 = time.perf_counter()
    K = np.asarray(kernel(X) if gram is None else kernel(X, gram=gram()), dtype=np.float64)
    with blas_threads(threads):
        acc = kernel_ridge_accuracy(K[:ntr, :ntr], K[ntr:, :ntr], ctr, cte, ridge=lam)
    return acc, time.perf_counter() - t0


def _takes_gram(kernel: KernelFn) -> bool:
    """Whether ``kernel`` takes a ``gram`` keyword (:meth:`deqfast.explicit.ExplicitNet.ck`
    does, :meth:`deqfast.DEQ.ck` does not: its C++ assembly forms ``X Xᵀ`` tile by tile)."""
    import inspect

    try:
        return "gram" in inspect.signature(kernel).parameters
    except (TypeError, ValueError):  # no signature (some builtins)
        return False


def kernel_limits(
    kernels: Mapping[str, KernelFn], Xtr: Any, ytr: Any, Xte: Any, yte: Any, *,
    ridge: float = 1e-2,
) -> dict[str, tuple[float, float]]:  # fmt: skip
    """The kernel-limit accuracies of :func:`classification_grid`, computed on their own.

    For each ``kernels[name]`` (a :class:`FeatureModel`'s ``kernel``), the exact kernel of
    ``[Xtr; Xte]`` and the test accuracy of kernel ridge with ``ridge`` (the ``m → ∞`` limit
    of the ridge read-out, :ref:`§5 <theory-5>`), with the seconds both took: ``{name:
    (accuracy, seconds)}``, one model after the other on the calling thread: the grid's
    ``kernel_accuracy`` and ``kernel_seconds``, when they are computed elsewhere (another
    process, say) while ``classification_grid(..., kernel_limit=False)`` runs.

    The kernels that take a ``gram`` keyword (the explicit nets') share one ``X Xᵀ``, formed
    by the first of them (its seconds include it): the same product each would form, so the
    same kernels, bit for bit.
    """
    A, B, ctr, cte = _check_split(Xtr, ytr, Xte, yte)
    lam = check_positive(ridge, "ridge")
    if not isinstance(kernels, Mapping) or not kernels:
        raise TypeError("kernels must be a non-empty mapping of names to kernel functions")
    X = np.vstack([A, B])
    shared: list[np.ndarray] = []

    def gram() -> np.ndarray:
        if not shared:
            shared.append(X @ X.T)
        return shared[0]

    return {
        name: _kernel_limit(k, X, A.shape[0], ctr, cte, lam, None, gram if _takes_gram(k) else None)
        for name, k in kernels.items()
    }


def classification_grid(
    models: Mapping[str, FeatureModel],
    Xtr: Any,
    ytr: Any,
    Xte: Any,
    yte: Any,
    *,
    widths: Sequence[int] = PAPER_WIDTHS,
    seeds: Sequence[int] = (0, 1, 2),
    readouts: Sequence[str] = GRID_READOUTS,
    ridge: float = 1e-2,
    max_iter: int = 1000,
    logistic_tol: float = 1e-4,
    logistic_dtype: Any = np.float64,
    kernel_limit: bool = True,
    n_jobs: int = 1,
    progress: bool | None = None,
) -> ClassificationResult:
    """Random features + trained linear read-outs over models, widths and seeds.

    See :ref:`§5 <theory-5>`.

    For every model, width and seed the features of ``[Xtr; Xte]`` are computed
    once (same random weights for training and test samples) and every read-out
    is trained on them: ``"logistic"`` — the objective of scikit-learn's multinomial
    ``LogisticRegression(C=1/λ)`` (mean cross-entropy ``+ (λ/2n)‖W‖²``, unpenalised
    intercept), the authors' loss, minimised by L-BFGS preconditioned with the features'
    Gram matrix to scikit-learn's stopping test (``max |gradient| ≤ logistic_tol``);
    ``"ridge"`` — ``RidgeClassifier(alpha=λ, fit_intercept=False)``'s closed form (targets
    ±1, no intercept).  Both share one Gram matrix ``FᵀF`` per features.  With
    ``kernel_limit`` each model's exact infinite-width kernel is computed on all samples
    and kernel ridge with the same ``λ`` gives the ``m → ∞`` limit of the ridge read-out.
    Explicit nets of :func:`explicit_features` share their first layer's product (the
    same ``W_1`` for the same seed): their features are those of separate passes, bit for
    bit.

    Parameters
    ----------
    models : mapping of str to FeatureModel
        E.g. :func:`paper_models`.
    Xtr, ytr, Xte, yte
        Training and test data (rows are samples) and labels (encoded jointly).
    widths, seeds : sequence of int
    readouts : sequence of str
        Subset of :data:`GRID_READOUTS`.
    ridge : float
        ``λ > 0`` of both read-outs and of kernel ridge.
    max_iter : int
        L-BFGS iterations allowed to the logistic read-out; a fit that stops
        there is recorded in ``converged`` (no warning).
    logistic_tol : float
        L-BFGS stopping tolerance of the logistic read-out (scikit-learn's
        default), on the largest entry of the gradient.  On the MNIST features of width
        512, ``1e-6`` took 2.7 times the CPU time for +0.2 % test accuracy (measured with
        scikit-learn's solver, benchmarks/bench_mnist.py).
    logistic_dtype : {numpy.float64, numpy.float32}
        Floating type of the features the logistic read-out is fitted on.  Its L-BFGS
        iterations stream the ``n × m`` features twice each, so ``float32`` halves their
        memory traffic: on the 4,000 MNIST training digits at width 512 it took about half
        the CPU time, with test accuracies within 0.4 % of ``float64`` (measured on the
        DEQ features of three seeds).  Ridge and kernel ridge always run in ``float64``.
    kernel_limit : bool
        Compute the exact-kernel ridge accuracies (:func:`kernel_limits` computes them on
        their own, e.g. in another process while the grid runs without them).
    n_jobs : int
        Tasks run at once, on threads with one BLAS and one OpenMP thread each.  A task
        is one model's (or the explicit nets') features at one width and seed with their
        read-outs, or one model's kernel limit; the longest start first.  Narrow products
        and the elementwise work gain little from more threads, so two tasks side by side
        on two cores take about half the time of one after the other.  With ``1`` the
        tasks run in the calling thread, the small fits on one BLAS thread.  The results
        do not depend on ``n_jobs``.
    progress : bool or None, default None
        A tqdm progress bar over the feature computations (``None``: on a terminal).

    Returns
    -------
    ClassificationResult
    """
    import time

    A, B, ctr, cte = _check_split(Xtr, ytr, Xte, yte)
    if not isinstance(models, Mapping) or not models:
        raise TypeError("models must be a non-empty mapping of names to FeatureModel")
    for key, mdl in models.items():
        if not isinstance(mdl, FeatureModel):
            raise TypeError(f"models[{key!r}] must be a FeatureModel; got {type(mdl).__name__}")
    ws, ss = _check_widths_seeds(widths, seeds)
    if isinstance(readouts, str):
        readouts = (readouts,)
    ros = tuple(check_choice(r, "readouts", GRID_READOUTS) for r in readouts)
    if not ros or len(set(ros)) != len(ros):
        raise ValueError(f"readouts must be distinct entries of {GRID_READOUTS}; got {readouts}")
    lam = check_positive(ridge, "ridge")
    iters = check_integer(max_iter, "max_iter", min_value=1)
    ltol = check_positive(logistic_tol, "logistic_tol")
    jobs = check_integer(n_jobs, "n_jobs", min_value=1)
    ldtype = np.dtype(logistic_dtype)
    if ldtype not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"logistic_dtype must be numpy.float64 or numpy.float32; got {ldtype}")
    names = tuple(models)
    X = np.vstack([A, B])
    ntr = A.shape[0]
    n_classes = int(max(ctr.max(), cte.max())) + 1
    shape = (len(names), len(ws), len(ss))
    test = {ro: np.empty(shape) for ro in ros}
    train = {ro: np.empty(shape) for ro in ros}
    fit_s = {ro: np.empty(shape) for ro in ros}
    conv = {ro: np.ones(shape, dtype=bool) for ro in ros}
    feat_s = np.empty(shape)
    kacc: dict[str, float] = {}
    ksec: dict[str, float] = {}
    serial = jobs == 1

    def features(group: tuple[int, ...], w: int, s: int) -> list[tuple[np.ndarray, float]]:
        if len(group) > 1:  # explicit nets: one first-layer product for all
            maps = [models[names[i]].features for i in group]
            return shared_explicit_features(maps, X, w, s)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        F = models[names[group[0]]].features(X, w, s)
        return [(F, time.perf_counter() - t0)]

    def feature_task(group: tuple[int, ...], j: int, k: int) -> list[Any]:
        out = []
        for i, (F, sec) in zip(group, features(group, ws[j], ss[k])):
            F = as_finite_array(F, f"{names[i]} features", ndim=2)
            if F.shape != (X.shape[0], ws[j]):
                raise ValueError(
                    f"{names[i]}: features of shape {F.shape}; expected {(X.shape[0], ws[j])}"
                )
            limit = _threads_for(2.0 * ntr * ws[j] * min(ntr, ws[j])) if serial else None
            with blas_threads(limit):
                fits = _grid_readouts(
                    F, ntr, ctr, cte, n_classes, ros, lam, max_iter=iters, tol=ltol, dtype=ldtype
                )
            out.append((i, j, k, sec, fits))
        return out

    def kernel_task(i: int) -> tuple[int, float, float]:
        threads = _threads_for(ntr**3 / 3.0) if serial else None
        return i, *_kernel_limit(models[names[i]].kernel, X, ntr, ctr, cte, lam, threads)

    # the longest tasks first, so that the last ones, which nothing overlaps, are short
    tasks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
    if kernel_limit:
        tasks += [(kernel_task, (i,)) for i in range(len(names))]
    groups = _feature_groups(models, names)
    for j in sorted(range(len(ws)), key=lambda j: -ws[j]):
        tasks += [(feature_task, (g, j, k)) for k in range(len(ss)) for g in groups]
    bar = progress_bar(progress, total=int(np.prod(shape)), desc="random features")
    pool = None
    try:
        # one BLAS thread per concurrent task; threadpoolctl's limit is process-wide, so it
        # is set once here, before any task starts, rather than by each task
        with blas_threads(None if serial else 1):
            if serial:
                done: Iterator[Any] = (fn(*args) for fn, args in tasks)
            else:
                from concurrent.futures import ThreadPoolExecutor, as_completed

                pool = ThreadPoolExecutor(max_workers=jobs, initializer=_one_openmp_thread)
                futures = [pool.submit(fn, *args) for fn, args in tasks]
                done = (f.result() for f in as_completed(futures))
            for out in done:
                if isinstance(out, tuple):  # a kernel limit; a feature task gives a list
                    i, kacc[names[i]], ksec[names[i]] = out
                    continue
                for i, j, k, sec, fits in out:
                    feat_s[i, j, k] = sec
                    for ro, (te, tr, fsec, ok) in fits.items():
                        test[ro][i, j, k], train[ro][i, j, k] = te, tr
                        fit_s[ro][i, j, k], conv[ro][i, j, k] = fsec, ok
                    bar.update(1)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        bar.close()
    results = {
        (name, ro): RandomFeatureResult(
            widths=ws,
            seeds=ss,
            test_accuracy=test[ro][i],
            train_accuracy=train[ro][i],
            readout=ro,
            ridge=lam,
            name=name,
        )
        for i, name in enumerate(names)
        for ro in ros
    }
    kacc = {name: kacc[name] for name in names if name in kacc}
    ksec = {name: ksec[name] for name in names if name in ksec}
    return ClassificationResult(
        models=names, widths=ws, seeds=ss, readouts=ros, results=results, kernel_accuracy=kacc,
        feature_seconds=feat_s, fit_seconds=fit_s, kernel_seconds=ksec, converged=conv,
        n_train=ntr, n_test=int(B.shape[0]), ridge=lam, max_iter=iters,
        model_notes={name: models[name].note for name in names},
    )  # fmt: skip


def _feature_groups(
    models: Mapping[str, FeatureModel], names: tuple[str, ...]
) -> list[tuple[int, ...]]:
    """Models whose features are computed together: the explicit nets of
    :func:`explicit_features` (their first layers share one product), then one model each."""
    shared = tuple(
        i for i, n in enumerate(names) if isinstance(models[n].features, ExplicitFeatures)
    )
    grouped = shared if len(shared) > 1 else ()
    groups: list[tuple[int, ...]] = [grouped] if grouped else []
    return groups + [(i,) for i in range(len(names)) if i not in grouped]


def _one_openmp_thread() -> None:
    """Limit the calling thread's OpenMP regions (the C++ core's) to one thread: with
    libgomp the limit is the calling thread's own, so each worker of a pool sets it."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="openmp")
