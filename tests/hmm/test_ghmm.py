"""GHMM: a classical HMM run as a GHMM gives identical numbers; GHMM states and probabilities equal
brute-force matrix products; sampling follows the word law; validity refuses what it promises to."""

import itertools

import numpy as np
import pytest

from hmm import GHMM, HMM, InvalidInput, load_process
from hmm.builtins import random_hmm
from hmm.information import conditional_entropies
from hmm.validity import check_depth


@pytest.mark.parametrize("name", ["mess3", "rrxor", "random:states=4,symbols=3,seed=5,sparsity=.4"])
def test_a_classical_hmm_run_as_a_ghmm_gives_identical_numbers(name):
    hmm = load_process(name)
    ghmm = GHMM(hmm.T, name="as-ghmm")
    assert not isinstance(ghmm, HMM) and np.array_equal(ghmm.initial, hmm.initial)
    tokens, _ = hmm.sample(200, 8, seed=1)
    assert np.array_equal(ghmm.beliefs(tokens), hmm.beliefs(tokens))
    assert np.array_equal(ghmm.log_prob(tokens), hmm.log_prob(tokens))
    assert np.array_equal(ghmm.predictive(hmm.beliefs(tokens)), hmm.predictive(hmm.beliefs(tokens)))
    assert np.array_equal(ghmm.optimal_loss(9), hmm.optimal_loss(9))
    a, b = ghmm.msp(6), hmm.msp(6)
    for field in ("beliefs", "probs", "parents", "symbols", "depths"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    if hmm.is_unifilar():  # the shortcut is not available to a GHMM; its finite mixed states are
        assert ghmm.entropy_rate() == pytest.approx(hmm.entropy_rate(), abs=1e-12)


def brute_force_ghmm(p: GHMM, word) -> tuple[float, np.ndarray]:
    """P(word) = initial T[x1]...T[xL] tau and the state after each prefix, by matrix products."""
    v, states = p.initial.copy(), []
    for x in word:
        v = v @ p.T[x]
        with np.errstate(invalid="ignore", divide="ignore"):
            states.append(v / (v @ p.right))
    return float(v @ p.right), np.array(states)


@pytest.mark.parametrize("name,length", [("bloch_walk", 4), ("fanizza", 7), ("moon", 5)])
def test_ghmm_states_and_probabilities_equal_matrix_products(name, length):
    p = load_process(name)
    every = np.array(list(itertools.product(range(p.n_symbols), repeat=length)))
    probs = np.array([brute_force_ghmm(p, w)[0] for w in every])
    assert probs.sum() == pytest.approx(1.0, abs=1e-12) and probs.min() >= -1e-15
    alive = probs > 1e-12
    log_p = p.log_prob(every)
    np.testing.assert_allclose(np.exp(log_p[alive]), probs[alive], rtol=1e-10)
    states = p.beliefs(every[alive])
    expected = np.array([brute_force_ghmm(p, w)[1] for w in every[alive]])
    np.testing.assert_allclose(states, expected, atol=1e-9)
    tokens, probs_enum = p.enumerate(length)
    assert len(tokens) == alive.sum() and probs_enum.sum() == pytest.approx(1.0, abs=1e-12)


def test_a_word_of_probability_zero_is_reported_not_divided_by():
    p = load_process("moon")  # a reset right after a reset has weight x - 1 - ln x = 0 at x = 1
    assert brute_force_ghmm(p, [0, 0])[0] == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(InvalidInput, match="sequence 0 has probability zero at position 1"):
        p.beliefs([[0, 0, 1]])
    assert np.isneginf(p.log_prob([[0, 0, 1]])).all()
    words = p.enumerate(4)[0]
    assert not ((words[:, :-1] == 0) & (words[:, 1:] == 0)).any()


@pytest.mark.parametrize("name", ["bloch_walk", "fanizza", "moon"])
def test_sampling_follows_the_word_law(name):
    p = load_process(name)
    n, length = 40_000, 3
    tokens, states = p.sample(n, length, seed=4)
    assert states is None and tokens.shape == (n, length)
    assert np.array_equal(tokens, p.sample(n, length, seed=4)[0])
    words, probs = p.enumerate(length)
    index = (tokens * p.n_symbols ** np.arange(length)[::-1]).sum(axis=1)
    counts = np.bincount(index, minlength=p.n_symbols**length)
    expected = np.zeros(p.n_symbols**length)
    expected[(words * p.n_symbols ** np.arange(length)[::-1]).sum(axis=1)] = probs
    # every word within 5 binomial standard errors of its exact probability
    error = 5 * np.sqrt(expected * (1 - expected) / n) + 1e-12
    assert (np.abs(counts / n - expected) <= error).all()


# rows of T[0] + T[1] sum to 1 (tau = 1); from (1, 0): P(0) = 0.7, P(1) = 0.3, P(0 1) = -0.09
BAD = np.array([[[1.2, -0.5], [0.0, 0.1]], [[0.3, 0.0], [0.0, 0.9]]])


def test_a_negative_word_probability_is_refused_naming_the_shortest_word():
    with pytest.raises(InvalidInput, match=r"the word 'a b' \(length 2\) has probability -0\.09"):
        GHMM(BAD, name="bad", initial=[1.0, 0.0], symbols=["a", "b"])
    # brute force: every shorter word is fine, and 'a b' is the first negative one of its length
    probs = {w: brute_force_ghmm(_start(BAD, [1.0, 0.0]), w)[0]
             for L in (1, 2) for w in itertools.product(range(2), repeat=L)}
    assert all(p >= 0 for w, p in probs.items() if len(w) == 1)
    assert [w for w, p in probs.items() if p < 0][0] == (0, 1)


def _start(T, initial):
    """An unvalidated GHMM (to reach the guards behind the validation)."""
    p = GHMM.__new__(GHMM)
    p._set(np.asarray(T, float), "unchecked", None, None, None, np.ones(T.shape[1]),
           np.asarray(initial, float))
    return p


def test_beyond_the_checked_depth_a_negative_probability_raises_not_returns():
    bad = _start(BAD, [1.0, 0.0])
    with pytest.raises(InvalidInput, match=r"beliefs: unchecked gives probability -0\.129 < 0 to a "
                       r"symbol after tokens \[0\]: the process is not valid beyond"):
        bad.beliefs([[0, 1]])
    with pytest.raises(InvalidInput, match=r"sample: unchecked gives probability"):
        bad.sample(100, 2, seed=0)
    with pytest.raises(InvalidInput, match=r"mixed-state tree: unchecked gives probability"):
        bad.msp(2)
    assert random_hmm(2, 2, seed=0).zero_mass == 0.0 and bad.zero_mass > 0


def test_a_non_unique_stationary_vector_is_refused_unless_a_start_is_given():
    T = np.stack([0.5 * np.eye(2), 0.5 * np.eye(2)])
    with pytest.raises(InvalidInput, match="2 independent left eigenvectors for eigenvalue 1"):
        GHMM(T, name="two-blocks")
    assert GHMM(T, name="two-blocks", initial=[0.25, 0.75]).stationary is None
    with pytest.raises(InvalidInput, match="no eigenvalue 1"):
        GHMM([[[0.3]], [[0.3]]])


def test_a_start_vector_off_the_normalisation_plane_is_refused():
    with pytest.raises(InvalidInput, match=r"initial \. tau = 0\.5"):
        GHMM(load_process("mess3").T, initial=[0.5, 0.0, 0.0])


def test_the_checked_depth_is_stated_and_the_budget_holds():
    assert [check_depth(v) for v in (1, 2, 3, 4, 27)] == [12, 12, 10, 8, 3]
    assert all(v ** check_depth(v) <= 2**16 for v in range(2, 300))


def test_ghmm_optimal_loss_is_the_expected_predictive_entropy():
    p = load_process("bloch_walk")
    words, probs = p.enumerate(3)
    states = p.beliefs(words)
    pred = p.predictive(states[:, -1])
    h3 = float(probs @ -(pred * np.log(pred)).sum(axis=1))
    assert p.optimal_loss(4)[3] == pytest.approx(h3, abs=1e-12)
    values, exact = conditional_entropies(p, 6)
    assert exact == 6 and np.all(np.diff(values) <= 1e-12)  # stationary start: non-increasing
