"""``benchmarks/process_accounting.py`` reads ``dump-acct`` records and sums them the way BENCHMARKS.md reports."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from process_accounting import main, parse_dump, summarise

TICKS = os.sysconf("SC_CLK_TCK")

#: (name, user ticks, system ticks, elapsed ticks, pid, ppid): two heavy Ray workers, one heavy other, two light.
ROWS = [
    ("ray::ImplicitFu", 12.5, 1.5, 100.0, 11, 10),
    ("ray::IDLE", 6.0, 0.5, 40.0, 12, 10),
    ("jemalloc_bg_thd", 8.0, 2.0, 30.0, 13, 1),
    ("bash", 0.1, 0.0, 1.0, 14, 13),
    ("ray::IDLE", 1.0, 0.2, 20.0, 15, 10),
]


def _dump(rows) -> str:
    """``dump-acct`` lines for ``rows`` (times in seconds, written in clock ticks as the tool prints them)."""
    return "\n".join(
        f"{n:<16}|v3|{u * TICKS:9.2f}|{s * TICKS:9.2f}|{e * TICKS:9.2f}|     0|     0|  1000.00|     0.00|"
        f"{pid:8d}|{ppid:8d}|     |       0|__      |Thu Dec  3 15:38:41 2026"
        for n, u, s, e, pid, ppid in rows
    )


def test_records_carry_cpu_elapsed_and_parents():
    recs = parse_dump(_dump(ROWS) + "\nnot a record\n")
    assert [(r.name, r.pid, r.ppid) for r in recs] == [(n, p, pp) for n, *_, p, pp in ROWS]
    for r, (_, u, s, e, *_) in zip(recs, ROWS, strict=True):
        assert r.cpu_s == pytest.approx(u + s) and r.elapsed_s == pytest.approx(e)


def test_summary_splits_heavy_ray_workers_from_other_processes():
    text = summarise(parse_dump(_dump(ROWS)), heavy_s=4.0)
    heavy = [(n, u + s) for n, u, s, *_ in ROWS if u + s >= 4.0]
    ray_cpu = sum(c for n, c in heavy if n.startswith("ray::"))
    other_cpu = sum(c for n, c in heavy if not n.startswith("ray::"))
    assert f"{len(ROWS)} processes, {sum(u + s for _, u, s, *_ in ROWS):.0f} CPU-s" in text
    assert f"Ray worker (ray::...): 2 processes, {ray_cpu:.0f} CPU-s" in text
    assert f"other process: 1 processes, {other_cpu:.0f} CPU-s" in text
    assert "<  4 CPU-s: 2 processes, 1 CPU-s" in text
    assert text.index("ray::ImplicitFu") < text.index("jemalloc_bg_thd") < text.index("ray::IDLE")


def test_cli_needs_a_dump_or_a_command(tmp_path, capsys):
    dump = tmp_path / "pacct.txt"
    dump.write_text(_dump(ROWS))
    assert main(["--dump", str(dump)]) == 0
    assert "5 processes" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
