"""scikit-learn estimators: infinitely wide DEQs and explicit nets, and their random features.

Predictors with an exact infinite-width kernel (:ref:`§3 <theory-3>` for the DEQ, §5 for the
explicit net). ``kernel="ck"`` is the conjugate kernel (NNGP) ``G*``; ``kernel="ntk"`` the
neural tangent kernel ``K*`` (``trained="hidden"``: hidden weights and read-out trained,
the paper's convention) or ``Θ*`` (``trained="all"``). With ``Θ`` the kernel on the
training set ``X`` and ``λ = ridge``, the prediction at a time ``t`` of gradient flow on
the squared loss ``L = ‖f(X) − Y‖²_F / (2 N)``, ``N = Y.size``, started from the mean
output ``f_0 = 0`` of the infinitely wide network, is (neural-tangents'
``predict.gradient_descent_mse`` with ``diag_reg_absolute_scale=True``)

    f_t(x) = Θ(x, X) (Θ + λI)⁻¹ (I − exp(−η (Θ + λI) t / N)) Y,

computed through one eigendecomposition of ``Θ + λI`` (``η = learning_rate``). At
``t = ∞`` (the default) it is kernel ridge regression ``Θ(x, X)(Θ + λI)⁻¹ Y`` (a Cholesky
solve, or conjugate gradients on tiles written to disk when the training kernel is too
large for memory, see ``solver``). With ``kernel="ck"`` the same flow is that of a
network whose read-out alone is trained (the CK is that network's NTK), and at ``t = ∞``
it is the NNGP posterior mean.

:class:`DEQKernelRegressor`, :class:`DEQKernelClassifier`
    The DEQ ``deqfast.DEQ(activation, sigma_a2=..., sigma_b2=..., tau0=...)``.
:class:`ExplicitKernelRegressor`, :class:`ExplicitKernelClassifier`
    The explicit net designed for that DEQ by :func:`deqfast.design_explicit` (for the
    kernel in use), so that the DEQ-vs-explicit comparison is one
    ``cross_val_score`` each.
:class:`DEQRandomFeatures`, :class:`ExplicitRandomFeatures`
    Finite-width random features (the equilibrium ``φ(z*)/√m`` of a width-``m`` DEQ; the
    last hidden layer ``h_L/√m`` of the designed net) for a ``Pipeline`` with any
    scikit-learn classifier or regressor.

The input scale ``tau0`` centres the activations (:ref:`§2 <theory-2>`–:ref:`§4 <theory-4>`). With
``tau0="auto"`` (default) it is estimated in ``fit`` as ``√(mean_i ‖x_i‖²)`` over the
training samples — the level at which every ``‖x_i‖²`` concentrates for mixture data
(:ref:`§1 <theory-1>`; 1 for data prepared by :func:`deqfast.datasets.prepare`) — and kept as the
fitted attribute ``tau0_``; pass a number to fix it.

The classifiers regress one-vs-all targets (``+1`` for the class, ``−1`` otherwise; a
single column for two classes) and predict the class of the largest score
(``decision_function``). They have no ``predict_proba``: the scores of a kernel
regression are not probabilities (not in [0, 1], not calibrated), and a softmax of them
would only look like one. For probabilities, calibrate the scores on held-out data with
``sklearn.calibration.CalibratedClassifierCV(DEQKernelClassifier(...))``.
"""

from __future__ import annotations

__size_reason__ = (
    "the scikit-learn face of deqfast: six estimators built on one base class, one parameter "
    "check and one design cache, whose docstrings are assembled from shared parts; splitting "
    "the predictors from the random features would split that shared vocabulary"
)

import math
import numbers
import warnings
from typing import Any

import numpy as np
import scipy.linalg
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    RegressorMixin,
    TransformerMixin,
)
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from deqfast._validation import check_choice, check_in_range, check_integer, check_positive
from deqfast._vocabulary import check_kernel
from deqfast.deq import DEQ
from deqfast.design import DesignResult, DesignWarning, design_explicit

__all__ = [
    "DENSE_MAX_SAMPLES",
    "DEQKernelClassifier",
    "DEQKernelRegressor",
    "DEQRandomFeatures",
    "ExplicitKernelClassifier",
    "ExplicitKernelRegressor",
    "ExplicitRandomFeatures",
]

#: ``solver="auto"`` solves densely up to this many training samples (a 2 GiB float64
#: kernel) and by out-of-core conjugate gradients above it.
DENSE_MAX_SAMPLES = 16384

#: The kernels an estimator can use (both the DEQ's and an explicit net's exist).
_KERNELS = ("ck", "ntk")
_SOLVERS = ("auto", "dense", "cg")
_FAMILIES = ("auto", "lrelu", "clip", "hermite", "relu")


# --------------------------------------------------------------------------- #
# shared pieces
# --------------------------------------------------------------------------- #
def _tau0(tau0: Any, X: np.ndarray) -> float:
    """``tau0`` as given, or ``√(mean ‖x_i‖²)`` of the training samples for ``"auto"``."""
    if isinstance(tau0, str):
        check_choice(tau0, "tau0", ("auto",))
        value = math.sqrt(float(np.mean(np.einsum("ij,ij->i", X, X))))
        if not value > 0:
            raise ValueError("tau0='auto' needs training samples that are not all zero")
        return value
    return check_positive(tau0, "tau0")


def _make_deq(est: Any, tau0: float) -> DEQ:
    return DEQ(est.activation, sigma_a2=est.sigma_a2, sigma_b2=est.sigma_b2, tau0=tau0)


#: Designs already made, keyed by everything :func:`design_explicit` depends on (the
#: result is immutable), so a grid search or cross-validation at a fixed ``tau0`` designs
#: each net once.
_DESIGNS: dict[tuple[Any, ...], DesignResult] = {}
_DESIGN_CACHE_SIZE = 64


def _design(deq: DEQ, kernel: str, trained: str, family: str) -> DesignResult:
    key = (deq.activation, deq.sigma_a2, deq.sigma_b2, deq.tau0, kernel, trained, family)
    res = _DESIGNS.get(key)
    if res is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DesignWarning)  # re-issued by the caller
            res = design_explicit(deq, kernel=kernel, trained=trained, family=family)
        if len(_DESIGNS) >= _DESIGN_CACHE_SIZE:
            _DESIGNS.pop(next(iter(_DESIGNS)))
        _DESIGNS[key] = res
    if res.exact is None:  # no candidate matched (an unmatched closest one is expected)
        warnings.warn(
            f"design_explicit: {res.note} — the explicit net's kernel is NOT the DEQ's",
            DesignWarning,
            stacklevel=3,
        )
    return res


def _flow_coefficients(
    K: np.ndarray, Y: np.ndarray, ridge: float, t: float, learning_rate: float
) -> np.ndarray:
    """``(K + λI)⁻¹ (I − exp(−η (K + λI) t / N)) Y`` with ``N = Y.size``.

    At ``t = ∞`` it is ``(K + λI)⁻¹ Y`` (Cholesky); otherwise one eigendecomposition.
    """
    A = 0.5 * (K + K.T)
    A[np.diag_indices_from(A)] += ridge
    if math.isinf(t):
        try:
            return scipy.linalg.cho_solve(scipy.linalg.cho_factor(A, lower=True), Y)
        except np.linalg.LinAlgError:
            raise ValueError(
                f"the training kernel plus ridge={ridge:g} is not numerically positive definite "
                "(duplicated samples or too small a ridge); increase ridge"
            ) from None
    w, V = scipy.linalg.eigh(A)
    w = np.maximum(w, 0.0)  # a PSD kernel: negative eigenvalues are rounding
    tau = learning_rate * t / Y.size
    # (1 − e^{−w τ}) / w, continued by its limit τ at w = 0
    g = np.full_like(w, tau)
    pos = w * tau > 0
    g[pos] = -np.expm1(-w[pos] * tau) / w[pos]
    return V @ (g.reshape(-1, *([1] * (Y.ndim - 1))) * (V.T @ Y))


def _check_kernel_params(est: Any) -> dict[str, Any]:
    """Validate the kernel-predictor hyper-parameters (in ``fit``, as scikit-learn requires)."""
    t = est.t
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Real) or not float(t) >= 0:
        raise ValueError(f"t must be a number in [0, inf] (inf: kernel regression); got {t!r}")
    kernel, trained = check_kernel(est.kernel, est.trained, allowed=_KERNELS)
    return dict(
        kernel=kernel,
        trained=trained,
        ridge=check_positive(est.ridge, "ridge", allow_zero=True),
        t=float(t),
        learning_rate=check_positive(est.learning_rate, "learning_rate"),
        solver=check_choice(est.solver, "solver", _SOLVERS),
        cg_tol=check_in_range(est.cg_tol, "cg_tol", 0.0, 1.0, inclusive=False),
        cg_block=check_integer(est.cg_block, "cg_block", min_value=8),
    )


_PREDICTOR_PARAMS = """
    Parameters
    ----------
    activation : str or Activation, default "relu"
        The DEQ's activation: a name from :data:`deqfast.activations.NAMES` or an
        :class:`~deqfast.activations.Activation`.
    sigma_a2 : float, default 0.2
        Variance ``σ_a²`` of the DEQ's hidden weights.
    sigma_b2 : float or None, default None
        Variance ``σ_b²`` of its input weights (``None``: ``1 − σ_a²``).
    tau0 : "auto" or float, default "auto"
        Input scale centring the activations; ``"auto"``: ``√(mean ‖x_i‖²)`` of the
        training samples (module docstring).
    kernel : {"ck", "ntk"}, default "ntk"
        Conjugate kernel (NNGP) or neural tangent kernel.
    trained : {"hidden", "all"}, default "hidden"
        NTK convention: input weights fixed (the paper's) or trained too.
    ridge : float, default 1e-3
        ``λ ≥ 0`` added to the diagonal of the training kernel (absolute scale, as
        neural-tangents' ``diag_reg`` with ``diag_reg_absolute_scale=True``).
    t : float, default inf
        Training time of the gradient flow; ``inf`` is kernel ridge regression.
    learning_rate : float, default 1.0
        ``η``; only the product ``η t`` matters.
    solver : {"auto", "dense", "cg"}, default "auto"
        ``"dense"``: Cholesky (``t = ∞``) or eigendecomposition (finite ``t``) of the
        ``n × n`` training kernel in memory. ``"cg"`` (``t = ∞`` only): the kernel is
        written in ``cg_block × cg_block`` tiles to a temporary zarr store by
        :func:`deqfast.distributed.kernels_blocked` and ``(K + λI)α = Y`` is solved by
        :func:`deqfast.distributed.conjugate_gradient` on the Dask scheduler in use
        (create a ``dask.distributed.Client`` first to use a cluster); the solver report
        is kept as ``cg_result_``; DEQ estimators only. ``"auto"``: ``"cg"`` for a DEQ
        estimator when ``t = ∞`` and there are more than :data:`DENSE_MAX_SAMPLES`
        training samples, else ``"dense"``.
    cg_tol : float, default 1e-10
        Relative residual at which conjugate gradients stop.
    cg_block : int, default 2048
        Tile edge for ``solver="cg"``.
"""

_PREDICTOR_ATTRIBUTES = """
    Attributes
    ----------
    tau0_ : float
        The input scale used.
    model_ : DEQ or ExplicitNet
        The network whose kernel is used.
    X_fit_ : ndarray of shape (n_samples, n_features)
        Training samples (the kernel ``Θ(x, X)`` of new samples needs them).
    dual_coef_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        ``(Θ + λI)⁻¹ (I − exp(−η(Θ + λI)t/N)) Y``: predictions are ``Θ(x, X) dual_coef_``.
    solver_ : str
        ``"dense"`` or ``"cg"``.
    cg_result_ : CGResult or None
        The conjugate-gradient report (iterations, relative residual) with ``"cg"``.
    n_features_in_ : int
        Number of features seen in ``fit``.
"""


class _KernelPredictor(BaseEstimator):
    """Fit and scores shared by the infinite-width regressors and classifiers."""

    _explicit = False

    def __init__(
        self,
        activation: Any = "relu",
        *,
        sigma_a2: float = 0.2,
        sigma_b2: float | None = None,
        tau0: Any = "auto",
        kernel: str = "ntk",
        trained: str = "hidden",
        ridge: float = 1e-3,
        t: float = math.inf,
        learning_rate: float = 1.0,
        solver: str = "auto",
        cg_tol: float = 1e-10,
        cg_block: int = 2048,
    ) -> None:
        self.activation = activation
        self.sigma_a2 = sigma_a2
        self.sigma_b2 = sigma_b2
        self.tau0 = tau0
        self.kernel = kernel
        self.trained = trained
        self.ridge = ridge
        self.t = t
        self.learning_rate = learning_rate
        self.solver = solver
        self.cg_tol = cg_tol
        self.cg_block = cg_block

    def _model(self, tau0: float, kernel: str, trained: str) -> Any:
        return _make_deq(self, tau0)

    def _gram(self, A: np.ndarray, B: np.ndarray | None = None) -> np.ndarray:
        if self.kernel_ == "ck":
            return np.asarray(self.model_.ck(A, B))
        return np.asarray(self.model_.ntk(A, B, trained=self.trained_))

    def _fit_targets(self, X: np.ndarray, Y: np.ndarray) -> None:
        p = _check_kernel_params(self)
        n = X.shape[0]
        solver = p["solver"]
        if solver == "auto":
            large = math.isinf(p["t"]) and n > DENSE_MAX_SAMPLES
            solver = "cg" if (large and not self._explicit) else "dense"
        if solver == "cg":
            if not math.isinf(p["t"]):
                raise ValueError(
                    "solver='cg' solves kernel regression (t=inf); a finite t needs the "
                    "eigendecomposition of the training kernel (solver='dense')"
                )
            if self._explicit:
                raise ValueError(
                    "solver='cg' is available for the DEQ estimators (their kernel tiles are "
                    "written by deqfast.distributed.kernels_blocked); use solver='dense'"
                )
        self.tau0_ = _tau0(self.tau0, X)
        self.kernel_, self.trained_ = p["kernel"], p["trained"]
        self.model_ = self._model(self.tau0_, p["kernel"], p["trained"])
        self.X_fit_ = X
        self.solver_ = solver
        self.cg_result_ = None
        if solver == "dense":
            self.dual_coef_ = _flow_coefficients(
                self._gram(X), Y, p["ridge"], p["t"], p["learning_rate"]
            )
            return
        from deqfast.distributed import kernel_ridge_cg

        self.cg_result_ = kernel_ridge_cg(
            self.model_, X, Y, ridge=p["ridge"], kernel=p["kernel"], trained=p["trained"],
            block=p["cg_block"], tol=p["cg_tol"],
        )  # fmt: skip
        self.dual_coef_ = self.cg_result_.x

    def _scores(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._gram(X, self.X_fit_) @ self.dual_coef_


class _ExplicitMixin:
    """Replace the DEQ by the explicit net designed for it (for the kernel in use)."""

    _explicit = True

    def _model(self, tau0: float, kernel: str, trained: str) -> Any:
        family = check_choice(self.family, "family", _FAMILIES)  # type: ignore[attr-defined]
        deq = _make_deq(self, tau0)
        self.design_ = _design(deq, kernel, trained, family)
        return self.design_.net


def _explicit_init(cls: type) -> type:
    """Give an explicit-net estimator the DEQ estimator's ``__init__`` plus ``family``."""

    def __init__(
        self: Any,
        activation: Any = "relu",
        *,
        sigma_a2: float = 0.2,
        sigma_b2: float | None = None,
        tau0: Any = "auto",
        kernel: str = "ntk",
        trained: str = "hidden",
        family: str = "auto",
        ridge: float = 1e-3,
        t: float = math.inf,
        learning_rate: float = 1.0,
        solver: str = "auto",
        cg_tol: float = 1e-10,
        cg_block: int = 2048,
    ) -> None:
        _KernelPredictor.__init__(
            self, activation, sigma_a2=sigma_a2, sigma_b2=sigma_b2, tau0=tau0, kernel=kernel,
            trained=trained, ridge=ridge, t=t, learning_rate=learning_rate, solver=solver,
            cg_tol=cg_tol, cg_block=cg_block,
        )  # fmt: skip
        self.family = family

    cls.__init__ = __init__  # type: ignore[misc]
    return cls


_FAMILY_PARAM = """    family : {"auto", "lrelu", "clip", "hermite", "relu"}, default "auto"
        Explicit-net family for :func:`deqfast.design_explicit` (``"auto"`` tries all;
        one family designs faster). Designs are cached per ``(DEQ, kernel, trained,
        family)``; a design that does not match the DEQ's kernel warns (``DesignWarning``).
"""
_DESIGN_ATTRIBUTE = """    design_ : DesignResult
        The design (family, coefficient residual, exact-kernel distance on a probe).
"""
_CLASSIFIER_NOTE = """
    The targets are one-vs-all ``±1`` (one column for two classes). There is no
    ``predict_proba`` (the scores are not probabilities; module docstring): wrap the
    classifier in ``sklearn.calibration.CalibratedClassifierCV`` for calibrated ones.
"""
_CLASSES_ATTRIBUTE = """    classes_ : ndarray of shape (n_classes,)
        The class labels.
"""


def _predictor_doc(
    summary: str, *, classifier: bool = False, explicit: bool = False, examples: str = ""
) -> str:
    """A predictor's docstring: its summary, then the shared parameter and attribute
    sections (the classifier note and ``classes_``, the family and ``design_`` of the
    explicit-net ones), then its examples."""
    return (
        summary
        + (_CLASSIFIER_NOTE if classifier else "")
        + _PREDICTOR_PARAMS
        + (_FAMILY_PARAM if explicit else "")
        + _PREDICTOR_ATTRIBUTES
        + (_DESIGN_ATTRIBUTE if explicit else "")
        + (_CLASSES_ATTRIBUTE if classifier else "")
        + examples
    )


# --------------------------------------------------------------------------- #
# regressors
# --------------------------------------------------------------------------- #
class _RegressorBase(RegressorMixin, _KernelPredictor):
    def fit(self, X: Any, y: Any) -> Any:
        """Fit on ``X`` of shape ``(n_samples, n_features)`` and targets ``y`` of shape
        ``(n_samples,)`` or ``(n_samples, n_targets)``; returns ``self``."""
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        self._fit_targets(X, np.asarray(y, dtype=np.float64))
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions ``f_t(x)``, shaped ``(n,)`` or ``(n, n_targets)`` like ``y`` in ``fit``."""
        return self._scores(X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class DEQKernelRegressor(_RegressorBase):
    __doc__ = _predictor_doc(
        """Prediction of an infinitely wide DEQ trained on the squared loss (kernel regression
    with its exact CK or NTK at ``t = ∞``; module docstring).
""",
        examples="""
    Examples
    --------
    >>> import numpy as np
    >>> from deqfast.estimators import DEQKernelRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((40, 5)) / np.sqrt(5)
    >>> y = np.sin(3 * X[:, 0])
    >>> reg = DEQKernelRegressor("relu", sigma_a2=0.2, kernel="ntk").fit(X, y)
    >>> float(np.abs(reg.predict(X) - y).max()) < 0.05
    True
    """,
    )


@_explicit_init
class ExplicitKernelRegressor(_ExplicitMixin, _RegressorBase):
    __doc__ = _predictor_doc(
        """:class:`DEQKernelRegressor` with the explicit net designed for the DEQ
    (:func:`deqfast.design_explicit`, for the kernel in use).
""",
        explicit=True,
    )


# --------------------------------------------------------------------------- #
# classifiers
# --------------------------------------------------------------------------- #
class _ClassifierBase(ClassifierMixin, _KernelPredictor):
    def fit(self, X: Any, y: Any) -> Any:
        """Fit on ``X`` of shape ``(n_samples, n_features)`` and class labels ``y``;
        returns ``self``."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        binarizer = LabelBinarizer(neg_label=-1, pos_label=1)
        Y = binarizer.fit_transform(y).astype(np.float64)
        if binarizer.classes_.size < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes; got 1 class "
                f"({binarizer.classes_[0]!r})"
            )
        self.classes_ = binarizer.classes_
        self._fit_targets(X, Y)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """One-vs-all scores ``f_t(x)``: shape ``(n,)`` for two classes (positive means
        ``classes_[1]``), else ``(n, n_classes)``."""
        s = self._scores(X)
        return s[:, 0] if s.shape[1] == 1 else s

    def predict(self, X: Any) -> np.ndarray:
        """The class with the largest one-vs-all score."""
        s = self.decision_function(X)
        idx = (s > 0).astype(int) if s.ndim == 1 else np.argmax(s, axis=1)
        return self.classes_[idx]


class DEQKernelClassifier(_ClassifierBase):
    __doc__ = _predictor_doc(
        """Classifier from an infinitely wide DEQ trained on one-vs-all squared loss.
""",
        classifier=True,
        examples="""
    Examples
    --------
    >>> import deqfast as df
    >>> from sklearn.model_selection import cross_val_score
    >>> from deqfast.estimators import DEQKernelClassifier
    >>> data = df.datasets.load_digits((3, 8), n_per_class=60, seed=0)
    >>> scores = cross_val_score(DEQKernelClassifier("relu"), data.X, data.labels, cv=3)
    >>> bool(scores.mean() > 0.9)
    True
    """,
    )


@_explicit_init
class ExplicitKernelClassifier(_ExplicitMixin, _ClassifierBase):
    __doc__ = _predictor_doc(
        """:class:`DEQKernelClassifier` with the explicit net designed for the DEQ
    (:func:`deqfast.design_explicit`, for the kernel in use).
""",
        classifier=True,
        explicit=True,
    )


# --------------------------------------------------------------------------- #
# random-feature transformers
# --------------------------------------------------------------------------- #
class _RandomFeaturesBase(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    def fit(self, X: Any, y: Any = None) -> Any:
        """Set ``tau0_``, the network and the seed of its random weights; returns ``self``."""
        X = validate_data(self, X, dtype=np.float64)
        width = check_integer(self.width, "width", min_value=1)
        self.tau0_ = _tau0(self.tau0, X)
        self.model_ = self._model(self.tau0_)
        # the weights are redrawn from this seed at every transform: the same network each time
        self.seed_ = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self._n_features_out = width
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Random features of ``X``, shape ``(n_samples, width)``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._features(X)


class DEQRandomFeatures(_RandomFeaturesBase):
    """Equilibrium features ``φ(z*(x))/√m`` of a width-``m`` DEQ with random weights.

    The DEQ ``z = (σ_a/√m) Ã φ(z) + σ_b B x`` (:ref:`§3 <theory-3>`) with ``Ã``, ``B`` drawn once
    per ``fit`` (from ``random_state``) and solved for each batch by
    :func:`deqfast.finite.forward` (Anderson acceleration); the features are
    :func:`deqfast.random_features.deq_features`. As ``m → ∞``, ``F Fᵀ`` tends to the
    exact CK ``G*``, so a ridge read-out on these features tends to
    ``DEQKernelClassifier(kernel="ck")``.

    Parameters
    ----------
    width : int, default 256
        Width ``m`` (the number of features).
    activation, sigma_a2, sigma_b2, tau0
        As in :class:`DEQKernelClassifier`.
    tol : float, default 1e-10
        Relative residual of the equilibrium solve; the solve is batched, so the
        features of a sample depend on the batch it comes in only below about ``tol``.
    random_state : None, int or RandomState, default None
        Seeds the weights (drawn with ``numpy.random.default_rng(seed_)``).

    Attributes
    ----------
    tau0_ : float
    model_ : DEQ
    seed_ : int
        Seed of the weights used by every ``transform``.
    n_features_in_ : int

    Examples
    --------
    >>> import deqfast as df
    >>> from sklearn.linear_model import RidgeClassifier
    >>> from sklearn.pipeline import make_pipeline
    >>> from deqfast.estimators import DEQRandomFeatures
    >>> data = df.datasets.load_digits((3, 8), n_per_class=60, seed=0)
    >>> pipe = make_pipeline(DEQRandomFeatures(width=128, random_state=0), RidgeClassifier())
    >>> bool(pipe.fit(data.X, data.labels).score(data.X, data.labels) > 0.9)
    True
    """

    def __init__(
        self,
        width: int = 256,
        *,
        activation: Any = "relu",
        sigma_a2: float = 0.2,
        sigma_b2: float | None = None,
        tau0: Any = "auto",
        tol: float = 1e-10,
        random_state: Any = None,
    ) -> None:
        self.width = width
        self.activation = activation
        self.sigma_a2 = sigma_a2
        self.sigma_b2 = sigma_b2
        self.tau0 = tau0
        self.tol = tol
        self.random_state = random_state

    def _model(self, tau0: float) -> Any:
        check_in_range(self.tol, "tol", 0.0, 1.0, inclusive=False)
        return _make_deq(self, tau0)

    def _features(self, X: np.ndarray) -> np.ndarray:
        from deqfast.random_features import deq_features

        return deq_features(self.model_, tol=self.tol)(X, self.width, self.seed_)


class ExplicitRandomFeatures(_RandomFeaturesBase):
    """Last-hidden-layer features ``h_L(x)/√m`` of the explicit net designed for a DEQ.

    The net is :func:`deqfast.design_explicit` of ``DEQ(activation, sigma_a2, sigma_b2,
    tau0_)`` for the target ``kernel``; every hidden layer has width ``m`` and Gaussian
    weights drawn once per ``fit`` (:meth:`deqfast.ExplicitNet.forward`); the features
    are :func:`deqfast.random_features.explicit_features`. As ``m → ∞``, ``F Fᵀ`` tends
    to the net's exact CK.

    Parameters
    ----------
    width : int, default 256
        Width ``m`` of every hidden layer (the number of features).
    activation, sigma_a2, sigma_b2, tau0
        The DEQ the net is designed for, as in :class:`DEQKernelClassifier`.
    kernel : {"ck", "ntk"}, default "ck"
        The DEQ kernel the design matches.
    trained : {"hidden", "all"}, default "hidden"
        NTK convention of the design.
    family : str, default "auto"
        As in :class:`ExplicitKernelClassifier`.
    random_state : None, int or RandomState, default None
        Seeds the weights.

    Attributes
    ----------
    tau0_ : float
    model_ : ExplicitNet
    design_ : DesignResult
    seed_ : int
    n_features_in_ : int
    """

    def __init__(
        self,
        width: int = 256,
        *,
        activation: Any = "relu",
        sigma_a2: float = 0.2,
        sigma_b2: float | None = None,
        tau0: Any = "auto",
        kernel: str = "ck",
        trained: str = "hidden",
        family: str = "auto",
        random_state: Any = None,
    ) -> None:
        self.width = width
        self.activation = activation
        self.sigma_a2 = sigma_a2
        self.sigma_b2 = sigma_b2
        self.tau0 = tau0
        self.kernel = kernel
        self.trained = trained
        self.family = family
        self.random_state = random_state

    def _model(self, tau0: float) -> Any:
        kernel, trained = check_kernel(self.kernel, self.trained, allowed=_KERNELS)
        family = check_choice(self.family, "family", _FAMILIES)
        self.design_ = _design(_make_deq(self, tau0), kernel, trained, family)
        return self.design_.net

    def _features(self, X: np.ndarray) -> np.ndarray:
        from deqfast.random_features import explicit_features

        return explicit_features(self.model_)(X, self.width, self.seed_)
