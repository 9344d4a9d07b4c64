"""Thick-restart Lanczos, LOBPCG, Chebyshev filtering and block Lanczos against known spectra."""

import numpy as np
import pytest
import torch

from hessbench.backends.dense import DenseOperator
from conftest import known_spectrum_matrix
from hessbench import problems
from hessbench.solvers import lanczos, thick_restart
from hessbench.solvers.block_lanczos import BlockLanczos
from hessbench.solvers.chebyshev import ChebyshevFilter
from hessbench.solvers.base import Run
from hessbench.solvers.kernels import (KrylovBasis, append_orthonormal, ends, error_bound,
                                       lanczos_steps, norm)
from hessbench.solvers.result import Budget
from hessbench.solvers.lobpcg import LOBPCG
from hessbench.solvers.thick_restart import ThickRestartLanczos

SOLVERS = {cls.name: cls for cls in (ThickRestartLanczos, LOBPCG, ChebyshevFilter, BlockLanczos)}
NAMES = list(SOLVERS)
INDEFINITE = np.concatenate([[100.0, 50.0, 20.0], np.linspace(-0.5, 2.0, 97)])
POSITIVE = np.concatenate([[30.0, 10.0], np.linspace(0.5, 3.0, 78)])
MAGNITUDE = np.concatenate([[10.0], np.linspace(-1.0, 5.0, 40), [-50.0]])  # |lambda_min| > max


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dense(eigenvalues, as_torch=False, seed=0):
    A = known_spectrum_matrix(eigenvalues, seed)
    return DenseOperator(torch.tensor(A) if as_torch else A)


@pytest.mark.parametrize("as_torch", [False, True], ids=["numpy", "torch"])
@pytest.mark.parametrize("spectrum", [INDEFINITE, POSITIVE], ids=["indefinite", "posdef"])
@pytest.mark.parametrize("name", NAMES)
def test_both_ends_on_known_spectra(name, spectrum, as_torch):
    op = dense(spectrum, as_torch)
    r = SOLVERS[name](tol=1e-8).solve(op, seed=3)
    assert r.converged and r.status == "converged", r.message
    assert r.lambda_max == pytest.approx(spectrum.max(), rel=1e-6)
    assert r.lambda_min == pytest.approx(spectrum.min(), rel=1e-6)
    for lam, x, res in ((r.lambda_max, r.vector_max, r.residual_max),
                        (r.lambda_min, r.vector_min, r.residual_min)):
        assert type(x) is type(op.matrix)
        hx = op.matrix @ x
        assert float(x @ hx) == pytest.approx(lam, rel=1e-6, abs=1e-10)
        assert norm(hx - lam * x) == pytest.approx(res, abs=1e-6)
    assert len(r.trace) >= 1 and r.trace[-1].hvp_calls == r.hvp_calls


@pytest.mark.parametrize("name", NAMES)
def test_which_semantics_and_algebraic_ends(name):
    op = dense(MAGNITUDE)
    s = SOLVERS[name](tol=1e-8)
    both, mx, mn = (s.solve(op, w, seed=1) for w in ("both", "max", "min"))
    assert all(r.converged for r in (both, mx, mn))
    assert both.lambda_max == pytest.approx(10.0, rel=1e-6)
    assert both.lambda_min == pytest.approx(-50.0, rel=1e-6)
    assert mx.lambda_min is None and mx.vector_min is None
    assert mx.lambda_max == pytest.approx(10.0, rel=1e-6)
    assert mn.lambda_max is None and mn.vector_max is None
    assert mn.lambda_min == pytest.approx(-50.0, rel=1e-6)
    assert all(t.lambda_min is None for t in mx.trace)
    assert all(t.lambda_max is None for t in mn.trace)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_answer(name):
    op = dense(INDEFINITE)
    a, b, c = (SOLVERS[name](tol=1e-6).solve(op, seed=s) for s in (5, 5, 6))
    assert (a.lambda_max, a.lambda_min, a.hvp_calls) == (b.lambda_max, b.lambda_min, b.hvp_calls)
    assert [t.lambda_min for t in a.trace] == [t.lambda_min for t in b.trace]
    assert [t.lambda_min for t in a.trace] != [t.lambda_min for t in c.trace]


@pytest.mark.parametrize("which", ["both", "min"])
@pytest.mark.parametrize("name", NAMES)
def test_budget_stops_unconverged_and_keeps_estimates(name, which):
    r = SOLVERS[name](tol=1e-12).solve(dense(INDEFINITE), which, seed=0, budget={"max_hvps": 7})
    assert r.status == "budget" and not r.converged and "budget" in r.message
    assert r.hvp_calls <= 7 and len(r.trace) >= 1
    last = r.trace[-1]
    assert (r.lambda_max, r.lambda_min) == (last.lambda_max, last.lambda_min)
    # one-sided methods (lobpcg) spend a small "both" budget on lambda_max, asked first
    assert last.lambda_max is not None if which == "both" else last.lambda_min is not None
    assert (r.vector_max if which == "both" else r.vector_min) is not None


@pytest.mark.parametrize("name", NAMES)
def test_step_limit_reports_max_steps(name):
    r = SOLVERS[name](tol=1e-12, max_steps=5).solve(dense(INDEFINITE), seed=0)
    assert r.status == "max_steps" and not r.converged and "max_steps" in r.message
    assert r.lambda_max is not None and r.lambda_min is not None


class NaNAfter(DenseOperator):
    """Exact products for the first ``good`` vectors, then NaN."""

    def __init__(self, matrix, good):
        super().__init__(matrix)
        self.good = good

    def _matmat(self, V, indices):
        out = self.matrix @ V
        out[:, max(self.good, 0):] = np.nan
        self.good -= V.shape[1]
        return out

    def _matvec(self, v, indices):
        return self._matmat(v[:, None], indices)[:, 0]


@pytest.mark.parametrize("name", NAMES)
def test_nan_hvp_fails_and_keeps_estimates(name):
    op = NaNAfter(known_spectrum_matrix(INDEFINITE), good=12)
    r = SOLVERS[name](tol=1e-12).solve(op, seed=0)
    assert r.status == "failed" and "NaN" in r.message
    assert r.trace and r.trace[-1].lambda_max is not None


QUADRATIC_TOL = {"thick-restart-lanczos": 1e-6, "lobpcg": 1e-5, "chebyshev": 1e-4,
                 "block-lanczos": 1e-6}


@pytest.mark.parametrize("name", NAMES)
def test_quadratic_small_through_the_hessian_operator(name):
    prob = problems.get("quadratic-small")
    ref = prob.exact_reference()
    r = SOLVERS[name](tol=QUADRATIC_TOL[name]).solve(prob.operator(progress=False), seed=0)
    assert r.converged, r.message
    assert r.lambda_max == pytest.approx(ref["lambda_max"], rel=1e-4)
    assert r.lambda_min == pytest.approx(ref["lambda_min"], rel=1e-4)
    assert isinstance(r.vector_min, torch.Tensor)


def test_thick_restart_with_large_basis_is_lanczos():
    op = dense(INDEFINITE)
    full = lanczos.Lanczos(tol=1e-8).solve(op, seed=2)
    tr = ThickRestartLanczos(tol=1e-8, max_basis=500).solve(op, seed=2)
    assert tr.hvp_calls == full.hvp_calls
    assert tr.lambda_max == pytest.approx(full.lambda_max, rel=1e-12)
    assert tr.lambda_min == pytest.approx(full.lambda_min, rel=1e-10)


def test_thick_restart_small_basis_converges_in_bounded_memory(monkeypatch):
    capacities = []

    class Recording(KrylovBasis):
        def append(self, q):
            super().append(q)
            capacities.append(self.Q.shape[0])

    monkeypatch.setattr(thick_restart, "KrylovBasis", Recording)
    prob = problems.get("quadratic-small")
    ref = prob.exact_reference()
    r = ThickRestartLanczos(tol=1e-5, max_basis=12).solve(prob.operator(progress=False), seed=0)
    assert r.converged, r.message
    assert r.lambda_max == pytest.approx(ref["lambda_max"], rel=1e-4)
    assert r.lambda_min == pytest.approx(ref["lambda_min"], rel=1e-4)
    assert r.hvp_calls > 3 * 12  # several restarts
    assert max(capacities) == 12


def test_thick_restart_locks_converged_pairs_outermost_first():
    s = ThickRestartLanczos(tol=1e-6, max_basis=12, keep=2)
    theta = np.concatenate([np.linspace(-1.0, 1.0, 6), [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]])
    resid = np.full(12, 1e-2)
    resid[6:] = 1e-9  # the outliers have converged
    resid[3] = 1e-12  # so has a bulk pair (rank 3 from the nearer end)
    # 2 wanted; locked: converged, outermost first, at most half the free room (12 - 2 - 1) // 2
    assert list(s._kept(theta, resid, ("min",), 12)) == [0, 1, 3, 9, 10, 11]
    assert list(s._kept(theta, resid, ("max",), 12)) == [3, 7, 8, 9, 10, 11]
    assert list(s._kept(theta, np.full(12, 1e-2), ("max", "min"), 12)) == [0, 1, 10, 11]


@pytest.mark.parametrize("block_size", [1, 3, 4])
def test_block_lanczos_charges_whole_blocks(block_size):
    r = BlockLanczos(tol=1e-8, block_size=block_size).solve(dense(INDEFINITE), seed=0)
    assert r.converged
    assert r.hvp_calls % block_size == 0 and r.hvp_calls == block_size * len(r.trace)
    assert r.lambda_min == pytest.approx(-0.5, rel=1e-6)


def test_block_lanczos_rank_deficient_blocks():
    # a simple top eigenvalue and three eigenvalues of multiplicity 20: the fourth block of 4
    # vectors has one new direction, so three columns are deflated and replaced
    spectrum = np.concatenate([[5.0], np.repeat([3.0, 1.0, -1.0], 20)])
    r = BlockLanczos(tol=1e-10, block_size=4).solve(dense(spectrum), seed=0)
    assert r.converged, r.message
    assert r.lambda_max == pytest.approx(5.0, rel=1e-10)
    assert r.lambda_min == pytest.approx(-1.0, rel=1e-10)
    assert r.hvp_calls % 4 == 0


def test_append_orthonormal_replaces_dependent_columns():
    rng = np.random.default_rng(0)
    v = rng.standard_normal(30)
    W = np.stack([v, 2 * v, rng.standard_normal(30)], axis=1)
    basis = KrylovBasis(v, capacity=3)
    replaced = append_orthonormal(basis, W, lambda: rng.standard_normal(30))
    Q = basis.rows()
    assert replaced == 1 and basis.k == 3
    assert np.allclose(Q @ Q.T, np.eye(3), atol=1e-14)


def test_lobpcg_diagonal_preconditioner_speeds_up_lambda_min():
    rng = np.random.default_rng(0)
    d = np.geomspace(1.0, 1e3, 120)
    E = rng.standard_normal((120, 120)) * 1e-2
    A = np.diag(d) + (E + E.T) / 2
    exact = np.linalg.eigvalsh(A)
    op = DenseOperator(A)
    pre = LOBPCG(tol=1e-8, preconditioner=lambda r: r / d).solve(op, "min", seed=0)
    assert pre.converged and pre.lambda_min == pytest.approx(exact[0], rel=1e-8)
    plain = LOBPCG(tol=1e-8, max_steps=3 * len(pre.trace)).solve(op, "min", seed=0)
    assert plain.status == "max_steps"


@pytest.mark.parametrize("name, options, match", [
    ("thick-restart-lanczos", {"max_basis": 3}, "max_basis"),
    ("thick-restart-lanczos", {"max_basis": 10, "keep": 5}, "keep"),
    ("lobpcg", {"block_size": 0}, "block_size"),
    ("lobpcg", {"preconditioner": 3.0}, "preconditioner"),
    ("chebyshev", {"degree": 0}, "degree"),
    ("chebyshev", {"block_size": 1}, "block_size"),
    ("chebyshev", {"block_size": 4, "lanczos_steps": 8}, "lanczos_steps"),
    ("block-lanczos", {"block_size": 0}, "block_size"),
    ("block-lanczos", {"max_steps": 0}, "max_steps"),
])
def test_option_errors(name, options, match):
    with pytest.raises(ValueError, match=match):
        SOLVERS[name](**options)


def test_kernels_ends_and_error_bound():
    assert ends("both") == ("max", "min") and ends("max") == ("max",) and ends("min") == ("min",)
    assert error_bound(1e-2, 1.0) == pytest.approx(1e-4, rel=1e-15)  # r^2 / gap
    assert error_bound(1e-2, 1e-3) == 1e-2  # r when r^2 / gap > r
    assert error_bound(1e-2, 0.0) == 1e-2  # no gap known


@pytest.mark.parametrize("start, steps", [("invariant", 3), ("random", 6)])
def test_lanczos_steps_stops_at_breakdown_with_exact_ritz_values(start, steps):
    spectrum = np.array([4.0, 3.0, 1.0, -1.0, -2.0, 0.5])
    op = DenseOperator(np.diag(spectrum))
    # e_0 + e_2 + e_4 spans an invariant 3-dimensional Krylov space; a random start, all of R^6
    q = np.where(np.arange(6) % 2 == 0, 1.0, 0.0) if start == "invariant" else \
        np.random.default_rng(0).standard_normal(6)
    run = Run(op, Budget())
    states = list(lanczos_steps(run, q, max_steps=20, publish=()))
    assert [s.steps for s in states] == list(range(1, steps + 1))
    assert [s.breakdown for s in states] == [False] * (steps - 1) + [True]
    exact = np.sort(spectrum[::2] if start == "invariant" else spectrum)
    assert np.allclose(states[-1].theta, exact, atol=1e-12)
    assert run.hvp_calls == len(run.trace) == steps and run.lam == {"max": None, "min": None}
    ritz = states[-1].ritz
    assert (ritz["max"].value, ritz["min"].value) == (states[-1].theta[-1], states[-1].theta[0])
