"""Run the benchmark suite and write ``report.md`` and ``report.json``.

    nice -n 5 .venv/bin/python -m benchmarks.run [--quick] [--only NAME ...] [--out benchmarks/results]

``--quick`` uses small sizes (a few minutes); the full run takes about 25 minutes. ``--only`` runs some
measurements and updates just their sections of an existing report. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import emulator_capacity, incremental, localized, memory, mirror, pipeline, rate_limit, scale_out
from .common import Context, Scale, Section, load_avg, machine, quiet_logs

MEASUREMENTS: dict[str, Callable[[Context], Section]] = {
    "emulator": emulator_capacity.measure,
    "pipeline": pipeline.measure,
    "localized": localized.measure,
    "rate_limit": rate_limit.measure,
    "memory": memory.measure,
    "incremental": incremental.measure,
    "mirror": mirror.measure,
    "scale_out": scale_out.measure,
    "scale_out_celery": scale_out.measure_celery,
}
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "emulator": {"contacts": 100_000},
        "pipeline": {"rows": 1_000_000, "baseline_rows": 100_000, "repeats": 5},
        "localized": {"rows": 1_000_000},
        "rate_limit": {"budgets": {400: 1_000_000, 300: 250_000}, "baseline_contacts": 5_000},
        "memory": {"rows": [1_000_000, 5_000_000], "naive_rows": 1_000_000},
        "incremental": {"rows": 1_000_000, "changed": 0.01},
        "mirror": {"rows": 1_000_000, "leavers": 0.01},
        "scale_out": {"segments": 4, "rows": 250_000},
        "scale_out_celery": {"rows": 1_000_000},
    },
    "quick": {
        "emulator": {"contacts": 20_000},
        "pipeline": {"rows": 100_000, "baseline_rows": 20_000, "repeats": 3},
        "localized": {"rows": 100_000},
        "rate_limit": {"budgets": {400: 100_000, 300: 100_000}, "baseline_contacts": 1_000},
        "memory": {"rows": [100_000, 500_000], "naive_rows": 100_000},
        "incremental": {"rows": 100_000, "changed": 0.01},
        "mirror": {"rows": 100_000, "leavers": 0.01},
        "scale_out": {"segments": 4, "rows": 25_000},
        "scale_out_celery": {"rows": 100_000},
    },
}
DEFAULT_TIME_SCALE = 0.2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a few minutes")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(MEASUREMENTS),
        metavar="NAME",
        help=f"run only these: {', '.join(MEASUREMENTS)}",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=DEFAULT_TIME_SCALE,
        help="emulated minute = 60 × this many real seconds (default %(default)s)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="write pipeline profiles (pyinstrument, else cProfile) even if the targets are met",
    )
    args = parser.parse_args(argv)
    quiet_logs()
    mode = "quick" if args.quick else "full"
    names = args.only or list(MEASUREMENTS)
    args.out.mkdir(parents=True, exist_ok=True)
    report = _load(args.out / "report.json")
    report["machine"] = machine()
    report["command"] = "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.perf_counter()
    for name in names:
        section = _run(name, mode, args)
        report["sections"][name] = {
            **section.to_dict(),
            "mode": mode,
            "time_scale": args.time_scale,
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        }
        _save(report, args.out)
        _print(report["sections"][name])
    print(
        f"\n{len(names)} measurement(s) in {time.perf_counter() - started:.0f} s; "
        f"report: {args.out / 'report.md'}"
    )
    return 0 if all(report["sections"][n].get("ok") is not False for n in names) else 1


def _run(name: str, mode: str, args: argparse.Namespace) -> Section:
    print(f"== {name} ({mode}), load {load_avg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix=f"omnisend-bench-{name}-") as tmp:
        ctx = Context(
            quick=mode == "quick",
            sizes=SIZES[mode][name],
            scale=Scale(args.time_scale),
            work=Path(tmp),
            out=args.out,
            profile=args.profile,
        )
        load_before, t0 = load_avg(), time.perf_counter()
        try:
            section = MEASUREMENTS[name](ctx)
        except Exception as err:  # one failed measurement must not lose the others
            section = Section(name, name, error=f"{type(err).__name__}: {err}")
            traceback.print_exc()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        section.seconds = round(time.perf_counter() - t0, 1)
        section.load_before, section.load_after = load_before, load_avg()
    return section


def _load(path: Path) -> dict[str, Any]:
    if path.exists():
        report = json.loads(path.read_text())
        report.setdefault("sections", {})
        return report
    return {"sections": {}}


def _save(report: dict[str, Any], out: Path) -> None:
    ordered = {n: report["sections"][n] for n in MEASUREMENTS if n in report["sections"]}
    report["sections"] = ordered
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "report.md").write_text(render(report))


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("✅" if ok else "❌ missed")


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Benchmark report",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gb']} GB; {m['os']}; Python {m['python']}, "
        f"pyarrow {m['pyarrow']}, pandas {m['pandas']}. Shared with other work: the load average "
        "(1/5/15 min) is given before and after each measurement.",
        "",
        "Regenerate: `nice -n 5 .venv/bin/python -m benchmarks.run [--quick] [--only NAME]` "
        "(see docs/performance.md).",
    ]
    for section in report["sections"].values():
        lines += ["", f"## {section['title']}", ""]
        lines.append(
            f"{section['date']}, {section['mode']} mode, time scale {section['time_scale']}, "
            f"{section['seconds']} s; load {_load_text(section['load_before'])} → "
            f"{_load_text(section['load_after'])}. Verdict: {_verdict(section['ok']) or 'no target'}"
        )
        if section.get("error"):
            lines += ["", f"**Failed:** `{section['error']}`"]
        if section["figures"]:
            lines += ["", "| figure | value | ratio | ratio to | target | |", "|---|---:|---:|---|---|---|"]
            for f in section["figures"]:
                value = f"{f['value']:,}" if isinstance(f["value"], int | float) else str(f["value"])
                ratio = "" if f["ratio"] is None else f"{f['ratio']:,}"
                lines.append(
                    f"| {f['name']} | {value} {f['unit']} | {ratio} | {f['ratio_of']} | "
                    f"{f['target']} | {_verdict(f['ok'])} |"
                )
        if section["notes"]:
            lines.append("")
            lines += [f"- {note}" for note in section["notes"]]
    return "\n".join(lines) + "\n"


def _load_text(load: list[float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def _print(section: dict[str, Any]) -> None:
    for f in section["figures"]:
        ratio = "" if f["ratio"] is None else f"  ×{f['ratio']} vs {f['ratio_of']}"
        print(f"  {f['name']}: {f['value']} {f['unit']}{ratio}  {f['target']} {_verdict(f['ok'])}")
    if section.get("error"):
        print(f"  FAILED: {section['error']}")
    print(f"  ({section['seconds']} s, load {section['load_before']} → {section['load_after']})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
