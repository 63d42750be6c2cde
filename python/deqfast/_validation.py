"""Shared argument checks for the deqfast Python API.

Every public function validates its inputs here *before* any numerical work
(or any call into ``_core``), so that errors name the offending argument and
the allowed range (see ``STYLE.md``, "Python API").  The helpers are small,
general and free of deqfast-specific mathematics.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = [
    "as_data_matrix",
    "as_finite_array",
    "as_labels",
    "as_path",
    "as_rng",
    "check_choice",
    "check_file",
    "check_in_range",
    "check_integer",
    "check_positive",
    "check_seed",
]


def _describe(value: Any) -> str:
    """Short description of ``value`` for error messages (never a huge repr)."""
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _as_real_array(value: Any, name: str) -> np.ndarray:
    """Convert ``value`` to a float64 ndarray, raising ``TypeError`` if not real numeric."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged nested lists etc.
        raise TypeError(f"{name} must be a real numeric array; got {_describe(value)}") from exc
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real-valued; got complex dtype {arr.dtype}")
    if arr.dtype.kind not in "biuf":
        if arr.dtype.kind == "O":
            try:
                return np.asarray(arr, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"{name} must be a real numeric array; got object array of shape {arr.shape}"
                ) from exc
        raise TypeError(f"{name} must be a real numeric array; got dtype {arr.dtype}")
    return np.asarray(arr, dtype=np.float64)


def as_finite_array(
    value: Any,
    name: str,
    *,
    ndim: int | None = None,
    shape: tuple[int | None, ...] | None = None,
) -> np.ndarray:
    """Return ``value`` as a finite float64 C-contiguous array.

    Parameters
    ----------
    value : array_like
        Real numeric data.
    name : str
        Argument name used in error messages.
    ndim : int, optional
        Required number of dimensions.
    shape : tuple of int or None, optional
        Required shape; ``None`` entries are free.  Implies ``ndim``.

    Returns
    -------
    numpy.ndarray
        A float64, C-contiguous array (a copy only when conversion requires it).

    Raises
    ------
    TypeError
        If ``value`` is not real numeric (complex, strings, objects).
    ValueError
        If the shape is wrong or any entry is NaN or infinite.
    """
    arr = _as_real_array(value, name)
    if shape is not None:
        ndim = len(shape)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional; got shape {arr.shape}")
    if shape is not None:
        for axis, (got, want) in enumerate(zip(arr.shape, shape)):
            if want is not None and got != want:
                want_txt = tuple("*" if s is None else s for s in shape)
                raise ValueError(
                    f"{name} must have shape {want_txt}; got {arr.shape} (axis {axis} differs)"
                )
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(
            f"{name} must be finite; found {bad} NaN/inf entr{'y' if bad == 1 else 'ies'} "
            f"in an array of shape {arr.shape}"
        )
    return np.ascontiguousarray(arr)


#: Squared row norms must lie in ``[_SQ_NORM_MIN, _SQ_NORM_MAX]`` (or be exactly 0):
#: below the smallest normal double they lose their digits (or become 0), above
#: the largest double they overflow.  In norms: ``1.49e-154 <= ‖x_i‖ <= 1.34e154``.
_SQ_NORM_MIN = float(np.finfo(np.float64).tiny)
_SQ_NORM_MAX = float(np.finfo(np.float64).max)


def _check_row_norms(arr: np.ndarray, name: str) -> None:
    """Refuse nonzero rows whose squared norm underflows or overflows float64."""
    with np.errstate(over="ignore", under="ignore"):
        sq = np.einsum("ij,ij->i", arr, arr)
    small = np.flatnonzero(sq < _SQ_NORM_MIN)
    small = small[np.any(arr[small] != 0, axis=1)]  # all-zero rows pass
    large = np.flatnonzero(~(sq <= _SQ_NORM_MAX))
    for rows, size, bound in ((small, "small", _SQ_NORM_MIN), (large, "large", _SQ_NORM_MAX)):
        if rows.size:
            i = int(rows[0])
            peak = float(np.max(np.abs(arr[i])))
            norm = peak * float(np.linalg.norm(arr[i] / peak))
            way = "underflow below" if size == "small" else "overflow above"
            raise ValueError(
                f"{name} has {rows.size} row(s) too {size} for float64: their squared norms "
                f"{way} {bound:.3g} (‖x_i‖ {'<' if size == 'small' else '>'} "
                f"{np.sqrt(bound):.3g}; first: row {i}, ‖x_i‖ = {norm:.3g}); rescale {name} — "
                "deqfast expects ‖x_i‖² of order 1 (§1 of the theory page)"
            )


def as_data_matrix(
    X: Any, name: str = "X", *, min_rows: int = 1, min_cols: int = 1, check_norms: bool = True
) -> np.ndarray:
    """Validate a data matrix with rows as samples.

    Parameters
    ----------
    X : array_like, shape (n, p)
        Real numeric data, one sample per row (the theory page's "Python API
        convention").
    name : str, default "X"
        Argument name used in error messages.
    min_rows : int, default 1
        Minimum number of samples ``n``.
    min_cols : int, default 1
        Minimum dimension ``p``.
    check_norms : bool, default True
        Also refuse nonzero rows whose squared norm ``‖x_i‖²`` underflows
        (below the smallest normal double, ``‖x_i‖ < 1.49e-154``) or
        overflows (``‖x_i‖ > 1.34e154``) float64: every kernel needs the
        inner products ``x_iᵀx_j``.  All-zero rows pass.

    Returns
    -------
    numpy.ndarray
        ``X`` as a float64, C-contiguous array of shape ``(n, p)``.

    Raises
    ------
    TypeError
        If ``X`` is not real numeric (complex, strings, objects).
    ValueError
        If ``X`` is not 2-D, has fewer than ``min_rows`` rows or ``min_cols``
        columns, contains NaN or infinite entries, or (``check_norms``) has a
        row whose squared norm underflows or overflows.
    """
    arr = _as_real_array(X, name)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features); got shape {arr.shape}"
        )
    n, p = arr.shape
    if n < min_rows or n == 0:
        raise ValueError(
            f"{name} must have at least {max(min_rows, 1)} row(s) (samples); got shape {arr.shape}"
        )
    if p < min_cols or p == 0:
        raise ValueError(
            f"{name} must have at least {max(min_cols, 1)} column(s) (features); "
            f"got shape {arr.shape}"
        )
    out = as_finite_array(arr, name)
    if check_norms:
        _check_row_norms(out, name)
    return out


def as_labels(
    labels: Any, n: int | None = None, name: str = "labels"
) -> tuple[np.ndarray, np.ndarray]:
    """Encode class labels as integer codes ``0..K-1``.

    Parameters
    ----------
    labels : array_like, shape (n,)
        Class labels of any sortable kind (integers, strings, booleans, or
        integer-valued floats).
    n : int, optional
        Required number of labels (the number of samples).
    name : str, default "labels"
        Argument name used in error messages.

    Returns
    -------
    codes : numpy.ndarray of int64, shape (n,)
        ``codes[i]`` is the index of ``labels[i]`` in ``classes``.
    classes : numpy.ndarray, shape (K,)
        The sorted distinct original labels (``np.unique`` order).

    Raises
    ------
    TypeError
        If the labels are complex, or floats that are not integer-valued.
    ValueError
        If ``labels`` is not 1-D, is empty, has the wrong length, or contains
        NaN.
    """
    try:
        arr = np.asarray(labels)
    except Exception as exc:
        raise TypeError(f"{name} must be a 1-D array of class labels") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional; got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} must have length n = {n}; got length {arr.shape[0]}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must not be empty")
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must not be complex; got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must not contain NaN or inf")
        if not np.all(arr == np.round(arr)):
            raise TypeError(f"{name} must be integer-valued or categorical; got non-integer floats")
    try:
        classes, codes = np.unique(arr, return_inverse=True)
    except TypeError as exc:
        raise TypeError(f"{name} must contain mutually comparable labels") from exc
    return np.ascontiguousarray(codes.reshape(-1), dtype=np.int64), classes


def _check_real_scalar(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {_describe(value)}")
    out = float(value)
    if not np.isfinite(out):
        raise ValueError(f"{name} must be finite; got {out}")
    return out


def check_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float after checking ``value > 0`` (or ``>= 0``).

    Raises
    ------
    TypeError
        If ``value`` is not a real scalar.
    ValueError
        If ``value`` is not finite or not positive.
    """
    out = _check_real_scalar(value, name)
    if out < 0 or (out == 0 and not allow_zero):
        rng = "[0, inf)" if allow_zero else "(0, inf)"
        raise ValueError(f"{name} must be in {rng}; got {out}")
    return out


def check_in_range(
    value: Any,
    name: str,
    lo: float = -np.inf,
    hi: float = np.inf,
    *,
    inclusive: bool | tuple[bool, bool] = True,
) -> float:
    """Return ``value`` as a float after checking ``lo <= value <= hi``.

    Parameters
    ----------
    value : float
        The value to check.
    name : str
        Argument name used in error messages.
    lo, hi : float
        Bounds of the allowed interval.
    inclusive : bool or (bool, bool), default True
        Whether the lower/upper bound is allowed.

    Raises
    ------
    TypeError
        If ``value`` is not a real scalar.
    ValueError
        If ``value`` is NaN/inf (outside infinite bounds) or out of range.
    """
    lo_inc, hi_inc = (inclusive, inclusive) if isinstance(inclusive, bool) else inclusive
    out = _check_real_scalar(value, name)
    ok_lo = out >= lo if lo_inc else out > lo
    ok_hi = out <= hi if hi_inc else out < hi
    if not (ok_lo and ok_hi):
        interval = f"{'[' if lo_inc else '('}{lo}, {hi}{']' if hi_inc else ')'}"
        raise ValueError(f"{name} must be in {interval}; got {out}")
    return out


def check_integer(
    value: Any, name: str, *, min_value: int | None = None, max_value: int | None = None
) -> int:
    """Return ``value`` as an ``int`` after checking its type and range.

    Raises
    ------
    TypeError
        If ``value`` is not an integer (``bool`` is rejected).
    ValueError
        If ``value`` is outside ``[min_value, max_value]``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {_describe(value)}")
    out = int(value)
    if (min_value is not None and out < min_value) or (max_value is not None and out > max_value):
        lo = "-inf" if min_value is None else str(min_value)
        hi = "inf" if max_value is None else str(max_value)
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}]; got {out}")
    return out


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """Return ``value`` after checking it is one of ``choices``.

    Raises
    ------
    ValueError
        If ``value`` is not among ``choices`` (the message lists them).
    """
    options = tuple(choices)
    try:
        ok = value in options
    except Exception:  # e.g. an array compared against strings
        ok = False
    if not ok:
        listed = ", ".join(repr(c) for c in options)
        raise ValueError(f"{name} must be one of {listed}; got {_describe(value)}")
    return value


def check_seed(seed: Any, name: str = "seed", *, streams: type = np.random.Generator) -> Any:
    """Check that ``seed`` is ``None``, a non-negative integer, or a ``streams`` instance.

    ``streams`` is the random-stream type accepted as is: ``numpy.random.Generator``
    (default) or ``numpy.random.SeedSequence`` (where independent streams are spawned).

    Raises
    ------
    TypeError
        For any other type (``bool`` and ``RandomState`` are rejected).
    ValueError
        For a negative integer.
    """
    if seed is None or isinstance(seed, streams):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"{name} must be None, a non-negative int or a numpy.random.{streams.__name__}; "
            f"got {_describe(seed)}"
        )
    if int(seed) < 0:
        raise ValueError(f"{name} must be a non-negative integer; got {int(seed)}")
    return int(seed)


def as_rng(seed: Any = None, name: str = "seed") -> np.random.Generator:
    """Return ``np.random.default_rng(seed)`` after validating ``seed``.

    A ``Generator`` is returned as is (so the caller's stream advances);
    ``None`` gives fresh OS entropy; an integer gives a reproducible stream.
    """
    checked = check_seed(seed, name)
    if isinstance(checked, np.random.Generator):
        return checked
    return np.random.default_rng(checked)


def as_path(path: Any, name: str) -> str:
    """``os.fspath(path)``, raising ``TypeError`` naming the argument if it is not a path."""
    try:
        return os.fspath(path)
    except TypeError as exc:
        raise TypeError(f"{name} must be a path; got {type(path).__name__}") from exc


def check_file(path: Any, name: str) -> str:
    """``path`` as a string, checked to name an existing regular file.

    Raises
    ------
    FileNotFoundError
        If nothing exists at ``path``.
    ValueError
        If ``path`` is not a regular file (e.g. a directory).
    """
    fspath = as_path(path, name)
    if not os.path.exists(fspath):
        raise FileNotFoundError(f"{name}: no such file: {fspath!r}")
    if not os.path.isfile(fspath):
        raise ValueError(f"{name}: {fspath!r} is not a regular file")
    return str(fspath)
