"""The report as a document: blocks rendered to Markdown and HTML, figures drawn to PNG.

Nothing here computes a result: sections hand over numbers (already formatted
into strings) and figure recipes (``make() -> matplotlib Figure``, drawn from
arrays a section computed).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, Union

from deqfast._shared import markdown_table

__all__ = [
    "Document",
    "Figure",
    "FigureDrawing",
    "Heading",
    "Paragraph",
    "Pre",
    "Table",
    "fmt",
    "pct",
    "to_html",
    "to_markdown",
]


@dataclasses.dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclasses.dataclass(frozen=True)
class Paragraph:
    text: str


@dataclasses.dataclass(frozen=True)
class Pre:
    text: str


@dataclasses.dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclasses.dataclass(frozen=True)
class Figure:
    """A figure ``figures/<name>``: ``make()`` returns the matplotlib figure to save."""

    name: str
    caption: str
    make: Callable[[], Any] = dataclasses.field(compare=False, repr=False)

    @property
    def path(self) -> str:
        return f"figures/{self.name}"


Block = Union[Heading, Paragraph, Pre, Table, Figure]


class Document:
    """An ordered list of blocks, built with ``h``, ``p``, ``pre``, ``table`` and ``figure``."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(Heading(level, text))

    def p(self, text: str) -> None:
        self.blocks.append(Paragraph(text))

    def pre(self, text: str) -> None:
        self.blocks.append(Pre(text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(Table(tuple(header), tuple(tuple(r) for r in rows)))

    def figure(self, make: Callable[[], Any], name: str, caption: str) -> None:
        self.blocks.append(Figure(name, caption, make))

    def extend(self, other: Document) -> None:
        self.blocks.extend(other.blocks)

    @property
    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]


#: The figures being drawn by :class:`FigureDrawing`'s worker processes (inherited by fork),
#: by drawing.
_PENDING: dict[int, tuple[list[Figure], str]] = {}


def _draw(task: tuple[int, int]) -> None:
    from deqfast.plots import save_figure

    figures, out = _PENDING[task[0]]
    fig = figures[task[1]]
    save_figure(fig.make(), os.path.join(out, fig.path))


class FigureDrawing:
    """Draw ``figures`` to ``out/figures/<name>`` (PNG), in ``jobs`` forked worker processes
    that start at once and draw while the caller goes on; :meth:`wait` returns when all are
    written (and draws them itself when there are no workers).

    Drawing is single-threaded Python (matplotlib's layout and text), so with ``jobs > 1``
    the figures are shared out to that many workers, which inherit the figure recipes and
    the imported matplotlib; ``background`` forks one even for ``jobs=1``. The files are the
    same either way. Without ``fork`` (Windows) they are drawn by :meth:`wait`, one after
    the other.
    """

    def __init__(
        self, figures: Sequence[Figure], out: str, *, jobs: int = 1, background: bool = False
    ) -> None:
        import multiprocessing

        self.figures = list(figures)
        self.out = out
        self._pool: Any = None
        self._async: Any = None
        jobs = min(int(jobs), len(self.figures))
        if jobs < 1 or (jobs == 1 and not background):
            return
        if "fork" not in multiprocessing.get_all_start_methods():
            return
        from deqfast.plots import require_matplotlib

        require_matplotlib()  # imported once here rather than in every worker
        import matplotlib.figure  # noqa: F401

        self._key = id(self)
        _PENDING[self._key] = (self.figures, out)
        self._pool = multiprocessing.get_context("fork").Pool(jobs)
        tasks = [(self._key, i) for i in range(len(self.figures))]
        self._async = self._pool.map_async(_draw, tasks, chunksize=1)

    def wait(self) -> None:
        """Return when every figure is written (a worker's error is raised here)."""
        if self._pool is None:
            from deqfast.plots import save_figure

            for fig in self.figures:
                save_figure(fig.make(), os.path.join(self.out, fig.path))
            return
        try:
            self._async.get()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the workers (at once: figures not yet written are not drawn)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()
            pool.join()
            _PENDING.pop(self._key, None)


def fmt(x: float, digits: int = 4) -> str:
    """``x`` with ``digits`` significant digits; an en dash for NaN/inf."""
    return f"{x:.{digits}g}" if math.isfinite(x) else "–"


def pct(x: float) -> str:
    """A fraction as a percentage with one decimal."""
    return f"{100 * x:.1f}"


def to_markdown(doc: Document) -> str:
    """The document as Markdown (figures linked from ``figures/``)."""
    out: list[str] = []
    for b in doc.blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Paragraph):
            out.append(b.text)
        elif isinstance(b, Pre):
            out.append("```\n" + b.text + "\n```")
        elif isinstance(b, Table):
            out.append(markdown_table(b.header, b.rows))
        else:
            out.append(f"![{b.caption}]({b.path})\n\n*{b.caption}*")
    return "\n\n".join(out) + "\n"


def _inline_html(text: str) -> str:
    """Escape text and render `code` spans."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{s}</code>" if i % 2 else s for i, s in enumerate(parts))


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;"
    "line-height:1.45;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:0.92em}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
    "figure{margin:1.5em 0}figcaption{color:#555;font-size:0.9em}"
    "pre{background:#f6f6f6;padding:0.6em;overflow-x:auto;font-size:0.85em}code{background:#f3f3f3}"
)


def to_html(doc: Document, title: str, *, figure_dir: str) -> str:
    """The document as one self-contained HTML page (PNG figures read from ``figure_dir``
    and embedded as data URLs)."""
    e = html.escape
    body: list[str] = []
    for b in doc.blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            body.append(f"<p>{_inline_html(b.text)}</p>")
        elif isinstance(b, Pre):
            body.append(f"<pre>{e(b.text)}</pre>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{e(c)}</th>" for c in b.header)
            rows = "".join(
                "<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b.rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            with open(os.path.join(figure_dir, b.path), "rb") as fh:
                data = base64.b64encode(fh.read()).decode("ascii")
            body.append(
                f'<figure><img alt="{e(b.caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{e(b.caption)}</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title>"
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
