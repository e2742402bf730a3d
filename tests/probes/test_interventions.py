"""Interventions against answers known in advance: a hand-built network whose read-out and
downstream map are linear (the probe move closes the whole gap, the orthogonal null none), the
exact filter restarted from a belief against filtering the concatenated sequence, the RNN's
propagated state against the Elman equations written out, transformer causality."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import entropy
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from hmm import load_process
from hmm.errors import InvalidInput
from models.recipes import TrainConfig
from models.rnn import RNNConfig, build_rnn
from models.training import train
from models.transformer import TransformerConfig, build_transformer
from probes.activations import collect_activations, probe_inputs
from probes.geometry import fit_probe
from probes.interventions import (
    choose_prefixes,
    counterfactual_logits,
    exact_predictions,
    gap_closed,
    intervene_hook,
    intervene_run,
    kl_divergence,
    minimum_norm_moves,
    null_moves,
    subspace_moves,
)

L = 5


class LinearBeliefNet(HookedRootModule):
    """Residual x_t = A b_t + c (A: orthonormal columns); the downstream map reads the belief
    b = 1/S + P A^T (x - c) (P removes the all-ones direction) and predicts b @ M, the exact
    next-token distribution: read-out and downstream map are linear. Every position computes its
    belief from the tokens, as a transformer may, so later positions ignore a moved residual."""

    def __init__(self, process, width: int = 7) -> None:
        super().__init__()
        S = process.n_states
        rng = np.random.default_rng(0)
        self.A = torch.from_numpy(np.linalg.qr(rng.standard_normal((width, S)))[0])
        self.c = torch.from_numpy(rng.standard_normal(width))
        self.P = torch.eye(S, dtype=torch.float64) - 1.0 / S
        self.M = torch.from_numpy(process.T.sum(axis=2).T.copy())  # (S, V): P(x | state)
        self.process = process
        self.hook_resid = HookPoint()
        self.setup()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b = torch.from_numpy(self.process.beliefs(tokens.numpy()))
        x = self.hook_resid(b @ self.A.T + self.c)
        read = 1.0 / len(self.P) + ((x - self.c) @ self.A) @ self.P
        return torch.log((read @ self.M).clamp_min(1e-12))


@pytest.fixture(scope="module")
def mess3():
    return load_process("mess3")


@pytest.fixture(scope="module")
def setting(mess3):
    net = LinearBeliefNet(mess3)
    inputs = probe_inputs(mess3, L)
    X = collect_activations(net, inputs, ["hook_resid"]).hooks["hook_resid"].astype(np.float64)
    return net, inputs, X


def test_minimum_norm_move_reads_the_target_and_is_shortest():
    rng = np.random.default_rng(0)
    coef = rng.standard_normal((6, 3))
    coef -= coef.mean(axis=1, keepdims=True)  # belief probes: columns sum to zero
    readings, targets = rng.dirichlet(np.ones(3), 4), rng.dirichlet(np.ones(3), 4)
    delta = minimum_norm_moves(coef, readings, targets)
    np.testing.assert_allclose(delta @ coef, targets - readings, atol=1e-12)
    # any other solution adds a null-space component of coef^T and is longer
    null = np.linalg.svd(coef.T)[2][2:]
    other = delta + rng.standard_normal((4, len(null))) @ null
    np.testing.assert_allclose(other @ coef, targets - readings, atol=1e-12)
    assert (np.linalg.norm(other, axis=1) > np.linalg.norm(delta, axis=1)).all()
    random, orthogonal = null_moves(coef, np.linalg.norm(delta, axis=1), rng)
    np.testing.assert_allclose(np.linalg.norm(random, axis=1), np.linalg.norm(delta, axis=1))
    np.testing.assert_allclose(orthogonal @ coef, 0.0, atol=1e-12)
    # a move restricted to another subspace still makes the probe read the target, and is longer
    other_space = coef + 0.5 * rng.standard_normal((6, 3))
    inside = subspace_moves(coef, other_space, readings, targets)
    np.testing.assert_allclose(inside @ coef, targets - readings, atol=1e-10)
    basis = np.linalg.qr(other_space)[0]
    np.testing.assert_allclose(inside - inside @ basis @ basis.T, 0.0, atol=1e-12)
    assert (np.linalg.norm(inside, axis=1) >= np.linalg.norm(delta, axis=1) - 1e-12).all()


@pytest.mark.parametrize("name", ["mess3", "bloch_walk", "moon"])  # classical, GHMMs
def test_exact_predictions_equal_filtering_the_spliced_sequence(name):
    process = load_process(name)
    tokens, _ = process.sample(2, 5, seed=3)
    donor, recipient = tokens[:1, :3], tokens[1:]
    t = np.array([2])
    start = process.beliefs(donor)[:, -1]
    got = exact_predictions(process, start, recipient, t)
    spliced = np.concatenate([donor, recipient[:, 3:]], axis=1)  # donor prefix, then x_3, x_4
    expected = process.predictive(process.beliefs(spliced, on_zero="nan")[0, 2:])
    np.testing.assert_allclose(got[0, 2:], expected, atol=1e-12)
    assert np.isnan(got[0, :2]).all()


def test_exact_predictions_stop_at_an_impossible_token():
    rrxor = load_process("rrxor")
    tokens, _ = rrxor.sample(200, 6, seed=1)
    start = rrxor.beliefs(tokens[::-1])[:, 1]  # beliefs of other sequences
    got = exact_predictions(rrxor, start, tokens, np.ones(200, dtype=int))
    dead = np.isnan(got[:, 1:]).any(axis=2)
    assert dead.any() and not dead[:, 0].any()  # never at the moved position itself
    assert (np.diff(dead.astype(int), axis=1) >= 0).all()  # once dead, dead for good


def test_kl_and_gap_closed_against_direct_formulas():
    rng = np.random.default_rng(1)
    p, q = rng.dirichlet(np.ones(4), 5), rng.dirichlet(np.ones(4), 5)
    p[0] = [0.5, 0.5, 0, 0]
    np.testing.assert_allclose(kl_divergence(p, np.log(q)), entropy(p.T, q.T), atol=1e-14)
    value, ci = gap_closed(np.array([1.0, 3.0]), np.array([0.5, 0.5]), n_boot=200)
    assert value == pytest.approx(0.75) and ci[0] <= 0.75 <= ci[1]
    assert gap_closed(np.zeros(3), np.ones(3)) == (None, None)


def test_probe_move_gives_exactly_the_predicted_change(mess3, setting):
    net, inputs, X = setting
    probe = fit_probe(X, inputs)
    pairs = choose_prefixes(inputs, 300, seed=2)
    seqs, t = pairs["recipients"], pairs["positions"]
    target = inputs.beliefs[inputs.row_of[pairs["donors"], t]]
    x = X[inputs.row_of[seqs, t]]
    delta = minimum_norm_moves(probe.coef_, probe.predict(x), target)
    log_q = counterfactual_logits(net, torch.from_numpy(inputs.tokens[seqs]), "hook_resid", t,
                                  delta).numpy()
    moved = np.exp(log_q[np.arange(len(t)), t])
    np.testing.assert_allclose(moved, mess3.predictive(target), atol=1e-5)


def test_hand_built_network_closes_the_gap_and_the_nulls_do_not(mess3, setting):
    net, inputs, X = setting
    pairs = choose_prefixes(inputs, 400, seed=3)
    r = intervene_hook(net, mess3, inputs, X, "hook_resid", pairs, n_boot=200)
    assert r["gap_closed_next"] == pytest.approx(1.0, abs=1e-4)
    assert r["gap_closed_next_ci95"][0] > 0.999
    assert r["null_orthogonal"]["gap_closed_next"] == pytest.approx(0.0, abs=1e-4)
    assert abs(r["null_random"]["gap_closed_next"] - 1.0) > 0.3
    # every position recomputes its belief from the tokens: later positions do not move
    for name in ("gap_closed_later",):
        assert r[name] == pytest.approx(0.0, abs=1e-9)
        assert r["null_random"][name] == pytest.approx(0.0, abs=1e-9)
    assert r["probe_reads_target_max_error"] < 1e-9
    assert r["probe_r2_heldout"] > 0.999999
    assert r["n_prefixes"] == 400 and r["kl_floor"]["next"] < 1e-8
    # the residual is an exact linear image of the belief: encoding and read-out coincide
    assert r["encoding"]["overlap_with_probe"] == pytest.approx(1.0, abs=1e-6)
    assert r["encoding"]["gap_closed_next"] == pytest.approx(1.0, abs=1e-4)
    assert r["encoding"]["null_orthogonal"]["gap_closed_next"] == pytest.approx(0.0, abs=1e-4)


def test_rnn_state_propagates_through_the_elman_equations():
    model = build_rnn(RNNConfig(hidden=6, n_layers=2, n_ctx=L, seed=4)).eval()
    tokens = torch.tensor([[0, 1, 2, 1, 0], [2, 2, 0, 1, 1], [1, 0, 0, 2, 1]])
    t = np.array([1, 0, 3])
    delta = np.random.default_rng(5).standard_normal((3, 6)) * 0.3
    got = counterfactual_logits(model, tokens, "blocks.0.hook_hidden", t, delta)

    def manual(layer, inputs, moved):  # h_s = tanh(W_in u_s + b + W_rec h_{s-1}), written out
        block = model.blocks[layer]
        h, out = torch.zeros(len(inputs), 6), []
        for s in range(L):
            h = torch.tanh(inputs[:, s] @ block.W_in.weight.T + block.W_in.bias
                           + h @ block.W_rec.weight.T)
            if moved:
                h = h + torch.where(torch.from_numpy(t == s)[:, None],
                                    torch.from_numpy(delta).float(), 0.0)
            out.append(h)
        return torch.stack(out, 1)

    with torch.no_grad():
        h0 = manual(0, model.embed(tokens), moved=True)
        h1 = manual(1, h0, moved=False)
        expected = torch.log_softmax(model.unembed(h1).double(), -1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    plain = torch.log_softmax(model(tokens).double(), -1)
    for i, ti in enumerate(t):  # earlier positions untouched, later ones moved
        torch.testing.assert_close(got[i, :ti], plain[i, :ti])
        if ti + 1 < L:
            assert (got[i, ti + 1] - plain[i, ti + 1]).abs().max() > 1e-4
    with pytest.raises(InvalidInput, match="hook_hidden"):
        counterfactual_logits(model, tokens, "blocks.0.hook_pre", t, delta)


def test_transformer_move_is_causal_and_the_final_hook_cannot_reach_later_positions():
    model = build_transformer(TransformerConfig(n_layers=2, d_model=8, d_head=4, d_mlp=16,
                                                n_ctx=L, seed=6)).eval()
    tokens = torch.tensor([[0, 1, 2, 1, 0], [2, 2, 0, 1, 1]])
    t = np.array([1, 2])
    delta = np.random.default_rng(7).standard_normal((2, 8))
    plain = torch.log_softmax(model(tokens).double(), -1)
    zero = counterfactual_logits(model, tokens, "blocks.0.hook_resid_post", t, np.zeros((2, 8)))
    torch.testing.assert_close(zero, plain)
    early = counterfactual_logits(model, tokens, "blocks.0.hook_resid_post", t, delta)
    final = counterfactual_logits(model, tokens, "blocks.1.hook_resid_post", t, delta)
    for i, ti in enumerate(t):
        torch.testing.assert_close(early[i, :ti], plain[i, :ti])
        assert (early[i, ti] - plain[i, ti]).abs().max() > 1e-3
        assert (early[i, ti + 1 :] - plain[i, ti + 1 :]).abs().max() > 1e-5  # via attention
        torch.testing.assert_close(final[i, ti + 1 :], plain[i, ti + 1 :])


@pytest.mark.parametrize("arch", ["transformer", "rnn"])
def test_intervene_run_writes_interventions_json(tmp_path, mess3, arch):
    model = (TransformerConfig(n_layers=1, d_model=8, d_head=4, d_mlp=16, n_ctx=L)
             if arch == "transformer" else RNNConfig(hidden=8, n_ctx=L))
    recipe = TrainConfig(tokens=12 * 32 * L, batch_size=32, warmup_steps=2, n_checkpoints=2,
                         exact_eval="off", log_every=4)
    train(mess3, model, recipe, tmp_path / "run", progress=False)
    result = intervene_run(tmp_path / "run", n_prefixes=50, n_boot=50)
    written = json.loads((tmp_path / "run" / "interventions.json").read_text())
    assert written["hooks"] == result["hooks"] and written["n_prefixes"] == 50
    for hook in written["hooks"]:
        record = written["layers"][hook]
        for key in ("gap_closed_next", "gap_closed_later"):
            assert key in record and key in record["null_random"]
            assert key in record["null_orthogonal"]
        assert record["probe_reads_target_max_error"] < 1e-6
    assert written["later_positions"].startswith("RNN" if arch == "rnn" else "transformer")
    with pytest.raises(InvalidInput):
        intervene_run(tmp_path / "run", hooks=["no.such.hook"])
    with pytest.raises(InvalidInput):
        intervene_run(tmp_path / "run", tokens=123)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_state_propagates_like_torchs_own_cell(cell):
    """Moving an LSTM's or GRU's hidden state at position t (an LSTM's cell state kept) and
    running on equals torch's own nn.LSTM / nn.GRU continued from the moved state."""
    from models import build_model
    from models.architectures import make_model_config

    hidden, length = 5, 6
    config = make_model_config(cell, hidden=hidden, n_layers=1, n_ctx=length)
    model = build_model(config).double().eval()
    tokens = torch.tensor([[0, 1, 2, 1, 0, 2], [2, 2, 0, 1, 1, 0], [1, 0, 0, 2, 1, 1]])
    t = np.array([1, 0, 3])
    delta = np.random.default_rng(6).standard_normal((3, hidden)) * 0.3
    got = counterfactual_logits(model, tokens, "blocks.0.hook_hidden", t, delta)
    block = model.blocks[0]
    with torch.no_grad():
        u = model.embed(tokens)
        rows = []
        for i, ti in enumerate(t):
            before, state = block.cell(u[i : i + 1, : ti + 1])
            h0 = state[0] if cell == "lstm" else state
            moved_h = h0 + torch.from_numpy(delta[i])[None, None]
            moved = (moved_h, state[1]) if cell == "lstm" else moved_h
            after, _ = block.cell(u[i : i + 1, ti + 1 :], moved)
            before = torch.cat([before[:, :ti], moved_h.transpose(0, 1)], dim=1)
            rows.append(torch.cat([before, after], dim=1))
        expected = torch.log_softmax(model.unembed(torch.cat(rows)).double(), -1)
    torch.testing.assert_close(got, expected, atol=1e-9, rtol=1e-9)


def test_a_moved_lstm_cell_reaches_its_hidden_state_and_runs_on_like_torchs_cell():
    """c_t moved by delta: h_t = sigmoid(o_t) tanh(c_t + delta) (o_t from torch's weights, gate
    order i, f, g, o), then torch's nn.LSTM continues from (h_t, c_t + delta)."""
    from models import build_model
    from models.architectures import make_model_config

    hidden, length = 5, 6
    model = build_model(make_model_config("lstm", hidden=hidden, n_layers=1, n_ctx=length))
    model = model.double().eval()
    tokens = torch.tensor([[0, 1, 2, 1, 0, 2], [2, 2, 0, 1, 1, 0]])
    t = np.array([2, 0])
    delta = np.random.default_rng(7).standard_normal((2, hidden)) * 0.5
    got = counterfactual_logits(model, tokens, "blocks.0.hook_cell", t, delta)
    cell = model.blocks[0].cell
    with torch.no_grad():
        u, rows = model.embed(tokens), []
        for i, ti in enumerate(t):
            before, (h, c) = cell(u[i : i + 1, : ti + 1])
            h_prev = before[:, ti - 1] if ti > 0 else torch.zeros(1, hidden, dtype=u.dtype)
            gates = (u[i, ti] @ cell.weight_ih_l0.T + cell.bias_ih_l0
                     + h_prev @ cell.weight_hh_l0.T + cell.bias_hh_l0)
            c = c + torch.from_numpy(delta[i])[None, None]
            h = (torch.sigmoid(gates.chunk(4, -1)[3]) * torch.tanh(c[0]))[None]
            after, _ = cell(u[i : i + 1, ti + 1 :], (h, c))
            rows.append(torch.cat([before[:, :ti], h.transpose(0, 1), after], dim=1))
        expected = torch.log_softmax(model.unembed(torch.cat(rows)).double(), -1)
    torch.testing.assert_close(got, expected, atol=1e-9, rtol=1e-9)
