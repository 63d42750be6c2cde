"""Finite-width deep equilibrium models: forward pass, adjoint, empirical CK and NTK.

:ref:`§3 <theory-3>`, "finite width". Width ``m``, all weights i.i.d. ``N(0, 1)``::

    z = (σ_a/√m) Ã φ(z) + σ_b B x          (equilibrium z* = z*(x))
    f(x) = vᵀ φ(z*) / √m                   (scalar read-out)

The whole batch is solved at once in C++ (``deqfast._core.deq_forward``): the
state is the ``m × n`` matrix of pre-activations, one matrix product per
evaluation of the map, plain Picard iteration or Anderson acceleration
(Walker–Ni form), stopping on ``‖f(Z) − Z‖_F / ‖f(Z)‖_F ≤ tol``. The call
releases the GIL and stops with ``KeyboardInterrupt`` on Ctrl-C (it polls
Python's signal handlers between blocks of the matrix products). The products
run on SciPy's BLAS or on Eigen's kernel, whichever has the wider vector
kernels on the machine (:func:`product_engine`).

Random weights
--------------
With ``seed``, the weights come from ``rng = np.random.default_rng(seed)``
(a ``Generator`` is used as is), drawn in this order::

    A = rng.standard_normal((m, m))      # Ã
    B = rng.standard_normal((m, p))
    v = rng.standard_normal(m)           # read-out

Monte-Carlo averages (:func:`empirical_ck`, :func:`empirical_ntk`) draw
``trials`` such triples one after another from the same generator, so trial 0
of ``empirical_ck(..., seed=s)`` uses the weights of ``forward(..., seed=s)``.

A note on speed: the Jacobian ``(σ_a/√m) Ã diag φ'(z*)`` of a random-weight DEQ
has its eigenvalues spread over a disc of radius about ``√(σ_a² e2)`` (circular
law), on which no Krylov-type accelerator — Anderson included — beats plain
iteration by much; Anderson pays off for maps with structured spectra (trained
weights, nearly symmetric Jacobians). The default ``solver="auto"`` starts
with Picard and switches to Anderson only when the observed contraction rate
says acceleration can pay, falling back to Picard if it does not; the methods
used are recorded in :attr:`DEQForwardResult.phases`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from deqfast import _core
from deqfast._shared import progress_bar, resolve_threads
from deqfast._validation import (
    as_data_matrix,
    as_finite_array,
    as_rng,
    check_choice,
    check_in_range,
    check_integer,
    check_positive,
)
from deqfast._vocabulary import check_kernel, deprecated_module_attributes

__size_reason__ = (
    "one concept: the finite-width DEQ's solves (forward, adjoint) and the Monte-Carlo kernels "
    "built on them, which share the weight-drawing convention, the solver options and their "
    "checks; about half of the module is docstrings"
)

__all__ = [
    "DEQForwardResult",
    "draw_weights",
    "empirical_ck",
    "empirical_ntk",
    "forward",
    "product_engine",
    "release_work_buffers",
]

Solver = Literal["auto", "anderson", "picard"]
_SOLVERS = ("auto", "anderson", "picard")
_METHODS = ("adjoint", "elementwise")
_DTYPES = {"float64": np.float64, "float32": np.float32}
_FLOAT32_MIN_TOL = 1e-6

__getattr__ = deprecated_module_attributes(
    __name__,
    {"ForwardResult": ("use deqfast.finite.DEQForwardResult", lambda: DEQForwardResult)},
)
_MAX_ITER = 2**30  # the core's limit on evaluations


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class DEQForwardResult:
    """The equilibrium of a finite-width DEQ on a batch (:ref:`§3 <theory-3>`).

    Attributes
    ----------
    features : ndarray, shape (n, m)
        ``φ(z*(x_i))`` for each sample (rows are samples).
    Z : ndarray, shape (n, m)
        The pre-activation equilibria ``z*(x_i)`` (the last evaluation of the map).
    iterations : int
        Number of solver updates.
    evaluations : int
        Number of evaluations of the map (one ``m × m × n`` product each).
    residuals : ndarray
        Relative residual ``‖f(Z) − Z‖_F / ‖f(Z)‖_F`` after every evaluation.
    converged : bool
        Whether the last residual is ``≤ tol``.
    status : str
        ``"converged"``, ``"max_iter"``, ``"diverged"`` or ``"nonfinite"``.
    message : str
        What happened, in words (for a failure: the residual, the evaluation count and
        what to change).
    solver : str
        The requested solver: ``"auto"``, ``"anderson"`` or ``"picard"``.
    tol : float
        The requested tolerance.
    phases : tuple of (str, int)
        The methods that ran, in order, each with the (1-based) index of its first
        evaluation: e.g. ``(("picard", 1), ("anderson", 6))`` when ``"auto"``
        switched to Anderson after five Picard evaluations.
    """

    features: np.ndarray
    Z: np.ndarray
    iterations: int
    evaluations: int
    residuals: np.ndarray
    converged: bool
    status: str
    message: str
    solver: str
    tol: float
    phases: tuple[tuple[str, int], ...] = ()

    @property
    def solver_used(self) -> str:
        """The methods that ran, in order, joined by ``"+"`` (e.g. ``"picard+anderson"``)."""
        return "+".join(name for name, _ in self.phases)

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.features.shape[0])

    @property
    def width(self) -> int:
        """Width ``m``."""
        return int(self.features.shape[1])

    @property
    def residual(self) -> float:
        """The final relative residual."""
        return float(self.residuals[-1]) if self.residuals.size else math.inf

    def ck(self) -> np.ndarray:
        """This draw's empirical CK ``φ(Z*)ᵀφ(Z*)/m`` as an ``(n, n)`` matrix."""
        F = np.asarray(self.features, dtype=np.float64)
        return (F @ F.T) / self.width

    def __repr__(self) -> str:
        return (
            f"DEQForwardResult(n={self.n}, width={self.width}, solver={self.solver!r}, "
            f"solver_used={self.solver_used!r}, "
            f"status={self.status!r}, evaluations={self.evaluations}, "
            f"iterations={self.iterations}, residual={self.residual:.3e}, tol={self.tol:g})"
        )


# --------------------------------------------------------------------------- #
# argument checks
# --------------------------------------------------------------------------- #
def _deq_params(deq: Any) -> tuple[float, float, Any]:
    try:
        sa2, sb2, phi = deq.sigma_a2, deq.sigma_b2, deq.phi
    except AttributeError as exc:
        raise TypeError(
            f"deq must be a deqfast.DEQ (with sigma_a2, sigma_b2 and phi); got {type(deq).__name__}"
        ) from exc
    sa2 = check_positive(sa2, "deq.sigma_a2")
    sb2 = check_positive(sb2, "deq.sigma_b2")
    return sa2, sb2, phi.core  # a Python-callable activation raises a clear TypeError here


def _solver_options(
    solver: Any, tol: Any, max_iter: Any, memory: Any, damping: Any, dtype: Any
) -> dict[str, Any]:
    solver = check_choice(solver, "solver", _SOLVERS)
    tol = check_in_range(tol, "tol", 0.0, 1.0, inclusive=(False, False))
    max_iter = check_integer(max_iter, "max_iter", min_value=1, max_value=_MAX_ITER)
    memory = check_integer(memory, "memory", min_value=0, max_value=64)
    damping = check_in_range(damping, "damping", 0.0, 1.0, inclusive=(False, True))
    if dtype is None:  # single precision where tol allows (accuracy: tests/test_finite.py)
        name = "float32" if tol >= _FLOAT32_MIN_TOL else "float64"
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError as exc:
            raise TypeError(f"dtype must be numpy.float64 or numpy.float32; got {dtype!r}") from exc
    check_choice(name, "dtype", tuple(_DTYPES))
    if name == "float32" and tol < _FLOAT32_MIN_TOL:
        raise ValueError(
            f"tol must be >= {_FLOAT32_MIN_TOL:g} with dtype float32 (single precision cannot "
            f"resolve smaller relative residuals); got {tol:g}"
        )
    return dict(
        solver=solver, tol=tol, max_iter=max_iter, memory=memory, damping=damping, dtype=name
    )


def release_work_buffers() -> int:
    """Give the finite-width solvers' idle work arrays back to the system.

    :func:`forward`, :func:`empirical_ck` and :func:`empirical_ntk` keep up to 1 GiB
    of work arrays between solves (see the notes of :func:`forward`). Returns the
    number of bytes released.
    """
    return int(_core.release_workspace())


def draw_weights(
    width: int, p: int, *, seed: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``(Ã, B, v)`` i.i.d. ``N(0, 1)`` of shapes ``(m, m)``, ``(m, p)``, ``(m,)``.

    ``rng = np.random.default_rng(seed)`` (a ``Generator`` is used as is and
    advances), drawn in the order ``Ã``, ``B``, ``v`` (module docstring).
    """
    m = check_integer(width, "width", min_value=1)
    p = check_integer(p, "p", min_value=1)
    rng = as_rng(seed)
    return _draw(rng, m, p)


def _draw(rng: np.random.Generator, m: int, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    A = rng.standard_normal((m, m))
    B = rng.standard_normal((m, p))
    v = rng.standard_normal(m)
    return A, B, v


def _check_weights(weights: Any, m: int, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(weights, (tuple, list)) or len(weights) != 3:
        raise TypeError("weights must be a tuple (A, B, v) of arrays")
    A = as_finite_array(weights[0], "weights[0] (A)", shape=(m, m))
    B = as_finite_array(weights[1], "weights[1] (B)", shape=(m, p))
    v = as_finite_array(weights[2], "weights[2] (v)", shape=(m,))
    return A, B, v


def _fail_message(what: str, rep: Any, opts: dict[str, Any], sigma_a2: float) -> str:
    evals = rep.evaluations
    r = rep.residual
    head = f"finite-width DEQ {what} ({opts['solver']}) "
    if rep.status == "nonfinite":
        body = f"produced NaN/inf at evaluation {evals}"
    elif rep.status == "diverged":
        body = (
            f"diverged: the residual grew over 1e6 times above its smallest value "
            f"(relative residual {r:.3e} after {evals} evaluations)"
        )
    else:
        body = (
            f"did not converge: relative residual {r:.3e} after {evals} evaluations "
            f"(tol {opts['tol']:g}, max_iter {opts['max_iter']})"
        )
    if rep.status == "max_iter":
        res = np.asarray(rep.residuals)
        rate = _observed_rate(res)
        if rate < 1.0:
            # twice the evaluations still needed at the observed geometric rate (the rate of
            # plain iteration slows down as the fast modes die out)
            more = math.log(opts["tol"] / res[-1]) / math.log(rate)
            need = int(min(evals + 2 * math.ceil(more) + 1, _MAX_ITER))
            return (
                head + body + f". The residual is still falling (rate {rate:.3f} per evaluation): "
                f"raise max_iter to about {need}, loosen tol"
                + (", or use solver='anderson'" if opts["solver"] == "picard" else "")
                + f"; a smaller sigma_a2 (now {sigma_a2:g}) contracts faster."
            )
    hint = (
        f". The map contracts when sigma_a * ||A/sqrt(m)|| * Lip(phi) < 1 with "
        f"||A/sqrt(m)|| ~ 2, and on average when sigma_a2 * E[phi'(z)^2] < 1: reduce sigma_a2 "
        f"(now {sigma_a2:g})"
    )
    if rep.status == "max_iter":
        hint += ", raise max_iter, or loosen tol"
    elif opts["solver"] != "picard":
        hint += ", or try solver='picard' / damping < 1"
    return head + body + hint + "."


def _observed_rate(residuals: np.ndarray, span: int = 5) -> float:
    """Geometric-mean residual ratio over the last ``span`` evaluations (inf if unknown)."""
    span = min(span, residuals.size - 1)
    if span < 1 or not (residuals[-1] > 0 and residuals[-1 - span] > 0):
        return math.inf
    return float((residuals[-1] / residuals[-1 - span]) ** (1.0 / span))


def _check_report(rep: Any, what: str, opts: dict[str, Any], sigma_a2: float, strict: bool) -> None:
    if rep.converged:
        return
    msg = _fail_message(what, rep, opts, sigma_a2)
    if strict:
        raise RuntimeError(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


#: OpenBLAS core types (``openblas_get_corename``) whose GEMM kernels use AVX-512.
_AVX512_OPENBLAS = frozenset({"skylakex", "cooperlake", "sapphirerapids"})
#: Environment variable that fixes the product engine: ``blas`` or ``eigen``.
GEMM_ENV = "DEQFAST_GEMM"


def _choose_engine(eigen_simd: str, blas: Sequence[tuple[str, str]]) -> str:
    """``"eigen"`` when Eigen's kernels use AVX-512 and every BLAS loaded (``(internal_api,
    architecture)`` pairs, as threadpoolctl reports them) is an OpenBLAS running narrower
    kernels; ``"blas"`` otherwise (an unknown BLAS, such as MKL, is trusted)."""
    if "AVX512" not in eigen_simd.replace(" ", "").split(",") or not blas:
        return "blas"
    narrow = all(
        api == "openblas" and arch.lower() not in _AVX512_OPENBLAS for api, arch in blas
    )  # fmt: skip
    return "eigen" if narrow else "blas"


@functools.lru_cache(maxsize=1)
def product_engine() -> str:
    """The engine of the finite-width forward's and adjoint's matrix products
    (:ref:`§3 <theory-3>`, "finite width"): ``"blas"`` (SciPy's
    BLAS ``?gemm``, threaded by the BLAS) or ``"eigen"`` (Eigen's product kernel compiled into
    the core, threaded over column blocks).

    SciPy's BLAS unless Eigen's kernels are AVX-512 and the BLAS, an OpenBLAS, runs narrower
    ones (its ``OPENBLAS_CORETYPE`` set to ``Haswell`` on an AVX-512 machine, say). On such
    a machine Picard solves took 16-25 % less time with Eigen's products than with OpenBLAS's
    Haswell kernels, and 21-34 % less with OpenBLAS's own AVX-512 kernels than with Eigen's
    (``benchmarks/bench_forward.py --engines-only``, 2026-12-03). The choice depends only on
    the machine and the environment, so repeated runs give the same numbers (on any thread
    count); the two engines' results differ by rounding.
    The environment variable ``DEQFAST_GEMM`` (``blas`` or ``eigen``) fixes it; it is read
    once per process.
    """
    forced = os.environ.get(GEMM_ENV, "").strip().lower()
    if forced:
        return check_choice(forced, GEMM_ENV, ("blas", "eigen"))
    import scipy.linalg.cython_blas  # noqa: F401  (the BLAS the core calls, loaded)
    from threadpoolctl import threadpool_info

    blas = [
        (str(i.get("internal_api", "")), str(i.get("architecture", "")))
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]
    return _choose_engine(_core.eigen_simd, blas)


def _run_forward(
    phi: Any,
    A: np.ndarray,
    B: np.ndarray,
    X: np.ndarray,
    sigma_a2: float,
    sigma_b2: float,
    opts: dict[str, Any],
    num_threads: int,
) -> tuple[np.ndarray, np.ndarray, Any]:
    """Run the core solver; Ctrl-C inside it raises KeyboardInterrupt."""
    dt = _DTYPES[opts["dtype"]]
    Z, Phi, rep = _core.deq_forward(
        phi,
        np.ascontiguousarray(A, dtype=dt),
        np.ascontiguousarray(B, dtype=dt),
        np.ascontiguousarray(X, dtype=dt),
        math.sqrt(sigma_a2),
        math.sqrt(sigma_b2),
        solver=opts["solver"],
        tol=opts["tol"],
        max_iter=opts["max_iter"],
        memory=opts["memory"],
        damping=opts["damping"],
        num_threads=num_threads,
        gemm=product_engine(),
    )
    # (m, n) Fortran-ordered = (n, m) C-ordered: rows are samples, no copy.
    return Z.T, Phi.T, rep


# --------------------------------------------------------------------------- #
# public API
# --------------------------------------------------------------------------- #
def forward(
    deq: Any,
    X: Any,
    width: int,
    *,
    seed: Any = None,
    weights: tuple[Any, Any, Any] | None = None,
    solver: Solver = "auto",
    tol: float = 1e-8,
    max_iter: int = 500,
    memory: int = 5,
    damping: float = 1.0,
    strict: bool = True,
    dtype: Any = np.float64,
    num_threads: int | None = None,
) -> DEQForwardResult:
    """Solve the finite-width DEQ ``Z = (σ_a/√m) Ã φ(Z) + σ_b B Xᵀ`` for a batch.

    See :ref:`§3 <theory-3>`.

    Parameters
    ----------
    deq : deqfast.DEQ
        Supplies ``sigma_a2``, ``sigma_b2`` and the (centred) activation ``phi``.
    X : array_like, shape (n, p)
        Inputs, one sample per row.
    width : int
        Width ``m ≥ 1``.
    seed : None, int or numpy.random.Generator, optional
        Weight generator when ``weights`` is not given (module docstring).
    weights : (A, B, v), optional
        Explicit weights of shapes ``(m, m)``, ``(m, p)``, ``(m,)`` (``v`` is unused
        here but checked, so the same triple serves :func:`empirical_ntk`).
    solver : {"auto", "anderson", "picard"}
        ``"picard"``: plain iteration. ``"anderson"``: Anderson acceleration
        (Walker–Ni least squares through the Gram matrix of the stored residuals).
        ``"auto"``: Picard, switching to Anderson once the observed contraction rate
        (above 0.7 with many evaluations to go) says acceleration can pay, and back
        to Picard if Anderson's observed rate is not clearly better; see
        :attr:`DEQForwardResult.phases`.
    tol : float in (0, 1)
        Stop when ``‖f(Z) − Z‖_F / ‖f(Z)‖_F ≤ tol``.
    max_iter : int in [1, 2**30]
        Maximum number of evaluations of the map.
    memory : int in [0, 64]
        Anderson memory (0 is Picard).
    damping : float in (0, 1]
        Mixing parameter ``β`` (``1``: undamped).
    strict : bool
        Raise ``RuntimeError`` when the iteration does not converge, diverges or
        produces NaN; with ``False`` warn (``RuntimeWarning``) and return the flagged
        result instead.
    dtype : numpy.float64 or numpy.float32
        Working precision (float32 needs ``tol ≥ 1e-6``).
    num_threads : int ≥ 1 or None, default None
        OpenMP threads for the elementwise work (``None``: all cores); the matrix
        products use SciPy's threaded BLAS.

    Returns
    -------
    DEQForwardResult

    Raises
    ------
    RuntimeError
        With ``strict``, when the iteration stops unconverged; the message gives
        the residual, the evaluation count and what to change.
    KeyboardInterrupt
        On Ctrl-C during the solve (nothing is returned).

    Notes
    -----
    The solver's work arrays (Picard's second buffer, Anderson's window, the input
    term) are kept after the solve for the next one of the same size, so repeated
    solves do not pay the first-touch page faults of fresh memory again (about as much
    as the solve's vector arithmetic). At most 1 GiB is kept; the system may reclaim it
    under memory pressure, and :func:`release_work_buffers` gives it back at once.
    """
    sa2, sb2, phi = _deq_params(deq)
    X = as_data_matrix(X)
    _, p = X.shape
    m = check_integer(width, "width", min_value=1)
    opts = _solver_options(solver, tol, max_iter, memory, damping, dtype)
    strict = bool(strict)
    num_threads = resolve_threads(num_threads)
    if weights is not None:
        if seed is not None:
            raise ValueError("pass either seed or weights, not both")
        A, B, _ = _check_weights(weights, m, p)
    else:
        A, B, _ = _draw(as_rng(seed), m, p)
    Z, F, rep = _run_forward(phi, A, B, X, sa2, sb2, opts, num_threads)
    _check_report(rep, "forward pass", opts, sa2, strict)
    last = float(np.asarray(rep.residuals)[-1]) if rep.converged else math.inf
    message = (
        f"relative residual {last:.3e} <= tol {opts['tol']:g} after {rep.evaluations} evaluations"
        if rep.converged
        else _fail_message("forward pass", rep, opts, sa2)
    )
    for arr in (F, Z):
        arr.setflags(write=False)
    residuals = np.asarray(rep.residuals)
    residuals.setflags(write=False)
    return DEQForwardResult(
        features=F,
        Z=Z,
        iterations=int(rep.iterations),
        evaluations=int(rep.evaluations),
        residuals=residuals,
        converged=bool(rep.converged),
        status=str(rep.status),
        message=message,
        solver=opts["solver"],
        tol=opts["tol"],
        phases=tuple((str(name), int(first)) for name, first in rep.phases),
    )


def empirical_ck(
    deq: Any,
    X: Any,
    width: int,
    *,
    trials: int = 1,
    seed: Any = None,
    progress: bool | None = None,
    solver: Solver = "auto",
    tol: float = 1e-8,
    max_iter: int = 500,
    memory: int = 5,
    damping: float = 1.0,
    dtype: Any = None,
    num_threads: int | None = None,
) -> np.ndarray:
    """Monte-Carlo empirical CK ``E[φ(Z*)ᵀφ(Z*)/m]`` over ``trials`` weight draws.

    See :ref:`§3 <theory-3>`.

    Tends to the Implicit-CK ``G* = deq.ck(X)`` as ``m → ∞``. Memory is one draw
    at a time (``O(m² + mn + n²)``). Solver options as in :func:`forward`,
    except ``dtype``: ``None`` (default) solves in float32 when ``tol ≥ 1e-6``
    (its error, ~1e-6 relative, is far below the Monte-Carlo error ~1/√m;
    checked by the tests) and in float64 otherwise. A draw that fails to converge
    raises ``RuntimeError``.

    Returns
    -------
    ndarray, shape (n, n)
    """
    sa2, sb2, phi = _deq_params(deq)
    X = as_data_matrix(X)
    n, p = X.shape
    m = check_integer(width, "width", min_value=1)
    trials = check_integer(trials, "trials", min_value=1)
    opts = _solver_options(solver, tol, max_iter, memory, damping, dtype)
    num_threads = resolve_threads(num_threads)
    rng = as_rng(seed)
    acc = np.zeros((n, n))
    for _ in progress_bar(progress, range(trials), desc=f"empirical CK (m={m})", unit="draw"):
        A, B, _v = _draw(rng, m, p)
        _, F, rep = _run_forward(phi, A, B, X, sa2, sb2, opts, num_threads)
        del A, B
        _check_report(rep, "forward pass", opts, sa2, True)
        F = np.asarray(F, dtype=np.float64)
        acc += F @ F.T
    return acc / (m * trials)


def empirical_ntk(
    deq: Any,
    X: Any,
    width: int,
    *,
    trials: int = 1,
    seed: Any = None,
    method: Literal["adjoint", "elementwise"] = "adjoint",
    trained: str = "hidden",
    progress: bool | None = None,
    solver: Solver = "auto",
    tol: float = 1e-8,
    max_iter: int = 500,
    memory: int = 5,
    damping: float = 1.0,
    dtype: Any = None,
    num_threads: int | None = None,
    ck_out: np.ndarray | None = None,
    weights: Sequence[tuple[Any, Any, Any]] | None = None,
) -> np.ndarray:
    """Monte-Carlo empirical NTK of the finite-width DEQ (:ref:`§3 <theory-3>`).

    ``method="adjoint"`` (exact gradients): solve the adjoint fixed point
    ``w = g + (σ_a/√m) D Ãᵀ w``, ``D = diag φ'(z*)``, ``g = D v/√m``, then ::

        NTK_m(x, y) = (σ_a²/m)(w_x·w_y)(φ_x·φ_y) + (φ_x·φ_y)/m  [+ σ_b² (w_x·w_y)(x·y)]

    — the bracket only for ``trained="all"`` (``B`` trained too); the default
    ``"hidden"`` trains ``Ã`` and ``v`` (the paper's convention). It tends to
    ``deq.ntk(X, trained=...)``.

    ``method="elementwise"`` (the authors' cheaper estimate, no adjoint):
    ``G_m ⊘ (1 − σ_a² Ġ_m)`` with ``G_m = φ(Z*)ᵀφ(Z*)/m``, ``Ġ_m = φ'(Z*)ᵀφ'(Z*)/m``;
    for ``trained="all"`` ``G_m + Ġ_m ∘ S_m ⊘ (1 − σ_a² Ġ_m)`` with ``S_m = Z*ᵀZ*/m``.

    Other arguments (``dtype=None`` included) as in :func:`empirical_ck`. ``ck_out``, a
    float64 ``(n, n)`` array, receives the empirical CK ``E[φ(Z*)ᵀφ(Z*)/m]`` of the same
    draws (what :func:`empirical_ck` returns for the same ``seed``) from the forward passes
    the NTK solves anyway. ``weights``, a sequence of ``trials`` triples ``(A, B, v)`` as
    :func:`draw_weights` returns them, replaces the draws (``seed`` must then be ``None``):
    ``[draw_weights(width, p, seed=rng) for _ in range(trials)]`` with
    ``rng = np.random.default_rng(seed)`` gives the result of ``seed``, so one set of draws
    can serve several DEQs.

    Returns
    -------
    ndarray, shape (n, n)
    """
    sa2, sb2, phi = _deq_params(deq)
    X = as_data_matrix(X)
    n, p = X.shape
    m = check_integer(width, "width", min_value=1)
    trials = check_integer(trials, "trials", min_value=1)
    method = check_choice(method, "method", _METHODS)
    trained = check_kernel("ntk", trained)[1]
    opts = _solver_options(solver, tol, max_iter, memory, damping, dtype)
    num_threads = resolve_threads(num_threads)
    dt = _DTYPES[opts["dtype"]]
    if weights is not None:
        if seed is not None:
            raise ValueError("pass either seed or weights, not both")
        if not isinstance(weights, Sequence) or len(weights) != trials:
            raise ValueError(f"weights must be a sequence of trials = {trials} triples (A, B, v)")
    rng = as_rng(seed)
    XX = X @ X.T if trained == "all" else None
    if ck_out is not None and (
        not isinstance(ck_out, np.ndarray)
        or ck_out.shape != (n, n)
        or ck_out.dtype != np.float64
        or not ck_out.flags.writeable
    ):
        got = f"{ck_out.dtype} array of shape {ck_out.shape}" if isinstance(
            ck_out, np.ndarray) else type(ck_out).__name__  # fmt: skip
        if isinstance(ck_out, np.ndarray) and not ck_out.flags.writeable:
            got = "a read-only array"
        raise ValueError(f"ck_out must be a writeable float64 array of shape ({n}, {n}); got {got}")
    acc = np.zeros((n, n))
    acc_ck = np.zeros((n, n)) if ck_out is not None else None
    for t in progress_bar(progress, range(trials), desc=f"empirical NTK (m={m})", unit="draw"):
        A, B, v = _draw(rng, m, p) if weights is None else _check_weights(weights[t], m, p)
        A = np.ascontiguousarray(A, dtype=dt)
        Z, F, rep = _run_forward(phi, A, B, X, sa2, sb2, opts, num_threads)
        del B
        _check_report(rep, "forward pass", opts, sa2, True)
        F = np.asarray(F, dtype=np.float64)
        FF = F @ F.T
        if acc_ck is not None:
            acc_ck += FF
        if method == "adjoint":
            W, arep = _core.deq_adjoint(
                phi,
                A,
                np.ascontiguousarray(Z),
                np.ascontiguousarray(v, dtype=dt),
                math.sqrt(sa2),
                solver=opts["solver"],
                tol=opts["tol"],
                max_iter=opts["max_iter"],
                memory=opts["memory"],
                damping=opts["damping"],
                num_threads=num_threads,
                gemm=product_engine(),
            )
            del A
            _check_report(arep, "adjoint", opts, sa2, True)
            Wt = np.asarray(W.T, dtype=np.float64)
            WW = Wt @ Wt.T
            K = (sa2 / m) * WW * FF + FF / m
            if XX is not None:
                K += sb2 * WW * XX
        else:
            del A
            Dt = np.asarray(phi.derivative(np.asarray(Z, dtype=np.float64)))
            G = FF / m
            Gd = (Dt @ Dt.T) / m
            if trained == "hidden":
                K = G / (1.0 - sa2 * Gd)
            else:
                Zd = np.asarray(Z, dtype=np.float64)
                K = G + Gd * ((Zd @ Zd.T) / m) / (1.0 - sa2 * Gd)
        acc += K
    if ck_out is not None and acc_ck is not None:
        ck_out[...] = acc_ck / (m * trials)
    return acc / trials
