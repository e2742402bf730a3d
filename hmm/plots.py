"""Plots of state sets where they live: the projection, the colours, and the drawing (their single
home), for classical beliefs (the simplex) and GHMM states (Bloch coordinates or principal axes).

Simplex projection: a belief b (S,) maps to sum_k b_k v_k with the S vertices v_k on a regular
polygon. For S = 3 this is the usual ternary triangle with vertices (0, 0), (1, 0),
(1/2, sqrt(3)/2); for S = 2 the segment from (0, 0) to (1, 0); for S > 3 the regular S-gon on the
unit circle (a fixed linear map, not a fitted one, so plots of different belief sets are
comparable; interior points of different beliefs can overlap).

`state_chart(process, states)` picks the coordinates a process's states live in: the simplex for
a classical process; for a qubit instrument (states labelled I, X, Y, Z by hmm.quantum) the Bloch
coordinates, inside the unit disk; otherwise the two principal axes of the given state set
(centred PCA, a fixed map once fitted, so true and probe-predicted states share it). Probe figures
draw predictions with the chart fitted on the true states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from hmm.process import GHMM

PAULI_AXES = ("X", "Y", "Z")
MAX_CORNER_LABELS = 8  # more simplex corners than this are left unlabelled (they would overlap)

# Okabe-Ito, the colour-blind-safe palette of every beliefgeo figure (its single home)
OKABE_ITO_HEX = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
                 "#000000"]
# the same as RGB in [0, 1]: simplex vertex colours when S != 3
OKABE_ITO = np.array([[int(h[i : i + 2], 16) / 255 for i in (1, 3, 5)] for h in OKABE_ITO_HEX])


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
    return plot_states(ax, simplex_chart(beliefs.shape[-1], labels), beliefs, colors, title, s)


@dataclass(frozen=True)
class StateChart:
    """A fixed affine map from states (..., d) to plot coordinates (..., 2), with its frame.

    kind "simplex" | "bloch" | "pca"; xy = (states - origin) @ axes (for the simplex the rows of
    `axes` are the vertices); axis_labels (x, y) ("" for the simplex); corner_labels: the simplex
    states' names, drawn "P(name) = 1" at the vertices; outline (K, 2) closed polygon or circle,
    or None; bounds ((xmin, ymin), (xmax, ymax)) of the reference states when there is no
    outline; color_range (low, high) of the first coordinate, fixed so every panel colours a
    state alike.
    """

    kind: str
    origin: np.ndarray
    axes: np.ndarray
    axis_labels: tuple[str, str] = ("", "")
    corner_labels: tuple[str, ...] = ()
    outline: np.ndarray | None = None
    bounds: np.ndarray | None = None
    color_range: tuple[float, float] = (0.0, 1.0)

    def xy(self, states: np.ndarray) -> np.ndarray:
        """States (..., d) -> plot coordinates (..., 2)."""
        return (np.asarray(states, dtype=np.float64) - self.origin) @ self.axes


def simplex_chart(n_states: int, labels: list[str] | None = None) -> StateChart:
    """The fixed simplex projection of the module doc, with its outline and corner labels."""
    verts = simplex_vertices(n_states)
    labels = tuple(labels or [f"state {k}" for k in range(n_states)])
    labels = labels if n_states <= MAX_CORNER_LABELS else ()
    return StateChart("simplex", np.zeros(n_states), verts, corner_labels=labels,
                      outline=np.vstack([verts, verts[:1]]))


def state_chart(process: GHMM, states: np.ndarray | None = None) -> StateChart:
    """The coordinates `process`'s states live in (module doc). states (N, d): the reference set a
    principal-axes chart is fitted on (required for it; ignored otherwise)."""
    if process.is_classical:
        return simplex_chart(process.n_states, list(process.states))
    labels = list(process.states)
    pauli = [k for k, name in enumerate(labels) if name in PAULI_AXES]
    if labels[0] == "I" and len(pauli) == len(labels) - 1 and len(pauli) >= 2:
        return _bloch_chart(labels, pauli, states)
    if states is None:
        raise ValueError(f"{process.name}: a principal-axes chart needs the states to fit it on")
    return _pca_chart(np.asarray(states, dtype=np.float64))


def _bloch_chart(labels: list[str], pauli: list[int], states: np.ndarray | None) -> StateChart:
    """Two Bloch coordinates (X and Z, or the two that vary most when all three are there)."""
    if len(pauli) == 3 and states is not None:
        pauli = sorted(sorted(pauli, key=lambda k: -np.var(np.asarray(states)[:, k]))[:2])
    elif len(pauli) == 3:
        pauli = [labels.index("X"), labels.index("Z")]
    axes = np.zeros((len(labels), 2))
    axes[pauli[0], 0] = axes[pauli[1], 1] = 1.0
    angle = np.linspace(0, 2 * np.pi, 241)
    axis = [labels[k].lower() for k in pauli]
    return StateChart("bloch", np.zeros(len(labels)), axes,
                      axis_labels=tuple(f"Bloch r_{a} = tr(ρ σ_{a})" for a in axis),
                      outline=np.stack([np.cos(angle), np.sin(angle)], axis=1),
                      color_range=(-1.0, 1.0))


def _pca_chart(states: np.ndarray) -> StateChart:
    finite = states[np.isfinite(states).all(axis=1)]
    origin = finite.mean(axis=0)
    _, sv, vt = np.linalg.svd(finite - origin, full_matrices=False)
    axes = np.zeros((states.shape[1], 2))
    k = min(2, len(vt))
    axes[:, :k] = vt[:k].T * np.sign(vt[:k].T[np.abs(vt[:k].T).argmax(axis=0), range(k)])
    share = sv**2 / max(float((sv**2).sum()), np.finfo(float).tiny)
    names = tuple(f"principal axis {i + 1} ({100 * share[i]:.1f} % of variance)" if i < k else ""
                  for i in range(2))
    xy = (finite - origin) @ axes
    if not len(xy):
        return StateChart("pca", origin, axes, axis_labels=names)
    return StateChart("pca", origin, axes, axis_labels=names,
                      bounds=np.stack([xy.min(axis=0), xy.max(axis=0)]),
                      color_range=(float(xy[:, 0].min()), float(xy[:, 0].max())))


def state_colors(chart: StateChart, states: np.ndarray) -> np.ndarray:
    """RGB per state (N, 3): `belief_colors` in the simplex; elsewhere the colour-blind-safe
    viridis map of the first chart coordinate over the chart's fixed range. NaN states grey."""
    if chart.kind == "simplex":
        return belief_colors(states)
    from matplotlib import colormaps

    low, high = chart.color_range
    first = chart.xy(states)[:, 0]
    rgb = colormaps["viridis"](np.clip((first - low) / max(high - low, 1e-12), 0, 1))[:, :3]
    rgb[~np.isfinite(first)] = 0.5
    return rgb


def plot_states(ax, chart: StateChart, states: np.ndarray, colors=None, title: str | None = None,
                s: float = 1.0):
    """Scatter states (N, d) in `chart` on `ax` with its outline, corner or axis labels; returns ax.

    colors: (N, 3) RGB or anything matplotlib accepts; default `state_colors(chart, states)`.
    """
    xy = chart.xy(states)
    if chart.outline is not None:
        ax.plot(chart.outline[:, 0], chart.outline[:, 1], color="0.3", lw=0.8, zorder=1)
    centre = chart.axes.mean(axis=0)
    for label, v in zip(chart.corner_labels, chart.axes, strict=False):
        offset = (v - centre) * 0.08 if len(chart.axes) > 2 else np.array([0.0, -0.05])
        ax.annotate(f"P({label}) = 1", v + offset, ha="center", va="center", fontsize=8)
    ax.scatter(xy[:, 0], xy[:, 1], c=state_colors(chart, states) if colors is None else colors,
               s=s, linewidths=0, zorder=2)
    ax.set_aspect("equal")
    finite = xy[np.isfinite(xy).all(axis=1)]
    frame = next((f for f in (chart.outline, chart.bounds) if f is not None), np.zeros((0, 2)))
    if len(finite):  # points outside the chart's frame (a probe's misses) stay in view
        frame = np.vstack([frame, np.percentile(finite, [0.5, 99.5], axis=0)])
    if not len(frame):
        frame = np.zeros((1, 2))
    pad = 0.15 if chart.kind == "simplex" else 0.08 * max(float(np.ptp(frame, axis=0).max()), 1e-9)
    ax.set_xlim(frame[:, 0].min() - pad, frame[:, 0].max() + pad)
    ax.set_ylim(frame[:, 1].min() - pad, frame[:, 1].max() + pad)
    if chart.kind == "simplex":
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    else:
        ax.set_xlabel(chart.axis_labels[0], fontsize=8)
        ax.set_ylabel(chart.axis_labels[1], fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return ax
