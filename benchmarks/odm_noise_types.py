"""ODM on digits in-process: which seen out-of-distribution set makes mining help against which Gaussian noise?

    python benchmarks/odm_noise_types.py --seeds 0,2 --epochs 30 > a.jsonl   # one process per seed list
    python benchmarks/odm_noise_types.py --seeds 1,3 --epochs 30 > b.jsonl   # (2 cores: two processes)
    python benchmarks/odm_noise_types.py --summarise a.jsonl b.jsonl          # appends a section to BENCHMARKS.md

Trains ODM (VGG, ``ODM_DEFAULTS``, batch 64) on digits 0-4 at 32 px without mining and with mining on each seen set
(``digits56``: training images of digits 5 and 6; ``textures``: the shipped synthetic textures dataset; ``synth``:
400 :func:`synthetic_outlier_images` of the training images), then scores the test images by the distance to the
nearest class mean against three 500-image Gaussian-noise sets: ``matched`` (the training images' pixel mean and
std, the sweeper's default), ``odin`` (N(0.5, 1) clipped, the ODIN / Hendrycks-Gimpel set) and ``n05_025``
(N(0.5, 0.25)). Prints one JSON line per model; novelty = test digits 5-9.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

from common import ROOT, append_section, machine

NOISE = {"matched": None, "odin": (0.5, 1.0), "n05_025": (0.5, 0.25)}
SEEN = ("digits56", "textures", "synth")


def run(seeds: list[int], epochs: int, seens: list[str]) -> None:
    import torch

    from experiments.data import DATASETS
    from experiments.data.noise import gaussian_noise_images, synthetic_outlier_images
    from experiments.embed import embed_images
    from experiments.metrics.detection import detection_metrics, nc_accuracy, nearest_class_mean
    from experiments.models.odm import ODM, ODM_DEFAULTS
    from experiments.train import TrainSettings
    from experiments.train_labelled import train_labelled

    torch.set_num_threads(1)
    d = DATASETS["digits"].load(None, 32, False)
    keep, keep_test = d.train_labels < 5, d.test_labels < 5
    x, y, tx, ty = d.train_images[keep], d.train_labels[keep], d.test_images[keep_test], d.test_labels[keep_test]
    novel = d.test_images[~keep_test]
    pixel = (x.float().mean().item() / 255, x.float().std().item() / 255)
    seen_sets = {
        "digits56": d.train_images[(d.train_labels == 5) | (d.train_labels == 6)],
        "textures": DATASETS["textures"].load(None, 32, False).train_images,
        "synth": synthetic_outlier_images(x, 400, seed=123),
    }
    noise = {k: gaussian_noise_images(500, 32, 7, *(v or pixel)) for k, v in NOISE.items()}
    mean, std = d.channel_stats()
    settings = TrainSettings(**{**ODM_DEFAULTS, "epochs": epochs, "batch_size": 64})
    for seed in seeds:
        for seen in ["none", *seens]:
            start = time.time()
            torch.manual_seed(seed)
            model = ODM(mean, std, mining=seen != "none")
            train_labelled(model, x, y, settings, ood_images=None if seen == "none" else seen_sets[seen], seed=seed)
            ref = embed_images(model, x, l2_normalize=False)
            s_in, pred = nearest_class_mean(ref, y.numpy(), embed_images(model, tx, l2_normalize=False))
            row = {"seed": seed, "seen": seen, "epochs": epochs, "nc_acc": nc_accuracy(pred, ty.numpy())}
            s_novel, _ = nearest_class_mean(ref, y.numpy(), embed_images(model, novel, l2_normalize=False))
            row["novelty"] = detection_metrics(s_in, s_novel)["auroc"]
            for name, images in noise.items():
                s_noise, _ = nearest_class_mean(ref, y.numpy(), embed_images(model, images, l2_normalize=False))
                row[name] = detection_metrics(s_in, s_noise)["auroc"]
            row["secs"] = round(time.time() - start, 1)
            print(json.dumps(row), flush=True)


def summarise(paths: list[Path], output: Path) -> None:
    rows = [json.loads(line) for p in paths for line in p.read_text().splitlines() if line.startswith("{")]
    rows.sort(key=lambda r: (r["seed"], ["none", *SEEN].index(r["seen"])))
    cols = ["novelty", *NOISE, "nc_acc"]
    table = ["| seed | seen OoD (mining) | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    table += [f"| {r['seed']} | {r['seen']} | " + " | ".join(f"{r[c]:.4f}" for c in cols) + " |" for r in rows]
    means = []
    for seen in ["none", *SEEN]:
        group = [r for r in rows if r["seen"] == seen]
        if group:
            means.append(
                f"{seen} " + ", ".join(f"{c} {sum(r[c] for r in group) / len(group):.4f}" for c in ("matched", "odin"))
            )
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    append_section(
        f"""## ODM on digits: seen OoD set x Gaussian-noise type (in-process) — {stamp}

Machine: {machine()}; two processes of one thread each. `benchmarks/odm_noise_types.py`, VGG, {rows[0]["epochs"]}
epochs, in-distribution digits 0-4; AUROC (anomaly = higher distance to the nearest class mean); `none` = no mining.
Means over seeds: {"; ".join(means)}.

"""
        + "\n".join(table),
        output,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seen", default=",".join(SEEN))
    parser.add_argument("--summarise", nargs="+", type=Path, help="JSON-line outputs to summarise instead")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    if args.summarise:
        summarise(args.summarise, args.output)
    else:
        run([int(s) for s in args.seeds.split(",")], args.epochs, args.seen.split(","))


if __name__ == "__main__":
    main()
