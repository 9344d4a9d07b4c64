"""Problems built from a network at a trained point: digits (real data shipped with
scikit-learn), CIFAR-10 (real files on disk) and a synthetic CIFAR-shaped variant."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

from hessbench.cache import cache_dir
from hessbench.problems.base import Problem, TorchProblemParts
from hessbench.training import Recipe, load_or_train, recipe_dict, train

DataFn = Callable[[dict[str, Any]], tuple[torch.Tensor, torch.Tensor]]


def digits_data(config: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 handwritten 8x8 digits, pixels standardised (real data, no download).

    ``config["image"]`` True gives (N, 1, 8, 8) images, else (N, 64) vectors."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X - X.mean()) / X.std()
    x = torch.tensor(X, dtype=torch.float64)
    if config.get("image"):
        x = x.reshape(-1, 1, 8, 8)
    return x, torch.tensor(y, dtype=torch.int64)


def cifar10_data(config: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The real CIFAR-10 training set (or a seeded subset) from ``cifar-10-batches-py`` files.

    With ``download=True`` and the files absent, torchvision fetches them into ``data_dir``
    (where it imports and the network allows)."""
    from hessbench.cifar import CifarDataError, download_cifar10, load_cifar10

    root = config.get("data_dir") or os.environ.get("HESSBENCH_CIFAR10_DIR")
    try:
        return load_cifar10(root, train=True, subset=config["subset"], seed=config["seed"])
    except CifarDataError:
        if not (config.get("download") and root):
            raise
    download_cifar10(root)
    return load_cifar10(root, train=True, subset=config["subset"], seed=config["seed"])


def synthetic_cifar_data(config: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    from hessbench.cifar import synthetic_cifar10

    return synthetic_cifar10(config["subset"], seed=config["seed"])


@dataclass
class NetProblem(Problem):
    """A model trained by a fixed recipe on a data set, cross-entropy loss.

    The checkpoint is cached under ``$HESSBENCH_CACHE/checkpoints/<key>.pt``; ``config`` holds
    the data, model and recipe settings. Settings in ``local`` (such as the data directory)
    do not change the problem and do not enter its key.
    """

    make_model: Callable[[], torch.nn.Module] = None  # type: ignore[assignment]
    load_data: DataFn = None  # type: ignore[assignment]
    recipe: Recipe = None  # type: ignore[assignment]
    batch_size: int = 256
    local: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.config = {**self.config, "recipe": recipe_dict(self.recipe)}

    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.load_data({**self.config, **self.local})

    def trained_model(self, progress: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
        """The model at its trained point (trained once, then loaded from the cache)."""
        torch.manual_seed(self.config["seed"])
        model = self.make_model()
        path = cache_dir() / "checkpoints" / f"{self.name}-{self.key}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)

        def run_training() -> float:
            inputs, targets = self.data()
            device = "cuda" if torch.cuda.is_available() else "cpu"
            return train(model, F.cross_entropy, inputs, targets, self.recipe, device=device,
                         progress=progress, desc=f"training {self.name}")

        info = load_or_train(path, model, run_training, {"problem": self.name, **self.config})
        return model.to(torch.float32).eval(), info

    def torch_parts(self, progress: bool = True) -> TorchProblemParts:
        model, _ = self.trained_model(progress)
        inputs, targets = self.data()
        return TorchProblemParts(model, F.cross_entropy, inputs, targets, self.batch_size)


def digits_mlp() -> NetProblem:
    from hessbench.models import mlp

    return NetProblem(
        name="digits-mlp", dtype="float64",
        description="real scikit-learn digits (N=1,797), tanh MLP 64-48-48-10 (5,962 params)",
        config=dict(kind="net", version=1, data="sklearn-digits", model="mlp-64-48-48-10",
                    seed=0),
        make_model=mlp, load_data=digits_data, batch_size=1797,
        recipe=Recipe(steps=300, lr=1e-2, optimizer="adam", dtype="float64"))


def digits_cnn() -> NetProblem:
    from hessbench.models import digits_cnn as cnn

    return NetProblem(
        name="digits-cnn", dtype="float64",
        description="real scikit-learn digits (N=1,797), small tanh CNN (1,626 params)",
        config=dict(kind="net", version=1, data="sklearn-digits", model="cnn-4-8", image=True,
                    seed=0),
        make_model=cnn, load_data=digits_data, batch_size=600,
        recipe=Recipe(steps=300, lr=1e-2, optimizer="adam", dtype="float64"))


def cifar_problem(name: str, arch: str, *, subset: int | None, synthetic: bool,
                  epochs: int, data_dir: str | None = None, download: bool = False,
                  seed: int = 0) -> NetProblem:
    """ResNet on CIFAR-10 (real files) or on synthetic CIFAR-shaped data (``synthetic=True``)."""
    from hessbench import resnet

    n = subset if subset is not None else 50_000
    batch = 128
    steps = max(1, epochs * n // batch)
    kind = "SYNTHETIC CIFAR-shaped data" if synthetic else "real CIFAR-10"
    return NetProblem(
        name=name, dtype="float32", synthetic=synthetic,
        description=f"{kind} (N={n:,}), {arch} in eval mode (BatchNorm running statistics)",
        config=dict(kind="net", version=1, data="synthetic-cifar" if synthetic else "cifar10",
                    model=arch, subset=subset if not synthetic else n, seed=seed),
        make_model=getattr(resnet, arch.replace("-", "")),
        load_data=synthetic_cifar_data if synthetic else cifar10_data, batch_size=128,
        recipe=Recipe(steps=steps, lr=0.05, optimizer="sgd", batch_size=batch,
                      weight_decay=5e-4, dtype="float32"),
        local={"data_dir": data_dir, "download": download})


# -- the registered CIFAR problems (``hessbench.problems``): options are these parameters -------
def synthetic_cifar_resnet20(subset: int = 256, epochs: int = 30, seed: int = 0) -> NetProblem:
    """``synthetic-cifar-resnet20``: ResNet-20 on synthetic CIFAR-shaped data (offline)."""
    return cifar_problem("synthetic-cifar-resnet20", "resnet20", subset=subset, synthetic=True,
                         epochs=epochs, seed=seed)


def cifar10_resnet20(subset: int | None = None, epochs: int = 15, data_dir: str | None = None,
                     download: bool = False, seed: int = 0) -> NetProblem:
    """``cifar10-resnet20``: ResNet-20 on the real CIFAR-10 training set (or a subset)."""
    return cifar_problem("cifar10-resnet20", "resnet20", subset=subset, synthetic=False,
                         epochs=epochs, data_dir=data_dir, download=download, seed=seed)


def cifar10_resnet18(subset: int | None = None, epochs: int = 10, data_dir: str | None = None,
                     download: bool = False, seed: int = 0) -> NetProblem:
    """``cifar10-resnet18``: ResNet-18 on the real CIFAR-10 training set (or a subset)."""
    return cifar_problem("cifar10-resnet18", "resnet18", subset=subset, synthetic=False,
                         epochs=epochs, data_dir=data_dir, download=download, seed=seed)
