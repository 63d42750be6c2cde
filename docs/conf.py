"""Sphinx configuration of the deqfast documentation.

Build (warnings are errors; the tutorials are executed)::

    pip install ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The API pages under ``docs/api/`` are generated here, at every build, from ``__all__``
of :mod:`deqfast` and of each public module (modules whose names do not start with
``_``): every public name is documented once, where it is defined, and listed in the
summary table of every module that exports it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import inspect
import os
import pkgutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

# A source checkout with a compiled core (an editable or in-place build) is documented
# as is; otherwise the installed package is.
# The tutorials' kernels are separate processes: they find the package through PYTHONPATH.
_BUILT_IN_PLACE = any(
    (ROOT / "python" / "deqfast" / f"_core{suffix}").exists()
    for suffix in importlib.machinery.EXTENSION_SUFFIXES
)
if _BUILT_IN_PLACE:
    sys.path.insert(0, str(ROOT / "python"))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "python"), os.environ.get("PYTHONPATH")) if p
    )

import deqfast  # noqa: E402

project = "deqfast"
author = "The deqfast developers"
copyright = "the deqfast developers"
release = deqfast.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints", ".gitignore"]
templates_path = ["_templates"]

# -- MyST and MyST-NB -----------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "cache"  # executed at the first build and whenever a tutorial changes
nb_execution_timeout = 600
nb_execution_raise_on_error = True  # a failing tutorial fails the build
nb_execution_show_tb = True

# -- autodoc / autosummary / napoleon -------------------------------------------------------
autosummary_generate = False  # the pages are written below, from __all__
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False


# NumPy-style types such as ``ndarray, shape (n, p)`` make the Python domain look up ``n``
# and ``p`` as objects; several classes have attributes of those names, and the resulting
# "more than one target" notices are not errors of the docs.
suppress_warnings = ["ref.python"]

# -- HTML ------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = "deqfast"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
}
html_static_path: list[str] = []


# -- API pages -------------------------------------------------------------------------------
def public_modules() -> list[str]:
    """``deqfast`` and its submodules whose names do not start with ``_``."""
    names = [
        f"deqfast.{m.name}"
        for m in pkgutil.iter_modules(deqfast.__path__)
        if not m.name.startswith("_")
    ]
    return ["deqfast", *sorted(names)]


def _home(obj: object, default: str) -> str:
    """The module that defines ``obj`` (its documentation's one place)."""
    mod = getattr(obj, "__module__", None)
    if inspect.ismodule(obj):
        return obj.__name__
    if (
        isinstance(mod, str)
        and mod.startswith("deqfast")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
    ):
        return mod
    return default


def _directive(obj: object) -> str:
    if inspect.isclass(obj):
        return "autoclass"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return "autofunction"
    return "autodata"


def write_api_pages() -> None:
    out = DOCS / "api"
    out.mkdir(exist_ok=True)
    modules = public_modules()
    pages: dict[str, str] = {}
    for modname in modules:
        mod = importlib.import_module(modname)
        exported = list(getattr(mod, "__all__", ()))
        title = f"``{modname}``"
        lines = [title, "=" * len(title), "", f".. automodule:: {modname}", "   :no-members:", ""]
        rows, bodies = [], []
        for name in exported:
            obj = getattr(mod, name)
            home = _home(obj, modname)
            full = obj.__name__ if inspect.ismodule(obj) else f"{home}.{name}"
            # autosummary resolves names relative to the current module (and refuses the
            # current module's own prefix)
            rel = full[len(modname) + 1 :] if full.startswith(modname + ".") else full
            rows.append(f"   ~{rel}" if "." in rel else f"   {rel}")
            if inspect.ismodule(obj):
                continue
            if home == modname:
                opts = ["   :members:", "   :show-inheritance:"] if inspect.isclass(obj) else []
                if inspect.isclass(obj) and not _has_own_doc(obj):
                    opts.append("   :undoc-members:")
                bodies += [f".. {_directive(obj)}:: {modname}.{name}", *opts, ""]
        if rows:
            lines += [".. autosummary::", "   :nosignatures:", "", *rows, ""]
        lines += bodies
        pages[modname] = "\n".join(lines)
    index = [
        "API reference",
        "=============",
        "",
        "Every name in ``deqfast.__all__`` and in the ``__all__`` of each public module. A name",
        "is documented once, in the module that defines it; other modules that export it link",
        "there.",
        "",
        ".. toctree::",
        "   :maxdepth: 1",
        "",
        *(f"   {m}" for m in modules),
        "",
    ]
    pages["index"] = "\n".join(index)
    for name, text in pages.items():
        path = out / f"{name}.rst"
        if not path.exists() or path.read_text() != text:  # keep mtimes: no needless rebuilds
            path.write_text(text)
    for stale in set(out.glob("*.rst")) - {out / f"{n}.rst" for n in pages}:
        stale.unlink()


def _has_own_doc(cls: type) -> bool:
    return bool(cls.__dict__.get("__doc__"))


write_api_pages()


# -- members that are not deqfast's ------------------------------------------------------------
# scikit-learn adds ``set_{fit,predict,score,...}_request`` to every estimator class (metadata
# routing); their docstrings refer to scikit-learn's own glossary and labels, which do not
# exist here. They are scikit-learn's API, documented there.
def _skip_foreign_members(app, what, name, obj, skip, options):
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)
