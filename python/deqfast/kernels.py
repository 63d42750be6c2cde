"""Exact infinite-width DEQ kernels: Implicit-CK ``G*`` and Implicit-NTK ``K*``.

See :ref:`§3 <theory-3>`.

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

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deqfast import _core
from deqfast._shared import MAX_THREADS, progress_bar, resolve_threads, show_progress
from deqfast._validation import as_data_matrix, check_choice, check_integer, check_positive
from deqfast._vocabulary import deprecated_alias

__all__ = ["OUTPUTS", "KernelResult", "compute_kernels", "diagonal"]

#: Largest thread count passed to the core; larger requests are clamped to it (the OpenMP
#: runtime cannot create teams of hundreds of thousands of threads).
#: Range of the diagonal input term ``σ_b² ‖x_i‖²`` the pair formulas are accurate in: beyond
#: it ``√(S_ii S_jj)``, its inverse or the Mehler tail bounds leave the normal floating-point
#: range (positively homogeneous activations are rescaled into it instead).
SCALE_RANGE = (1e-150, 1e150)

#: Matrices :func:`compute_kernels` can store (``outputs=``): pre-activation ``S``, CK ``G``,
#: derivative kernel ``Gdot``, default NTK ``K`` (hidden weights and read-out trained) and
#: ``Theta`` (input weights too). These name matrices of one pass, not a kernel choice: the
#: kernel vocabulary (``kernel=``, ``trained=``) maps onto them by
#: ``deqfast._vocabulary.matrix_name``.
OUTPUTS = ("S", "G", "Gdot", "K", "Theta")
#: Element types the kernels can be stored in (always computed in float64).
_DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class KernelResult:
    """Exact kernels of a DEQ on one or two sample sets, with solver statistics.

    Kernels that were not requested are ``None``. ``pairs`` counts the pair fixed
    points solved, ``newton_steps`` (``picard_steps``) their total Newton (plain)
    iterations, ``quadrature_pairs`` those evaluated by 2-D quadrature.

    The solve is reported like every deqfast solver result: ``iterations`` is the largest
    iteration count of a pair fixed point (the one ``max_iter`` caps), ``residual`` the
    largest estimated absolute error of an entry of ``S`` (the last Newton step, or the
    quadratic-convergence prediction when the solver stopped on it), ``converged``,
    ``status`` (``"converged"``) and ``message``. A pair that does not converge raises
    ``RuntimeError`` instead of returning, so a returned result has converged.
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
    iterations: int = 0
    residual: float = 0.0
    converged: bool = True
    status: str = "converged"
    message: str = ""

    max_iterations = deprecated_alias("iterations", "max_iterations")
    max_error = deprecated_alias("residual", "max_error")

    def __repr__(self) -> str:
        shape = next(
            a.shape for a in (self.S, self.G, self.Gdot, self.K, self.Theta) if a is not None
        )
        have = [k for k in OUTPUTS if getattr(self, k) is not None]
        mean_it = self.newton_steps / self.pairs if self.pairs else 0.0
        return (
            f"KernelResult(shape={shape}, kernels={have}, pairs={self.pairs}, "
            f"mean Newton steps={mean_it:.2f}, max steps={self.iterations}, "
            f"quadrature pairs={self.quadrature_pairs}, max error={self.residual:.1e})"
        )


def diagonal(
    phi: Any,
    X: np.ndarray,
    *,
    sigma_a2: float,
    sigma_b2: float,
    tol: float = 1e-12,
    max_iter: int = 100,
    hermite_terms: int = 64,
    num_threads: int = 0,
    name: str = "X",
) -> Any:
    """Diagonal fixed points ``S*_ii`` of the rows of ``X`` (:ref:`§3 <theory-3>`), as the core's
    ``SampleData`` (``d``, ``m2 = G*_ii``, ``e2 = Ġ*_ii``).

    ``phi`` is an :class:`~deqfast.activations.Activation` (already centred if wanted);
    ``X`` a validated float64 matrix (called ``name`` in error messages).
    """
    sq = _input_variances(X, sigma_b2, name) / sigma_b2
    try:
        return _core.solve_diagonal(
            phi.core, sq, sigma_a2, sigma_b2, tol, max_iter, hermite_terms, num_threads
        )
    except ValueError as exc:
        raise ValueError(f"{exc} (sigma_a2={sigma_a2!r})") from None


def _input_variances(X: np.ndarray, sigma_b2: float, name: str = "X") -> np.ndarray:
    """``σ_b² ‖x_i‖²`` per row, checked against :data:`SCALE_RANGE`."""
    with np.errstate(over="ignore"):
        c = sigma_b2 * np.einsum("ij,ij->i", X, X)
    zero = np.flatnonzero(c == 0)
    if zero.size:
        raise ValueError(
            f"{name} has all-zero rows (first: row {zero[0]}); the kernel at zero input variance "
            "is degenerate and not supported"
        )
    lo, hi = SCALE_RANGE
    bad = np.flatnonzero(~((c >= lo) & (c <= hi)))
    if bad.size:
        i = bad[0]
        raise ValueError(
            f"sigma_b2 * |x_i|^2 = {c[i]:.3g} for row {i} of {name} is outside [{lo:g}, {hi:g}], "
            "where the exact kernels are computed accurately; rescale the data (and tau0) towards "
            "unit norm"
        )
    return c


def _homogeneous(phi: Any) -> bool:
    """Whether ``φ(cu) = c φ(u)`` for ``c > 0`` (uncentred piecewise-linear family), so that
    ``S*(cX) = c² S*(X)``, ``G*(cX) = c² G*(X)`` and ``Ġ*`` is scale-free."""
    return getattr(phi, "kind", None) == "lrelu" and getattr(phi, "shift", None) == 0.0


def default_block(rows: int, cols: int) -> int:
    """Edge of the assembly's inner blocks for a ``rows × cols`` kernel (or tile): 256 from
    2048 × 2048 on (fewer, larger blocks read the data fewer times), else 64."""
    return 256 if min(rows, cols) >= 2048 else 64


def _rescaled(phi: Any, X: np.ndarray, Y: np.ndarray, sigma_b2: float) -> float:
    """The factor ``c`` to divide the data by so that every row is inside :data:`SCALE_RANGE`
    (1.0 when they already are, or when ``phi`` is not homogeneous: the checks then raise)."""
    if not _homogeneous(phi):
        return 1.0
    data = (X,) if Y is X else (X, Y)  # the symmetric kernel's rows once
    with np.errstate(over="ignore"):
        norms = np.concatenate([np.sqrt(np.einsum("ij,ij->i", Z, Z)) for Z in data])
    if not np.all(np.isfinite(norms)):  # |x|^2 overflows: rescale by the largest entry first
        peak = max(float(np.abs(Z).max()) for Z in data)
        norms = np.concatenate([np.linalg.norm(Z / peak, axis=1) for Z in data]) * peak
    lo, hi = float(norms[norms > 0].min()), float(norms.max())
    c2lo, c2hi = sigma_b2 * lo * lo, sigma_b2 * hi * hi
    if SCALE_RANGE[0] <= c2lo and c2hi <= SCALE_RANGE[1]:
        return 1.0
    if hi / lo > math.sqrt(SCALE_RANGE[1] / SCALE_RANGE[0]):
        raise ValueError(
            f"the row norms of X (and X2) span {lo:.3g} to {hi:.3g}, more than one rescaling can "
            f"bring into [{SCALE_RANGE[0]:g}, {SCALE_RANGE[1]:g}] (sigma_b2 |x_i|^2); rescale "
            "the outlying rows"
        )
    # divide by c with c² = σ_b² lo hi: the geometric middle of σ_b² ‖x‖² goes to 1
    return math.sqrt(sigma_b2) * math.sqrt(lo) * math.sqrt(hi)


def _model_values(
    phi: Any, sigma_a2: float | None, sigma_b2: float | None
) -> tuple[Any, float, float]:
    """(activation, sigma_a2, sigma_b2) from plain values, or from a DEQ passed as ``phi``."""
    if hasattr(phi, "sigma_a2") and hasattr(phi, "phi"):  # a DEQ: its (centred) activation
        if sigma_a2 is not None or sigma_b2 is not None:
            raise TypeError("pass either a DEQ or sigma_a2/sigma_b2 with an activation, not both")
        return phi.phi, phi.sigma_a2, phi.sigma_b2
    if sigma_a2 is None or sigma_b2 is None:
        raise TypeError("compute_kernels(activation, X, ...) needs sigma_a2= and sigma_b2=")
    if not hasattr(phi, "core"):
        raise TypeError(
            f"activation must be a deqfast Activation (or a DEQ), got {type(phi).__name__}"
        )
    return phi, check_positive(sigma_a2, "sigma_a2"), check_positive(sigma_b2, "sigma_b2")


def compute_kernels(
    phi: Any,
    X: Any,
    X2: Any = None,
    *,
    sigma_a2: float | None = None,
    sigma_b2: float | None = None,
    outputs: tuple[str, ...] = ("S", "G", "Gdot", "K"),
    tol: float = 1e-12,
    max_iter: int = 100,
    hermite_terms: int = 64,
    num_threads: int | None = None,
    block: int | None = None,
    progress: bool | None = None,
    dtype: Any = np.float64,
) -> KernelResult:
    """Exact infinite-width kernels of a DEQ with activation ``phi`` (:ref:`§3 <theory-3>`).

    Parameters
    ----------
    phi
        The activation (a :class:`~deqfast.activations.Activation`, already centred if the
        model is centred; ``DEQ.phi``). A :class:`~deqfast.DEQ` is accepted too (its ``phi``,
        ``sigma_a2`` and ``sigma_b2`` are used).
    sigma_a2, sigma_b2
        Variances of the hidden and input weights (required with an activation).
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
        OpenMP threads (default ``None``: all cores).
    block
        Tile edge of the assembly; default 256 when both sets have at least 2048 samples
        (fewer tiles read the data fewer times: measured about 10 % faster at n = 4096),
        else 64 (enough tiles to keep every thread busy).
    progress
        Show a progress bar (default ``None``: on a terminal, for more than 16 million pairs).
    dtype
        Element type of the returned kernels: ``numpy.float64`` (default) or
        ``numpy.float32``, which halves their memory and the time spent writing them. The
        computation is the same in float64 either way; a float32 kernel is the float64
        result rounded to the nearest float32: relative error at most 2⁻²⁴ ≈ 6e-8 per
        entry, which dominates ``tol`` below that. Entries beyond the float32 range
        (about 3.4e38) raise ``FloatingPointError``; entries below about 1e-38 lose
        relative precision and those below 1.4e-45 round to zero, as any float32 does.
    """
    phi, sigma_a2, sigma_b2 = _model_values(phi, sigma_a2, sigma_b2)
    X = as_data_matrix(X, "X")
    symmetric = X2 is None
    Y = X if symmetric else as_data_matrix(X2, "X2")
    if Y.shape[1] != X.shape[1]:
        raise ValueError(f"X2 must have p={X.shape[1]} columns like X, got shape {Y.shape}")
    outs = tuple(check_choice(o, "outputs", OUTPUTS) for o in outputs)
    if not outs:
        raise ValueError(f"outputs must name at least one of {OUTPUTS}")
    tol = check_positive(tol, "tol")
    max_iter = check_integer(max_iter, "max_iter", min_value=1, max_value=1 << 30)
    terms = check_integer(hermite_terms, "hermite_terms", min_value=2, max_value=400)
    threads = resolve_threads(num_threads)
    n, n2 = X.shape[0], Y.shape[0]
    if block is None:
        block = default_block(n, n2)
    block = check_integer(block, "block", min_value=8, max_value=1 << 16)
    dtype = _output_dtype(dtype)
    core = phi.core  # raises TypeError for Python callables, with guidance
    scale = _rescaled(phi, X, Y, sigma_b2)
    if scale != 1.0:
        X = X / scale
        Y = X if symmetric else Y / scale
    _check_memory(phi, n, n2, outs, block, terms, threads, dtype.itemsize)

    values: dict[str, Any] = dict(sigma_a2=sigma_a2, sigma_b2=sigma_b2, tol=tol, max_iter=max_iter)
    A = diagonal(phi, X, **values, hermite_terms=terms, num_threads=threads)
    B = (
        A
        if symmetric
        else diagonal(phi, Y, **values, hermite_terms=terms, num_threads=threads, name="X2")
    )
    # np.empty: no page is touched here; each is first written by the thread that fills it
    mats = {o: np.empty((n, n2), dtype=dtype) for o in outs}

    total_pairs = n * (n - 1) // 2 if symmetric else n * n2
    show = show_progress(progress, long=total_pairs > 16_000_000)
    # Row strips: one C++ call each (parallel inside), so the progress bar can advance.
    strip = max(block, (4096 * 4096 // max(1, n2)) // block * block)
    strip = n if not show else strip
    bar = progress_bar(show, total=total_pairs, desc="kernel pairs", unit="pair", unit_scale=True)
    stats = dict(pairs=0, newton_steps=0, picard_steps=0, quadrature_pairs=0)
    max_it, max_error = 0, 0.0
    try:
        for r0 in range(0, n, strip):
            r1 = min(n, r0 + strip)
            c0 = r0 if symmetric else 0
            st = _core.assemble(
                core, X, Y, A, B, symmetric, r0, r1, c0, n2,
                S=mats.get("S"), G=mats.get("G"), Gdot=mats.get("Gdot"), K=mats.get("K"),
                Theta=mats.get("Theta"), **values, block=block, num_threads=threads,
                dtype=dtype,
            )  # fmt: skip
            for k in stats:
                stats[k] += getattr(st, k)
            max_it, max_error = max(max_it, st.max_iterations), max(max_error, st.max_error)
            if st.nonfinite:
                raise FloatingPointError(
                    f"{st.nonfinite} kernel entries came out NaN or infinite "
                    f"(rows {r0}..{r1 - 1}); "
                    "the data or the variances are outside the range the pair formulas handle: "
                    "rescale X towards unit norm"
                )
            if st.overflow32:
                raise FloatingPointError(
                    f"{st.overflow32} kernel entries exceed the float32 range "
                    f"(rows {r0}..{r1 - 1}); use dtype=numpy.float64 or rescale X"
                )
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
    if scale != 1.0:  # S*, G*, K*, Θ* scale with c²; Ġ* is scale-free
        for k in ("S", "G", "K", "Theta"):
            if k in mats:
                with np.errstate(over="ignore"):  # in float64, rounded once to a float32 output
                    np.multiply(
                        mats[k], scale * scale, out=mats[k], dtype=np.float64, casting="unsafe"
                    )
                if not np.all(np.isfinite(mats[k])):
                    raise FloatingPointError(
                        f"{k} overflows the {dtype.name} range at this data scale (S*_ii up to "
                        f"{float(np.max(A.d)) * scale * scale:.3g}); rescale X or reduce sigma_b2"
                    )
        A_d, B_d = np.array(A.d) * (scale * scale), np.array(B.d) * (scale * scale)
    else:
        A_d, B_d = np.array(A.d), np.array(B.d)
    message = (
        f"{stats['pairs']} pair fixed points converged (at most {max_it} iterations, largest "
        f"estimated error {max_error:.1e}; tol={tol:g} relative to each entry's scale)"
    )
    return KernelResult(
        S=mats.get("S"), G=mats.get("G"), Gdot=mats.get("Gdot"), K=mats.get("K"),
        Theta=mats.get("Theta"), diagonal=(A_d, B_d), iterations=max_it, residual=max_error,
        converged=True, status="converged", message=message, **stats,
    )  # fmt: skip


def _output_dtype(dtype: Any) -> np.dtype:
    """``dtype`` as a NumPy dtype, float64 or float32, or a ``TypeError``/``ValueError``."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be numpy.float64 or numpy.float32, got {dtype!r}") from exc
    check_choice(dt.name, "dtype", _DTYPES)
    return dt


def _available_memory() -> int | None:
    """Bytes this process can still allocate: ``MemAvailable`` of ``/proc/meminfo``, lowered
    to the cgroup's remaining allowance where a limit is set (``None`` if unknown)."""
    avail: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError):
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:  # "max" or a huge number: no limit
            left = max(0, int(limit) - usage)
            avail = left if avail is None else min(avail, left)
        break
    return avail


def _check_memory(
    phi: Any,
    n: int,
    n2: int,
    outs: tuple[str, ...],
    block: int,
    terms: int,
    threads: int,
    out_itemsize: int = 8,
) -> None:
    """Raise ``MemoryError`` before allocating when the outputs (``out_itemsize`` bytes an
    entry) and the workspace (per-sample data, per-thread Gram tile and row groups) would not
    fit in the memory available now."""
    itemsize = 8
    outputs = len(outs) * n * n2 * out_itemsize
    mehler = phi.kind not in ("lrelu", "erf")
    per_sample = (3 + (3 * terms + 2 if mehler else 0)) * itemsize
    team = threads or (os.cpu_count() or 1)
    group = 64 // out_itemsize  # rows of a write group: one cache line of the output type
    per_thread = (block + group * len(outs)) * block * itemsize
    per_thread += 4 * terms * (block + 16) * itemsize  # Mehler series workspace
    need = outputs + (n + n2) * per_sample + min(team, MAX_THREADS) * per_thread
    avail = _available_memory()
    if avail is None or need <= avail:
        return
    gb = 1e-9
    raise MemoryError(
        f"the {n} x {n2} kernels {list(outs)} need about {need * gb:.1f} GB "
        f"({outputs * gb:.1f} GB of outputs) but only {avail * gb:.1f} GB is available; "
        "request fewer outputs (e.g. outputs=('G',) or deq.ck), split X2 into column blocks, "
        "or use deqfast.distributed.kernels_blocked, which writes tiles to a Dask array or a "
        "Zarr store"
    )
