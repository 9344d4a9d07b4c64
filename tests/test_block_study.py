"""scripts/block_study.py on a tiny quadratic with an exactly known spectrum: the JSON's
structure, its accounting, and answers within tolerance of the exact ends."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from hessbench import problems

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "block_study.py"
OPTIONS = ["--problem-option", "n=64", "--problem-option", "num_samples=50"]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("block_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_study_structure_and_answers(script, tmp_path, one_torch_thread):
    out = tmp_path / "study.json"
    configs = ["lanczos", "block-lanczos-auto", "block-lanczos-2", "lobpcg"]
    script.main(["--problems", "quadratic-small", *OPTIONS, "--seeds", "2", "--repeats", "2",
                 "--configs", *configs, "-o", str(out)])
    result = json.loads(out.read_text())
    assert result["settings"]["threads"] == 1 and result["settings"]["seeds"] == 2
    assert len(result["settings"]["load_before"]) == 3
    exact = problems.get("quadratic-small", n=64, num_samples=50).exact_reference()
    res = result["problems"]["quadratic-small"]
    assert res["reference"]["method"] == "exact" and res["parameters"] == 64
    assert res["reference"]["lambda_min"] == exact["lambda_min"]
    assert set(res["per_vector"]) == {"1", "2", "4", "8"} and res["per_vector"]["1"] == 1.0
    assert res["matvec_seconds"] > 0
    assert list(res["solvers"]) == configs
    for config, s in res["solvers"].items():
        assert s["runs_total"] == 2 and len(s["runs"]) == 2
        for key in ("seconds", "data_passes", "hvp_calls"):
            assert s[key]["q1"] <= s[key]["median"] <= s[key]["q3"]
        for run in s["runs"]:
            # full-data products: one pass per vector, every vector of a block counted
            assert run["data_passes"] == run["hvp_calls"]
            assert run["converged"], (config, run)
            for end in ("max", "min"):
                lam, truth = run[f"lambda_{end}"], exact[f"lambda_{end}"]
                assert abs(lam - truth) <= 1e-2 * abs(truth)
                assert run[f"error_{end}"] == pytest.approx(abs(lam - truth) / abs(truth))
            assert run["success"]
        assert s["success"] == 2
    assert res["solvers"]["lanczos"]["seconds_vs_lanczos"] == 1.0
    auto = res["solvers"]["block-lanczos-auto"]
    assert all(size in (1, 2, 4, 8) for size in auto["chosen_block_sizes"])
    assert all(r["block_choice"]["costs"]["1"] == 1.0 for r in auto["runs"])
    fixed = res["solvers"]["block-lanczos-2"]["runs"]
    assert all(r["hvp_calls"] % 2 == 0 for r in fixed)


def test_markdown_lists_every_configuration(script):
    runs = [{"seed": 0, "seconds": 2.0, "data_passes": 10.0, "hvp_calls": 10, "success": True}]
    rows = {"lanczos": runs, "block-lanczos-4": [{**runs[0], "seconds": 1.0}]}
    summary = script.summarise(rows)
    assert summary["block-lanczos-4"]["seconds_vs_lanczos"] == 0.5
    result = {"settings": {"tol": 1e-3, "dtype": "float32", "seeds": 1, "threads": 1,
                           "load_before": [1, 1, 1], "load_after": [1, 1, 1]},
              "problems": {"p": {"matvec_seconds": 0.01, "per_vector": {"1": 1.0, "4": 0.4},
                                 "solvers": summary}}}
    text = script.markdown(result)
    assert "| block-lanczos-4 | 1 [1-1] | 0.50 |" in text and "4: 0.40" in text
    assert np.isclose(summary["lanczos"]["seconds"]["median"], 2.0)
