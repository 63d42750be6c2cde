"""Accuracy of one random-feature model over widths and seeds, and accuracy tables."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deqfast._shared import markdown_table, progress_bar
from deqfast._validation import (
    as_finite_array,
    check_choice,
    check_positive,
)
from deqfast.random_features._maps import FeatureFn
from deqfast.random_features._readouts import (
    _READOUTS,
    _check_split,
    _check_widths_seeds,
    fit_readout,
)

__all__ = ["RandomFeatureResult", "accuracy_rows", "accuracy_table", "random_feature_accuracy"]


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class RandomFeatureResult:
    """Test accuracies of a random-feature model over widths and seeds.

    Attributes
    ----------
    widths : tuple of int
    seeds : tuple of int
    test_accuracy : ndarray, shape (len(widths), len(seeds))
        Fraction of correctly classified test samples.
    train_accuracy : ndarray, shape (len(widths), len(seeds))
    readout : str
    ridge : float
    name : str
    """

    widths: tuple[int, ...]
    seeds: tuple[int, ...]
    test_accuracy: np.ndarray
    train_accuracy: np.ndarray
    readout: str
    ridge: float
    name: str = ""

    @property
    def mean(self) -> np.ndarray:
        """Mean test accuracy per width."""
        return self.test_accuracy.mean(axis=1)

    @property
    def std(self) -> np.ndarray:
        """Standard deviation (``ddof=1``; 0 for a single seed) of the test accuracy per width."""
        if self.test_accuracy.shape[1] < 2:
            return np.zeros(len(self.widths))
        return self.test_accuracy.std(axis=1, ddof=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "name": self.name,
            "widths": list(self.widths),
            "seeds": list(self.seeds),
            "readout": self.readout,
            "ridge": self.ridge,
            "test_accuracy": self.test_accuracy.tolist(),
            "train_accuracy": self.train_accuracy.tolist(),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }

    def table(self) -> str:
        """Plain-text table: width, mean ± std test accuracy (%), train accuracy (%)."""
        lines = [f"{'width':>6}  {'test accuracy (%)':>18}  {'train (%)':>9}"]
        for i, w in enumerate(self.widths):
            lines.append(
                f"{w:>6}  {100 * self.mean[i]:>10.2f} ± {100 * self.std[i]:<5.2f}  "
                f"{100 * self.train_accuracy[i].mean():>9.2f}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        head = f"{self.name or 'random features'}: {self.readout} read-out, λ = {self.ridge:g}, "
        return head + f"{len(self.seeds)} seeds\n" + self.table()

    def __repr__(self) -> str:
        acc = ", ".join(f"{w}: {100 * m:.1f}%" for w, m in zip(self.widths, self.mean))
        return (
            f"RandomFeatureResult(name={self.name!r}, readout={self.readout!r}, "
            f"ridge={self.ridge:g}, seeds={len(self.seeds)}, mean test accuracy {{{acc}}})"
        )


def random_feature_accuracy(
    feature_fn: FeatureFn,
    Xtr: Any,
    ytr: Any,
    Xte: Any,
    yte: Any,
    widths: Sequence[int],
    seeds: Sequence[int] = (0, 1, 2),
    *,
    readout: str = "ridge",
    ridge: float = 1e-2,
    max_iter: int = 500,
    name: str = "",
    progress: bool | None = None,
) -> RandomFeatureResult:
    """Test accuracy of random features + trained linear read-out over widths and seeds.

    Parameters
    ----------
    feature_fn : callable ``(X, width, seed) -> ndarray (n, width)``
        The random feature map (e.g. :func:`deq_features`); it is called once
        per ``(width, seed)`` on the stacked ``[Xtr; Xte]`` so that training and
        test samples see the same random weights.  Scale features so that
        ``FFᵀ`` is the empirical kernel (``h/√m``) for ``ridge`` to mean the same
        as in :func:`kernel_ridge_accuracy`.
    Xtr, ytr, Xte, yte
        Training and test data (rows are samples) and labels (any kind;
        encoded jointly).
    widths : sequence of int
        Widths ``m``.
    seeds : sequence of int
        One independent draw of the random weights per seed.
    readout : {"ridge", "logistic"}
        See :func:`fit_readout`.
    ridge : float
        Regularisation ``λ > 0``.
    max_iter : int
        L-BFGS iterations for the logistic read-out.
    name : str
        Stored in the result.
    progress : bool or None, default None
        Show a tqdm progress bar over the ``(width, seed)`` pairs (``None``: on a terminal).

    Returns
    -------
    RandomFeatureResult
    """
    A, B, ctr, cte = _check_split(Xtr, ytr, Xte, yte)
    if not callable(feature_fn):
        raise TypeError(f"feature_fn must be callable; got {type(feature_fn).__name__}")
    ws, ss = _check_widths_seeds(widths, seeds)
    check_choice(readout, "readout", _READOUTS)
    lam = check_positive(ridge, "ridge")
    X = np.vstack([A, B])
    ntr = A.shape[0]
    test = np.empty((len(ws), len(ss)))
    train = np.empty((len(ws), len(ss)))
    bar = progress_bar(progress, total=len(ws) * len(ss), desc=f"random features {name}".strip())
    try:
        for i, w in enumerate(ws):
            for j, s in enumerate(ss):
                F = as_finite_array(feature_fn(X, w, s), "feature_fn(X, width, seed)", ndim=2)
                if F.shape[0] != X.shape[0]:
                    raise ValueError(
                        f"feature_fn returned {F.shape[0]} rows for {X.shape[0]} samples"
                    )
                predict = fit_readout(F[:ntr], ctr, readout=readout, ridge=lam, max_iter=max_iter)
                train[i, j] = float(np.mean(predict(F[:ntr]) == ctr))
                test[i, j] = float(np.mean(predict(F[ntr:]) == cte))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return RandomFeatureResult(
        widths=ws, seeds=ss, test_accuracy=test, train_accuracy=train, readout=readout,
        ridge=lam, name=name,
    )  # fmt: skip


def accuracy_rows(
    results: Mapping[str, Any], kernel_accuracy: Mapping[str, float] | None = None
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of an accuracy table (%): one row per model, ``mean ± std`` per width
    (``results`` hold ``widths``, ``mean`` and ``std`` like :class:`RandomFeatureResult`),
    then the kernel limit; ``–`` where a model has no value."""
    widths = sorted({w for r in results.values() for w in r.widths})
    kacc = dict(kernel_accuracy or {})
    header = ["model", *[f"m = {w}" for w in widths], "exact kernel (m = ∞)"]
    rows = []
    for name in list(results) + [k for k in kacc if k not in results]:
        row = [name]
        r = results.get(name)
        for w in widths:
            if r is not None and w in r.widths:
                i = r.widths.index(w)
                row.append(f"{100 * r.mean[i]:.1f} ± {100 * r.std[i]:.1f}")
            else:
                row.append("–")
        row.append(f"{100 * kacc[name]:.1f}" if name in kacc else "–")
        rows.append(row)
    return header, rows


def accuracy_table(
    results: Mapping[str, RandomFeatureResult],
    *,
    kernel_accuracy: Mapping[str, float] | None = None,
    fmt: str = "markdown",
) -> str:
    """Table of test accuracies (%): one row per model, ``mean ± std`` per width, kernel limit.

    ``fmt`` is ``"markdown"`` or ``"text"``.
    """
    check_choice(fmt, "fmt", ("markdown", "text"))
    header, rows = accuracy_rows(results, kernel_accuracy)
    if fmt == "markdown":
        return markdown_table(header, rows)
    cols = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header))]
    out = ["  ".join(h.rjust(c) for h, c in zip(header, cols))]
    out += ["  ".join(v.rjust(c) for v, c in zip(r, cols)) for r in rows]
    return "\n".join(out)
