"""The JAX Hessian monitor (:class:`JaxHessianMonitor`); see :mod:`hessbench.monitor`."""

from __future__ import annotations

from typing import Any, Callable

from hessbench.errors import InputError
from hessbench.monitor import HessianRecord, _check_options, _MonitorBase


class JaxHessianMonitor(_MonitorBase):
    """The JAX counterpart: ``step(epoch, params)`` for a pure ``loss_fn(params, batch)``;
    ``**operator_options`` are those of :class:`hessbench.backends.jax.HessianOperator`."""

    backend = "jax"

    def __init__(self, loss_fn: Callable[..., Any], data: Any, *, solver: str = "lanczos",
                 tol: float = 1e-3, budget: Any = None, which: str = "both",
                 warm_start: bool = False, log_dir: Any = None, seed: int = 0,
                 tensorboard: Any = None, progress: bool = False,
                 solver_options: dict[str, Any] | None = None, warm_start_noise: float = 0.1,
                 certify: bool = True, **operator_options: Any) -> None:
        from hessbench.backends.jax import HessianOperator

        if not callable(loss_fn):
            raise InputError("loss_fn must be callable: loss_fn(params, (inputs, targets))")
        _check_options(HessianOperator, operator_options, ("loss_fn", "params", "data"))
        super().__init__(solver=solver, tol=tol, budget=budget, which=which,
                         warm_start=warm_start, warm_start_noise=warm_start_noise,
                         log_dir=log_dir, seed=seed, tensorboard=tensorboard,
                         progress=progress, solver_options=solver_options, certify=certify)
        self.loss_fn, self.data, self.operator_options = loss_fn, data, operator_options

    def step(self, epoch: int, params: Any) -> HessianRecord:
        """Compute the asked ends at ``params``; log and return the record."""
        from hessbench.backends.jax import HessianOperator

        return self._step(epoch, lambda: HessianOperator(self.loss_fn, params, self.data,
                                                         **self.operator_options))
