"""Certified reference values of lambda_max and lambda_min of a problem's full-data Hessian.

Methods, in order of preference:
- ``exact``: the problem is built with a known spectrum (quadratics);
- ``dense``: the Hessian is formed densely in float64 by ``torch.func.hessian`` of the loss on
  chunks of samples (independent of the HVP operator's code) and diagonalised with LAPACK
  (``scipy.linalg.eigh``); used up to ``DENSE_LIMIT`` parameters;
- ``lanczos``: float64 full-reorthogonalisation Lanczos run to a tight tolerance from two
  seeds, which must agree; the residuals ||Hx - theta x|| are stored with the values.

References are cached under ``$HESSBENCH_CACHE/references``, keyed by the problem's key and
the hash of the checkpoint weights.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from torch.func import functional_call, hessian

from hessbench.cache import cache_dir, key_of, tensor_digest
from hessbench.problems.base import Problem, TorchProblemParts

DENSE_LIMIT = 8_000
DENSE_CHUNK = 32  # samples per torch.func.hessian call (memory ~ n x chunk x activations)
LANCZOS_TOL = 1e-9


class ReferenceError(RuntimeError):
    """The reference could not be certified (e.g. two Lanczos seeds disagree)."""


def dense_hessian(parts: TorchProblemParts, progress: bool = False) -> np.ndarray:
    """The full-data Hessian as a dense float64 array, summed over chunks of samples."""
    model = parts.model
    names = [k for k, p in model.named_parameters() if p.requires_grad]
    params = dict(model.named_parameters())
    shapes = [params[k].shape for k in names]
    sizes = [params[k].numel() for k in names]
    theta = torch.cat([params[k].detach().double().reshape(-1) for k in names])
    fixed = {k: b.double() if b.is_floating_point() else b for k, b in model.named_buffers()}
    N = len(parts.inputs)
    H = torch.zeros(theta.numel(), theta.numel(), dtype=torch.float64)
    training = model.training
    model.eval()
    try:
        chunks = range(0, N, DENSE_CHUNK)
        for start in tqdm(chunks, desc="dense Hessian", disable=not progress, leave=False):
            x = parts.inputs[start:start + DENSE_CHUNK]
            y = parts.targets[start:start + DENSE_CHUNK]
            x = x.double() if x.is_floating_point() else x

            def loss(flat: torch.Tensor) -> torch.Tensor:
                state = {k: t.view(s) for k, t, s in zip(names, torch.split(flat, sizes), shapes)}
                return parts.loss_fn(functional_call(model, {**fixed, **state}, (x,)), y)

            H += (len(x) / N) * hessian(loss)(theta)
    finally:
        model.train(training)
    H = H.numpy()
    return 0.5 * (H + H.T)


def _path(problem: Problem, digest: str) -> tuple[Any, str]:
    key = key_of({"problem": problem.key, "weights": digest, "tol": LANCZOS_TOL, "v": 1})
    folder = cache_dir() / "references"
    folder.mkdir(parents=True, exist_ok=True)
    return folder, f"{problem.name}-{key}"


def compute_reference(problem: Problem, *, progress: bool = True,
                      force_method: str | None = None) -> dict[str, Any]:
    """Compute (or load from the cache) the reference; returns a JSON-able dict with
    ``lambda_max``, ``lambda_min``, ``method``, residuals and timing."""
    exact = problem.exact_reference()
    if exact is not None and force_method in (None, "exact"):
        return {**exact, "method": "exact", "residual_max": 0.0, "residual_min": 0.0}
    parts = problem.torch_parts(progress=progress)
    digest = tensor_digest(dict(parts.model.state_dict()))
    n = sum(p.numel() for p in parts.model.parameters() if p.requires_grad)
    method = force_method or ("dense" if n <= DENSE_LIMIT else "lanczos")
    folder, stem = _path(problem, digest)
    path = folder / f"{stem}-{method}.json"
    if path.exists():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    if method == "dense":
        ref = _dense(parts, progress)
    elif method == "lanczos":
        ref = _lanczos(problem, progress)
    else:
        raise ValueError(f"unknown reference method {method!r}; use exact, dense or lanczos")
    vectors = ref.pop("vectors")
    ref.update(method=method, parameters=n, weights_digest=digest, problem_key=problem.key,
               seconds=time.perf_counter() - t0, torch=torch.__version__)
    np.savez(folder / f"{stem}-{method}-vectors.npz", **vectors)
    path.write_text(json.dumps(ref, indent=1))
    return ref


def _dense(parts: TorchProblemParts, progress: bool) -> dict[str, Any]:
    from scipy.linalg import eigh

    H = dense_hessian(parts, progress)
    w, V = eigh(H)
    res = [float(np.linalg.norm(H @ V[:, i] - w[i] * V[:, i])) for i in (-1, 0)]
    return {"lambda_max": float(w[-1]), "lambda_min": float(w[0]),
            "residual_max": res[0], "residual_min": res[1],
            "lambda_2": float(w[-2]), "lambda_min_2": float(w[1]),
            "vectors": {"max": V[:, -1], "min": V[:, 0]}}


def _lanczos(problem: Problem, progress: bool) -> dict[str, Any]:
    from hessbench.solvers.kernels import to_numpy
    from hessbench.solvers.lanczos import Lanczos

    op = problem.operator("torch", dtype="float64", progress=progress)
    runs = [Lanczos(tol=LANCZOS_TOL, max_steps=1000).solve(op, seed=s, progress=progress)
            for s in (0, 1)]
    a, b = runs
    for end in ("max", "min"):
        va, vb = getattr(a, f"lambda_{end}"), getattr(b, f"lambda_{end}")
        if abs(va - vb) > 1e-6 * max(abs(va), abs(vb)):
            raise ReferenceError(f"lanczos seeds disagree on lambda_{end}: {va} vs {vb}")
    if not (a.converged and b.converged):
        raise ReferenceError(f"reference lanczos did not converge: {a.message}; {b.message}")
    return {"lambda_max": a.lambda_max, "lambda_min": a.lambda_min,
            "residual_max": a.residual_max, "residual_min": a.residual_min,
            "seed_1": {"lambda_max": b.lambda_max, "lambda_min": b.lambda_min,
                       "residual_max": b.residual_max, "residual_min": b.residual_min},
            "hvp_calls": a.hvp_calls + b.hvp_calls,
            "vectors": {"max": to_numpy(a.vector_max), "min": to_numpy(a.vector_min)}}
