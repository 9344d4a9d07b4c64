"""The operator conformance kit (backends.testing) and ``HVPOperator.to_scipy``: the torch, JAX
and dense operators pass every check against independent dense Hessians (torch.func.hessian,
jax.hessian, the matrix), deliberately broken operators fail the checks they break, and SciPy's
eigsh on ``op.to_scipy()`` finds lambda_max with every product charged to the meter."""

import numpy as np
import pytest
from conftest import tiny_jax_mlp
import torch
from scipy.sparse.linalg import eigsh
from torch.func import functional_call, hessian

from hessbench.backends.base import to_numpy
from hessbench.backends.dense import DenseOperator
from hessbench.backends.testing import CHECKS, check_operator, checks
from hessbench.backends.torch import HessianOperator

N = 53  # with batch_size 16: chunks 16 + 16 + 16 + 5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def torch_problem():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(),
                                torch.nn.Linear(5, 3)).double()
    x, y = torch.randn(N, 6, dtype=torch.float64), torch.randint(0, 3, (N,))
    return model, torch.nn.functional.cross_entropy, x, y


def torch_dense(model, loss_fn, x, y, op):
    """dense_hessian(indices) for the kit: torch.func.hessian of the mean loss, float64."""
    theta = op.theta.double()

    def dense_hessian(indices=None):
        idx = slice(None) if indices is None else torch.as_tensor(indices)

        def f(flat):
            state = {k: t.double() for k, t in op.unflatten(flat).items()}
            return loss_fn(functional_call(model, state, (x[idx],)), y[idx])
        return hessian(f)(theta).numpy()
    return dense_hessian


def nan_loss(loss_fn):
    return lambda *args: loss_fn(*args) * float("nan")


def torch_case(dtype, loader=False, cls=HessianOperator, **kwargs):
    model, loss_fn, x, y = torch_problem()
    data = (x, y)
    if loader:  # batches 10 * 5 + 3
        data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=10)
    dt = getattr(torch, dtype)
    op = cls(model, loss_fn, data, batch_size=16, dtype=dt, **kwargs)
    nan_op = HessianOperator(model, nan_loss(loss_fn), (x, y), batch_size=16, dtype=dt)
    return op, torch_dense(model, loss_fn, x, y, op), nan_op


def spd_matrix(n=12, seed=0):
    A = np.random.default_rng(seed).standard_normal((n, n))
    return (A + A.T) / 2


def dense_case(array, dtype):
    A = spd_matrix()
    M = torch.tensor(A).to(getattr(torch, dtype)) if array == "torch" else A.astype(dtype)
    nan = M * float("nan")
    return (DenseOperator(M, num_samples=7), lambda indices=None: A,
            DenseOperator(nan, num_samples=7))


# -- JAX: a small MLP with a jax.hessian reference, under x64 for this module only -----------
@pytest.fixture(scope="module")
def jax_x64():
    """float64 references (and operators) need x64: on for this module's JAX cases, then the
    flag is restored, so other test modules see it as it was."""
    jax = pytest.importorskip("jax")
    before = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", True)
    yield jax
    jax.config.update("jax_enable_x64", before)


def jax_case(jax, dtype):
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from hessbench.backends.jax import HessianOperator as JaxOperator

    loss_fn, params, x, y = tiny_jax_mlp(N)

    op = JaxOperator(loss_fn, params, (x, y), batch_size=16, dtype=dtype)
    theta, unravel = ravel_pytree(jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                                               op.unflatten(op.theta)))
    # every sample's Hessian by jax.hessian, once (one compile); H_S is their mean over S
    one = jax.hessian(lambda t, xi, yi: loss_fn(unravel(t), (xi[None], yi[None])))
    per_sample = np.asarray(jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))(theta, x, y))

    def dense_hessian(indices=None):
        return per_sample[slice(None) if indices is None else np.asarray(indices)].mean(axis=0)

    nan_op = JaxOperator(nan_loss(loss_fn), params, (x, y), batch_size=16, dtype=dtype)
    return op, dense_hessian, nan_op


CASES = ["dense-numpy-float64", "dense-numpy-float32", "dense-torch-float64", "torch-float64",
         "torch-float32", "torch-dataloader-float64", "jax-float64", "jax-float32"]


@pytest.fixture(scope="module", params=CASES)
def subject(request):
    """(operator, dense_hessian, NaN-loss operator), built once per case."""
    kind, *rest = request.param.split("-")
    if kind == "dense":
        return dense_case(*rest)
    if kind == "torch":
        return torch_case(rest[-1], loader=rest[0] == "dataloader")
    return jax_case(request.getfixturevalue("jax_x64"), rest[0])


@pytest.mark.parametrize("check", list(CHECKS))
def test_operators_pass_every_check(subject, check):
    op, dense_hessian, nan_op = subject
    CHECKS[check](op, dense_hessian, nan_operator=nan_op)


def test_check_operator_runs_all_checks_and_checks_yields_them():
    op, dense_hessian, nan_op = dense_case("numpy", "float64")
    check_operator(op, dense_hessian, nan_operator=nan_op)
    assert [name for name, _ in checks(op, dense_hessian)] == list(CHECKS)
    with pytest.raises(TypeError, match="HVPOperator instance"):
        check_operator(spd_matrix(), dense_hessian)
    with pytest.raises(TypeError, match="dense_hessian must be callable"):
        check_operator(op, spd_matrix())


# -- deliberately broken operators: the kit must catch each ---------------------------------
def failed_checks(op, dense_hessian, **options):
    with pytest.raises(AssertionError) as info:
        check_operator(op, dense_hessian, **options)
    message = str(info.value)
    assert message.startswith(f"operator {type(op).__module__}.{type(op).__qualname__} (n=")
    return {name for name in CHECKS if f"failed {name}:" in message}, message


class EqualBatchWeights(HessianOperator):
    """BROKEN: averages the chunks' products with equal weights 1/#chunks, not |b|/N."""

    def _accumulate(self, product, indices, shape):
        with self._mode():
            parts = [product(x, y) for (x, y), _ in self._batches(indices)]
        return sum(parts) / len(parts)


class MiniBatchOverN(HessianOperator):
    """BROKEN: divides a mini-batch product by N instead of |S| (the full product is right)."""

    def _accumulate(self, product, indices, shape):
        out = super()._accumulate(product, indices, shape)
        return out if indices is None else out * (len(indices) / self.num_samples)


class NoFiniteCheck(HessianOperator):
    """BROKEN: lets NaN products through."""

    @staticmethod
    def _check_finite(out, what):
        pass


def test_kit_catches_equal_batch_weights():
    failed, message = failed_checks(*torch_case("float64", cls=EqualBatchWeights)[:2])
    assert {"check_dense_agreement", "check_minibatch_weighting"} <= failed, message
    assert not failed & {"check_cost_meter", "check_input_errors", "check_dtypes"}, message
    assert "relative error" in message


def test_kit_catches_minibatch_products_weighted_by_n():
    failed, message = failed_checks(*torch_case("float64", cls=MiniBatchOverN)[:2])
    assert "check_minibatch_weighting" in failed and "check_dense_agreement" not in failed
    assert "indices = a random subset" in message


def test_kit_catches_a_nan_product_let_through():
    op, dense_hessian, nan_op = torch_case("float32", cls=NoFiniteCheck)
    failed, message = failed_checks(op, dense_hessian, nan_operator=nan_op)
    assert failed == {"check_non_finite"}, message
    assert "raised nothing, expected NonFiniteHVPError" in message


def test_kit_catches_dropout_in_train_mode_as_not_repeatable():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Dropout(0.5),
                                torch.nn.Linear(5, 3)).double()
    x, y = torch.randn(N, 6, dtype=torch.float64), torch.randint(0, 3, (N,))
    loss_fn = torch.nn.functional.cross_entropy
    op = HessianOperator(model, loss_fn, (x, y), batch_size=16, eval_mode=False,
                         check_deterministic=False)  # the probe would refuse it
    model.eval()  # the reference is the deterministic Hessian
    failed, message = failed_checks(op, torch_dense(model, loss_fn, x, y, op))
    assert "check_repeatability" in failed, message


class OneChargePerBlock(DenseOperator):
    """BROKEN meter: a matmat of k vectors is charged as one vector."""

    def matmat(self, V, indices=None):
        out = super().matmat(V, indices)
        k, samples = V.shape[1], self.num_samples if indices is None else len(indices)
        self.meter.samples -= (k - 1) * samples
        self.meter.hvp_calls -= k - 1
        return out


class UnmeteredScipy(DenseOperator):
    """BROKEN: its SciPy view calls the raw product, so the meter misses SciPy's products."""

    def to_scipy(self, indices=None):
        from scipy.sparse.linalg import LinearOperator

        return LinearOperator(self.shape, dtype=self.numpy_dtype,
                              matvec=lambda x: self._matvec(self.asarray(np.ravel(x)), indices),
                              matmat=lambda X: self._matmat(self.asarray(X), indices))


class Float64Out(DenseOperator):
    """BROKEN: a float32 operator whose products come back in float64."""

    def _matvec(self, v, indices):
        return (self.matrix @ v).astype(np.float64)


@pytest.mark.parametrize("cls, broken, phrase", [
    (OneChargePerBlock, {"check_cost_meter", "check_to_scipy"},
     "a full matmat of 3 vectors charged 7 samples and 1 HVP calls, expected 21 samples"),
    (UnmeteredScipy, {"check_to_scipy", "check_non_finite"},  # nor checks finiteness
     "charged 0 samples and 0 HVP calls, expected 7"),
    (Float64Out, {"check_dtypes", "check_to_scipy"}, "has dtype float64, expected op.dtype"),
])
def test_kit_catches_broken_meters_and_dtypes(cls, broken, phrase):
    A = spd_matrix()
    op = cls(A.astype(np.float32), num_samples=7)
    failed, message = failed_checks(op, lambda indices=None: A)
    assert failed == broken, message
    assert phrase in message


# -- to_scipy ---------------------------------------------------------------------------------
def test_eigsh_on_to_scipy_finds_lambda_max_and_the_meter_counts_every_product():
    op, dense_hessian, _ = torch_case("float64", check_deterministic=False)
    made = []  # counted independently of the meter: calls into the raw backend product
    raw = op._matvec
    op._matvec = lambda v, indices: (made.append(1), raw(v, indices))[1]
    v0 = np.random.default_rng(0).standard_normal(op.size)
    lam = eigsh(op.to_scipy(), k=1, which="LA", v0=v0, return_eigenvectors=False)[0]
    assert lam == pytest.approx(np.linalg.eigvalsh(dense_hessian())[-1], rel=1e-10)
    assert len(made) > 0 and op.meter.hvp_calls == len(made)
    assert op.meter.samples == N * len(made)


def test_to_scipy_dtypes_indices_and_complex_vectors():
    op, dense_hessian, _ = torch_case("float32", check_deterministic=False)
    A = op.to_scipy()
    assert A.shape == (op.size, op.size) and A.dtype == np.float32
    x = np.random.default_rng(1).standard_normal(op.size)
    H = dense_hessian()
    z = A.matvec(x + 2j * x)  # real and imaginary parts: two products
    assert np.allclose(z, (1 + 2j) * (H @ x), rtol=1e-4, atol=1e-5 * np.abs(H @ x).max())
    assert op.meter.hvp_calls == 2
    S = np.array([4, 9, 9, 30])
    out = op.to_scipy(indices=S) @ x
    assert out.dtype == np.float32 and op.meter.samples == 2 * N + len(S)
    assert np.allclose(out, dense_hessian(S) @ x, rtol=1e-4, atol=1e-5 * np.abs(out).max())
    with pytest.raises(IndexError, match="sample indices"):
        op.to_scipy(indices=[N])
    assert to_numpy(op.theta).dtype == np.float32


def test_to_scipy_of_a_jax_operator_returns_new_writable_numpy_arrays(jax_x64):
    import jax.numpy as jnp

    from hessbench.backends.jax import HessianOperator as JaxOperator

    A = spd_matrix(5)
    x = np.random.default_rng(0).standard_normal((N, 5))

    def loss_fn(w, batch):  # per-sample (x_i . w)^2 / 2 + w^T A w / 2: H = mean x x^T + A
        xs, _ = batch
        return jnp.mean((xs @ w) ** 2) / 2 + w @ (jnp.asarray(A) @ w) / 2

    op = JaxOperator(loss_fn, np.zeros(5), (x, np.zeros(N)), batch_size=16, dtype="float64",
                     check_deterministic=False)
    v = np.arange(5.0)
    out = op.to_scipy().matvec(v)
    assert type(out) is np.ndarray and out.flags.writeable and out.dtype == np.float64
    assert np.allclose(out, (x.T @ x / N + A) @ v, rtol=1e-12)
    assert op.meter.hvp_calls == 1 and op.meter.samples == N
