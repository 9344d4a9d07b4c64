"""One rank of a 2-process gloo group, for tests/test_distributed_torch.py.

Usage: ``python distributed_worker.py SCENARIO OUTDIR`` with MASTER_ADDR, MASTER_PORT, RANK and
WORLD_SIZE set (the test launches both ranks). Each scenario writes what rank 0 (or every rank)
saw to OUTDIR as ``rank<r>.json`` / ``rank<r>.npz``; the test compares it with single-process
products computed independently in the test process.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from hessbench import problems, solvers
from hessbench.backends.torch import HessianOperator
from hessbench.backends.torch_distributed import DistributedProductError, DistributedSetupError

SPLIT = 900  # rank 0 holds samples [0, 900) of digits-mlp's 1,797, rank 1 the other 897
INDICES = np.array([3, 950, 950, 17, 1796, 899, 900, 5])  # both shards, a repeat, the seam
TINY_N = 53  # the tiny MLP's samples: rank 0 holds 30, rank 1 holds 23


def digits_shard(rank: int, dtype: torch.dtype = torch.float64):
    parts = problems.get("digits-mlp").torch_parts(progress=False)
    rows = slice(0, SPLIT) if rank == 0 else slice(SPLIT, None)
    return parts, (parts.inputs[rows], parts.targets[rows])


def tiny_problem():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(),
                                torch.nn.Linear(5, 3)).double()
    x = torch.randn(TINY_N, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (TINY_N,))
    return model, torch.nn.functional.cross_entropy, x, y


def products(rank: int, out: Path) -> None:
    """Full, mini-batch and block products and a lanczos solve, tensors and loaders."""
    parts, shard = digits_shard(rank)
    op = HessianOperator(parts.model, parts.loss_fn, shard, batch_size=128,
                         dtype=torch.float64, process_group=dist.group.WORLD)
    rng = np.random.default_rng(1)
    v = op.asarray(rng.standard_normal(op.size))
    V = op.asarray(rng.standard_normal((op.size, 3)))
    full, mini, block = op.matvec(v), op.matvec(v, indices=INDICES), op.matmat(V)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*shard), batch_size=100)
    lop = HessianOperator(parts.model, parts.loss_fn, loader, dtype=torch.float64,
                          process_group=dist.group.WORLD)
    lfull, lmini = lop.matvec(v), lop.matvec(v, indices=INDICES)
    result = solvers.get("lanczos").solve(op, seed=0, progress=rank == 0)
    np.savez(out / f"rank{rank}.npz", full=full.numpy(), mini=mini.numpy(),
             block=block.numpy(), loader_full=lfull.numpy(), loader_mini=lmini.numpy())
    (out / f"rank{rank}.json").write_text(json.dumps({
        "num_samples": op.num_samples, "local": op.shard.count, "offset": op.shard.offset,
        "lambda_max": result.lambda_max, "lambda_min": result.lambda_min,
        "hvp_calls": result.hvp_calls, "data_passes": result.data_passes,
        "status": result.status, "processes": op.process_count(),
        "main": op.is_main_process, "device": op.describe_device(),
        "decide": [op.decide(rank == 0), op.decide(rank == 1)]}))


def conformance(rank: int, out: Path) -> None:
    """backends.testing.check_operator on a tiny MLP split 30 + 23 over the ranks, against
    the dense Hessian of the whole (undivided) data computed on each rank."""
    from torch.func import functional_call, hessian

    from hessbench.backends.testing import check_operator

    model, loss_fn, x, y = tiny_problem()
    rows = slice(0, 30) if rank == 0 else slice(30, None)
    group = dist.group.WORLD
    op = HessianOperator(model, loss_fn, (x[rows], y[rows]), batch_size=16,
                         dtype=torch.float64, process_group=group)
    nan_op = HessianOperator(model, lambda *a: loss_fn(*a) * float("nan"), (x[rows], y[rows]),
                             batch_size=16, dtype=torch.float64, process_group=group,
                             check_deterministic=False)

    def dense_hessian(indices=None):
        idx = slice(None) if indices is None else torch.as_tensor(np.asarray(indices))

        def f(flat):
            return loss_fn(functional_call(model, op.unflatten(flat), (x[idx],)), y[idx])
        return hessian(f)(op.theta).numpy()

    check_operator(op, dense_hessian, nan_operator=nan_op)
    (out / f"rank{rank}.json").write_text(json.dumps({"ok": True}))


def bad_input(rank: int, out: Path) -> None:
    """Each case must raise the same DistributedSetupError on both ranks, and the group must
    stay usable for the next case."""
    model, loss_fn, x, y = tiny_problem()
    group = dist.group.WORLD
    rows = slice(0, 30) if rank == 0 else slice(30, None)
    seen = {}

    def attempt(case, *args, **kwargs):
        try:
            HessianOperator(*args, process_group=group, **kwargs)
            seen[case] = "built"
        except DistributedSetupError as err:
            seen[case] = f"DistributedSetupError: {err}"

    data = (x[rows], y[rows])
    attempt("empty", model, loss_fn, data if rank == 0 else (x[:0], y[:0]))
    other = tiny_problem()[0]
    if rank == 1:
        with torch.no_grad():
            other[0].weight[0, 0] += 1e-12
    attempt("weights", other, loss_fn, data)
    wide = torch.nn.Sequential(torch.nn.Linear(6, 5 + rank), torch.nn.Tanh(),
                               torch.nn.Linear(5 + rank, 3)).double()
    attempt("parameters", wide, loss_fn, data)
    attempt("dtype", model, loss_fn, data,
            dtype=torch.float64 if rank == 0 else torch.float32)
    bad = data if rank == 0 else (x[rows], y[:3])  # rank 1 alone fails (lengths differ)
    attempt("one rank fails", model, loss_fn, bad)
    attempt("good", model, loss_fn, data, dtype=torch.float64)
    (out / f"rank{rank}.json").write_text(json.dumps(seen))


def peer_dies(rank: int, out: Path, how: str) -> None:
    """Rank 1 leaves after the operator is built (killed, or an exception ending its process,
    or silent: alive but never joining the next product); rank 0's next product must raise
    DistributedProductError within the group's timeout."""
    model, loss_fn, x, y = tiny_problem()
    rows = slice(0, 30) if rank == 0 else slice(30, None)
    op = HessianOperator(model, loss_fn, (x[rows], y[rows]), dtype=torch.float64,
                         process_group=dist.group.WORLD)
    dist.barrier()
    if rank == 1:
        if how == "killed":
            os._exit(9)
        if how == "raises":
            raise RuntimeError("rank 1 failed on purpose")
        time.sleep(600)  # silent: the test kills this process
    start = time.perf_counter()
    try:
        op.matvec(op.asarray(np.ones(op.size)))
        seen = {"error": None}
    except DistributedProductError as err:
        seen = {"error": f"DistributedProductError: {err}"}
    seen["seconds"] = time.perf_counter() - start
    (out / f"rank{rank}.json").write_text(json.dumps(seen))


def main() -> int:
    scenario, out = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    timeout = datetime.timedelta(seconds=float(os.environ.get("TEST_GROUP_TIMEOUT", "60")))
    dist.init_process_group("gloo", timeout=timeout)
    try:
        if scenario.startswith("peer-"):
            peer_dies(rank, out, scenario.removeprefix("peer-"))
        else:
            {"products": products, "conformance": conformance, "bad-input": bad_input}[
                scenario](rank, out)
    except Exception:
        (out / f"rank{rank}.error").write_text(traceback.format_exc())
        raise
    if not scenario.startswith("peer-"):
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
