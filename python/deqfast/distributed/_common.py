"""Helpers shared by the modules of :mod:`deqfast.distributed`: the optional imports, the
kernel names, messages and the reduction of partial results."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from deqfast._vocabulary import KERNELS as _KERNELS
from deqfast._vocabulary import matrix_name

#: Kernels ``kernels_blocked`` stores: the vocabulary's, and ``"gdot"`` (``Ġ*``, a by-product
#: of the same pair solve).
BLOCKED_KERNELS = (*_KERNELS, "gdot")


def matrix(kernel: str, trained: str) -> str:
    """The ``_core.assemble`` output holding ``kernel`` (see ``matrix_name``)."""
    return "Gdot" if kernel == "gdot" else matrix_name(kernel, trained)


def require_dask() -> Any:
    try:
        import dask
        import dask.array
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "deqfast.distributed needs Dask: pip install 'deqfast[distributed]' "
            "(dask[distributed] and zarr)"
        ) from exc
    return dask


def require_zarr() -> Any:
    try:
        import zarr
    except ImportError as exc:  # pragma: no cover
        raise ImportError(
            "zarr_path needs zarr: pip install 'deqfast[distributed]' (or pip install zarr)"
        ) from exc
    return zarr


def info(msg: str) -> None:
    print(f"deqfast: {msg}", file=sys.stderr, flush=True)


def sum_arrays(parts: list[np.ndarray]) -> np.ndarray:
    out = np.array(parts[0], dtype=np.float64)
    for p in parts[1:]:
        out += p
    return out
