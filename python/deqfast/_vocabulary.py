"""One way to say each thing: the kernel vocabulary and the solver-result convention.

Kernel vocabulary
    Every public function that selects a kernel takes ``kernel=`` (one of :data:`KERNELS`)
    and, where the NTK is possible, ``trained=`` (one of :data:`TRAINED`):

    * ``kernel="pre"``: the pre-activation kernel ``S*``;
    * ``kernel="ck"``: the conjugate kernel ``G*`` (NNGP);
    * ``kernel="ntk"``: the neural tangent kernel, ``K*`` with ``trained="hidden"`` (hidden
      weights and read-out trained, the paper's convention) or ``Θ*`` with
      ``trained="all"`` (input weights trained too). ``trained`` does not change ``S*`` or
      ``G*``.

    The old spellings (the keywords ``kind=`` and ``target=``, the value ``"ntk_all"``) still
    work for one release and emit a :class:`DeprecationWarning` naming the new spelling.

Solver-result convention
    Every result of an iterative solve (modelled on SciPy's ``OptimizeResult``) has
    ``converged`` (bool), ``status`` (a short str, documented per type), ``message`` (str),
    ``iterations`` (int) and ``residual`` (float), plus its own fields. :data:`RESULT_FIELDS`
    lists the five; old attribute names are read-only properties that warn
    (:func:`deprecated_alias`).
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Literal, ParamSpec, TypeVar

from deqfast._validation import check_choice

__all__ = [
    "KERNELS",
    "OLD_KERNEL_NAMES",
    "RESULT_FIELDS",
    "TRAINED",
    "Kernel",
    "Trained",
    "check_kernel",
    "deprecated_alias",
    "deprecated_module_attributes",
    "matrix_name",
    "renamed_keywords",
]

#: The kernels a public function can select with ``kernel=``.
KERNELS = ("pre", "ck", "ntk")
#: The NTK conventions a public function can select with ``trained=``.
TRAINED = ("hidden", "all")
#: The fields every solver result has (see the module docstring).
RESULT_FIELDS = ("converged", "status", "message", "iterations", "residual")

Kernel = Literal["pre", "ck", "ntk"]
Trained = Literal["hidden", "all"]

#: Advice for the old tuples of kernel names (``equilibrium.KINDS`` and the like).
OLD_KERNEL_NAMES = "use deqfast.KERNELS with trained= ('ntk_all' is kernel='ntk', trained='all')"
#: Old kernel values and the ``(kernel, trained)`` pair each stands for.
_OLD_VALUES = {"ntk_all": ("ntk", "all")}

_P = ParamSpec("_P")
_R = TypeVar("_R")


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _deprecated(message: str) -> None:
    """Emit a :class:`DeprecationWarning` attributed to the first caller outside deqfast."""
    level, frame = 1, sys._getframe(0)
    while frame.f_code.co_filename.startswith(_PACKAGE) and frame.f_back is not None:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, DeprecationWarning, stacklevel=level)


def check_kernel(
    kernel: Any,
    trained: Any = "hidden",
    *,
    allowed: tuple[str, ...] = KERNELS,
) -> tuple[str, str]:
    """Validate ``kernel`` and ``trained`` and return them as ``(kernel, trained)``.

    ``allowed`` narrows :data:`KERNELS` (an explicit net has no ``"pre"``). The old value
    ``kernel="ntk_all"`` is read as ``kernel="ntk", trained="all"`` with a
    :class:`DeprecationWarning` (attributed to the first caller outside deqfast).
    """
    if isinstance(kernel, str) and kernel in _OLD_VALUES:
        kernel, trained = _OLD_VALUES[kernel]
        _deprecated("the kernel name 'ntk_all' is deprecated; use kernel='ntk', trained='all'")
    kernel = check_choice(kernel, "kernel", allowed)
    trained = check_choice(trained, "trained", TRAINED)
    return kernel, trained


def matrix_name(kernel: str, trained: str = "hidden") -> str:
    """The name of ``(kernel, trained)`` among :data:`deqfast.kernels.OUTPUTS`
    (``"S"``, ``"G"``, ``"K"`` or ``"Theta"``)."""
    if kernel == "ntk":
        return "K" if trained == "hidden" else "Theta"
    return {"pre": "S", "ck": "G"}[kernel]


def renamed_keywords(**renames: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorator: accept the old keyword names ``renames`` (old name → new name) with a
    :class:`DeprecationWarning`. The signature (``inspect.signature``) shows the new names only.

    An old keyword renamed to ``kernel`` whose value is an old kernel value (``"ntk_all"``)
    is translated to the new ``kernel`` and ``trained`` at once, with one warning.
    """

    def decorate(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        name = fn.__qualname__

        @functools.wraps(fn)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(f"{name}() got both {new}= and its old spelling {old}=")
                value = kwargs.pop(old)
                if new == "kernel" and isinstance(value, str) and value in _OLD_VALUES:
                    kernel, trained = _OLD_VALUES[value]
                    kwargs["kernel"], kwargs["trained"] = kernel, trained
                    spelling = f"kernel={kernel!r}, trained={trained!r}"
                else:
                    kwargs[new] = value
                    spelling = f"{new}={value!r}"
                _deprecated(f"{name}({old}={value!r}) is deprecated; use {name}({spelling})")
            return fn(*args, **kwargs)

        wrapper.__deprecated_keywords__ = dict(renames)  # type: ignore[attr-defined]
        return wrapper

    return decorate


def deprecated_alias(new: str, old: str, *, doc: str = "") -> property:
    """A read-only property ``old`` that returns attribute ``new`` with a
    :class:`DeprecationWarning` (an old name of a result field)."""

    def get(self: Any) -> Any:
        _deprecated(f"{type(self).__name__}.{old} is deprecated; use {type(self).__name__}.{new}")
        return getattr(self, new)

    return property(get, doc=doc or f"Deprecated name of :attr:`{new}`.")


def deprecated_module_attributes(
    module: str, old: Mapping[str, tuple[str, Callable[[], Any]]]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` serving the old public names ``old`` (name → (advice, value
    factory)) with a :class:`DeprecationWarning`."""

    def __getattr__(name: str) -> Any:
        if name in old:
            advice, value = old[name]
            _deprecated(f"{module}.{name} is deprecated; {advice}")
            return value()
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
