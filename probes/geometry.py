"""How many dimensions activations spend, and how read-out subspaces sit to each other.

Effective dimension: probability-weighted PCA of a hook's activations over the probe's rows (the
eigenvalues of the weighted covariance), the cumulative explained-variance fraction, and the
number of principal directions needed to reach 90 / 95 / 99 % of the variance (the analysis of
the factored-representations paper, Shai et al. 2026, arXiv 2602.02385, and simplexity's PR
#162). A belief set's own affine dimension (the rank of its covariance) is the yardstick: a
network that spends exactly the belief geometry needs that many directions.

Subspaces: principal angles between two subspaces (Björck & Golub 1973: the singular values of
Q_a^T Q_b are the cosines), an overlap index (the mean squared cosine, ||Q_a^T Q_b||_F^2 / min(p,
q): 1 when one subspace contains the other, 0 when they are orthogonal) and its null, subspaces
of the same dimensions drawn uniformly at random in the same width (expected overlap
p q / (d min(p, q))). A group of targets' read-out subspace is the column space of the probe's
coefficients for those targets (the directions whose change moves the read-out).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hmm.errors import InvalidInput

LEVELS = {"90": 0.90, "95": 0.95, "99": 0.99}
RANK_TOL = 1e-9  # relative: directions with variance (or singular value) <= this x the largest
NULL_DRAWS = 200
CHUNK = 16_384


@dataclass
class PCA:
    """Weighted PCA: variances (k,) descending, components (k, d) orthonormal rows, mean (d,)."""

    variances: np.ndarray
    components: np.ndarray
    mean: np.ndarray


def weighted_covariance(X: np.ndarray, weights: np.ndarray | None = None) -> tuple:
    """(mean (d,), covariance (d, d)) of the rows of X (n, d) with weights (n,) (default 1),
    normalised by the total weight; float64, chunked over rows so X may stay float32."""
    X = np.asarray(X)
    if X.ndim != 2 or len(X) == 0:
        raise InvalidInput(f"activations must be a non-empty (n, d) array, got shape {X.shape}")
    w = np.ones(len(X)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(X),) or (w < 0).any() or not np.isfinite(w).all() or not w.sum() > 0:
        raise InvalidInput(f"weights must be ({len(X)},) finite, non-negative, not all zero")
    total = w.sum()
    mean = np.zeros(X.shape[1])
    for start in range(0, len(X), CHUNK):
        mean += w[start : start + CHUNK] @ X[start : start + CHUNK].astype(np.float64)
    mean /= total
    cov = torch.zeros((X.shape[1], X.shape[1]), dtype=torch.float64)
    centre = torch.from_numpy(mean)
    for start in range(0, len(X), CHUNK):
        root_w = torch.from_numpy(np.sqrt(w[start : start + CHUNK]))[:, None]
        rows = torch.from_numpy(np.ascontiguousarray(X[start : start + CHUNK])).double()
        rows = (rows - centre) * root_w
        cov += rows.T @ rows
    return mean, (cov / total).numpy()


def pca_of_covariance(cov: np.ndarray, mean: np.ndarray | None = None) -> PCA:
    """PCA from a covariance (d, d): eigenvalues clipped at 0, descending."""
    if not np.isfinite(cov).all():
        raise InvalidInput("activations contain NaN or inf; the checkpoint is probably diverged")
    values, vectors = (t.numpy() for t in torch.linalg.eigh(torch.from_numpy(cov)))
    order = np.argsort(values)[::-1]
    mean = np.zeros(len(cov)) if mean is None else mean
    return PCA(np.clip(values[order], 0.0, None), vectors[:, order].T, mean)


def weighted_pca(X: np.ndarray, weights: np.ndarray | None = None) -> PCA:
    """Probability-weighted PCA of X (n, d): the eigen-decomposition of the weighted covariance."""
    mean, cov = weighted_covariance(X, weights)
    return pca_of_covariance(cov, mean)


def explained_variance(variances: np.ndarray) -> np.ndarray:
    """Cumulative explained-variance fraction (k,) of variances (k,) in descending order, ending
    where it reaches 1 within RANK_TOL (later entries would all be 1); [] for zero variance."""
    variances = np.asarray(variances, dtype=np.float64)
    total = variances.sum()
    if not total > 0:
        return np.zeros(0)
    cumulative = np.minimum(np.cumsum(variances) / total, 1.0)
    return cumulative[: int(np.argmax(cumulative >= 1.0 - RANK_TOL)) + 1]


def effective_dim(cumulative: np.ndarray) -> dict[str, int | None]:
    """{"90", "95", "99"}: the fewest principal directions whose cumulative fraction reaches each
    level (None when there is no variance)."""
    cumulative = np.asarray(cumulative)
    if len(cumulative) == 0:
        return {key: None for key in LEVELS}
    # a tolerance so that exactly 90 % counts as reaching 90 % despite rounding
    return {key: int(np.argmax(cumulative >= level - 1e-12) + 1) for key, level in LEVELS.items()}


def affine_dim(variances: np.ndarray) -> int:
    """Number of principal directions with variance above RANK_TOL x the largest: the dimension
    of the smallest affine subspace holding the (weighted) points."""
    variances = np.asarray(variances, dtype=np.float64)
    top = variances.max(initial=0.0)
    return int((variances > RANK_TOL * top).sum()) if top > 0 else 0


def spectrum_record(variances: np.ndarray) -> dict:
    """{"explained_variance": cumulative list, "effective_dim": {"90", "95", "99"},
    "affine_dim"} for probes.json."""
    cumulative = explained_variance(variances)
    return {
        "explained_variance": [float(c) for c in cumulative],
        "effective_dim": effective_dim(cumulative),
        "affine_dim": affine_dim(variances),
    }


# ---- subspaces -----------------------------------------------------------------------------------
def orthonormal_basis(A: np.ndarray) -> np.ndarray:
    """Orthonormal basis (d, r) of the column space of A (d, k); r = numerical rank (RANK_TOL)."""
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2:
        raise InvalidInput(f"a subspace is given by a (width, k) matrix, got shape {A.shape}")
    if A.shape[1] == 0 or not np.abs(A).max(initial=0.0) > 0:
        return np.zeros((A.shape[0], 0))
    u, s, _ = np.linalg.svd(A, full_matrices=False)
    return u[:, s > RANK_TOL * s[0]]


def principal_angles(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Principal angles (radians, ascending, min(p, q) of them) between the column spaces of
    A (d, ·) and B (d, ·) of ranks p and q (Björck & Golub 1973)."""
    Qa, Qb = orthonormal_basis(A), orthonormal_basis(B)
    if Qa.shape[0] != Qb.shape[0]:
        raise InvalidInput(f"subspaces live in different widths: {Qa.shape[0]} vs {Qb.shape[0]}")
    cosines = np.linalg.svd(Qa.T @ Qb, compute_uv=False)
    return np.arccos(np.clip(cosines, -1.0, 1.0))


def overlap(A: np.ndarray, B: np.ndarray) -> float:
    """Mean squared cosine of the principal angles, ||Q_a^T Q_b||_F^2 / min(p, q), in [0, 1]."""
    angles = principal_angles(A, B)
    return float(np.mean(np.cos(angles) ** 2)) if len(angles) else float("nan")


def random_overlaps(width: int, p: int, q: int, n_draws: int = NULL_DRAWS, seed: int = 0):
    """(n_draws,) overlaps of independent uniformly random p- and q-dimensional subspaces of
    R^width (Gaussian matrices span Haar-random subspaces)."""
    if not (1 <= p <= width and 1 <= q <= width):
        raise InvalidInput(f"subspace dimensions {p}, {q} must be between 1 and the width {width}")
    rng = np.random.default_rng(seed)
    return np.array([
        overlap(rng.standard_normal((width, p)), rng.standard_normal((width, q)))
        for _ in range(n_draws)
    ])


def compare_subspaces(A: np.ndarray, B: np.ndarray, n_null: int = NULL_DRAWS, seed: int = 0):
    """Principal angles (degrees), overlap and its random-subspace null for column spaces of
    A (d, ·) and B (d, ·): {"dims", "width", "angles_deg", "overlap", "null": {"overlap_mean",
    "overlap_q05", "overlap_q95", "overlap_expected", "n_draws"}}."""
    p, q = orthonormal_basis(A).shape[1], orthonormal_basis(B).shape[1]
    width = int(np.asarray(A).shape[0])
    record = {"dims": [p, q], "width": width,
              "angles_deg": [float(a) for a in np.degrees(principal_angles(A, B))],
              "overlap": overlap(A, B) if p and q else None, "null": None}
    if p and q:
        draws = random_overlaps(width, p, q, n_null, seed)
        record["null"] = {
            "overlap_mean": float(draws.mean()),
            "overlap_q05": float(np.quantile(draws, 0.05)),
            "overlap_q95": float(np.quantile(draws, 0.95)),
            "overlap_expected": p * q / (width * min(p, q)),
            "n_draws": int(n_null),
        }
    return record


def fit_probe(X: np.ndarray, inputs, targets: np.ndarray | None = None):
    """The probe as `beliefgeo probe` fits it, from X (R, d) per probe row to `targets` (R, k)
    (default the beliefs): the fit half, ridge chosen by cross-validation over the fit half's
    folds (probes.belief_probe.cv_ridge). Returns the fitted BeliefProbe with two more
    attributes: ridge_factor_, and encoding_ (d, k), the least-squares map from targets to
    activations on the same rows (Cov(X, Y) Cov(Y)^+: how the activations vary with them)."""
    from probes.belief_probe import BeliefProbe, cv_ridge, gram_scale, merge_moments, moments

    Y = inputs.beliefs if targets is None else np.asarray(targets, dtype=np.float64)
    folds = []
    for weights in inputs.fold_count:
        rows = np.flatnonzero(weights > 0)
        folds.append(moments(X[rows], Y[rows], weights[rows]))
    fit = merge_moments(folds)
    ridge = cv_ridge(folds, slice(None))
    probe = BeliefProbe(ridge * gram_scale(fit)).fit_moments(fit)
    probe.ridge_factor_ = ridge
    probe.encoding_ = fit.xy @ np.linalg.pinv(fit.yy, rcond=RANK_TOL, hermitian=True)
    return probe


def readout_subspaces(coef: np.ndarray, groups: dict[str, np.ndarray | slice]) -> dict:
    """{group: coef[:, columns]} for the probe coefficients coef (d, targets) of each group of
    target columns (e.g. a product's factor beliefs side by side)."""
    coef = np.asarray(coef, dtype=np.float64)
    return {name: coef[:, columns] for name, columns in groups.items()}


def target_subspaces(
    coefs: dict[str, np.ndarray], groups: dict[str, dict[str, slice]], n_null: int = NULL_DRAWS,
    seed: int = 0,
) -> dict[str, dict]:
    """Read-out geometry of grouped probe targets (hmm's `probe_targets` / `target_groups`):
    coefs {target: probe coefficients (d, k)}; groups {target: {group: column slice}}.
    {target: {"a|b": record}} for every target with two or more groups (a product's factors, a
    mixture's components), and "between_targets" {"s|t": record} for every pair of targets (a
    mixture's component posterior against its belief)."""
    out = {name: group_subspaces(coefs[name], parts, n_null, seed)
           for name, parts in groups.items() if name in coefs and len(parts) > 1}
    names = list(coefs)
    if len(names) > 1:
        out["between_targets"] = {
            f"{a}|{b}": compare_subspaces(coefs[a], coefs[b], n_null, seed)
            for i, a in enumerate(names) for b in names[i + 1 :]
        }
    return out


def group_subspaces(
    coef: np.ndarray, groups: dict[str, np.ndarray | slice], n_null: int = NULL_DRAWS,
    seed: int = 0,
) -> dict[str, dict]:
    """`compare_subspaces` for every pair of groups' read-out subspaces: {"a|b": record}."""
    spaces = readout_subspaces(coef, groups)
    names = list(spaces)
    return {
        f"{a}|{b}": compare_subspaces(spaces[a], spaces[b], n_null, seed)
        for i, a in enumerate(names) for b in names[i + 1 :]
    }


def hook_spectra(activations: dict[str, np.ndarray], weights: np.ndarray) -> dict[str, dict]:
    """`spectrum_record` of each hook's activations (R, d) over the same rows with weights (R,)
    (the probe rows and their prefix probabilities): {hook: record}."""
    return {hook: spectrum_record(pca_of_covariance(weighted_covariance(X, weights)[1]).variances)
            for hook, X in activations.items()}
