"""Figures for kernel comparisons (:ref:`§6 <theory-6>`) and experiments.

Needs matplotlib (a dependency of deqfast).  Figures
are built with :class:`matplotlib.figure.Figure` and the Agg canvas, never with
``pyplot``, so nothing opens a window and no global state is touched: each
helper returns the ``Figure`` and, with ``path=``, also writes a PNG.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from deqfast._validation import as_finite_array, check_integer
from deqfast.spectra import SpectralComparison

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from deqfast.random_features import RandomFeatureResult

__all__ = [
    "plot_accuracy",
    "plot_eigenvectors",
    "plot_error_curves",
    "plot_errors_vs_p",
    "plot_spectra",
    "require_matplotlib",
    "save_figure",
]

#: Colours for classes / curves (colour-blind friendly, Okabe–Ito).
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
_DPI = 120


def require_matplotlib() -> Any:
    """Import matplotlib with the Agg canvas, or raise an ``ImportError`` saying how to get it."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "deqfast's plots need matplotlib, an optional dependency: install it with "
            "`pip install matplotlib`"
        ) from exc
    return matplotlib


def _figure(width: float, height: float) -> Figure:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> str:
    """Write ``fig`` as a PNG to ``path`` (directories are created) and return the path."""
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI)
    return path


def _finish(fig: Figure, path: str | os.PathLike[str] | None) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


# --------------------------------------------------------------------------- #
def plot_spectra(
    comparison: SpectralComparison,
    *,
    bins: int = 60,
    title: str | None = None,
    theory: Any = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Overlaid eigenvalue histograms of the two matrices of a comparison.

    Left panel: histograms (densities) of the bulk of both spectra, over the
    union of the two bulk ranges.  Right panel: the isolated eigenvalues
    (spikes, :func:`deqfast.spectra.isolated_eigenvalues`) of each matrix as
    markers, so that eigenvalues far from the bulk stay readable.  With
    ``theory`` (a :class:`deqfast.theory.TheorySpectrum`), the predicted limiting
    density is drawn over the histograms (as expected counts per bin) and the
    predicted spikes are added to the right panel.

    Parameters
    ----------
    comparison : SpectralComparison
        Result of :func:`deqfast.compare_spectra`.
    bins : int, default 60
        Number of histogram bins.
    title : str, optional
        Figure title (default: the names and the relative errors).
    path : path-like, optional
        Where to write a PNG.
    """
    if not isinstance(comparison, SpectralComparison):
        raise TypeError(f"comparison must be a SpectralComparison; got {type(comparison).__name__}")
    bins = check_integer(bins, "bins", min_value=2)
    c = comparison
    a_name, b_name = c.names
    fig = _figure(8.0, 3.6)
    theory_spikes = np.asarray(theory.spikes, dtype=float) if theory is not None else np.empty(0)
    has_spikes = (
        c.spikes_a.size + c.spikes_b.size + c.low_spikes_a.size + c.low_spikes_b.size
        + theory_spikes.size > 0
    )  # fmt: skip
    if has_spikes:
        ax, ax2 = fig.subplots(1, 2, width_ratios=[3.2, 1])
    else:
        ax, ax2 = fig.subplots(1, 1), None
    lo = min(c.bulk_a[0], c.bulk_b[0])
    hi = max(c.bulk_a[1], c.bulk_b[1])
    pad = 0.03 * (hi - lo) if hi > lo else 0.5
    edges = np.linspace(lo - pad, hi + pad, bins + 1)
    for lam, name, color in ((c.eigvals_a, a_name, COLORS[0]), (c.eigvals_b, b_name, COLORS[1])):
        inside = lam[(lam >= edges[0]) & (lam <= edges[-1])]
        ax.hist(
            inside, bins=edges, density=False, histtype="stepfilled", alpha=0.35,
            color=color, label=f"{name} ({inside.size} eigenvalues)",
        )  # fmt: skip
        ax.hist(inside, bins=edges, histtype="step", color=color, linewidth=1.4)
    if theory is not None:  # expected count per bin: n * density * bin width
        x = np.asarray(theory.grid, dtype=float)
        keep = (x >= edges[0]) & (x <= edges[-1])
        ax.plot(
            x[keep], c.n * np.asarray(theory.density, dtype=float)[keep] * (edges[1] - edges[0]),
            color="black", linewidth=1.5, label="theory (limiting density)",
        )  # fmt: skip
    counts = [np.histogram(lam, bins=edges)[0] for lam in (c.eigvals_a, c.eigvals_b)]
    nz = np.concatenate([x[x > 0] for x in counts])
    if nz.size and nz.max() > 8 * np.percentile(nz, 75):
        ax.set_yscale("log")  # a few crowded bins (e.g. n > p) would flatten the rest
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("count")
    ax.set_title("bulk of the spectra", fontsize=10)
    ax.legend(fontsize=9, frameon=False)
    if ax2 is not None:
        columns = [
            (c.spikes_a, c.low_spikes_a, a_name, COLORS[0], "o"),
            (c.spikes_b, c.low_spikes_b, b_name, COLORS[1], "s"),
        ]
        if theory is not None:
            columns.append((theory_spikes, np.empty(0), "theory", "black", "x"))
        everything = np.concatenate(
            [c.spikes_a, c.spikes_b, c.low_spikes_a, c.low_spikes_b, theory_spikes]
        )
        for pos, (spk, low, _name, color, marker) in enumerate(columns):
            vals = np.concatenate([spk, low])
            ax2.scatter(np.full(vals.size, pos), vals, color=color, marker=marker, s=36, zorder=3)
            min_sep = 0.045 * max(float(np.ptp(everything)), 1e-12)
            last = np.inf
            for v in np.sort(vals)[::-1]:  # label from the top, skipping crowded values
                if last - v < min_sep:
                    continue
                ax2.annotate(
                    f"{v:.3g}", (pos, v), xytext=(7, 0), textcoords="offset points",
                    va="center", fontsize=8, color=color,
                )  # fmt: skip
                last = v
        ax2.set_xticks(range(len(columns)), [col[2] for col in columns])
        ax2.set_xlim(-0.5, len(columns) - 0.1)
        ax2.set_title("isolated eigenvalues", fontsize=10)
        ax2.grid(axis="y", alpha=0.3)
    fig.suptitle(
        title
        or (
            f"{a_name} vs {b_name} (n = {c.n}): ‖Δ‖₂/‖{a_name}‖₂ = {c.op_error:.3g}, "
            f"W1/spread = {c.wasserstein_rel:.2g}"
        ),
        fontsize=11,
    )
    return _finish(fig, path)


def plot_eigenvectors(
    comparison: SpectralComparison,
    *,
    k: int = 2,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Entries of the top ``k`` eigenvectors of both matrices, coloured by class.

    Needs a comparison computed with ``labels=``.  One row per eigenvector,
    one column per matrix; the panel titles give the eigenvalue and the class
    alignments ``|u_kᵀ j_a|²/n_a``.
    """
    if not isinstance(comparison, SpectralComparison):
        raise TypeError(f"comparison must be a SpectralComparison; got {type(comparison).__name__}")
    c = comparison
    if c.eigvecs_a is None or c.eigvecs_b is None or c.labels is None:
        raise ValueError("the comparison has no eigenvectors: call compare_spectra(..., labels=)")
    k = check_integer(k, "k", min_value=1, max_value=c.top)
    labels = c.labels
    K = int(labels.max()) + 1
    names = (
        [str(x) for x in class_names]
        if class_names is not None
        else [f"class {a}" for a in range(K)]
    )
    if len(names) != K:
        raise ValueError(f"class_names must have {K} entries; got {len(names)}")
    fig = _figure(8.0, 1.0 + 1.9 * k)
    axes = np.atleast_2d(fig.subplots(k, 2, sharex=True, squeeze=False))
    idx = np.arange(c.n)
    for col, (U, lam, align, name) in enumerate(
        (
            (c.eigvecs_a, c.eigvals_a, c.alignment_a, c.names[0]),
            (c.eigvecs_b, c.eigvals_b, c.alignment_b, c.names[1]),
        )
    ):
        assert align is not None
        for r in range(k):
            ax = axes[r, col]
            for a in range(K):
                m = labels == a
                ax.scatter(
                    idx[m], U[m, r], s=5, color=COLORS[a % len(COLORS)],
                    label=names[a] if (r == 0 and col == 0) else None,
                )  # fmt: skip
            al = ", ".join(f"{x:.2f}" for x in align[r])
            ax.set_title(
                f"{name}: u{r + 1} (λ = {lam[-1 - r]:.3g}), |uᵀj_a|²/n_a = {al}", fontsize=9
            )
            ax.axhline(0.0, color="0.6", linewidth=0.6)
            if r == k - 1:
                ax.set_xlabel("sample index")
    fig.legend(
        loc="outside lower center", ncols=min(K, 6), fontsize=9, frameon=False, markerscale=3
    )
    fig.suptitle(title or f"Top eigenvectors of {c.names[0]} and {c.names[1]}", fontsize=11)
    return _finish(fig, path)


def plot_error_curves(
    x: Any,
    curves: Mapping[str, Any],
    *,
    xlabel: str = "p",
    ylabel: str = "relative operator-norm error",
    logx: bool = True,
    logy: bool = True,
    errors: Mapping[str, Any] | None = None,
    slopes: bool = True,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Error curves against a size parameter (``p``, a width, …), one line per entry.

    Parameters
    ----------
    x : array_like, shape (m,)
        Abscissae (positive when ``logx``).
    curves : mapping name -> array_like of shape (m,)
        The curves; ``NaN`` entries are skipped.
    errors : mapping name -> array_like of shape (m,), optional
        Error bars (e.g. standard deviations over draws).
    slopes : bool, default True
        With log–log axes, add the fitted slope to each legend entry.
    """
    xs = as_finite_array(x, "x", ndim=1)
    if logx and np.any(xs <= 0):
        raise ValueError("x must be positive for a logarithmic axis")
    fig = _figure(6.4, 4.2)
    ax = fig.subplots()
    markers = "osD^v<>p"
    for i, (name, ys) in enumerate(curves.items()):
        y = np.asarray(ys, dtype=np.float64)
        if y.shape != xs.shape:
            raise ValueError(f"curves[{name!r}] must have shape {xs.shape}; got {y.shape}")
        ok = np.isfinite(y) & ((y > 0) if logy else True)
        label = name
        if slopes and logx and logy and ok.sum() >= 2:
            slope = np.polyfit(np.log(xs[ok]), np.log(y[ok]), 1)[0]
            label = f"{name} (slope {slope:.2f})"
        yerr = None
        if errors is not None and name in errors:
            yerr = np.asarray(errors[name], dtype=np.float64)[ok]
        ax.errorbar(
            xs[ok], y[ok], yerr=yerr, marker=markers[i % len(markers)],
            color=COLORS[i % len(COLORS)], label=label, capsize=3, linewidth=1.5, markersize=5,
        )  # fmt: skip
    if logx:
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{v:g}" for v in xs])
        ax.minorticks_off()
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9, frameon=False)
    if title:
        ax.set_title(title, fontsize=11)
    return _finish(fig, path)


def plot_errors_vs_p(
    ps: Any,
    errors: Mapping[str, Any],
    *,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> Figure:
    """Relative operator-norm errors against the dimension ``p`` (log–log, fitted slopes)."""
    return plot_error_curves(ps, errors, xlabel="dimension p", title=title, path=path, **kwargs)


def plot_accuracy(
    results: Mapping[str, RandomFeatureResult],
    *,
    kernel_accuracy: Mapping[str, float] | None = None,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Random-feature test accuracy (mean ± std over seeds) against the width.

    ``kernel_accuracy`` adds horizontal dashed lines (the infinite-width
    kernel ridge regression limits), in the colour of the curve of the same
    name when there is one.
    """
    fig = _figure(6.4, 4.2)
    ax = fig.subplots()
    names = list(results)
    for i, name in enumerate(names):
        r = results[name]
        dodge = 1.0 + 0.035 * (i - (len(names) - 1) / 2)  # keep overlapping error bars apart
        ax.errorbar(
            np.asarray(r.widths) * dodge, 100 * r.mean, yerr=100 * r.std, marker="osD^v"[i % 5],
            capsize=3, color=COLORS[i % len(COLORS)], label=f"{name} (random features)",
        )  # fmt: skip
    styles = ("--", ":", "-.", (0, (5, 1, 1, 1)))
    for j, (name, acc) in enumerate((kernel_accuracy or {}).items()):
        color = (
            COLORS[names.index(name) % len(COLORS)]
            if name in names
            else COLORS[(len(names) + j) % len(COLORS)]
        )
        ax.axhline(
            100 * acc, color=color, linestyle=styles[j % len(styles)], linewidth=1.4,
            label=f"{name}: exact kernel, {100 * acc:.1f}%",
        )  # fmt: skip
    all_w = sorted({int(w) for r in results.values() for w in r.widths})
    if all_w:
        ax.set_xscale("log", base=2)
        ax.set_xticks(all_w, [str(w) for w in all_w])
        ax.minorticks_off()
    ax.set_xlabel("width m (random features)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=11)
    return _finish(fig, path)
