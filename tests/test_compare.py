import csv
import json

import pytest

from hessbench.cli import main
from hessbench.compare import run_grid, summary_rows
from hessbench.long_table import COLUMNS, long_table, read_csv
from hessbench.records import load_runs
from hessbench.seeds import parse_seeds
from hessbench.summary import cost_stats, winner


def test_parse_seeds():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("1,3,7-8") == [1, 3, 7, 8]
    with pytest.raises(ValueError, match="bad seeds"):
        parse_seeds("a-b")


def test_stats_count_never_reached_as_infinite_cost():
    s = cost_stats([1.0, 2.0, None, 4.0, None])
    assert (s.median, s.q1, s.q3, s.reached) == (4.0, 2.0, None, 3)
    assert cost_stats([1.0, None, None]).median is None  # most seeds never got there
    assert cost_stats([3.0, 4.0]).median == 3.5


def test_unknown_names_fail_before_any_run(tmp_path):
    with pytest.raises(KeyError, match="unknown solver"):
        run_grid(["quadratic-small"], ["lanczos", "nope"], [0], tmp_path)
    with pytest.raises(KeyError, match="unknown problem"):
        run_grid(["nope"], ["lanczos"], [0], tmp_path)
    with pytest.raises(KeyError, match="unknown backend 'tf'"):
        run_grid(["quadratic-small"], ["lanczos"], [0], tmp_path, backend="tf")
    assert not list(tmp_path.iterdir())


def test_compare_end_to_end_writes_runs_summary_and_long_table(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--problems", "quadratic-small", "--solvers", "lanczos", "power",
            "--seeds", "0-1", "--max-passes", "200", "-o", str(out), "-q"]
    assert main(argv) == 0
    runs = load_runs(out)
    assert len(runs) == 4 and {r.seed for r in runs} == {0, 1}
    assert all(r.command == ["hessbench", *argv] for r in runs)
    # effective options, defaults included, and the backend as its own field
    lanczos = next(r for r in runs if r.solver == "lanczos")
    assert lanczos.solver_options == {"tol": 1e-3, "max_steps": 500}
    assert lanczos.backend == "torch" and lanczos.threads >= 1
    rows = {r.solver: r for r in summary_rows(runs)}
    assert rows["lanczos"].success == 2
    assert rows["lanczos"].stats("data_passes", "both", 0.01).reached == 2
    assert winner(rows.values()) == "lanczos"
    summary = json.loads((out / "summary.json").read_text())
    assert {r["solver"] for r in summary} == {"lanczos", "power"}
    text = (out / "summary.md").read_text()
    assert "**lanczos** (winner)" in text and "| power |" in text
    assert "quadratic-small" in capsys.readouterr().out
    # the long table: one row per run x end x eps, equal to the one computed from the records
    with (out / "results.csv").open() as fh:
        lines = list(csv.reader(fh))
    assert tuple(lines[0]) == COLUMNS and len(lines) == 1 + 4 * 3 * 2
    assert read_csv(out / "results.csv") == long_table(runs)


def test_long_table_rows_match_the_records(tmp_path):
    runs = run_grid(["quadratic-small"], ["lanczos"], [0], tmp_path, progress=False,
                    budget={"max_passes": 200}, which="max")
    (run,) = runs
    rows = long_table(runs)
    assert [(r.end, r.eps) for r in rows] == [(e, eps) for eps in (0.1, 0.01)
                                              for e in ("max", "min", "both")]
    by = {(r.end, r.eps): r for r in rows}
    for (end, eps), row in by.items():
        assert row.data_passes == run.cost(end, eps).data_passes
        assert row.seconds == run.cost(end, eps).seconds
    # which="max": lambda_min was not asked, so its answer is None and its success False; the
    # self-stopped success on "both" means every asked end (lambda_max alone)
    assert by[("min", 0.01)].self_stopped_error is None and not by[("min", 0.01)].success
    assert by[("both", 0.01)].success and by[("max", 0.01)].success
    assert by[("max", 0.01)].self_stopped_error == run.errors.rel_error_max


def test_a_run_that_raises_is_recorded_and_the_grid_goes_on(tmp_path, monkeypatch):
    import hessbench.compare as compare

    real = compare.run_one

    def flaky(problem, solver, **kw):
        if solver == "power":
            raise RuntimeError("boom")
        return real(problem, solver, **kw)

    monkeypatch.setattr(compare, "run_one", flaky)
    runs = run_grid(["quadratic-small"], ["power", "lanczos"], [0], tmp_path, progress=False,
                    budget={"max_passes": 100})
    assert [r.status for r in runs][0] == "error" and runs[1].status == "converged"
    loaded = {r.solver: r for r in load_runs(tmp_path)}
    assert loaded["power"].message == "RuntimeError: boom" and "boom" in loaded["power"].traceback
    rows = {r.solver: r for r in summary_rows(loaded.values())}
    assert rows["power"].errors == 1 and rows["power"].success == 0
    assert rows["power"].stats("data_passes", "both", 0.01).runs == 0
