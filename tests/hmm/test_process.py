"""HMM validation, sampling, and exact filtering / log-probabilities against brute force."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hmm import HMM, InvalidInput, load_process
from hmm.builtins import random_hmm


def brute_force(p: HMM, seq) -> tuple[float, np.ndarray]:
    """P(seq) and the belief after each token, by summing over every hidden-state path."""
    S, L = p.n_states, len(seq)
    paths = np.array(list(itertools.product(range(S), repeat=L + 1)))  # (S^(L+1), L+1)
    weight = p.initial[paths[:, 0]]
    joint = np.zeros((L, S))  # joint[t, j] = P(x_0..x_t, s_{t+1} = j)
    for t, x in enumerate(seq):
        weight = weight * p.T[x, paths[:, t], paths[:, t + 1]]
        joint[t] = np.bincount(paths[:, t + 1], weights=weight, minlength=S)
    prob = joint[-1].sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        beliefs = joint / joint.sum(axis=1, keepdims=True)
    return prob, beliefs


def check_against_brute_force(p: HMM, tokens: np.ndarray) -> None:
    beliefs = p.beliefs(tokens, on_zero="nan")
    log_p = p.log_prob(tokens)
    for i, seq in enumerate(tokens):
        prob, expected = brute_force(p, seq)
        if prob == 0:
            assert log_p[i] == -np.inf
        else:
            assert abs(np.exp(log_p[i]) - prob) <= 1e-12 * max(1.0, prob) + 1e-300
            np.testing.assert_allclose(log_p[i], np.log(prob), rtol=0, atol=1e-12)
        alive = np.isfinite(expected).all(axis=1) & (np.cumprod(expected.sum(axis=1) > 0) > 0)
        np.testing.assert_allclose(beliefs[i][alive], expected[alive], rtol=0, atol=1e-12)
        assert np.isnan(beliefs[i][~alive]).all()


@settings(max_examples=40, deadline=None)
@given(
    states=st.integers(1, 3), symbols=st.integers(1, 3), seed=st.integers(0, 10_000),
    sparsity=st.sampled_from([0.0, 0.3, 0.6]), length=st.integers(1, 5), data=st.data(),
)
def test_beliefs_and_log_prob_equal_brute_force_on_random_hmms(
    states, symbols, seed, sparsity, length, data
):
    p = random_hmm(states, symbols, seed, sparsity)
    rows = data.draw(st.lists(st.lists(st.integers(0, symbols - 1), min_size=length,
                                       max_size=length), min_size=1, max_size=4))
    check_against_brute_force(p, np.array(rows))


@pytest.mark.parametrize("name,length", [("mess3", 4), ("rrxor", 5)])
def test_beliefs_equal_brute_force_on_every_sequence(name, length):
    p = load_process(name)
    every = np.array(list(itertools.product(range(p.n_symbols), repeat=length)))
    check_against_brute_force(p, every)
    if name == "rrxor":  # rrxor forbids some sequences; they must come out as probability zero
        assert np.isinf(p.log_prob(every)).any()


def test_zero_probability_sequence_is_reported_by_index_and_position():
    p = load_process("rrxor")
    tokens = np.array([[0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    assert np.isfinite(p.log_prob(tokens[:1])).all()
    with pytest.raises(InvalidInput, match=r"sequence 1 has probability zero at position \d"):
        p.beliefs(tokens)
    nan_rows = p.beliefs(tokens, on_zero="nan")
    assert np.isfinite(nan_rows[0]).all() and np.isnan(nan_rows[1, -1]).all()


def test_ten_thousand_tokens_do_not_underflow():
    p = load_process("mess3")
    tokens, _ = p.sample(3, 10_000, seed=1)
    log_p = p.log_prob(tokens)
    beliefs = p.beliefs(tokens)
    assert np.isfinite(log_p).all() and (log_p < -5000).all()
    np.testing.assert_allclose(beliefs.sum(axis=-1), 1.0, atol=1e-12)
    # per-token log-loss of a long sequence is close to the entropy rate (0.7935 nats, FINDINGS)
    assert abs(-log_p.mean() / 10_000 - 0.7935) < 0.03


def test_sample_is_reproducible_and_follows_the_transitions():
    p = load_process("rrxor")
    a, sa = p.sample(500, 30, seed=7)
    b, sb = p.sample(500, 30, seed=7)
    assert a.dtype == np.int64 and a.shape == (500, 30) and sa.shape == (500, 31)
    assert np.array_equal(a, b) and np.array_equal(sa, sb)
    assert not np.array_equal(a, p.sample(500, 30, seed=8)[0])
    assert (p.T[a, sa[:, :-1], sa[:, 1:]] > 0).all()
    assert np.isfinite(p.log_prob(a)).all()


def test_sample_frequencies_match_the_stationary_predictive():
    p = load_process("mess3")
    tokens, states = p.sample(20_000, 2, seed=3)
    freq = np.bincount(tokens[:, 0], minlength=3) / 20_000
    np.testing.assert_allclose(freq, p.predictive(p.stationary), atol=0.02)
    np.testing.assert_allclose(np.bincount(states[:, 0], minlength=3) / 20_000, p.stationary,
                               atol=0.02)


def test_predictive_shapes_and_normalisation():
    p = load_process("mess3")
    b = np.random.default_rng(0).dirichlet(np.ones(3), size=(4, 5))
    pred = p.predictive(b)
    assert pred.shape == (4, 5, 3)
    np.testing.assert_allclose(pred.sum(-1), 1.0)


def test_mess3_matrices_match_design():
    x, a = 0.05, 0.85
    b, y = (1 - a) / 2, 1 - 2 * x
    p = load_process("mess3")
    np.testing.assert_allclose(p.T[0], [[a * y, b * x, b * x], [a * x, b * y, b * x],
                                        [a * x, b * x, b * y]])
    np.testing.assert_allclose(p.stationary, np.ones(3) / 3)


@pytest.mark.parametrize("T,match", [
    (np.ones((2, 3)), r"shape \(symbols V, states S, states S\)"),
    ([[[0.5, 0.5], [1.0, 0.0]], [[0.0, 0.0], [0.0, -0.0]]], None),  # valid, sanity
    ([[[0.5, 0.6], [1.0, 0.0]], [[0.0, -0.1], [0.0, 0.0]]], r"T\[1\]\[0\]\[1\].*negative"),
    ([[[0.5, 0.5], [0.5, 0.0]], [[0.0, 0.0], [0.43, 0.0]]], r"row 1 \(state '1'\) sums to 0\.93"),
    ([[[np.nan, 0.5], [0.5, 0.5]]], r"T\[0\]\[0\]\[0\].*finite"),
    ([[[1.0, 0.0], [0.0, 1.0]]], r"more than one stationary distribution"),
])
def test_validation_names_the_problem(T, match):
    if match is None:
        HMM(T)
        return
    with pytest.raises(InvalidInput, match=match):
        HMM(T)
    assert issubclass(InvalidInput, ValueError)


def test_explicit_initial_allows_a_reducible_chain_and_is_validated():
    T = [[[1.0, 0.0], [0.0, 1.0]]]
    p = HMM(T, initial=[0.25, 0.75])
    assert p.stationary is None and np.allclose(p.initial, [0.25, 0.75])
    with pytest.raises(InvalidInput, match="initial sums to"):
        HMM(T, initial=[0.5, 0.6])
    with pytest.raises(InvalidInput, match="one probability per state"):
        HMM(T, initial=[1.0])


def test_bad_tokens_are_rejected():
    p = load_process("even")
    with pytest.raises(InvalidInput, match="sequence 1, position 2 is not a symbol"):
        p.beliefs(np.array([[0, 0, 0], [0, 1, 2]]))
    with pytest.raises(InvalidInput, match=r"shape \(n, L\)"):
        p.beliefs(np.array([0, 1]))
    with pytest.raises(InvalidInput, match="on_zero"):
        p.beliefs(np.zeros((1, 2), dtype=int), on_zero="zero")
