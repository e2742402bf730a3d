"""Effective dimension and subspace geometry against independent computations: numpy's SVD on
data of known rank, hand-built subspaces with known angles, scipy's subspace angles, the closed
form of the random-subspace overlap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import subspace_angles

from hmm.errors import InvalidInput
from probes.geometry import (
    affine_dim,
    compare_subspaces,
    effective_dim,
    explained_variance,
    group_subspaces,
    orthonormal_basis,
    overlap,
    principal_angles,
    random_overlaps,
    spectrum_record,
    weighted_pca,
)


def _known_rank(n=500, d=12, rank=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d)) + rng.standard_normal(d)
    return X, rng.random(n) + 0.1


def test_weighted_pca_matches_numpy_svd_of_the_weighted_centred_rows():
    X, w = _known_rank()
    pca = weighted_pca(X, w)
    p = w / w.sum()
    centred = (X - p @ X) * np.sqrt(p)[:, None]
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(pca.variances, s**2, atol=1e-10)
    np.testing.assert_allclose(pca.mean, p @ X, atol=1e-12)
    for k in range(4):  # the non-degenerate components agree up to sign
        assert abs(abs(pca.components[k] @ vt[k]) - 1.0) < 1e-8
    assert affine_dim(pca.variances) == 4
    assert len(explained_variance(pca.variances)) == 4  # ends where it reaches 1


def test_integer_weights_equal_repeated_rows():
    X, _ = _known_rank(n=60, d=5, rank=5, seed=1)
    counts = np.random.default_rng(2).integers(1, 4, size=len(X))
    weighted = weighted_pca(X, counts.astype(float))
    repeated = weighted_pca(np.repeat(X, counts, axis=0))
    np.testing.assert_allclose(weighted.variances, repeated.variances, rtol=1e-10)


def test_weighted_pca_accepts_float32_activations():
    X, w = _known_rank(d=6, rank=6)
    np.testing.assert_allclose(weighted_pca(X.astype(np.float32), w).variances,
                               weighted_pca(X, w).variances, rtol=1e-5)


def test_cumulative_variance_and_dimensions_on_a_known_spectrum():
    cumulative = explained_variance(np.array([5.0, 3.0, 1.0, 0.5, 0.5]))
    np.testing.assert_allclose(cumulative, [0.5, 0.8, 0.9, 0.95, 1.0])
    assert effective_dim(cumulative) == {"90": 3, "95": 4, "99": 5}
    record = spectrum_record(np.array([1.0, 0.0, 0.0]))
    assert record == {"explained_variance": [1.0], "effective_dim": {"90": 1, "95": 1, "99": 1},
                      "affine_dim": 1}
    assert effective_dim(explained_variance(np.zeros(3))) == {"90": None, "95": None, "99": None}


def test_the_simplex_of_three_states_has_affine_dimension_two():
    beliefs = np.random.default_rng(0).dirichlet(np.ones(3), size=400)
    pca = weighted_pca(beliefs)
    assert affine_dim(pca.variances) == 2
    assert pca.variances[2] < 1e-14


def test_bad_input_is_refused():
    with pytest.raises(InvalidInput):
        weighted_pca(np.zeros((0, 3)))
    with pytest.raises(InvalidInput):
        weighted_pca(np.ones((4, 3)), np.zeros(4))
    with pytest.raises(InvalidInput):
        principal_angles(np.eye(3)[:, :1], np.eye(4)[:, :1])


def test_principal_angles_of_hand_built_subspaces():
    e = np.eye(5)
    assert np.allclose(principal_angles(e[:, :2], e[:, :2] @ [[2, 1], [1, 3]]), 0.0, atol=1e-7)
    np.testing.assert_allclose(principal_angles(e[:, :2], e[:, 2:4]), [np.pi / 2] * 2)
    theta = 0.3
    tilted = np.cos(theta) * e[:, 1] + np.sin(theta) * e[:, 2]
    np.testing.assert_allclose(principal_angles(e[:, :1] , (np.cos(theta) * e[:, 0]
                                                            + np.sin(theta) * e[:, 3])[:, None]),
                               [theta])
    # a plane sharing one direction and tilted by theta in the other: angles 0 and theta
    np.testing.assert_allclose(principal_angles(e[:, :2], np.stack([e[:, 0], tilted], 1)),
                               [0.0, theta], atol=1e-7)
    assert overlap(e[:, :2], np.stack([e[:, 0], tilted], 1)) == pytest.approx(
        (1 + np.cos(theta) ** 2) / 2)
    assert overlap(e[:, :2], e[:, 2:4]) == pytest.approx(0.0, abs=1e-15)
    assert overlap(e[:, :1], e[:, :3]) == pytest.approx(1.0)  # contained


def test_principal_angles_match_scipy_on_random_subspaces():
    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((9, 3)), rng.standard_normal((9, 4))
    np.testing.assert_allclose(np.sort(principal_angles(A, B)), np.sort(subspace_angles(A, B)),
                               atol=1e-10)


def test_rank_deficient_read_outs_count_their_rank():
    # three belief columns that sum to zero span a plane, not a 3-d space
    coef = np.random.default_rng(4).standard_normal((8, 3))
    coef -= coef.mean(axis=1, keepdims=True)
    assert orthonormal_basis(coef).shape == (8, 2)
    assert orthonormal_basis(np.zeros((8, 2))).shape == (8, 0)


def test_random_subspace_null_matches_its_closed_form():
    draws = random_overlaps(width=20, p=2, q=3, n_draws=2000, seed=0)
    assert draws.mean() == pytest.approx(2 * 3 / (20 * 2), rel=0.05)
    assert ((draws >= 0) & (draws <= 1)).all()
    record = compare_subspaces(np.eye(20)[:, :2], np.eye(20)[:, 5:8], n_null=500)
    assert record["overlap"] == pytest.approx(0.0, abs=1e-15)
    assert record["dims"] == [2, 3] and record["width"] == 20
    assert record["null"]["overlap_expected"] == pytest.approx(0.15)
    assert record["null"]["overlap_q05"] < record["null"]["overlap_mean"] < record["null"][
        "overlap_q95"]


def test_group_subspaces_of_a_product_read_out():
    # two factors read out from orthogonal coordinate blocks, a third sharing the first's plane
    rng = np.random.default_rng(5)
    coef = np.zeros((16, 9))
    coef[:4, :3] = rng.standard_normal((4, 3))
    coef[8:12, 3:6] = rng.standard_normal((4, 3))
    coef[:4, 6:] = rng.standard_normal((4, 3))
    pairs = group_subspaces(coef, {"a": slice(0, 3), "b": slice(3, 6), "c": slice(6, 9)},
                            n_null=50)
    assert set(pairs) == {"a|b", "a|c", "b|c"}
    assert pairs["a|b"]["overlap"] == pytest.approx(0.0, abs=1e-12)
    assert max(pairs["a|b"]["angles_deg"]) == pytest.approx(90.0)
    assert pairs["a|c"]["overlap"] > 0.2  # both inside the same 4-d block: not orthogonal


def test_factor_read_outs_of_a_product_are_orthogonal_when_stored_apart():
    """Product of two Mess3 factors; activations hold each factor's belief in its own block of
    coordinates (orthogonal) or both in one shared block (overlapping): the fitted probes'
    factor subspaces say which, against the random-subspace null."""
    from hmm import load_process
    from hmm.composite import Product
    from probes.activations import probe_inputs
    from probes.geometry import fit_probe, target_subspaces

    product = Product([load_process("mess3"), load_process("mess3:x=0.1,a=0.6")])
    inputs = probe_inputs(product, 3)
    targets = product.probe_targets(inputs.beliefs)
    groups = product.target_groups()
    f1, f2 = targets["factors"][:, :3], targets["factors"][:, 3:]
    rng = np.random.default_rng(0)
    apart = np.zeros((len(f1), 12))
    apart[:, :4] = f1 @ rng.standard_normal((3, 4))
    apart[:, 6:10] = f2 @ rng.standard_normal((3, 4))
    shared = f1 @ rng.standard_normal((3, 12)) + f2 @ rng.standard_normal((3, 12))
    shared[:, 4:] = 0.0  # both factors squeezed into the same 4 coordinates
    records = {}
    for name, X in (("apart", apart), ("shared", shared)):
        coefs = {t: fit_probe(X, inputs, targets[t]).coef_ for t in ("belief", "factors")}
        records[name] = target_subspaces(coefs, groups, n_null=100)
    pair = "factor 0: mess3(x=0.05,a=0.85)|factor 1: mess3(x=0.1,a=0.6)"
    apart_pair, shared_pair = records["apart"]["factors"][pair], records["shared"]["factors"][pair]
    assert apart_pair["dims"] == [2, 2] and apart_pair["overlap"] < 1e-6
    assert apart_pair["overlap"] < apart_pair["null"]["overlap_q05"]
    assert shared_pair["overlap"] > shared_pair["null"]["overlap_q95"]
    assert "belief|factors" in records["apart"]["between_targets"]
