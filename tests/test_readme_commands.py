"""Every ``sweeper`` command the README and ``docs/`` show keeps working (issue 31: a documented command crashed and no
test ran it).

The commands are read from the documents themselves -- lines of fenced code blocks (``\\`` continuations joined) and
inline code spans -- so a command added to the docs is checked without touching this file:

- a *synopsis* (placeholders such as ``CONFIG``, ``[--set ...]``) or a bare mention (``sweeper run``): its subcommand
  and every ``--flag`` it names exist in the CLI's parser;
- a concrete ``sweeper run`` / ``sweeper demo``: ``sweeper validate`` accepts it (exit 0), with the data paths the
  docs name (``/data/cifar10``, ``/data/mvtec_ad``, an image-folder archive) pointed at small copies the test writes;
- the slow tier runs the cheap ones for real at tiny sizes (the demo with its documented ``--set``, ``sweeper score``
  on files the test writes) and then ``status`` / ``report`` / ``rescore`` on what they logged.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sweeper.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Words of a synopsis: an upper-case placeholder, an optional ``[...]`` part, an ellipsis or a ``<...>`` hole.
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]{1,}\b|\[--|\.\.\.|\|")
#: Sizes that make a documented sweep cheap enough to run for real (appended after the documented ``--set``).
TINY = [
    "grid.model=[simclr]",
    "grid.train_class=[0]",
    "grid.augmentation=[none]",
    "train.epochs=1",
    "score.n_resamples=10",
]


def _code_block_commands(text: str) -> list[str]:
    """``sweeper ...`` commands on the lines of fenced code blocks (continuation lines joined, comments dropped)."""
    out, inside, pending = [], False, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside, pending = not inside, ""
            continue
        if not inside:
            continue
        line = pending + line.split(" #", 1)[0].strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        at = line.find("sweeper ")
        if at >= 0 and (at == 0 or line[at - 1] in " &;(") and not line.lstrip().startswith(("#", "pip", "import")):
            out.append(line[at:].strip())
    return out


def documented_commands() -> list[tuple[str, str]]:
    """``(document, command)`` for every ``sweeper`` command the README and ``docs/*.md`` show."""
    found: list[tuple[str, str]] = []
    for doc in DOCUMENTS:
        text = doc.read_text()
        commands = _code_block_commands(text) + re.findall(r"`(sweeper(?: [^`]*)?)`", text)
        found += [(doc.name, c.replace("\\|", "|")) for c in commands]
    return sorted(set(found))


def _subparsers() -> dict[str, object]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def _is_synopsis(argv: list[str]) -> bool:
    """A synopsis or a bare mention (``sweeper run`` in a sentence); ``sweeper demo`` alone is a command."""
    return len(argv) < 2 or (len(argv) == 2 and argv[1] != "demo") or bool(PLACEHOLDER.search(" ".join(argv[1:])))


def test_the_documents_show_commands_of_every_kind():
    """The extraction finds the README's commands (an empty list would make every other test here vacuous)."""
    commands = [c for _, c in documented_commands()]
    assert "sweeper demo --set 'score.sample_size=[20,40]'" in commands
    assert any(c.startswith("sweeper run experiments/configs/anomaly_clustering.yaml") for c in commands)
    assert any(c.startswith("sweeper score --reference") for c in commands)
    subs = {shlex.split(c)[1] for c in commands if len(shlex.split(c)) > 1 and not shlex.split(c)[1].startswith("-")}
    assert {"run", "demo", "validate", "resume", "status", "rescore", "report", "score"} <= subs


@pytest.mark.parametrize("doc,command", documented_commands())
def test_documented_subcommand_and_flags_exist(doc, command):
    """Every documented subcommand exists and every ``--flag`` a command names is one of that subcommand's."""
    argv = shlex.split(command)
    subs = _subparsers()
    words = [w for w in argv[1:] if not w.startswith("-") and w != "..."]
    if not words:  # `sweeper -v ...`: a top-level flag
        top = {s for a in build_parser()._actions for s in a.option_strings}
        assert all(f in top for f in argv[1:] if f.startswith("-")), f"{doc}: {command}"
        return
    sub = words[0]
    assert sub in subs, f"{doc}: `{command}` names no sweeper subcommand ({', '.join(subs)})"
    known = {s for a in subs[sub]._actions for s in a.option_strings}
    flags = {m for m in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", command)}
    assert flags <= known, f"{doc}: `{command}` names {sorted(flags - known)}, not options of `sweeper {sub}`"


def _small_data(tmp: Path) -> dict[str, str]:
    """The data paths the docs name, mapped to small copies written under ``tmp`` (the CIFAR-10 JPEG archive: an
    image folder of CIFAR-10's ten classes, 200 images of 8 x 8 per class and split, enough for the largest cloud)."""
    from experiments.anomaly_clustering.synthetic import make_synthetic_mvtec
    from tests.test_data import CIFAR_NAMES, write_fake_cifar
    from tests.test_image_folder import archive, write_folder

    write_fake_cifar(tmp / "cifar10", per_class_per_batch=20, test_per_class=200)
    make_synthetic_mvtec(tmp / "mvtec")
    folder = write_folder(tmp / "jpeg", per_class=200, classes=CIFAR_NAMES, size=(8, 8))
    jpeg = archive(folder, tmp / "cifar10-jpeg.tar.gz", top="cifar10-jpeg")
    # the longer path first: /data/cifar10 is a prefix of /data/cifar10-jpeg.tar.gz
    return {
        "/data/cifar10-jpeg.tar.gz": str(jpeg),
        "/data/cifar10": str(tmp / "cifar10"),
        "/data/mvtec_ad": str(tmp / "mvtec"),
    }


def _validate_argv(argv: list[str], paths: dict[str, str]) -> list[str]:
    """``sweeper run/demo ...`` as ``sweeper validate ...``: data paths replaced by the small copies, published
    weights (not on this machine) left out, options that only a run takes dropped."""
    from sweeper.config import bundled_config

    sub, rest = argv[1], argv[2:]
    config = str(bundled_config("demo")) if sub == "demo" else rest.pop(0)
    sets: list[str] = []
    for flag, word in itertools.pairwise(rest):
        if flag != "--set" or ".weights=" in word:
            continue
        for doc_path, here in paths.items():
            word = word.replace(doc_path, here)
        sets += ["--set", word]
    return ["validate", config, *sets]


def _validated_commands() -> list[tuple[str, str]]:
    return [
        (doc, c)
        for doc, c in documented_commands()
        if not _is_synopsis(shlex.split(c)) and shlex.split(c)[1] in ("run", "demo", "validate")
    ]


def test_every_documented_sweep_validates(tmp_path, monkeypatch, capsys):
    """``sweeper validate`` accepts every concrete ``sweeper run`` / ``sweeper demo`` the docs show."""
    commands = _validated_commands()
    assert commands, "no concrete sweeper run/demo command found in the docs"
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    paths = _small_data(tmp_path)
    for doc, command in commands:
        argv = _validate_argv(shlex.split(command), paths)
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 0, f"{doc}: `{command}` does not validate ({' '.join(argv)}): {err.strip()[-500:]}"


def _sweeper(argv: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("sweeper")
    return subprocess.run([str(exe), *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _write_score_files(tmp: Path) -> None:
    """``reference.csv`` and ``eval/<class>.csv`` as the README's ``sweeper score`` example reads them."""
    import pandas as pd

    rng = np.random.default_rng(0)
    cols = [f"e{i}" for i in range(8)]
    pd.DataFrame(rng.normal(size=(150, 8)), columns=cols).to_csv(tmp / "reference.csv", index=False)
    (tmp / "eval").mkdir()
    for k, name in enumerate(("cat", "dog", "ship")):
        pd.DataFrame(rng.normal(loc=k, size=(120, 8)), columns=cols).to_csv(tmp / "eval" / f"{name}.csv", index=False)


@pytest.mark.slow
def test_cheap_documented_commands_run_for_real(tmp_path):
    """The documented demo (its ``--set`` kept, sizes made tiny) and ``sweeper score`` on files written here run to
    exit 0 without a traceback; ``status``, ``report`` and ``rescore`` then work on what they logged."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env["HOME"] = str(tmp_path)
    demos = [shlex.split(c) for _, c in documented_commands() if c.startswith("sweeper demo --set")]
    scores = [shlex.split(c) for _, c in documented_commands() if c.startswith("sweeper score --reference")]
    scores = [a for a in scores if not _is_synopsis(a)]
    assert demos and scores
    for argv in demos:
        proc = _sweeper([*argv[1:], *(w for s in TINY for w in ("--set", s))], tmp_path, env)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-3000:]
        assert "Traceback" not in out and "Exception ignored" not in out, out[-3000:]
    _write_score_files(tmp_path)
    for argv in scores:
        proc = _sweeper([*argv[1:], "--set", "score.n_resamples=10"], tmp_path, env)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    for argv in (
        ["status", "demo"],
        ["report", "sweeper-demo", "--out", str(tmp_path / "report"), "--detail", "none"],
        ["rescore", "sweeper-demo", "--metrics", "mmd,chamfer"],
    ):
        proc = _sweeper(argv, tmp_path, env)
        assert proc.returncode == 0, f"sweeper {' '.join(argv)}: {(proc.stdout + proc.stderr)[-2000:]}"
    assert (tmp_path / "report" / "index.html").is_file()
