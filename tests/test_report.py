"""The report builder (``hessbench report``) on a small generated grid of run records."""

import base64
import json
import re
import struct

import pytest

pytest.importorskip("matplotlib")

from hessbench.cli import main  # noqa: E402
from hessbench.long_table import long_table, read_csv  # noqa: E402
from hessbench.records import RunRecord, load_runs  # noqa: E402
from hessbench.report import build_report, load_asv_results  # noqa: E402
from hessbench.runner import run_one  # noqa: E402

SOLVERS = ("lanczos", "power")
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, _cache):
    """quadratic-small x {lanczos, power} x 2 seeds (60 data passes at most), one run that
    raised (as ``hessbench compare`` records it) and a throughput.json."""
    out = tmp_path_factory.mktemp("runs")
    for solver in SOLVERS:
        for seed in SEEDS:
            record = run_one("quadratic-small", solver, seed=seed,
                             budget={"max_passes": 60}, progress=False)
            record.write(out / f"quadratic-small_{solver}_seed{seed}.json")
    RunRecord(problem="quadratic-small", solver="broken", seed=0, status="error",
              message="RuntimeError: <boom>", traceback="...").write(
        out / "quadratic-small_broken_seed0.json")
    (out / "throughput.json").write_text(json.dumps([
        {"problem": "digits-mlp", "backend": b, "dtype": "float32", "batch_size": bs,
         "samples_per_second": s * bs ** 0.5, "device": "cpu"}
        for b, s in (("torch", 900.0), ("jax", 1500.0)) for bs in (64, 256, 1024)]))
    return out


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_report_writes_readme_html_tables_and_figures(run_dir, tmp_path):
    out = tmp_path / "report"
    written = build_report(run_dir, out)
    readme = (out / "README.md").read_text()
    index = (out / "index.html").read_text()

    # every figure exists, is a real, reasonably large PNG, and is referenced
    names = {"convergence_quadratic-small.png", "data_profile.png", "hvp_throughput.png"}
    assert {p.name for p in written["figures"].values()} == names
    for name in names:
        path = out / "figures" / name
        width, height = _png_size(path)
        assert path.stat().st_size > 10_000 and width >= 800 and height >= 400
        assert f"](figures/{name})" in readme
    # the HTML is self-contained: one embedded PNG per figure, no external images
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', index)
    assert len(embedded) == len(names)
    assert all(base64.b64decode(e)[:4] == b"\x89PNG" for e in embedded)
    assert "figures/" not in index

    # setup: reference eigenvalues and method, budget, seeds, versions, reproduce command
    assert "| quadratic-small |" in readme and "| 100 | -0.5 | exact |" in readme
    assert '{"max_passes": 60}' in readme and "| seeds | 0, 1 |" in readme
    assert "torch 2." in readme and "hessbench report" in readme
    assert "hessbench compare --problems quadratic-small --solvers lanczos power broken " \
           f"--seeds 0-1 --max-passes 60 -o {run_dir}" in readme

    # tables: one row per solver, the winner marked (lanczos reaches 1% on both ends; power
    # never finds lambda_min in 40 passes), the failed run listed
    assert readme.count("| **lanczos** (winner) |") == 3  # passes, seconds, self-stopped
    assert re.search(r"\n\| power \| [\d.]+ \[.*\] / never \(0/2\) / never \(0/2\) \|", readme)
    assert "| power | 0/2 | 0% |" in readme and "| **lanczos** (winner) | 2/2 | 100% |" in readme
    assert "| quadratic-small | broken | 0 | RuntimeError: <boom> |" in readme
    assert "RuntimeError: &lt;boom&gt;" in index and "<boom>" not in index  # escaped
    # effective solver options (defaults included) are listed
    assert "`lanczos`: `{\"max_steps\": 500, \"tol\": 0.001}`" in readme
    # the long table ships as CSV and equals the one computed from the records
    assert written["csv"] == out / "results.csv"
    assert read_csv(out / "results.csv") == long_table(load_runs(run_dir))
    assert '<tr class="winner"><td><strong>lanczos</strong> (winner)</td>' in index
    assert index.count("<table>") == readme.count("\n|---")  # every table, in HTML too
    # throughput table
    assert "| digits-mlp | jax | float32 | 1024 |" in readme

    rows = json.loads((out / "summary.json").read_text())
    assert {r["solver"] for r in rows} == {"lanczos", "power", "broken"}

    # the untimed warm-ups are shown apart from the seconds: median over seeds per solver
    runs = [r for r in load_runs(run_dir) if not r.raised]
    for row in rows:
        warm = sorted(r.warmup["seconds"] for r in runs if r.solver == row["solver"])
        assert row["median_warmup_seconds"] == (sum(warm) / 2 if warm else None)
        if warm:
            assert f"| {row['median_warmup_seconds']:.3g} |" in readme
    assert readme.count("warm-up s (median)") == 2  # the passes and the seconds tables


def test_runs_of_two_backends_are_summarised_apart(run_dir, tmp_path):
    """Records of the same problem on torch and JAX: one group per backend (registry order),
    each with its own winner, convergence figure and problem row; nothing merged."""
    import dataclasses

    src = tmp_path / "runs"
    for run in load_runs(run_dir):
        if not run.raised:
            run.write(src / f"torch_{run.solver}_{run.seed}.json")
            dataclasses.replace(run, backend="jax", lambda_min=None).write(
                src / f"jax_{run.solver}_{run.seed}.json")
    written = build_report(src, tmp_path / "report")
    readme = (tmp_path / "report" / "README.md").read_text()
    assert {p.name for p in written["figures"].values()} == {
        "convergence_quadratic-small_torch.png", "convergence_quadratic-small_jax.png",
        "data_profile.png"}
    assert readme.index("#### quadratic-small [torch]") < readme.index("#### quadratic-small [jax]")
    assert readme.count("| **lanczos** (winner) |") == 6  # 3 tables x 2 backends
    assert "- quadratic-small [torch]: **lanczos**" in readme
    assert "| quadratic-small [jax] |" in readme and "| quadratic-small [torch] |" in readme
    rows = [(r.backend, r.solver) for r in written["rows"]]
    assert rows == [("torch", "lanczos"), ("torch", "power"), ("jax", "lanczos"), ("jax", "power")]


def test_report_without_throughput_skips_that_figure(run_dir, tmp_path):
    src = tmp_path / "runs"
    src.mkdir()
    for path in run_dir.glob("quadratic-small_*.json"):
        (src / path.name).write_text(path.read_text())
    written = build_report(src, tmp_path / "report")
    assert "throughput" not in written["figures"]
    assert not (tmp_path / "report" / "figures" / "hvp_throughput.png").exists()
    assert "HVP throughput" not in (tmp_path / "report" / "README.md").read_text()


def test_throughput_object_form_and_its_command_are_reported(run_dir, tmp_path):
    """throughput.json as written by scripts/hvp_throughput.py --json: {"results": [...],
    "command": ...}; the measurements are tabulated and the command is listed to reproduce."""
    src = tmp_path / "runs"
    src.mkdir()
    for path in run_dir.glob("quadratic-small_*.json"):
        (src / path.name).write_text(path.read_text())
    rows = json.loads((run_dir / "throughput.json").read_text())
    command = "python3 scripts/hvp_throughput.py --json runs/throughput.json"
    (src / "throughput.json").write_text(json.dumps({"results": rows, "command": command}))
    written = build_report(src, tmp_path / "report")
    readme = (tmp_path / "report" / "README.md").read_text()
    assert "throughput" in written["figures"]
    assert command in readme.split("### Reproduce", 1)[1].split("## Results", 1)[0]
    assert "| digits-mlp | jax | float32 | 1024 |" in readme


def test_cli_report(run_dir, tmp_path, capsys):
    out = tmp_path / "cli-report"
    assert main(["report", str(run_dir), "--output", str(out)]) == 0
    assert (out / "README.md").exists() and (out / "index.html").exists()
    assert "wrote" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "empty"), "--output", str(out)]) == 2
    assert "no run records" in capsys.readouterr().err


def test_report_folds_in_asv_results(run_dir, tmp_path):
    asv_results = pytest.importorskip("asv.results")
    from asv import util
    from asv.runner import BenchmarkResult

    folder = tmp_path / "asv" / "testbox"
    folder.mkdir(parents=True)
    util.write_json(str(folder / "machine.json"), {"machine": "testbox"}, api_version=1)
    benchmarks = {
        "bench_accuracy.Accuracy.track_passes_to_1pct_both": {
            "name": "bench_accuracy.Accuracy.track_passes_to_1pct_both", "type": "track",
            "unit": "data passes", "version": "1", "param_names": ["backend", "solver"],
            "params": [["'torch'", "'jax'"], ["'lanczos'", "'power'"]]},
        "bench_time.HVP.time_hvp": {
            "name": "bench_time.HVP.time_hvp", "type": "time", "unit": "seconds",
            "version": "1", "param_names": ["backend"], "params": [["'torch'", "'jax'"]]},
    }
    util.write_json(str(tmp_path / "asv" / "benchmarks.json"), benchmarks, api_version=2)
    res = asv_results.Results({"machine": "testbox", "python": "3.11"}, {}, "a" * 40,
                              1_700_000_000_000, "3.11", "existing-py", {})
    values = {"bench_accuracy.Accuracy.track_passes_to_1pct_both": [23.0, float("nan"),
                                                                      None, 31.0],
              "bench_time.HVP.time_hvp": [0.0125, 0.0021]}
    for name, vals in values.items():
        res.add_result(benchmarks[name], BenchmarkResult(
            result=vals, samples=[None] * len(vals), number=[None] * len(vals), errcode=0,
            stderr="", profile=None))
    res.save(str(tmp_path / "asv"))

    rows = load_asv_results(tmp_path / "asv")
    got = {(r["benchmark"].rsplit(".", 1)[1], tuple(r["params"].values())): r["value"]
           for r in rows}
    assert got[("track_passes_to_1pct_both", ("torch", "lanczos"))] == 23.0
    assert got[("time_hvp", ("jax",))] == 0.0021

    out = tmp_path / "report"
    build_report(run_dir, out, asv_results=tmp_path / "asv")
    readme = (out / "README.md").read_text()
    assert "## asv benchmarks (latest values)" in readme
    assert "| torch | lanczos | 23 |" in readme and "| jax | power | 31 |" in readme
    # values are in itertools.product order of the params: (torch, power) is NaN (skipped:
    # a combination skipped for every benchmark is left out), (jax, lanczos) None (failed)
    assert "| jax | lanczos | failed |" in readme and "| torch | power |" not in readme
    assert "| jax | 2.1 ms |" in readme and "commit aaaaaaaa" in readme
