"""Where a report is written: a temporary directory beside the target, moved into place
only when the report is complete, so an interrupted run never leaves a mixed report."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from types import TracebackType
from typing import Any

__all__ = ["MANIFEST", "ReportOutput", "is_report"]

#: File that marks a directory as a deqfast report (written last, before the move).
MANIFEST = "deqfast-report.json"


def is_report(path: str) -> bool:
    """Whether ``path`` is a directory holding a deqfast report manifest."""
    manifest = os.path.join(path, MANIFEST)
    try:
        with open(manifest, encoding="utf-8") as fh:
            return json.load(fh).get("generator") == "deqfast reproduce"
    except (OSError, ValueError, AttributeError):
        return False


class ReportOutput:
    """The target directory of a report and the temporary directory it is built in.

    On creation (before any computation) the target is checked — a directory that
    exists, is not empty and is not a deqfast report is refused unless ``force`` —
    and the temporary directory ``.<name>.partial-XXXX`` is made beside it, which
    also proves the location writable.  Use as a context manager: on success the
    manifest is written and :meth:`commit` moves the temporary directory into place
    (the old report is set aside by one rename, the new one moved in by another, and
    only then is the old one deleted); leaving the block without a commit (an
    exception, Ctrl-C) removes the temporary directory and leaves the target as it
    was.  A run killed outright leaves the target intact and a stale
    ``.<name>.partial-XXXX`` directory beside it.

    Parameters
    ----------
    out : path-like
        The report directory.
    force : bool
        Replace a non-empty directory that is not a deqfast report.
    """

    def __init__(self, out: str | os.PathLike[str], *, force: bool = False) -> None:
        self.out = os.path.abspath(os.fspath(out))
        parent, name = os.path.split(self.out)
        if not name:
            raise ValueError(f"out must name a directory below the root; got {os.fspath(out)!r}")
        if os.path.lexists(self.out) and not os.path.isdir(self.out):
            raise FileExistsError(f"out: {self.out!r} exists and is not a directory")
        if os.path.isdir(self.out) and os.listdir(self.out) and not is_report(self.out):
            if not force:
                raise FileExistsError(
                    f"out: {self.out!r} is not empty and is not a deqfast report (no {MANIFEST}); "
                    "choose another directory, or pass force=True (--force) to replace its "
                    "contents"
                )
        try:
            os.makedirs(parent, exist_ok=True)
            self.tmp = tempfile.mkdtemp(prefix=f".{name}.partial-", dir=parent)
        except OSError as exc:
            raise PermissionError(
                f"out: cannot write beside {self.out!r} ({exc.strerror or exc}); choose a "
                "writable location"
            ) from exc
        self.committed = False

    def path(self, *parts: str) -> str:
        """A path inside the temporary directory (the report being written)."""
        return os.path.join(self.tmp, *parts)

    def write_text(self, name: str, text: str) -> None:
        with open(self.path(name), "w", encoding="utf-8") as fh:
            fh.write(text)

    def commit(self, info: dict[str, Any] | None = None) -> None:
        """Write the manifest and move the finished report into place."""
        files = sorted(
            os.path.relpath(os.path.join(root, f), self.tmp)
            for root, _, names in os.walk(self.tmp)
            for f in names
        )
        manifest = {
            "generator": "deqfast reproduce",
            "completed": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "files": files,
            **(info or {}),
        }
        self.write_text(MANIFEST, json.dumps(manifest, indent=2) + "\n")
        old = None
        if os.path.lexists(self.out):
            parent, name = os.path.split(self.out)
            old = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
            os.rename(self.out, os.path.join(old, name))
        os.rename(self.tmp, self.out)
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        """Remove the temporary directory (the target is untouched)."""
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> ReportOutput:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.committed:
            self.discard()
