"""Tests for hessbench.resnet: sizes, shapes, determinism and torch.func compatibility."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, jvp

from hessbench.resnet import resnet18, resnet20

# torch.func.jvp's first call loads TorchScript decompositions, which warns inside torch.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny inputs gain nothing from intra-op threads, and oversubscribed cores make them very slow."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts():
    n20, n18 = n_params(resnet20()), n_params(resnet18())
    print(f"resnet20: {n20} parameters, resnet18: {n18} parameters")
    assert 260_000 <= n20 <= 280_000
    assert 11_100_000 <= n18 <= 11_200_000
    assert n_params(resnet20(num_classes=100)) == n20 + 90 * 65


@pytest.mark.parametrize("factory", [resnet20, resnet18])
def test_output_shape(factory):
    torch.manual_seed(0)
    model = factory()
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 10)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 10)
    assert factory(num_classes=7)(x).shape == (2, 7)


def test_deterministic_init():
    torch.manual_seed(123)
    a = resnet20().state_dict()
    torch.manual_seed(123)
    b = resnet20().state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = resnet20().state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def _hvp_check(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Relative error between forward-over-reverse (torch.func) and double-backward HVPs."""
    model = model.double().eval()
    x = x.double()
    # non-trivial BatchNorm running statistics
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    params = {k: p.detach() for k, p in model.named_parameters()}
    buffers = {k: b.detach() for k, b in model.named_buffers()}
    v = {k: torch.randn_like(p) for k, p in params.items()}

    def loss_fn(p):
        return F.cross_entropy(functional_call(model, (p, buffers), (x,)), y)

    _, hvp_func = jvp(grad(loss_fn), (params,), (v,))

    leaves = {k: p.clone().requires_grad_(True) for k, p in params.items()}
    g = torch.autograd.grad(loss_fn(leaves), list(leaves.values()), create_graph=True)
    hvp_ref = torch.autograd.grad(g, list(leaves.values()), grad_outputs=list(v.values()))

    a = torch.cat([hvp_func[k].flatten() for k in params])
    b = torch.cat([h.flatten() for h in hvp_ref])
    assert b.norm() > 0
    return ((a - b).norm() / b.norm()).item()


def test_hvp_forward_over_reverse_resnet20():
    torch.manual_seed(0)
    rel = _hvp_check(resnet20(), torch.randn(2, 3, 32, 32), torch.tensor([3, 7]))
    assert rel < 1e-6, rel


def test_hvp_forward_over_reverse_resnet18_small_input():
    # 16x16 input keeps this cheap (11M float64 parameters); the graph is the same as for 32x32.
    torch.manual_seed(0)
    rel = _hvp_check(resnet18(), torch.randn(1, 3, 16, 16), torch.tensor([4]))
    assert rel < 1e-6, rel
