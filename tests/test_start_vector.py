"""Solver.solve(start=): a given start vector replaces the random one (warm starts), only for
solvers that take one, checked against exactly known spectra."""

import numpy as np
import pytest
import torch
from conftest import known_spectrum_matrix

from hessbench import solvers
from hessbench.backends.dense import DenseOperator

SPECTRUM = np.concatenate([[50.0, 20.0], np.linspace(-0.5, 10.0, 58)])


def eigvecs():
    lam, V = np.linalg.eigh(known_spectrum_matrix(SPECTRUM, seed=3))
    return lam, V


@pytest.mark.parametrize("name", ["lanczos", "thick-restart-lanczos", "lanczos-mixed"])
def test_an_eigenvector_start_is_an_invariant_space(name):
    lam, V = eigvecs()
    op = DenseOperator(known_spectrum_matrix(SPECTRUM, seed=3))
    r = solvers.get(name, tol=1e-8).solve(op, which="max", seed=0, start=3.0 * V[:, -1])
    assert r.converged and r.hvp_calls <= 2, (r.hvp_calls, r.message)
    assert r.lambda_max == pytest.approx(lam[-1], rel=1e-10)
    cold = solvers.get(name, tol=1e-8).solve(op, which="max", seed=0)
    assert cold.hvp_calls > 5  # a random start needs a Krylov space: the start was used


def test_a_near_start_saves_products_and_keeps_the_answer():
    lam, V = eigvecs()
    op = DenseOperator(known_spectrum_matrix(SPECTRUM, seed=3))
    noise = np.random.default_rng(1).standard_normal(len(lam))
    start = V[:, -1] + V[:, 0] + 0.1 * noise / np.linalg.norm(noise)
    warm = solvers.get("lanczos", tol=1e-6).solve(op, seed=0, start=start)
    cold = solvers.get("lanczos", tol=1e-6).solve(op, seed=0)
    for r in (warm, cold):
        assert r.converged
        assert r.lambda_max == pytest.approx(lam[-1], rel=1e-6)
        assert r.lambda_min == pytest.approx(lam[0], rel=1e-5)
    power = solvers.get("power", tol=1e-9).solve(op, which="max", seed=0, start=V[:, -1])
    assert power.lambda_max == pytest.approx(lam[-1], rel=1e-8) and power.hvp_calls <= 3


def test_start_is_checked_and_refused_by_solvers_without_one():
    op = DenseOperator(known_spectrum_matrix(SPECTRUM, seed=3))
    with pytest.raises(ValueError, match="takes no start vector"):
        solvers.get("lobpcg").solve(op, start=np.ones(op.size))
    for bad, match in [(np.ones(3), "shape"), (np.zeros(op.size), "nonzero"),
                       (np.full(op.size, np.nan), "finite")]:
        with pytest.raises(ValueError, match=match):
            solvers.get("lanczos").solve(op, start=bad)
    r = solvers.get("lanczos", tol=1e-6).solve(op, which="max", start=torch.ones(op.size))
    assert r.converged  # any array type, converted to the operator's
