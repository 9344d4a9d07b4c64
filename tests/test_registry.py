"""One registry mechanism for solvers, problems and backends: built-ins in their listed order,
then plugins from entry points (faked here), unknown names, bad options and bad plugins."""

import sys
import types
from importlib.metadata import EntryPoint

import numpy as np
import pytest

import hessbench.registry
from hessbench import backends, problems, solvers
from hessbench.backends.dense import DenseOperator
from hessbench.registry import Registry, UnknownNameError

PLUGIN = "fake_hessbench_plugin"


@pytest.fixture
def plugins(monkeypatch):
    """``install(group, name, "attr")`` registers ``fake_hessbench_plugin:attr`` under ``name``
    in an entry-point group, as an installed distribution's entry point would be."""
    module = types.ModuleType(PLUGIN)
    monkeypatch.setitem(sys.modules, PLUGIN, module)
    installed: dict[str, list[EntryPoint]] = {}

    def fake_entry_points(group):
        return list(installed.get(group, []))

    monkeypatch.setattr(hessbench.registry, "entry_points", fake_entry_points)

    def install(group, name, attr, obj):
        setattr(module, attr, obj)
        installed.setdefault(group, []).append(EntryPoint(name, f"{PLUGIN}:{attr}", group))

    return install


# -- the mechanism ----------------------------------------------------------------------------
def test_registry_orders_loads_lazily_validates_and_names_unknowns(plugins):
    def must_be_int(name, obj):
        if not isinstance(obj, int):
            raise TypeError(f"{name} is not an int")

    reg = Registry("thing", "test.things", {"zeta": f"{PLUGIN}:ZETA", "alpha": f"{PLUGIN}:ALPHA"},
                   validate=must_be_int)
    plugins("test.things", "b-plugin", "B", 2)
    plugins("test.things", "a-plugin", "A", "not an int")
    plugins("test.things", "zeta", "SHADOW", 99)  # cannot shadow a built-in
    assert reg.available() == ["zeta", "alpha", "a-plugin", "b-plugin"]
    assert "alpha" in reg and "nope" not in reg
    with pytest.raises(AttributeError):  # nothing was imported or looked up until load()
        reg.load("zeta")
    sys.modules[PLUGIN].ZETA = 26
    assert reg.load("zeta") == 26 and reg.load("b-plugin") == 2
    assert reg.is_builtin("zeta") and not reg.is_builtin("b-plugin")
    with pytest.raises(TypeError, match="a-plugin is not an int"):
        reg.load("a-plugin")
    with pytest.raises(UnknownNameError) as err:
        reg.load("nope")
    assert isinstance(err.value, KeyError)
    assert str(err.value) == "unknown thing 'nope'; available: zeta, alpha, a-plugin, b-plugin"


def test_each_kind_uses_the_shared_registry():
    for module, group in ((solvers.registry, "hessbench.solvers"),
                          (problems, "hessbench.problems"), (backends, "hessbench.backends")):
        assert isinstance(module.REGISTRY, Registry) and module.REGISTRY.group == group
        assert module.available()[:len(module.BUILTINS)] == list(module.BUILTINS)
    assert solvers.available()[:3] == ["lanczos", "power", "arpack"]
    assert problems.available()[:3] == ["quadratic-small", "quadratic", "quadratic-cluster"]
    assert backends.available()[:2] == ["torch", "jax"]
    assert not hasattr(backends, "BACKENDS")  # no alias of the 0.1 constant: available()


def test_registry_modules_import_cheaply():
    import subprocess

    code = ("import sys, hessbench.solvers.registry, hessbench.registry; "
            "print(sorted(m for m in ('torch', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- solvers ----------------------------------------------------------------------------------
def test_solver_plugins_unknown_names_and_non_solvers(plugins):
    from hessbench.solvers.lanczos import Lanczos

    plugins("hessbench.solvers", "my-lanczos", "MyLanczos", Lanczos)
    plugins("hessbench.solvers", "not-a-solver", "NotASolver", dict)
    assert solvers.available()[-2:] == ["my-lanczos", "not-a-solver"]
    assert solvers.get("my-lanczos", tol=1e-2).tol == 1e-2
    with pytest.raises(TypeError, match="not a subclass"):
        solvers.get("not-a-solver")
    with pytest.raises(solvers.UnknownSolverError, match="unknown solver 'nope'; available: "
                       "lanczos, power"):
        solvers.solver_class("nope")


# -- problems ---------------------------------------------------------------------------------
def tiny_quadratic(n: int = 20, seed: int = 0) -> problems.QuadraticProblem:
    from hessbench.problems.quadratic import quadratic

    return quadratic("tiny-quadratic", n, 30, rank=2, seed=seed)


def test_problem_plugins_options_and_bad_options(plugins):
    plugins("hessbench.problems", "tiny-quadratic", "tiny", tiny_quadratic)
    assert problems.available()[-1] == "tiny-quadratic"
    assert problems.options("tiny-quadratic") == {"n": 20, "seed": 0}
    prob = problems.get("tiny-quadratic", n=24)
    assert prob.name == "tiny-quadratic" and prob.config["n"] == 24
    with pytest.raises(ValueError, match=r"^problem 'tiny-quadratic' has no option 'depth'; its "
                       r"options: n=20, seed=0$"):
        problems.get("tiny-quadratic", depth=3)
    with pytest.raises(problems.UnknownProblemError, match="unknown problem 'mnist'; available: "
                       "quadratic-small, quadratic, "):
        problems.get("mnist")


def test_problem_options_come_from_the_factory_signatures():
    assert problems.options("quadratic-small") == {"n": 200, "num_samples": 1_000,
                                                   "noise": 400.0, "rank": 16, "seed": 0}
    assert problems.options("quadratic-1m")["n"] == 1_000_000
    assert problems.options("digits-mlp") == {}
    assert problems.options("cifar10-resnet18") == {"subset": None, "epochs": 10,
                                                    "data_dir": None, "download": False,
                                                    "seed": 0}
    prob = problems.get("quadratic", noise=3.0, rank=4, seed=5)
    assert {k: prob.config[k] for k in ("n", "noise", "rank", "seed")} == {
        "n": 10_000, "noise": 3.0, "rank": 4, "seed": 5}
    with pytest.raises(ValueError, match="its options: "):
        problems.get("digits-mlp", seed=1)


@pytest.mark.parametrize("factory, message", [
    (lambda **kw: None, "keyword options with defaults"),
    (lambda n: None, r"\['n'\] must be keyword options"),
    (42, "not a factory"),
])
def test_bad_problem_plugins_are_rejected(plugins, factory, message):
    plugins("hessbench.problems", "bad", "bad", factory)
    with pytest.raises(TypeError, match=message):
        problems.get("bad")


def test_a_problem_factory_must_return_a_problem(plugins):
    plugins("hessbench.problems", "not-a-problem", "f", lambda: "a string")
    with pytest.raises(TypeError, match="returned str, not a hessbench.problems.Problem"):
        problems.get("not-a-problem")


# -- backends ---------------------------------------------------------------------------------
def dense_backend(parts, *, dtype, device=None):
    """A third-party backend: the problem's Hessian as an explicit NumPy matrix."""
    from hessbench.reference import dense_hessian

    return DenseOperator(dense_hessian(parts).astype(dtype), num_samples=len(parts.inputs))


def test_backend_plugin_builds_the_operator_of_a_problem(plugins, capsys):
    from hessbench.cli import main

    plugins("hessbench.backends", "dense", "dense_backend", dense_backend)
    assert backends.available() == ["torch", "jax", "dense"]
    assert main(["backends"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in listed] == [
        ["torch", "built-in:"], ["jax", "built-in:"], ["dense", "plugin:"]]
    prob = problems.get("quadratic-small", n=20, num_samples=30)
    op = prob.operator("dense", progress=False)
    assert isinstance(op, DenseOperator) and op.size == 20 and op.num_samples == 30
    ev = np.linalg.eigvalsh(op.matrix)[::-1]
    np.testing.assert_allclose(ev, prob.eigenvalues(), atol=1e-10)
    torch_op = prob.operator("torch", progress=False)
    v = np.random.default_rng(0).standard_normal(20)
    np.testing.assert_allclose(torch_op.matvec(torch_op.asarray(v)).numpy(), op.matrix @ v,
                               atol=1e-10)


def test_unknown_and_bad_backends(plugins):
    prob = problems.get("quadratic-small", n=20, num_samples=30)
    with pytest.raises(backends.UnknownBackendError, match="unknown backend 'tensorflow'; "
                       "available: torch, jax"):
        prob.operator("tensorflow")
    err = backends.UnknownBackendError("x")
    assert isinstance(err, KeyError) and isinstance(err, ValueError)  # ValueError as before
    plugins("hessbench.backends", "not-callable", "nc", 3)
    plugins("hessbench.backends", "wrong-type", "wt", lambda parts, *, dtype, device: "an op")
    with pytest.raises(TypeError, match="not an operator factory"):
        prob.operator("not-callable")
    with pytest.raises(TypeError, match="built str, not an HVPOperator"):
        prob.operator("wrong-type", progress=False)
