import os

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    """Checkpoints and references go to a per-session folder (or $HESSBENCH_TEST_CACHE)."""
    path = os.environ.get("HESSBENCH_TEST_CACHE") or str(tmp_path_factory.mktemp("cache"))
    old = os.environ.get("HESSBENCH_CACHE")
    os.environ["HESSBENCH_CACHE"] = path
    yield path
    if old is None:
        os.environ.pop("HESSBENCH_CACHE", None)
    else:
        os.environ["HESSBENCH_CACHE"] = old


def known_spectrum_matrix(eigenvalues, seed=0):
    """Q diag(eigenvalues) Q^T for a random orthogonal Q (float64 NumPy)."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(lam), len(lam))))
    return (Q * lam) @ Q.T


@pytest.fixture
def small_mlp_problem():
    """A tiny float64 tanh MLP with 53 samples (uneven last batch for batch_size=16)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    model = model.double()
    x = torch.randn(53, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (53,))
    return model, torch.nn.functional.cross_entropy, x, y
