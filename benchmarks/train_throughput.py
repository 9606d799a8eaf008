"""Training throughput: the batched view pipeline vs the proj18-style per-image pipeline, same model, same run.

``python benchmarks/train_throughput.py`` trains a fresh ResNet-20 SimCLR (proj18's SimCLR settings, batch 256) on
``--images`` random CIFAR-size uint8 images (no download) for ``--epochs`` epochs with each pipeline:

- proj18-style: ``train(..., pipeline="per_image", num_workers=2, channels_last=False, amp=False)`` — lightly's
  per-image PIL transforms in a ``DataLoader`` with 2 worker processes (proj18's ``src/train.py`` used
  ``num_workers=2``), fp32, default memory format;
- per-image, in-process (CPU only, for attribution): the same with ``num_workers=0``;
- ours: ``pipeline="batched"`` — the class's images on the device as one uint8 tensor, views by
  :class:`experiments.views.BatchedSSLViews`, channels-last, fp32 (the CPU default); on a CPU with native bf16
  (AVX512-BF16/AMX) also with the opt-in ``amp=True``; on CUDA fp32 and bf16 autocast + channels-last (the CUDA
  default), and with ``--compile`` a ``torch.compile`` variant.

The configurations run in interleaved rounds (A B C, then C B A, ...), so load from other processes on a shared
machine hits them alike. A configuration's throughput is the best of its epochs' ``images_per_second`` over all
rounds, without the first epoch of each run (warm-up) — the minimum-time convention of ``timeit``, the estimate
least biased by other jobs on a shared machine (two busy intra-op threads on two cores lose up to 10x when another
process takes a core); the median is reported next to it. The worker start of the per-image ``DataLoader`` happens
every epoch (as in proj18) and is counted. The script also times the pieces of one step (views, forward + backward) to show
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

from experiments.augment import TwoViews, ssl_view_transform
from experiments.models import TRAIN_DEFAULTS, build_model
from experiments.train import TrainSettings, train
from experiments.views import BatchedSSLViews

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def cpu_has_native_bf16() -> bool:
    """oneDNN's bf16 kernels are fast only with AVX512-BF16 or AMX; elsewhere CPU autocast is emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def configurations(device: torch.device, compile_too: bool) -> dict[str, dict[str, Any]]:
    proj18 = dict(pipeline="per_image", num_workers=2, channels_last=False, amp=False)
    configs = {"proj18-style (per-image PIL, 2 workers, fp32)": proj18}
    if device.type == "cpu":
        configs["per-image PIL, in-process (0 workers), fp32"] = dict(proj18, num_workers=0)
        configs["ours: batched, channels_last, fp32"] = dict(pipeline="batched", channels_last=True, amp=False)
        if cpu_has_native_bf16():
            configs["ours: batched, channels_last, bf16 autocast (opt-in amp=True)"] = dict(
                pipeline="batched", channels_last=True, amp=True
            )
    else:
        configs["ours: batched, fp32, default layout"] = dict(pipeline="batched", channels_last=False, amp=False)
        configs["ours: batched, bf16 + channels_last"] = dict(pipeline="batched", channels_last=True, amp=True)
        if compile_too:
            configs["ours: batched, bf16 + channels_last + compile"] = dict(
                pipeline="batched", channels_last=True, amp=True, compile=True
            )
    return configs


def benchmark_images(n: int, folder: str | None, train_class: str) -> tuple[torch.Tensor, str]:
    """``n`` training images and their description: random 32x32 uint8 images, or the first ``n`` training images
    of ``train_class`` in an image folder (decoded through the ``image_folder`` dataset and its cache)."""
    if folder is None:
        gen = torch.Generator().manual_seed(0)
        return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen), f"{n} random 32x32 uint8 images"
    from experiments.data import load_image_folder

    images = load_image_folder(folder, 32).images_of(train_class, "train")[:n]
    return images, f"the first {len(images)} training images of class {train_class!r} of `{Path(folder).name}`"


def run_once(images: torch.Tensor, settings: TrainSettings, device: torch.device, options: dict[str, Any]) -> list:
    torch.manual_seed(0)
    model = build_model("simclr", MEAN, STD)
    results = train(model, images, settings, ssl_view_transform(images.shape[-1]), device=device, seed=0, **options)
    return results


def time_pieces(images: torch.Tensor, batch: int, device: torch.device, repeats: int = 5) -> dict[str, float]:
    """Seconds per image (best of ``repeats``) of: two per-image PIL views, two batched views (on ``device``), and
    one fp32 SimCLR forward + backward + SGD step on two views (default layout and channels-last)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def best_of(fn) -> float:
        fn(), sync()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(), sync()
            times.append(time.perf_counter() - t)
        return min(times) / batch

    out: dict[str, float] = {}
    two_views = TwoViews(images[:batch], ssl_view_transform(images.shape[-1]))
    out["per-image PIL views (2 per image)"] = best_of(lambda: [two_views[i] for i in range(batch)])
    views = BatchedSSLViews(images.shape[-1])
    x = images[:batch].to(device)
    g = torch.Generator().manual_seed(0)
    out["batched views (2 per image)"] = best_of(lambda: (views(x, g), views(x, g)))
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        model = build_model("simclr", MEAN, STD).to(device, memory_format=layout)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x0 = views(x, g).contiguous(memory_format=layout)
        x1 = views(x, g).contiguous(memory_format=layout)

        def step(model=model, opt=opt, x0=x0, x1=x1) -> None:
            opt.zero_grad(set_to_none=True)
            model.loss(x0, x1).backward()
            opt.step()

        name = "channels-last" if layout is torch.channels_last else "default layout"
        out[f"forward + backward + step, fp32, {name}"] = best_of(step)
    return out


def machine(device: torch.device) -> str:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU"
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} intra-op threads), {gpu}"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1024)
    p.add_argument(
        "--image-folder",
        default=None,
        help="train on the images of one class of this image folder or archive (dataset image_folder) instead of "
        "random images, e.g. ../shared/data/cifar10-jpeg.tar.gz",
    )
    p.add_argument("--train-class", default="dog", help="the class of --image-folder")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is warm-up)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds of all configurations")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (CUDA)")
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    images, source = benchmark_images(args.images, args.image_folder, args.train_class)
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
            print(
                f"round {r + 1}: {name}: " + ", ".join(f"{res.images_per_second:.0f}" for res in results) + " img/s",
                flush=True,
            )
    pieces = time_pieces(images, args.batch_size, device)
    wall = time.time() - started

    base, base_median = max(per_config[names[0]]), statistics.median(per_config[names[0]])
    rows = []
    for name in names:
        best, med = max(per_config[name]), statistics.median(per_config[name])
        rows.append((name, best, med, med / base_median, best / base, statistics.median(losses[name])))
    table = [
        "| pipeline | img/s (best) | img/s (median) | × proj18-style (medians) | × proj18-style (best) "
        "| final loss (median) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    table += [f"| {n} | {b:.0f} | {m:.0f} | {xm:.2f} | {xb:.2f} | {loss:.3f} |" for n, b, m, xm, xb, loss in rows]
    piece_rows = ["| piece (per image) | ms |", "|---|---:|"]
    piece_rows += [f"| {k} | {v * 1e3:.3f} |" for k, v in pieces.items()]
    print("\n".join(table))
    print("\n".join(piece_rows))

    if args.no_write:
        return
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    target = 5.0 if device.type == "cuda" else 2.0
    best = max(rows[1:], key=lambda row: row[4])
    default = next(
        row
        for row in rows
        if row[0].startswith("ours") and ("bf16" in row[0]) == (device.type == "cuda") and "compile" not in row[0]
    )
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    section = [
        f"## Training throughput: batched views vs proj18-style per-image pipeline ({device.type}) — {now}",
        "",
        f"`python benchmarks/train_throughput.py{' --compile' if args.compile else ''}"
        f"{f' --image-folder {args.image_folder} --train-class {args.train_class}' if args.image_folder else ''}`: "
        "ResNet-20 SimCLR "
        f"(proj18's SimCLR settings: SGD lr 6e-3, momentum 0.9, wd 5e-4, cosine), batch {args.batch_size}, "
        f"{source}, {args.epochs} epochs per run, {args.rounds} interleaved rounds "
        "of all pipelines in one process; img/s = training images (two views each) per second of an epoch, over the "
        "epochs after the first of every run: best (least disturbed by other jobs; the headline) and median. "
        'proj18-style = `pipeline="per_image"` (lightly\'s PIL '
        "transforms per image in a DataLoader with 2 workers, as proj18's `src/train.py`), fp32, default layout; "
        'ours = `pipeline="batched"` (uint8 images on the device, `BatchedSSLViews`, no DataLoader).',
        "",
        f"- Machine: {machine(device)}"
        + (f"; load average at the end {load[0]:.1f} (shared machine: other jobs ran meanwhile)" if load else ""),
        f"- Wall time of the benchmark: {wall:.0f} s",
        "",
        *table,
        "",
        "Where a step's time goes (one batch, same machine, right after the runs):",
        "",
        *piece_rows,
        "",
        f"Target: ours ≥ {target:g}× the proj18-style pipeline on {device.type.upper()} — with the defaults "
        f"({default[0].removeprefix('ours: ')}) {'met' if default[4] >= target else 'not met'}: {default[4]:.2f}× "
        f"(best epochs; {default[3]:.2f}× on medians)"
        + ("" if best is default else f"; best {best[4]:.2f}× ({best[0].removeprefix('ours: ')})")
        + ".",
        "",
    ]
    with open(args.out, "a") as fh:
        fh.write("\n" + "\n".join(section))
    print(f"appended to {args.out}")


if __name__ == "__main__":
    main()
