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


#: The figures being drawn by :func:`draw_figures`' worker processes (inherited by fork).
_PENDING: tuple[list[Figure], str] | None = None


def _draw(i: int) -> None:
    from deqfast.plots import save_figure

    assert _PENDING is not None
    figures, out = _PENDING
    save_figure(figures[i].make(), os.path.join(out, figures[i].path))


def draw_figures(doc: Document, out: str, *, jobs: int = 1) -> None:
    """Draw every figure of ``doc`` to ``out/figures/<name>`` (PNG).

    Drawing is single-threaded Python (matplotlib's layout and text), so with ``jobs > 1``
    the figures are shared out to that many forked worker processes, which inherit the
    figure recipes and the imported matplotlib; the files are the same either way.
    Without ``fork`` (Windows) they are drawn here, one after the other.
    """
    import multiprocessing

    global _PENDING
    figures = doc.figures
    jobs = min(int(jobs), len(figures))
    forked = jobs > 1 and "fork" in multiprocessing.get_all_start_methods()
    if forked:
        from deqfast.plots import require_matplotlib

        require_matplotlib()  # imported once here rather than in every worker
        import matplotlib.figure  # noqa: F401
    _PENDING = (figures, out)
    try:
        if forked:
            with multiprocessing.get_context("fork").Pool(jobs) as pool:
                pool.map(_draw, range(len(figures)), chunksize=1)
        else:
            for i in range(len(figures)):
                _draw(i)
    finally:
        _PENDING = None


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
