"""Turn the sections' result objects into report blocks, headline rows and figure recipes.

Each ``render_*`` reads only the result object it is given: numbers are formatted
here, and figures are recipes that draw from the result's arrays when the
document is written.
"""

from __future__ import annotations

from functools import partial

from deqfast.plots import (
    plot_accuracy,
    plot_eigenvectors,
    plot_error_curves,
    plot_errors_vs_p,
    plot_spectra,
)
from deqfast.report._document import Document, fmt, pct
from deqfast.report._mixture import DesignSection, FiniteWidthResult, KernelMatch, MixtureResult
from deqfast.report._realdata import RealDataResult

__all__ = [
    "Headline",
    "render_design",
    "render_finite_width",
    "render_mixture",
    "render_realdata",
]

#: Headline rows ``(quantity, value)``, in the order the sections add them.
Headline = list[tuple[str, str]]

_NAMES = {"ck": ("G*", "Ḡ"), "ntk": ("K*", "K̄")}


def _comparison_tables(doc: Document, m: KernelMatch) -> None:
    doc.table(["quantity", "G*", "Ḡ"], m.ck.rows())
    doc.table(["quantity", "K*", "K̄"], m.ntk.rows())


def render_mixture(r: MixtureResult, doc: Document, headline: Headline) -> None:
    doc.h(2, "1. CK and NTK matching on the Gaussian mixture")
    doc.p(
        f"The authors' two-class mixture `GaussianMixture.paper(p)` (THEORY.md §5), "
        f"n = {r.n_ratio:g}·p samples, σ_a² = {r.sigma_a2:g}, σ_b² = {1 - r.sigma_a2:g}, "
        "population statistics. Exact infinite-width kernels `G*` (Implicit-CK) and `K*` "
        "(Implicit-NTK, hidden weights and read-out trained) against the random-matrix "
        "surrogates `Ḡ`, `K̄` of THEORY.md §4; relative errors averaged over "
        f"{r.draws} draw(s) per p."
    )
    acts = r.activations
    header = ["p", "n"] + [f"{a}: {k}" for a in acts for k in ("‖G*−Ḡ‖/‖G*‖", "‖K*−K̄‖/‖K*‖")]
    mean = {(a, k): r.mean(a, k) for a in acts for k in ("ck_op", "ntk_op")}
    rows = [
        [str(p), str(n)] + [fmt(mean[a, k][i], 3) for a in acts for k in ("ck_op", "ntk_op")]
        for i, (p, n) in enumerate(zip(r.ps, r.ns))
    ]
    doc.h(3, "Relative operator-norm errors")
    doc.table(header, rows)
    if len(r.ps) >= 2:
        curves = {
            f"{a} {name}": mean[a, key]
            for a in acts
            for name, key in (("CK ‖G*−Ḡ‖/‖G*‖", "ck_op"), ("NTK ‖K*−K̄‖/‖K*‖", "ntk_op"))
        }
        title = f"Surrogate error vs dimension (n = {r.n_ratio:g}p, σ_a² = {r.sigma_a2:g})"
        doc.figure(
            partial(plot_errors_vs_p, r.ps, curves, title=title),
            "mixture_errors_vs_p.png",
            "Relative operator-norm error of the surrogates against p "
            "(log–log, fitted slopes in the legend).",
        )
    p, n = r.spectra_p, r.spectra_n if r.spectra else 0
    for act, m in r.spectra.items():
        assert m.theory is not None and m.w1_theory is not None
        doc.h(3, f"{act}: spectra at p = {p}, n = {n}")
        _comparison_tables(doc, m)
        doc.table(
            ["kernel", "W1(theory, exact)", "W1(surrogate, exact)", "theory spikes"],
            [
                [name, fmt(m.w1_theory[kind], 3), fmt(m.comparison(kind).wasserstein, 3),
                 ", ".join(fmt(v, 4) for v in m.theory[kind].spikes) or "none"]
                for name, kind in (("G*", "ck"), ("K*", "ntk"))
            ],
        )  # fmt: skip
        captions = {
            "ck": "(bulk) with the limiting density predicted by `theory_spectrum` from the "
            "equations alone, and the isolated eigenvalues.",
            "ntk": "with the predicted limiting density.",
        }
        for kind, kernel in (("ck", "Implicit-CK"), ("ntk", "Implicit-NTK")):
            a, b = _NAMES[kind]
            doc.figure(
                partial(
                    plot_spectra, m.comparison(kind), theory=m.theory[kind],
                    title=f"{act} DEQ: {kernel} {a} vs surrogate {b} (p = {p}, n = {n})",
                ),
                f"mixture_{act}_{kind}_spectra.png",
                f"{act}: eigenvalue histograms of {a} and {b} {captions[kind]}",
            )  # fmt: skip
        doc.figure(
            partial(
                plot_eigenvectors, m.ck, k=2,
                title=f"{act} DEQ: top eigenvectors of G* and Ḡ, coloured by class",
            ),
            f"mixture_{act}_ck_eigenvectors.png",
            f"{act}: the two top eigenvectors of G* and Ḡ; titles give |uᵀj_a|²/n_a per class.",
        )  # fmt: skip
        i = r.ps.index(p)
        headline.append((f"mixture p = {p}, {act}: ‖G*−Ḡ‖/‖G*‖", fmt(mean[act, "ck_op"][i], 3)))
        headline.append((f"mixture p = {p}, {act}: ‖K*−K̄‖/‖K*‖", fmt(mean[act, "ntk_op"][i], 3)))


def render_design(r: DesignSection, doc: Document, headline: Headline) -> None:
    doc.h(2, "2. A not-so-deep explicit net with the DEQ's kernel")
    doc.p(
        "For each DEQ, `design_explicit` solves for the activations of an explicit net whose "
        "surrogate coefficients equal the DEQ's (THEORY.md §5); the design is then judged by "
        f"the exact kernels on the mixture sample (p = {r.p}, n = {r.n}), next to an "
        "undesigned one-layer ReLU net (centred)."
    )
    for row in r.rows:
        ref = row.designed.names[0]
        headline.append(
            (
                f"design p = {r.p}, {row.activation} DEQ {row.target.upper()}: "
                f"‖{ref}−designed‖/‖{ref}‖ ({row.family}; 1-layer ReLU)",
                f"{fmt(row.designed.op_error, 3)} ({fmt(row.baseline.op_error, 3)})",
            )
        )
        if row.target == "ck":
            doc.figure(
                partial(
                    plot_spectra, row.designed,
                    title=f"{row.activation} DEQ: G* vs the designed explicit net's exact CK "
                    f"(p = {r.p})",
                ),
                f"design_{row.activation}_ck_spectra.png",
                f"{row.activation}: spectra of the DEQ's G* and of the designed explicit net's CK.",
            )  # fmt: skip
    doc.table(
        ["DEQ", "target", "family asked", "family chosen", "matched", "‖A−B‖/‖A‖ designed",
         "W1/spread designed", "‖A−B‖/‖A‖ 1-layer ReLU", "W1/spread 1-layer ReLU"],
        [
            [row.activation, row.target, row.family_asked, row.family,
             "yes" if row.matched else "no", fmt(row.designed.op_error, 3),
             fmt(row.designed.wasserstein_rel, 3), fmt(row.baseline.op_error, 3),
             fmt(row.baseline.wasserstein_rel, 3)]
            for row in r.rows
        ],
    )  # fmt: skip
    for row in r.rows:
        doc.h(4, row.key)
        doc.pre(row.summary)


def render_finite_width(r: FiniteWidthResult, doc: Document, headline: Headline) -> None:
    doc.h(2, "3. Empirical CK at finite width")
    doc.p(
        f"Finite-width DEQs (weights N(0,1), width m) solved to equilibrium on the mixture "
        f"sample (p = {r.p}, n = {r.n}); the empirical CK φ(Z*)ᵀφ(Z*)/m, averaged over "
        f"{r.trials} weight draw(s), against the exact `G*` (THEORY.md §3)."
    )
    doc.table(
        ["width m", *[f"{a}: ‖CK_m−G*‖/‖G*‖" for a in r.activations]],
        [[str(w), *[fmt(r.ck_op[a][i], 3) for a in r.activations]] for i, w in enumerate(r.widths)],
    )
    wmax = max(r.widths)
    for act in r.activations:
        headline.append(
            (
                f"finite width p = {r.p}, {act} DEQ: ‖CK_m−G*‖/‖G*‖ at m = {wmax}",
                fmt(r.ck_op[act][r.widths.index(wmax)], 3),
            )
        )
    if len(r.widths) >= 2:
        doc.figure(
            partial(
                plot_error_curves, r.widths, {f"{a} DEQ": r.ck_op[a] for a in r.activations},
                xlabel="width m", ylabel="‖CK_m − G*‖₂ / ‖G*‖₂",
                title=f"Empirical CK → G* as the width grows (p = {r.p}, n = {r.n})",
            ),
            "finite_width_ck.png",
            "Relative error of the finite-width empirical CK against the exact G* "
            "(slope −1/2 expected).",
        )  # fmt: skip


def accuracy_rows(
    results: dict, kernel_accuracy: dict[str, float]
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of an accuracy table (%): ``mean ± std`` per width, the kernel limit."""
    widths = sorted({w for r in results.values() for w in r.widths})
    header = ["model", *[f"m = {w}" for w in widths], "exact kernel (m = ∞)"]
    rows = []
    for name in list(results) + [k for k in kernel_accuracy if k not in results]:
        r = results.get(name)
        row = [name]
        for w in widths:
            if r is not None and w in r.widths:
                i = r.widths.index(w)
                row.append(f"{100 * r.mean[i]:.1f} ± {100 * r.std[i]:.1f}")
            else:
                row.append("–")
        row.append(f"{100 * kernel_accuracy[name]:.1f}" if name in kernel_accuracy else "–")
        rows.append(row)
    return header, rows


def render_realdata(r: RealDataResult, doc: Document, headline: Headline) -> None:
    tag = f"{r.name} {'/'.join(r.class_names)}"
    doc.h(2, "4. Real data: handwritten digits")
    doc.p(
        f"scikit-learn's 8×8 digits, classes {list(r.class_names)} (n = {r.n}, p = {r.p}), "
        "centred and scaled to mean ‖x‖² = 1; the statistics τ0, t, T, ψ are estimated from "
        f"the labelled data (THEORY.md §1): τ0 = {r.tau0:.4f}, t = {r.t.round(3).tolist()}, "
        f"T = {r.T.round(3).tolist()}. σ_a² = {r.sigma_a2:g}."
    )
    first = next(iter(r.matching), None)
    for act, m in r.matching.items():
        doc.h(3, f"{act}: G* vs Ḡ and K* vs K̄ on digits")
        _comparison_tables(doc, m)
        for kind, (a, b) in _NAMES.items():
            doc.figure(
                partial(
                    plot_spectra, m.comparison(kind),
                    title=f"{tag}, {act} DEQ: {a} vs {b} (estimated statistics)",
                ),
                f"{r.name}_{act}_{kind}_spectra.png", f"{r.name}, {act}: spectra of {a} and {b}.",
            )  # fmt: skip
        if act == first:
            doc.figure(
                partial(
                    plot_eigenvectors, m.ck, k=2, class_names=[f"digit {x}" for x in r.class_names],
                    title=f"{r.name}, {act} DEQ: top eigenvectors of G* and Ḡ",
                ),
                f"{r.name}_{act}_ck_eigenvectors.png",
                f"{r.name}, {act}: top eigenvectors by class.",
            )  # fmt: skip
        headline.append((f"{tag}, {act}: ‖G*−Ḡ‖/‖G*‖", fmt(m.ck.op_error, 3)))
        headline.append((f"{tag}, {act}: ‖K*−K̄‖/‖K*‖", fmt(m.ntk.op_error, 3)))

    doc.h(3, "Random features: fixed random weights, trained read-out")
    widths = sorted({w for x in r.random_features.values() for w in x.widths})
    seeds = max(len(x.seeds) for x in r.random_features.values())
    doc.p(
        f"Train/test split {1 - r.test_size:.0%}/{r.test_size:.0%} "
        f"(n_train = {r.n_train}, n_test = {r.n_test}), {r.readout} read-out with "
        f"λ = {r.ridge:g} on features h/√m; widths {widths}, {seeds} "
        "weight seeds (mean ± std). The last column is kernel ridge regression with the exact "
        f"infinite-width CK (same λ), the m → ∞ limit. Designed net: {r.design_note}."
    )
    doc.p("Test accuracy (%), mean ± std over seeds:")
    doc.table(*accuracy_rows(dict(r.random_features), dict(r.kernel_accuracy)))
    doc.figure(
        partial(
            plot_accuracy, dict(r.random_features), kernel_accuracy=dict(r.kernel_accuracy),
            title=f"{tag}: random-feature test accuracy",
        ),
        f"{r.name}_random_features.png",
        "Random-feature test accuracy vs width (mean ± std over seeds); "
        "dashed/dotted: exact-kernel ridge regression.",
    )  # fmt: skip
    wmax = max(widths)
    for name, x in r.random_features.items():
        i = x.widths.index(wmax)
        headline.append(
            (f"{r.name} accuracy, {name}, m = {wmax}", f"{pct(x.mean[i])} ± {pct(x.std[i])} %")
        )
