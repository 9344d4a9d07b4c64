"""Trace and spectral density of an HVP operator from Rademacher probes, with their cost.

For the n x n symmetric H (``op``) and Rademacher vectors z (entries +-1, so E[z z^T] = I and
||z||^2 = n exactly):

- :func:`hutchinson_trace` (Hutchinson 1989): tr(H) ~ (1/m) sum_i z_i^T H z_i, unbiased, one
  product per probe. The single-probe variance is 2 (||H||_F^2 - sum_i H_ii^2).
- :func:`hutchpp_trace` (Hutch++; Meyer, Musco, Musco, Woodruff 2021): m products split in
  three. Q = orth(H S) for k = m/3 probes S; then tr(H) = tr(Q^T H Q) + tr(P H P) exactly for
  P = I - Q Q^T, the first term computed (k products), the second by Hutchinson on P H P with
  the remaining probes G: (1/g) sum_i (P g_i)^T H (P g_i). Deflating the large eigenvalues
  cuts the variance where the spectrum has outliers (Hessians do).
- :func:`slq_density` (stochastic Lanczos quadrature; Ubaru, Chen, Saad 2017; Ghorbani,
  Krishnan, Xiao 2019): from each probe q = z / sqrt(n), ``lanczos_steps`` Lanczos steps give
  T = S diag(theta) S^T, and the Gauss quadrature nodes theta_j with weights w_j = S[0, j]^2
  (sum 1) satisfy sum_j w_j theta_j^p = q^T H^p q for p <= 2 steps - 1 (exact arithmetic).
  Averaged over probes they estimate the spectral measure (1/n) sum_i delta(t - lambda_i):
  its moments (1/n) tr(H^p), a Gaussian-smoothed density, quantiles.

Confidence bands (``TraceEstimate.low`` / ``high``): estimate -+ t_{(1+c)/2, g-1} s / sqrt(g),
with s the sample standard deviation of the g per-probe terms averaged (all m for Hutchinson,
the g residual probes for Hutch++) and t Student's quantile: the standard-error band of a mean
of i.i.d. terms, asymptotically exact (CLT; a quadratic form of a Rademacher vector is close to
normal unless a few entries of H dominate). For Hutch++ it is conditional on the sketch Q: given
Q, tr(Q^T H Q) is exact and the residual mean is unbiased for tr(P H P), so the band holds for
every Q, hence unconditionally. It is not a worst-case bound.

Cost: every product goes through a :class:`hessbench.solvers.base.Run` (unlimited budget), as in
the solvers: ``data_passes`` = samples touched / N, ``hvp_calls``, wall ``seconds``. Probes are
drawn in NumPy from ``numpy.random.default_rng(seed)`` (one call of n draws per probe, so every
backend and block size sees the same probes) and converted with ``op.asarray``; vector work
stays in the operator's array type (array API), small reductions are float64 NumPy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from scipy.stats import t as student_t
from tqdm.auto import tqdm

from hessbench.backends.base import HVPOperator
from hessbench.solvers.base import Run
from hessbench.solvers import kernels
from hessbench.solvers.kernels import small
from hessbench.solvers.result import Budget


def rademacher(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """k Rademacher vectors of length n as the columns of a float64 (n, k) array; column j is
    the (j+1)-th call ``rng.integers(0, 2, n)`` mapped to +-1."""
    return np.stack([rng.integers(0, 2, n) * 2.0 - 1.0 for _ in range(k)], axis=1)


def _column_dots(X: Any, Y: Any) -> np.ndarray:
    """x_j^T y_j for every column j, as float64 NumPy."""
    xp = array_namespace(X)
    return small(xp.sum(X * Y, axis=0))


def _check_op(op: HVPOperator) -> None:
    if not isinstance(op, HVPOperator):
        raise TypeError(f"op must be an HVPOperator, not {type(op).__name__}")


@dataclass(frozen=True)
class TraceEstimate:
    """An estimate of tr(H) (units of H's eigenvalues, summed over all n of them) with its
    band [low, high] at level ``confidence`` (module docstring: mean of ``terms`` -+ t s /
    sqrt(g), plus ``deflated``), and its cost.

    ``terms``: the per-probe terms averaged (Hutchinson: z^T H z; Hutch++: (P g)^T H (P g));
    ``deflated``: tr(Q^T H Q) (Hutch++; 0 for Hutchinson); ``stderr``: s / sqrt(g)."""

    method: str
    estimate: float
    low: float
    high: float
    confidence: float
    stderr: float
    deflated: float
    terms: tuple[float, ...]
    size: int
    hvp_calls: int
    data_passes: float
    seconds: float
    seed: int
    options: dict[str, Any] = field(default_factory=dict)

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the confidence band."""
        return self.low <= value <= self.high

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _trace_estimate(method: str, run: Run, terms: np.ndarray, deflated: float,
                    confidence: float, seed: int, options: dict[str, Any]) -> TraceEstimate:
    g = len(terms)
    stderr = float(np.std(terms, ddof=1) / math.sqrt(g))
    half = float(student_t.ppf(0.5 + confidence / 2, g - 1)) * stderr
    estimate = deflated + float(np.mean(terms))
    return TraceEstimate(method, estimate, estimate - half, estimate + half, confidence,
                         stderr, deflated, tuple(float(x) for x in terms), run.op.size,
                         run.hvp_calls, run.data_passes, run.seconds(), seed, options)


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def hutchinson_trace(op: HVPOperator, num_vectors: int, seed: int = 0, *,
                     block_size: int = 8, confidence: float = 0.95) -> TraceEstimate:
    """Hutchinson's estimate of tr(H) from ``num_vectors`` (>= 2) Rademacher probes, multiplied
    ``block_size`` at a time (``op.matmat``); costs ``num_vectors`` full products."""
    _check_op(op)
    _check_confidence(confidence)
    if num_vectors < 2:
        raise ValueError(f"num_vectors must be >= 2 (a band needs a sample variance), got "
                         f"{num_vectors}")
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    rng = np.random.default_rng(seed)
    run = Run(op, Budget(), label="hutchinson")
    terms = []
    for start in range(0, num_vectors, block_size):
        Z = op.asarray(rademacher(rng, op.size, min(block_size, num_vectors - start)))
        terms.append(_column_dots(Z, run.matmat(Z)))
    return _trace_estimate("hutchinson", run, np.concatenate(terms), 0.0, confidence, seed,
                           {"num_vectors": num_vectors, "block_size": block_size})


def hutchpp_trace(op: HVPOperator, num_matvecs: int, seed: int = 0, *,
                  confidence: float = 0.95) -> TraceEstimate:
    """Hutch++'s estimate of tr(H) from ``num_matvecs`` (>= 6) products: k = min(m // 3, n)
    sketch probes S, Q = orth(H S) (QR), tr(Q^T H Q) from k products, and Hutchinson on
    P H P with the g = m - 2k remaining probes (module docstring); costs m full products."""
    _check_op(op)
    _check_confidence(confidence)
    if num_matvecs < 6:
        raise ValueError(f"num_matvecs must be >= 6 (two residual probes for a band), got "
                         f"{num_matvecs}")
    n = op.size
    k = min(num_matvecs // 3, n)
    g = num_matvecs - 2 * k
    rng = np.random.default_rng(seed)
    S = op.asarray(rademacher(rng, n, k))
    G = op.asarray(rademacher(rng, n, g))
    run = Run(op, Budget(), label="hutch++")
    xp = array_namespace(S)
    Q, _ = xp.linalg.qr(run.matmat(S))
    deflated = float(np.sum(_column_dots(Q, run.matmat(Q))))
    for _ in range(2):  # P G, twice for orthogonality to rounding
        G = G - Q @ (Q.T @ G)
    terms = _column_dots(G, run.matmat(G))
    return _trace_estimate("hutch++", run, terms, deflated, confidence, seed,
                           {"num_matvecs": num_matvecs, "sketch": k, "residual_probes": g})


@dataclass(frozen=True, eq=False)
class SpectralDensity:
    """Stochastic Lanczos quadrature of H: per probe i, Gauss nodes ``nodes[i]`` (Ritz values,
    ascending, units of H's eigenvalues) and weights ``weights[i]`` (>= 0, sum 1), with the cost
    of computing them. Their average over probes estimates the spectral measure
    mu = (1/n) sum_k delta(t - lambda_k) of H (module docstring)."""

    nodes: tuple[np.ndarray, ...]
    weights: tuple[np.ndarray, ...]
    size: int
    hvp_calls: int
    data_passes: float
    seconds: float
    seed: int
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def num_vectors(self) -> int:
        return len(self.nodes)

    @property
    def lambda_max(self) -> float:
        """The largest Ritz value over probes: a lower bound on lambda_max (interlacing)."""
        return float(max(t[-1] for t in self.nodes))

    @property
    def lambda_min(self) -> float:
        """The smallest Ritz value over probes: an upper bound on lambda_min."""
        return float(min(t[0] for t in self.nodes))

    def _atoms(self) -> tuple[np.ndarray, np.ndarray]:
        """All nodes and their weights / num_vectors (total mass 1), sorted by node."""
        t = np.concatenate(self.nodes)
        w = np.concatenate(self.weights) / self.num_vectors
        order = np.argsort(t, kind="stable")
        return t[order], w[order]

    def moments(self, k: int, per_vector: bool = False) -> np.ndarray:
        """Estimates of the moments (1/n) tr(H^p) for p = 0..k: the mean over probes of
        sum_j w_j theta_j^p, shape (k+1,); each probe's, shape (num_vectors, k+1), with
        ``per_vector`` (their spread gives the standard error). Exact per probe (= q^T H^p q)
        for p <= 2 steps - 1."""
        P = np.array([[np.sum(w * t ** p) for p in range(k + 1)]
                      for t, w in zip(self.nodes, self.weights)])
        return P if per_vector else P.mean(axis=0)

    def trace(self) -> float:
        """n times the first moment: the SLQ (Hutchinson-type) estimate of tr(H)."""
        return float(self.size * self.moments(1)[1])

    def default_sigma(self) -> float:
        """Ghorbani et al.'s smoothing width: sigma^2 = 1e-5 on the spectrum mapped to [-1, 1],
        i.e. sigma = sqrt(1e-5) (lambda_max - lambda_min) / 2 (positive even for one node)."""
        spread = self.lambda_max - self.lambda_min
        return math.sqrt(1e-5) * max(spread, 1e-12 * max(1.0, abs(self.lambda_max))) / 2

    def density(self, grid: Any, sigma: float | None = None) -> np.ndarray:
        """The smoothed density phi(t) = sum over atoms of w N(t; theta, sigma^2) at the points
        ``grid`` (per unit of eigenvalue; integrates to 1 over the real line);
        ``sigma`` defaults to :meth:`default_sigma`."""
        sigma = self.default_sigma() if sigma is None else float(sigma)
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        t, w = self._atoms()
        x = np.asarray(grid, dtype=np.float64)
        out = np.empty(x.shape)
        flat, res = x.reshape(-1), out.reshape(-1)
        for s in range(0, flat.size, 2048):
            z = (flat[s:s + 2048, None] - t[None, :]) / sigma
            res[s:s + 2048] = np.exp(-0.5 * z * z) @ w
        return out / (sigma * math.sqrt(2 * math.pi))

    def grid(self, sigma: float | None = None, points: int = 2000) -> np.ndarray:
        """Sorted evaluation points over [lambda_min - 6 sigma, lambda_max + 6 sigma] that
        resolve the smoothed density on linear and symmetric-log axes: ``points`` spaced
        evenly on a symlog scale (linear within sigma of 0) plus 25 points within 6 sigma of
        every node."""
        sigma = self.default_sigma() if sigma is None else float(sigma)
        lo, hi = self.lambda_min - 6 * sigma, self.lambda_max + 6 * sigma
        u = np.linspace(_symlog(lo, sigma), _symlog(hi, sigma), points)
        near = (np.unique(np.concatenate(self.nodes))[:, None]
                + sigma * np.linspace(-6, 6, 25)[None, :]).reshape(-1)
        return np.unique(np.concatenate([_symexp(u, sigma), near, [lo, hi]]))

    def quantile(self, p: float) -> float:
        """The smallest node at which the averaged quadrature measure reaches mass ``p``."""
        if not 0 <= p <= 1:
            raise ValueError(f"p must be in [0, 1], got {p}")
        t, w = self._atoms()
        cum = np.cumsum(w) / np.sum(w)
        return float(t[min(int(np.searchsorted(cum, p - 1e-12)), len(t) - 1)])

    def bulk(self, mass: float = 0.9) -> tuple[float, float]:
        """The central interval holding ``mass`` of the spectrum: quantiles (1 -+ mass) / 2."""
        return self.quantile((1 - mass) / 2), self.quantile((1 + mass) / 2)

    def to_json(self) -> dict[str, Any]:
        return {"nodes": [t.tolist() for t in self.nodes],
                "weights": [w.tolist() for w in self.weights], "size": self.size,
                "hvp_calls": self.hvp_calls, "data_passes": self.data_passes,
                "seconds": self.seconds, "seed": self.seed, "options": dict(self.options),
                "lambda_max": self.lambda_max, "lambda_min": self.lambda_min,
                "trace": self.trace(), "bulk_90": list(self.bulk(0.9))}


def _symlog(x: float, c: float) -> float:
    return float(np.sign(x) * np.log1p(abs(x) / c))


def _symexp(u: np.ndarray, c: float) -> np.ndarray:
    return np.sign(u) * c * np.expm1(np.abs(u))


def slq_density(op: HVPOperator, num_vectors: int, lanczos_steps: int,
                seed: int = 0, *, progress: bool = False) -> SpectralDensity:
    """Stochastic Lanczos quadrature: for each of ``num_vectors`` Rademacher probes, at most
    ``lanczos_steps`` (capped at n; fewer on an invariant subspace) steps of the
    full-reorthogonalisation Lanczos kernel (:func:`hessbench.solvers.kernels.lanczos_steps`),
    one full product each; the Gauss nodes and weights of each probe (module docstring).
    ``progress``: a bar over probes."""
    _check_op(op)
    if num_vectors < 1 or lanczos_steps < 1:
        raise ValueError(f"num_vectors and lanczos steps must be positive, got {num_vectors} "
                         f"and {lanczos_steps}")
    rng = np.random.default_rng(seed)
    run = Run(op, Budget(), label="slq")
    nodes, weights = [], []
    bar = tqdm(total=num_vectors, desc="SLQ", unit="vector", leave=False,
               disable=not (progress and op.is_main_process))
    try:
        for _ in range(num_vectors):
            z = op.asarray(rademacher(rng, op.size, 1)[:, 0])
            for state in kernels.lanczos_steps(run, z, lanczos_steps, publish=()):
                pass
            nodes.append(np.array(state.theta, dtype=np.float64))
            weights.append(np.array(state.S[0, :], dtype=np.float64) ** 2)
            bar.update()
            bar.set_postfix(passes=f"{run.data_passes:.3g}", refresh=False)
    finally:
        bar.close()
    return SpectralDensity(tuple(nodes), tuple(weights), op.size, run.hvp_calls,
                           run.data_passes, run.seconds(), seed,
                           {"num_vectors": num_vectors,
                            "lanczos_steps": lanczos_steps})
