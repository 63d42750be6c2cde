"""Per-sample inference time of a finite-width DEQ against an explicit net of the same width."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from deqfast._validation import (
    as_data_matrix,
    check_integer,
)

__all__ = ["InferenceTiming", "inference_timing"]


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class InferenceTiming:
    """Per-sample inference time of a finite-width DEQ and of an explicit net of the same width.

    Both compute the last hidden layer of a batch of ``n`` samples with weights
    drawn beforehand (drawing them is not timed); the read-out, the same
    ``m × K`` product for both, is not included.

    Attributes
    ----------
    width, n : int
    deq_seconds, net_seconds : ndarray
        Wall time of every repetition for the whole batch.
    deq_cpu_seconds, net_cpu_seconds : ndarray
        CPU time of the process (all its threads) for the same repetitions:
        less disturbed than wall time on a busy machine.
    deq_evaluations : int
        Evaluations of the DEQ map (one ``m × m × n`` product each).
    deq_residual, tol : float
        Final relative residual and the tolerance asked for.
    solver, dtype : str
    net_layers : int
        Hidden layers of the explicit net (one product each).
    deq, net : str
        ``repr`` of the two models.
    """

    width: int
    n: int
    deq_seconds: np.ndarray
    net_seconds: np.ndarray
    deq_cpu_seconds: np.ndarray
    net_cpu_seconds: np.ndarray
    deq_evaluations: int
    deq_residual: float
    tol: float
    solver: str
    dtype: str
    net_layers: int
    deq: str
    net: str

    @property
    def deq_per_sample(self) -> float:
        """Best-of-repeats seconds per sample of the DEQ."""
        return float(self.deq_seconds.min() / self.n)

    @property
    def net_per_sample(self) -> float:
        """Best-of-repeats seconds per sample of the explicit net."""
        return float(self.net_seconds.min() / self.n)

    @property
    def speedup(self) -> float:
        """``deq_per_sample / net_per_sample``."""
        return self.deq_per_sample / self.net_per_sample

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "width": self.width, "n": self.n,
            "deq_seconds": self.deq_seconds.tolist(), "net_seconds": self.net_seconds.tolist(),
            "deq_cpu_seconds": self.deq_cpu_seconds.tolist(),
            "net_cpu_seconds": self.net_cpu_seconds.tolist(),
            "deq_per_sample_s": self.deq_per_sample, "net_per_sample_s": self.net_per_sample,
            "speedup": self.speedup, "deq_evaluations": self.deq_evaluations,
            "deq_residual": self.deq_residual, "tol": self.tol, "solver": self.solver,
            "dtype": self.dtype, "net_layers": self.net_layers, "deq": self.deq, "net": self.net,
        }  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"InferenceTiming(width={self.width}, n={self.n}, "
            f"deq={1e6 * self.deq_per_sample:.1f} µs/sample ({self.deq_evaluations} evaluations), "
            f"net={1e6 * self.net_per_sample:.1f} µs/sample, speedup={self.speedup:.1f})"
        )


def _explicit_weights(net: Any, p: int, width: int, seed: Any) -> list[np.ndarray]:
    """The weights ``ExplicitNet.forward(X, width, seed=seed)`` draws, in its order."""
    from deqfast._validation import as_rng

    rng = as_rng(seed, "seed")
    Ws = []
    d = p
    for k in range(net.depth):
        W = rng.standard_normal((d, width))
        if k > 0:
            W *= 1.0 / math.sqrt(d)
        Ws.append(W)
        d = width
    return Ws


def _explicit_hidden(net: Any, X: np.ndarray, Ws: Sequence[np.ndarray]) -> np.ndarray:
    """``h_L`` of ``net`` with the given weights (the products of ``ExplicitNet.forward``)."""
    h = X
    for layer, W in zip(net.layers, Ws):
        h = layer.activation(h @ W)
    return h


def inference_timing(
    deq: Any,
    net: Any,
    X: Any,
    width: int,
    *,
    seed: int = 0,
    repeats: int = 3,
    **forward_options: Any,
) -> InferenceTiming:
    """Measure the per-sample inference time of a width-``m`` DEQ and explicit net.

    The DEQ solves its fixed point for the batch with :func:`deqfast.finite.forward`
    (Anderson to its default tolerance unless ``forward_options`` say otherwise);
    the explicit net computes its hidden layers (one product each, the
    products of :meth:`ExplicitNet.forward`).  Weights are drawn once from
    ``seed`` before timing; each is timed ``repeats`` times.

    Parameters
    ----------
    deq : DEQ
    net : ExplicitNet
        E.g. the net designed for ``deq``.
    X : array_like, shape (n, p)
        The batch (e.g. the test set).
    width : int
    seed : int
    repeats : int
    **forward_options
        Passed to :func:`deqfast.finite.forward` (``solver``, ``tol``, ``dtype``, ...).

    Returns
    -------
    InferenceTiming
    """
    import time

    from deqfast.explicit import ExplicitNet
    from deqfast.finite import draw_weights, forward

    if not isinstance(net, ExplicitNet):
        raise TypeError(f"net must be a deqfast ExplicitNet; got {type(net).__name__}")
    Xm = as_data_matrix(X, "X")
    m = check_integer(width, "width", min_value=1)
    reps = check_integer(repeats, "repeats", min_value=1)
    weights = draw_weights(m, Xm.shape[1], seed=seed)
    Ws = _explicit_weights(net, Xm.shape[1], m, seed)
    deq_t, net_t, deq_c, net_c = (np.empty(reps) for _ in range(4))
    res = None
    for r in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        res = forward(deq, Xm, m, weights=weights, **forward_options)
        deq_t[r], deq_c[r] = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        _explicit_hidden(net, Xm, Ws)
        net_t[r], net_c[r] = time.perf_counter() - t0, time.process_time() - c0
    assert res is not None
    return InferenceTiming(
        width=m, n=int(Xm.shape[0]), deq_seconds=deq_t, net_seconds=net_t,
        deq_cpu_seconds=deq_c, net_cpu_seconds=net_c,
        deq_evaluations=res.evaluations, deq_residual=res.residual, tol=res.tol,
        solver=res.solver, dtype=np.dtype(forward_options.get("dtype", np.float64)).name,
        net_layers=net.depth, deq=repr(deq), net=repr(net),
    )  # fmt: skip
