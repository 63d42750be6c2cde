"""Small helpers every part of deqfast shares, written once: progress bars and their default,
the OpenMP thread count, the BLAS thread limit, Markdown tables, and the public home of names
defined in private modules.

Free of deqfast's mathematics and of other deqfast modules (it imports only the argument
checks of ``_validation``), so any module may use it.

The public options ``progress`` and ``num_threads`` have one default and one meaning in every
function that takes them (stated in the package docstring, :mod:`deqfast`):
:func:`show_progress` and :func:`resolve_threads` implement them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from deqfast._validation import check_integer

__all__ = [
    "MAX_THREADS",
    "blas_threads",
    "exported_from",
    "markdown_table",
    "progress_bar",
    "resolve_threads",
    "set_frozen",
    "show_progress",
]

#: Largest OpenMP team passed to the core (more threads than this are never useful).
MAX_THREADS = 1024

_T = TypeVar("_T")


def set_frozen(obj: object, **values: Any) -> None:
    """Set the fields of a frozen dataclass instance (from its own ``__init__``)."""
    for name, value in values.items():
        object.__setattr__(obj, name, value)


def exported_from(module: str) -> Callable[[_T], _T]:
    """Decorator: set a class's or function's ``__module__`` to the public module that
    exports it, so that the documentation, reprs and pickles name the public home
    (``deqfast.datasets``) rather than the private module the code lives in."""

    def mark(obj: _T) -> _T:
        obj.__module__ = module  # type: ignore[attr-defined]
        return obj

    return mark


def show_progress(progress: bool | None, *, long: bool = True) -> bool:
    """Whether to show a progress bar: ``progress`` when given; for ``None`` (the default
    everywhere) when standard error is a terminal and the job is ``long`` (the caller's
    estimate; most jobs are long enough)."""
    if progress is None:
        return bool(long) and sys.stderr.isatty()
    return bool(progress)


def resolve_threads(num_threads: Any) -> int:
    """The OpenMP team size to pass to the core: ``0`` (the core's default, all cores) for
    ``None`` or ``0``, else ``num_threads ≥ 1`` capped at :data:`MAX_THREADS` and at eight
    threads per core."""
    if num_threads is None:
        return 0
    threads = check_integer(num_threads, "num_threads", min_value=0)
    return min(threads, MAX_THREADS, 8 * (os.cpu_count() or 1))


class _NoBar:
    """Stands in for a tqdm bar that is not shown: every call does nothing."""

    def update(self, n: float = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(
    show: bool | None,
    iterable: Iterable[Any] | None = None,
    *,
    desc: str,
    total: float | None = None,
    unit: str = "it",
    leave: bool = False,
    **options: Any,
) -> Any:
    """A ``tqdm.auto`` progress bar when ``show`` (``None``: :func:`show_progress`), else
    something that behaves like none.

    With ``iterable`` the bar wraps it (without ``show``: the iterable itself); without it
    the caller advances the bar with ``update(n)`` and ends it with ``close()`` (without
    ``show``: an object whose ``update``, ``set_postfix`` and ``close`` do nothing).
    ``options`` go to ``tqdm`` (e.g. ``unit_scale``, ``dynamic_ncols``). tqdm is imported
    only when a bar is shown.
    """
    if not show_progress(show):
        return _NoBar() if iterable is None else iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, **options)


@contextlib.contextmanager
def blas_threads(limit: int | None = 1) -> Iterator[None]:
    """Cap the BLAS threads inside the block (default one; ``None``: leave them alone).

    Small and thin dense products, solves and eigendecompositions (a few thousand rows at
    most) run far slower multi-threaded on a busy machine, or right after an OpenMP region
    whose threads still spin, than on one thread; only large products gain from threads.
    """
    if limit is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=limit, user_api="blas"):
        yield


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown (GitHub) table of strings, ``|`` in a cell escaped."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(r) for r in rows)])
