"""HVP throughput of the JAX and PyTorch backends side by side, on the same weights and data.

For each problem it builds both operators (float32, the same chunk size), times full-data
products v -> H v after a warm-up, in interleaved rounds (every operator once per round, so that
they share the load), and prints samples per second (median over rounds), the
JAX/PyTorch ratio, and the time of the first JAX product (trace + XLA compile of each chunk
shape + one run) and of the first torch product, and each backend's relative error against
torch's float64 product of the same vector.

    python scripts/hvp_throughput.py                       # digits-cnn, synthetic-cifar-resnet20
    python scripts/hvp_throughput.py --resnet-epochs 1     # a quicker-trained ResNet checkpoint
    python scripts/hvp_throughput.py --problems digits-mlp --repeats 9 --torch-threads 1
    python scripts/hvp_throughput.py --json results/cmp/throughput.json   # for hessbench report
    python scripts/hvp_throughput.py --problems synthetic-cifar-resnet20 --torch-threads 1 \
        --jax-variants auto/NHWC forward-over-reverse/NCHW forward-over-reverse/NHWC linearized/NHWC

Both operators use their defaults (torch ``strategy="auto"``; JAX ``strategy="auto"`` with
channels-last activations); ``--jax-variants STRATEGY/LAYOUT ...`` times further JAX operators
(:mod:`hessbench.backends.jax_hvp`, :func:`hessbench.jax_models.from_torch`) against the same
torch operator, in the same interleaved rounds (the first listed is reported as ``jax``).

Checkpoints come from the problems' caches ($HESSBENCH_CACHE); a missing one is trained first
(the default synthetic-cifar-resnet20 takes minutes on a CPU). Timings are wall-clock with the
device synchronised; on a shared machine take the median of several runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import statistics
import time
import warnings
from typing import Any

import numpy as np


def timed(fn: Any, op: Any) -> float:
    t0 = time.perf_counter()
    fn()
    op.synchronize()
    return time.perf_counter() - t0


def measure(ops: dict[str, tuple[Any, Any]], warmup: int, repeats: int
            ) -> dict[str, dict[str, float]]:
    """Per operator: its first call (made in turn, each after the previous is done), then
    ``warmup`` untimed calls, then ``repeats`` interleaved rounds (every operator once per
    round, so that they share the machine's load): median, min, max seconds."""
    first = {k: timed(lambda: op.matvec(v), op) for k, (op, v) in ops.items()}
    for _ in range(warmup):
        for op, v in ops.values():
            op.matvec(v)
    times: dict[str, list[float]] = {k: [] for k in ops}
    for _ in range(repeats):
        for k, (op, v) in ops.items():
            times[k].append(timed(lambda: op.matvec(v), op))
    out = {}
    for k, (op, _) in ops.items():
        med = statistics.median(times[k])
        out[k] = {"first": first[k], "median": med, "min": min(times[k]),
                  "max": max(times[k]), "samples_per_s": op.num_samples / med}
    return out


def problem(name: str, resnet_epochs: int | None) -> Any:
    from hessbench import problems

    if name == "synthetic-cifar-resnet20" and resnet_epochs is not None:
        return problems.get(name, subset=256, epochs=resnet_epochs)
    return problems.get(name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problems", nargs="+", default=["digits-cnn", "synthetic-cifar-resnet20"])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--resnet-epochs", type=int, default=None,
                   help="train synthetic-cifar-resnet20 for this many epochs (default: the "
                        "problem's 30); the weights, not the cost of an HVP, change")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's own choice)")
    p.add_argument("--jax-variants", nargs="+", default=["auto/NHWC"], metavar="STRATEGY/LAYOUT",
                   help="JAX operators to time (default: auto/NHWC, the operator's default)")
    p.add_argument("--json", metavar="PATH", help="also write the measurements as the "
                   "throughput.json that `hessbench report` reads (put it in the RUN_DIR)")
    args = p.parse_args(argv)

    import jax
    import torch

    from hessbench.backends.torch import HessianOperator as TorchOperator
    from hessbench.jax_models import operator_from_parts

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    warnings.filterwarnings("ignore", message="hessbench.backends.jax", category=UserWarning)
    print(f"host: {platform.processor() or platform.machine()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), jax {jax.__version__} on {jax.devices()[0]}; "
          f"{args.dtype}, chunks of {args.batch_size}, median of {args.repeats} after "
          f"{args.warmup} warm-up products")
    variants = [tuple(v.split("/")) for v in args.jax_variants]
    if any(len(v) != 2 for v in variants):
        p.error("--jax-variants takes STRATEGY/LAYOUT, e.g. linearized/NHWC")
    names = ["jax"] + [f"jax:{s}/{lay}" for s, lay in variants[1:]]
    rows = []
    for name in args.problems:
        prob = problem(name, args.resnet_epochs)
        parts = prob.torch_parts(progress=True)

        def make_torch(dtype: Any = getattr(torch, args.dtype)) -> Any:
            return TorchOperator(parts.model, parts.loss_fn, (parts.inputs, parts.targets),
                                 batch_size=args.batch_size, dtype=dtype)

        def make_jax(variant: tuple[str, str]) -> Any:
            return operator_from_parts(parts, dtype=args.dtype, batch_size=args.batch_size,
                                       strategy=variant[0], layout=variant[1])

        top = make_torch()
        v = np.random.default_rng(0).standard_normal(top.size)
        truth = make_torch(torch.float64)
        hv = truth.matvec(truth.asarray(v)).numpy()

        def err(out: Any) -> float:
            return float(np.linalg.norm(np.asarray(out, dtype=np.float64) - hv)
                         / np.linalg.norm(hv))
        rel = {"torch": err(top.matvec(top.asarray(v)).double().numpy())}
        # fresh operators so that the first timed call includes the compile
        jax.clear_caches()
        top = make_torch()
        ops = {"torch": (top, top.asarray(v))}
        for key, variant in zip(names, variants):
            jop = make_jax(variant)
            ops[key] = (jop, jop.asarray(v))
        res = measure(ops, args.warmup, args.repeats)
        traces = {}
        for key in names:
            jop, jv = ops[key]
            rel[key] = err(jop.matvec(jv))
            traces[key] = f"{jop.trace_count} traces, chose {jop.product_setup()['strategy']}"
        res["torch"]["strategy"] = top.product_setup().get("strategy")
        rows.append((name, top.size, top.num_samples, res, rel, traces))

    head = (f"{'problem':26s} {'operator':32s} | {'samples/s':>10s} {'/torch':>6s} | "
            f"{'1st call':>9s} {'err vs f64':>10s}")
    print(head)
    print("-" * len(head))
    for name, n, N, res, rel, traces in rows:
        base = res["torch"]["samples_per_s"]
        for key, r in res.items():
            label = f"torch ({r['strategy']})" if key == "torch" else key
            print(f"{name:26s} {label:32s} | {r['samples_per_s']:10,.0f} "
                  f"{r['samples_per_s'] / base:6.2f} | {r['first']:8.2f}s {rel[key]:10.1e}")
    print("samples/s = N / median seconds of one full-data product; '1st call' includes "
          "tracing/compilation; 'err' = ||Hv - Hv_64|| / ||Hv_64|| against torch's float64 "
          "product. Spread (min-max seconds):")
    for name, *_, res, _, traces in rows:
        spread = ", ".join(f"{k} {r['min']:.3f}-{r['max']:.3f}" for k, r in res.items())
        print(f"  {name}: {spread}; {traces}")
    if args.json:
        from hessbench.runner import versions

        device = {"torch": f"cpu ({torch.get_num_threads()} threads)"}
        device.update({k: str(jax.devices()[0]) for k in names})
        results = [{"problem": name, "backend": backend, "dtype": args.dtype,
                    "batch_size": args.batch_size, "samples_per_second": r["samples_per_s"],
                    "median_seconds": r["median"], "first_call_seconds": r["first"],
                    "parameters": n, "num_samples": N, "device": device[backend],
                    "relative_error_vs_float64": rel[backend]}
                   for name, n, N, res, *_ in rows for backend, r in res.items()]
        with open(args.json, "w") as f:
            json.dump({"results": results, "versions": versions(),
                       "command": shlex.join(["python3", "scripts/hvp_throughput.py",
                                              *(sys.argv[1:] if argv is None else argv)]),
                       "host": platform.node(), "warmup": args.warmup,
                       "repeats": args.repeats}, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
