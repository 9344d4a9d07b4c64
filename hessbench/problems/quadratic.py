"""Stochastic quadratics whose full-data Hessian has an exactly known spectrum.

Sample i has the loss  loss_i(w) = 1/2 w^T (H + G diag(c_i) G^T) w  with

- H = R diag(lam) R^T, R a product of three Householder reflections (a dense orthogonal
  basis applied in O(n)), and lam the prescribed spectrum: lambda_max = 100, ten outliers
  log-spaced from 100 down to 10, a bulk near 0 (70% in [0, 2], 30% in [-0.5, 0], dense at 0
  and thin at the edges) and lambda_min = -0.5 exactly: the seed scenario's shape;
- G an (n, K) matrix with orthonormal columns and c_i in R^K per-sample coefficients,
  exactly centred over the N samples (sum_i c_i = 0).

So the full Hessian (1/N) sum_i H_i is exactly H, while a mini-batch Hessian
H_S = H + G diag(mean_{i in S} c_i) G^T has a rank-K perturbation of size about
``noise / sqrt(|S|)``: mini-batch eigenvalue estimates swing and are biased like real ones.

``quadratic-cluster`` has the same construction with :func:`cluster_spectrum`: each extreme
eigenvalue has a near twin 1.5% away (lambda_max = 100 and 98.5, lambda_min = -0.5 and -0.4925)
and the rest of the spectrum well behind it, so a Krylov method that has not yet resolved the
pair sees one isolated eigenvalue with a wide apparent gap. A solver that stops at a twin is off
by 1.5%: a failure at the success threshold (1% relative error, 10 tol at tol = 1e-3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hessbench.problems.base import Problem, TorchProblemParts


def seed_spectrum(n: int, lam_max: float = 100.0, lam_min: float = -0.5,
                  outliers: int = 10, bulk_max: float = 2.0,
                  negative_fraction: float = 0.3) -> np.ndarray:
    """The prescribed eigenvalues, sorted descending (exact: lam[0]=lam_max, lam[-1]=lam_min)."""
    if n < outliers + 4:
        raise ValueError(f"dimension n={n} too small for {outliers} outliers and a bulk")
    top = np.geomspace(lam_max, lam_max / 10, outliers)
    m = n - outliers
    n_neg = max(2, int(round(negative_fraction * m)))
    n_pos = m - n_neg
    pos = bulk_max * ((np.arange(n_pos) + 0.5) / n_pos) ** 4
    neg = lam_min * (np.arange(1, n_neg + 1) / n_neg) ** 4
    return np.sort(np.concatenate([top, pos, neg]))[::-1].copy()


CLUSTER_GAP = 0.015
"""Relative distance of each extreme eigenvalue of :func:`cluster_spectrum` to its twin."""


def cluster_spectrum(n: int, lam_max: float = 100.0, lam_min: float = -0.5,
                     gap: float = CLUSTER_GAP) -> np.ndarray:
    """Eigenvalues, descending, with a twin at each end: lam_max, lam_max (1 - gap), nine
    outliers log-spaced from 77.4 down to 10; then a bulk in [0.9 lam_min, 2] shaped as in
    :func:`seed_spectrum`; then lam_min (1 - gap) and lam_min (exact: lam[0] = lam_max,
    lam[-1] = lam_min). The bulk edge 0.9 lam_min lies 6 gap |lam_min| above the lower twin."""
    body = seed_spectrum(n - 3, lam_max, 0.9 * lam_min)
    twins = [lam_max * (1 - gap), lam_min * (1 - gap), lam_min]
    return np.sort(np.concatenate([body, twins]))[::-1].copy()


class StochasticQuadraticModel(nn.Module):
    """``forward(c)`` returns the per-sample losses 1/2 w^T (H + G diag(c_i) G^T) w, shape (b,)."""

    def __init__(self, lam: np.ndarray, reflections: np.ndarray, G: np.ndarray,
                 w0: np.ndarray) -> None:
        super().__init__()
        f64 = dict(dtype=torch.float64)
        self.register_buffer("lam", torch.tensor(lam, **f64))
        self.register_buffer("reflections", torch.tensor(reflections, **f64))
        self.register_buffer("G", torch.tensor(G, **f64))
        self.w = nn.Parameter(torch.tensor(w0, **f64))

    def rotate_in(self, w: torch.Tensor) -> torch.Tensor:
        """R^T w, for R = P_1 P_2 P_3 with P_k = I - 2 u_k u_k^T."""
        for u in self.reflections:
            w = w - 2 * (u @ w) * u
        return w

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        y = self.rotate_in(self.w)
        base = 0.5 * torch.sum(self.lam * y * y)
        z = self.G.T @ self.w
        return base + 0.5 * (c @ (z * z))


def _mean_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return outputs.mean()


@dataclass
class QuadraticProblem(Problem):
    """A stochastic quadratic (see module docstring); config: n, num_samples, rank, noise, seed
    and, for the twin-ended spectrum, ``spectrum="cluster"`` (absent: :func:`seed_spectrum`)."""

    synthetic: bool = True

    def _build(self) -> tuple[np.ndarray, StochasticQuadraticModel, np.ndarray]:
        cfg = self.config
        n, N, K = cfg["n"], cfg["num_samples"], cfg["rank"]
        rng = np.random.default_rng(cfg["seed"])
        lam = self.eigenvalues()
        U = rng.standard_normal((3, n))
        U /= np.linalg.norm(U, axis=1, keepdims=True)
        G, _ = np.linalg.qr(rng.standard_normal((n, K)))
        C = cfg["noise"] * rng.standard_normal((N, K))
        C -= C.mean(axis=0)
        w0 = rng.standard_normal(n) / np.sqrt(n)
        return lam, StochasticQuadraticModel(lam, U, G, w0), C

    def torch_parts(self, progress: bool = True) -> TorchProblemParts:
        _, model, C = self._build()
        N = self.config["num_samples"]
        return TorchProblemParts(model, _mean_loss, torch.tensor(C), torch.zeros(N), N)

    def exact_reference(self) -> dict[str, float]:
        lam = self.eigenvalues()
        return {"lambda_max": float(lam[0]), "lambda_min": float(lam[-1])}

    def eigenvalues(self) -> np.ndarray:
        """All eigenvalues of the full-data Hessian, descending."""
        n = self.config["n"]
        return cluster_spectrum(n) if self.config.get("spectrum") == "cluster" else \
            seed_spectrum(n)


def quadratic(name: str, n: int, num_samples: int, noise: float = 400.0, rank: int = 16,
              seed: int = 0, cluster: bool = False) -> QuadraticProblem:
    """A quadratic with :func:`seed_spectrum`, or :func:`cluster_spectrum` for ``cluster``."""
    shape = (f"twins 100/98.5 and -0.5/-0.4925 ({CLUSTER_GAP:.1%} apart)" if cluster else
             "lambda_max=100, lambda_min=-0.5")
    return QuadraticProblem(
        name=name, dtype="float64",
        description=(f"SYNTHETIC stochastic quadratic, n={n:,}, N={num_samples:,}: exact "
                     f"spectrum {shape}, rank-{rank} mini-batch noise"),
        config=dict(kind="quadratic", version=1, n=n, num_samples=num_samples, rank=rank,
                    noise=noise, seed=seed, **({"spectrum": "cluster"} if cluster else {})))


# -- the registered quadratics (``hessbench.problems``): options are these keyword parameters --
def quadratic_small(n: int = 200, num_samples: int = 1_000, noise: float = 400.0,
                    rank: int = 16, seed: int = 0) -> QuadraticProblem:
    """``quadratic-small``: n=200, N=1,000."""
    return quadratic("quadratic-small", n, num_samples, noise=noise, rank=rank, seed=seed)


def quadratic_10k(n: int = 10_000, num_samples: int = 10_000, noise: float = 400.0,
                  rank: int = 16, seed: int = 0) -> QuadraticProblem:
    """``quadratic``: n=10,000, N=10,000."""
    return quadratic("quadratic", n, num_samples, noise=noise, rank=rank, seed=seed)


def quadratic_cluster(n: int = 10_000, num_samples: int = 10_000, noise: float = 400.0,
                      rank: int = 16, seed: int = 0) -> QuadraticProblem:
    """``quadratic-cluster``: n=10,000, N=10,000, :func:`cluster_spectrum` (twin ends)."""
    return quadratic("quadratic-cluster", n, num_samples, noise=noise, rank=rank, seed=seed,
                     cluster=True)


def quadratic_1m(n: int = 1_000_000, num_samples: int = 50_000, noise: float = 400.0,
                 rank: int = 16, seed: int = 0) -> QuadraticProblem:
    """``quadratic-1m``: n=1,000,000, N=50,000."""
    return quadratic("quadratic-1m", n, num_samples, noise=noise, rank=rank, seed=seed)
