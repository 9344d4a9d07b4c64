"""Block products that pay? Seconds to both ends, self-stopped: lanczos against block solvers.

For each problem (default digits-mlp and digits-cnn; synthetic-cifar-resnet20 with
``--include-resnet``, slow) the script builds the float32 operator, warms it up untimed for every
block width used (``op.warm_up(block=k)``: first-call allocation, compilation, the operator's own
product-strategy choice), measures what a ``matmat`` of k vectors costs per vector relative to
one ``matvec`` (median of ``--repeats`` interleaved rounds), then runs every solver configuration
with ``which="both"`` for seeds 0..S-1 at one thread, interleaved (seed by seed, every
configuration in turn) so that they share the machine's load. Per configuration it reports the
median and IQR of the seconds to the self-stopped answer, of data passes (every vector of a
block counts) and HVPs, the success count (converged, and both ends within 1% of the certified
reference of :func:`hessbench.reference.compute_reference`), the median of the per-seed ratio
of seconds to ``lanczos``'s on the same seed, and for ``block_size="auto"`` the width chosen and
the costs it measured. The load average before and after is recorded: 2 shared cores make
absolute seconds noisy, paired ratios less so.

    python scripts/block_study.py -o block_study.json
    python scripts/block_study.py --include-resnet --seeds 5 -o block_study.json
    python scripts/block_study.py --batch-size 128 --strategy forward-over-reverse \
        --configs lanczos block-lanczos-auto block-lanczos-4 block-lanczos-8
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "lanczos": ("lanczos", {}),
    "block-lanczos-auto": ("block-lanczos", {"block_size": "auto"}),
    "block-lanczos-2": ("block-lanczos", {"block_size": 2}),
    "block-lanczos-4": ("block-lanczos", {"block_size": 4}),
    "block-lanczos-8": ("block-lanczos", {"block_size": 8}),
    "lobpcg": ("lobpcg", {}),
}
WIDTHS = (2, 4, 8)
SUCCESS = 0.01  # relative error at both ends


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problems", nargs="+", default=["digits-mlp", "digits-cnn"])
    p.add_argument("--include-resnet", action="store_true",
                   help="add synthetic-cifar-resnet20 (slow: minutes per solve)")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..S-1")
    p.add_argument("--tol", type=float, default=1e-3, help="every solver's tol")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--max-passes", type=float, default=1000.0, help="budget per solve")
    p.add_argument("--batch-size", type=int, default=None,
                   help="operator chunk size (default: the problem's)")
    p.add_argument("--strategy", default=None,
                   help="the torch operator's HVP strategy (default: its own, 'auto')")
    p.add_argument("--problem-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option of every problem that takes it (a Python literal)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds of the cost probe")
    p.add_argument("-o", "--output", help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.include_resnet and "synthetic-cifar-resnet20" not in args.problems:
        args.problems.append("synthetic-cifar-resnet20")
    if "lanczos" not in args.configs:
        args.configs.insert(0, "lanczos")  # the baseline of every ratio
    return args


def literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def get_problem(name: str, options: list[str]) -> Any:
    from hessbench import problems

    given = dict(o.partition("=")[::2] for o in options)
    return problems.get(name, **{k: literal(v) for k, v in given.items()
                                 if k in problems.options(name)})


def build_operator(problem: Any, dtype: str, batch_size: int | None,
                   strategy: str | None) -> Any:
    """The problem's torch operator; with ``batch_size`` chunks and the HVP ``strategy`` when
    given (the same Hessian, computed differently)."""
    if batch_size is None and strategy is None:
        return problem.operator("torch", dtype=dtype, progress=False)
    import torch

    from hessbench.backends.torch import HessianOperator

    parts = problem.torch_parts(progress=False)
    return HessianOperator(parts.model, parts.loss_fn, (parts.inputs, parts.targets),
                           batch_size=batch_size or parts.batch_size,
                           dtype=getattr(torch, dtype),
                           **({"strategy": strategy} if strategy else {}))


def warm_up(op: Any, widths: tuple[int, ...]) -> dict[str, Any]:
    """One-off work of every width's first product, untimed; the operator's setup record."""
    setup: dict[str, Any] = {}
    for k in widths:
        if hasattr(op, "warm_up"):
            setup = op.warm_up(block=k)
        else:  # an operator without warm_up: one product of each shape
            rng = np.random.default_rng(0)
            op.matvec(op.random_vector(rng))
            op.matmat(op.asarray(rng.standard_normal((op.size, k))))
    return {key: value for key, value in setup.items() if key != "block"}


def matmat_costs(op: Any, widths: tuple[int, ...], repeats: int) -> dict[str, Any]:
    """Seconds of a matvec and of a matmat of each width (medians of interleaved rounds) and
    the cost per vector of each width relative to one matvec."""
    rng = np.random.default_rng(1)
    blocks = {k: op.asarray(rng.standard_normal((op.size, k))) for k in (1, *widths)}
    times: dict[int, list[float]] = {k: [] for k in blocks}
    for _ in range(repeats):
        for k, V in blocks.items():
            op.synchronize()
            t0 = time.perf_counter()
            op.matvec(V[:, 0]) if k == 1 else op.matmat(V)
            op.synchronize()
            times[k].append(time.perf_counter() - t0)
    seconds = {k: statistics.median(t) for k, t in times.items()}
    return {"matvec_seconds": seconds[1],
            "per_vector": {str(k): seconds[k] / (k * seconds[1]) for k in seconds}}


def stats(values: list[float]) -> dict[str, float]:
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3)}


def one_run(config: str, problem: Any, op: Any, ref: dict[str, Any], seed: int,
            args: argparse.Namespace) -> dict[str, Any]:
    from hessbench import solvers

    name, options = CONFIGS[config]
    solver = solvers.get(name, tol=args.tol, **options)
    r = solver.solve(op, which="both", seed=seed, budget={"max_passes": args.max_passes})
    errors = {end: (abs(getattr(r, f"lambda_{end}") - ref[f"lambda_{end}"])
                    / abs(ref[f"lambda_{end}"]) if getattr(r, f"lambda_{end}") is not None
                    else None) for end in ("max", "min")}
    ok = r.converged and all(e is not None and e <= SUCCESS for e in errors.values())
    row = {"seed": seed, "seconds": r.seconds, "data_passes": r.data_passes,
           "hvp_calls": r.hvp_calls, "lambda_max": r.lambda_max, "lambda_min": r.lambda_min,
           "error_max": errors["max"], "error_min": errors["min"], "converged": r.converged,
           "status": r.status, "success": ok}
    choice = getattr(solver, "block_choice", None)
    if choice is not None:
        row["block_choice"] = {"size": choice.size,
                               "costs": {str(k): v for k, v in choice.costs.items()}}
    return row


def summarise(rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per configuration: seconds, passes, HVPs (median, IQR), successes, ratios to lanczos."""
    base = {row["seed"]: row["seconds"] for row in rows["lanczos"]}
    out = {}
    for config, runs in rows.items():
        name, options = CONFIGS[config]
        paired = [row["seconds"] / base[row["seed"]] for row in runs if base.get(row["seed"])]
        sizes = [row["block_choice"]["size"] for row in runs if "block_choice" in row]
        out[config] = {
            "solver": name, "options": options,
            "seconds": stats([row["seconds"] for row in runs]),
            "data_passes": stats([row["data_passes"] for row in runs]),
            "hvp_calls": stats([row["hvp_calls"] for row in runs]),
            "success": sum(row["success"] for row in runs), "runs_total": len(runs),
            "seconds_vs_lanczos": float(np.median(paired)) if paired else None,
            **({"chosen_block_sizes": sizes} if sizes else {}),
            "runs": runs}
    return out


def study_problem(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from hessbench.reference import compute_reference

    problem = get_problem(name, args.problem_option)
    ref = compute_reference(problem, progress=False)
    op = build_operator(problem, args.dtype, args.batch_size, args.strategy)
    widths = tuple(sorted({*WIDTHS, *(CONFIGS[c][1].get("block_size") for c in args.configs
                                      if isinstance(CONFIGS[c][1].get("block_size"), int))}))
    setup = warm_up(op, widths)
    costs = matmat_costs(op, widths, args.repeats)
    rows: dict[str, list[dict[str, Any]]] = {c: [] for c in args.configs}
    for seed in range(args.seeds):
        for config in args.configs:
            rows[config].append(one_run(config, problem, op, ref, seed, args))
    return {"reference": {k: ref[k] for k in ("lambda_max", "lambda_min", "method")},
            "parameters": op.size, "samples": op.num_samples, "operator_setup": setup,
            **costs, "solvers": summarise(rows)}


def markdown(result: dict[str, Any]) -> str:
    """One table per problem: the configurations' medians [IQR] and ratios to lanczos."""
    lines = []
    for name, res in result["problems"].items():
        cost = ", ".join(f"{k}: {v:.2f}" for k, v in res["per_vector"].items() if k != "1")
        lines += [f"### {name}", "",
                  f"matvec {res['matvec_seconds'] * 1e3:.1f} ms; matmat seconds per vector / "
                  f"matvec: {cost}", "",
                  "| solver | seconds | vs lanczos (paired) | data passes | success | "
                  "block size |", "|---|---|---|---|---|---|"]
        for config, s in res["solvers"].items():
            sec, dp = s["seconds"], s["data_passes"]
            sizes = s.get("chosen_block_sizes")
            ratio = s["seconds_vs_lanczos"]
            lines.append(
                f"| {config} | {sec['median']:.3g} [{sec['q1']:.3g}-{sec['q3']:.3g}] | "
                f"{'-' if ratio is None else f'{ratio:.2f}'} | {dp['median']:.3g} "
                f"[{dp['q1']:.3g}-{dp['q3']:.3g}] | {s['success']}/{s['runs_total']} | "
                f"{sizes if sizes else s['options'].get('block_size', 1)} |")
        lines.append("")
    settings = result["settings"]
    lines.append(f"tol {settings['tol']}, {settings['dtype']}, {settings['seeds']} seeds, "
                 f"{settings['threads']} thread(s), load average {settings['load_before']} -> "
                 f"{settings['load_after']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        load_before = [round(x, 2) for x in os.getloadavg()]
        t0 = time.perf_counter()
        problems = {name: study_problem(name, args) for name in args.problems}
        settings = {"tol": args.tol, "dtype": args.dtype, "seeds": args.seeds,
                    "threads": args.threads, "max_passes": args.max_passes,
                    "batch_size": args.batch_size, "strategy": args.strategy,
                    "problem_options": args.problem_option,
                    "torch": torch.__version__, "load_before": load_before,
                    "load_after": [round(x, 2) for x in os.getloadavg()],
                    "wall_seconds": time.perf_counter() - t0}
    finally:
        torch.set_num_threads(threads)
    result = {"settings": settings, "problems": problems}
    print(markdown(result))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=1, default=float)
        print(f"wrote {args.output}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
