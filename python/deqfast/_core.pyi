# Type stubs of the compiled core; regenerate with `pybind11-stubgen deqfast._core -o <dir>`.
"""
deqfast compiled core (C++17, Eigen, OpenMP)
"""
from __future__ import annotations

import collections.abc
import typing

import numpy
import numpy.typing

__all__: list[str] = ['Activation', 'AssemblyStats', 'Moments', 'SampleData', 'SolverReport', 'assemble', 'deq_adjoint', 'deq_forward', 'eigen_simd', 'gaussian_map', 'has_openmp', 'release_workspace', 'samples_at', 'solve_diagonal', 'workspace_bytes']
class Moments:
    @property
    def a0(self) -> float:
        ...
    @property
    def a1(self) -> float:
        ...
    @property
    def a2(self) -> float:
        ...
    @property
    def a3(self) -> float:
        ...
    @property
    def e2(self) -> float:
        ...
    @property
    def m2(self) -> float:
        ...
    @property
    def m2_dot(self) -> float:
        ...
class Activation:
    def __call__(self, arg0: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.float64]:
        ...
    def __init__(self, kind: str, params: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], coef: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], shift: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def derivative(self, arg0: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> numpy.typing.NDArray[numpy.float64]:
        ...
    def hermite(self, tau: typing.SupportsFloat | typing.SupportsIndex, terms: typing.SupportsInt | typing.SupportsIndex) -> tuple[numpy.typing.NDArray[numpy.float64], float, float]:
        """
        Normalised Hermite coefficients h_k = E[phi(tau xi) He_k(xi)]/sqrt(k!) and Parseval remainders.
        """
    def kinks(self) -> list[float]:
        ...
    def moments(self, tau: typing.SupportsFloat | typing.SupportsIndex) -> Moments:
        """
        Gaussian moments a0..a3, m2, m2_dot, e2 at scale tau (theory page §2).
        """
    @property
    def shift(self) -> float:
        ...
class SampleData:
    """
    Per-sample diagonal fixed points d_i = S*_ii with m2 = G*_ii, e2 = Gdot*_ii.
    """
    @property
    def d(self) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"]:
        ...
    @property
    def e2(self) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"]:
        ...
    @property
    def iterations(self) -> int:
        ...
    @property
    def m2(self) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"]:
        ...
    @property
    def residual(self) -> float:
        ...
class AssemblyStats:
    @property
    def max_error(self) -> float:
        ...
    @property
    def max_iterations(self) -> int:
        ...
    @property
    def nonfinite(self) -> int:
        ...
    @property
    def overflow32(self) -> int:
        ...
    @property
    def newton_steps(self) -> int:
        ...
    @property
    def pairs(self) -> int:
        ...
    @property
    def picard_steps(self) -> int:
        ...
    @property
    def quadrature_pairs(self) -> int:
        ...
    @property
    def unconverged(self) -> int:
        ...
class SolverReport:
    """
    Outcome of a fixed-point solve.
    """
    def __repr__(self) -> str:
        ...
    @property
    def array_passes(self) -> float:
        """
        Full-length array reads + writes outside the matrix products (one N-element pass each).
        """
    @property
    def converged(self) -> bool:
        ...
    @property
    def dropped(self) -> int:
        ...
    @property
    def evaluations(self) -> int:
        ...
    @property
    def iterations(self) -> int:
        ...
    @property
    def phases(self) -> list:
        ...
    @property
    def product_seconds(self) -> float:
        """
        Wall time inside the matrix products (the forward pass includes the input term).
        """
    @property
    def residual(self) -> float:
        ...
    @property
    def residuals(self) -> numpy.typing.NDArray[numpy.float64]:
        ...
    @property
    def restarts(self) -> int:
        ...
    @property
    def solve_seconds(self) -> float:
        """
        Wall time of the whole solve.
        """
    @property
    def status(self) -> str:
        ...
def _acos_vec(x: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"]) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"]:
    """
    The vectorisable arccos of the arc-cosine pair solver (exposed for its accuracy test).
    """
def _activation_elementwise(phi: Activation, x: numpy.typing.NDArray[numpy.float64] | numpy.typing.NDArray[numpy.float32], derivative: bool) -> numpy.typing.NDArray[numpy.float64] | numpy.typing.NDArray[numpy.float32]:
    """
    phi(x) (or phi'(x)) of a C-contiguous float64 or float32 array, in its dtype, by the DEQ forward map's loops (exposed for tests).
    """
def _asin_vec(x: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"]) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"]:
    """
    The vectorisable arcsin of the arcsine (erf) pair solver (exposed for its accuracy test).
    """
def _exp_vec(x: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"]) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"]:
    """
    The branch-free exp of the pair series about |rho| = 1 (exposed for its accuracy test).
    """
def _sigmoid_vec(x: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"]) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"]:
    """
    The branch-free sigmoid of the pair series about |rho| = 1 (exposed for its accuracy test).
    """
def _tanh_vec(x: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"]) -> typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"]:
    """
    The branch-free tanh of the pair series about |rho| = 1 (exposed for its accuracy test).
    """
def assemble(phi: Activation, XA: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.c_contiguous"], XB: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.c_contiguous"], A: SampleData, B: SampleData, symmetric: bool, r0: typing.SupportsInt | typing.SupportsIndex, r1: typing.SupportsInt | typing.SupportsIndex, c0: typing.SupportsInt | typing.SupportsIndex, c1: typing.SupportsInt | typing.SupportsIndex, sigma_a2: typing.SupportsFloat | typing.SupportsIndex, sigma_b2: typing.SupportsFloat | typing.SupportsIndex, S: numpy.typing.NDArray[numpy.float64] | numpy.typing.NDArray[numpy.float32] | None = None, G: numpy.typing.NDArray[numpy.float64] | numpy.typing.NDArray[numpy.float32] | None = None, Gdot: numpy.typing.NDArray[numpy.float64] | numpy.typing.NDArray[numpy.float32] | None = None, K: numpy.typing.NDArray[numpy.float64] | numpy.typing.NDArray[numpy.float32] | None = None, Theta: numpy.typing.NDArray[numpy.float64] | numpy.typing.NDArray[numpy.float32] | None = None, tol: typing.SupportsFloat | typing.SupportsIndex = 1e-12, max_iter: typing.SupportsInt | typing.SupportsIndex = 100, block: typing.SupportsInt | typing.SupportsIndex = 64, num_threads: typing.SupportsInt | typing.SupportsIndex = 0, dtype: typing.Any = 'float64') -> AssemblyStats:
    """
    Solve every pair fixed point in rows [r0, r1) x columns [c0, c1) and write the requested kernels (theory page §3). With symmetric=True only the upper triangle is solved and mirrored. dtype: of every output array, float64 or float32 (computed in float64, stored rounded to nearest).
    """
@typing.overload
def deq_adjoint(phi: Activation, A: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.c_contiguous"], Z: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.c_contiguous"], v: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"], sigma_a: typing.SupportsFloat | typing.SupportsIndex, solver: str = 'anderson', tol: typing.SupportsFloat | typing.SupportsIndex = 1e-08, max_iter: typing.SupportsInt | typing.SupportsIndex = 500, memory: typing.SupportsInt | typing.SupportsIndex = 5, damping: typing.SupportsFloat | typing.SupportsIndex = 1.0, drop_tol: typing.SupportsFloat | typing.SupportsIndex = 10000000000.0, restart: typing.SupportsInt | typing.SupportsIndex = 0, divergence: typing.SupportsFloat | typing.SupportsIndex = 1000000.0, num_threads: typing.SupportsInt | typing.SupportsIndex = 0, gemm: str = 'blas') -> tuple:
    """
    Adjoint W = D o v/sqrt m + (sigma_a/sqrt m) D o (A^T W), D = phi'(Z) (theory page §3).
    Z is the (n, m) equilibrium. Returns (W, report) with W an F-ordered (m, n) array.
    """
@typing.overload
def deq_adjoint(phi: Activation, A: typing.Annotated[numpy.typing.NDArray[numpy.float32], "[m, n]", "flags.c_contiguous"], Z: typing.Annotated[numpy.typing.NDArray[numpy.float32], "[m, n]", "flags.c_contiguous"], v: typing.Annotated[numpy.typing.NDArray[numpy.float32], "[m, 1]"], sigma_a: typing.SupportsFloat | typing.SupportsIndex, solver: str = 'anderson', tol: typing.SupportsFloat | typing.SupportsIndex = 1e-08, max_iter: typing.SupportsInt | typing.SupportsIndex = 500, memory: typing.SupportsInt | typing.SupportsIndex = 5, damping: typing.SupportsFloat | typing.SupportsIndex = 1.0, drop_tol: typing.SupportsFloat | typing.SupportsIndex = 10000000000.0, restart: typing.SupportsInt | typing.SupportsIndex = 0, divergence: typing.SupportsFloat | typing.SupportsIndex = 1000000.0, num_threads: typing.SupportsInt | typing.SupportsIndex = 0, gemm: str = 'blas') -> tuple:
    """
    Adjoint W = D o v/sqrt m + (sigma_a/sqrt m) D o (A^T W), D = phi'(Z) (theory page §3).
    Z is the (n, m) equilibrium. Returns (W, report) with W an F-ordered (m, n) array.
    """
@typing.overload
def deq_forward(phi: Activation, A: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.c_contiguous"], B: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.c_contiguous"], X: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.c_contiguous"], sigma_a: typing.SupportsFloat | typing.SupportsIndex, sigma_b: typing.SupportsFloat | typing.SupportsIndex, solver: str = 'anderson', tol: typing.SupportsFloat | typing.SupportsIndex = 1e-08, max_iter: typing.SupportsInt | typing.SupportsIndex = 500, memory: typing.SupportsInt | typing.SupportsIndex = 5, damping: typing.SupportsFloat | typing.SupportsIndex = 1.0, drop_tol: typing.SupportsFloat | typing.SupportsIndex = 10000000000.0, restart: typing.SupportsInt | typing.SupportsIndex = 0, divergence: typing.SupportsFloat | typing.SupportsIndex = 1000000.0, num_threads: typing.SupportsInt | typing.SupportsIndex = 0, gemm: str = 'blas') -> tuple:
    """
    Batched finite-width DEQ Z = (sigma_a/sqrt m) A phi(Z) + sigma_b B X^T (theory page §3).
    solver: 'anderson', 'picard' or 'auto' (Picard, switching to Anderson when the observed rate says it pays).
    Interruptible (Ctrl-C raises KeyboardInterrupt within about one product block).
    A (m, m), B (m, p), X (n, p) C-contiguous, all float64 or all float32. Returns (Z, Phi, report) with
    Z and Phi as F-ordered (m, n) arrays (transpose for (n, m) rows-as-samples).
    """
@typing.overload
def deq_forward(phi: Activation, A: typing.Annotated[numpy.typing.NDArray[numpy.float32], "[m, n]", "flags.c_contiguous"], B: typing.Annotated[numpy.typing.NDArray[numpy.float32], "[m, n]", "flags.c_contiguous"], X: typing.Annotated[numpy.typing.NDArray[numpy.float32], "[m, n]", "flags.c_contiguous"], sigma_a: typing.SupportsFloat | typing.SupportsIndex, sigma_b: typing.SupportsFloat | typing.SupportsIndex, solver: str = 'anderson', tol: typing.SupportsFloat | typing.SupportsIndex = 1e-08, max_iter: typing.SupportsInt | typing.SupportsIndex = 500, memory: typing.SupportsInt | typing.SupportsIndex = 5, damping: typing.SupportsFloat | typing.SupportsIndex = 1.0, drop_tol: typing.SupportsFloat | typing.SupportsIndex = 10000000000.0, restart: typing.SupportsInt | typing.SupportsIndex = 0, divergence: typing.SupportsFloat | typing.SupportsIndex = 1000000.0, num_threads: typing.SupportsInt | typing.SupportsIndex = 0, gemm: str = 'blas') -> tuple:
    """
    Batched finite-width DEQ Z = (sigma_a/sqrt m) A phi(Z) + sigma_b B X^T (theory page §3).
    solver: 'anderson', 'picard' or 'auto' (Picard, switching to Anderson when the observed rate says it pays).
    Interruptible (Ctrl-C raises KeyboardInterrupt within about one product block).
    A (m, m), B (m, p), X (n, p) C-contiguous, all float64 or all float32. Returns (Z, Phi, report) with
    Z and Phi as F-ordered (m, n) arrays (transpose for (n, m) rows-as-samples).
    """
def gaussian_map(phi: Activation, S: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, n]", "flags.c_contiguous"], A: SampleData, B: SampleData, symmetric: bool, G: numpy.typing.NDArray[numpy.float64] | None = None, Gdot: numpy.typing.NDArray[numpy.float64] | None = None, num_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> AssemblyStats:
    """
    G = F_phi(S) and Gdot = F_phi'(S) elementwise (theory page §5): one explicit layer's kernel map.
    """
def release_workspace() -> int:
    """
    Give the solvers' idle work arrays back to the system; returns the bytes released.
    """
def samples_at(phi: Activation, d: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"], hermite_terms: typing.SupportsInt | typing.SupportsIndex = 64) -> SampleData:
    """
    Per-sample data (m2, e2, Hermite expansion) at given variances d_i (no fixed point).
    """
def solve_diagonal(phi: Activation, sqnorm: typing.Annotated[numpy.typing.NDArray[numpy.float64], "[m, 1]"], sigma_a2: typing.SupportsFloat | typing.SupportsIndex, sigma_b2: typing.SupportsFloat | typing.SupportsIndex, tol: typing.SupportsFloat | typing.SupportsIndex = 1e-12, max_iter: typing.SupportsInt | typing.SupportsIndex = 100, hermite_terms: typing.SupportsInt | typing.SupportsIndex = 64, num_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> SampleData:
    """
    Diagonal fixed points d_i = sigma_a2 m2(sqrt d_i) + sigma_b2 |x_i|^2 (theory page §3).
    """
def workspace_bytes() -> int:
    """
    Bytes of solver work arrays kept for the next solve (freed ones stay mapped, up to 1 GiB).
    """
has_openmp: bool = True
eigen_simd: str
