"""Rotatable 3-D views of belief sets: ground truth beside the probe's predictions (plotly).

A 4-state belief lives in a tetrahedron, a 3-D object that a flat projection folds over itself.
Coordinates: for S = 4 the fixed regular tetrahedron (corner k at vertex k, the same for truth
and prediction, so the two panels line up); otherwise the top three probability-weighted
principal axes of the true points (probes.geometry.weighted_pca), with the predictions projected
on the same axes (e.g. a GHMM's states, or beliefs of more than four states). Points are
coloured by their true belief (hmm.plots.belief_colors) in both panels.

The output is an HTML fragment with plotly's JavaScript inlined (about 4.6 MB once per page), so a
report that embeds it opens with no network; pass include_plotlyjs=False for the second and later
views of one page.
"""

from __future__ import annotations

import numpy as np

from hmm.errors import InvalidInput
from hmm.plots import belief_colors
from probes.geometry import weighted_pca

MAX_POINTS = 3000
TETRAHEDRON = np.array([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])


def coordinates_3d(
    true: np.ndarray, predicted: np.ndarray, weights: np.ndarray | None = None,
    simplex: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray | None]:
    """(true (n, 3), predicted (n, 3), axis titles, corners (S, 3) or None) per the module doc;
    simplex=False (a GHMM's quasi-probability states) always takes the principal axes."""
    if true.shape[-1] == 4 and simplex:
        return true @ TETRAHEDRON, predicted @ TETRAHEDRON, ["x", "y", "z"], TETRAHEDRON
    pca = weighted_pca(true, weights)
    axes = pca.components[:3]
    pad = 3 - len(axes)
    share = pca.variances[:3] / max(pca.variances.sum(), np.finfo(float).tiny)
    titles = [f"PC{k + 1} ({100 * share[k]:.0f} %)" for k in range(len(axes))] + [""] * pad
    axes = np.vstack([axes, np.zeros((pad, true.shape[1]))])
    return (true - pca.mean) @ axes.T, (predicted - pca.mean) @ axes.T, titles, None


def belief_view_3d(
    true: np.ndarray,
    predicted: np.ndarray,
    labels: list[str] | None = None,
    title: str = "",
    subtitle: str = "probe prediction (held out)",
    include_plotlyjs: bool = True,
    max_points: int = MAX_POINTS,
    seed: int = 0,
    simplex: bool = True,
) -> str:
    """An HTML fragment (a div and its script) with two rotatable 3-D scatter plots: true
    beliefs (n, S) and their predictions (n, S), a seeded subsample of max_points rows.
    simplex: the states are probabilities (a classical HMM's beliefs), so 4 states may be drawn
    in the tetrahedron."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    true, predicted = np.asarray(true, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    if true.ndim != 2 or true.shape != predicted.shape or true.shape[1] < 3 or len(true) == 0:
        raise InvalidInput(
            f"a 3-D view needs true and predicted beliefs of the same shape (n, S >= 3); got "
            f"{true.shape} and {predicted.shape}"
        )
    keep = np.random.default_rng(seed).permutation(len(true))[:max_points]
    true, predicted = true[keep], predicted[keep]
    xyz_true, xyz_pred, titles, corners = coordinates_3d(true, predicted, simplex=simplex)
    colours = [f"rgb({r:.0f},{g:.0f},{b:.0f})" for r, g, b in 255 * belief_colors(true)]
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "scene"}, {"type": "scene"}]],
                        subplot_titles=["exact belief", subtitle], horizontal_spacing=0.02)
    for col, xyz in ((1, xyz_true), (2, xyz_pred)):
        fig.add_trace(go.Scatter3d(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], mode="markers",
                                   marker={"size": 2, "color": colours}, hoverinfo="skip",
                                   showlegend=False), row=1, col=col)
        if corners is not None:
            _add_tetrahedron(fig, go, corners, labels, col)
    camera = {"eye": {"x": 1.5, "y": -1.3, "z": 0.8}}  # oblique, so depth shows before rotating
    scene = {"xaxis": {"title": titles[0]}, "yaxis": {"title": titles[1]},
             "zaxis": {"title": titles[2]}, "aspectmode": "data", "camera": camera}
    if corners is not None:  # the simplex coordinates mean nothing by themselves
        hidden = {"visible": False}
        scene = {"xaxis": hidden, "yaxis": hidden, "zaxis": hidden, "aspectmode": "data",
                 "camera": camera}
    fig.update_layout(title=title, height=520, margin={"l": 0, "r": 0, "t": 60, "b": 0},
                      scene=scene, scene2=scene)
    return fig.to_html(full_html=False, include_plotlyjs=include_plotlyjs,
                       config={"displaylogo": False})


def _add_tetrahedron(fig, go, corners: np.ndarray, labels: list[str] | None, col: int) -> None:
    """The simplex's six edges and its corner labels."""
    edges = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    xs, ys, zs = [], [], []
    for i, j in edges:
        for k in (i, j):
            xs.append(corners[k, 0])
            ys.append(corners[k, 1])
            zs.append(corners[k, 2])
        xs.append(None)
        ys.append(None)
        zs.append(None)
    fig.add_trace(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", line={"color": "grey", "width": 2},
                               hoverinfo="skip", showlegend=False), row=1, col=col)
    names = labels or [str(k) for k in range(4)]
    fig.add_trace(go.Scatter3d(x=corners[:, 0] * 1.08, y=corners[:, 1] * 1.08,
                               z=corners[:, 2] * 1.08, mode="text", text=list(names),
                               hoverinfo="skip", showlegend=False), row=1, col=col)
