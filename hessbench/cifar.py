"""CIFAR-10 loading from the standard python-pickle batches, plus synthetic stand-in data.

The real data set is never downloaded implicitly. Point the loader at an extracted
``cifar-10-python.tar.gz`` either by argument or via the environment variable
``HESSBENCH_CIFAR10_DIR``; :func:`download_cifar10` is an explicit opt-in helper that
needs torchvision and network access.
"""

from __future__ import annotations

import os
import pathlib
import pickle
from typing import Any, Sequence

import numpy as np
import torch

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10_URL",
    "ENV_VAR",
    "BATCHES_DIRNAME",
    "CifarDataError",
    "find_cifar10_dir",
    "load_cifar10",
    "write_cifar10_batches",
    "download_cifar10",
    "synthetic_cifar10",
]

#: Per-channel (R, G, B) mean of the CIFAR-10 training images, on the [0, 1] scale.
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
#: Per-channel (R, G, B) standard deviation of the CIFAR-10 training images, on the [0, 1] scale.
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ENV_VAR = "HESSBENCH_CIFAR10_DIR"
BATCHES_DIRNAME = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)
ROW_SIZE = 3 * 32 * 32
LABEL_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


class CifarDataError(RuntimeError):
    """CIFAR-10 files are missing, unreadable or malformed."""


def _how_to_get(hint_dir: str = "<dir>") -> str:
    return (
        f"To get CIFAR-10: download {CIFAR10_URL} and extract it so that "
        f"{hint_dir}/{BATCHES_DIRNAME}/data_batch_1 exists, then pass that directory "
        f"(by option, or via the environment variable {ENV_VAR}); or call "
        f"hessbench.cifar.download_cifar10({hint_dir!r}) where torchvision imports "
        f"and the network allows."
    )


def find_cifar10_dir(root: str | os.PathLike[str] | None) -> pathlib.Path:
    """Return the ``cifar-10-batches-py`` directory for ``root``.

    ``root`` may be that directory itself or its parent. If ``root`` is None the
    environment variable ``HESSBENCH_CIFAR10_DIR`` is used. Raises
    :class:`CifarDataError` (with instructions) when nothing usable is found.
    """
    if root is None:
        env = os.environ.get(ENV_VAR, "").strip()
        if not env:
            raise CifarDataError(
                f"No CIFAR-10 directory given and the environment variable {ENV_VAR} "
                f"is not set. {_how_to_get()}"
            )
        root = env
    path = pathlib.Path(root).expanduser()
    if not path.exists():
        raise CifarDataError(f"CIFAR-10 directory {str(path)!r} does not exist. {_how_to_get(str(path))}")
    if not path.is_dir():
        raise CifarDataError(f"CIFAR-10 path {str(path)!r} is not a directory. {_how_to_get()}")
    sub = path / BATCHES_DIRNAME
    if sub.is_dir():
        return sub
    names = (*TRAIN_FILES, TEST_FILE)
    if path.name == BATCHES_DIRNAME or any((path / n).is_file() for n in names):
        return path
    raise CifarDataError(
        f"{str(path)!r} contains neither a {BATCHES_DIRNAME!r} directory nor CIFAR-10 "
        f"batch files ({', '.join(names)}). {_how_to_get(str(path))}"
    )


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the globals a CIFAR-10 batch file needs.

    Pickle can run arbitrary code; a data file should only ever need numpy array
    reconstruction (and ``_codecs.encode`` for bytes pickled with protocol 2).
    """

    _ALLOWED = {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("numpy.core."):  # pickles made with numpy < 2 (incl. the official files)
            module = "numpy._core." + module[len("numpy.core.") :]
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name} in a CIFAR-10 batch file")
        return super().find_class(module, name)


def _read_batch(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate one batch file; returns (data uint8 (N, 3072), labels int64 (N,))."""
    if not path.is_file():
        raise CifarDataError(
            f"CIFAR-10 batch file {str(path)!r} is missing. {_how_to_get(str(path.parent.parent))}"
        )
    try:
        with open(path, "rb") as f:
            obj = _BatchUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # any unpickling failure means a corrupt / foreign file
        raise CifarDataError(
            f"CIFAR-10 batch file {str(path)!r} is not a readable pickle ({type(exc).__name__}: {exc}); "
            f"re-extract it from {CIFAR10_URL}."
        ) from exc
    if not isinstance(obj, dict) or b"data" not in obj or b"labels" not in obj:
        keys = sorted(map(repr, obj.keys())) if isinstance(obj, dict) else type(obj).__name__
        raise CifarDataError(
            f"CIFAR-10 batch file {str(path)!r} is not a CIFAR-10 batch: expected a dict with keys "
            f"b'data' and b'labels', got {keys}."
        )
    data = obj[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW_SIZE:
        desc = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CifarDataError(
            f"CIFAR-10 batch file {str(path)!r}: b'data' must be a uint8 array of shape (N, {ROW_SIZE}), "
            f"got {desc}."
        )
    try:
        labels = np.asarray(obj[b"labels"])
    except Exception as exc:
        raise CifarDataError(f"CIFAR-10 batch file {str(path)!r}: b'labels' is not a list of ints.") from exc
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise CifarDataError(
            f"CIFAR-10 batch file {str(path)!r}: b'labels' must be a flat list of ints, "
            f"got dtype {labels.dtype} and shape {labels.shape}."
        )
    if labels.shape[0] != data.shape[0]:
        raise CifarDataError(
            f"CIFAR-10 batch file {str(path)!r}: {labels.shape[0]} labels for {data.shape[0]} images."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise CifarDataError(
            f"CIFAR-10 batch file {str(path)!r}: labels must lie in 0..{NUM_CLASSES - 1}, "
            f"found range {labels.min()}..{labels.max()}."
        )
    return data, labels.astype(np.int64)


def load_cifar10(
    root: str | os.PathLike[str] | None = None,
    *,
    train: bool = True,
    subset: int | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load CIFAR-10 from the standard python-pickle batches.

    Returns ``(images, labels)``: float32 ``(N, 3, 32, 32)`` scaled to [0, 1] and then
    normalised per channel with :data:`CIFAR10_MEAN` / :data:`CIFAR10_STD`, and int64
    ``(N,)`` labels. ``train`` selects ``data_batch_1..5`` or ``test_batch``. ``subset=n``
    keeps a seeded random subset of ``n`` samples (``numpy.random.default_rng(seed)``,
    without replacement, indices sorted so the original order is kept).
    """
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, (int, np.integer))):
        raise TypeError(f"subset must be an int or None, got {type(subset).__name__}")
    directory = find_cifar10_dir(root)
    files = TRAIN_FILES if train else (TEST_FILE,)
    parts = [_read_batch(directory / name) for name in files]
    data = np.concatenate([p[0] for p in parts], axis=0)
    labels = np.concatenate([p[1] for p in parts], axis=0)
    n_total = data.shape[0]
    if subset is not None:
        split = "train" if train else "test"
        if subset < 1:
            raise ValueError(f"subset must be >= 1, got {subset}")
        if subset > n_total:
            raise ValueError(
                f"subset={subset} exceeds the {n_total} {split} samples available in {str(directory)!r}"
            )
        idx = np.sort(np.random.default_rng(seed).choice(n_total, size=int(subset), replace=False))
        data, labels = data[idx], labels[idx]
    images = torch.from_numpy(np.ascontiguousarray(data)).reshape(-1, *IMAGE_SHAPE).to(torch.float32) / 255.0
    mean = torch.tensor(CIFAR10_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD, dtype=torch.float32).view(1, 3, 1, 1)
    images = (images - mean) / std
    return images.contiguous(), torch.from_numpy(labels)


def _as_rows(images: Any, labels: Any, what: str) -> tuple[np.ndarray, list[int]]:
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise ValueError(f"{what} images must be uint8, got {arr.dtype}")
    if arr.ndim == 4 and arr.shape[1:] == IMAGE_SHAPE:
        arr = arr.reshape(arr.shape[0], ROW_SIZE)
    if arr.ndim != 2 or arr.shape[1] != ROW_SIZE:
        raise ValueError(f"{what} images must have shape (N, 3, 32, 32) or (N, {ROW_SIZE}), got {arr.shape}")
    lab = [int(v) for v in np.asarray(labels).reshape(-1)]
    if len(lab) != arr.shape[0]:
        raise ValueError(f"{what}: {len(lab)} labels for {arr.shape[0]} images")
    return np.ascontiguousarray(arr), lab


def write_cifar10_batches(
    directory: str | os.PathLike[str],
    *,
    train: tuple[Any, Sequence[int]],
    test: tuple[Any, Sequence[int]],
    n_train_batches: int = 5,
) -> pathlib.Path:
    """Write a data set in the exact CIFAR-10 python format (mainly for tests).

    ``train`` and ``test`` are ``(images, labels)`` with uint8 images of shape
    ``(N, 3, 32, 32)`` or ``(N, 3072)`` (channel-major RGB). Creates
    ``directory/cifar-10-batches-py/`` with ``data_batch_1..n_train_batches`` (train
    samples split in order, as evenly as possible), ``test_batch`` and ``batches.meta``.
    Returns the batches directory. Note that :func:`load_cifar10` reads
    ``data_batch_1..5``, so use the default ``n_train_batches=5`` for loadable output.
    """
    if n_train_batches < 1:
        raise ValueError(f"n_train_batches must be >= 1, got {n_train_batches}")
    train_x, train_y = _as_rows(*train, what="train")
    test_x, test_y = _as_rows(*test, what="test")
    out = pathlib.Path(directory) / BATCHES_DIRNAME
    out.mkdir(parents=True, exist_ok=True)

    def dump(name: str, obj: dict[bytes, Any]) -> None:
        with open(out / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)

    bounds = np.linspace(0, train_x.shape[0], n_train_batches + 1).round().astype(int)
    for b in range(n_train_batches):
        lo, hi = int(bounds[b]), int(bounds[b + 1])
        dump(f"data_batch_{b + 1}", {
            b"batch_label": f"training batch {b + 1} of {n_train_batches}".encode(),
            b"labels": train_y[lo:hi],
            b"data": train_x[lo:hi],
            b"filenames": [f"train_{i:05d}.png".encode() for i in range(lo, hi)],
        })  # fmt: skip
    dump(TEST_FILE, {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": test_y,
        b"data": test_x,
        b"filenames": [f"test_{i:05d}.png".encode() for i in range(len(test_y))],
    })  # fmt: skip
    dump("batches.meta", {
        b"num_cases_per_batch": int(bounds[1] - bounds[0]),
        b"label_names": [n.encode() for n in LABEL_NAMES],
        b"num_vis": ROW_SIZE,
    })  # fmt: skip
    return out


def download_cifar10(root: str | os.PathLike[str]) -> pathlib.Path:
    """Download and extract CIFAR-10 into ``root`` with torchvision (explicit opt-in).

    torchvision is imported only here. Returns the ``cifar-10-batches-py`` directory.
    Raises :class:`CifarDataError` if torchvision cannot be imported or the download fails.
    """
    root_path = pathlib.Path(root).expanduser()
    try:
        from torchvision.datasets import CIFAR10  # noqa: PLC0415 - deliberately lazy
    except Exception as exc:  # broken wheels raise more than ImportError
        raise CifarDataError(
            f"download_cifar10 needs torchvision, which could not be imported "
            f"({type(exc).__name__}: {exc}). {_how_to_get(str(root_path))}"
        ) from exc
    try:
        root_path.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            CIFAR10(root=str(root_path), train=train, download=True)
    except Exception as exc:
        raise CifarDataError(
            f"Downloading CIFAR-10 into {str(root_path)!r} failed ({type(exc).__name__}: {exc}). "
            f"{_how_to_get(str(root_path))}"
        ) from exc
    return find_cifar10_dir(root_path)


def _smooth_fields(coarse: np.ndarray, size: int) -> torch.Tensor:
    """Bicubic upsampling of coarse ``(n, 3, g, g)`` noise to ``(n, 3, size, size)``."""
    return torch.nn.functional.interpolate(
        torch.from_numpy(coarse), size=(size, size), mode="bicubic", align_corners=False
    )


def synthetic_cifar10(
    n: int, *, seed: int = 0, num_classes: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """SYNTHETIC CIFAR-shaped data -- this is NOT CIFAR-10 and says nothing about it.

    A deterministic stand-in for when the real files are unavailable. Each class has a
    fixed smooth random template (bicubically upsampled 5x5 noise per channel, 44x44
    pixels). A sample is a random 32x32 crop of its class template (shift up to +-6
    pixels) times a random contrast in [0.5, 1.5], plus a per-sample smooth variation
    (upsampled 4x4 and 8x8 noise) and i.i.d. pixel noise. The classes overlap: a
    nearest-class-mean classifier on the pixels gets roughly 75% while a ResNet-20 can
    fit it, so it is learnable but not trivial. Returns float32 images ``(n, 3, 32, 32)``
    normalised to zero mean and unit standard deviation per channel (statistics of the
    generated set), and int64 labels ``(n,)``, balanced (``i % num_classes``) and
    shuffled. Fully determined by ``(n, seed, num_classes)``; uses its own numpy RNG
    and leaves torch's global RNG untouched.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    shift, chunk = 6, 4096
    rng = np.random.default_rng(seed)
    templates = _smooth_fields(rng.standard_normal((num_classes, 3, 5, 5), dtype=np.float32), 32 + 2 * shift)
    templates = templates / templates.flatten(1).std(dim=1).view(-1, 1, 1, 1)
    labels = rng.permutation(np.arange(n) % num_classes)
    offsets = rng.integers(0, 2 * shift + 1, size=(n, 2))
    contrast = rng.uniform(0.5, 1.5, size=n).astype(np.float32)
    x = torch.empty((n, *IMAGE_SHAPE), dtype=torch.float32)
    ar = torch.arange(32)
    ch = torch.arange(3).view(1, 3, 1, 1)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        rows = (torch.from_numpy(offsets[lo:hi, 0]).view(-1, 1) + ar).view(-1, 1, 32, 1)
        cols = (torch.from_numpy(offsets[lo:hi, 1]).view(-1, 1) + ar).view(-1, 1, 1, 32)
        cls = torch.from_numpy(labels[lo:hi]).view(-1, 1, 1, 1)
        crop = templates[cls, ch, rows, cols]
        m = hi - lo
        x[lo:hi] = (
            torch.from_numpy(contrast[lo:hi]).view(-1, 1, 1, 1) * crop
            + 1.5 * _smooth_fields(rng.standard_normal((m, 3, 4, 4), dtype=np.float32), 32)
            + 0.7 * _smooth_fields(rng.standard_normal((m, 3, 8, 8), dtype=np.float32), 32)
            + 0.7 * torch.from_numpy(rng.standard_normal((m, *IMAGE_SHAPE), dtype=np.float32))
        )
    flat = x.transpose(0, 1).reshape(3, -1).to(torch.float64)
    mean, std = flat.mean(dim=1), flat.std(dim=1).clamp_min(1e-12)
    x.sub_(mean.view(1, 3, 1, 1).float()).div_(std.view(1, 3, 1, 1).float())
    return x, torch.from_numpy(labels.astype(np.int64))
