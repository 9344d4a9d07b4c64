"""The commands choose torch's thread count (``--threads``); the library leaves it alone."""

import os

import pytest
import torch

from hessbench.cli import main
from hessbench.records import read_record
from hessbench.threads import auto_threads


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("cores,load,processes,want", [
    (2, 0.0, 1, 2),    # idle: every core
    (2, 1.04, 1, 1),   # one core busy
    (2, 3.0, 1, 1),    # overloaded: never below one
    (16, 2.0, 2, 7),   # two torchrun ranks share the 14 idle cores
    (8, 0.4, 3, 2),
])
def test_auto_threads_share_the_idle_cores(cores, load, processes, want):
    assert auto_threads(cores, load, processes) == want


def test_auto_threads_reads_torchrun_local_world_size(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert auto_threads(16, 0.0) == 4


def test_run_sets_records_and_reports_threads(tmp_path, capsys, restore_threads):
    torch.set_num_threads(2)
    out = tmp_path / "r.json"
    assert main(["run", "-p", "quadratic-small", "-s", "lanczos", "--max-hvps", "5",
                 "--threads", "1", "-o", str(out)]) == 0
    assert read_record(out).threads == 1 == torch.get_num_threads()
    assert "torch threads: 1 per process (--threads)" in capsys.readouterr().err
    assert main(["run", "-p", "quadratic-small", "-s", "lanczos", "--max-hvps", "5",
                 "-o", str(out)]) == 0
    assert "(auto: " in capsys.readouterr().err
    threads = read_record(out).threads
    assert threads == torch.get_num_threads() and 1 <= threads <= (os.cpu_count() or 1)


def test_bad_thread_counts_are_refused(tmp_path, capsys):
    for bad in ("0", "-2", "many"):
        with pytest.raises(SystemExit):
            main(["run", "-p", "quadratic-small", "-s", "lanczos", "--threads", bad, "-o",
                  str(tmp_path / "r.json")])
        assert "'auto' or a positive number of threads" in capsys.readouterr().err
