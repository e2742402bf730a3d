"""Linear belief probes: a scikit-learn-style estimator and its held-out scores.

The probe is least squares with intercept (ridge optional) from activations X (n, d) to beliefs
Y (n, S), solved from weighted sufficient statistics (`Moments`) so that the Gram matrix of all
residual hooks side by side is computed once per checkpoint and every single hook's probe reads
its diagonal block. Rank-deficient designs (e.g. next-token probabilities, which sum to 1) get the
minimum-norm solution, as with scikit-learn's LinearRegression. `cv_ridge` picks the ridge
strength by cross-validation over groups of fit rows from their moments alone (the study's folds
are subtrees of the fit half, like the held-out split itself).

R² rule for constant coordinates: a belief coordinate whose scored variance is <= 1e-12 x the
largest coordinate variance (e.g. a state that is never occupied) has no defined R²; it is left out
of the mean over coordinates. If every coordinate is constant the R² is NaN (undefined).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hmm.errors import InvalidInput
from probes.activations import CV_FOLDS

CONSTANT_VARIANCE = 1e-12
SOLVE_RCOND = 1e-12
# ridge strengths tried by cross-validation, as factors of the Gram's mean eigenvalue (0: OLS)
RIDGE_GRID = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
GRAM_CHUNK = 16_384


@dataclass
class Moments:
    """Weighted sufficient statistics of (X, Y): total weight, means (d,), (S,), centred cross
    products xx = sum w (x - mx)(x - mx)^T (d, d), xy = sum w (x - mx)(y - my)^T (d, S) and
    yy = sum w (y - my)(y - my)^T (S, S)."""

    weight: float
    x_mean: np.ndarray
    y_mean: np.ndarray
    xx: np.ndarray
    xy: np.ndarray
    yy: np.ndarray

    def select(self, columns: np.ndarray | slice, targets: slice = slice(None)) -> Moments:
        """Moments of the feature subset `columns` and target subset `targets` (same rows)."""
        return Moments(
            self.weight, self.x_mean[columns], self.y_mean[targets],
            self.xx[columns][:, columns], self.xy[columns][:, targets],
            self.yy[targets, targets],
        )


def moments(X: np.ndarray, Y: np.ndarray, weights: np.ndarray | None = None) -> Moments:
    """Moments of X (n, d), Y (n, S), weights (n,) (default 1); float64, chunked over rows."""
    X, Y, w = _validated(X, Y, weights)
    total = w.sum()
    if not total > 0:
        raise InvalidInput("sample weights sum to zero; give at least one row a positive weight")
    x_mean = _weighted_mean(X, w, total)
    y_mean = w @ Y / total
    d = X.shape[1]
    # torch's float64 matmul is ~1.5x numpy's OpenBLAS here, and this Gram is the probe's main cost
    xx = torch.zeros((d, d), dtype=torch.float64)
    xy = torch.zeros((d, Y.shape[1]), dtype=torch.float64)
    yy = torch.zeros((Y.shape[1], Y.shape[1]), dtype=torch.float64)
    mx, my = torch.from_numpy(x_mean), torch.from_numpy(y_mean)
    for start in range(0, len(X), GRAM_CHUNK):
        stop = start + GRAM_CHUNK
        root_w = torch.from_numpy(np.sqrt(w[start:stop]))[:, None]
        xs = (torch.from_numpy(np.ascontiguousarray(X[start:stop])).double() - mx) * root_w
        ys = (torch.from_numpy(Y[start:stop]) - my) * root_w
        xx += xs.T @ xs
        xy += xs.T @ ys
        yy += ys.T @ ys
    return Moments(float(total), x_mean, y_mean, xx.numpy(), xy.numpy(), yy.numpy())


def merge_moments(parts: list[Moments]) -> Moments:
    """Moments of the union of the rows behind `parts` (weights add; centred cross products
    gain the spread of the part means about the joint mean)."""
    total = sum(p.weight for p in parts)
    x_mean = sum(p.weight * p.x_mean for p in parts) / total
    y_mean = sum(p.weight * p.y_mean for p in parts) / total
    xx, xy, yy = (sum(getattr(p, k) for p in parts) for k in ("xx", "xy", "yy"))
    for p in parts:
        dx, dy = p.x_mean - x_mean, p.y_mean - y_mean
        xx = xx + p.weight * np.outer(dx, dx)
        xy = xy + p.weight * np.outer(dx, dy)
        yy = yy + p.weight * np.outer(dy, dy)
    return Moments(total, x_mean, y_mean, xx, xy, yy)


def solve(m: Moments, alpha: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares coef (d, S) and intercept (S,) from moments; ridge `alpha` on coef only."""
    return ridge_path(m, [alpha])[0]


def ridge_path(m: Moments, alphas: list[float]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(coef, intercept) per ridge `alpha` (0: minimum-norm least squares), one eigh for all."""
    if not np.isfinite(m.xx).all():
        raise InvalidInput("activations contain NaN or inf; the checkpoint is probably diverged")
    # symmetric PSD: eigh is several times faster than lstsq's SVD; without ridge, directions
    # with eigenvalue <= SOLVE_RCOND * largest are dropped, which gives the minimum-norm solution
    # torch's eigh follows torch's thread setting; numpy's OpenBLAS spun every core for 20x the
    # CPU time of one on this 384 x 384 matrix
    values, vectors = (t.numpy() for t in torch.linalg.eigh(torch.from_numpy(m.xx)))
    keep = values > SOLVE_RCOND * max(values.max(initial=0.0), np.finfo(float).tiny)
    vectors, values = vectors[:, keep], values[keep]
    projected = vectors.T @ m.xy
    out = []
    for alpha in alphas:
        coef = vectors @ (projected / (values + alpha)[:, None])
        out.append((coef, m.y_mean - m.x_mean @ coef))
    return out


def sse(m: Moments, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """(S,) weighted sum of squared errors of x @ coef + intercept on the rows behind `m`, from the
    moments alone."""
    bias = m.y_mean - m.x_mean @ coef - intercept
    spread = np.diag(m.yy) - 2 * np.einsum("ds,ds->s", m.xy, coef)
    spread += np.einsum("ds,ds->s", coef, m.xx @ coef)
    return spread + m.weight * bias**2


def gram_scale(m: Moments) -> float:
    """The mean eigenvalue of the features' centred Gram: the unit of ridge factors."""
    return float(np.trace(m.xx)) / max(len(m.xx), 1)


def cv_ridge(folds: list[Moments], targets: slice) -> float:
    """Ridge strength chosen by cross-validation over `folds` (moments of disjoint groups of fit
    rows): the RIDGE_GRID factor (times `gram_scale` of the training folds) with the least
    held-out-fold squared error on the `targets` columns, summed over folds. 0 is plain OLS, and
    the answer when there are fewer than two folds to cross-validate over."""
    if len(folds) < 2:
        return 0.0
    errors = np.zeros(len(RIDGE_GRID))
    for i, fold in enumerate(folds):
        train = merge_moments(folds[:i] + folds[i + 1 :])
        scale = gram_scale(train)
        path = ridge_path(train, [factor * scale for factor in RIDGE_GRID])
        for j, (coef, intercept) in enumerate(path):
            errors[j] += sse(fold, coef, intercept)[targets].sum()
    return RIDGE_GRID[int(np.argmin(errors))] if np.isfinite(errors).all() else 0.0


class BeliefProbe:
    """Linear map from activations to beliefs: OLS with intercept (alpha > 0: ridge).

    fit(X (n, d), Y (n, S), sample_weight (n,) | None) -> self; predict(X) -> (n, S);
    score(X, Y, sample_weight) -> R² (mean over non-constant coordinates, module docstring).
    Learned: coef_ (d, S), intercept_ (S,).
    """

    def __init__(self, alpha: float = 0.0) -> None:
        if alpha < 0:
            raise InvalidInput(f"ridge alpha must be >= 0, got {alpha}")
        self.alpha = alpha

    def fit(
        self, X: np.ndarray, Y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> BeliefProbe:
        return self.fit_moments(moments(X, Y, sample_weight))

    def fit_moments(self, m: Moments) -> BeliefProbe:
        """Fit from precomputed sufficient statistics (shared across probes by the study)."""
        self.coef_, self.intercept_ = solve(m, self.alpha)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise InvalidInput("BeliefProbe is not fitted; call fit first")
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != len(self.coef_):
            raise InvalidInput(f"X must have shape (n, {len(self.coef_)}), got {X.shape}")
        return np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_

    def score(self, X: np.ndarray, Y: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
        return r2_score(Y, self.predict(X), sample_weight)


def r2_per_coordinate(
    Y: np.ndarray, Y_pred: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """(S,) weighted R² of each coordinate; NaN where the coordinate is constant (module doc)."""
    Y, Y_pred = np.asarray(Y, dtype=np.float64), np.asarray(Y_pred, dtype=np.float64)
    w = np.ones(len(Y)) if weights is None else np.asarray(weights, dtype=np.float64)
    total = w.sum()
    mean = w @ Y / total
    sst = w @ (Y - mean) ** 2 / total
    sse = w @ (Y - Y_pred) ** 2 / total
    defined = sst > CONSTANT_VARIANCE * max(sst.max(initial=0.0), np.finfo(float).tiny)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(defined, 1.0 - sse / np.where(defined, sst, 1.0), np.nan)


def r2_score(Y: np.ndarray, Y_pred: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean over non-constant coordinates of the weighted R²; NaN if all are constant."""
    return _mean_defined(r2_per_coordinate(Y, Y_pred, weights))


def r2_pooled(Y: np.ndarray, Y_pred: np.ndarray, weights: np.ndarray | None = None) -> float:
    """1 - sum_k SSE_k / sum_k SST_k over belief coordinates k (weighted): every coordinate counts
    by its variance, instead of equally as in the coordinate mean `r2_score`."""
    Y = np.asarray(Y, dtype=np.float64)
    w = np.ones(len(Y)) if weights is None else np.asarray(weights, dtype=np.float64)
    sst = (w @ (Y - w @ Y / w.sum()) ** 2).sum()
    return float(1.0 - (w @ (Y - Y_pred) ** 2).sum() / sst) if sst > 0 else float("nan")


def r2_insample(m: Moments, coef: np.ndarray, intercept: np.ndarray) -> float:
    """R² (coordinate mean, module rule) of the probe on the very rows of `m` it was fit on, from
    the moments alone."""
    sst = np.diag(m.yy)
    errors = sse(m, coef, intercept)
    defined = sst > CONSTANT_VARIANCE * max(sst.max(initial=0.0), np.finfo(float).tiny)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _mean_defined(np.where(defined, 1.0 - errors / np.where(defined, sst, 1.0), np.nan))


def _mean_defined(per: np.ndarray) -> float:
    return float(np.nanmean(per)) if np.isfinite(per).any() else float("nan")


def cell_means(cells: np.ndarray, Y: np.ndarray, weights: np.ndarray, n_cells: int) -> tuple:
    """Weighted mean of Y (n, S) within each cell (n,) ints < n_cells -> (means (C, S) with NaN
    for empty cells, cell weights (C,))."""
    total = np.bincount(cells, weights=weights, minlength=n_cells)
    sums = np.stack(
        [np.bincount(cells, weights=weights * Y[:, k], minlength=n_cells)
         for k in range(Y.shape[1])],
        axis=1,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        return sums / total[:, None], total


def within_cell_deviations(cells: np.ndarray, Y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(n, S): Y (n, S) minus the weighted mean of Y over each row's cell (cells (n,) ints)."""
    means, _ = cell_means(cells, Y, weights, int(cells.max()) + 1)
    return Y - means[cells]


def leave_one_out_cell_means(cells: np.ndarray, Y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(n, S): for each row, the mean of Y over the *other* copies in its cell (counts (n,) are
    copies: one copy of the row itself is left out); the mean over all copies when no other copy
    is there. What a table estimated from a sample predicts for a copy it has not seen."""
    means, total = cell_means(cells, Y, counts, int(cells.max()) + 1)
    others = total[cells] - 1.0
    alone = others < 0.5
    loo = (means[cells] * total[cells][:, None] - Y) / np.where(alone, 1.0, others)[:, None]
    loo[alone] = counts @ Y / counts.sum()
    return loo


def fine_structure(
    deviations: np.ndarray, Y_pred: np.ndarray, cells: np.ndarray, weights: np.ndarray
) -> tuple[float, float | None]:
    """(r2_fine, correlation) of predictions Y_pred (n, S) against the truth's within-cell
    `deviations` (n, S) (`within_cell_deviations` of the truth, same cells and weights).

    The cell means of the truth and of the predictions are removed separately, so a predictor's
    per-cell bias does not count: r2_fine = 1 - sum w |dY - dP|^2 / sum w |dY|^2 (pooled over
    coordinates) is 1 for a predictor that reproduces the variation inside every cell, 0 for one
    that predicts each cell's mean, and unlike 1 - SSE / SSE(cell means) it is not a function of
    the MSE. correlation: weighted Pearson correlation of dY and dP (pooled; None when the
    predictions do not vary within cells, <= CONSTANT_VARIANCE x the truth's variation). The
    caller checks that the truth varies within cells.
    """
    dp = within_cell_deviations(cells, np.asarray(Y_pred, dtype=np.float64), weights)
    ss_true, ss_pred, cross = (np.einsum("n,ns,ns->", weights, a, b)
                               for a, b in ((deviations, deviations), (dp, dp), (deviations, dp)))
    r2 = 1.0 - (ss_true - 2 * cross + ss_pred) / ss_true
    if not ss_pred > CONSTANT_VARIANCE * ss_true:  # predictions constant within cells
        return float(r2), None
    return float(r2), float(cross / np.sqrt(ss_true * ss_pred))


def remainder_beyond(
    features: np.ndarray, Y: np.ndarray, fit_weights: np.ndarray
) -> np.ndarray:
    """(n, S): Y (n, S) minus its least-squares fit (with intercept) on `features` (n, d), the fit
    made on the rows with positive `fit_weights` (n,) only: the part of Y those features do not
    linearly explain, for every row (the held-out rows' remainder uses the fit half's map)."""
    coef, intercept = solve(moments(features, Y, fit_weights))
    return Y - (np.asarray(features, dtype=np.float64) @ coef + intercept)


def r2_of_remainder(
    remainder: np.ndarray, remainder_pred: np.ndarray, weights: np.ndarray
) -> float:
    """1 - sum w |r - r_pred|^2 / sum w |r|^2 (pooled over coordinates) for a remainder r (n, S):
    the share of what the reference predictor (whose remainder r is) gets wrong that the new
    predictions recover. About 0, not about r's mean: the reference is the zero remainder. NaN if
    r is 0 everywhere."""
    ss = weights @ (remainder**2).sum(axis=1)
    if not ss > 0:
        return float("nan")
    return float(1.0 - weights @ ((remainder - remainder_pred) ** 2).sum(axis=1) / ss)


def lookup_predictions(
    cells_fit: np.ndarray, Y_fit: np.ndarray, w_fit: np.ndarray, cells_query: np.ndarray
) -> np.ndarray:
    """OLS with intercept on one-hot cell indicators, fit on (cells_fit, Y_fit, w_fit), predicting
    `cells_query` -> (n_query, S). Closed form of the minimum-norm solution: a cell seen in the fit
    rows gets its weighted fit mean; an unseen cell (an all-zero fit column) the unweighted mean of
    the seen cells' means."""
    n_cells = int(max(cells_fit.max(), cells_query.max())) + 1
    means, weight = cell_means(cells_fit, Y_fit, w_fit, n_cells)
    seen = weight > 0
    means[~seen] = means[seen].mean(axis=0)
    return means[cells_query]


def probe_method(split: dict | None = None) -> str:
    """THE one-sentence description of how a belief probe is fitted and scored, for the report and
    the figure captions alike. split: probes.json "split" ({"kind", "prefix_len", ...})."""
    text = (
        "a linear probe: least squares with intercept, its ridge penalty chosen by "
        f"{CV_FOLDS}-fold cross-validation inside the fit half (0, plain least squares, among the "
        "choices), fitted on half of the prefixes and scored on the other half"
    )
    if split and split.get("kind") == "subtree":
        text += (f", whose first {split.get('prefix_len', 2)} tokens were never fitted (whole "
                 "subtrees held out)")
    elif split and split.get("kind") == "random":
        text += " (a random half of the sequences)"
    return text


def mse(Y: np.ndarray, Y_pred: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Weighted mean squared error over rows, averaged over coordinates."""
    w = np.ones(len(Y)) if weights is None else np.asarray(weights, dtype=np.float64)
    return float(w @ ((np.asarray(Y) - Y_pred) ** 2).mean(axis=1) / w.sum())


def pairwise_distance_correlation(
    true: np.ndarray, *others: np.ndarray, n_points: int = 1000, seed: int = 0
) -> list[float]:
    """Pearson correlation between pairwise Euclidean distances of `true` (n, S) and of each other
    representation (n, k) of the same rows, on a seeded subsample of n_points rows."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(true), size=min(n_points, len(true)), replace=False)
    iu = np.triu_indices(len(idx), k=1)

    def distances(points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64)[idx]
        return np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1))[iu]

    d_true = distances(true)
    return [float(np.corrcoef(d_true, distances(other))[0, 1]) for other in others]


def _validated(X, Y, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X, Y = np.asarray(X), np.ascontiguousarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
        raise InvalidInput(
            f"X must be (n, d) and Y (n, S) with the same n; got {X.shape}, {Y.shape}"
        )
    if len(X) == 0:
        raise InvalidInput("no rows to fit the probe on")
    w = np.ones(len(X)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(X),) or (w < 0).any() or not np.isfinite(w).all():
        raise InvalidInput(f"sample_weight must be ({len(X)},) finite and non-negative")
    return X, Y, w


def _weighted_mean(X: np.ndarray, w: np.ndarray, total: float) -> np.ndarray:
    out = np.zeros(X.shape[1])
    for start in range(0, len(X), GRAM_CHUNK):
        out += w[start : start + GRAM_CHUNK] @ X[start : start + GRAM_CHUNK].astype(np.float64)
    return out / total
