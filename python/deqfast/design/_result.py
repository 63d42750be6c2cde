"""Result types of :func:`deqfast.design.design_explicit`: one candidate, the design."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from deqfast._vocabulary import deprecated_alias
from deqfast.coefficients import KernelCoefficients
from deqfast.deq import DEQ
from deqfast.explicit import ExplicitNet


class DesignWarning(UserWarning):
    """No explicit-net family matched the DEQ's kernel coefficients within ``tol``."""


@dataclass(frozen=True)
class Candidate:
    """One family's design: net, coefficient residual and exact-kernel comparison.

    ``residual`` is ``max_k |achieved_k − target_k| / max_k |target_k|`` over
    ``(d, c1, c2, c3)``; ``distance`` the relative operator-norm distance
    ``‖A − B‖₂/‖A‖₂`` of the exact kernels on the probe (``A`` the DEQ's) and
    ``eigen_gap`` the mean absolute gap between their sorted eigenvalues
    ``(1/n) Σ |λ_i(A) − λ_i(B)|`` (:ref:`§6 <theory-6>`); ``nan`` when not computed.
    """

    family: str
    net: ExplicitNet | None
    achieved: KernelCoefficients | None
    residual: float
    matched: bool
    distance: float = math.nan
    eigen_gap: float = math.nan
    note: str = ""

    def row(self) -> str:
        """One line of the candidate table."""
        depth = "-" if self.net is None else str(self.net.depth)
        return (
            f"{self.family:<8} {depth:>6} {self.residual:>10.2e} "
            f"{'yes' if self.matched else 'no':>7} {self.distance:>10.4g} "
            f"{self.eigen_gap:>10.3e}  {self.note}"
        ).rstrip()


@dataclass(frozen=True)
class DesignResult:
    """An explicit net designed for a DEQ (see :func:`design_explicit`).

    Attributes
    ----------
    net
        The chosen :class:`ExplicitNet` (the best candidate even when none matched).
    family
        Its family.
    kernel
        ``"ck"`` or ``"ntk"``; ``trained`` the NTK convention (``"hidden"``/``"all"``).
    target_coefficients, achieved
        The DEQ's and the net's surrogate coefficients.
    residual, converged
        Relative coefficient residual and whether it is ``≤ tol`` (the design is *matched*).
    status, message
        ``"matched"`` or ``"unmatched"``, and a sentence saying so (with the note).
    iterations
        Number of candidate designs tried (the length of ``candidates``).
    distance, eigen_gap
        Exact-kernel relative operator-norm distance to the DEQ and mean absolute
        eigenvalue gap on the probe sample of shape ``probe_shape``.
    candidates
        Every family tried (for ``"auto"``), in the order tried.
    closest, exact
        The candidate closest to the DEQ on the probe, and the closest *matched*
        candidate (asymptotically exact: its surrogate is the DEQ's, so its distance
        vanishes as ``n, p → ∞``; ``None`` when nothing matched). The chosen net is
        ``closest`` unless ``matched_only`` (then ``exact``).
    deq
        The :class:`~deqfast.DEQ` designed for.
    """

    net: ExplicitNet
    family: str
    kernel: str
    trained: str
    target_coefficients: KernelCoefficients
    achieved: KernelCoefficients
    residual: float
    converged: bool
    status: str
    message: str
    iterations: int
    distance: float
    eigen_gap: float
    candidates: tuple[Candidate, ...] = field(repr=False)
    probe_shape: tuple[int, int] = (0, 0)
    tol: float = 1e-10
    deq: DEQ | None = None
    note: str = ""
    matched_only: bool = False
    closest: Candidate | None = field(default=None, repr=False)
    exact: Candidate | None = field(default=None, repr=False)

    matched = deprecated_alias("converged", "matched")
    target = deprecated_alias("kernel", "target")

    def summary(self) -> str:
        """A readable report: target, choice, and the table of candidates."""
        kern = "CK" if self.kernel == "ck" else f"NTK (trained={self.trained!r})"
        status = "matched" if self.converged else f"NOT matched (tol={self.tol:g})"
        lines = [
            f"explicit net for {self.deq}, target {kern}: {self.family} — {status}",
            f"  net:      {self.net!r}",
            f"  target:   {self.target_coefficients!r}",
            f"  achieved: {self.achieved!r}",
            f"  coefficient residual {self.residual:.2e}; exact kernels on a probe of "
            f"n={self.probe_shape[0]}, p={self.probe_shape[1]}: relative operator-norm distance "
            f"{self.distance:.4g}, mean |eigenvalue gap| {self.eigen_gap:.3e}",
        ]
        if self.note:
            lines.append(f"  note: {self.note}")
        for label, c in (("closest now", self.closest), ("asymptotically exact", self.exact)):
            if c is not None:
                lines.append(
                    f"  {label}: {c.family} (distance {c.distance:.4g}, residual "
                    f"{c.residual:.2e}){' — ' + c.note if c.note else ''}"
                )
        if self.exact is None:
            lines.append("  asymptotically exact: none (no candidate matched the coefficients)")
        lines.append(
            f"  {'family':<8} {'layers':>6} {'residual':>10} {'matched':>7} {'distance':>10} "
            f"{'eig gap':>10}"
        )
        lines += ["  " + c.row() for c in self.candidates]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"DesignResult(family={self.family!r}, kernel={self.kernel!r}, "
            f"converged={self.converged}, residual={self.residual:.2e}, "
            f"distance={self.distance:.4g}, eigen_gap={self.eigen_gap:.3e}, net={self.net!r})"
        )
