"""Honest seconds (issue 13): ``run_one`` warms the operator up untimed before the solve and
records it apart (``RunRecord.warmup``); the solve's seconds, cost and trace start after it.

Checked by order and by meter counts, never by timing thresholds: the warm-up's products are
on the meter before the solve's first product, its wall-clock interval ends before the solve
starts, and the solve's seconds fit inside the solve's own interval."""

import dataclasses
import json
import time

import pytest

from hessbench.backends.base import HVPOperator
from hessbench.compare import RunIdentity
from hessbench.records import RunRecord, read_record
from hessbench.runner import run_one, warm_up_blocks
from hessbench.solvers.base import Solver


@pytest.fixture
def events(monkeypatch, one_torch_thread):
    """Log of (what, perf_counter time, op.meter.hvp_calls) at the edges of every warm-up
    and solve, and at every product."""
    log = []
    warm_up, solve = HVPOperator.warm_up, Solver.solve
    matvec, matmat = HVPOperator.matvec, HVPOperator.matmat

    def logged(name, fn, op_of):
        def wrapper(self, *args, **kwargs):
            op = op_of(self, args, kwargs)
            log.append((f"{name} start", time.perf_counter(), op.meter.hvp_calls))
            out = fn(self, *args, **kwargs)
            log.append((f"{name} end", time.perf_counter(), op.meter.hvp_calls))
            return out
        return wrapper

    this = lambda self, args, kwargs: self  # noqa: E731
    monkeypatch.setattr(HVPOperator, "warm_up", logged("warm_up", warm_up, this))
    monkeypatch.setattr(HVPOperator, "matvec", logged("product", matvec, this))
    monkeypatch.setattr(HVPOperator, "matmat", logged("product", matmat, this))
    monkeypatch.setattr(Solver, "solve", logged("solve", solve,
                                                lambda self, args, kwargs: args[0]))
    return log


def _at(log, what):
    return [i for i, event in enumerate(log) if event[0] == what]


def test_warm_up_comes_before_the_solve_and_outside_its_seconds(events):
    record = run_one("quadratic-small", "lanczos", seed=1, budget={"max_passes": 60},
                     progress=False)
    (w0,), (w1,) = _at(events, "warm_up start"), _at(events, "warm_up end")
    (s0,), (s1,) = _at(events, "solve start"), _at(events, "solve end")
    assert w0 < w1 < s0 < s1
    # the warm-up's one product is on the meter before the solve starts, and none of the
    # solve's products (all of them between its edges) is charged to the warm-up
    assert events[w1][2] - events[w0][2] == 1
    products = _at(events, "product start")
    assert [i for i in products if w0 < i < w1] and min(i for i in products if i > w1) > s0
    assert events[s0][2] == events[w1][2]
    assert record.hvp_calls == events[s1][2] - events[s0][2] == record.trace[-1].hvp_calls
    # its seconds are recorded apart, and the solve's seconds fit in the solve's interval,
    # which starts after the warm-up ended
    assert record.warmup["seconds"] > 0 and record.warmup_seconds == record.warmup["seconds"]
    assert events[w1][1] <= events[s0][1]
    assert 0 < record.seconds <= events[s1][1] - events[s0][1]
    assert record.trace[0].hvp_calls == 1  # the first trace row is the solve's first product
    assert record.warmup["block"] is None


def test_block_solvers_warm_up_their_block_width(events):
    record = run_one("quadratic-small", "lobpcg", seed=0, budget={"max_passes": 30},
                     solver_options={"block_size": 3}, progress=False)
    (w0,), (w1,) = _at(events, "warm_up start"), _at(events, "warm_up end")
    assert events[w1][2] - events[w0][2] == 1 + 3  # one vector, then one block of 3
    assert record.warmup["block"] == 3
    assert record.hvp_calls == events[_at(events, "solve end")[0]][2] - events[w1][2]


def test_block_size_auto_warms_up_every_width_it_may_time(events):
    """block-lanczos with block_size="auto" times blocks of its CANDIDATES widths at the
    start of its solve: each width is warmed up first, so no first call is timed."""
    from hessbench.solvers.block_lanczos import CANDIDATES

    record = run_one("quadratic-small", "block-lanczos", seed=0, budget={"max_passes": 30},
                     solver_options={"block_size": "auto"}, progress=False)
    (s0,) = _at(events, "solve start")
    calls = [(events[j][2] - events[i][2]) for i, j in zip(_at(events, "warm_up start"),
                                                           _at(events, "warm_up end"))]
    assert calls == [1 + w for w in CANDIDATES] and max(_at(events, "warm_up end")) < s0
    assert record.warmup["block"] == list(CANDIDATES)


def test_warm_up_blocks_are_the_solvers_block_widths_capped_at_the_operator():
    class Single:
        pass

    class Blocked:
        block_size = 8

    class Chosen:
        block_size = "auto"
        block_candidates = (2, 4, 16)

    assert warm_up_blocks(Single()) == ()
    assert warm_up_blocks(Blocked()) == (8,) and warm_up_blocks(Blocked(), size=5) == (5,)
    assert warm_up_blocks(Chosen(), size=6) == (2, 4, 6)


def test_the_record_keeps_the_warm_up_and_old_records_still_load(tmp_path, one_torch_thread):
    record = run_one("quadratic-small", "power", seed=0, budget={"max_passes": 20},
                     progress=False)
    path = record.write(tmp_path / "run.json")
    data = json.loads(path.read_text())
    assert data["warmup"]["seconds"] == record.warmup["seconds"]
    assert read_record(path).warmup == record.warmup
    del data["warmup"]  # a record written before the warm-up was recorded
    path.write_text(json.dumps(data))
    old = read_record(path)
    assert old.warmup == {} and old.warmup_seconds is None
    assert old.seconds == record.seconds


def test_warm_up_is_an_outcome_not_part_of_a_runs_identity():
    record = RunRecord(problem="p", solver="s", seed=0, problem_key="k", status="converged")
    warmed = dataclasses.replace(record, warmup={"seconds": 1.5, "block": 4,
                                                 "strategy": "reverse-over-reverse"})
    assert RunIdentity.of_record(record) == RunIdentity.of_record(warmed)
    assert "warmup" not in {f.name for f in dataclasses.fields(RunIdentity)}
