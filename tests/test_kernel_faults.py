"""The exact-kernel path under bad input, extreme scales, resource limits and Ctrl-C
(docs/theory.md §3): every call returns finite kernels or raises a Python exception.

The reproducers of past process crashes (an exception escaping an OpenMP region, absurd
thread counts) run in one subprocess, so that a crash fails these tests instead of killing
pytest.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import deqfast as df
import reference as ref
from deqfast import kernels

# Each case: (name, code evaluating to the call under test). The driver runs every case in
# turn and prints one JSON line per case: the exception type (or "ok") and its message.
CASES = {
    "poly_diverges": (
        "df.DEQ('polynomial', coef=[0, 1, 0, 0.1], sigma_a2=0.1, tau0=s.stats.tau0).ck(s.X)"
    ),
    "square_diverges": "df.DEQ('polynomial', coef=[0, 0, 1], sigma_a2=0.2).ck(s.X)",
    "hermite_diverges": "df.DEQ('hermite', coef=[0, 1, .5, .5], sigma_a2=0.6).ck(s.X)",
    "huge_row_tanh": "df.DEQ('tanh', sigma_a2=0.2).ck(big)",
    "huge_row_relu": "df.DEQ('relu', sigma_a2=0.2).ck(big)",
    "huge_row_in_X2": "df.DEQ('tanh', sigma_a2=0.2).ck(s.X[:20], big[:20])",
    "sigma_b2_1e308": "df.DEQ('tanh', sigma_a2=0.2, sigma_b2=1e308).ck(s.X)",
    "relu_sigma_b2_1e308": "df.DEQ('relu', sigma_a2=0.2, sigma_b2=1e308).ck(s.X)",
    "leaky_slope_1e300": "df.DEQ('leaky_relu', slope=1e300).ck(s.X)",
    "threads_1e5": "df.DEQ('tanh', sigma_a2=0.2).ck(s.X[:50], num_threads=100000)",
    "threads_2p31m1": "df.DEQ('tanh', sigma_a2=0.2).ck(s.X[:50], num_threads=2**31 - 1)",
    "threads_2p31": "df.DEQ('tanh', sigma_a2=0.2).ck(s.X[:50], num_threads=2**31)",
    "block_2p40": "df.DEQ('tanh', sigma_a2=0.2).ck(s.X[:50], block=2**40)",
    "max_iter_2p40": "df.DEQ('tanh', sigma_a2=0.2).ck(s.X[:50], max_iter=2**40)",
    "core_diagonal_diverges": (
        "_core.solve_diagonal(df.activations.polynomial([0, 0, 1]).core, "
        "np.einsum('ij,ij->i', s.X, s.X), 0.2, 0.8)"
    ),
    "core_assemble_threads": "assemble_into_G(num_threads=2**40)",
}

DRIVER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import deqfast as df
    from deqfast import _core
    from deqfast.kernels import diagonal
    s = df.GaussianMixture.paper(64).sample(200, seed=0)
    big = s.X.copy()
    big[7] *= 1e160
    phi = df.activations.tanh()
    A = diagonal(phi, s.X[:40], sigma_a2=0.2, sigma_b2=0.8)

    def assemble_into_G(**options):
        G = np.zeros((40, 40))
        X = s.X[:40]
        _core.assemble(phi.core, X, X, A, A, True, 0, 40, 0, 40, 0.2, 0.8, G=G, **options)
        return G

    for name, code in json.loads(sys.argv[1]).items():
        try:
            out = eval(code)
            finite = bool(np.all(np.isfinite(out))) and np.allclose(out[:20, :20], out[:20, :20].T)
            print(json.dumps([name, "ok", "finite" if finite else "NOT FINITE"]), flush=True)
        except Exception as exc:
            print(json.dumps([name, type(exc).__name__, str(exc)]), flush=True)
    """
)


@pytest.fixture(scope="module")
def outcomes() -> dict[str, tuple[str, str]]:
    res = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(CASES)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    got = {}
    for line in res.stdout.splitlines():
        name, kind, msg = json.loads(line)
        got[name] = (kind, msg)
    got["_process"] = (str(res.returncode), res.stderr[-3000:])
    return got


def _outcome(outcomes, name):
    assert name in outcomes, f"the process died before case {name}: {outcomes['_process']}"
    return outcomes[name]


@pytest.mark.parametrize(
    "name", ["poly_diverges", "square_diverges", "hermite_diverges", "core_diagonal_diverges"]
)
def test_diverging_diagonal_raises_instead_of_aborting(outcomes, name):
    kind, msg = _outcome(outcomes, name)
    assert kind == "ValueError", (kind, msg)
    assert "sigma_a2" in msg and ("diverges" in msg or "contraction" in msg), msg


@pytest.mark.parametrize(
    ("name", "where"), [("huge_row_tanh", "row 7 of X "), ("huge_row_in_X2", "row 7 of X2"),
                        ("sigma_b2_1e308", "row 0 of X ")]
)  # fmt: skip
def test_out_of_range_scales_raise(outcomes, name, where):
    # A row whose squared norm overflows is refused by the input validation (as_data_matrix);
    # a finite row that sigma_b2 pushes out of range by the kernels' scale check. Both name
    # the row and the array and say to rescale.
    kind, msg = _outcome(outcomes, name)
    assert kind == "ValueError", (kind, msg)
    row, array = where.strip().split(" of ")
    assert f"{row} " in msg or f"{row}," in msg or f"{row})" in msg, msg
    assert array in msg and "rescale" in msg, msg


def test_homogeneous_activation_with_unbridgeable_row_norms_raises(outcomes):
    kind, msg = _outcome(outcomes, "huge_row_relu")
    assert kind == "ValueError" and "norms" in msg and "rescale" in msg, (kind, msg)


def test_homogeneous_activation_whose_kernel_overflows_raises(outcomes):
    kind, msg = _outcome(outcomes, "relu_sigma_b2_1e308")
    assert kind == "FloatingPointError" and "overflows" in msg, (kind, msg)


def test_unbounded_leaky_slope_raises(outcomes):
    kind, msg = _outcome(outcomes, "leaky_slope_1e300")
    assert kind == "ValueError" and "sigma_a2" in msg, (kind, msg)


@pytest.mark.parametrize(
    "name", ["threads_1e5", "threads_2p31m1", "threads_2p31", "core_assemble_threads"]
)
def test_absurd_thread_counts_are_clamped(outcomes, name):
    assert _outcome(outcomes, name) == ("ok", "finite")


@pytest.mark.parametrize("name", ["block_2p40", "max_iter_2p40"])
def test_out_of_range_integers_raise_value_error(outcomes, name):
    kind, msg = _outcome(outcomes, name)
    assert kind == "ValueError", (kind, msg)
    assert name.split("_2p")[0] in msg and "[" in msg, msg


def test_the_driver_process_exits_cleanly(outcomes):
    rc, err = outcomes["_process"]
    assert rc == "0", err


# -- scales inside the range: correct, never NaN ---------------------------------------------
@pytest.mark.parametrize("act", ["tanh", "clip"])
def test_tiny_data_give_finite_kernels(act):
    """Centred at the unscaled data's tau0, tiny inputs sit in the activation's linear part
    around the centring point: every kernel entry is finite, and S* = σ_b² XXᵀ + σ_a² G* holds
    (the fixed-point equation, checked independently of the solver's internals)."""
    s = df.GaussianMixture.paper(64).sample(60, seed=0)
    deq = df.DEQ(act, sigma_a2=0.2, tau0=s.stats.tau0)
    X = s.X * 1e-70
    res = deq.kernels(X)
    for key in ("S", "G", "Gdot", "K"):
        assert np.all(np.isfinite(getattr(res, key))), key
    want = 0.8 * X @ X.T + 0.2 * res.G
    np.testing.assert_allclose(res.S, want, rtol=0, atol=1e-12 * np.abs(want).max())


def test_tiny_data_beyond_the_range_raise():
    s = df.GaussianMixture.paper(64).sample(60, seed=0)
    deq = df.DEQ("tanh", sigma_a2=0.2, tau0=s.stats.tau0)
    with pytest.raises(ValueError, match="rescale"):
        deq.kernels(s.X * 1e-154)


def test_uncentred_tanh_on_tiny_data_is_the_linear_kernel(rng):
    """tanh(u) = u + O(u³): at scale c = 1e-60 the tanh DEQ's S* equals c² times the linear
    DEQ's to the relative order c² (here far below rounding)."""
    X = rng.standard_normal((30, 8)) / np.sqrt(8)
    c = 1e-60
    tanh = df.DEQ("tanh", sigma_a2=0.3, sigma_b2=0.7).kernels(c * X)
    lin = df.DEQ("linear", sigma_a2=0.3, sigma_b2=0.7).kernels(X)
    np.testing.assert_allclose(tanh.S / c**2, lin.S, rtol=1e-12)
    np.testing.assert_allclose(tanh.Gdot, lin.Gdot, rtol=1e-12)


@pytest.mark.parametrize("c", [1e-100, 1e100])
def test_relu_far_outside_the_range_is_rescaled_exactly(rng, c):
    X = rng.standard_normal((25, 6)) / np.sqrt(6)
    deq = df.DEQ("relu", sigma_a2=0.3, sigma_b2=0.7)
    want = ref.relu_deq_kernels(X, 0.3, 0.7, 0.0)
    got = deq.kernels(c * X)
    for key in ("S", "G", "K"):
        np.testing.assert_allclose(getattr(got, key) / c**2, want[key], rtol=1e-10, atol=0)
    np.testing.assert_allclose(got.diagonal[0] / c**2, np.diag(want["S"]), rtol=1e-12)


# -- memory ------------------------------------------------------------------------------------
def test_memory_check_raises_before_allocating(monkeypatch):
    monkeypatch.setattr(kernels, "_available_memory", lambda: 24 * 10**9)
    X = np.random.default_rng(0).standard_normal((30_000, 3))
    deq = df.DEQ("relu", sigma_a2=0.2)
    with pytest.raises(MemoryError, match=r"28\.8 GB of outputs.*fewer outputs.*distributed"):
        deq.kernels(X)
    # one output of the same size (7.2 GB) fits
    kernels._check_memory(deq.phi, 30_000, 30_000, ("G",), 256, 64, 2)


def test_available_memory_is_read_on_linux():
    if not os.path.exists("/proc/meminfo"):
        pytest.skip("no /proc/meminfo")
    avail = kernels._available_memory()
    assert avail is not None and avail > 0


# -- Ctrl-C --------------------------------------------------------------------------------
INTERRUPT = textwrap.dedent(
    """
    import time
    import numpy as np
    import deqfast as df
    X = np.random.default_rng(0).standard_normal((8000, 64)) / 8.0
    deq = df.DEQ("tanh", sigma_a2=0.2)
    print("ready", flush=True)
    t0 = time.perf_counter()
    try:
        deq.kernels(X, progress=False)
        print("finished", time.perf_counter() - t0, flush=True)
    except KeyboardInterrupt:
        print("interrupted", time.perf_counter() - t0, flush=True)
    """
)


def interrupt_delay(wait: float = 1.0) -> tuple[str, float]:
    """Start an n = 8000 kernel in a subprocess, send SIGINT after `wait` seconds; returns the
    child's last line and the time from the signal to that line."""
    with subprocess.Popen(
        [sys.executable, "-c", INTERRUPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(wait)
            t_sig = time.perf_counter()
            proc.send_signal(signal.SIGINT)
            line = proc.stdout.readline().strip()
            delay = time.perf_counter() - t_sig
        finally:
            proc.kill()
            proc.communicate()
    return line, delay


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_stops_a_long_kernel_call():
    line, _ = interrupt_delay()
    assert line.startswith("interrupted"), line


# -- pairs near |rho| = 1: the one-dimensional quadrature fallback -------------------------
@pytest.mark.parametrize(
    ("name", "params", "scale", "noise"),
    [
        ("elu", {}, 1e-3, 1.0),  # centred far below tau0: every pair has rho ~ 1
        ("elu", {}, 1.0, 1e-4),  # near-copies: phi'' jumps at the kink
        ("tanh", {}, 1.0, 1e-4),
        ("clip", {"c": 0.5}, 1.0, 1e-3),  # phi' jumps at +-c, not at the same x for u and v
    ],
)
def test_near_duplicate_pairs_match_per_pair_quadrature(rng, name, params, scale, noise):
    """Three pairs of near-copies: the quadrature fallback's G*, Ġ* at the solved S* against
    nested adaptive quadrature of E φ(u)φ(v), E φ'(u)φ'(v) (tests/reference.py; for a kink the
    outer rule is split around the smoothed kink, ``two_point_near``), S* solves its equation,
    and the kernels are symmetric."""
    base = rng.standard_normal((3, 16)) / 4.0
    X = scale * (np.repeat(base, 2, axis=0) + noise * 1e-2 * rng.standard_normal((6, 16)) / 4.0)
    # the reference for a kinked activation is slow: one pair there
    pairs = ((0, 1),) if ref.get(name, **params).kinks else ((0, 1), (2, 3))
    _check_near_pairs(df.DEQ(name, sigma_a2=0.3, tau0=1.0, **params), X, params, pairs, 1.0, 1e-3)


def _check_near_pairs(deq, X, params, pairs, sign, gap_rho):
    """The kernels of X are symmetric, S* solves its equation (sigma_a2 = 0.3, sigma_b2 = 0.7),
    and each of ``pairs`` has 1 - sign * rho < gap_rho, with G*, Ġ* at the solved S* equal to
    nested adaptive quadrature of E φ(u)φ(v), E φ'(u)φ'(v) (tests/reference.py; for a kink the
    outer rule is split around the smoothed kink, ``two_point_near``). One thread gives the
    same bits as two."""
    res = deq.kernels(X, num_threads=2)
    one = deq.kernels(X, num_threads=1)
    assert res.quadrature_pairs > 0
    for key in ("S", "G", "Gdot", "K"):
        M = getattr(res, key)
        np.testing.assert_array_equal(M, M.T)
        np.testing.assert_array_equal(M, getattr(one, key))
    want = 0.7 * X @ X.T + 0.3 * res.G
    np.testing.assert_allclose(res.S, want, rtol=0, atol=1e-12 * np.abs(want).max())
    r = ref.get(deq.phi.name, **params)
    shift = deq.phi.shift

    def f(x):
        return r.phi(x) - shift

    d = np.diag(res.S)
    for i, j in pairs:
        rho = res.S[i, j] / math.sqrt(d[i] * d[j])
        assert 1.0 - sign * rho < gap_rho, (i, j, rho)
        g = ref.two_point_near(f, f, d[i], d[j], res.S[i, j], r.kinks, r.kinks)
        gd = ref.two_point_near(r.dphi, r.dphi, d[i], d[j], res.S[i, j], r.kinks, r.kinks)
        assert abs(res.G[i, j] - g) <= 1e-10 * abs(res.G).max(), (i, j, rho)
        assert abs(res.Gdot[i, j] - gd) <= 1e-9, (i, j, rho)


@pytest.mark.parametrize(
    ("name", "scale", "sign", "gap"),
    [
        ("tanh", 1.0, 1.0, 1e-6),  # 1 - |rho| ~ 1e-12: the series about |rho| = 1, two terms
        ("tanh", 1.0, -1.0, 1e-6),  # the end rho = -1
        ("tanh", 1.0, 1.0, 1e-3),
        ("tanh", 1.0, -1.0, 0.1),  # 1 - |rho| ~ 1e-2: many terms
        ("tanh", 1.0, 1.0, 0.1),
        ("sigmoid", 2.0, 1.0, 1e-6),  # at unit scale the Mehler series takes every pair
        ("sigmoid", 2.0, -1.0, 1e-3),
        ("sigmoid", 2.0, 1.0, 0.1),
        ("swish", 2.0, 1.0, 1e-3),  # no series: the heat-series quadrature
    ],
)
def test_pairs_near_rho_one_match_per_pair_quadrature(rng, name, scale, sign, gap):
    """Rows paired with a near-copy (sign 1) or a near-negative (sign -1) at relative distance
    ``gap``: 1 - |rho| from ~1e-12 to ~1e-2 at both ends of the range, so that the Taylor
    series of G, Ġ about |rho| = 1 (docs/theory.md §3) takes few or many terms. G*, Ġ* at the
    solved S* against nested adaptive quadrature (tests/reference.py)."""
    base = scale * rng.standard_normal((2, 16)) / 4.0
    other = sign * base + scale * gap * rng.standard_normal((2, 16)) / 4.0
    X = np.vstack([base[0], other[0], base[1], other[1]])
    deq = df.DEQ(name, sigma_a2=0.3, tau0=1.0)  # centred: phi(0) != 0
    _check_near_pairs(deq, X, {}, ((0, 1), (2, 3)), sign, 1e-2)
