"""The run report: its numbers and sentences from a constructed run folder with known files."""

import html
import json
import re

import pytest

from experiments.report import write_report
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


def test_one_summary_of_a_run_with_every_analysis(run):
    from experiments.summary import summarize_run
    from experiments.verdict import verdict

    (run / "probes.json").write_text(json.dumps(_probes()))
    (run / "phases.json").write_text(json.dumps(_phases()))
    s = summarize_run(run)
    assert s.loss.exact_excess == 0.0123  # the last exact evaluation, not a batch mean
    assert s.loss.batch_window == 3 and s.loss.batch_excess == pytest.approx((0.3 + 0.1 + 0.02) / 3)
    assert s.loss.curve_kind == "exact" and s.loss.curve == [(0, 0.29), (3840, 0.0123)]
    p = s.probes
    assert p.hook == HOOKS[1] and p.r2 == 0.9234 and p.r2_concat == 0.9456
    assert p.r2_shuffle_max == -0.0021 and p.curve == [(0, 0.2), (3840, 0.9234)]
    assert p.untrained_r2 == 0.4321 and p.tokens_to_reached == 3840
    assert p.next_token_r2 == 0.3456 and p.r2_beyond_prediction == 0.5
    assert p.beyond_untrained == 0.1234 and p.case == "beyond_next_token" and p.warnings == []
    assert s.phases.iterated and s.phases.first_radius_above_1 == 1920
    assert s.phases.radius() == 1.2345 and s.phases.final.units["blocks.0"].phase == "hybrid"
    headline = s.headline()
    assert headline["final_r2_heldout"] == 0.9234 and headline["tokens_to_r2_0.9"] == 3840
    assert headline["final_next_token_r2"] == 0.3456
    assert headline["final_r2_beyond_prediction"] == 0.5
    assert headline["r2_heldout:blocks.0.hook_hidden"] == 0.8111
    assert verdict(s) == [
        "A 2-layer Elman RNN (hidden 8, tanh) trained on golden_mean(p=0.5) for 3,840 tokens "
        "ends 0.01230 nats/token above the Bayes-optimal loss of 0.50000 (exact, over every "
        "input sequence, at 3,840 tokens).",
        "A linear probe reads the exact belief state from the final layer (block 1 hidden) with "
        "held-out R² 0.9234 at 3,840 tokens; the strongest null, the table of the last 2 tokens "
        "(held-out cell means), scores 0.8800: the probe leaves 1.6× less variance unexplained "
        "(the model's own next-token probe: 0.3456; an untrained network of the same shape: "
        "0.4321); no table of the last k ≤ 2 tokens beats it.",
        "The hidden state carries 0.50 of the belief beyond the next token (block 1 hidden, held "
        "out, on what the model's next-token distribution leaves unexplained; untrained 0.12, all "
        "layers 0.50); the exact optimal next-token probabilities give held-out R² 0.5432.",
        "The final-layer R² did not rise during training (from 0.200), so there is no emergence "
        "window; at the end: recurrent spectral radius 1.23 (first mean above 1: at 1,920 "
        "tokens), unit gain 0.61 (hybrid by the gain rule).",
    ]


def test_the_verdict_names_the_case_and_the_table_that_beats_the_layer(run):
    """Belief affine in the prediction: the geometry is implied by the loss; a table of the last k
    tokens that beats the layer is named by its smallest k."""
    from experiments.summary import summarize_run
    from experiments.verdict import verdict

    probes = _probes()
    probes["optimal_probs_r2"] = 0.9995
    probes["baselines"]["kgram_oracle"] = {"1": 0.93, "2": 0.95}
    probes["headline"] = headline(probes)
    (run / "probes.json").write_text(json.dumps(probes))
    probe, beyond = verdict(summarize_run(run))[1:3]
    assert probe.endswith("the strongest null, the table of the last 2 tokens (held-out cell "
                          "means), scores 0.9500: the probe does not beat it (the model's own "
                          "next-token probe: 0.3456; an untrained network of the same shape: "
                          "0.4321); a table of the last k tokens (held-out cell means) beats it "
                          "from k = 1 (0.9300).")
    assert beyond.startswith("Belief affine in the next-token distribution: geometry implied by "
                             "the loss (the exact optimal next-token probabilities give held-out "
                             "R² 0.9995 ≥ 0.999); beyond the next token block 1 hidden recovers "
                             "0.50 of what")


def test_the_emergence_window_is_where_r2_climbs_from_10_to_90_percent_of_its_rise(run):
    from experiments.summary import summarize_run

    probes = _probes()
    curve = [0.30, 0.31, 0.29, 0.36, 0.33, 0.50, 0.80, 0.88, 0.90]  # rise 0.6: 10 % 0.36
    probes["checkpoints"] = [{"tokens": 1000 * i, "layers": {HOOKS[1]: _layer(r2)}}
                             for i, r2 in enumerate(curve)]  # fmt: skip
    (run / "probes.json").write_text(json.dumps(probes))
    # stays above 0.36 from 5,000 tokens on (0.36 at 3,000 dips again); 90 % = 0.84 at 7,000
    assert summarize_run(run).emergence() == (5000, 7000, 0.50, 0.88)


def test_report_shows_scores_beside_their_baselines(run):
    (run / "probes.json").write_text(json.dumps(_probes()))
    (run / "phases.json").write_text(json.dumps(_phases()))
    text = _text(write_report(run))
    # probe table row of the final layer: held-out, weighted, untrained ± sd (n), shuffle, in-sample
    assert "block 1 hidden 0.9234 0.9134 0.4321 ± 0.0123 (n=3) -0.0021 0.9244 —" in text
    assert "all layers side by side 0.9456 0.9356 — -0.0021 0.9466 —" in text
    # every table of the last k tokens, fitted and oracle, with the final layer's error ratios
    assert "table of the last 2 tokens 4 0.8222 0.8122 0.8800 2.32 1.57" in text
    assert "exact optimal next-token logits — 0.8765 — — — —" in text
    # beyond the next token beside the untrained network
    assert "block 1 hidden 0.9234 0.9134 0.500 0.123" in text
    assert "the model's next-token distribution 0.3456 — — —" in text
    assert "k = 1 k = 2" in text and "block 0 hidden 0.600 0.400" in text
    assert "t = 0 t = 1 t = 2" in text and "block 1 hidden 0.500 0.750 0.923" in text
    # phases beside their nulls
    assert "spectral radius (mean over batch) 1.2345 0.5000 0.9000 ± 0.0500" in text
    assert "exceeds 1 (the seed rule, for an iterated map): at 1,920 tokens" in text
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
    from experiments.summary import summarize_run
    from experiments.verdict import verdict

    phases = _phases()
    for entry in phases["checkpoints"]:
        entry["jacobian"]["kind"] = "residual"
        entry["units"] = {"blocks.0.mlp": {"phase": "mixed", "measure": "active fraction",
                                           "active_frac": 0.45, "dead_frac": 0.1}}
    phases["first_spectral_radius_above_1"] = None
    (run / "phases.json").write_text(json.dumps(phases))
    summary = summarize_run(run)
    assert summary.headline()["final_spectral_radius_mean"] is None
    assert "radius" not in verdict(summary)[2]
    text = _text(write_report(run))
    assert "spectral radius (mean" not in text and "final radius" not in text
    assert "blocks.0.mlp mixed active fraction 0.450 — — 0.100" in text
    assert "unit active fraction 0.45 (mixed by the active fraction rule)" in text


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
    assert "exceeds 1 (the seed rule, for an iterated map): never" in text


def test_warnings_reach_the_page_and_the_closing_line(run):
    from experiments.closing import probe_part
    from experiments.summary import summarize_run

    probes = _probes()
    probes["headline"]["warnings"] = ["few fit rows per probe feature: 255 distinct fit-half "
                                      "prefixes"]
    (run / "probes.json").write_text(json.dumps(probes))
    page = write_report(run)
    text = _text(page)
    assert "Warning: few fit rows per probe feature: 255 distinct fit-half prefixes" in text
    verdict_end = page.read_text().index("</section>")  # right under the verdict
    assert page.read_text().index("Warning: few fit rows") - verdict_end < 40
    assert probe_part(summarize_run(run).probes).endswith(
        "next-token probe 0.3456; beyond the next token 0.50 (untrained 0.12); WARNING: few fit "
        "rows per probe feature: 255 distinct fit-half prefixes")


# ---- the LLC section (llc.json fabricated: values chosen, stages from the real stage rule) -------
LLC_CURVE = [(640, -2.0, ["not_at_minimum"]), (1280, 1.5, ["not_settled"]), (1920, 0.6, []),
             (2560, 1.1, []), (3200, 1.05, []), (3840, 0.6, [])]  # fmt: skip


def _llc() -> dict:
    from probes.llc_study import stage_boundaries

    settings = {"lr": 1e-3, "n_beta": 15.0, "localization": 300.0, "chains": 4, "draws": 200,
                "batch_size": 64, "windows": 2048, "burnin_frac": 0.25, "settle_tol": 0.1,
                "data_seed": 0, "sampler_seed": 100, "source": "calibrated", "device": "cpu"}
    entries = [{"tokens": t, "llc_mean": v, "llc_sd": 0.05, "llc_per_chain": [v] * 4,
                "init_loss": 0.51, "flags": flags, "cpu_s": 1.0, "wall_s": 1.0,
                "trace": {"draws": 200, "drift": 0.2 if flags else 0.01}}
               for t, v, flags in LLC_CURVE]  # fmt: skip
    cells = [{"lr": 1e-3, "localization": 300.0, "n_beta": 15.0, "llc_mean": 0.62,
              "flags": [], "usable": True, "picked": True},
             {"lr": 3e-3, "localization": 300.0, "n_beta": 15.0, "llc_mean": 4.1,
              "flags": ["loss_above_uniform"], "usable": False, "picked": False}]  # fmt: skip
    return {
        "format": "beliefgeo-llc/1", "devinterp": "2.0.1", "settings": settings,
        "calibration": {"rule": "...", "checkpoint_tokens": 3840, "cpu_s": 3.0, "grid": cells,
                        "chosen": {"lr": 1e-3, "localization": 300.0, "n_beta": 15.0}},
        "checkpoints": entries, "stages": stage_boundaries(entries, 4),
        "emergence": {"hook": HOOKS[1], "untrained_r2": 0.4321, "final_r2": 0.9234,
                      "halfway_r2": 0.67775, "tokens": 2200.0, "bracket": [1920, 2560],
                      "nearest_boundary": None},
        "figures": {"timeline": "figures/llc_timeline.png", "calibration": None},
    }  # fmt: skip


def test_the_llc_section_states_settings_flags_stages_and_emergence(run):
    from experiments.summary import summarize_run
    from experiments.verdict import verdict

    (run / "probes.json").write_text(json.dumps(_probes()))
    (run / "llc.json").write_text(json.dumps(_llc()))
    (run / "figures").mkdir()
    (run / "figures" / "llc_timeline.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    summary = summarize_run(run)
    assert [b.kind for b in summary.llc.boundaries] == ["trough", "plateau start", "plateau end"]
    assert summary.headline()["final_llc"] == 0.6
    assert verdict(summary)[-1] == (
        "The local learning coefficient at 6 checkpoints (ε 0.001, γ 300, nβ 15, calibrated) has "
        "3 stage boundaries (a trough at 1,920, a plateau start at 2,560, a plateau end at "
        "3,200); the belief geometry emerges (final-layer R² halfway from the untrained network "
        "to its end) at 2,200 tokens, between the trough at 1,920 and the plateau start at 2,560 "
        "tokens (1.1× after the trough) (2 of 6 estimates flagged).")
    page = write_report(run)
    text = _text(page)
    section = text[text.index("Local learning coefficient: stages"):]
    assert text.index("Loss against") < text.index("Local learning coefficient: stages") < (
        text.index("Ground truth"))  # among the details, before the ground truth
    assert ("Settings calibrated on the checkpoint at 3,840 tokens: 1 of 2 grid cells" in section
            and "The rule picked ε 0.001, γ 300, nβ 15 (γ/nβ = 20" in section
            and "(λ̂ there 0.62)" in section)  # fmt: skip
    assert "Flag not_at_minimum at 1 of 6 checkpoints (640 tokens): λ̂ < 0" in section
    assert "Left out of the stage rule." in section.split("Flag not_settled")[0]
    assert "Flag not_settled at 1 of 6 checkpoints (1,280 tokens)" in section
    assert "Left out" not in section.split("Flag not_settled")[1].split("Stages:")[0]
    assert ("finds 3 boundaries among the 5 estimates that are LLCs: a trough at 1,920 tokens "
            "(λ̂ 0.6)") in section
    assert ("crosses halfway (0.678) between the untrained network (0.432) and its end (0.923) "
            "at 2,200 tokens, between the trough at 1,920") in section
    assert "1,280 1.500 0.050 4 0.5100 0.200 not_settled" in section  # the checkpoint table
    assert "alt='The LLC (± 1 sd across chains" in page.read_text()
    assert "local learning coefficient 6 checkpoints llc.json" in text  # the folder table
    assert f"beliefgeo llc {run}-again --settings-from {run}/llc.json --checkpoints 6" in text


def test_without_llc_json_the_report_has_no_llc_section_and_names_the_command(run):
    from experiments.summary import summarize_run
    from experiments.verdict import verdict

    text = _text(write_report(run))
    assert "Local learning coefficient" not in text and "LLC" not in text
    assert not any("local learning coefficient" in s for s in verdict(summarize_run(run)))
    assert f"local learning coefficient not run (optional) beliefgeo llc {run}" in text


def test_an_llc_json_of_given_settings_without_emergence_or_stages(run):
    """A partial file (settings given, no calibration, no probes.json when it was written, too few
    LLCs for stages) still gives a section that says each of those."""
    llc = _llc()
    llc["calibration"], llc["emergence"] = None, None
    llc["settings"]["source"] = "given"
    for entry in llc["checkpoints"][2:]:
        entry["flags"] = ["loss_above_uniform"]
    llc["stages"] = {"structure": None, "boundaries": [], "steps": []}
    del llc["figures"]
    (run / "llc.json").write_text(json.dumps(llc))
    text = _text(write_report(run))
    assert "Settings given, not calibrated on this run (ε 0.001, γ 300, nβ 15): taken from" in text
    assert "Stages: only 1 of 6 estimates are LLCs; the stage rule needs three" in text
    assert "Emergence: llc.json sets none against the stages — probes.json did not exist" in text
    assert "Flag loss_above_uniform at 4 of 6 checkpoints (1,920, 2,560, 3,200, 3,840 tokens)" in (
        text)


def test_an_r2_above_halfway_from_the_first_checkpoint_is_no_emergence(run):
    """llc.json's crossing at the first probed checkpoint (bracket [t, t]) is not read as the
    geometry emerging there: nothing was measured before it."""
    from experiments.summary import summarize_run
    from experiments.verdict import verdict

    llc = _llc()
    llc["emergence"].update(tokens=1280.0, bracket=[1280, 1280])
    (run / "llc.json").write_text(json.dumps(llc))
    summary = summarize_run(run)
    assert summary.llc.emergence_tokens is None and summary.llc.emergence_place() is None
    assert "R² is above its halfway line from the first probed checkpoint on, so no emergence" in (
        verdict(summary)[-1])
    text = _text(write_report(run))
    assert "from the first probed checkpoint (1,280 tokens) on: no emergence is seen" in text
    assert "emerges" not in text.split("Local learning coefficient: stages")[1].split("Flag")[0]
