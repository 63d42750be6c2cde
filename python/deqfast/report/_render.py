"""Turn the sections' result objects into report blocks, headline rows and figure recipes.

Each ``render_*`` reads only the result object it is given: numbers are formatted
here, and figures are recipes that draw from the result's arrays when the
document is written.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from deqfast.plots import (
    plot_accuracy,
    plot_eigenvectors,
    plot_error_curves,
    plot_errors_vs_p,
    plot_spectra,
)
from deqfast.random_features import accuracy_rows
from deqfast.report._classification import PAIRS, ClassificationSection
from deqfast.report._document import Document, fmt, pct
from deqfast.report._mixture import DesignSection, FiniteWidthResult, KernelMatch, MixtureResult
from deqfast.report._realdata import RealDataResult, sample_std

__all__ = [
    "Headline",
    "render_classification",
    "render_design",
    "render_finite_width",
    "render_mixture",
    "render_real_data",
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
        f"The authors' two-class mixture `GaussianMixture.paper(p)` (§5 of the theory page), "
        f"n = {r.n_ratio:g}·p samples, σ_a² = {r.sigma_a2:g}, σ_b² = {1 - r.sigma_a2:g}, "
        "population statistics. Exact infinite-width kernels `G*` (Implicit-CK) and `K*` "
        "(Implicit-NTK, hidden weights and read-out trained) against the random-matrix "
        "surrogates `Ḡ`, `K̄` of §4 of the theory page; relative errors averaged over "
        f"{r.draws} draw(s) per p."
    )
    acts = r.activations
    mean = {(a, k): r.mean(a, k) for a in acts for k in ("ck_op", "ntk_op")}
    doc.h(3, "Relative operator-norm errors, ‖G*−Ḡ‖/‖G*‖ / ‖K*−K̄‖/‖K*‖")
    doc.table(
        ["activation", *[f"p = {p}, n = {n}" for p, n in zip(r.ps, r.ns)]],
        [
            [a, *[f"{fmt(mean[a, 'ck_op'][i], 3)} / {fmt(mean[a, 'ntk_op'][i], 3)}"
                  for i in range(len(r.ps))]]
            for a in acts
        ],
    )  # fmt: skip
    if len(r.ps) >= 2:
        curves = {
            f"{a} {name}": mean[a, key]
            for a in r.spectra
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
        "surrogate coefficients equal the DEQ's (§5 of the theory page); the design is then "
        "judged by "
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
    render_design_rows(doc, r.rows, "mixture")
    for row in r.rows:
        doc.h(4, row.key)
        doc.pre(row.summary)


def render_finite_width(r: FiniteWidthResult, doc: Document, headline: Headline) -> None:
    doc.h(2, "3. Empirical CK and NTK at finite width")
    doc.p(
        f"Finite-width DEQs (weights N(0,1), width m) solved to equilibrium on the mixture "
        f"sample (p = {r.p}, n = {r.n}); the empirical CK φ(Z*)ᵀφ(Z*)/m and the empirical NTK "
        "(hidden weights and read-out, exact gradients by the adjoint fixed point), averaged "
        f"over {r.trials} weight draw(s), against the exact `G*` and `K*` (§3 of the theory page)."
    )
    doc.table(
        ["width m", *[f"{a}: ‖{x}_m−{y}‖/‖{y}‖" for a in r.activations
                      for x, y in (("CK", "G*"), ("NTK", "K*"))]],
        [
            [str(w), *[fmt(res[a][i], 3) for a in r.activations for res in (r.ck_op, r.ntk_op)]]
            for i, w in enumerate(r.widths)
        ],
    )  # fmt: skip
    wmax = max(r.widths)
    j = r.widths.index(wmax)
    for act in r.activations:
        headline.append(
            (f"finite width p = {r.p}, {act} DEQ: ‖CK_m−G*‖/‖G*‖ at m = {wmax}",
             fmt(r.ck_op[act][j], 3))
        )  # fmt: skip
        headline.append(
            (f"finite width p = {r.p}, {act} DEQ: ‖NTK_m−K*‖/‖K*‖ at m = {wmax}",
             fmt(r.ntk_op[act][j], 3))
        )  # fmt: skip
    if len(r.widths) >= 2:
        for kind, res, (x, y) in (("ck", r.ck_op, ("CK", "G*")), ("ntk", r.ntk_op, ("NTK", "K*"))):
            doc.figure(
                partial(
                    plot_error_curves, r.widths, {f"{a} DEQ": res[a] for a in r.activations},
                    xlabel="width m", ylabel=f"‖{x}_m − {y}‖₂ / ‖{y}‖₂",
                    title=f"Empirical {x} → {y} as the width grows (p = {r.p}, n = {r.n})",
                ),
                f"finite_width_{kind}.png",
                f"Relative error of the finite-width empirical {x} against the exact {y} "
                "(slope −1/2 expected).",
            )  # fmt: skip


def render_design_rows(doc: Document, rows: tuple, what: str) -> None:
    """The table comparing designed nets and the 1-layer ReLU baseline with the DEQ kernels."""
    doc.table(
        ["DEQ", "target", "family asked", "family chosen", "matched", "‖A−B‖/‖A‖ designed",
         "W1/spread designed", "‖A−B‖/‖A‖ 1-layer ReLU", "W1/spread 1-layer ReLU"],
        [
            [row.activation, row.target, row.family_asked, row.family,
             "yes" if row.matched else "no", fmt(row.designed.op_error, 3),
             fmt(row.designed.wasserstein_rel, 3), fmt(row.baseline.op_error, 3),
             fmt(row.baseline.wasserstein_rel, 3)]
            for row in rows
        ],
    )  # fmt: skip


def render_real_data(r: RealDataResult, doc: Document, headline: Headline) -> None:
    name = "MNIST" if r.source == "mnist" else "your data"
    tag = f"{name} {' vs '.join(r.class_names)}"
    doc.h(2, f"4. Real data: {tag}")
    doc.p(
        f"{r.description}. Statistics τ0, t, T, ψ estimated from the labelled data "
        f"(§1 of the theory page): τ0 = {r.tau0:.4f}, t = {r.t.round(3).tolist()}, "
        f"T = {r.T.round(3).tolist()}. σ_a² = {r.sigma_a2:g}. Surrogates `Ḡ`, `K̄` from these "
        f"estimates against the exact `G*`, `K*`: on {r.subsets} random subsets of "
        f"n = {r.subset_n} (statistics re-estimated on each; mean ± std) and on all "
        f"n = {r.n} samples (p = {r.p})."
    )
    doc.table(
        ["activation", f"‖G*−Ḡ‖/‖G*‖, n = {r.subset_n}", f"‖K*−K̄‖/‖K*‖, n = {r.subset_n}",
         f"‖G*−Ḡ‖/‖G*‖, n = {r.n}", f"‖K*−K̄‖/‖K*‖, n = {r.n}"],
        [
            [a, f"{fmt(ck.mean(), 3)} ± {fmt(sample_std(ck), 2)}",
             f"{fmt(ntk.mean(), 3)} ± {fmt(sample_std(ntk), 2)}",
             fmt(r.matching[a].ck.op_error, 3), fmt(r.matching[a].ntk.op_error, 3)]
            for a, (ck, ntk) in r.subset_errors.items()
        ],
    )  # fmt: skip
    for act, m in r.matching.items():
        headline.append((f"{tag} (n = {r.n}), {act}: ‖G*−Ḡ‖/‖G*‖", fmt(m.ck.op_error, 3)))
        headline.append((f"{tag} (n = {r.n}), {act}: ‖K*−K̄‖/‖K*‖", fmt(m.ntk.op_error, 3)))
        if m.theory is None:
            continue
        doc.h(3, f"{act}: spectra on {tag}, n = {r.n}")
        _comparison_tables(doc, m)
        assert m.w1_theory is not None
        doc.p(
            "Theory overlay from the estimated statistics alone, which carry no covariance "
            "structure (covariances taken as (tr C_a/p)·I, class means as zero): a rough "
            f"guide for real data. W1(theory, exact) = {fmt(m.w1_theory['ck'], 3)} (G*), "
            f"{fmt(m.w1_theory['ntk'], 3)} (K*)."
        )
        for kind, (a, b) in _NAMES.items():
            doc.figure(
                partial(
                    plot_spectra, m.comparison(kind), theory=m.theory[kind],
                    title=f"{tag}, {act} DEQ: {a} vs {b} (estimated statistics, n = {r.n})",
                ),
                f"real_{act}_{kind}_spectra.png",
                f"{tag}, {act}: spectra of {a} and {b}, isolated eigenvalues, and the "
                "approximate theory.",
            )  # fmt: skip
        doc.figure(
            partial(
                plot_eigenvectors, m.ck, k=2, class_names=list(r.class_names),
                title=f"{tag}, {act} DEQ: top eigenvectors of G* and Ḡ",
            ),
            f"real_{act}_ck_eigenvectors.png",
            f"{tag}, {act}: top eigenvectors by class.",
        )  # fmt: skip

    d = r.designs
    doc.h(3, f"Designed explicit nets on {tag}")
    doc.p(
        "The nets designed for each DEQ (§5 of the theory page) judged by their exact kernels "
        "on the "
        f"same n = {d.n} samples, next to an undesigned one-layer ReLU net (centred)."
    )
    render_design_rows(doc, d.rows, tag)
    for row in d.rows:
        ref = row.designed.names[0]
        headline.append(
            (f"{tag}: {row.activation} DEQ {row.target.upper()}, ‖{ref}−designed‖/‖{ref}‖ "
             f"({row.family}; 1-layer ReLU)",
             f"{fmt(row.designed.op_error, 3)} ({fmt(row.baseline.op_error, 3)})")
        )  # fmt: skip
        doc.figure(
            partial(
                plot_spectra, row.designed,
                title=f"{tag}: {row.activation} DEQ {ref} vs the designed net's exact "
                f"{row.target.upper()}",
            ),
            f"real_design_{row.activation}_{row.target}_spectra.png",
            f"{tag}, {row.activation}: spectra of the DEQ's {ref} and the designed net's kernel.",
        )  # fmt: skip


def _options_text(options: dict[str, Any]) -> str:
    dtype = np.dtype(options.get("dtype", np.float64)).name
    tol = options.get("tol")
    return dtype + (f" to the relative residual {tol:g}" if tol is not None else "")


def render_classification(r: ClassificationSection, doc: Document, headline: Headline) -> None:
    g = r.grid
    name = "MNIST" if r.source == "mnist" else "your data"
    doc.h(2, f"5. Ten-class classification on {name}: random features")
    doc.p(
        f"All {r.n_classes} classes (p = {r.p}), stratified split n_train = {g.n_train}, "
        f"n_test = {g.n_test}. The authors' six random-feature models: hidden weights drawn "
        "at random and frozen, only the read-out trained — cross-entropy (scikit-learn "
        "`LogisticRegression`, the authors' loss) and ridge (`RidgeClassifier`), "
        f"λ = {g.ridge:g}, on features h/√m; widths {list(g.widths)}, {len(g.seeds)} weight "
        "seeds (mean ± std). The DEQs' equilibria are solved in "
        f"{_options_text(r.forward_options)}. The last column of the ridge table is kernel "
        "ridge regression with each model's exact infinite-width kernel (same λ), the m → ∞ limit."
    )
    wmax = max(g.widths)
    for readout in g.readouts:
        res = {m: g.result(m, readout) for m in g.models}
        kacc = dict(g.kernel_accuracy) if readout == "ridge" else {}
        doc.p(f"Test accuracy (%), {readout} read-out:")
        doc.table(*accuracy_rows(res, kacc))
        doc.figure(
            partial(
                plot_accuracy, res, kernel_accuracy=kacc,
                title=f"{name}, {r.n_classes} classes: test accuracy, {readout} read-out",
            ),
            f"classification_{readout}.png",
            f"Random-feature test accuracy against the width ({readout} read-out, mean ± std "
            "over seeds)" + ("; horizontal lines: exact-kernel ridge regression." if kacc else "."),
        )  # fmt: skip
        for m in g.models:
            mean, sd = g.accuracy(m, readout, wmax)
            headline.append((f"{name} 10-class accuracy, {m}, {readout}, m = {wmax}",
                             f"{pct(mean)} ± {pct(sd)} %"))  # fmt: skip
    doc.p(
        "Designed nets against their DEQ at the largest width run (m = "
        f"{wmax}; within one standard deviation means |net mean − DEQ mean| ≤ DEQ std): "
        + "; ".join(v.sentence() for v in r.designed_vs_deq)
        + "."
    )
    lo = r.left_out
    if lo:
        est = ", ".join(
            f"m = {w}: {lo['gflop_per_map_evaluation'][str(w)]:.0f} GFLOP per map evaluation, "
            f"about {lo['estimated_deq_feature_seconds'][str(w)]:.0f} s of DEQ forward solves"
            for w in lo["left_out_widths"]
        )
        doc.p(
            f"This run stops at width m = {lo['largest_width_run']}: the widths "
            f"{lo['left_out_widths']} run with `deqfast reproduce --full`. A DEQ forward solve "
            f"on the {g.n_train + g.n_test} samples costs 2m²n flops per map evaluation, so "
            f"its cost grows as m²; estimated from this run's own DEQ feature time at m = "
            f"{lo['largest_width_run']} ({lo['deq_feature_seconds_at_largest_width']:.1f} s "
            f"over both DEQs and all seeds): {est}."
        )
    doc.h(3, "Efficiency: inference time at the same width")
    doc.p(
        f"Per-sample time to compute the last hidden layer of the {g.n_test} test samples at "
        f"width m = {r.timing_width}, measured in this run on {r.timing_threads} "
        f"thread{'s' if r.timing_threads > 1 else ''} (the machine's cores): the DEQ solves its "
        "fixed point (Anderson to the default tolerance), the designed net does one matrix "
        "product per layer. Accuracies at the same width next to them."
    )
    rows = []
    for deq, net in PAIRS:
        t = r.timings[deq]
        accs = [g.accuracy(m, ro, r.timing_width) for ro in g.readouts for m in (deq, net)]
        rows.append(
            [deq, net, f"{1e6 * t.deq_per_sample:.1f}", f"{1e6 * t.net_per_sample:.1f}",
             f"{t.speedup:.1f}×", str(t.deq_evaluations),
             *[f"{pct(a)} ± {pct(s)}" for a, s in accs]]
        )  # fmt: skip
        headline.append((f"{name}: {net} vs {deq}, inference speed-up at m = {r.timing_width}",
                         f"{t.speedup:.1f}×"))  # fmt: skip
    doc.table(
        ["DEQ", "designed net", "DEQ µs/sample", "net µs/sample", "speed-up", "DEQ map evaluations",
         *[f"{who} acc. % ({ro})" for ro in g.readouts for who in ("DEQ", "net")]],
        rows,
    )  # fmt: skip
