"""Comparing two kernel matrices through their spectra (:ref:`§6 <theory-6>`).

:func:`compare_spectra` takes a reference kernel ``A`` (e.g. the exact ``G*``)
and an approximation ``B`` (e.g. the surrogate ``Ḡ``) and reports

* the relative errors ``‖A − B‖₂/‖A‖₂`` and ``‖A − B‖_F/‖A‖_F``;
* the 1-Wasserstein distance between the two empirical spectral measures,
  ``W1 = (1/n) Σ_i |λ_i(A) − λ_i(B)|`` (both spectra sorted), and ``W1``
  relative to the spectral spread ``λ_max(A) − λ_min(A)``;
* the isolated eigenvalues ("spikes") of each matrix outside its bulk, by the
  gap rule of :func:`isolated_eigenvalues`;
* when class labels are given, the alignment ``|u_kᵀ j_a|²/n_a`` of the top
  eigenvectors ``u_k`` with the class indicators ``j_a``, and the overlaps
  ``|u_k(A)ᵀ u_k(B)|²`` of the two matrices' top eigenvectors.

Only symmetric eigensolvers are used: :func:`scipy.linalg.eigvalsh` for the
spectra (with labels, the same LAPACK reduction to tridiagonal form gives the top
eigenvectors too), Lanczos (ARPACK's ``eigsh``) for the norm ``‖A − B‖₂``
(:func:`spectral_norm`).
"""

from __future__ import annotations

__size_reason__ = (
    "the comparison, its result type and the cached symmetric eigensolvers behind it (the "
    "spectrum and top eigenvectors from one LAPACK reduction, Lanczos norms): the solvers "
    "serve only this comparison and share its content-keyed cache"
)

import dataclasses
import hashlib
from collections import OrderedDict
from typing import Any, Callable

import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from deqfast._shared import markdown_table
from deqfast._validation import as_finite_array, as_labels, check_integer, check_positive

__all__ = [
    "SpectralComparison",
    "compare_spectra",
    "isolated_eigenvalues",
    "relative_errors",
    "spectral_norm",
]

#: Relative tolerance of the symmetry check ``max|A − Aᵀ| <= tol · max|A|``.
SYMMETRY_RTOL = 1e-8


def _as_symmetric(M: Any, name: str) -> np.ndarray:
    arr = as_finite_array(M, name)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} must be a square 2-D matrix; got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"{name} must be at least 2 × 2; got shape {arr.shape}")
    scale = max(float(arr.max()), -float(arr.min()))
    asym = _asymmetry(arr)
    if asym > SYMMETRY_RTOL * max(scale, np.finfo(np.float64).tiny):
        raise ValueError(
            f"{name} must be symmetric: max|{name} − {name}ᵀ| = {asym:.3g} exceeds "
            f"{SYMMETRY_RTOL:g} × max|{name}| = {SYMMETRY_RTOL * scale:.3g}"
        )
    if asym == 0:  # (M + Mᵀ)/2 would be M itself, bit for bit
        return arr
    return 0.5 * (arr + arr.T)


#: Rows per block of :func:`_asymmetry`: a block of rows and the matching block of columns
#: stay in cache, where ``M − Mᵀ`` over the whole matrix reads ``Mᵀ`` with a stride of a row.
_SYM_BLOCK = 256


def _asymmetry(M: np.ndarray) -> float:
    """``max|M − Mᵀ|`` of a square matrix, by blocks of rows against blocks of columns (half
    the time of the whole-matrix expression at ``n`` ≈ 1600, the same number)."""
    n = M.shape[0]
    asym = 0.0
    for i in range(0, n, _SYM_BLOCK):
        j = min(i + _SYM_BLOCK, n)
        d = M[i:j, i:] - M[i:, i:j].T
        asym = max(asym, float(np.abs(d, out=d).max()))
    return asym


def isolated_eigenvalues(
    eigenvalues: Any, *, gap_factor: float = 20.0, max_spikes: int = 20
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Eigenvalues separated from the bulk of a spectrum by a large gap.

    The rule (applied to the top of the spectrum, and mirrored for the
    bottom): with ``λ_1 ≥ λ_2 ≥ … ≥ λ_n`` and gaps ``g_k = λ_k − λ_{k+1}``, let
    ``k_max = min(max_spikes, n // 4)`` be the number of candidate spikes and
    ``s`` the *edge spacing*: the median of the gaps ``g_{k_max+1} …
    g_{k_max+w}`` just inside the edge (``w = max(10, n // 20)``), but at least
    the median gap of the whole spectrum and a tenth of the mean gap
    ``(λ_1 − λ_n)/(n − 1)`` (so clusters of equal eigenvalues, e.g. the
    ``n − p`` copies of a kernel's diagonal constant when ``n > p``, do not
    make every gap "large").  Then ``λ_1 … λ_k`` are isolated, where
    ``k ≤ k_max`` is the *largest* index with ``g_k > gap_factor · s`` (0 if
    none).  A spike is an ``O(1)`` gap while the spacing at a square-root bulk
    edge is ``O(n^{-2/3})``, so the rule separates them once ``n`` is a few
    hundred; close to the BBP transition (a spike that barely leaves the bulk)
    it is, like any finite-``n`` rule, ambiguous.

    Parameters
    ----------
    eigenvalues : array_like, shape (n,)
        The spectrum, in any order.
    gap_factor : float, default 20
        How many edge spacings a gap must exceed.
    max_spikes : int, default 20
        Largest number of isolated eigenvalues reported at each end.

    Returns
    -------
    top : ndarray
        Isolated eigenvalues above the bulk, in decreasing order.
    bottom : ndarray
        Isolated eigenvalues below the bulk, in increasing order.
    bulk : (float, float)
        The bulk's edges: the smallest and largest eigenvalues that are not
        isolated.
    """
    lam = np.sort(as_finite_array(eigenvalues, "eigenvalues", ndim=1))
    gap_factor = check_positive(gap_factor, "gap_factor")
    max_spikes = check_integer(max_spikes, "max_spikes", min_value=0)
    n = lam.shape[0]
    if n < 8:
        return np.empty(0), np.empty(0), (float(lam[0]), float(lam[-1]))
    kmax = min(max_spikes, n // 4)
    w = max(10, n // 20)
    all_gaps = np.diff(lam)
    spread = float(lam[-1] - lam[0])
    floor = max(float(np.median(all_gaps)), 0.1 * spread / (n - 1))

    def count(desc: np.ndarray) -> int:
        gaps = -np.diff(desc)  # g_k = λ_k − λ_{k+1}, k = 1..n-1 (index k-1)
        if kmax == 0:
            return 0
        window = gaps[kmax : kmax + w]
        s = max(float(np.median(window)) if window.size else 0.0, floor)
        if s <= 0:
            s = np.finfo(np.float64).eps * max(1.0, float(np.abs(lam).max()))
        big = np.flatnonzero(gaps[:kmax] > gap_factor * s)
        return int(big[-1] + 1) if big.size else 0

    k_top = count(lam[::-1])
    k_bot = count(-lam)  # mirrored: the bottom of lam is the top of -lam
    k_bot = min(k_bot, n - k_top - 1)
    top = lam[::-1][:k_top].copy()
    bottom = lam[:k_bot].copy()
    bulk = (float(lam[k_bot]), float(lam[n - 1 - k_top]))
    return top, bottom, bulk


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class SpectralComparison:
    """Result of :func:`compare_spectra` (:ref:`§6 <theory-6>`).

    Attributes
    ----------
    names : (str, str)
        Display names of the reference ``A`` and the approximation ``B``.
    n : int
        Matrix size.
    op_error, fro_error : float
        ``‖A − B‖₂/‖A‖₂`` and ``‖A − B‖_F/‖A‖_F``.
    wasserstein : float
        ``W1 = (1/n) Σ_i |λ_i(A) − λ_i(B)|`` between the sorted spectra.
    spread : float
        ``λ_max(A) − λ_min(A)``.
    wasserstein_rel : float
        ``W1 / spread``.
    eigvals_a, eigvals_b : ndarray, shape (n,)
        The spectra, in increasing order.
    spikes_a, spikes_b : ndarray
        Isolated eigenvalues above the bulk (decreasing), see
        :func:`isolated_eigenvalues`.
    low_spikes_a, low_spikes_b : ndarray
        Isolated eigenvalues below the bulk (increasing).
    bulk_a, bulk_b : (float, float)
        Bulk edges of each spectrum.
    top : int
        Number of top eigenvectors analysed.
    eigvecs_a, eigvecs_b : ndarray, shape (n, top) or None
        Top eigenvectors (column ``k`` for the ``k``-th largest eigenvalue,
        sign fixed so that the largest-magnitude entry is positive), when
        labels were given.
    alignment_a, alignment_b : ndarray, shape (top, K) or None
        ``|u_kᵀ j_a|²/n_a`` per top eigenvector ``k`` and class ``a``; each row
        sums to the squared norm of ``u_k``'s projection onto the span of the
        class indicators (at most 1).
    overlap : ndarray, shape (top,) or None
        ``|u_k(A)ᵀ u_k(B)|²`` (sensitive to the order of nearly equal spikes).
    subspace_overlap : float or None
        ``‖U_Aᵀ U_B‖_F² / top`` for the spans of the ``top`` eigenvectors: 1
        when the two subspaces coincide, whatever the order inside them.
    labels : ndarray of int or None
        Class codes used for the alignment.
    """

    names: tuple[str, str]
    n: int
    op_error: float
    fro_error: float
    wasserstein: float
    spread: float
    wasserstein_rel: float
    eigvals_a: np.ndarray
    eigvals_b: np.ndarray
    spikes_a: np.ndarray
    spikes_b: np.ndarray
    low_spikes_a: np.ndarray
    low_spikes_b: np.ndarray
    bulk_a: tuple[float, float]
    bulk_b: tuple[float, float]
    top: int
    eigvecs_a: np.ndarray | None = None
    eigvecs_b: np.ndarray | None = None
    alignment_a: np.ndarray | None = None
    alignment_b: np.ndarray | None = None
    overlap: np.ndarray | None = None
    subspace_overlap: float | None = None
    labels: np.ndarray | None = None

    # ------------------------------------------------------------------ #
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (scalars, spikes, bulk edges, alignments; no full spectra)."""

        def lst(a: np.ndarray | None) -> Any:
            return None if a is None else np.asarray(a).tolist()

        return {
            "names": list(self.names),
            "n": self.n,
            "op_error": self.op_error,
            "fro_error": self.fro_error,
            "wasserstein": self.wasserstein,
            "spread": self.spread,
            "wasserstein_rel": self.wasserstein_rel,
            "spikes_a": lst(self.spikes_a),
            "spikes_b": lst(self.spikes_b),
            "low_spikes_a": lst(self.low_spikes_a),
            "low_spikes_b": lst(self.low_spikes_b),
            "bulk_a": list(self.bulk_a),
            "bulk_b": list(self.bulk_b),
            "alignment_a": lst(self.alignment_a),
            "alignment_b": lst(self.alignment_b),
            "overlap": lst(self.overlap),
            "subspace_overlap": self.subspace_overlap,
        }

    def rows(self) -> list[tuple[str, str, str]]:
        """Table rows ``(quantity, value for A or both, value for B)``."""
        a, b = self.names

        def spikes(v: np.ndarray) -> str:
            if v.size == 0:
                return "none"
            shown = ", ".join(f"{x:.4g}" for x in v[:6])
            return f"{v.size}: {shown}" + (", …" if v.size > 6 else "")

        r: list[tuple[str, str, str]] = [
            (f"‖{a} − {b}‖₂ / ‖{a}‖₂", f"{self.op_error:.4g}", ""),
            (f"‖{a} − {b}‖_F / ‖{a}‖_F", f"{self.fro_error:.4g}", ""),
            ("W1(spectra)", f"{self.wasserstein:.4g}", ""),
            ("W1 / spread", f"{self.wasserstein_rel:.4g}", ""),
            ("λ_max", f"{self.eigvals_a[-1]:.4g}", f"{self.eigvals_b[-1]:.4g}"),
            ("λ_min", f"{self.eigvals_a[0]:.4g}", f"{self.eigvals_b[0]:.4g}"),
            (
                "bulk edges",
                f"[{self.bulk_a[0]:.4g}, {self.bulk_a[1]:.4g}]",
                f"[{self.bulk_b[0]:.4g}, {self.bulk_b[1]:.4g}]",
            ),
            ("isolated above bulk", spikes(self.spikes_a), spikes(self.spikes_b)),
            ("isolated below bulk", spikes(self.low_spikes_a), spikes(self.low_spikes_b)),
        ]
        if self.alignment_a is not None and self.alignment_b is not None:
            for k in range(self.top):
                ra = ", ".join(f"{x:.3f}" for x in self.alignment_a[k])
                rb = ", ".join(f"{x:.3f}" for x in self.alignment_b[k])
                r.append((f"u_{k + 1}: |uᵀj_a|²/n_a", ra, rb))
            assert self.overlap is not None
            for k in range(self.top):
                r.append((f"|u_{k + 1}({a})ᵀu_{k + 1}({b})|²", f"{self.overlap[k]:.4f}", ""))
            r.append((f"top-{self.top} subspace overlap", f"{self.subspace_overlap:.4f}", ""))
        return r

    def table(self, fmt: str = "text") -> str:
        """The comparison as a table: ``fmt="text"`` (aligned columns) or ``"markdown"``."""
        a, b = self.names
        header = ("quantity", a, b)
        rows = self.rows()
        if fmt == "markdown":
            return markdown_table(header, rows)
        if fmt != "text":
            raise ValueError(f"fmt must be 'text' or 'markdown'; got {fmt!r}")
        widths = [max(len(x[i]) for x in [header, *rows]) for i in range(3)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip()]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        return "\n".join(lines)

    def __str__(self) -> str:
        return (
            f"Spectral comparison of {self.names[0]} (reference) and {self.names[1]}, "
            f"n = {self.n}\n" + self.table()
        )

    def __repr__(self) -> str:
        return (
            f"SpectralComparison({self.names[0]!r} vs {self.names[1]!r}, n={self.n}, "
            f"op_error={self.op_error:.4g}, fro_error={self.fro_error:.4g}, "
            f"W1={self.wasserstein:.4g}, W1/spread={self.wasserstein_rel:.4g}, "
            f"spikes={self.spikes_a.size}/{self.spikes_b.size})"
        )


def spectral_norm(M: Any) -> float:
    """``‖M‖₂ = max |λ_i(M)|`` of a real symmetric matrix (:ref:`§6 <theory-6>` errors).

    The eigenvalue of largest magnitude by Lanczos (ARPACK's ``eigsh``, ``tol=0``:
    to machine precision, from a fixed start so the result is reproducible); about
    ten times faster than a full :func:`scipy.linalg.eigvalsh` at ``n`` ≈ 1600.
    Small matrices, and the rare case where Lanczos fails (no convergence, or an
    invariant subspace hit at once), use the full symmetric eigensolver.

    >>> round(spectral_norm(np.diag([1.0, -3.0, 2.0])), 12)
    3.0
    """
    return _spectral_norm(_as_symmetric(M, "M"))


def relative_errors(A: Any, B: Any) -> tuple[float, float]:
    """Relative errors of ``B`` against the reference ``A`` (:ref:`§6 <theory-6>`).

    Returns ``(‖A − B‖₂/‖A‖₂, ‖A − B‖_F/‖A‖_F)``: the operator-norm error (both norms by
    :func:`spectral_norm`, so ``A`` and ``A − B`` must be symmetric) and the Frobenius error.

    Raises
    ------
    ValueError
        If the shapes differ, ``A`` or ``A − B`` is not a symmetric square matrix, or ``A``
        is zero.

    Examples
    --------
    >>> A = np.diag([3.0, 2.0, 1.0])
    >>> tuple(round(e, 12) for e in relative_errors(A, 1.1 * A))
    (0.1, 0.1)
    """
    Am = as_finite_array(A, "A")
    Bm = as_finite_array(B, "B")
    if Am.shape != Bm.shape:
        raise ValueError(f"A and B must have the same shape; got {Am.shape} and {Bm.shape}")
    return _relative_errors(Am, Bm)


def _relative_errors(
    A: np.ndarray, B: np.ndarray, norm_a: float | None = None, *, symmetric: bool = False
) -> tuple[float, float]:
    """:func:`relative_errors` of checked arrays (``norm_a``: ``‖A‖₂`` if already known;
    ``symmetric``: ``A`` and ``B`` are exactly symmetric, so ``A − B`` is too)."""
    D = A - B
    if norm_a is None:
        norm_a = _spectral_norm(_as_symmetric(A, "A"))
    if norm_a == 0:
        raise ValueError("A must not be the zero matrix (the errors are relative to ‖A‖)")
    op = _spectral_norm(as_finite_array(D, "A − B") if symmetric else _as_symmetric(D, "A − B"))
    op /= norm_a
    return op, float(np.linalg.norm(D) / np.linalg.norm(A))


def _spectral_norm(A: np.ndarray) -> float:
    """:func:`spectral_norm` of a matrix already checked and symmetrised."""
    n = A.shape[0]
    if not A.any():
        return 0.0
    if n > 64:
        v0 = np.random.default_rng(0).standard_normal(n)
        try:
            w = scipy.sparse.linalg.eigsh(
                A, k=1, which="LM", v0=v0, tol=0, return_eigenvectors=False
            )
            return float(abs(w[0]))
        except scipy.sparse.linalg.ArpackError:  # incl. ArpackNoConvergence
            pass
    w = scipy.linalg.eigvalsh(A)
    return float(max(abs(w[0]), abs(w[-1])))


#: Eigendecompositions of the last matrices seen, keyed by their content (a report compares
#: one reference kernel with several approximations; each decomposition costs O(n³)). An
#: entry is a spectrum or a few eigenvectors, O(n) numbers: 64 of them cover every matrix
#: that ``deqfast reproduce`` compares more than once (16 did not: its real-data section
#: adds 40 entries before it compares its first references again).
_CACHE: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
_CACHE_SIZE = 64


def _digest(M: np.ndarray) -> tuple[Any, ...]:
    """The content key of ``M`` (its shape and a SHA-1 of its bytes)."""
    return (M.shape, hashlib.sha1(np.ascontiguousarray(M).data).hexdigest())


def _cached(
    kind: tuple[Any, ...], digest: tuple[Any, ...], compute: Callable[[], np.ndarray]
) -> np.ndarray:
    key = (*kind, *digest)
    if key in _CACHE:
        _CACHE.move_to_end(key)
    else:
        _store(key, compute())
    return _CACHE[key].copy()


def _store(key: tuple[Any, ...], value: np.ndarray) -> None:
    _CACHE[key] = value
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)


def _eigvalsh(M: np.ndarray, digest: tuple[Any, ...] | None = None) -> np.ndarray:
    d = _digest(M) if digest is None else digest
    return _cached(("eigvalsh",), d, lambda: scipy.linalg.eigvalsh(M))


def _top_eigvecs(M: np.ndarray, top: int, digest: tuple[Any, ...] | None = None) -> np.ndarray:
    d = _digest(M) if digest is None else digest
    return _cached(("top", top), d, lambda: _top_eigvecs_uncached(M, top))


def _spectrum_and_top(
    M: np.ndarray, top: int, digest: tuple[Any, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_eigvalsh` and :func:`_top_eigvecs` of one matrix (same cache entries): when
    neither is cached, both come from one reduction to tridiagonal form
    (:func:`_spectrum_and_top_uncached`)."""
    spectrum, vectors = ("eigvalsh", *digest), ("top", top, *digest)
    if spectrum not in _CACHE and vectors not in _CACHE:
        lam, U = _spectrum_and_top_uncached(M, top)
        _store(spectrum, lam)
        _store(vectors, U)
    return _eigvalsh(M, digest), _top_eigvecs(M, top, digest)


def _spectrum_and_top_uncached(M: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """All eigenvalues (increasing) and the ``top`` eigenvectors of the largest ones
    (as :func:`_top_eigvecs_uncached` returns them) from one reduction ``M = Q T Qᵀ``.

    LAPACK's path of :func:`scipy.linalg.eigh` (``dsyevr``) done once for both results:
    ``dsytrd`` reduces ``M`` to the tridiagonal ``T`` (``Q`` kept as Householder
    reflectors), ``dsterf`` gives every eigenvalue of ``T`` (what ``dsyevr`` does for
    :func:`scipy.linalg.eigvalsh`), bisection (``dstebz``) and inverse iteration
    (``dstein``, which reorthogonalises vectors of close eigenvalues) give the top
    eigenvectors of ``T`` (what ``dsyevr`` does for ``eigh(subset_by_index=...)``), and
    ``dormqr`` applies ``Q`` to those alone.  The reduction is most of the cost of either
    result, so the vectors cost about 5 % of the spectrum instead of a Lanczos run (about
    40 % of it at ``n`` = 1638).  If LAPACK reports an error, the vectors are not
    orthonormal or not eigenvectors to ``1e-10·‖M‖``, or ``max|M|`` is outside the range in
    which ``dsyevr`` works unscaled, both come from a full :func:`scipy.linalg.eigh` (divide
    and conquer, ``driver="evd"``) instead.
    """
    result = _tridiagonal_path(M, top)
    if result is None:
        lam, V = scipy.linalg.eigh(M, driver="evd")
        return lam, _fix_signs(V[:, ::-1][:, :top])
    return result


#: ``max|M|`` outside this range makes ``dsyevr`` scale ``M`` first (to avoid over- and
#: underflow); :func:`_tridiagonal_path` does not, and leaves such matrices to ``eigh``.
_UNSCALED = (
    float(np.sqrt(np.finfo(np.float64).tiny / np.finfo(np.float64).eps)),
    float(np.finfo(np.float64).tiny ** -0.25),
)


def _tridiagonal_path(M: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`_spectrum_and_top_uncached` by LAPACK's parts, or ``None`` if a check fails."""
    from scipy.linalg import lapack

    n = M.shape[0]
    scale = max(float(M.max()), -float(M.min()))
    if not _UNSCALED[0] <= scale <= _UNSCALED[1]:
        return None
    # the workspace dsyevr gives its dsytrd (so the same blocking, and the same spectrum)
    lwork = max(int(lapack.dsyevr_lwork(n, lower=1)[0]) - 5 * n, n)
    c, d, e, tau, info = lapack.dsytrd(M.T, lower=1, lwork=lwork)  # Mᵀ = M, in Fortran order
    if info != 0:
        return None
    lam, info = lapack.dsterf(d, e)
    if info != 0:
        return None
    m, w, iblock, isplit, info = lapack.dstebz(d, e, 3, 0.0, 0.0, n - top + 1, n, 0.0, "B")
    if info != 0 or m != top:
        return None
    Z, info = lapack.dstein(d, e, w[:top], iblock, isplit)
    if info != 0:
        return None
    # Q = H(1) … H(n−1) acts on rows 2..n, its reflectors below the subdiagonal (dormtr)
    U = np.asfortranarray(Z)
    a, sub = c[1:, : n - 1], U[1:]
    lw = int(lapack.dormqr("L", "N", a, tau, sub, -1)[1][0])
    U[1:], _, info = lapack.dormqr("L", "N", a, tau, sub, max(lw, top))
    if info != 0:
        return None
    order = np.argsort(-w[:top], kind="stable")
    U, w = U[:, order], w[:top][order]
    tol = 1e-10 * max(scale, float(np.abs(lam).max()))
    if not (np.abs(U.T @ U - np.eye(top)).max() <= 1e-10 and np.abs(M @ U - U * w).max() <= tol):
        return None
    return lam, _fix_signs(U)


def _fix_signs(U: np.ndarray) -> np.ndarray:
    """``U`` with each column's sign fixed so that its largest-magnitude entry is positive."""
    U = np.ascontiguousarray(U)
    idx = np.argmax(np.abs(U), axis=0)
    signs = np.sign(U[idx, np.arange(U.shape[1])])
    signs[signs == 0] = 1.0
    return U * signs


def _top_eigvecs_uncached(M: np.ndarray, top: int) -> np.ndarray:
    """The ``top`` eigenvectors of the largest eigenvalues, in decreasing order, signs fixed
    so that each vector's largest-magnitude entry is positive.

    By Lanczos (ARPACK's ``eigsh``, ``which="LA"``, ``tol=0``: to machine precision,
    from a fixed start) for matrices larger than 64 with ``top <= n/4``: two to three
    times faster than the reduction to tridiagonal form of a full symmetric
    eigensolver.  Small matrices, and the rare case where Lanczos fails, use
    :func:`scipy.linalg.eigh` on the index range.  (When the full spectrum is needed
    too, :func:`_spectrum_and_top_uncached` gets both from one reduction.)
    """
    n = M.shape[0]
    U = None
    if n > 64 and 4 * top <= n:
        v0 = np.random.default_rng(0).standard_normal(n)
        try:
            w, V = scipy.sparse.linalg.eigsh(M, k=top, which="LA", v0=v0, tol=0)
            U = V[:, np.argsort(w)[::-1]]
        except scipy.sparse.linalg.ArpackError:  # incl. ArpackNoConvergence
            U = None
    if U is None:
        _, V = scipy.linalg.eigh(M, subset_by_index=[n - top, n - 1])
        U = V[:, ::-1]
    return _fix_signs(U)


def compare_spectra(
    A: Any,
    B: Any,
    *,
    labels: Any = None,
    top: int = 3,
    names: tuple[str, str] = ("A", "B"),
    gap_factor: float = 20.0,
    max_spikes: int = 20,
) -> SpectralComparison:
    """Compare a reference kernel ``A`` with an approximation ``B`` (:ref:`§6 <theory-6>`).

    Parameters
    ----------
    A, B : array_like, shape (n, n)
        Real symmetric matrices (symmetry is checked to a relative tolerance
        :data:`SYMMETRY_RTOL` and then enforced by ``(M + Mᵀ)/2``).
    labels : array_like, shape (n,), optional
        Class labels; when given, the top eigenvectors and their class
        alignments ``|u_kᵀ j_a|²/n_a`` are computed.
    top : int, default 3
        Number of top eigenvectors analysed (``1 <= top <= n``).
    names : (str, str), default ("A", "B")
        Display names used by the table.
    gap_factor, max_spikes
        Parameters of the isolated-eigenvalue rule, see
        :func:`isolated_eigenvalues`.

    Returns
    -------
    SpectralComparison

    Raises
    ------
    TypeError
        If an input is not real numeric.
    ValueError
        If ``A`` or ``B`` is not square, not symmetric, not finite, if their
        shapes differ, if ``A`` is zero, or if ``labels`` has the wrong length.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag([3.0, 2.0, 1.0, 1.0])
    >>> c = compare_spectra(A, 1.1 * A)
    >>> round(c.op_error, 12), round(c.wasserstein, 12)
    (0.1, 0.175)
    """
    Am = _as_symmetric(A, "A")
    Bm = _as_symmetric(B, "B")
    if Am.shape != Bm.shape:
        raise ValueError(f"A and B must have the same shape; got {Am.shape} and {Bm.shape}")
    n = Am.shape[0]
    top = check_integer(top, "top", min_value=1, max_value=n)
    if not (isinstance(names, (tuple, list)) and len(names) == 2):
        raise TypeError(f"names must be a pair of strings; got {names!r}")
    names = (str(names[0]), str(names[1]))

    codes = None if labels is None else as_labels(labels, n, "labels")[0]

    da, db = _digest(Am), _digest(Bm)  # (cached by content: references meet several matrices)
    Ua = Ub = None
    if codes is None:
        la, lb = _eigvalsh(Am, da), _eigvalsh(Bm, db)
    else:  # the spectrum and the top eigenvectors of each matrix from one decomposition
        la, Ua = _spectrum_and_top(Am, top, da)
        lb, Ub = _spectrum_and_top(Bm, top, db)
    norm_a = float(max(abs(la[0]), abs(la[-1])))
    op_error, fro_error = _relative_errors(Am, Bm, norm_a, symmetric=True)
    w1 = float(np.mean(np.abs(la - lb)))
    spread = float(la[-1] - la[0])
    w1_rel = w1 / spread if spread > 0 else float("inf") if w1 > 0 else 0.0
    sa, lsa, bulk_a = isolated_eigenvalues(la, gap_factor=gap_factor, max_spikes=max_spikes)
    sb, lsb, bulk_b = isolated_eigenvalues(lb, gap_factor=gap_factor, max_spikes=max_spikes)

    align_a = align_b = overlap = None
    sub = None
    if codes is not None and Ua is not None and Ub is not None:
        K = int(codes.max()) + 1
        J = np.zeros((n, K))
        J[np.arange(n), codes] = 1.0
        counts = J.sum(axis=0)
        align_a = (Ua.T @ J) ** 2 / counts
        align_b = (Ub.T @ J) ** 2 / counts
        overlap = np.einsum("ik,ik->k", Ua, Ub) ** 2
        sub = float(np.sum((Ua.T @ Ub) ** 2) / top)

    return SpectralComparison(
        names=names,
        n=n,
        op_error=op_error,
        fro_error=fro_error,
        wasserstein=w1,
        spread=spread,
        wasserstein_rel=w1_rel,
        eigvals_a=la,
        eigvals_b=lb,
        spikes_a=sa,
        spikes_b=sb,
        low_spikes_a=lsa,
        low_spikes_b=lsb,
        bulk_a=bulk_a,
        bulk_b=bulk_b,
        top=top,
        eigvecs_a=Ua,
        eigvecs_b=Ub,
        alignment_a=align_a,
        alignment_b=align_b,
        overlap=overlap,
        subspace_overlap=sub,
        labels=codes,
    )
