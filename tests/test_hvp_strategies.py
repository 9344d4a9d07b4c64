"""HVP strategies of the PyTorch operator (backends/torch_hvp.py) against dense Hessians from
torch.func.hessian (float64), the auto choice and its record, the compiled-product agreement
check, reduced precision and the gradient pass."""

import numpy as np
import pytest
import torch
from torch.func import functional_call, hessian

from hessbench.backends import torch_hvp
from hessbench.backends.torch import HessianOperator

EAGER = ["forward-over-reverse", "reverse-over-reverse"]


def dense(model, loss_fn, x, y, op):
    def f(flat):
        return loss_fn(functional_call(model, op.unflatten(flat), (x,)), y)
    return hessian(f)(op.theta)


def rel(a, b):
    return (torch.linalg.norm(a - b) / torch.linalg.norm(b)).item()


@pytest.mark.parametrize("strategy", ["auto", *EAGER])
def test_each_strategy_is_the_dense_hessian(small_mlp_problem, strategy, one_torch_thread):
    model, loss_fn, x, y = small_mlp_problem
    op = HessianOperator(model, loss_fn, (x, y), batch_size=16, strategy=strategy)
    H = dense(model, loss_fn, x, y, op)
    v = torch.randn(op.size, dtype=torch.float64)
    assert rel(op.matvec(v), H @ v) < 1e-10
    V = torch.randn(op.size, 3, dtype=torch.float64)
    assert rel(op.matmat(V), H @ V) < 1e-10
    idx = np.array([0, 5, 17, 40])
    H_S = dense(model, loss_fn, x[idx], y[idx], op)
    assert rel(op.matvec(v, indices=idx), H_S @ v) < 1e-10
    assert rel(op.matmat(V, indices=idx), H_S @ V) < 1e-10


def test_auto_records_its_timed_candidates(small_mlp_problem, one_torch_thread):
    model, loss_fn, x, y = small_mlp_problem
    op = HessianOperator(model, loss_fn, (x, y), batch_size=16)  # auto is the default
    before = op.meter.snapshot()
    op.matmat(torch.randn(op.size, 4, dtype=torch.float64))
    assert op.meter.snapshot() == (before[0] + 4 * 53, before[1] + 4)  # timing not charged
    setup = op.product_setup()
    assert setup["strategy_asked"] == "auto" and setup["strategy"] in EAGER
    names = [c["name"] for c in setup["candidates"]]
    assert names == EAGER  # tiny products: compiling would not pay (compile_min_seconds)
    assert all(c["accepted"] and c["seconds"] > 0 for c in setup["candidates"])
    best = min(setup["candidates"], key=lambda c: c["seconds"])
    assert setup["strategy"] == best["name"]
    block = setup["block_strategy"]["4"]
    assert [c["name"] for c in block["candidates"]] == [*EAGER, "loop"]
    assert setup["timing_samples"] > 0 and setup["precision"] == "float64"


def test_auto_tries_compiled_singles_but_not_compiled_blocks_on_cpu(small_mlp_problem,
                                                                    monkeypatch):
    """With compile_min_seconds=0 every product is long enough to compile; on a CPU the block
    choice still leaves compiled blocks out (torch.compile is an identity here: the choice, not
    the compiler, is under test)."""
    model, loss_fn, x, y = small_mlp_problem
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)
    op = HessianOperator(model, loss_fn, (x, y), batch_size=16, compile_min_seconds=0.0)
    op.matmat(torch.randn(op.size, 4, dtype=torch.float64))
    setup = op.product_setup()
    assert [c["name"] for c in setup["candidates"]] == [*EAGER, "compiled"]
    assert [c["name"] for c in setup["block_strategy"]["4"]["candidates"]] == [*EAGER, "loop"]


def test_a_candidate_that_disagrees_is_never_chosen(small_mlp_problem, monkeypatch):
    """The agreement check can fail: a strategy returning a wrong product (here: half of
    it, however fast) is rejected and the reference is kept."""
    model, loss_fn, x, y = small_mlp_problem
    right = torch_hvp.Strategies._rev_rev
    monkeypatch.setattr(torch_hvp.Strategies, "_rev_rev",
                        lambda self, V, x, y, batched=False: 0.5 * right(self, V, x, y, batched))
    op = HessianOperator(model, loss_fn, (x, y), batch_size=16)
    setup = op.product_setup()
    rev = next(c for c in setup["candidates"] if c["name"] == "reverse-over-reverse")
    assert not rev["accepted"] and rev["rel_diff"] == pytest.approx(0.5, rel=1e-6)
    assert setup["strategy"] == "forward-over-reverse"


def test_compiled_product_that_drops_tangents_falls_back(small_mlp_problem, monkeypatch):
    """A compiled product that silently drops tangents (zeros) is caught on its first chunk
    of each shape, replaced by the reference and recorded (torch.compile is replaced by a
    wrong function here: the check, not the compiler, is under test)."""
    model, loss_fn, x, y = small_mlp_problem
    monkeypatch.setattr(torch, "compile",
                        lambda fn, **kw: (lambda V, x, y: torch.zeros_like(fn(V, x, y))))
    op = HessianOperator(model, loss_fn, (x, y), batch_size=16, strategy="compiled")
    H = dense(model, loss_fn, x, y, op)
    v = torch.randn(op.size, dtype=torch.float64)
    assert rel(op.matvec(v), H @ v) < 1e-10
    fallbacks = op.product_setup()["fallbacks"]
    assert len(fallbacks) == 2  # shapes of 16 and of the last 5 samples
    assert all("differed from forward-over-reverse" in f for f in fallbacks)


def test_compiled_strategy_matches_eager(one_torch_thread):
    """The real torch.compile on a tiny MLP (a few seconds of compilation)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    x, y = torch.randn(20, 5), torch.randint(0, 3, (20,))
    loss_fn = torch.nn.functional.cross_entropy
    ref = HessianOperator(model, loss_fn, (x, y), strategy="forward-over-reverse")
    op = HessianOperator(model, loss_fn, (x, y), strategy="compiled")
    v = torch.randn(op.size)
    assert rel(op.matvec(v), ref.matvec(v)) < torch_hvp.agreement_rtol(torch.float32)
    assert "fallbacks" not in op.product_setup()


def test_reduced_precision_shares_the_meter_and_is_close(small_mlp_problem):
    model, loss_fn, x, y = small_mlp_problem
    op = HessianOperator(model.float(), loss_fn, (x.float(), y), dtype=torch.float32)
    low = op.reduced_precision("bf16")
    assert low.meter is op.meter and low.dtype == op.dtype
    v = torch.randn(op.size)
    exact, approx = op.matvec(v), low.matvec(v)
    assert approx.dtype == torch.float32
    assert 1e-5 < rel(approx, exact) < 0.1  # bf16 has 8 bits of mantissa: visibly different
    assert low.product_setup()["precision"] == "bf16"
    assert op.product_setup()["precision"] == "float32"  # the original is unchanged
    with pytest.raises(ValueError, match="CUDA"):
        op.reduced_precision("tf32")
    with pytest.raises(ValueError, match="precision must be one of"):
        op.reduced_precision("fp8")
    op64 = HessianOperator(model.double(), loss_fn, (x.double(), y), dtype=torch.float64)
    with pytest.raises(ValueError, match="float32 arithmetic only.*float64"):
        op64.reduced_precision("bf16")  # autocast leaves float64 alone: refused, not faked


def test_gradient_is_the_full_data_gradient(small_mlp_problem):
    model, loss_fn, x, y = small_mlp_problem
    op = HessianOperator(model, loss_fn, (x, y), batch_size=16)
    model.zero_grad()
    loss_fn(model(x), y).backward()
    expected = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    assert rel(op.gradient(), expected) < 1e-12


def test_bad_strategy_is_refused(small_mlp_problem):
    model, loss_fn, x, y = small_mlp_problem
    with pytest.raises(ValueError, match="strategy must be one of auto"):
        HessianOperator(model, loss_fn, (x, y), strategy="fastest")
    with pytest.raises(ValueError, match="block_chunk"):
        HessianOperator(model, loss_fn, (x, y), block_chunk=0)


def test_block_chunk_splits_wide_blocks(small_mlp_problem):
    model, loss_fn, x, y = small_mlp_problem
    ref = HessianOperator(model, loss_fn, (x, y), strategy="reverse-over-reverse")
    for strategy in EAGER:
        op = HessianOperator(model, loss_fn, (x, y), strategy=strategy, block_chunk=2)
        V = torch.randn(op.size, 5, dtype=torch.float64)
        assert rel(op.matmat(V), ref.matmat(V)) < 1e-12
