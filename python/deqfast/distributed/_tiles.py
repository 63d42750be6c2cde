"""The exact kernel as tiles: each upper tile one call of the C++ pair solver on a worker."""

from __future__ import annotations

import hashlib
import os
import time
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from deqfast._shared import resolve_threads, show_progress
from deqfast._validation import as_data_matrix, check_choice, check_integer, check_positive
from deqfast._vocabulary import check_kernel
from deqfast.distributed._common import BLOCKED_KERNELS, info, matrix, require_dask, require_zarr
from deqfast.distributed._store import ATTR, create_store, open_blocked, write_marker

if TYPE_CHECKING:
    import dask.array

_DTYPES = ("float64", "float32")


def _tile(
    phi: Any,
    XA: np.ndarray,
    XB: np.ndarray,
    dA: np.ndarray,
    dB: np.ndarray,
    rows: tuple[int, int],
    cols: tuple[int, int],
    key: str,
    params: dict[str, Any],
) -> tuple[np.ndarray, dict[str, Any]]:
    """One tile of the exact kernel: pair fixed points for ``rows × cols``.

    ``XA``, ``dA`` are the rows' samples and diagonal fixed points ``S*_ii``, ``XB``, ``dB``
    the columns' (the same objects on a diagonal tile). See :ref:`§3 <theory-3>`.
    """
    from deqfast import _core
    from deqfast.kernels import default_block

    t0 = time.perf_counter()
    core = phi.core  # the Python Activation travels (picklable); its C++ object is rebuilt here
    r0, r1 = rows
    c0, c1 = cols
    diagonal = rows == cols
    terms = params["hermite_terms"]
    A = _samples(phi, core, dA, terms)
    B = A if diagonal else _samples(phi, core, dB, terms)
    # solved in float64 and stored in the tile's dtype by the assembly itself (a float32 tile
    # is the float64 result rounded to nearest, written once)
    out = np.empty((r1 - r0, c1 - c0), dtype=params["dtype"])
    t1 = time.perf_counter()
    st = _core.assemble(
        core, XA, XB, A, B, diagonal, 0, r1 - r0, 0, c1 - c0, **{key: out},
        sigma_a2=params["sigma_a2"], sigma_b2=params["sigma_b2"], tol=params["tol"],
        max_iter=params["max_iter"], block=default_block(r1 - r0, c1 - c0),
        num_threads=params["num_threads"], dtype=params["dtype"],
    )  # fmt: skip
    t2 = time.perf_counter()
    if st.unconverged:
        raise RuntimeError(
            f"tile rows {r0}:{r1} × cols {c0}:{c1}: {st.unconverged} pair fixed points did not "
            f"converge within max_iter={params['max_iter']} (largest last step "
            f"{st.max_error:.3e}; tol={params['tol']:g} is relative to each entry's scale); "
            "increase max_iter or tol"
        )
    if st.overflow32:
        raise FloatingPointError(
            f"tile rows {r0}:{r1} × cols {c0}:{c1}: {st.overflow32} kernel entries exceed the "
            "float32 range; use dtype='float64' or rescale X"
        )
    stats = dict(
        pairs=int(st.pairs), newton_steps=int(st.newton_steps),
        quadrature_pairs=int(st.quadrature_pairs), max_iterations=int(st.max_iterations),
        max_error=float(st.max_error), assemble_seconds=t2 - t1,
        seconds=time.perf_counter() - t0,
    )  # fmt: skip
    return out, stats


#: Per-sample data already built in this process, by the ``id`` of the block of fixed
#: points it was built from: ``id → (weak reference to that block, activation, terms, data)``.
_SAMPLES: dict[int, tuple[Any, Any, int, Any]] = {}


def _samples(phi: Any, core: Any, d: np.ndarray, terms: int) -> Any:
    """The per-sample data (``m2``, ``e2``, Hermite expansion) of the fixed points ``d``.

    Built from the shipped ``d_i = S*_ii`` by ``_core.samples_at`` (closed forms or a
    Hermite series, no fixed point; the C++ object cannot be pickled, so it is made where it
    is used) once per block of rows and process: a worker keeps each scattered block as one
    object for all its tiles, and a non-closed-form activation's expansion costs as much
    as a good part of a tile. The entry goes when the block is freed; a block that was
    freed and another made at the same address is recognised by its weak reference.
    """
    from deqfast import _core

    hit = _SAMPLES.get(id(d))
    if hit is not None and hit[0]() is d and hit[1] == phi and hit[2] == terms:
        return hit[3]
    data = _core.samples_at(core, d, terms)
    try:
        ref = weakref.ref(d)
    except TypeError:  # not weak-referenceable (a view of an array is): no caching
        return data
    _SAMPLES[id(d)] = (ref, phi, terms, data)
    weakref.finalize(d, _SAMPLES.pop, id(d), None)
    return data


def _tile_array(*args: Any) -> np.ndarray:
    return _tile(*args)[0]


def _tile_to_zarr(path: str, *args: Any) -> dict[str, Any]:
    """Compute one tile and write it into the store at ``path``, on the worker that
    computed it (the tile never travels), then mark it finished."""
    zarr = require_zarr()
    tile, stats = _tile(*args)
    rows, cols = args[5], args[6]
    t0 = time.perf_counter()
    arr = zarr.open_array(path, mode="r+")
    arr[rows[0] : rows[1], cols[0] : cols[1]] = tile
    stats["write_seconds"] = time.perf_counter() - t0
    write_marker(path, rows[0], cols[0], stats)
    return stats


def _ranges(n: int, block: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + block)) for s in range(0, n, block)]


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
        A ``dask.distributed.Client``: ``X`` and the diagonal are scattered once, one piece
        per block of rows, and the tiles run on the workers, each fetching the two pieces it
        reads (once per worker) while other tiles run. Without one, Dask's current
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
    require_dask()
    import dask
    import dask.array as da

    from deqfast.kernels import diagonal

    X = as_data_matrix(X, "X")
    n = X.shape[0]
    block = check_integer(block, "block", min_value=8)
    dt = check_choice(np.dtype(dtype).name, "dtype", _DTYPES)
    kernel, trained = check_kernel(kernel, trained, allowed=BLOCKED_KERNELS)
    trained = trained if kernel == "ntk" else "hidden"  # the others do not depend on it
    tol = check_positive(tol, "tol")
    max_iter = check_integer(max_iter, "max_iter", min_value=1)
    terms = check_integer(hermite_terms, "hermite_terms", min_value=2, max_value=400)
    num_threads = resolve_threads(num_threads)
    phi = deq.phi
    phi.core  # noqa: B018 - a Python-callable activation raises its TypeError here, early
    show = show_progress(progress)

    diag = diagonal(  # once, on the client (docs/theory.md §3)
        deq.phi, X, sigma_a2=deq.sigma_a2, sigma_b2=deq.sigma_b2, tol=tol, max_iter=max_iter,
        hermite_terms=terms,
    )  # fmt: skip
    d = np.array(diag.d, dtype=np.float64)
    params = dict(
        sigma_a2=deq.sigma_a2, sigma_b2=deq.sigma_b2, tol=tol, max_iter=max_iter,
        hermite_terms=terms, num_threads=num_threads, dtype=dt,
    )  # fmt: skip
    key = matrix(kernel, trained)
    ranges = _ranges(n, block)
    nb = len(ranges)
    # the largest tiles first (the diagonal ones have half the pairs), so the last tiles
    # to start are the short ones and the workers finish together
    upper = sorted(
        ((bi, bj) for bi in range(nb) for bj in range(bi, nb)),
        key=lambda t: (t[0] == t[1], t),
    )
    # X and d go out once, as one piece per block of rows: a tile depends on the two pieces
    # it reads, which Dask moves to its worker (each at most once) while other tiles run
    X_blocks = [np.ascontiguousarray(X[r0:r1]) for r0, r1 in ranges]
    d_blocks = [np.ascontiguousarray(d[r0:r1]) for r0, r1 in ranges]
    if client is not None:
        if show:
            info(f"dask dashboard: {client.dashboard_link}")
        Xs = client.scatter(X_blocks, hash=False)
        ds = client.scatter(d_blocks, hash=False)
    else:
        Xs = [dask.delayed(b, pure=True) for b in X_blocks]
        ds = [dask.delayed(b, pure=True) for b in d_blocks]

    def args(bi: int, bj: int) -> tuple[Any, ...]:
        return (phi, Xs[bi], Xs[bj], ds[bi], ds[bj], ranges[bi], ranges[bj], key, params)

    if zarr_path is None:
        tiles: dict[tuple[int, int], Any] = {}
        token = dask.base.tokenize(d, block, params, repr(phi))
        for bi, bj in upper:
            (r0, r1), (c0, c1) = ranges[bi], ranges[bj]
            task = dask.delayed(_tile_array, pure=True)(
                *args(bi, bj), dask_key_name=f"deqfast-tile-{kernel}-{bi}-{bj}-{token}"
            )
            tiles[bi, bj] = da.from_delayed(task, shape=(r1 - r0, c1 - c0), dtype=dt)
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
    old, done = create_store(path, n, block, dt, bool(overwrite), attrs)
    missing = [(bi, bj) for bi, bj in upper if (ranges[bi][0], ranges[bj][0]) not in done]
    if old is not None:
        if old.get("complete") and not missing:
            return open_blocked(path)
        if show:
            info(f"resuming {path}: {len(done)} of {len(upper)} tiles already written")
    t0 = time.perf_counter()
    if client is not None:
        futures = [
            client.submit(_tile_to_zarr, path, *args(bi, bj), pure=False) for bi, bj in missing
        ]
        if show:
            from distributed import progress as dask_progress

            dask_progress(futures)
        stats = client.gather(futures)
    else:
        write = dask.delayed(_tile_to_zarr, pure=False)
        tasks = [write(path, *args(bi, bj)) for bi, bj in missing]
        if show:
            from dask.diagnostics import ProgressBar

            with ProgressBar():
                stats = list(dask.compute(*tasks))
        else:
            stats = list(dask.compute(*tasks))
    zarr = require_zarr()
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
        assemble_seconds=sum(s.get("assemble_seconds", 0.0) for s in stats),
        write_seconds=sum(s.get("write_seconds", 0.0) for s in stats),
    )  # fmt: skip
    arr.attrs[ATTR] = attrs
    return open_blocked(path)
