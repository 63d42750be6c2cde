"""Selection: every family's candidates judged by their exact kernels on the probe
(:func:`deqfast.design.design_explicit`, docs/theory.md §5)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from deqfast._validation import as_data_matrix, check_choice, check_positive, check_seed
from deqfast._vocabulary import check_kernel, renamed_keywords
from deqfast.data import GaussianMixture, Sample
from deqfast.deq import DEQ
from deqfast.design._authors import _fit_authors
from deqfast.design._families import (
    _fit_clip,
    _fit_hermite,
    _fit_lrelu,
    _fit_lrelu3,
    _fit_mixed,
    _fit_relu,
    _fit_scaled,
    _fit_skip,
)
from deqfast.design._problem import _KernelFit, _Problem
from deqfast.design._result import Candidate, DesignResult, DesignWarning
from deqfast.spectra import spectral_norm

#: Families accepted by :func:`design_explicit` (``"auto"`` tries all of the others).
FAMILIES = (
    "auto", "lrelu", "lrelu3", "mixed", "skip", "scaled", "clip", "hermite", "relu", "authors",
)  # fmt: skip
#: The kernels a design can match (an explicit net's pre-activations are its layers').
_TARGETS = ("ck", "ntk")
_PROBE_P = 256
#: Relative distance within which a matched candidate counts as tied with the closest.
_TIE = 1e-6


_SOLVERS = {
    "lrelu": _fit_lrelu,
    "lrelu3": _fit_lrelu3,
    "mixed": _fit_mixed,
    "skip": _fit_skip,
    "scaled": _fit_scaled,
    "clip": _fit_clip,
    "hermite": _fit_hermite,
    "relu": _fit_relu,
    "authors": _fit_authors,
}


def default_probe(tau0: float, *, p: int = _PROBE_P, seed: int = 0) -> np.ndarray:
    """The default probe: ``GaussianMixture.paper(p).sample(int(0.8 p), seed=seed).X``
    rescaled so that its population ``τ0`` equals ``tau0`` (the DEQ's)."""
    s = GaussianMixture.paper(p).sample(int(0.8 * p), seed=seed)
    return np.asarray(s.X) * (tau0 / s.stats.tau0)


def _compare(A: np.ndarray, B: np.ndarray, evA: np.ndarray, normA: float) -> tuple[float, float]:
    """Relative operator-norm distance ``‖A − B‖₂/‖A‖₂`` (``normA = ‖A‖₂``, computed
    once per design) and the mean absolute gap of the sorted eigenvalues."""
    dist = spectral_norm(A - B) / normA
    gap = float(np.mean(np.abs(evA - np.linalg.eigvalsh(B))))
    return dist, gap


@renamed_keywords(target="kernel")
def design_explicit(
    deq: DEQ,
    *,
    kernel: str = "ck",
    family: str | Sequence[str] = "auto",
    trained: str = "hidden",
    probe: Any = None,
    seed: int = 0,
    tol: float = 1e-10,
    matched_only: bool = False,
) -> DesignResult:
    """Design an explicit net whose CK (or NTK) matches a DEQ's (:ref:`§5 <theory-5>`).

    Parameters
    ----------
    deq
        A :class:`~deqfast.DEQ` built with ``tau0`` (its coefficients need it).
    kernel
        ``"ck"`` (``G*``) or ``"ntk"`` (``K*``, or ``Θ*`` with ``trained="all"``).
    family
        One of :data:`FAMILIES` (see the module documentation), or a sequence of them;
        ``"auto"`` tries all.
    trained
        NTK convention, the same for the DEQ and the net: ``"hidden"`` (input weights
        fixed) or ``"all"``.
    probe
        Samples on which the exact kernels are compared: a :class:`~deqfast.Sample`, a
        prepared dataset (:mod:`deqfast.datasets`) or an array ``(n, p)``, used as given.
        Default: :func:`default_probe` — the authors'
        mixture ``GaussianMixture.paper(256)``, ``n = 204``, drawn with ``seed`` and
        rescaled to the DEQ's ``τ0``.
    seed
        Seed of the default probe.
    tol
        Relative coefficient residual below which a design counts as matched.
    matched_only
        Choose among matched candidates only (asymptotically exact designs). By default
        the candidate whose exact kernel is closest to the DEQ's on the probe is chosen,
        matched or not; the result names both (``closest``, ``exact``) and says which
        was chosen and why.

    Returns
    -------
    DesignResult
        ``converged`` tells whether the chosen net's coefficients match; a
        :class:`DesignWarning` is emitted when no candidate matched at all.

    Examples
    --------
    >>> import deqfast as df
    >>> from deqfast.design import design_explicit
    >>> deq = df.DEQ("relu", sigma_a2=0.2, tau0=1.0)
    >>> res = design_explicit(deq, family="lrelu")
    >>> print(f"{res.family}: exact-kernel distance < 1e-4: {res.distance < 1e-4}; "
    ...       f"matched: {res.exact.family}, distance < 1e-4: {res.exact.distance < 1e-4}")
    lrelu: exact-kernel distance < 1e-4: True; matched: lrelu, distance < 1e-4: True
    >>> both = design_explicit(deq, family=("lrelu", "hermite"))  # judged on the probe
    >>> sorted({c.family for c in both.candidates if c.matched})
    ['hermite', 'lrelu']
    >>> both.family, both.distance < 1e-3 < min(c.distance for c in both.candidates
    ...                                         if c.family == "hermite")
    ('lrelu', True)
    >>> print(both.summary())  # doctest: +ELLIPSIS
    explicit net for DEQ(Activation('relu'), ...), target CK: lrelu — NOT matched ...
    ...
    """
    if not isinstance(deq, DEQ):
        raise TypeError(f"deq must be a deqfast.DEQ, got {type(deq).__name__}")
    if deq.tau0 is None:
        raise ValueError("deq has no tau0; build it with DEQ(..., tau0=stats.tau0)")
    target, trained = check_kernel(kernel, trained, allowed=_TARGETS)
    families: list[str]
    if isinstance(family, str):
        family = str(check_choice(family, "family", FAMILIES))
        families = list(FAMILIES[1:]) if family == "auto" else [family]
    elif isinstance(family, Sequence) and len(family) > 0:
        families = [str(check_choice(f, "family", FAMILIES[1:])) for f in family]
        family = ",".join(families)
    else:
        raise TypeError(f"family must be a name or a non-empty sequence of names, got {family!r}")
    tol = check_positive(tol, "tol")
    seed_ = check_seed(seed, "seed")
    if not isinstance(matched_only, bool):
        raise TypeError(f"matched_only must be a bool, got {type(matched_only).__name__}")
    if isinstance(probe, Sample) or (hasattr(probe, "X") and hasattr(probe, "stats")):
        X = as_data_matrix(probe.X, "probe.X", min_rows=2)  # a Sample or a prepared Dataset
    elif probe is None:
        X = default_probe(float(deq.tau0), seed=0 if seed_ is None else seed_)  # type: ignore[arg-type]
    else:
        X = as_data_matrix(probe, "probe", min_rows=2)

    # the DEQ's exact kernel on the probe: its norm weights the kernel fits, and it
    # judges every candidate
    ref = deq.ck(X) if target == "ck" else deq.ntk(X, trained=trained)
    ev = np.linalg.eigvalsh(ref)
    norm_ref = float(np.max(np.abs(ev)))

    P = _Problem(deq, target, trained, tol)
    P.probe_sq = float(np.mean(np.einsum("ij,ij->i", X, X)))
    if any(f in families for f in ("lrelu", "lrelu3", "mixed", "skip", "scaled")):
        P.kfit = _KernelFit(P, deq, X, seed_ if isinstance(seed_, int) else 0, norm_ref)
    raw: list[Candidate] = []
    for fam in families:
        if fam in ("mixed", "skip", "scaled") and P.base is None:
            raw.append(P.candidate(fam, None, "needs a smooth built-in DEQ activation"))
            continue
        raw += _SOLVERS[fam](P)

    cands = []
    for c in raw:
        if c.net is None:
            cands.append(c)
            continue
        K = c.net.ck(X) if target == "ck" else c.net.ntk(X, trained=trained)
        dist, gap = _compare(ref, K, ev, norm_ref)
        cands.append(
            Candidate(c.family, c.net, c.achieved, c.residual, c.matched, dist, gap, c.note)
        )

    usable = [c for c in cands if c.net is not None and math.isfinite(c.distance)]
    if not usable:
        raise RuntimeError(
            f"design_explicit: family {family!r} produced no net for {deq!r}: "
            + "; ".join(c.note for c in cands)
        )
    matched = [c for c in usable if c.matched]
    exact = min(matched, key=lambda c: c.distance) if matched else None
    closest = min(usable, key=lambda c: c.distance)
    if exact is not None and exact.distance <= closest.distance * (1.0 + _TIE):
        closest = exact  # as close (a tie): the matched one
    note = ""
    if exact is None:
        best = closest if not matched_only else min(usable, key=lambda c: c.residual)
        note = (
            f"no family matched the {target.upper()} coefficients within tol={tol:g}; "
            f"{'closest' if not matched_only else 'smallest residual'} is {best.family!r} "
            f"(residual {best.residual:.2e}, distance {best.distance:.3g})"
        )
        warnings.warn(f"design_explicit: {note} — the net's kernel is NOT the DEQ's", DesignWarning,
                      stacklevel=2)  # fmt: skip
    elif matched_only or exact is closest:
        best = exact
        if exact is not closest:
            note = (
                f"matched_only: {closest.family!r} ({closest.note}) is closer on this probe "
                f"({closest.distance:.3g} vs {exact.distance:.3g}) but does not match the "
                f"coefficients (residual {closest.residual:.2e})"
            )
    else:
        best = closest
        note = (
            f"closest at this n, p; not matched (residual {closest.residual:.2e}), so not exact "
            f"as p → ∞. Asymptotically exact (matched): {exact.family!r} at distance "
            f"{exact.distance:.3g} (matched_only=True picks it)"
        )
    assert best.net is not None and best.achieved is not None
    message = (
        f"{best.family!r} matches the DEQ's {target.upper()} coefficients (residual "
        f"{best.residual:.2e} <= tol={tol:g})"
        if best.matched
        else f"{best.family!r} does not match the DEQ's {target.upper()} coefficients (residual "
        f"{best.residual:.2e} > tol={tol:g})"
    ) + (f"; {note}" if note else "")
    return DesignResult(
        net=best.net, family=best.family, kernel=target, trained=trained,
        target_coefficients=P.coef, achieved=best.achieved, residual=best.residual,
        converged=best.matched, status="matched" if best.matched else "unmatched",
        message=message, iterations=len(cands), distance=best.distance, eigen_gap=best.eigen_gap,
        candidates=tuple(cands), probe_shape=(int(X.shape[0]), int(X.shape[1])), tol=tol,
        deq=deq, note=note or best.note, matched_only=matched_only,
        closest=closest, exact=exact,
    )  # fmt: skip
