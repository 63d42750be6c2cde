"""The deep equilibrium model ``z = σ_a Ã φ(z)/√m + σ_b B x`` (THEORY.md §3–§4)."""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

import numpy as np

from deqfast import activations as _act
from deqfast._validation import check_choice, check_positive
from deqfast.coefficients import KernelCoefficients
from deqfast.data import MixtureStats
from deqfast.equilibrium import KINDS, Equilibrium, solve_equilibrium, surrogate_coefficients
from deqfast.kernels import KernelResult, compute_kernels
from deqfast.surrogate import surrogate_matrix

__all__ = ["DEQ"]

_TRAINED = ("hidden", "all")


class DEQ:
    """A deep equilibrium model and its infinite-width kernels.

    Parameters
    ----------
    activation
        A name from :data:`deqfast.activations.NAMES` (with ``**params``), an
        :class:`~deqfast.activations.Activation`, or a callable.
    sigma_a2, sigma_b2
        Variances of the hidden and input weights; ``sigma_b2`` defaults to
        ``1 − sigma_a2`` (variance preserving, the paper's choice; THEORY.md §3).
    tau0
        Input scale ``τ0`` (``‖x_i‖² ≈ τ0²``, e.g. ``stats.tau0``). With it, the activation
        is centred at the equilibrium scale ``τ*`` (THEORY.md §2) and the surrogates are
        available; without it the activation is used as is.

    Examples
    --------
    >>> import deqfast as df
    >>> deq = df.DEQ("relu", sigma_a2=0.2, tau0=1.0)
    >>> round(deq.equilibrium().tau, 10)
    0.926566126
    >>> ck = deq.coefficients("ck")  # surrogate of G*: (d, c1, c2, c3)
    >>> round(ck.d, 10), round(ck.c1, 10), round(ck.c3, 10)
    (0.2926239295, 0.2105263158, 0.069190498)
    """

    def __init__(
        self,
        activation: Any = "relu",
        *,
        sigma_a2: float = 0.2,
        sigma_b2: float | None = None,
        tau0: float | None = None,
        **params: Any,
    ) -> None:
        self.activation = _act.get(activation, **params)
        self.sigma_a2 = check_positive(sigma_a2, "sigma_a2")
        if sigma_b2 is None:
            if self.sigma_a2 >= 1.0:
                raise ValueError(
                    f"sigma_b2 defaults to 1 - sigma_a2, which needs sigma_a2 < 1 (got "
                    f"{sigma_a2!r}); pass sigma_b2 explicitly"
                )
            sigma_b2 = 1.0 - self.sigma_a2
        self.sigma_b2 = check_positive(sigma_b2, "sigma_b2")
        self.tau0 = None if tau0 is None else check_positive(tau0, "tau0")

    # -- the equations (THEORY §4) --------------------------------------------------------
    @cached_property
    def _equilibrium(self) -> Equilibrium:
        if self.tau0 is None:
            raise ValueError(
                "this DEQ has no tau0: the equilibrium equations and surrogates need the input "
                "scale, e.g. DEQ(..., tau0=stats.tau0)"
            )
        return solve_equilibrium(
            self.activation, sigma_a2=self.sigma_a2, sigma_b2=self.sigma_b2, tau0=self.tau0
        )

    def equilibrium(self) -> Equilibrium:
        """``τ*``, the centring constant and ``α1..α4`` of E1–E4 (THEORY.md §4)."""
        return self._equilibrium

    @property
    def phi(self) -> Any:
        """The activation the model uses: centred at ``τ*`` when ``tau0`` is set."""
        if self.tau0 is None:
            return self.activation
        return self.activation.uncentered().centered(self._equilibrium.center)

    def coefficients(self, kind: str = "ck") -> KernelCoefficients:
        """Surrogate coefficients ``(d, c1, c2, c3)`` (THEORY.md §4 table).

        ``kind``: ``"pre"`` (``S*``), ``"ck"`` (``G*``), ``"ntk"`` (``K*``) or
        ``"ntk_all"`` (``Θ*``).
        """
        return surrogate_coefficients(self._equilibrium, check_choice(kind, "kind", KINDS))

    # -- surrogates (THEORY §4) -------------------------------------------------------------
    def _surrogate(self, X: Any, stats: MixtureStats, kind: str) -> np.ndarray:
        if not isinstance(stats, MixtureStats):
            raise TypeError(f"stats must be a deqfast.MixtureStats, got {type(stats).__name__}")
        eq = self._equilibrium
        if not math.isclose(stats.tau0, eq.tau0, rel_tol=1e-9):
            raise ValueError(
                f"the DEQ was centred for tau0={eq.tau0!r} but stats has tau0={stats.tau0!r}; "
                "build the DEQ with tau0=stats.tau0"
            )
        return surrogate_matrix(X, stats, self.coefficients(kind))

    def pre_surrogate(self, X: Any, stats: MixtureStats) -> np.ndarray:
        """``S̄``: the surrogate of the pre-activation kernel ``S*`` (THEORY.md §4)."""
        return self._surrogate(X, stats, "pre")

    def ck_surrogate(self, X: Any, stats: MixtureStats) -> np.ndarray:
        """``Ḡ``: the surrogate of the Implicit-CK ``G*`` (THEORY.md §4)."""
        return self._surrogate(X, stats, "ck")

    def ntk_surrogate(self, X: Any, stats: MixtureStats, *, trained: str = "hidden") -> np.ndarray:
        """``K̄`` (``trained="hidden"``, the paper's NTK) or ``Θ̄`` (``trained="all"``)."""
        t = check_choice(trained, "trained", _TRAINED)
        return self._surrogate(X, stats, "ntk" if t == "hidden" else "ntk_all")

    # -- exact kernels (THEORY §3) ----------------------------------------------------------
    def kernels(
        self, X: Any, X2: Any = None, *, trained: str = "hidden", **options: Any
    ) -> KernelResult:
        """``S*``, ``G*``, ``Ġ*`` and the NTK (``K*``, or ``Θ*`` with ``trained="all"``) in one
        pass; see :func:`deqfast.kernels.compute_kernels` for ``options``."""
        t = check_choice(trained, "trained", _TRAINED)
        outputs = ("S", "G", "Gdot", "K" if t == "hidden" else "Theta")
        return compute_kernels(self, X, X2, outputs=outputs, **options)

    def ck(self, X: Any, X2: Any = None, **options: Any) -> np.ndarray:
        """The Implicit-CK ``G* = F_φ(S*)`` (THEORY.md §3), ``(n, n)`` or ``(n, n2)``."""
        G = compute_kernels(self, X, X2, outputs=("G",), **options).G
        assert G is not None
        return G

    def ntk(self, X: Any, X2: Any = None, *, trained: str = "hidden", **options: Any) -> np.ndarray:
        """The Implicit-NTK (THEORY.md §3): ``K* = G* ⊘ (1 − σ_a² Ġ*)`` by default,
        ``Θ*`` with ``trained="all"``."""
        t = check_choice(trained, "trained", _TRAINED)
        key = "K" if t == "hidden" else "Theta"
        res = compute_kernels(self, X, X2, outputs=(key,), **options)
        out = res.K if key == "K" else res.Theta
        assert out is not None
        return out

    def pre_kernel(self, X: Any, X2: Any = None, **options: Any) -> np.ndarray:
        """The pre-activation kernel ``S*`` (THEORY.md §3)."""
        S = compute_kernels(self, X, X2, outputs=("S",), **options).S
        assert S is not None
        return S

    # -- finite width (THEORY §3) --------------------------------------------------------
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
