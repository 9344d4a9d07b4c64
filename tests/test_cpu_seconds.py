"""scripts/cpu_seconds.py on a tiny quadratic: the report's rows against the run records, the
success rule against the exact spectrum, and block studies rendered from their JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load(name):
    sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("one_torch_thread")
def test_report_of_two_seeds_and_a_block_study(tmp_path, monkeypatch):
    monkeypatch.setenv("HESSBENCH_CACHE", str(tmp_path / "cache"))
    script = load("cpu_seconds")
    out, runs = tmp_path / "report", tmp_path / "runs"
    out.mkdir()
    study = {"settings": {"tol": 1e-3, "dtype": "float32", "seeds": 2, "threads": 1,
                          "batch_size": 128, "strategy": "forward-over-reverse",
                          "load_before": [1, 1, 1], "load_after": [1, 1, 1]},
             "problems": {"toy": {"matvec_seconds": 0.01, "per_vector": {"1": 1.0, "4": 0.4},
                                  "solvers": {"lanczos": {
                                      "seconds": {"median": 1.0, "q1": 0.9, "q3": 1.1},
                                      "data_passes": {"median": 40, "q1": 38, "q3": 44},
                                      "seconds_vs_lanczos": 1.0, "success": 2,
                                      "runs_total": 2, "options": {}}}}}}
    (out / "block_study_toy.json").write_text(json.dumps(study))
    (out / "findings.md").write_text("**Findings.** lanczos wins.\n")
    assert script.main(["--problems", "quadratic-small", "--solvers", "lanczos", "--seeds", "0-1",
                        "--runs", str(runs), "--out", str(out), "--no-ratios"]) == 0
    data = json.loads((out / "data.json").read_text())
    row = data["rows"]["quadratic-small/lanczos"]
    assert row["runs"] == 2 and row["success_rate"] == 1.0  # exact spectrum, tol 1e-3
    records = [json.loads(f.read_text()) for f in runs.glob("*.json")
               if f.name != "summary.json"]
    seconds = sorted(r["seconds"] for r in records if r.get("seconds") is not None)
    assert len(seconds) == 2 and row["seconds_q1"] <= row["seconds_median"] <= row["seconds_q3"]
    assert row["seconds_median"] == pytest.approx(sum(seconds) / 2)
    text = (out / "README.md").read_text()
    assert text.startswith("# Seconds to both ends within 1% on this CPU\n\n"
                           "**Findings.** lanczos wins.\n\nMachine: ")
    assert "| quadratic-small | lanczos |" in text and "100%" in text
    assert "## Block solvers: chunks of 128, strategy forward-over-reverse" in text
    assert "| lanczos | 1 [0.9-1.1] | 1.00 |" in text
    # rebuilt from the records, the setting of the runs is kept
    assert script.main(["--problems", "quadratic-small", "--solvers", "lanczos", "--runs",
                        str(runs), "--out", str(out), "--no-ratios", "--skip-runs"]) == 0
    assert json.loads((out / "data.json").read_text())["meta"] == data["meta"]
