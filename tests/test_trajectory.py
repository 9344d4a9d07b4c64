"""Trajectory problems (checkpoints along one seeded training run), ``hessbench track`` and
the tracking benchmark (references, errors, success, summaries, report)."""

from __future__ import annotations

import argparse
import json
from importlib.metadata import EntryPoint

import numpy as np
import pytest
import torch

from hessbench import problems
from hessbench.errors import InputError
from hessbench.monitor_record import HessianRecord
from hessbench.problems import trajectory
from hessbench.problems.trajectory import checkpoint_steps, digits_mlp_trajectory
from hessbench.track_cli import add_track_parser, track
from hessbench.tracking import (
    TrackingSummary,
    format_table,
    read_tracking,
    score,
    summarise,
)

NAME = "digits-mlp-trajectory"


@pytest.fixture
def registered(monkeypatch, tmp_path):
    monkeypatch.setenv("HESSBENCH_CACHE", str(tmp_path / "cache"))
    if NAME not in problems.available():  # until BUILTINS lists it
        monkeypatch.setitem(problems.REGISTRY._builtins, NAME, EntryPoint(
            NAME, "hessbench.problems.trajectory:digits_mlp_trajectory",
            problems.ENTRY_POINT_GROUP))
    calls = []
    real = trajectory.train
    monkeypatch.setattr(trajectory, "train", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def states(problem):
    model, _ = problem.trained_model(progress=False)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_checkpoints_along_one_run(registered):
    from hessbench.models import mlp
    from hessbench.problems.nets import digits_mlp

    assert checkpoint_steps(300, 20)[:3] == [0, 16, 32] and checkpoint_steps(300, 20)[-1] == 300
    first = states(problems.get(NAME, checkpoint=0))
    middle = states(problems.get(NAME, checkpoint=10))
    last = states(problems.get(NAME, checkpoint=19))
    assert registered == [1]  # one training run serves every checkpoint
    torch.manual_seed(0)
    init = {k: v.float() for k, v in mlp().state_dict().items()}
    trained = states(digits_mlp())
    for k in init:
        assert torch.equal(first[k], init[k])
        assert torch.equal(last[k], trained[k])
        assert not torch.equal(middle[k], first[k]) and not torch.equal(middle[k], last[k])
    keys = {problems.get(NAME, checkpoint=k).key for k in (0, 10, 19)}
    assert len(keys) == 3  # references are cached per checkpoint
    with pytest.raises(ValueError, match="checkpoint must be in 0..19"):
        digits_mlp_trajectory(checkpoint=20)


def test_track_writes_one_record_per_checkpoint(registered, tmp_path):
    from hessbench import solvers

    parser = argparse.ArgumentParser()
    add_track_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["track", "--checkpoints", "0,19", "-o", str(tmp_path / "log"),
                              "--plot", str(tmp_path / "fig.png"), "-q", "--seed", "2",
                              "--no-reference"])
    assert args.func(args) == 0
    _, (summary,), rows = read_tracking(tmp_path / "log" / "tracking.json")
    assert summary.success is None and summary.seed == 2
    assert [r.ref_max for r in rows] == [None, None]
    lines = [json.loads(s) for s in (tmp_path / "log" / "hessian.jsonl").read_text().splitlines()]
    assert [d["epoch"] for d in lines] == [0, 19]
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"
    # the record at checkpoint 19 is the solver's answer on the problem's own operator
    from hessbench.monitor import step_seed

    op = problems.get(NAME, checkpoint=19).operator("torch", progress=False)
    ref = solvers.get("lanczos", tol=1e-3).solve(op, which="both", seed=step_seed(2, 19))
    assert lines[1]["lambda_max"] == pytest.approx(ref.lambda_max, rel=1e-9)
    assert lines[1]["lambda_min"] == pytest.approx(ref.lambda_min, rel=1e-9)
    assert lines[1]["data_passes"] == ref.data_passes and lines[1]["parameters"] == 5962
    assert lines[0]["lambda_max"] != lines[1]["lambda_max"]
    assert np.isfinite(lines[0]["residual_max"]) and registered == [1]


def test_track_errors_name_the_problem(registered, tmp_path):
    with pytest.raises(InputError, match="not a trajectory problem"):
        track("digits-mlp", log_dir=tmp_path)
    with pytest.raises(InputError, match="out of range"):
        track(NAME, checkpoints=[20], log_dir=tmp_path)
    with pytest.raises(InputError, match="--checkpoints"):
        track(NAME, problem_options={"checkpoint": 3}, log_dir=tmp_path)
    assert registered == []  # refused before any training
    parser = argparse.ArgumentParser()
    text = add_track_parser(parser.add_subparsers(dest="command")).format_help()
    for flag in ("--seeds", "--warm-start", "--no-reference", "tracking.json", "seed-K",
                 "within 1%"):
        assert flag in text
    with pytest.raises(SystemExit):  # one seed or a list, not both
        parser.parse_args(["track", "--seed", "1", "--seeds", "0-4", "-o", str(tmp_path)])


# -- digits-cnn-trajectory, synthetic-cifar-resnet20-trajectory -------------------------------
def test_cnn_and_resnet_trajectories_are_registered():
    from hessbench.problems.nets import digits_cnn, synthetic_cifar_resnet20

    cnn = problems.get("digits-cnn-trajectory", checkpoint=3)
    assert problems.options("digits-cnn-trajectory") == {"checkpoint": 19, "checkpoints": 20}
    assert cnn.recipe == digits_cnn().recipe and cnn.config["image"] and cnn.batch_size == 600
    assert cnn.key != problems.get("digits-mlp-trajectory", checkpoint=3).key
    assert "after 47 of 300" in cnn.description
    res = problems.get("synthetic-cifar-resnet20-trajectory")
    assert res.recipe.steps == 19 and res.config["subset"] == 128 and res.synthetic
    assert res.recipe.optimizer == synthetic_cifar_resnet20().recipe.optimizer
    assert "after 19 of 19" in res.description
    with pytest.raises(ValueError, match="checkpoints must be in 2..20"):
        problems.get("synthetic-cifar-resnet20-trajectory", checkpoints=21)
    with pytest.raises(ValueError, match="checkpoint must be in 0..2"):
        problems.get("digits-cnn-trajectory", checkpoints=3, checkpoint=3)


# -- the tracking benchmark: references, errors, success, summaries ---------------------------

TINY = "tiny-mlp-trajectory"


def _tiny_data(config):
    from hessbench.problems.nets import digits_data

    x, y = digits_data(config)
    return x[:150], y[:150]


def _tiny_model():
    return torch.nn.Sequential(torch.nn.Linear(64, 4), torch.nn.Tanh(), torch.nn.Linear(4, 10))


def tiny_trajectory(checkpoint: int = 2, checkpoints: int = 3) -> trajectory.TrajectoryProblem:
    from hessbench.training import Recipe

    base = trajectory.NetProblem(
        name="tiny", description="tiny", dtype="float64",
        config={"kind": "net", "data": "digits-150", "model": "mlp-64-4-10", "seed": 0,
                "version": 1},
        make_model=_tiny_model, load_data=_tiny_data, batch_size=150,
        recipe=Recipe(steps=20, lr=5e-2, optimizer="adam", dtype="float64"))
    return trajectory.along(base, TINY, checkpoint, checkpoints)


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    import sys
    import types

    monkeypatch.setenv("HESSBENCH_CACHE", str(tmp_path / "cache"))
    module = types.ModuleType("hb_tiny_trajectory")
    module.tiny_trajectory = tiny_trajectory
    monkeypatch.setitem(sys.modules, "hb_tiny_trajectory", module)
    monkeypatch.setitem(problems.REGISTRY._builtins, TINY, EntryPoint(
        TINY, "hb_tiny_trajectory:tiny_trajectory", problems.ENTRY_POINT_GROUP))
    return tmp_path


def test_track_seeds_errors_against_dense_references(tiny):
    from hessbench.reference import dense_hessian

    out = tiny / "track"
    parser = argparse.ArgumentParser()
    add_track_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["track", "-p", TINY, "--seeds", "0-1", "--warm-start", "-o",
                              str(out), "-q"])
    assert args.func(args) == 0
    settings, summaries, rows = read_tracking(out / "tracking.json")
    assert settings["seeds"] == [0, 1] and settings["warm_start"] is True
    for s in (0, 1):  # one monitor log per seed, the records' seeds are the step seeds
        lines = [json.loads(t) for t in (out / f"seed-{s}" / "hessian.jsonl").read_text()
                 .splitlines()]
        assert [d["epoch"] for d in lines] == [0, 1, 2]
        assert [d["warm_started"] for d in lines] == [False, True, True]
        mine = [r for r in rows if r.seed == s]
        assert [r.lambda_max for r in mine] == [d["lambda_max"] for d in lines]
    # references and errors checked against an independent dense float64 eigensolve
    for k in range(3):
        parts = problems.get(TINY, checkpoint=k).torch_parts(progress=False)
        w = np.linalg.eigvalsh(dense_hessian(parts))
        for r in (r for r in rows if r.checkpoint == k):
            assert r.ref_max == pytest.approx(w[-1], rel=1e-8)
            assert r.ref_min == pytest.approx(w[0], rel=1e-8)
            assert r.error_max == pytest.approx(abs(r.lambda_max - w[-1]) / abs(w[-1]),
                                                rel=1e-4, abs=1e-12)
            assert r.error_min == pytest.approx(abs(r.lambda_min - w[0]) / abs(w[0]),
                                                rel=1e-4, abs=1e-12)
    for s in summaries:
        mine = [r for r in rows if r.seed == s.seed]
        assert isinstance(s, TrackingSummary) and s.warm_start and s.checkpoints == 3
        assert s.data_passes == sum(r.data_passes for r in mine) > 0
        assert s.seconds == pytest.approx(sum(r.seconds for r in mine))
        assert s.max_error_max == max(r.error_max for r in mine)
        assert s.max_error_min == max(r.error_min for r in mine)
        assert s.success is True and s.failed == () and s.converged == 3
    # a second run into the same folder is refused (logs are appended to)
    with pytest.raises(InputError, match="already exist"):
        args.func(args)


def _record(epoch, lmax, lmin, converged=True, which="both", passes=10.0):
    return HessianRecord(
        epoch=epoch, lambda_max=lmax, lambda_min=lmin, residual_max=0.0, residual_min=0.0,
        converged=converged, status="converged" if converged else "max_steps",
        data_passes=passes, hvp_calls=int(passes), seconds=0.5, operator_passes=passes + 3,
        step_seconds=0.7, solver="lanczos", solver_options={}, which=which, seed=123,
        warm_started=epoch > 0, certified=True, backend="torch", parameters=10,
        num_samples=5)


def test_success_needs_every_checkpoint_converged_and_within_one_percent():
    refs = {0: {"lambda_max": 2.0, "lambda_min": -1.0}, 1: {"lambda_max": 4.0,
                                                             "lambda_min": -0.5}}
    good = [_record(0, 2.0 * 1.009, -1.0), _record(1, 4.0, -0.5 * 0.995)]
    rows = score("p", good, refs, warm_start=True, seed=3)
    s = summarise(rows, which="both", tol=1e-3)
    assert s.success and s.failed == () and s.data_passes == 20.0 and s.seconds == 1.0
    assert s.operator_passes == 26.0 and s.step_seconds == pytest.approx(1.4)
    assert s.max_error_max == pytest.approx(0.009) and s.max_error_min == pytest.approx(0.005)
    assert (s.problem, s.solver, s.warm_start, s.seed, s.converged) == ("p", "lanczos", True,
                                                                        3, 2)
    off = [_record(0, 2.0, -1.0), _record(1, 4.0, -0.5 * 1.02)]  # λmin 2% off at checkpoint 1
    s = summarise(score("p", off, refs, warm_start=False, seed=0), which="both", tol=1e-3)
    assert s.success is False and s.failed == (1,) and s.max_error_min == pytest.approx(0.02)
    stuck = [_record(0, 2.0, -1.0, converged=False), _record(1, 4.0, -0.5)]
    s = summarise(score("p", stuck, refs, warm_start=False, seed=0), which="both", tol=1e-3)
    assert s.success is False and s.failed == (0,) and s.converged == 1
    # which="max": the min end is neither asked nor scored
    only = [_record(0, 2.0, None, which="max"), _record(1, 4.0, None, which="max")]
    s = summarise(score("p", only, refs, warm_start=False, seed=0), which="max", tol=1e-3)
    assert s.success and s.max_error_min is None
    # no references: nothing scored
    s = summarise(score("p", good, None, warm_start=False, seed=0), which="both", tol=1e-3)
    assert s.success is None and s.max_error_max is None and s.failed == ()
    table = format_table([summarise(score("p", off, refs, warm_start=False, seed=k),
                                    which="both", tol=1e-3) for k in (0, 1)])
    assert "no (checkpoints 1)" in table and "0/2 seeds" in table
    assert TrackingSummary.from_json(s.to_json()) == s


def test_tracking_report_cold_vs_warm(tmp_path):
    from hessbench.report.tracking import build_tracking_report
    from hessbench.tracking import write_tracking

    refs = {0: {"lambda_max": 2.0, "lambda_min": -1.0, "method": "lanczos"},
            1: {"lambda_max": 4.0, "lambda_min": -0.5, "method": "lanczos"}}
    for warm, passes in ((False, 10.0), (True, 5.0)):
        rows, sums = [], []
        for seed in (0, 1):
            part = score("p", [_record(0, 2.0, -1.0, passes=passes),
                               _record(1, 4.0, -0.5, passes=passes)], refs,
                         warm_start=warm, seed=seed)
            rows += part
            sums.append(summarise(part, which="both", tol=1e-3))
        write_tracking(tmp_path / "runs" / f"p-{warm}" / "tracking.json", sums, rows,
                       {"problem": "p"}, refs)
    from hessbench.report.tracking import cmd_tracking_report, is_tracking_dir

    assert is_tracking_dir(tmp_path / "runs") and not is_tracking_dir(tmp_path / "none")
    args = argparse.Namespace(run_dir=str(tmp_path / "runs"), output=str(tmp_path / "report"),
                              title=None)
    assert cmd_tracking_report(args) == 0
    written = build_tracking_report(tmp_path / "runs", tmp_path / "report")
    assert "<table>" in written["html"].read_text()
    text = written["readme"].read_text()
    assert "warm start saves 50% of the data passes" in text and "2/2" in text
    data = json.loads(written["data"].read_text())
    assert data["warm_vs_cold"][0]["passes_warm_over_cold"] == 0.5
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written["figures"].values())
    with pytest.raises(InputError, match="no tracking.json"):
        build_tracking_report(tmp_path / "report" / "figures", tmp_path / "r2")
