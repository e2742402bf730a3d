"""phases_run end to end on tiny runs from the trainer, and its bad-input contract."""

from __future__ import annotations

import json
import shutil

import pytest

from hmm import load_process
from hmm.errors import InvalidInput
from models.recipes import TrainConfig
from models.rnn import RNNConfig
from models.training import train
from models.transformer import TransformerConfig
from probes.phase_study import PhaseOptions, phases_run, probe_batch

N_CTX = 5
OPTIONS = PhaseOptions(n_sequences=8, jacobian_sequences=2, sharpness_max_iter=6)
UNIT_KEYS = {"linear_frac", "saturated_frac", "dead_frac", "phase", "act"}
JACOBIAN_KEYS = {"spectral_radius_mean", "spectral_radius_max", "spectral_norm_mean", "blocks"}


def _train(path, model, optimizer="adamw"):
    recipe = TrainConfig(
        tokens=9 * 16 * N_CTX,
        batch_size=16,
        warmup_steps=2,
        n_checkpoints=4,
        exact_eval=False,
        log_every=2,
        optimizer=optimizer,
        lr=3e-3 if optimizer == "adamw" else 0.05,
        schedule="cosine" if optimizer == "adamw" else "constant",
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
    return _train(tmp_path_factory.mktemp("phases") / "r", model, optimizer="sgd")


def test_transformer_run_writes_the_design_schema(transformer_run):
    (transformer_run / "probes.json").write_text(
        json.dumps(
            {
                "checkpoints": [
                    {"tokens": 0, "layers": {"concat": {"r2_heldout": 0.5}}},
                    {"tokens": 960, "layers": {"concat": {"r2_heldout": 0.7}}},
                ]
            }
        )
    )
    result = phases_run(transformer_run, OPTIONS)
    stored = json.loads((transformer_run / "phases.json").read_text())
    assert stored["first_spectral_radius_above_1"] == result["first_spectral_radius_above_1"]
    entries = stored["checkpoints"]
    assert [e["tokens"] for e in entries] == sorted(e["tokens"] for e in entries)
    assert entries[0]["tokens"] == 0 and len(entries) >= 4
    for entry in entries:
        assert JACOBIAN_KEYS <= set(entry["jacobian"])
        assert len(entry["jacobian"]["blocks"]) == 2
        assert set(entry["units"]) == {"blocks.0.mlp", "blocks.1.mlp"}
        assert all(UNIT_KEYS == set(u) for u in entry["units"].values())
        assert entry["sharpness"] > 0
        assert entry["sharpness_detail"]["compared"] == "preconditioned"
    assert entries[0]["sign_flip_frac"] is None and entries[1]["sign_flip_frac"] is None
    assert all(0 <= e["sign_flip_frac"] <= 1 for e in entries[2:])
    assert entries[0]["weight_norms"]["all"]["rel_change_from_init"] == 0.0
    assert entries[-1]["weight_norms"]["all"]["rel_change_from_init"] > 0
    assert entries[1]["sharpness_detail"]["preconditioned"] > 0  # Adam state exists after step 1
    rule = stored["first_spectral_radius_above_1"]
    first = next((e["tokens"] for e in entries if e["jacobian"]["spectral_radius_mean"] > 1), None)
    assert rule == first
    assert "identity" in stored["spectral_radius_meaning"]
    assert set(stored["first_block_update_radius_above_1"]) == {"blocks.0", "blocks.1"}
    assert (transformer_run / "figures" / "phases.png").stat().st_size > 10_000


def test_rnn_run_uses_recurrent_jacobian_and_sgd_threshold(rnn_run):
    result = phases_run(rnn_run, OPTIONS)
    entry = result["checkpoints"][-1]
    assert entry["jacobian"]["kind"] == "recurrent"
    assert entry["units"]["blocks.0"]["act"] == "sigmoid"
    detail = entry["sharpness_detail"]
    assert detail["compared"] == "raw" and detail["threshold"] == pytest.approx(2 / 0.05)
    assert detail["ratio"] == pytest.approx(entry["sharpness"] / detail["threshold"])
    assert "amplified" in result["spectral_radius_meaning"]


def test_probe_batch_is_fixed(rnn_run):
    assert probe_batch(rnn_run, OPTIONS).equal(probe_batch(rnn_run, OPTIONS))


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
    with pytest.raises(InvalidInput, match="not a run directory"):
        phases_run(tmp_path / "missing", OPTIONS)
