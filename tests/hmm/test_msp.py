"""The mixed-state presentation: node counts, per-depth probabilities, agreement with filtering."""

import numpy as np
import pytest

from hmm import load_process


@pytest.mark.parametrize("depth", [0, 1, 2, 5, 7])
def test_mess3_node_count(depth):
    m = load_process("mess3").msp(depth)
    assert m.n_nodes == (3 ** (depth + 1) - 1) // 2
    assert m.beliefs.shape == (m.n_nodes, 3) and m.sequences.shape == (m.n_nodes, depth)


@pytest.mark.parametrize("name", ["mess3", "rrxor", "z1r", "even", "golden_mean",
                                  "random:states=4,symbols=3,sparsity=0.5"])
def test_probabilities_sum_to_one_at_every_depth(name):
    m = load_process(name).msp(6)
    sums = np.bincount(m.depths, weights=m.probs)
    np.testing.assert_allclose(sums, 1.0, atol=1e-12)
    assert (m.probs > 0).all()
    np.testing.assert_allclose(m.beliefs.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("name", ["mess3", "rrxor"])
def test_deepest_level_equals_filtering_and_enumerate(name):
    p = load_process(name)
    m = p.msp(6)
    seqs, beliefs, probs = m.level(6)
    np.testing.assert_allclose(beliefs, p.beliefs(seqs)[:, -1], atol=1e-13)
    np.testing.assert_allclose(np.log(probs), p.log_prob(seqs), atol=1e-12)
    tokens, enum_probs = p.enumerate(6)
    assert np.array_equal(tokens, seqs) and np.allclose(enum_probs, probs, rtol=1e-13)
    # lexicographic order, and only positive-probability branches survive
    assert np.array_equal(tokens, np.array(sorted(tokens.tolist())))
    if name == "rrxor":
        assert len(tokens) < 2**6


def test_sequences_are_padded_and_parents_are_prefixes():
    m = load_process("rrxor").msp(4)
    seq = m.sequences
    assert (seq[0] == -1).all()
    for d in range(1, 5):
        rows = np.flatnonzero(m.depths == d)
        assert (seq[rows, d:] == -1).all() and (seq[rows, :d] >= 0).all()
        parents = m.parents[rows]
        assert (m.depths[parents] == d - 1).all()
        assert np.array_equal(seq[parents, : d - 1], seq[rows, : d - 1])


def test_unique_merges_beliefs_and_sums_probabilities():
    m = load_process("rrxor").msp(10)
    uniq = m.unique(decimals=5)
    assert len(uniq.beliefs) == 36  # Shai et al. 2024: RRXOR has 36 distinct mixed states
    np.testing.assert_allclose(uniq.probs.sum(), 11.0)
    level = m.unique(decimals=5, depth=10)
    np.testing.assert_allclose(level.probs.sum(), 1.0)
    assert len(load_process("mess3").msp(4).unique().beliefs) == (3**5 - 1) // 2
