"""CIFAR-10 "python version" batches, read by an unpickler that builds only plain data.

Public names are exported by :mod:`deqfast.datasets`.
"""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np

from deqfast._shared import exported_from
from deqfast._validation import as_path

#: CIFAR-10 class names (used when ``batches.meta`` is absent).
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


@exported_from("deqfast.datasets")
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
    d = as_path(directory, "directory")
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
    rel = as_path(entry, name)
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
