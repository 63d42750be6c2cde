"""Small helpers every part of deqfast shares, written once: progress bars, the BLAS thread
limit and Markdown tables.

Free of deqfast's mathematics and of other deqfast modules (it imports none), so any module
may use it.

Conventions of the public options these helpers serve, the same in every function that has
them:

``progress``
    ``True`` shows a tqdm progress bar on standard error, ``False`` shows none; where the
    option also accepts ``None``, the function decides (its docstring says how).
``num_threads``
    The OpenMP team size of a compiled call; ``None`` means all cores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

__all__ = ["blas_threads", "exported_from", "markdown_table", "progress_bar"]

_T = TypeVar("_T")


def exported_from(module: str) -> Callable[[_T], _T]:
    """Decorator: set a class's or function's ``__module__`` to the public module that
    exports it, so that the documentation, reprs and pickles name the public home
    (``deqfast.datasets``) rather than the private module the code lives in."""

    def mark(obj: _T) -> _T:
        obj.__module__ = module  # type: ignore[attr-defined]
        return obj

    return mark


class _NoBar:
    """Stands in for a tqdm bar that is not shown: every call does nothing."""

    def update(self, n: float = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(
    show: bool,
    iterable: Iterable[Any] | None = None,
    *,
    desc: str,
    total: float | None = None,
    unit: str = "it",
    leave: bool = False,
    **options: Any,
) -> Any:
    """A ``tqdm.auto`` progress bar when ``show``, else something that behaves like none.

    With ``iterable`` the bar wraps it (without ``show``: the iterable itself); without it
    the caller advances the bar with ``update(n)`` and ends it with ``close()`` (without
    ``show``: an object whose ``update``, ``set_postfix`` and ``close`` do nothing).
    ``options`` go to ``tqdm`` (e.g. ``unit_scale``, ``dynamic_ncols``). tqdm is imported
    only when a bar is shown.
    """
    if not show:
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
