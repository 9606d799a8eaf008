"""Training throughput: the batched view pipeline vs the proj18-style per-image pipeline, same model, same run.

``python benchmarks/train_throughput.py`` trains a fresh ResNet-20 SimCLR (proj18's SimCLR settings, batch 256) on
``--images`` random CIFAR-size uint8 images (no download) for ``--epochs`` epochs with each pipeline:

- proj18-style: ``train(..., pipeline="per_image", num_workers=2, channels_last=False, amp=False)`` — lightly's
  per-image PIL transforms in a ``DataLoader`` with 2 worker processes (proj18's ``src/train.py`` used
  ``num_workers=2``), fp32, default memory format;
- per-image, in-process (CPU only, for attribution): the same with ``num_workers=0``;
- ours: ``pipeline="batched"`` — the class's images on the device as one uint8 tensor, views by
  :class:`experiments.views.BatchedSSLViews`, channels-last; on CUDA also bf16 autocast (and, with ``--compile``, a
  ``torch.compile`` variant).

The configurations run in interleaved rounds (A B C, then C B A, ...), so load from other processes on a shared
machine hits them alike; a configuration's throughput is the median over rounds of its epochs' ``images_per_second``
without the first epoch of each run (warm-up). The worker start of the per-image ``DataLoader`` happens every epoch
(as in proj18) and is counted. The script also times the pieces of one step (views, forward + backward) to show
what bounds the ratio, prints a table and appends a section to ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.augment import TwoViews, ssl_view_transform  # noqa: E402
from experiments.models import TRAIN_DEFAULTS, build_model  # noqa: E402
from experiments.train import TrainSettings, train  # noqa: E402
from experiments.views import BatchedSSLViews  # noqa: E402

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def configurations(device: torch.device, compile_too: bool) -> dict[str, dict[str, Any]]:
    proj18 = dict(pipeline="per_image", num_workers=2, channels_last=False, amp=False)
    configs = {"proj18-style (per-image PIL, 2 workers, fp32)": proj18}
    if device.type == "cpu":
        configs["per-image PIL, in-process (0 workers), fp32"] = dict(proj18, num_workers=0)
        configs["ours: batched, channels_last, fp32"] = dict(pipeline="batched", channels_last=True, amp=False)
    else:
        configs["ours: batched, fp32, default layout"] = dict(pipeline="batched", channels_last=False, amp=False)
        configs["ours: batched, bf16 + channels_last"] = dict(pipeline="batched", channels_last=True, amp=True)
        if compile_too:
            configs["ours: batched, bf16 + channels_last + compile"] = dict(pipeline="batched", channels_last=True,
                                                                            amp=True, compile=True)
    return configs


def run_once(images: torch.Tensor, settings: TrainSettings, device: torch.device, options: dict[str, Any]) -> list:
    torch.manual_seed(0)
    model = build_model("simclr", MEAN, STD)
    results = train(model, images, settings, ssl_view_transform(images.shape[-1]), device=device, seed=0, **options)
    return results


def time_pieces(images: torch.Tensor, batch: int, device: torch.device, repeats: int = 3) -> dict[str, float]:
    """Seconds per image of: two per-image PIL views, two batched views (on ``device``), and one fp32 SimCLR
    forward + backward + SGD step on two views (default layout and channels-last)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out: dict[str, float] = {}
    two_views = TwoViews(images[:batch], ssl_view_transform(images.shape[-1]))
    t = time.perf_counter()
    for i in range(batch):
        two_views[i]
    out["per-image PIL views (2 per image)"] = (time.perf_counter() - t) / batch
    views = BatchedSSLViews(images.shape[-1])
    x = images[:batch].to(device)
    g = torch.Generator().manual_seed(0)
    views(x, g), sync()
    t = time.perf_counter()
    for _ in range(repeats):
        views(x, g), views(x, g)
    sync()
    out["batched views (2 per image)"] = (time.perf_counter() - t) / (repeats * batch)
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        model = build_model("simclr", MEAN, STD).to(device, memory_format=layout)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x0 = views(x, g).contiguous(memory_format=layout)
        x1 = views(x, g).contiguous(memory_format=layout)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            model.loss(x0, x1).backward()
            opt.step()

        step(), sync()
        t = time.perf_counter()
        for _ in range(repeats):
            step()
        sync()
        name = "channels-last" if layout is torch.channels_last else "default layout"
        out[f"forward + backward + step, fp32, {name}"] = (time.perf_counter() - t) / (repeats * batch)
    return out


def machine(device: torch.device) -> str:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU"
    return (f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} intra-op threads), {gpu}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is warm-up)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of all configurations")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (CUDA)")
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    settings = TrainSettings(**{**TRAIN_DEFAULTS["simclr"], "epochs": args.epochs, "batch_size": args.batch_size})
    configs = configurations(device, args.compile)
    names = list(configs)
    per_config: dict[str, list[float]] = {n: [] for n in names}
    losses: dict[str, list[float]] = {n: [] for n in names}
    started = time.time()
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else reversed(names):
            results = run_once(images, settings, device, configs[name])
            per_config[name].extend(res.images_per_second for res in results[1:])
            losses[name].append(results[-1].loss)
            print(f"round {r + 1}: {name}: " + ", ".join(f"{res.images_per_second:.0f}" for res in results)
                  + " img/s", flush=True)
    pieces = time_pieces(images, args.batch_size, device)
    wall = time.time() - started

    base = statistics.median(per_config[names[0]])
    rows = []
    for name in names:
        med = statistics.median(per_config[name])
        lo, hi = min(per_config[name]), max(per_config[name])
        rows.append((name, med, lo, hi, med / base, statistics.median(losses[name])))
    table = ["| pipeline | img/s (median) | min–max | × proj18-style | final loss (median) |",
             "|---|---:|---:|---:|---:|"]
    table += [f"| {n} | {m:.0f} | {lo:.0f}–{hi:.0f} | {x:.2f} | {loss:.3f} |" for n, m, lo, hi, x, loss in rows]
    piece_rows = ["| piece (per image) | ms |", "|---|---:|"]
    piece_rows += [f"| {k} | {v * 1e3:.3f} |" for k, v in pieces.items()]
    print("\n".join(table))
    print("\n".join(piece_rows))

    if args.no_write:
        return
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    target = 5.0 if device.type == "cuda" else 2.0
    best = max(rows[1:], key=lambda row: row[1])
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    section = [
        f"## Training throughput: batched views vs proj18-style per-image pipeline ({device.type}) — {now}",
        "",
        f"`python benchmarks/train_throughput.py{' --compile' if args.compile else ''}`: ResNet-20 SimCLR "
        f"(proj18's SimCLR settings: SGD lr 6e-3, momentum 0.9, wd 5e-4, cosine), batch {args.batch_size}, "
        f"{args.images} random 32x32 uint8 images, {args.epochs} epochs per run, {args.rounds} interleaved rounds "
        "of all pipelines in one process; img/s = training images (two views each) per second of an epoch, median "
        "over the epochs after the first of every round. proj18-style = `pipeline=\"per_image\"` (lightly's PIL "
        "transforms per image in a DataLoader with 2 workers, as proj18's `src/train.py`), fp32, default layout; "
        "ours = `pipeline=\"batched\"` (uint8 images on the device, `BatchedSSLViews`, no DataLoader).",
        "",
        f"- Machine: {machine(device)}"
        + (f"; load average at the end {load[0]:.1f} (the machine is shared: other jobs ran meanwhile)" if load else ""),
        f"- Wall time of the benchmark: {wall:.0f} s",
        "",
        *table,
        "",
        "Where a step's time goes (one batch, same machine, right after the runs):",
        "",
        *piece_rows,
        "",
        f"Target: ours ≥ {target:g}× the proj18-style pipeline on {device.type.upper()} — "
        f"{'met' if best[4] >= target else 'not met'} ({best[4]:.2f}× with {best[0].removeprefix('ours: ')}).",
        "",
    ]
    with open(args.out, "a") as fh:
        fh.write("\n" + "\n".join(section))
    print(f"appended to {args.out}")


if __name__ == "__main__":
    main()
