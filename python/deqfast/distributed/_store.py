"""The zarr store of a tiled kernel: upper tiles, solver statistics, resumable writes."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from deqfast.distributed._common import require_dask, require_zarr

if TYPE_CHECKING:
    import dask.array

#: Key of the store's attributes under which deqfast records the kernel and its statistics.
ATTR = "deqfast"
#: Sub-directory of a zarr store holding one JSON marker (the tile's solver statistics) per
#: finished tile, written after the tile itself: a rerun computes only the unmarked tiles.
TILES_DIR = "deqfast-tiles"
#: Attributes that must agree for a rerun to resume a store instead of replacing it.
RESUME_KEYS = (
    "layout", "kernel", "trained", "n", "p", "block", "dtype", "deq", "sigma_a2", "sigma_b2",
    "tol", "max_iter", "hermite_terms", "fingerprint",
)  # fmt: skip


def create_store(
    path: str, n: int, block: int, dtype: str, overwrite: bool, attrs: dict
) -> tuple[dict[str, Any] | None, dict[tuple[int, int], dict[str, Any]]]:
    """Create the store at ``path``, or reopen the one an interrupted identical call left.

    Returns the stored attributes (``None`` for a new store) and the statistics of the
    tiles already finished, keyed by their first row and column.  Only an absent path,
    an empty directory or a store written by deqfast is ever written to or deleted.
    """
    zarr = require_zarr()
    old = None
    if os.path.lexists(path) and not (
        os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path)
    ):
        try:
            old = dict(zarr.open_array(path, mode="r").attrs).get(ATTR)
        except Exception:  # not a zarr array at all: treated as foreign below
            old = None
        if not isinstance(old, dict) or old.get("layout") != "upper":
            raise FileExistsError(
                f"zarr_path {path!r} exists and is not a kernel store written by deqfast "
                "(no attrs['deqfast']); refusing to write into or delete it, even with "
                "overwrite=True: choose another path or remove it yourself"
            )
        differ = [k for k in RESUME_KEYS if old.get(k) != attrs[k]]
        if not differ and not overwrite:
            done: dict[tuple[int, int], dict[str, Any]] = {}
            tiles = os.path.join(path, TILES_DIR)
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
    os.makedirs(os.path.join(path, TILES_DIR), exist_ok=True)
    arr.attrs[ATTR] = attrs
    return None, {}


def symmetric_from_upper(U: dask.array.Array) -> dask.array.Array:
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
    require_dask()
    zarr = require_zarr()
    import dask.array as da

    arr = zarr.open_array(str(zarr_path), mode="r")
    meta = dict(arr.attrs).get(ATTR)
    if not meta or meta.get("layout") != "upper":
        raise ValueError(f"{zarr_path!r} was not written by deqfast.distributed.kernels_blocked")
    if not meta.get("complete", False):
        raise ValueError(f"{zarr_path!r} is incomplete (its tiles were not all written)")
    return symmetric_from_upper(da.from_zarr(str(zarr_path)))


def write_marker(path: str, r0: int, c0: int, stats: dict[str, Any]) -> None:
    """Record the tile starting at row ``r0`` and column ``c0`` as finished, with its solver
    statistics; called once the tile itself is stored, and the marker appears atomically."""
    marker = os.path.join(path, TILES_DIR, f"{r0}-{c0}.json")
    with open(marker + ".part", "w") as fh:
        json.dump(stats, fh)
    os.replace(marker + ".part", marker)
