"""Random feature maps of the paper's models and the plain ReLU baseline's kernel."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from deqfast._validation import (
    as_data_matrix,
    check_integer,
)

__all__ = [
    "ExplicitFeatures",
    "FeatureFn",
    "deq_features",
    "explicit_features",
    "relu_features",
    "relu_kernel",
    "shared_explicit_features",
]

FeatureFn = Callable[[np.ndarray, int, int], np.ndarray]


def relu_features(X: Any, width: int, seed: Any = None) -> np.ndarray:
    """Plain one-layer ReLU random features ``max(X W, 0)/√m``, ``W`` ``(p, m)`` standard normal.

    The baseline of the paper's comparison (not centred); its infinite-width
    kernel is :func:`relu_kernel`.
    """
    from deqfast._validation import as_rng

    Xm = as_data_matrix(X, "X")
    m = check_integer(width, "width", min_value=1)
    W = as_rng(seed, "seed").standard_normal((Xm.shape[1], m))
    return np.maximum(Xm @ W, 0.0) / math.sqrt(m)


def relu_kernel(X: Any, Y: Any = None) -> np.ndarray:
    """Infinite-width kernel of :func:`relu_features`: ``E[relu(wᵀx) relu(wᵀy)]``.

    The arc-cosine kernel ``‖x‖‖y‖ (sin θ + (π − θ) cos θ) / (2π)``, ``θ`` the
    angle between ``x`` and ``y``.  Shape ``(n, n)``, or ``(n, n2)`` with ``Y``.
    """
    Xm = as_data_matrix(X, "X")
    Ym = Xm if Y is None else as_data_matrix(Y, "Y")
    if Ym.shape[1] != Xm.shape[1]:
        raise ValueError(f"Y must have p = {Xm.shape[1]} columns like X; got shape {Ym.shape}")
    nx = np.sqrt(np.einsum("ij,ij->i", Xm, Xm))
    ny = np.sqrt(np.einsum("ij,ij->i", Ym, Ym))
    G = Xm @ Ym.T
    denom = np.outer(nx, ny)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(denom > 0, G / np.where(denom > 0, denom, 1.0), 1.0)
    cos = np.clip(cos, -1.0, 1.0)
    theta = np.arccos(cos)
    K = denom * (np.sin(theta) + (np.pi - theta) * cos) / (2 * np.pi)
    if Y is None:
        K = 0.5 * (K + K.T)
    return K


def deq_features(deq: Any, **forward_options: Any) -> FeatureFn:
    """Feature map of a finite-width DEQ: ``φ(z*(x))/√m`` (:ref:`§3 <theory-3>`).

    Uses :func:`deqfast.finite.forward` (``forward_options`` are passed on,
    e.g. ``tol=1e-6``); the weights are drawn from ``seed``.
    """
    from deqfast.finite import forward

    def fn(X: np.ndarray, width: int, seed: Any) -> np.ndarray:
        res = forward(deq, X, width, seed=seed, **forward_options)
        return np.asarray(res.features, dtype=np.float64) / math.sqrt(width)

    fn.__name__ = f"deq_features({deq!r})"
    return fn


class ExplicitFeatures:
    """The feature map of an explicit net, ``h_L/√m`` (see :func:`explicit_features`)."""

    __slots__ = ("net",)

    def __init__(self, net: Any) -> None:
        self.net = net

    def __call__(self, X: np.ndarray, width: int, seed: Any) -> np.ndarray:
        return self._scaled(self.net.forward(X, width, seed=seed).features, width)

    @staticmethod
    def _scaled(h: np.ndarray, width: int) -> np.ndarray:
        return np.asarray(h, dtype=np.float64) / math.sqrt(width)

    def __repr__(self) -> str:
        return f"explicit_features({self.net!r})"


def explicit_features(net: Any) -> FeatureFn:
    """Feature map of an explicit net (e.g. ``design_explicit(...).net``): ``h_L/√m``.

    Every hidden layer gets the width ``m``; the weights are drawn from ``seed``
    by ``net.forward``.
    """
    return ExplicitFeatures(net)


def shared_explicit_features(
    maps: Sequence[ExplicitFeatures], X: np.ndarray, width: int, seed: int
) -> list[tuple[np.ndarray, float]]:
    """``[(fn(X, width, seed), seconds) for fn in maps]``, the same arrays bit for bit, with
    the first layer's product ``X W_1`` computed once: every net draws ``W_1`` of shape
    ``(p, m)`` first from the same seed.  Each net's seconds include that product's."""
    import time

    from deqfast._validation import as_rng

    t0 = time.perf_counter()
    Xm = as_data_matrix(X, "X")
    rng = as_rng(seed, "seed")
    first = Xm @ rng.standard_normal((Xm.shape[1], width))
    state = rng.bit_generator.state
    shared = time.perf_counter() - t0
    out = []
    for fn in maps:
        t0 = time.perf_counter()
        net = fn.net
        r = np.random.Generator(type(rng.bit_generator)())
        r.bit_generator.state = state
        h = net._forward(Xm, net._widths(width), r, first=first).features
        out.append((fn._scaled(h, width), shared + time.perf_counter() - t0))
    return out
