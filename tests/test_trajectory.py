"""digits-mlp-trajectory (checkpoints along one seeded training run) and ``hessbench track``."""

from __future__ import annotations

import argparse
import json
from importlib.metadata import EntryPoint

import numpy as np
import pytest
import torch

from hessbench import problems
from hessbench.errors import InputError
from hessbench.problems import trajectory
from hessbench.problems.trajectory import checkpoint_steps, digits_mlp_trajectory
from hessbench.track_cli import add_track_parser, track

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
                              "--plot", str(tmp_path / "fig.png"), "-q", "--seed", "2"])
    assert args.func(args) == 0
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
