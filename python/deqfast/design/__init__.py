"""Design a not-so-deep explicit net with a DEQ's kernel (:ref:`§5 <theory-5>`).

Given a :class:`~deqfast.DEQ`, find activations so that an :class:`ExplicitNet`'s CK
(or NTK) is close to the DEQ's **exact** kernel on a probe sample, with its surrogate
coefficients ``(d, c1, c2, c3)`` equal to the DEQ's where the family allows — matching
the four coefficients makes a design asymptotically exact but does not make it close
at a given n, p (:ref:`§5 <theory-5>`). Families:

``"lrelu"``
    Two hidden layers of ``s₊ max(t,0) + s₋ min(t,0)`` minus centring (the authors'
    L-ReLU net). The slopes are found by Levenberg–Marquardt from several starts. The
    family is positively homogeneous, so scaling layer 1 by ``λ`` and layer 2 by
    ``1/λ`` leaves every kernel unchanged: only three of the four slopes are free and
    the four equations are met only when the target lies on that 3-dimensional set —
    it does for a ReLU DEQ's CK (exactly, and the kernels agree far beyond the
    matched orders), not for its NTK or for smooth activations. The reported net is
    normalised so that layer 1 preserves the input level (``d_1 = τ0²``).
``"clip"``
    One hidden layer ``a·clip(t, −c, c)`` (two parameters for ``d`` and ``c1``); exact
    for odd DEQ activations (``c2 = c3 = 0``), e.g. tanh.
``"hermite"``
    ``σ1(t) = c12 (t² − τ0²) + c11 t`` and
    ``σ2(t) = c22 (t² − τ1²) + c21 t + c23 τ1³ He3(t/τ1)``. Layer 1's scale is a gauge
    (the exact kernels do not change when layer 1 is scaled by ``λ`` and ``t → t/λ`` in
    layer 2), fixed by ``τ1 = τ0``; the three off-diagonal equations then reduce to one
    scalar equation in ``x = c11²`` whose roots are enumerated, the cubic term meets the
    diagonal (it adds to ``d`` only), and the sign of ``c23`` relative to ``c21`` gives a
    second branch. Every branch is exact; the one whose exact kernel is closest to the
    DEQ's on the probe is returned. Some NTK targets have a diagonal *below* what any
    two-hidden-layer net with fixed input weights can reach (for every layer 1 and
    layer 2, ``d ≥ C1 τ0²/x + …``); then a third quadratic layer is inserted
    (quadratic, quadratic, quadratic + cubic), which matches them, and the result says so.
``"lrelu3"``
    Three L-ReLU layers. Six slopes less two homogeneity gauges leave four free
    parameters, enough for the four equations of a ReLU DEQ's NTK (either convention),
    while the kernels stay arc-cosine compositions. The slopes are first fitted to the
    DEQ's kernel function on probe rows (see below), then the four equations are met
    from there (trust-region least squares); both are candidates.
``"mixed"``
    ``[α t + β φ(γ t) + δ (t² − τ0²), φ]`` with ``φ`` the DEQ's own (smooth, built-in)
    activation: the first layer mimics the DEQ's pre-activation kernel
    ``S* = σ_b² XXᵀ + σ_a² F_φ(S*)`` (a linear part plus a ``φ`` part, like one step of
    the equilibrium iteration), the second applies ``φ`` itself, so the CK is
    ``F_φ`` of a kernel close to ``S*`` — close to ``G* = F_φ(S*)`` far beyond the
    matched orders. The first layer is the degree-8 Hermite projection of the mixed
    function at scale τ0 (a polynomial activation: its exact kernels are finite Mehler
    series; higher degrees diverge on samples whose norm is far from τ0). Its
    parameters are fitted to the kernel function (coefficients weighted in); it is
    matched only when that fit meets the equations.
``"skip"``
    The mixed layer, then ``φ`` with an input skip (``ExplicitNet(..., input_skip=s)``:
    ``s Uᵀ x`` with fixed ``U`` added to the φ layer's pre-activation, like the DEQ's
    injection ``σ_b B x``). Its NTK ``F_φ(S₂) + F_φ'(S₂) ∘ K₁`` with ``S₂ = K₁ + s² XXᵀ``
    has the DEQ's structure ``G* + Ġ* ∘ σ_a² K*``: the fixed skip carries the linear part
    that the tangent term must not see, which a φ-topped net without it cannot do (its
    tangent term carries all of ``S₂``). Five parameters (four for odd ``φ``) for four
    equations: the kernel fit, the kernel-led fit and the matched net from the kernel fit.
``"scaled"``
    ``[γ t, φ, a t]``: the DEQ's own activation at input scale ``γ`` with output scale
    ``a`` (two linear layers around it). Two parameters for ``d`` and ``c1``: matched
    for odd DEQ activations (``c2 = c3 = 0``). Its CK ``a² F_φ(γ² XXᵀ)`` follows
    ``G* = F_φ(S*)`` closely because ``S*`` is near a multiple of ``XXᵀ`` where the data
    lie (tanh CK at p = 1024: 3.4e-4 matched, against 3.3e-3 for ``clip``); its NTK is
    that of the three-layer net, ``a² (2 F_φ(S₂) + F_φ'(S₂) ∘ S₂)``, ``S₂ = γ² XXᵀ``.
``"relu"``
    The plain two-layer ReLU net a user would otherwise pick, with only its output
    scale set to the target's diagonal level ``d`` (unfitted otherwise): the baseline.
``"authors"``
    The authors' published design (repository ``StephenLi24/INN_eqvi_ENN``,
    ``two_layer_lrelu.py`` and ``one_layer_tanh.py``), reimplemented: the CK equations
    (1) ``c1``, (2) ``c2``, (3) ``c3``, (4) ``d − c1 τ0²``, their squares summed and
    minimised by SLSQP (``tol=1e-10``) from their starting points, for two L-ReLU layers
    (clip for odd activations), with σ_a² hard-coded to 0.3 (clip: 0.1) and ``τ0`` set to
    the mean of ``diag(XXᵀ)``, i.e. τ0², as their scripts do; a second candidate runs
    the same procedure with the DEQ's own σ_a² and τ0. Both are CK designs (scored on
    the NTK too when that is the target).
``"auto"``
    Every family above.

Kernel fits. ``lrelu`` (a second candidate), ``lrelu3``, ``mixed`` and ``skip`` minimise the
entries of ``K_net − K_DEQ`` on 64 probe rows, weighted so that the residual's norm
estimates the relative operator-norm distance on the whole probe, plus the relative
coefficient residual with weight 10³ (one OpenMP thread: the problems are small). From
that fit (and from the coefficient fit of ``scaled``) a second, kernel-led fit with
coefficient weight 0.1 gives one more candidate: closer on the probe, not matched.

Selection. Every candidate is judged by the exact-kernel relative operator-norm
distance to the DEQ's ``G*`` (or NTK) on the probe — the user's own data when given —
and the closest is chosen; the coefficient residual is reported beside it. The result
names the closest candidate and the closest *matched* one (asymptotically exact: its
surrogate is the DEQ's, so its distance vanishes as ``n, p → ∞``) and says which was
chosen; ``matched_only=True`` chooses among matched candidates only.

If no candidate matches, the result says so (``converged=False``) and a
:class:`DesignWarning` is emitted; an unmatched choice is always labelled as such.
"""

from __future__ import annotations

from deqfast.design._authors import AUTHORS_SIGMA_A2 as AUTHORS_SIGMA_A2
from deqfast.design._families import mixed_activation
from deqfast.design._problem import relative_residual as relative_residual
from deqfast.design._result import Candidate, DesignResult, DesignWarning
from deqfast.design._select import FAMILIES, design_explicit
from deqfast.design._select import default_probe as default_probe

__all__ = [
    "FAMILIES",
    "Candidate",
    "DesignResult",
    "DesignWarning",
    "design_explicit",
    "mixed_activation",
]

# documented here, where users import them from (the submodules are private);
# AUTHORS_SIGMA_A2, default_probe and relative_residual are importable, not in __all__
for _obj in (Candidate, DesignResult, DesignWarning, default_probe, design_explicit,
             mixed_activation, relative_residual):  # fmt: skip
    _obj.__module__ = __name__
del _obj
