"""Simplex plots of belief sets: the projection, the colours, and the drawing (their single home).

Projection: a belief b (S,) maps to sum_k b_k v_k with the S vertices v_k on a regular polygon.
For S = 3 this is the usual ternary triangle with vertices (0, 0), (1, 0), (1/2, sqrt(3)/2);
for S = 2 the segment from (0, 0) to (1, 0); for S > 3 the regular S-gon on the unit circle
(a fixed linear map, not a fitted one, so plots of different belief sets are comparable;
interior points of different beliefs can overlap).
"""

from __future__ import annotations

import numpy as np

from hmm.figure_style import OKABE_ITO_RGB as OKABE_ITO  # simplex vertex colours when S != 3


def simplex_vertices(n_states: int) -> np.ndarray:
    """2-D positions of the simplex corners: (S, 2)."""
    if n_states == 1:
        return np.zeros((1, 2))
    if n_states == 2:
        return np.array([[0.0, 0.0], [1.0, 0.0]])
    if n_states == 3:
        return np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    angle = np.pi / 2 + 2 * np.pi * np.arange(n_states) / n_states
    return np.stack([np.cos(angle), np.sin(angle)], axis=1)


def simplex_xy(beliefs: np.ndarray) -> np.ndarray:
    """Beliefs (N, S) -> 2-D points (N, 2) by the fixed projection in the module docstring."""
    beliefs = np.asarray(beliefs, dtype=np.float64)
    return beliefs @ simplex_vertices(beliefs.shape[-1])


def belief_colors(beliefs: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] per belief: (N, S) -> (N, 3). S = 3: RGB = belief; else mixed vertex colours.

    NaN beliefs are grey.
    """
    beliefs = np.asarray(beliefs, dtype=np.float64)
    S = beliefs.shape[-1]
    if S == 3:
        rgb = beliefs.copy()
    else:
        palette = OKABE_ITO[np.arange(S) % len(OKABE_ITO)]
        rgb = beliefs @ palette
    bad = ~np.isfinite(rgb).all(axis=-1)
    rgb[bad] = 0.5
    return np.clip(rgb, 0.0, 1.0)


def plot_simplex(ax, beliefs: np.ndarray, colors=None, title: str | None = None, s: float = 1.0,
                 labels: list[str] | None = None):
    """Scatter beliefs (N, S) in the simplex on `ax`, with outline and corner labels; returns ax.

    colors: (N, 3) RGB or anything matplotlib accepts; default `belief_colors(beliefs)`.
    """
    beliefs = np.asarray(beliefs, dtype=np.float64)
    S = beliefs.shape[-1]
    verts = simplex_vertices(S)
    outline = np.vstack([verts, verts[:1]])
    ax.plot(outline[:, 0], outline[:, 1], color="0.3", lw=0.8, zorder=1)
    labels = labels or [f"state {k}" for k in range(S)]
    centre = verts.mean(axis=0)
    for k, v in enumerate(verts):
        offset = (v - centre) * 0.08 if S > 2 else np.array([0.0, -0.05])
        ax.annotate(f"P({labels[k]}) = 1", v + offset, ha="center", va="center", fontsize=8)
    xy = simplex_xy(beliefs)
    ax.scatter(xy[:, 0], xy[:, 1], c=belief_colors(beliefs) if colors is None else colors,
               s=s, linewidths=0, zorder=2)
    ax.set_aspect("equal")
    pad = 0.15
    ax.set_xlim(verts[:, 0].min() - pad, verts[:, 0].max() + pad)
    ax.set_ylim(verts[:, 1].min() - pad, verts[:, 1].max() + pad)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)
    return ax
