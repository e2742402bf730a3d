"""What `beliefgeo probe` adds for geometry, end to end on a tiny run of a product process (four
joint states: the tetrahedron view; two factors: grouped targets)."""

from __future__ import annotations

import json

import pytest

from hmm import load_process
from hmm.composite import Product
from models.recipes import TrainConfig
from models.rnn import RNNConfig
from models.training import train
from probes.belief_study import probe_run

N_CTX = 4


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    process = Product([load_process("golden_mean"), load_process("even")])
    run = tmp_path_factory.mktemp("geometry") / "run"
    recipe = TrainConfig(tokens=16 * 32 * N_CTX, batch_size=32, warmup_steps=2, n_checkpoints=2,
                         exact_eval="off", log_every=4)
    train(process, RNNConfig(hidden=8, d_vocab=4, n_ctx=N_CTX), recipe, run, progress=False)
    probe_run(run, init_seeds=2)
    return run, json.loads((run / "probes.json").read_text())


def test_effective_dimension_beside_the_belief_set_and_the_untrained_null(probed):
    _, probes = probed
    hook = "blocks.0.hook_hidden"
    layer = probes["checkpoints"][-1]["layers"][hook]
    dims = layer["effective_dim"]
    assert 1 <= dims["90"] <= dims["95"] <= dims["99"] <= 8
    assert layer["explained_variance"][dims["95"] - 1] >= 0.95
    assert dims["95"] == 1 or layer["explained_variance"][dims["95"] - 2] < 0.95
    assert probes["belief_geometry"]["affine_dim"] == 3  # four joint states: a tetrahedron
    null = probes["baselines"]["random_init"][hook]["effective_dim_mean"]
    assert set(null) == {"90", "95", "99"}


def test_grouped_targets_get_their_read_out_subspaces(probed):
    _, probes = probed
    subspaces = probes["checkpoints"][-1]["layers"]["blocks.0.hook_hidden"]["subspaces"]
    (pair,) = subspaces["factors"].values()  # two factors: one pair
    assert pair["dims"] == [1, 1] and pair["width"] == 8  # each factor: 2 states, 1 direction
    assert 0.0 <= pair["overlap"] <= 1.0 and pair["null"]["n_draws"] > 0
    assert "belief|factors" in subspaces["between_targets"]


def test_figures_include_the_dimension_plot_and_the_3d_view(probed):
    run, probes = probed
    assert probes["figures"]["dimension"] == "figures/probe_dimension.png"
    view = (run / probes["figures"]["view_3d"]).read_text()
    assert "<script src=" not in view and "scatter3d" in view


def test_every_hook_scores_each_target_and_the_file_reads_typed(probed):
    """A product's probes.json: per hook `targets.{belief,factors}` with intervals at the newest
    checkpoint, and `intervals` for every shown score, all through read_probes."""
    from probes.run_files import read_probes

    run, probes = probed
    typed = read_probes(run)
    newest, first = typed.checkpoints[-1], typed.checkpoints[0]
    assert list(newest.layers) == probes["hooks"] == ["blocks.0.hook_hidden"]  # one hook
    for hook in newest.layers:
        targets = newest.layers[hook].targets
        assert set(targets) == {"belief", "factors"}
        assert targets["belief"].r2_heldout == newest.layers[hook].r2_heldout
        low, high = targets["factors"].ci95
        assert low <= targets["factors"].r2_heldout <= high
        assert first.layers[hook].targets["factors"].ci95 is None
    intervals = typed.intervals
    assert intervals.unit == "subtree" and intervals.units >= 2  # 4**4 sequences: enumerated
    assert set(intervals.layers) == set(probes["hooks"])
    assert intervals.next_token and intervals.optimal_probs and intervals.excess_loss
    assert set(intervals.kgram) == set(probes["baselines"]["kgram"])
    assert set(intervals.random_init) == {"blocks.0.hook_hidden"}
    assert newest.next_token.excess_loss >= 0
