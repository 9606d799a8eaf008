"""Where a command's CPU goes, process by process: Linux process accounting around a command (the test suite, a
sweep), then a summary of every process it started.

    python benchmarks/process_accounting.py -- python -m pytest            # needs root and `accton` (Debian: acct)
    python benchmarks/process_accounting.py --dump pacct.txt               # summarise an earlier `dump-acct` output

The kernel writes one record per exited process (``acct(5)``: user + system CPU, elapsed time, PID, parent PID);
``dump-acct`` prints them. A process's name is the name of its last thread to exit, so a Python process that loaded
pyarrow may show as ``jemalloc_bg_thd`` and one that used gRPC as ``resolver-execut``; Ray workers keep their
``ray::`` titles. The summary therefore groups by what a process costs, not by its name: processes of at least
``--heavy`` CPU-seconds (a process that imports torch, mlflow and Ray spends 6-8 CPU-s on that alone) against the
rest, Ray workers apart. BENCHMARKS.md ("Where the suite's CPU goes, process by process") holds the figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Record:
    """One exited process: its name, CPU-seconds (user + system), elapsed seconds, PID and parent PID."""

    name: str
    cpu_s: float
    elapsed_s: float
    pid: int
    ppid: int


def parse_dump(text: str) -> list[Record]:
    """The records of ``dump-acct`` output (``|``-separated: name, version, user ticks, system ticks, elapsed
    ticks, uid, gid, memory, io, pid, ppid, ...; 100 ticks a second)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = []
    for line in text.splitlines():
        f = [v.strip() for v in line.split("|")]
        if len(f) < 11:
            continue
        out.append(Record(f[0], (float(f[2]) + float(f[3])) / ticks, float(f[4]) / ticks, int(f[9]), int(f[10])))
    return out


def summarise(records: list[Record], heavy_s: float) -> str:
    """Totals: all processes, heavy ones (>= ``heavy_s`` CPU-s) split into Ray workers and the others, light ones,
    and the ten costliest processes."""
    total = sum(r.cpu_s for r in records)
    heavy = [r for r in records if r.cpu_s >= heavy_s]
    kinds: Counter[str] = Counter()
    cpu: Counter[str] = Counter()
    for r in heavy:
        kind = "Ray worker (ray::...)" if r.name.startswith("ray::") else "other process"
        kinds[kind] += 1
        cpu[kind] += r.cpu_s
    light = [r for r in records if r.cpu_s < heavy_s]
    lines = [
        f"{len(records)} processes, {total:.0f} CPU-s",
        f"  >= {heavy_s:g} CPU-s: {len(heavy)} processes, {sum(r.cpu_s for r in heavy):.0f} CPU-s",
    ]
    lines += [f"    {k}: {kinds[k]} processes, {cpu[k]:.0f} CPU-s" for k in sorted(kinds)]
    lines.append(f"  <  {heavy_s:g} CPU-s: {len(light)} processes, {sum(r.cpu_s for r in light):.0f} CPU-s")
    lines.append("  costliest:")
    for r in sorted(records, key=lambda r: -r.cpu_s)[:10]:
        lines.append(f"    {r.cpu_s:7.1f} CPU-s {r.elapsed_s:7.1f} s  pid {r.pid:<7d} ppid {r.ppid:<7d} {r.name}")
    return "\n".join(lines)


def record(command: list[str]) -> str:
    """Run ``command`` with process accounting on (``accton FILE`` ... ``accton off``); the ``dump-acct`` text."""
    with tempfile.TemporaryDirectory() as tmp:
        pacct = Path(tmp) / "pacct"
        pacct.touch()
        subprocess.run(["accton", str(pacct)], check=True, capture_output=True)
        try:
            rc = subprocess.run(command, check=False).returncode
        finally:
            subprocess.run(["accton", "off"], check=True, capture_output=True)
        print(f"command exit status {rc}", file=sys.stderr)
        return subprocess.run(["dump-acct", str(pacct)], check=True, capture_output=True, text=True).stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dump", type=Path, help="summarise this dump-acct output instead of running a command")
    parser.add_argument("--heavy", type=float, default=4.0, help="CPU-seconds from which a process counts as heavy")
    parser.add_argument("--save", type=Path, help="also write the dump-acct text here")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ... to run under accounting")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if bool(args.dump) == bool(command):
        parser.error("give either --dump FILE or -- COMMAND ...")
    text = args.dump.read_text() if args.dump else record(command)
    if args.save:
        args.save.write_text(text)
    print(summarise(parse_dump(text), args.heavy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
