"""A PyTorch Lightning callback running a :class:`hessbench.monitor.HessianMonitor` every
``every`` epochs (at the end of the training epoch, on the global-zero process only).
``HessianMonitorCallback`` is defined only when ``lightning`` (or ``pytorch_lightning``)
imports; hessbench does not depend on it.

    monitor = HessianMonitor(lit_module, loss_fn, (x, y), log_dir="runs/hessian")
    trainer = lightning.Trainer(callbacks=[HessianMonitorCallback(monitor, every=5)])
"""

from __future__ import annotations

from typing import Any

from hessbench.errors import InputError

try:
    import lightning.pytorch as _pl
except ImportError:  # pragma: no cover - depends on the environment
    try:
        import pytorch_lightning as _pl  # type: ignore[no-redef]
    except ImportError:
        _pl = None  # type: ignore[assignment]

__all__ = ["HessianMonitorCallback"] if _pl is not None else []

if _pl is not None:  # pragma: no cover - lightning is not installed in the test environment

    class HessianMonitorCallback(_pl.Callback):  # type: ignore[misc,name-defined]
        """Call ``monitor.step(trainer.current_epoch)`` every ``every`` epochs."""

        def __init__(self, monitor: Any, every: int = 1) -> None:
            if not isinstance(every, int) or every < 1:
                raise InputError(f"every must be a positive number of epochs, got {every!r}")
            if not callable(getattr(monitor, "step", None)):
                raise InputError("monitor must be a hessbench.monitor.HessianMonitor")
            self.monitor, self.every = monitor, every

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            epoch = trainer.current_epoch
            if epoch % self.every == 0 and trainer.is_global_zero:
                self.monitor.step(epoch)
