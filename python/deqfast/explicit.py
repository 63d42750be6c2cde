"""Not-so-deep explicit networks and their kernels (:ref:`§5 <theory-5>`).

An explicit net with ``L`` hidden layers: ``h_0 = x``, ``h_ℓ = σ_ℓ(W_ℓ h_{ℓ−1})``,
``W_1 ~ N(0, 1)``, ``W_ℓ ~ N(0, 1/d_{ℓ−1})`` (``d_ℓ`` the width of layer ``ℓ``),
``f = vᵀ h_L / √d_L``. At infinite width

    S_1 = XXᵀ,   K_ℓ = F_{σ_ℓ}(S_ℓ),   S_{ℓ+1} = K_ℓ,   K̇_ℓ = F_{σ_ℓ'}(S_ℓ)
    Θ^z_{ℓ+1} = S_{ℓ+1} + K̇_ℓ ∘ Θ^z_ℓ,    CK = K_L,    NTK = K_L + K̇_L ∘ Θ^z_L

with ``Θ^z_1 = 0`` by default (the input weights ``W_1`` are not trained, like the
DEQ's ``B``) and ``Θ^z_1 = S_1`` with ``trained="all"``.

An **input skip** of scale ``s_ℓ`` into layer ``ℓ`` (``input_skip=s`` for the last layer,
or one scale per layer) adds ``s_ℓ U_ℓᵀ x`` to its pre-activation, ``U_ℓ ~ N(0, 1)`` of
shape ``(p, d_ℓ)``, like the DEQ's injection ``σ_b B x``: ``S_ℓ`` gains ``s_ℓ² XXᵀ``, and
``Θ^z_ℓ`` gains it only with ``trained="all"`` (``U_ℓ`` is an input weight, fixed by
default). The tangent term ``K̇_L ∘ Θ^z_L`` then carries ``K_{L−1}`` without the injected
part, as the DEQ's ``Ġ* ∘ σ_a² K*`` does. Every ``σ_ℓ`` is centred at
the mixture level of its input kernel, ``τ_ℓ = √d_ℓ`` (``d_1 = τ0²``, then
``d_{ℓ+1} = m2`` of layer ``ℓ``): ``σ_ℓ = raw_ℓ − E raw_ℓ(τ_ℓ ξ)``, the same constant
for every sample, as the theory prescribes (:ref:`§2 <theory-2>`).

The surrogate coefficients are a finite composition of the maps of
:mod:`deqfast.coefficients` — the same code that gives the DEQ's equilibrium
equations — and the exact kernels are one C++ Gaussian map per layer
(``_core.gaussian_map``: arc-cosine / arcsine closed forms, Mehler series
otherwise); no fixed point is involved.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deqfast import _core
from deqfast import activations as _act
from deqfast import coefficients as alg
from deqfast._shared import resolve_threads
from deqfast._stats import check_stats
from deqfast._validation import (
    as_data_matrix,
    as_rng,
    check_integer,
    check_positive,
)
from deqfast._vocabulary import check_kernel, deprecated_module_attributes, renamed_keywords
from deqfast.activations import Moments
from deqfast.coefficients import KernelCoefficients
from deqfast.data import MixtureStats
from deqfast.surrogate import surrogate_matrix

__all__ = ["ExplicitForwardResult", "ExplicitNet", "Layer"]

#: The kernels an explicit net has coefficients for (its pre-activations are the layers').
_KERNELS = ("ck", "ntk")

__getattr__ = deprecated_module_attributes(
    __name__,
    {
        "ForwardResult": (
            "use deqfast.explicit.ExplicitForwardResult",
            lambda: ExplicitForwardResult,
        )
    },
)


@dataclass(frozen=True)
class Layer:
    """One hidden layer of an :class:`ExplicitNet` at the mixture level.

    ``activation`` is the centred ``σ_ℓ`` (``raw − center``), ``tau`` the scale
    ``√d_ℓ`` of its input kernel at which it is centred, ``moments`` its Gaussian
    moments there (``a0 = 0``), and ``input``/``output`` the coefficients of ``S_ℓ``
    and ``K_ℓ``.
    """

    activation: Any
    tau: float
    center: float
    moments: Moments = field(repr=False)
    input: KernelCoefficients = field(repr=False)
    output: KernelCoefficients = field(repr=False)


@dataclass(frozen=True)
class ExplicitForwardResult:
    """A finite-width forward pass (see :meth:`ExplicitNet.forward`).

    ``hidden[ℓ]`` is ``h_{ℓ+1}`` of shape ``(n, d_{ℓ+1})``; ``output`` is
    ``f = h_L v / √d_L`` of shape ``(n,)``; ``widths`` the layer widths.
    """

    hidden: tuple[np.ndarray, ...] = field(repr=False)
    output: np.ndarray = field(repr=False)
    widths: tuple[int, ...]

    @property
    def features(self) -> np.ndarray:
        """The last hidden layer ``h_L`` (random features), ``(n, d_L)``."""
        return self.hidden[-1]

    def ck(self) -> np.ndarray:
        """The empirical CK ``h_L h_Lᵀ / d_L``."""
        h = self.hidden[-1]
        return (h @ h.T) / h.shape[1]


class ExplicitNet:
    """An explicit feed-forward net with centred activations (:ref:`§5 <theory-5>`).

    Parameters
    ----------
    activations
        One activation per hidden layer: names from :data:`deqfast.activations.NAMES`
        or :class:`~deqfast.activations.Activation` objects (e.g.
        ``activations.lrelu(1.2, -0.3)``, ``activations.polynomial([...])``). Each is
        centred automatically at the scale ``τ_ℓ = √d_ℓ`` of its layer's input
        kernel (any shift it already carries is kept and completed).
    tau0
        Input scale ``τ0`` (``‖x_i‖² ≈ τ0²``, e.g. ``stats.tau0``): the first layer is
        centred at ``τ0``.
    input_skip
        Scale ``s ≥ 0`` of a random projection of the input added to the last hidden
        layer's pre-activation, ``z_L = W_Lᵀ h_{L−1} + s Uᵀ x`` (the DEQ's input
        injection; ``U`` is trained only with ``trained="all"``), or a sequence of ``L``
        such scales, one per layer. Default 0: no skip. The attribute holds the ``L``
        per-layer scales.

    Examples
    --------
    >>> import deqfast as df
    >>> net = df.explicit.ExplicitNet(["relu", "relu"], tau0=1.0)
    >>> ck = net.coefficients("ck")
    >>> round(ck.d, 8), ck.c1, round(ck.c2, 8), round(ck.c3, 8)
    (0.11617535, 0.0625, 0.02350898, 0.03448631)
    """

    __slots__ = ("_layers", "input_skip", "tau0")
    tau0: float
    input_skip: tuple[float, ...]
    _layers: tuple[Layer, ...]

    def __init__(
        self, activations: Sequence[Any], *, tau0: float, input_skip: float | Sequence[float] = 0.0
    ) -> None:
        if isinstance(activations, (str, bytes)) or not isinstance(activations, Sequence):
            raise TypeError(
                "activations must be a sequence with one activation per hidden layer, got "
                f"{type(activations).__name__}"
            )
        if len(activations) == 0:
            raise ValueError("activations must name at least one hidden layer")
        t0 = check_positive(tau0, "tau0")
        skips = _skips(input_skip, len(activations))
        S = alg.input_kernel(t0)
        layers = []
        for k, a in enumerate(activations):
            raw = _act.get(a)
            if skips[k] > 0:  # S_ℓ gains s_ℓ² XXᵀ
                S = alg.add(S, alg.scale(alg.input_kernel(t0), skips[k] ** 2))
            if not S.d > 0 or not math.isfinite(S.d):
                raise ValueError(
                    f"layer {k + 1}: its input kernel has diagonal level {S.d!r}; the previous "
                    "activation is constant at the mixture scale"
                )
            tau = math.sqrt(S.d)
            center = raw.moments(tau).a0
            phi = raw.centered(center)
            m = phi.moments(tau)
            K = alg.gaussian_map(S, m)
            layers.append(
                Layer(activation=phi, tau=tau, center=center, moments=m, input=S, output=K)
            )
            S = K
        object.__setattr__(self, "tau0", t0)
        object.__setattr__(self, "input_skip", skips)
        object.__setattr__(self, "_layers", tuple(layers))

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("ExplicitNet objects are immutable")

    # -- structure ------------------------------------------------------------------------
    @property
    def layers(self) -> tuple[Layer, ...]:
        """The hidden layers (centred activations, scales, moments, coefficients)."""
        return self._layers

    @property
    def depth(self) -> int:
        """Number of hidden layers ``L``."""
        return len(self._layers)

    @property
    def activations(self) -> tuple[Any, ...]:
        """The centred activations ``σ_1..σ_L``."""
        return tuple(layer.activation for layer in self._layers)

    # -- coefficient algebra (docs/theory.md §5) ---------------------------------------------
    @renamed_keywords(kind="kernel")
    def coefficients(self, kernel: str = "ck", *, trained: str = "hidden") -> KernelCoefficients:
        """Surrogate coefficients of the CK (``K_L``) or the NTK (:ref:`§5 <theory-5>`).

        ``kernel="ck"``: ``(d, c1, c2, c3, c4)`` of ``K_L``. ``kernel="ntk"``: ``(d, c1, c2, c3)``
        of ``K_L + K̇_L ∘ Θ^z_L`` with ``Θ^z_1 = 0`` (``trained="hidden"``, input weights
        fixed, the DEQ's default convention) or ``Θ^z_1 = XXᵀ`` (``trained="all"``).
        """
        kernel, trained = check_kernel(kernel, trained, allowed=_KERNELS)
        if kernel == "ck":
            return self._layers[-1].output
        X = alg.input_kernel(self.tau0)
        gram = KernelCoefficients(X.d, X.c1, X.c2, X.c3)
        skips = self.input_skip if trained == "all" else (0.0,) * self.depth
        # Θ^z_1: W_1 and U_1 trained ("all") or none of them
        theta = alg.scale(gram, 1.0 + skips[0] ** 2) if trained == "all" else None
        for k in range(1, self.depth):  # Θ^z_{k+1} = K_k + K̇_k ∘ Θ^z_k (+ s² XXᵀ, "all")
            layer = self._layers[k - 1]
            K = layer.output
            source = KernelCoefficients(K.d, K.c1, K.c2, K.c3)
            if theta is None:
                theta = source
            else:
                theta = alg.add(
                    source, alg.hadamard_derivative(layer.moments, layer.input.c1, theta)
                )
            if skips[k] > 0:
                theta = alg.add(theta, alg.scale(gram, skips[k] ** 2))
        last = self._layers[-1]
        K = last.output
        out = KernelCoefficients(K.d, K.c1, K.c2, K.c3)
        if theta is None:
            return out
        return alg.add(out, alg.hadamard_derivative(last.moments, last.input.c1, theta))

    # -- exact infinite-width kernels ------------------------------------------------------------
    def _exact(
        self,
        X: Any,
        X2: Any,
        *,
        ntk: bool,
        trained: str,
        hermite_terms: int,
        num_threads: int | None,
        gram: Any = None,
    ) -> np.ndarray:
        X = as_data_matrix(X, "X")
        symmetric = X2 is None
        Y = X if symmetric else as_data_matrix(X2, "X2")
        if Y.shape[1] != X.shape[1]:
            raise ValueError(f"X2 must have p={X.shape[1]} columns like X, got shape {Y.shape}")
        shape = (X.shape[0], Y.shape[0])
        if gram is not None and (
            not isinstance(gram, np.ndarray) or gram.dtype != np.float64 or gram.shape != shape
        ):
            raise ValueError(
                f"gram must be X @ X2.T (X @ X.T without X2), a float64 array of shape {shape}; "
                f"got {getattr(gram, 'dtype', type(gram).__name__)} of shape {np.shape(gram)}"
            )
        terms = check_integer(hermite_terms, "hermite_terms", min_value=2, max_value=400)
        threads = resolve_threads(num_threads)
        cores = [layer.activation.core for layer in self._layers]  # TypeError for callables
        dA = np.einsum("ij,ij->i", X, X)
        dB = dA if symmetric else np.einsum("ij,ij->i", Y, Y)
        for name, d in (("X", dA), ("X2", dB)):
            zero = np.flatnonzero(d == 0)
            if zero.size:
                raise ValueError(
                    f"{name} has all-zero rows (first: row {zero[0]}); the kernel at zero input "
                    "variance is degenerate and not supported"
                )
        S = np.ascontiguousarray(X @ Y.T if gram is None else gram)
        theta = S.copy() if (ntk and trained == "all") else None
        last = len(cores) - 1
        inputs = (S, dA, dB)  # not written to (nor is a caller's gram): new arrays per layer
        for k, core in enumerate(cores):
            s2 = self.input_skip[k] ** 2
            if s2 > 0:  # the input skip: S_ℓ gains s_ℓ² XXᵀ
                S = S + s2 * inputs[0]
                dA = dA + s2 * inputs[1]
                dB = dA if symmetric else dB + s2 * inputs[2]
                if ntk and trained == "all":  # U_ℓ is trained too
                    assert theta is not None
                    theta = theta + s2 * inputs[0]
            A = _core.samples_at(core, dA, terms)
            B = A if symmetric else _core.samples_at(core, dB, terms)
            G = np.empty_like(S)
            Gdot = np.empty_like(S) if ntk else None
            _core.gaussian_map(core, S, A, B, symmetric, G=G, Gdot=Gdot, num_threads=threads)
            if ntk:
                assert Gdot is not None
                if k == last:
                    return G if theta is None else G + Gdot * theta
                theta = G.copy() if theta is None else G + Gdot * theta
            S = G
            dA = np.array(A.m2)
            dB = dA if symmetric else np.array(B.m2)
        return S

    def ck(
        self,
        X: Any,
        X2: Any = None,
        *,
        hermite_terms: int = 64,
        num_threads: int | None = None,
        gram: Any = None,
    ) -> np.ndarray:
        """The exact infinite-width CK ``K_L`` (:ref:`§5 <theory-5>`), ``(n, n)`` or ``(n, n2)``.

        One C++ Gaussian map per layer (closed forms for the piecewise-linear family and
        ``erf``, exact Mehler series for polynomials, ``hermite_terms`` Mehler terms or
        quadrature otherwise); ``X2`` gives the cross kernel. ``gram`` is ``X @ X2.T``
        (``X @ X.T`` without ``X2``) when the caller already has it, e.g. for several nets
        on the same data: it is used as given (not recomputed or checked beyond its shape and
        dtype), and the kernel is the same as without it.
        """
        return self._exact(
            X, X2, ntk=False, trained="hidden", hermite_terms=hermite_terms,
            num_threads=num_threads, gram=gram,
        )  # fmt: skip

    def ntk(
        self,
        X: Any,
        X2: Any = None,
        *,
        trained: str = "hidden",
        hermite_terms: int = 64,
        num_threads: int | None = None,
        gram: Any = None,
    ) -> np.ndarray:
        """The exact infinite-width NTK ``K_L + K̇_L ∘ Θ^z_L`` (:ref:`§5 <theory-5>`).

        ``trained="hidden"`` (default): ``W_2..W_L`` and ``v`` trained, ``Θ^z_1 = 0``;
        ``trained="all"``: ``W_1`` too, ``Θ^z_1 = XXᵀ``. ``gram`` as in :meth:`ck`.
        """
        _, trained = check_kernel("ntk", trained)
        return self._exact(
            X, X2, ntk=True, trained=trained, hermite_terms=hermite_terms,
            num_threads=num_threads, gram=gram,
        )  # fmt: skip

    # -- surrogates ---------------------------------------------------------------------------
    def _check_stats(self, stats: Any) -> MixtureStats:
        return check_stats(stats, self.tau0, "net")

    def ck_surrogate(self, X: Any, stats: MixtureStats, *, gram: Any = None) -> np.ndarray:
        """The RMT surrogate ``M̄`` of the CK (:ref:`§4 <theory-4>`) with this net's
        coefficients; ``gram`` is ``X Xᵀ`` when already computed (see
        :func:`~deqfast.surrogate_matrix`)."""
        return surrogate_matrix(X, self._check_stats(stats), self.coefficients("ck"), gram=gram)

    def ntk_surrogate(
        self, X: Any, stats: MixtureStats, *, trained: str = "hidden", gram: Any = None
    ) -> np.ndarray:
        """The RMT surrogate of the NTK with this net's coefficients; ``gram`` as in
        :meth:`ck_surrogate`.

        See :ref:`§4 <theory-4>`–:ref:`§5 <theory-5>`.
        """
        coef = self.coefficients("ntk", trained=trained)
        return surrogate_matrix(X, self._check_stats(stats), coef, gram=gram)

    # -- finite width ---------------------------------------------------------------------------
    def _widths(self, widths: Any) -> tuple[int, ...]:
        if isinstance(widths, numbers.Integral) and not isinstance(widths, bool):
            widths = (widths,) * self.depth
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
            raise TypeError(
                f"widths must be an int or a sequence of {self.depth} ints, got "
                f"{type(widths).__name__}"
            )
        if len(widths) != self.depth:
            raise ValueError(
                f"widths must have one entry per hidden layer ({self.depth}), got {len(widths)}"
            )
        return tuple(check_integer(w, "widths", min_value=1) for w in widths)

    def forward(self, X: Any, widths: Any, *, seed: Any = None) -> ExplicitForwardResult:
        """A finite-width forward pass with Gaussian weights (:ref:`§5 <theory-5>` convention).

        Weights are drawn from ``rng = np.random.default_rng(seed)`` (a ``Generator`` is
        used as is) in this order: ``W_1`` of shape ``(p, d_1)`` with standard normal
        entries, then ``W_ℓ`` of shape ``(d_{ℓ−1}, d_ℓ)`` as ``rng.standard_normal`` times
        ``1/√d_{ℓ−1}``, each followed, for a layer with an input skip, by ``U_ℓ`` of shape
        ``(p, d_ℓ)`` (standard normal), then the read-out ``v`` of shape ``(d_L,)``. Rows
        of ``X`` are samples: ``h_ℓ = σ_ℓ(h_{ℓ−1} W_ℓ + s_ℓ X U_ℓ)`` (NumPy GEMM,
        activation in C++).

        Parameters
        ----------
        X
            Data ``(n, p)``.
        widths
            One int for every layer, or a sequence of ``L`` widths.
        seed
            ``None``, a non-negative int or a ``numpy.random.Generator``.
        """
        return self._forward(as_data_matrix(X, "X"), self._widths(widths), as_rng(seed))

    def _forward(
        self,
        X: np.ndarray,
        ws: tuple[int, ...],
        rng: np.random.Generator,
        first: np.ndarray | None = None,
    ) -> ExplicitForwardResult:
        """:meth:`forward` on checked arguments. ``first``, when given, is ``X W_1`` with
        ``W_1 = rng.standard_normal((p, d_1))`` drawn by the caller, ``rng`` now after that
        draw: nets drawn from the same seed share it (it is not written to)."""
        h = X
        hidden = []
        for k, (layer, w) in enumerate(zip(self._layers, ws)):
            if k == 0 and first is not None:
                z = first
            else:
                W = rng.standard_normal((h.shape[1], w))
                if k > 0:
                    W *= 1.0 / math.sqrt(h.shape[1])
                z = h @ W
            if self.input_skip[k] > 0:
                z = z + self.input_skip[k] * (X @ rng.standard_normal((X.shape[1], w)))
            h = layer.activation(z)
            hidden.append(h)
        v = rng.standard_normal(ws[-1])
        return ExplicitForwardResult(
            hidden=tuple(hidden), output=h @ v / math.sqrt(ws[-1]), widths=ws
        )

    def empirical_ck(self, X: Any, widths: Any, *, trials: int = 1, seed: Any = None) -> np.ndarray:
        """Monte-Carlo CK ``h_L h_Lᵀ / d_L`` averaged over ``trials`` independent nets.

        The nets are drawn one after the other from one ``np.random.default_rng(seed)``
        stream (see :meth:`forward`); the result tends to :meth:`ck` as the widths grow.
        """
        trials = check_integer(trials, "trials", min_value=1)
        rng = as_rng(seed)
        X = as_data_matrix(X, "X")
        ws = self._widths(widths)
        acc = np.zeros((X.shape[0], X.shape[0]))
        for _ in range(trials):
            acc += self.forward(X, ws, seed=rng).ck()
        return acc / trials

    # -- dunder ---------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ExplicitNet)
            and self.tau0 == other.tau0
            and self.input_skip == other.input_skip
            and self.activations == other.activations
        )

    def __hash__(self) -> int:
        return hash((self.tau0, self.input_skip, self.activations))

    def __reduce__(self) -> tuple[Any, ...]:
        acts = tuple(a.uncentered() for a in self.activations)
        return (_rebuild, (acts, self.tau0, self.input_skip))

    def __repr__(self) -> str:
        acts = ", ".join(repr(layer.activation) for layer in self._layers)
        *inner, s = self.input_skip
        if any(inner):
            skip = ", input_skip=(" + ", ".join(f"{v:.6g}" for v in self.input_skip) + ")"
        else:
            skip = f", input_skip={s:.6g}" if s > 0 else ""
        return f"ExplicitNet([{acts}], tau0={self.tau0:.6g}{skip})"


def _rebuild(
    activations: tuple[Any, ...], tau0: float, input_skip: tuple[float, ...] | float = 0.0
) -> ExplicitNet:
    return ExplicitNet(list(activations), tau0=tau0, input_skip=input_skip)


def _skips(input_skip: Any, depth: int) -> tuple[float, ...]:
    """Per-layer input-skip scales: a number is the last layer's, a sequence one per layer."""
    if isinstance(input_skip, (str, bytes)):
        raise TypeError(f"input_skip must be a number or a sequence of numbers, got {input_skip!r}")
    if isinstance(input_skip, Sequence) or isinstance(input_skip, np.ndarray):
        if len(input_skip) != depth:
            raise ValueError(
                f"input_skip must have one scale per hidden layer ({depth}), got {len(input_skip)}"
            )
        return tuple(check_positive(v, "input_skip", allow_zero=True) for v in input_skip)
    last = check_positive(input_skip, "input_skip", allow_zero=True)
    return (0.0,) * (depth - 1) + (last,)
