"""probe_run end to end on a tiny run, the informative-vs-untrained contrast, and bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from experiments.cli import main as cli_main
from hmm import load_process
from hmm.errors import InvalidInput
from models.recipes import TrainConfig
from models.training import train
from models.transformer import TransformerConfig, build_transformer, transformer_residual_hooks
from probes.activations import Activations, collect_activations, probe_inputs
from probes.belief_evidence import headline
from probes.belief_probe import r2_score
from probes.belief_study import (
    CONCAT,
    heldout_scores,
    kgram_baselines,
    probe_run,
    references,
    score_activations,
)

N_CTX = 5
METRICS = {
    "r2_heldout", "r2_heldout_weighted", "r2_heldout_unseen", "r2_insample", "r2_pooled",
    "mse_heldout", "r2_shuffle", "r2_by_position", "mse_by_position", "r2_fine", "fine_corr",
    "ridge", "r2_beyond_prediction", "ridge_beyond_prediction",
}
GEOMETRY = {"explained_variance", "effective_dim", "affine_dim"}  # probes.geometry_study


class BeliefResidual(HookedRootModule):
    """A stand-in model whose residual stream is a fixed linear image of the exact belief."""

    def __init__(self, process, d_model: int = 8) -> None:
        super().__init__()
        self.process = process
        self.embed = torch.tensor(np.random.default_rng(0).normal(size=(process.n_states, d_model)))
        self.hook_resid = HookPoint()
        self.setup()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        beliefs = torch.tensor(self.process.beliefs(tokens.numpy()))
        self.hook_resid(beliefs @ self.embed)
        return torch.log(torch.tensor(self.process.predictive(beliefs.numpy())))


@pytest.fixture(scope="module")
def mess3():
    return load_process("mess3")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, mess3):
    run = tmp_path_factory.mktemp("probe") / "run"
    model = TransformerConfig(n_layers=2, d_model=16, d_head=4, d_mlp=32, n_ctx=N_CTX)
    recipe = TrainConfig(tokens=16 * 32 * N_CTX, batch_size=32, warmup_steps=2, n_checkpoints=3,
                         exact_eval="off", log_every=4)
    train(mess3, model, recipe, run, progress=False)
    return run


def test_belief_in_residual_scores_one_and_untrained_far_lower(mess3):
    inputs = probe_inputs(mess3, N_CTX, split="random")
    informative = BeliefResidual(mess3)
    record, _ = score_activations(
        collect_activations(informative, inputs, ["hook_resid"]), inputs, ["hook_resid"]
    )
    assert record["layers"]["hook_resid"]["r2_heldout"] > 0.9999
    assert abs(record["layers"]["hook_resid"]["r2_shuffle"]) < 0.05  # 605 fit rows
    assert record["next_token"]["r2_heldout"] > 0.9999  # Mess3's emission matrix is invertible
    untrained = build_transformer(TransformerConfig(n_layers=2, d_model=16, d_head=4, d_mlp=32))
    hooks = transformer_residual_hooks(2)
    record, _ = score_activations(collect_activations(untrained, inputs, hooks), inputs, hooks)
    assert max(v["r2_heldout"] for v in record["layers"].values()) < 0.97
    # 16-wide hooks on 121 fit sequences: control near 0 (concat's 64 columns overfit more)
    assert max(abs(record["layers"][h]["r2_shuffle"]) for h in hooks) < 0.05


def test_probe_run_writes_json_and_figures(tiny_run):
    result = probe_run(tiny_run)
    written = json.loads((tiny_run / "probes.json").read_text())
    tokens = [c["tokens"] for c in written["checkpoints"]]
    assert tokens == [c["tokens"] for c in result["checkpoints"]]
    assert len(written["checkpoints"]) == len(list((tiny_run / "checkpoints").iterdir()))
    hooks = transformer_residual_hooks(2)
    for entry in written["checkpoints"]:
        assert set(entry["layers"]) == set(hooks) | {CONCAT}
        assert set(entry["layers"][CONCAT]) == METRICS
        assert all(set(entry["layers"][h]) == METRICS | GEOMETRY for h in hooks)
        wanted = {"r2_heldout", "distance_corr_probe", "distance_corr_next_token"}
        assert wanted <= set(entry["next_token"])
    final, initial = written["checkpoints"][-1], written["checkpoints"][0]
    assert final["layers"]["concat"]["r2_heldout"] >= max(
        final["layers"][h]["r2_heldout"] for h in hooks
    ) - 1e-9
    assert initial["tokens"] == 0
    assert written["optimal_probs_r2"] == pytest.approx(1.0)  # Mess3: belief affine in probs
    assert 0.9 < written["optimal_logit_r2"] < 1.0
    assert written["positions"] == {"trained": N_CTX, "probed": list(range(N_CTX)),
                                    "n_ctx": N_CTX, "note": None}
    assert written["split"]["kind"] == "subtree" and written["split"]["prefix_len"] == 2
    untrained = written["baselines"]["random_init"]["blocks.1.hook_resid_post"]
    assert untrained["n_seeds"] == 3 and untrained["r2_sd"] > 0
    assert set(written["baselines"]["kgram"]) == {"1", "2", "3", "4"}
    assert set(written["baselines"]["kgram_oracle"]) == {"1", "2", "3", "4"}
    assert untrained["r2_beyond_prediction"] is not None and set(untrained["r2_fine"]) <= {
        "1", "2", "3", "4"}
    assert written["headline"]["case"] == "implied_by_loss"  # Mess3: affine in the prediction
    assert "geometry implied by the loss" in written["headline"]["sentence"]
    assert set(written["bootstrap"]["probes"]) == {"blocks.1.hook_resid_post", CONCAT}
    assert written["baselines"]["kgram_features"]["2"] == 3 + 9
    assert written["headline"] == headline(written)
    png = b"\x89PNG"
    magic = {"simplex": png, "layers": png, "emergence": png, "positions": png,
             "animation": b"GIF8"}
    for name, head in magic.items():
        assert (tiny_run / written["figures"][name]).read_bytes()[:4] == head


def test_last_probes_only_newest_and_keeps_the_others(tiny_run):
    full = probe_run(tiny_run, init_seeds=0)
    last = probe_run(tiny_run, last=True, init_seeds=0)
    assert [c["tokens"] for c in last["checkpoints"]] == [c["tokens"] for c in full["checkpoints"]]
    only = probe_run(tiny_run, last=True, hooks=["blocks.1.hook_resid_post"], init_seeds=0)
    assert len(only["checkpoints"]) == 1 and set(only["checkpoints"][0]["layers"]) == {
        "blocks.1.hook_resid_post"
    }


def test_bad_input_leaves_the_run_alone(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "probes.json").write_text('{"sentinel": true}')
    with pytest.raises(InvalidInput, match="unknown hook"):
        probe_run(run, hooks=["blocks.9.hook_resid_post"])
    assert cli_main(["probe", str(run), "--hooks", "nope"]) == 2
    newest = sorted((run / "checkpoints").iterdir())[-1]
    newest.write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidInput, match="checkpoint"):
        probe_run(run)
    assert json.loads((run / "probes.json").read_text()) == {"sentinel": True}
    shutil.rmtree(run / "checkpoints")
    with pytest.raises(InvalidInput, match="no checkpoints"):
        probe_run(run)
    assert json.loads((run / "probes.json").read_text()) == {"sentinel": True}


def _last_tokens(inputs, row, k):
    """The last min(t + 1, k) tokens of a row's prefix, read from one of its sequences."""
    seq, t = np.argwhere(inputs.row_of == row)[0]
    return tuple(inputs.tokens[seq, max(0, t - k + 1) : t + 1])


def test_scores_against_brute_force(mess3):
    inputs = probe_inputs(mess3, N_CTX, split="subtree", seed=1)
    refs = references(inputs)
    rng = np.random.default_rng(0)
    pred = refs.beliefs + rng.normal(scale=0.02, size=refs.beliefs.shape)
    scores = heldout_scores(pred, refs)
    Y, w, t = refs.beliefs, refs.count, inputs.positions[refs.rows]
    for pos in range(N_CTX):
        at = t == pos
        assert scores["r2_by_position"][pos] == pytest.approx(r2_score(Y[at], pred[at], w[at]))
    # unseen: held-out rows that no fit sequence shares; under a 2-token subtree split, exactly
    # the rows after position 0
    fitted = {tuple(s[: p + 1]) for s in inputs.tokens[inputs.fit_sequences] for p in range(N_CTX)}
    unseen = np.array([_prefix(inputs, r) not in fitted for r in refs.rows])
    np.testing.assert_array_equal(unseen, t > 0)
    expected = r2_score(Y[unseen], pred[unseen], w[unseen])
    assert scores["r2_heldout_unseen"] == pytest.approx(expected)
    for k in range(1, N_CTX):
        groups = [_last_tokens(inputs, r, k) for r in refs.rows]
        dy, dp = np.empty_like(Y), np.empty_like(Y)
        for key in set(groups):
            rows = np.array([g == key for g in groups])
            dy[rows] = Y[rows] - (w[rows, None] * Y[rows]).sum(0) / w[rows].sum()
            dp[rows] = pred[rows] - (w[rows, None] * pred[rows]).sum(0) / w[rows].sum()
        expected = 1 - (w[:, None] * (dy - dp) ** 2).sum() / (w[:, None] * dy**2).sum()
        assert scores["r2_fine"][str(k)] == pytest.approx(expected)


def _prefix(inputs, row):
    seq, t = np.argwhere(inputs.row_of == row)[0]
    return tuple(inputs.tokens[seq, : t + 1])


def test_kgram_tables_up_to_six_by_brute_force_over_cells(mess3):
    """Every k = 1..6 (probed length 7): the table fit on the fit half and the oracle of held-out
    cell means, recomputed by grouping rows on their last-k-token tuples (no kgram_cells)."""
    inputs = probe_inputs(mess3, 7, split="subtree", seed=2)
    refs = references(inputs)
    out = kgram_baselines(inputs, refs)
    assert sorted(out["kgram_oracle"], key=int) == [str(k) for k in range(1, 7)]
    fit, w = inputs.fit_rows, refs.count
    for k in range(1, 7):
        fit_keys = [_last_tokens(inputs, r, k) for r in fit]
        ho_keys = [_last_tokens(inputs, r, k) for r in refs.rows]
        means = {}
        for key in set(fit_keys):
            rows = fit[[f == key for f in fit_keys]]
            means[key] = (inputs.fit_count[rows, None] * inputs.beliefs[rows]).sum(0) \
                / inputs.fit_count[rows].sum()
        unseen = np.mean(list(means.values()), axis=0)  # OLS min-norm for an all-zero column
        pred = np.array([means.get(key, unseen) for key in ho_keys])
        assert out["kgram"][str(k)] == pytest.approx(r2_score(refs.beliefs, pred, w))
        assert out["kgram_features"][str(k)] == sum(3**j for j in range(1, k + 1))
        table = {}
        for key in set(ho_keys):
            rows = np.array([h == key for h in ho_keys])
            table[key] = (w[rows, None] * refs.beliefs[rows]).sum(0) / w[rows].sum()
        oracle = np.array([table[key] for key in ho_keys])
        assert out["kgram_oracle"][str(k)] == pytest.approx(r2_score(refs.beliefs, oracle, w))


@pytest.fixture(scope="module")
def imperfect(mess3):
    """Mess3 inputs and a next-token distribution that is the optimal one distorted (so the
    belief is NOT exactly affine in it), with hooks of known content."""
    inputs = probe_inputs(mess3, N_CTX, split="subtree", seed=3)
    rng = np.random.default_rng(4)
    logits = np.log(mess3.predictive(inputs.beliefs)) + rng.normal(scale=0.4, size=(
        inputs.n_rows, 3))
    next_token = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    embed = rng.normal(size=(3, 8))
    hooks = {
        "next_token_only": next_token @ rng.normal(size=(3, 6)),  # a linear image of it
        "belief": inputs.beliefs @ embed,  # the exact belief, linearly embedded
        "noisy_belief": inputs.beliefs @ embed + rng.normal(scale=0.05, size=(inputs.n_rows, 8)),
    }
    acts = Activations(hooks={h: a.astype(np.float32) for h, a in hooks.items()},
                       next_token=next_token.astype(np.float32))
    return inputs, acts


def test_beyond_prediction_is_zero_for_the_next_token_and_one_for_the_belief(imperfect):
    inputs, acts = imperfect
    record, _ = score_activations(acts, inputs, list(acts.hooks))
    layers = record["layers"]
    assert abs(layers["next_token_only"]["r2_beyond_prediction"]) < 1e-8
    assert abs(record["next_token"]["r2_beyond_prediction"]) < 1e-8
    assert layers["belief"]["r2_beyond_prediction"] == pytest.approx(1.0, abs=1e-8)
    assert record["next_token"]["r2_heldout"] < 0.99  # the remainder is not trivial here
    assert 0.1 < layers["noisy_belief"]["r2_beyond_prediction"] < 1.0


def test_beyond_prediction_against_an_independent_two_stage_fit(imperfect):
    """Independently with numpy: the belief's remainder after least squares on [1, next token]
    (fit half), then ridge (the factor cross-validation chose, times the mean eigenvalue of the
    features' weighted centred Gram; intercept free) of that remainder on [layer, next token],
    scored on the held-out rows as 1 - SSE / sum |remainder|^2."""
    inputs, acts = imperfect
    record, _ = score_activations(acts, inputs, ["noisy_belief"])
    layer = record["layers"]["noisy_belief"]
    fit, held = inputs.fit_rows, inputs.heldout_rows
    N, X, B = (acts.next_token.astype(float), acts.hooks["noisy_belief"].astype(float),
               inputs.beliefs)
    w = inputs.fit_count[fit]
    design = np.column_stack([np.ones(inputs.n_rows), N])
    root = np.sqrt(w)[:, None]
    # rcond: the probabilities sum to 1, so [1, N] is collinear up to float32 rounding
    remainder = B - design @ np.linalg.lstsq(design[fit] * root, B[fit] * root, rcond=1e-6)[0]
    features = np.column_stack([X, N])
    mean_x, mean_r = w @ features[fit] / w.sum(), w @ remainder[fit] / w.sum()
    centred = (features[fit] - mean_x) * root
    gram = centred.T @ centred
    alpha = layer["ridge_beyond_prediction"] * np.trace(gram) / len(gram)
    rhs = centred.T @ ((remainder[fit] - mean_r) * root)
    coef = np.linalg.lstsq(gram + alpha * np.eye(len(gram)), rhs, rcond=None)[0]
    pred = (features[held] - mean_x) @ coef + mean_r
    count = inputs.heldout_count[held]
    expected = 1 - count @ ((remainder[held] - pred) ** 2).sum(1) / (
        count @ (remainder[held] ** 2).sum(1))
    assert layer["r2_beyond_prediction"] == pytest.approx(expected, rel=1e-6)


def test_format_one_run_probes_only_trained_positions(tiny_run, tmp_path):
    run = tmp_path / "old"
    shutil.copytree(tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    config["format"] = "beliefgeo-run/1"
    del config["data"]["trained_positions"]
    (run / "config.json").write_text(json.dumps(config))
    result = probe_run(run, last=True, init_seeds=0)
    assert result["positions"]["probed"] == list(range(N_CTX - 1))
    assert "not probed" in result["positions"]["note"]
    layer = result["checkpoints"][-1]["layers"]["blocks.1.hook_resid_post"]
    assert len(layer["r2_by_position"]) == N_CTX - 1
    (run / "probes.json").write_text('{"sentinel": true}')
    with pytest.raises(InvalidInput, match="never trained"):
        probe_run(run, positions=N_CTX)
    assert cli_main(["probe", str(run), "--positions", str(N_CTX)]) == 2
    assert json.loads((run / "probes.json").read_text()) == {"sentinel": True}
