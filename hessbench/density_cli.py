"""``hessbench density``: the spectral density (stochastic Lanczos quadrature) and trace
(Hutch++) of a problem's full-data Hessian, as a figure and a JSON record.

The operator is built as ``hessbench run`` builds it (:func:`hessbench.validate` checks, then
``Problem.operator`` and the untimed :func:`hessbench.runner.warm_up`); the estimators are
:mod:`hessbench.solvers.spectral`. The figure shows the Gaussian-smoothed density (log y) on a
symmetric-log eigenvalue axis (linear within sigma of 0) with the extreme Ritz values, the
reference lambda_min / lambda_max where known (exact, or certified and cached; computed only
with ``--reference``) and the bulk: the central interval holding 90% of the mass.
"""

from __future__ import annotations

import argparse
import platform
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hessbench.cli_args import THREADS_HELP, key_values, seed_arg, threads_arg, use_threads_arg
from hessbench.problems import Problem

RECORD_TYPE = "hessbench-density"
SCHEMA_VERSION = 1
BULK_MASS = 0.9


@dataclass(frozen=True)
class DensityRecord:
    """One ``hessbench density`` run: setup (problem, backend, seed, options, environment as
    in run records), the SLQ result (:meth:`SpectralDensity.to_json`: nodes, weights, cost),
    the Hutch++ trace (:meth:`TraceEstimate.to_json`), the smoothing ``sigma``, the bulk
    interval and the reference extremes (None where not known cheaply)."""

    problem: str
    backend: str
    seed: int
    options: dict[str, Any]
    problem_description: str
    problem_config: dict[str, Any]
    problem_key: str
    synthetic: bool
    dtype: str
    device: str
    threads: int
    parameters: int
    num_samples: int
    host: str
    platform: str
    versions: dict[str, str]
    command: list[str]
    sigma: float
    bulk: list[float]
    bulk_mass: float
    slq: dict[str, Any]
    trace: dict[str, Any]
    reference: dict[str, Any] | None = None
    warmup: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    record_type: str = RECORD_TYPE

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def known_reference(prob: Problem, compute: bool = False,
                    progress: bool = False) -> dict[str, Any] | None:
    """The problem's reference extremes if cheap: exact, or certified and already cached
    (loaded and verified by :func:`hessbench.reference.compute_reference`); with ``compute``,
    computed if missing (``cheapest``: never a dense Hessian unless cached). None otherwise."""
    from hessbench.reference import cached_reference, compute_reference

    ref = (compute_reference(prob, progress=progress, cheapest=True) if compute
           else cached_reference(prob, progress=progress))
    return None if ref is None else {k: ref[k] for k in ("lambda_max", "lambda_min", "method")}


def compute_density(problem: str, *, backend: str = "torch", seed: int = 0,
                    vectors: int = 10, steps: int = 80, matvecs: int = 60,
                    sigma: float | None = None, dtype: str | None = None,
                    device: str | None = None, problem_options: dict[str, Any] | None = None,
                    reference: bool = False, progress: bool = True,
                    command: Sequence[str] = ()) -> tuple[DensityRecord, Any]:
    """SLQ (``vectors`` probes x ``steps`` Lanczos steps) and Hutch++ (``matvecs`` products)
    on the full-data Hessian of ``problem``; returns the record and the
    :class:`~hessbench.solvers.spectral.SpectralDensity`. Arguments are checked first."""
    from hessbench import problems
    from hessbench.runner import torch_threads, versions, warm_up
    from hessbench.seeds import check_seed
    from hessbench.solvers.spectral import hutchpp_trace, slq_density
    from hessbench.validate import check_backend, check_device, check_dtype

    prob = problems.get(problem, **(problem_options or {}))
    check_backend(backend)
    check_device(device, backend)
    check_dtype(dtype)
    check_seed(seed)
    if vectors < 1 or steps < 1 or matvecs < 6 or (sigma is not None and not sigma > 0):
        raise ValueError(f"need vectors >= 1, steps >= 1, matvecs >= 6 and sigma > 0, got "
                         f"{vectors}, {steps}, {matvecs}, {sigma}")
    ref = known_reference(prob, compute=reference, progress=progress)
    op = prob.operator(backend, dtype=dtype, device=device, progress=progress)
    warmup = warm_up(op, (min(matvecs // 3, op.size),))  # untimed, as before a solve
    sd = slq_density(op, vectors, steps, seed=seed, progress=progress)
    tr = hutchpp_trace(op, matvecs, seed=seed)
    sigma = sd.default_sigma() if sigma is None else float(sigma)
    record = DensityRecord(
        problem=problem, backend=backend, seed=seed,
        options={"vectors": vectors, "steps": steps, "matvecs": matvecs, "sigma": sigma,
                 "dtype": dtype, "device": device, "problem_options": dict(problem_options
                                                                          or {})},
        problem_description=prob.description, problem_config=prob.config,
        problem_key=prob.key, synthetic=prob.synthetic,
        dtype=str(op.dtype).replace("torch.", ""), device=op.describe_device(),
        threads=torch_threads(), parameters=op.size, num_samples=op.num_samples,
        host=socket.gethostname(), platform=platform.platform(), versions=versions(),
        command=list(command), sigma=sigma, bulk=list(sd.bulk(BULK_MASS)),
        bulk_mass=BULK_MASS, slq=sd.to_json(), trace=tr.to_json(), reference=ref,
        warmup=dict(warmup))
    return record, sd


def plot_density(record: DensityRecord, sd: Any, path: str | Path) -> Path:
    """Write the density figure of ``record`` (``sd`` its SpectralDensity) as PNG."""
    from hessbench.report.figures import _plt, _save

    plt = _plt()
    sigma = record.sigma
    grid = sd.grid(sigma)
    phi = sd.density(grid, sigma)
    floor = 1e-7 * float(phi.max())
    fig, ax = plt.subplots(figsize=(13, 5.5))
    lo, hi = record.bulk
    ax.axvspan(lo, hi, color="#2ca02c", alpha=0.15,
               label=f"bulk (central {record.bulk_mass:.0%}): [{lo:.3g}, {hi:.3g}]")
    ax.plot(grid, np.maximum(phi, floor), color="#1f77b4", lw=1.5,
            label=f"SLQ density ({sd.num_vectors} x {record.options['steps']} steps, "
                  f"sigma={sigma:.2g})")
    for end, value in (("min", sd.lambda_min), ("max", sd.lambda_max)):
        ax.axvline(value, color="#d62728", ls="--", lw=1.2,
                   label=f"lambda_{end} SLQ = {value:.4g}")
    if record.reference:
        for end in ("min", "max"):
            value = record.reference[f"lambda_{end}"]
            ax.axvline(value, color="black", ls=":", lw=1.5,
                       label=f"lambda_{end} {record.reference['method']} = {value:.4g}")
    ax.set_xscale("symlog", linthresh=sigma)
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor)
    ax.set_xlabel(f"eigenvalue (symmetric-log axis, linear within {sigma:.2g} of 0)")
    ax.set_ylabel("smoothed spectral density")
    t = record.trace
    ax.set_title(f"{record.problem}: Hessian spectral density (n={record.parameters:,}); "
                 f"trace {t['estimate']:.4g} [{t['low']:.4g}, {t['high']:.4g}]", fontsize=12)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    try:
        _save(fig, Path(path))
    finally:
        plt.close(fig)
    return Path(path)


def summary(record: DensityRecord) -> str:
    """A few lines: cost, extremes (and reference), bulk, trace with its band."""
    s, t, ref = record.slq, record.trace, record.reference
    lines = [f"{record.problem}: n={record.parameters:,} parameters, N={record.num_samples:,} "
             f"samples, {record.dtype} on {record.device}",
             f"SLQ {record.options['vectors']} vectors x {record.options['steps']} steps: "
             f"{s['data_passes']:.4g} data passes, {s['seconds']:.3g} s",
             f"  lambda_min {s['lambda_min']:.6g}  lambda_max {s['lambda_max']:.6g}"
             + (f"  (reference, {ref['method']}: {ref['lambda_min']:.6g}, "
                f"{ref['lambda_max']:.6g})" if ref else ""),
             f"  bulk (central {record.bulk_mass:.0%} of the mass): [{record.bulk[0]:.4g}, "
             f"{record.bulk[1]:.4g}]",
             f"trace: Hutch++ {t['estimate']:.6g}, {t['confidence']:.0%} band [{t['low']:.6g}, "
             f"{t['high']:.6g}] ({t['hvp_calls']} products, {t['data_passes']:.4g} passes, "
             f"{t['seconds']:.3g} s); SLQ {s['trace']:.6g}"]
    return "\n".join(lines)


def _count(minimum: int) -> Any:
    """argparse type: an integer >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return value
    return parse


def _sigma(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def cmd_density(args: argparse.Namespace) -> int:
    from hessbench.records import write_json
    from hessbench.validate import check_output_file

    figure = check_output_file(args.output)  # before the work: a bad path must not lose it
    json_path = check_output_file(args.json) if args.json else None
    use_threads_arg(args)
    record, sd = compute_density(
        args.problem, backend=args.backend, seed=args.seed, vectors=args.vectors,
        steps=args.steps, matvecs=args.matvecs, sigma=args.sigma, dtype=args.dtype,
        device=args.device, problem_options=key_values(args.problem_option, "--problem-option"),
        reference=args.reference, progress=not args.quiet,
        command=getattr(args, "command_line", ["hessbench", "density"]))
    plot_density(record, sd, figure)
    print(summary(record))
    print(f"wrote {figure}" + (f" and {write_json(record.to_json(), json_path)}"
                               if json_path else ""))
    return 0


def add_density_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hessbench density`` on the CLI's subparsers; returns its parser."""
    p = subparsers.add_parser(
        "density", help="spectral density (SLQ) and trace (Hutch++) of a problem's Hessian: "
        "a figure and a JSON record")
    p.add_argument("-p", "--problem", required=True)
    p.add_argument("--backend", default="torch", help="see: hessbench backends")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--vectors", type=_count(1), default=10, help="SLQ probes (default 10)")
    p.add_argument("--steps", type=_count(1), default=80,
                   help="Lanczos steps per probe (default 80; one data pass each)")
    p.add_argument("--matvecs", type=_count(6), default=60,
                   help="products of the Hutch++ trace estimate (default 60)")
    p.add_argument("--sigma", type=_sigma,
                   help="Gaussian smoothing width (default: sqrt(1e-5) x half the Ritz range)")
    p.add_argument("--reference", action="store_true",
                   help="compute the certified reference extremes if not cached (default: "
                   "mark them only when exact or cached)")
    p.add_argument("--dtype", choices=("float32", "float64"))
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: where the model is)")
    p.add_argument("--problem-option", action="append", metavar="KEY=VALUE")
    p.add_argument("--threads", type=threads_arg, default="auto", help=THREADS_HELP)
    p.add_argument("-o", "--output", required=True, help="PNG figure to write")
    p.add_argument("--json", metavar="PATH", help="also write the JSON record here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_density)
    return p
