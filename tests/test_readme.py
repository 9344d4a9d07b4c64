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
