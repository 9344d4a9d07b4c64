"""scripts/scaling.py end to end: 1 and 2 gloo processes on a cut of digits-mlp."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "scaling.py"
DIGITS_MLP_PARAMETERS = 5_962


def run_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_torch_one_and_two_processes(tmp_path):
    out = tmp_path / "scaling.json"
    proc = run_script("--problems", "digits-mlp", "--backends", "torch", "--processes", "1,2",
                      "--samples", "301", "--repeats", "2", "--comm-repeats", "3",
                      "--timeout", "100", "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| digits-mlp (N=301) | torch | 2 processes |" in proc.stdout
    record = json.loads(out.read_text())
    for key in ("command", "versions", "host", "cpu_count", "dtype", "threads_per_process",
                "seed", "repeats", "problems", "results"):
        assert key in record, key
    assert record["dtype"] == "float32" and record["threads_per_process"] == 1
    assert "torch" in record["versions"] and "hessbench" in record["versions"]
    assert record["problems"]["digits-mlp"]["config"]["model"] == "mlp-64-48-48-10"
    rows = {r["workers"]: r for r in record["results"]}
    assert sorted(rows) == [1, 2]
    for k, r in rows.items():
        assert (r["problem"], r["backend"], r["unit"]) == ("digits-mlp", "torch", "processes")
        assert r["parameters"] == DIGITS_MLP_PARAMETERS and r["num_samples"] == 301
        assert r["samples_per_second"] > 0 and r["product_seconds"]["median"] > 0
        assert r["samples_per_second"] == pytest.approx(301 / r["product_seconds"]["median"])
        assert r["efficiency"] == pytest.approx(r["speedup"] / k)
    assert rows[1]["speedup"] == 1 and rows[1]["bytes_allreduced"] == 0
    assert rows[1]["comm_fraction"] == 0
    two = rows[2]
    assert two["bytes_allreduced"] == DIGITS_MLP_PARAMETERS * 4  # float32
    assert "2 processes (gloo)" in two["device"]
    assert two["allreduce_seconds"]["median"] > 0 and 0 < two["comm_fraction"]
    assert two["comm_fraction"] == pytest.approx(
        two["allreduce_seconds"]["median"] / two["product_seconds"]["median"])


def test_a_failing_rank_fails_the_launch_quickly(tmp_path):
    """One sample over 2 processes leaves rank 1 empty: every rank raises, the script exits
    non-zero well before its timeout and writes nothing."""
    out = tmp_path / "scaling.json"
    proc = run_script("--problems", "digits-mlp", "--backends", "torch", "--processes", "2",
                      "--samples", "1", "--timeout", "100", "-o", str(out))
    assert proc.returncode != 0
    assert "hold no samples" in proc.stderr and "exited with" in proc.stderr
    assert not out.exists()


def test_jax_one_and_two_devices(tmp_path):
    """K host devices (the script sets XLA_FLAGS for its JAX subprocess): one psum of the
    parameters per product, however many chunks each device's rows take."""
    pytest.importorskip("jax")
    pytest.importorskip("hessbench.backends.jax_sharded")
    out = tmp_path / "scaling.json"
    proc = run_script("--problems", "digits-mlp", "--backends", "jax", "--devices", "1,2",
                      "--samples", "301", "--batch-size", "100", "--repeats", "2",
                      "--comm-repeats", "3", "--timeout", "100", "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["workers"]: r for r in json.loads(out.read_text())["results"]}
    assert sorted(rows) == [1, 2]
    assert all(r["backend"] == "jax" and r["samples_per_second"] > 0 for r in rows.values())
    assert rows[1]["bytes_allreduced"] == 0 and rows[1]["speedup"] == 1
    two = rows[2]
    assert "x 2 devices" in two["device"]
    assert two["allreduces_per_product"] == 1  # 151 rows per device: 2 chunks, one psum
    assert two["bytes_allreduced"] == DIGITS_MLP_PARAMETERS * 4
    assert 0 < two["allreduce_seconds"]["median"] and 0 < two["comm_fraction"]
