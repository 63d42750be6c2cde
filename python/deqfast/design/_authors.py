"""The authors' published design (``StephenLi24/INN_eqvi_ENN``: ``two_layer_lrelu.py``,
``one_layer_tanh.py``), reimplemented as a family to compare against (docs/theory.md §5)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import minimize

from deqfast import activations as _act
from deqfast.coefficients import KernelCoefficients
from deqfast.deq import DEQ
from deqfast.design._families import _lrelu_layers
from deqfast.design._problem import _Problem
from deqfast.design._result import Candidate
from deqfast.explicit import ExplicitNet

#: σ_a² hard-coded in the authors' design scripts (L-ReLU for ReLU DEQs, clip for tanh).
AUTHORS_SIGMA_A2 = {"lrelu": 0.3, "clip": 0.1}


def _authors_fit(
    deq: DEQ, sigma_a2: float, sigma_b2: float, tau0: float, odd: bool
) -> tuple[ExplicitNet, KernelCoefficients]:
    """The authors' procedure: the CK equations of a DEQ with ``sigma_a2`` and input
    scale ``tau0``, summed squares minimised by SLSQP (``tol=1e-10``) from their starts.

    Their equations (1) ``c1``, (2) ``c2``, (3) ``c3`` and (4) ``d − c1 τ0²``, unweighted.
    """
    raw = deq.activation.uncentered()
    ref = DEQ(raw, sigma_a2=sigma_a2, sigma_b2=sigma_b2, tau0=tau0).coefficients("ck")
    want = np.array([ref.c1, ref.c2, ref.c3, ref.d - ref.c1 * tau0 * tau0])

    if odd:

        def build(th: np.ndarray) -> ExplicitNet:
            return ExplicitNet([_act.clip(float(th[0]), max(abs(float(th[1])), 1e-12))], tau0=tau0)

        x0 = np.array([0.1, 0.1])
    else:

        def build(th: np.ndarray) -> ExplicitNet:
            return _lrelu_layers(th, tau0)

        relu_like = deq.activation.kind == "lrelu"
        x0 = np.array([1.0, 0.1, 1.0, 0.1] if relu_like else [1.0, 1.0, 1.0, 1.0])

    def cost(th: np.ndarray) -> float:
        try:
            c = build(th).coefficients("ck")
        except ValueError:
            return 1e6
        got = np.array([c.c1, c.c2, c.c3, c.d - c.c1 * tau0 * tau0])
        return float(np.sum((want - got) ** 2))

    r = minimize(cost, x0, method="SLSQP", tol=1e-10)
    return build(r.x), ref


def _fit_authors(P: _Problem) -> list[Candidate]:
    """The published procedure, and the same procedure with the DEQ's own σ_a² and τ0."""
    assert P.deq is not None and P.probe_sq is not None
    style = "clip" if P.odd else "lrelu"
    out = []
    published = AUTHORS_SIGMA_A2[style]
    for sa, sb, t0, what in (
        (published, 1.0 - published, P.probe_sq, "as published"),
        (P.sigma_a2, float(P.deq.sigma_b2), P.tau0, "their SLSQP with the DEQ's σ_a², τ0"),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fitted, _ = _authors_fit(P.deq, sa, sb, t0, P.odd)
        # the fitted activations, used on the data: centred at the data's own scales
        net = ExplicitNet([a.uncentered() for a in fitted.activations], tau0=P.tau0)
        note = f"{what}: {style}, σ_a²={sa:g}, τ0:={t0:.4g}" + (
            " (mean ‖x‖², i.e. τ0²)" if what == "as published" else ""
        )
        if P.target == "ntk":
            note += "; CK design scored on the NTK"
        out.append(P.candidate("authors", net, note))
    return out
