"""The run report: its numbers and sentences from a constructed run folder with known files."""

import html
import json
import re

import pytest

from experiments.report import run_numbers, write_report
from hmm import load_process
from probes.belief_evidence import headline

HOOKS = ["blocks.0.hook_hidden", "blocks.1.hook_hidden"]


def _config() -> dict:
    return {
        "format": "beliefgeo-run/2",
        "process": load_process("golden_mean").to_spec(),
        "arch": "rnn",
        "model": {"d_vocab": 2, "hidden": 8, "n_layers": 2, "act_fn": "tanh", "seed": 3,
                  "n_ctx": 6, "init_scale": 1.0},
        "train": {"recipe": "paper", "optimizer": "sgd", "lr": 0.01, "betas": [0.9, 0.999],
                  "momentum": 0.0, "weight_decay": 0.0, "schedule": "constant",
                  "warmup_steps": 0, "batch_size": 64, "tokens": 3840, "seed": 3,
                  "grad_clip": None, "n_checkpoints": 40, "log_every": 10,
                  "loss_by_position_every": 100, "exact_eval": "every",
                  "train_sequences": None, "device": "auto", "extra": {}},
        "data": {"n_ctx": 6, "trained_positions": 6, "tokens_per_step": 384,
                 "total_steps": 10, "total_tokens": 3840},
        "optimal_loss": 0.5,
    }


def _metrics() -> list[dict]:
    return [
        {"step": 0, "tokens": 0, "loss": 0.8, "optimal_loss": 0.5, "excess_loss": 0.3,
         "exact_loss": 0.79, "exact_excess_loss": 0.29},
        {"step": 5, "tokens": 1920, "loss": 0.6, "optimal_loss": 0.5, "excess_loss": 0.1},
        {"step": 10, "tokens": 3840, "loss": 0.52, "optimal_loss": 0.5, "excess_loss": 0.02,
         "exact_loss": 0.5123, "exact_excess_loss": 0.0123},
    ]


def _layer(r2: float) -> dict:
    return {"r2_heldout": r2, "r2_heldout_weighted": r2 - 0.01, "r2_insample": r2 + 0.001,
            "r2_pooled": r2, "mse_heldout": 0.001, "r2_shuffle": -0.0021,
            "r2_by_position": [0.5, 0.75, r2], "r2_fine": {"1": 0.6, "2": 0.4},
            "r2_heldout_unseen": r2 - 0.01, "r2_beyond_prediction": 0.5}


def _probes() -> dict:
    probes = {
        "inputs": {"mode": "enumerated", "sequences": 21, "enumerated_sequences": 21,
                   "length": 6, "rows": 40, "fit_sequences": 10, "heldout_sequences": 11},
        "split": {"kind": "subtree", "shared_prefix_weight": 0.0},
        "hooks": HOOKS,
        "optimal_logit_r2": 0.8765,
        "baselines": {
            "random_init": {HOOKS[1]: {"r2_mean": 0.4321, "r2_sd": 0.0123, "n_seeds": 3}},
            "kgram": {"1": 0.7111, "2": 0.8222}, "kgram_features": {"1": 2, "2": 4},
            "kgram_weighted": {"1": 0.7011, "2": 0.8122}, "kgram_oracle": {"1": 0.75, "2": 0.88},
        },
        "checkpoints": [
            {"tokens": 0, "layers": {HOOKS[0]: _layer(0.1), HOOKS[1]: _layer(0.2),
                                     "concat": _layer(0.3)}},
            {"tokens": 3840, "layers": {HOOKS[0]: _layer(0.8111), HOOKS[1]: _layer(0.9234),
                                        "concat": _layer(0.9456)}},
        ],
        "hook_widths": {HOOKS[0]: 8, HOOKS[1]: 8, "concat": 16},
        "optimal_probs_r2": 0.5432,
    }
    probes["checkpoints"][-1]["next_token"] = {"r2_heldout": 0.3456}
    probes["baselines"]["random_init"][HOOKS[1]]["r2_beyond_prediction"] = 0.1234
    probes["headline"] = headline(probes)
    return probes


def _phases() -> dict:
    return {
        "checkpoints": [
            {"tokens": 0, "jacobian": {"spectral_radius_mean": 0.5}, "units": {}},
            {"tokens": 3840, "jacobian": {"spectral_radius_mean": 1.2345,
                                          "spectral_norm_mean": 2.5},
             "units": {"blocks.0": {"phase": "hybrid", "linear_frac": 0.4, "saturated_frac": 0.2,
                                    "dead_frac": 0.0, "gain_mean": 0.61}},
             "sign_flip_frac": 0.31, "sign_flip_null": 0.1436},
        ],
        "first_spectral_radius_above_1": 1920,
        "belief_update": {"spectral_radius_mean": 0.7777, "lyapunov": -1.2345},
        "null": {"reinit": {"jacobian.spectral_radius_mean": {"mean": 0.9, "sd": 0.05}},
                 "init": {"jacobian.spectral_radius_mean": 0.5}},
    }


@pytest.fixture
def run(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for tokens in (0, 3840):  # names only: the report lists checkpoints, it never loads them
        (run / "checkpoints" / f"tokens_{tokens:012d}.pt").write_bytes(b"")
    (run / "config.json").write_text(json.dumps(_config()))
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in _metrics()))
    return run


def _text(path) -> str:
    """The page's visible text (tags dropped, entities decoded), whitespace collapsed."""
    body = path.read_text().split("</style>", 1)[1]
    body = re.sub(r"</?(code|b|em)>", "", body)  # inline tags: no word break
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def test_numbers_of_a_run_with_every_analysis(run):
    (run / "probes.json").write_text(json.dumps(_probes()))
    (run / "phases.json").write_text(json.dumps(_phases()))
    numbers = run_numbers(run)
    assert numbers["excess_loss"] == 0.0123  # the last exact evaluation, not a batch mean
    assert numbers["final_hook"] == HOOKS[1] and numbers["r2_final_layer"] == 0.9234
    assert numbers["r2_concat"] == 0.9456 and numbers["r2_shuffle"] == -0.0021
    assert numbers["r2_by_tokens"] == [(0, 0.2), (3840, 0.9234)]
    assert numbers["first_radius_above_1"] == 1920 and numbers["final_radius"] == 1.2345
    assert numbers["final_phase"] == {"blocks.0": "hybrid"}
    assert numbers["r2_verdict"] == (
        "the hidden state carries 0.50 of the belief beyond the next token (block 1 hidden, held "
        "out, on what the model's next-token distribution leaves unexplained; untrained 0.12, all "
        "layers 0.50); held-out R² block 1 hidden 0.9234 against 0.3456 from the model's "
        "next-token distribution and 0.5432 from the exact optimal one; at 3,840 tokens (subtree "
        "split); no table of the last k ≤ 2 tokens beats it"
    )


def test_report_shows_scores_beside_their_baselines(run):
    (run / "probes.json").write_text(json.dumps(_probes()))
    (run / "phases.json").write_text(json.dumps(_phases()))
    text = _text(write_report(run))
    # probe table row of the final layer: held-out, weighted, untrained ± sd (n), shuffle, in-sample
    assert "block 1 hidden 0.9234 0.9134 0.4321 ± 0.0123 (n=3) -0.0021 0.9244 —" in text
    assert "all layers side by side 0.9456 0.9356 — -0.0021 0.9466 —" in text
    assert "lookup of the last 2 tokens 4 0.8222 0.8122 0.8800" in text
    assert "exact optimal next-token logits — 0.8765 — —" in text
    # beyond the next token beside the untrained network; every table with its error ratio
    assert "block 1 hidden 0.9234 0.9134 0.500 0.123" in text
    assert "the model's next-token distribution 0.3456 — — —" in text
    assert "2 4 0.8800 1.57 0.8222 2.32" in text
    assert "k = 1 k = 2" in text and "block 0 hidden 0.600 0.400" in text
    assert "t = 0 t = 1 t = 2" in text and "block 1 hidden 0.500 0.750 0.923" in text
    # phases beside their nulls
    assert "spectral radius (mean over batch) 1.2345 0.5000 0.9000 ± 0.0500" in text
    assert "First checkpoint whose mean spectral radius exceeds 1: 1,920 tokens" in text
    assert "blocks.0 hybrid gain 0.610 0.400 0.200 0.000" in text
    assert "update sign-flip fraction (the optimiser on pure noise: 0.144) 0.3100" in text
    assert "mean one-step spectral radius 0.7777, largest Lyapunov exponent -1.2345" in text
    # loss: the exact numbers of the last exact evaluation
    assert "optimal 0.50000 nats/token, achieved 0.51230" in text and "excess 0.01230" in text
    for stale in ("issue 4", "logit ceiling", "--resume", '{"'):
        assert stale not in text


def test_a_trained_only_run_names_the_missing_analyses_and_fills_the_rest(run):
    page = write_report(run)
    text = _text(page)
    assert f"Belief probes were not run: beliefgeo probe {run}, then beliefgeo report {run}" in text
    assert f"Phase diagnostics were not run: beliefgeo phases {run}" in text
    # the ground truth is computed when missing: golden mean has 3 distinct beliefs ...
    fractal = json.loads((run / "fractal" / "fractal.json").read_text())
    assert fractal["n_distinct_beliefs"] == len(load_process("golden_mean").msp(6).unique().probs)
    assert f"distinct beliefs {fractal['n_distinct_beliefs']}" in text
    assert "data:image/png;base64," in page.read_text()
    # settings are a table row each, not a pasted dictionary
    assert "training optimizer sgd" in text and "model hidden 8" in text
    assert "data total_tokens 3840" in text


def test_reproduction_files_rebuild_the_run_config(run):
    from models.recipes import resolve_run

    write_report(run)
    text = _text(run / "report.html")
    folder = run / "reproduce"
    process_file, recipe_file = folder / "process.json", folder / "recipe.json"
    assert f"beliefgeo train {process_file} --config {recipe_file} --out {run}-again" in text
    config = _config()
    process = load_process(str(process_file))
    assert process.to_spec() == config["process"]
    model, train = resolve_run(process, str(recipe_file))
    assert model.to_dict() == config["model"]
    expected = {k: v for k, v in config["train"].items() if k != "recipe"}
    assert {k: v for k, v in train.to_dict().items() if k != "recipe"} == expected


def test_a_transformer_radius_is_never_read_against_1(run):
    phases = _phases()
    for entry in phases["checkpoints"]:
        entry["jacobian"]["kind"] = "residual"
        entry["units"] = {"blocks.0.mlp": {"phase": "mixed", "measure": "active fraction",
                                           "active_frac": 0.45, "dead_frac": 0.1}}
    phases["first_spectral_radius_above_1"] = None
    (run / "phases.json").write_text(json.dumps(phases))
    numbers = run_numbers(run)
    assert numbers["final_radius"] is None
    assert "radius" not in numbers["phase_line"].replace("no spectral-radius rule", "")
    text = _text(write_report(run))
    assert "spectral radius (mean" not in text and "final radius" not in text
    assert "blocks.0.mlp mixed active fraction 0.450 — — 0.100" in text


def test_files_of_an_older_version_still_give_a_report(run):
    # probes.json / phases.json as written before baselines, fine structure and nulls existed
    layers = {h: {"r2_heldout": 0.5, "r2_heldout_weighted": 0.6, "mse_heldout": 0.01,
                  "r2_shuffle": 0.001} for h in HOOKS}
    probes = {"inputs": {"mode": "enumerated"}, "logit_ceiling": {"optimal_logits_r2_heldout": 0.9},
              "checkpoints": [{"tokens": 3840, "layers": layers}]}
    phases = {"checkpoints": [{"tokens": 3840, "jacobian": {"spectral_radius_mean": 0.7},
                               "units": {"blocks.0": {"phase": "linear"}}}],
              "first_spectral_radius_above_1": None}
    (run / "probes.json").write_text(json.dumps(probes))
    (run / "phases.json").write_text(json.dumps(phases))
    text = _text(write_report(run))
    assert "block 1 hidden 0.5000 0.6000 — 0.0010 — —" in text
    assert "spectral radius (mean over batch) 0.7000 — —" in text
    assert "First checkpoint whose mean spectral radius exceeds 1: none" in text


def test_warnings_reach_the_page_and_the_closing_line(run):
    from experiments.closing import probe_part

    probes = _probes()
    probes["headline"]["warnings"] = ["few fit rows per probe feature: 255 distinct fit-half "
                                      "prefixes"]
    (run / "probes.json").write_text(json.dumps(probes))
    text = _text(write_report(run))
    assert "Warning: few fit rows per probe feature: 255 distinct fit-half prefixes" in text
    assert probe_part(run).endswith(
        "next-token probe 0.3456; beyond the next token 0.50 (untrained 0.12); WARNING: few fit "
        "rows per probe feature: 255 distinct fit-half prefixes")
