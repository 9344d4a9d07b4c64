"""Tests for hessbench.cifar: real-format round trip with fake data, errors, synthetic data."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from hessbench import cifar
from hessbench.cifar import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CifarDataError,
    download_cifar10,
    find_cifar10_dir,
    load_cifar10,
    synthetic_cifar10,
    write_cifar10_batches,
)

N_TRAIN, N_TEST = 50, 20


@pytest.fixture
def fake(tmp_path):
    rng = np.random.default_rng(123)
    train_x = rng.integers(0, 256, size=(N_TRAIN, 3, 32, 32), dtype=np.uint8)
    train_y = rng.integers(0, 10, size=N_TRAIN)
    test_x = rng.integers(0, 256, size=(N_TEST, 3072), dtype=np.uint8)  # flat rows also accepted
    test_y = rng.integers(0, 10, size=N_TEST)
    batches = write_cifar10_batches(tmp_path, train=(train_x, train_y), test=(test_x, test_y))
    return tmp_path, batches, (train_x, train_y), (test_x.reshape(-1, 3, 32, 32), test_y)


def _reference(raw: np.ndarray) -> np.ndarray:
    """Independent normalisation of uint8 (N, 3, 32, 32) images, in float64."""
    mean = np.array(CIFAR10_MEAN).reshape(1, 3, 1, 1)
    std = np.array(CIFAR10_STD).reshape(1, 3, 1, 1)
    return (raw.astype(np.float64) / 255.0 - mean) / std


def test_constants():
    assert len(CIFAR10_MEAN) == len(CIFAR10_STD) == 3
    assert all(isinstance(v, float) for v in CIFAR10_MEAN + CIFAR10_STD)


def test_written_files_are_standard_format(fake):
    _, batches, (train_x, train_y), _ = fake
    assert batches.name == "cifar-10-batches-py"
    names = {p.name for p in batches.iterdir()}
    assert names == {f"data_batch_{i}" for i in range(1, 6)} | {"test_batch", "batches.meta"}
    total = 0
    for i in range(1, 6):
        with open(batches / f"data_batch_{i}", "rb") as f:
            d = pickle.load(f, encoding="bytes")
        assert d[b"data"].dtype == np.uint8 and d[b"data"].shape == (10, 3072)
        assert isinstance(d[b"labels"], list) and all(type(v) is int for v in d[b"labels"])
        np.testing.assert_array_equal(d[b"data"], train_x[total : total + 10].reshape(10, -1))
        total += 10
    with open(batches / "batches.meta", "rb") as f:
        meta = pickle.load(f, encoding="bytes")
    assert meta[b"label_names"][0] == b"airplane" and len(meta[b"label_names"]) == 10


@pytest.mark.parametrize("train", [True, False])
def test_roundtrip_exact_values(fake, train):
    root, _, tr, te = fake
    raw_x, raw_y = tr if train else te
    x, y = load_cifar10(root, train=train)
    assert x.shape == (len(raw_y), 3, 32, 32) and x.dtype == torch.float32 and x.is_contiguous()
    assert y.shape == (len(raw_y),) and y.dtype == torch.int64
    np.testing.assert_array_equal(y.numpy(), raw_y)
    np.testing.assert_allclose(x.numpy(), _reference(raw_x), rtol=0, atol=1e-5)
    # channel layout: channel c of pixel (0, 0) comes from raw byte c * 1024
    assert x[0, 1, 0, 0].item() == pytest.approx((raw_x[0].reshape(-1)[1024] / 255 - CIFAR10_MEAN[1]) / CIFAR10_STD[1], abs=1e-5)


def test_root_as_parent_or_batches_dir_or_env(fake, monkeypatch):
    root, batches, _, _ = fake
    assert find_cifar10_dir(root) == batches
    assert find_cifar10_dir(batches) == batches
    assert find_cifar10_dir(str(batches)) == batches
    x1, y1 = load_cifar10(root, train=False)
    x2, y2 = load_cifar10(batches, train=False)
    monkeypatch.setenv("HESSBENCH_CIFAR10_DIR", str(root))
    x3, y3 = load_cifar10(train=False)
    assert find_cifar10_dir(None) == batches
    for a, b in ((x1, x2), (x1, x3), (y1, y2), (y1, y3)):
        assert torch.equal(a, b)


def test_subset_deterministic(fake):
    root, _, (raw_x, raw_y), _ = fake
    x_full, y_full = load_cifar10(root)
    xa, ya = load_cifar10(root, subset=12, seed=3)
    xb, yb = load_cifar10(root, subset=12, seed=3)
    xc, _ = load_cifar10(root, subset=12, seed=4)
    assert xa.shape == (12, 3, 32, 32) and ya.shape == (12,)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(xa, xc)
    idx = np.sort(np.random.default_rng(3).choice(N_TRAIN, size=12, replace=False))
    assert torch.equal(xa, x_full[idx]) and torch.equal(ya, y_full[idx])
    assert torch.equal(load_cifar10(root, subset=N_TRAIN)[1], y_full)


@pytest.mark.parametrize("subset", [0, -1, N_TRAIN + 1])
def test_subset_out_of_range(fake, subset):
    with pytest.raises(ValueError, match="subset"):
        load_cifar10(fake[0], subset=subset)


def test_missing_dir_message(tmp_path, monkeypatch):
    missing = tmp_path / "nope"
    with pytest.raises(CifarDataError) as ei:
        load_cifar10(missing)
    msg = str(ei.value)
    assert str(missing) in msg and "HESSBENCH_CIFAR10_DIR" in msg and cifar.CIFAR10_URL in msg
    assert "download_cifar10" in msg
    # existing but empty directory
    with pytest.raises(CifarDataError, match="HESSBENCH_CIFAR10_DIR"):
        find_cifar10_dir(tmp_path)
    # no root and no env var
    monkeypatch.delenv("HESSBENCH_CIFAR10_DIR", raising=False)
    with pytest.raises(CifarDataError, match="HESSBENCH_CIFAR10_DIR") as ei:
        load_cifar10()
    assert cifar.CIFAR10_URL in str(ei.value)


def test_missing_batch_file(fake):
    root, batches, _, _ = fake
    (batches / "data_batch_3").unlink()
    with pytest.raises(CifarDataError, match="data_batch_3") as ei:
        load_cifar10(root)
    assert cifar.CIFAR10_URL in str(ei.value)
    load_cifar10(root, train=False)  # test split unaffected


def test_corrupt_file(fake):
    root, batches, _, _ = fake
    (batches / "test_batch").write_bytes(b"\x00garbage\xff" * 100)
    with pytest.raises(CifarDataError, match="test_batch.*not a readable pickle"):
        load_cifar10(root, train=False)


def _rewrite(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def test_wrong_keys(fake):
    root, batches, _, _ = fake
    _rewrite(batches / "test_batch", {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]})  # str keys
    with pytest.raises(CifarDataError, match="test_batch.*b'data'"):
        load_cifar10(root, train=False)
    _rewrite(batches / "test_batch", [1, 2, 3])
    with pytest.raises(CifarDataError, match="not a CIFAR-10 batch"):
        load_cifar10(root, train=False)


@pytest.mark.parametrize(
    "data, labels, match",
    [
        (np.zeros((4, 3, 32, 32), np.uint8), [0] * 4, "shape"),
        (np.zeros((4, 3000), np.uint8), [0] * 4, "shape"),
        (np.zeros((4, 3072), np.float32), [0] * 4, "uint8"),
        (np.zeros((4, 3072), np.uint8), [0] * 3, "3 labels for 4 images"),
        (np.zeros((4, 3072), np.uint8), [0, 1, 2, 10], "0..9"),
        (np.zeros((4, 3072), np.uint8), [0, 1, -1, 2], "0..9"),
    ],
)
def test_malformed_contents(fake, data, labels, match):
    root, batches, _, _ = fake
    _rewrite(batches / "test_batch", {b"data": data, b"labels": labels})
    with pytest.raises(CifarDataError, match=match) as ei:
        load_cifar10(root, train=False)
    assert "test_batch" in str(ei.value)


def test_malicious_pickle_rejected(fake):
    root, batches, _, _ = fake

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    _rewrite(batches / "test_batch", {b"data": Evil(), b"labels": []})
    with pytest.raises(CifarDataError, match="forbidden global"):
        load_cifar10(root, train=False)


def test_legacy_numpy_core_pickle(fake):
    """Files pickled with numpy < 2 (like the official ones) reference numpy.core.*."""
    root, batches, _, (test_x, test_y) = fake
    path = batches / "test_batch"
    blob = path.read_bytes()
    assert b"numpy._core.multiarray" in blob
    path.write_bytes(blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    _, y = load_cifar10(root, train=False)
    np.testing.assert_array_equal(y.numpy(), test_y)


def test_download_without_torchvision(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torchvision", None)  # import -> ImportError
    with pytest.raises(CifarDataError, match="torchvision") as ei:
        download_cifar10(tmp_path)
    assert cifar.CIFAR10_URL in str(ei.value)


def test_no_torchvision_import_at_module_level():
    src = open(cifar.__file__).read().splitlines()
    assert not any(line.startswith(("import torchvision", "from torchvision")) for line in src)


# ---------------------------------------------------------------- synthetic data


def test_synthetic_shapes_and_determinism():
    x, y = synthetic_cifar10(200, seed=1)
    assert x.shape == (200, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (200,) and y.dtype == torch.int64
    x2, y2 = synthetic_cifar10(200, seed=1)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, y3 = synthetic_cifar10(200, seed=2)
    assert not torch.equal(x, x3) and not torch.equal(y, y3)
    assert torch.isfinite(x).all()
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3


def test_synthetic_does_not_touch_torch_rng():
    torch.manual_seed(0)
    a = torch.rand(3)
    torch.manual_seed(0)
    synthetic_cifar10(10, seed=5)
    assert torch.equal(torch.rand(3), a)


def test_synthetic_labels_balanced():
    _, y = synthetic_cifar10(1000, seed=0)
    assert torch.equal(torch.bincount(y, minlength=10), torch.full((10,), 100))
    assert not torch.equal(y, torch.arange(1000) % 10)  # shuffled
    _, y = synthetic_cifar10(23, seed=0, num_classes=4)
    assert sorted(torch.bincount(y).tolist()) == [5, 6, 6, 6]


def test_synthetic_class_structure():
    x, y = synthetic_cifar10(1500, seed=0)
    xtr, ytr, xte, yte = x[:1000].flatten(1), y[:1000], x[1000:].flatten(1), y[1000:]
    means = torch.stack([xtr[ytr == c].mean(0) for c in range(10)])
    acc = (torch.cdist(xte, means).argmin(1) == yte).float().mean().item()
    assert 0.4 < acc < 0.98, acc  # well above chance (0.1), not trivially separable


def test_synthetic_docstring_says_synthetic():
    assert "SYNTHETIC" in synthetic_cifar10.__doc__ and "NOT CIFAR-10" in synthetic_cifar10.__doc__
