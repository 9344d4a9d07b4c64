"""Issue 11 faults of the PyTorch operator's data handling, each reproduced and checked against
independent truth (torch.func.hessian of the mean loss over exactly the samples a loader yields):
loaders that drop or subsample samples, loaders whose passes differ, non-deterministic products
(the determinism probe), and train-mode BatchNorm."""

import itertools

import numpy as np
import pytest
import torch
from torch.func import functional_call, hessian
from torch.utils.data import (DataLoader, Dataset, RandomSampler, SubsetRandomSampler,
                              TensorDataset, WeightedRandomSampler)
from torch.utils.data.distributed import DistributedSampler

from hessbench.backends.base import NonDeterministicHVPError, NonFiniteHVPError
from hessbench.backends.loaders import UnsupportedLoaderError
from hessbench.backends.torch import HessianOperator
from hessbench.errors import InputError

N = 64
ce = torch.nn.functional.cross_entropy


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def problem():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(),
                                torch.nn.Linear(5, 3)).double()
    x, y = torch.randn(N, 6, dtype=torch.float64), torch.randint(0, 3, (N,))
    return model, x, y


def dense(model, op, x, y, ids):
    """Independent truth: the dense Hessian of the mean loss over samples ``ids`` (repeats
    counted), by torch.func.hessian."""
    ids = torch.as_tensor(np.asarray(ids))

    def f(flat):
        return ce(functional_call(model, op.unflatten(flat), (x[ids],)), y[ids])
    return hessian(f)(op.theta)


def rel(a, b):
    return (torch.linalg.norm(a - b) / torch.linalg.norm(b)).item()


def vector(op, seed=1):
    return op.random_vector(np.random.default_rng(seed))


# -- loaders: N and every product cover exactly the yielded samples --------------------------
def test_drop_last_in_order_covers_exactly_the_yielded_samples(problem):
    """Was: N = len(dataset) = 64 while products covered 60 samples (a scaled, wrong H)."""
    model, x, y = problem
    op = HessianOperator(model, ce, DataLoader(TensorDataset(x, y), batch_size=10,
                                               drop_last=True))
    assert op.num_samples == 60
    v = vector(op)
    assert rel(op.matvec(v), dense(model, op, x, y, range(60)) @ v) < 1e-12
    S = np.array([59, 0, 17])
    assert rel(op.matvec(v, indices=S), dense(model, op, x, y, S) @ v) < 1e-12
    with pytest.raises(IndexError, match=r"\[0, 59\]"):
        op.matvec(v, indices=[60])  # sample 60 is never yielded


def test_drop_last_with_shuffle_is_refused_unless_nothing_is_dropped(problem):
    model, x, y = problem
    ds = TensorDataset(x, y)
    with pytest.raises(UnsupportedLoaderError, match=r"DataLoader\(drop_last=True\) with a "
                       r"shuffling sampler \(RandomSampler\) drops a different 4 of the 64"):
        HessianOperator(model, ce, DataLoader(ds, batch_size=10, shuffle=True, drop_last=True))
    op = HessianOperator(model, ce, DataLoader(ds, batch_size=16, shuffle=True, drop_last=True))
    v = vector(op)
    assert op.num_samples == N and rel(op.matvec(v), dense(model, op, x, y, range(N)) @ v) < 1e-12


def test_shuffled_uneven_batches_pass_the_probe_and_give_the_full_hessian(problem):
    """No false alarm: reshuffling only reorders the sum (rounding, far below tolerance)."""
    model, x, y = problem
    op = HessianOperator(model, ce, DataLoader(TensorDataset(x, y), batch_size=10, shuffle=True))
    v = vector(op)
    assert rel(op.matvec(v), dense(model, op, x, y, range(N)) @ v) < 1e-12
    S = np.array([3, 63, 3])  # index j is dataset sample j (RandomSampler over all samples)
    assert rel(op.matvec(v, indices=S), dense(model, op, x, y, S) @ v) < 1e-12


def test_subset_random_sampler_covers_the_subset_and_minibatches_map_into_it(problem):
    """Was: N = 64 while products covered 32 samples (lambda_max 0.327 instead of 0.653)."""
    model, x, y = problem
    subset = np.random.default_rng(3).choice(N, size=32, replace=False)  # unsorted
    loader = DataLoader(TensorDataset(x, y), batch_size=10,
                        sampler=SubsetRandomSampler(subset.tolist()))
    op = HessianOperator(model, ce, loader)
    assert op.num_samples == 32
    v = vector(op)
    assert rel(op.matvec(v), dense(model, op, x, y, subset) @ v) < 1e-12
    S = np.array([0, 5, 31, 5])  # positions in the sampler's index list
    assert rel(op.matvec(v, indices=S), dense(model, op, x, y, subset[S]) @ v) < 1e-12
    lam = torch.linalg.eigvalsh(dense(model, op, x, y, subset))[-1].item()
    from scipy.sparse.linalg import eigsh
    got = eigsh(op.to_scipy(), k=1, which="LA", return_eigenvectors=False,
                v0=np.ones(op.size))[0]
    assert got == pytest.approx(lam, rel=1e-10)


def test_a_fixed_custom_sampler_is_accepted_and_a_random_one_refused(problem):
    model, x, y = problem
    ds, order = TensorDataset(x, y), [5, 2, 9, 2, 40]  # a plain list: a fixed custom sampler
    op = HessianOperator(model, ce, DataLoader(ds, batch_size=2, sampler=order))
    v = vector(op)
    assert op.num_samples == 5 and rel(op.matvec(v), dense(model, op, x, y, order) @ v) < 1e-12
    assert rel(op.matvec(v, indices=[1, 4]), dense(model, op, x, y, [2, 40]) @ v) < 1e-12

    class RandomHalf(torch.utils.data.Sampler):
        def __len__(self):
            return N // 2

        def __iter__(self):
            return iter(torch.randperm(N)[: N // 2].tolist())

    with pytest.raises(UnsupportedLoaderError, match="sampler=RandomHalf visited different "
                       "samples in two passes"):
        HessianOperator(model, ce, DataLoader(ds, batch_size=8, sampler=RandomHalf()))


@pytest.mark.parametrize("sampler, phrase", [
    (lambda ds: RandomSampler(ds, replacement=True), r"sampler=RandomSampler\(replacement=True"),
    (lambda ds: RandomSampler(ds, num_samples=20), r"sampler=RandomSampler\(num_samples=20\) "
     "visits a random 20 of the 64"),
    (lambda ds: WeightedRandomSampler(torch.ones(N), N), "sampler=WeightedRandomSampler draws"),
])
def test_samplers_without_a_fixed_sample_set_are_refused(problem, sampler, phrase):
    model, x, y = problem
    ds = TensorDataset(x, y)
    with pytest.raises(UnsupportedLoaderError, match=phrase) as err:
        HessianOperator(model, ce, DataLoader(ds, batch_size=10, sampler=sampler(ds)))
    assert isinstance(err.value, InputError)


def test_distributed_sampler_padding_is_refused_and_its_shard_otherwise_used(problem):
    model, x, y = problem
    ds = TensorDataset(x, y)
    with pytest.raises(UnsupportedLoaderError, match=r"DistributedSampler\(num_replicas=5, "
                       r"drop_last=False\) pads the 64 samples to 65 .* repeating 1 of them.*"
                       r"drop_last=True \(each replica gets 12 distinct samples\)"):
        HessianOperator(model, ce, DataLoader(ds, batch_size=5,
                                              sampler=DistributedSampler(ds, 5, rank=0)))
    shard = DistributedSampler(ds, 5, rank=2, drop_last=True)
    op = HessianOperator(model, ce, DataLoader(ds, batch_size=5, sampler=shard))
    v, ids = vector(op), list(shard)
    assert op.num_samples == 12 and len(set(ids)) == 12
    assert rel(op.matvec(v), dense(model, op, x, y, ids) @ v) < 1e-12


def test_plain_iterables_are_counted_and_one_shot_iterators_refused(problem):
    model, x, y = problem
    batches = [(x[s:s + 10], y[s:s + 10]) for s in range(0, 50, 10)]  # 50 of the 64 samples
    op = HessianOperator(model, ce, batches)
    v = vector(op)
    assert op.num_samples == 50
    assert rel(op.matvec(v), dense(model, op, x, y, range(50)) @ v) < 1e-12
    with pytest.raises(InputError, match="mini-batch products need random access"):
        op.matvec(v, indices=[0])
    with pytest.raises(UnsupportedLoaderError, match="one-shot iterator"):
        HessianOperator(model, ce, iter(batches))


def test_a_loader_whose_passes_change_size_is_caught(problem):
    model, x, y = problem

    class Growing:
        """Yields one more batch on every pass."""
        passes = 0

        def __iter__(self):
            self.passes += 1
            return iter([(x[:10], y[:10])] * (2 + self.passes))

    with pytest.raises(UnsupportedLoaderError, match=r"the iterable of batches \(Growing\) yielded "
                       r"\d+ samples in this pass but \d+ when the operator was built"):
        HessianOperator(model, ce, Growing())


# -- the determinism probe ---------------------------------------------------------------------
class Augmented(Dataset):
    """Random augmentation: input noise drawn anew on every access."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] + 0.5 * torch.randn_like(self.x[i]), self.y[i]


def test_random_augmentation_is_caught_by_the_probe(problem):
    model, x, y = problem
    loader = DataLoader(Augmented(x, y), batch_size=10)
    unchecked = HessianOperator(model, ce, loader, check_deterministic=False)
    assert unchecked.meter.snapshot() == (0, 0)  # skipping the probe charges nothing
    v = vector(unchecked)
    assert rel(unchecked.matvec(v), unchecked.matvec(v)) > 0.05  # the fault: products differ
    with pytest.raises(NonDeterministicHVPError, match=r"one vector multiplied twice gave "
                       r"products \d\.\d\de-0[12] apart .* tolerance 2\.2e-13 for float64 .*"
                       r"random data augmentation") as err:
        HessianOperator(model, ce, loader)
    assert isinstance(err.value, InputError)


def test_dropout_in_train_mode_is_named_by_the_probe(problem):
    _, x, y = problem
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Dropout(0.5),
                                torch.nn.Linear(5, 3)).double()
    with pytest.raises(NonDeterministicHVPError, match=r"\(1\) the model's dropout layers "
                       r"'2' \(Dropout\) run in train mode because eval_mode=False"):
        HessianOperator(model, ce, (x, y), eval_mode=False)
    op = HessianOperator(model, ce, (x, y))  # eval mode: dropout off, deterministic
    v = vector(op)
    model.eval()
    assert rel(op.matvec(v), dense(model, op, x, y, range(N)) @ v) < 1e-12


def test_the_probe_costs_two_full_products_charged_to_the_meter(problem):
    model, x, y = problem
    op = HessianOperator(model, ce, (x, y), batch_size=16)
    assert op.meter.snapshot() == (2 * N, 2) and op.meter.data_passes == 2
    assert op.probe_determinism() == 0.0  # CPU: bitwise-equal products
    assert op.meter.snapshot() == (4 * N, 4)
    assert HessianOperator(model, ce, (x, y), check_deterministic=False).meter.snapshot() == (0, 0)


def test_a_nan_loss_is_left_to_the_products_error(problem):
    """The probe does not judge non-finite products; the first product reports them."""
    model, x, y = problem
    op = HessianOperator(model, lambda out, t: ce(out, t) * float("nan"), (x, y))
    with pytest.raises(NonFiniteHVPError):
        op.matvec(vector(op))


def test_jax_operator_runs_the_same_probe():
    jax = pytest.importorskip("jax")
    from conftest import tiny_jax_mlp

    from hessbench.backends.jax import HessianOperator as JaxOperator

    loss_fn, params, x, y = tiny_jax_mlp(20)
    op = JaxOperator(loss_fn, params, (x, y), batch_size=8)
    assert op.meter.snapshot() == (40, 2) and op.probe_determinism() == 0.0
    counter = itertools.count(1)

    def impure(p, batch):  # a host callback: the loss scale changes on every call
        scale = jax.pure_callback(lambda: np.float32(next(counter)),
                                  jax.ShapeDtypeStruct((), np.float32))
        return loss_fn(p, batch) * scale

    with pytest.raises(NonDeterministicHVPError, match=r"tolerance 1\.2e-04 for float32 .*"
                       r"\(1\) a loss_fn that is not a pure function"):
        JaxOperator(impure, params, (x, y), batch_size=8)
    skipped = JaxOperator(loss_fn, params, (x, y), batch_size=8, check_deterministic=False)
    assert skipped.meter.snapshot() == (0, 0)


# -- eval_mode=False and BatchNorm -------------------------------------------------------------
def test_batchnorm_with_batch_statistics_is_refused(problem):
    """Was: eval_mode=False with BatchNorm died in torch.func with an in-place RuntimeError."""
    _, x, y = problem
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5),
                                torch.nn.Linear(5, 3)).double()
    with pytest.raises(InputError, match=r"BatchNorm layers 1 \(BatchNorm1d\) would normalise "
                       r"with batch statistics \(eval_mode=False\): the loss is then not a mean "
                       "of per-sample losses"):
        HessianOperator(model, ce, (x, y), eval_mode=False)
    no_stats = torch.nn.Sequential(torch.nn.Linear(6, 5),
                                   torch.nn.BatchNorm1d(5, track_running_stats=False)).double()
    with pytest.raises(InputError, match=r"\(track_running_stats=False\)"):
        HessianOperator(no_stats, ce, (x, y))
    assert HessianOperator(model, ce, (x, y)).num_samples == N  # eval mode: running stats


def test_eval_mode_false_without_batch_statistics_is_the_dense_hessian(problem):
    model, x, y = problem
    op = HessianOperator(model, ce, (x, y), eval_mode=False, batch_size=16)
    v = vector(op)
    assert rel(op.matvec(v), dense(model, op, x, y, range(N)) @ v) < 1e-12
