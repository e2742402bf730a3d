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
from probes.activations import collect_activations, kgram_cells, probe_inputs
from probes.belief_probe import r2_score
from probes.belief_study import (
    CONCAT,
    headline,
    heldout_scores,
    kgram_baselines,
    probe_run,
    references,
    score_activations,
)

N_CTX = 5
METRICS = {
    "r2_heldout", "r2_heldout_weighted", "r2_insample", "r2_pooled", "mse_heldout", "r2_shuffle",
    "r2_by_position", "mse_by_position", "r2_within_kgram", "resolution_depth", "ridge",
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


def test_scores_against_brute_force(mess3):
    inputs = probe_inputs(mess3, N_CTX, split="random", seed=1)
    refs = references(inputs)
    rng = np.random.default_rng(0)
    pred = refs.beliefs + rng.normal(scale=0.02, size=refs.beliefs.shape)
    scores = heldout_scores(pred, refs)
    Y, w, t = refs.beliefs, refs.count, inputs.positions[refs.rows]
    for pos in range(N_CTX):
        at = t == pos
        assert scores["r2_by_position"][pos] == pytest.approx(r2_score(Y[at], pred[at], w[at]))
    sse = (w * ((Y - pred) ** 2).sum(1)).sum()
    for k in range(1, N_CTX):
        # the lookup: each held-out row predicted by the weighted mean of its held-out cell
        cells = kgram_cells(inputs, k)[refs.rows]
        lookup_sse = 0.0
        for c in np.unique(cells):
            rows = cells == c
            mean = (w[rows, None] * Y[rows]).sum(0) / w[rows].sum()
            lookup_sse += (w[rows] * ((Y[rows] - mean) ** 2).sum(1)).sum()
        assert scores["r2_within_kgram"][str(k)] == pytest.approx(1 - sse / lookup_sse)
    resolved = [int(k) for k, v in scores["r2_within_kgram"].items() if v >= 0.5]
    assert scores["resolution_depth"] == max(resolved, default=0)


def test_kgram_baseline_by_brute_force_over_cells(mess3):
    inputs = probe_inputs(mess3, N_CTX, split="subtree", seed=2)
    refs = references(inputs)
    out = kgram_baselines(inputs, refs)
    fit = inputs.fit_rows
    for k in (1, 2, 3):
        cells = kgram_cells(inputs, k)
        means = {}
        for c in np.unique(cells[fit]):
            rows = fit[cells[fit] == c]
            means[c] = (inputs.fit_count[rows, None] * inputs.beliefs[rows]).sum(0) / \
                inputs.fit_count[rows].sum()
        unseen = np.mean(list(means.values()), axis=0)  # OLS min-norm for an all-zero column
        pred = np.array([means.get(c, unseen) for c in cells[refs.rows]])
        assert out["kgram"][str(k)] == pytest.approx(r2_score(refs.beliefs, pred, refs.count))
        assert out["kgram_features"][str(k)] == sum(3**j for j in range(1, k + 1))
        # the oracle table: each held-out row predicted by the mean of its held-out cell
        ho_cells, w = cells[refs.rows], refs.count
        table = {c: (w[ho_cells == c, None] * refs.beliefs[ho_cells == c]).sum(0)
                 / w[ho_cells == c].sum() for c in np.unique(ho_cells)}
        oracle = np.array([table[c] for c in ho_cells])
        assert out["kgram_oracle"][str(k)] == pytest.approx(r2_score(refs.beliefs, oracle, w))


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
