"""Finite-width DEQ under hostile use: Ctrl-C, absurd thread counts and iteration limits.

Cases that once crashed the interpreter run in a subprocess, so a crash fails the test
instead of killing pytest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import deqfast as df
from deqfast import _core, finite

_PKG_PARENT = str(Path(df.__file__).resolve().parent.parent)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PKG_PARENT, env.get("PYTHONPATH")) if p)
    return env


def _run(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )


# --------------------------------------------------------------------------- #
# crash regressions (subprocess)
# --------------------------------------------------------------------------- #
def test_huge_thread_counts_are_clamped_not_fatal():
    res = _run(
        """
        import numpy as np, deqfast as df
        from deqfast import finite, _core
        deq = df.DEQ("relu", sigma_a2=0.5, tau0=1.0)
        X = np.random.default_rng(0).standard_normal((40, 6))
        ref = finite.forward(deq, X, 48, seed=1, num_threads=1)
        for t in (100_000, 2**31 - 1, 2**31, 2**40):
            r = finite.forward(deq, X, 48, seed=1, num_threads=t)
            assert np.allclose(r.Z, ref.Z, rtol=1e-12, atol=1e-12), t
            ck = finite.empirical_ntk(deq, X, 48, seed=1, num_threads=t, progress=False)
            assert np.isfinite(ck).all()
        A, B, v = finite.draw_weights(48, 6, seed=1)
        Z, _, rep = _core.deq_forward(deq.phi.core, A, B, X, 0.7, 0.7, num_threads=2**31)
        assert rep.converged
        print("ok")
        """
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith("ok")


def test_huge_iteration_limits_raise_value_error():
    res = _run(
        """
        import numpy as np, deqfast as df
        from deqfast import finite, _core
        deq = df.DEQ("relu", sigma_a2=0.5, tau0=1.0)
        X = np.ones((3, 4))
        for kw in (dict(max_iter=2**40), dict(max_iter=2**31), dict(num_threads=-1)):
            try:
                finite.forward(deq, X, 8, **kw)
            except ValueError as exc:
                name = next(iter(kw))
                assert name in str(exc) and len(str(exc)) < 200, str(exc)
            else:
                raise AssertionError(kw)
        A, B, v = finite.draw_weights(8, 4, seed=1)
        try:
            _core.deq_forward(deq.phi.core, A, B, X, 0.7, 0.7, max_iter=2**40)
        except ValueError as exc:
            assert "max_iter" in str(exc) and len(str(exc)) < 200, str(exc)
        else:
            raise AssertionError("core accepted max_iter=2**40")
        print("ok")
        """
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith("ok")


# --------------------------------------------------------------------------- #
# Ctrl-C
# --------------------------------------------------------------------------- #
_SIGINT_CHILD = """
import sys, time
import numpy as np, deqfast as df
from deqfast import finite, _core

which = sys.argv[1]
m, n, p = 2048, 2000, 16
deq = df.DEQ("relu", sigma_a2=0.8, tau0=1.0)
rng = np.random.default_rng(0)
X = rng.standard_normal((n, p)) / 4
A, B, v = finite.draw_weights(m, p, seed=0)
Z = rng.standard_normal((n, m))
# the machine's current speed: one product block as the core splits it (two blocks here)
from scipy.linalg import blas
Phi = np.asfortranarray(rng.standard_normal((m, n // 2)))
t = time.perf_counter()
blas.dgemm(1.0, A.T, Phi, trans_a=1)
block = time.perf_counter() - t
try:
    print("ready", block, flush=True)
    if which == "forward":
        finite.forward(deq, X, m, weights=(A, B, v), tol=1e-15, max_iter=100_000, strict=False)
    else:
        _core.deq_adjoint(deq.phi.core, A, Z, v, 0.999, tol=1e-300, max_iter=100_000)
    print("finished", flush=True)
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), flush=True)
"""


@pytest.mark.parametrize("which", ["forward", "adjoint"])
def test_sigint_stops_a_long_solve_quickly(which):
    """SIGINT during a solve at n = 2000, m = 2048: KeyboardInterrupt within 0.5 s.

    The core polls for signals between product blocks (~0.1 s each on two idle cores); on a
    machine so loaded that one block takes longer, the bound is 1.5 blocks instead.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", _SIGINT_CHILD, which],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line[:1] == ["ready"], str(line) + proc.stderr.read()[-2000:]
        block = float(line[1])
        time.sleep(1.0)  # well inside the solve (the products of one evaluation alone take longer)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    words = out.split()
    assert words[:1] == ["interrupted"], out + err[-2000:]
    delay = float(words[1]) - sent
    print(f"{which}: KeyboardInterrupt {delay:.3f} s after SIGINT (one block {block:.3f} s)")
    assert 0.0 <= delay < max(0.5, 1.5 * block)


# --------------------------------------------------------------------------- #
# argument ranges and error messages
# --------------------------------------------------------------------------- #
def test_non_convergence_message_says_how_far_to_go(rng):
    deq = df.DEQ("relu", sigma_a2=0.9, tau0=1.0)
    X = rng.standard_normal((16, 8))
    with pytest.raises(RuntimeError, match=r"raise max_iter to about (\d+)") as info:
        finite.forward(deq, X, 128, seed=0, solver="picard", max_iter=10, tol=1e-10)
    msg = str(info.value)
    assert "after 10 evaluations" in msg and "solver='anderson'" in msg
    need = int(msg.split("raise max_iter to about ")[1].split(",")[0])
    res = finite.forward(deq, X, 128, seed=0, solver="picard", max_iter=need, tol=1e-10)
    assert res.converged and res.evaluations > 10


def test_core_rejects_bad_options_with_value_errors(relu_core_args):
    phi, A, B, X = relu_core_args
    for kw, name in [
        (dict(solver="newton"), "solver"),
        (dict(max_iter=0), "max_iter"),
        (dict(memory=65), "memory"),
        (dict(restart=-1), "restart"),
        (dict(num_threads=-3), "num_threads"),
    ]:
        with pytest.raises(ValueError, match=name):
            _core.deq_forward(phi, A, B, X, 0.7, 0.7, **kw)


@pytest.fixture
def relu_core_args():
    deq = df.DEQ("relu", sigma_a2=0.5, tau0=1.0)
    A, B, _ = finite.draw_weights(16, 4, seed=2)
    return deq.phi.core, A, B, np.ones((3, 4))
