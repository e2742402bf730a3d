"""The look of every beliefgeo figure, in one place: the colour-blind-safe palette (Okabe & Ito
2008) in the two orders figures use, the greys of null bands and reference lines, the training-token
axis, and pyplot-free figures with their PNG bytes (no global backend switch, nothing to close).
Every layer draws (hmm's simplices, probes' and experiments' figures), so this sits in the lowest.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Okabe-Ito in its published order: orange, sky blue, bluish green, yellow, blue, vermillion,
# reddish purple, black. Simplex corners take their colours in this order (hmm.plots).
OKABE_ITO_HEX = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
                 "#000000"]  # fmt: skip
OKABE_ITO_RGB = np.array([[int(h[i : i + 2], 16) / 255 for i in (1, 3, 5)] for h in OKABE_ITO_HEX])
# line series take the same colours black first (the headline curve, then orange, sky blue, ...)
LINES = [OKABE_ITO_HEX[i] for i in (7, 0, 1, 2, 3, 4, 5, 6)]
NULL_GREY = "#999999"  # null bands: the same measure on re-initialised networks
REFERENCE_GREY = "#333333"  # reference lines (radius 1, gain 1, 0.001 nats)


def token_axis(ax, tokens: np.ndarray) -> None:
    """THE training-token axis: symlog, linear below the first non-zero checkpoint, its left edge
    below 0 so the initial model (0 tokens) sits inside the frame."""
    tokens = np.asarray(tokens, dtype=float)
    positive = tokens[tokens > 0]
    linthresh = float(positive.min()) if positive.size else 1.0
    top = max(tokens.max(initial=0.0), 1.0) * 1.3
    ax.set_xscale("symlog", linthresh=linthresh)
    ax.set_xlim(-0.3 * linthresh, top)
    decades = 10.0 ** np.arange(np.ceil(np.log10(linthresh / 2)), np.log10(top) + 1e-9)
    ax.xaxis.set_major_locator(ticker.FixedLocator([0.0, *decades]))  # none crowding 0
    ax.set_xlabel("training tokens (symlog axis: linear below the first checkpoint, 0 = init)")


def new_figure(width: float, height: float) -> Figure:
    """A bare matplotlib Figure (inches) on the Agg canvas."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
