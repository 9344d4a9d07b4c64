"""Pieces shared by the stochastic solvers: shifted operators, mini-batches, windowed estimates.

Every solver here is a top-eigenvector method applied to B = s (H - c I):

- lambda_max: B = H (s = +1, c = 0). Methods that converge to the largest-*magnitude*
  eigenvalue of B (power-like ones) restart on B = H - theta I when they end with a negative
  theta, since then the dominant end may have been lambda_min; the dominant eigenvalue of
  H - theta I is lambda_max - theta >= 0 (theta >= lambda_min). So a dominant negative
  lambda_min is not returned as lambda_max (unless the budget runs out before the restart).
- lambda_min: B = c I - H (s = -1) with c the lambda_max estimate of the same solver, computed
  first (its cost counted); the top eigenvalue of B is c - lambda_min.

The H eigenvalue estimate of a unit x is its Rayleigh quotient x^T H x = c + s x^T B x.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hessbench.solvers.base import Run
from hessbench.solvers.kernels import dot, ends, norm

OneEnd = Callable[[str, "Shifted"], tuple[float, bool]]


@dataclass(frozen=True)
class Shifted:
    """B = sign (H - shift I), applied through the run's (cost-counted) HVPs."""

    sign: float
    shift: float

    def apply(self, run: Run, x: Any, indices: np.ndarray | None = None) -> Any:
        """B_S x (full data when ``indices`` is None): one HVP."""
        hx = run.matvec(x, indices)
        y = hx - self.shift * x if self.shift else hx
        return -y if self.sign < 0 else y

    def to_h(self, theta_b: float) -> float:
        """The H Rayleigh quotient c + s x^T B x from x^T B x (unit x)."""
        return self.shift + self.sign * theta_b


def batch_or_none(op_samples: int, batch_size: int | None) -> int | None:
    """The mini-batch size to draw, or None for full-data products (b >= N or b None)."""
    return None if batch_size is None or batch_size >= op_samples else batch_size


def draw(run: Run, batch_size: int | None, rng: np.random.Generator) -> np.ndarray | None:
    """A fresh random mini-batch of sample indices, or None (full data)."""
    return None if batch_size is None else run.op.sample_indices(batch_size, rng)


def check_positive(**values: float | None) -> None:
    """Raise ValueError naming the first option that is given (not None) but not positive."""
    for key, value in values.items():
        if value is not None and not value > 0:
            raise ValueError(f"{key} must be positive, got {value}")


class WindowedMean:
    """Running mean of the last ``window`` Rayleigh quotients, and its stopping test.

    ``converged(tol)``: with m the mean of the last ``window`` values and m' the mean of the
    ``window`` values before them (disjoint windows), |m - m'| <= tol |m|. For window = 1 it
    is the classic test |theta_k - theta_{k-1}| <= tol |theta_k| of power iteration.
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self.values: deque[float] = deque(maxlen=2 * window)

    def push(self, value: float) -> None:
        self.values.append(value)

    @property
    def mean(self) -> float:
        recent = list(self.values)[-self.window:]
        return float(np.mean(recent))

    def converged(self, tol: float) -> bool:
        if len(self.values) < 2 * self.window:
            return False
        values = list(self.values)
        m, previous = np.mean(values[self.window:]), np.mean(values[: self.window])
        return bool(abs(m - previous) <= tol * abs(m))


def windowed_iteration(run: Run, end: str, op: Shifted, x: Any,
                       batches: Callable[[], np.ndarray | None], window: int, tol: float,
                       max_steps: int, update: Callable[[int, Any, Any], Any]
                       ) -> tuple[float, bool]:
    """Iterate x <- update(t, x, B_{S_t} x) on fresh batches S_t from the unit vector x,
    publishing (one trace row per step) the windowed mean of the H Rayleigh quotients and
    stopping when :class:`WindowedMean` passes its test. Returns (that mean, whether it passed).
    """
    estimate = WindowedMean(window)
    for t in range(max_steps):
        bx = op.apply(run, x, batches())
        estimate.push(op.to_h(dot(x, bx)))
        run.estimate(end, estimate.mean, x)
        run.record()
        if estimate.converged(tol):
            return estimate.mean, True
        x = update(t, x, bx)
    return estimate.mean, False


def spectral_scale(run: Run, end: str, op: Shifted, x: Any, steps: int,
                   batches: Callable[[], np.ndarray | None]) -> float:
    """L = max_k ||B_S x_k|| over ``steps`` power steps x <- B_S x / ||B_S x|| on fresh batches
    from x (one trace row each, publishing the mini-batch Rayleigh quotient for ``end``): an
    estimate (from below) of the spectral radius of B, used to scale step sizes.

    The iterate is discarded: it tends to the largest-magnitude end of B, possibly the wrong
    one, where the methods that use L would stall (it is an eigenvector of both B and A = B + L I).
    """
    scale = 0.0
    for _ in range(steps):
        bx = op.apply(run, x, batches())
        size = norm(bx)
        scale = max(scale, size)
        run.estimate(end, op.to_h(dot(x, bx)), x)
        run.record()
        x = bx / size
    return scale


def solve_ends(run: Run, which: str, one_end: OneEnd, restart_negative: bool) -> tuple[str, str]:
    """lambda_max on B = H (restarted on H - theta I if theta < 0 and ``restart_negative``),
    then, unless only "max" is asked, lambda_min on c I - H with c the lambda_max estimate.
    Status "max_steps" as soon as an end fails its test (lambda_min is then not attempted).

    ``one_end(end, B)`` runs the method on B, publishes estimates and returns
    (H eigenvalue estimate, whether its stopping test passed).
    """
    lam_max, ok = one_end("max", Shifted(1.0, 0.0))
    if restart_negative and lam_max < 0:
        lam_max, ok = one_end("max", Shifted(1.0, lam_max))
    if not ok:
        return "max_steps", "lambda_max: stopping test not met within the step limit"
    if "min" not in ends(which):
        return "converged", "lambda_max: stopping test met"
    if "max" not in ends(which):
        run.lam["max"] = None  # only lambda_min was asked for; lambda_max served as the shift
    _, ok = one_end("min", Shifted(-1.0, lam_max))
    if not ok:
        return "max_steps", "lambda_min: stopping test not met within the step limit"
    return "converged", "stopping test met for every asked end"
