"""Exact infinite-width DEQ kernels: Implicit-CK ``G*`` and Implicit-NTK ``K*`` (THEORY.md §3).

The fixed point ``S* = σ_a² F_φ(S*) + σ_b² XXᵀ`` decouples: every diagonal entry
solves a scalar equation, then every pair ``(i, j)`` solves its own scalar fixed
point by Newton's method in C++ (OpenMP over cache-sized tiles, GIL released).
The Newton derivative is ``σ_a² Ġ*_ij``, so ``Ġ*``, ``K* = G* ⊘ (1 − σ_a² Ġ*)`` and
``Θ* = G* + Ġ* ∘ S* ⊘ (1 − σ_a² Ġ*)`` come from the same pass.

Two-point expectations: arc-cosine closed forms for the piecewise-linear family
(linear, ReLU, leaky ReLU), the arcsine form for ``erf``, and Mehler's series with
per-sample Hermite coefficients for everything else (exact for polynomials), with a
Cauchy–Schwarz tail bound; pairs whose series cannot meet it (``|ρ|`` near 1) fall
back to a two-dimensional composite quadrature split at the kinks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from deqfast import _core
from deqfast._validation import as_data_matrix, check_choice, check_integer, check_positive

if TYPE_CHECKING:
    from deqfast.deq import DEQ

__all__ = ["OUTPUTS", "KernelResult", "compute_kernels"]

#: Kernels that can be requested: pre-activation ``S``, CK ``G``, derivative kernel ``Gdot``,
#: default NTK ``K`` (hidden weights and read-out trained) and ``Theta`` (input weights too).
OUTPUTS = ("S", "G", "Gdot", "K", "Theta")


@dataclass(frozen=True)
class KernelResult:
    """Exact kernels of a DEQ on one or two sample sets, with solver statistics.

    Kernels that were not requested are ``None``. ``pairs`` counts the pair fixed
    points solved, ``newton_steps`` their total iterations, ``quadrature_pairs`` those
    evaluated by 2-D quadrature, ``max_error`` the largest estimated absolute error of an
    entry of ``S`` (the last Newton step, or the quadratic-convergence prediction when the
    solver stopped on it).
    """

    S: np.ndarray | None
    G: np.ndarray | None
    Gdot: np.ndarray | None
    K: np.ndarray | None
    Theta: np.ndarray | None
    diagonal: tuple[np.ndarray, ...] = field(repr=False)
    pairs: int = 0
    newton_steps: int = 0
    picard_steps: int = 0
    quadrature_pairs: int = 0
    max_iterations: int = 0
    max_error: float = 0.0

    def __repr__(self) -> str:
        shape = next(
            a.shape for a in (self.S, self.G, self.Gdot, self.K, self.Theta) if a is not None
        )
        have = [k for k in OUTPUTS if getattr(self, k) is not None]
        mean_it = self.newton_steps / self.pairs if self.pairs else 0.0
        return (
            f"KernelResult(shape={shape}, kernels={have}, pairs={self.pairs}, "
            f"mean Newton steps={mean_it:.2f}, max steps={self.max_iterations}, "
            f"quadrature pairs={self.quadrature_pairs}, max error={self.max_error:.1e})"
        )


def _diagonal(
    deq: DEQ, X: np.ndarray, tol: float, max_iter: int, terms: int, threads: int = 0
) -> Any:
    sq = np.einsum("ij,ij->i", X, X)
    zero = np.flatnonzero(sq == 0)
    if zero.size:
        raise ValueError(
            f"X has all-zero rows (first: row {zero[0]}); the kernel at zero input variance is "
            "degenerate and not supported"
        )
    try:
        return _core.solve_diagonal(
            deq.phi.core, sq, deq.sigma_a2, deq.sigma_b2, tol, max_iter, terms, threads
        )
    except ValueError as exc:
        raise ValueError(f"{exc} (sigma_a2={deq.sigma_a2!r})") from None


def compute_kernels(
    deq: DEQ,
    X: Any,
    X2: Any = None,
    *,
    outputs: tuple[str, ...] = ("S", "G", "Gdot", "K"),
    tol: float = 1e-12,
    max_iter: int = 100,
    hermite_terms: int = 64,
    num_threads: int | None = None,
    block: int | None = None,
    progress: bool | None = None,
) -> KernelResult:
    """Exact infinite-width kernels of ``deq`` (THEORY.md §3).

    Parameters
    ----------
    deq
        The DEQ (activation, ``σ_a²``, ``σ_b²``; centred if it has ``tau0``).
    X, X2
        Samples as rows, shapes ``(n, p)`` and ``(n2, p)``. Without ``X2`` the symmetric
        ``(n, n)`` kernels of ``X`` are returned (only the upper triangle is solved); with
        it the ``(n, n2)`` cross kernels (train/test use).
    outputs
        Any of :data:`OUTPUTS`; only these ``n × n`` matrices are allocated.
    tol
        Tolerance of every scalar fixed point (Newton step size), relative to the
        entry's scale ``√(S*_ii S*_jj)`` (the diagonal's: ``S*_ii``): at most ``tol`` in
        absolute terms for normalised data (scale ≤ 1), and data of any magnitude
        converge. ``S*`` and ``G*`` are accurate to about that; ``Ġ*`` (and so ``K*``,
        ``Θ*``) is as well except where ``|ρ_ij|`` → 1 for kinked activations: ReLU's
        ``Ġ = (π − θ)/2π`` with ``θ ≈ √(2(1 − ρ))`` turns an error ``ε`` of ``ρ`` into
        ``√(2ε)/2π``, so duplicated samples carry ``Ġ*`` errors near 1e-8 (conditioning,
        not the solver).
    max_iter
        Iteration cap per scalar fixed point; exceeding it raises ``RuntimeError``.
    hermite_terms
        Mehler series length for activations without a closed form.
    num_threads
        OpenMP threads (default: all cores).
    block
        Tile edge of the assembly; default 256 when both sets have at least 2048 samples
        (fewer tiles read the data fewer times: measured about 10 % faster at n = 4096),
        else 64 (enough tiles to keep every thread busy).
    progress
        Show a progress bar (default: only for more than 16 million pairs).
    """
    X = as_data_matrix(X, "X")
    symmetric = X2 is None
    Y = X if symmetric else as_data_matrix(X2, "X2")
    if Y.shape[1] != X.shape[1]:
        raise ValueError(f"X2 must have p={X.shape[1]} columns like X, got shape {Y.shape}")
    outs = tuple(check_choice(o, "outputs", OUTPUTS) for o in outputs)
    if not outs:
        raise ValueError(f"outputs must name at least one of {OUTPUTS}")
    tol = check_positive(tol, "tol")
    max_iter = check_integer(max_iter, "max_iter", min_value=1)
    terms = check_integer(hermite_terms, "hermite_terms", min_value=2, max_value=400)
    threads = 0 if num_threads is None else check_integer(num_threads, "num_threads", min_value=1)
    n, n2 = X.shape[0], Y.shape[0]
    if block is None:
        block = 256 if min(n, n2) >= 2048 else 64
    block = check_integer(block, "block", min_value=8)
    core = deq.phi.core  # raises TypeError for Python callables, with guidance

    A = _diagonal(deq, X, tol, max_iter, terms, threads)
    B = A if symmetric else _diagonal(deq, Y, tol, max_iter, terms, threads)
    mats = {o: np.empty((n, n2)) for o in outs}

    total_pairs = n * (n - 1) // 2 if symmetric else n * n2
    show = progress if progress is not None else total_pairs > 16_000_000
    # Row strips: one C++ call each (parallel inside), so the progress bar can advance.
    strip = max(block, (4096 * 4096 // max(1, n2)) // block * block)
    strip = n if not show else strip
    bar = _progress(total_pairs, show)
    stats = dict(pairs=0, newton_steps=0, picard_steps=0, quadrature_pairs=0)
    max_it, max_error = 0, 0.0
    try:
        for r0 in range(0, n, strip):
            r1 = min(n, r0 + strip)
            c0 = r0 if symmetric else 0
            st = _core.assemble(
                core, X, Y, A, B, symmetric, r0, r1, c0, n2,
                S=mats.get("S"), G=mats.get("G"), Gdot=mats.get("Gdot"), K=mats.get("K"),
                Theta=mats.get("Theta"), sigma_a2=deq.sigma_a2, sigma_b2=deq.sigma_b2, tol=tol,
                max_iter=max_iter, block=block, num_threads=threads,
            )  # fmt: skip
            for k in stats:
                stats[k] += getattr(st, k)
            max_it, max_error = max(max_it, st.max_iterations), max(max_error, st.max_error)
            if st.unconverged:
                raise RuntimeError(
                    f"{st.unconverged} pair fixed points did not converge within max_iter="
                    f"{max_iter} (largest last step {st.max_error:.3e}; tol={tol:g} is relative "
                    "to each entry's scale); "
                    "increase max_iter or tol"
                )
            bar.update(st.pairs)
    finally:
        bar.close()
    return KernelResult(
        S=mats.get("S"), G=mats.get("G"), Gdot=mats.get("Gdot"), K=mats.get("K"),
        Theta=mats.get("Theta"), diagonal=(np.array(A.d), np.array(B.d)),
        max_iterations=max_it, max_error=max_error, **stats,
    )  # fmt: skip


class _NoBar:
    def update(self, k: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, show: bool) -> Any:
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="pair", unit_scale=True, desc="kernel pairs", leave=False)
