"""Does out-of-distribution mining help ODM against Gaussian noise on digits? Runs the shipped
``experiments/configs/odm.yaml`` through ``sweeper run`` (fresh sqlite store, local Ray), once per seen-OoD variant,
and appends the per-seed detection scores (mining on / off) to BENCHMARKS.md.

    python benchmarks/odm_mining.py                       # the shipped config: synthetic seen outliers
    python benchmarks/odm_mining.py --variant synthetic --variant classes56 --variant textures

Variants (``--set`` overrides of the shipped config): ``synthetic`` (as shipped: ``ood.seen_synthetic=400``),
``classes56`` (``ood.seen_classes=[5, 6]``, the same dataset's other classes; novelties 7-9), ``textures`` (the
shipped synthetic ``textures`` dataset as ``ood.seen_dataset``). About 20 min per variant on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, append_section, machine

VARIANTS = {
    "synthetic": [],
    "classes56": ["ood.seen_synthetic=0", "ood.seen_classes=[5, 6]"],
    "textures": ["ood.seen_synthetic=0", "ood.seen_dataset=textures"],
}
COLUMNS = [("gaussian_noise", "auroc"), ("gaussian_noise", "fpr95"), ("novelty", "auroc"), (None, "nc_accuracy")]


def run_variant(name: str, config: Path) -> tuple[list[str], float]:
    """Run the sweep of one variant; Markdown table rows (one per seed) and the wall time."""
    from analysis import load_scores

    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
        uri = f"sqlite:///{tmp}/mlflow.db"
        args = [
            str(Path(sys.executable).with_name("sweeper")),
            "run",
            str(config),
            "--no-report",
            "--storage-path",
            f"{tmp}/ray",
            "--set",
            f"tracking.uri={uri}",
        ]
        for override in VARIANTS[name]:
            args += ["--set", override]
        start = time.perf_counter()
        proc = subprocess.run(args, cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"sweeper run ({name}) failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        scores = load_scores("odm", uri)
    rows = []
    for seed, group in scores.groupby("seed"):
        cells = []
        for eval_class, metric in COLUMNS:
            pick = group[group["metric"] == metric]
            if eval_class is not None:
                pick = pick[pick["eval_class"] == eval_class]
            mining = pick["trial_key"].str.contains("mining=True", regex=False)
            cells.append(f"{pick[mining]['mean'].item():.4f} / {pick[~mining]['mean'].item():.4f}")
        rows.append(f"| {name} | {seed} | " + " | ".join(cells) + " |")
    return rows, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", choices=list(VARIANTS), help="seen-OoD variant(s) to run")
    parser.add_argument("--config", type=Path, default=ROOT / "experiments" / "configs" / "odm.yaml")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="Markdown file to append to")
    args = parser.parse_args()
    rows, walls = [], []
    for name in args.variant or ["synthetic"]:
        r, wall = run_variant(name, args.config)
        rows += r
        walls.append(f"{name} {wall:.0f} s")
        print("\n".join(r), flush=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = "| seen OoD | seed | noise AUROC | noise FPR95 | novelty AUROC | NC accuracy |\n|---|---|---|---|---|---|"
    append_section(
        f"""## ODM on digits: out-of-distribution mining on / off — {stamp}

Machine: {machine()}. `sweeper run experiments/configs/odm.yaml` (VGG, 30 epochs, in-distribution digits 0-4,
500 Gaussian-noise images with the training images' pixel mean and std, seed-dependent), one sweep per seen-OoD
variant; each cell is *with mining / without*. Wall time: {", ".join(walls)}.

{header}
"""
        + "\n".join(rows),
        args.output,
    )


if __name__ == "__main__":
    main()
