"""The attractor of the belief dynamics: chaos-game sampling and box-counting dimension."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hmm.errors import InvalidInput

if TYPE_CHECKING:
    from hmm.process import HMM

BURN_IN = 200
WALKERS = 1000


def chaos_game(process: HMM, n_points: int, seed: int = 0, burn_in: int = BURN_IN) -> np.ndarray:
    """Beliefs along sampled sequences after `burn_in` tokens: (n_points, S) float64.

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
    points: np.ndarray, min_level: int = 1, max_level: int = 12, min_fill: float = 10.0
) -> dict:
    """Box-counting dimension of a point set in the simplex: points (N, S) -> dict.

    Boxes of side 2^-k on the first S-1 belief coordinates (an affine chart of the simplex, which
    does not change dimension), k = min_level..max_level. The fit uses the scales where the count is
    below N / min_fill (enough points per box to see the set, not the sample) and above 1.
    Returns {"dimension", "fit_range": [eps_large, eps_small], "scales": [eps], "counts": [N(eps)],
    "n_points"}; dimension is None when fewer than 3 scales qualify.
    """
    pts = np.asarray(points, dtype=np.float64)
    pts = pts[np.isfinite(pts).all(axis=1)][:, :-1]
    n = len(pts)
    scales, counts = [], []
    for k in range(min_level, max_level + 1):
        cells = np.floor(pts * 2**k).astype(np.int64)
        counts.append(len(np.unique(cells, axis=0)) if n else 0)
        scales.append(2.0**-k)
    scales_a, counts_a = np.array(scales), np.array(counts)
    usable = (counts_a < n / min_fill) & (counts_a > 1)
    result = {
        "dimension": None, "fit_range": None, "scales": scales, "counts": counts, "n_points": n,
    }
    if usable.sum() >= 3:
        x, y = np.log(1 / scales_a[usable]), np.log(counts_a[usable])
        slope = np.polyfit(x, y, 1)[0]
        result["dimension"] = float(slope)
        result["fit_range"] = [float(scales_a[usable].max()), float(scales_a[usable].min())]
    return result
