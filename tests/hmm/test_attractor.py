"""Chaos game and box-counting dimension (hmm/fractal.py)."""

import numpy as np

from hmm import load_process
from hmm.fractal import box_counting_dimension


def test_chaos_game_points_are_beliefs_on_the_attractor():
    p = load_process("rrxor")
    points = p.chaos_game(5000, seed=1)
    assert points.shape == (5000, 5)
    np.testing.assert_allclose(points.sum(axis=1), 1.0)
    # every chaos-game belief is one of the mixed states the MSP reaches
    known = {tuple(b) for b in np.round(p.msp(12).unique(decimals=8).beliefs, 8)}
    assert {tuple(b) for b in np.round(points, 8)} <= known
    assert np.array_equal(points, p.chaos_game(5000, seed=1))


def test_box_counting_recovers_known_dimensions():
    rng = np.random.default_rng(0)
    t = rng.random(50_000)
    line = np.stack([t, 1 - t, np.zeros_like(t)], axis=1)
    area = rng.dirichlet(np.ones(3), size=50_000)
    assert abs(box_counting_dimension(line)["dimension"] - 1.0) < 0.05
    result = box_counting_dimension(area)
    assert abs(result["dimension"] - 2.0) < 0.06
    assert result["fit_range"][0] > result["fit_range"][1]
    assert abs(box_counting_dimension(np.eye(3)[[0, 1, 2] * 100])["dimension"]) < 1e-9  # finite set
    assert box_counting_dimension(np.eye(3)[:2])["dimension"] is None  # too few points to fit
