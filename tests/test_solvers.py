"""Solvers against exactly known spectra; result contract; budgets; errors."""

import numpy as np
import pytest
import torch

from hessbench import solvers
from hessbench.backends.base import HVPOperator
from hessbench.backends.dense import DenseOperator
from conftest import known_spectrum_matrix
from hessbench import problems

SPECTRUM = np.concatenate([[100.0, 60.0, 30.0], np.linspace(-0.5, 2.0, 147)])


@pytest.mark.parametrize("name", ["lanczos", "arpack"])
@pytest.mark.parametrize("as_torch", [False, True])
def test_krylov_solvers_find_both_ends(name, as_torch):
    A = known_spectrum_matrix(SPECTRUM)
    op = DenseOperator(torch.tensor(A) if as_torch else A)
    r = solvers.get(name, tol=1e-6).solve(op, seed=3)
    assert r.converged, r.message
    assert r.lambda_max == pytest.approx(100.0, rel=1e-6)
    assert r.lambda_min == pytest.approx(-0.5, rel=1e-4)
    assert type(r.vector_min) is type(op.matrix)
    x = r.vector_min
    assert float(x @ (op.matrix @ x)) == pytest.approx(r.lambda_min, rel=1e-6)


def test_lanczos_recovers_quadratic_spectrum_through_the_hessian_operator():
    prob = problems.get("quadratic-small")
    ref = prob.exact_reference()
    r = solvers.get("lanczos", tol=1e-10).solve(prob.operator(), seed=0)
    assert r.converged
    assert r.lambda_max == pytest.approx(ref["lambda_max"], rel=1e-6)
    assert r.lambda_min == pytest.approx(ref["lambda_min"], rel=1e-6)
    assert r.data_passes == r.hvp_calls == len(r.trace)


@pytest.mark.parametrize("name", ["lanczos", "power", "arpack"])
def test_which_semantics_and_algebraic_ends(name):
    # |lambda_min| > lambda_max: a largest-magnitude answer would be -50, not 10.
    A = known_spectrum_matrix(np.concatenate([[10.0], np.linspace(-1, 5, 40), [-50.0]]))
    op = DenseOperator(A)
    s = solvers.get(name, tol=1e-8)
    both = s.solve(op, "both", seed=1)
    mx = s.solve(op, "max", seed=1)
    mn = s.solve(op, "min", seed=1)
    assert both.lambda_max == pytest.approx(10.0, rel=1e-4)
    assert both.lambda_min == pytest.approx(-50.0, rel=1e-4)
    assert mx.lambda_min is None and mx.lambda_max == pytest.approx(10.0, rel=1e-4)
    assert mn.lambda_max is None and mn.lambda_min == pytest.approx(-50.0, rel=1e-4)


@pytest.mark.parametrize("name", ["lanczos", "power", "arpack"])
def test_budget_stops_unconverged_and_keeps_estimates(name):
    op = DenseOperator(known_spectrum_matrix(SPECTRUM))
    r = solvers.get(name, tol=1e-12).solve(op, seed=0, budget={"max_hvps": 7})
    assert not r.converged and r.status == "budget"
    assert r.hvp_calls <= 7 and len(r.trace) >= 1
    assert "budget" in r.message
    if name != "arpack":  # ARPACK exposes no estimate before it finishes
        assert r.trace[-1].lambda_max is not None


@pytest.mark.parametrize("name", ["lanczos", "power", "arpack"])
def test_same_seed_same_answer(name):
    op = DenseOperator(known_spectrum_matrix(SPECTRUM))
    a = solvers.get(name).solve(op, seed=5)
    b = solvers.get(name).solve(op, seed=5)
    assert (a.lambda_max, a.lambda_min, a.hvp_calls) == (b.lambda_max, b.lambda_min, b.hvp_calls)


class _NaNAfter(HVPOperator):
    """Exact products for a few calls, then NaN."""

    def __init__(self, A, good_calls):
        super().__init__(A.shape[0], 1)
        self.A, self.left, self.dtype, self.device = A, good_calls, A.dtype, "cpu"

    def _matvec(self, v, indices):
        self.left -= 1
        return self.A @ v if self.left >= 0 else np.full_like(v, np.nan)

    def asarray(self, x):
        return np.asarray(x, dtype=self.dtype)


@pytest.mark.parametrize("name", ["lanczos", "power"])
def test_nan_hvp_stops_with_failure_and_keeps_estimates(name):
    op = _NaNAfter(known_spectrum_matrix(SPECTRUM), good_calls=5)
    r = solvers.get(name, tol=1e-12).solve(op, seed=0)
    assert r.status == "failed" and not r.converged
    assert "NaN" in r.message
    assert len(r.trace) == 5 and r.lambda_max is not None


def test_registry_and_argument_errors():
    assert {"lanczos", "power", "arpack"} <= set(solvers.available())
    with pytest.raises(KeyError, match="available: lanczos"):
        solvers.get("nope")
    with pytest.raises(TypeError):
        solvers.get("lanczos", bogus=1)
    with pytest.raises(ValueError, match="tol"):
        solvers.get("lanczos", tol=2.0)
    op = DenseOperator(np.eye(4))
    with pytest.raises(ValueError, match="which"):
        solvers.get("lanczos").solve(op, which="largest")
    with pytest.raises(ValueError, match="unknown budget"):
        solvers.get("lanczos").solve(op, budget={"passes": 3})
    with pytest.raises(TypeError, match="HVPOperator"):
        solvers.get("lanczos").solve(np.eye(4))


def test_entry_point_plugins_are_listed_and_loaded(monkeypatch):
    from importlib.metadata import EntryPoint

    import hessbench.registry
    from hessbench.solvers import registry

    ep = EntryPoint("my-lanczos", "hessbench.solvers.lanczos:Lanczos", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(hessbench.registry, "entry_points", lambda group: [ep])
    assert "my-lanczos" in solvers.available()
    assert solvers.get("my-lanczos", tol=1e-2).tol == 1e-2
    bad = EntryPoint("bad", "numpy:ndarray", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(hessbench.registry, "entry_points", lambda group: [bad])
    with pytest.raises(TypeError, match="not a subclass"):
        solvers.get("bad")


@pytest.mark.parametrize("name", solvers.available())
def test_options_round_trip(name):
    import inspect

    cls = solvers.solver_class(name)
    options = solvers.get(name).options()
    assert options["tol"] == 1e-3
    assert set(options) == set(inspect.signature(cls.__init__).parameters) - {"self"}
    assert cls(**options).options() == options
    assert solvers.get(name, tol=1e-5).options() == {**options, "tol": 1e-5}


def test_options_are_the_effective_ones():
    assert solvers.get("thick-restart-lanczos", max_basis=40).options()["keep"] == 5

    class Forgetful(solvers.Solver):
        name = "forgetful"

        def __init__(self, tol=1e-3, steps=3):
            super().__init__(tol)

        def _solve(self, run, which, rng):  # pragma: no cover - never solved
            return "max_steps", ""

    with pytest.raises(AttributeError, match="steps"):
        Forgetful().options()
