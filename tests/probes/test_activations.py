"""Probe inputs (enumeration, prefix rows, weights, split, shuffle) and hook-only activations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmm import load_process
from hmm.errors import InvalidInput
from models.transformer import TransformerConfig, build_transformer, transformer_residual_hooks
from probes.activations import (
    CV_FOLDS,
    _collect_by_sequence,
    collect_activations,
    fit_folds,
    kgram_cells,
    probe_inputs,
    split_sequences,
)
from probes.belief_probe import BeliefProbe, moments


@pytest.fixture(scope="module")
def mess3():
    return load_process("mess3")


@pytest.fixture(scope="module")
def inputs(mess3):
    return probe_inputs(mess3, 5, seed=3, split="random")


@pytest.fixture(scope="module")
def subtree(mess3):
    return probe_inputs(mess3, 5, seed=3, split="subtree", prefix_len=2)


def test_enumerated_rows_are_unique_prefixes(mess3, inputs):
    assert inputs.exact and inputs.tokens.shape == (3**5, 5)
    assert inputs.n_rows == sum(3**k for k in range(1, 6))
    # each row's activation source really has that row's prefix, and each row is stored once
    rows = inputs.row_of[inputs.stored]
    assert sorted(rows) == list(range(inputs.n_rows))
    for seq, t in zip(*np.nonzero(inputs.row_of == inputs.row_of[17, 2]), strict=True):
        np.testing.assert_array_equal(inputs.tokens[seq, : t + 1], inputs.tokens[17, :3])
    expected = mess3.beliefs(inputs.tokens[17:18])[0, 2]
    np.testing.assert_allclose(inputs.beliefs[inputs.row_of[17, 2]], expected)


def test_row_weights_are_counts_and_prefix_probabilities(mess3, inputs):
    n = len(inputs.tokens)
    count = inputs.fit_count + inputs.heldout_count
    prob = inputs.fit_prob + inputs.heldout_prob
    for t in range(5):
        level = inputs.positions == t
        assert count[level].sum() == n
        assert prob[level].sum() == pytest.approx(1.0)
    # prob of a row = probability of its prefix
    seq, t = 100, 2
    prefix = inputs.tokens[seq : seq + 1, : t + 1]
    assert prob[inputs.row_of[seq, t]] == pytest.approx(np.exp(mess3.log_prob(prefix))[0])


def test_random_split_is_by_sequence_and_seeded(inputs):
    fit = inputs.fit_sequences
    assert fit.sum() == len(fit) // 2
    # a length-5 row belongs to one sequence, so it sits on exactly one side
    last = inputs.positions == 4
    assert ((inputs.fit_count[last] > 0) != (inputs.heldout_count[last] > 0)).all()
    np.testing.assert_array_equal(split_sequences(100, seed=1), split_sequences(100, seed=1))
    assert (split_sequences(100, seed=1) != split_sequences(100, seed=2)).any()


def _prefixes(tokens: np.ndarray, longer_than: int = 0) -> set:
    return {tuple(seq[: t + 1]) for seq in tokens for t in range(longer_than, len(seq))}


@pytest.mark.parametrize("m", [1, 2, 3])
def test_subtree_split_never_fits_a_heldout_prefix_longer_than_m(mess3, m):
    inputs = probe_inputs(mess3, 5, seed=1, split="subtree", prefix_len=m)
    fit, held = inputs.tokens[inputs.fit_sequences], inputs.tokens[~inputs.fit_sequences]
    assert len(fit) and len(held)
    assert not _prefixes(fit, m) & _prefixes(held, m)  # prefixes of length > m
    # every sequence goes with its first m tokens
    heads = {tuple(s[:m]) for s in fit}
    assert not heads & {tuple(s[:m]) for s in held}
    # the row weights agree: rows of length > m sit on one side only
    deep = inputs.positions >= m
    assert not ((inputs.fit_count[deep] > 0) & (inputs.heldout_count[deep] > 0)).any()


@pytest.mark.parametrize(("split", "m", "j"), [("subtree", 1, 2), ("subtree", 2, 2),
                                               ("subtree", 3, 3), ("random", 2, None)])
def test_cv_folds_cut_the_fit_half_like_the_split(mess3, split, m, j):
    inputs = probe_inputs(mess3, 5, seed=1, split=split, prefix_len=m)
    folds = fit_folds(inputs.tokens, inputs.fit_sequences, split, m, seed=1)
    fit = inputs.fit_sequences
    assert (folds[~fit] == -1).all() and set(folds[fit]) == set(range(CV_FOLDS))
    np.testing.assert_array_equal(inputs.fold_count.sum(axis=0), inputs.fit_count)
    assert len(inputs.fold_count) == CV_FOLDS
    if j is not None:  # whole subtrees: sequences sharing their first j tokens share a fold
        fold_of = {}
        for seq, fold in zip(inputs.tokens[fit], folds[fit], strict=True):
            assert fold_of.setdefault(tuple(seq[:j]), fold) == fold
        # j is the shortest prefix length >= m with at least CV_FOLDS subtrees in the fit half
        shorter = {tuple(seq[: j - 1]) for seq in inputs.tokens[fit]}
        assert j == m or len(shorter) < CV_FOLDS


@pytest.mark.parametrize("split", ["random", "subtree"])
def test_shared_prefix_weight_by_brute_force(mess3, split):
    inputs = probe_inputs(mess3, 4, seed=2, split=split)
    fitted = _prefixes(inputs.tokens[inputs.fit_sequences])
    shared = total = 0.0
    held = ~inputs.fit_sequences
    for seq, p in zip(inputs.tokens[held], inputs.seq_probs[held], strict=True):
        for t in range(len(seq)):
            total += p
            shared += p * (tuple(seq[: t + 1]) in fitted)
    assert inputs.split["shared_prefix_weight"] == pytest.approx(shared / total)
    assert inputs.split["kind"] == split


def test_subtree_split_shares_less_than_random(mess3):
    random = probe_inputs(mess3, 8, split="random").split["shared_prefix_weight"]
    subtree = probe_inputs(mess3, 8, split="subtree").split["shared_prefix_weight"]
    assert subtree < 0.3 < random
    with pytest.raises(InvalidInput, match="prefix length"):
        probe_inputs(mess3, 3, split="subtree", prefix_len=4)
    with pytest.raises(InvalidInput, match="unknown split"):
        probe_inputs(mess3, 3, split="sideways")


@pytest.mark.parametrize("k", [1, 2, 3])
def test_kgram_cells_by_brute_force(subtree, k):
    cells = kgram_cells(subtree, k)
    keys = {}
    for (seq, t) in zip(*np.nonzero(subtree.stored), strict=True):
        key = tuple(subtree.tokens[seq, max(0, t - k + 1) : t + 1])
        keys.setdefault(key, set()).add(int(cells[subtree.row_of[seq, t]]))
    # one cell per distinct truncated key, and distinct keys get distinct cells
    assert all(len(c) == 1 for c in keys.values())
    assert len({next(iter(c)) for c in keys.values()}) == len(keys) == cells.max() + 1


def test_collapsed_rows_give_the_same_fit_as_all_rows(inputs):
    # OLS on (sequence, position) rows == weighted OLS on the stored prefix rows
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(inputs.n_rows, 4))
    fit_seq = np.flatnonzero(inputs.fit_sequences)
    rows = inputs.row_of[fit_seq].ravel()
    expanded = BeliefProbe().fit(feats[rows], inputs.beliefs[rows])
    keep = inputs.fit_rows
    collapsed = BeliefProbe().fit(feats[keep], inputs.beliefs[keep], inputs.fit_count[keep])
    np.testing.assert_allclose(collapsed.coef_, expanded.coef_, atol=1e-10)


def test_shuffle_control_is_an_exact_row_shuffle(inputs):
    # the cross-moments with per-row mean shuffled targets equal those of shuffled instances
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(inputs.n_rows, 4))
    keep = inputs.fit_rows
    m = moments(feats[keep], inputs.shuffled_beliefs[keep], inputs.fit_count[keep])
    rows = inputs.row_of[inputs.fit_sequences].ravel()
    perm = np.random.default_rng(3 + 1).permutation(len(rows))
    m_ref = moments(feats[rows], inputs.beliefs[rows][perm])
    np.testing.assert_allclose(m.xy, m_ref.xy, atol=1e-9)
    # and short prefixes get near-average targets, not one random belief each
    first = inputs.positions == 0
    mean = inputs.beliefs[rows].mean(0)
    assert np.abs(inputs.shuffled_beliefs[first] - mean).max() < 0.15  # ~40 instances each


def test_large_vocab_context_is_sampled_with_equal_weights(mess3):
    sampled = probe_inputs(mess3, 6, max_enumerated=100, n_samples=50)
    assert not sampled.exact and sampled.n_rows == 50 * 6
    np.testing.assert_allclose(sampled.seq_probs, 1 / 50)
    assert set(np.unique(sampled.fit_count + sampled.heldout_count)) == {1.0}


def test_activations_are_those_of_run_with_cache(inputs):
    model = build_transformer(TransformerConfig(n_layers=1, d_model=8, d_head=4, d_mlp=16, n_ctx=5))
    hooks = transformer_residual_hooks(1)
    acts = collect_activations(model, inputs, hooks, batch_size=50)
    tokens = torch.from_numpy(inputs.tokens[200:210])
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    rows = inputs.row_of[200:210]
    for name in hooks:
        np.testing.assert_allclose(acts.hooks[name][rows], cache[name].numpy(), atol=1e-5)
    np.testing.assert_allclose(acts.next_token[rows], torch.softmax(logits, -1).numpy(), atol=1e-5)
    # the prefix-tree forward (one token step per prefix) equals whole-sequence forwards
    slow = _collect_by_sequence(model, inputs, hooks, batch_size=50)
    for name in hooks:
        np.testing.assert_allclose(acts.hooks[name], slow.hooks[name], atol=1e-5)
    np.testing.assert_allclose(acts.next_token, slow.next_token, atol=1e-5)
    with pytest.raises(InvalidInput, match="unknown hook"):
        collect_activations(model, inputs, ["blocks.7.hook_resid_post"])
    with pytest.raises(InvalidInput, match="position, width"):
        collect_activations(model, inputs, ["blocks.0.attn.hook_pattern"])


def test_max_sequences_keeps_a_seeded_subset_with_exact_weights(mess3, inputs):
    subset = probe_inputs(mess3, 5, seed=3, max_sequences=100)
    assert subset.exact and len(subset.tokens) == 100 and subset.enumerated_total == 3**5
    assert subset.summary()["sequences"] == 100
    by_seq = {tuple(t): p for t, p in zip(inputs.tokens, inputs.seq_probs, strict=True)}
    for t, p in zip(subset.tokens, subset.seq_probs, strict=True):
        assert by_seq[tuple(t)] == p
    with pytest.raises(InvalidInput, match="max_sequences"):
        probe_inputs(mess3, 5, max_sequences=1)


@pytest.mark.parametrize(
    "settings",
    [
        {"arch": "transformer", "n_layers": 2, "n_heads": 2, "d_model": 8, "d_head": 4,
         "d_mlp": 16},
        {"arch": "rnn", "n_layers": 2, "hidden": 8},
    ],
)
def test_prefix_tree_and_sequence_forwards_agree(subtree, settings):
    from models.architectures import build_model, make_model_config, residual_hooks

    settings = dict(settings)
    model = build_model(make_model_config(settings.pop("arch"), n_ctx=5, seed=4, **settings))
    hooks = residual_hooks(model)
    fast = collect_activations(model, subtree, hooks)
    slow = _collect_by_sequence(model, subtree, hooks, batch_size=64)
    for name in hooks:
        np.testing.assert_allclose(fast.hooks[name], slow.hooks[name], atol=1e-5)
    np.testing.assert_allclose(fast.next_token, slow.next_token, atol=1e-5)


def test_activations_that_do_not_fit_in_memory_are_refused(subtree, monkeypatch):
    import hmm.memory

    monkeypatch.setattr(hmm.memory, "available_memory", lambda: 1000)
    model = build_transformer(TransformerConfig(n_layers=1, d_model=8, d_head=4, d_mlp=16, n_ctx=5))
    with pytest.raises(InvalidInput, match="--max-sequences"):
        collect_activations(model, subtree, transformer_residual_hooks(1))
