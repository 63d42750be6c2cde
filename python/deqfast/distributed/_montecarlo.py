"""Monte-Carlo finite-width kernels with the trials spread over the workers."""

from __future__ import annotations

from typing import Any

import numpy as np

from deqfast._shared import show_progress
from deqfast._validation import as_data_matrix, check_choice, check_integer, check_seed
from deqfast._vocabulary import renamed_keywords
from deqfast.distributed._common import info, sum_arrays

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
    seed = check_seed(seed, "seed", streams=np.random.SeedSequence)
    if isinstance(seed, np.random.SeedSequence):
        return list(seed.spawn(trials))
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
    show = show_progress(progress)
    if client is None:
        total = np.zeros((X.shape[0], X.shape[0]))
        for chunk in chunks:
            total += _mc_group(deq, X, width, kernel, chunk, options)
        return total / trials
    if show:
        info(f"dask dashboard: {client.dashboard_link}")
    Xs = client.scatter(X, broadcast=True, hash=False)
    futures = [
        client.submit(_mc_group, deq, Xs, width, kernel, chunk, options, pure=False)
        for chunk in chunks
    ]
    if show:
        from distributed import progress as dask_progress

        dask_progress(futures)
    total_f = client.submit(sum_arrays, futures, pure=False)
    total = np.asarray(total_f.result())
    return total / trials
