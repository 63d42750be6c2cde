"""Random-feature classification: the authors' training experiment (:ref:`§5 <theory-5>`).

The hidden weights of a network are drawn at random and frozen; only a linear
read-out on the last hidden layer is trained.  With features scaled as
``Φ = h / √m`` (so that ``ΦΦᵀ`` is the network's empirical conjugate kernel),
the ridge read-out

    W = argmin ‖Φ_train W − Y‖_F² + λ ‖W‖_F²,     Y = 2·onehot − 1

tends, as the width ``m → ∞``, to kernel ridge regression with the exact CK,
``f(x) = K(x, X_train) (K_train + λ I)⁻¹ Y`` — which :func:`kernel_ridge_accuracy`
computes directly (no intercept in either, so the limit is exact).  The
multinomial logistic read-out (L-BFGS, an unpenalised intercept and
``(λ/2)‖W‖_F²``) is the other classical choice.

:func:`random_feature_accuracy` is generic in the feature map
``feature_fn(X, width, seed) -> (n, width)``; the factories
:func:`deq_features` (finite-width DEQ equilibrium ``φ(z*)``),
:func:`explicit_features` (an :class:`~deqfast.explicit.ExplicitNet`, e.g. a
designed one) and :func:`relu_features` (plain one-layer ReLU, the baseline)
provide the maps of the paper's comparison, and :func:`relu_kernel` the
baseline's infinite-width kernel.

The ten-class experiment of the paper: :func:`paper_models` builds the
authors' six models (ReLU and tanh DEQs, the designed L-ReLU and H-tanh nets,
the undesigned ReLU and tanh nets) with their exact kernels;
:func:`classification_grid` trains the read-outs of scikit-learn's
``LogisticRegression`` (cross-entropy, the authors' loss; same objective, a
preconditioned solver) and ``RidgeClassifier`` on the same features for every
model, width and seed, adds each model's exact-kernel ridge accuracy (the
``m → ∞`` limit) and returns a :class:`ClassificationResult`;
:func:`inference_timing` measures the per-sample cost of a DEQ against an
explicit net of the same width (:class:`InferenceTiming`).
"""

from __future__ import annotations

from deqfast.random_features._grid import (
    PAPER_WIDTHS,
    ClassificationResult,
    FeatureModel,
    classification_grid,
    kernel_limits,
    paper_models,
)
from deqfast.random_features._grid import (
    KernelFn as KernelFn,
)
from deqfast.random_features._maps import (
    FeatureFn as FeatureFn,
)
from deqfast.random_features._maps import (
    deq_features,
    explicit_features,
    relu_features,
    relu_kernel,
)
from deqfast.random_features._readouts import (
    GRID_READOUTS,
    fit_readout,
    kernel_ridge_accuracy,
)
from deqfast.random_features._sweep import (
    RandomFeatureResult,
    accuracy_rows,
    accuracy_table,
    random_feature_accuracy,
)
from deqfast.random_features._timing import (
    InferenceTiming,
    inference_timing,
)

__all__ = [
    "GRID_READOUTS",
    "PAPER_WIDTHS",
    "ClassificationResult",
    "FeatureModel",
    "InferenceTiming",
    "RandomFeatureResult",
    "accuracy_rows",
    "accuracy_table",
    "classification_grid",
    "deq_features",
    "explicit_features",
    "fit_readout",
    "inference_timing",
    "kernel_limits",
    "kernel_ridge_accuracy",
    "paper_models",
    "random_feature_accuracy",
    "relu_features",
    "relu_kernel",
]

# The public names are documented, pickled and shown as members of this module, whichever
# private module defines them.
for _name in __all__:
    _obj = globals()[_name]
    if callable(_obj):  # classes and functions; the constants are plain tuples
        _obj.__module__ = __name__
del _name, _obj
