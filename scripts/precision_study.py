"""How much reduced-precision Hessian-vector products move lambda_max and lambda_min (issue 13).

For each problem, on the same trained weights and from the same seeds, ``lanczos``
(which="both", a tight ``--tol``) runs on (a) float64 products, (b) float32 products and (c)
bfloat16-autocast products (``reduced_precision("bf16")`` of the float32 operator). Reported:

- ``product``: ||Hv_p - Hv_64|| / ||Hv_64|| for random v (median over ``--vectors``);
- ``lanczos``: relative errors |lambda_p - lambda_64| / |lambda_64| of each end, per seed
  (the float64 run of the same seed), and against the certified reference where computed;
- ``certificate``: for the bf16 Ritz vectors x, with float32 products, the Rayleigh quotient
  q = x^T H x (its error against float64) and r / |q|, r = ||H x - q x||: what
  ``lanczos-mixed`` must bring below its ``tol``;
- ``mixed``: ``lanczos-mixed`` (tol ``--mixed-tol``) next to float32 ``lanczos`` at that tol:
  reduced and full-precision products, errors against float64.

Prints Markdown tables and writes one JSON file. synthetic-cifar-resnet20 (about 4 s per
float32 product on one thread) runs only with ``--resnet``, with ``--resnet-seeds`` seeds and
at most ``--resnet-steps`` Lanczos steps, with products by reverse-over-reverse (under CPU
bf16 autocast, forward-over-reverse raises a dtype mismatch at a conv after a BatchNorm).
Operators are built with a fixed ``--strategy`` (default the reference one,
forward-over-reverse) and without the determinism probe.

    OMP_NUM_THREADS=1 python3 scripts/precision_study.py --out reports/cpu-precision/study.json
    OMP_NUM_THREADS=1 python3 scripts/precision_study.py --problems --resnet --out r20.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import time
from typing import Any

import numpy as np
import torch

from hessbench import problems, solvers
from hessbench.backends.torch import HessianOperator
from hessbench.reference import compute_reference

RESNET = "synthetic-cifar-resnet20"
PRECISIONS = ("float64", "float32", "bf16")


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def operators(name: str, strategy: str) -> dict[str, Any]:
    """The problem's float64 and float32 operators (the problem's model, data and batch size;
    products by ``strategy``) and bf16 autocast of the float32 one."""
    parts = problems.get(name).torch_parts(progress=False)

    def operator(dtype: torch.dtype) -> HessianOperator:
        return HessianOperator(parts.model, parts.loss_fn, (parts.inputs, parts.targets),
                               batch_size=parts.batch_size, dtype=dtype, strategy=strategy,
                               check_deterministic=False)

    op32 = operator(torch.float32)
    return {"float64": operator(torch.float64), "float32": op32,
            "bf16": op32.reduced_precision("bf16")}


def product_errors(ops: dict[str, Any], vectors: int) -> dict[str, Any]:
    """||Hv_p - Hv_64|| / ||Hv_64|| over ``vectors`` random v, and seconds per product."""
    errors: dict[str, list[float]] = {"float32": [], "bf16": []}
    seconds: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for i in range(vectors):
        v = np.random.default_rng(1000 + i).standard_normal(ops["float64"].size)
        out = {}
        for p in PRECISIONS:
            op = ops[p]
            t0 = time.perf_counter()
            out[p] = op.matvec(op.asarray(v)).double().cpu().numpy()
            seconds[p].append(time.perf_counter() - t0)
        for p in errors:
            errors[p].append(float(np.linalg.norm(out[p] - out["float64"])
                                   / np.linalg.norm(out["float64"])))
    return {"rel_error": {p: {"median": statistics.median(e), "max": max(e)}
                          for p, e in errors.items()},
            "seconds_per_product": {p: statistics.median(s) for p, s in seconds.items()}}


def certificate(op32: Any, result: Any, lam64: dict[str, float]) -> dict[str, Any]:
    """For each bf16 Ritz vector x, with float32 products: q = x^T H x, its error against the
    float64 value, and r / |q| with r = ||H x - q x||."""
    out = {}
    for end in ("max", "min"):
        x = getattr(result, f"vector_{end}")
        x = x / torch.linalg.vector_norm(x)
        y = op32.matvec(x)
        q = float(x @ y)
        r = float(torch.linalg.vector_norm(y - q * x))
        out[end] = {"rayleigh_quotient": q, "rel_error": rel(q, lam64[end]),
                    "residual_over_value": r / abs(q)}
    return out


def lanczos_runs(ops: dict[str, Any], seeds: list[int], tol: float, max_steps: int
                 ) -> list[dict[str, Any]]:
    rows = []
    for seed in seeds:
        row: dict[str, Any] = {"seed": seed}
        for p in PRECISIONS:
            r = solvers.get("lanczos", tol=tol, max_steps=max_steps).solve(ops[p], seed=seed)
            row[p] = {"lambda_max": r.lambda_max, "lambda_min": r.lambda_min,
                      "status": r.status, "steps": r.hvp_calls, "seconds": r.seconds,
                      "residual_max": r.residual_max, "residual_min": r.residual_min}
            if p == "bf16":
                lam64 = {e: row["float64"][f"lambda_{e}"] for e in ("max", "min")}
                row["certificate"] = certificate(ops["float32"], r, lam64)
        for p in ("float32", "bf16"):
            row[p]["rel_error_vs_float64"] = {
                e: rel(row[p][f"lambda_{e}"], row["float64"][f"lambda_{e}"])
                for e in ("max", "min")}
        rows.append(row)
        print(f"  seed {seed}: " + ", ".join(
            f"{p} {row[p]['lambda_max']:.6g}/{row[p]['lambda_min']:.6g} ({row[p]['status']}, "
            f"{row[p]['steps']} steps)" for p in PRECISIONS), flush=True)
    return rows


def mixed_runs(ops: dict[str, Any], seeds: list[int], tol: float, lam64: dict[str, float]
               ) -> list[dict[str, Any]]:
    """lanczos-mixed (bf16 products, float32 certificate) and float32 lanczos at ``tol``."""
    rows = []
    for seed in seeds:
        row: dict[str, Any] = {"seed": seed}
        for name in ("lanczos", "lanczos-mixed"):
            r = solvers.get(name, tol=tol).solve(ops["float32"], seed=seed)
            found = re.search(r"(\d+) reduced steps", r.message)
            reduced = int(found.group(1)) if found and name == "lanczos-mixed" else 0
            row[name] = {"converged": r.converged, "hvp_calls": r.hvp_calls,
                         "reduced_products": reduced, "full_products": r.hvp_calls - reduced,
                         "seconds": r.seconds, "message": r.message,
                         "rel_error": {e: rel(getattr(r, f"lambda_{e}"), lam64[e])
                                       for e in ("max", "min")}}
        rows.append(row)
    return rows


def study(name: str, seeds: list[int], args: argparse.Namespace, reference: bool
          ) -> dict[str, Any]:
    print(f"{name}: building operators", flush=True)
    strategy = args.resnet_strategy if name == RESNET else args.strategy
    ops = operators(name, strategy)
    max_steps = args.resnet_steps if name == RESNET else args.max_steps
    out: dict[str, Any] = {"problem": name, "parameters": ops["float64"].size,
                           "samples": ops["float64"].num_samples, "seeds": seeds,
                           "tol": args.tol, "max_steps": max_steps, "strategy": strategy,
                           "bf16_setup": ops["bf16"].product_setup()}
    out["product"] = product_errors(ops, args.vectors)
    print(f"  product errors {out['product']['rel_error']}", flush=True)
    out["lanczos"] = lanczos_runs(ops, seeds, args.tol, max_steps)
    if reference:
        ref = compute_reference(problems.get(name), progress=False)
        out["reference"] = {k: ref[k] for k in ("lambda_max", "lambda_min", "method")}
        for row in out["lanczos"]:
            for p in PRECISIONS:
                row[p]["rel_error_vs_reference"] = {
                    e: rel(row[p][f"lambda_{e}"], ref[f"lambda_{e}"]) for e in ("max", "min")}
    if args.mixed_tol and name != RESNET:
        lam64 = {e: out["lanczos"][0]["float64"][f"lambda_{e}"] for e in ("max", "min")}
        out["mixed"] = mixed_runs(ops, seeds, args.mixed_tol, lam64)
    return out


def worst(rows: list[dict[str, Any]], *path: str) -> float:
    values = []
    for row in rows:
        for key in path:
            row = row[key]
        values.append(row)
    return max(values)


def tables(results: list[dict[str, Any]]) -> str:
    """Markdown: the precision effect per problem (worst over seeds), and lanczos-mixed."""
    lines = ["| problem | params | product error f32 / bf16 | λmax err f32 | "
             "λmax err bf16 | λmin err f32 | λmin err bf16 | bf16 Ritz vectors: f32 Rayleigh "
             "quotient err, max / min | bf16 Ritz vectors: f32 r / abs(q), max / min |",
             "|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        rows, prod = res["lanczos"], res["product"]["rel_error"]
        cert = [worst(rows, "certificate", e, "rel_error") for e in ("max", "min")]
        resid = [worst(rows, "certificate", e, "residual_over_value") for e in ("max", "min")]
        lines.append(
            f"| {res['problem']} | {res['parameters']:,} | {prod['float32']['median']:.1e} / "
            f"{prod['bf16']['median']:.1e} | "
            + " | ".join(f"{worst(rows, p, 'rel_error_vs_float64', e):.1e}"
                         for e in ("max", "min") for p in ("float32", "bf16"))
            + f" | {cert[0]:.1e} / {cert[1]:.1e} | {resid[0]:.1e} / {resid[1]:.1e} |")
    mixed = [res for res in results if "mixed" in res]
    if mixed:
        lines += ["", "| problem | tol | lanczos f32: products (median) | lanczos-mixed: bf16 + "
                  "f32 products (median) | mixed converged | mixed worst err max / min |",
                  "|---|---|---|---|---|---|"]
        for res in mixed:
            rows = res["mixed"]
            plain = statistics.median(r["lanczos"]["hvp_calls"] for r in rows)
            red = statistics.median(r["lanczos-mixed"]["reduced_products"] for r in rows)
            full = statistics.median(r["lanczos-mixed"]["full_products"] for r in rows)
            ok = sum(r["lanczos-mixed"]["converged"] for r in rows)
            errs = [worst(rows, "lanczos-mixed", "rel_error", e) for e in ("max", "min")]
            lines.append(f"| {res['problem']} | {res['mixed_tol']:g} | {plain:g} | {red:g} + "
                         f"{full:g} | {ok}/{len(rows)} | {errs[0]:.1e} / {errs[1]:.1e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", nargs="*", default=["digits-mlp", "digits-cnn"])
    parser.add_argument("--resnet", action="store_true", help=f"also {RESNET} (slow)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--resnet-seeds", type=int, default=1)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--resnet-steps", type=int, default=80)
    parser.add_argument("--vectors", type=int, default=3, help="random v for product errors")
    parser.add_argument("--mixed-tol", type=float, default=1e-3,
                        help="tol of the lanczos-mixed comparison (0: skip it)")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip certified references (the ResNet's is never computed here)")
    parser.add_argument("--strategy", default="forward-over-reverse",
                        help="HVP strategy of every operator (the reference one by default; "
                        "'auto' times candidates and may compile)")
    parser.add_argument("--resnet-strategy", default="reverse-over-reverse",
                        help="the ResNet's strategy: forward-over-reverse fails under CPU bf16 "
                        "autocast there (conv -> BatchNorm -> conv inside torch.func.jvp)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="JSON file to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = list(args.problems) + ([RESNET] if args.resnet else [])
    load = os.getloadavg()
    t0 = time.perf_counter()
    results = []
    for name in names:
        seeds = list(range(args.resnet_seeds if name == RESNET else args.seeds))
        res = study(name, seeds, args, reference=not args.no_reference and name != RESNET)
        res["mixed_tol"] = args.mixed_tol
        results.append(res)
    text = tables(results)
    print(text)
    record = {"results": results, "table": text, "args": vars(args),
              "machine": {"host": socket.gethostname(), "platform": platform.platform(),
                          "processor": platform.processor(), "cpus": os.cpu_count(),
                          "torch": torch.__version__, "threads": torch.get_num_threads(),
                          "loadavg_start": load, "loadavg_end": os.getloadavg()},
              "seconds": time.perf_counter() - t0}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
