"""Faults of ``compare``, run records and ``report`` (issue 11): each test reproduces one and
checks the new behaviour. Cheap on purpose: quadratic-small (exact reference, no training)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import sys

import pytest

import hessbench.compare as compare
from hessbench.cli import main
from hessbench.errors import InputError, UserError
from hessbench.records import (RecordError, RecordWarning, RunRecord, load_runs,
                               read_record)

PROBLEM = "quadratic-small"
SOLVERS = ("lanczos", "power")
PASSES = 40


def _argv(out, *extra, seeds="0-1"):
    return ["compare", "--problems", PROBLEM, "--solvers", *SOLVERS, "--seeds", seeds,
            "--max-passes", str(PASSES), "-o", str(out), "-q", *extra]


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory, _cache):
    """A finished grid: quadratic-small x {lanczos, power} x seeds {0, 1}."""
    out = tmp_path_factory.mktemp("grid")
    runs = compare.run_grid([PROBLEM], SOLVERS, [0, 1], out, progress=False,
                            budget={"max_passes": PASSES})
    assert [r.status for r in runs] != ["error"] * 4 and (runs.reused, runs.ran) == (0, 4)
    return out


@pytest.fixture
def grid(grid_dir, tmp_path):
    """A private copy of the finished grid."""
    return shutil.copytree(grid_dir, tmp_path / "grid")


@pytest.fixture
def calls(monkeypatch):
    """The (solver, seed) of every run that ``compare`` solves (by the real run_one)."""
    real, seen = compare.run_one, []

    def counting(problem, solver, **kw):
        seen.append((solver, kw["seed"]))
        return real(problem, solver, **kw)

    monkeypatch.setattr(compare, "run_one", counting)
    return seen


@pytest.fixture
def no_runs(monkeypatch):
    def fail(*args, **kw):
        pytest.fail(f"a run was solved: {args}")

    monkeypatch.setattr(compare, "run_one", fail)


def _rewrite(path, **changes):
    record = read_record(path)
    dataclasses.replace(record, **changes).write(path)


# -- resuming --------------------------------------------------------------------------------
def test_rerun_reuses_every_finished_run(grid, no_runs, capsys):
    before = {p.name: p.read_text() for p in grid.glob("*_seed*.json")}
    assert main(_argv(grid)) == 0
    out = capsys.readouterr().out
    assert "4 runs: 4 reused, 0 run;" in out and "| power |" in out
    assert {p.name: p.read_text() for p in grid.glob("*_seed*.json")} == before
    runs = compare.run_grid([PROBLEM], SOLVERS, [0, 1], grid, progress=False,
                            budget={"max_passes": PASSES})
    assert (runs.reused, runs.ran, len(runs)) == (4, 0, 4)
    assert [(r.solver, r.seed) for r in runs] == [(s, k) for s in SOLVERS for k in (0, 1)]


@pytest.mark.parametrize("changes", [
    {"solver_options": {"tol": 1e-3, "max_steps": 50}},
    {"budget": {"max_passes": 41}},
    {"seed": 7},
    {"which": "max"},
    {"dtype": "float32"},
    {"backend": "jax"},
    {"problem_key": "0123456789abcdef"},
    {"requested_device": "cuda:1"},
    {"requested_device": ""},  # a record written before the requested device was recorded
    {"versions": {"hessbench": "0.0.1"}},
], ids=lambda c: next(iter(c)))
def test_a_record_of_another_identity_is_rerun_and_replaced(grid, calls, changes):
    path = grid / f"{PROBLEM}_lanczos_seed1.json"
    _rewrite(path, **changes)
    runs = compare.run_grid([PROBLEM], SOLVERS, [0, 1], grid, progress=False,
                            budget={"max_passes": PASSES})
    assert calls == [("lanczos", 1)] and (runs.reused, runs.ran) == (3, 1)
    fresh = read_record(path)
    assert fresh.solver_options == {"tol": 1e-3, "max_steps": 500} and fresh.seed == 1
    assert fresh.budget == {"max_passes": PASSES} and fresh.requested_device == "default"


def test_a_new_option_reruns_only_the_runs_it_changes(grid, calls, capsys):
    assert main(_argv(grid, seeds="0-2")) == 0  # seed 2 is new
    assert sorted(calls) == [("lanczos", 2), ("power", 2)]
    assert "6 runs: 4 reused, 2 run;" in capsys.readouterr().out
    calls.clear()
    assert main(_argv(grid, "--tol", "1e-4", seeds="0")) == 0  # another tolerance: all rerun
    assert sorted(calls) == [("lanczos", 0), ("power", 0)]
    assert read_record(grid / f"{PROBLEM}_power_seed0.json").solver_options["tol"] == 1e-4


def test_force_reruns_everything(grid, calls, capsys):
    assert main(_argv(grid, "--force")) == 0
    assert sorted(calls) == [(s, k) for s in SOLVERS for k in (0, 1)]
    assert "4 runs: 0 reused, 4 run;" in capsys.readouterr().out


def test_a_run_that_raised_is_rerun(grid, calls):
    path = grid / f"{PROBLEM}_power_seed0.json"
    old = read_record(path)
    RunRecord(problem=PROBLEM, solver="power", seed=0, problem_key=old.problem_key,
              solver_options=old.solver_options, budget=old.budget, dtype=old.dtype,
              requested_device="default", versions=old.versions, status="error",
              message="RuntimeError: boom").write(path)
    runs = compare.run_grid([PROBLEM], SOLVERS, [0, 1], grid, progress=False,
                            budget={"max_passes": PASSES})
    assert calls == [("power", 0)] and not any(r.raised for r in runs)
    assert not read_record(path).raised


def test_a_corrupt_record_is_rerun_and_replaced(grid, calls):
    path = grid / f"{PROBLEM}_lanczos_seed0.json"
    path.write_text('{"problem": "quadratic-sm')
    compare.run_grid([PROBLEM], SOLVERS, [0, 1], grid, progress=False,
                     budget={"max_passes": PASSES})
    assert calls == [("lanczos", 0)] and read_record(path).solver == "lanczos"


# -- interrupt -------------------------------------------------------------------------------
def test_an_interrupt_keeps_finished_records_writes_a_partial_summary_and_resumes(
        tmp_path, monkeypatch, capsys):
    real, count = compare.run_one, []

    def third_interrupts(problem, solver, **kw):
        count.append(1)
        if len(count) == 3:
            raise KeyboardInterrupt
        return real(problem, solver, **kw)

    monkeypatch.setattr(compare, "run_one", third_interrupts)
    out = tmp_path / "cmp"
    assert main(_argv(out)) == 130
    err = capsys.readouterr().err.strip()
    assert err == (f"interrupted: 2 of 4 runs finished, their records and a partial summary "
                   f"are in {out}/; run the same command again to resume")  # one line
    assert sorted(p.name for p in out.glob("*_seed*.json")) == [
        f"{PROBLEM}_lanczos_seed0.json", f"{PROBLEM}_lanczos_seed1.json"]
    assert "PARTIAL: 2 of 4 runs finished (interrupted)" in (out / "summary.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["partial"], summary["finished"], summary["planned"]) == (True, 2, 4)
    assert [r["solver"] for r in summary["rows"]] == ["lanczos"]

    count[:] = [1, 1]  # the next run solved is the 3rd: interrupted again, before any new run
    with pytest.raises(KeyboardInterrupt) as caught:  # the Python API raises it too
        compare.run_grid([PROBLEM], SOLVERS, [0, 1], out, progress=False,
                         budget={"max_passes": PASSES})
    assert (caught.value.finished, caught.value.planned) == (2, 4)
    assert len(list(out.glob("*_seed*.json"))) == 2

    monkeypatch.setattr(compare, "run_one", real)
    runs = compare.run_grid([PROBLEM], SOLVERS, [0, 1], out, progress=False,
                            budget={"max_passes": PASSES})
    assert (runs.reused, runs.ran) == (2, 2)
    compare.write_summary(runs, out)
    assert isinstance(json.loads((out / "summary.json").read_text()), list)
    assert "PARTIAL" not in (out / "summary.md").read_text()


# -- bad output and bad grids, refused before any run ---------------------------------------
def test_an_output_that_is_a_file_or_a_link_is_refused_before_any_run(tmp_path, no_runs,
                                                                     capsys):
    file = tmp_path / "file"
    file.write_text("keep me")
    assert main(_argv(file)) == 2
    assert f"error: output folder {file} exists and is not a folder" in capsys.readouterr().err
    assert main(_argv(file / "sub")) == 2  # its parent is a file
    assert str(file) in capsys.readouterr().err
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    assert main(_argv(link)) == 2
    assert f"output folder {link} is a symbolic link" in capsys.readouterr().err
    out = tmp_path / "out"
    out.mkdir()
    record = out / f"{PROBLEM}_power_seed1.json"
    record.symlink_to(file)
    assert main(_argv(out)) == 2
    assert f"{record} is a symbolic link" in capsys.readouterr().err
    assert file.read_text() == "keep me"


def test_an_unwritable_output_folder_is_refused_before_any_run(tmp_path, no_runs, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        if os.access(out, os.W_OK):
            pytest.skip("this user can write in a read-only folder (root)")
        assert main(_argv(out)) == 2
        assert f"cannot write in the output folder {out}" in capsys.readouterr().err
        assert not list(out.iterdir())
    finally:
        out.chmod(0o700)


@pytest.mark.parametrize("seeds", [[], [0, 1, 0]], ids=["empty", "repeated"])
def test_run_grid_refuses_no_seeds_and_repeated_seeds(tmp_path, no_runs, seeds):
    with pytest.raises(InputError, match="seed"):
        compare.run_grid([PROBLEM], ["lanczos"], seeds, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


# -- writing records -------------------------------------------------------------------------
def test_write_refuses_a_symlink_a_device_and_a_folder(tmp_path):
    record = RunRecord(problem=PROBLEM, solver="lanczos", seed=0)
    target = tmp_path / "target.json"
    target.write_text("keep me")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    with pytest.raises(InputError, match=f"{link} is a symbolic link"):
        record.write(link)
    assert link.is_symlink() and target.read_text() == "keep me"
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=f"{fifo} is not a regular file"):
        record.write(fifo)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    if stat.S_ISCHR(os.lstat("/dev/null").st_mode):  # never write into a broken /dev/null
        with pytest.raises(InputError, match="/dev/null is not a regular file"):
            record.write("/dev/null")
        assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)
    with pytest.raises(InputError, match="is a folder"):
        record.write(tmp_path)
    assert read_record(record.write(target)).solver == "lanczos"  # a regular file is replaced
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    fifo.unlink()


def test_a_malformed_record_is_a_record_error_naming_the_file(tmp_path):
    path = RunRecord(problem=PROBLEM, solver="lanczos", seed=0).write(tmp_path / "r.json")
    data = json.loads(path.read_text())
    for bad in ({"seed": "zero"}, {"trace": [[1, 2]]}, {"reference": {"lambda_max": 1.0}},
                {"errors": {"rel_error_max": "big"}}):
        path.write_text(json.dumps({**data, **bad}))
        with pytest.raises(RecordError, match=str(path)):
            read_record(path)
    data.pop("requested_device")  # published records lack it: still readable
    path.write_text(json.dumps(data))
    assert read_record(path).requested_device == ""


# -- report ----------------------------------------------------------------------------------
@pytest.fixture
def report_dir(grid):
    pytest.importorskip("matplotlib")
    (grid / "broken.json").write_text("{not json")
    record = json.loads((grid / f"{PROBLEM}_power_seed0.json").read_text())
    (grid / "typed.json").write_text(json.dumps({**record, "seed": "zero"}))
    return grid


def test_report_skips_malformed_records_with_a_warning_each(report_dir, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(report_dir), "-o", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith(f"warning: skipped {report_dir / 'broken.json'}: "
                                               "not valid JSON")
    assert err[1].startswith(f"warning: skipped {report_dir / 'typed.json'}: malformed run "
                             "record: field 'seed' is 'zero'")
    assert (out / "README.md").exists()
    with pytest.warns(RecordWarning) as caught:
        assert len(load_runs(report_dir, strict=False)) == 4
    assert [str(w.message).split(":")[0] for w in caught] == [
        f"skipped {report_dir / 'broken.json'}", f"skipped {report_dir / 'typed.json'}"]


def test_report_strict_fails_naming_the_malformed_record(report_dir, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(report_dir), "-o", str(out), "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {report_dir / 'broken.json'}: not valid JSON")
    assert not out.exists()


@pytest.mark.parametrize("module,package", [("matplotlib", "matplotlib"), ("jinja2", "jinja2"),
                                            ("markdown_it", "markdown-it-py")])
def test_report_names_the_extra_when_a_dependency_is_missing(grid, tmp_path, monkeypatch,
                                                             capsys, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # "import module" now raises ImportError
    out = tmp_path / "report"
    assert main(["report", str(grid), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: hessbench report needs {package}, not installed: "
                   "pip install 'hessbench[report]'\n")
    assert not out.exists()
    with pytest.raises(UserError, match=r"hessbench\[report\]"):
        from hessbench.report.extras import require

        require(module)
