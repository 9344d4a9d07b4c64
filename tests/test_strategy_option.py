"""--strategy of hessbench run / compare: passed to the operator, recorded, checked per backend
before any work, and part of what makes two runs the same run (compare reuses only its own)."""

import json

import pytest

from hessbench.cli import main
from hessbench.compare import RunIdentity
from hessbench.records import read_record

RUN = ["-p", "quadratic-small", "-s", "lanczos", "--threads", "1", "-q"]


def test_run_records_the_strategy_asked_and_used(tmp_path):
    out = tmp_path / "r.json"
    assert main(["run", *RUN, "--strategy", "reverse-over-reverse", "-o", str(out)]) == 0
    record = read_record(out)
    assert record.warmup["strategy_asked"] == record.warmup["strategy"] == "reverse-over-reverse"
    assert RunIdentity.of_record(record).strategy == "reverse-over-reverse"
    assert record.converged


@pytest.mark.parametrize("argv, message", [
    (["--strategy", "linearized"], "unknown strategy 'linearized' for the torch backend"),
    (["--backend", "jax", "--strategy", "compiled"], "for the jax backend; choose one of auto"),
])
def test_a_strategy_the_backend_lacks_is_refused_before_any_work(tmp_path, capsys, argv,
                                                                  message):
    out = tmp_path / "r.json"
    assert main(["run", *RUN, *argv, "-o", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_compare_reuses_only_runs_of_the_same_strategy(tmp_path, capsys):
    grid = ["compare", "--problems", "quadratic-small", "--solvers", "lanczos", "--seeds", "0",
            "--threads", "1", "-q", "-o", str(tmp_path)]
    assert main([*grid, "--strategy", "forward-over-reverse"]) == 0
    assert "0 reused, 1 run" in capsys.readouterr().out
    assert main([*grid, "--strategy", "forward-over-reverse"]) == 0
    assert "1 reused, 0 run" in capsys.readouterr().out
    assert main(grid) == 0  # the default, auto: another run
    assert "0 reused, 1 run" in capsys.readouterr().out
    record = json.loads((tmp_path / "quadratic-small_lanczos_seed0.json").read_text())
    assert record["warmup"]["strategy_asked"] == "auto"
