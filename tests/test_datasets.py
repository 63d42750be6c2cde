"""Tests of deqfast.datasets: loaders on tiny files written here, and preparation.

Preparation follows docs/theory.md §1.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import tracemalloc

import numpy as np
import pytest

from deqfast import MixtureStats
from deqfast.datasets import (
    CIFAR10_CLASSES,
    Dataset,
    load_cifar10,
    load_digits,
    load_idx,
    load_npz,
    prepare,
    train_test_split,
)


def _idx_bytes(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, type_code, arr.ndim)
    header += b"".join(struct.pack(">I", d) for d in arr.shape)
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[type_code]
    return header + arr.astype(dtype).tobytes()


@pytest.fixture
def idx_files(tmp_path, rng):
    images = rng.integers(0, 256, size=(7, 4, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 1, 0, 9, 3], dtype=np.uint8)
    raw_i, raw_l = tmp_path / "img-idx3-ubyte", tmp_path / "lab-idx1-ubyte"
    raw_i.write_bytes(_idx_bytes(images))
    raw_l.write_bytes(_idx_bytes(labels))
    gz_i, gz_l = tmp_path / "img-idx3-ubyte.gz", tmp_path / "lab-idx1-ubyte.gz"
    gz_i.write_bytes(gzip.compress(_idx_bytes(images)))
    gz_l.write_bytes(gzip.compress(_idx_bytes(labels)))
    return images, labels, (raw_i, raw_l), (gz_i, gz_l)


def test_load_idx_raw_and_gzip(idx_files):
    images, labels, raw, gz = idx_files
    for ip, lp in (raw, gz, (raw[0], gz[1])):
        X, y = load_idx(ip, lp)
        assert X.shape == (7, 12) and X.dtype == np.float64
        np.testing.assert_array_equal(X, images.reshape(7, -1))
        np.testing.assert_array_equal(y, labels)
        assert y.dtype == np.int64


def test_load_idx_other_element_types(tmp_path):
    data = np.arange(6, dtype=np.float32).reshape(3, 2) / 7
    (tmp_path / "x").write_bytes(_idx_bytes(data, 0x0D))
    (tmp_path / "y").write_bytes(_idx_bytes(np.array([1, -2, 3]), 0x0B))
    X, y = load_idx(tmp_path / "x", tmp_path / "y")
    np.testing.assert_allclose(X, data, rtol=1e-7)
    np.testing.assert_array_equal(y, [1, -2, 3])


def test_load_idx_errors(idx_files, tmp_path):
    _, labels, (ri, rl), (gi, _) = idx_files
    with pytest.raises(FileNotFoundError, match=r"images_path.*no such file"):
        load_idx(tmp_path / "missing", rl)
    with pytest.raises(FileNotFoundError, match="labels_path"):
        load_idx(ri, tmp_path / "missing.gz")
    with pytest.raises(ValueError, match="not a regular file"):
        load_idx(tmp_path, rl)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x12\x34\x08\x03" + b"\x00" * 40)
    with pytest.raises(ValueError, match="magic number"):
        load_idx(bad, rl)
    bad.write_bytes(b"\x00\x00\x08")
    with pytest.raises(ValueError, match="too short"):
        load_idx(bad, rl)
    bad.write_bytes(ri.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        load_idx(bad, rl)
    bad.write_bytes(ri.read_bytes() + b"\x00")
    with pytest.raises(ValueError, match="corrupt"):
        load_idx(bad, rl)
    bad.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(ValueError, match="header"):
        load_idx(bad, rl)
    bad.write_bytes(gi.read_bytes()[:30])
    with pytest.raises(ValueError, match="gzip"):
        load_idx(bad, rl)
    with pytest.raises(ValueError, match="swapped"):
        load_idx(rl, ri)
    short = tmp_path / "short"
    short.write_bytes(_idx_bytes(labels[:5]))
    with pytest.raises(ValueError, match=r"7 images .* 5 labels"):
        load_idx(ri, short)
    with pytest.raises(TypeError, match="path"):
        load_idx(3.5, rl)  # type: ignore[arg-type]


def _cifar_batch(path, rng, n, meta=True):
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = list(rng.integers(0, 10, size=n))
    with open(path, "wb") as fh:
        pickle.dump({b"data": data, b"labels": labels, b"batch_label": b"x"}, fh)
    return data, labels


def test_load_cifar10(tmp_path, rng):
    d1, l1 = _cifar_batch(tmp_path / "data_batch_1", rng, 5)
    _, l2 = _cifar_batch(tmp_path / "test_batch", rng, 3)
    X, y, names = load_cifar10(tmp_path)
    assert X.shape == (5, 3072) and names[0] == "airplane" and len(names) == 10
    np.testing.assert_array_equal(X, d1)
    X, y, _ = load_cifar10(tmp_path, batches=["data_batch_1", "test_batch"])
    assert X.shape == (8, 3072)
    np.testing.assert_array_equal(y, l1 + l2)
    with open(tmp_path / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, fh)
    assert load_cifar10(tmp_path, batches="test_batch")[2][3] == "cat"  # meta only on request
    assert load_cifar10(tmp_path, batches="test_batch", read_meta=True)[2][3] == "c3"


def test_load_cifar10_errors(tmp_path, rng):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_cifar10(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        load_cifar10(tmp_path)
    (tmp_path / "data_batch_1").write_bytes(b"garbage, not a pickle")
    with pytest.raises(ValueError, match="cannot read"):
        load_cifar10(tmp_path)
    with open(tmp_path / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100)), b"labels": [0, 1]}, fh)
    with pytest.raises(ValueError, match=r"\(n, 3072\)"):
        load_cifar10(tmp_path)
    with open(tmp_path / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 3072)), b"labels": [0]}, fh)
    with pytest.raises(ValueError, match="1 labels for 2 images"):
        load_cifar10(tmp_path)
    with open(tmp_path / "data_batch_1", "wb") as fh:
        pickle.dump([1, 2], fh)
    with pytest.raises(ValueError, match="dict"):
        load_cifar10(tmp_path)
    with pytest.raises(ValueError, match="at least one"):
        load_cifar10(tmp_path, batches=[])


def test_load_npz(tmp_path, rng):
    X = rng.standard_normal((6, 2, 3))
    y = np.array([0, 1, 0, 1, 1, 0])
    np.savez(tmp_path / "d.npz", X=X, y=y, features=X[:, 0], target=y)
    Xl, yl = load_npz(tmp_path / "d.npz")
    np.testing.assert_array_equal(Xl, X.reshape(6, 6))
    np.testing.assert_array_equal(yl, y)
    Xl, _ = load_npz(tmp_path / "d.npz", features_key="features", labels_key="target")
    assert Xl.shape == (6, 3)
    with pytest.raises(ValueError, match=r"no array 'data'; available keys: \['X', 'y'"):
        load_npz(tmp_path / "d.npz", features_key="data")
    with pytest.raises(FileNotFoundError):
        load_npz(tmp_path / "none.npz")
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 corrupt zip")
    with pytest.raises(ValueError, match=r"not a readable \.npz"):
        load_npz(tmp_path / "c.npz")
    np.save(tmp_path / "a.npy", X)
    with pytest.raises(ValueError, match=r"\.npy array"):
        load_npz(tmp_path / "a.npy")
    np.savez(tmp_path / "e.npz", X=X, y=y[:4])
    with pytest.raises(ValueError, match="6 entries"):
        load_npz(tmp_path / "e.npz")
    np.savez(tmp_path / "f.npz", X=np.where(X > 0, np.nan, X), y=y)
    with pytest.raises(ValueError, match="finite"):
        load_npz(tmp_path / "f.npz")


def test_prepare_centres_scales_and_estimates_stats(rng):
    X = 3.0 + 2.0 * rng.standard_normal((90, 5, 4))
    y = np.repeat(["cat", "dog", "eel"], 30)
    ds = prepare(X, y, classes=["eel", "cat"], seed=0)
    assert isinstance(ds, Dataset)
    assert ds.X.shape == (60, 20) and ds.class_names == ("eel", "cat")
    np.testing.assert_array_equal(ds.labels, np.repeat([0, 1], 30))
    np.testing.assert_allclose(ds.X.mean(axis=0), 0.0, atol=1e-12)
    assert np.mean(np.sum(ds.X**2, axis=1)) == pytest.approx(1.0)
    ref = MixtureStats.from_data(ds.X, ds.labels)
    assert ds.stats.tau0 == pytest.approx(ref.tau0)
    np.testing.assert_allclose(ds.stats.T, ref.T)
    # the eel rows come first and are the original eel rows, centred and scaled
    sel = np.concatenate([np.arange(60, 90), np.arange(30)])
    raw = X.reshape(90, -1)[sel]
    raw = raw - raw.mean(axis=0)
    np.testing.assert_allclose(ds.X, raw / np.sqrt(np.mean(np.sum(raw**2, axis=1))))
    assert "centred" in ds.description and "Dataset(n=60" in repr(ds)


def test_prepare_options(rng):
    X = 5.0 + rng.standard_normal((40, 6))
    y = np.repeat([1, 2], 20)
    raw = prepare(X, y, center=False, normalize=False)
    np.testing.assert_array_equal(raw.X, X)
    a = prepare(X, y, n_per_class=7, seed=3)
    b = prepare(X, y, n_per_class=7, seed=3)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.class_counts.tolist() == [7, 7]
    assert prepare(X, y, class_names=["one", "two"]).class_names == ("one", "two")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"classes": [1, 5]}, r"classes \[5\] do not occur"),
        ({"classes": [1]}, "at least 2 classes"),
        ({"classes": [1, 1]}, "distinct"),
        ({"n_per_class": 50}, "fewer than n_per_class"),
        ({"class_names": ["a"]}, "class_names"),
    ],
)
def test_prepare_errors(rng, kwargs, match):
    X = rng.standard_normal((20, 3))
    y = np.repeat([1, 2], 10)
    with pytest.raises(ValueError, match=match):
        prepare(X, y, **kwargs)


def test_prepare_rejects_bad_inputs(rng):
    with pytest.raises(ValueError, match="labels"):
        prepare(rng.standard_normal((10, 3)), [0, 1])
    with pytest.raises(ValueError, match="constant"):
        prepare(np.ones((10, 3)), np.repeat([0, 1], 5))
    with pytest.raises(ValueError, match="finite"):
        prepare(np.full((4, 2), np.inf), [0, 0, 1, 1])


def test_train_test_split_is_stratified(rng):
    X = rng.standard_normal((30, 4))
    y = np.array([0] * 20 + [1] * 10)
    Xtr, ytr, Xte, yte = train_test_split(X, y, test_size=0.3, seed=1)
    assert np.bincount(yte).tolist() == [6, 3] and np.bincount(ytr).tolist() == [14, 7]
    assert len({tuple(r) for r in np.vstack([Xtr, Xte])}) == 30
    with pytest.raises(ValueError, match="test_size"):
        train_test_split(X, y, test_size=1.0)


def test_load_digits():
    pytest.importorskip("sklearn")
    ds = load_digits((3, 5))
    assert ds.p == 64 and ds.class_names == ("3", "5")
    assert ds.class_counts.sum() == ds.n > 300
    assert np.mean(np.sum(ds.X**2, axis=1)) == pytest.approx(1.0)
    small = load_digits(n_per_class=20, seed=0)
    assert small.class_counts.tolist() == [20, 20] and small.class_names == ("0", "1")


class _RunsCode:
    """Pickles as a call of ``func(*args)``: what a crafted batch would use to run code."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize(
    "make",
    [
        lambda m: _RunsCode(exec, f"open({str(m)!r}, 'w').close()"),
        lambda m: _RunsCode(os.mkdir, str(m)),
        lambda m: {b"data": _RunsCode(np.zeros, (2, 3072)), b"labels": [0, 1], b"x": os.mkdir},
    ],
)
def test_load_cifar10_crafted_pickle_does_not_run(tmp_path, rng, make):
    marker = tmp_path / "marker"
    with open(tmp_path / "data_batch_1", "wb") as fh:
        pickle.dump(make(marker), fh)
    with pytest.raises(ValueError, match=r"cannot read .*refusing to load (builtins|posix|numpy)"):
        load_cifar10(tmp_path)
    assert not marker.exists()


def test_load_cifar10_meta_read_only_on_request_and_restricted(tmp_path, rng):
    marker = tmp_path / "marker"
    _cifar_batch(tmp_path / "data_batch_1", rng, 4)
    with open(tmp_path / "batches.meta", "wb") as fh:
        pickle.dump(_RunsCode(os.mkdir, str(marker)), fh)
    assert load_cifar10(tmp_path)[2] == CIFAR10_CLASSES
    assert not marker.exists()
    with pytest.raises(ValueError, match=r"read_meta: cannot read .*refusing to load posix\.mkdir"):
        load_cifar10(tmp_path, read_meta=True)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_load_cifar10_reads_numpy1_and_numpy2_pickles(tmp_path, rng, protocol):
    data = rng.integers(0, 256, size=(3, 3072), dtype=np.uint8)
    labels = [np.int64(4), 0, 9]
    blob = pickle.dumps(
        {b"data": data, b"labels": labels, b"filenames": [b"a.png", b"", "c"]}, protocol=protocol
    )
    if protocol < 4:  # the module name as NumPy 1 (and Python 2 CIFAR files) spell it
        blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    (tmp_path / "test_batch").write_bytes(blob)
    X, y, _ = load_cifar10(tmp_path, batches=["test_batch"])
    np.testing.assert_array_equal(X, data)
    np.testing.assert_array_equal(y, [4, 0, 9])


def test_load_cifar10_refuses_entries_outside_directory(tmp_path, rng):
    inner = tmp_path / "cifar"
    inner.mkdir()
    _cifar_batch(tmp_path / "outside_batch", rng, 2)
    _cifar_batch(inner / "data_batch_1", rng, 2)
    with pytest.raises(ValueError, match=r"batches: '\.\./outside_batch' resolves to .*outside"):
        load_cifar10(inner, batches=["data_batch_1", "../outside_batch"])
    with pytest.raises(ValueError, match="absolute path"):
        load_cifar10(inner, batches=[str(tmp_path / "outside_batch")])
    (inner / "link_batch").symlink_to(tmp_path / "outside_batch")
    with pytest.raises(ValueError, match="symbolic link"):
        load_cifar10(inner, batches=["link_batch"])
    (inner / "inner_link").symlink_to(inner / "data_batch_1")  # a link that stays inside is fine
    assert load_cifar10(inner, batches=["inner_link"])[0].shape == (2, 3072)


def test_load_cifar10_string_labels_and_object_data(tmp_path):
    with open(tmp_path / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [b"cat", b"dog"]}, fh)
    with pytest.raises(ValueError, match=r"labels of dtype \|S3 \(first: b'cat'\).*integer"):
        load_cifar10(tmp_path)
    with open(tmp_path / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": np.full((2, 3072), b"x", object), b"labels": [0, 1]}, fh)
    with pytest.raises(
        ValueError, match=r"dtype object; CIFAR-10 batches hold \(n, 3072\) numbers"
    ):
        load_cifar10(tmp_path)


def _idx_header(type_code: int, dims) -> bytes:
    return struct.pack(">BBBB", 0, 0, type_code, len(dims)) + b"".join(
        struct.pack(">I", d) for d in dims
    )


def test_load_idx_bounded_gzip_read(tmp_path, idx_files):
    _, _, (_, rl), _ = idx_files
    # a header announcing 4 GB followed by a little data, and a header announcing
    # 10 bytes in front of 20 MB of zeros (20 kB compressed)
    huge, lying = tmp_path / "huge.gz", tmp_path / "lying.gz"
    huge.write_bytes(gzip.compress(_idx_header(0x08, (4000, 1000, 1000)) + bytes(1000)))
    lying.write_bytes(gzip.compress(_idx_header(0x08, (10, 1)) + bytes(20_000_000)))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"huge\.gz.*announces 4000000000 .*max_bytes"):
            load_idx(huge, rl)
        # within max_bytes, but more than DEFLATE can expand this file to
        with pytest.raises(ValueError, match=r"huge\.gz.*more than a \d+-byte gzip file can hold"):
            load_idx(huge, rl, max_bytes=2**40)
        # decompression stops one byte past the announced end
        with pytest.raises(ValueError, match=r"lying\.gz' holds more data than the 10 bytes its"):
            load_idx(lying, rl)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2e6  # nothing of the announced (or actual) decompressed sizes


def test_load_idx_bad_dims_name_the_file(tmp_path, idx_files):
    _, _, (_, rl), _ = idx_files
    bad = tmp_path / "dims-idx"
    bad.write_bytes(_idx_header(0x08, (0, 28, 28)))
    with pytest.raises(ValueError, match=r"dims-idx' declares dims \(0, 28, 28\) with a zero"):
        load_idx(bad, rl)
    bad.write_bytes(_idx_header(0x0E, (2**32 - 1,) * 4) + bytes(64))  # 2^128 · 8 bytes
    with pytest.raises(ValueError, match=r"dims-idx'.*announces \d{39,} data bytes.*max_bytes"):
        load_idx(bad, rl)
    with pytest.raises(ValueError, match="max_bytes"):
        load_idx(bad, rl, max_bytes=0)
