"""GPU readiness check (issue 22, points 1-4): run on a machine with a CUDA GPU; without one it says so and exits 0.

1. metrics on the trial's GPU (``sweeper.metric_device.plan_metrics("cuda")``) equal the CPU values, and MTopDiv's
   backend is ripser++ when it is usable (then equal to giotto-ph within float32 round-off);
2. a label-supervised model with dropout trained 2 epochs on CUDA equals 1 epoch + a resume from a checkpoint that
   went through ``torch.save`` / ``torch.load(map_location="cpu")`` (the CUDA random state restored, not reseeded);
3. every tensor of that checkpoint and of ``cpu_state_dict`` is on the CPU, and the weights load into a CPU model;
4. under CUDA bf16 autocast, every SSL model's loss equals its criterion on the fp32 projections (1e-3 relative).

Prints one line per check and exits 1 when one fails. Usage: ``python benchmarks/gpu_readiness.py`` (also run by
``benchmarks/gpu_check.py``, the one-command GPU check).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch


def check_metrics() -> str:
    from experiments.metrics import mtopdiv
    from sweeper.bootstrap import draw_indices, score_block
    from sweeper.metric_device import plan_metrics

    rng = np.random.default_rng(0)
    reference, cloud = rng.normal(size=(1000, 64)), rng.normal(size=(1000, 64))
    ref_idx, eval_idx = draw_indices(1000, 1000, 100, 100, seed=0, class_position=0)
    metrics = ["hausdorff", "euclidean", "chamfer", "mtopdiv"]
    gpu, cpu = plan_metrics(metrics, "cuda"), plan_metrics(metrics, "cpu")
    names = list(gpu.on_device)
    a = score_block(reference, cloud, ref_idx, eval_idx, names, gpu.options)
    b = score_block(reference, cloud, ref_idx, eval_idx, names, {**cpu.options, "mtopdiv": {"backend": "giotto"}})
    np.testing.assert_allclose(a, b, rtol=1e-4)
    backend = gpu.options["mtopdiv"]["backend"]
    if backend == "ripserplusplus":
        P, Q = reference[:100], cloud[:100]
        assert abs(mtopdiv(P, Q, backend="ripserplusplus") / mtopdiv(P, Q, backend="giotto") - 1) < 1e-4
    return f"on the GPU: {names}; MTopDiv backend {backend}"


def check_resume_and_cpu_checkpoints() -> str:
    from experiments.checkpointing import cpu_state_dict
    from experiments.models import build_model
    from experiments.train import TrainSettings, TrainState
    from experiments.train_labelled import train_labelled

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (128, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.arange(128) % 4
    s = TrainSettings(epochs=2, batch_size=32, optimizer="sgd", lr=0.01, momentum=0.9)

    def fresh():
        torch.manual_seed(1)
        return build_model("odm", (0.5,) * 3, (0.25,) * 3, image_size=32, dropout=0.5, mining=False)

    straight = fresh()
    states: list[TrainState] = []
    train_labelled(straight, x, y, s, device="cuda", seed=3, on_epoch=lambda r, snap: states.append(snap()))
    buf = io.BytesIO()
    torch.save(states[0].to_dict(), buf)
    buf.seek(0)
    state = TrainState.from_dict(torch.load(buf, map_location="cpu", weights_only=True))
    devices = {t.device.type for t in _tensors(states[0].to_dict())} | {
        t.device.type for t in _tensors(states[1].to_dict())
    }
    assert devices == {"cpu"}, devices
    assert "cuda" in state.rng, "the CUDA random state was not saved"
    torch.cuda.manual_seed_all(12345)  # a new process after a fault
    resumed = fresh()
    train_labelled(resumed, x, y, s, device="cuda", seed=3, state=state)
    same = all(
        torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True)
    )
    weights = cpu_state_dict(resumed)
    assert {t.device.type for t in weights.values()} == {"cpu"}
    build_model("odm", (0.5,) * 3, (0.25,) * 3, image_size=32, dropout=0.5, mining=False).load_state_dict(weights)
    assert same, "the resumed CUDA run differs from the uninterrupted one"
    return f"checkpoint tensors on {sorted(devices)}; the resumed run equals the uninterrupted one"


def check_autocast() -> str:
    from experiments.models import MODEL_FAMILIES, build_model

    out = []
    for name in [n for n, f in MODEL_FAMILIES.items() if f == "ssl"]:
        torch.manual_seed(0)
        model = build_model(name, (0.5,) * 3, (0.25,) * 3).cuda().eval()
        x0, x1 = torch.rand(256, 3, 32, 32, device="cuda"), torch.rand(256, 3, 32, 32, device="cuda")
        with torch.no_grad():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                got = float(model.loss(x0, x1))
                z0, z1 = model(x0), model(x1)
            want = float(model.criterion(z0.float(), z1.float()))
        assert abs(got / want - 1) < 1e-3, (name, got, want)
        out.append(f"{name} {got:.5g} vs {want:.5g}")
    return "; ".join(out)


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_readiness: no CUDA GPU here (torch.cuda.is_available() is False); nothing checked")
        return 0
    print(f"gpu_readiness on {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    failed = 0
    for label, check in [
        ("1 metric device", check_metrics),
        ("2+3 CUDA resume, CPU checkpoints", check_resume_and_cpu_checkpoints),
        ("4 bf16 autocast loss", check_autocast),
    ]:
        try:
            print(f"ok   {label}: {check()}")
        except Exception as exc:
            failed += 1
            print(f"FAIL {label}: {type(exc).__name__}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
