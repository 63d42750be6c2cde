"""The deep equilibrium model ``z = σ_a Ã φ(z)/√m + σ_b B x``.

The model and its exact kernels are :ref:`§3 <theory-3>` of the theory page, its equilibrium
equations and surrogates :ref:`§4 <theory-4>`.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np

from deqfast import activations as _act
from deqfast._shared import set_frozen
from deqfast._stats import check_stats
from deqfast._validation import as_data_matrix, check_positive
from deqfast._vocabulary import check_kernel, matrix_name, renamed_keywords
from deqfast.coefficients import KernelCoefficients
from deqfast.data import MixtureStats
from deqfast.equilibrium import (
    Equilibrium,
    diagonal_fixed_point,
    solve_equilibrium,
    surrogate_coefficients,
)
from deqfast.kernels import KernelResult, compute_kernels
from deqfast.surrogate import surrogate_matrix

__all__ = ["DEQ"]

#: Supported input scales: ``τ0²`` and every moment at the equilibrium scale stay far inside
#: the double range (``1e±200``), with room for ``σ_b²`` and E1's bracket doubling.
_TAU0_RANGE = (1e-100, 1e100)

#: Marks a field ``DEQ.with_`` leaves unchanged (``None`` is a value there: no ``tau0``, or
#: ``sigma_b2 = 1 − sigma_a2``).
_KEEP: Any = object()

#: ``compute_kernels``' default tolerance, for the iteration estimate in error messages.
_KERNEL_TOL = inspect.signature(compute_kernels).parameters["tol"].default


class DEQ:
    """A deep equilibrium model and its infinite-width kernels.

    A ``DEQ`` is a value: immutable, compared and hashed by its fields, picklable. Vary
    one with :meth:`with_`.

    Parameters
    ----------
    activation
        A name from :data:`deqfast.activations.NAMES` (with ``**params``), an
        :class:`~deqfast.activations.Activation`, or a callable.
    sigma_a2, sigma_b2
        Variances of the hidden and input weights; ``sigma_b2`` defaults to
        ``1 − sigma_a2`` (variance preserving, the paper's choice; :ref:`§3 <theory-3>`).
    tau0
        Input scale ``τ0`` (``‖x_i‖² ≈ τ0²``, e.g. ``stats.tau0``), in ``[1e-100, 1e100]``.
        With it, the activation is centred at the equilibrium scale ``τ*`` (:ref:`§2 <theory-2>`)
        and the surrogates are available; without it the activation is used as is.

    Examples
    --------
    >>> import deqfast as df
    >>> deq = df.DEQ("relu", sigma_a2=0.2, tau0=1.0)
    >>> round(deq.equilibrium().tau, 10)
    0.926566126
    >>> ck = deq.coefficients(kernel="ck")  # surrogate of G*: (d, c1, c2, c3)
    >>> round(ck.d, 10), round(ck.c1, 10), round(ck.c3, 10)
    (0.2926239295, 0.2105263158, 0.069190498)
    >>> deq.with_(sigma_a2=0.5, sigma_b2=None) == df.DEQ("relu", sigma_a2=0.5, tau0=1.0)
    True
    """

    __slots__ = ("_eq", "activation", "sigma_a2", "sigma_b2", "tau0")
    activation: Any
    sigma_a2: float
    sigma_b2: float
    tau0: float | None
    _eq: Equilibrium | None  # the equilibrium, solved on first use (the fields never change)

    def __init__(
        self,
        activation: Any = "relu",
        *,
        sigma_a2: float = 0.2,
        sigma_b2: float | None = None,
        tau0: float | None = None,
        **params: Any,
    ) -> None:
        act = _act.get(activation, **params)
        sa2 = check_positive(sigma_a2, "sigma_a2")
        if sigma_b2 is None:
            if sa2 >= 1.0:
                raise ValueError(
                    f"sigma_b2 defaults to 1 - sigma_a2, which needs sigma_a2 < 1 (got "
                    f"{sigma_a2!r}); pass sigma_b2 explicitly"
                )
            sigma_b2 = 1.0 - sa2
        sb2 = check_positive(sigma_b2, "sigma_b2")
        if tau0 is not None:
            tau0 = check_positive(tau0, "tau0")
            lo, hi = _TAU0_RANGE
            if not lo <= tau0 <= hi:
                raise ValueError(
                    f"tau0 must be in [{lo:g}, {hi:g}] (the input scale |x|; rescale the data "
                    f"and tau0 together), got {tau0!r}"
                )
        set_frozen(self, activation=act, sigma_a2=sa2, sigma_b2=sb2, tau0=tau0, _eq=None)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"DEQ objects are immutable; use deq.with_({key}=...) for a variant")

    def __delattr__(self, key: str) -> None:
        raise AttributeError("DEQ objects are immutable")

    def with_(
        self,
        *,
        activation: Any = _KEEP,
        sigma_a2: float = _KEEP,
        sigma_b2: float | None = _KEEP,
        tau0: float | None = _KEEP,
        **params: Any,
    ) -> DEQ:
        """A copy with the given fields replaced (like :func:`dataclasses.replace`).

        Fields not given keep their values, ``sigma_b2`` included even where it was
        defaulted: pass ``sigma_b2=None`` to get ``1 − sigma_a2`` again, ``tau0=None`` to
        drop the input scale. Activation parameters (``**params``) go with
        ``activation=``.

        Examples
        --------
        >>> import deqfast as df
        >>> df.DEQ("relu", sigma_a2=0.2, tau0=1.0).with_(sigma_a2=0.5)
        DEQ(Activation('relu'), sigma_a2=0.5, sigma_b2=0.8, tau0=1)
        """
        if params and activation is _KEEP:
            raise TypeError(
                f"activation parameters {sorted(params)} need the activation too, e.g. "
                "deq.with_(activation='leaky_relu', slope=0.2)"
            )
        return DEQ(
            self.activation if activation is _KEEP else activation,
            sigma_a2=self.sigma_a2 if sigma_a2 is _KEEP else sigma_a2,
            sigma_b2=self.sigma_b2 if sigma_b2 is _KEEP else sigma_b2,
            tau0=self.tau0 if tau0 is _KEEP else tau0,
            **params,
        )

    def _key(self) -> tuple[Any, ...]:
        return (self.activation, self.sigma_a2, self.sigma_b2, self.tau0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DEQ) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, self._key())

    # -- the equations (docs/theory.md §4) ----------------------------------------------------
    @property
    def _equilibrium(self) -> Equilibrium:
        if self._eq is None:
            if self.tau0 is None:
                raise ValueError(
                    "this DEQ has no tau0: the equilibrium equations and surrogates need the "
                    "input scale, e.g. DEQ(..., tau0=stats.tau0)"
                )
            eq = solve_equilibrium(
                self.activation, sigma_a2=self.sigma_a2, sigma_b2=self.sigma_b2, tau0=self.tau0
            )
            object.__setattr__(self, "_eq", eq)
        assert self._eq is not None
        return self._eq

    def equilibrium(self) -> Equilibrium:
        """``τ*``, the centring constant and ``α1..α4`` of E1–E4 (:ref:`§4 <theory-4>`)."""
        return self._equilibrium

    @property
    def phi(self) -> Any:
        """The activation the model uses: centred at ``τ*`` when ``tau0`` is set."""
        if self.tau0 is None:
            return self.activation
        return self.activation.uncentered().centered(self._equilibrium.center)

    @renamed_keywords(kind="kernel")
    def coefficients(self, kernel: str = "ck", *, trained: str = "hidden") -> KernelCoefficients:
        """Surrogate coefficients ``(d, c1, c2, c3)`` (the table of :ref:`§4 <theory-4>`).

        ``kernel``: ``"pre"`` (``S*``), ``"ck"`` (``G*``) or ``"ntk"`` (``K*``, or ``Θ*``
        with ``trained="all"``).
        """
        kernel, trained = check_kernel(kernel, trained)
        return surrogate_coefficients(self._equilibrium, kernel, trained=trained)

    # -- surrogates (docs/theory.md §4) -------------------------------------------------------
    def _surrogate(
        self, X: Any, stats: MixtureStats, kernel: str, trained: str = "hidden", gram: Any = None
    ) -> np.ndarray:
        stats = check_stats(stats, self._equilibrium.tau0, "DEQ")
        return surrogate_matrix(X, stats, self.coefficients(kernel, trained=trained), gram=gram)

    def pre_surrogate(self, X: Any, stats: MixtureStats) -> np.ndarray:
        """``S̄``: the surrogate of the pre-activation kernel ``S*`` (:ref:`§4 <theory-4>`)."""
        return self._surrogate(X, stats, "pre")

    def ck_surrogate(self, X: Any, stats: MixtureStats, *, gram: Any = None) -> np.ndarray:
        """``Ḡ``: the surrogate of the Implicit-CK ``G*`` (:ref:`§4 <theory-4>`); ``gram`` is
        ``X Xᵀ`` when already computed (see :func:`~deqfast.surrogate_matrix`)."""
        return self._surrogate(X, stats, "ck", gram=gram)

    def ntk_surrogate(
        self, X: Any, stats: MixtureStats, *, trained: str = "hidden", gram: Any = None
    ) -> np.ndarray:
        """``K̄`` (``trained="hidden"``, the paper's NTK) or ``Θ̄`` (``trained="all"``);
        ``gram`` as in :meth:`ck_surrogate`."""
        _, t = check_kernel("ntk", trained)
        return self._surrogate(X, stats, "ntk", t, gram=gram)

    # -- exact kernels (docs/theory.md §3) ----------------------------------------------------
    def kernels(
        self, X: Any, X2: Any = None, *, trained: str = "hidden", **options: Any
    ) -> KernelResult:
        """``S*``, ``G*``, ``Ġ*`` and the NTK (``K*``, or ``Θ*`` with ``trained="all"``) in one
        pass; see :func:`deqfast.kernels.compute_kernels` for ``options``."""
        _, t = check_kernel("ntk", trained)
        outputs = ("S", "G", "Gdot", matrix_name("ntk", t))
        return self._compute(X, X2, outputs, options)

    def ck(self, X: Any, X2: Any = None, **options: Any) -> np.ndarray:
        """The Implicit-CK ``G* = F_φ(S*)`` (:ref:`§3 <theory-3>`), ``(n, n)`` or ``(n, n2)``."""
        G = self._compute(X, X2, ("G",), options).G
        assert G is not None
        return G

    def ntk(self, X: Any, X2: Any = None, *, trained: str = "hidden", **options: Any) -> np.ndarray:
        """The Implicit-NTK (:ref:`§3 <theory-3>`): ``K* = G* ⊘ (1 − σ_a² Ġ*)`` by default,
        ``Θ*`` with ``trained="all"``."""
        _, t = check_kernel("ntk", trained)
        key = matrix_name("ntk", t)
        res = self._compute(X, X2, (key,), options)
        out = res.K if key == "K" else res.Theta
        assert out is not None
        return out

    def pre_kernel(self, X: Any, X2: Any = None, **options: Any) -> np.ndarray:
        """The pre-activation kernel ``S*`` (:ref:`§3 <theory-3>`)."""
        S = self._compute(X, X2, ("S",), options).S
        assert S is not None
        return S

    def _compute(
        self, X: Any, X2: Any, outputs: tuple[str, ...], options: dict[str, Any]
    ) -> KernelResult:
        """``compute_kernels``, with a ``max_iter`` that would converge named in its error."""
        try:
            return compute_kernels(
                self.phi, X, X2, sigma_a2=self.sigma_a2, sigma_b2=self.sigma_b2,
                outputs=outputs, **options,
            )  # fmt: skip
        except RuntimeError as exc:
            hint = self._max_iter_hint(X, options) if "did not converge" in str(exc) else None
            if hint is None:
                raise
            raise RuntimeError(f"{exc}; {hint}") from exc

    def _max_iter_hint(self, X: Any, options: dict[str, Any]) -> str | None:
        """How many iterations the plain iteration of the diagonal (and of the pairs) needs.

        At the diagonal ``d*`` of the median-norm sample, the iteration contracts by
        ``r = σ_a² max(ṁ2, e2)`` per step (:ref:`§3 <theory-3>`); started at ``d0 = σ_b² ‖x‖²``
        its step ``(1 − r) rᵏ |d* − d0|`` falls below ``tol · d*`` after
        ``k = log(tol d* / ((1 − r)|d* − d0|)) / log r`` steps. ``None`` when ``r ≥ 1``
        (not contracting: more iterations would not help) or the estimate fails.
        """
        try:
            A = as_data_matrix(X, "X")
            sq = float(np.median(np.einsum("ij,ij->i", A, A)))
            m = diagonal_fixed_point(
                self.phi, sigma_a2=self.sigma_a2, sigma_b2=self.sigma_b2, sqnorm=sq
            )
        except (ValueError, TypeError, RuntimeError):
            return None
        r = self.sigma_a2 * max(m.m2_dot, m.e2)
        d, d0 = m.tau * m.tau, self.sigma_b2 * sq
        if not 0.0 < r < 1.0 or d == d0:
            return None
        tol = options.get("tol", _KERNEL_TOL)
        k = math.log(tol * d / ((1.0 - r) * abs(d - d0))) / math.log(r)
        if not math.isfinite(k) or k <= options.get("max_iter", 0):
            return None
        suggest = 100 * math.ceil(1.25 * k / 100)
        return (
            f"the iteration is still contracting: it contracts by a factor {r:.4g} per step "
            f"(sigma_a2 * max(dm2/dtau^2, E phi'^2) at the median sample), so about {k:.0f} "
            f"iterations are needed; pass max_iter={suggest}"
        )

    # -- finite width (docs/theory.md §3) -----------------------------------------------------
    def forward(self, X: Any, width: int, **options: Any) -> Any:
        """Solve the width-``m`` DEQ for the batch ``X`` with Anderson acceleration;
        see :func:`deqfast.finite.forward` for ``options`` (seed, solver, tol, ...)."""
        from deqfast import finite

        return finite.forward(self, X, width, **options)

    def empirical_ck(self, X: Any, width: int, **options: Any) -> np.ndarray:
        """Monte-Carlo ``φ(Z*)ᵀφ(Z*)/m`` averaged over weight draws (tends to ``G*``);
        see :func:`deqfast.finite.empirical_ck`."""
        from deqfast import finite

        return finite.empirical_ck(self, X, width, **options)

    def empirical_ntk(self, X: Any, width: int, **options: Any) -> np.ndarray:
        """Monte-Carlo finite-width NTK (adjoint or elementwise; tends to ``K*`` / ``Θ*``);
        see :func:`deqfast.finite.empirical_ntk`."""
        from deqfast import finite

        return finite.empirical_ntk(self, X, width, **options)

    def __repr__(self) -> str:
        tau0 = "" if self.tau0 is None else f", tau0={self.tau0:.6g}"
        return (
            f"DEQ({self.activation!r}, sigma_a2={self.sigma_a2:g}, "
            f"sigma_b2={self.sigma_b2:g}{tau0})"
        )


def _rebuild(activation: Any, sigma_a2: float, sigma_b2: float, tau0: float | None) -> DEQ:
    return DEQ(activation, sigma_a2=sigma_a2, sigma_b2=sigma_b2, tau0=tau0)
