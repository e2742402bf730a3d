"""Optimal loss, entropy rate and statistical complexity: known values, Monte Carlo, convergence."""

import numpy as np
import pytest

from hmm import load_process
from hmm.information import entropy

FINDINGS_MESS3 = [1.0986, 0.8577, 0.8134, 0.7981, 0.7947, 0.7938, 0.7935, 0.7935, 0.7935, 0.7935]


def test_mess3_optimal_loss_matches_findings():
    loss = load_process("mess3").optimal_loss(10)
    np.testing.assert_allclose(loss, FINDINGS_MESS3, atol=5e-5)
    assert abs(loss[1:].mean() - 0.8035) < 5e-5
    assert abs(loss[0] - np.log(3)) < 1e-12


RANDOM = "random:states=3,symbols=3,seed=5,sparsity=0.3"


@pytest.mark.parametrize("name", ["mess3", "rrxor", RANDOM])
def test_optimal_loss_agrees_with_monte_carlo(name):
    p = load_process(name)
    length, n = 6, 20_000
    tokens, _ = p.sample(n, length, seed=11)
    prefix = np.stack([p.log_prob(tokens[:, : t + 1]) for t in range(length)], axis=1)
    surprisal = -np.diff(np.concatenate([np.zeros((n, 1)), prefix], axis=1), axis=1)
    mean, se = surprisal.mean(axis=0), surprisal.std(axis=0, ddof=1) / np.sqrt(n)
    exact = p.optimal_loss(length)
    assert (np.abs(mean - exact) < 4 * se + 1e-12).all(), (mean, exact, se)


def test_mess3_optimal_loss_approaches_the_entropy_rate_from_above():
    p = load_process("mess3")
    loss, h = p.optimal_loss(13), p.entropy_rate()
    assert (np.diff(loss) <= 1e-15).all() and (loss >= h - 1e-12).all()
    assert loss[-1] - h < 1e-7
    assert 0.79 < h < 0.7936


def test_unifilar_entropy_rates_and_long_lengths_are_exact():
    assert abs(load_process("even").entropy_rate() - 2 / 3 * np.log(2)) < 1e-12
    assert abs(load_process("golden_mean").entropy_rate() - 2 / 3 * np.log(2)) < 1e-12
    rrxor = load_process("rrxor")
    assert abs(rrxor.entropy_rate() - 2 / 3 * np.log(2)) < 1e-12
    loss = rrxor.optimal_loss(200)  # finitely many mixed states: exact at any length, no warning
    assert abs(loss[-1] - rrxor.entropy_rate()) < 1e-12


def test_statistical_complexity_of_finite_and_infinite_msps():
    even = load_process("even").statistical_complexity()
    assert even.finite and abs(even.value - entropy(np.array([2 / 3, 1 / 3]))) < 1e-9
    rrxor = load_process("rrxor").statistical_complexity()
    assert rrxor.finite and len(rrxor.probs) == 5
    assert abs(rrxor.value - entropy(np.array([1 / 3] + [1 / 6] * 4))) < 1e-9
    mess3 = load_process("mess3").statistical_complexity(depth=8)
    assert not mess3.finite and mess3.value is None and "not finite at depth" in mess3.note
