"""The text summary that ``scripts/gpu_check.py`` prints from its JSON report."""

from __future__ import annotations

from typing import Any


def _num(x: Any, fmt: str = ".2e") -> str:
    return "-" if x is None else format(x, fmt)


def _agreement(sec: dict[str, Any]) -> list[str]:
    lines = []
    for model, fig in sec.get("figures", {}).items():
        checks = fig.get("checks", {}) if isinstance(fig, dict) else {}
        cells = []
        for key, chk in checks.items():
            if isinstance(chk, dict) and "rel_err" in chk:
                mark = "" if "ok" not in chk else (" ok" if chk["ok"] else " FAILED")
                cells.append(f"{key} {_num(chk['rel_err'])}{mark}")
            elif isinstance(chk, dict) and "ok" in chk:
                cells.append(f"{key} {'ok' if chk['ok'] else 'FAILED'}")
        lines.append(f"    {model}: " + (", ".join(cells) or fig.get("reason", "no figures")))
    return lines


def _timing(name: str, sec: dict[str, Any]) -> list[str]:
    fig = sec.get("figures", {})
    lines = []
    for strategy, entry in (fig.get("strategies") or {}).items():
        if "hvp_seconds" not in entry:
            lines.append(f"    {strategy}: {entry.get('reason', 'not timed')}")
            continue
        blocks = ", ".join(f"matmat k={k}: {b['over_hvp']:.2f} of an HVP per vector"
                           for k, b in entry.get("matmat_per_vector", {}).items())
        chose = entry.get("setup", {}).get("strategy")
        lines.append(f"    {strategy}{f' (chose {chose})' if strategy == 'auto' else ''}: "
                     f"HVP {entry['hvp_seconds']:.4f} s = {entry['hvp_over_gradient']:.2f} "
                     f"gradients ({fig['gradient_seconds']:.4f} s)"
                     + (f"; {blocks}" if blocks else ""))
    return lines


def _goal(label: str, goal: dict[str, Any], dry_run: bool) -> str:
    if "not_measured" in goal:
        return f"  {label}: not measured: {goal['not_measured']}"
    if "seconds" in goal:
        met = "n/a (dry run)" if dry_run else "met" if goal.get("met") else "NOT met"
        return (f"  {label}: {goal['seconds']:.1f} s, {goal['passes']:.1f} data passes "
                f"(within 1% of the longer run: {goal.get('within_1pct')}; "
                f"target < {goal['target_seconds']:.0f} s: {met}) on {goal.get('devices')}")
    return (f"  {label}: not reached: {goal.get('reason')} "
            f"({_num(goal.get('seconds_so_far'), '.1f')} s, "
            f"{_num(goal.get('passes_so_far'), '.1f')} passes)")


def _precision(sec: dict[str, Any]) -> list[str]:
    lines = []
    for p in ("bf16", "tf32"):
        entry = sec.get("figures", {}).get(p)
        if not isinstance(entry, dict):
            continue
        if "final" not in entry:
            lines.append(f"    {p}: {entry.get('status', '')} {entry.get('reason', '')}")
            continue
        f, err = entry["final"], entry.get("error_vs_float32") or {}
        lines.append(f"    {p}: {f['status']}, {f['data_passes']:.0f} passes, "
                     f"{f['seconds']:.1f} s; error vs float32: lambda_max "
                     f"{_num(err.get('max'))}, lambda_min {_num(err.get('min'))}")
    return lines


def summary(report: dict[str, Any]) -> str:
    env = report.get("environment", {})
    versions = env.get("versions", {})
    head = "hessbench GPU check" + (" -- DRY RUN (tiny sizes, CPU)" if report["dry_run"]
                                    else "")
    lines = [head, f"  devices: {', '.join(env.get('gpus') or []) or 'no GPU'}; torch "
             f"{versions.get('torch')} (CUDA {versions.get('cuda (torch build)')}), jax "
             f"{versions.get('jax')}; torch threads {env.get('torch_threads')}",
             f"  {'section':28s} {'status':8s} {'seconds':>8s}  reason"]
    for name, sec in report["sections"].items():
        lines.append(f"  {name:28s} {sec['status']:8s} "
                     f"{_num(sec.get('wall_seconds'), '8.1f')}  {sec.get('reason') or ''}")
        if name.startswith("agreement"):
            lines += _agreement(sec)
        elif name.startswith("timing"):
            lines += _timing(name, sec)
        elif name.startswith("precision"):
            lines += _precision(sec)
    goal = report.get("goal", {})
    lines.append(f"GPU goal: {goal.get('what', '')}")
    dry = report["dry_run"]
    lines.append(_goal("one GPU", goal.get("one_gpu", {"not_measured": "did not run"}), dry))
    lines.append(_goal("several GPUs (distributed)",
                       goal.get("several_gpus", {"not_measured": "did not run"}), dry))
    lines.append(f"elapsed {report.get('elapsed_seconds', 0):.0f} s of "
                 f"{report['time_limit_seconds']:.0f} s")
    return "\n".join(lines)
