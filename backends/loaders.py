"""Which samples a data loader yields: the sample set of a PyTorch ``HessianOperator``.

The operator is the Hessian of the mean loss over exactly the samples one pass over ``data``
yields, so N and the mini-batch index map must describe that pass, and every pass must yield
the same multiset of samples (in any order). :func:`loader_samples` works this out without
loading data where it can:

- a ``DataLoader`` over a map-style dataset with torch's ``BatchSampler`` (``batch_size`` set):
  the sample set is the sampler's, read from its type without drawing random numbers:
  ``SequentialSampler`` (all samples, in order), ``RandomSampler`` without replacement and
  without ``num_samples`` (all samples, shuffled), ``SubsetRandomSampler`` (its ``indices``,
  shuffled), ``DistributedSampler`` (this replica's shard for the current epoch, in its fixed
  order). ``RandomSampler(replacement=True)`` or ``num_samples=k``, ``WeightedRandomSampler``
  and a ``DistributedSampler`` that pads the data with duplicates are refused. Any other sampler
  (and a custom ``batch_sampler``) is iterated twice, which is cheap (indices, no data): it is
  accepted when both passes give the same multiset of indices, else refused.
  ``drop_last=True`` drops the last len % batch_size indices of each pass: with a fixed order
  they are the same samples every pass and are left out of N; with a shuffling sampler they
  differ every pass (the Hessian would change between products), so it is refused unless
  nothing is dropped.
  Mini-batch index j (0 <= j < N) is dataset index ``sample_ids[j]``: the sampler's index list
  (its ``indices``, or ``range(len(dataset))``), truncated as ``drop_last`` does.
- a ``DataLoader`` over an ``IterableDataset``, or any other re-iterable of
  ``(inputs, targets)`` batches (a list, ...): one pass is counted; no mini-batches (no random
  access). A one-shot iterator (a generator) is refused: the second product would see nothing.

Refusals raise :class:`UnsupportedLoaderError` naming the option (``drop_last``, ``sampler``,
``batch_sampler``, ``batch_size``) and what to do instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import (BatchSampler, DataLoader, IterableDataset, RandomSampler,
                              SequentialSampler, SubsetRandomSampler, WeightedRandomSampler,
                              default_collate)
from torch.utils.data.distributed import DistributedSampler

from hessbench.errors import InputError

__all__ = ["LoaderSamples", "UnsupportedLoaderError", "batch_length", "loader_samples"]

_TENSORS = "pass the samples as a pair of tensors (inputs, targets)"


class UnsupportedLoaderError(InputError):
    """A data loader whose passes do not yield one fixed set of samples (or that the operator
    cannot read); the message names the loader option and the fix."""


@dataclass(frozen=True)
class LoaderSamples:
    """What one pass over the data yields.

    ``num_samples``: N, samples per pass (a repeated index counts each time).
    ``sample_ids``: dataset indices of the N samples (mini-batch index j -> ``dataset[ids[j]]``),
    or None when the data allow no random access. ``collate_fn`` builds a batch from samples.
    ``shuffled``: whether passes visit the samples in different orders.
    """

    num_samples: int
    sample_ids: np.ndarray | None
    dataset: Any = None
    collate_fn: Callable[[list[Any]], Any] = default_collate
    shuffled: bool = False
    description: str = "the data"


def batch_length(targets: Any) -> int:
    """Samples in a batch: the length of its targets' leading axis."""
    shape = getattr(targets, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    if isinstance(targets, dict) and targets:
        return batch_length(next(iter(targets.values())))
    try:
        return len(targets)
    except TypeError:
        raise UnsupportedLoaderError(
            f"cannot tell how many samples a batch holds: its targets are "
            f"{type(targets).__name__} with no leading axis; batches must be (inputs, targets) "
            "with targets of shape (batch, ...)") from None


def loader_samples(data: Iterable[Any]) -> LoaderSamples:
    """The samples one pass over ``data`` yields (see the module docstring); raises
    :class:`UnsupportedLoaderError` when passes would differ."""
    if not isinstance(data, DataLoader):
        if iter(data) is data:
            raise UnsupportedLoaderError(
                f"data is a one-shot iterator ({type(data).__name__}): every product is a full "
                "pass over the data, so the second one would see no samples; pass a list of "
                "(inputs, targets) batches, a DataLoader, or the samples as a pair of tensors")
        return _counted(data, f"the iterable of batches ({type(data).__name__})")
    if isinstance(data.dataset, IterableDataset):
        return _counted(data, f"the DataLoader over {type(data.dataset).__name__}")
    if data.batch_sampler is None:
        raise UnsupportedLoaderError(
            "DataLoader(batch_size=None) yields single samples, not (inputs, targets) batches; "
            "give it a batch_size (any size: the operator weights each batch by its size)")
    dataset, collate = data.dataset, data.collate_fn
    if type(data.batch_sampler) is not BatchSampler:
        ids, fixed_order = _iterated(data.batch_sampler, "batch_sampler", flatten=True)
        what = f"the DataLoader's batch_sampler ({type(data.batch_sampler).__name__})"
    else:
        sampler, drop_last = data.batch_sampler.sampler, data.batch_sampler.drop_last
        ids, fixed_order = _sampler_ids(sampler)
        batch = data.batch_sampler.batch_size
        dropped = len(ids) % batch if drop_last else 0
        if dropped and not fixed_order:
            raise UnsupportedLoaderError(
                f"DataLoader(drop_last=True) with a shuffling sampler ({type(sampler).__name__})"
                f" drops a different {dropped} of the {len(ids)} samples on every pass "
                f"({len(ids)} is not a multiple of batch_size={batch}), so the Hessian would "
                "change between products; set drop_last=False (the operator weights an uneven "
                "last batch exactly) or use a sampler with a fixed order (shuffle=False)")
        ids = ids[: len(ids) - dropped]  # a fixed order drops the same samples every pass
        what = (f"the DataLoader with {type(sampler).__name__}, batch_size={batch}, "
                f"drop_last={drop_last}")
    if len(ids) == 0:
        raise UnsupportedLoaderError(f"{what} yields no samples; check drop_last and the sampler")
    return LoaderSamples(len(ids), ids, dataset, collate, not fixed_order, what)


def _counted(data: Iterable[Any], description: str) -> LoaderSamples:
    """One pass, counting samples: for data without a readable sample set."""
    count = sum(batch_length(batch[1]) for batch in data)
    return LoaderSamples(count, None, description=description)


def _sampler_ids(sampler: Any) -> tuple[np.ndarray, bool]:
    """(dataset indices one pass visits, in a reference order; whether every pass visits them
    in that same order)."""
    name = type(sampler).__name__
    if type(sampler) is SequentialSampler:
        return np.arange(len(sampler.data_source)), True
    if type(sampler) is RandomSampler:
        if sampler.replacement:
            raise UnsupportedLoaderError(
                "sampler=RandomSampler(replacement=True) draws a new random multiset of samples "
                "on every pass, so each product would be a different matrix; use "
                "RandomSampler(replacement=False) (shuffle=True), a SubsetRandomSampler of a "
                "fixed subset, or " + _TENSORS)
        if sampler.num_samples != len(sampler.data_source):
            raise UnsupportedLoaderError(
                f"sampler=RandomSampler(num_samples={sampler.num_samples}) visits a random "
                f"{sampler.num_samples} of the {len(sampler.data_source)} samples per pass, a "
                "different set each time; fix the subset with SubsetRandomSampler(indices) "
                "or drop num_samples")
        return np.arange(len(sampler.data_source)), False
    if isinstance(sampler, WeightedRandomSampler):
        raise UnsupportedLoaderError(
            f"sampler=WeightedRandomSampler draws {sampler.num_samples} samples at random by "
            "weight on every pass, a different multiset each time; for the Hessian of a "
            "weighted loss put the weights in loss_fn, or fix the draw once with "
            "SubsetRandomSampler(indices)")
    if isinstance(sampler, SubsetRandomSampler):
        return _as_ids(sampler.indices, name), False
    if isinstance(sampler, DistributedSampler):
        return _distributed_ids(sampler), True
    ids, fixed_order = _iterated(sampler, "sampler")
    indices = getattr(sampler, "indices", None)
    if indices is not None:  # a fixed index list: mini-batch index j is indices[j]
        try:
            listed = _as_ids(indices, name)
        except UnsupportedLoaderError:
            listed = None
        if listed is not None and Counter(listed.tolist()) == Counter(ids.tolist()):
            return listed, fixed_order and bool(np.array_equal(listed, ids))
    return ids, fixed_order


def _distributed_ids(sampler: DistributedSampler) -> np.ndarray:
    n, replicas = len(sampler.dataset), sampler.num_replicas
    if not sampler.drop_last and n % replicas:
        pad = sampler.total_size - n
        raise UnsupportedLoaderError(
            f"sampler=DistributedSampler(num_replicas={replicas}, drop_last=False) pads the "
            f"{n} samples to {sampler.total_size} (a multiple of num_replicas) by repeating "
            f"{pad} of them, so those samples count twice and bias the Hessian; construct it "
            f"with drop_last=True (each replica gets {n // replicas} distinct samples), or use "
            f"a num_replicas that divides {n}, or give each replica its own shard as tensors "
            "or a SubsetRandomSampler")
    # a fixed order for a fixed epoch (shuffling is seeded by seed + epoch): no RNG is drawn
    return np.fromiter(iter(sampler), dtype=np.int64)


def _iterated(sampler: Any, option: str, flatten: bool = False) -> tuple[np.ndarray, bool]:
    """Iterate a sampler (or batch sampler) twice: its indices and whether the order repeats;
    refuse it when the two passes visit different multisets of samples."""
    def one_pass() -> list[int]:
        items = (i for b in sampler for i in b) if flatten else iter(sampler)
        return [int(i) for i in items]

    try:
        first, second = one_pass(), one_pass()
    except TypeError as err:
        raise UnsupportedLoaderError(
            f"{option}={type(sampler).__name__} does not yield integer sample indices"
            f"{' in batches' if flatten else ''} ({err}); {_TENSORS}") from None
    if Counter(first) != Counter(second):
        raise UnsupportedLoaderError(
            f"{option}={type(sampler).__name__} visited different samples in two passes "
            f"({len(first)} and {len(second)} indices, not the same multiset), so each "
            "product would be a different matrix; use a sampler with a fixed sample set "
            "(SequentialSampler, RandomSampler without replacement, SubsetRandomSampler) "
            f"with DataLoader(batch_size=...), or {_TENSORS}")
    return np.asarray(first, dtype=np.int64), first == second


def _as_ids(indices: Any, name: str) -> np.ndarray:
    try:
        ids = np.asarray(indices.tolist() if hasattr(indices, "tolist") else list(indices))
    except TypeError:
        ids = np.zeros((0, 0))
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise UnsupportedLoaderError(
            f"sampler={name} has indices that are not a 1-D list of integer sample indices")
    return ids.astype(np.int64)
