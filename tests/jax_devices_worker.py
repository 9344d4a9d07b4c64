"""Sharded JAX products on 2 CPU devices, for tests/test_distributed_jax.py.

Usage: ``python jax_devices_worker.py SCENARIO OUT.json``; the test sets
``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (which must precede importing JAX).
Each scenario compares the sharded operator with the one-device operator (or a dense Hessian)
in this process and writes what it measured to OUT.json.
"""

from __future__ import annotations

import json
import sys
import traceback

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from hessbench import problems, solvers  # noqa: E402
from hessbench.backends.jax import HessianOperator  # noqa: E402
from hessbench.jax_models import operator_from_parts  # noqa: E402

INDICES = np.array([3, 950, 950, 17, 1796, 898, 899, 5])  # both shards, a repeat, the seam
TINY_N = 53  # odd: device 0 holds 27 samples, device 1 holds 26 and one padding row


def rel(got, want) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def tiny(dtype=np.float64):
    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(6, 5)), "b": rng.normal(size=5), "V": rng.normal(size=(5, 3))}
    x, y = rng.normal(size=(TINY_N, 6)), rng.integers(0, 3, size=TINY_N)

    def loss_fn(p, batch):
        inputs, targets = batch
        logp = jax.nn.log_softmax(jnp.tanh(inputs @ p["W"] + p["b"]) @ p["V"])
        return -jnp.mean(jnp.take_along_axis(logp, targets[:, None], axis=1))
    return loss_fn, params, (x.astype(dtype), y)


def products() -> dict:
    """digits-mlp (N = 1,797, odd) on one device and sharded over two: products and lanczos."""
    parts = problems.get("digits-mlp").torch_parts(progress=False)
    one = operator_from_parts(parts, dtype="float64")
    two = operator_from_parts(parts, dtype="float64", devices=2)
    rng = np.random.default_rng(1)
    v, V = rng.standard_normal(one.size), rng.standard_normal((one.size, 3))
    traces = two.trace_count
    out = {
        "type": type(two).__name__, "device": two.describe_device(),
        "counts": [two.process_count(), two.device_count(), one.device_count()],
        "layout": [two.mesh.rows_per_device, two.mesh.chunk_width],
        "full": rel(two.matvec(v), one.matvec(v)),
        "mini": rel(two.matvec(v, indices=INDICES), one.matvec(v, indices=INDICES)),
        "block": rel(two.matmat(V), one.matmat(V)),
        "mini_traces": two.trace_count - traces,  # 1: the block width 3; no new chunk shape
        "meters": [[op.meter.samples, op.meter.hvp_calls] for op in (one, two)],
    }
    for label, op in (("one", one), ("two", two)):
        r = solvers.get("lanczos").solve(op, seed=0, progress=False)
        out[label] = [r.lambda_max, r.lambda_min, r.hvp_calls, r.data_passes, r.status]
    x32 = operator_from_parts(parts, dtype="float32", devices="all")
    out["float32"] = rel(x32.matvec(v), one.matvec(v))
    return out


def conformance() -> dict:
    """backends.testing.check_operator on the tiny MLP (N = 53) sharded over 2 devices."""
    from jax.flatten_util import ravel_pytree

    from hessbench.backends.testing import check_operator

    loss_fn, params, (x, y) = tiny()
    op = HessianOperator(loss_fn, params, (x, y), batch_size=8, dtype="float64",
                         devices=jax.devices())
    nan_op = HessianOperator(lambda p, b: loss_fn(p, b) * jnp.nan, params, (x, y),
                             batch_size=8, dtype="float64", devices=2,
                             check_deterministic=False)
    flat, unravel = ravel_pytree(params)

    def dense_hessian(indices=None):
        idx = slice(None) if indices is None else np.asarray(indices)
        return np.asarray(jax.hessian(lambda t: loss_fn(unravel(t), (x[idx], y[idx])))(flat))

    check_operator(op, dense_hessian, nan_operator=nan_op)
    # more devices than a device's rows: N = 3 over 2 devices, one sample on device 1
    small = HessianOperator(loss_fn, params, (x[:3], y[:3]), dtype="float64", devices=2)
    v = np.random.default_rng(2).standard_normal(op.size)
    return {"ok": True, "small": rel(small.matvec(v), dense_hessian(np.arange(3)) @ v)}


def bad_input() -> dict:
    loss_fn, params, data = tiny()
    seen = {}
    for label, devices in (("three", 3), ("zero", 0), ("word", "some"),
                           ("twice", [jax.devices()[0]] * 2), ("empty", [])):
        try:
            HessianOperator(loss_fn, params, data, devices=devices)
            seen[label] = "accepted"
        except ValueError as err:
            seen[label] = str(err)
    return seen


def main() -> int:
    scenario, out = sys.argv[1], sys.argv[2]
    try:
        result = {"products": products, "conformance": conformance,
                  "bad-input": bad_input}[scenario]()
    except Exception:
        result = {"error": traceback.format_exc()}
    with open(out, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
