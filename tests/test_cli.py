import json

import numpy as np
import pytest
import torch

from hessbench.cli import main
from hessbench.records import read_record

REQUIRED = {"problem", "solver", "backend", "seed", "device", "dtype", "versions", "lambda_max",
            "lambda_min", "data_passes", "hvp_calls", "seconds", "converged", "reference",
            "errors", "trace", "problem_config", "cost_to_eps", "threads", "schema_version",
            "solver_options", "command"}


def test_run_writes_a_complete_json_record(tmp_path, capsys):
    out = tmp_path / "run.json"
    code = main(["run", "-p", "quadratic-small", "-s", "lanczos", "--seed", "2", "--tol", "1e-6",
                 "--max-passes", "500", "-o", str(out), "-q"])
    assert code == 0
    record = json.loads(out.read_text())
    assert REQUIRED <= set(record)
    assert record["reference"] == {"lambda_max": 100.0, "lambda_min": -0.5, "method": "exact"}
    assert record["converged"] and record["errors"]["rel_error_min"] < 1e-4
    assert record["seed"] == 2 and record["budget"] == {"max_passes": 500.0}
    assert record["versions"]["torch"] and record["dtype"] == "float64"
    assert len(record["trace"]) == record["hvp_calls"]
    both = [c for c in record["cost_to_eps"] if (c["end"], c["eps"]) == ("both", 0.01)]
    assert both[0]["data_passes"] <= record["data_passes"]
    assert record["schema_version"] == 2 and record["threads"] >= 1
    assert record["solver_options"] == {"tol": 1e-6, "max_steps": 500}  # defaults included
    assert record["command"][:2] == ["hessbench", "run"] and "--tol" in record["command"]
    assert read_record(out).to_json() == record  # the typed record round-trips
    assert "quadratic-small" in capsys.readouterr().out


def test_listing_commands(capsys):
    assert main(["solvers"]) == 0 and "lanczos" in capsys.readouterr().out
    assert main(["problems"]) == 0 and "digits-mlp" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["run", "-p", "quadratic-small", "-s", "nope", "-o", "x.json"], "unknown solver 'nope'"),
    (["run", "-p", "nope", "-s", "lanczos", "-o", "x.json"], "unknown problem 'nope'"),
    (["run", "-p", "quadratic-small", "-s", "lanczos", "--problem-option", "depth=2", "-o",
      "x.json"], "no option"),
    (["run", "-p", "quadratic-small", "-s", "lanczos", "--backend", "tf", "-o", "x.json"],
     "unknown backend 'tf'"),
])
def test_clear_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_an_unknown_backend_fails_before_the_reference_is_computed(monkeypatch):
    import hessbench.runner as runner
    from hessbench.backends import UnknownBackendError

    def no_reference(*args, **kwargs):
        raise AssertionError("the reference was computed before the backend was checked")

    monkeypatch.setattr(runner, "compute_reference", no_reference)
    with pytest.raises(UnknownBackendError, match="unknown backend 'tf'; available: torch, jax"):
        runner.run_one("digits-cnn", "lanczos", backend="tf", progress=False)


def test_run_table_shows_the_warm_up_apart_from_the_seconds(tmp_path, capsys):
    out = tmp_path / "run.json"
    assert main(["run", "-p", "quadratic-small", "-s", "lanczos", "--threads", "1", "-o",
                 str(out), "-q"]) == 0
    record = read_record(out)
    head, _, row = capsys.readouterr().out.splitlines()[:3]
    cells = dict(zip(head.replace("warm-up s", "warm-up_s").split(), row.split()))
    assert cells["seconds"] == f"{record.seconds:.2f}"
    assert cells["warm-up_s"] == f"{record.warmup['seconds']:.2f}"


def test_demo_gives_the_slow_baseline_its_own_budget_and_says_so(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--problems", "quadratic-small", "--solvers", "lanczos", "power",
                 "--baseline-passes", "20", "--threads", "1", "-o", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    power = read_record(out / "quadratic-small_power_seed0.json")
    lanczos = read_record(out / "quadratic-small_lanczos_seed0.json")
    assert power.budget == {"max_passes": 20.0} and lanczos.budget == {"max_passes": 2000.0}
    assert power.status == "budget" and power.data_passes <= 20
    assert lanczos.status == "converged" and lanczos.warmup["seconds"] > 0
    line = next(x for x in text.splitlines() if x.startswith("quadratic-small    power"))
    assert line.endswith("budget (20 passes)")
    assert "power: a baseline given at most 20 data passes in the demo" in text
    assert "quadratic-small: reference (exact) lambda_max=100 lambda_min=-0.5\n" in text


def test_demo_refuses_a_bad_baseline_budget_before_any_work(tmp_path, capsys):
    assert main(["demo", "--problems", "quadratic-small", "--solvers", "power",
                 "--baseline-passes", "0", "-o", str(tmp_path / "demo"), "-q"]) == 2
    assert "max_passes must be positive" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


# -- the demo's reference: certified Lanczos, never a dense Hessian ---------------------------
def _small_net_problem():
    """A 93-parameter tanh MLP on 60 random samples (trains in ms)."""
    from hessbench.problems.nets import NetProblem
    from hessbench.training import Recipe

    def data(config):
        gen = torch.Generator().manual_seed(0)
        return (torch.randn(60, 6, generator=gen, dtype=torch.float64),
                torch.randint(0, 3, (60,), generator=gen))

    def model():
        return torch.nn.Sequential(torch.nn.Linear(6, 9), torch.nn.Tanh(), torch.nn.Linear(9, 3))

    return NetProblem(name="small-net", description="small test net", dtype="float64",
                      config=dict(kind="net", version=1, model="small-test", seed=0),
                      make_model=model, load_data=data, batch_size=25,
                      recipe=Recipe(steps=40, lr=1e-2, optimizer="adam", dtype="float64"))


def test_the_cheapest_reference_is_certified_lanczos_not_dense(tmp_path, monkeypatch):
    import hessbench.reference as reference

    monkeypatch.setenv("HESSBENCH_CACHE", str(tmp_path))
    dense_hessian = reference.dense_hessian

    def refused(*args, **kwargs):
        raise AssertionError("the cheapest reference formed a dense Hessian")

    monkeypatch.setattr(reference, "dense_hessian", refused)
    ref = reference.compute_reference(_small_net_problem(), progress=False, cheapest=True)
    assert ref["method"] == "lanczos"

    # against the dense Hessian, computed independently here
    parts = _small_net_problem().torch_parts(progress=False)
    H = dense_hessian(parts)
    w = np.linalg.eigvalsh(H)
    (vectors,) = (tmp_path / "references").glob("small-net-*-lanczos-vectors.npz")
    for end, exact in (("max", w[-1]), ("min", w[0])):
        x = np.load(vectors)[end]
        lam, r = ref[f"lambda_{end}"], ref[f"residual_{end}"]
        # the stored residual is the computed ||H x - lambda x||, and it bounds the error
        assert r == pytest.approx(np.linalg.norm(H @ x - lam * x), rel=1e-3, abs=1e-14)
        assert abs(lam - exact) <= r + 1e-12 * abs(w).max()
        assert r <= reference.CERTIFIED_RTOL * abs(lam)

    # a dense reference already cached is the cheapest: it is used, not recomputed
    monkeypatch.setattr(reference, "dense_hessian", dense_hessian)
    dense = reference.compute_reference(_small_net_problem(), progress=False,
                                        force_method="dense")
    monkeypatch.setattr(reference, "dense_hessian", refused)
    assert reference.compute_reference(_small_net_problem(), progress=False,
                                       cheapest=True) == dense


def test_a_lanczos_reference_above_its_certified_bound_is_refused(tmp_path, monkeypatch):
    import hessbench.reference as reference

    monkeypatch.setenv("HESSBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(reference, "CERTIFIED_RTOL", 1e-30)
    with pytest.raises(reference.ReferenceError, match="above the certified bound"):
        reference.compute_reference(_small_net_problem(), progress=False, cheapest=True)
