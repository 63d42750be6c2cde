"""The raw kernel bindings of ``deqfast._core`` (docs/theory.md §3, §5): argument checks that the
Python layer relies on, and agreement of the plain-value entry point with the DEQ's."""

from __future__ import annotations

import numpy as np
import pytest

import deqfast as df
from deqfast import _core
from deqfast.kernels import compute_kernels, diagonal


@pytest.fixture
def setup(rng):
    X = rng.standard_normal((12, 5)) / np.sqrt(5)
    phi = df.activations.tanh()
    A = diagonal(phi, X, sigma_a2=0.2, sigma_b2=0.8)
    return phi, X, A


def _assemble(phi, X, A, **outputs):
    n = len(X)
    return _core.assemble(
        phi.core, X, X, A, A, True, 0, n, 0, n, sigma_a2=0.2, sigma_b2=0.8, **outputs
    )


def test_assemble_writes_into_a_c_ordered_float64_output(setup):
    phi, X, A = setup
    G = np.zeros((len(X), len(X)))
    _assemble(phi, X, A, G=G)
    want = compute_kernels(phi, X, sigma_a2=0.2, sigma_b2=0.8, outputs=("G",)).G
    np.testing.assert_array_equal(G, want)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda n: np.zeros((n, n), order="F"), ValueError, "C-contiguous"),
        (lambda n: np.zeros((n, n), dtype=np.float32), TypeError, "float64"),
        (lambda n: np.zeros((n, 2 * n))[:, ::2], ValueError, "C-contiguous"),
        (lambda n: np.zeros((n, n + 1)), ValueError, "shape"),
        (lambda n: np.zeros((n, n)).tolist(), TypeError, "ndarray"),
    ],
)
def test_assemble_refuses_outputs_it_would_copy(setup, make, error, match):
    """A converted output would receive the results in a temporary copy and leave the
    caller's array untouched: every such output must be refused."""
    phi, X, A = setup
    out = make(len(X))
    with pytest.raises(error, match=match):
        _assemble(phi, X, A, G=out)
    if isinstance(out, np.ndarray):
        assert not np.any(out)


def test_assemble_refuses_read_only_output(setup):
    phi, X, A = setup
    G = np.zeros((len(X), len(X)))
    G.setflags(write=False)
    with pytest.raises(ValueError, match="writeable"):
        _assemble(phi, X, A, G=G)


def test_gaussian_map_refuses_fortran_output(setup):
    phi, X, _ = setup
    S = X @ X.T
    A = _core.samples_at(phi.core, np.diag(S).copy(), 64)
    G = np.zeros(S.shape, order="F")
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.gaussian_map(phi.core, S, A, A, True, G=G)


def test_plain_values_and_deq_give_identical_kernels(rng):
    X = rng.standard_normal((20, 6))
    deq = df.DEQ("relu", sigma_a2=0.3, tau0=1.0)
    plain = compute_kernels(deq.phi, X, sigma_a2=0.3, sigma_b2=0.7, outputs=("G", "K"))
    via_deq = compute_kernels(deq, X, outputs=("G", "K"))
    np.testing.assert_array_equal(plain.G, via_deq.G)
    np.testing.assert_array_equal(plain.K, via_deq.K)
    with pytest.raises(TypeError, match="sigma_a2"):
        compute_kernels(deq.phi, X)
    with pytest.raises(TypeError, match="not both"):
        compute_kernels(deq, X, sigma_a2=0.3, sigma_b2=0.7)


# -- float32 outputs and the write-once assembly ----------------------------------------------


@pytest.mark.parametrize("name", ["relu", "tanh", "erf"])
@pytest.mark.parametrize("cross", [False, True])
def test_float32_kernels_are_the_float64_kernels_rounded(rng, name, cross):
    """``dtype=float32`` changes only the stored values: each entry is the float64 kernel
    rounded to the nearest float32 (NumPy's cast rounds to nearest), for every output, the
    symmetric (mirrored) and the cross kernels, on each pair solver (arc-cosine, Mehler,
    arcsine). 37 samples and block 16 leave ragged tiles and row groups."""
    X = rng.standard_normal((37, 6)) / np.sqrt(6)
    X2 = rng.standard_normal((29, 6)) / np.sqrt(6) if cross else None
    deq = df.DEQ(name, sigma_a2=0.3, tau0=1.0)
    full = deq.kernels(X, X2, block=16)
    single = deq.kernels(X, X2, block=16, dtype=np.float32)
    theta = deq.kernels(X, X2, block=16, trained="all", dtype="float32")
    theta64 = deq.kernels(X, X2, block=16, trained="all")
    for key in ("S", "G", "Gdot", "K"):
        got, want = getattr(single, key), getattr(full, key)
        assert got.dtype == np.float32, key
        np.testing.assert_array_equal(got, want.astype(np.float32), err_msg=key)
    assert theta.Theta is not None and theta64.Theta is not None
    np.testing.assert_array_equal(theta.Theta, theta64.Theta.astype(np.float32))


def test_float32_kernels_of_rescaled_data(rng):
    """Data rescaled for a homogeneous activation (norms outside ``SCALE_RANGE``) have kernels
    outside float32's range: tiny ones round to zero like the float64 result does (``Ġ*`` is
    scale-free and exact), huge ones raise instead of returning infinities."""
    X = rng.standard_normal((20, 5))
    deq = df.DEQ("relu", sigma_a2=0.3, sigma_b2=0.7)
    full, single = deq.kernels(1e-80 * X), deq.kernels(1e-80 * X, dtype=np.float32)
    for key in ("S", "G", "Gdot", "K"):
        np.testing.assert_array_equal(getattr(single, key), getattr(full, key).astype(np.float32))
    assert np.all(single.Gdot > 0)
    with pytest.raises(FloatingPointError, match="float32"):
        deq.kernels(1e80 * X, dtype=np.float32)


def test_float32_overflow_raises(rng):
    """A kernel beyond float32's range (~3.4e38) is refused, not returned as inf."""
    X = 1e25 * rng.standard_normal((6, 4))
    deq = df.DEQ("tanh", sigma_a2=0.2, sigma_b2=1.0)
    assert np.all(np.isfinite(deq.pre_kernel(X)))
    with pytest.raises(FloatingPointError, match="float32"):
        deq.pre_kernel(X, dtype=np.float32)


def test_compute_kernels_refuses_other_dtypes(rng):
    X = rng.standard_normal((5, 3))
    deq = df.DEQ("relu", sigma_a2=0.3, tau0=1.0)
    with pytest.raises(ValueError, match="dtype"):
        deq.ck(X, dtype=np.float16)
    with pytest.raises(TypeError, match="dtype"):
        deq.ck(X, dtype="not a dtype")


def test_assemble_writes_float32_outputs_when_asked(setup):
    phi, X, A = setup
    n = len(X)
    G = np.zeros((n, n), dtype=np.float32)
    K = np.zeros((n, n), dtype=np.float32)
    _assemble(phi, X, A, G=G, K=K, dtype="float32")
    want = compute_kernels(phi, X, sigma_a2=0.2, sigma_b2=0.8, outputs=("G", "K"))
    np.testing.assert_array_equal(G, want.G.astype(np.float32))
    np.testing.assert_array_equal(K, want.K.astype(np.float32))


@pytest.mark.parametrize(
    ("dtype", "out_dtype", "error", "match"),
    [
        ("float32", np.float64, TypeError, "must have dtype float32"),
        (np.float64, np.float32, TypeError, "must have dtype float64"),
        ("int32", np.int32, ValueError, "dtype must be float64 or float32"),
    ],
)
def test_assemble_refuses_outputs_of_another_dtype(setup, dtype, out_dtype, error, match):
    """Every output must have the dtype requested: a mismatch would be converted into a
    temporary copy and the caller's array left untouched."""
    phi, X, A = setup
    n = len(X)
    ok = np.zeros((n, n), dtype=out_dtype)
    with pytest.raises(error, match=match):
        _assemble(phi, X, A, G=ok, dtype=dtype)
    assert not np.any(ok)


@pytest.mark.parametrize("block", [8, 16, 64])
def test_symmetric_assembly_writes_each_requested_entry_once(rng, block):
    """Symmetric assembly of a block of rows and columns off the tile grid (c0 = 3, n = 29):
    exactly the entries (i, j) with i in the rows, j >= max(i, c0) in the columns, and their
    mirrors (j, i), are written, with the values of the full kernel; the others are left as
    they were (NaN). Ragged tiles and row groups straddle the diagonal here."""
    n, r0, r1, c0 = 29, 2, 27, 3
    X = rng.standard_normal((n, 5)) / np.sqrt(5)
    phi = df.activations.tanh()
    A = diagonal(phi, X, sigma_a2=0.2, sigma_b2=0.8)
    full = compute_kernels(phi, X, sigma_a2=0.2, sigma_b2=0.8, outputs=("S", "K"))
    S = np.full((n, n), np.nan)
    K = np.full((n, n), np.nan)
    _core.assemble(
        phi.core, X, X, A, A, True, r0, r1, c0, n, sigma_a2=0.2, sigma_b2=0.8, S=S, K=K,
        block=block,
    )  # fmt: skip
    i, j = np.indices((n, n))
    upper = (i >= r0) & (i < r1) & (j >= np.maximum(i, c0))
    written = upper | upper.T
    for got, want in ((S, full.S), (K, full.K)):
        np.testing.assert_allclose(got[written], want[written], rtol=1e-13, atol=0)
        assert np.all(np.isnan(got[~written]))


@pytest.mark.parametrize(("dtype", "n"), [(np.float64, 64), (np.float32, 48)])
def test_assembly_is_the_same_at_every_alignment_of_the_outputs(rng, dtype, n):
    """Rows a whole number of cache lines long (64 float64, 48 float32 entries) let the assembly
    write whole lines with streaming stores, grouping rows so that the transposed runs start
    lines: outputs starting at each offset from a 64-byte boundary take every mix of streamed
    and plain stores. Each must hold exactly the entries of the kernels (float32: the float64
    kernels rounded), mirrored bitwise, and leave the memory around them untouched."""
    X = rng.standard_normal((n, 7)) / np.sqrt(7)
    phi = df.activations.relu()
    A = diagonal(phi, X, sigma_a2=0.2, sigma_b2=0.8)
    full = compute_kernels(phi, X, sigma_a2=0.2, sigma_b2=0.8, outputs=("S", "K"))
    line = 64 // np.dtype(dtype).itemsize
    for offset in range(line):
        bufs = [np.full(n * n + 3 * line, np.nan, dtype=dtype) for _ in range(2)]
        starts = [(-b.ctypes.data % 64) // b.itemsize + offset for b in bufs]
        outs = [b[s : s + n * n].reshape(n, n) for b, s in zip(bufs, starts)]
        _core.assemble(
            phi.core, X, X, A, A, True, 0, n, 0, n, sigma_a2=0.2, sigma_b2=0.8, S=outs[0],
            K=outs[1], block=16, num_threads=2, dtype=np.dtype(dtype).name,
        )  # fmt: skip
        for got, want, b, s in zip(outs, (full.S, full.K), bufs, starts):
            np.testing.assert_array_equal(got, want.astype(dtype), err_msg=f"offset {offset}")
            np.testing.assert_array_equal(got, got.T)
            assert np.all(np.isnan(b[:s])) and np.all(np.isnan(b[s + n * n :]))
