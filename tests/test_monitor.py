"""HessianMonitor / JaxHessianMonitor: values against dense float64 Hessians along a short
training run, the model left untouched, the logs, the plot, warm starts and input errors."""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest
import torch
from torch.func import functional_call

from hessbench.errors import InputError
from hessbench.history_cli import add_plot_history_parser
from hessbench.monitor import FIELDS, HessianMonitor, step_seed
from hessbench.monitor_jax import JaxHessianMonitor
from hessbench.monitor_plot import read_history

TOL = 1e-3
PNG = b"\x89PNG\r\n\x1a\n"
loss_fn = torch.nn.functional.cross_entropy


def tiny_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model.double(), x, y


def train(model, x, y, steps=5, lr=0.2):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()


def dense_extremes(model, x, y):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def f(flat):
        parts, i = {}, 0
        for n, s in zip(names, shapes):
            k = int(np.prod(s))
            parts[n] = flat[i:i + k].view(s)
            i += k
        return loss_fn(functional_call(model, parts, (x,)), y)

    evals = np.linalg.eigvalsh(torch.autograd.functional.hessian(f, flat0).numpy())
    return evals[-1], evals[0]


def close(estimate, exact, residual):
    # the certified interval holds the exact extreme, and within tol relative to lambda_max
    return abs(estimate - exact) <= residual + 1e-9 and abs(estimate - exact) <= TOL * abs(exact)


def test_matches_dense_hessian_along_training(tmp_path):
    model, x, y = tiny_problem()
    monitor = HessianMonitor(model, loss_fn, (x, y), tol=TOL, log_dir=tmp_path, batch_size=16)
    for epoch in range(3):
        record = monitor.step(epoch)
        lmax, lmin = dense_extremes(model, x, y)
        assert record.converged and record.status == "converged" and record.certified
        assert close(record.lambda_max, lmax, record.residual_max), (record, lmax)
        assert close(record.lambda_min, lmin, record.residual_min), (record, lmin)
        assert record.parameters == 51 and record.num_samples == 40 and record.epoch == epoch
        assert record.data_passes == record.hvp_calls > 0
        assert record.operator_passes == record.data_passes + 4  # probe 2, certify 2
        train(model, x, y)
    assert len({r.lambda_max for r in monitor.history}) == 3  # training moved the weights


def test_model_state_mode_and_rng_untouched():
    model, x, y = tiny_problem()
    model = torch.nn.Sequential(*model[:2], torch.nn.BatchNorm1d(6).double(), torch.nn.Dropout(0.5),
                                model[2])
    model.train()
    model[3].eval()                       # mixed flags must come back as they were
    model[0].bias.requires_grad_(False)   # held fixed by the operator, flag kept
    train(model, x, y, steps=2, lr=0.05)  # gives BatchNorm running statistics
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    iter(loader)  # the test can see it: a DataLoader iterator draws from the global generator
    assert not torch.equal(rng, torch.get_rng_state())
    torch.set_rng_state(rng)

    monitor = HessianMonitor(model, loss_fn, loader, tol=TOL)
    record = monitor.step(0)

    assert record.parameters == sum(p.numel() for p in model.parameters()) - 6
    assert torch.equal(rng, torch.get_rng_state())
    assert [m.training for m in model.modules()] == flags
    assert [p.requires_grad for p in model.parameters()] == grads
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k


def test_logs_one_line_per_step_and_plot(tmp_path):
    model, x, y = tiny_problem()
    monitor = HessianMonitor(model, loss_fn, (x, y), tol=TOL, log_dir=tmp_path / "log", seed=3)
    records = []
    for epoch in (0, 2):
        records.append(monitor.step(epoch))
        train(model, x, y, steps=2)
    lines = (tmp_path / "log" / "hessian.jsonl").read_text().splitlines()
    assert len(lines) == 2
    for line, record in zip(lines, records):
        data = json.loads(line)
        assert list(data) == FIELDS
        assert data == record.to_json()
    with open(tmp_path / "log" / "hessian.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and list(rows[0]) == FIELDS
    for row, record in zip(rows, records):
        assert int(row["epoch"]) == record.epoch
        assert float(row["lambda_max"]) == record.lambda_max
        assert float(row["residual_min"]) == record.residual_min
        assert json.loads(row["solver_options"]) == record.solver_options
    assert read_history(tmp_path / "log") == records
    assert [r.seed for r in records] == [step_seed(3, 0), step_seed(3, 2)]
    assert records[0].solver_options == {"tol": TOL, "max_steps": 500}

    png = monitor.plot(tmp_path / "fig.png")
    assert png.read_bytes()[:8] == PNG
    # the command line: hessbench plot-history LOG -o fig.png
    parser = argparse.ArgumentParser()
    add_plot_history_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["plot-history", str(tmp_path / "log" / "hessian.jsonl"),
                              "-o", str(tmp_path / "cli.png"), "-q"])
    assert args.func(args) == 0
    assert (tmp_path / "cli.png").read_bytes()[:8] == PNG
    (tmp_path / "bad.jsonl").write_text(lines[0] + "\n{not json\n")
    with pytest.raises(InputError, match="line 2"):
        read_history(tmp_path / "bad.jsonl")


def test_same_seed_same_record_and_tensorboard_sink():
    model, x, y = tiny_problem()

    class Writer:
        def __init__(self):
            self.scalars = []

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, value, step))

    writer = Writer()
    a = HessianMonitor(model, loss_fn, (x, y), seed=7, tensorboard=writer).step(4)
    b = HessianMonitor(model, loss_fn, (x, y), seed=7).step(4)
    assert (a.lambda_max, a.lambda_min, a.data_passes, a.seed) == \
        (b.lambda_max, b.lambda_min, b.data_passes, b.seed)
    assert ("hessian/lambda_max", a.lambda_max, 4) in writer.scalars
    assert {t for t, _, _ in writer.scalars} >= {"hessian/lambda_min", "hessian/data_passes"}


def test_warm_start_starts_from_previous_ritz_vectors(monkeypatch):
    from hessbench.solvers.lanczos import Lanczos

    model, x, y = tiny_problem()
    starts = []
    real = Lanczos.solve

    def spy(self, op, *args, start=None, **kw):
        if start is not None:
            starts.append(np.asarray(start, dtype=np.float64).copy())
        return real(self, op, *args, start=start, **kw)

    monkeypatch.setattr(Lanczos, "solve", spy)
    cold = HessianMonitor(model, loss_fn, (x, y), tol=TOL)
    warm = HessianMonitor(model, loss_fn, (x, y), tol=TOL, warm_start=True)
    first = warm.step(0)
    assert not first.warm_started and warm.last_start is None and starts == []
    prev = {e: getattr(warm.last_result, f"vector_{e}").numpy() for e in ("max", "min")}
    second = warm.step(1)  # same weights: the previous vectors are the answer
    assert second.warm_started and len(starts) == 1
    np.testing.assert_allclose(starts[0], warm.last_start)
    q = warm.last_start
    assert abs(np.linalg.norm(q) - 1) < 1e-12
    for e in ("max", "min"):
        assert abs(q @ prev[e]) / np.linalg.norm(prev[e]) > 0.6, e
    baseline = cold.step(1)
    assert not baseline.warm_started
    assert second.data_passes < baseline.data_passes
    assert abs(second.lambda_max - baseline.lambda_max) <= TOL * abs(baseline.lambda_max)
    assert abs(second.lambda_min - baseline.lambda_min) <= TOL * abs(baseline.lambda_min)


def test_input_errors_name_the_problem(tmp_path):
    model, x, y = tiny_problem()
    with pytest.raises(InputError, match="start vector"):
        HessianMonitor(model, loss_fn, (x, y), solver="lobpcg", warm_start=True)
    with pytest.raises(InputError, match="which"):
        HessianMonitor(model, loss_fn, (x, y), which="largest")
    with pytest.raises(InputError, match="batchsize"):
        HessianMonitor(model, loss_fn, (x, y), batchsize=8)
    with pytest.raises(InputError, match="no-such-solver"):
        HessianMonitor(model, loss_fn, (x, y), solver="no-such-solver")
    with pytest.raises(InputError, match="max_passes"):
        HessianMonitor(model, loss_fn, (x, y), budget={"max_passes": -1})
    with pytest.raises(InputError, match="torch.nn.Module"):
        HessianMonitor(lambda t: t, loss_fn, (x, y))
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="not a folder"):
        HessianMonitor(model, loss_fn, (x, y), log_dir=tmp_path / "file")
    with pytest.raises(InputError, match="add_scalar"):
        HessianMonitor(model, loss_fn, (x, y), tensorboard=object())
    monitor = HessianMonitor(model, loss_fn, (x, y))
    with pytest.raises(InputError, match="epoch"):
        monitor.step(-1)
    with pytest.raises(InputError, match="nothing to plot"):
        monitor.plot(tmp_path / "x.png")


def test_budget_stops_a_step_unconverged():
    model, x, y = tiny_problem()
    monitor = HessianMonitor(model, loss_fn, (x, y), tol=1e-6, budget={"max_passes": 3},
                             which="max", certify=False)
    record = monitor.step(0)
    assert record.status == "budget" and not record.converged and record.data_passes <= 3
    assert record.lambda_min is None and record.lambda_max is not None
    assert not record.certified and record.residual_max == monitor.last_result.residual_max
    assert record.operator_passes == record.data_passes + 2  # no certifying product


def test_jax_monitor_matches_dense_hessian(tmp_path):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    def loss(params, batch):
        xb, yb = batch
        h = jnp.tanh(xb @ params["w1"] + params["b1"])
        logp = jax.nn.log_softmax(h @ params["w2"], axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=-1))

    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.standard_normal((30, 4)), dtype=jnp.float32)
    ys = jnp.asarray(rng.integers(0, 3, 30))
    params = {"w1": jnp.asarray(rng.standard_normal((4, 5)), dtype=jnp.float32),
              "b1": jnp.zeros(5, jnp.float32),
              "w2": jnp.asarray(rng.standard_normal((5, 3)), dtype=jnp.float32)}
    monitor = JaxHessianMonitor(loss, (xs, ys), tol=TOL, log_dir=tmp_path, batch_size=8,
                                warm_start=True, strategy="forward-over-reverse")
    for epoch in range(2):
        record = monitor.step(epoch, params)
        flat, unravel = ravel_pytree(params)
        dense = np.asarray(jax.hessian(lambda f: loss(unravel(f), (xs, ys)))(flat), np.float64)
        evals = np.linalg.eigvalsh((dense + dense.T) / 2)
        assert record.backend == "jax" and record.parameters == 40
        assert record.warm_started == (epoch > 0)
        scale = abs(evals[-1])
        assert abs(record.lambda_max - evals[-1]) <= TOL * scale
        assert abs(record.lambda_min - evals[0]) <= TOL * scale
        grads = jax.grad(loss)(params, (xs, ys))
        params = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
    assert len(read_history(tmp_path)) == 2
