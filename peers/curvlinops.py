"""curvlinops (PyPI ``curvlinops-for-pytorch`` 3.0.1) with SciPy's ``eigsh`` (ARPACK).

``HessianLinearOperator(model, loss_func, params, data).to_scipy()``: H is the Hessian of the
mean loss over all N samples (curvlinops weights each batch by |b| / N for a loss with
``reduction="mean"``; hessbench's batch-mean ``loss_fn`` is passed as such an ``nn.Module``),
on the operator's batches. Every product curvlinops makes (``_matmat``, its loop over all
batches, behind ``@`` and ``to_scipy``) is metered at N samples per vector (one data pass);
that includes
curvlinops' determinism probe at construction (on by default: two full products, and two
gradient passes that are not HVPs), which a user pays too. ARPACK's start vector ``v0`` and,
where SciPy takes ``rng=``, its restart draws come from the run's seed (eigsh's default v0 is
unseeded). ARPACK's test: |theta - lambda| <= tol |theta| on its Ritz estimates.

- ``curvlinops-eigsh``: eigsh's defaults, ``k=1, which="LA"`` for lambda_max then ``"SA"`` for
  lambda_min: ``tol=0`` (machine precision; hundreds of products), ``ncv`` = 20, maxiter 10 n.
- ``curvlinops-eigsh-be``: one call, ``k=2, which="BE"`` (one eigenvalue from each end), tol=0.
- ``curvlinops-eigsh-careful``: ``LA`` then ``SA`` with ``tol`` = hessbench's tol (1e-3), the
  same relative accuracy hessbench's solvers stop at; ncv left at SciPy's default.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from scipy.sparse.linalg import ArpackNoConvergence, eigsh

from hessbench.peers._counting import (Answer, PassMeter, PeerSolver, TorchParts, publish,
                                       require)
from hessbench.solvers.base import Run

PIN = "3.0.1"
_cl = require("curvlinops", "curvlinops-for-pytorch", PIN)

__all__ = ["CurvlinopsEigsh", "CurvlinopsEigshBE", "CurvlinopsEigshCareful", "scipy_operator"]

_SEEDED = "rng" in inspect.signature(eigsh).parameters
MODES = ("LA/SA", "BE")


def scipy_operator(run: Run, parts: TorchParts,
                   check_deterministic: bool = True) -> tuple[Any, PassMeter]:
    """curvlinops' Hessian as a SciPy ``LinearOperator`` (float64), its products metered."""
    meter = PassMeter(run)
    op = _cl.HessianLinearOperator(parts.model, parts.criterion, parts.params,
                                   parts.batches(parts.batch_size), check_deterministic=False)
    op._matmat = meter.wrap(op._matmat, vectors=lambda M: M[0].shape[-1])
    if check_deterministic:  # what the constructor's default does, now metered
        op._check_deterministic()
    return op.to_scipy(), meter


class CurvlinopsEigsh(PeerSolver):
    """curvlinops ``HessianLinearOperator`` + SciPy ``eigsh`` with its defaults (tol=0):
    ``mode="LA/SA"`` (k=1 each end) or ``"BE"`` (k=2, one call). Options: ``eigsh_tol`` (None:
    hessbench's tol), ``ncv``, ``maxiter``, ``check_deterministic`` (curvlinops' probe)."""

    name = "curvlinops-eigsh"
    dist, pin = "curvlinops-for-pytorch", PIN

    def __init__(self, tol: float = 1e-3, mode: str = "LA/SA", eigsh_tol: float | None = 0.0,
                 ncv: int | None = None, maxiter: int | None = None,
                 check_deterministic: bool = True) -> None:
        super().__init__(tol)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if eigsh_tol is not None and not 0 <= eigsh_tol < 1:
            raise ValueError(f"eigsh_tol must be in [0, 1) or None, got {eigsh_tol}")
        self.mode, self.eigsh_tol, self.ncv, self.maxiter = mode, eigsh_tol, ncv, maxiter
        self.check_deterministic = check_deterministic

    def _eigsh(self, A: Any, k: int, which: str, rng: np.random.Generator) -> tuple[Any, bool, str]:
        seeded = {"rng": rng.spawn(1)[0]} if _SEEDED else {}
        tol = self.tol if self.eigsh_tol is None else self.eigsh_tol
        try:
            values = eigsh(A, k=k, which=which, tol=tol, v0=rng.standard_normal(A.shape[0]),
                           ncv=self.ncv, maxiter=self.maxiter, return_eigenvectors=False,
                           **seeded)
            return np.sort(values), True, "ARPACK converged"
        except ArpackNoConvergence as err:
            return np.sort(err.eigenvalues), False, f"ARPACK: {err}"

    def _answers(self, run: Run, which: str, rng: np.random.Generator,
                 parts: TorchParts) -> dict[str, Answer]:
        A, meter = scipy_operator(run, parts, self.check_deterministic)
        probe = meter.products
        out = {}
        if self.mode == "BE" and which == "both":
            values, ok, note = self._eigsh(A, 2, "BE", rng)
            note = f"eigsh k=2 BE, {meter.products - probe} products, {note}"
            if len(values) == 2:
                out = {"max": Answer(float(values[-1]), ok, note),
                       "min": Answer(float(values[0]), ok, note)}
        else:
            for end, mode in (("max", "LA"), ("min", "SA")):
                if which in ("both", end):
                    before = meter.products
                    values, ok, note = self._eigsh(A, 1, mode, rng)
                    note = f"eigsh k=1 {mode}, {meter.products - before} products, {note}"
                    out[end] = publish(run, end, Answer(
                        float(values[0]) if len(values) else None, ok, note))
        for a in out.values():
            a.note += f" (+{probe} in curvlinops' determinism probe)" if probe else ""
        return out


class CurvlinopsEigshBE(CurvlinopsEigsh):
    """curvlinops + ``eigsh(k=2, which="BE")``: both ends from one ARPACK run, tol=0."""

    name = "curvlinops-eigsh-be"

    def __init__(self, tol: float = 1e-3, mode: str = "BE", eigsh_tol: float | None = 0.0,
                 ncv: int | None = None, maxiter: int | None = None,
                 check_deterministic: bool = True) -> None:
        super().__init__(tol, mode, eigsh_tol, ncv, maxiter, check_deterministic)


class CurvlinopsEigshCareful(CurvlinopsEigsh):
    """A careful user's eigsh: LA then SA with tol = hessbench's tol (1e-3) instead of 0."""

    name = "curvlinops-eigsh-careful"

    def __init__(self, tol: float = 1e-3, mode: str = "LA/SA", eigsh_tol: float | None = None,
                 ncv: int | None = None, maxiter: int | None = None,
                 check_deterministic: bool = True) -> None:
        super().__init__(tol, mode, eigsh_tol, ncv, maxiter, check_deterministic)
