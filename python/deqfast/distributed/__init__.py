"""Scale out over a Dask cluster: tiled exact kernels, tiled spectra, Monte-Carlo kernels.

Optional: needs ``pip install "deqfast[distributed]"`` (``dask[distributed]`` and ``zarr``).
The same calls run on a laptop (no client: Dask's threaded scheduler), a
``LocalCluster``, SLURM through ``dask-jobqueue`` or MPI through ``dask-mpi``
(``docs/cluster.md``): Dask is the scheduler, nothing here is home-made.

:func:`kernels_blocked`
    The exact ``n × n`` kernel of :ref:`§3 <theory-3>` (``G*``, ``K*``, ``Θ*``, ``S*``, ``Ġ*``) as a
    ``dask.array`` of ``block × block`` tiles. The diagonal fixed points ``d_i = S*_ii``
    (``n`` scalar equations) are solved once on the client and scattered with ``X``, one
    piece per block of rows; each tile ``(I, J)``, ``I ≤ J``, is one call of the C++ pair
    solver (``_core.assemble``) on a worker, which builds the per-sample data of a block
    from ``d`` alone (``_core.samples_at``, no fixed point) once for all its tiles there,
    and the largest tiles are started first; the lower tiles are
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

from deqfast._vocabulary import OLD_KERNEL_NAMES, deprecated_module_attributes
from deqfast.distributed._cg import (
    CGResult,
    conjugate_gradient,
    kernel_ridge_cg,
    nystrom_preconditioner,
)
from deqfast.distributed._memory import reset_peak_memory, worker_memory
from deqfast.distributed._montecarlo import empirical_kernel
from deqfast.distributed._operator import TiledOperator, tiled_operator
from deqfast.distributed._store import open_blocked
from deqfast.distributed._tiles import kernels_blocked

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

__getattr__ = deprecated_module_attributes(
    __name__,
    {
        "KERNELS": (
            OLD_KERNEL_NAMES,
            lambda: {"ck": "G", "ntk": "K", "ntk_all": "Theta", "pre": "S", "gdot": "Gdot"},
        )
    },
)

# Every public name is documented, pickled and shown in tracebacks as deqfast.distributed.X,
# the path users import it from; the private modules below are where it is implemented.
for _obj in (
    CGResult, TiledOperator, conjugate_gradient, empirical_kernel, kernel_ridge_cg,
    kernels_blocked, nystrom_preconditioner, open_blocked, reset_peak_memory, tiled_operator,
    worker_memory,
):  # fmt: skip
    _obj.__module__ = __name__
del _obj
