"""Scale out over a Dask cluster: tiled exact kernels, tiled spectra, Monte-Carlo kernels.

Optional: needs ``pip install "deqfast[distributed]"`` (``dask[distributed]`` and ``zarr``).
The same calls run on a laptop (no client: Dask's threaded scheduler), a
``LocalCluster``, SLURM through ``dask-jobqueue`` or MPI through ``dask-mpi``
(``docs/cluster.md``): Dask is the scheduler, nothing here is home-made.

:func:`kernels_blocked`
    The exact ``n × n`` kernel of :ref:`§3 <theory-3>` (``G*``, ``K*``, ``Θ*``, ``S*``, ``Ġ*``) as a
    ``dask.array`` of ``block × block`` tiles. The diagonal fixed points ``d_i = S*_ii``
    (``n`` scalar equations) are solved once on the client and broadcast with ``X``; each
    tile ``(I, J)``, ``I ≤ J``, is one call of the C++ pair solver
    (``_core.assemble``) on a worker, which rebuilds the per-sample data of its rows and
    columns from ``d`` alone (``_core.samples_at``, no fixed point); the lower tiles are
    the upper ones transposed, lazily. With ``zarr_path`` the upper tiles are written by
    the workers straight into a zarr store (out-of-core: nothing ``n × n`` is held in
    memory) and the array returned reads them back (:func:`open_blocked`).
:func:`tiled_operator`
    A :class:`scipy.sparse.linalg.LinearOperator` whose product ``K V`` is a Dask graph over
    the upper tiles only (tile ``(I, J)`` contributes ``K_IJ V_J`` to row block ``I`` and
    ``K_IJᵀ V_I`` to row block ``J``), so each product reads every stored tile once. Feed it
    to :func:`deqfast.linalg.lanczos_top` (spikes) and :func:`deqfast.linalg.slq_density`.
:func:`empirical_kernel`
    Monte-Carlo finite-width CK/NTK (:mod:`deqfast.finite`) with the trials spread over the
    workers: each worker sums its trials' ``n × n`` matrices locally and ships one matrix.
:func:`worker_memory`, :func:`reset_peak_memory`
    Current and peak resident memory of every worker; ``client.dashboard_link`` is printed
    when a client is used with ``progress`` (the dashboard needs ``bokeh``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse.linalg as spla

from deqfast._validation import as_data_matrix, check_choice, check_integer, check_positive
from deqfast._vocabulary import KERNELS as _KERNELS
from deqfast._vocabulary import (
    OLD_KERNEL_NAMES,
    check_kernel,
    deprecated_module_attributes,
    matrix_name,
    renamed_keywords,
)

if TYPE_CHECKING:
    import dask.array

__all__ = [
    "CGResult",
    "TiledOperator",
    "conjugate_gradient",
    "empirical_kernel",
    "kernel_ridge_cg",
    "kernels_blocked",
    "nystrom_preconditioner",
    "open_blocked",
    "reset_peak_memory",
    "tiled_operator",
    "worker_memory",
]

#: Kernels :func:`kernels_blocked` stores: the vocabulary's, and ``"gdot"`` (``Ġ*``, a by-product
#: of the same pair solve).
_BLOCKED_KERNELS = (*_KERNELS, "gdot")

__getattr__ = deprecated_module_attributes(
    __name__,
    {
        "KERNELS": (
            OLD_KERNEL_NAMES,
            lambda: {"ck": "G", "ntk": "K", "ntk_all": "Theta", "pre": "S", "gdot": "Gdot"},
        )
    },
)


def _matrix(kernel: str, trained: str) -> str:
    """The ``_core.assemble`` output holding ``kernel`` (see :func:`matrix_name`)."""
    return "Gdot" if kernel == "gdot" else matrix_name(kernel, trained)


_DTYPES = ("float64", "float32")
_ATTR = "deqfast"
#: Sub-directory of a zarr store holding one JSON marker (the tile's solver statistics) per
#: finished tile, written after the tile itself: a rerun computes only the unmarked tiles.
_TILES_DIR = "deqfast-tiles"
#: Attributes that must agree for a rerun to resume a store instead of replacing it.
_RESUME_KEYS = (
    "layout", "kernel", "trained", "n", "p", "block", "dtype", "deq", "sigma_a2", "sigma_b2",
    "tol", "max_iter", "hermite_terms", "fingerprint",
)  # fmt: skip


def _require_dask() -> Any:
    try:
        import dask
        import dask.array
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "deqfast.distributed needs Dask: pip install 'deqfast[distributed]' "
            "(dask[distributed] and zarr)"
        ) from exc
    return dask


def _require_zarr() -> Any:
    try:
        import zarr
    except ImportError as exc:  # pragma: no cover
        raise ImportError(
            "zarr_path needs zarr: pip install 'deqfast[distributed]' (or pip install zarr)"
        ) from exc
    return zarr


def _info(msg: str) -> None:
    print(f"deqfast: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- #
# worker-side tile computation
# --------------------------------------------------------------------------- #
def _tile(
    phi: Any,
    X: np.ndarray,
    d: np.ndarray,
    rows: tuple[int, int],
    cols: tuple[int, int],
    key: str,
    params: dict[str, Any],
) -> tuple[np.ndarray, dict[str, Any]]:
    """One tile of the exact kernel: pair fixed points for ``rows × cols``.

    See :ref:`§3 <theory-3>`.
    """
    from deqfast import _core

    t0 = time.perf_counter()
    core = phi.core  # the Python Activation travels (picklable); its C++ object is rebuilt here
    r0, r1 = rows
    c0, c1 = cols
    diagonal = rows == cols
    terms = params["hermite_terms"]
    XA = np.ascontiguousarray(X[r0:r1])
    A = _core.samples_at(core, np.ascontiguousarray(d[r0:r1]), terms)
    if diagonal:
        XB, B = XA, A
    else:
        XB = np.ascontiguousarray(X[c0:c1])
        B = _core.samples_at(core, np.ascontiguousarray(d[c0:c1]), terms)
    out = np.empty((r1 - r0, c1 - c0))
    st = _core.assemble(
        core, XA, XB, A, B, diagonal, 0, r1 - r0, 0, c1 - c0, **{key: out},
        sigma_a2=params["sigma_a2"], sigma_b2=params["sigma_b2"], tol=params["tol"],
        max_iter=params["max_iter"], block=64, num_threads=params["num_threads"],
    )  # fmt: skip
    if st.unconverged:
        raise RuntimeError(
            f"tile rows {r0}:{r1} × cols {c0}:{c1}: {st.unconverged} pair fixed points did not "
            f"converge within max_iter={params['max_iter']} (largest last step "
            f"{st.max_error:.3e}; tol={params['tol']:g} is relative to each entry's scale); "
            "increase max_iter or tol"
        )
    stats = dict(
        pairs=int(st.pairs), newton_steps=int(st.newton_steps),
        quadrature_pairs=int(st.quadrature_pairs), max_iterations=int(st.max_iterations),
        max_error=float(st.max_error), seconds=time.perf_counter() - t0,
    )  # fmt: skip
    return out.astype(params["dtype"], copy=False), stats


def _tile_array(*args: Any) -> np.ndarray:
    return _tile(*args)[0]


def _tile_to_zarr(path: str, *args: Any) -> dict[str, Any]:
    zarr = _require_zarr()
    tile, stats = _tile(*args)
    rows, cols = args[3], args[4]
    arr = zarr.open_array(path, mode="r+")
    arr[rows[0] : rows[1], cols[0] : cols[1]] = tile
    # the marker appears (atomically) only once the tile is stored
    marker = os.path.join(path, _TILES_DIR, f"{rows[0]}-{cols[0]}.json")
    with open(marker + ".part", "w") as fh:
        json.dump(stats, fh)
    os.replace(marker + ".part", marker)
    return stats


def _ranges(n: int, block: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + block)) for s in range(0, n, block)]


def _create_zarr(
    path: str, n: int, block: int, dtype: str, overwrite: bool, attrs: dict
) -> tuple[dict[str, Any] | None, dict[tuple[int, int], dict[str, Any]]]:
    """Create the store at ``path``, or reopen the one an interrupted identical call left.

    Returns the stored attributes (``None`` for a new store) and the statistics of the
    tiles already finished, keyed by their first row and column.  Only an absent path,
    an empty directory or a store written by deqfast is ever written to or deleted.
    """
    zarr = _require_zarr()
    old = None
    if os.path.lexists(path) and not (
        os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path)
    ):
        try:
            old = dict(zarr.open_array(path, mode="r").attrs).get(_ATTR)
        except Exception:  # not a zarr array at all: treated as foreign below
            old = None
        if not isinstance(old, dict) or old.get("layout") != "upper":
            raise FileExistsError(
                f"zarr_path {path!r} exists and is not a kernel store written by deqfast "
                "(no attrs['deqfast']); refusing to write into or delete it, even with "
                "overwrite=True: choose another path or remove it yourself"
            )
        differ = [k for k in _RESUME_KEYS if old.get(k) != attrs[k]]
        if not differ and not overwrite:
            done: dict[tuple[int, int], dict[str, Any]] = {}
            tiles = os.path.join(path, _TILES_DIR)
            for name in os.listdir(tiles) if os.path.isdir(tiles) else ():
                try:
                    r0, c0 = (int(v) for v in name.removesuffix(".json").split("-"))
                    with open(os.path.join(tiles, name)) as fh:
                        done[r0, c0] = json.load(fh)
                except (ValueError, OSError):  # a partial marker: that tile is redone
                    continue
            return old, done
        if not overwrite:
            raise FileExistsError(
                f"zarr_path {path!r} holds another deqfast kernel ({', '.join(differ)} "
                "differ); pass overwrite=True to replace it"
            )
    if hasattr(zarr, "create_array"):  # zarr >= 3
        arr = zarr.create_array(
            store=path, shape=(n, n), chunks=(block, block), dtype=dtype, compressors=None,
            fill_value=0.0, overwrite=True,
        )  # fmt: skip
    else:  # zarr 2
        arr = zarr.open_array(
            path, mode="w", shape=(n, n), chunks=(block, block), dtype=dtype, compressor=None,
            fill_value=0.0,
        )  # fmt: skip
    os.makedirs(os.path.join(path, _TILES_DIR), exist_ok=True)
    arr.attrs[_ATTR] = attrs
    return None, {}


def _symmetric_from_upper(U: dask.array.Array) -> dask.array.Array:
    import dask.array as da

    nb = len(U.chunks[0])
    rows = [[U.blocks[i, j] if i <= j else U.blocks[j, i].T for j in range(nb)] for i in range(nb)]
    return da.block(rows)


def open_blocked(zarr_path: str) -> dask.array.Array:
    """Reopen a kernel written by ``kernels_blocked(..., zarr_path=...)`` as a symmetric dask array.

    The store holds the upper tiles only (``I ≤ J``; the lower ones are never written and
    read as zeros through zarr directly); the array returned mirrors them lazily. The
    store's ``attrs["deqfast"]`` records the kernel, the DEQ and the solver statistics.
    """
    _require_dask()
    zarr = _require_zarr()
    import dask.array as da

    arr = zarr.open_array(str(zarr_path), mode="r")
    meta = dict(arr.attrs).get(_ATTR)
    if not meta or meta.get("layout") != "upper":
        raise ValueError(f"{zarr_path!r} was not written by deqfast.distributed.kernels_blocked")
    if not meta.get("complete", False):
        raise ValueError(f"{zarr_path!r} is incomplete (its tiles were not all written)")
    return _symmetric_from_upper(da.from_zarr(str(zarr_path)))


def kernels_blocked(
    deq: Any,
    X: Any,
    *,
    client: Any = None,
    block: int = 4096,
    dtype: Any = "float64",
    kernel: str = "ck",
    trained: str = "hidden",
    zarr_path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    tol: float = 1e-12,
    max_iter: int = 100,
    hermite_terms: int = 64,
    num_threads: int = 1,
    progress: bool | None = None,
) -> dask.array.Array:
    """The exact kernel of ``deq`` on ``X`` as a ``dask.array`` of tiles (:ref:`§3 <theory-3>`).

    Parameters
    ----------
    deq
        A :class:`deqfast.DEQ` (its activation must be a C++ one, not a Python callable).
    X
        Samples as rows, ``(n, p)``.
    client
        A ``dask.distributed.Client``: ``X`` and the diagonal are scattered to every worker
        once (``broadcast=True``) and the tiles run there. Without one, Dask's current
        scheduler is used (the threaded one, or a client made the default elsewhere).
    block
        Tile edge. A tile costs ``block²`` pair solves and ``8 block²`` bytes (float64);
        the default 4096 gives 128 MiB tiles.
    dtype
        ``"float64"`` or ``"float32"`` (tiles are solved in double precision and stored in
        ``dtype``).
    kernel, trained
        ``"pre"`` (``S*``), ``"ck"`` (``G*``), ``"ntk"`` (``K*`` with ``trained="hidden"``,
        ``Θ*`` with ``trained="all"``) or ``"gdot"`` (``Ġ*``).
    zarr_path
        Write the upper tiles to a zarr store at this path, from the workers, now (blocking,
        with a progress bar), and return :func:`open_blocked` of it. Without it the array is
        lazy: nothing is computed until ``.compute()``/``.persist()`` (persist it before
        repeated products, e.g. with :func:`tiled_operator`). Each finished tile is recorded
        in the store, so rerunning the same call (same ``deq``, ``X`` and options) after an
        interruption computes only the missing tiles (and returns a complete store at once).
        The path must be absent, an empty directory or a store written by this function.
    overwrite
        Replace an existing deqfast store at ``zarr_path`` (even one the same call could
        resume). A path holding anything else is never deleted: ``FileExistsError``.
    tol, max_iter, hermite_terms
        As in :meth:`deqfast.DEQ.kernels`; a pair that fails to converge raises
        ``RuntimeError`` from its tile.
    num_threads
        OpenMP threads inside each tile (default 1: Dask runs one tile per worker thread).
    progress
        Progress bar for the zarr write (default: on when stderr is a terminal) and, with a
        client, print its dashboard link.

    Returns
    -------
    dask.array.Array
        ``(n, n)`` symmetric, chunks ``block × block``.
    """
    _require_dask()
    import dask
    import dask.array as da

    from deqfast.kernels import diagonal

    X = as_data_matrix(X, "X")
    n = X.shape[0]
    block = check_integer(block, "block", min_value=8)
    dt = check_choice(np.dtype(dtype).name, "dtype", _DTYPES)
    kernel, trained = check_kernel(kernel, trained, allowed=_BLOCKED_KERNELS)
    trained = trained if kernel == "ntk" else "hidden"  # the others do not depend on it
    tol = check_positive(tol, "tol")
    max_iter = check_integer(max_iter, "max_iter", min_value=1)
    terms = check_integer(hermite_terms, "hermite_terms", min_value=2, max_value=400)
    num_threads = check_integer(num_threads, "num_threads", min_value=0)
    phi = deq.phi
    phi.core  # noqa: B018 - a Python-callable activation raises its TypeError here, early
    show = sys.stderr.isatty() if progress is None else bool(progress)

    diag = diagonal(  # once, on the client (docs/theory.md §3)
        deq.phi, X, sigma_a2=deq.sigma_a2, sigma_b2=deq.sigma_b2, tol=tol, max_iter=max_iter,
        hermite_terms=terms,
    )  # fmt: skip
    d = np.array(diag.d, dtype=np.float64)
    params = dict(
        sigma_a2=deq.sigma_a2, sigma_b2=deq.sigma_b2, tol=tol, max_iter=max_iter,
        hermite_terms=terms, num_threads=num_threads, dtype=dt,
    )  # fmt: skip
    key = _matrix(kernel, trained)
    ranges = _ranges(n, block)
    upper = [(bi, bj) for bi in range(len(ranges)) for bj in range(bi, len(ranges))]
    if client is not None:
        if show:
            _info(f"dask dashboard: {client.dashboard_link}")
        Xs = client.scatter(X, broadcast=True, hash=False)
        ds = client.scatter(d, broadcast=True, hash=False)
    else:
        Xs, ds = dask.delayed(X, pure=True), dask.delayed(d, pure=True)

    if zarr_path is None:
        tiles: dict[tuple[int, int], Any] = {}
        token = dask.base.tokenize(d, block, params, repr(phi))
        for bi, bj in upper:
            (r0, r1), (c0, c1) = ranges[bi], ranges[bj]
            task = dask.delayed(_tile_array, pure=True)(
                phi, Xs, ds, ranges[bi], ranges[bj], key, params,
                dask_key_name=f"deqfast-tile-{kernel}-{bi}-{bj}-{token}",
            )  # fmt: skip
            tiles[bi, bj] = da.from_delayed(task, shape=(r1 - r0, c1 - c0), dtype=dt)
        nb = len(ranges)
        return da.block(
            [
                [tiles[bi, bj] if bi <= bj else tiles[bj, bi].T for bj in range(nb)]
                for bi in range(nb)
            ]
        )

    path = os.fspath(zarr_path)
    # ndarrays are buffers at run time; numpy's stubs do not declare it
    fingerprint = hashlib.sha256(X)  # type: ignore[arg-type]
    fingerprint.update(d)  # type: ignore[arg-type]
    attrs = dict(
        layout="upper", kernel=kernel, trained=trained, n=n, p=int(X.shape[1]), block=block,
        dtype=dt, deq=repr(deq), sigma_a2=deq.sigma_a2, sigma_b2=deq.sigma_b2, tol=tol,
        max_iter=max_iter, hermite_terms=terms, fingerprint=fingerprint.hexdigest(), complete=False,
    )  # fmt: skip
    old, done = _create_zarr(path, n, block, dt, bool(overwrite), attrs)
    missing = [(bi, bj) for bi, bj in upper if (ranges[bi][0], ranges[bj][0]) not in done]
    if old is not None:
        if old.get("complete") and not missing:
            return open_blocked(path)
        if show:
            _info(f"resuming {path}: {len(done)} of {len(upper)} tiles already written")
    t0 = time.perf_counter()
    if client is not None:
        futures = [
            client.submit(
                _tile_to_zarr, path, phi, Xs, ds, ranges[bi], ranges[bj], key, params, pure=False
            )
            for bi, bj in missing
        ]
        if show:
            from distributed import progress as dask_progress

            dask_progress(futures)
        stats = client.gather(futures)
    else:
        write = dask.delayed(_tile_to_zarr, pure=False)
        tasks = [
            write(path, phi, Xs, ds, ranges[bi], ranges[bj], key, params) for bi, bj in missing
        ]
        if show:
            from dask.diagnostics import ProgressBar

            with ProgressBar():
                stats = list(dask.compute(*tasks))
        else:
            stats = list(dask.compute(*tasks))
    zarr = _require_zarr()
    arr = zarr.open_array(path, mode="r+")
    kept = [done[k] for k in ((ranges[bi][0], ranges[bj][0]) for bi, bj in upper) if k in done]
    stats = kept + stats
    attrs.update(
        complete=True, seconds=time.perf_counter() - t0, tiles=len(stats), resumed=len(kept),
        pairs=sum(s["pairs"] for s in stats), newton_steps=sum(s["newton_steps"] for s in stats),
        quadrature_pairs=sum(s["quadrature_pairs"] for s in stats),
        max_iterations=max(s["max_iterations"] for s in stats),
        max_error=max(s["max_error"] for s in stats),
        tile_seconds=sum(s["seconds"] for s in stats),
    )  # fmt: skip
    arr.attrs[_ATTR] = attrs
    return open_blocked(path)


# --------------------------------------------------------------------------- #
# matrix-free products over tiles
# --------------------------------------------------------------------------- #
def _tile_products(
    T: np.ndarray, Vj: np.ndarray, Vi: np.ndarray, diagonal: bool
) -> tuple[Any, Any]:
    T = np.asarray(T)
    a = np.asarray(T @ Vj.astype(T.dtype, copy=False), dtype=np.float64)
    if diagonal:
        return a, None
    b = np.asarray(T.T @ Vi.astype(T.dtype, copy=False), dtype=np.float64)
    return a, b


def _sum(parts: list[np.ndarray]) -> np.ndarray:
    out = np.array(parts[0], dtype=np.float64)
    for p in parts[1:]:
        out += p
    return out


class TiledOperator(spla.LinearOperator):
    """A square dask array (symmetric by default) as a :class:`~scipy.sparse.linalg.LinearOperator`.

    Each product ``K V`` (``V`` of shape ``(n, k)``) is one Dask graph: a task per stored tile
    (the upper ones ``I ≤ J`` when ``symmetric``) multiplying it with the matching row
    blocks of ``V``, then a sum per row block; only ``n × k`` numbers return to the client.
    Build with :func:`tiled_operator`.
    """

    def __init__(self, K: dask.array.Array, *, client: Any = None, symmetric: bool = True) -> None:
        n = K.shape[0]
        super().__init__(dtype=np.dtype(np.float64), shape=(n, n))
        self.K = K
        self.client = client
        self.symmetric = symmetric
        self._blocks = K.to_delayed()
        self._offsets = np.concatenate([[0], np.cumsum(K.chunks[0])]).astype(int)
        self.products = 0

    def _matmat(self, V: np.ndarray) -> np.ndarray:
        import dask

        V = np.asarray(V, dtype=np.float64)
        if V.ndim == 1:
            V = V[:, None]
        o = self._offsets
        nb = len(o) - 1
        if self.client is not None:
            parts_in = self.client.scatter([V[o[i] : o[i + 1]] for i in range(nb)], hash=False)
        else:
            parts_in = [dask.delayed(V[o[i] : o[i + 1]], pure=True) for i in range(nb)]
        parts: list[list[Any]] = [[] for _ in range(nb)]
        prod = dask.delayed(_tile_products, pure=True, nout=2)
        for i in range(nb):
            for j in range(i if self.symmetric else 0, nb):
                sym = self.symmetric and i != j
                a, b = prod(self._blocks[i, j], parts_in[j], parts_in[i], not sym)
                parts[i].append(a)
                if sym:
                    parts[j].append(b)
        ys = [dask.delayed(_sum, pure=True)(p) for p in parts]
        if self.client is not None:
            out = self.client.gather(self.client.compute(ys))
        else:
            out = dask.compute(*ys)
        self.products += 1
        return np.vstack(out)

    def _matvec(self, v: np.ndarray) -> np.ndarray:
        return self._matmat(np.asarray(v).reshape(-1, 1)).reshape(-1)

    def _rmatmat(self, V: np.ndarray) -> np.ndarray:
        if self.symmetric:
            return self._matmat(V)
        return TiledOperator(self.K.T, client=self.client, symmetric=False)._matmat(V)

    def _adjoint(self) -> spla.LinearOperator:
        if self.symmetric:
            return self
        return TiledOperator(self.K.T, client=self.client, symmetric=False)

    def __repr__(self) -> str:
        nb = len(self._offsets) - 1
        where = "distributed" if self.client is not None else "local"
        return (
            f"TiledOperator(n={self.shape[0]}, tiles={nb}×{nb}, symmetric={self.symmetric}, "
            f"dtype={self.K.dtype}, {where}, products={self.products})"
        )


def tiled_operator(
    K: Any,
    *,
    client: Any = None,
    symmetric: bool = True,
    persist: bool = False,
    check_symmetry: bool = True,
) -> TiledOperator:
    """``K`` (a square dask array, e.g. from :func:`kernels_blocked`) as a LinearOperator.

    Parameters
    ----------
    K
        Square ``dask.array`` whose row and column chunks agree.
    client
        Run the products on this ``dask.distributed.Client`` (default: Dask's current scheduler).
    symmetric
        Use the upper tiles only (``K`` must be symmetric, as every kernel here is).
    persist
        Keep the tiles in the workers' memory first (``client.persist``), so that a lazy
        ``K`` is computed once rather than at every product. Leave it off for a
        zarr-backed ``K`` that should stay out of core.
    check_symmetry
        With ``symmetric``, first compare one diagonal tile and one pair of mirrored
        off-diagonal tiles (chosen at random with a fixed seed) with their transposes, and
        refuse a ``K`` that is not symmetric (its products from the upper tiles would be
        wrong). This reads at most three tiles (computes them for a lazy ``K`` that is not
        persisted); pass ``False`` to skip it for a ``K`` known to be symmetric.

    Raises
    ------
    ValueError
        If ``K`` is not square with square tiles, or (``check_symmetry``) the tiles
        checked are not symmetric up to ``1e-8`` (float64; ``1e-4`` for float32) of their
        largest entry: pass ``symmetric=False`` for a general matrix.
    """
    _require_dask()
    import dask.array as da

    if not isinstance(K, da.Array):
        raise TypeError(f"K must be a dask.array.Array; got {type(K).__name__}")
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"K must be square; got shape {K.shape}")
    if K.chunks[0] != K.chunks[1]:
        raise ValueError("K must have the same row and column chunks (square tiles)")
    if persist:
        if client is not None:
            from distributed import wait

            K = client.persist(K)
            wait(K)
        else:
            K = K.persist()
    nb = len(K.chunks[0])
    if symmetric and check_symmetry and nb:
        import dask

        rng = np.random.default_rng(0)
        i = int(rng.integers(nb))
        pairs = [(i, i)]
        if nb > 1:
            a, b = sorted(int(v) for v in rng.choice(nb, size=2, replace=False))
            pairs.append((a, b))
        tiles = [K.blocks[x, y] for a, b in pairs for x, y in ((a, b), (b, a))]
        if client is not None:
            got = client.gather(client.compute(tiles))
        else:
            got = dask.compute(*tiles)
        rtol = 1e-8 if K.dtype == np.float64 else 1e-4
        for k, (a, b) in enumerate(pairs):
            T, U = (np.asarray(t, dtype=np.float64) for t in got[2 * k : 2 * k + 2])
            scale = max(np.max(np.abs(T), initial=0.0), np.max(np.abs(U), initial=0.0))
            err = float(np.max(np.abs(T - U.T), initial=0.0))
            if not err <= rtol * scale:
                raise ValueError(
                    f"K is not symmetric: tile ({a}, {b}) differs from the transpose of tile "
                    f"({b}, {a}) by up to {err:.3g} (largest entry {scale:.3g}); pass "
                    "symmetric=False for a general matrix (products then read every tile)"
                )
    return TiledOperator(K, client=client, symmetric=bool(symmetric))


# --------------------------------------------------------------------------- #
# Monte-Carlo empirical kernels over workers
# --------------------------------------------------------------------------- #
_MC_KERNELS = ("ck", "ntk")


def _mc_group(
    deq: Any, X: np.ndarray, width: int, kernel: str, seeds: list[Any], options: dict[str, Any]
) -> np.ndarray:
    """Sum of the per-trial empirical kernels of ``seeds`` (one ``n × n`` result)."""
    from deqfast import finite

    fn = finite.empirical_ck if kernel == "ck" else finite.empirical_ntk
    acc = np.zeros((X.shape[0], X.shape[0]))
    for ss in seeds:
        acc += fn(
            deq, X, width, trials=1, seed=np.random.default_rng(ss), progress=False, **options
        )
    return acc


def _spawn(seed: Any, trials: int) -> list[np.random.SeedSequence]:
    if isinstance(seed, np.random.SeedSequence):
        return list(seed.spawn(trials))
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed must be None, a non-negative int or a SeedSequence; got {seed!r}")
    if seed is not None and seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed}")
    return list(np.random.SeedSequence(seed).spawn(trials))


@renamed_keywords(kind="kernel")
def empirical_kernel(
    deq: Any,
    X: Any,
    width: int,
    *,
    kernel: str = "ck",
    trials: int = 1,
    seed: Any = None,
    client: Any = None,
    groups: int | None = None,
    progress: bool | None = None,
    **options: Any,
) -> np.ndarray:
    """Monte-Carlo empirical CK or NTK of the width-``width`` DEQ, trials spread over workers.

    Trial ``t`` draws its weights from ``numpy.random.default_rng(s_t)`` with
    ``s_0 … s_{trials−1} = SeedSequence(seed).spawn(trials)``, so the result does not depend
    on how the trials are split (up to the order of the floating-point sum). The trials are
    cut into ``groups`` contiguous groups (default: one per worker); each group runs on a
    worker with :func:`deqfast.finite.empirical_ck` / :func:`~deqfast.finite.empirical_ntk`
    and returns the sum of its ``n × n`` matrices — one matrix per group crosses the
    network to the reduction, and one to the client.

    Parameters
    ----------
    kernel
        ``"ck"`` (``φ(Z*)ᵀφ(Z*)/m``, tends to ``G*``) or ``"ntk"`` (tends to ``K*``/``Θ*``,
        with ``trained=`` among ``options``).
    client
        ``dask.distributed.Client``; without one the groups run here, one after another.
    options
        Passed to the :mod:`deqfast.finite` function (``solver``, ``tol``, ``method``,
        ``trained``, ``dtype``, …).
    """
    X = as_data_matrix(X, "X")
    kernel = check_choice(kernel, "kernel", _MC_KERNELS)
    width = check_integer(width, "width", min_value=1)
    trials = check_integer(trials, "trials", min_value=1)
    seeds = _spawn(seed, trials)
    if groups is None:
        groups = len(client.scheduler_info()["workers"]) if client is not None else 1
    groups = min(check_integer(groups, "groups", min_value=1), trials)
    cuts = np.linspace(0, trials, groups + 1).round().astype(int)
    chunks = [seeds[cuts[g] : cuts[g + 1]] for g in range(groups)]
    show = sys.stderr.isatty() if progress is None else bool(progress)
    if client is None:
        total = np.zeros((X.shape[0], X.shape[0]))
        for chunk in chunks:
            total += _mc_group(deq, X, width, kernel, chunk, options)
        return total / trials
    if show:
        _info(f"dask dashboard: {client.dashboard_link}")
    Xs = client.scatter(X, broadcast=True, hash=False)
    futures = [
        client.submit(_mc_group, deq, Xs, width, kernel, chunk, options, pure=False)
        for chunk in chunks
    ]
    if show:
        from distributed import progress as dask_progress

        dask_progress(futures)
    total_f = client.submit(_sum, futures, pure=False)
    total = np.asarray(total_f.result())
    return total / trials


# --------------------------------------------------------------------------- #
# memory reporting
# --------------------------------------------------------------------------- #
def _memory_probe() -> dict[str, float]:
    try:
        with open("/proc/self/status") as fh:
            vals = {ln.split(":")[0]: int(ln.split()[1]) / 1024.0 for ln in fh if ln[:2] == "Vm"}
        return {"rss_mib": vals["VmRSS"], "peak_mib": vals["VmHWM"]}
    except (OSError, KeyError, ValueError, IndexError):
        import psutil

        return {"rss_mib": psutil.Process().memory_info().rss / 2**20, "peak_mib": math.nan}


def _reset_peak_probe() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def worker_memory(client: Any) -> dict[str, dict[str, float]]:
    """``{worker address: {"rss_mib": current, "peak_mib": high-water mark}}`` (Linux ``VmHWM``;
    elsewhere ``nan`` for the peak)."""
    return dict(client.run(_memory_probe))


def reset_peak_memory(client: Any) -> dict[str, bool]:
    """Reset every worker's peak-RSS mark (Linux ``/proc/self/clear_refs``).

    Returns ``{worker address: done}``, ``False`` where the platform does not allow it."""
    return dict(client.run(_reset_peak_probe))


# --------------------------------------------------------------------------- #
# kernel ridge regression out of core: conjugate gradients on the tiled operator
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class CGResult:
    """The solution of ``(A + λ I) X = B`` by conjugate gradients (see :func:`conjugate_gradient`).

    Attributes
    ----------
    x : ndarray, shape (n,) or (n, k)
        The solution, shaped like ``B``.
    converged : bool
        Whether ``residual ≤ tol``.
    status : str
        ``"converged"``, ``"max_iter"`` or ``"breakdown"`` (a search direction with
        ``pᵀ(A + λI)p ≤ 0``: the operator is not positive definite).
    message : str
        A sentence saying what happened.
    iterations : int
        CG iterations (each one product of ``A`` with every unconverged column at once).
    residual : float
        The largest relative residual ``‖b − (A + λI)x‖ / ‖b‖`` over the columns, computed
        from an explicit product at the end (not the recursively updated one).
    residuals : ndarray
        The largest recursively updated relative residual after every iteration.
    products : int
        Products with ``A`` (iterations, plus one per true-residual check).
    restarts : int
        Restarts from the true residual, made when the recursive residual met ``tol``
        but the true one did not (rounding drift).
    seconds : float
        Wall time.
    ridge, tol : float
        The ``λ`` and tolerance used.
    """

    x: np.ndarray
    converged: bool
    status: str
    message: str
    iterations: int
    residual: float
    residuals: np.ndarray
    products: int
    restarts: int
    seconds: float
    ridge: float
    tol: float

    def __repr__(self) -> str:
        return (
            f"CGResult(status={self.status!r}, iterations={self.iterations}, "
            f"residual={self.residual:.3e}, tol={self.tol:g}, ridge={self.ridge:g}, "
            f"products={self.products}, restarts={self.restarts}, seconds={self.seconds:.3g})"
        )


def _cg_bar(show: bool, total: int) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="conjugate gradients", unit="it", leave=False)


def conjugate_gradient(
    A: Any,
    B: Any,
    *,
    ridge: float = 0.0,
    tol: float = 1e-10,
    max_iter: int | None = None,
    x0: Any = None,
    preconditioner: Any = None,
    max_restarts: int = 5,
    strict: bool = True,
    progress: bool | None = None,
) -> CGResult:
    """Solve ``(A + λ I) X = B`` for a symmetric positive (semi-)definite ``A`` by CG.

    Every column of ``B`` runs its own conjugate-gradient recursion (Hestenes–Stiefel),
    but the products are batched: an iteration makes one product ``A P`` with the search
    directions of all unconverged columns, so with a :class:`TiledOperator` every stored
    tile is read once per iteration whatever the number of right-hand sides. A column
    stops when its relative residual ``‖b − (A + λI)x‖ / ‖b‖`` is at most ``tol``. When
    all have stopped the residual is recomputed from an explicit product; a column whose
    true residual still exceeds ``tol`` (rounding drift of the recursion) restarts from it,
    at most ``max_restarts`` times.

    Parameters
    ----------
    A
        A square symmetric operator: an array, a :class:`scipy.sparse.linalg.LinearOperator`
        or a :class:`TiledOperator` (from :func:`tiled_operator`).
    B : array_like, shape (n,) or (n, k)
        Right-hand sides.
    ridge
        ``λ ≥ 0`` added to the diagonal (never formed: ``(A + λI)p = Ap + λp``).
    tol
        Relative residual to reach, in ``(0, 1)``.
    max_iter
        Iteration cap over all restarts (default ``n``, CG's exact-arithmetic bound).
    x0 : array_like, optional
        Starting point shaped like ``B`` (default zero).
    preconditioner : callable, optional
        ``M(R) ≈ (A + λI)⁻¹ R`` for an ``(n, j)`` block ``R``, symmetric positive definite
        (preconditioned CG), e.g. :func:`nystrom_preconditioner`. The stopping test is on
        the unpreconditioned residual.
    max_restarts
        Restarts from the true residual allowed (see above).
    strict
        Raise ``RuntimeError`` (with the residual and the iteration count) when ``tol``
        is not reached; with ``False`` warn (``RuntimeWarning``) and return the result.
    progress
        tqdm bar over the iterations with the current residual (default: on when stderr
        is a terminal).

    Returns
    -------
    CGResult
    """
    t_start = time.perf_counter()
    op = spla.aslinearoperator(A)
    n = op.shape[0]
    if op.shape != (n, n):
        raise ValueError(f"A must be square; got shape {op.shape}")
    Bm = np.asarray(B, dtype=np.float64)
    single = Bm.ndim == 1
    if single:
        Bm = Bm[:, None]
    if Bm.ndim != 2 or Bm.shape[0] != n:
        raise ValueError(f"B must have shape ({n},) or ({n}, k); got {np.shape(B)}")
    if not np.all(np.isfinite(Bm)):
        raise ValueError("B must not contain NaN or inf")
    lam = check_positive(ridge, "ridge", allow_zero=True)
    tol = check_positive(tol, "tol")
    if tol >= 1:
        raise ValueError(f"tol must be in (0, 1); got {tol}")
    cap = n if max_iter is None else check_integer(max_iter, "max_iter", min_value=1)
    max_restarts = check_integer(max_restarts, "max_restarts", min_value=0)
    show = sys.stderr.isatty() if progress is None else bool(progress)

    def apply(V: np.ndarray) -> np.ndarray:
        return np.asarray(op.matmat(V), dtype=np.float64).reshape(V.shape) + lam * V

    if preconditioner is not None and not callable(preconditioner):
        raise TypeError(
            f"preconditioner must be a callable R -> M R; got {type(preconditioner).__name__}"
        )

    def precondition(V: np.ndarray) -> np.ndarray:
        if preconditioner is None:
            return V.copy()
        return np.asarray(preconditioner(V), dtype=np.float64).reshape(V.shape)

    bnorm = np.linalg.norm(Bm, axis=0)
    safe = np.where(bnorm > 0, bnorm, 1.0)
    if x0 is None:
        Xs = np.zeros_like(Bm)
        R = Bm.copy()
        products = 0
    else:
        Xs = np.array(x0, dtype=np.float64).reshape(Bm.shape)
        R = Bm - apply(Xs)
        products = 1
    history: list[float] = []
    iterations = restarts = 0
    status = ""
    bar = _cg_bar(show, cap)
    try:
        while True:
            Z = precondition(R)
            P = Z.copy()
            rz = np.einsum("ij,ij->j", R, Z)
            active = np.linalg.norm(R, axis=0) / safe > tol
            while active.any() and iterations < cap:
                Pa = P[:, active]
                Q = apply(Pa)
                products += 1
                iterations += 1
                pq = np.einsum("ij,ij->j", Pa, Q)
                if np.any(pq <= 0):
                    status = "breakdown"
                    break
                step = rz[active] / pq
                Xs[:, active] += step * Pa
                Ra = R[:, active] - step * Q
                R[:, active] = Ra
                Za = precondition(Ra)
                rz_new = np.einsum("ij,ij->j", Ra, Za)
                P[:, active] = Za + (rz_new / rz[active]) * Pa
                rz[active] = rz_new
                rel = np.linalg.norm(R, axis=0) / safe
                history.append(float(rel.max()))
                active = rel > tol
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(residual=f"{history[-1]:.2e}", refresh=False)
            R = Bm - apply(Xs)
            products += 1
            true = np.linalg.norm(R, axis=0) / safe
            if status or true.max() <= tol or iterations >= cap or restarts >= max_restarts:
                break
            restarts += 1
    finally:
        if bar is not None:
            bar.close()
    residual = float(true.max())
    if not status:
        status = "converged" if residual <= tol else "max_iter"
    if status == "converged":
        message = f"relative residual {residual:.3e} <= tol {tol:g} after {iterations} iterations"
    elif status == "breakdown":
        message = (
            f"breakdown after {iterations} iterations (relative residual {residual:.3e}): "
            "p^T (A + ridge I) p <= 0, the operator is not positive definite; increase ridge"
        )
    else:
        message = (
            f"relative residual {residual:.3e} > tol {tol:g} after {iterations} iterations "
            f"(max_iter {cap}, {restarts} restarts); raise max_iter, increase ridge or loosen tol"
        )
    out = CGResult(
        x=Xs[:, 0] if single else Xs, converged=status == "converged", status=status,
        message=message, iterations=iterations, residual=residual,
        residuals=np.array(history), products=products, restarts=restarts,
        seconds=time.perf_counter() - t_start, ridge=lam, tol=tol,
    )  # fmt: skip
    if not out.converged:
        if strict:
            raise RuntimeError(f"conjugate gradients: {message}")
        warnings.warn(f"conjugate gradients: {message}", RuntimeWarning, stacklevel=2)
    return out


def kernel_ridge_cg(
    deq: Any,
    X: Any,
    Y: Any,
    *,
    ridge: float,
    kernel: str = "ck",
    trained: str = "hidden",
    client: Any = None,
    block: int = 2048,
    zarr_path: str | os.PathLike[str] | None = None,
    tol: float = 1e-10,
    max_iter: int | None = None,
    x0: Any = None,
    landmarks: int = 1024,
    seed: Any = 0,
    strict: bool = True,
    progress: bool | None = None,
    **kernel_options: Any,
) -> CGResult:
    """Kernel ridge coefficients ``α = (K + λ I)⁻¹ Y`` without holding ``K`` in memory.

    The exact kernel ``K`` of ``deq`` on ``X`` (:ref:`§3 <theory-3>`) is written tile by tile to a
    zarr store by :func:`kernels_blocked`, wrapped by :func:`tiled_operator` (every product
    reads each stored upper tile once) and the system is solved by
    :func:`conjugate_gradient`, preconditioned by :func:`nystrom_preconditioner` on
    ``landmarks`` random training samples (their ``n × landmarks`` kernel columns are
    computed here, on the client: ``8 n · landmarks`` bytes). Predictions are then
    ``K(X_new, X) α`` (an ``n_new × n`` cross kernel, e.g. ``deq.ck(X_new, X) @ res.x``).

    Parameters
    ----------
    deq
        A :class:`deqfast.DEQ`.
    X : array_like, shape (n, p)
        Training samples.
    Y : array_like, shape (n,) or (n, k)
        Targets (all columns are solved together, one tiled product per iteration).
    ridge
        ``λ ≥ 0``.
    kernel, trained
        As in :func:`kernels_blocked` (``"ck"``; ``"ntk"`` with ``trained="hidden"`` or
        ``"all"``; ...).
    client
        ``dask.distributed.Client`` for the tiles and the products (default: Dask's
        current scheduler).
    block
        Tile edge (``8 block²`` bytes per tile in memory at a time on a worker).
    zarr_path
        Where to store the tiles; default a temporary directory removed afterwards.
    tol, max_iter, x0, strict
        As in :func:`conjugate_gradient`.
    landmarks
        Nyström rank of the preconditioner (``0``: plain CG). Measured on the authors'
        mixture (ReLU CK, λ = 1e-3, tol 1e-9): 138 iterations without, 29 with 1024
        landmarks at n = 4096.
    seed
        Seed of the landmark choice (``numpy.random.default_rng``).
    progress
        Progress bars for the tiles and the iterations (default: when stderr is a terminal).
    kernel_options
        Passed to :func:`kernels_blocked` (``tol`` of the pair solver is ``kernel_tol``
        here; ``max_iter``/``hermite_terms``/``num_threads``/``dtype``).

    Returns
    -------
    CGResult
        ``x`` is ``α``, shaped like ``Y``.
    """
    import shutil
    import tempfile

    kernel, trained = check_kernel(kernel, trained, allowed=_BLOCKED_KERNELS)
    Xm = as_data_matrix(X, "X")
    Ym = np.asarray(Y, dtype=np.float64)
    if Ym.ndim not in (1, 2) or Ym.shape[0] != Xm.shape[0]:
        raise ValueError(
            f"Y must have shape ({Xm.shape[0]},) or ({Xm.shape[0]}, k); got {Ym.shape}"
        )
    options = dict(kernel_options)
    if "kernel_tol" in options:
        options["tol"] = options.pop("kernel_tol")
    tmp = None
    if zarr_path is None:
        tmp = tempfile.mkdtemp(prefix="deqfast-cg-")
        zarr_path = os.path.join(tmp, "kernel.zarr")
    try:
        K = kernels_blocked(
            deq, Xm, client=client, block=block, kernel=kernel, trained=trained,
            zarr_path=zarr_path,
            overwrite=tmp is not None, progress=progress, **options,
        )  # fmt: skip
        op = tiled_operator(K, client=client)
        precond = None
        r = min(check_integer(landmarks, "landmarks", min_value=0), Xm.shape[0])
        if r > 0:
            from deqfast._validation import as_rng
            from deqfast.kernels import compute_kernels

            idx = np.sort(as_rng(seed).choice(Xm.shape[0], r, replace=False))
            key = _matrix(kernel, trained)
            pair_opts = {
                k: v for k, v in options.items() if k in ("tol", "max_iter", "hermite_terms")
            }
            cols = getattr(compute_kernels(deq, Xm, Xm[idx], outputs=(key,), **pair_opts), key)
            precond = nystrom_preconditioner(cols, idx, ridge=ridge)
        return conjugate_gradient(
            op, Ym, ridge=ridge, tol=tol, max_iter=max_iter, x0=x0, strict=strict,
            progress=progress, preconditioner=precond,
        )  # fmt: skip
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def nystrom_preconditioner(C: Any, landmarks: Any, *, ridge: float) -> Any:
    """A Nyström preconditioner for ``K + λI`` from the columns ``C = K[:, landmarks]``.

    With ``W = C[landmarks]`` the ``r × r`` kernel of the landmarks, ``K̂ = C W⁻¹ Cᵀ =
    U Λ̂ Uᵀ`` (``U`` of shape ``(n, r)``, from ``C L⁻ᵀ`` with ``W = L Lᵀ``)
    approximates ``K`` on its leading eigenspace, and

        M⁻¹ = (λ̂_r + λ) U (Λ̂ + λI)⁻¹ Uᵀ + (I − U Uᵀ)

    (Frangella, Tropp & Udell, *Randomized Nyström preconditioning*, SIAM J. Matrix Anal.
    Appl. 2023) maps the ``r`` leading directions to about ``λ̂_r + λ`` and leaves the
    others alone, so CG sees the condition number of the spectrum below ``λ̂_r``. The
    landmark columns are ``n × r`` numbers, e.g. ``deq.ck(X, X[landmarks])``.

    Parameters
    ----------
    C : array_like, shape (n, r)
        Kernel columns of the landmarks.
    landmarks : array_like of int, shape (r,)
        Their row indices in ``K``.
    ridge
        ``λ ≥ 0``.

    Returns
    -------
    callable
        ``R ↦ M⁻¹ R`` for blocks ``R`` of shape ``(n, j)`` (pass it as ``preconditioner``
        to :func:`conjugate_gradient`).
    """
    import scipy.linalg

    Cm = np.asarray(C, dtype=np.float64)
    idx = np.asarray(landmarks)
    if Cm.ndim != 2 or idx.shape != (Cm.shape[1],) or idx.dtype.kind not in "iu":
        raise ValueError(
            f"C must be (n, r) and landmarks r integer indices; got {Cm.shape} and {idx.shape}"
        )
    lam = check_positive(ridge, "ridge", allow_zero=True)
    W = 0.5 * (Cm[idx] + Cm[idx].T)
    # a small shift keeps the Cholesky factor of a numerically singular W finite
    shift = 1e-10 * max(float(np.trace(W)), 1e-300)
    L = np.linalg.cholesky(W + shift * np.eye(W.shape[0]))
    Bf = scipy.linalg.solve_triangular(L, Cm.T, lower=True).T  # C L⁻ᵀ, so K̂ = Bf Bfᵀ
    # eigenpairs of K̂ from the r × r Gram matrix Bfᵀ Bf (one GEMM; an SVD of the tall
    # Bf costs several times more): K̂ = U diag(w) Uᵀ with U = Bf V w^(-1/2)
    w, V = np.linalg.eigh(Bf.T @ Bf)
    keep = w > 1e-12 * w[-1]
    w, V = w[keep][::-1], V[:, keep][:, ::-1]
    U = Bf @ (V / np.sqrt(w))
    lam_hat = np.maximum(w - shift, 0.0)
    scale = (lam_hat[-1] + lam) / (lam_hat + lam)
    if not np.all(np.isfinite(scale)):
        raise ValueError(
            "the Nyström approximation has a zero eigenvalue and ridge=0; use ridge > 0"
        )

    def apply(R: np.ndarray) -> np.ndarray:
        UR = U.T @ R
        return R + U @ ((scale - 1.0)[:, None] * UR)

    return apply
