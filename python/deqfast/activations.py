"""Activation functions and their Gaussian moments (:ref:`§2 <theory-2>`).

Every activation is an immutable :class:`Activation` evaluated in C++
(``deqfast._core``) so that the same code path serves the moments, the exact
kernels and the finite-width networks. Build one by name::

    >>> import deqfast as df
    >>> relu = df.activations.get("relu")
    >>> round(relu.moments(1.0).m2, 6)       # E relu(xi)^2 = 1/2
    0.5
    >>> df.activations.get("leaky_relu", slope=0.1)
    Activation('leaky_relu', slope=0.1)

or with the constructors :func:`relu`, :func:`tanh`, :func:`lrelu`, ... A user
callable is wrapped by :func:`custom`; its moments use composite quadrature in
Python (slower, and the exact kernels need a built-in activation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from deqfast import _core
from deqfast._shared import set_frozen
from deqfast._validation import check_in_range

__all__ = [
    "NAMES",
    "Activation",
    "CustomActivation",
    "Moments",
    "clip",
    "custom",
    "elu",
    "erf",
    "gelu",
    "get",
    "hermite",
    "leaky_relu",
    "linear",
    "lrelu",
    "polynomial",
    "relu",
    "sigmoid",
    "softplus",
    "swish",
    "tanh",
]


@dataclass(frozen=True)
class Moments:
    """Gaussian moments of an activation at scale ``tau`` (:ref:`§2 <theory-2>`).

    With ``xi ~ N(0, 1)``: ``a0 = E phi(tau xi)``, ``a1 = E phi'``, ``a2 = E phi''``,
    ``a3 = E phi'''`` (Stein forms, valid across kinks), ``m2 = E phi^2``,
    ``m2_dot = d m2 / d(tau^2)`` at a fixed centring shift, ``e2 = E phi'^2``.
    """

    tau: float
    a0: float
    a1: float
    a2: float
    a3: float
    m2: float
    m2_dot: float
    e2: float

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{k}={getattr(self, k):.6g}"
            for k in ("tau", "a0", "a1", "a2", "a3", "m2", "m2_dot", "e2")
        )
        return f"Moments({fields})"


def _check_tau(tau: float) -> float:
    try:
        t = float(tau)
    except (TypeError, ValueError):
        raise TypeError(f"tau must be a real number, got {type(tau).__name__}") from None
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"tau must be finite and > 0, got {tau!r}")
    return t


_CoreActivation = _core.Activation  # (inside the class, `_core` names the attribute)


class Activation:
    """An activation ``phi(x) = raw(x) - shift`` evaluated in C++.

    Parameters
    ----------
    name
        Registry name (``relu``, ``tanh``, ...; see :data:`NAMES`).
    kind, params, coef
        The C++ family (``lrelu``, ``tanh``, ``erf``, ``sigmoid``, ``swish``, ``gelu``,
        ``softplus``, ``elu``, ``clip``, ``polynomial``, ``hermite``), its numeric
        parameters and polynomial coefficients.
    shift
        Centring constant subtracted from the raw function (:ref:`§2 <theory-2>`).
    """

    __slots__ = ("_core", "coef", "display", "kind", "name", "params", "shift")
    name: str
    kind: str
    params: tuple[float, ...]
    coef: tuple[float, ...]
    shift: float
    display: tuple[tuple[str, float], ...]
    _core: _CoreActivation

    def __init__(
        self,
        name: str,
        kind: str,
        params: tuple[float, ...] = (),
        coef: tuple[float, ...] = (),
        *,
        shift: float = 0.0,
        display: tuple[tuple[str, float], ...] = (),
    ) -> None:
        shift = float(shift)
        if not math.isfinite(shift):
            raise ValueError(f"shift must be finite, got {shift!r}")
        params = tuple(float(p) for p in params)
        coef = tuple(float(c) for c in coef)
        if not all(math.isfinite(v) for v in params + coef):
            raise ValueError(f"parameters of activation {name!r} must be finite")
        set_frozen(
            self, name=name, kind=kind, params=params, coef=coef, shift=shift, display=display,
            _core=_core.Activation(kind, list(params), list(coef), shift),
        )  # fmt: skip

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Activation objects are immutable")

    # -- evaluation ---------------------------------------------------------------
    @property
    def core(self) -> _CoreActivation:
        """The C++ object (``deqfast._core.Activation``) used by the compiled code."""
        return self._core

    def __call__(self, x: Any) -> np.ndarray:
        """``phi(x)`` elementwise."""
        return self._core(np.asarray(x, dtype=np.float64))

    def derivative(self, x: Any) -> np.ndarray:
        """``phi'(x)`` elementwise (one-sided at kinks: a null set for every expectation)."""
        return self._core.derivative(np.asarray(x, dtype=np.float64))

    @property
    def kinks(self) -> tuple[float, ...]:
        """Points where ``phi`` or its first two derivatives jump."""
        return tuple(self._core.kinks())

    @property
    def has_kinks(self) -> bool:
        return bool(self.kinks)

    @property
    def is_odd(self) -> bool:
        """True when the raw function is odd (then ``a2 = 0`` and ``alpha2 = alpha3 = 0``)."""
        if self.kind in ("tanh", "erf", "clip"):
            return True
        if self.kind == "lrelu":
            return self.params[0] == self.params[1]
        if self.kind in ("polynomial", "hermite"):
            return all(c == 0 for c in self.coef[0::2])
        return False

    def moments(self, tau: float) -> Moments:
        """Gaussian moments at scale ``tau`` (:ref:`§2 <theory-2>`), of ``phi`` including its shift.

        Closed forms for the piecewise-linear family and ``erf``, exact Gauss–Hermite
        for polynomials, composite Gauss–Legendre split at the kinks otherwise.
        """
        t = _check_tau(tau)
        m = self._core.moments(t)
        return Moments(t, m.a0, m.a1, m.a2, m.a3, m.m2, m.m2_dot, m.e2)

    def centered(self, center: float) -> Activation:
        """``phi - center`` (shifts add up)."""
        return Activation(
            self.name,
            self.kind,
            self.params,
            self.coef,
            shift=self.shift + float(center),
            display=self.display,
        )

    def uncentered(self) -> Activation:
        """The raw function, without its centring shift."""
        return Activation(self.name, self.kind, self.params, self.coef, display=self.display)

    # -- dunder ---------------------------------------------------------------------
    def _key(self) -> tuple[Any, ...]:
        return (self.kind, self.params, self.coef, self.shift)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Activation) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.name, self.kind, self.params, self.coef, self.shift, self.display))

    def __repr__(self) -> str:
        parts = [repr(self.name)]
        if self.kind in ("polynomial", "hermite"):
            parts.append(f"coef={list(self.coef)}")
        else:
            parts += [f"{k}={v:g}" for k, v in self.display]
        if self.shift:
            parts.append(f"shift={self.shift:.6g}")
        return f"Activation({', '.join(parts)})"


def _rebuild(name, kind, params, coef, shift, display):  # type: ignore[no-untyped-def]
    return Activation(name, kind, params, coef, shift=shift, display=display)


# -- constructors -------------------------------------------------------------------
def linear(slope: float = 1.0) -> Activation:
    """``slope * x``."""
    slope = _param(slope, "linear", "slope")
    return Activation(
        "linear", "lrelu", (slope, slope), display=(("slope", slope),) if slope != 1.0 else ()
    )


def relu() -> Activation:
    """``max(x, 0)``."""
    return Activation("relu", "lrelu", (1.0, 0.0))


def leaky_relu(slope: float = 0.01) -> Activation:
    """``max(x, 0) + slope * min(x, 0)``."""
    slope = _param(slope, "leaky_relu", "slope")
    return Activation("leaky_relu", "lrelu", (1.0, slope), display=(("slope", slope),))


def lrelu(s_pos: float = 1.0, s_neg: float = 0.0) -> Activation:
    """Piecewise linear ``s_pos * max(x, 0) + s_neg * min(x, 0)`` (the authors' L-ReLU)."""
    s_pos, s_neg = _param(s_pos, "lrelu", "s_pos"), _param(s_neg, "lrelu", "s_neg")
    return Activation(
        "lrelu", "lrelu", (s_pos, s_neg), display=(("s_pos", s_pos), ("s_neg", s_neg))
    )


def tanh() -> Activation:
    return Activation("tanh", "tanh")


def erf() -> Activation:
    return Activation("erf", "erf")


def sigmoid() -> Activation:
    return Activation("sigmoid", "sigmoid")


def swish() -> Activation:
    """``x * sigmoid(x)`` (= SiLU)."""
    return Activation("swish", "swish")


def gelu() -> Activation:
    """``x * Phi(x)`` with the exact normal CDF."""
    return Activation("gelu", "gelu")


def softplus() -> Activation:
    """``log(1 + e^x)``."""
    return Activation("softplus", "softplus")


def elu(alpha: float = 1.0) -> Activation:
    """``x`` for ``x > 0``, ``alpha (e^x - 1)`` otherwise."""
    alpha = _param(alpha, "elu", "alpha")
    return Activation("elu", "elu", (alpha,), display=(("alpha", alpha),))


def clip(a: float = 1.0, c: float = 1.0) -> Activation:
    """``a * clip(x, -c, c)`` (the authors' one-layer explicit net for tanh DEQs)."""
    a, c = _param(a, "clip", "a"), _param(c, "clip", "c")
    if not c > 0:
        raise ValueError(f"clip: c must be > 0, got {c!r}")
    return Activation("clip", "clip", (a, c), display=(("a", a), ("c", c)))


def polynomial(coef: Any) -> Activation:
    """``sum_k coef[k] x^k``."""
    c = _coef(coef, "polynomial")
    return Activation("polynomial", "polynomial", coef=c)


def hermite(coef: Any) -> Activation:
    """``sum_k coef[k] He_k(x)`` with probabilists' Hermite polynomials ``He_k``."""
    c = _coef(coef, "hermite")
    return Activation("hermite", "hermite", coef=c)


def _param(value: Any, activation: str, name: str) -> float:
    """``value`` as a finite float; errors name the activation and the parameter."""
    return check_in_range(value, f"{activation}: {name}")


def _coef(coef: Any, name: str) -> tuple[float, ...]:
    try:
        arr = np.asarray(coef, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name}: coef must be a 1-D sequence of real numbers; got {coef!r:.60}"
        ) from exc
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: coef must be a non-empty 1-D sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: coef must be finite")
    return tuple(arr.tolist())


# -- user callables -------------------------------------------------------------------
_GL_X, _GL_W = np.polynomial.legendre.leggauss(16)


def _gaussian_rule(breaks: tuple[float, ...], half_width: float = 12.0, h: float = 0.5):
    """Composite Gauss–Legendre nodes/weights for E g(xi), split at ``breaks`` (xi-space)."""
    pts = sorted({-half_width, half_width, *(b for b in breaks if -half_width < b < half_width)})
    xs, ws = [], []
    for a, b in zip(pts[:-1], pts[1:]):
        panels = max(1, math.ceil((b - a) / h))
        edges = np.linspace(a, b, panels + 1)
        mid, half = (edges[1:] + edges[:-1]) / 2, (edges[1:] - edges[:-1]) / 2
        x = (mid[:, None] + half[:, None] * _GL_X).ravel()
        xs.append(x)
        ws.append((half[:, None] * _GL_W).ravel() * np.exp(-x * x / 2) / math.sqrt(2 * math.pi))
    return np.concatenate(xs), np.concatenate(ws)


class CustomActivation:
    """A user-supplied activation ``f`` (vectorised NumPy callable).

    Moments use composite Gauss–Legendre quadrature in Python, split at the declared
    ``kinks``; the derivative is ``derivative`` when given, else a central finite
    difference (step ``1e-6 * max(1, |x|)``). Exact kernels and finite-width networks
    need a built-in activation (they run in C++): approximate ``f`` by
    :func:`hermite` coefficients if needed.
    """

    def __init__(
        self,
        f: Callable[[np.ndarray], np.ndarray],
        derivative: Callable[[np.ndarray], np.ndarray] | None = None,
        *,
        kinks: tuple[float, ...] = (),
        name: str = "custom",
        shift: float = 0.0,
    ) -> None:
        if not callable(f):
            raise TypeError(f"custom activation: f must be callable, got {type(f).__name__}")
        if derivative is not None and not callable(derivative):
            raise TypeError("custom activation: derivative must be callable or None")
        self.f, self._df, self.name = f, derivative, name
        self.kinks = tuple(float(k) for k in kinks)
        self.shift = float(shift)
        self.kind = "custom"
        probe = np.asarray(f(np.linspace(-2.0, 2.0, 5)), dtype=np.float64)
        if probe.shape != (5,):
            raise ValueError("custom activation: f must map an array of shape (k,) to shape (k,)")

    @property
    def core(self) -> Any:
        raise TypeError(
            f"activation {self.name!r} is a Python callable; exact kernels and finite-width "
            "networks run in C++ and need a built-in activation (see deqfast.activations.NAMES), "
            "e.g. a `hermite(coef)` approximation of it"
        )

    @property
    def has_kinks(self) -> bool:
        return bool(self.kinks)

    is_odd = False

    def __call__(self, x: Any) -> np.ndarray:
        return np.asarray(self.f(np.asarray(x, dtype=np.float64)), dtype=np.float64) - self.shift

    def derivative(self, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._df is not None:
            return np.asarray(self._df(x), dtype=np.float64)
        h = 1e-6 * np.maximum(1.0, np.abs(x))
        return (np.asarray(self.f(x + h)) - np.asarray(self.f(x - h))) / (2 * h)

    def moments(self, tau: float) -> Moments:
        """Gaussian moments (:ref:`§2 <theory-2>`) by composite quadrature split at the kinks."""
        t = _check_tau(tau)
        xi, w = _gaussian_rule(tuple(k / t for k in self.kinks))
        f = self(t * xi)
        d = self.derivative(t * xi)
        x2 = xi * xi
        return Moments(
            t,
            a0=float(w @ f),
            a1=float(w @ (xi * f)) / t,
            a2=float(w @ ((x2 - 1) * f)) / t**2,
            a3=float(w @ ((x2 - 3) * xi * f)) / t**3,
            m2=float(w @ (f * f)),
            m2_dot=float(w @ ((x2 - 1) * f * f)) / (2 * t**2),
            e2=float(w @ (d * d)),
        )

    def centered(self, center: float) -> CustomActivation:
        return CustomActivation(
            self.f, self._df, kinks=self.kinks, name=self.name, shift=self.shift + float(center)
        )

    def uncentered(self) -> CustomActivation:
        return CustomActivation(self.f, self._df, kinks=self.kinks, name=self.name)

    def __repr__(self) -> str:
        s = f", shift={self.shift:.6g}" if self.shift else ""
        return f"CustomActivation({self.name!r}{s})"


def custom(
    f: Callable[[np.ndarray], np.ndarray],
    derivative: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    kinks: tuple[float, ...] = (),
    name: str = "custom",
) -> CustomActivation:
    """Wrap a vectorised callable as an activation (see :class:`CustomActivation`)."""
    return CustomActivation(f, derivative, kinks=kinks, name=name)


_REGISTRY: dict[str, Callable[..., Activation]] = {
    "linear": linear,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "lrelu": lrelu,
    "tanh": tanh,
    "erf": erf,
    "sigmoid": sigmoid,
    "swish": swish,
    "silu": swish,
    "gelu": gelu,
    "softplus": softplus,
    "elu": elu,
    "clip": clip,
    "polynomial": polynomial,
    "hermite": hermite,
}

#: Names accepted by :func:`get`.
NAMES: tuple[str, ...] = tuple(_REGISTRY)


def get(activation: Any, **params: Any) -> Activation | CustomActivation:
    """Return an activation from a name (with parameters), an activation object, or a callable.

    >>> get("clip", a=2.0, c=0.5)
    Activation('clip', a=2, c=0.5)
    """
    if isinstance(activation, (Activation, CustomActivation)):
        if params:
            raise TypeError("parameters can only be given with an activation name")
        return activation
    if isinstance(activation, str):
        key = activation.lower()
        if key not in _REGISTRY:
            raise ValueError(
                f"unknown activation {activation!r}; choose one of {', '.join(NAMES)} "
                "or pass a callable"
            )
        try:
            return _REGISTRY[key](**params)
        except TypeError as exc:  # unknown keyword or a parameter of the wrong type
            msg = str(exc)  # parameter checks already name the activation
            if not msg.startswith(f"{key}:"):
                msg = f"activation {activation!r}: {msg}"
            raise TypeError(msg) from None
    if callable(activation):
        return custom(activation, **params)
    raise TypeError(
        f"activation must be a name, an Activation or a callable, got {type(activation).__name__}"
    )
