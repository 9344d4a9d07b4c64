"""The peer adapters (hessbench.peers): answers against the dense float64 Hessian of a tiny MLP,
every peer product metered (checked against independent counts), the peers' defaults kept,
unsupported ends and PyHessian's SLQ failure reported honestly, missing peers unavailable."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hessbench import solvers
from hessbench.errors import InputError
from hessbench.registry import MissingDependencyError

INSTALL = "pip install 'hessbench[peers]'"
ROOT = Path(__file__).resolve().parents[1]


def need(module):
    return pytest.importorskip(module, reason=f"{module} not installed: {INSTALL}")


@pytest.fixture
def op_and_dense(small_mlp_problem, one_torch_thread):
    """The 53-parameter MLP's torch operator (batches of 16: a ragged last batch) and the
    eigenvalues of its dense Hessian."""
    from hessbench.backends.torch import HessianOperator

    model, loss, x, y = small_mlp_problem
    op = HessianOperator(model, loss, (x, y), batch_size=16)
    H = torch.stack([op.matvec(e) for e in torch.eye(op.size, dtype=torch.float64)], 1)
    lam = np.linalg.eigvalsh(((H + H.T) / 2).numpy())
    assert lam[-1] > abs(lam[0])  # largest magnitude is lambda_max here
    return op, lam[-1], lam[0]


def rel(a, b):
    return abs(a - b) / abs(b)


def test_pyhessian_power_defaults_and_unsupported_min(op_and_dense, monkeypatch):
    need("pyhessian")
    op, lmax, _ = op_and_dense
    grads = []
    real = torch.autograd.grad

    def counting(outputs, inputs, grad_outputs=None, **kw):  # independent count of HVPs
        grads.append(grad_outputs is not None)
        return real(outputs, inputs, grad_outputs=grad_outputs, **kw)

    monkeypatch.setattr(torch.autograd, "grad", counting)
    r = solvers.get("pyhessian-power").solve(op, seed=0)
    assert r.message.startswith("[PyHessian 0.1]")
    assert r.lambda_min is None and r.status == "failed" and "unsupported" in r.message
    assert rel(r.lambda_max, lmax) < 1e-2  # tol 1e-3 on the change, not the error
    # N = 53 > batch 16: PyHessian's dataloader path, one autograd HVP per batch (4 batches)
    assert 4 * r.hvp_calls == sum(grads) and r.hvp_calls == r.data_passes < 100
    assert len(r.trace) == 1
    assert solvers.get("pyhessian-power").solve(op, which="max", seed=0).status == "converged"


def test_pyhessian_slq_fails_honestly_and_shim_runs(op_and_dense):
    need("pyhessian")
    op, lmax, lmin = op_and_dense
    r = solvers.get("pyhessian-slq").solve(op, seed=0)
    assert r.status == "failed" and r.lambda_max is None and r.lambda_min is None
    assert "torch.eig" in r.message or "removed" in r.message
    assert r.data_passes == 100  # its 100 Lanczos products were paid before torch.eig raised
    s = solvers.get("pyhessian-slq-shimmed").solve(op, seed=0)
    assert s.status == "max_steps" and "ours" in s.message
    assert abs(s.lambda_max - lmax) < 1e-5 * lmax and abs(s.lambda_min - lmin) < 1e-5 * lmax
    assert not hasattr(torch, "eig") or torch.eig is not None  # torch left as it was
    shifted = solvers.get("pyhessian-power-shifted").solve(op, seed=0)
    assert "ours" in shifted.message and rel(shifted.lambda_min, lmin) < 5e-2


def test_eigenthings_lanczos_faithful_defaults(op_and_dense, monkeypatch):
    et = need("hessian_eigenthings")
    op, lmax, lmin = op_and_dense
    calls = []
    real = et.HessianOperator._hvp_autograd
    monkeypatch.setattr(et.HessianOperator, "_hvp_autograd",
                        lambda self, v, b: calls.append(len(b[0])) or real(self, v, b))
    r = solvers.get("eigenthings-lanczos").solve(op, seed=0)
    # k=10 -> max_iter = 20 steps per call, LA then SA; N = 53 is prime: one batch of 53
    assert r.hvp_calls == r.data_passes == 40 and calls == [53] * 40
    assert r.message.startswith("[hessian-eigenthings 1.0.0a5]")
    assert rel(r.lambda_max, lmax) < 1e-6 and rel(r.lambda_min, lmin) < 1e-3
    careful = solvers.get("eigenthings-lanczos-careful").solve(op, seed=0)
    assert careful.status == "converged" and careful.hvp_calls <= op.size
    assert rel(careful.lambda_max, lmax) < 1e-8 and rel(careful.lambda_min, lmin) < 1e-8


def test_eigenthings_equal_weights_need_equal_batches(op_and_dense):
    et = need("hessian_eigenthings")
    from hessbench.peers._counting import torch_parts

    op, _, _ = op_and_dense
    parts = torch_parts(op, "test")
    v = torch.randn(op.size, dtype=torch.float64)
    exact = op.matvec(v)
    loss = et.supervised_loss(parts.loss_fn)
    ragged = et.HessianOperator(parts.model, parts.batches(16), loss).matvec(v)
    equal = et.HessianOperator(parts.model, parts.equal_batches(), loss).matvec(v)
    assert torch.allclose(equal, exact, rtol=1e-10, atol=1e-12)
    assert (ragged - exact).norm() > 1e-3 * exact.norm()  # 16,16,16,5 weighted 1/4 each
    r = solvers.get("eigenthings-lanczos-ragged").solve(op, seed=0)
    assert r.solver == "eigenthings-lanczos-ragged"


def test_eigenthings_power_counts_and_unsupported_min(op_and_dense):
    need("hessian_eigenthings")
    op, lmax, _ = op_and_dense
    r = solvers.get("eigenthings-power-careful").solve(op, seed=0)
    assert r.lambda_min is None and "unsupported" in r.message
    assert f"{r.hvp_calls} products" in r.message and rel(r.lambda_max, lmax) < 1e-2
    r = solvers.get("eigenthings-power").solve(op, which="max", seed=0)
    assert r.hvp_calls <= 1000 and rel(r.lambda_max, lmax) < 1e-3


def test_curvlinops_eigsh_counts_every_product(op_and_dense, monkeypatch):
    need("curvlinops")
    from scipy.sparse.linalg import LinearOperator

    import hessbench.peers.curvlinops as adapter

    op, lmax, lmin = op_and_dense
    counted = []
    real = adapter.eigsh

    def counting_eigsh(A, **kw):  # counts the matvecs ARPACK asks for, independently
        n = [0]

        def mv(x):
            n[0] += 1
            return A.matvec(x)

        try:
            return real(LinearOperator(A.shape, matvec=mv, dtype=A.dtype), **kw)
        finally:
            counted.append(n[0])

    monkeypatch.setattr(adapter, "eigsh", counting_eigsh)
    r = solvers.get("curvlinops-eigsh", check_deterministic=False).solve(op, seed=0)
    assert r.hvp_calls == r.data_passes == sum(counted) > 40  # tol=0: restarts past ncv=20
    assert r.status == "converged" and rel(r.lambda_max, lmax) < 1e-10
    assert rel(r.lambda_min, lmin) < 1e-10
    counted.clear()
    probe = solvers.get("curvlinops-eigsh-careful").solve(op, which="max", seed=0)
    assert probe.hvp_calls == sum(counted) + 2  # curvlinops' determinism probe: 2 products
    assert "curvlinops-for-pytorch 3.0.1" in probe.message
    be = solvers.get("curvlinops-eigsh-be").solve(op, seed=0, budget={"max_passes": 5})
    assert be.status == "budget" and be.data_passes <= 5


def test_same_seed_same_answer_and_non_torch_refused(op_and_dense):
    need("hessian_eigenthings")
    from hessbench.backends.dense import DenseOperator

    op, _, _ = op_and_dense
    a = solvers.get("eigenthings-lanczos").solve(op, seed=3)
    b = solvers.get("eigenthings-lanczos").solve(op, seed=3)
    assert a.lambda_max == b.lambda_max and a.lambda_min == b.lambda_min
    cut = solvers.get("eigenthings-lanczos").solve(op, seed=3, budget={"max_passes": 25})
    assert cut.status == "budget" and cut.data_passes == 25 and cut.lambda_min is None
    assert cut.lambda_max == a.lambda_max and cut.message.startswith("[hessian-eigenthings")
    assert len(cut.trace) == 1 and cut.trace[0].lambda_max == a.lambda_max
    with pytest.raises(InputError, match="torch operator"):
        solvers.get("eigenthings-lanczos").solve(DenseOperator(np.eye(4)), seed=0)


def test_missing_peer_is_unavailable_with_install_command(monkeypatch, capsys):
    for mod in ("pyhessian", "pyhessian.hessian", "pyhessian.utils"):
        monkeypatch.setitem(sys.modules, mod, None)  # import fails as if not installed
    monkeypatch.delitem(sys.modules, "hessbench.peers.pyhessian", raising=False)
    with pytest.raises(MissingDependencyError, match=r"pip install 'hessbench\[peers\]'"):
        solvers.solver_class("pyhessian-power")
    from hessbench.cli import main

    main(["solvers"])
    line = next(l for l in capsys.readouterr().out.splitlines()
                if l.startswith("pyhessian-power "))
    assert "unavailable" in line and INSTALL in line


def test_peers_report_script_tiny(tmp_path):
    need("hessian_eigenthings")
    out = tmp_path / "report"
    cmd = [sys.executable, str(ROOT / "scripts" / "peers_report.py"), "--problems",
           "quadratic-small", "--seeds", "0", "--solvers", "eigenthings-lanczos",
           "--ours", "lanczos", "--runs", str(tmp_path / "runs"), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    text = (out / "README.md").read_text()
    assert "eigenthings-lanczos" in text and "lanczos" in text
    import json

    data = json.loads((out / "data.json").read_text())
    assert {r["solver"] for r in data["rows"]} == {"lanczos", "eigenthings-lanczos"}
    assert data["peer_versions"]["hessian-eigenthings"] == "1.0.0a5"
