"""deqfast: deep equilibrium models vs not-so-deep explicit networks on Gaussian mixtures.

Implements Ling et al., *Deep Equilibrium Models are Almost Equivalent to
Not-so-deep Explicit Models for High-dimensional Gaussian Mixtures* (ICML 2024)
with the conventions of THEORY.md.
"""

from __future__ import annotations

try:
    from deqfast import _core
except ImportError as exc:  # pragma: no cover - only hit on a broken install
    raise ImportError(
        "deqfast's compiled core `deqfast._core` is missing. Build and install the package "
        "from its source tree with `pip install .` (or `pip install --no-build-isolation -e .` "
        "for development); a C++17 compiler is needed."
    ) from exc

__version__ = "0.1.0"

__all__ = ["__version__", "_core"]
