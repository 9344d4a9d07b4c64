"""Block Lanczos (fixed and ``block_size="auto"``), its kernels, against exactly known spectra
and a dense Hessian: answers, honest residuals, the block-size rule and its costs."""

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call, hessian

from conftest import known_spectrum_matrix
from hessbench import solvers
from hessbench.backends.dense import DenseOperator
from hessbench.backends.torch import HessianOperator
from hessbench.solvers import base
from hessbench.solvers import block_lanczos as bl
from hessbench.solvers.block_lanczos import BlockLanczos, choose_block_size, extreme_pairs
from hessbench.solvers.kernels import KrylovBasis, append_orthonormal
from hessbench.solvers.lanczos import Lanczos
from hessbench.solvers.result import Budget
from hessbench.solvers.testing import check_solver

pytestmark = pytest.mark.usefixtures("one_torch_thread")

INDEFINITE = np.concatenate([[100.0, 50.0, 20.0], np.linspace(-0.5, 2.0, 97)])
GAPPED = np.concatenate([[100.0, 50.0, 20.0], np.linspace(-0.3, 2.0, 196), [-0.5]])  # n = 200
TWINS = np.concatenate([[10.0, 9.9], np.linspace(-0.9, 5.0, 60), [-0.99, -1.0]])


def dense(eigenvalues, as_torch=False, dtype=np.float64, seed=0):
    A = known_spectrum_matrix(eigenvalues, seed).astype(dtype)
    return DenseOperator(torch.tensor(A) if as_torch else A)


def true_residual(op, x, lam):
    A = np.asarray(op.matrix, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    return float(np.linalg.norm(A @ x - lam * x)), float(np.linalg.norm(x))


# -- the banded Ritz pairs ----------------------------------------------------------------


def block_tridiagonal(k, b, seed=0):
    rng = np.random.default_rng(seed)
    T = np.zeros((k, k))
    for j in range(0, k, b):
        A = rng.standard_normal((b, b))[: k - j, : k - j]
        T[j:j + b, j:j + b] = A + A.T
        if j + b < k:
            B = np.triu(rng.standard_normal((b, b)))[: k - j - b]
            T[j + b:j + 2 * b, j:j + b], T[j:j + b, j + b:j + 2 * b] = B, B.T
    return T


@pytest.mark.parametrize("k, b", [(1, 1), (7, 3), (40, 4), (96, 8)])
def test_extreme_pairs_are_the_extreme_eigenpairs(k, b):
    T = block_tridiagonal(k, b)
    exact = np.linalg.eigvalsh(T)
    pairs = extreme_pairs(T, b, ("max", "min"))
    for end, want in (("max", exact[-1]), ("min", exact[0])):
        theta, s, rt = pairs[end]
        assert theta == pytest.approx(want, abs=1e-12 * np.abs(exact).max())
        assert np.linalg.norm(s) == pytest.approx(1.0, abs=1e-12)
        assert rt == pytest.approx(np.linalg.norm(T @ s - theta * s), abs=1e-15)
        assert rt <= 1e-12 * np.abs(exact).max()


def test_extreme_pairs_on_a_singular_shift_and_a_double_eigenvalue():
    """A diagonal T with theta exactly on it (singular shift: the LU fallback) and a double
    extreme eigenvalue (inverse iteration returns a vector of its eigenspace)."""
    T = np.diag([3.0, -1.0, 3.0, 0.5, -2.0])
    pairs = extreme_pairs(T, 1, ("max", "min"))
    theta, s, rt = pairs["max"]
    assert theta == 3.0 and rt <= 1e-15 and abs(s[1]) + abs(s[3]) + abs(s[4]) <= 1e-15
    theta, s, rt = pairs["min"]
    assert theta == -2.0 and rt <= 1e-15 and abs(abs(s[4]) - 1) <= 1e-15


# -- block orthonormalisation -------------------------------------------------------------


@pytest.mark.parametrize("dtype, scales, tol", [(np.float64, (1e-3, 1e-6, 1e-11), 1e-13),
                                               (np.float32, (1e-2, 1e-3, 2e-4), 5e-6)])
def test_append_orthonormal_keeps_the_basis_orthonormal_through_cancellation(dtype, scales,
                                                                             tol):
    """Blocks nearly in the span (remainders down to 1e-11 / 2e-4 of their norm, above the
    deflation level 100 eps) and a dependent column: the basis stays orthonormal to working
    precision, the dependent column is replaced."""
    rng = np.random.default_rng(0)
    n = 300
    basis = KrylovBasis(np.zeros(n, dtype=dtype), capacity=4)
    append_orthonormal(basis, rng.standard_normal((n, 10)).astype(dtype),
                       lambda: rng.standard_normal(n).astype(dtype))
    for scale in scales:
        Q = basis.rows().T.astype(np.float64)
        W = Q @ rng.standard_normal((Q.shape[1], 4)) + scale * rng.standard_normal((n, 4))
        W[:, 3] = W[:, 0] + 2 * W[:, 1]  # dependent on the block's own columns
        replaced = append_orthonormal(basis, W.astype(dtype),
                                      lambda: rng.standard_normal(n).astype(dtype))
        assert replaced == 1
    Q = basis.rows().astype(np.float64)
    assert basis.k == 22
    assert np.abs(Q @ Q.T - np.eye(basis.k)).max() <= tol


def test_append_orthonormal_stops_at_the_whole_space():
    rng = np.random.default_rng(1)
    basis = KrylovBasis(np.zeros(6), capacity=2)
    append_orthonormal(basis, rng.standard_normal((6, 4)), lambda: rng.standard_normal(6))
    append_orthonormal(basis, rng.standard_normal((6, 4)), lambda: rng.standard_normal(6))
    assert basis.k == 6
    assert np.allclose(basis.rows() @ basis.rows().T, np.eye(6), atol=1e-14)


# -- block Lanczos with a fixed block size ------------------------------------------------


@pytest.mark.parametrize("as_torch", [False, True], ids=["numpy", "torch"])
@pytest.mark.parametrize("b", [2, 3, 5, 8])
def test_fixed_block_sizes_find_both_ends_with_exact_residuals(b, as_torch):
    op = dense(GAPPED, as_torch)
    r = BlockLanczos(tol=1e-6, block_size=b).solve(op, seed=4)
    assert r.converged and "residual below" in r.message, r.message
    assert r.lambda_max == pytest.approx(100.0, rel=1e-9)
    assert r.lambda_min == pytest.approx(-0.5, rel=1e-6)
    assert r.hvp_calls == b * len(r.trace) < op.size
    for lam, x, res in ((r.lambda_max, r.vector_max, r.residual_max),
                        (r.lambda_min, r.vector_min, r.residual_min)):
        true, length = true_residual(op, x, lam)
        assert length == pytest.approx(1.0, abs=1e-12)
        assert true == pytest.approx(res, abs=1e-10)  # the bound is tight here


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("b", [2, 4])
def test_a_converged_float32_answer_meets_its_residual_bound(b, seed):
    """Float32 products: every self-stopped end satisfies ||H x - theta x|| <= tol |theta| for
    the returned unit vector, measured in float64 (small slack for the float32 vector)."""
    tol = 1e-4
    op = dense(TWINS, as_torch=True, dtype=np.float32, seed=seed)
    r = BlockLanczos(tol=tol, block_size=b).solve(op, seed=seed)
    assert r.converged, r.message
    for lam, x in ((r.lambda_max, r.vector_max), (r.lambda_min, r.vector_min)):
        true, _ = true_residual(op, x.numpy(), lam)
        assert true <= tol * abs(lam) + 1e-5
    assert abs(r.lambda_max - 10.0) <= 10 * tol * 10.0
    assert abs(r.lambda_min + 1.0) <= 10 * tol * 1.0


def test_block_size_one_is_lanczos():
    op = dense(INDEFINITE)
    a = Lanczos(tol=1e-8).solve(op, seed=3)
    b = BlockLanczos(tol=1e-8, block_size=1).solve(op, seed=3)
    assert (a.lambda_max, a.lambda_min, a.hvp_calls) == (b.lambda_max, b.lambda_min, b.hvp_calls)
    assert [t.residual_min for t in a.trace] == [t.residual_min for t in b.trace]


def test_default_max_steps_is_a_krylov_dimension_of_500():
    op = dense(INDEFINITE)
    for b, calls in ((1, 100), (4, 100), (8, 104)):  # n = 100: the whole space, or 13 x 8
        r = BlockLanczos(tol=1e-15, block_size=b).solve(op, seed=0, budget={"max_hvps": 600})
        assert r.hvp_calls <= calls
    r = BlockLanczos(tol=1e-15, block_size=4, max_steps=3).solve(op, seed=0)
    assert r.status == "max_steps" and r.hvp_calls == 12


def test_dense_hessian_of_a_small_network(small_mlp_problem):
    """A float64 tanh MLP (53 parameters, 53 samples): both ends against the eigenvalues of
    torch.func.hessian of the full-data loss, for fixed and automatic block sizes."""
    model, loss_fn, x, y = small_mlp_problem
    op = HessianOperator(model, loss_fn, (x, y), batch_size=16)

    def f(flat):
        return loss_fn(functional_call(model, op.unflatten(flat), (x,)), y)

    exact = np.linalg.eigvalsh(hessian(f)(op.theta).numpy())
    for block_size in (2, 4, "auto"):
        r = BlockLanczos(tol=1e-8, block_size=block_size).solve(op, seed=1)
        assert r.converged, r.message
        assert r.lambda_max == pytest.approx(exact[-1], rel=1e-7)
        assert r.lambda_min == pytest.approx(exact[0], rel=1e-6, abs=1e-9 * exact[-1])


# -- block_size="auto" --------------------------------------------------------------------


def install_clock(monkeypatch, price):
    """Run.seconds on a fake clock that a product of k vectors advances by price(k) seconds,
    so that the block-size choice is deterministic."""
    now = [0.0]
    matvec, matmat = base.Run.matvec, base.Run.matmat

    def timed_matvec(self, v, indices=None):
        now[0] += price(1)
        return matvec(self, v, indices)

    def timed_matmat(self, V, indices=None):
        now[0] += price(V.shape[1])
        return matmat(self, V, indices)

    monkeypatch.setattr(base.Run, "matvec", timed_matvec)
    monkeypatch.setattr(base.Run, "matmat", timed_matmat)
    monkeypatch.setattr(base.Run, "seconds",
                        lambda self: now[0] - self.__dict__.setdefault("_fake0", now[0]))


@pytest.mark.parametrize("cost, timed, size", [
    # cost per vector 0.4 / 0.4 / 0.4: predicted 0.57 / 0.8 / 1.13 -> the least, 2
    ({2: 0.8, 4: 1.6, 8: 3.2}, [1, 2, 4, 8], 2),
    # 0.6 / 0.3 / 0.15: predicted 0.85 / 0.6 / 0.42 -> 8
    ({2: 1.2, 4: 1.2, 8: 1.2}, [1, 2, 4, 8], 8),
    # a loop (cost 1 per vector): width 2 cannot pay, so 4 and 8 are not timed -> lanczos
    ({2: 2.0, 4: 4.0, 8: 8.0}, [1, 2], 1),
    # 0.7 / 0.7: 4 is timed (0.7 < 0.9), 8 is not (a block of 8 would cost >= 2.8 s, so at
    # least 0.35 x sqrt(8) = 0.99 of lanczos); none pays -> lanczos
    ({2: 1.4, 4: 2.8, 8: 2.8}, [1, 2, 4], 1),
])
def test_auto_block_size_follows_the_measured_costs(monkeypatch, cost, timed, size):
    install_clock(monkeypatch, lambda k: 1.0 if k == 1 else cost[k])
    op = dense(GAPPED)
    solver = BlockLanczos(tol=1e-6, block_size="auto")
    r = solver.solve(op, seed=2)
    choice = solver.block_choice
    assert sorted(choice.seconds) == timed and choice.size == size
    for k in timed[1:]:
        assert choice.costs[k] == pytest.approx(cost[k] / k)
        assert choice.predicted[k] == pytest.approx(cost[k] / k * math.sqrt(k))
    assert r.converged and f"block size {size} (auto" in r.message
    assert "residual below" in r.message
    assert r.lambda_max == pytest.approx(100.0, rel=1e-9)
    assert r.lambda_min == pytest.approx(-0.5, rel=1e-6)
    # every product is counted; the chosen width's timed block is the first step's product
    measured = sum(timed)
    assert r.hvp_calls == measured + size * (len(r.trace) - 1)
    assert r.data_passes == r.hvp_calls  # a full product is one pass per vector


def test_auto_choice_leaves_a_small_budget_to_the_solve(monkeypatch):
    install_clock(monkeypatch, {1: 1.0, 2: 0.8, 4: 1.2, 8: 1.6}.__getitem__)
    op = dense(INDEFINITE)
    solver = BlockLanczos(tol=1e-12, block_size="auto")
    r = solver.solve(op, seed=0, budget=Budget(max_hvps=9))
    assert sorted(solver.block_choice.seconds) == [1, 2, 4]  # 8 more would pass 9
    assert r.status == "budget" and r.hvp_calls <= 9 and r.trace
    assert r.lambda_max is not None and r.lambda_min is not None


def test_auto_does_not_time_widths_above_a_quarter_of_n(monkeypatch):
    install_clock(monkeypatch, {1: 1.0, 2: 0.2, 4: 0.2}.__getitem__)
    op = dense(np.linspace(-1.0, 3.0, 12))
    choice = choose_block_size(base.Run(op, Budget()), np.random.default_rng(0))
    assert sorted(choice.seconds) == [1, 2] and choice.size == 2
    Q = np.asarray(choice.start)
    assert np.allclose(Q.T @ Q, np.eye(2), atol=1e-14)
    assert np.allclose(op.matrix @ Q, choice.product, atol=1e-12)  # reused, not recomputed


@pytest.mark.parametrize("price", [lambda k: k, lambda k: 1.0, lambda k: 1 + k / 8],
                         ids=["loop", "free-blocks", "cheap-blocks"])
def test_auto_passes_the_conformance_kit(monkeypatch, price):
    """On a deterministic clock (the choice depends on timings): blocks never pay (b = 1, the
    lanczos kernel), blocks cost one product (the widest affordable), and in between."""
    install_clock(monkeypatch, price)
    check_solver(BlockLanczos, block_size="auto")


def test_auto_is_an_option_of_the_registered_solver():
    assert solvers.get("block-lanczos", block_size="auto").block_size == "auto"
    assert solvers.options("block-lanczos")["block_size"] == 4
    for bad in ("8", 0, 2.0, True):
        with pytest.raises(ValueError, match="block_size"):
            BlockLanczos(block_size=bad)


@pytest.mark.parametrize("b", [2, 4, 8])
def test_fixed_block_sizes_pass_the_conformance_kit(b):
    check_solver(BlockLanczos, block_size=b)


def test_payoff_rule_constants():
    """Widths pay where cost per vector x sqrt(b) <= 0.9: 0.64 / 0.45 / 0.32 for 2 / 4 / 8."""
    assert bl.PAYOFF == 0.9 and bl.CANDIDATES == (2, 4, 8)
    assert [round(bl.PAYOFF / bl.vector_factor(b), 2) for b in bl.CANDIDATES] == [0.64, 0.45,
                                                                                   0.32]
