"""The attractor of the belief dynamics: chaos-game sampling and box-counting dimension."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hmm.errors import InvalidInput

if TYPE_CHECKING:
    from hmm.process import GHMM

BURN_IN = 200
WALKERS = 1000


def chaos_game(process: GHMM, n_points: int, seed: int = 0, burn_in: int = BURN_IN) -> np.ndarray:
    """States along sampled sequences after `burn_in` tokens: (n_points, d) float64.

    The chaos game of Jurgens & Crutchfield (2021): filter a long sampled sequence and keep the
    beliefs. For speed the sequence is split over up to WALKERS independent walkers, each burnt in
    from the initial belief; every kept point is a draw from the same stationary mixed-state
    distribution, so the picture equals one long walk's.
    """
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 1:
        raise InvalidInput(f"n_points must be a positive integer; got {n_points!r}")
    walkers = min(WALKERS, int(n_points))
    steps = -(-int(n_points) // walkers)
    tokens, _ = process.sample(walkers, burn_in + steps, seed=seed)
    beliefs = process.beliefs(tokens)[:, burn_in:]
    return beliefs.transpose(1, 0, 2).reshape(-1, process.n_states)[:n_points]


def box_counting_dimension(
    points: np.ndarray, min_level: int = 3, max_level: int = 12, min_fill: float = 20.0,
    right: np.ndarray | None = None,
) -> dict:
    """Box-counting dimension of a point set in the simplex: points (N, S) -> dict.

    Boxes of side 2^-k on the first S-1 belief coordinates (an affine chart of the simplex, which
    does not change dimension), k = 1..max_level. GHMM states (`right` = the process's tau, not
    all ones) live on the plane eta . tau = 1 instead: their chart is the orthonormal coordinates of
    that plane (hmm.belief_dynamics.tangent_basis), shifted and scaled by one factor into [0, 1].
    The fit (least squares of log N(eps) on log 1/eps) uses k >= min_level (coarser boxes see the
    simplex's edges, not the set) where the count is below N / min_fill (enough points per box to
    see the set rather than the sample).
    Sample-based: for a very uneven measure (Mess3) the finest usable scales under-count boxes, so
    read the estimate with its fit range and local slopes.
    Returns {"dimension", "fit_range": [eps_large, eps_small], "scales": [eps], "counts": [N(eps)],
    "local_slopes", "n_points"}; dimension is None when fewer than 3 scales qualify.
    """
    pts = np.asarray(points, dtype=np.float64)
    pts = pts[np.isfinite(pts).all(axis=1)]
    pts = pts[:, :-1] if right is None or np.array_equal(right, 1) else _plane_chart(pts, right)
    n = len(pts)
    levels = np.arange(1, max_level + 1)
    scales_a = 2.0 ** -levels
    counts_a = np.array([_occupied_boxes(pts, int(k)) for k in levels])
    usable = (levels >= min_level) & (counts_a < n / min_fill) & (counts_a > 0)
    with np.errstate(divide="ignore"):
        slopes = np.diff(np.log2(np.maximum(counts_a, 1)))
    result = {
        "dimension": None, "fit_range": None, "scales": scales_a.tolist(),
        "counts": counts_a.tolist(), "local_slopes": slopes.round(4).tolist(), "n_points": n,
    }
    if usable.sum() >= 3:
        x, y = np.log(1 / scales_a[usable]), np.log(counts_a[usable])
        result["dimension"] = round(float(np.polyfit(x, y, 1)[0]), 4) + 0.0
        result["fit_range"] = [float(scales_a[usable].max()), float(scales_a[usable].min())]
    return result


def _plane_chart(points: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Points (N, d) on the plane x . right = 1 -> coordinates (N, d-1) in [0, 1] (one scale for
    every axis, so boxes stay cubes)."""
    from hmm.belief_dynamics import tangent_basis

    chart = points @ tangent_basis(points.shape[1], right)
    if len(chart) == 0:
        return chart
    low = chart.min(axis=0)
    return (chart - low) / max(float((chart - low).max()), np.finfo(float).tiny)


def _occupied_boxes(pts: np.ndarray, k: int) -> int:
    """Number of distinct boxes of side 2^-k holding points (N, D) of [0, 1]^D."""
    if len(pts) == 0:
        return 0
    cells = np.minimum(np.floor(pts * 2**k), 2**k - 1).astype(np.int64)
    if (k + 1) * cells.shape[1] < 63:  # one integer key per box: a 1-D unique is ~10x faster
        keys = cells @ ((2 ** (k + 1)) ** np.arange(cells.shape[1], dtype=np.int64))
        return len(np.unique(keys))
    return len(np.unique(cells, axis=0))
