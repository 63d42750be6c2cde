"""NumPy ``.npz`` archives of plain arrays (nothing pickled is ever loaded).

Public names are exported by :mod:`deqfast.datasets`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from deqfast._shared import exported_from
from deqfast._validation import as_data_matrix, check_file


def read_arrays(
    path: Any, keys: Mapping[str, str | None], *, name: str = "path", npy: bool = False
) -> list[np.ndarray]:
    """The arrays ``keys`` names of a ``.npz`` archive at ``path``, in the order given.

    ``keys`` maps the argument that chose each key (named in the errors) to the key; a key
    ``None`` stands for the archive's only array. With ``npy`` a ``.npy`` file is read too,
    for a key ``None``. Nothing pickled is loaded (``allow_pickle=False``), and the file
    is opened here: ``np.load`` leaks its own handle on a corrupt archive.

    Raises
    ------
    FileNotFoundError
        For a missing file.
    ValueError
        If the file is not a readable archive, a key is missing or ambiguous (the message
        lists the available keys), or a ``.npy`` file is given where only an archive does.
    """
    fp = check_file(path, name)
    kind = ".npy/.npz" if npy else ".npz"
    with open(fp, "rb") as fh:
        try:
            archive = np.load(fh, allow_pickle=False)
        except Exception as exc:
            raise ValueError(f"{name}: {fp!r} is not a readable {kind} file ({exc})") from exc
        if not isinstance(archive, np.lib.npyio.NpzFile):
            named = [k for k in keys.values() if k is not None]
            if npy and not named:
                return [np.asarray(archive) for _ in keys]
            if npy:
                raise ValueError(f"{name}: {fp!r} is a .npy file; drop the ':{named[0]}' suffix")
            raise ValueError(f"{name}: {fp!r} is a .npy array, not a .npz archive of named arrays")
        with archive:
            available = list(archive.files)
            chosen = []
            for what, key in keys.items():
                if key is None:
                    if len(available) != 1:
                        raise ValueError(f"{what}: {fp!r} holds {available}; name one as {fp}:KEY")
                    key = available[0]
                if key not in available:
                    raise ValueError(
                        f"{what}: {fp!r} has no array {key!r}; available keys: {available}"
                    )
                chosen.append(key)
            try:
                return [np.asarray(archive[key]) for key in chosen]
            except Exception as exc:
                raise ValueError(f"{name}: {fp!r} is corrupt ({exc})") from exc


@exported_from("deqfast.datasets")
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
    X, y = read_arrays(path, {"features_key": features_key, "labels_key": labels_key})
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
