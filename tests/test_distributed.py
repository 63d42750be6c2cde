"""deqfast.distributed on a real Dask LocalCluster (2 worker processes on 127.0.0.1).

Needs the ``distributed`` extra (``dask[distributed]``, ``zarr``); without it the whole
module is skipped with that reason.
"""

from __future__ import annotations

import numpy as np
import pytest

distributed = pytest.importorskip(
    "dask.distributed", reason="deqfast.distributed needs dask[distributed] (the distributed extra)"
)

import deqfast as df  # noqa: E402
from deqfast import distributed as dd  # noqa: E402
from deqfast import finite  # noqa: E402
from deqfast.linalg import lanczos_top, slq_density  # noqa: E402

N, BLOCK = 300, 128
_TILE = dd._tiles._tile  # the real tile solver, before any test wraps it


@pytest.fixture(scope="module")
def client(request):
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        memory_limit="2GiB",
    )
    c = distributed.Client(cluster)

    def close() -> None:
        c.close()
        cluster.close()

    request.addfinalizer(close)
    return c


@pytest.fixture(scope="module")
def problem():
    s = df.GaussianMixture.paper(128).sample(N, seed=0)
    deq = df.DEQ("relu", sigma_a2=0.2, tau0=s.stats.tau0)
    G = deq.ck(s.X)
    return deq, s, G, np.linalg.eigvalsh(G)


@pytest.fixture(scope="module")
def zarr_kernel(client, problem, tmp_path_factory):
    pytest.importorskip("zarr", reason="zarr_path needs zarr (the distributed extra)")
    deq, s, _, _ = problem
    path = tmp_path_factory.mktemp("tiles") / "ck.zarr"
    K = dd.kernels_blocked(deq, s.X, client=client, block=BLOCK, zarr_path=path, progress=False)
    return path, K


# --------------------------------------------------------------------------- blocked kernels
def test_blocked_ck_equals_dense(client, problem):
    deq, s, G, _ = problem
    K = dd.kernels_blocked(deq, s.X, client=client, block=BLOCK, progress=False)
    assert K.shape == (N, N) and K.chunks == ((128, 128, 44), (128, 128, 44))
    np.testing.assert_allclose(K.compute(), G, rtol=0, atol=1e-12)


def test_blocked_without_client_uses_local_scheduler(problem):
    deq, s, G, _ = problem
    K = dd.kernels_blocked(deq, s.X, block=100)
    np.testing.assert_allclose(K.compute(scheduler="threads"), G, rtol=0, atol=1e-12)


def test_blocked_ntk_series_activation(client):
    """tanh uses per-sample Hermite expansions: rebuilt on the workers from d alone."""
    s = df.GaussianMixture.paper(64).sample(150, seed=1)
    deq = df.DEQ("tanh", sigma_a2=0.3, tau0=s.stats.tau0)
    K = dd.kernels_blocked(deq, s.X, client=client, block=64, kernel="ntk", progress=False)
    np.testing.assert_allclose(K.compute(), deq.ntk(s.X), rtol=0, atol=1e-12)


def test_blocked_float32(client, problem):
    deq, s, G, _ = problem
    K = dd.kernels_blocked(deq, s.X, client=client, block=BLOCK, dtype="float32", progress=False)
    assert K.dtype == np.float32
    np.testing.assert_array_equal(K.compute(), G.astype(np.float32))


def test_blocked_zarr_stores_upper_tiles(zarr_kernel, problem):
    import zarr

    path, K = zarr_kernel
    deq, s, G, _ = problem
    np.testing.assert_allclose(K.compute(), G, rtol=0, atol=1e-12)
    arr = zarr.open_array(str(path), mode="r")
    assert arr.nchunks_initialized == 6  # 3 × 3 tiles, upper triangle only
    meta = dict(arr.attrs)["deqfast"]
    assert meta["complete"] and meta["layout"] == "upper" and meta["kernel"] == "ck"
    scale = deq.pre_kernel(s.X).diagonal().max()  # the tolerance is relative to S*_ii
    assert meta["tiles"] == 6 and meta["pairs"] > 0 and meta["max_error"] < 1e-12 * scale
    np.testing.assert_allclose(dd.open_blocked(path).compute(), G, rtol=0, atol=1e-12)


def test_blocked_zarr_refuses_to_overwrite(zarr_kernel, problem, client):
    path, _ = zarr_kernel
    deq, s, _, _ = problem
    with pytest.raises(FileExistsError, match=r"another deqfast kernel \(kernel differ\).*overwr"):
        dd.kernels_blocked(deq, s.X, client=client, block=BLOCK, zarr_path=path, kernel="ntk")
    with pytest.raises(FileExistsError, match=r"\(n, block, fingerprint differ\)"):
        dd.kernels_blocked(deq, s.X[:-1], client=client, block=100, zarr_path=path)


@pytest.fixture
def threads():
    """Dask's threaded scheduler (in this process) even while the module's client exists."""
    import dask

    with dask.config.set(scheduler="threads"):
        yield


def _count_tiles(monkeypatch, fail_at=None):
    """Count the tiles computed in this process; raise in the one starting at ``fail_at``."""
    calls = []
    real = _TILE

    def tile(*args):
        rows, cols = args[5], args[6]
        if rows[0] == cols[0] == fail_at:
            raise RuntimeError("interrupted")
        calls.append((rows[0], cols[0]))
        return real(*args)

    monkeypatch.setattr(dd._tiles, "_tile", tile)
    return calls


def test_zarr_rerun_resumes_missing_tiles(problem, tmp_path, monkeypatch, threads):
    import dask
    import zarr

    deq, s, G, _ = problem
    path = tmp_path / "ck.zarr"
    calls = _count_tiles(monkeypatch, fail_at=128)
    # One tile at a time, so no tile is still in flight when the failure is raised (with a
    # thread pool, a tile counted here could finish, or not, after the count is taken).
    with dask.config.set(scheduler="synchronous"):
        with pytest.raises(RuntimeError, match="interrupted"):
            dd.kernels_blocked(deq, s.X, block=BLOCK, zarr_path=path)
    written = len(calls)  # tiles finished before the failure
    assert written < 6 and not dict(zarr.open_array(str(path)).attrs)["deqfast"]["complete"]
    with pytest.raises(ValueError, match="incomplete"):
        dd.open_blocked(path)
    calls = _count_tiles(monkeypatch)
    K = dd.kernels_blocked(deq, s.X, block=BLOCK, zarr_path=path)
    assert len(calls) == 6 - written and (128, 128) in calls
    np.testing.assert_allclose(K.compute(), G, rtol=0, atol=1e-12)
    meta = dict(zarr.open_array(str(path)).attrs)["deqfast"]
    assert meta["complete"] and meta["tiles"] == 6 and meta["resumed"] == written
    # a complete store is returned as it is, nothing recomputed
    calls = _count_tiles(monkeypatch)
    K = dd.kernels_blocked(deq, s.X, block=BLOCK, zarr_path=path)
    np.testing.assert_allclose(K.compute(), G, rtol=0, atol=1e-12)
    assert calls == []


def test_zarr_resume_reuses_marked_tiles_only(problem, tmp_path, monkeypatch, threads):
    import zarr

    deq, s, G, _ = problem
    path = tmp_path / "ck.zarr"
    dd.kernels_blocked(deq, s.X, block=BLOCK, zarr_path=path)
    # as if interrupted: tile (0, 1) never written, tile (1, 2) written but not marked;
    # tile (0, 0) carries a sentinel that only a recomputation would erase
    arr = zarr.open_array(str(path), mode="r+")
    meta = dict(arr.attrs)["deqfast"]
    arr.attrs["deqfast"] = {**meta, "complete": False}
    arr[0:128, 128:256] = 0.0
    arr[0:128, 0:128] = G[:128, :128] + 1.0
    for marker in ("0-128.json", "128-256.json"):
        (path / "deqfast-tiles" / marker).unlink()
    calls = _count_tiles(monkeypatch)
    K = dd.kernels_blocked(deq, s.X, block=BLOCK, zarr_path=path).compute()
    assert sorted(calls) == [(0, 128), (128, 256)]
    np.testing.assert_allclose(K[:128, 128:], G[:128, 128:], rtol=0, atol=1e-12)
    np.testing.assert_allclose(K[:128, :128], G[:128, :128] + 1.0, rtol=0, atol=1e-12)
    # overwrite=True starts over instead
    calls = _count_tiles(monkeypatch)
    K = dd.kernels_blocked(deq, s.X, block=BLOCK, zarr_path=path, overwrite=True).compute()
    assert len(calls) == 6
    np.testing.assert_allclose(K, G, rtol=0, atol=1e-12)


def test_zarr_overwrite_never_deletes_foreign_data(problem, tmp_path, threads):
    import zarr

    deq, s, _, _ = problem
    X = s.X[:20]
    mine = tmp_path / "results"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    foreign = zarr.create_array(store=str(tmp_path / "other.zarr"), shape=(4, 4), dtype="f8")
    foreign[:] = 1.0
    (tmp_path / "file").write_text("keep me too")
    for target in (mine, tmp_path / "other.zarr", tmp_path / "file"):
        with pytest.raises(FileExistsError, match="not a kernel store written by deqfast"):
            dd.kernels_blocked(deq, X, block=8, zarr_path=target, overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep me"
    assert (tmp_path / "file").read_text() == "keep me too"
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "other.zarr"))[:], 1.0)
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty directory holds nothing to lose
    K = dd.kernels_blocked(deq, X, block=8, zarr_path=empty)
    np.testing.assert_allclose(K.compute(), deq.ck(X), rtol=0, atol=1e-12)


def test_blocked_validates(problem):
    deq, s, _, _ = problem
    with pytest.raises(ValueError, match="kernel must be one of"):
        dd.kernels_blocked(deq, s.X, kernel="gram")
    with pytest.raises(ValueError, match="dtype must be one of"):
        dd.kernels_blocked(deq, s.X, dtype="float16")
    with pytest.raises(ValueError, match="block must be an integer"):
        dd.kernels_blocked(deq, s.X, block=4)
    with pytest.raises(TypeError, match=r"K must be a dask\.array"):
        dd.tiled_operator(np.eye(3))


def test_progress_prints_dashboard_link(client, problem, capsys):
    deq, s, _, _ = problem
    dd.kernels_blocked(deq, s.X[:40], client=client, block=32, progress=True)
    assert "dask dashboard: http" in capsys.readouterr().err


# --------------------------------------------------------------------------- spectra over tiles
def test_distributed_lanczos_equals_dense(client, problem):
    deq, s, _, ev = problem
    K = dd.kernels_blocked(deq, s.X, client=client, block=BLOCK, progress=False)
    op = dd.tiled_operator(K, client=client, persist=True)
    res = lanczos_top(op, 5, tol=1e-10)
    np.testing.assert_allclose(res.eigenvalues, ev[::-1][:5], rtol=1e-8, atol=0)
    assert op.products == res.iterations
    assert "distributed" in repr(op)


def test_zarr_backed_lanczos_and_slq(client, zarr_kernel, problem):
    """Products read the stored upper tiles; SLQ equals the dense run with the same probes."""
    _, K = zarr_kernel
    _, _, G, ev = problem
    op = dd.tiled_operator(K, client=client)
    res = lanczos_top(op, 3, tol=1e-10)
    np.testing.assert_allclose(res.eigenvalues, ev[::-1][:3], rtol=1e-8, atol=0)
    dens = slq_density(op, probes=40, steps=40, seed=0)
    ref = slq_density(G, probes=40, steps=40, seed=0)
    np.testing.assert_allclose(dens.nodes, ref.nodes, rtol=0, atol=1e-9)
    # measured: W1 = 0.0096, 4.5e-4 of the spread λ_max − λ_min = 21.2
    assert dens.wasserstein(ev) / (ev[-1] - ev[0]) < 2e-3


def test_tiled_operator_nonsymmetric(client, rng):
    import dask.array as da

    M = rng.standard_normal((90, 90))
    for c in (client, None):
        with pytest.raises(ValueError, match=r"K is not symmetric: tile \(\d, \d\).*=False"):
            dd.tiled_operator(da.from_array(M, chunks=40), client=c)
    # symmetric diagonal tiles, asymmetric off-diagonal ones
    B = M.copy()
    B[:45, :45] = B[:45, :45] + B[:45, :45].T
    B[45:, 45:] = B[45:, 45:] + B[45:, 45:].T
    with pytest.raises(ValueError, match=r"tile \(0, 1\) differs"):
        dd.tiled_operator(da.from_array(B, chunks=45))
    S = M + M.T
    op = dd.tiled_operator(da.from_array(S, chunks=40))
    np.testing.assert_allclose(op.matvec(M[:, 0]), S @ M[:, 0], atol=1e-12)
    op = dd.tiled_operator(da.from_array(M, chunks=40), client=client, symmetric=False)
    V = rng.standard_normal((90, 2))
    np.testing.assert_allclose(op.matmat(V), M @ V, atol=1e-12)
    np.testing.assert_allclose(op.rmatvec(V[:, 0]), M.T @ V[:, 0], atol=1e-12)


# --------------------------------------------------------------------------- Monte Carlo
def test_empirical_kernel_over_workers(client, problem):
    deq, s, _, _ = problem
    X = s.X[:40]
    E = dd.empirical_kernel(deq, X, 64, trials=5, seed=7, client=client, progress=False)
    E3 = dd.empirical_kernel(deq, X, 64, trials=5, seed=7, client=client, groups=3, progress=False)
    local = dd.empirical_kernel(deq, X, 64, trials=5, seed=7)
    seeds = np.random.SeedSequence(7).spawn(5)
    ref = (
        sum(
            finite.empirical_ck(deq, X, 64, seed=np.random.default_rng(q), progress=False)
            for q in seeds
        )
        / 5
    )
    for A in (E, E3, local):
        np.testing.assert_allclose(A, ref, rtol=0, atol=1e-12)


def test_empirical_ntk_over_workers(client, problem):
    deq, s, _, _ = problem
    X = s.X[:30]
    E = dd.empirical_kernel(
        deq, X, 48, kernel="ntk", trials=2, seed=1, client=client, progress=False
    )
    q0, q1 = np.random.SeedSequence(1).spawn(2)
    ref = 0.5 * sum(
        finite.empirical_ntk(deq, X, 48, seed=np.random.default_rng(q), progress=False)
        for q in (q0, q1)
    )
    np.testing.assert_allclose(E, ref, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- reporting
def test_worker_memory(client):
    assert all(dd.reset_peak_memory(client).values())
    mem = dd.worker_memory(client)
    assert len(mem) == 2
    for m in mem.values():
        assert 0 < m["rss_mib"] <= m["peak_mib"]


def test_sample_data_built_once_per_block():
    """Each block's per-sample data is built once per process and reused by its tiles (for
    tanh a Hermite expansion per sample), and equals a fresh ``samples_at``."""
    import gc

    from deqfast import _core

    phi = df.DEQ("tanh", sigma_a2=0.3).phi
    d = np.linspace(0.5, 1.5, 40)
    a = dd._tiles._samples(phi, phi.core, d, 16)
    assert dd._tiles._samples(phi, phi.core, d, 16) is a
    ref = _core.samples_at(phi.core, d.copy(), 16)
    np.testing.assert_array_equal(a.m2, ref.m2)
    np.testing.assert_array_equal(a.e2, ref.e2)
    other = dd._tiles._samples(phi, phi.core, d.copy(), 16)  # equal values, another block
    assert other is not a
    assert dd._tiles._samples(phi, phi.core, d, 24) is not a  # another series length
    b = dd._tiles._samples(phi, phi.core, d, 16)
    assert dd._tiles._samples(phi, phi.core, d, 16) is b
    erf = df.DEQ("erf", sigma_a2=0.3).phi
    assert dd._tiles._samples(erf, erf.core, d, 16) is not b  # another activation
    key = id(d)
    del d
    gc.collect()
    assert key not in dd._tiles._SAMPLES  # freed with its block
