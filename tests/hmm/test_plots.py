"""Simplex projection, belief colours and the simplex scatter plot."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hmm.plots import belief_colors, plot_simplex, simplex_xy  # noqa: E402


def test_ternary_projection_puts_corners_and_centre_in_place():
    xy = simplex_xy(np.vstack([np.eye(3), np.ones(3) / 3]))
    np.testing.assert_allclose(xy[:3], [[0, 0], [1, 0], [0.5, np.sqrt(3) / 2]], atol=1e-12)
    np.testing.assert_allclose(xy[3], [0.5, np.sqrt(3) / 6], atol=1e-12)
    five = simplex_xy(np.eye(5))
    np.testing.assert_allclose(np.linalg.norm(five, axis=1), 1.0)  # regular pentagon corners


def test_colours_are_rgb_beliefs_for_three_states():
    b = np.array([[0.2, 0.3, 0.5], [np.nan, np.nan, np.nan]])
    rgb = belief_colors(b)
    np.testing.assert_allclose(rgb[0], b[0])
    np.testing.assert_allclose(rgb[1], 0.5)
    four = belief_colors(np.random.default_rng(0).dirichlet(np.ones(4), size=10))
    assert four.shape == (10, 3) and (four >= 0).all() and (four <= 1).all()


def test_plot_simplex_draws_points_and_outline():
    fig, ax = plt.subplots()
    out = plot_simplex(ax, np.random.default_rng(0).dirichlet(np.ones(3), size=50), title="t")
    assert out is ax and ax.get_title() == "t" and len(ax.collections) == 1
    plt.close(fig)
