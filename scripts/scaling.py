"""Scale-out of one full-data Hessian-vector product: samples/s over K processes (PyTorch, one
``torch.distributed`` group) and K devices (JAX), and the all-reduce alone.

Per problem and K: seconds of ``op.matvec(v)`` (median of ``--repeats`` after the first product
and ``--warmup`` more), of one all-reduce of a parameter-sized vector of the operator's dtype
timed alone, samples/s, speed-up and parallel efficiency against K = 1 (the single-process
operator), MB all-reduced per product and communication fraction (all-reduce / product).

    OMP_NUM_THREADS=1 python3 scripts/scaling.py -o reports/cpu-scaling/scaling.json
    torchrun --nproc-per-node 8 scripts/scaling.py --backends torch --device cuda \\
        --processes 1,2,4,8 -o gpu.json      # NCCL, rank r on cuda:r
    python3 scripts/scaling.py --backends jax --device cuda --devices 1,2,4,8 -o gpu-jax.json

Without torchrun it starts K gloo processes per K itself (MASTER_ADDR=127.0.0.1, a free port,
each launch bounded by ``--timeout``); under torchrun it measures each K <= the world size on
ranks 0..K-1. Every rank takes rank 0's weights and its contiguous shard of the rows
(``hessbench.problems.base.torch_operator``). JAX runs in a subprocess per K, with
``XLA_FLAGS=--xla_force_host_platform_device_count=K`` on a CPU.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

Row = dict[str, Any]


def count(text: str, low: int = 1) -> int:
    """An integer >= ``low``."""
    if not text.strip().isdigit() or int(text) < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
    return int(text)


def counts(text: str) -> list[int]:
    """``"1,2,4"`` -> [1, 2, 4] (positive, ascending, no repeats)."""
    return sorted({count(x) for x in text.split(",")})


def sample_cap(text: str) -> tuple[str, int]:
    """``"N"`` (every problem) or ``"NAME=N"`` -> (name or "", N); N = 0 means all samples."""
    name, _, n = text.rpartition("=")
    return name, count(n, 0)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problems", nargs="+", default=["digits-mlp", "synthetic-cifar-resnet20"])
    p.add_argument("--backends", nargs="+", default=["torch", "jax"], choices=["torch", "jax"])
    p.add_argument("--processes", type=counts, default=[1, 2], help="torch process counts")
    p.add_argument("--devices", type=counts, default=[1, 2], help="JAX device counts")
    p.add_argument("--device", default="cpu", help="cpu, or cuda (torch: cuda:LOCAL_RANK per "
                   "rank; JAX: the GPUs of this host)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--problem-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option of every problem that takes KEY (e.g. data_dir=/data/cifar)")
    p.add_argument("--batch-size", type=count, default=None,
                   help="samples per chunk of a product (default: the problem's)")
    p.add_argument("--samples", nargs="+", type=sample_cap, metavar="[PROBLEM=]N",
                   default=[("synthetic-cifar-resnet20", 64)],
                   help="use only the first N samples (of PROBLEM, or of every problem; 0: "
                        "all); default synthetic-cifar-resnet20=64, for a run of minutes")
    p.add_argument("--warmup", type=lambda t: count(t, 0), default=0,
                   help="untimed products after the first (which is timed apart, as warm-up)")
    p.add_argument("--repeats", type=count, default=3, help="timed products per point (median)")
    p.add_argument("--comm-repeats", type=count, default=20, help="timed all-reduces (median)")
    p.add_argument("--threads", type=count, default=1, help="torch/XLA CPU threads per process")
    p.add_argument("--seed", type=int, default=0, help="seed of the vector v")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per launch")
    p.add_argument("-o", "--output", help="write the measurements as JSON here")
    p.add_argument("--worker-out", help=argparse.SUPPRESS)  # set by the launcher
    args = p.parse_args(argv)
    args.caps = {name: dict(args.samples).get(name, dict(args.samples).get("", 0))
                 for name in args.problems}
    return args


def get_problem(name: str, args: argparse.Namespace) -> Any:
    """Problem ``name`` with the ``--problem-option`` values it takes (Python literals)."""
    from hessbench import problems

    def literal(text: str) -> Any:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    given = dict(o.partition("=")[::2] for o in args.problem_option)
    return problems.get(name, **{k: literal(v) for k, v in given.items()
                                 if k in problems.options(name)})


def load_parts(name: str, args: argparse.Namespace) -> Any:
    """The problem and its torch parts (trained weights from the cache), cut to ``--samples``
    rows and with ``--batch-size`` chunks."""
    parts = get_problem(name, args).torch_parts(progress=False)
    if cap := args.caps[name]:
        parts.inputs, parts.targets = parts.inputs[:cap], parts.targets[:cap]
    parts.batch_size = args.batch_size or parts.batch_size
    return parts


def summary(times: list[float]) -> dict[str, float]:
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def timings(fn: Callable[[], Any], sync: Callable[[], None], count: int,
            before: Callable[[], None] = lambda: None) -> list[float]:
    out = []
    for _ in range(count):
        before()
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def products(op: Any, args: argparse.Namespace,
             before: Callable[[], None] = lambda: None) -> tuple[list[float], list[float]]:
    """Seconds of the first ``op.matvec(v)`` and of ``--repeats`` more after the warm-up."""
    v = op.asarray(np.random.default_rng(args.seed).standard_normal(op.size))
    first = timings(lambda: op.matvec(v), op.synchronize, 1 + args.warmup, before)[:1]
    return first, timings(lambda: op.matvec(v), op.synchronize, args.repeats, before)


def row(name: str, backend: str, k: int, op: Any, args: argparse.Namespace, first: float,
        product: list[float], comm: list[float] | None, reductions: int = 1) -> Row:
    """One measurement; ``comm`` holds the all-reduce seconds per product (``reductions``
    all-reduces of ``op.size`` entries; none for K = 1)."""
    prod, itemsize = summary(product), np.dtype(op.numpy_dtype).itemsize
    reduce = summary(comm) if comm else None
    return {"problem": name, "backend": backend, "workers": k,
            "unit": "processes" if backend == "torch" else "devices",
            "parameters": op.size, "num_samples": op.num_samples,
            "batch_size": args.batch_size or getattr(op, "batch_size", None),
            "dtype": args.dtype, "device": op.describe_device(),
            "first_seconds": first, "product_seconds": prod,
            "samples_per_second": op.num_samples / prod["median"],
            "allreduces_per_product": reductions if k > 1 else 0,
            "bytes_allreduced": op.size * itemsize * reductions if k > 1 else 0,
            "allreduce_seconds": reduce,
            "comm_fraction": reduce["median"] / prod["median"] if reduce else 0.0}


# -- torch: one rank of K processes ------------------------------------------------------------
def torch_worker(args: argparse.Namespace) -> list[Row]:
    """Measure every K in ``--processes`` (<= the world size) on ranks 0..K-1; rank 0's rows
    (times are the maximum over the ranks)."""
    import torch
    import torch.distributed as dist

    from hessbench.problems.base import torch_operator

    torch.set_num_threads(args.threads)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = args.device
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", rank))
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if world > 1:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo",
                                timeout=datetime.timedelta(seconds=args.timeout))
    rows: list[Row] = []
    for name in args.problems:
        if world > 1 and rank > 0:
            dist.barrier()  # rank 0 trains a missing checkpoint first (under torchrun)
        parts = load_parts(name, args)
        if world > 1 and rank == 0:
            dist.barrier()
        for k in [k for k in args.processes if k <= world]:
            group = (None if k == 1 else dist.group.WORLD if k == world
                     else dist.new_group(list(range(k))))
            if rank < k:
                op = torch_operator(parts, dtype=args.dtype, device=device,
                                    check_deterministic=False, process_group=group)
                rows.append(torch_point(name, k, op, group, args))
            if world > 1:
                dist.barrier()
    if world > 1:
        dist.destroy_process_group()
    return rows if rank == 0 else []


def torch_point(name: str, k: int, op: Any, group: Any, args: argparse.Namespace) -> Row:
    import torch
    import torch.distributed as dist

    barrier = (lambda: dist.barrier(group)) if group is not None else (lambda: None)
    first, product = products(op, args, barrier)
    comm = None
    if group is not None:
        buf = torch.zeros(op.size, dtype=op.dtype, device=op.device)
        comm = timings(lambda: dist.all_reduce(buf, group=group), op.synchronize,
                       2 + args.comm_repeats, barrier)[2:]  # after 2 warm-up all-reduces
        nccl = dist.get_backend(group) == "nccl"
        t = torch.tensor(first + product + comm, dtype=torch.float64,
                         device=op.device if nccl else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)  # the slowest rank's times
        first, product, comm = (t[:1].tolist(), t[1:1 + len(product)].tolist(),
                                t[1 + len(product):].tolist())
    return row(name, "torch", k, op, args, first[0], product, comm)


# -- JAX: K devices in this process ---------------------------------------------------------------
def jax_worker(args: argparse.Namespace) -> list[Row]:
    """Measure each K in ``--devices`` on the first K devices of ``--device``'s platform:
    ``HessianOperator(..., devices=K)``, the samples sharded over a mesh, partial products
    summed by one psum per product; the psum of a parameter-sized vector is timed alone."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from hessbench.backends.jax import HessianOperator
    from hessbench.jax_models import from_torch, loss_from_torch

    rows: list[Row] = []
    for parts, name in ((load_parts(name, args), name) for name in args.problems):
        apply_fn, params = from_torch(parts.model)
        loss = loss_from_torch(parts.loss_fn)
        data = (parts.inputs.numpy(), parts.targets.numpy())
        for k in args.devices:
            op = HessianOperator(lambda p, b: loss(apply_fn(p, b[0]), b[1]), params, data,
                                 batch_size=parts.batch_size, dtype=args.dtype,
                                 device=args.device, check_deterministic=False, devices=k)
            first, product = products(op, args)
            comm, calls = None, 0
            if k > 1:
                mesh, spec = Mesh(np.array(op.mesh.devices), ("d",)), PartitionSpec("d")
                psum = jax.jit(jax.shard_map(lambda x: jax.lax.psum(x, "d"), mesh=mesh,
                                             in_specs=spec, out_specs=PartitionSpec()))
                x = jax.device_put(np.zeros((k, op.size), op.numpy_dtype),
                                   NamedSharding(mesh, spec))
                reduce = lambda: psum(x).block_until_ready()  # noqa: E731
                calls = 1  # the parts are accumulated per device, then one psum
                comm = [t * calls for t in timings(reduce, lambda: None,
                                                   2 + args.comm_repeats)[2:]]
            rows.append(row(name, "jax", k, op, args, first[0], product, comm, calls))
    return rows


# -- launching and reporting ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(argv: list[str], envs: list[dict[str, str]], timeout: float) -> list[Row]:
    """Run this script as a worker once per environment in ``envs`` (all at once); rank 0 /
    the single worker's rows. A worker that fails, or a launch past ``timeout`` seconds,
    ends the others and raises."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, __file__, *argv, "--worker-out", str(out)]
        procs = [subprocess.Popen(cmd, env={**os.environ, **env}) for env in envs]
        deadline = time.monotonic() + timeout
        try:
            while (codes := [p.poll() for p in procs]) != [0] * len(procs):
                if any(codes) or time.monotonic() > deadline:  # a failure, or too long
                    raise RuntimeError(f"worker(s) of {shlex.join(argv)} " + (
                        f"exited with {codes}" if any(codes) else
                        f"still running after {timeout:.0f} s"))
                time.sleep(0.05)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        return json.loads(out.read_text())


def launch_torch(args: argparse.Namespace, k: int, common: list[str]) -> list[Row]:
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "WORLD_SIZE": str(k), "OMP_NUM_THREADS": str(args.threads)}
    envs = [{**env, "RANK": str(r), "LOCAL_RANK": str(r)} for r in range(k)]
    return launch([*common, "--backends", "torch", "--processes", str(k)], envs, args.timeout)


def launch_jax(args: argparse.Namespace, k: int, common: list[str]) -> list[Row]:
    flags = os.environ.get("XLA_FLAGS", "")
    if args.device == "cpu":
        flags += f" --xla_force_host_platform_device_count={k}"
        if args.threads == 1:
            flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env = {"XLA_FLAGS": flags.strip(), "OMP_NUM_THREADS": str(args.threads)}
    return launch([*common, "--backends", "jax", "--devices", str(k)], [env], args.timeout)


def add_speedups(rows: list[Row]) -> None:
    """Speed-up (samples/s over K = 1's) and parallel efficiency (speed-up / K) per row."""
    base = {(r["problem"], r["backend"]): r["samples_per_second"]
            for r in rows if r["workers"] == 1}
    for r in rows:
        one = base.get((r["problem"], r["backend"]))
        r["speedup"] = r["samples_per_second"] / one if one else None
        r["efficiency"] = r["speedup"] / r["workers"] if one else None


def table(rows: list[Row]) -> str:
    """The measurements as a Markdown table."""
    fmt = lambda x, spec: "n/a" if x is None else format(x, spec)  # noqa: E731
    one = {"processes": "process", "devices": "device"}
    lines = ["| problem | backend | processes/devices | samples/s | speed-up vs 1 | parallel "
             "efficiency | MB all-reduced per product | communication fraction |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        unit = one[r["unit"]] if r["workers"] == 1 else r["unit"]
        lines.append(f"| {r['problem']} (N={r['num_samples']:,}) | {r['backend']} | "
                     f"{r['workers']} {unit} | {r['samples_per_second']:,.0f} | "
                     f"{fmt(r['speedup'], '.2f')} | {fmt(r['efficiency'], '.0%')} | "
                     f"{r['bytes_allreduced'] / 1e6:.3f} | {r['comm_fraction']:.1%} |")
    return "\n".join(lines)


def record(rows: list[Row], args: argparse.Namespace, argv: list[str],
           load: tuple[float, float]) -> dict[str, Any]:
    """The JSON record: measurements plus what they depend on (as hessbench's run records)."""
    from hessbench.runner import versions

    probs = {name: get_problem(name, args) for name in args.problems}
    world = os.environ.get("WORLD_SIZE")  # set under torchrun
    launcher = ["torchrun", f"--nproc-per-node={world}"] if world else ["python3"]
    return {"command": shlex.join([*launcher, "scripts/scaling.py", *argv]),
            "versions": versions(), "host": platform.node(), "platform": platform.platform(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "load_average_before_after": list(load), "device": args.device,
            "dtype": args.dtype, "threads_per_process": args.threads,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "seed": args.seed,
            "warmup": args.warmup, "repeats": args.repeats, "comm_repeats": args.comm_repeats,
            "samples_cap": args.caps, "problem_options": args.problem_option,
            "problems": {k: {"description": p.description, "config": p.config,
                             "problem_dtype": p.dtype} for k, p in probs.items()},
            "timing": "seconds of one op.matvec(v) (synchronised; with K > 1 the slowest "
                      "rank's), median of repeats after warm-up; all-reduce = one "
                      "all-reduce of a parameter-sized vector alone",
            "results": rows}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    torchrun = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    load0 = os.getloadavg()[0]
    if args.worker_out or torchrun:  # under torchrun only the torch backend is measured
        rows = torch_worker(args) if torchrun else jax_worker(args)
        if torchrun and int(os.environ["RANK"]) != 0:
            return 0
        if args.worker_out:
            Path(args.worker_out).write_text(json.dumps(rows))
            return 0
    else:
        for name in args.problems:  # train any missing checkpoint once, before the workers
            load_parts(name, args)
        common = ["--device", args.device, "--dtype", args.dtype, "--warmup", str(args.warmup),
                  "--repeats", str(args.repeats), "--comm-repeats", str(args.comm_repeats),
                  "--threads", str(args.threads), "--seed", str(args.seed), "--timeout",
                  str(args.timeout), "--problems", *args.problems,
                  *(["--batch-size", str(args.batch_size)] if args.batch_size else []),
                  *(x for o in args.problem_option for x in ("--problem-option", o)),
                  "--samples", *(f"{k}={n}" for k, n in args.caps.items())]
        rows = []
        if "torch" in args.backends:
            rows += [r for k in args.processes for r in launch_torch(args, k, common)]
        if "jax" in args.backends:
            rows += [r for k in args.devices for r in launch_jax(args, k, common)]
        rows.sort(key=lambda r: (args.problems.index(r["problem"]),
                                 args.backends.index(r["backend"]), r["workers"]))
    add_speedups(rows)
    print(table(rows))
    print(f"{args.dtype}, {args.threads} thread(s) per process, median of {args.repeats} "
          f"products after {1 + args.warmup} warm-up; {os.cpu_count()} CPU cores: K "
          "processes or devices speed up at most min(K, idle cores) times")
    if args.output:
        load = (load0, os.getloadavg()[0])
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(record(rows, args, argv, load), indent=1))
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
