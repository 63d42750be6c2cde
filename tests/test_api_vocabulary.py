"""One way to say each thing in the public API.

Every public function and class of deqfast (``deqfast.__all__`` and the ``__all__`` of every
public module) selects a kernel with ``kernel=`` (``"pre"``, ``"ck"``, ``"ntk"``) and
``trained=`` (``"hidden"``, ``"all"``); the old spellings (``kind=``, ``target=``,
``"ntk_all"``) are accepted only through the deprecation shims and warn. Every solver result
has ``converged``, ``status``, ``message``, ``iterations`` and ``residual``; old field names are
read-only properties that warn.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import deqfast as df
from deqfast import _vocabulary as vocab

#: Parameter names that selected a kernel before the vocabulary (``kind``, ``target``) or
#: would re-introduce a second spelling of it.
FORBIDDEN = {"kind", "target", "kernel_kind", "which", "ntk_kind"}

#: Parameters with a forbidden name that do not select a kernel, and why.
EXEMPT = {
    ("deqfast.activations.Activation.__init__", "kind"): "the activation's C++ family",
    ("deqfast.random_features.FeatureModel.__init__", "kind"): "model type: deq or explicit",
    ("deqfast.linalg.lanczos_top", "which"): "largest or smallest eigenvalues (SciPy's name)",
}

#: ``outputs=`` names the matrices one pass stores (S, G, Gdot, K, Theta), not a kernel
#: choice: it belongs to the function that computes them all at once, and nowhere else.
OUTPUTS_ALLOWED = {"deqfast.kernels.compute_kernels"}

#: Solver results and the convention's fields (see deqfast._vocabulary).
RESULT_TYPES = (
    "deqfast.equilibrium.Equilibrium",
    "deqfast.kernels.KernelResult",
    "deqfast.finite.DEQForwardResult",
    "deqfast.linalg.EigenResult",
    "deqfast.design.DesignResult",
    "deqfast.distributed.CGResult",
)

#: Old names of result fields: none may be a dataclass field of a public class any more.
OLD_RESULT_FIELDS = {"steps", "max_error", "max_iterations", "matched"}
#: ``Candidate`` is one row of the design table: ``matched`` is the per-candidate verdict the
#: table prints (``DesignResult.converged`` is the result's).
OLD_FIELD_EXEMPT = {("deqfast.design.Candidate", "matched")}


def _public_modules() -> list[Any]:
    mods = [df]
    for info in pkgutil.iter_modules(df.__path__):
        if not info.name.startswith("_") and info.name != "__main__":
            mods.append(importlib.import_module(f"deqfast.{info.name}"))
    return mods


def _public_names(mod: Any) -> list[str]:
    names = getattr(mod, "__all__", None)
    if names is None:
        names = [
            k
            for k, v in vars(mod).items()
            if not k.startswith("_") and getattr(v, "__module__", None) == mod.__name__
        ]
    return list(names)


def _callables() -> Iterator[tuple[str, Callable[..., Any]]]:
    """Every public function, class constructor and public method, once each."""
    seen: set[int] = set()
    for mod in _public_modules():
        for name in _public_names(mod):
            obj = getattr(mod, name)
            if id(obj) in seen or inspect.ismodule(obj):
                continue
            seen.add(id(obj))
            qual = f"{getattr(obj, '__module__', mod.__name__)}.{name}"
            if inspect.isclass(obj):
                if obj.__module__.startswith("deqfast"):
                    yield f"{qual}.__init__", obj
                for attr, member in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if inspect.isfunction(member):
                        yield f"{qual}.{attr}", member
            elif callable(obj):
                yield qual, obj


def _parameters(fn: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # a builtin without a signature
        return {}


CALLABLES = dict(_callables())


def test_the_walk_sees_the_api() -> None:
    """The walk reaches the kernel-selecting functions of every module (not an empty pass)."""
    for name in (
        "deqfast.deq.DEQ.coefficients",
        "deqfast.equilibrium.surrogate_coefficients",
        "deqfast.surrogate.surrogate_operator",
        "deqfast.theory.theory_spectrum",
        "deqfast.explicit.ExplicitNet.coefficients",
        "deqfast.design.design_explicit",
        "deqfast.finite.empirical_ntk",
        "deqfast.distributed.kernels_blocked",
        "deqfast.distributed.empirical_kernel",
        "deqfast.estimators.DEQKernelRegressor.__init__",
    ):
        assert name in CALLABLES, name


def test_no_old_kernel_parameter_names() -> None:
    bad = [
        (name, p)
        for name, fn in CALLABLES.items()
        for p in _parameters(fn)
        if p in FORBIDDEN and (name, p) not in EXEMPT
    ]
    assert not bad, f"old kernel parameter names in public signatures: {bad}"


def test_outputs_only_where_matrices_are_stored() -> None:
    have = {name for name, fn in CALLABLES.items() if "outputs" in _parameters(fn)}
    assert have == OUTPUTS_ALLOWED


def test_kernel_and_trained_defaults_are_in_the_vocabulary() -> None:
    """A ``kernel=`` with a default names a kernel of KERNELS, and the function can take
    ``trained=`` too (directly or through ``**options``)."""
    checked = 0
    for name, fn in CALLABLES.items():
        params = _parameters(fn)
        k, t = params.get("kernel"), params.get("trained")
        if t is not None and t.default is not inspect.Parameter.empty:
            assert t.default in vocab.TRAINED, (name, t.default)
        if k is None or not isinstance(k.default, str):
            continue  # absent, required, or a callable (FeatureModel.kernel)
        assert k.default in vocab.KERNELS, (name, k.default)
        var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        assert t is not None or var_kw, f"{name} selects a kernel but takes no trained="
        checked += 1
    assert checked >= 8


def test_shims_map_old_keywords_onto_parameters_that_exist() -> None:
    shims = {
        name: fn.__deprecated_keywords__
        for name, fn in CALLABLES.items()
        if hasattr(fn, "__deprecated_keywords__")
    }
    assert len(shims) >= 6
    for name, renames in shims.items():
        params = _parameters(CALLABLES[name])
        for old, new in renames.items():
            assert new in params and old not in params, (name, old, new)


def test_result_types_follow_the_convention() -> None:
    for path in RESULT_TYPES:
        mod, name = path.rsplit(".", 1)
        cls = getattr(importlib.import_module(mod), name)
        fields = {f.name for f in dataclasses.fields(cls)}
        fields |= {k for k, v in vars(cls).items() if isinstance(v, property)}
        missing = set(vocab.RESULT_FIELDS) - fields
        assert not missing, f"{path} lacks {sorted(missing)}"


def test_no_public_dataclass_keeps_an_old_result_field() -> None:
    bad = []
    for name, fn in CALLABLES.items():
        if not (name.endswith(".__init__") and dataclasses.is_dataclass(fn)):
            continue
        cls_path = name.removesuffix(".__init__")
        bad += [
            (cls_path, f.name)
            for f in dataclasses.fields(fn)  # type: ignore[arg-type]
            if f.name in OLD_RESULT_FIELDS and (cls_path, f.name) not in OLD_FIELD_EXEMPT
        ]
    assert not bad, bad


def test_public_class_names_are_distinct() -> None:
    """No two different public classes share a name (there were two ``ForwardResult``)."""
    by_name: dict[str, set[str]] = {}
    for mod in _public_modules():
        for name in _public_names(mod):
            obj = getattr(mod, name)
            if inspect.isclass(obj) and obj.__module__.startswith("deqfast"):
                by_name.setdefault(obj.__name__, set()).add(f"{obj.__module__}.{obj.__qualname__}")
    dup = {k: v for k, v in by_name.items() if len(v) > 1}
    assert not dup, dup


# --------------------------------------------------------------------------- #
# results computed: the convention's fields carry the solver's numbers
# --------------------------------------------------------------------------- #
def _check_fields(res: Any) -> None:
    assert isinstance(res.converged, bool)
    assert isinstance(res.status, str) and res.status
    assert isinstance(res.message, str) and res.message
    assert isinstance(res.iterations, int) and res.iterations >= 0
    assert isinstance(res.residual, float) and res.residual >= 0


@pytest.fixture(scope="module")
def small() -> tuple[Any, np.ndarray]:
    s = df.GaussianMixture.paper(32).sample(24, seed=0)
    return df.DEQ("relu", sigma_a2=0.2, tau0=s.stats.tau0), s.X


def test_equilibrium_and_kernels_report_their_solves(small: Any) -> None:
    deq, X = small
    eq = deq.equilibrium()
    _check_fields(eq)
    assert eq.converged and eq.status == "converged"
    # E1's residual recomputed from the returned fields (docs/theory.md §4)
    assert eq.residual == pytest.approx(
        abs(eq.tau**2 - deq.sigma_a2 * eq.m2 - deq.sigma_b2 * deq.tau0**2), abs=1e-15
    )
    kr = deq.kernels(X)
    _check_fields(kr)
    assert kr.converged and 1 <= kr.iterations <= 100 and kr.residual <= 1e-10
    with pytest.warns(DeprecationWarning, match=r"KernelResult\.max_error .*residual"):
        assert kr.max_error == kr.residual
    with pytest.warns(DeprecationWarning, match=r"KernelResult\.max_iterations"):
        assert kr.max_iterations == kr.iterations


def test_forward_eigen_and_cg_results(small: Any, rng: np.random.Generator) -> None:
    from deqfast.distributed import conjugate_gradient
    from deqfast.linalg import lanczos_top, slq_density

    deq, X = small
    fw = df.finite.forward(deq, X, 16, seed=0)
    _check_fields(fw)
    assert fw.converged and fw.residual == float(fw.residuals[-1]) <= fw.tol
    A = rng.standard_normal((30, 30))
    M = A @ A.T / 30  # eigenvalues in [0, 4]: CG on M + I converges in a few steps
    top = lanczos_top(M, 2)
    _check_fields(top)
    want = np.linalg.eigvalsh(M)[::-1][:2]
    np.testing.assert_allclose(top.eigenvalues, want, rtol=1e-9)
    assert top.converged and top.residual <= top.tol
    with pytest.warns(DeprecationWarning, match=r"EigenResult\.steps"):
        assert top.steps == top.iterations
    dens = slq_density(M, probes=2, steps=5)
    with pytest.warns(DeprecationWarning, match=r"SpectralDensity\.steps"):
        assert dens.steps == dens.iterations == 5
    b = rng.standard_normal(30)
    cg = conjugate_gradient(M, b, ridge=1.0, tol=1e-10)
    _check_fields(cg)
    np.testing.assert_allclose(cg.x, np.linalg.solve(M + np.eye(30), b), rtol=1e-7)


def test_design_result_holds_the_deq_and_the_convention(small: Any) -> None:
    deq, X = small
    res = df.design_explicit(deq, kernel="ck", family="lrelu", probe=X, matched_only=True)
    _check_fields(res)
    assert res.deq is deq
    assert res.converged and res.status == "matched" and res.iterations == len(res.candidates)
    with pytest.warns(DeprecationWarning, match=r"DesignResult\.matched .*converged"):
        assert res.matched is True
    with pytest.warns(DeprecationWarning, match=r"DesignResult\.target .*kernel"):
        assert res.target == "ck"


# --------------------------------------------------------------------------- #
# old spellings: warn, name the new one, give the same result
# --------------------------------------------------------------------------- #
def test_old_kernel_spellings_warn_and_agree(small: Any) -> None:
    from deqfast.equilibrium import surrogate_coefficients
    from deqfast.surrogate import surrogate_operator

    deq, X = small
    s = df.GaussianMixture.paper(32).sample(24, seed=0)
    theta = deq.coefficients("ntk", trained="all").as_tuple()
    with pytest.warns(DeprecationWarning, match=r"kernel='ntk', trained='all'"):
        assert deq.coefficients(kind="ntk_all").as_tuple() == theta
    with pytest.warns(DeprecationWarning, match=r"'ntk_all' is deprecated"):
        assert deq.coefficients("ntk_all").as_tuple() == theta
    with pytest.warns(DeprecationWarning, match=r"surrogate_coefficients\(kind='pre'\)"):
        old = surrogate_coefficients(deq.equilibrium(), kind="pre")
    assert old.as_tuple() == deq.coefficients("pre").as_tuple()
    with pytest.warns(DeprecationWarning, match=r"use surrogate_operator\(kernel='ntk'"):
        op = surrogate_operator(deq, s.X, s.stats, kind="ntk_all")
    new = surrogate_operator(deq, s.X, s.stats, kernel="ntk", trained="all")
    np.testing.assert_array_equal(op.to_dense(), new.to_dense())
    net = df.ExplicitNet(["relu", "relu"], tau0=s.stats.tau0)
    with pytest.warns(DeprecationWarning, match=r"ExplicitNet\.coefficients\(kind="):
        assert net.coefficients(kind="ntk").as_tuple() == net.coefficients("ntk").as_tuple()
    with pytest.warns(DeprecationWarning, match=r"theory_spectrum\(kind='ck'\)"):
        ts = df.theory_spectrum(deq, s, 24, kind="ck")
    assert ts.spikes.tolist() == df.theory_spectrum(deq, s, 24, kernel="ck").spikes.tolist()
    with pytest.warns(DeprecationWarning, match=r"TheorySpectrum\.kind"):
        assert ts.kind == "ck"
    with pytest.warns(DeprecationWarning, match=r"design_explicit\(target='ck'\)"):
        old = df.design_explicit(deq, target="ck", family="lrelu", probe=X, matched_only=True)
    new = df.design_explicit(deq, kernel="ck", family="lrelu", probe=X, matched_only=True)
    assert old.achieved.as_tuple() == new.achieved.as_tuple()
    with pytest.raises(TypeError, match="both kernel= and its old spelling kind="):
        deq.coefficients(kind="ck", kernel="ck")


def test_old_module_names_warn() -> None:
    from deqfast import distributed, equilibrium, explicit, finite, theory

    with pytest.warns(DeprecationWarning, match=r"finite\.ForwardResult .*DEQForwardResult"):
        assert finite.ForwardResult is finite.DEQForwardResult
    with pytest.warns(DeprecationWarning, match=r"ExplicitForwardResult"):
        assert explicit.ForwardResult is explicit.ExplicitForwardResult
    for mod, name in ((equilibrium, "KINDS"), (theory, "KINDS"), (distributed, "KERNELS")):
        with pytest.warns(DeprecationWarning, match=r"deqfast\.KERNELS"):
            assert "ntk_all" in getattr(mod, name)
    with pytest.raises(AttributeError):
        _ = equilibrium.NO_SUCH_NAME


def test_new_spellings_do_not_warn(small: Any) -> None:
    deq, X = small
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deq.coefficients("ntk", trained="all")
        deq.ntk_surrogate(X, df.GaussianMixture.paper(32).sample(24, seed=0).stats)
        assert vocab.matrix_name("ntk", "all") == "Theta"
        assert [vocab.matrix_name(k) for k in vocab.KERNELS] == ["S", "G", "K"]


def test_unknown_kernel_values_name_the_vocabulary(small: Any) -> None:
    deq, _ = small
    with pytest.raises(ValueError, match=r"kernel must be one of .*'pre', 'ck', 'ntk'"):
        deq.coefficients("gram")
    with pytest.raises(ValueError, match=r"trained must be one of .*'hidden', 'all'"):
        deq.coefficients("ntk", trained="input")
    with pytest.raises(ValueError, match="kernel must be one of"):
        df.ExplicitNet(["relu"], tau0=1.0).coefficients("pre")


def test_cli_design_old_target_option_still_works(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--target`` is read as ``--kernel`` with a note on stderr (the design itself is
    replaced by a recorder: only the option mapping is under test here)."""
    import deqfast.design
    from deqfast.cli import main

    calls: list[dict[str, Any]] = []

    class Recorded:
        def summary(self) -> str:
            return "summary"

    def record(deq: Any, **kwargs: Any) -> Recorded:
        calls.append(kwargs)
        return Recorded()

    monkeypatch.setattr(deqfast.design, "design_explicit", record)
    assert main(["design", "relu", "--kernel", "ntk"]) == 0
    new = capsys.readouterr()
    assert main(["design", "relu", "--target", "ntk"]) == 0
    old = capsys.readouterr()
    assert main(["design", "relu"]) == 0
    assert [c["kernel"] for c in calls] == ["ntk", "ntk", "ck"]
    assert all("target" not in c for c in calls)
    assert old.out == new.out == "summary\n"
    assert "--target is deprecated; use --kernel" in old.err and "deprecated" not in new.err
