"""Problems and references against independent truth."""

import numpy as np
import pytest
import torch

from hessbench import solvers
from hessbench import problems
from hessbench.cifar import CifarDataError, write_cifar10_batches
from hessbench.reference import cached_reference, compute_reference, dense_hessian


def dense_from_operator(op):
    return op.matmat(torch.eye(op.size, dtype=torch.float64)).numpy()


def test_quadratic_full_hessian_has_the_prescribed_spectrum():
    prob = problems.get("quadratic-small")
    H = dense_from_operator(prob.operator())
    assert np.abs(H - H.T).max() < 1e-12
    ev = np.linalg.eigvalsh(H)[::-1]
    np.testing.assert_allclose(ev, prob.eigenvalues(), atol=1e-10)
    assert ev[0] == pytest.approx(100.0) and ev[-1] == pytest.approx(-0.5)
    assert len(ev) == 200 and (ev[:10] >= 10 - 1e-9).all() and ev[10] < 2.0 + 1e-9


def test_quadratic_minibatch_hessians_are_noisy_and_average_to_the_full_one():
    prob = problems.get("quadratic-small")
    op = prob.operator()
    H = dense_from_operator(op)
    parts = np.array_split(np.arange(op.num_samples), 8)
    H_S = [op.matmat(torch.eye(op.size, dtype=torch.float64), indices=p).numpy() for p in parts]
    np.testing.assert_allclose(sum(len(p) * h for p, h in zip(parts, H_S)) / op.num_samples, H,
                               atol=1e-9)
    lam_min_S = [np.linalg.eigvalsh(h)[0] for h in H_S]
    assert max(lam_min_S) < -1.0  # each 125-sample batch pulls lambda_min far below -0.5


def test_problem_registry_errors():
    assert {"quadratic", "digits-mlp", "digits-cnn", "cifar10-resnet20", "cifar10-resnet18",
            "synthetic-cifar-resnet20"} <= set(problems.available())
    with pytest.raises(problems.UnknownProblemError, match="available: quadratic-small"):
        problems.get("mnist")
    with pytest.raises(ValueError, match="no option"):
        problems.get("quadratic", depth=3)
    assert problems.get("quadratic", n=50).config["n"] == 50
    assert problems.get("quadratic", seed=3, rank=2).config["seed"] == 3
    assert set(problems.options("quadratic")) == {"n", "num_samples", "noise", "rank", "seed"}


def test_digits_mlp_dense_reference_and_every_solver_against_it():
    prob = problems.get("digits-mlp")
    ref = compute_reference(prob, progress=False)
    assert ref["method"] == "dense" and ref["parameters"] == 5962
    assert ref["lambda_max"] > 0 > ref["lambda_min"]
    assert ref["residual_max"] < 1e-10 * ref["lambda_max"]
    cached = cached_reference(prob)  # the same entry, loaded and verified, nothing solved
    assert cached["method"] == "dense" and cached["lambda_min"] == ref["lambda_min"]
    op = prob.operator(progress=False)
    v = np.load(next(iter(_vector_files(prob))))["min"]
    hv = op.matvec(torch.tensor(v)).numpy()
    assert np.linalg.norm(hv - ref["lambda_min"] * v) < 1e-8 * ref["lambda_max"]
    for name in ("lanczos", "arpack", "power"):
        r = solvers.get(name, tol=1e-3).solve(op, seed=0, budget={"max_passes": 800})
        err_max = abs(r.lambda_max - ref["lambda_max"]) / ref["lambda_max"]
        assert err_max < 1e-2, (name, r.summary())
        # Rayleigh quotients of the full H never pass the true ends.
        assert r.lambda_max <= ref["lambda_max"] * (1 + 1e-9)
        assert r.lambda_min >= ref["lambda_min"] * (1 + 1e-9)
        if name != "power":
            assert r.converged
            assert abs(r.lambda_min - ref["lambda_min"]) / abs(ref["lambda_min"]) < 1e-2


def _vector_files(prob):
    from hessbench.cache import cache_dir

    return sorted((cache_dir() / "references").glob(f"{prob.name}-*-vectors.npz"))


def test_dense_reference_hessian_matches_the_operator_on_digits_cnn_subset():
    prob = problems.get("digits-cnn")
    parts = prob.torch_parts(progress=False)
    parts.inputs, parts.targets = parts.inputs[:12], parts.targets[:12]
    H = dense_hessian(parts)
    from hessbench.backends.torch import HessianOperator

    op = HessianOperator(parts.model, parts.loss_fn, (parts.inputs, parts.targets),
                         batch_size=5, dtype=torch.float64)
    v = np.random.default_rng(0).standard_normal(op.size)
    hv = op.matvec(torch.tensor(v)).numpy()
    assert np.linalg.norm(hv - H @ v) < 1e-8 * np.linalg.norm(H @ v)


def test_cifar_problem_reads_standard_files_and_says_how_to_get_them(tmp_path):
    rng = np.random.default_rng(0)
    write_cifar10_batches(tmp_path, train=(rng.integers(0, 256, (30, 3, 32, 32), dtype=np.uint8),
                                           rng.integers(0, 10, 30)),
                          test=(rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8),
                                rng.integers(0, 10, 5)))
    prob = problems.get("cifar10-resnet20", subset=4, epochs=1, data_dir=str(tmp_path))
    op = prob.operator(dtype="float64", progress=False)
    assert op.num_samples == 4 and op.size == 272_474
    u, v = (torch.tensor(rng.standard_normal(op.size)) for _ in range(2))
    assert float(u @ op.matvec(v)) == pytest.approx(float(v @ op.matvec(u)), rel=1e-8)
    with pytest.raises(CifarDataError, match="HESSBENCH_CIFAR10_DIR"):
        problems.get("cifar10-resnet20", subset=4, data_dir=str(tmp_path / "none")).operator()


def test_synthetic_cifar_problem_is_labelled_and_builds():
    prob = problems.get("synthetic-cifar-resnet20", subset=16, epochs=1)
    assert prob.synthetic and "SYNTHETIC" in prob.description
    op = prob.operator(progress=False)
    assert op.num_samples == 16 and op.dtype == torch.float32


def test_lanczos_reference_certifies_against_the_exact_spectrum():
    prob = problems.get("quadratic-small", n=120)
    ref = compute_reference(prob, progress=False, force_method="lanczos")
    exact = prob.exact_reference()
    assert ref["method"] == "lanczos"
    assert ref["lambda_max"] == pytest.approx(exact["lambda_max"], rel=1e-9)
    assert ref["lambda_min"] == pytest.approx(exact["lambda_min"], rel=1e-9)
    assert ref["seed_1"]["lambda_min"] == pytest.approx(exact["lambda_min"], rel=1e-9)
    assert compute_reference(prob, progress=False, force_method="lanczos") == ref  # cached


def test_cached_reference_never_solves(tmp_path, monkeypatch):
    """An empty cache holds no certified reference of a net: None (no dense Hessian, no
    Lanczos); an exact spectrum needs no cache."""
    monkeypatch.setenv("HESSBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr("hessbench.reference._dense", lambda *a: pytest.fail("solved"))
    monkeypatch.setattr("hessbench.reference._lanczos", lambda *a: pytest.fail("solved"))
    assert cached_reference(problems.get("digits-mlp")) is None
    assert cached_reference(problems.get("quadratic-small"))["method"] == "exact"
