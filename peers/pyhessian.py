"""PyHessian 0.1 (``pip install pyhessian==0.1``) on the model behind a torch operator.

H is the Hessian of the mean loss over all N samples (PyHessian's ``data=`` path when one batch
holds them, else its ``dataloader=`` path over the operator's batches, which weights batches
by size); every product PyHessian makes (``hessian_vector_product``, ``dataloader_hv_product``)
is metered: one product = one data pass. PyHessian's random vectors come from torch's global
generator, seeded here from the run's seed.

- ``pyhessian-power``: ``hessian(...).eigenvalues(maxIter=100, tol=1e-3, top_n=1)``, PyHessian's
  power iteration, stopping when the Rayleigh quotient changes by less than ``tol`` relative.
  It finds the eigenvalue of largest MAGNITUDE (lambda_max when lambda_max > |lambda_min|,
  true of these problems), reported as lambda_max. PyHessian has no smallest-eigenvalue
  routine: lambda_min is reported unsupported (status ``"failed"``, no value). PyHessian does
  not say whether it converged: a run that used all ``max_iter`` products is ``max_steps``.
- ``pyhessian-power-shifted`` (OURS, not PyHessian's): the same, then power iteration with
  PyHessian's products on H - lambda_max I (same ``max_iter`` and ``tol`` rule) for lambda_min.
- ``pyhessian-slq``: min / max Ritz values of ``density(iter=100, n_v=1)`` (stochastic
  Lanczos quadrature). PyHessian 0.1 calls ``torch.eig``, removed from torch 1.9+: after its
  100 products it raises, and the run is ``failed`` with that error, as a user sees it.
- ``pyhessian-slq-shimmed`` (OURS): the same with ``torch.eig`` replaced, during the call only,
  by ``torch.linalg.eigh`` of its symmetric tridiagonal (in float32, as PyHessian builds it).
  SLQ has no stopping rule (a fixed 100 steps): ``max_steps``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from hessbench.peers._counting import (Answer, PassMeter, PeerSolver, TorchParts, publish,
                                       require, unsupported)
from hessbench.solvers.base import Run

PIN = "0.1"
_hessian_module = require("pyhessian.hessian", "PyHessian", PIN)
_utils = require("pyhessian.utils", "PyHessian", PIN)

__all__ = ["PyHessianPower", "PyHessianPowerShifted", "PyHessianSLQ", "PyHessianSLQShimmed"]


@contextlib.contextmanager
def _metered_hessian(run: Run, parts: TorchParts) -> Iterator[tuple[Any, PassMeter]]:
    """PyHessian's ``hessian`` object on ``parts``, its two product functions metered while
    the context is open."""
    meter = PassMeter(run)
    single = len(parts.inputs) <= parts.batch_size
    data = dict(data=(parts.inputs, parts.targets)) if single else \
        dict(dataloader=parts.batches(parts.batch_size))
    h = _hessian_module.hessian(parts.model, parts.loss_fn, cuda=False, **data)
    h.dataloader_hv_product = meter.wrap(h.dataloader_hv_product)
    original = _hessian_module.hessian_vector_product
    _hessian_module.hessian_vector_product = meter.wrap(original)
    try:
        yield h, meter
    finally:
        _hessian_module.hessian_vector_product = original
        for p in parts.model.parameters():  # PyHessian's backward(create_graph=True) cycle
            p.grad = None


def _product(h: Any, v: list[torch.Tensor]) -> list[torch.Tensor]:
    """H v through PyHessian's own (metered) product functions."""
    if h.full_dataset:
        return list(h.dataloader_hv_product(v)[1])
    return list(_hessian_module.hessian_vector_product(h.gradsH, h.params, v))


class PyHessianPower(PeerSolver):
    """PyHessian 0.1 power iteration (``eigenvalues(top_n=1)``): largest-magnitude eigenvalue
    only; lambda_min unsupported. Options: ``max_iter`` (PyHessian's maxIter, 100),
    ``peer_tol`` (its relative-change tol, 1e-3); hessbench's ``tol`` is not used."""

    name = "pyhessian-power"
    dist, pin = "PyHessian", PIN

    def __init__(self, tol: float = 1e-3, max_iter: int = 100, peer_tol: float = 1e-3) -> None:
        super().__init__(tol)
        if max_iter < 1 or not 0 < peer_tol < 1:
            raise ValueError("max_iter must be >= 1 and peer_tol in (0, 1)")
        self.max_iter, self.peer_tol = max_iter, peer_tol

    def _top(self, h: Any, meter: PassMeter) -> Answer:
        before = meter.products
        values, _ = h.eigenvalues(maxIter=self.max_iter, tol=self.peer_tol, top_n=1)
        used = meter.products - before
        done = used < self.max_iter
        return Answer(float(values[0]), done, f"power iteration, {used} products"
                      + ("" if done else " (maxIter reached)") + ", largest magnitude")

    def _answers(self, run: Run, which: str, rng: np.random.Generator,
                 parts: TorchParts) -> dict[str, Answer]:
        with _metered_hessian(run, parts) as (h, meter):
            out = {"min": unsupported("PyHessian 0.1 has no smallest-eigenvalue routine")}
            if which in ("both", "max"):
                out["max"] = self._top(h, meter)
            return out


class PyHessianPowerShifted(PyHessianPower):
    """OURS on PyHessian's products: PyHessian's power iteration for lambda_max, then power
    iteration on H - lambda_max I (same maxIter / tol rule) for lambda_min."""

    name = "pyhessian-power-shifted"

    def _answers(self, run: Run, which: str, rng: np.random.Generator,
                 parts: TorchParts) -> dict[str, Answer]:
        with _metered_hessian(run, parts) as (h, meter):
            top = publish(run, "max", self._top(h, meter))
            out = {"max": top}
            if which in ("both", "min"):
                out["min"] = self._shifted(h, top.value)
            return out

    def _shifted(self, h: Any, shift: float) -> Answer:
        v = _utils.normalization([torch.randn_like(p) for p in h.params])
        mu = None
        for step in range(1, self.max_iter + 1):
            Hv = _product(h, v)
            Sv = [a - shift * b for a, b in zip(Hv, v)]
            new = float(_utils.group_product(Sv, v))
            v = _utils.normalization(Sv)
            if mu is not None and abs(mu - new) / (abs(mu) + 1e-6) < self.peer_tol:
                return Answer(new + shift, True, f"ours: shifted power iteration, {step} "
                              "products")
            mu = new
        return Answer(mu + shift, False, f"ours: shifted power iteration, {self.max_iter} "
                      "products (maxIter reached)")


class PyHessianSLQ(PeerSolver):
    """PyHessian 0.1 ``density(iter=100, n_v=1)``: extreme Ritz values of its stochastic
    Lanczos quadrature; fails on torch >= 1.9 (``torch.eig`` removed), reported as such."""

    name = "pyhessian-slq"
    dist, pin = "PyHessian", PIN
    shim = False

    def __init__(self, tol: float = 1e-3, iter: int = 100, n_v: int = 1) -> None:  # noqa: A002
        super().__init__(tol)
        if iter < 2 or n_v < 1:
            raise ValueError("iter must be >= 2 and n_v >= 1")
        self.iter, self.n_v = iter, n_v

    def _answers(self, run: Run, which: str, rng: np.random.Generator,
                 parts: TorchParts) -> dict[str, Answer]:
        with _metered_hessian(run, parts) as (h, meter), self._eig():
            values, _ = h.density(iter=self.iter, n_v=self.n_v)
        ritz = np.concatenate([np.asarray(v, dtype=np.float64) for v in values])
        note = (f"{'ours: torch.eig shimmed; ' if self.shim else ''}SLQ Ritz values after "
                f"{meter.products} products (fixed steps, no stopping rule)")
        return {"max": Answer(float(ritz.max()), False, note),
                "min": Answer(float(ritz.min()), False, note)}

    @contextlib.contextmanager
    def _eig(self) -> Iterator[None]:
        if not self.shim:
            yield
            return
        original = getattr(torch, "eig", None)

        def eig(A: torch.Tensor, eigenvectors: bool = False) -> tuple[torch.Tensor, Any]:
            L, V = torch.linalg.eigh(A)  # PyHessian's T is symmetric tridiagonal
            return torch.stack([L, torch.zeros_like(L)], dim=1), V

        torch.eig = eig
        try:
            yield
        finally:
            if original is None:
                del torch.eig
            else:
                torch.eig = original


class PyHessianSLQShimmed(PyHessianSLQ):
    """OURS: ``pyhessian-slq`` with ``torch.eig`` shimmed by ``torch.linalg.eigh`` during the
    call, so PyHessian's SLQ runs on current torch."""

    name = "pyhessian-slq-shimmed"
    shim = True
