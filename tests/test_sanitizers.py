"""The C++ kernel assembly (docs/theory.md §3) under AddressSanitizer and UBSan.

The vectorised pair solvers pad their lane groups and the assembly mirrors tiles by
hand; ``tests/cpp/sanitize_kernels.cpp`` drives them (symmetric and cross kernels,
small tiles, ragged edges, duplicate samples that force the quadrature fallback) in a
build with the sanitizers, which must run clean and reproduce the module's kernels.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import deqfast as df

HERE = Path(__file__).parent
ROOT = HERE.parent
FLAGS = ["-std=c++17", "-O1", "-g", "-fno-omit-frame-pointer", "-fopenmp-simd",
         "-fno-math-errno", "-fno-trapping-math",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]  # fmt: skip


def _eigen_include() -> str | None:
    for p in sys.path:
        inc = Path(p) / "cmeel.prefix" / "include" / "eigen3"
        if (inc / "Eigen" / "Dense").is_file():
            return str(inc)
    return None


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    eigen = _eigen_include()
    if cxx is None or eigen is None:
        pytest.skip("needs a C++ compiler and the cmeel-eigen headers (the test extra)")
    exe = tmp_path_factory.mktemp("sanitize") / "sanitize_kernels"
    cmd = [cxx, *FLAGS, "-I", str(ROOT / "src" / "cpp" / "include"), "-isystem", eigen,
           str(HERE / "cpp" / "sanitize_kernels.cpp"), "-o", str(exe)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        if "sanitize" in res.stderr and "unrecognized" in res.stderr:
            pytest.skip(f"{cxx} has no sanitizers")
        raise AssertionError(f"sanitizer build failed:\n{res.stderr[-4000:]}")
    return exe


@pytest.mark.parametrize("act", ["relu", "tanh", "erf"])
def test_kernel_assembly_is_clean_under_sanitizers(driver, tmp_path, rng, act):
    n, n2, p = 45, 29, 20
    X = rng.standard_normal((n, p)) / np.sqrt(p)
    Y = rng.standard_normal((n2, p)) / np.sqrt(p)
    X[7] = X[5]  # rho = 1: quadrature fallback for the series
    Y[3] = X[2]
    X.tofile(tmp_path / "X.bin")
    Y.tofile(tmp_path / "Y.bin")
    out = tmp_path / "out.bin"
    args = [str(driver), act, str(tmp_path / "X.bin"), str(n), str(tmp_path / "Y.bin"), str(n2),
            str(p), str(out)]  # fmt: skip
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1")  # fmt: skip
    res = subprocess.run(args, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "runtime error" not in res.stderr, res.stderr[-4000:]
    G, K, Gc, Kc = np.split(np.fromfile(out), np.cumsum([n * n, n * n, n * n2]))
    G, K, Gc, Kc = G.reshape(n, n), K.reshape(n, n), Gc.reshape(n, n2), Kc.reshape(n, n2)
    deq = df.DEQ(act, sigma_a2=0.2, sigma_b2=0.8)
    sym, cross = deq.kernels(X), deq.kernels(X, Y)
    np.testing.assert_allclose(G, sym.G, rtol=0, atol=1e-12)
    np.testing.assert_allclose(Gc, cross.G, rtol=0, atol=1e-12)
    # K = G / (1 - sigma_a2 Gdot) inherits Gdot's square-root singularity at rho = 1 (ReLU:
    # Gdot = (pi - theta) / 2 pi, theta ~ sqrt(2 (1 - rho))): a last-bit difference in S
    # between the two builds moves K by ~1e-9 at the duplicated pairs only.
    dup, dupc = np.zeros((n, n), bool), np.zeros((n, n2), bool)
    dup[5, 7] = dup[7, 5] = dupc[2, 3] = True
    for got, want, d in ((K, sym.K, dup), (Kc, cross.K, dupc)):
        np.testing.assert_allclose(got[~d], want[~d], rtol=0, atol=1e-12)
        np.testing.assert_allclose(got[d], want[d], rtol=0, atol=1e-7)
