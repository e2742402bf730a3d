"""`beliefgeo train` end to end: exit codes, nothing overwritten, SIGKILL + resume bit-identical."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiments.cli import main
from models.run_files import list_checkpoints

REPO = Path(__file__).resolve().parents[2]
TINY = {
    "tokens": 30 * 8 * 4,
    "batch_size": 8,
    "warmup_steps": 3,
    "n_checkpoints": 8,
    "log_every": 2,
    "model": {"n_layers": 1, "d_model": 8, "d_head": 4, "n_heads": 2, "d_mlp": 16, "n_ctx": 4},
}


@pytest.fixture
def recipe(tmp_path) -> str:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return str(path)


def _final_state(run: Path) -> dict:
    return torch.load(list_checkpoints(run)[-1][1], weights_only=True)


def test_sigkill_then_resume_is_bit_identical(tmp_path, recipe):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["train", "mess3", "--config", recipe, "--seed", "5", "--out", str(whole)]) == 0
    # checkpoints at steps 0,1,2,3,10,16,23,30: dying at step 13 loses steps 11-13 and leaves
    # metrics lines past the newest checkpoint that resume must drop
    script = (
        "import os, signal\n"
        "from models.training import train_run\n"
        "def die_after_13(step):\n"
        "    if step == 13:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        f"train_run('mess3', {str(killed)!r}, config={recipe!r}, seed=5, on_step=die_after_13)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert [t for t, _ in list_checkpoints(killed)][-1] == 10 * 32
    assert main(["train", "mess3", "--out", str(killed), "--resume"]) == 0

    a, b = _final_state(whole), _final_state(killed)
    assert a["tokens"] == b["tokens"] == 960
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    for index, state in a["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][index][key])
    assert _metrics(whole) == _metrics(killed)
    flips = [m for m in _metrics(whole) if "sign_flip_steps" in m]
    assert len(flips) == 8 and flips[-1]["sign_flip_steps"] == 30 - 23  # pairs since step 23


def _metrics(run: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock fields."""
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [
        {k: v for k, v in line.items() if k not in ("wall_s", "eval_s", "cpu_s")} for line in lines
    ]


def test_bad_input_exits_2_and_overwrites_nothing(tmp_path, recipe, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("precious")
    assert main(["train", "mess3", "--config", recipe, "--out", str(run)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["keep.txt"]

    fresh = str(tmp_path / "fresh")
    for argv, message in [
        (["--act-fn", "tanh"], "--arch rnn"),
        (["--arch", "rnn", "--act-fn", "gelu", "--config", "paper"], "tanh, sigmoid, relu"),
        (["--config", "turbo"], "unknown recipe"),
        (["--resume"], "no config.json"),
    ]:
        code = main(
            [
                "train",
                "mess3",
                *([] if "--config" in argv else ["--config", recipe]),
                "--out",
                fresh,
                *argv,
            ]
        )
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)

    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", "mess3", "--config", recipe, "--out", str(blocker / "run")]) == 2
    assert "choose another --out" in capsys.readouterr().err
    assert main(["train", "nonsense-process", "--out", fresh]) == 2
    for argv in (["--arch", "lstm"], ["--tokens", "-5"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "mess3", "--out", fresh, *argv])
        assert exit_info.value.code == 2


def test_resume_refuses_contradicting_flags(tmp_path, recipe, capsys):
    run = tmp_path / "run"
    assert main(["train", "mess3", "--config", recipe, "--out", str(run), "--tokens", "64"]) == 0
    assert main(["train", "mess3", "--out", str(run), "--resume", "--seed", "9"]) == 2
    assert "--seed 9" in capsys.readouterr().err
    assert main(["train", "rrxor", "--out", str(run), "--resume"]) == 2
