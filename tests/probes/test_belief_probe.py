"""BeliefProbe against scikit-learn, R² rules, the shuffle control and the distance comparison."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.metrics import r2_score as sk_r2

from hmm.errors import InvalidInput
from probes.belief_probe import (
    RIDGE_GRID,
    BeliefProbe,
    cv_ridge,
    fine_structure,
    leave_one_out_cell_means,
    lookup_predictions,
    merge_moments,
    moments,
    mse,
    pairwise_distance_correlation,
    r2_insample,
    r2_of_remainder,
    r2_per_coordinate,
    r2_pooled,
    r2_score,
    remainder_beyond,
    sse,
    within_cell_deviations,
)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6)) * [1, 2, 3, 0.5, 1, 10] + 5
    Y = X @ rng.normal(size=(6, 3)) + 1.5 + rng.normal(scale=0.3, size=(400, 3))
    w = rng.uniform(0.1, 2.0, size=400)
    return X, Y, w


@pytest.mark.parametrize("weighted", [False, True])
def test_ols_matches_sklearn(data, weighted):
    X, Y, w = data
    sw = w if weighted else None
    ours = BeliefProbe().fit(X, Y, sample_weight=sw)
    ref = LinearRegression().fit(X, Y, sample_weight=sw)
    np.testing.assert_allclose(ours.coef_, ref.coef_.T, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(ours.score(X, Y, sw), sk_r2(Y, ref.predict(X), sample_weight=sw))


def test_ridge_matches_sklearn(data):
    X, Y, w = data
    ours = BeliefProbe(alpha=50.0).fit(X, Y, sample_weight=w)
    ref = Ridge(alpha=50.0).fit(X, Y, sample_weight=w)
    np.testing.assert_allclose(ours.coef_, ref.coef_.T, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-8, atol=1e-10)


def test_rank_deficient_features_match_sklearn_predictions():
    # next-token distributions sum to 1: with an intercept the design is rank deficient
    rng = np.random.default_rng(1)
    P = rng.dirichlet(np.ones(3), size=300)
    Y = P @ rng.normal(size=(3, 3))
    ours = BeliefProbe().fit(P, Y)
    ref = LinearRegression().fit(P, Y)
    np.testing.assert_allclose(ours.predict(P), ref.predict(P), atol=1e-9)
    assert ours.score(P, Y) == pytest.approx(1.0, abs=1e-9)


def test_exact_linear_target_scores_one_and_shuffle_scores_zero():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(20_000, 5))
    Y = X @ rng.normal(size=(5, 3)) - 0.7
    fit, held = slice(0, 10_000), slice(10_000, None)
    probe = BeliefProbe().fit(X[fit], Y[fit])
    assert probe.score(X[held], Y[held]) == pytest.approx(1.0, abs=1e-12)
    control = BeliefProbe().fit(X[fit], Y[fit][rng.permutation(10_000)])
    assert abs(control.score(X[held], Y[held])) < 0.01


def test_zero_variance_coordinate_is_left_out_not_divided_by():
    rng = np.random.default_rng(3)
    Y = np.column_stack([rng.random(50), np.full(50, 0.25), rng.random(50)])
    pred = Y + rng.normal(scale=0.1, size=Y.shape)
    per = r2_per_coordinate(Y, pred)
    assert np.isnan(per[1]) and np.isfinite(per[[0, 2]]).all()
    assert r2_score(Y, pred) == pytest.approx(per[[0, 2]].mean())
    assert np.isnan(r2_score(np.full((5, 2), 0.5), np.zeros((5, 2))))


def test_r2_and_mse_match_sklearn_weighted(data):
    X, Y, w = data
    pred = Y + np.random.default_rng(4).normal(size=Y.shape)
    assert r2_score(Y, pred, w) == pytest.approx(sk_r2(Y, pred, sample_weight=w))
    assert mse(Y, pred, w) == pytest.approx(np.average(((Y - pred) ** 2).mean(1), weights=w))


def test_moments_select_equals_moments_of_columns(data):
    X, Y, w = data
    full, part = moments(X, Y, w).select(slice(1, 4)), moments(X[:, 1:4], Y, w)
    np.testing.assert_allclose(full.xx, part.xx)
    np.testing.assert_allclose(full.xy, part.xy)
    np.testing.assert_allclose(full.x_mean, part.x_mean)


def test_bad_input_raises_invalid_input(data):
    X, Y, _ = data
    with pytest.raises(InvalidInput, match="not fitted"):
        BeliefProbe().predict(X)
    with pytest.raises(InvalidInput, match="same n"):
        BeliefProbe().fit(X, Y[:10])
    with pytest.raises(InvalidInput, match="alpha"):
        BeliefProbe(alpha=-1.0)
    with pytest.raises(InvalidInput, match="shape"):
        BeliefProbe().fit(X, Y).predict(X[:, :2])
    with pytest.raises(InvalidInput, match="sample_weight"):
        BeliefProbe().fit(X, Y, sample_weight=-np.ones(len(X)))


def test_distance_correlation():
    rng = np.random.default_rng(5)
    B = rng.dirichlet(np.ones(3), size=500)
    same, scaled, noise = pairwise_distance_correlation(B, B, 3 * B + 1, rng.random((500, 3)))
    assert same == pytest.approx(1.0) and scaled == pytest.approx(1.0)
    assert abs(noise) < 0.1


def test_pooled_r2_is_one_minus_total_sse_over_total_sst(data):
    _, Y, w = data
    Y = Y * [1.0, 10.0, 0.1]  # coordinates of very different variance
    pred = Y + np.random.default_rng(6).normal(scale=0.5, size=Y.shape)
    mean = (w[:, None] * Y).sum(0) / w.sum()
    sse = sum(w[i] * ((Y[i] - pred[i]) ** 2).sum() for i in range(len(Y)))
    sst = sum(w[i] * ((Y[i] - mean) ** 2).sum() for i in range(len(Y)))
    assert r2_pooled(Y, pred, w) == pytest.approx(1 - sse / sst)
    assert r2_pooled(Y, pred, w) != pytest.approx(r2_score(Y, pred, w))


@pytest.mark.parametrize("alpha", [0.0, 300.0])
def test_insample_r2_from_moments_equals_scoring_the_fit_rows(data, alpha):
    X, Y, w = data
    m = moments(X, Y, w)
    probe = BeliefProbe(alpha).fit_moments(m)
    insample = r2_insample(m, probe.coef_, probe.intercept_)
    assert insample == pytest.approx(probe.score(X, Y, w), abs=1e-12)


def test_merged_moments_and_sse_equal_the_rows_themselves(data):
    X, Y, w = data
    parts = [moments(X[i::3], Y[i::3], w[i::3]) for i in range(3)]
    merged, whole = merge_moments(parts), moments(X, Y, w)
    for key in ("weight", "x_mean", "y_mean", "xx", "xy", "yy"):
        np.testing.assert_allclose(getattr(merged, key), getattr(whole, key), rtol=1e-10)
    coef = np.random.default_rng(2).normal(size=(6, 3))
    intercept = np.array([0.3, -1.0, 2.0])
    direct = w @ (Y - X @ coef - intercept) ** 2
    np.testing.assert_allclose(sse(whole, coef, intercept), direct, rtol=1e-9)


def _brute_force_cv(X, Y, w, groups):
    """Cross-validated SSE per RIDGE_GRID factor, each fold refit from its rows."""
    errors = []
    for factor in RIDGE_GRID:
        total = 0.0
        for g in np.unique(groups):
            train, test = groups != g, groups == g
            m = moments(X[train], Y[train], w[train])
            probe = BeliefProbe(factor * np.trace(m.xx) / X.shape[1]).fit_moments(m)  # by hand
            total += (w[test] @ (Y[test] - probe.predict(X[test])) ** 2).sum()
        errors.append(total)
    return np.array(errors)


@pytest.mark.parametrize("noise", [0.01, 3.0])
def test_cv_ridge_matches_refitting_every_fold(noise):
    # 60 rows, 40 near-collinear features: with much noise OLS overfits and ridge must win
    rng = np.random.default_rng(3)
    base = rng.normal(size=(60, 4))
    X = base @ rng.normal(size=(4, 40)) + 0.05 * rng.normal(size=(60, 40))
    Y = base @ rng.normal(size=(4, 3)) + noise * rng.normal(size=(60, 3))
    w = rng.uniform(0.5, 1.5, size=60)
    groups = np.arange(60) % 5
    folds = [moments(X[groups == g], Y[groups == g], w[groups == g]) for g in range(5)]
    chosen = cv_ridge(folds, slice(None))
    assert cv_ridge(folds[:1], slice(None)) == 0.0  # one fold: nothing to cross-validate over
    brute = _brute_force_cv(X, Y, w, groups)
    assert chosen == RIDGE_GRID[int(np.argmin(brute))]
    if noise > 1:
        assert chosen > 0 and brute.min() < 0.9 * brute[0]


def test_lookup_is_ols_on_one_hot_cells_with_unseen_cells():
    rng = np.random.default_rng(7)
    cells_fit = rng.integers(0, 6, size=300)  # cells 6 and 7 are never fitted
    Y_fit = rng.dirichlet(np.ones(3), size=300)
    w_fit = rng.uniform(0.5, 2.0, size=300)
    query = np.concatenate([np.arange(8), rng.integers(0, 8, size=50)])
    onehot = np.eye(8)
    ols = BeliefProbe().fit(onehot[cells_fit], Y_fit, sample_weight=w_fit)
    np.testing.assert_allclose(
        lookup_predictions(cells_fit, Y_fit, w_fit, query), ols.predict(onehot[query]), atol=1e-10
    )
    # a seen cell predicts its weighted fit mean
    c = cells_fit == 2
    np.testing.assert_allclose(
        lookup_predictions(cells_fit, Y_fit, w_fit, np.array([2]))[0],
        (w_fit[c, None] * Y_fit[c]).sum(0) / w_fit[c].sum(),
    )


def _cell_means_by_loop(cells, Y, w):
    """Each row's weighted cell mean, one cell at a time (independent of cell_means)."""
    out = np.empty_like(Y)
    for c in np.unique(cells):
        rows = cells == c
        out[rows] = (w[rows, None] * Y[rows]).sum(0) / w[rows].sum()
    return out


@pytest.fixture
def cells_data():
    rng = np.random.default_rng(8)
    cells = rng.integers(0, 5, size=300)
    Y, w = rng.random((300, 3)), rng.uniform(0.1, 1.0, size=300)
    return cells, Y, w


def test_within_cell_deviations_by_brute_force(cells_data):
    cells, Y, w = cells_data
    np.testing.assert_allclose(within_cell_deviations(cells, Y, w),
                               Y - _cell_means_by_loop(cells, Y, w))


def test_fine_structure_against_a_loop_over_cells(cells_data):
    cells, Y, w = cells_data
    pred = Y + np.random.default_rng(9).normal(scale=0.1, size=Y.shape) + 0.3 * cells[:, None]
    dy = Y - _cell_means_by_loop(cells, Y, w)
    dp = pred - _cell_means_by_loop(cells, pred, w)
    r2, corr = fine_structure(within_cell_deviations(cells, Y, w), pred, cells, w)
    assert r2 == pytest.approx(1 - (w[:, None] * (dy - dp) ** 2).sum() / (w[:, None] * dy**2).sum())
    expected = (w[:, None] * dy * dp).sum() / np.sqrt((w[:, None] * dy**2).sum()
                                                      * (w[:, None] * dp**2).sum())
    assert corr == pytest.approx(expected)


def test_fine_structure_is_not_a_function_of_the_mse(cells_data):
    """Two predictors with the same MSE: one off by a constant in every cell (the deviations
    are exact), one off by noise; the fine-structure score tells them apart. A predictor of the
    cell means scores 0 (and its deviations have no correlation to report)."""
    cells, Y, w = cells_data
    dev = within_cell_deviations(cells, Y, w)
    shift = np.array([0.1, -0.2, 0.05])
    noise = np.random.default_rng(1).normal(size=Y.shape)
    biased = Y + shift
    noisy = Y + noise * np.sqrt(mse(Y, biased, w) / mse(Y, Y + noise, w))
    assert mse(Y, biased, w) == pytest.approx(mse(Y, noisy, w))
    assert fine_structure(dev, biased, cells, w) == pytest.approx((1.0, 1.0))
    r2_noisy, _ = fine_structure(dev, noisy, cells, w)
    assert r2_noisy < 0.9  # the same MSE, a different score
    assert fine_structure(dev, _cell_means_by_loop(cells, Y, w), cells, w) == (
        pytest.approx(0.0, abs=1e-12), None)


def test_remainder_beyond_is_the_fit_half_residual(data):
    """The remainder is Y minus its least-squares fit on the features, fitted on the rows with
    positive weight only (numpy lstsq with an intercept column, independently)."""
    X, Y, w = data
    fit = np.arange(len(X)) % 3 != 0
    weights = np.where(fit, w, 0.0)
    design = np.column_stack([np.ones(len(X)), X])
    root = np.sqrt(w[fit])[:, None]
    beta = np.linalg.lstsq(design[fit] * root, Y[fit] * root, rcond=None)[0]
    np.testing.assert_allclose(remainder_beyond(X, Y, weights), Y - design @ beta, atol=1e-8)


def test_r2_of_remainder_is_measured_about_zero():
    r = np.array([[1.0, -1.0], [1.0, 0.5]])  # mean not zero: the reference is 0, not the mean
    assert r2_of_remainder(r, np.zeros_like(r), np.ones(2)) == 0.0
    assert r2_of_remainder(r, r, np.ones(2)) == 1.0
    assert r2_of_remainder(r, r / 2, np.array([1.0, 3.0])) == pytest.approx(0.75)
    assert np.isnan(r2_of_remainder(np.zeros((2, 2)), np.ones((2, 2)), np.ones(2)))


def test_leave_one_out_cell_means_by_brute_force():
    """Each copy predicted from the other copies of its cell; a copy alone in its cell gets the
    mean over all copies."""
    rng = np.random.default_rng(3)
    cells = np.array([0, 0, 1, 2, 2, 2])
    counts = np.array([1.0, 2.0, 1.0, 1.0, 1.0, 3.0])
    Y = rng.random((6, 2))
    expected = np.empty_like(Y)
    for i in range(6):
        others = counts[cells == cells[i]].sum() - 1
        if others < 0.5:
            expected[i] = counts @ Y / counts.sum()
        else:
            mask = cells == cells[i]
            expected[i] = ((counts[mask] @ Y[mask]) - Y[i]) / others
    np.testing.assert_allclose(leave_one_out_cell_means(cells, Y, counts), expected)


def test_a_sampled_oracle_does_not_score_singleton_cells_as_known():
    """Beliefs that the cells say nothing about, one sampled row per cell: the in-sample table of
    cell means scores 1 (each row is its own mean), the leave-one-out table at most 0. With two
    copies per cell and beliefs fixed by the cell, both score 1."""
    from probes.belief_study import oracle_r2

    rng = np.random.default_rng(4)
    Y = rng.dirichlet(np.ones(3), size=200)
    singletons, ones = np.arange(200), np.ones(200)
    assert oracle_r2(singletons, Y, ones) == pytest.approx(1.0)
    assert oracle_r2(singletons, Y, ones, leave_one_out=True) <= 0.0
    determined = np.repeat(np.arange(100), 2)
    Y2 = rng.dirichlet(np.ones(3), size=100)[determined]
    assert oracle_r2(determined, Y2, ones, leave_one_out=True) == pytest.approx(1.0)
