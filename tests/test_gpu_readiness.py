"""GPU readiness, checked on a CPU (issue 22): autocast-safe SSL losses, CPU checkpoints that resume without
reseeding, every ``torch.load`` with ``map_location``, deterministic mode, the resolved precision in the training key.
CUDA-only tests skip, saying why, on a machine without a GPU."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import pytest
import torch

from experiments import checkpointing
from experiments.models import MODEL_FAMILIES, SSLModel, build_model

ROOT = Path(__file__).resolve().parents[1]
SIZE = 16
NO_CUDA = "needs a CUDA GPU (torch.cuda.is_available() is False on this machine)"
SSL_MODELS = [name for name, family in MODEL_FAMILIES.items() if family == "ssl"]
# the models whose loss is ``criterion(self(x0), self(x1))``; the others (BYOL, MoCo v2, SimSiam) add prediction heads or
# momentum targets, and their own ``loss`` runs the criterion in fp32 the same way (checked by dtype below)
PLAIN_SSL_MODELS = [n for n in SSL_MODELS if type(build_model(n, (0.5,) * 3, (0.25,) * 3)).loss is SSLModel.loss]


# ----------------------------------------------------------------------------------------------- autocast (4)


@pytest.mark.parametrize("name", PLAIN_SSL_MODELS)
def test_ssl_loss_under_bf16_autocast_runs_the_criterion_in_fp32(name: str) -> None:
    """Contract: under CPU bf16 autocast, ``loss(x0, x1)`` equals the criterion applied outside autocast to the fp32
    casts of the projections computed under the same autocast (1e-3 relative)."""
    torch.manual_seed(0)
    model = build_model(name, (0.5,) * 3, (0.25,) * 3, image_size=SIZE).eval()
    x0, x1 = torch.rand(32, 3, SIZE, SIZE), torch.rand(32, 3, SIZE, SIZE)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model.loss(x0, x1)
            z0, z1 = model(x0), model(x1)
        want = model.criterion(z0.float(), z1.float())
    assert z0.dtype == torch.bfloat16  # the projections really ran under autocast
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(float(want), rel=1e-3)


@pytest.mark.parametrize("name", sorted(set(SSL_MODELS) - set(PLAIN_SSL_MODELS)))
def test_ssl_losses_of_their_own_are_fp32_under_bf16_autocast(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, (0.5,) * 3, (0.25,) * 3, image_size=SIZE).eval()
    x0, x1 = torch.rand(32, 3, SIZE, SIZE), torch.rand(32, 3, SIZE, SIZE)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = model.loss(x0, x1)
        assert model(x0).dtype == torch.bfloat16
    assert got.dtype == torch.float32 and torch.isfinite(got)


# ------------------------------------------------------------------------------------- CPU checkpoints (2, 3)


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def test_to_cpu_copies_every_nested_tensor() -> None:
    live = torch.arange(6.0).reshape(2, 3).t()  # not contiguous
    state = {"a": live, "b": [1, (live, "x")], "c": {"d": None, "e": 2.5}}
    copied = checkpointing.to_cpu(state)
    assert copied["b"][0] == 1 and copied["b"][1][1] == "x" and copied["c"] == {"d": None, "e": 2.5}
    for t in (copied["a"], copied["b"][1][0]):
        assert t.device.type == "cpu" and t.is_contiguous() and torch.equal(t, live)
        assert t.untyped_storage().data_ptr() != live.untyped_storage().data_ptr()
    live.add_(1)  # the live buffer moves on; the snapshot does not
    assert float(copied["a"].sum()) == 15.0


def _ssl_setup():
    from experiments.augment import ssl_view_transform
    from experiments.train import TrainSettings

    images = torch.randint(0, 256, (12, 3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    settings = TrainSettings(epochs=2, batch_size=6, optimizer="sgd", lr=0.01, momentum=0.9)
    return images, settings, ssl_view_transform(SIZE)


def _labelled_setup():
    from experiments.train import TrainSettings

    g = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (16, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    labels = torch.arange(16) % 2
    return images, labels, TrainSettings(epochs=2, batch_size=8, optimizer="adam", lr=1e-3)


def test_checkpoints_hold_only_cpu_tensors_and_load_with_map_location() -> None:
    from experiments.train import TrainState, train
    from experiments.train_labelled import train_labelled

    images, settings, view = _ssl_setup()
    states = []
    model = build_model("simclr", (0.5,) * 3, (0.25,) * 3, image_size=SIZE)
    train(model, images, settings, view, seed=0, on_epoch=lambda r, snap: states.append(snap()))
    x, y, s = _labelled_setup()
    labelled = build_model("weak_metric_ae", (0.5,) * 3, (0.25,) * 3, image_size=SIZE)
    train_labelled(labelled, x, y, s, seed=0, on_epoch=lambda r, snap: states.append(snap()))
    for state in states:
        tensors = list(_tensors(state.to_dict()))
        assert tensors and all(t.device.type == "cpu" for t in tensors)
        assert state.optimizer["state"]  # momentum / Adam moments were saved
        buf = io.BytesIO()
        torch.save(state.to_dict(), buf)
        buf.seek(0)
        back = TrainState.from_dict(torch.load(buf, map_location="cpu", weights_only=True))
        assert back.rng["perturb"]["device"] == "cpu" and "cuda" not in back.rng  # CUDA was not in use
    weights = checkpointing.cpu_state_dict(model)
    assert all(t.device.type == "cpu" for t in weights.values())
    assert set(weights) == set(model.state_dict())


def _recording(monkeypatch, name: str) -> list:
    calls: list = []
    monkeypatch.setattr(torch.cuda, name, lambda *a, **k: calls.append(a))
    return calls


def test_resume_restores_the_global_generators_and_never_reseeds(monkeypatch) -> None:
    """A resumed run must not call ``torch.manual_seed``: that resets every CUDA generator (``manual_seed_all``) to
    epoch 1's stream. Fresh runs do seed them."""
    from experiments.train import train
    from experiments.train_labelled import train_labelled

    images, settings, view = _ssl_setup()
    x, y, s = _labelled_setup()
    ssl_states, lab_states = [], []
    reseeds = _recording(monkeypatch, "manual_seed_all")
    m = build_model("simclr", (0.5,) * 3, (0.25,) * 3, image_size=SIZE)
    train(m, images, settings, view, seed=3, on_epoch=lambda r, snap: ssl_states.append(snap()))
    lab = build_model("weak_metric_ae", (0.5,) * 3, (0.25,) * 3, image_size=SIZE)
    train_labelled(lab, x, y, s, seed=3, on_epoch=lambda r, snap: lab_states.append(snap()))
    assert len(reseeds) == 2  # the fresh runs seeded the CUDA generators
    reseeds.clear()
    torch.manual_seed(99)  # a fresh process after a fault: any global state
    reseeds.clear()
    from dataclasses import replace

    resumed = build_model("simclr", (0.5,) * 3, (0.25,) * 3, image_size=SIZE)
    train(resumed, images, replace(settings, epochs=2), view, seed=3, state=ssl_states[0])
    resumed_lab = build_model("weak_metric_ae", (0.5,) * 3, (0.25,) * 3, image_size=SIZE)
    train_labelled(resumed_lab, x, y, s, seed=3, state=lab_states[0])
    assert reseeds == []
    for a, b in ((m, resumed), (lab, resumed_lab)):  # and the CPU streams continued exactly
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_cuda_rng_states_are_saved_and_restored_when_training_on_cuda(monkeypatch, caplog) -> None:
    """The logic of :func:`global_rng_state` / :func:`seed_or_restore` with CUDA in use (torch.cuda's state functions
    replaced by recorders: this machine has no GPU; the real round trip is the CUDA-only test below)."""
    cuda = torch.device("cuda")
    states = [torch.tensor([1, 2], dtype=torch.uint8), torch.tensor([3, 4], dtype=torch.uint8)]
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: states)
    saved = checkpointing.global_rng_state(cuda)
    assert [s.tolist() for s in saved["cuda"]] == [[1, 2], [3, 4]]
    assert "cuda" not in checkpointing.global_rng_state(torch.device("cpu"))
    restored_all = _recording(monkeypatch, "set_rng_state_all")
    restored_one = _recording(monkeypatch, "set_rng_state")
    reseeds = _recording(monkeypatch, "manual_seed_all")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cpu_before = saved["torch"].clone()
    torch.rand(3)  # move the CPU generator on
    checkpointing.seed_or_restore(7, saved, cuda)
    assert torch.equal(torch.get_rng_state(), cpu_before)
    assert len(restored_all) == 1 and [s.tolist() for s in restored_all[0][0]] == [[1, 2], [3, 4]]
    assert reseeds == [] and restored_one == []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # resumed on a node with fewer GPUs
    checkpointing.seed_or_restore(7, saved, cuda)
    assert len(restored_one) == 1 and restored_one[0][0].tolist() == [1, 2] and restored_one[0][1] == 0
    restored_all.clear()
    checkpointing.seed_or_restore(7, saved, torch.device("cpu"))  # resumed on a CPU: CUDA untouched
    assert restored_all == [] and reseeds == []
    with caplog.at_level("WARNING"):
        checkpointing.seed_or_restore(7, {"torch": cpu_before}, cuda)  # written on a CPU, resumed on a GPU
    assert "no CUDA RNG state" in caplog.text and reseeds == []
    checkpointing.seed_or_restore(7, None, cuda)  # a fresh run seeds everything
    assert len(reseeds) == 1


def test_a_generator_state_from_another_device_type_reseeds_instead_of_failing(caplog) -> None:
    gen = torch.Generator()
    gen.manual_seed(5)
    saved = checkpointing.generator_state(gen)
    assert saved["device"] == "cpu"
    want = torch.rand(4, generator=gen)
    checkpointing.restore_generator(gen, saved, fallback_seed=0)
    assert torch.equal(torch.rand(4, generator=gen), want)
    checkpointing.restore_generator(gen, saved["state"], fallback_seed=0)  # older checkpoints: a bare state
    assert torch.equal(torch.rand(4, generator=gen), want)
    philox = {"state": torch.randint(0, 256, (16,), dtype=torch.uint8), "device": "cuda"}  # a CUDA generator's
    with pytest.raises(RuntimeError):
        gen.set_state(philox["state"])  # what a plain set_state does with it
    with caplog.at_level("WARNING"):
        checkpointing.restore_generator(gen, philox, fallback_seed=11)
    assert "cannot be loaded on cpu" in caplog.text
    assert torch.equal(torch.rand(4, generator=gen), torch.rand(4, generator=torch.Generator().manual_seed(11)))


def _torch_load_calls():
    for folder in ("experiments", "sweeper", "analysis", "benchmarks", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "torch"
                ):
                    yield f"{path.relative_to(ROOT)}:{node.lineno}", {k.arg: k.value for k in node.keywords}


def test_every_torch_load_maps_to_the_cpu_and_loads_weights_only() -> None:
    calls = list(_torch_load_calls())
    assert len(calls) >= 5  # trial (2), anomaly features, weak-metric backbones, tests
    for where, kw in calls:
        assert "map_location" in kw, f"{where}: torch.load without map_location"
        assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, where


# ---------------------------------------------------------------------------------- precision, determinism (4, 5)


def test_precision_resolves_amp_null_by_device() -> None:
    from experiments.precision import precision_name

    assert precision_name(None, "cuda") == "bf16" and precision_name(None, "cpu") == "fp32"
    assert precision_name(True, "cpu") == "bf16" and precision_name(False, torch.device("cuda")) == "fp32"


def test_deterministic_mode_sets_the_flags_and_restores_them() -> None:
    from experiments.precision import _fp32_precision_backends, deterministic_mode

    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic)
    precisions = [b.fp32_precision for b in _fp32_precision_backends()]
    assert precisions  # this torch has the fp32_precision switches
    with deterministic_mode(True):
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert all(b.fp32_precision == "ieee" for b in _fp32_precision_backends())
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic) == before
    assert [b.fp32_precision for b in _fp32_precision_backends()] == precisions
    with deterministic_mode(False):
        assert torch.are_deterministic_algorithms_enabled() == before[0]


def test_train_deterministic_is_a_config_option() -> None:
    from sweeper.config import TrainConfig

    assert TrainConfig().deterministic is False
    assert TrainConfig(deterministic=True).deterministic is True


# ---------------------------------------------------------------------------------------------- ripser++ (6)


def test_the_gpu_extra_and_the_readme_install_ripserplusplus_at_the_cuda_12_fix() -> None:
    import tomllib

    commit = "c12314b22c6a332906b063e4aa658c3a919ccb3d"
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    assert any(req.startswith("ripserplusplus @ git+") and req.endswith("@" + commit) for req in extra)
    readme = (ROOT / "README.md").read_text()
    assert "## GPU" in readme and "CMAKE_POLICY_VERSION_MINIMUM=3.5 pip install" in readme and commit in readme


def test_auto_falls_back_to_giotto_when_ripserplusplus_is_broken(monkeypatch, tmp_path, caplog) -> None:
    """A ripserplusplus package that imports but lacks its compiled libraries (what a failed build leaves): ``auto``
    uses giotto-ph and logs why; asking for it explicitly names the reason."""
    import sys

    from experiments.metrics import cross_barcode, ripserpp

    package = tmp_path / "ripserplusplus"
    package.mkdir()
    (package / "__init__.py").write_text("def run(*args):\n    raise AssertionError('must not be called')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ripserplusplus", raising=False)
    monkeypatch.setattr(cross_barcode, "_cuda_available", lambda: True)
    assert "libphmap.so" in ripserpp.unavailable_reason()
    with caplog.at_level("INFO"):
        assert cross_barcode.resolve_backend("auto", "cuda") == "giotto"
    assert "not ripser++" in caplog.text and "libphmap.so" in caplog.text
    with pytest.raises(ImportError, match=r"libphmap\.so"):
        cross_barcode.resolve_backend("ripserplusplus", "cuda")
    (package / "__init__.py").write_text("raise OSError('libcudart.so.12: cannot open shared object file')\n")
    monkeypatch.delitem(sys.modules, "ripserplusplus", raising=False)
    assert "libcudart" in ripserpp.unavailable_reason()


# ---------------------------------------------------------------------------------------------- CUDA only


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_cuda_resume_equals_training_straight_and_checkpoints_are_cpu() -> None:
    from experiments.train import TrainSettings, TrainState
    from experiments.train_labelled import train_labelled

    x, y, _ = _labelled_setup()
    s = TrainSettings(epochs=2, batch_size=8, optimizer="sgd", lr=0.01, momentum=0.9)

    def fresh():
        torch.manual_seed(1)
        return build_model("odm", (0.5,) * 3, (0.25,) * 3, image_size=32, dropout=0.5, mining=False)

    x32 = torch.nn.functional.interpolate(x.float(), size=32).to(torch.uint8)
    straight, states = fresh(), []
    train_labelled(straight, x32, y, s, device="cuda", seed=3, on_epoch=lambda r, snap: states.append(snap()))
    assert all(t.device.type == "cpu" for st in states for t in _tensors(st.to_dict()))
    buf = io.BytesIO()
    torch.save(states[0].to_dict(), buf)
    buf.seek(0)
    state = TrainState.from_dict(torch.load(buf, map_location="cpu", weights_only=True))
    assert "cuda" in state.rng and state.rng["perturb"]["device"] == "cuda"
    torch.cuda.manual_seed_all(12345)  # a fresh process
    resumed = fresh()
    train_labelled(resumed, x32, y, s, device="cuda", seed=3, state=state)
    assert all(
        torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True)
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
@pytest.mark.parametrize("name", PLAIN_SSL_MODELS)
def test_cuda_bf16_autocast_loss_contract(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, (0.5,) * 3, (0.25,) * 3, image_size=SIZE).cuda().eval()
    x0, x1 = torch.rand(256, 3, SIZE, SIZE, device="cuda"), torch.rand(256, 3, SIZE, SIZE, device="cuda")
    with torch.no_grad():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            got = model.loss(x0, x1)
            z0, z1 = model(x0), model(x1)
        want = model.criterion(z0.float(), z1.float())
    assert float(got) == pytest.approx(float(want), rel=1e-3)
