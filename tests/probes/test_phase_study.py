"""phases_run end to end on tiny runs from the trainer, its pieces against independent
computations, and its bad-input contract."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from hmm import load_process
from hmm.errors import InvalidInput
from models.recipes import TrainConfig
from models.rnn import RNNConfig
from models.training import train
from models.transformer import TransformerConfig
from probes.phase_study import (
    MILESTONE_KEYS,
    PhaseOptions,
    phase_milestones,
    phase_setup,
    phases_run,
    probe_batch,
    scalar_diagnostics,
)

N_CTX = 5
OPTIONS = PhaseOptions(
    n_sequences=8,
    jacobian_sequences=1,
    recurrent_sequences=4,
    sharpness_max_iter=4,
    lyapunov_length=30,
    null_seeds=3,
    fit_sequences=32,
)
RELU_UNIT_KEYS = {"measure", "active_frac", "active_quantiles", "dead_frac", "phase", "act"}
JACOBIAN_KEYS = {"spectral_radius_mean", "spectral_radius_max", "spectral_norm_mean", "blocks"}


def _train(path, model, optimizer="adamw", **extra):
    recipe = TrainConfig(
        tokens=9 * 16 * N_CTX,
        batch_size=16,
        warmup_steps=2,
        n_checkpoints=4,
        exact_eval="off",
        log_every=2,
        optimizer=optimizer,
        lr=3e-3 if optimizer == "adamw" else 0.05,
        schedule="cosine" if optimizer == "adamw" else "constant",
        **extra,
    )
    train(load_process("mess3"), model, recipe, path, progress=False)
    return path


@pytest.fixture(scope="module")
def transformer_run(tmp_path_factory):
    model = TransformerConfig(n_layers=2, d_model=8, d_head=4, d_mlp=16, n_ctx=N_CTX)
    return _train(tmp_path_factory.mktemp("phases") / "t", model)


@pytest.fixture(scope="module")
def rnn_run(tmp_path_factory):
    model = RNNConfig(hidden=8, act_fn="sigmoid", n_ctx=N_CTX)
    return _train(
        tmp_path_factory.mktemp("phases") / "r", model, optimizer="sgd", train_sequences=20
    )


def test_transformer_run_writes_the_design_schema(transformer_run):
    result = phases_run(transformer_run, OPTIONS)
    stored = json.loads((transformer_run / "phases.json").read_text())
    assert stored["first_spectral_radius_above_1"] is None  # not applied to feed-forward maps
    assert "feed-forward" in stored["seed_rule"]
    entries = stored["checkpoints"]
    assert [e["tokens"] for e in entries] == sorted(e["tokens"] for e in entries)
    assert entries[0]["tokens"] == 0 and len(entries) >= 4
    for entry in entries:
        assert JACOBIAN_KEYS <= set(entry["jacobian"])
        assert "normalised_spectral_norm_mean" in entry["jacobian"]["blocks"][0]
        assert "spectral_norm_mean" in entry["jacobian"]["cross_position"]
        assert set(entry["units"]) == {"blocks.0.mlp", "blocks.1.mlp"}
        assert all(RELU_UNIT_KEYS == set(u) for u in entry["units"].values())
        assert entry["sharpness_detail"]["compared"] == "preconditioned"
        # 9 updates of a ~1,000-parameter model: Adam's v_hat never settles (docs/phases.md)
        assert entry["sharpness_detail"]["settled_step"] > 9
        assert not entry["sharpness_detail"]["settled"]
        assert entry["sharpness_detail"]["preconditioned"] is None
    assert stored["sharpness_settled"]["first_shown_tokens"] is None
    # sign flips come from the training loop's metrics.jsonl, checkpoint by checkpoint
    logged = {}
    for line in (transformer_run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("sign_flip_frac") is not None:
            logged[record["tokens"]] = record["sign_flip_frac"]
    assert logged and all(
        e["sign_flip_frac"] == logged[e["tokens"]] for e in entries if e["tokens"] in logged
    )
    assert stored["sign_flip_source"].startswith("training loop")
    # the optimiser's own noise level, interval by interval: AdamW's momentum transient is above
    # its stationary arccos(0.9)/pi = 0.1436 and below a random walk's 0.5
    flips = stored["sign_flips"]
    assert flips["optimizer"] == "adamw" and flips["reference"] == pytest.approx(0.14357, 1e-4)
    assert 0.1436 < flips["null"] < 0.5 and flips["pairs"] == 8
    assert entries[0]["sign_flip_null"] is None and entries[-1]["sign_flip_null"] is not None
    assert entries[0]["weight_norms"]["all"]["rel_change_from_init"] == 0.0
    # exact sharpness: 3**5 inputs are enumerable
    assert stored["sharpness_loss"]["kind"] == "exact"
    assert stored["sharpness_loss"]["n_sequences"] == 3**N_CTX
    # nulls: the tokens-0 checkpoint and 3 re-initialised networks of the same shape
    null = stored["null"]
    assert len(null["seeds"]) == 3
    key = "jacobian.blocks.0.normalised_spectral_norm_mean"
    assert null["init"][key] == entries[0]["jacobian"]["blocks"][0]["normalised_spectral_norm_mean"]
    band = null["reinit"][key]
    assert band["min"] <= band["mean"] <= band["max"]
    assert stored["belief_update"]["lyapunov"] < 0
    assert result["cpu_seconds"] > 0
    assert (transformer_run / "figures" / "phases.png").stat().st_size > 10_000


def test_rnn_run_reports_lyapunov_secant_and_training_set_sharpness(rnn_run):
    result = phases_run(rnn_run, OPTIONS)
    entry = result["checkpoints"][-1]
    jac = entry["jacobian"]
    assert jac["kind"] == "recurrent"
    assert {"lyapunov", "lyapunov_window", "secant", "spectral_radius_quantiles"} <= set(jac)
    assert not {"projected_radius_mean", "embedded_radius_mean"} & set(jac)  # retired
    secant = jac["secant"]
    assert secant["horizon"] == N_CTX - secant["split"] and secant["pairs"] > 100
    assert isinstance(secant["state_vs_belief"]["passes"], bool)
    assert result["belief_update"]["window"] == N_CTX
    assert result["belief_update"]["lyapunov_window"] < 0
    # plain SGD: the noise null is a random walk's
    assert result["sign_flips"]["null"] == pytest.approx(0.5, abs=0.02)
    assert result["sign_flips"]["reference"] == 0.5
    assert {"w_rec_spectral_radius", "w_rec_circular_law_radius"} <= set(jac["blocks"][0])
    assert entry["units"]["blocks.0"]["act"] == "sigmoid"
    detail = entry["sharpness_detail"]
    assert detail["compared"] == "raw" and detail["threshold"] == pytest.approx(2 / 0.05)
    assert detail["ratio"] == pytest.approx(entry["sharpness"] / detail["threshold"])
    assert result["sharpness_loss"]["kind"] == "training_set"
    assert result["sharpness_loss"]["n_sequences"] == 20
    first = next(
        (e["tokens"] for e in result["checkpoints"] if e["jacobian"]["spectral_radius_mean"] > 1),
        None,
    )
    assert result["first_spectral_radius_above_1"] == first
    assert "Lyapunov" in result["seed_rule"]


def test_training_set_loss_is_the_runs_fixed_set(rnn_run):
    """The sharpness loss of a finite-data run is the mean over the very windows it trained on."""
    from models.data import TrainingData

    setup = phase_setup(rnn_run, OPTIONS)
    data = TrainingData(load_process("mess3"), N_CTX, 16, 0, 20)
    assert torch.equal(setup.loss.tokens, data.fixed)


def test_exact_loss_equals_brute_force_over_every_window(transformer_run):
    """Exact population loss == sum over every (n_ctx+1)-token window of P(window) x its mean
    next-token loss (independent of the true-next-distribution shortcut)."""
    from models import load_checkpoint
    from models.loss import next_token_losses
    from models.run_files import list_checkpoints

    setup = phase_setup(transformer_run, OPTIONS)
    model = load_checkpoint(list_checkpoints(transformer_run)[-1][1])
    windows, probs = load_process("mess3").enumerate(N_CTX + 1)
    windows = torch.from_numpy(windows)
    with torch.no_grad():
        per_window = next_token_losses(model(windows[:, :-1]), windows).double().mean(1)
        expected = float(torch.from_numpy(probs) @ per_window)
        assert float(setup.loss(model)) == pytest.approx(expected, rel=1e-5)


def test_old_runs_without_sign_flips_say_not_recorded(rnn_run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(rnn_run, old)
    lines = []
    for line in (old / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        record.pop("sign_flip_frac", None)
        record.pop("sign_flip_steps", None)
        lines.append(json.dumps(record))
    (old / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    options = PhaseOptions(
        n_sequences=4,
        jacobian_sequences=1,
        recurrent_sequences=1,
        sharpness_max_iter=2,
        lyapunov_length=10,
        null_seeds=0,
        figure=False,
    )
    result = phases_run(old, options)
    assert all(e["sign_flip_frac"] is None for e in result["checkpoints"])
    assert result["sign_flip_source"].startswith("not recorded")


def test_scalar_diagnostics_flattens_by_dotted_path():
    entry = {"jacobian": {"a": 1.0, "blocks": [{"b": 2}], "kind": "x"}, "units": {"u": {"g": 3}}}
    assert scalar_diagnostics(entry) == {
        "jacobian.a": 1.0,
        "jacobian.blocks.0.b": 2.0,
        "units.u.g": 3.0,
    }


def test_probe_batch_is_fixed(rnn_run):
    assert probe_batch(rnn_run, OPTIONS).equal(probe_batch(rnn_run, OPTIONS))
    assert np.array_equal(
        phase_setup(rnn_run, OPTIONS).lyapunov_tokens, phase_setup(rnn_run, OPTIONS).lyapunov_tokens
    )


def test_no_checkpoints_or_corrupt_checkpoint_is_invalid_input(rnn_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(rnn_run / "config.json", empty / "config.json")
    with pytest.raises(InvalidInput, match="no checkpoints"):
        phases_run(empty, OPTIONS)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(rnn_run, corrupt)
    newest = sorted((corrupt / "checkpoints").iterdir())[-1]
    newest.write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidInput, match="not a readable checkpoint"):
        phases_run(corrupt, OPTIONS)
    with pytest.raises(InvalidInput, match="does not exist"):
        phases_run(tmp_path / "missing", OPTIONS)


def _milestone_run(phases_by_layer, levels, kind="recurrent", measure="gain"):
    key = "gain_mean" if measure == "gain" else "active_frac"
    entries = []
    for t, (labels, level) in enumerate(zip(phases_by_layer, levels, strict=True)):
        units = {f"blocks.{i}": {"phase": p, "measure": measure, key: level}
                 for i, p in enumerate(labels)}  # fmt: skip
        jacobian = {"kind": kind, "spectral_radius_mean": 0.5 + t, "lyapunov": -1.0 + 0.1 * t,
                    "spectral_radius_quantiles": {"q50": 0.4 + t}, "lyapunov_window": -0.8,
                    "secant": {"rate_state": -0.9, "rate_readout": -1.0, "rate_belief": -1.4,
                               "state_vs_belief": {"passes": False}}}  # fmt: skip
        entries.append({"tokens": 10 * t, "units": units, "jacobian": jacobian})
    null = {"reinit": {f"units.blocks.0.{key}": {"mean": 0.9}, "jacobian.lyapunov": {"mean": -2}}}
    return {"checkpoints": entries, "null": null}


def test_phase_milestones_read_the_unit_labels_and_the_recurrence():
    labels = [["linear"], ["linear"], ["hybrid"], ["hybrid"], ["saturated"]]
    found = phase_milestones(_milestone_run(labels, [0.95, 0.9, 0.5, 0.3, 0.1]))
    assert (found["linear_until"], found["hybrid_from"], found["saturated_from"]) == (10, 20, 40)
    assert found["sparse_from"] is None and found["active_start"] is None
    assert (found["gain_start"], found["gain_end"], found["gain_null"]) == (0.95, 0.1, 0.9)
    radius = (found["radius_start"], found["radius_end"], found["radius_median_end"])
    assert radius == (0.5, 4.5, 4.4)
    assert found["lyapunov_end"] == pytest.approx(-0.6) and found["lyapunov_null"] == -2
    assert found["secant_passes_end"] == 0.0 and found["secant_rate_belief"] == -1.4
    assert set(found) == set(MILESTONE_KEYS)
    # every layer must be saturated; a network hybrid from its first checkpoint was never linear
    two = [["hybrid", "linear"], ["hybrid", "saturated"], ["saturated", "hybrid"]]
    found = phase_milestones(_milestone_run(two, [0.5, 0.4, 0.3]))
    assert found["linear_until"] is None and found["hybrid_from"] == 0
    assert found["saturated_from"] is None


def test_phase_milestones_of_relu_layers_and_transformers():
    labels = [["mixed"], ["mixed"], ["sparse"]]
    found = phase_milestones(
        _milestone_run(labels, [0.5, 0.4, 0.15], kind="residual", measure="active fraction")
    )
    assert found["sparse_from"] == 20 and found["linear_until"] is None
    assert (found["active_start"], found["active_end"], found["active_null"]) == (0.5, 0.15, 0.9)
    assert found["radius_end"] is None and found["lyapunov_end"] is None  # nothing iterated
