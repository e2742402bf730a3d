"""The secant test on cases with known answers: the exact filter and networks that carry it
through a nonlinear embedding pass; networks that carry another filter fail."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmm import load_process
from hmm.belief_dynamics import affine_filter_process
from hmm.errors import InvalidInput
from models.rnn import RNNConfig, build_rnn
from probes.jacobian import jacobian_diagnostics, network_secant
from probes.secant import compare_rates, log_separation, secant_pairs, secant_test

MIXING = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
N_CTX = 10


def _embedding(beliefs: np.ndarray, gain: float, width: int = 32, seed: int = 0) -> np.ndarray:
    """h = tanh(b K + c): a smooth injective nonlinear image of the belief (K random, full rank)."""
    rng = np.random.default_rng(seed)
    k = rng.standard_normal((beliefs.shape[-1], width)) * gain
    c = rng.standard_normal(width) * 0.3 * gain
    return np.tanh(beliefs @ k + c)


@pytest.fixture(scope="module")
def mess3_pairs():
    return secant_pairs(load_process("mess3"), 400, N_CTX, seed=1)


def test_pairs_share_the_future_and_start_apart(mess3_pairs):
    pairs = mess3_pairs
    assert pairs.split == 3 and pairs.horizon == 7
    np.testing.assert_array_equal(pairs.first[:, 3:], pairs.second[:, 3:])
    assert (pairs.first[:, :3] != pairs.second[:, :3]).any(axis=1).all()
    process = load_process("mess3")
    np.testing.assert_allclose(pairs.beliefs_second, process.beliefs(pairs.second))
    assert len(pairs.first) + pairs.dropped == 400


def test_log_separation_is_the_log_distance_from_the_split(mess3_pairs):
    pairs = mess3_pairs
    found = log_separation(pairs.beliefs_first, pairs.beliefs_second, 3)
    gap = pairs.beliefs_first[5, 2:] - pairs.beliefs_second[5, 2:]
    direct = np.log(np.linalg.norm(gap, axis=1))
    np.testing.assert_allclose(found[5], direct)
    assert found.shape == (len(pairs.first), 8)


def test_exact_filter_passes_with_zero_gap(mess3_pairs):
    pairs = mess3_pairs
    beliefs = (pairs.beliefs_first, pairs.beliefs_second)
    found = secant_test(pairs, beliefs, beliefs)
    assert found["rate_state"] == found["rate_belief"] == found["rate_readout"]
    assert found["state_vs_belief"]["rate_gap"] == 0 and found["state_vs_belief"]["passes"]
    assert found["readout_error_rms"] == 0
    # Mess3's filter forgets at about its Lyapunov rate (-1.53 nats/token long-run) in-window
    assert -1.7 < found["rate_belief"] < -1.2


@pytest.mark.parametrize("gain", [0.5, 2.0, 5.0])
def test_filter_carried_through_a_tanh_embedding_passes(mess3_pairs, gain):
    pairs = mess3_pairs
    states = (_embedding(pairs.beliefs_first, gain), _embedding(pairs.beliefs_second, gain))
    found = secant_test(pairs, states)["state_vs_belief"]
    assert found["passes"], found
    assert found["distortion"] > 0  # a real nonlinear embedding, not the identity


@pytest.mark.parametrize("gain", [0.5, 2.0])
def test_a_network_carrying_another_filter_fails(mess3_pairs, gain):
    """States that are an exact image of the belief of Mess3 at other parameters (probe R² of that
    belief onto this one's is high, but it forgets at another rate) fail."""
    pairs = mess3_pairs
    other = load_process("mess3:x=0.15,a=0.6")
    states = tuple(_embedding(other.beliefs(t), gain) for t in (pairs.first, pairs.second))
    found = secant_test(pairs, states)
    assert not found["state_vs_belief"]["passes"], found["state_vs_belief"]
    assert found["rate_state"] > found["rate_belief"] + 0.3  # it forgets more slowly


def test_rule_numbers_are_the_documented_ones():
    rng = np.random.default_rng(0)
    log_belief = np.cumsum(rng.normal(-1.0, 0.1, (50, 6)), axis=1)
    offset = rng.normal(0.0, 0.5, (50, 1))
    drift = 0.2 * np.arange(6)  # the state loses 0.2 nats/token less than the belief
    found = compare_rates(log_belief + offset + drift, log_belief)
    assert found["rate_gap"] == pytest.approx(0.2)
    low, high = np.quantile(offset[:, 0], [0.05, 0.95])
    assert found["distortion"] == pytest.approx(high - low)
    assert found["se"] == pytest.approx(0.0, abs=1e-12)  # every pair drifts by the same amount
    assert found["tolerance"] == pytest.approx((high - low) / 5)
    assert found["passes"] == (0.2 <= (high - low) / 5)


def _belief_network(contraction: float, carried: float, gain: float = 2.0, hidden: int = 8):
    """A 2-layer Elman RNN: layer 0 (ReLU, in its linear piece) carries the affine filter of
    contraction `carried` exactly, b + shift in its first 3 units; layer 1 (tanh, no recurrence)
    embeds it, h1 = tanh(A h0 + c). With carried == contraction it carries the filter of
    affine_filter_process(MIXING, contraction) through a nonlinear embedding."""
    model = build_rnn(RNNConfig(hidden=hidden, n_layers=2, act_fn="relu", n_ctx=N_CTX, seed=0))
    model.blocks[1].act_fn = "tanh"
    state = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    m_t = torch.tensor(carried * MIXING.T, dtype=torch.float32)
    shift = 0.1
    state["embed.weight"][:, :3] = torch.eye(3)
    state["blocks.0.W_in.weight"][:3, :3] = (1 - carried) * torch.eye(3)
    state["blocks.0.W_in.bias"][:3] = shift * (torch.ones(3) - m_t.sum(1))
    state["blocks.0.W_rec.weight"][:3, :3] = m_t
    generator = torch.Generator().manual_seed(3)
    state["blocks.1.W_in.weight"][:, :3] = gain * torch.randn(hidden, 3, generator=generator)
    state["blocks.1.W_in.bias"] = 0.3 * torch.randn(hidden, generator=generator)
    model.load_state_dict(state)
    return model.eval()


@pytest.fixture(scope="module")
def affine_setup():
    process = affine_filter_process(MIXING, 0.3)
    pairs = secant_pairs(process, 300, N_CTX, seed=2)
    fit, _ = process.sample(64, N_CTX, seed=3)
    return process, pairs, torch.from_numpy(fit), process.beliefs(fit)


def test_rnn_carrying_the_filter_through_tanh_passes_and_reads_out(affine_setup):
    process, pairs, fit, fit_beliefs = affine_setup
    found = network_secant(_belief_network(0.3, 0.3), pairs, fit, fit_beliefs)
    assert found["state_vs_belief"]["passes"], found["state_vs_belief"]
    # the affine filter moves belief differences by (c K^T)^k exactly: the rate in closed form
    start = pairs.beliefs_first[:, 2] - pairs.beliefs_second[:, 2]
    end = start @ np.linalg.matrix_power(0.3 * MIXING, 7)
    closed = np.mean(np.log(np.linalg.norm(end, axis=1) / np.linalg.norm(start, axis=1))) / 7
    assert found["rate_belief"] == pytest.approx(closed, rel=1e-9)
    # the read-out is exact up to the zero initial state, forgotten at 0.18 per token
    assert found["readout_vs_belief"]["passes"], found["readout_vs_belief"]
    assert found["rate_readout"] == pytest.approx(found["rate_belief"], abs=1e-3)


def test_rnn_carrying_a_slower_filter_fails(affine_setup):
    process, pairs, fit, fit_beliefs = affine_setup
    found = network_secant(_belief_network(0.3, 0.7), pairs, fit, fit_beliefs)
    assert not found["state_vs_belief"]["passes"]
    assert not found["readout_vs_belief"]["passes"]
    assert found["rate_state"] == pytest.approx(np.log(0.7 * 0.6), abs=0.1)


def test_recurrent_diagnostics_report_the_secant_test(affine_setup):
    process, pairs, fit, fit_beliefs = affine_setup
    model = _belief_network(0.3, 0.3)
    found = jacobian_diagnostics(model, fit[:4], pairs=pairs, fit=(fit, fit_beliefs))
    assert found["secant"]["state_vs_belief"]["passes"]
    assert set(found["spectral_radius_quantiles"]) == {"q10", "q25", "q50", "q75", "q90"}


def test_synchronising_filter_has_no_rate():
    """The even process's filter reaches the same belief from different pasts in finite time."""
    pairs = secant_pairs(load_process("even"), 200, 8, seed=0)
    beliefs = (pairs.beliefs_first, pairs.beliefs_second)
    found = secant_test(pairs, beliefs)
    assert found["synchronised_pairs"] + found["pairs"] == len(pairs.first)
    if found["pairs"] < 2:
        assert found["rate_belief"] is None and found["state_vs_belief"]["passes"] is None


def test_split_outside_the_window_is_invalid_input():
    with pytest.raises(InvalidInput, match="split"):
        secant_pairs(load_process("mess3"), 10, 5, split=5)
