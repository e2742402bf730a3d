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


def test_state_charts_put_states_where_they_live():
    from hmm import load_process
    from hmm.plots import plot_states, state_chart, state_colors

    mess3 = load_process("mess3")
    beliefs = mess3.msp(4).beliefs
    chart = state_chart(mess3)
    assert chart.kind == "simplex" and chart.corner_labels == ("A", "B", "C")
    np.testing.assert_array_equal(chart.xy(beliefs), simplex_xy(beliefs))
    np.testing.assert_array_equal(state_colors(chart, beliefs), belief_colors(beliefs))

    bloch = load_process("bloch_walk")
    states = bloch.msp(4).beliefs
    chart = state_chart(bloch)
    assert chart.kind == "bloch" and chart.corner_labels == () and "r_x" in chart.axis_labels[0]
    np.testing.assert_allclose(np.linalg.norm(chart.outline, axis=1), 1.0)  # the Bloch circle
    np.testing.assert_array_equal(chart.xy(states), states[:, 1:])

    moon = load_process("moon")
    states = moon.msp(6).beliefs
    chart = state_chart(moon, states)
    assert chart.kind == "pca" and chart.outline is None and chart.bounds.shape == (2, 2)
    shifted = chart.xy(states + 0.0)
    np.testing.assert_allclose(shifted.mean(axis=0), 0.0, atol=1e-12)  # centred on the fit set
    np.testing.assert_allclose(chart.xy(states[:3]), shifted[:3])  # a fixed map once fitted
    colors = state_colors(chart, np.vstack([states[:2], np.full((1, 3), np.nan)]))
    assert colors.shape == (3, 3) and np.allclose(colors[2], 0.5)
    fig, ax = plt.subplots()
    plot_states(ax, chart, states, title="moon")
    assert ax.get_title() == "moon" and "principal axis 1" in ax.get_xlabel()
    plt.close(fig)
