"""hessbench GPU check: one JSON file of results, in at most 8 minutes on one GPU.

Sections, each in its own process under a time budget (a crash, a hang or a failed check is
recorded and the next section runs; the file is rewritten after every section):

- ``environment``: versions, devices, threads.
- ``agreement-torch`` / ``agreement-jax``: one full-data Hessian-vector product (HVP) on the
  GPU by each backend, float32 and float64, against float64 on the CPU (same weights, data and
  vector): relative 2-norm errors; TF32 is switched on before the torch operator is built and
  must be off after, and a TF32 product is the control (float32 must be far below it).
- ``timing-<model>-eager`` / ``-compiled``: seconds per pass of a gradient, an HVP per strategy
  and ``matmat`` per vector (ResNet-20 and ResNet-18, batch 512), and their ratios.
- ``lanczos-resnet18``: one float32 ``lanczos`` solve of both ends on 50,000 synthetic
  CIFAR-shaped samples: data passes and seconds to both ends within 1% (self-stopped) and the
  error against a longer run: the GPU goal's figure (< 60 s on one H100/H200-class GPU).
- ``precision-resnet18``: the same solve on bf16 and TF32 products, errors against float32.
- ``distributed-resnet18``: the float32 solve over all GPUs (torchrun, one process each), only
  when several GPUs are visible; else recorded as not measured.

Weights are random (seeded) with calibrated BatchNorm statistics, never trained; the data are
SYNTHETIC CIFAR-shaped images. ``--dry-run`` runs every section at tiny sizes on the CPU (the
compiled timings are skipped there: torch.compile takes minutes on a CPU). Run it through
``scripts/gpu_check.sh``, which makes hessbench importable without installing anything.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA = "hessbench-gpu-check/1"
RESERVE = 8.0  # seconds kept for the last write and the summary
GRACE = 10.0   # seconds a section may overrun its budget before it is stopped
DEFAULT_SECONDS = 460.0  # the whole check: under 8 minutes even if the last section overruns
DRY_SECONDS = 600.0      # a dry run's limit (it takes 1-2 minutes on 2 CPU cores)

GPU = {
    "device": "cuda", "tiny": False, "seed": 0, "bn_samples": 2048, "min_part_seconds": 10,
    "agreement": [{"model": "resnet20", "samples": 512, "batch": 256},
                  {"model": "resnet18", "samples": 64, "batch": 64}],
    "timing": {"samples": 1024, "batch": 512, "blocks": [4], "rounds": 5},
    "lanczos": {"model": "resnet18", "samples": 50_000, "batch": 500, "stop_tol": 1e-2,
                "ref_tol": 1e-4, "max_steps": 300, "strategy": "auto",
                "precisions": ["bf16", "tf32"]},
}
DRY = {
    **GPU, "device": "cpu", "tiny": True, "bn_samples": 64, "min_part_seconds": 2,
    "agreement": [{"model": "resnet20", "samples": 24, "batch": 12}],
    "timing": {"samples": 32, "batch": 16, "blocks": [4], "rounds": 2},
    "lanczos": {**GPU["lanczos"], "samples": 32, "batch": 32, "max_steps": 120},
}
#: (section, seconds at most, seconds at least or skip), in running order
PLAN = [("environment", 60, 5), ("agreement-torch", 60, 15), ("agreement-jax", 90, 20),
        ("timing-resnet20-eager", 30, 10), ("timing-resnet18-eager", 45, 15),
        ("lanczos-resnet18", 200, 90), ("timing-resnet20-compiled", 60, 30),
        ("timing-resnet18-compiled", 90, 45), ("precision-resnet18", 150, 40),
        ("distributed-resnet18", 150, 60)]
DISTRIBUTED = "distributed-resnet18"


def run_section(name: str, cfg: dict[str, Any], rec: Any) -> None:
    """Run section ``name`` in this process (the child side)."""
    import gpu_check_sections as sections
    import gpu_check_solves as solves
    from gpu_check_timing import timing

    if name.startswith("timing-"):
        _, model, kind = name.split("-")
        return timing(cfg, rec, model, kind == "compiled")
    table = {"environment": sections.environment, "agreement-torch": sections.agreement_torch,
             "agreement-jax": sections.agreement_jax, "lanczos-resnet18": solves.lanczos,
             "precision-resnet18": solves.precision, DISTRIBUTED: solves.distributed}
    table[name](cfg, rec)


def child(args: argparse.Namespace) -> int:
    from gpu_check_lib import Recorder

    cfg = json.loads(Path(args.config).read_text())
    rank = int(os.environ.get("RANK", "0"))
    path = Path(args.result) if rank == 0 else Path(f"{args.result}.rank{rank}")
    rec = Recorder(path, budget=cfg["deadline"] - time.time())
    try:
        run_section(cfg["section"], cfg, rec)
        if rec.data["status"] == "running":
            rec.finish("ok")
    except Exception as err:  # noqa: BLE001 - recorded for the parent, which goes on
        rec.fail(err)
    return 0


# -- the parent: budgets, processes, the JSON file ----------------------------------------------
def launch(name: str, cfg: dict[str, Any], budget: float, workdir: Path,
           processes: int = 0) -> dict[str, Any]:
    """Run one section in a new process (``processes`` > 0: under torchrun) and stop it at
    ``budget`` + GRACE seconds; returns its result with status, reason and seconds."""
    conf, result = workdir / f"{name}.config.json", workdir / f"{name}.json"
    conf.write_text(json.dumps({**cfg, "section": name, "budget": budget,
                                "deadline": time.time() + budget}))
    cmd = [str(HERE / "gpu_check.py"), "--section", "--config", str(conf),
           "--result", str(result)]
    cmd = [sys.executable, *(["-m", "torch.distributed.run", "--standalone",
                              f"--nproc-per-node={processes}"] if processes else []), *cmd]
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(
               [str(HERE), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])}
    t0 = time.monotonic()
    with open(workdir / f"{name}.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        timed_out = False
        try:
            code = proc.wait(timeout=budget + GRACE)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop(proc)
            code = proc.returncode
    out = json.loads(result.read_text()) if result.exists() else {"figures": {}}
    if timed_out:
        out.update(status="failed", reason=f"stopped at its time limit ({budget:.0f} s + "
                                           f"{GRACE:.0f} s grace); figures are partial")
    elif out.get("status") in (None, "running"):
        out.update(status="failed", reason=f"the section's process ended (exit code {code}) "
                                           "before finishing; see log_tail")
    if out["status"] == "failed":
        out["log_tail"] = (workdir / f"{name}.log").read_text(errors="replace")[-3000:]
    out.update(budget_seconds=round(budget, 1), wall_seconds=round(time.monotonic() - t0, 2))
    return out


def _stop(proc: subprocess.Popen) -> None:
    """Stop the section's process group (the section's process and its children, which
    ``start_new_session`` put in a group of their own): SIGTERM, 5 s, then SIGKILL."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # what is left of the group (e.g. workers)
    except ProcessLookupError:
        pass
    proc.wait()


def settings(args: argparse.Namespace) -> dict[str, Any]:
    cfg = json.loads(json.dumps(DRY if args.dry_run else GPU))
    cfg["seed"] = args.seed
    if args.lanczos_strategy:
        cfg["lanczos"]["strategy"] = args.lanczos_strategy
    return cfg


def plan(args: argparse.Namespace, gpu_count: int | None
         ) -> list[tuple[str, float, float, str]]:
    """(section, cap, floor, reason to skip or "") in running order. The caps grow in
    proportion to a time limit above the default (and x3 in a dry run: a loaded CPU)."""
    scale = max(1.0, total_seconds(args) / DEFAULT_SECONDS) * (3.0 if args.dry_run else 1.0)
    out = []
    for name, cap, floor in PLAN:
        why = ""
        if args.only and name not in args.only:
            why = "not asked for (--only)"
        elif name in args.skip:
            why = "asked to skip (--skip)"
        elif args.dry_run and name.endswith("-compiled"):
            why = "dry run: torch.compile takes minutes on a CPU (~2 min for a tiny model here)"
        elif name == DISTRIBUTED and gpu_count is None and not args.dry_run:
            why = "not measured: GPU count unknown (the environment section failed)"
        elif name == DISTRIBUTED and processes(args, gpu_count or 0) < 2:
            why = (f"not measured: {processes(args, gpu_count or 0)} CPU process (dry run)"
                   if args.dry_run else f"not measured: {gpu_count} GPU"
                   + ("s" if gpu_count != 1 else ""))
        out.append((name, cap * scale, floor, why))
    return out


def total_seconds(args: argparse.Namespace) -> float:
    return args.total_seconds or (DRY_SECONDS if args.dry_run else DEFAULT_SECONDS)


def processes(args: argparse.Namespace, gpu_count: int) -> int:
    return args.cpu_processes if args.dry_run else gpu_count


def goals(sections: dict[str, Any], dry_run: bool) -> dict[str, Any]:
    """The two figures of the GPU goal, from the solve sections."""
    one = (sections.get("lanczos-resnet18") or {}).get("figures", {}).get("goal")
    dist = sections.get(DISTRIBUTED) or {}
    several = dist.get("figures", {}).get("goal") or {
        "not_measured": dist.get("reason") or "did not run"}
    what = ("ResNet-18 on 50,000 synthetic CIFAR-shaped samples, float32, both ends within 1% "
            "(self-stopped, certified by the residual rule) in under 60 s")
    if dry_run:
        what = "DRY RUN (tiny model, few samples, CPU): not the goal's figure"
    return {"what": what,
            "one_gpu": one or {"not_measured": (sections.get("lanczos-resnet18") or {}).get(
                "reason") or "did not run"},
            "several_gpus": several}


def reference_of(section: dict[str, Any]) -> dict[str, Any] | None:
    ref = section.get("figures", {}).get("float32", {}).get("reference")
    if ref and ref.get("lambda_max") is not None and ref.get("lambda_min") is not None:
        return ref
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (1-2 min)")
    p.add_argument("--total-seconds", type=float, default=None,
                   help=f"time limit of the whole check in seconds (default {DEFAULT_SECONDS:.0f}; "
                        f"dry run {DRY_SECONDS:.0f}); caps grow with it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="+", default=[], metavar="SECTION",
                   choices=[s for s, *_ in PLAN])
    p.add_argument("--skip", nargs="+", default=[], metavar="SECTION",
                   choices=[s for s, *_ in PLAN])
    p.add_argument("--cpu-processes", type=int, default=2,
                   help="dry run: gloo processes for the distributed section (0: skip it)")
    p.add_argument("--lanczos-strategy", default=None,
                   choices=["auto", "forward-over-reverse", "reverse-over-reverse", "compiled"],
                   help="HVP strategy of the solves (default auto among the eager ones)")
    p.add_argument("--keep", type=Path, default=None,
                   help="keep each section's log, config and result in this folder")
    p.add_argument("--section", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.section:
        return child(args)
    from gpu_check_report import summary  # noqa: PLC0415 - parent only

    total = total_seconds(args)
    start = time.monotonic()
    cfg = settings(args)
    report: dict[str, Any] = {
        "schema": SCHEMA, "created_utc": datetime.datetime.now(datetime.timezone.utc)
        .isoformat(timespec="seconds"), "command": [sys.argv[0], *(argv or sys.argv[1:])],
        "dry_run": args.dry_run, "time_limit_seconds": total,
        "settings": json.loads(json.dumps(cfg)),
        "dtype": "float32 (solves and timings); float64 and float32 in the agreement checks",
        "seed": args.seed, "git_commit": _git_commit(), "sections": {}}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        cfg["workdir"] = str(workdir)
        gpu_count: int | None = None
        steps = plan(args, gpu_count)
        i = 0
        while i < len(steps):
            name, cap, floor, why = steps[i]
            left = total - (time.monotonic() - start)
            later = sum(f for _, _, f, w in steps[i + 1:] if not w)
            budget = min(cap, left - later - RESERVE)
            if not why and budget < floor:
                why = f"time limit: {max(budget, 0):.0f} s left for it, it needs {floor} s"
            if why:
                result = {"status": "skipped", "reason": why, "figures": {}}
            else:
                print(f"[gpu-check] {name}: up to {budget:.0f} s", flush=True)
                nproc = processes(args, gpu_count or 0) if name == DISTRIBUTED else 0
                result = launch(name, cfg, budget, workdir, nproc)
            report["sections"][name] = result
            print(f"[gpu-check] {name}: {result['status']}"
                  + (f" ({result['reason']})" if result.get("reason") else ""), flush=True)
            if name == "environment" and result["status"] == "ok":
                env = result["figures"]["environment"]
                report["environment"] = env
                gpu_count = env.get("gpu_count") or 0
                steps = steps[:i + 1] + plan(args, gpu_count)[i + 1:]
            if name == "lanczos-resnet18":
                cfg["previous"] = {"float32_reference": reference_of(result)}
            report["goal"] = goals(report["sections"], args.dry_run)
            report["elapsed_seconds"] = round(time.monotonic() - start, 1)
            _write(args.out, report)
            i += 1
    print(summary(report), flush=True)
    return 0


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(HERE), "rev-parse", "HEAD"], text=True,
                              capture_output=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _write(path: Path, report: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
