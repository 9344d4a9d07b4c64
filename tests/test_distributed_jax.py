"""The sharded JAX operator on 2 CPU devices equals the one-device operator and a dense Hessian.

Each test runs ``tests/jax_devices_worker.py`` in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (the flag must be set before JAX is
imported, so not in this process), bounded by a timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")

WORKER = Path(__file__).with_name("jax_devices_worker.py")


def run_worker(scenario: str, tmp_path: Path, timeout: float = 300) -> dict:
    out = tmp_path / f"{scenario}.json"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(WORKER), scenario, str(out)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert "error" not in result, result["error"]
    return result


def test_two_devices_equal_one_device_with_an_odd_number_of_samples(tmp_path):
    r = run_worker("products", tmp_path)
    assert r["type"] == "HessianOperator"
    assert r["device"].startswith("cpu x 2 devices")
    assert r["counts"] == [1, 2, 1]  # processes, devices (sharded), devices (one)
    assert r["layout"][0] == 899  # 1,797 samples: 899 + 898 and one zero-weight padding row
    assert r["full"] < 1e-12 and r["mini"] < 1e-12 and r["block"] < 1e-12
    assert r["mini_traces"] == 1  # only the block width compiled anew; mini-batches reuse B'
    assert r["meters"][0] == r["meters"][1]  # the same samples and calls charged
    one, two = r["one"], r["two"]
    assert two[0] == pytest.approx(one[0], rel=1e-10)
    assert two[1] == pytest.approx(one[1], rel=1e-10)
    assert two[2:] == one[2:] and one[4] == "converged"  # HVP count, data passes, status
    assert r["float32"] < 1e-4


def test_conformance_kit_passes_on_two_devices(tmp_path):
    r = run_worker("conformance", tmp_path)
    assert r["ok"] is True
    assert r["small"] < 1e-12  # 3 samples over 2 devices: device 1 mostly padding


def test_bad_devices_are_clear_errors(tmp_path):
    r = run_worker("bad-input", tmp_path, timeout=120)
    assert "devices=3, but JAX has 2 cpu device(s)" in r["three"]
    assert "xla_force_host_platform_device_count" in r["three"]
    assert "JAX has 2" in r["zero"]
    assert "got 'some'" in r["word"]
    assert "twice" in r["twice"]
    assert "non-empty" in r["empty"]
