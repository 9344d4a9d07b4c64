"""What a solve returns, and the budget it runs under."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Budget:
    """Limits on one solve; ``None`` means unlimited. Data passes = samples touched / N."""

    max_passes: float | None = None
    max_seconds: float | None = None
    max_hvps: int | None = None

    @classmethod
    def coerce(cls, budget: Budget | dict | None) -> Budget:
        if budget is None:
            return cls()
        if isinstance(budget, Budget):
            return budget
        if isinstance(budget, dict):
            unknown = set(budget) - {"max_passes", "max_seconds", "max_hvps"}
            if unknown:
                raise ValueError(f"unknown budget keys {sorted(unknown)}; "
                                 "use max_passes, max_seconds, max_hvps")
            return cls(**budget)
        raise TypeError(f"budget must be a Budget, a dict or None, not {type(budget).__name__}")

    def __post_init__(self) -> None:
        for name in ("max_passes", "max_seconds", "max_hvps"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"budget {name} must be positive, got {value}")


@dataclass
class TraceRow:
    """Solver state after one step: cumulative cost and current estimates (None if unknown)."""

    step: int
    seconds: float
    data_passes: float
    hvp_calls: int
    lambda_max: float | None = None
    lambda_min: float | None = None
    residual_max: float | None = None
    residual_min: float | None = None


@dataclass
class EigenResult:
    """Extreme eigenvalues of H with their cost.

    ``lambda_max`` is the largest and ``lambda_min`` the smallest *algebraic* eigenvalue estimate
    (``None`` for an end not asked for). ``residual_*`` are ||H x - lambda x|| for the unit Ritz
    vectors ``vector_*`` (as the solver estimates them). ``status`` is ``"converged"``,
    ``"budget"`` (a limit was reached), ``"max_steps"`` or ``"failed"`` (``message`` says why);
    ``converged`` is True only when the solver's own stopping test passed for every asked end.
    Costs: ``data_passes`` = samples touched by HVPs / N, ``hvp_calls`` counts vectors.
    """

    solver: str
    which: str
    lambda_max: float | None
    lambda_min: float | None
    converged: bool
    status: str
    hvp_calls: int
    data_passes: float
    seconds: float
    vector_max: Any = None
    vector_min: Any = None
    residual_max: float | None = None
    residual_min: float | None = None
    message: str = ""
    trace: list[TraceRow] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready fields (no vectors)."""
        keys = ("solver", "which", "lambda_max", "lambda_min", "converged", "status", "hvp_calls",
                "data_passes", "seconds", "residual_max", "residual_min", "message")
        return {k: _clean(getattr(self, k)) for k in keys}


def _clean(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x
