"""The README's Python examples run as written (on a CPU, in seconds) and give right answers."""

from pathlib import Path

import numpy as np
import pytest

README = (Path(__file__).parents[1] / "README.md").read_text()


def snippet(heading: str) -> str:
    """The first ```python block after the README heading ``heading``."""
    start = README.index(f"\n{heading}\n")
    begin = README.index("```python\n", start) + len("```python\n")
    return README[begin:README.index("```", begin)]


def test_operator_example(capsys):
    scope: dict = {}
    exec(compile(snippet("### SciPy: `op.to_scipy()`"), "README.md", "exec"), scope)
    lam_max, dense = scope["lam_max"], scope["dense_hessian"]()
    assert lam_max == pytest.approx(np.linalg.eigvalsh(dense)[-1], rel=1e-8)
    assert scope["op"].meter.hvp_calls > 0 and capsys.readouterr().out


def test_run_records_example(tmp_path, monkeypatch, capsys):
    from hessbench.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["compare", "--problems", "quadratic-small", "--solvers", "lanczos", "power",
                 "--seeds", "0-1", "--max-passes", "60", "-o", "results/cmp", "-q"]) == 0
    scope: dict = {}
    exec(compile(snippet("### Run records"), "README.md", "exec"), scope)
    assert scope["winner"](scope["summary"]) == "lanczos"
    assert "lanczos" in capsys.readouterr().out


def test_torchrun_example_gives_the_one_process_answer(tmp_path):
    """The README's torchrun script on 2 gloo processes and on 1: the same eigenvalues."""
    import os
    import subprocess
    import sys

    script = tmp_path / "my_hessian.py"
    script.write_text(snippet("### PyTorch: one process per device (torchrun)"))
    printed = {}
    for k in (1, 2):
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                               "--nproc-per-node", str(k), str(script)], cwd=tmp_path,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                              text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, proc.stdout  # rank 0 alone prints
        lam_max, lam_min, converged = lines[0].split()[:3]
        printed[k] = (float(lam_max), float(lam_min), converged, lines[0])
    assert printed[1][2] == printed[2][2] == "True"
    assert printed[2][0] == pytest.approx(printed[1][0], rel=1e-10)
    assert printed[2][1] == pytest.approx(printed[1][1], rel=1e-6, abs=1e-12)
    assert "x 2 processes (gloo)" in printed[2][3]


def test_density_example(capsys, one_torch_thread):
    scope: dict = {}
    exec(compile(snippet("## Trace and spectral density"), "README.md", "exec"), scope)
    exact = scope["prob"].eigenvalues()
    tr = scope["tr"]  # a 95% band: allow twice its half-width for this one seed
    assert abs(tr.estimate - exact.sum()) <= (tr.high - tr.low)
    assert scope["sd"].lambda_max == pytest.approx(exact.max(), rel=1e-6)
    assert "data passes" in capsys.readouterr().out


def test_monitor_example(tmp_path, monkeypatch, capsys, one_torch_thread):
    from hessbench.monitor_plot import read_history

    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(snippet("## Watching a training run"), "README.md", "exec"), scope)
    records = read_history("runs/hessian")
    assert [r.epoch for r in records] == [0, 1, 2] and all(r.converged for r in records)
    assert all(r.lambda_min < 0 < r.lambda_max for r in records)
    assert (tmp_path / "hessian.png").stat().st_size > 0
    assert capsys.readouterr().out.count("epoch") == 3
