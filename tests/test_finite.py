"""Finite-width DEQ: forward pass, adjoint, empirical CK/NTK (docs/theory.md §3, "finite width")."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import deqfast as df
import reference as ref
from deqfast import _core, finite


# --------------------------------------------------------------------------- #
# small NumPy references
# --------------------------------------------------------------------------- #
def np_fixed_point(phi, A, B, X, sigma_a2, sigma_b2, tol=1e-15, max_iter=20_000):
    """Plain iteration Z = (σ_a/√m) A φ(Z) + σ_b B Xᵀ on the (m, n) state."""
    m = A.shape[0]
    c = math.sqrt(sigma_a2 / m)
    U = math.sqrt(sigma_b2) * B @ X.T
    Z = np.zeros_like(U)
    for _ in range(max_iter):
        Zn = c * A @ phi(Z) + U
        if np.linalg.norm(Zn - Z) <= tol * np.linalg.norm(Zn):
            return Zn
        Z = Zn
    raise AssertionError("reference iteration did not converge")


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def small_problem(rng, m=64, n=20, p=12):
    X = rng.standard_normal((n, p)) / math.sqrt(p)
    A, B, v = finite.draw_weights(m, p, seed=rng)
    return X, (A, B, v)


@pytest.fixture
def relu_deq():
    return df.DEQ("relu", sigma_a2=0.5, tau0=1.0)  # centred ReLU


# --------------------------------------------------------------------------- #
# forward pass
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("solver", ["anderson", "picard"])
@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_forward_matches_numpy_reference(rng, solver, name):
    deq = df.DEQ(name, sigma_a2=0.5, tau0=1.0)
    X, W = small_problem(rng)
    res = finite.forward(deq, X, 64, weights=W, solver=solver, tol=1e-12)
    Zref = np_fixed_point(deq.phi, W[0], W[1], X, deq.sigma_a2, deq.sigma_b2)
    assert res.converged and res.status == "converged"
    assert res.Z.shape == res.features.shape == (20, 64)
    assert rel(res.Z, Zref.T) < 1e-10
    np.testing.assert_allclose(res.features, deq.phi(Zref).T, atol=1e-10)
    assert res.residuals.shape == (res.evaluations,)
    assert res.residual <= 1e-12 < res.residuals[0]


def test_anderson_and_picard_reach_same_equilibrium(rng):
    deq = df.DEQ("relu", sigma_a2=0.8, tau0=1.0)
    X, W = small_problem(rng, m=256, n=64, p=32)
    a = finite.forward(deq, X, 256, weights=W, solver="anderson", tol=1e-10)
    p = finite.forward(deq, X, 256, weights=W, solver="picard", tol=1e-10)
    assert rel(a.Z, p.Z) <= 1e-8
    assert rel(a.features, p.features) <= 1e-8
    # Random weights: the Jacobian's spectrum fills a disc (circular law), where no
    # Krylov-type accelerator beats plain iteration by much; Anderson must not lose.
    assert a.evaluations <= p.evaluations


def np_anderson_residuals(phi, A, B, X, sigma_a2, sigma_b2, memory, evaluations):
    """Undamped Anderson (Walker–Ni: x ← g_k − ΔG γ, γ = argmin ‖f_k − ΔF γ‖ by lstsq) on
    the flattened (m, n) state; the relative residual of every evaluation and the last one."""
    m = A.shape[0]
    c = math.sqrt(sigma_a2 / m)
    U = math.sqrt(sigma_b2) * B @ X.T
    x = np.zeros(U.size)
    gs: list[np.ndarray] = []
    fs: list[np.ndarray] = []
    res = []
    for _ in range(evaluations):
        g = (c * A @ phi(x.reshape(U.shape)) + U).ravel()
        f = g - x
        res.append(np.linalg.norm(f) / np.linalg.norm(g))
        gs, fs = [*gs, g][-(memory + 1) :], [*fs, f][-(memory + 1) :]
        if len(fs) == 1:
            x = g
            continue
        dF, dG = np.diff(np.array(fs), axis=0).T, np.diff(np.array(gs), axis=0).T
        x = g - dG @ np.linalg.lstsq(dF, f, rcond=None)[0]
    return np.array(res), g.reshape(U.shape)


@pytest.mark.parametrize("memory", [3, 5, 11])  # 11: wider than the one-pass sweeps
def test_anderson_iterates_match_numpy_reference(rng, memory):
    """The core's Anderson sweeps (one pass over the window for memory <= 8, cache blocks
    beyond), on a state split over two threads at a point that is not block-aligned: the
    residual of every evaluation and the last evaluation agree with a NumPy Walker–Ni
    iteration, and a second run gives the same bits."""
    deq = df.DEQ("relu", sigma_a2=0.8, tau0=1.0)
    m, n, p, evals = 512, 300, 24, 14  # m n = 153600: two chunks of 76800
    X, (A, B, _) = small_problem(rng, m=m, n=n, p=p)
    ref_res, ref_last = np_anderson_residuals(
        deq.phi, A, B, X, deq.sigma_a2, deq.sigma_b2, memory, evals
    )
    args = (deq.phi.core, A, B, X, math.sqrt(deq.sigma_a2), math.sqrt(deq.sigma_b2))
    kw = dict(solver="anderson", tol=1e-14, max_iter=evals, memory=memory, num_threads=2)
    Z, _, rep = _core.deq_forward(*args, **kw)
    assert rep.status == "max_iter" and rep.evaluations == evals and rep.dropped == 0
    np.testing.assert_allclose(rep.residuals, ref_res, rtol=1e-6)
    assert ref_res[-1] < 1e-2 * ref_res[0]  # the comparison covers a real descent
    assert rel(Z, ref_last) < 1e-9
    Z2, _, rep2 = _core.deq_forward(*args, **kw)
    np.testing.assert_array_equal(Z2, Z)
    np.testing.assert_array_equal(rep2.residuals, rep.residuals)
    # float32: the same iteration to single precision
    Z32, _, rep32 = _core.deq_forward(
        deq.phi.core,
        *(a.astype(np.float32) for a in (A, B, X)),
        *args[4:],
        **{**kw, "max_iter": 8},
    )
    assert Z32.dtype == np.float32 and rep32.dropped == 0
    np.testing.assert_allclose(rep32.residuals, ref_res[:8], rtol=2e-3)


@pytest.mark.parametrize("solver", ["anderson", "picard", "auto"])
def test_work_arrays_are_reused_without_changing_results(rng, solver):
    """The core keeps its work arrays for the next solve: a solve on reused (dirty) arrays
    gives the same bits as one on fresh memory, and release_workspace gives them back."""
    deq = df.DEQ("relu", sigma_a2=1.2, sigma_b2=1.0, tau0=1.0)  # auto tries Anderson here
    m, n = 256, 64
    X, (A, B, _) = small_problem(rng, m=m, n=n, p=16)
    args = (deq.phi.core, A, B, X, math.sqrt(deq.sigma_a2), math.sqrt(deq.sigma_b2))
    _core.release_workspace()
    assert _core.workspace_bytes() == 0
    Z1, F1, rep1 = _core.deq_forward(*args, solver=solver, tol=1e-10, max_iter=2000)
    kept = _core.workspace_bytes()
    assert kept >= 2 * m * n * 8  # at least the input term and one work array
    Z2, F2, rep2 = _core.deq_forward(*args, solver=solver, tol=1e-10, max_iter=2000)
    assert rep1.converged and rep2.phases == rep1.phases
    np.testing.assert_array_equal(Z2, Z1)
    np.testing.assert_array_equal(F2, F1)
    assert _core.workspace_bytes() == kept  # the second solve took and gave back the same
    assert _core.release_workspace() == kept and _core.workspace_bytes() == 0


def test_release_work_buffers_frees_what_forward_kept(rng):
    """The public release gives back exactly the bytes the core reports as kept."""
    deq = df.DEQ("tanh", sigma_a2=0.3, tau0=1.0)
    X = rng.standard_normal((32, 16))
    df.finite.release_work_buffers()
    df.finite.forward(deq, X, 128, seed=0, solver="anderson")
    kept = _core.workspace_bytes()
    assert kept >= 2 * 128 * 32 * 8
    assert df.finite.release_work_buffers() == kept
    assert _core.workspace_bytes() == 0 and df.finite.release_work_buffers() == 0


def test_anderson_accelerates_structured_map(rng):
    """A symmetric contracting linear map (real spectrum in [0, 0.95]): Anderson ≫ Picard."""
    m, n, p = 200, 16, 8
    deq = df.DEQ("linear", sigma_a2=0.5)
    Q, _ = np.linalg.qr(rng.standard_normal((m, m)))
    lam = np.linspace(0.0, 0.95, m)
    A = (Q * lam) @ Q.T * math.sqrt(m / deq.sigma_a2)
    X = rng.standard_normal((n, p))
    W = (A, rng.standard_normal((m, p)), rng.standard_normal(m))
    a = finite.forward(deq, X, m, weights=W, solver="anderson", tol=1e-8)
    pic = finite.forward(deq, X, m, weights=W, solver="picard", tol=1e-8)
    assert a.converged and pic.converged
    assert 2 * a.evaluations <= pic.evaluations
    exact = np.linalg.solve(
        np.eye(m) - math.sqrt(deq.sigma_a2 / m) * A, math.sqrt(deq.sigma_b2) * W[1] @ X.T
    )
    # error <= residual / (1 - 0.95)
    assert rel(a.Z, exact.T) < 1e-6
    # damping and a small memory still converge to the same point
    d = finite.forward(deq, X, m, weights=W, solver="anderson", damping=0.7, memory=2, tol=1e-8)
    assert rel(d.Z, exact.T) < 1e-6
    # periodic restarts and float32 storage too
    r = _core.deq_forward(
        deq.phi.core,
        A,
        W[1],
        X,
        math.sqrt(deq.sigma_a2),
        math.sqrt(deq.sigma_b2),
        restart=7,
        tol=1e-8,
    )
    assert r[2].converged and r[2].restarts > 0 and rel(r[0], exact) < 1e-6
    f32 = finite.forward(deq, X, m, weights=W, solver="anderson", tol=1e-6, dtype=np.float32)
    assert 2 * f32.evaluations <= pic.evaluations and rel(f32.Z.astype(float), exact.T) < 1e-4
    # auto: Picard's observed rate (0.95) says acceleration pays; it switches and stays
    au = finite.forward(deq, X, m, weights=W, tol=1e-8)
    assert au.solver == "auto" and au.solver_used == "picard+anderson"
    assert au.phases[0] == ("picard", 1) and au.phases[1][1] <= 10
    assert au.evaluations <= a.evaluations + 10 and 2 * au.evaluations <= pic.evaluations
    assert rel(au.Z, exact.T) < 1e-6


def test_auto_keeps_picard_when_it_contracts_fast(rng):
    """Random weights, rate ~0.4: auto never leaves Picard and is Picard, bit for bit."""
    deq = df.DEQ("relu", sigma_a2=0.3, tau0=1.0)
    X, W = small_problem(rng, m=256, n=64, p=32)
    au = finite.forward(deq, X, 256, weights=W, solver="auto", tol=1e-10)
    pic = finite.forward(deq, X, 256, weights=W, solver="picard", tol=1e-10)
    assert au.phases == (("picard", 1),) and pic.phases == (("picard", 1),)
    assert au.evaluations == pic.evaluations
    np.testing.assert_array_equal(au.Z, pic.Z)


def test_auto_falls_back_when_anderson_does_not_pay(rng):
    """Random weights, slow rate: auto tries Anderson; it must end no worse than Picard."""
    deq = df.DEQ("relu", sigma_a2=1.2, sigma_b2=1.0, tau0=1.0)  # Picard rate ~0.8
    X, W = small_problem(rng, m=400, n=40, p=16)
    pic = finite.forward(deq, X, 400, weights=W, solver="picard", tol=1e-10, max_iter=2000)
    au = finite.forward(deq, X, 400, weights=W, solver="auto", tol=1e-10, max_iter=2000)
    names = [name for name, _ in au.phases]
    firsts = [first for _, first in au.phases]
    assert names[:2] == ["picard", "anderson"] and firsts == sorted(firsts)
    assert au.evaluations <= 1.1 * pic.evaluations + 3
    assert rel(au.Z, pic.Z) < 1e-8
    assert au.residuals.shape == (au.evaluations,) and au.residual <= 1e-10


def test_float32_empirical_ck_within_monte_carlo_error():
    """The default dtype at tol = 1e-6 is float32; its CK differs from float64's far below
    the Monte-Carlo spread between weight draws."""
    X, deq = _paper_data(256)  # n = 204
    kw = dict(trials=1, tol=1e-6, progress=False)
    c32 = finite.empirical_ck(deq, X, 512, seed=1, **kw)
    c64 = finite.empirical_ck(deq, X, 512, seed=1, dtype=np.float64, **kw)
    other = finite.empirical_ck(deq, X, 512, seed=2, dtype=np.float64, **kw)
    mc = ref.rel_op_err(c64, other)  # spread of one draw, ~1/sqrt(m)
    err = ref.rel_op_err(c32, c64)
    assert 0 < err < 1e-3 * mc
    k32 = finite.empirical_ntk(deq, X[:60], 256, seed=1, **kw)
    k64 = finite.empirical_ntk(deq, X[:60], 256, seed=1, dtype=np.float64, **kw)
    k_other = finite.empirical_ntk(deq, X[:60], 256, seed=2, dtype=np.float64, **kw)
    assert 0 < ref.rel_op_err(k32, k64) < 1e-3 * ref.rel_op_err(k64, k_other)


def test_float32_matches_float64(rng, relu_deq):
    X, W = small_problem(rng, m=128, n=30, p=16)
    r64 = finite.forward(relu_deq, X, 128, weights=W, tol=1e-10)
    r32 = finite.forward(relu_deq, X, 128, weights=W, tol=1e-5, dtype=np.float32)
    assert r32.features.dtype == np.float32
    assert rel(r32.Z.astype(float), r64.Z) < 1e-4


def test_eigen_and_blas_products_agree(rng, relu_deq):
    X, (A, B, _) = small_problem(rng)
    sa, sb = math.sqrt(relu_deq.sigma_a2), math.sqrt(relu_deq.sigma_b2)
    Z1, _, _ = _core.deq_forward(relu_deq.phi.core, A, B, X, sa, sb, gemm="blas", tol=1e-12)
    Z2, _, _ = _core.deq_forward(relu_deq.phi.core, A, B, X, sa, sb, gemm="eigen", tol=1e-12)
    assert rel(Z1, Z2) < 1e-11


@pytest.mark.parametrize(
    ("simd", "blas", "engine"),
    [
        ("AVX512, FMA, AVX2, AVX, SSE, SSE2", [("openblas", "Haswell")], "eigen"),
        ("AVX512, FMA, AVX2", [("openblas", "Haswell"), ("openblas", "Zen")], "eigen"),
        ("AVX512, FMA, AVX2", [("openblas", "SkylakeX")], "blas"),
        ("AVX512, FMA, AVX2", [("openblas", "Haswell"), ("openblas", "SkylakeX")], "blas"),
        ("AVX512, FMA, AVX2", [("mkl", "SkylakeX")], "blas"),
        ("AVX512, FMA, AVX2", [], "blas"),
        ("FMA, AVX2, AVX, SSE, SSE2", [("openblas", "Haswell")], "blas"),
    ],
)
def test_product_engine_rule(simd, blas, engine):
    """Eigen's products only where they are the wider ones: Eigen built for AVX-512 and every
    BLAS an OpenBLAS on narrower kernels; any other BLAS (MKL, say) is trusted."""
    assert finite._choose_engine(simd, blas) == engine


@pytest.fixture
def set_engine(monkeypatch):
    """``set_engine(value)``: ``DEQFAST_GEMM`` set to ``value`` (``None``: unset) and
    ``finite.product_engine``'s cache cleared; the cache is cleared again afterwards, so the
    process's own choice comes back."""

    def set_(value):
        if value is None:
            monkeypatch.delenv(finite.GEMM_ENV, raising=False)
        else:
            monkeypatch.setenv(finite.GEMM_ENV, value)
        finite.product_engine.cache_clear()

    yield set_
    monkeypatch.undo()
    finite.product_engine.cache_clear()


def test_product_engine_follows_the_environment(set_engine):
    for value in ("eigen", " BLAS "):
        set_engine(value)
        assert finite.product_engine() == value.strip().lower()
    set_engine("mkl")
    with pytest.raises(ValueError, match="DEQFAST_GEMM"):
        finite.product_engine()
    set_engine(None)
    assert finite.product_engine() in ("blas", "eigen")


@pytest.mark.parametrize("engine", ["blas", "eigen"])
def test_forward_and_adjoint_do_not_depend_on_the_thread_count(rng, set_engine, engine):
    """Each engine gives the same numbers, bit for bit, on one thread and on two: Eigen's
    column blocks start on multiples of 64 columns (n = 300 splits at 128 on two threads)."""
    deq = df.DEQ("tanh", sigma_a2=0.5, tau0=1.0)
    X, W = small_problem(rng, m=256, n=300, p=16)
    set_engine(engine)
    for dtype in (np.float64, np.float32):
        one, two = (
            finite.forward(deq, X, 256, weights=W, tol=1e-5, dtype=dtype, num_threads=t)
            for t in (1, 2)
        )
        np.testing.assert_array_equal(one.Z, two.Z)
    k1, k2 = (
        finite.empirical_ntk(deq, X, 256, weights=[W], tol=1e-6, num_threads=t) for t in (1, 2)
    )
    np.testing.assert_array_equal(k1, k2)


def test_forward_repr_and_seed_reproducibility(rng, relu_deq):
    X = rng.standard_normal((10, 6))
    a = finite.forward(relu_deq, X, 32, seed=7)
    b = finite.forward(relu_deq, X, 32, seed=7)
    c = finite.forward(relu_deq, X, 32, weights=finite.draw_weights(32, 6, seed=7))
    d = finite.forward(relu_deq, X, 32, seed=8)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.features, c.features)
    assert not np.allclose(a.features, d.features)
    text = repr(a)
    assert text.startswith(
        "DEQForwardResult(n=10, width=32, solver='auto', solver_used='picard', status='converged'"
    )
    assert "evaluations=" in text and "residual=" in text
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.converged = False  # type: ignore[misc]
    np.testing.assert_allclose(a.ck(), a.features @ a.features.T / 32)


# --------------------------------------------------------------------------- #
# failures and validation
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("solver", ["anderson", "picard"])
def test_non_contracting_raises(rng, solver):
    deq = df.DEQ("relu", sigma_a2=4.0, sigma_b2=1.0)
    X = rng.standard_normal((16, 8))
    with pytest.raises(RuntimeError, match="sigma_a2") as info:
        finite.forward(deq, X, 128, seed=0, solver=solver, max_iter=300)
    assert "evaluations" in str(info.value) and "residual" in str(info.value)
    with pytest.warns(RuntimeWarning, match="reduce sigma_a2"):
        res = finite.forward(deq, X, 128, seed=0, solver=solver, max_iter=300, strict=False)
    assert not res.converged and res.status in ("diverged", "max_iter", "nonfinite")
    with pytest.raises(RuntimeError, match="sigma_a2"):
        finite.empirical_ck(deq, X, 128, seed=0, progress=False, max_iter=300)


def test_max_iter_reported(rng, relu_deq):
    X = rng.standard_normal((8, 5))
    with pytest.raises(RuntimeError, match=r"after 3 evaluations.*max_iter"):
        finite.forward(relu_deq, X, 64, seed=1, max_iter=3)
    with pytest.warns(RuntimeWarning):
        res = finite.forward(relu_deq, X, 64, seed=1, max_iter=3, strict=False)
    assert res.status == "max_iter" and res.evaluations == 3 and not res.converged


def test_nonfinite_reported(rng, relu_deq):
    X = rng.standard_normal((8, 5))
    A, B, v = finite.draw_weights(64, 5, seed=0)
    A[0, 0] = 1e308  # overflows to inf inside the map
    with pytest.raises(RuntimeError, match="NaN/inf"):
        finite.forward(relu_deq, X * 1e3, 64, weights=(A, B, v))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(width=0), ValueError, "width"),
        (dict(width=2.5), TypeError, "width"),
        (dict(tol=0.0), ValueError, "tol"),
        (dict(tol=-1e-3), ValueError, "tol"),
        (dict(max_iter=0), ValueError, "max_iter"),
        (dict(memory=-1), ValueError, "memory"),
        (dict(damping=0.0), ValueError, "damping"),
        (dict(damping=1.5), ValueError, "damping"),
        (dict(solver="newton"), ValueError, "solver"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(dtype=np.float32), ValueError, "float32"),
        (dict(dtype=np.int32), ValueError, "dtype"),
        (dict(dtype="bogus"), TypeError, "dtype"),
        (dict(max_iter=2**40), ValueError, "max_iter"),
        (dict(num_threads=-1), ValueError, "num_threads"),
        (dict(num_threads=1.5), TypeError, "num_threads"),
        (dict(seed=1, weights=finite.draw_weights(16, 4, seed=1)), ValueError, "either"),
        (dict(weights=finite.draw_weights(16, 5, seed=1)), ValueError, r"weights\[1\]"),
        (dict(weights=(np.eye(16),)), TypeError, "weights"),
    ],
)
def test_forward_validation(kwargs, exc, match, relu_deq):
    X = np.ones((3, 4))
    args = dict(width=16)
    args.update(kwargs)
    width = args.pop("width")
    with pytest.raises(exc, match=match):
        finite.forward(relu_deq, X, width, **args)


def test_input_validation(relu_deq):
    X = np.ones((3, 4))
    X[1, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        finite.forward(relu_deq, X, 8)
    with pytest.raises(ValueError, match="2-D"):
        finite.forward(relu_deq, np.ones(4), 8)
    with pytest.raises(ValueError, match="trials"):
        finite.empirical_ck(relu_deq, np.ones((3, 4)), 8, trials=0)
    with pytest.raises(ValueError, match="method"):
        finite.empirical_ntk(relu_deq, np.ones((3, 4)), 8, method="exact")
    with pytest.raises(ValueError, match="trained"):
        finite.empirical_ntk(relu_deq, np.ones((3, 4)), 8, trained="B")
    with pytest.raises(TypeError, match="DEQ"):
        finite.forward(object(), np.ones((3, 4)), 8)
    custom = df.DEQ(df.activations.CustomActivation(np.sin), sigma_a2=0.2)
    with pytest.raises(TypeError, match="built-in activation"):
        finite.forward(custom, np.ones((3, 4)), 8)


# --------------------------------------------------------------------------- #
# adjoint and empirical NTK
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("solver", ["anderson", "picard"])
def test_adjoint_satisfies_its_fixed_point(rng, relu_deq, solver):
    m = 96
    X, (A, B, v) = small_problem(rng, m=m, n=25, p=10)
    res = finite.forward(relu_deq, X, m, weights=(A, B, v), tol=1e-12)
    sa = math.sqrt(relu_deq.sigma_a2)
    W, rep = _core.deq_adjoint(relu_deq.phi.core, A, res.Z, v, sa, solver=solver, tol=1e-12)
    assert rep.converged
    D = relu_deq.phi.derivative(res.Z.T)  # (m, n)
    G = D * v[:, None] / math.sqrt(m)
    rhs = G + sa / math.sqrt(m) * D * (A.T @ W)
    assert rel(W, rhs) < 1e-11
    # linear system form: (I - c D Aᵀ) w = g, column by column
    w0 = np.linalg.solve(np.eye(m) - sa / math.sqrt(m) * D[:, :1] * A.T, G[:, 0])
    assert rel(W[:, 0], w0) < 1e-10


def _fd_gradients(phi, A, B, v, x, sigma_a2, sigma_b2, h=1e-6):
    """Central finite differences of f(x) = vᵀφ(z*)/√m w.r.t. A, B and v."""
    m = A.shape[0]

    def f(A_, B_, v_):
        z = np_fixed_point(phi, A_, B_, x[None, :], sigma_a2, sigma_b2)[:, 0]
        return float(v_ @ phi(z)) / math.sqrt(m)

    def grad(P, which):
        g = np.zeros_like(P)
        for idx in np.ndindex(P.shape):
            Pp, Pm = P.copy(), P.copy()
            Pp[idx] += h
            Pm[idx] -= h
            args_p = [A, B, v]
            args_m = [A, B, v]
            args_p[which], args_m[which] = Pp, Pm
            g[idx] = (f(*args_p) - f(*args_m)) / (2 * h)
        return g.ravel()

    return grad(A, 0), grad(B, 1), grad(v, 2)


@pytest.mark.parametrize("name", ["tanh", "relu", "elu", "swish"])
def test_empirical_ntk_adjoint_matches_finite_differences(rng, name):
    deq = df.DEQ(name, sigma_a2=0.1, sigma_b2=0.9, tau0=None if name == "tanh" else 1.0)
    m, n, p, seed = 6, 3, 4, 11
    X = rng.standard_normal((n, p)) / math.sqrt(p)
    A, B, v = finite.draw_weights(m, p, seed=seed)
    grads = [_fd_gradients(deq.phi, A, B, v, X[i], deq.sigma_a2, deq.sigma_b2) for i in range(n)]
    JA = np.array([g[0] for g in grads])
    JB = np.array([g[1] for g in grads])
    Jv = np.array([g[2] for g in grads])
    hidden = JA @ JA.T + Jv @ Jv.T
    full = hidden + JB @ JB.T
    kw = dict(seed=seed, progress=False, tol=1e-13)
    K = finite.empirical_ntk(deq, X, m, trained="hidden", **kw)
    T = finite.empirical_ntk(deq, X, m, trained="all", **kw)
    np.testing.assert_allclose(K, hidden, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(T, full, rtol=1e-6, atol=1e-8)


def test_empirical_ntk_weights_are_the_draws_of_the_seed(rng, relu_deq):
    """Explicit weights (one triple per trial, drawn as the module docstring says) give the
    result of the seed, CK included; the same draws serve a second DEQ."""
    X = rng.standard_normal((10, 6)) / math.sqrt(6)
    g = np.random.default_rng([4, 7])
    weights = [finite.draw_weights(48, 6, seed=g) for _ in range(2)]
    tanh = df.DEQ("tanh", sigma_a2=0.3)
    for deq in (relu_deq, tanh):
        C1, C2 = np.empty((10, 10)), np.empty((10, 10))
        kw = dict(trials=2, progress=False, tol=1e-10)
        N1 = finite.empirical_ntk(deq, X, 48, seed=np.random.default_rng([4, 7]), ck_out=C1, **kw)
        N2 = finite.empirical_ntk(deq, X, 48, weights=weights, ck_out=C2, **kw)
        np.testing.assert_array_equal(N1, N2)
        np.testing.assert_array_equal(C1, C2)
    with pytest.raises(ValueError, match="either seed or weights"):
        finite.empirical_ntk(relu_deq, X, 48, trials=2, seed=1, weights=weights)
    with pytest.raises(ValueError, match="trials = 3 triples"):
        finite.empirical_ntk(relu_deq, X, 48, trials=3, weights=weights)
    with pytest.raises(ValueError, match="shape"):
        finite.empirical_ntk(relu_deq, X, 40, trials=2, weights=weights)


def test_empirical_ntk_elementwise_formula(rng, relu_deq):
    m = 80
    X = rng.standard_normal((12, 7)) / math.sqrt(7)
    res = finite.forward(relu_deq, X, m, seed=3)
    G = res.features @ res.features.T / m
    D = relu_deq.phi.derivative(res.Z)
    Gd = D @ D.T / m
    S = res.Z @ res.Z.T / m
    sa2 = relu_deq.sigma_a2
    K = finite.empirical_ntk(relu_deq, X, m, seed=3, method="elementwise", progress=False)
    T = finite.empirical_ntk(
        relu_deq, X, m, seed=3, method="elementwise", trained="all", progress=False
    )
    np.testing.assert_allclose(K, G / (1 - sa2 * Gd), rtol=1e-12)
    np.testing.assert_allclose(T, G + Gd * S / (1 - sa2 * Gd), rtol=1e-12)


def test_monte_carlo_average_and_seeds(rng, relu_deq):
    X = rng.standard_normal((9, 5))
    C2 = finite.empirical_ck(relu_deq, X, 40, trials=2, seed=5, progress=False)
    assert np.array_equal(
        C2, finite.empirical_ck(relu_deq, X, 40, trials=2, seed=5, progress=False)
    )
    g = np.random.default_rng(5)
    r1 = finite.forward(relu_deq, X, 40, seed=g)
    r2 = finite.forward(relu_deq, X, 40, seed=g)
    np.testing.assert_allclose(C2, (r1.ck() + r2.ck()) / 2, rtol=1e-12)
    assert np.allclose(C2, C2.T)
    # progress bar path (tqdm) gives the same numbers
    C2p = finite.empirical_ck(relu_deq, X, 40, trials=2, seed=5, progress=True)
    np.testing.assert_allclose(C2p, C2, rtol=0, atol=0)


# --------------------------------------------------------------------------- #
# convergence to the infinite-width kernels as the width grows
# --------------------------------------------------------------------------- #
def _paper_data(p):
    n = int(0.8 * p)
    sample = df.GaussianMixture.paper(p).sample(n, seed=2024)
    deq = df.DEQ("relu", sigma_a2=0.2, tau0=sample.stats.tau0)
    return sample.X, deq


@pytest.mark.parametrize(
    ("kernel", "p", "widths", "trials"),
    [("ck", 512, (256, 1024, 4096), 3), ("ntk", 256, (128, 512, 2048), 2)],
)
def test_empirical_kernel_converges_to_exact_kernel(kernel, p, widths, trials):
    """The Monte-Carlo CK / NTK approach deq.ck / deq.ntk as the width grows (n = 0.8 p)."""
    X, deq = _paper_data(p)
    exact = deq.ck(X) if kernel == "ck" else deq.ntk(X)
    empirical = finite.empirical_ck if kernel == "ck" else finite.empirical_ntk
    errs = [
        ref.rel_op_err(exact, empirical(deq, X, m, trials=trials, seed=m, tol=1e-5, progress=False))
        for m in widths
    ]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] <= 0.25


def _anderson_passes(evaluations: int, memory: int) -> int:
    """Full-length array passes of an undamped Anderson solve with no drop or restart:
    sweep 1 of evaluation e reads g, x and min(e - 1, mem) stored residuals and writes f;
    sweep 2 after every evaluation but the last reads min(e, mem + 1) evaluations and writes
    x, its fused prepare writes phi and the next output from U (3); the first evaluation's
    prepare (4), the final copy of g (2) and the final phi (2)."""
    e = np.arange(1, evaluations + 1)
    sweep1 = np.sum(3 + np.minimum(e - 1, memory))
    sweep2 = np.sum(4 + np.minimum(e[:-1], memory + 1))
    return int(sweep1 + sweep2 + 4 + 2 + 2)


@pytest.mark.parametrize(
    "options, passes",
    [
        # residual sweep (g, x) + fused prepare (phi, U, output) per evaluation; the first
        # prepare stands alone (4); the final phi (2). The two buffers alternate: after an
        # odd number of evaluations the result is copied from the pooled one (2).
        (dict(solver="picard"), lambda e: 5 * e + 6 + 2 * (e % 2)),
        (dict(solver="auto"), lambda e: 5 * e + 6 + 2 * (e % 2)),
        # Eigen products: prepare writes phi only (U is added with the product)
        (dict(solver="picard", gemm="eigen"), lambda e: 3 * e + 4 + 2 * (e % 2)),
        # damped: the sweep writes the next point, prepare runs on its own every evaluation;
        # the last evaluation is always in the pooled buffer (copy, 2)
        (dict(solver="picard", damping=0.7), lambda e: 7 * e + 4),
        (dict(solver="anderson"), lambda e: _anderson_passes(e, 5)),
        (dict(solver="anderson", memory=2), lambda e: _anderson_passes(e, 2)),
    ],
)
def test_core_counts_array_passes_and_times_products(rng, options, passes):
    """The core's accounting of its memory traffic outside the products (the figure
    benchmarks/bench_forward.py reports per evaluation) and of its product time."""
    deq = df.DEQ("relu", sigma_a2=0.5, tau0=1.0)
    X, (A, B, _) = small_problem(rng, m=256, n=64, p=32)
    _, _, rep = _core.deq_forward(
        deq.phi.core, A, B, X, math.sqrt(0.5), math.sqrt(0.5), tol=1e-10, **options
    )
    assert rep.converged and rep.dropped == 0 and rep.restarts == 0
    assert rep.array_passes == passes(rep.evaluations)
    assert 0 < rep.product_seconds <= rep.solve_seconds
