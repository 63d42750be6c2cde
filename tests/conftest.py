"""Shared pytest fixtures for the deqfast test-suite."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

# ``pyproject.toml`` sets ``pythonpath = ["tests"]``; this keeps ``import reference``
# working when pytest is started some other way (e.g. from another directory).
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded generator, so every test is reproducible on its own."""
    return np.random.default_rng(20240527)
