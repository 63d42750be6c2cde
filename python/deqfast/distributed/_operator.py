"""Matrix-free products with a tiled kernel, as a SciPy ``LinearOperator``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse.linalg as spla

from deqfast.distributed._common import require_dask, sum_arrays

if TYPE_CHECKING:
    import dask.array


def _tile_products(
    T: np.ndarray, Vj: np.ndarray, Vi: np.ndarray, diagonal: bool
) -> tuple[Any, Any]:
    T = np.asarray(T)
    a = np.asarray(T @ Vj.astype(T.dtype, copy=False), dtype=np.float64)
    if diagonal:
        return a, None
    b = np.asarray(T.T @ Vi.astype(T.dtype, copy=False), dtype=np.float64)
    return a, b


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
        ys = [dask.delayed(sum_arrays, pure=True)(p) for p in parts]
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
    require_dask()
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
