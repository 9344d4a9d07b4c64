"""lanczos-mixed (solvers/mixed_precision.py): Lanczos on reduced-precision products whose
'converged' is certified with the operator's own products.

Truths: dense float64 Hessians (torch.func.hessian) of a small torch MLP, and exactly known
spectra whose 'reduced-precision' products are deliberately wrong (A + P)."""

import numpy as np
import pytest
import torch
from conftest import known_spectrum_matrix
from torch.func import functional_call, hessian

from hessbench import solvers
from hessbench.backends.dense import DenseOperator
from hessbench.backends.torch import HessianOperator
from hessbench.solvers.mixed_precision import MixedPrecisionLanczos
from hessbench.solvers.testing import check_solver

SPECTRUM = np.concatenate([[-3.0, -2.2], np.linspace(-1.0, 1.0, 56), [1.8, 2.5]])


class Counted(DenseOperator):
    """A dense operator counting its products under ``label`` in a shared dict; its
    ``reduced_precision`` is A + P (a fixed symmetric error), sharing the meter."""

    def __init__(self, matrix, perturbation, counts=None, label="full"):
        super().__init__(matrix, num_samples=64)
        self.perturbation, self.label = perturbation, label
        self.counts = {"full": 0, "reduced": 0} if counts is None else counts
        self.asked = []

    def _matvec(self, v, indices):
        self.counts[self.label] += 1
        return super()._matvec(v, indices)

    def _matmat(self, V, indices):
        self.counts[self.label] += V.shape[1]
        return super()._matmat(V, indices)

    def reduced_precision(self, precision):
        self.asked.append(precision)
        reduced = Counted(self.matrix + self.perturbation, None, self.counts, "reduced")
        reduced.meter = self.meter
        return reduced


def perturbed(scale, seed=1):
    A = known_spectrum_matrix(SPECTRUM)
    P = np.random.default_rng(seed).standard_normal(A.shape)
    P = (P + P.T) / 2
    return Counted(A, scale * P / np.linalg.norm(P, 2))


def rel(value, truth):
    return abs(value - truth) / abs(truth)


def test_conformance_kit_passes_with_and_without_refinement():
    check_solver(MixedPrecisionLanczos)  # NumPy operators: no reduced precision, fallback
    check_solver(MixedPrecisionLanczos, refine=False)


def test_bad_perturbation_is_not_reported_converged():
    """Products off by 0.2 (||A|| = 3): plain Lanczos on them converges to the wrong values;
    lanczos-mixed refuses to call them converged (refine=False) or refines them right."""
    op = perturbed(0.2)
    reduced = op.reduced_precision("bf16")
    wrong = solvers.get("lanczos", tol=1e-6).solve(reduced, seed=0)
    assert wrong.converged  # the trap is real: self-consistent, 1000x tol off
    assert rel(wrong.lambda_max, 2.5) > 1e-2 and rel(wrong.lambda_min, -3.0) > 1e-3

    op = perturbed(0.2)
    r = MixedPrecisionLanczos(tol=1e-6, refine=False).solve(op, seed=0)
    assert not r.converged and r.status == "max_steps"
    assert "certificate" in r.message and "refine=False" in r.message
    # the published pairs are the full-precision Rayleigh quotients and residuals
    A = op.matrix
    for lam, x, res in ((r.lambda_max, r.vector_max, r.residual_max),
                        (r.lambda_min, r.vector_min, r.residual_min)):
        assert lam == pytest.approx(x @ A @ x, rel=1e-12)
        assert res == pytest.approx(np.linalg.norm(A @ x - lam * x), rel=1e-9)
        assert res > 1e-6 * abs(lam)

    op = perturbed(0.2)
    r = MixedPrecisionLanczos(tol=1e-6).solve(op, seed=0)
    assert r.converged, r.message
    assert rel(r.lambda_max, 2.5) < 1e-5 and rel(r.lambda_min, -3.0) < 1e-5
    assert op.asked == ["bf16"] and "failed" in r.message


def test_meter_counts_reduced_and_full_products():
    op = perturbed(0.2)
    before = op.meter.hvp_calls
    r = MixedPrecisionLanczos(tol=1e-6).solve(op, seed=0)
    reduced, full = op.counts["reduced"], op.counts["full"]
    assert reduced > 1 and full > 2  # Krylov steps in reduced precision, certificate, refining
    assert op.meter.hvp_calls - before == reduced + full
    assert r.hvp_calls == reduced + full - 1  # the reduced operator's warm-up precedes the solve
    assert r.data_passes == pytest.approx(r.hvp_calls)
    assert r.trace[-1].hvp_calls == r.hvp_calls
    stopped = MixedPrecisionLanczos(tol=1e-6).solve(perturbed(0.2), seed=0,
                                                    budget={"max_hvps": r.hvp_calls - 1})
    assert stopped.status == "budget" and "products in bf16" in stopped.message
    assert stopped.hvp_calls == r.hvp_calls - 1


def test_small_perturbation_is_certified_without_refining():
    op = perturbed(1e-9)
    r = MixedPrecisionLanczos(tol=1e-6).solve(op, seed=0, which="min")
    assert r.converged and "certified" in r.message and "failed" not in r.message
    assert op.counts["full"] == 1  # one certifying product for the one end asked
    assert rel(r.lambda_min, -3.0) < 1e-5 and r.lambda_max is None


def test_refines_only_the_end_that_failed():
    """P couples the bottom eigenvector with the bulk, leaving the top one exact: lambda_max
    is certified as it is and keeps its certified pair; only lambda_min is refined."""
    A = known_spectrum_matrix(SPECTRUM)
    _, V = np.linalg.eigh(A)
    op = Counted(A, 0.3 * (np.outer(V[:, 0], V[:, 2]) + np.outer(V[:, 2], V[:, 0])))
    r = MixedPrecisionLanczos(tol=1e-6).solve(op, seed=0)
    assert r.converged and "Ritz vector(s) of min" in r.message, r.message
    certified = [row for row in r.trace if row.lambda_max == r.lambda_max]
    assert len(certified) >= 3 and certified[-1] is r.trace[-1]  # kept while min is refined
    assert rel(r.lambda_max, 2.5) < 1e-6 and rel(r.lambda_min, -3.0) < 1e-5


def test_fallback_and_errors_name_the_option():
    op = DenseOperator(known_spectrum_matrix(SPECTRUM), num_samples=64)
    r = solvers.get("lanczos-mixed", tol=1e-6).solve(op, seed=0)
    assert r.converged and "fallback='full'" in r.message and "float64" in r.message
    with pytest.raises(ValueError, match="precision='bf16'.*fallback='full'"):
        solvers.get("lanczos-mixed", fallback="error").solve(op)
    with pytest.raises(ValueError, match="precision"):
        solvers.get("lanczos-mixed", precision="fp8")
    with pytest.raises(ValueError, match="fallback"):
        solvers.get("lanczos-mixed", fallback="maybe")
    assert solvers.get("lanczos-mixed").options()["precision"] == "bf16"


@pytest.fixture
def mlp():
    """A float32 tanh MLP on 96 random samples (227 parameters), with its dense float64
    Hessian from torch.func.hessian."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 15), torch.nn.Tanh(), torch.nn.Linear(15, 4))
    x, y = torch.randn(96, 10), torch.randint(0, 4, (96,))
    loss_fn = torch.nn.functional.cross_entropy
    op = HessianOperator(model, loss_fn, (x, y), batch_size=32, dtype=torch.float32)

    def loss(flat):
        return loss_fn(functional_call(model, op.unflatten(flat), (x.double(),)), y)

    H = hessian(loss)(op.theta.double()).numpy()
    return op, np.linalg.eigvalsh(H)


def test_torch_mlp_reaches_dense_extremes_with_bf16_products(mlp, one_torch_thread):
    op, eig = mlp
    counts = {}
    make = op.reduced_precision

    def counting_reduced(precision):  # count the reduced products independently of the meter
        reduced = make(precision)
        inner = reduced._matvec

        def matvec(v, indices):
            counts[precision] = counts.get(precision, 0) + 1
            return inner(v, indices)

        reduced._matvec = matvec
        return reduced

    op.reduced_precision = counting_reduced
    before = op.meter.hvp_calls
    tol = 1e-4
    r = solvers.get("lanczos-mixed", tol=tol).solve(op, seed=0)
    assert r.converged, r.message
    assert "bf16" in r.message
    assert rel(r.lambda_max, eig[-1]) < 10 * tol and rel(r.lambda_min, eig[0]) < 10 * tol
    assert eig[0] < -1e-2 * eig[-1]  # a lambda_min that float32 can resolve at this tol
    assert counts["bf16"] > 1
    assert op.meter.hvp_calls - before == r.hvp_calls + 1  # + the warm-up before the clock
    assert r.data_passes == pytest.approx(r.hvp_calls)
    x = r.vector_min.double().numpy()
    assert np.linalg.norm(x) == pytest.approx(1, rel=1e-5)


def test_torch_tf32_on_cpu_falls_back_or_raises(mlp, one_torch_thread):
    op, eig = mlp
    r = solvers.get("lanczos-mixed", tol=1e-4, precision="tf32").solve(op, seed=0)
    assert r.converged and "not tf32" in r.message and "CUDA" in r.message
    assert rel(r.lambda_max, eig[-1]) < 1e-3
    with pytest.raises(ValueError, match="precision='tf32'"):
        solvers.get("lanczos-mixed", precision="tf32", fallback="error").solve(op)


def test_precision_study_script_on_a_quadratic(tmp_path, one_torch_thread):
    """scripts/precision_study.py on quadratic-small (exact spectrum): float32 matches float64,
    bf16 products carry a bfloat16-sized error, and the JSON holds every figure."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).parents[1] / "scripts" / "precision_study.py"
    spec = importlib.util.spec_from_file_location("precision_study", path)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    out = tmp_path / "study.json"
    assert study.main(["--problems", "quadratic-small", "--seeds", "1", "--vectors", "1",
                       "--out", str(out)]) == 0
    res = json.loads(out.read_text())["results"][0]
    assert 1e-4 < res["product"]["rel_error"]["bf16"]["median"] < 5e-2
    assert res["product"]["rel_error"]["float32"]["median"] < 1e-5
    row = res["lanczos"][0]
    for end in ("max", "min"):
        assert row["float64"]["rel_error_vs_reference"][end] < 1e-5  # exact reference
        assert row["float32"]["rel_error_vs_float64"][end] < 1e-5
        cert = row["certificate"][end]
        assert 0 < cert["rel_error"] < 1e-2 and cert["residual_over_value"] > 0
    mixed = res["mixed"][0]["lanczos-mixed"]
    assert mixed["converged"] and mixed["reduced_products"] > 0
    assert max(mixed["rel_error"].values()) < 1e-2
    assert "| quadratic-small |" in json.loads(out.read_text())["table"]
