"""scripts/convert_run_records.py: version-1 run records (untyped dicts) become typed ones."""

import importlib.util
import json
from pathlib import Path

import pytest

from hessbench.records import RecordError, load_runs, read_record

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "convert_run_records.py"
spec = importlib.util.spec_from_file_location("convert_run_records", SCRIPT)
convert_run_records = importlib.util.module_from_spec(spec)
spec.loader.exec_module(convert_run_records)

V1 = {  # the shape hessbench 0.1's runner wrote
    "problem": "quadratic-small", "problem_description": "d", "problem_config": {"n": 200},
    "problem_key": "abc", "synthetic": True, "solver": "lanczos",
    "solver_options": {"tol": 0.001}, "backend": "torch", "seed": 3, "which": "both",
    "budget": {"max_passes": 40.0}, "dtype": "float64", "device": "cpu", "parameters": 200,
    "num_samples": 1000, "host": "h", "platform": "p", "versions": {"torch": "2.13.0"},
    "command": "/usr/bin/hessbench compare --problems quadratic-small --solvers lanczos",
    "lambda_max": 100.0, "lambda_min": -0.49, "converged": True, "status": "converged",
    "message": "ok", "data_passes": 2.0, "hvp_calls": 2, "seconds": 0.5,
    "residual_max": 0.1, "residual_min": 0.2,
    "reference": {"lambda_max": 100.0, "lambda_min": -0.5, "method": "exact"},
    "errors": {"rel_error_max": 0.0, "rel_error_min": 0.02, "scaled_error_max": 0.0,
               "scaled_error_min": 1e-4},
    "cost_to_eps": {"max@0.1": {"data_passes": 1.0, "seconds": 0.2, "hvp_calls": 1},
                    "min@0.1": {"data_passes": 2.0, "seconds": 0.5, "hvp_calls": 2},
                    "both@0.1": {"data_passes": 2.0, "seconds": 0.5, "hvp_calls": 2},
                    "max@0.01": {"data_passes": 1.0, "seconds": 0.2, "hvp_calls": 1},
                    "min@0.01": None, "both@0.01": None},
    "trace": [{"step": 1, "seconds": 0.2, "data_passes": 1.0, "hvp_calls": 1,
               "lambda_max": 99.0, "lambda_min": 1.0, "residual_max": 1.0,
               "residual_min": 1.0},
              {"step": 2, "seconds": 0.5, "data_passes": 2.0, "hvp_calls": 2,
               "lambda_max": 100.0, "lambda_min": -0.49, "residual_max": 0.1,
               "residual_min": 0.2}],
}
V1_ERROR = {"problem": "quadratic-small", "solver": "power", "seed": 0, "status": "error",
            "message": "RuntimeError: boom", "traceback": "Traceback ..."}


def test_version_1_records_are_refused_with_a_hint(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(V1))
    with pytest.raises(RecordError, match="convert_run_records"):
        read_record(tmp_path / "a.json")
    with pytest.raises(RecordError, match="a.json"):
        load_runs(tmp_path)


def test_conversion_keeps_every_value_and_fills_effective_options(tmp_path, capsys):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    (old / "q_lanczos_seed3.json").write_text(json.dumps(V1))
    (old / "q_power_seed0.json").write_text(json.dumps(V1_ERROR))
    (old / "throughput.json").write_text("[]")
    (old / "summary.json").write_text("[]")
    assert convert_run_records.main([str(old), str(new)]) == 0
    assert "converted 2 run record(s), copied 1" in capsys.readouterr().out
    assert sorted(p.name for p in new.iterdir()) == [
        "q_lanczos_seed3.json", "q_power_seed0.json", "throughput.json"]
    runs = {r.solver: r for r in load_runs(new)}
    r = runs["lanczos"]
    assert r.solver_options == {"tol": 0.001, "max_steps": 500}
    assert r.command[:2] == ["hessbench", "compare"] and r.threads is None
    assert (r.lambda_min, r.data_passes, r.reference.method) == (-0.49, 2.0, "exact")
    assert r.errors.rel_error_min == 0.02 and r.trace[1].lambda_min == -0.49
    assert r.cost("min", 0.1).data_passes == 2.0 and not r.cost("both", 0.01).reached
    assert r.cost("max", 0.01).hvp_calls == 1
    e = runs["power"]
    assert e.raised and e.message == "RuntimeError: boom" and e.traceback == "Traceback ..."
    with pytest.raises(SystemExit):
        convert_run_records.main([str(old), str(old)])
    with pytest.raises(SystemExit):
        convert_run_records.main([str(tmp_path / "missing"), str(tmp_path / "out")])
    assert "is not a folder" in capsys.readouterr().err
