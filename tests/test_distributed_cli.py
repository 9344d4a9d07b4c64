"""hessbench's commands over many processes (torchrun) and devices (JAX ``--devices``).

The torchrun tests launch ``python -m torch.distributed.run --nproc-per-node 2 -m hessbench``
(2 gloo processes) and the JAX one a process with 2 CPU devices, each bounded in time; the
records they write are checked against one-process runs of the same command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hessbench.cli import main
from hessbench.compare import RunIdentity
from hessbench.distributed import shard_rows, torchrun_environment
from hessbench.errors import InputError
from hessbench.records import read_record

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(args: list[str], cwd, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "hessbench", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_torchrun_run_writes_one_record_of_two_processes(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = torchrun(["run", "-p", "quadratic-small", "-s", "lanczos", "-o", "out/run.json",
                     "-q"], cwd=tmp_path)
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]
    assert proc.stdout.count("wrote ") == 1  # rank 0 alone reports
    two = read_record(out / "run.json")
    assert (two.processes, two.devices) == (2, 2)
    assert "x 2 processes (gloo)" in two.device
    assert main(["run", "-p", "quadratic-small", "-s", "lanczos", "-o",
                 str(tmp_path / "one.json"), "-q"]) == 0
    one = read_record(tmp_path / "one.json")
    assert (one.processes, one.devices) == (1, 1)
    assert two.status == one.status == "converged"
    assert two.hvp_calls == one.hvp_calls
    assert two.lambda_max == pytest.approx(one.lambda_max, rel=1e-10)
    assert two.lambda_min == pytest.approx(one.lambda_min, rel=1e-8)


def test_torchrun_compare_writes_each_record_once_and_resumes(tmp_path):
    args = ["compare", "--problems", "quadratic-small", "--solvers", "lanczos", "--seeds",
            "0-1", "--max-hvps", "100", "-o", "grid", "-q"]
    first = torchrun(args, cwd=tmp_path)
    grid = tmp_path / "grid"
    records = sorted(grid.glob("quadratic-small_*.json"))
    assert [p.name for p in records] == ["quadratic-small_lanczos_seed0.json",
                                         "quadratic-small_lanczos_seed1.json"]
    assert all(read_record(p).processes == 2 for p in records)
    assert "2 runs: 0 reused, 2 run" in first.stdout
    assert first.stdout.count("runs:") == 1  # rank 0 alone writes the summary
    assert "2 runs: 2 reused, 0 run" in torchrun(args, cwd=tmp_path).stdout
    summary = json.loads((grid / "summary.json").read_text())
    assert summary  # written once, readable


def test_jax_devices_run_records_two_devices(tmp_path):
    env = {**ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = tmp_path / "jax.json"
    proc = subprocess.run([sys.executable, "-m", "hessbench", "run", "-p", "quadratic-small",
                           "-s", "lanczos", "--backend", "jax", "--devices", "2", "-o",
                           str(out), "-q"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = read_record(out)
    assert (r.processes, r.devices, r.status) == (1, 2, "converged")
    assert r.device.startswith("cpu x 2 devices")
    assert r.errors.rel_error_max < 1e-6 and r.errors.rel_error_min < 1e-3


def test_devices_errors_name_the_fix(tmp_path, capsys):
    out = str(tmp_path / "x.json")
    assert main(["run", "-p", "quadratic-small", "-s", "lanczos", "--devices", "2",
                 "-o", out]) == 2
    assert "torchrun --nproc-per-node K" in capsys.readouterr().err
    assert main(["run", "-p", "quadratic-small", "-s", "lanczos", "--backend", "jax",
                 "--devices", "64", "-o", out]) == 2
    err = capsys.readouterr().err
    assert "devices=64" in err and "xla_force_host_platform_device_count" in err
    with pytest.raises(SystemExit):
        main(["run", "-p", "quadratic-small", "-s", "lanczos", "--devices", "0", "-o", out])
    assert "positive number of devices" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_torchrun_environment():
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h"}
    launch = torchrun_environment(env)
    assert (launch.rank, launch.world_size, launch.local_rank) == (1, 2, 1)
    assert torchrun_environment({**env, "WORLD_SIZE": "1", "RANK": "0"}) is None
    assert torchrun_environment({}) is None
    with pytest.raises(InputError, match="malformed"):
        torchrun_environment({**env, "RANK": "one"})


@pytest.mark.parametrize("n,world", [(1797, 2), (10, 3), (2, 3), (7, 1)])
def test_shard_rows_cover_the_samples_in_order_once(n, world):
    shards = [shard_rows(n, r, world) for r in range(world)]
    rows = [i for s in shards for i in range(n)[s]]
    assert rows == list(range(n))
    sizes = [len(range(n)[s]) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_run_identity_tells_parallel_runs_apart(tmp_path):
    assert main(["run", "-p", "quadratic-small", "-s", "lanczos", "--max-hvps", "5", "-o",
                 str(tmp_path / "r.json"), "-q"]) == 0
    record = read_record(tmp_path / "r.json")
    one = RunIdentity.of_record(record)
    record.processes = record.devices = 2
    assert RunIdentity.of_record(record) != one  # a 2-process run is not reused for 1
