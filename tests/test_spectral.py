"""Trace estimators (Hutchinson, Hutch++) and stochastic Lanczos quadrature against exact
traces, moments and spectra: the quadratic problem (exact spectrum) and the dense Hessian of a
small tanh MLP trained on the real digits data; the ``density`` command on a tiny problem."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import known_spectrum_matrix
from hessbench import problems
from hessbench.backends.base import to_numpy
from hessbench.backends.dense import DenseOperator
from hessbench.problems.base import TorchProblemParts, torch_operator
from hessbench.problems.nets import digits_data
from hessbench.reference import dense_hessian
from hessbench.solvers.spectral import (hutchinson_trace, hutchpp_trace, rademacher,
                                        slq_density)
from hessbench.training import Recipe, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ESTIMATORS = {"hutchinson": hutchinson_trace, "hutch++": hutchpp_trace}
SEEDS = range(200)  # dense products: 200 estimates take well under a second


@pytest.fixture(scope="module")
def quadratic():
    """quadratic-small's torch operator (n=200, N=1,000), its Hessian formed densely from
    n products, and its exact eigenvalues."""
    torch.set_num_threads(1)
    prob = problems.get("quadratic-small")
    op = prob.operator("torch", progress=False)
    H = to_numpy(op.matmat(op.asarray(np.eye(op.size))))
    assert np.allclose(np.linalg.eigvalsh(H)[::-1], prob.eigenvalues(), atol=1e-10)
    return op, 0.5 * (H + H.T), prob.eigenvalues()


@pytest.fixture(scope="module")
def digits():
    """A float64 tanh MLP 64-12-10 (910 parameters) trained on 300 real digits; its torch
    operator and its dense Hessian (torch.func.hessian, :func:`dense_hessian`)."""
    torch.set_num_threads(1)
    x, y = digits_data({})
    x, y = x[:300], y[:300]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 12), torch.nn.Tanh(),
                                torch.nn.Linear(12, 10)).double()
    train(model, F.cross_entropy, x, y, Recipe(steps=200, lr=1e-2, dtype="float64"),
          progress=False)
    parts = TorchProblemParts(model.eval(), F.cross_entropy, x, y, 100)
    H = dense_hessian(parts)
    return torch_operator(parts, dtype="float64"), H, np.linalg.eigvalsh(H)


@pytest.fixture(params=["quadratic", "digits"])
def case(request):
    return request.getfixturevalue(request.param)


# -- trace -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", list(ESTIMATORS))
def test_band_covers_the_exact_trace_and_not_a_wrong_one(case, method):
    """Over 200 seeds the 95% band holds the exact trace >= 85% of the time; a trace off by
    three typical half-widths is held < 15% of the time (a vacuous band would fail)."""
    _, H, lam = case
    exact = float(np.sum(lam))
    op = DenseOperator(H)
    runs = [ESTIMATORS[method](op, 30, seed=s) for s in SEEDS]
    coverage = np.mean([r.contains(exact) for r in runs])
    assert coverage >= 0.85, coverage
    wrong = exact + 3 * np.median([r.high - r.estimate for r in runs])
    assert np.mean([r.contains(wrong) for r in runs]) < 0.15
    assert abs(np.mean([r.estimate for r in runs]) - exact) < 4 * np.std(
        [r.estimate for r in runs]) / np.sqrt(len(runs))  # unbiased
    for r in runs[:3]:
        assert r.low < r.estimate < r.high and r.confidence == 0.95


@pytest.mark.parametrize("method", list(ESTIMATORS))
def test_torch_operator_gives_the_dense_estimate_and_counts_passes(case, method):
    op, H, _ = case
    for seed in (0, 1):
        before = op.meter.snapshot()
        r = ESTIMATORS[method](op, 12, seed=seed)
        d = ESTIMATORS[method](DenseOperator(H), 12, seed=seed)
        assert r.estimate == pytest.approx(d.estimate, rel=1e-9)
        assert (r.low, r.high) == pytest.approx((d.low, d.high), rel=1e-9)
        assert r.hvp_calls == 12 == op.meter.hvp_calls - before[1]
        assert r.data_passes == 12.0 == (op.meter.samples - before[0]) / op.num_samples
        assert r.seconds > 0 and r.seed == seed and r.size == op.size


def test_hutchinson_terms_are_the_quadratic_forms_of_the_probes(quadratic):
    _, H, _ = quadratic
    r = hutchinson_trace(DenseOperator(H), 10, seed=4, block_size=3)
    Z = rademacher(np.random.default_rng(4), H.shape[0], 10)
    assert np.allclose(r.terms, np.einsum("ij,ij->j", Z, H @ Z), rtol=1e-12)
    assert r.estimate == pytest.approx(np.mean(r.terms), rel=1e-14)
    assert r.options == {"num_vectors": 10, "block_size": 3}


def test_hutchpp_deflation_cuts_the_error_where_there_are_outliers(quadratic):
    """quadratic-small has 10 outliers (10 to 100) above a bulk in [-0.5, 2]: at 30 products
    Hutch++'s standard error is below Hutchinson's; with m/3 >= n it is exact."""
    _, H, lam = quadratic
    op = DenseOperator(H)
    se = {m: np.mean([f(op, 30, seed=s).stderr for s in range(50)])
          for m, f in ESTIMATORS.items()}
    assert se["hutch++"] < 0.8 * se["hutchinson"], se
    small = DenseOperator(known_spectrum_matrix(np.linspace(-1, 3, 8)))
    r = hutchpp_trace(small, 30, seed=0)
    assert r.options["sketch"] == 8 and r.hvp_calls == 30
    assert r.estimate == pytest.approx(8.0, abs=1e-10) and r.high - r.low < 1e-10


def test_bad_arguments_are_refused():
    op = DenseOperator(np.eye(4))
    with pytest.raises(ValueError, match="num_vectors"):
        hutchinson_trace(op, 1)
    with pytest.raises(ValueError, match="num_matvecs"):
        hutchpp_trace(op, 5)
    with pytest.raises(ValueError, match="confidence"):
        hutchinson_trace(op, 4, confidence=1.0)
    with pytest.raises(TypeError):
        slq_density(np.eye(4), 2, 2)
    with pytest.raises(ValueError):
        slq_density(op, 0, 2)


# -- stochastic Lanczos quadrature ---------------------------------------------------------


def test_quadrature_moments_are_the_probes_exact_moments(case):
    """Gauss quadrature with k nodes is exact to degree 2k - 1: per probe z,
    sum_j w_j theta_j^p = z^T H^p z / n for p = 0..3 (here k = 12)."""
    _, H, _ = case
    n = H.shape[0]
    d = slq_density(DenseOperator(H), 4, 12, seed=7)
    rng = np.random.default_rng(7)
    Z = np.stack([rademacher(rng, n, 1)[:, 0] for _ in range(4)], axis=1)
    HZ = [Z]
    for _ in range(3):
        HZ.append(H @ HZ[-1])
    exact = np.array([[Z[:, i] @ HZ[p][:, i] / n for p in range(4)] for i in range(4)])
    assert np.allclose(d.moments(3, per_vector=True), exact, rtol=1e-9, atol=1e-13)
    assert np.allclose([w.sum() for w in d.weights], 1.0, atol=1e-12)
    assert all(np.all(w >= 0) for w in d.weights)


def test_moments_match_the_exact_moments_within_their_standard_error(case):
    """(1/n) tr(H^p), p = 1..3: the SLQ average over 20 probes is within 4 standard errors
    (per-probe spread) for every seed tried, and a moment 30% off is not."""
    _, H, lam = case
    exact = np.array([np.mean(lam ** p) for p in range(4)])
    op = DenseOperator(H)
    for seed in range(5):
        d = slq_density(op, 20, 8, seed=seed)
        per = d.moments(3, per_vector=True)
        est, se = per.mean(axis=0), per.std(axis=0, ddof=1) / np.sqrt(len(per))
        assert est[0] == pytest.approx(1.0, abs=1e-12)
        assert np.all(np.abs(est[1:] - exact[1:]) <= 4 * se[1:]), (est, exact, se)
        assert d.trace() == pytest.approx(H.shape[0] * est[1])
    assert np.any(np.abs(est[1:] - 1.3 * exact[1:]) > 4 * se[1:])


def test_many_probes_on_a_small_matrix_give_the_moments():
    lam = np.linspace(-2.0, 5.0, 30)
    d = slq_density(DenseOperator(known_spectrum_matrix(lam, seed=2)), 2000, 4, seed=0)
    exact = [np.mean(lam ** p) for p in range(4)]
    assert d.moments(3) == pytest.approx(exact, rel=0.04, abs=0.02)


@pytest.mark.parametrize("sigma", [None, 0.05, 3.0])
def test_density_integrates_to_one(case, sigma):
    _, H, _ = case
    d = slq_density(DenseOperator(H), 5, 30, seed=0)
    grid = d.grid(sigma)
    phi = d.density(grid, sigma)
    assert np.all(phi >= 0) and np.all(np.diff(grid) > 0)
    assert np.trapezoid(phi, grid) == pytest.approx(1.0, abs=1e-3)
    wide = np.linspace(d.lambda_min - 50, d.lambda_max + 50, 400_001)  # plain uniform grid
    assert np.trapezoid(d.density(wide, sigma), wide) == pytest.approx(1.0, abs=2e-3)
    with pytest.raises(ValueError, match="sigma"):
        d.density(grid, 0.0)


def test_extremes_cost_and_bulk_on_the_quadratic(quadratic):
    """Ritz values interlace: lambda_min <= SLQ min <= SLQ max <= lambda_max; 40 steps find
    the isolated lambda_max = 100. One full product (one data pass) per Lanczos step."""
    op, _, lam = quadratic
    before = op.meter.snapshot()
    d = slq_density(op, 3, 40, seed=1)
    assert lam[-1] - 1e-9 <= d.lambda_min <= d.lambda_max <= lam[0] + 1e-9
    assert d.lambda_max == pytest.approx(100.0, rel=1e-9)
    assert d.hvp_calls == 120 == sum(len(t) for t in d.nodes) == op.meter.hvp_calls - before[1]
    assert d.data_passes == 120.0 == (op.meter.samples - before[0]) / op.num_samples
    lo, hi = d.bulk(0.9)
    assert d.lambda_min <= lo <= d.quantile(0.5) <= hi <= d.lambda_max
    assert -0.5 <= lo < 0 < hi <= 15  # 10 of the 200 eigenvalues (5%) are outliers >= 10
    assert d.options == {"num_vectors": 3, "lanczos_steps": 40} and d.seed == 1


def test_steps_capped_at_n_and_invariant_subspaces():
    """On n = 6 at most 6 steps per probe; on 2 distinct eigenvalues the Krylov space is
    invariant after 2 steps (2 nodes, the eigenvalues, with the right masses on average)."""
    d = slq_density(DenseOperator(known_spectrum_matrix(np.arange(6.0))), 3, 20, seed=0)
    assert [len(t) for t in d.nodes] == [6, 6, 6] and d.hvp_calls == 18
    d = slq_density(DenseOperator(known_spectrum_matrix([1.0] * 5 + [3.0] * 15)), 200, 20)
    assert all(len(t) == 2 for t in d.nodes) and d.hvp_calls == 400
    assert np.allclose(np.concatenate(d.nodes).reshape(-1, 2), [1.0, 3.0])
    assert d.moments(1)[1] == pytest.approx(2.5, abs=0.05)


def test_numpy_torch_and_jax_operators_agree():
    A = known_spectrum_matrix(np.linspace(-1.0, 4.0, 40), seed=3)
    ops = [DenseOperator(A), DenseOperator(torch.tensor(A))]
    res = [(slq_density(op, 3, 10, seed=5), hutchpp_trace(op, 9, seed=5),
            hutchinson_trace(op, 6, seed=5)) for op in ops]
    for a, b in zip(*res[:2]):
        assert a.hvp_calls == b.hvp_calls
    assert np.allclose(np.concatenate(res[0][0].nodes), np.concatenate(res[1][0].nodes))
    assert res[0][1].estimate == pytest.approx(res[1][1].estimate, rel=1e-10)
    assert res[0][2].estimate == pytest.approx(res[1][2].estimate, rel=1e-12)
    jnp = pytest.importorskip("jax.numpy")
    op = DenseOperator(jnp.asarray(A, dtype=jnp.float32))
    d, t = slq_density(op, 3, 10, seed=5), hutchpp_trace(op, 9, seed=5)
    assert np.allclose(np.concatenate(d.nodes), np.concatenate(res[0][0].nodes), atol=1e-4)
    assert t.estimate == pytest.approx(res[0][1].estimate, rel=1e-4)


# -- the density command -----------------------------------------------------------------


def test_density_command_writes_a_figure_and_a_record(tmp_path, capsys):
    from hessbench.cli import build_parser, main

    parser = build_parser()
    png, out = tmp_path / "fig.png", tmp_path / "sub" / "density.json"
    argv = ["density", "-p", "quadratic-small", "--problem-option", "n=60", "--vectors", "3",
            "--steps", "12", "--matvecs", "9", "--seed", "2", "--threads", "1", "-q",
            "-o", str(png), "--json", str(out)]
    assert main(argv) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rec = json.loads(out.read_text())
    assert rec["record_type"] == "hessbench-density" and rec["schema_version"] == 1
    assert rec["problem"] == "quadratic-small" and rec["seed"] == 2 and rec["parameters"] == 60
    assert rec["reference"] == {"lambda_max": 100.0, "lambda_min": -0.5, "method": "exact"}
    assert rec["slq"]["hvp_calls"] == 36 and rec["slq"]["data_passes"] == 36.0
    assert rec["trace"]["method"] == "hutch++" and rec["trace"]["hvp_calls"] == 9
    assert len(rec["slq"]["nodes"]) == 3 and rec["options"]["problem_options"] == {"n": 60}
    assert rec["bulk"][0] <= rec["bulk"][1] and {"torch", "numpy"} <= set(rec["versions"])
    assert rec["command"] == ["hessbench", *argv]
    printed = capsys.readouterr().out
    assert "lambda_max" in printed and "Hutch++" in printed and str(png) in printed
    with pytest.raises(SystemExit):
        parser.parse_args(["density", "-p", "quadratic-small", "-o", str(png), "--matvecs",
                           "5"])
