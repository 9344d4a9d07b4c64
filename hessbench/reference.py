"""Certified reference values of lambda_max and lambda_min of a problem's full-data Hessian.

Methods, in order of preference:
- ``exact``: the problem is built with a known spectrum (quadratics);
- ``dense``: the Hessian is formed densely in float64 by ``torch.func.hessian`` of the loss on
  chunks of samples (independent of the HVP operator's code) and diagonalised with LAPACK
  (``scipy.linalg.eigh``); used up to ``DENSE_LIMIT`` parameters;
- ``lanczos``: float64 full-reorthogonalisation Lanczos run to a tight tolerance
  (``LANCZOS_TOL``) from two seeds, which must agree to 1e-6; then each end's Ritz vector x
  (unit) is multiplied once more in float64, and the stored value is its Rayleigh quotient
  lambda = x^T H x and the stored residual r = ||H x - lambda x|| (computed, not the Lanczos
  estimate |beta s_last|, which underflows to 0 at a well-separated end). Some eigenvalue lies
  within r of lambda; the reference is refused (:class:`ReferenceError`) unless
  r <= ``CERTIFIED_RTOL`` |lambda| = 1e-6 |lambda| at both ends, four orders of magnitude below
  the 1% success threshold. As for every Krylov method, that the eigenvalue is the *extreme*
  one rests on the two seeds agreeing (a dense reference proves it).

``compute_reference(problem, cheapest=True)`` (the demo's choice) takes ``exact`` where the
problem has it, else a reference of either method already in the cache, else ``lanczos``: it
never forms a dense Hessian (the two digits problems: ~2.7 min dense vs ~10-30 s Lanczos on a
2-core CPU, with values equal to 1e-14 relative).

References are cached under ``$HESSBENCH_CACHE/references``, keyed by the problem's key and
the hash of the checkpoint weights: ``<stem>-<method>-vectors.npz`` (the unit eigenvectors
``max`` and ``min``) is written first, then ``<stem>-<method>.json`` (the values; the commit
point), each atomically; the JSON records the sha256 of the vectors file and of its own values
(:mod:`hessbench.cache`). Concurrent builders of one reference wait for the first.

A cached reference is verified when loaded (once per process and entry): both hashes, then
two float64 HVPs on the problem's torch operator. For each end, with x the stored vector
(normalised), q = x^T H x, r = ||H x - lambda x||, r_s the stored residual and
s = max(|lambda_max|, |lambda_min|), it must hold that

    |q - lambda| <= VERIFY_RTOL * s   and   r <= VERIFY_RTOL * s + 2 r_s,   VERIFY_RTOL = 1e-9.

The stored lambda is the Rayleigh quotient of the stored vector (a Ritz value, or LAPACK's
eigenpair), so the two agree to float64 rounding of the products (measured: <= 2e-15 s on the
digits nets, 8e-16 s on ResNet-20), whatever the residual; an edited lambda off by more than
1e-9 s fails. The residual check confirms x is the eigenvector the JSON describes. A reference
failing a hash, unreadable, or not verifying is moved aside with a one-line warning and
recomputed; one without hashes (from before they were recorded) that verifies gets them added.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from torch.func import functional_call, hessian

from hessbench.backends.base import HVPOperator, to_numpy
from hessbench.cache import HASH_KEY, CorruptEntry, brief, cache_dir, cached_entry, key_of, \
    tensor_digest
from hessbench.problems.base import Problem, TorchProblemParts, torch_operator

DENSE_LIMIT = 8_000
DENSE_CHUNK = 32  # samples per torch.func.hessian call (memory ~ n x chunk x activations)
LANCZOS_TOL = 1e-9
CERTIFIED_RTOL = 1e-6  # a Lanczos reference's computed residual bound, relative to |lambda|
VERIFY_RTOL = 1e-9  # loaded references: tolerance relative to max(|lambda_max|, |lambda_min|)
_VERIFIED: set[tuple[str, str]] = set()  # (JSON path, entry_sha256) verified in this process


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
    dense = H.numpy()
    return 0.5 * (dense + dense.T)


def _path(problem: Problem, digest: str) -> tuple[Path, str]:
    key = key_of({"problem": problem.key, "weights": digest, "tol": LANCZOS_TOL, "v": 1})
    folder = cache_dir() / "references"
    folder.mkdir(parents=True, exist_ok=True)
    return folder, f"{problem.name}-{key}"


def compute_reference(problem: Problem, *, progress: bool = True,
                      force_method: str | None = None, cheapest: bool = False
                      ) -> dict[str, Any]:
    """Compute (or load from the cache, verified) the reference; returns a JSON-able dict with
    ``lambda_max``, ``lambda_min``, ``method``, residuals and timing.

    Without ``force_method``: ``exact`` where known, else ``dense`` up to ``DENSE_LIMIT``
    parameters, else ``lanczos``; with ``cheapest``, never ``dense`` unless it is cached
    already (see the module docstring)."""
    if force_method not in (None, "exact", "dense", "lanczos"):
        raise ValueError(f"unknown reference method {force_method!r}; use exact, dense or "
                         "lanczos")
    exact = problem.exact_reference()
    if exact is not None and force_method in (None, "exact"):
        return {**exact, "method": "exact", "residual_max": 0.0, "residual_min": 0.0}
    parts = problem.torch_parts(progress=progress)
    digest = tensor_digest(dict(parts.model.state_dict()))
    n = sum(p.numel() for p in parts.model.parameters() if p.requires_grad)
    folder, stem = _path(problem, digest)
    if force_method is not None:
        method = force_method
    elif cheapest:
        method = "dense" if (folder / f"{stem}-dense.json").exists() else "lanczos"
    else:
        method = "dense" if n <= DENSE_LIMIT else "lanczos"
    if method == "exact":
        raise ValueError(f"problem {problem.name!r} has no exact reference; use dense or "
                         "lanczos")
    path = folder / f"{stem}-{method}.json"
    vectors_path = folder / f"{stem}-{method}-vectors.npz"

    def load(record: dict[str, Any]) -> None:
        memo = (str(path), str(record.get(HASH_KEY)))
        if memo in _VERIFIED:
            return
        vectors = _read_vectors(vectors_path, n)
        # no determinism probe: the check compares products with stored values to 1e-9
        # already, so two more products would only repeat it
        op = torch_operator(parts, dtype="float64", check_deterministic=False)
        failure = verify_reference(record, vectors, op)
        if failure:
            raise CorruptEntry(path, failure)
        if HASH_KEY in record:
            _VERIFIED.add(memo)

    def build() -> tuple[dict[str, Any], dict[Path, bytes], None]:
        t0 = time.perf_counter()
        ref = _dense(parts, progress) if method == "dense" else _lanczos(problem, progress)
        vectors = ref.pop("vectors")
        ref.update(method=method, parameters=n, weights_digest=digest,
                   problem_key=problem.key, seconds=time.perf_counter() - t0,
                   torch=torch.__version__)
        buffer = io.BytesIO()
        np.savez(buffer, **vectors)
        return ref, {vectors_path: buffer.getvalue()}, None

    ref, _ = cached_entry(path, [vectors_path], load, build)
    return ref


def cached_reference(problem: Problem, *, progress: bool = False) -> dict[str, Any] | None:
    """The reference if it costs no solve: exact, or certified and already in the cache
    (dense preferred; loaded and verified by :func:`compute_reference`); None otherwise."""
    if problem.exact_reference() is not None:
        return compute_reference(problem, progress=progress)
    parts = problem.torch_parts(progress=progress)
    folder, stem = _path(problem, tensor_digest(dict(parts.model.state_dict())))
    for method in ("dense", "lanczos"):
        if (folder / f"{stem}-{method}.json").exists():
            return compute_reference(problem, force_method=method, progress=progress)
    return None


def verify_reference(ref: dict[str, Any], vectors: dict[str, np.ndarray],
                     op: HVPOperator) -> str | None:
    """Check a reference's eigenvalues against its vectors with one product each on ``op``
    (float64): the tolerances of the module docstring. Returns ``None`` when both ends
    verify, else the reason (one line)."""
    try:
        lam = {end: float(ref[f"lambda_{end}"]) for end in ("max", "min")}
        stored = {end: abs(float(ref.get(f"residual_{end}") or 0.0)) for end in ("max", "min")}
    except (KeyError, TypeError, ValueError) as exc:
        return f"no numeric lambda_max, lambda_min and residuals ({brief(exc)})"
    if not all(np.isfinite(v) for v in (*lam.values(), *stored.values())):
        return f"non-finite values: {lam}, residuals {stored}"
    scale = max(abs(lam["max"]), abs(lam["min"]))
    for end in ("max", "min"):
        x = vectors[end] / np.linalg.norm(vectors[end])
        hx = np.asarray(to_numpy(op.matvec(op.asarray(x))), dtype=np.float64)
        q = float(x @ hx)
        r = float(np.linalg.norm(hx - lam[end] * x))
        tol_q = VERIFY_RTOL * scale
        tol_r = VERIFY_RTOL * scale + 2 * stored[end]
        if not (abs(q - lam[end]) <= tol_q and r <= tol_r):
            return (f"lambda_{end}={lam[end]:.17g} does not verify against its stored vector: "
                    f"x^T H x={q:.17g} (allowed difference {tol_q:.3g}), "
                    f"||H x - lambda x||={r:.3g} (allowed {tol_r:.3g})")
    return None


def _read_vectors(path: Path, n: int) -> dict[str, np.ndarray]:
    """The stored unit eigenvectors ``max`` and ``min`` (float64, ``n`` entries each); raises
    ``CorruptEntry`` naming ``path`` when unreadable, incomplete or of the wrong size."""
    try:
        with np.load(path) as stored:
            vectors = {end: np.asarray(stored[end], dtype=np.float64) for end in ("max", "min")}
    except Exception as exc:  # truncated zip, missing array, OSError...: all mean "rebuild"
        raise CorruptEntry(path, f"unreadable vectors ({brief(exc)})") from exc
    for end, v in vectors.items():
        if v.shape != (n,) or not np.all(np.isfinite(v)) or not np.any(v):
            raise CorruptEntry(path, f"vector {end!r} has shape {v.shape} (the problem has {n} "
                                     "parameters) or is zero or not finite")
    return vectors


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
    out: dict[str, Any] = {"vectors": {}}
    for end in ("max", "min"):  # the certificate: a computed residual, one product per end
        x = np.asarray(to_numpy(getattr(a, f"vector_{end}")), dtype=np.float64)
        x = x / np.linalg.norm(x)
        lam, r = rayleigh_residual(op, x)
        if not r <= CERTIFIED_RTOL * abs(lam):
            raise ReferenceError(
                f"reference lanczos: the residual of lambda_{end}={lam:.17g} is {r:.3g}, above "
                f"the certified bound {CERTIFIED_RTOL:g} x |lambda|")
        out.update({f"lambda_{end}": lam, f"residual_{end}": r})
        out["vectors"][end] = x
    return {**out, "seed_1": {"lambda_max": b.lambda_max, "lambda_min": b.lambda_min,
                              "residual_max": b.residual_max, "residual_min": b.residual_min},
            "hvp_calls": a.hvp_calls + b.hvp_calls + 2}


def rayleigh_residual(op: HVPOperator, x: np.ndarray) -> tuple[float, float]:
    """For a unit float64 vector x: its Rayleigh quotient q = x^T H x and residual
    ||H x - q x|| from one product on ``op`` (some eigenvalue of H lies within it of q)."""
    hx = np.asarray(to_numpy(op.matvec(op.asarray(x))), dtype=np.float64)
    q = float(x @ hx)
    return q, float(np.linalg.norm(hx - q * x))
