import json

import pytest

from hessbench.cli import main
from hessbench.compare import _stats, load_runs, run_grid, summarise
from hessbench.seeds import parse_seeds


def test_parse_seeds():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("1,3,7-8") == [1, 3, 7, 8]
    with pytest.raises(ValueError, match="bad seeds"):
        parse_seeds("a-b")


def test_stats_count_never_reached_as_infinite_cost():
    s = _stats([1.0, 2.0, None, 4.0, None])
    assert (s["median"], s["q1"], s["q3"], s["reached"]) == (4.0, 2.0, None, 3)
    assert _stats([1.0, None, None])["median"] is None  # most seeds never got there
    assert _stats([3.0, 4.0])["median"] == 3.5


def test_unknown_names_fail_before_any_run(tmp_path):
    with pytest.raises(KeyError, match="unknown solver"):
        run_grid(["quadratic-small"], ["lanczos", "nope"], [0], tmp_path)
    with pytest.raises(KeyError, match="unknown problem"):
        run_grid(["nope"], ["lanczos"], [0], tmp_path)
    assert not list(tmp_path.iterdir())


def test_compare_end_to_end_writes_runs_and_summary(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "--problems", "quadratic-small", "--solvers", "lanczos", "power",
                 "--seeds", "0-1", "--max-passes", "200", "-o", str(out), "-q"])
    assert code == 0
    runs = load_runs(out)
    assert len(runs) == 4 and {r["seed"] for r in runs} == {0, 1}
    rows = {r["solver"]: r for r in summarise(runs)}
    assert rows["lanczos"]["success"] == 2
    assert rows["lanczos"]["data_passes:both@0.01"]["reached"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert {r["solver"] for r in summary} == {"lanczos", "power"}
    text = (out / "summary.md").read_text()
    assert "**lanczos** (winner)" in text and "| power |" in text
    assert "quadratic-small" in capsys.readouterr().out
