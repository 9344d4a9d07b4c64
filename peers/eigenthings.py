"""hessian-eigenthings 1.0.0a5 on the model behind a torch operator.

H is the Hessian of the mean loss: eigenthings' ``HessianOperator(model, batches,
supervised_loss(loss_fn))`` with ``full_dataset=True`` sums the batches' Hessians and divides
by the NUMBER of batches, so batches of unequal size give a wrong H. The adapters hand it
batches of one size (:meth:`TorchParts.equal_batches`); ``batches="loader"`` hands it the
operator's batches as a user's ``DataLoader(batch_size=...)`` would yield them, the last one
ragged (the ``-ragged`` names: eigenthings' default behaviour, a slightly wrong H).
Every ``matvec`` the algorithm makes is metered (one full-data product = one data pass).

- ``eigenthings-lanczos``: ``lanczos(op, which="LA", seed=...)`` then ``which="SA"``, with the
  defaults k=10, max_iter=None (= min(2k, n - 1) = 20 steps), tol=1e-4: 20 products per call,
  40 in all. No convergence loop: the steps are fixed; eigenthings' ``converged`` flag
  (Ritz residual |beta_m s_m| < tol |theta|) gives the status. Full reorthogonalisation is on
  only for max_iter <= 50 (silently off beyond).
- ``eigenthings-lanczos-careful``: ONE call with k = max_iter = 100 (all Ritz values, both ends
  from one Krylov space), ``reorthogonalize=True`` forced, tol = hessbench's tol (1e-3).
- ``eigenthings-power``: ``deflated_power_iteration(op, seed=...)`` with the defaults k=10,
  max_iter=100, tol=1e-4: ten deflated power iterations (up to 1,000 products); reported:
  the largest-magnitude eigenvalue as lambda_max. No smallest-eigenvalue routine: lambda_min
  is unsupported.
- ``eigenthings-power-careful``: k=1 (only the top eigenpair), max_iter=1000, tol=hessbench's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hessbench.peers._counting import (Answer, PassMeter, PeerSolver, TorchParts, publish,
                                       require, unsupported)
from hessbench.solvers.base import Run

PIN = "1.0.0a5"
_et = require("hessian_eigenthings", "hessian-eigenthings", PIN)

__all__ = ["EigenthingsLanczos", "EigenthingsLanczosCareful", "EigenthingsLanczosRagged",
           "EigenthingsPower", "EigenthingsPowerCareful"]

BATCHES = ("equal", "loader")


class _Metered(_et.CurvatureOperator):
    """The eigenthings operator with each ``matvec`` metered (one full-data product)."""

    def __init__(self, base: Any, meter: PassMeter) -> None:
        self.base, self._matvec = base, meter.wrap(base.matvec)

    size = property(lambda self: self.base.size)
    device = property(lambda self: self.base.device)
    dtype = property(lambda self: self.base.dtype)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self._matvec(v)


def _operator(run: Run, parts: TorchParts, batches: str) -> tuple[Any, PassMeter]:
    data = parts.equal_batches() if batches == "equal" else parts.batches(parts.batch_size)
    base = _et.HessianOperator(parts.model, data, _et.supervised_loss(parts.loss_fn))
    meter = PassMeter(run)
    return _Metered(base, meter), meter


class _Eigenthings(PeerSolver):
    dist, pin = "hessian-eigenthings", PIN

    def _check(self, batches: str) -> None:
        if batches not in BATCHES:
            raise ValueError(f"batches must be one of {BATCHES}, got {batches!r}")


class EigenthingsLanczos(_Eigenthings):
    """hessian-eigenthings ``lanczos`` with its defaults (k=10, max_iter=20, tol=1e-4), once
    with which="LA" for lambda_max and once with "SA" for lambda_min (fixed steps).
    ``one_call``: one call with k = max_iter, both ends from its Ritz values."""

    name = "eigenthings-lanczos"

    def __init__(self, tol: float = 1e-3, k: int = 10, max_iter: int | None = None,
                 peer_tol: float | None = 1e-4, reorthogonalize: bool | None = None,
                 one_call: bool = False, batches: str = "equal") -> None:
        super().__init__(tol)
        self._check(batches)
        if k < 1 or (max_iter is not None and max_iter < k):
            raise ValueError("k must be >= 1 and max_iter >= k")
        self.k, self.max_iter, self.peer_tol = k, max_iter, peer_tol
        self.reorthogonalize, self.one_call, self.batches = reorthogonalize, one_call, batches

    def _call(self, op: Any, which: str, seed: int) -> Any:
        steps = None if self.max_iter is None else min(self.max_iter, op.size - 1)
        k = min(self.k, op.size if steps is None else steps)
        return _et.lanczos(op, k=k, max_iter=steps, which=which, seed=seed,
                           tol=self.tol if self.peer_tol is None else self.peer_tol,
                           reorthogonalize=self.reorthogonalize)

    def _answers(self, run: Run, which: str, rng: np.random.Generator,
                 parts: TorchParts) -> dict[str, Answer]:
        op, meter = _operator(run, parts, self.batches)
        seed = int(rng.integers(2**31 - 1))
        out = {}
        if self.one_call:
            res = self._call(op, "LA", seed)
            note = f"one lanczos call, {meter.products} products"
            for end, i in (("max", 0), ("min", -1)):
                out[end] = Answer(float(res.eigenvalues[i]), bool(res.converged[i]), note,
                                  float(res.residuals[i]))
            return out
        for end, mode in (("max", "LA"), ("min", "SA")):
            if which in ("both", end):
                before = meter.products
                res = self._call(op, mode, seed)
                out[end] = publish(run, end, Answer(
                    float(res.eigenvalues[0]), bool(res.converged[0]),
                    f"lanczos which={mode}, {meter.products - before} products",
                    float(res.residuals[0])))
        return out


class EigenthingsLanczosRagged(EigenthingsLanczos):
    """``eigenthings-lanczos`` on the operator's batches as a DataLoader yields them (the last
    ragged): eigenthings' default equal-weight average, a slightly wrong Hessian."""

    name = "eigenthings-lanczos-ragged"

    def __init__(self, tol: float = 1e-3, k: int = 10, max_iter: int | None = None,
                 peer_tol: float | None = 1e-4, reorthogonalize: bool | None = None,
                 one_call: bool = False, batches: str = "loader") -> None:
        super().__init__(tol, k, max_iter, peer_tol, reorthogonalize, one_call, batches)


class EigenthingsLanczosCareful(EigenthingsLanczos):
    """A careful user's ``lanczos``: one call, k = max_iter = 100 (all Ritz values, both ends),
    full reorthogonalisation forced on, eigenthings' residual test at hessbench's tol."""

    name = "eigenthings-lanczos-careful"

    def __init__(self, tol: float = 1e-3, k: int = 100, max_iter: int | None = 100,
                 peer_tol: float | None = None, reorthogonalize: bool | None = True,
                 one_call: bool = True, batches: str = "equal") -> None:
        super().__init__(tol, k, max_iter, peer_tol, reorthogonalize, one_call, batches)


class EigenthingsPower(_Eigenthings):
    """hessian-eigenthings ``deflated_power_iteration`` with its defaults (k=10, max_iter=100,
    tol=1e-4): the largest-magnitude eigenvalue as lambda_max; lambda_min unsupported."""

    name = "eigenthings-power"

    def __init__(self, tol: float = 1e-3, k: int = 10, max_iter: int = 100,
                 peer_tol: float | None = 1e-4, batches: str = "equal") -> None:
        super().__init__(tol)
        self._check(batches)
        if k < 1 or max_iter < 1:
            raise ValueError("k and max_iter must be >= 1")
        self.k, self.max_iter, self.peer_tol, self.batches = k, max_iter, peer_tol, batches

    def _answers(self, run: Run, which: str, rng: np.random.Generator,
                 parts: TorchParts) -> dict[str, Answer]:
        out = {"min": unsupported("hessian-eigenthings' power iteration finds the largest "
                                  "magnitude only")}
        if which in ("both", "max"):
            op, meter = _operator(run, parts, self.batches)
            res = _et.deflated_power_iteration(
                op, k=min(self.k, op.size), max_iter=self.max_iter,
                tol=self.tol if self.peer_tol is None else self.peer_tol,
                seed=int(rng.integers(2**31 - 1)))
            out["max"] = Answer(float(res.eigenvalues[0]), bool(res.converged[0]),
                                f"deflated power iteration k={self.k}, {meter.products} "
                                "products, largest magnitude", float(res.residuals[0]))
        return out


class EigenthingsPowerCareful(EigenthingsPower):
    """A careful user's power iteration: k=1 (the top pair only), max_iter=1000, tol =
    hessbench's tol."""

    name = "eigenthings-power-careful"

    def __init__(self, tol: float = 1e-3, k: int = 1, max_iter: int = 1000,
                 peer_tol: float | None = None, batches: str = "equal") -> None:
        super().__init__(tol, k, max_iter, peer_tol, batches)
