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
from probes.activations import collect_activations, probe_inputs
from probes.belief_study import probe_run, score_activations

N_CTX = 5
METRICS = {"r2_heldout", "r2_heldout_weighted", "mse_heldout", "r2_shuffle"}


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
                         exact_eval=False, log_every=4)
    train(mess3, model, recipe, run, progress=False)
    return run


def test_belief_in_residual_scores_one_and_untrained_far_lower(mess3):
    inputs = probe_inputs(mess3, N_CTX)
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
        assert set(entry["layers"]) == set(hooks) | {"concat"}
        assert all(set(v) == METRICS for v in entry["layers"].values())
        wanted = {"r2_heldout", "distance_corr_probe", "distance_corr_next_token"}
        assert wanted <= set(entry["next_token"])
    final, initial = written["checkpoints"][-1], written["checkpoints"][0]
    assert final["layers"]["concat"]["r2_heldout"] >= max(
        final["layers"][h]["r2_heldout"] for h in hooks
    ) - 1e-9
    assert initial["tokens"] == 0
    assert written["logit_ceiling"]["optimal_probs_r2_heldout"] == pytest.approx(1.0)
    png = b"\x89PNG"
    magic = {"simplex": png, "layers": png, "emergence": png, "animation": b"GIF8"}
    for name, head in magic.items():
        assert (tiny_run / written["figures"][name]).read_bytes()[:4] == head


def test_last_probes_only_newest_and_keeps_the_others(tiny_run):
    full = probe_run(tiny_run)
    last = probe_run(tiny_run, last=True)
    assert [c["tokens"] for c in last["checkpoints"]] == [c["tokens"] for c in full["checkpoints"]]
    only = probe_run(tiny_run, last=True, hooks=["blocks.1.hook_resid_post"])
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
