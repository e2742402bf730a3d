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


@pytest.mark.slow  # a subprocess importing torch, killed with SIGKILL, then resumed
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


def test_bad_input_exits_2_and_overwrites_nothing(tmp_path, recipe, capsys, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("precious")
    assert main(["train", "mess3", "--config", recipe, "--out", str(run)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["keep.txt"]

    fresh = str(tmp_path / "fresh")
    gated = tmp_path / "gru.json"  # a recipe file naming the family: refused the same way
    gated.write_text('{"arch": "gru"}')
    for argv, message in [
        (["--config", str(gated), "--act-fn", "tanh"], "tanh does not apply to --arch gru"),
        (["--arch", "lstm", "--act-fn", "relu"], "relu does not apply to --arch lstm"),
        (["--act-fn", "tanh"], "--arch rnn"),
        (["--arch", "rnn", "--act-fn", "gelu", "--config", "paper"], "tanh, sigmoid, relu"),
        (["--config", "turbo"], "unknown recipe"),
        (["--resume"], "does not exist"),
        (["--init-scale", "-1"], "--init-scale must be > 0"),
        (["--arch", "rnn", "--d-mlp", "8"], "--d-mlp is for --arch transformer"),
        *([] if torch.cuda.is_available() else [(["--device", "cuda"], "no CUDA GPU")]),
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
    capsys.readouterr()
    for argv in (["--arch", "mamba"], ["--tokens", "-5"], ["--train-sequences", "0"],
                 ["--exact-eval", "sometimes"], ["--init-scale", "big"]):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "mess3", "--out", fresh, *argv])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1, (argv, err)
    # memorize needs every input enumerable: 4 symbols at context 10 are 4**10 > 200,000
    assert main(["train", "random:symbols=4", "--config", "memorize", "--out", fresh]) == 2
    err = capsys.readouterr().err
    assert "enumerable" in err and err.count("\n") == 1
    monkeypatch.setenv("BELIEFGEO_THREADS", "two")
    assert main(["train", "mess3", "--config", recipe, "--out", fresh]) == 2
    err = capsys.readouterr().err
    assert "BELIEFGEO_THREADS='two'" in err and err.count("\n") == 1
    assert not Path(fresh).exists() or not any(Path(fresh).iterdir())


def test_resume_refuses_contradicting_flags(tmp_path, recipe, capsys):
    run = tmp_path / "run"
    assert main(["train", "mess3", "--config", recipe, "--out", str(run), "--tokens", "64"]) == 0
    assert main(["train", "mess3", "--out", str(run), "--resume", "--seed", "9"]) == 2
    assert "--seed 9" in capsys.readouterr().err
    assert main(["train", "rrxor", "--out", str(run), "--resume"]) == 2
    assert "process rrxor" in capsys.readouterr().err
    assert main(["train", "mess3", "--out", str(run), "--resume", "--config", "paper"]) == 2
    err = capsys.readouterr().err
    assert "--config paper (run has default+tiny.json)" in err and err.count("\n") == 1
    assert main(["train", "mess3", "--out", str(run), "--resume", "--init-scale", "0.5"]) == 2
    assert "--init-scale 0.5 (run has 1.0)" in capsys.readouterr().err
    # only what was typed: --arch rnn changes every model field, --config paper every optimiser one
    assert main(["train", "mess3", "--out", str(run), "--resume", "--arch", "rnn"]) == 2
    assert capsys.readouterr().err.endswith("drop or fix: --arch rnn (run has transformer)\n")
    assert main(["train", "mess3", "--out", str(run), "--resume", "--config", "paper"]) == 2
    err = capsys.readouterr().err
    assert err.endswith("drop or fix: --config paper (run has default+tiny.json)\n")
    # the run's own recipe, or where it computes, is no clash
    assert main(["train", "mess3", "--out", str(run), "--resume", "--config", recipe]) == 0
    assert main(["train", "mess3", "--out", str(run), "--resume", "--device", "cpu"]) == 0


def test_training_options_reach_the_run(tmp_path, recipe):
    run = tmp_path / "run"
    argv = ["train", "mess3", "--config", recipe, "--out", str(run), "--arch", "rnn",
            "--hidden", "6", "--layers", "2", "--init-scale", "0.5", "--train-sequences", "16",
            "--exact-eval", "off", "--device", "cpu", "--tokens", "64"]  # fmt: skip
    assert main(argv) == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["model"]["hidden"], config["model"]["n_layers"]) == (6, 2)
    assert config["model"]["init_scale"] == 0.5
    assert (config["train"]["train_sequences"], config["train"]["exact_eval"]) == (16, "off")
    assert config["train"]["device"] == "cpu" and config["environment"]["device"] == "cpu"
    assert config["exact_eval"] is False
    assert "16" in config["data"]["batch"]  # the fixed set, described
    transformer = tmp_path / "transformer"
    argv = ["train", "mess3", "--config", recipe, "--out", str(transformer), "--d-model", "12",
            "--n-layers", "2", "--n-heads", "3", "--d-mlp", "20", "--tokens", "32"]  # fmt: skip
    assert main(argv) == 0
    model = json.loads((transformer / "config.json").read_text())["model"]
    assert [model[k] for k in ("d_model", "n_layers", "n_heads", "d_mlp")] == [12, 2, 3, 20]
