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
def one_torch_thread():
    """One torch thread for tiny products (OpenMP threads only spin on shared cores);
    the thread count is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small_mlp_problem():
    """A tiny float64 tanh MLP with 53 samples (uneven last batch for batch_size=16)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    model = model.double()
    x = torch.randn(53, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (53,))
    return model, torch.nn.functional.cross_entropy, x, y


def tiny_jax_mlp(n=53, seed=0):
    """A user's JAX model: params a nested pytree, loss the batch-mean cross-entropy."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    params = {"hidden": (rng.standard_normal((6, 5)), np.zeros(5)),
              "out": {"w": rng.standard_normal((5, 3)) / 2, "b": np.full(3, 0.1)}}
    x, y = rng.standard_normal((n, 6)), rng.integers(0, 3, n)

    def loss_fn(p, batch):
        inputs, targets = batch
        w1, b1 = p["hidden"]
        logits = jnp.tanh(inputs @ w1 + b1) @ p["out"]["w"] + p["out"]["b"]
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, targets[:, None], axis=1))

    return loss_fn, params, x, y
