"""The docstring examples run (the README's example too)."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

import deqfast.activations
import deqfast.deq


@pytest.mark.parametrize("module", [deqfast.deq, deqfast.activations])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_readme_example_runs_and_matches_its_comment():
    readme = Path(__file__).resolve().parents[1] / "README.md"
    if not readme.exists():  # an installed test run without the source tree
        pytest.skip("README.md is not beside the tests")
    code = re.search(r"## Example\s+```python\n(.*?)```", readme.read_text(), re.S)
    assert code is not None, "README has no ## Example python block"
    namespace: dict = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    # the example's last line prints the CK surrogate error, commented "≈ 0.083" (docs/theory.md §4)
    G, G_bar, np = namespace["G"], namespace["G_bar"], namespace["np"]
    err = np.linalg.norm(G - G_bar, 2) / np.linalg.norm(G, 2)
    assert abs(err - 0.083) < 0.005
