"""The command line surface: --version, help on every argument, `hooks`, the thread budget, and
for every long command its progress lines and its closing 'wrote ...' line (captured output)."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.cli import build_parser

EXAMPLE = Path(__file__).resolve().parents[2] / "experiments" / "examples" / "noisy_4_cycle.json"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_version_is_the_installed_distribution(cli):
    code, out, _ = cli(["--version"])
    assert code == 0 and out.strip() == f"beliefgeo {importlib.metadata.version('beliefgeo')}"


def test_every_subcommand_and_argument_has_help():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helped = {c.dest for c in action._choices_actions if c.help}
    commands = _subparsers(parser)
    assert set(commands) == helped
    missing = [
        f"{name} {a.option_strings or a.dest}"
        for name, sub in commands.items()
        for a in sub._actions
        if not isinstance(a, argparse._HelpAction) and not a.help
    ]
    assert missing == []


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_shows_progress_and_ends_with_what_it_wrote(tiny_run):
    run = tiny_run["run"]
    code, out, err = tiny_run["train"]
    assert code == 0, err
    last = _metrics(run)[-1]
    assert last["exact_excess_loss"] is not None
    assert _lines(out)[-1] == (
        f"wrote {run}: {last['tokens']:,} tokens, exact excess loss "
        f"{last['exact_excess_loss']:.5f} nats"
    )
    assert f"tokens {last['tokens']:,}" in err  # the plain progress line of the last step


def test_probe_shows_progress_and_ends_with_the_final_layer_score(tiny_run):
    run = tiny_run["run"]
    code, out, err = tiny_run["probe"]
    assert code == 0, err
    probes = json.loads((run / "probes.json").read_text())
    n = len(probes["checkpoints"])
    assert n == len(list((run / "checkpoints").glob("tokens_*.pt")))
    assert f"probing checkpoints: 0/{n} ckpt" in err
    assert f"probing checkpoints: {n}/{n} ckpt in" in err
    layers = probes["checkpoints"][-1]["layers"]
    head = probes["headline"]
    assert _lines(out)[-1].startswith(
        f"wrote {run / 'probes.json'}: final-layer (block 1 hidden) held-out R² "
        f"{layers['blocks.1.hook_hidden']['r2_heldout']:.4f}, all layers "
        f"{layers['concat']['r2_heldout']:.4f} at {probes['checkpoints'][-1]['tokens']:,} tokens"
        f"; next-token probe {head['next_token_r2']:.4f}"
    )
    assert f"; beyond the next token {head['r2_beyond_prediction']:.2f}" in _lines(out)[-1]
    assert _lines(out)[-1].count("WARNING") == len(head["warnings"])


def test_phases_shows_progress_and_ends_with_the_flagged_checkpoint(tiny_run):
    run = tiny_run["run"]
    code, out, err = tiny_run["phases"]
    assert code == 0, err
    phases = json.loads((run / "phases.json").read_text())
    n = len(phases["checkpoints"])
    assert f"phase diagnostics: {n}/{n} ckpt in" in err
    flagged = phases["first_spectral_radius_above_1"]
    when = "never" if flagged is None else f"at {flagged:,} tokens"
    line = _lines(out)[-1]
    assert line.startswith(
        f"wrote {run / 'phases.json'}: {n} checkpoints; first mean spectral radius > 1 {when}"
    )
    units = phases["checkpoints"][-1]["units"]
    assert line.endswith(", ".join(f"{k} {v['phase']}" for k, v in units.items()))


def test_report_ends_with_what_it_wrote(tiny_run):
    run = tiny_run["run"]
    code, out, err = tiny_run["report"]
    assert code == 0, err
    assert (run / "report.html").is_file() and (run / "fractal" / "fractal.json").is_file()
    line = _lines(out)[-1]
    excess = _metrics(run)[-1]["exact_excess_loss"]
    assert line.startswith(f"wrote {run / 'report.html'}: final-layer (block 1 hidden)")
    assert line.endswith(f"exact excess loss {excess:.5f} nats (open it in a browser)")


def test_intervene_ends_with_the_final_layer_gaps_and_refuses_bad_input(cli, tiny_run, tmp_path):
    run = shutil.copytree(tiny_run["run"], tmp_path / "run")
    code, out, err = cli(["intervene", str(run), "--prefixes", "30"])
    assert code == 0, err
    assert out.strip().endswith("30 held-out prefixes") and "the probe move" in out
    assert (run / "interventions.json").is_file() and (run / "figures/interventions.png").is_file()
    code, _, err = cli(["intervene", str(run), "--checkpoint", "7"])
    assert code == 2 and "no checkpoint after 7 tokens" in err and len(_lines(err)) == 1


def test_fractal_shows_its_stages_and_ends_with_the_distinct_beliefs(cli, tmp_path):
    out_dir = tmp_path / "f"
    code, out, err = cli(["fractal", "rrxor", "--depth", "6", "--points", "2000",
                              "--out", str(out_dir)])
    assert code == 0, err
    summary = json.loads((out_dir / "fractal.json").read_text())
    name = summary["process"]
    assert f"fractal {name}: 0/4 stage" in err and f"fractal {name}: 4/4 stage in" in err
    assert _lines(out) == [
        f"wrote {out_dir / 'fractal.png'} and fractal.json: {summary['n_distinct_beliefs']:,} "
        f"distinct beliefs to depth 6, entropy rate {summary['entropy_rate']:.4f} nats/symbol"
    ]


def test_hooks_lists_the_models_hooks_with_their_labels(cli, tiny_run):
    from models.architectures import build_model, hook_label, residual_hooks, unit_hooks
    from models.checkpoints import model_config_of_run, read_run_config

    run = tiny_run["run"]
    model = build_model(model_config_of_run(read_run_config(run)))
    code, out, _ = cli(["hooks", str(run)])
    assert code == 0
    lines = [line.split() for line in out.splitlines()]
    for hook in residual_hooks(model):
        assert [hook, *hook_label(hook).split()] in lines
    for layer, (hook, act) in unit_hooks(model).items():
        assert [hook, layer, f"({act})"] in lines


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_hooks_lists_every_state_and_gate_hook_of_a_gated_run(cli, tmp_path, cell):
    from hmm import load_process
    from models.architectures import make_model_config, unit_hooks
    from models.checkpoints import load_checkpoint
    from models.recipes import TrainConfig
    from models.run_files import list_checkpoints
    from models.training import train

    config = make_model_config(cell, hidden=4, n_layers=2, n_ctx=4)
    run = train(load_process("mess3"), config, TrainConfig(tokens=64, batch_size=8,
                n_checkpoints=1), tmp_path / "run", progress=False)  # fmt: skip
    code, out, _ = cli(["hooks", str(run)])
    assert code == 0
    states = ["hook_hidden", "hook_cell"] if cell == "lstm" else ["hook_hidden"]
    for hook in [f"blocks.{b}.{s}" for b in range(2) for s in states]:
        assert hook in out
    units = unit_hooks(load_checkpoint(list_checkpoints(run)[-1][1]))
    assert len(units) == 2 * (5 if cell == "lstm" else 3)
    for layer, (hook, act) in units.items():
        assert hook in out and f"{layer} ({act})" in out


def test_hooks_of_a_folder_that_is_not_a_run_exits_2(cli, tmp_path):
    code, _, err = cli(["hooks", str(tmp_path)])
    assert code == 2 and len(_lines(err)) == 1 and "no config.json" in err


def _bare_run(tmp_path):
    """A folder that passes the CLI's run-folder check (it holds config.json)."""
    (tmp_path / "config.json").write_text("{}")
    return tmp_path


def test_commands_run_on_the_thread_budget_and_restore_it(cli, monkeypatch, tmp_path):
    import torch
    from threadpoolctl import threadpool_info

    import probes.belief_study

    seen = {}

    def fake_probe_run(run, **kwargs):
        seen["torch"] = torch.get_num_threads()
        seen["blas"] = {pool["num_threads"] for pool in threadpool_info()}

    monkeypatch.setattr(probes.belief_study, "probe_run", fake_probe_run)
    monkeypatch.setenv("BELIEFGEO_THREADS", "1")
    before = torch.get_num_threads(), {p["num_threads"] for p in threadpool_info()}
    cli(["probe", str(_bare_run(tmp_path))])
    assert seen == {"torch": 1, "blas": {1}}
    assert (torch.get_num_threads(), {p["num_threads"] for p in threadpool_info()}) == before


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_thread_count_exits_2(cli, monkeypatch, tmp_path, value):
    monkeypatch.setenv("BELIEFGEO_THREADS", value)
    code, _, err = cli(["probe", str(_bare_run(tmp_path))])
    assert code == 2 and "BELIEFGEO_THREADS" in err and len(_lines(err)) == 1


@pytest.mark.slow  # about 25 CPU seconds: a whole study, shrunk to a 1-layer model and 4,000 tokens
def test_reproduce_shows_each_stage_and_ends_with_the_report_line(cli, tmp_path):
    out_dir = tmp_path / "study"
    code, out, err = cli(["reproduce", "mess3", "--tokens", "4000", "--d-model", "16",
                          "--n-layers", "1", "--d-mlp", "32", "--out", str(out_dir)])
    assert code == 0, err
    for stage in ("training", "probing every checkpoint", "phase diagnostics", "report"):
        assert f"[reproduce mess3] {stage} ..." in err
    assert "probing checkpoints: 5/5 ckpt in" in err and "phase diagnostics: 5/5 ckpt in" in err
    excess = _metrics(out_dir)[-1]["exact_excess_loss"]
    line = _lines(out)[-1]
    assert line.startswith(f"wrote {out_dir / 'report.html'}: final-layer (block 0) held-out R² ")
    assert line.endswith(f"exact excess loss {excess:.5f} nats (open it in a browser)")


# ---- failing fast and exactly --------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv", [["train", "nosuch", "--out", "x"], ["train", "mess3", "--token", "5"]]
)
def test_bad_input_exits_2_within_a_second_in_a_fresh_process(tmp_path, argv):
    """Checked before torch is imported: the console script answers a typo at once. Under 1 s on
    an idle machine; on a busy one (several engineers share 2 cores) no slower than twice a bare
    `import hmm`, which is what these checks need."""

    def seconds(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        return time.perf_counter() - started, proc

    bare, _ = seconds(["-c", "import hmm"])
    took, proc = seconds(["-m", "experiments.cli", *argv])
    assert proc.returncode == 2 and len(_lines(proc.stderr)) == 1, proc.stderr
    assert took < max(1.0, 2 * bare), f"{argv}: {took:.2f} s (bare import hmm: {bare:.2f} s)"


def test_checks_run_before_torch_is_imported(tmp_path):
    """Every command's light checks import no torch (what makes the errors above fast)."""
    script = (
        "import sys\n"
        "from experiments.cli import main\n"
        f"runs = [['train', 'nosuch', '--out', 'x'], ['probe', {str(tmp_path)!r}],\n"
        "        ['train', 'mess3', '--out', 'x', '--hidden', '3'], ['hooks', 'nowhere'],\n"
        "        ['compare-phases', 'mess3', '--runs', 'rnn:gelu', '--out', 'x'],\n"
        "        ['probe-hmm', 'missing.json'], ['sweep', 'missing.json', '--out', 'x'],\n"
        "        ['reproduce', 'mess3', '--act-fn', 'tanh'], ['fractal', 'nosuch', '--out', 'x'],\n"
        "        ['intervene', 'nowhere']]\n"
        "codes = [main(argv) for argv in runs]\n"
        "assert codes == [2] * len(runs), codes\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "mess3", "--out", "x", "--token", "5"], "did you mean --tokens?"),
        (["train", "mess3", "--out", "x", "--act", "relu"], "did you mean --act-fn?"),
        (["train", "mess3", "--out", "x", "--lr", "0.1"], 'put "lr" in a recipe .json'),
        (["train", "mess3", "--out", "x", "--batch-size=8"], "--config FILE"),
        (["train", "mess3", "--out", "x", "--d-head", "4"], 'under "model" in a recipe'),
        (["probe", "run", "--tokens", "5"], "belongs to train, reproduce, probe-hmm"),
        (["train", "mess3", "--out", "x", "--hidden", "8"], "--hidden is for --arch rnn or lstm "
         "or gru, not transformer"),
        (["train", "mess3", "--out", "x", "--arch", "gru", "--act-fn", "tanh"],
         "--act-fn tanh does not apply to --arch gru: its gates are sigmoid"),
        (["probe-hmm", str(EXAMPLE), "--hidden", "8"], "--hidden is for --arch rnn"),
        (["train", "mess3", "--out", "x", "--arch", "rnn", "--d-mlp", "8"],
         "--d-mlp is for --arch transformer, not rnn"),
        (["train", "mess3", "--out", "x", "--arch", "rnn", "--act-fn", "gelu"],
         "--act-fn gelu is not a unit of --arch rnn (tanh, sigmoid, relu); gelu needs --arch "
         "transformer"),
        (["reproduce", "mess3", "--act-fn", "tanh"], "tanh needs --arch rnn"),
    ],
)
def test_a_wrong_flag_gets_one_line_saying_where_it_belongs(cli, argv, message):
    code, out, err = cli(argv)
    assert code == 2 and message in err and len(_lines(err)) == 1, err


def test_layers_and_n_layers_are_one_flag_for_every_family():
    parser = _subparsers(build_parser())["train"]
    for family in ("rnn", "transformer"):
        for flag in ("--layers", "--n-layers"):
            args = parser.parse_args(["mess3", "--out", "x", "--arch", family, flag, "3"])
            assert args.n_layers == 3 and not hasattr(args, "layers")


def test_the_recipe_hints_name_every_recipe_setting_that_is_not_a_flag():
    from experiments.cli import RECIPE_KEYS, RECIPE_MODEL_KEYS, TRAINING_OPTIONS
    from models.architectures import ARCHITECTURES
    from models.recipes import TRAIN_FIELDS

    flags = set(TRAINING_OPTIONS) | {"tokens", "seed", "recipe", "extra"}
    assert set(RECIPE_KEYS) == TRAIN_FIELDS - flags
    model_fields = set().union(*(cls.__dataclass_fields__ for cls in ARCHITECTURES.values()))
    assert set(RECIPE_MODEL_KEYS) == model_fields - flags - {"d_vocab"}


def test_every_family_is_an_arch_choice_with_its_size_flags():
    from models.families import FAMILIES

    train = _subparsers(build_parser())["train"]
    arch = next(a for a in train._actions if "--arch" in a.option_strings)
    assert arch.choices == list(FAMILIES)
    flags = {s for a in train._actions for s in a.option_strings}
    for family in FAMILIES.values():
        assert {"--" + f.replace("_", "-") for f in family.sizes} <= flags


def test_a_path_that_is_not_a_run_is_named_for_what_it_is(cli, tmp_path):
    run = tmp_path / "sweep" / "seed=0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    checkpoint = run / "checkpoints" / "tokens_000000000640.pt"
    checkpoint.write_bytes(b"")
    (tmp_path / "sweep" / "report.html").write_text("")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "empty").mkdir()
    for path, message in [
        (tmp_path / "nowhere", "does not exist"),
        (checkpoint, f"is a checkpoint file; give its run folder {run}"),
        (run / "checkpoints", f"is a run's checkpoints folder; give the run folder {run}"),
        (tmp_path / "sweep", f"holds 1 run folders (a sweep or `reproduce --seeds`), not one run; "
         f"give one of them, e.g. {run}; {tmp_path / 'sweep' / 'report.html'} covers them all"),
        (tmp_path / "notes.txt", "is a file, not a run folder"),
        (tmp_path / "empty", "is not a run directory (no config.json)"),
    ]:
        for command in ("probe", "phases", "report", "hooks"):
            code, _, err = cli([command, str(path)])
            assert code == 2 and message in err and len(_lines(err)) == 1, (command, err)


def test_a_bad_hook_name_points_to_the_hooks_command(cli, tiny_run):
    run = tiny_run["run"]
    code, _, err = cli(["probe", str(run), "--last", "--hooks", "blocks.9.hook_hidden"])
    assert code == 2 and f"`beliefgeo hooks {run}` lists" in _lines(err)[-1]


def test_ctrl_c_prints_how_to_continue(cli, monkeypatch, tmp_path):
    import models.training

    def interrupted(*args, **kwargs):
        (tmp_path / "run").mkdir(exist_ok=True)
        (tmp_path / "run" / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(models.training, "train_run", interrupted)
    code, _, err = cli(["train", "mess3", "--tokens", "64", "--out", str(tmp_path / "run")])
    assert code == 130 and err.strip().endswith(
        f"continue with: beliefgeo train mess3 --out {tmp_path / 'run'} --resume"
    )
    import probes.phase_study

    monkeypatch.setattr(probes.phase_study, "phases_run", interrupted)
    code, _, err = cli(["phases", str(tmp_path / "run")])
    assert code == 130 and err.strip().endswith(f"beliefgeo phases {tmp_path / 'run'}")
