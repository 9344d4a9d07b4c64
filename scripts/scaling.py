"""Scale-out of one full-data Hessian-vector product: samples per second over K processes
(PyTorch, one ``torch.distributed`` group) and K devices (JAX), with the all-reduce alone.

For each problem and each K it times ``op.matvec(v)`` (median of ``--repeats`` after the
first product and ``--warmup`` more) and, separately, one all-reduce of a parameter-sized
vector of the operator's dtype (what every product adds), and reports samples/s, speed-up and
parallel efficiency against K = 1 (the single-process operator), MB all-reduced per product and the
communication fraction (all-reduce seconds / product seconds).

    OMP_NUM_THREADS=1 python3 scripts/scaling.py -o reports/cpu-scaling/scaling.json
    OMP_NUM_THREADS=1 python3 scripts/scaling.py --problems digits-mlp --processes 1,2 --repeats 5
    torchrun --nproc-per-node 8 scripts/scaling.py --backends torch --device cuda \\
        --processes 1,2,4,8 -o scaling-gpu.json        # K GPUs, one process each (NCCL)

Without torchrun the script starts K gloo processes itself per K (MASTER_ADDR=127.0.0.1, a
free port; every launch bounded by ``--timeout``); under torchrun it measures each K <= the
world size on the sub-group of ranks 0..K-1. JAX runs in a subprocess per K with
``XLA_FLAGS=--xla_force_host_platform_device_count=K`` on a CPU. Every rank takes rank 0's
weights and its contiguous shard of the rows (``hessbench.problems.base.torch_operator``).
"""

from __future__ import annotations

import argparse
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


def counts(text: str) -> list[int]:
    """``"1,2,4"`` -> [1, 2, 4] (positive, ascending, no repeats)."""
    out = sorted({int(x) for x in text.split(",") if x.strip()})
    if not out or out[0] < 1:
        raise argparse.ArgumentTypeError(f"expected positive counts like 1,2,4, got {text!r}")
    return out


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problems", nargs="+", default=["digits-mlp", "synthetic-cifar-resnet20"])
    p.add_argument("--backends", nargs="+", default=["torch"], choices=["torch", "jax"])
    p.add_argument("--processes", type=counts, default=[1, 2], help="torch process counts")
    p.add_argument("--devices", type=counts, default=[1, 2], help="JAX device counts")
    p.add_argument("--device", default="cpu", help="cpu, or cuda (torch: cuda:LOCAL_RANK per "
                   "rank; JAX: the GPUs of this host)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--batch-size", type=int, default=None,
                   help="samples per chunk of a product (default: the problem's)")
    p.add_argument("--samples", type=int, default=None,
                   help="use only the first N samples of each problem (default: all)")
    p.add_argument("--warmup", type=int, default=0,
                   help="untimed products after the first (which is timed apart, as warm-up)")
    p.add_argument("--repeats", type=int, default=3, help="timed products per point (median)")
    p.add_argument("--comm-repeats", type=int, default=20, help="timed all-reduces (median)")
    p.add_argument("--threads", type=int, default=1, help="torch/XLA CPU threads per process")
    p.add_argument("--seed", type=int, default=0, help="seed of the vector v")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per launch")
    p.add_argument("-o", "--output", help="write the measurements as JSON here")
    p.add_argument("--worker-out", help=argparse.SUPPRESS)  # set by the launcher
    args = p.parse_args(argv)
    optional = [x for x in (args.batch_size, args.samples) if x is not None]
    if min(args.repeats, args.comm_repeats, args.threads, *optional) < 1 or args.warmup < 0:
        p.error("--repeats, --comm-repeats, --threads, --batch-size and --samples must be "
                ">= 1, --warmup >= 0")
    return args


def load_parts(name: str, args: argparse.Namespace) -> tuple[Any, Any]:
    """The problem and its torch parts (trained weights from the cache), cut to ``--samples``
    rows and with ``--batch-size`` chunks."""
    from hessbench import problems

    prob = problems.get(name)
    parts = prob.torch_parts(progress=False)
    if args.samples:
        parts.inputs, parts.targets = parts.inputs[:args.samples], parts.targets[:args.samples]
    parts.batch_size = args.batch_size or parts.batch_size
    return prob, parts


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


def row(name: str, backend: str, k: int, op: Any, args: argparse.Namespace, first: float,
        product: list[float], comm: list[float] | None) -> Row:
    prod, itemsize = summary(product), np.dtype(op.numpy_dtype).itemsize
    reduce = summary(comm) if comm else None
    return {"problem": name, "backend": backend, "workers": k,
            "unit": "processes" if backend == "torch" else "devices",
            "parameters": op.size, "num_samples": op.num_samples,
            "batch_size": args.batch_size or getattr(op, "batch_size", None),
            "dtype": args.dtype, "device": op.describe_device(),
            "first_seconds": first, "product_seconds": prod,
            "samples_per_second": op.num_samples / prod["median"],
            "bytes_allreduced": op.size * itemsize if k > 1 else 0,
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
        prob, parts = load_parts(name, args)
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

    v = op.asarray(np.random.default_rng(args.seed).standard_normal(op.size))
    barrier = (lambda: dist.barrier(group)) if group is not None else (lambda: None)
    first = timings(lambda: op.matvec(v), op.synchronize, 1, barrier)
    timings(lambda: op.matvec(v), op.synchronize, args.warmup, barrier)
    product = timings(lambda: op.matvec(v), op.synchronize, args.repeats, barrier)
    comm = None
    if group is not None:
        buf = torch.zeros(op.size, dtype=op.dtype, device=op.device)
        timings(lambda: dist.all_reduce(buf, group=group), op.synchronize, 2, barrier)
        comm = timings(lambda: dist.all_reduce(buf, group=group), op.synchronize,
                       args.comm_repeats, barrier)
        nccl = dist.get_backend(group) == "nccl"
        t = torch.tensor(first + product + comm, dtype=torch.float64,
                         device=op.device if nccl else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)  # the slowest rank's times
        first, product, comm = (t[:1].tolist(), t[1:1 + len(product)].tolist(),
                                t[1 + len(product):].tolist())
    return row(name, "torch", k, op, args, first[0], product, comm)


# -- JAX: K devices in this process ---------------------------------------------------------------
def jax_worker(args: argparse.Namespace) -> list[Row]:
    """Measure each K in ``--devices`` with the devices of this process (see ``launch_jax``)."""
    raise NotImplementedError("the JAX part comes with backends.jax's devices= argument")


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
            while any(p.poll() is None for p in procs):
                failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
                if failed or time.monotonic() > deadline:
                    raise RuntimeError(f"worker(s) of {shlex.join(argv)} "
                                       + (f"exited with {failed}" if failed else
                                          f"still running after {timeout:.0f} s"))
                time.sleep(0.05)
            if any(p.returncode for p in procs):
                raise RuntimeError(f"worker(s) of {shlex.join(argv)} exited with "
                                   f"{[p.returncode for p in procs]}")
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
    fmt = lambda x, spec: "n/a" if x is None else format(x, spec)  # noqa: E731
    lines = ["| problem | backend | processes/devices | samples/s | speed-up vs 1 | parallel "
             "efficiency | MB all-reduced per product | communication fraction |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['problem']} | {r['backend']} | {r['workers']} {r['unit']} | "
                     f"{r['samples_per_second']:,.0f} | {fmt(r['speedup'], '.2f')} | "
                     f"{fmt(r['efficiency'], '.0%')} | {r['bytes_allreduced'] / 1e6:.3f} | "
                     f"{r['comm_fraction']:.1%} |")
    return "\n".join(lines)


def record(rows: list[Row], args: argparse.Namespace, argv: list[str],
           load: tuple[float | None, float]) -> dict[str, Any]:
    """The JSON record: measurements plus what they depend on (as hessbench's run records)."""
    from hessbench import problems
    from hessbench.runner import versions

    probs = {}
    for name in args.problems:
        prob = problems.get(name)
        probs[name] = {"description": prob.description, "config": prob.config,
                       "problem_dtype": prob.dtype}
    return {"command": shlex.join(["python3", "scripts/scaling.py", *argv]),
            "versions": versions(), "host": platform.node(), "platform": platform.platform(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "load_average_before_after": list(load), "device": args.device,
            "dtype": args.dtype, "threads_per_process": args.threads,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "seed": args.seed,
            "warmup": args.warmup, "repeats": args.repeats, "comm_repeats": args.comm_repeats,
            "samples_cap": args.samples, "problems": probs,
            "timing": "seconds of one op.matvec(v) (synchronised; with K > 1 the slowest "
                      "rank's), median of repeats after warm-up; all-reduce = one "
                      "all-reduce of a parameter-sized vector alone",
            "results": rows}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    torchrun = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    load0 = None
    if args.worker_out or torchrun:
        if torchrun and "torch" not in args.backends:
            raise SystemExit("under torchrun only the torch backend is measured")
        rows = torch_worker(args) if torchrun else jax_worker(args)
        if args.worker_out:
            if not torchrun or int(os.environ["RANK"]) == 0:
                Path(args.worker_out).write_text(json.dumps(rows))
            return 0
        if int(os.environ["RANK"]) != 0:
            return 0
    else:
        load0 = os.getloadavg()[0]
        for name in args.problems:  # train any missing checkpoint once, before the workers
            load_parts(name, args)
        common = [a for a in ("--device", args.device, "--dtype", args.dtype, "--warmup",
                              str(args.warmup), "--repeats", str(args.repeats),
                              "--comm-repeats", str(args.comm_repeats), "--threads",
                              str(args.threads), "--seed", str(args.seed), "--timeout",
                              str(args.timeout), "--problems", *args.problems)]
        common += [*(["--batch-size", str(args.batch_size)] if args.batch_size else []),
                   *(["--samples", str(args.samples)] if args.samples else [])]
        rows = []
        if "torch" in args.backends:
            rows += [r for k in args.processes for r in launch_torch(args, k, common)]
        if "jax" in args.backends:
            rows += [r for k in args.devices for r in launch_jax(args, k, common)]
        rows.sort(key=lambda r: (args.problems.index(r["problem"]), r["backend"],
                                 r["workers"]))
    add_speedups(rows)
    print(table(rows))
    print(f"{args.dtype}, {args.threads} thread(s) per process, median of {args.repeats} "
          f"products after {1 + args.warmup} warm-up; {os.cpu_count()} CPU cores: K "
          "processes speed up at most min(K, idle cores) times")
    if args.output:
        load = (load0, os.getloadavg()[0])
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(record(rows, args, argv, load), indent=1))
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
