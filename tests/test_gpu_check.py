"""The prepared GPU check (scripts/gpu_check.sh, scripts/gpu_check.py): its CPU dry run end to
end through the shell wrapper, the wrapper's handling of missing packages, recorded failures
and time limits."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
WRAPPER = SCRIPTS / "gpu_check.sh"
#: the dry run took 2-3.5 min here on 2 shared cores at a load of 6-7 (about 70 s of CPU time);
#: its own time limit is 600 s
TIMEOUT = 900

sys.path.insert(0, str(SCRIPTS))
import gpu_check  # noqa: E402
from gpu_check_solves import first_stop  # noqa: E402


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable, **extra}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """One dry run through the wrapper, hessbench imported through its link tree (as on a
    GPU machine where it is not installed)."""
    out = tmp_path_factory.mktemp("gpu-check") / "x.json"
    proc = subprocess.run(["bash", str(WRAPPER), "--dry-run", "--out", str(out)], cwd=ROOT,
                          env=_env(GPU_CHECK_LINK_TREE="1"), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_dry_run_json_structure(dry_run: tuple[dict[str, Any], str]) -> None:
    report, stdout = dry_run
    assert report["schema"] == gpu_check.SCHEMA and report["dry_run"] is True
    assert report["seed"] == 0 and report["settings"]["device"] == "cpu"
    assert report["settings"]["lanczos"]["stop_tol"] == 0.01
    env = report["environment"]
    assert env["versions"]["torch"] and env["versions"]["numpy"] and env["versions"]["python"]
    assert env["torch_threads"] == 1 and env["gpu_count"] == 0
    assert "hessbench-links" in env["hessbench_from"]  # the wrapper's link tree was used
    assert list(report["sections"]) == [name for name, *_ in gpu_check.PLAN]
    for name, sec in report["sections"].items():
        assert sec["status"] in ("ok", "skipped"), (name, sec.get("reason"), sec.get("log_tail"))
        if sec["status"] == "skipped":
            assert name.endswith("-compiled") and "dry run" in sec["reason"]
        else:
            assert sec["wall_seconds"] > 0 and sec["budget_seconds"] > 0
    assert report["elapsed_seconds"] < report["time_limit_seconds"]
    assert "GPU goal" in stdout and "DRY RUN" in stdout


def test_dry_run_products_agree_with_float64(dry_run: tuple[dict[str, Any], str]) -> None:
    sections = dry_run[0]["sections"]
    torch_checks = sections["agreement-torch"]["figures"]["resnet20"]["checks"]
    assert torch_checks["determinism_probe"]["ok"]
    f32 = torch_checks["float32"]
    assert f32["ok"] and 0 < f32["rel_err"] <= 1e-4 == f32["rtol"]
    assert torch_checks["bf16_product"]["rel_err"] > 10 * f32["rel_err"]  # a coarser product
    jax_checks = sections["agreement-jax"]["figures"]["resnet20"]["checks"]
    assert jax_checks["float32"]["ok"] and 0 < jax_checks["float32"]["rel_err"] <= 1e-4
    assert jax_checks["float64"]["ok"] and jax_checks["float64"]["rel_err"] <= 1e-10


def test_dry_run_timings(dry_run: tuple[dict[str, Any], str]) -> None:
    for model in ("resnet20", "resnet18"):
        fig = dry_run[0]["sections"][f"timing-{model}-eager"]["figures"]
        assert fig["rounds"] >= 1 and fig["gradient_seconds"] > 0
        assert fig["determinism_probe"]["ok"]
        for name in ("forward-over-reverse", "reverse-over-reverse", "auto"):
            entry = fig["strategies"][name]
            ratio = entry["hvp_seconds"] / fig["gradient_seconds"]
            assert math.isclose(entry["hvp_over_gradient"], ratio)
            assert entry["matmat_per_vector"]["4"]["seconds"] > 0
        assert fig["strategies"]["auto"]["setup"]["strategy"] in (
            "forward-over-reverse", "reverse-over-reverse")


def test_dry_run_lanczos_within_tolerance_of_longer_run(
        dry_run: tuple[dict[str, Any], str]) -> None:
    report = dry_run[0]
    run = report["sections"]["lanczos-resnet18"]["figures"]["float32"]
    final, stop = run["final"], run["stop"]
    assert final["status"] == "converged" and stop["reached"]
    assert stop["passes"] < final["data_passes"]  # the longer run went on past the 1% stop
    for end in ("max", "min"):
        ref = final[f"lambda_{end}"]
        assert abs(stop[f"lambda_{end}"] - ref) <= 0.01 * abs(ref)
        assert run["reference"]["relative_residual"][end] <= 1e-4
        assert run["certified"][end]["relative"] <= 1e-3  # explicit ||Hx - theta x|| / |theta|
    assert final["lambda_min"] < 0 < final["lambda_max"]
    goal = report["goal"]["one_gpu"]
    assert goal["within_1pct"] and goal["passes"] == stop["passes"]


def test_dry_run_precision_and_distributed(dry_run: tuple[dict[str, Any], str]) -> None:
    sections = dry_run[0]["sections"]
    prec = sections["precision-resnet18"]["figures"]
    assert prec["tf32"]["status"] == "skipped" and "CUDA" in prec["tf32"]["reason"]
    errors = prec["bf16"]["error_vs_float32"]
    assert all(0 <= e < 0.05 for e in errors.values())
    # two gloo processes, same seed and weights: the single process's 1% stop, step for step
    dist = sections["distributed-resnet18"]["figures"]
    stop = sections["lanczos-resnet18"]["figures"]["float32"]["stop"]
    assert dist["setup"]["processes"] == 2
    assert dist["final"]["data_passes"] == stop["passes"]
    for end in ("max", "min"):
        assert math.isclose(dist["final"][f"lambda_{end}"], stop[f"lambda_{end}"], rel_tol=1e-4)
    assert dry_run[0]["goal"]["several_gpus"]["processes"] == 2


def test_failures_are_recorded_and_later_sections_run(tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    proc = subprocess.run(  # seed -1 is refused by the data generator: the sections fail
        [sys.executable, str(SCRIPTS / "gpu_check.py"), "--dry-run", "--seed", "-1",
         "--only", "environment", "agreement-torch", "timing-resnet20-eager", "--out", str(out)],
        env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sections = json.loads(out.read_text())["sections"]
    assert sections["environment"]["status"] == "ok"
    for name in ("agreement-torch", "timing-resnet20-eager"):
        assert sections[name]["status"] == "failed"
        assert "ValueError" in json.dumps(sections[name]["figures"]) + str(
            sections[name]["reason"])
    assert sections["lanczos-resnet18"]["reason"] == "not asked for (--only)"


def test_time_limits_skip_and_stop_sections(tmp_path: Path, monkeypatch: Any) -> None:
    out = tmp_path / "x.json"
    subprocess.run([sys.executable, str(SCRIPTS / "gpu_check.py"), "--dry-run",
                    "--total-seconds", "10", "--out", str(out)],
                   env=_env(), check=True, capture_output=True, timeout=60)
    for sec in json.loads(out.read_text())["sections"].values():
        assert sec["status"] == "skipped" and sec["reason"]
    monkeypatch.setattr(gpu_check, "GRACE", 0.0)  # a section past its budget is stopped
    cfg = {**gpu_check.DRY, "workdir": str(tmp_path)}
    result = gpu_check.launch("environment", cfg, 0.2, tmp_path)
    assert result["status"] == "failed" and "time limit" in result["reason"]


def test_wrapper_takes_missing_packages_from_wheels(tmp_path: Path) -> None:
    venv = tmp_path / "venv"  # a Python with none of the packages
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "array_api_compat-0-py3-none-any.whl", "w") as whl:
        whl.writestr("array_api_compat/__init__.py", "")
    proc = subprocess.run(["bash", str(WRAPPER), "--dry-run"], cwd=tmp_path,
                          env=_env(PYTHON=str(venv / "bin" / "python"),
                                   GPU_CHECK_WHEELS=str(wheels)),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lacks = proc.stderr.split("lacks:")[1].split(";")[0].split()
    assert "numpy" in lacks and "torch" in lacks and "array_api_compat" not in lacks
    assert "pip download --no-deps" in proc.stderr


def test_first_stop_is_the_first_row_passing_the_rule_at_both_ends() -> None:
    row = lambda lmax, rmax, lmin, rmin: {"lambda_max": lmax, "residual_max": rmax,  # noqa: E731
                                          "lambda_min": lmin, "residual_min": rmin}
    trace = [row(10.0, 0.05, -1.0, 0.5), row(10.0, 0.09, -1.0, 0.011),
             row(10.0, 0.1, -1.0, 0.01), row(10.0, 0.0, -1.0, 0.0)]
    assert first_stop(trace, 0.01) is trace[2]
    assert first_stop(trace[:2], 0.01) is None
    assert first_stop([row(10.0, None, -1.0, 0.0)], 0.01) is None
