"""deqfast: deep equilibrium models vs not-so-deep explicit networks on Gaussian mixtures.

Implements Ling et al., *Deep Equilibrium Models are Almost Equivalent to
Not-so-deep Explicit Models for High-dimensional Gaussian Mixtures* (ICML 2024)
with the conventions of the theory page (:doc:`/theory`): mixture data (§1), activations
and their Gaussian moments (§2), the DEQ's exact infinite-width kernels (§3), the
equilibrium equations and random-matrix surrogates (§4).

Two options mean the same, with the same default, in every function that takes them:

``num_threads``
    OpenMP threads of a compiled computation; ``None`` (the default) or ``0``: all cores.
    (:mod:`deqfast.distributed` runs one thread per Dask task unless told otherwise: its
    parallelism is the tasks.)
``progress``
    A tqdm progress bar on standard error: ``True`` always, ``False`` never, ``None`` (the
    default) when standard error is a terminal, for the exact kernels only from 16 million
    pairs on.
"""

from __future__ import annotations

try:
    from deqfast import _core  # noqa: F401  (fail early, with advice, if the build is missing)
except ImportError as exc:  # pragma: no cover - only hit on a broken install
    raise ImportError(
        "deqfast's compiled core `deqfast._core` is missing. Build and install the package "
        "from its source tree with `pip install .` (or `pip install --no-build-isolation -e .` "
        "for development); a C++17 compiler is needed."
    ) from exc

from deqfast import (
    activations,
    coefficients,
    datasets,
    finite,
    linalg,
    plots,
    random_features,
)
from deqfast._vocabulary import KERNELS, TRAINED
from deqfast.coefficients import KernelCoefficients
from deqfast.data import GaussianMixture, MixtureStats, Sample
from deqfast.deq import DEQ
from deqfast.design import DesignResult, DesignWarning, design_explicit
from deqfast.equilibrium import Equilibrium
from deqfast.explicit import ExplicitNet
from deqfast.kernels import KernelResult
from deqfast.spectra import SpectralComparison, compare_spectra
from deqfast.surrogate import surrogate_matrix
from deqfast.theory import TheorySpectrum, mp_mixture_density, theory_spectrum

__version__ = "0.1.0"

__all__ = [
    "DEQ",
    "KERNELS",
    "TRAINED",
    "DesignResult",
    "DesignWarning",
    "Equilibrium",
    "ExplicitNet",
    "GaussianMixture",
    "KernelCoefficients",
    "KernelResult",
    "MixtureStats",
    "Sample",
    "SpectralComparison",
    "TheorySpectrum",
    "__version__",
    "activations",
    "coefficients",
    "compare_spectra",
    "datasets",
    "design_explicit",
    "estimators",
    "finite",
    "linalg",
    "mp_mixture_density",
    "plots",
    "random_features",
    "surrogate_matrix",
    "theory_spectrum",
]


def __getattr__(name: str) -> object:
    """Load :mod:`deqfast.estimators` on first use: it imports scikit-learn, which is most
    of the cost of ``import deqfast`` (about 1.5 s of 2 s) and is needed only there."""
    if name == "estimators":
        import importlib

        return importlib.import_module("deqfast.estimators")
    raise AttributeError(f"module 'deqfast' has no attribute {name!r}")
