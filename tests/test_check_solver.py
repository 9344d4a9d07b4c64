"""The solver conformance kit (solvers.testing): every registered solver passes it, deliberately
broken solvers fail it, and a third-party plugin installed offline passes it and runs in the
CLI."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hessbench import solvers
from hessbench.peers import ADAPTERS
from hessbench.solvers.base import Run, Solver
from hessbench.solvers.lanczos import Lanczos
from hessbench.solvers.testing import CHECKS, check_solver, checks

PLUGIN_SOURCE = Path(__file__).parent / "plugin_example"
PLUGIN_MODULE = "hessbench_example_plugin"


#: the array-API solvers: every registered one but the peer adapters (hessbench.peers), which
#: run a peer library on a torch model and refuse matrices and JAX operators by design
ARRAY_API_SOLVERS = [n for n in solvers.available() if n not in ADAPTERS]


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("name", ARRAY_API_SOLVERS)
def test_registered_solvers_pass_every_check(name, check):
    CHECKS[check](solvers.solver_class(name))


# -- helpers for the solvers below ----------------------------------------------------------

def _norm(x):
    return float((x * x).sum() ** 0.5)


def _power(run, rng, shift=0.0, end=None, batch=None, steps=3000, tol=1e-4):
    """Power iteration on H - shift I with a residual test; publishes Rayleigh quotients."""
    x = run.op.random_vector(rng)
    x = x / _norm(x)
    for _ in range(steps):
        idx = None if batch is None else run.op.sample_indices(batch, rng)
        hx = run.matvec(x, idx)
        theta = float(x @ hx)
        r = _norm(hx - theta * x)
        run.estimate(end or ("max" if theta >= 0 else "min"), theta, x, residual=r)
        run.record()
        if r <= tol * abs(theta):
            return theta, True
        x = (hx - shift * x) / _norm(hx - shift * x)
    return theta, False


class MiniBatchPower(Solver):
    """A correct stochastic solver: shifted power iteration on mini-batch HVPs (8 of 64)."""

    name = "minibatch-power"

    def _solve(self, run, which, rng):
        mu, ok = _power(run, rng, batch=8, tol=self.tol)
        found = "max" if mu >= 0 else "min"
        if ok and which != found:
            other = "min" if found == "max" else "max"
            _, ok = _power(run, rng, shift=mu, end=other, batch=8, tol=self.tol)
        return ("converged", "residuals below tol") if ok else ("max_steps", "out of steps")


# -- deliberately broken solvers ------------------------------------------------------------

class MagnitudePower(Solver):
    """BROKEN: lambda_max by plain power iteration on H, i.e. the largest-MAGNITUDE eigenvalue
    (lambda_min by power iteration on lambda_max I - H)."""

    name = "magnitude-power"

    def _solve(self, run, which, rng):
        lam, _ = _power(run, rng, end="max", tol=self.tol)
        if which != "max":
            _power(run, rng, shift=lam, end="min", tol=self.tol)
        return "converged", "residuals below tol"


class OneStepLiar(Solver):
    """BROKEN: one Rayleigh quotient of a random vector, reported as converged."""

    name = "one-step-liar"

    def _solve(self, run, which, rng):
        x = run.op.random_vector(rng)
        x = x / _norm(x)
        theta = float(x @ run.matvec(x))
        for end in ("max", "min"):
            run.estimate(end, theta, x)
        run.record()
        return "converged", "converged after 1 step"


class IgnoresWhich(Solver):
    """BROKEN: ignores ``which`` and always computes lambda_max only."""

    name = "ignores-which"

    def _solve(self, run, which, rng):
        mu, ok = _power(run, rng, end="max", tol=self.tol)
        if mu < 0:
            _power(run, rng, shift=mu, end="max", tol=self.tol)
        return "converged", "lambda_max converged"


class NoTrace(Lanczos):
    """BROKEN: a correct Lanczos that never records a trace row."""

    name = "no-trace"

    def _solve(self, run, which, rng):
        run.record = lambda: None
        return super()._solve(run, which, rng)


class Unseeded(Lanczos):
    """BROKEN: a correct Lanczos whose start vector ignores the seed."""

    name = "unseeded"

    def _solve(self, run, which, rng):
        return super()._solve(run, which, np.random.default_rng())


class LateRecord(Lanczos):
    """BROKEN: records the trace row before the HVP of each step, so the last HVP is missing."""

    name = "late-record"

    def _solve(self, run, which, rng):
        matvec, record = run.matvec, run.record

        def record_then_matvec(v, indices=None):
            record()
            return matvec(v, indices)

        run.matvec, run.record = record_then_matvec, lambda: None
        return super()._solve(run, which, rng)


@pytest.mark.parametrize("broken, failing_check", [
    (MagnitudePower, "check_known_spectra"),
    (MagnitudePower, "check_result_contract"),
    (OneStepLiar, "check_known_spectra"),
    (IgnoresWhich, "check_result_contract"),
    (NoTrace, "check_trace"),
    (LateRecord, "check_trace"),
    (Unseeded, "check_seeding"),
])
def test_broken_solvers_fail_the_named_check(broken, failing_check):
    with pytest.raises(AssertionError) as info:
        CHECKS[failing_check](broken)
    message = str(info.value)
    assert f"solver {broken.name!r}" in message and failing_check in message
    with pytest.raises(AssertionError, match=failing_check):
        check_solver(broken)


def test_failure_messages_say_what_was_wrong():
    with pytest.raises(AssertionError) as info:
        CHECKS["check_known_spectra"](MagnitudePower)
    message = str(info.value)
    assert "solver 'magnitude-power'" in message and "failed check_known_spectra" in message
    assert "claims converged" in message and "lambda_max=-" in message  # -6 as lambda_max
    assert "true lambda_max is 2" in message and "ALGEBRAIC" in message
    with pytest.raises(AssertionError, match="trace is empty"):
        CHECKS["check_trace"](NoTrace)
    with pytest.raises(AssertionError, match="call run.record.. after the last HVP"):
        CHECKS["check_trace"](LateRecord)
    with pytest.raises(AssertionError, match="same instance gave"):
        CHECKS["check_seeding"](Unseeded)
    with pytest.raises(AssertionError, match="lambda_min is None although asked"):
        CHECKS["check_result_contract"](IgnoresWhich)


def test_kit_holds_for_a_correct_stochastic_solver():
    check_solver(MiniBatchPower)
    r = MiniBatchPower(tol=1e-4).solve(solvers.testing.SPECTRA[0].operator(), seed=0)
    assert r.converged and r.data_passes == r.hvp_calls * 8 / 64


def test_checks_yields_named_callables_and_options_reach_the_constructor():
    pairs = list(checks(Lanczos, max_steps=50))
    assert [name for name, _ in pairs] == list(CHECKS)
    assert all(callable(check) for _, check in pairs)
    dict(pairs)["check_seeding"]()
    with pytest.raises(AssertionError, match="max_steps must be positive"):
        dict(checks(Lanczos, max_steps=0))["check_result_contract"]()


def test_misuse_of_the_kit_is_a_type_error():
    with pytest.raises(TypeError, match="not an instance"):
        check_solver(Lanczos())
    with pytest.raises(TypeError, match="tol"):
        check_solver(Lanczos, tol=1e-2)
    with pytest.raises(TypeError):
        check_solver(dict)


class _Bare(Solver):
    name = "bare"

    def _solve(self, run: Run, which, rng):
        raise RuntimeError("boom")


def test_a_crashing_solver_fails_with_the_check_and_the_error_named():
    with pytest.raises(AssertionError, match=r"check_result_contract: .*RuntimeError: boom"):
        CHECKS["check_result_contract"](_Bare)


# -- a third-party plugin, installed offline, end to end ------------------------------------

def test_plugin_installs_registers_passes_the_kit_and_runs_in_the_cli(tmp_path, monkeypatch):
    # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    source = shutil.copytree(PLUGIN_SOURCE, tmp_path / "src",
                             ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--no-cache-dir", "--disable-pip-version-check", "-q",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=120)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert list(target.glob("hessbench_example_plugin-*.dist-info"))

    monkeypatch.syspath_prepend(str(target))  # importlib.metadata now sees the dist-info
    try:
        assert "example-power" in solvers.available()
        cls = solvers.solver_class("example-power")
        assert cls.__module__ == PLUGIN_MODULE and issubclass(cls, Solver)
        check_solver(cls)
    finally:
        sys.modules.pop(PLUGIN_MODULE, None)

    # The power method's lambda_min phase cannot converge on quadratic-small (rate ~0.9997) and
    # a full HVP there costs ~30 ms, so 2000 passes would take a minute: cap the steps per phase
    # (which also checks that solver options reach a plugin through the CLI).
    out = tmp_path / "out.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), *filter(None, [env.get("PYTHONPATH")])])
    cli = subprocess.run(
        [sys.executable, "-m", "hessbench.cli", "run", "-p", "quadratic-small", "-s",
         "example-power", "--max-passes", "2000", "--solver-option", "max_steps=100",
         "-o", str(out), "-q"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    record = json.loads(out.read_text())
    assert record["solver"] == "example-power"
    assert record["solver_options"] == {"tol": 1e-3, "max_steps": 100}
    assert record["status"] == "max_steps" and "lambda_min" in record["message"]
    assert record["data_passes"] == record["hvp_calls"] <= 200
    assert record["lambda_max"] == pytest.approx(100.0, rel=1e-3)  # phase 1 converged
    assert len(record["trace"]) == record["hvp_calls"]


def test_the_docs_show_the_plugin_files_verbatim():
    doc = (Path(__file__).parents[1] / "README.md").read_text()
    module = (PLUGIN_SOURCE / f"{PLUGIN_MODULE}.py").read_text()
    pyproject = (PLUGIN_SOURCE / "pyproject.toml").read_text()
    assert f"```python\n{module}```" in doc, "README.md: update the plugin module"
    assert f"```toml\n{pyproject}```" in doc, "README.md: update pyproject.toml"
