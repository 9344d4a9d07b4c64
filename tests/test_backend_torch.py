"""The PyTorch HVP operator against dense Hessians from torch.func.hessian (float64)."""

import numpy as np
import pytest
import torch
from torch.func import functional_call, hessian

from hessbench.backends.base import NonFiniteHVPError
from hessbench.backends.torch import HessianOperator


def dense(model, loss_fn, x, y, op):
    """Independent truth: torch.func.hessian of the full-data mean loss."""
    def f(flat):
        return loss_fn(functional_call(model, op.unflatten(flat), (x,)), y)
    return hessian(f)(op.theta)


def rel(a, b):
    return (torch.linalg.norm(a - b) / torch.linalg.norm(b)).item()


def test_matvec_matches_dense_hessian_with_uneven_last_batch(small_mlp_problem):
    model, loss_fn, x, y = small_mlp_problem
    op = HessianOperator(model, loss_fn, (x, y), batch_size=16)  # 16+16+16+5
    H = dense(model, loss_fn, x, y, op)
    v = torch.randn(op.size, dtype=torch.float64)
    assert rel(op.matvec(v), H @ v) < 1e-8
    V = torch.randn(op.size, 4, dtype=torch.float64)
    assert rel(op.matmat(V), H @ V) < 1e-8


def test_unweighted_batch_mean_would_be_wrong(small_mlp_problem):
    """The test above can fail: averaging per-batch HVPs without weights differs."""
    model, loss_fn, x, y = small_mlp_problem
    op = HessianOperator(model, loss_fn, (x, y), batch_size=16)
    v = torch.randn(op.size, dtype=torch.float64)
    chunks = [op.matvec(v, indices=np.arange(s, min(s + 16, 53))) for s in range(0, 53, 16)]
    assert rel(sum(chunks) / len(chunks), op.matvec(v)) > 1e-3


def test_minibatch_matvec_is_the_subset_hessian(small_mlp_problem):
    model, loss_fn, x, y = small_mlp_problem
    op = HessianOperator(model, loss_fn, (x, y), batch_size=4)
    idx = np.array([2, 3, 11, 30, 41, 52])
    H_S = dense(model, loss_fn, x[idx], y[idx], op)
    v = torch.randn(op.size, dtype=torch.float64)
    assert rel(op.matvec(v, indices=idx), H_S @ v) < 1e-8


def test_dataloader_input_gives_the_same_operator(small_mlp_problem):
    model, loss_fn, x, y = small_mlp_problem
    ds = torch.utils.data.TensorDataset(x, y)
    loader = torch.utils.data.DataLoader(ds, batch_size=10)
    op_t = HessianOperator(model, loss_fn, (x, y), batch_size=53)
    op_l = HessianOperator(model, loss_fn, loader)
    assert op_l.num_samples == 53
    v = torch.randn(op_t.size, dtype=torch.float64)
    assert rel(op_l.matvec(v), op_t.matvec(v)) < 1e-12
    idx = np.array([0, 7, 52])
    assert rel(op_l.matvec(v, indices=idx), op_t.matvec(v, indices=idx)) < 1e-12


def test_cost_meter_counts_samples_times_vectors(small_mlp_problem):
    model, loss_fn, x, y = small_mlp_problem
    op = HessianOperator(model, loss_fn, (x, y), batch_size=16, check_deterministic=False)
    v = torch.randn(op.size, dtype=torch.float64)
    op.matvec(v)
    op.matvec(v, indices=[1, 2, 3])
    op.matmat(torch.randn(op.size, 5, dtype=torch.float64), indices=np.arange(10))
    assert op.meter.samples == 53 + 3 + 5 * 10
    assert op.meter.hvp_calls == 1 + 1 + 5
    assert op.meter.data_passes == pytest.approx((53 + 3 + 50) / 53)


def test_parameter_subset_is_the_hessian_block(small_mlp_problem):
    model, loss_fn, x, y = small_mlp_problem
    full = HessianOperator(model, loss_fn, (x, y))
    H = dense(model, loss_fn, x, y, full)
    sub = HessianOperator(model, loss_fn, (x, y), params=["2.weight", "2.bias"])
    start = 6 * 5 + 5
    assert sub.size == 5 * 3 + 3
    v = torch.randn(sub.size, dtype=torch.float64)
    block = H[start:, start:]
    assert rel(sub.matvec(v), block @ v) < 1e-8


def test_float32_operator_from_float64_model_and_user_model_untouched(small_mlp_problem):
    model, loss_fn, x, y = small_mlp_problem
    op64 = HessianOperator(model, loss_fn, (x, y))
    op32 = HessianOperator(model, loss_fn, (x, y), dtype=torch.float32)
    v = torch.randn(op64.size, dtype=torch.float64)
    out = op32.matvec(v.float())
    assert out.dtype == torch.float32
    assert rel(out.double(), op64.matvec(v)) < 1e-4
    assert next(model.parameters()).dtype == torch.float64


def test_batchnorm_uses_running_statistics_and_restores_train_mode():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.Tanh(),
                                torch.nn.Linear(6, 2)).double()
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    model.train()
    x, y = torch.randn(20, 4, dtype=torch.float64), torch.randint(0, 2, (20,))
    op = HessianOperator(model, torch.nn.functional.cross_entropy, (x, y), batch_size=7)
    model.eval()
    H = dense(model, torch.nn.functional.cross_entropy, x, y, op)
    model.train()
    v = torch.randn(op.size, dtype=torch.float64)
    assert rel(op.matvec(v), H @ v) < 1e-8
    assert model.training and model[1].training


def test_bad_input_errors(small_mlp_problem):
    model, loss_fn, x, y = small_mlp_problem
    with pytest.raises(ValueError, match="scalar"):
        HessianOperator(model, lambda out, t: torch.nn.functional.cross_entropy(
            out, t, reduction="none"), (x, y))
    with pytest.raises(ValueError, match="differ in length"):
        HessianOperator(model, loss_fn, (x, y[:10]))
    with pytest.raises(ValueError, match="not a parameter"):
        HessianOperator(model, loss_fn, (x, y), params=["nope"])
    op = HessianOperator(model, loss_fn, (x, y))
    with pytest.raises(ValueError, match=r"shape \(7,\)"):
        op.matvec(torch.zeros(7, dtype=torch.float64))
    with pytest.raises(IndexError, match="sample indices"):
        op.matvec(torch.zeros(op.size, dtype=torch.float64), indices=[0, 53])
    with pytest.raises(NonFiniteHVPError, match="NaN or inf"):
        op.matvec(torch.full((op.size,), float("nan"), dtype=torch.float64))
