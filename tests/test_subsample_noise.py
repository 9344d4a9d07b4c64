"""scripts/subsample_noise.py: the subsample-error statistics behind multifidelity-lanczos'
design, checked where the answer is known."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "subsample_noise.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("subsample_noise", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_statistics_of_a_planted_error(script):
    """H = diag(-1, 1, ..., 10); H_S = H + E with E of known spectrum, in units of |lmin| = 1."""
    n = 12
    H = np.diag([-1.0, *np.arange(1.0, n)])
    E = np.zeros((n, n))
    E[0, 0], E[5, 5], E[7, 7] = 3.0, -2.5, 0.5  # lifts the bottom direction to +2
    e0 = np.eye(n)[:, 0]  # the bottom eigenvector of H, eigenvalue -1
    stats = script.subsample_noise(H, -1.0, e0, H + E, bottom=1)
    assert stats["error_norm"] == pytest.approx(3.0)
    assert stats["error_eigs_above_lmin"] == 2
    # bottom of H + E: e_0 now sits at +2, so the new bottom is e_1 at +1
    assert stats["lmin_subsample"] == pytest.approx(1.0)
    assert stats["rayleigh_bottom"] == pytest.approx(1.0)
    assert stats["overlap_bottom"] == pytest.approx(0.0, abs=1e-12)
    exact = script.subsample_noise(H, -1.0, e0, H, bottom=3)
    assert exact["error_norm"] == 0 and exact["error_eigs_above_lmin"] == 0
    assert exact["rayleigh_bottom"] == pytest.approx(-1.0) and exact["overlap_bottom"] == pytest.approx(1.0)


def test_cli_on_the_quadratic(script, tmp_path, capsys):
    """The whole data set as 'subsample' has no error and finds the exact lambda_min = -0.5;
    half of it does not."""
    out = tmp_path / "noise.json"
    assert script.main(["--problem", "quadratic-small", "--fractions", "0.5", "1",
                        "--seeds", "0", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["lambda_min"] == pytest.approx(-0.5) and data["lambda_max"] == pytest.approx(100)
    assert data["problem_config"]["n"] == 200 and data["synthetic"] and data["dtype"] == "float64"
    assert {"python", "torch", "numpy"} <= set(data["versions"])
    assert data["command"] == ("python3 scripts/subsample_noise.py --problem quadratic-small "
                               f"--fractions 0.5 1 --seeds 0 --json {out}")
    half, full = data["rows"]
    assert full["size"] == 1000 and full["error_norm"] < 1e-9
    assert full["rayleigh_bottom"] == pytest.approx(-1.0) and full["overlap_bottom"] == pytest.approx(1.0)
    assert half["size"] == 500 and half["error_norm"] > 1
    assert "quadratic-small: n=200 parameters, N=1000 samples" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        script.main(["--problem", "quadratic-small", "--fractions", "0"])
