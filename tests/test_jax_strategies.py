"""The JAX operator's full-data strategies (forward-over-reverse, linearized, auto) against the
dense float64 Hessian, and the channels-last layout of converted torch models."""

import numpy as np
import pytest
from conftest import tiny_jax_mlp

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from hessbench.backends.jax import HessianOperator  # noqa: E402
from hessbench.jax_models import from_torch  # noqa: E402


@pytest.fixture(autouse=True)
def _x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def dense(loss_fn, params, x, y):
    theta, unravel = ravel_pytree(jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params))
    return jax.hessian(lambda t: loss_fn(unravel(t), (jnp.asarray(x), jnp.asarray(y))))(theta)


def rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.mark.parametrize("strategy", ["linearized", "auto"])
def test_full_products_and_blocks_equal_the_dense_hessian(strategy):
    loss_fn, params, x, y = tiny_jax_mlp()
    op = HessianOperator(loss_fn, params, (x, y), batch_size=16, dtype="float64",
                         strategy=strategy)
    H = dense(loss_fn, params, x, y)
    rng = np.random.default_rng(0)
    v, V = op.random_vector(rng), jnp.stack([op.random_vector(rng) for _ in range(3)], axis=1)
    before = op.meter.samples
    assert rel(op.matvec(v), H @ v) < 1e-12
    assert rel(op.matmat(V), H @ V) < 1e-12
    assert op.meter.samples - before == 4 * 53  # timing products are not charged
    idx = np.array([1, 5, 9])  # mini-batch products: always forward-over-reverse
    assert rel(op.matvec(v, indices=idx), dense(loss_fn, params, x[idx], y[idx]) @ v) < 1e-12
    setup = op.product_setup()
    assert setup["strategy_asked"] == strategy
    assert setup["strategy"] in ("linearized", "forward-over-reverse")
    if strategy == "auto":
        assert [c["name"] for c in setup["candidates"]] == ["forward-over-reverse", "linearized"]
        assert setup["timing_samples"] > 0
        assert all(c["seconds"] > 0 for c in setup["candidates"])
    else:
        assert setup["strategy"] == "linearized" and setup["linearized_bytes"] > 0


def test_residual_budget_refuses_linearized_and_auto_falls_back():
    loss_fn, params, x, y = tiny_jax_mlp()
    v = None
    with pytest.raises(ValueError, match="max_linearized_bytes"):
        op = HessianOperator(loss_fn, params, (x, y), dtype="float64", strategy="linearized",
                             max_linearized_bytes=16)
        v = op.random_vector(np.random.default_rng(0))
        op.matvec(v)
    op = HessianOperator(loss_fn, params, (x, y), dtype="float64", max_linearized_bytes=16)
    op.matvec(op.random_vector(np.random.default_rng(0)))
    setup = op.product_setup()
    assert setup["strategy"] == "forward-over-reverse"
    assert "max_linearized_bytes" in setup["candidates"][1]["error"]
    for bad in [dict(strategy="fastest"), dict(max_linearized_bytes=0)]:
        with pytest.raises(ValueError):
            HessianOperator(loss_fn, params, (x, y), dtype="float64", **bad)


def test_channels_last_layout_equals_torch_layout():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 3, 3, stride=2), torch.nn.Flatten(), torch.nn.Linear(27, 5)).double()
    model[1].running_mean.normal_(), model[1].running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.randn(7, 2, 8, 8, dtype=torch.float64)
    expected = model(x).detach().numpy()
    for layout in ("NHWC", "NCHW"):
        apply_fn, params = from_torch(model, layout=layout)
        got = np.asarray(apply_fn(params, jnp.asarray(x.numpy())))
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="layout"):
        from_torch(model, layout="CHWN")
