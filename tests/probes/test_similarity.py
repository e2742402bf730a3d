"""Linear CKA against its n x n Gram-matrix definition, its invariances, its independence floor,
and between two tiny runs (identical runs score 1; nulls and belief references present)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from hmm import load_process
from hmm.errors import InvalidInput
from models.recipes import TrainConfig
from models.rnn import RNNConfig
from models.training import train
from models.transformer import TransformerConfig
from probes.similarity import cka_between_runs, cka_matrix, linear_cka

N_CTX = 4


def _gram_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """CKA as HSIC of linear kernels with the centring matrix H (Kornblith et al. 2019, eq. 3)."""
    n = len(X)
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    return np.trace(K @ L) / np.sqrt(np.trace(K @ K) * np.trace(L @ L))


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 5))
    Y = X @ rng.standard_normal((5, 7)) + 0.5 * rng.standard_normal((60, 7))
    return X, Y


def test_cka_matches_the_gram_matrix_definition(pair):
    X, Y = pair
    assert linear_cka(X, Y) == pytest.approx(_gram_cka(X, Y), rel=1e-6)


def test_integer_weights_equal_repeated_rows(pair):
    X, Y = pair
    counts = np.random.default_rng(1).integers(1, 4, size=len(X))
    repeated = _gram_cka(np.repeat(X, counts, axis=0), np.repeat(Y, counts, axis=0))
    assert linear_cka(X, Y, counts.astype(float)) == pytest.approx(repeated, rel=1e-6)


def test_identical_is_one_and_orthogonal_and_isotropic_maps_do_not_change_it(pair):
    X, Y = pair
    Q, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((5, 5)))
    assert linear_cka(X, X) == pytest.approx(1.0, abs=1e-6)
    assert linear_cka(X, 3.7 * X @ Q + 11.0) == pytest.approx(1.0, abs=1e-6)
    assert linear_cka(3.7 * X @ Q, Y) == pytest.approx(linear_cka(X, Y), rel=1e-6)
    # a stretch along one axis is not a similarity transform: CKA must notice it
    assert linear_cka(X, X @ np.diag([10.0, 1, 1, 1, 1])) < 0.9


def test_independent_random_activations_score_near_zero():
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((20_000, 8)), rng.standard_normal((20_000, 8))
    assert linear_cka(X, Y) < 0.01
    assert linear_cka(X.astype(np.float32), X.astype(np.float32)) == pytest.approx(1.0, abs=1e-6)


def test_bad_input_and_constant_activations():
    with pytest.raises(InvalidInput):
        linear_cka(np.ones((3, 2)), np.ones((4, 2)))
    with pytest.raises(InvalidInput):
        linear_cka(np.ones((3, 2)), np.ones((3, 2)), np.zeros(3))
    with pytest.raises(InvalidInput):
        linear_cka(np.ones((1, 2)), np.ones((1, 2)))
    assert np.isnan(linear_cka(np.ones((5, 2)), np.random.default_rng(0).random((5, 2))))
    m = cka_matrix({"a": np.eye(4)}, {"b": np.eye(4), "c": np.eye(4)[:, ::-1]}, None)
    assert m["a"]["b"] == pytest.approx(1.0) and m["a"]["c"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    mess3 = load_process("mess3")
    root = tmp_path_factory.mktemp("cka")
    recipe = TrainConfig(tokens=12 * 32 * N_CTX, batch_size=32, warmup_steps=2, n_checkpoints=2,
                         exact_eval="off", log_every=4)
    transformer = TransformerConfig(n_layers=1, d_model=8, d_head=4, d_mlp=16, n_ctx=N_CTX)
    train(mess3, transformer, recipe, root / "t", progress=False)
    train(mess3, RNNConfig(hidden=8, n_ctx=N_CTX), recipe, root / "r", progress=False)
    shutil.copytree(root / "t", root / "t-copy")
    train(load_process("rrxor"), RNNConfig(hidden=8, d_vocab=2, n_ctx=N_CTX), recipe,
          root / "other", progress=False)
    return root


def test_cka_between_runs(runs):
    result = cka_between_runs([runs / "t", runs / "t-copy", runs / "r"], max_rows=100)
    assert result["rows"] == 100 and result["positions"] == N_CTX
    by_pair = {(p["run_a"], p["run_b"]): p for p in result["pairs"]}
    assert set(by_pair) == {("t", "t-copy"), ("t", "r"), ("t-copy", "r")}
    same = by_pair[("t", "t-copy")]["cka"]
    for hook in same:
        assert same[hook][hook] == pytest.approx(1.0, abs=1e-6)
    cross = by_pair[("t", "r")]
    assert set(cross["cka"]["blocks.0.hook_resid_post"]) == {"blocks.0.hook_hidden"}
    assert set(cross["cka_untrained"]) == set(cross["cka"])
    values = [v for row in cross["cka"].values() for v in row.values()]
    assert all(0.0 <= v <= 1.0 + 1e-12 for v in values)
    assert set(result["cka_beliefs"]["r"]) == {"blocks.0.hook_hidden"}


def test_runs_of_different_processes_are_refused(runs):
    with pytest.raises(InvalidInput, match="same inputs"):
        cka_between_runs([runs / "t", runs / "other"])
    with pytest.raises(InvalidInput):
        cka_between_runs([runs / "t"])
