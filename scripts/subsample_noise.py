"""How much a fixed subsample S tells about lambda_min of the full-data Hessian H.

Multi-fidelity solvers use the subsample Hessian H_S = (1/|S|) sum_{i in S} H_i as a cheap
stand-in for H = (1/N) sum_i H_i. This script builds both densely (float64, small problems
only) and prints, per subsample fraction |S|/N and seed, in units of |lambda_min(H)|:

- ``||H_S - H||``: spectral norm of the sampling error;
- ``#>|lmin|``: how many eigenvalues of H_S - H exceed |lambda_min(H)| in absolute value;
- ``lmin(H_S)``: the subsample's own smallest eigenvalue (biased low: E lmin(H_S) <= lmin(H));
- ``RQ(x_S)``: the full-data Rayleigh quotient x^T H x of the bottom eigenvector x of H_S
  (-1 would be the true lambda_min; >= 0 means x carries no negative curvature of H);
- ``overlap``: ||X_10^T v||, the part of the true bottom eigenvector v of H inside the
  span of the bottom 10 eigenvectors of H_S (1 = contained, ~sqrt(10/n) = random).

    python scripts/subsample_noise.py                         # digits-cnn, seeds 0-2
    python scripts/subsample_noise.py --problem digits-mlp --seeds 0-1 --json out.json

When the sampling error is many times |lambda_min|, subsample products carry no usable
information about lambda_min, and a full-data Krylov method (lanczos) cannot be beaten in data
passes by warm starts or preconditioners built from H_S.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from typing import Any

import numpy as np


def subsample_noise(H: np.ndarray, lambda_min: float, v_min: np.ndarray, H_S: np.ndarray,
                    bottom: int = 10) -> dict[str, float]:
    """The statistics above for one subsample, in units of |lambda_min(H)|; ``lambda_min``
    and ``v_min`` are the smallest eigenpair of H (computed once for all subsamples)."""
    scale = abs(lambda_min)
    err = np.linalg.eigvalsh(H_S - H)
    lam_s, vecs_s = np.linalg.eigh(H_S)
    x = vecs_s[:, 0]
    return {
        "error_norm": float(np.max(np.abs(err)) / scale),
        "error_eigs_above_lmin": int(np.sum(np.abs(err) > scale)),
        "lmin_subsample": float(lam_s[0] / scale),
        "rayleigh_bottom": float(x @ H @ x / scale),
        "overlap_bottom": float(np.linalg.norm(vecs_s[:, :bottom].T @ v_min)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problem", default="digits-cnn")
    p.add_argument("--fractions", type=float, nargs="+", default=[1 / 16, 1 / 4, 1 / 2])
    p.add_argument("--seeds", default="0-2", help="e.g. 0-2 or 0,3")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args(argv)

    from hessbench.backends.base import sample_indices
    from hessbench import problems
    from hessbench.reference import dense_hessian
    from hessbench.runner import versions
    from hessbench.seeds import parse_seeds

    if not all(0 < f <= 1 for f in args.fractions):
        p.error(f"fractions must be in (0, 1], got {args.fractions}")
    problem = problems.get(args.problem)
    parts = problem.torch_parts(progress=False)
    H = dense_hessian(parts)
    N, n = len(parts.inputs), H.shape[0]
    lam, vecs = np.linalg.eigh(H)
    lmin, lmax = lam[0], lam[-1]
    print(f"{args.problem}: n={n} parameters, N={N} samples, lambda_max={lmax:.6g}, "
          f"lambda_min={lmin:.6g}; columns in units of |lambda_min|")
    print(f"{'|S|/N':>8} {'seed':>4} {'||H_S-H||':>10} {'#>|lmin|':>9} {'lmin(H_S)':>10} "
          f"{'RQ(x_S)':>9} {'overlap':>8}")
    rows: list[dict[str, Any]] = []
    for fraction in args.fractions:
        for seed in parse_seeds(args.seeds):
            size = max(1, round(fraction * N))
            S = sample_indices(N, size, np.random.default_rng(seed))
            sub = dataclasses.replace(parts, inputs=parts.inputs[S], targets=parts.targets[S])
            row = {"fraction": fraction, "seed": seed, "size": size,
                   **subsample_noise(H, lmin, vecs[:, 0], dense_hessian(sub))}
            rows.append(row)
            print(f"{fraction:8.4g} {seed:4d} {row['error_norm']:10.3g} "
                  f"{row['error_eigs_above_lmin']:9d} {row['lmin_subsample']:10.3g} "
                  f"{row['rayleigh_bottom']:9.3g} {row['overlap_bottom']:8.3f}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"problem": args.problem, "problem_config": problem.config,
                       "synthetic": problem.synthetic, "dtype": "float64", "device": "cpu",
                       "versions": versions(), "parameters": n, "samples": N,
                       "lambda_max": float(lmax), "lambda_min": float(lmin), "rows": rows,
                       "command": shlex.join(["python3", "scripts/subsample_noise.py",
                                              *(sys.argv[1:] if argv is None else argv)])},
                      fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
