"""MNIST / Fashion-MNIST IDX files: a bounded, streaming reader and the file-name search.

Public names are exported by :mod:`deqfast.datasets`.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from typing import Any

import numpy as np

from deqfast._shared import exported_from
from deqfast._validation import as_path, check_file, check_integer

#: IDX element types (third byte of the magic number) -> NumPy big-endian dtypes.
_IDX_TYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

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


@exported_from("deqfast.datasets")
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
    ip = check_file(images_path, "images_path")
    lp = check_file(labels_path, "labels_path")
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


#: Accepted file names of the IDX pair of each MNIST / Fashion-MNIST subset: the
#: original distribution's names (``-`` before ``idx``) and the common variant with
#: a dot (``train-images.idx3-ubyte``), each raw or gzip-compressed.
_IDX_PREFIXES = {"train": "train", "test": "t10k"}


def _idx_candidates(prefix: str, kind: str, ndim: int) -> list[str]:
    stems = [f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"]
    return [stem + ext for stem in stems for ext in ("", ".gz")]


@exported_from("deqfast.datasets")
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
    d = as_path(directory, "directory")
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
