"""The PyTorch operator over a 2-process gloo group (tests/distributed_worker.py is one rank),
against single-process products on the same weights, computed here: products equal to 1e-12
relative in float64 with uneven shards (900 + 897 digits samples), lanczos gives the same
eigenvalues and HVP count, the conformance kit passes against a dense Hessian, bad input is
one clear error on every rank, and a rank that dies makes the other fail, not hang."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from hessbench import problems, solvers
from hessbench.backends.torch import HessianOperator
from hessbench.errors import InputError

sys.path.insert(0, str(Path(__file__).parent))
import distributed_worker as worker  # noqa: E402

WORKER = Path(__file__).with_name("distributed_worker.py")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(scenario: str, out: Path, *, timeout: float = 240, group_timeout: float = 60,
           grace: float | None = None) -> list[subprocess.CompletedProcess]:
    """Run both ranks of ``scenario``; kill them if they outlive ``timeout`` seconds (or rank
    1 ``grace`` seconds after rank 0 ended)."""
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1",
           "TEST_GROUP_TIMEOUT": str(group_timeout)}
    procs = [subprocess.Popen([sys.executable, str(WORKER), scenario, str(out)],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(2)]
    done = []
    try:
        for rank, p in enumerate(procs):
            try:
                stdout, _ = p.communicate(timeout=grace if rank and grace else timeout)
            except subprocess.TimeoutExpired:
                if not (rank and grace):
                    raise
                p.kill()
                stdout, _ = p.communicate()
            done.append(subprocess.CompletedProcess(p.args, p.returncode, stdout))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return done


def read(out: Path, rank: int) -> dict:
    return json.loads((out / f"rank{rank}.json").read_text())


def assert_ok(runs: list[subprocess.CompletedProcess]) -> None:
    for rank, run in enumerate(runs):
        assert run.returncode == 0, f"rank {rank} failed:\n{run.stdout[-3000:]}"


def rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def test_two_ranks_equal_one_process_on_uneven_shards(tmp_path):
    runs = launch("products", tmp_path)
    assert_ok(runs)
    parts = problems.get("digits-mlp").torch_parts(progress=False)
    op = HessianOperator(parts.model, parts.loss_fn, (parts.inputs, parts.targets),
                         batch_size=128, dtype=torch.float64)
    rng = np.random.default_rng(1)
    v = op.asarray(rng.standard_normal(op.size))
    V = op.asarray(rng.standard_normal((op.size, 3)))
    want = {"full": op.matvec(v), "mini": op.matvec(v, indices=worker.INDICES),
            "block": op.matmat(V)}
    want["loader_full"], want["loader_mini"] = want["full"], want["mini"]
    single = solvers.get("lanczos").solve(op, seed=0)
    info = [read(tmp_path, r) for r in range(2)]
    got = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    for name, value in want.items():
        assert rel(got[0][name], value.numpy()) < 1e-12, name
        np.testing.assert_array_equal(got[0][name], got[1][name])  # replicated, bitwise
    assert [i["num_samples"] for i in info] == [1797, 1797]
    assert [(i["offset"], i["local"]) for i in info] == [(0, 900), (900, 897)]
    for i in info:
        assert i["lambda_max"] == pytest.approx(single.lambda_max, rel=1e-10)
        assert i["lambda_min"] == pytest.approx(single.lambda_min, rel=1e-10)
        assert (i["hvp_calls"], i["data_passes"]) == (single.hvp_calls, single.data_passes)
        assert i["status"] == single.status == "converged"
        assert i["processes"] == 2 and "x 2 processes (gloo)" in i["device"]
        assert i["decide"] == [True, False]  # rank 0's flag, on both ranks
    assert [i["main"] for i in info] == [True, False]


def test_conformance_kit_passes_over_two_ranks(tmp_path):
    assert_ok(launch("conformance", tmp_path))
    assert read(tmp_path, 0) == read(tmp_path, 1) == {"ok": True}


def test_bad_input_is_one_clear_error_on_every_rank(tmp_path):
    assert_ok(launch("bad-input", tmp_path))
    seen = [read(tmp_path, r) for r in range(2)]
    assert seen[0] == seen[1]  # the same error on both ranks
    s = seen[0]
    assert "rank(s) 1 hold no samples (shard sizes [30, 0])" in s["empty"]
    assert "parameter and buffer values (SHA-256)" in s["weights"]
    assert "broadcast_module" in s["weights"]
    assert "parameter count (rank 0: 53, rank 1: 63)" in s["parameters"]
    assert "dtype (rank 0: torch.float64, rank 1: torch.float32)" in s["dtype"]
    assert ("rank 1 failed: ValueError: inputs and targets differ in length: 23 vs 3"
            in s["one rank fails"])
    assert s["good"] == "built"  # the group is still usable after the errors


@pytest.mark.parametrize("how", ["killed", "raises", "silent"])
def test_a_rank_that_dies_makes_the_other_fail_not_hang(tmp_path, how):
    runs = launch(f"peer-{how}", tmp_path, timeout=120, group_timeout=10, grace=5)
    assert runs[0].returncode == 0, runs[0].stdout[-3000:]
    seen = read(tmp_path, 0)
    assert seen["error"] is not None and "DistributedProductError" in seen["error"]
    assert "all_reduce (product)" in seen["error"]
    assert seen["seconds"] < 60
    assert runs[1].returncode != 0


def test_process_group_without_an_initialised_group_is_refused(small_mlp_problem):
    assert not dist.is_initialized()
    model, loss_fn, x, y = small_mlp_problem
    for group in (dist.group.WORLD, None, "world"):
        with pytest.raises(InputError, match="no initialised process group"):
            HessianOperator(model, loss_fn, (x, y), process_group=group)
