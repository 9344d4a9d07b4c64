import json

import pytest

from hessbench.cli import main
from hessbench.records import read_record

REQUIRED = {"problem", "solver", "backend", "seed", "device", "dtype", "versions", "lambda_max",
            "lambda_min", "data_passes", "hvp_calls", "seconds", "converged", "reference",
            "errors", "trace", "problem_config", "cost_to_eps", "threads", "schema_version",
            "solver_options", "command"}


def test_run_writes_a_complete_json_record(tmp_path, capsys):
    out = tmp_path / "run.json"
    code = main(["run", "-p", "quadratic-small", "-s", "lanczos", "--seed", "2", "--tol", "1e-6",
                 "--max-passes", "500", "-o", str(out), "-q"])
    assert code == 0
    record = json.loads(out.read_text())
    assert REQUIRED <= set(record)
    assert record["reference"] == {"lambda_max": 100.0, "lambda_min": -0.5, "method": "exact"}
    assert record["converged"] and record["errors"]["rel_error_min"] < 1e-4
    assert record["seed"] == 2 and record["budget"] == {"max_passes": 500.0}
    assert record["versions"]["torch"] and record["dtype"] == "float64"
    assert len(record["trace"]) == record["hvp_calls"]
    both = [c for c in record["cost_to_eps"] if (c["end"], c["eps"]) == ("both", 0.01)]
    assert both[0]["data_passes"] <= record["data_passes"]
    assert record["schema_version"] == 2 and record["threads"] >= 1
    assert record["solver_options"] == {"tol": 1e-6, "max_steps": 500}  # defaults included
    assert record["command"][:2] == ["hessbench", "run"] and "--tol" in record["command"]
    assert read_record(out).to_json() == record  # the typed record round-trips
    assert "quadratic-small" in capsys.readouterr().out


def test_listing_commands(capsys):
    assert main(["solvers"]) == 0 and "lanczos" in capsys.readouterr().out
    assert main(["problems"]) == 0 and "digits-mlp" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["run", "-p", "quadratic-small", "-s", "nope", "-o", "x.json"], "unknown solver 'nope'"),
    (["run", "-p", "nope", "-s", "lanczos", "-o", "x.json"], "unknown problem 'nope'"),
    (["run", "-p", "quadratic-small", "-s", "lanczos", "--problem-option", "depth=2", "-o",
      "x.json"], "no option"),
    (["run", "-p", "quadratic-small", "-s", "lanczos", "--backend", "tf", "-o", "x.json"],
     "unknown backend 'tf'"),
])
def test_clear_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_an_unknown_backend_fails_before_the_reference_is_computed(monkeypatch):
    import hessbench.runner as runner
    from hessbench.backends import UnknownBackendError

    def no_reference(*args, **kwargs):
        raise AssertionError("the reference was computed before the backend was checked")

    monkeypatch.setattr(runner, "compute_reference", no_reference)
    with pytest.raises(UnknownBackendError, match="unknown backend 'tf'; available: torch, jax"):
        runner.run_one("digits-cnn", "lanczos", backend="tf", progress=False)
