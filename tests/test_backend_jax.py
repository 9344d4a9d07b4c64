"""The JAX HVP operator: against the PyTorch operator on the same weights, against dense
Hessians from jax.hessian, against the certified digits-mlp reference, and its contract
(uneven batches without recompiles, float32/float64 and x64, pytrees, errors, the CLI)."""

import json
import warnings

import numpy as np
import pytest
from conftest import tiny_jax_mlp as tiny_mlp
import torch

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from hessbench import solvers  # noqa: E402
from hessbench.backends.base import NonFiniteHVPError  # noqa: E402
from hessbench.backends.jax import HessianOperator, x64_enabled  # noqa: E402
from hessbench.backends.torch import HessianOperator as TorchOperator  # noqa: E402
from hessbench import problems, resnet  # noqa: E402
from hessbench.peers import ADAPTERS  # noqa: E402
from hessbench.jax_models import from_torch, loss_from_torch, operator_from_parts  # noqa: E402
from hessbench.problems.base import TorchProblemParts  # noqa: E402

TOL = {"float64": 1e-9, "float32": 1e-4}


# the "x64 switched on" warning of float64 operators is tested once, below
pytestmark = pytest.mark.filterwarnings("ignore:hessbench.backends.jax:UserWarning")


@pytest.fixture(autouse=True)
def _x64():
    """Tests may switch x64 on (a float64 operator does): restore the flag afterwards."""
    before = bool(jax.config.jax_enable_x64)
    yield
    jax.config.update("jax_enable_x64", before)


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def torch_twin(parts, dtype, batch_size=None):
    return TorchOperator(parts.model, parts.loss_fn, (parts.inputs, parts.targets),
                         batch_size=batch_size or parts.batch_size, dtype=getattr(torch, dtype))


def assert_same_hvps(parts, dtype, *, indices, block=2, batch_size=None):
    """JAX matvec, mini-batch matvec and matmat equal the torch operator's on the same vectors
    (the same flat layout: the converted params ravel in torch's parameter order)."""
    jop = operator_from_parts(parts, dtype=dtype, batch_size=batch_size)
    top = torch_twin(parts, dtype, batch_size)
    assert jop.size == top.size and jop.num_samples == top.num_samples
    calls0 = jop.meter.hvp_calls  # the determinism probe's products at construction
    rng = np.random.default_rng(0)
    v = rng.standard_normal(jop.size)
    out = jop.matvec(jop.asarray(v))
    assert isinstance(out, jax.Array) and out.dtype == np.dtype(dtype)
    assert rel(out, top.matvec(top.asarray(v))) < TOL[dtype]
    if indices is not None:
        assert rel(jop.matvec(jop.asarray(v), indices=indices),
                   top.matvec(top.asarray(v), indices=indices)) < TOL[dtype]
    if block:
        V = rng.standard_normal((jop.size, block))
        assert rel(jop.matmat(jop.asarray(V)), top.matmat(top.asarray(V))) < TOL[dtype]
    assert jop.meter.hvp_calls - calls0 == 1 + (indices is not None) + block


# -- cross-backend truth ---------------------------------------------------------------------
@pytest.mark.usefixtures("one_torch_thread")
def test_quadratic_small_equals_torch_and_lanczos_agrees_across_backends():
    prob = problems.get("quadratic-small")
    parts = prob.torch_parts(progress=False)
    for dtype in ("float64", "float32"):
        assert_same_hvps(parts, dtype, indices=np.array([3, 17, 400, 999]))
    jop, top = prob.operator("jax", progress=False), prob.operator("torch", progress=False)
    rj = solvers.get("lanczos", tol=1e-6).solve(jop, seed=3)
    rt = solvers.get("lanczos", tol=1e-6).solve(top, seed=3)
    assert rj.converged and rj.hvp_calls == rt.hvp_calls  # same start vector, same layout
    assert rj.lambda_max == pytest.approx(100.0, rel=1e-9)
    assert rj.lambda_min == pytest.approx(rt.lambda_min, rel=1e-9)
    assert isinstance(rj.vector_min, jax.Array)


def digits_parts(name, n=100, batch_size=50, trained=True):
    prob = problems.get(name)
    if trained:
        parts = prob.torch_parts(progress=False)
    else:  # the problem's seeded initial weights: same conversion, no 2-minute training
        torch.manual_seed(prob.config["seed"])
        x, y = prob.data()
        parts = TorchProblemParts(prob.make_model().eval(), torch.nn.functional.cross_entropy,
                                  x, y, prob.batch_size)
    parts.inputs, parts.targets = parts.inputs[:n], parts.targets[:n]
    parts.batch_size = batch_size
    return parts


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_digits_mlp_subset_equals_torch(dtype):
    parts = digits_parts("digits-mlp")
    # a 50-sample mini-batch reuses the full product's compiled shape
    idx = np.sort(np.random.default_rng(1).choice(100, 50, replace=False))
    assert_same_hvps(parts, dtype, indices=idx, block=2 if dtype == "float64" else 0)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_digits_cnn_subset_equals_torch(dtype):
    parts = digits_parts("digits-cnn", trained=False)
    idx = np.sort(np.random.default_rng(2).choice(100, 50, replace=False))
    assert_same_hvps(parts, dtype, indices=idx, block=2 if dtype == "float64" else 0)


@pytest.mark.usefixtures("one_torch_thread")
def test_resnet20_with_batchnorm_statistics_equals_torch():
    """ResNet-20 (projection shortcuts, strides, BN in inference form with random running
    statistics and affine weights) on 4 synthetic images, in float64. float32 is checked on
    the smaller nets: on ResNets each backend's float32 product can be ~4e-4 off float64 (the
    trained synthetic-cifar-resnet20: torch 4.2e-4, JAX 5.0e-4), so a 1e-4 cross-backend
    float32 check would test float32 conditioning, not the translation."""
    torch.manual_seed(0)
    model = resnet.resnet20().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 3, 7, 3])
    parts = TorchProblemParts(model, torch.nn.functional.cross_entropy, x, y, batch_size=2)
    apply_fn, params = from_torch(model)
    assert list(params) == [k for k, _ in model.named_parameters()]
    assert rel(jax.jit(apply_fn)(params, x.numpy()), model(x).detach()) < 1e-5
    assert_same_hvps(parts, "float64", indices=np.array([3, 0]), block=0)


def test_jax_lanczos_matches_the_certified_digits_mlp_reference():
    from hessbench.reference import compute_reference

    prob = problems.get("digits-mlp")
    ref = compute_reference(prob, progress=False)
    op = prob.operator("jax", progress=False)
    assert op.dtype == np.float64 and op.size == 5962
    r = solvers.get("lanczos", tol=1e-6).solve(op, seed=0)
    assert r.converged, r.message
    assert abs(r.lambda_max - ref["lambda_max"]) / abs(ref["lambda_max"]) < 1e-4
    assert abs(r.lambda_min - ref["lambda_min"]) / abs(ref["lambda_min"]) < 1e-4


# -- the operator's contract -----------------------------------------------------------------


def dense_hessian(loss_fn, params, x, y):
    """Independent truth: jax.hessian of the mean loss over all of (x, y), in float64."""
    theta, unravel = ravel_pytree(jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params))
    f = jax.jit(jax.hessian(lambda t, x, y: loss_fn(unravel(t), (x, y))))
    return f(theta, jnp.asarray(x), jnp.asarray(y))


def test_uneven_last_batch_is_exact_and_compiles_once_per_shape():
    jax.config.update("jax_enable_x64", True)
    loss_fn, params, x, y = tiny_mlp()
    op = HessianOperator(loss_fn, params, (x, y), batch_size=16, dtype="float64",  # 16*3 + 5
                         check_deterministic=False,  # counts compilations from zero
                         strategy="forward-over-reverse")  # one jitted step per chunk shape
    H = dense_hessian(loss_fn, params, x, y)
    v = op.random_vector(np.random.default_rng(0))
    assert rel(op.matvec(v), H @ v) < 1e-12
    assert op.trace_count == 2 and op._step._cache_size() == 2  # shapes 16 and 5
    assert rel(op.matvec(2 * v), 2 * (H @ v)) < 1e-12
    assert op.trace_count == 2 and op._step._cache_size() == 2  # no fresh compile
    # unweighted averaging of the four chunks would be wrong
    chunks = [op.matvec(v, indices=np.arange(s, min(s + 16, 53))) for s in range(0, 53, 16)]
    assert rel(sum(chunks) / 4, H @ v) > 1e-3
    count = op.trace_count
    for seed in range(3):  # mini-batches of a fixed size (21 = 16 + 5) reuse the shapes
        op.matvec(v, indices=op.sample_indices(21, np.random.default_rng(seed)))
    assert op.trace_count == count
    V = jnp.stack([v, -v, 3 * v], axis=1)
    assert rel(op.matmat(V), H @ V) < 1e-12
    assert op.meter.samples == 2 * 53 + 53 + 3 * 21 + 3 * 53


def test_minibatch_is_the_subset_hessian_and_pytree_round_trip():
    loss_fn, params, x, y = tiny_mlp()
    op = HessianOperator(loss_fn, params, (x, y), batch_size=4, dtype="float64")
    idx = np.array([2, 3, 11, 30, 41, 52])
    H_S = dense_hessian(loss_fn, params, x[idx], y[idx])
    v = op.random_vector(np.random.default_rng(1))
    assert rel(op.matvec(v, indices=idx), H_S @ v) < 1e-12
    tree = op.unflatten(op.theta)
    assert jax.tree.structure(tree) == jax.tree.structure(params)
    assert tree["hidden"][0].shape == (6, 5) and tree["out"]["b"].dtype == jnp.float64


def test_float32_and_float64_and_the_x64_flag():
    jax.config.update("jax_enable_x64", False)
    loss_fn, params, x, y = tiny_mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a float32 operator must not warn or touch the flag
        op32 = HessianOperator(loss_fn, params, (x, y), batch_size=16)
        assert op32.dtype == np.float32 and not jax.config.jax_enable_x64
        v = op32.random_vector(np.random.default_rng(0))
        out32 = op32.matvec(v)
    assert out32.dtype == jnp.float32 and not x64_enabled()
    with pytest.warns(UserWarning, match="jax_enable_x64 has been switched ON"):
        op64 = HessianOperator(loss_fn, params, (x, y), batch_size=16, dtype=np.float64)
    assert jax.config.jax_enable_x64 and x64_enabled()  # documented: process-wide
    v64 = op64.random_vector(np.random.default_rng(0))
    out64 = op64.matvec(v64)
    assert out64.dtype == jnp.float64 and v64.dtype == jnp.float64
    assert rel(out32, out64) < 1e-4
    assert op32.matvec(v).dtype == jnp.float32  # float32 stays float32 under x64
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # x64 already on: no second warning
        HessianOperator(loss_fn, params, (x, y), dtype="float64")
    jax.config.update("jax_enable_x64", False)
    with pytest.raises(RuntimeError, match="switched off"):
        op64.matvec(v64)


def test_bad_input_errors():
    jax.config.update("jax_enable_x64", True)
    loss_fn, params, x, y = tiny_mlp()
    with pytest.raises(ValueError, match="scalar"):
        HessianOperator(lambda p, b: loss_fn(p, b) * jnp.ones(3), params, (x, y))
    with pytest.raises(ValueError, match="differ in length"):
        HessianOperator(loss_fn, params, (x, y[:10]))
    with pytest.raises(ValueError, match="float32 or float64"):
        HessianOperator(loss_fn, params, (x, y), dtype="float16")
    with pytest.raises(ValueError, match="no JAX device"):
        HessianOperator(loss_fn, params, (x, y), device="cpu:7")
    op = HessianOperator(loss_fn, params, (x, y), dtype="float64", device="cpu")
    assert op.device == jax.devices("cpu")[0]
    with pytest.raises(ValueError, match=r"shape \(7,\)"):
        op.matvec(jnp.zeros(7))
    with pytest.raises(ValueError, match="block has shape"):
        op.matmat(jnp.zeros((op.size + 1, 2)))
    with pytest.raises(IndexError, match="sample indices"):
        op.matvec(jnp.zeros(op.size), indices=[0, 53])
    with pytest.raises(NonFiniteHVPError, match="NaN or inf"):
        op.matvec(jnp.full(op.size, jnp.nan))
    with pytest.raises(TypeError, match="no JAX translation for .*LSTM"):
        from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LSTM(2, 2)))
    with pytest.raises(TypeError, match="no JAX translation for the loss"):
        loss_from_torch(torch.nn.functional.nll_loss)
    with pytest.raises(ValueError, match="available: torch, jax"):
        problems.get("quadratic-small").operator("tensorflow")


def test_every_solver_runs_on_jax_arrays():
    """Solvers are array-API code: they run unchanged on a small float32 JAX quadratic."""
    parts = problems.get("quadratic-small", n=20, num_samples=200).torch_parts()
    op = operator_from_parts(parts, dtype="float32")
    for name in (n for n in solvers.available() if n not in ADAPTERS):  # peers: torch only
        r = solvers.get(name, tol=1e-3).solve(op, seed=0, budget={"max_passes": 100})
        assert r.status in ("converged", "budget", "max_steps"), (name, r.message)
        assert r.lambda_max is not None and np.isfinite(r.lambda_max), name
        for vec in (r.vector_max, r.vector_min):
            assert vec is None or (isinstance(vec, jax.Array) and vec.dtype == jnp.float32), name


def test_cli_run_with_backend_jax(tmp_path):
    from hessbench.cli import main

    out = tmp_path / "r.json"
    assert main(["run", "-p", "quadratic-small", "-s", "lanczos", "--backend", "jax",
                 "--tol", "1e-6", "-o", str(out), "-q"]) == 0
    record = json.loads(out.read_text())
    assert record["backend"] == "jax" and record["dtype"] == "float64"
    assert record["device"].startswith("cpu:0") and record["versions"]["jax"]
    assert record["converged"] and record["errors"]["rel_error_min"] < 1e-4


def test_readme_jax_example_runs_and_finds_the_dense_extremes():
    """The README's "Your own model (JAX)" snippet, run as written on a small model in float32,
    against the eigenvalues of the dense jax.hessian."""
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "README.md").read_text()
    snippet = doc.split("## Your own model (JAX)\n\n```python\n", 1)[1].split("```", 1)[0]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    params = {"w1": 0.5 * rng.standard_normal((8, 6)).astype(np.float32),
              "b1": np.zeros(6, np.float32),
              "w2": 0.5 * rng.standard_normal((6, 3)).astype(np.float32)}
    scope = {"params": params, "x": x, "y": y}
    exec(compile(snippet, "README.md", "exec"), scope)
    result, loss_fn = scope["result"], scope["loss_fn"]
    flat, unravel = ravel_pytree(params)
    H = np.asarray(jax.hessian(lambda t: loss_fn(unravel(t), (x, y)))(flat), dtype=np.float64)
    lam = np.linalg.eigvalsh((H + H.T) / 2)
    assert result.converged
    assert abs(result.lambda_max - lam[-1]) < 1e-3 * abs(lam[-1])
    assert abs(result.lambda_min - lam[0]) < 1e-3 * lam[-1]
