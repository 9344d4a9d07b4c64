"""The record of one Hessian monitor step (:mod:`hessbench.monitor`) and its log files."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from hessbench.errors import InputError

__all__ = ["CSV", "FIELDS", "JSONL", "HessianRecord", "finite_or_none"]

JSONL, CSV = "hessian.jsonl", "hessian.csv"


@dataclass(frozen=True)
class HessianRecord:
    """One monitor step. ``lambda_max`` / ``lambda_min`` (None for an end not asked) with their
    certified error bars ``residual_max`` / ``residual_min`` (an eigenvalue lies within ± r);
    ``data_passes``, ``hvp_calls``, ``seconds``: the solve's own cost; ``operator_passes`` and
    ``step_seconds``: the whole step (operator construction, its determinism probe and the
    certifying product included); ``certified``: the residuals were recomputed as
    ||Hx - θx|| with one full product per end (else they are the solver's own); ``seed``: the
    solve's seed, ``step_seed(monitor seed, epoch)``."""

    epoch: int
    lambda_max: float | None
    lambda_min: float | None
    residual_max: float | None
    residual_min: float | None
    converged: bool
    status: str
    data_passes: float
    hvp_calls: int
    seconds: float
    operator_passes: float
    step_seconds: float
    solver: str
    solver_options: dict[str, Any]
    which: str
    seed: int
    warm_started: bool
    certified: bool
    backend: str
    parameters: int
    num_samples: int
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: finite_or_none(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HessianRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - set(data) - {"message"}
        if missing:
            raise InputError(f"not a hessian monitor record: missing {sorted(missing)}")
        return cls(**{k: v for k, v in data.items() if k in names})


FIELDS = [f.name for f in dataclasses.fields(HessianRecord)]


def finite_or_none(x: Any) -> Any:
    """``x``, or None for a non-finite float (JSON has no NaN or inf)."""
    return None if isinstance(x, float) and not math.isfinite(x) else x
