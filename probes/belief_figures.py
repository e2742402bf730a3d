"""Belief-probe figures (PNG/GIF bytes): true vs predicted simplex, R² by layer, emergence, GIF.

Points are coloured by their TRUE belief (hmm.plots.belief_colors) in every panel and frame, so a
predicted point sits in the colour of the belief it should be at. Lines use the Okabe-Ito palette.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402

from hmm.plots import OKABE_ITO_HEX, belief_colors, plot_simplex, simplex_xy  # noqa: E402
from models.architectures import hook_label  # noqa: E402

OKABE_ITO = [OKABE_ITO_HEX[i] for i in (7, 0, 1, 2, 3, 4, 5, 6)]  # black first
CEILING_NOTE = (
    "logit ceiling: R² of a probe from the optimal next-token logits; a model that keeps only what "
    "its unembedding needs sits near it"
)


def simplex_comparison(
    true: np.ndarray,
    predictions: dict[str, np.ndarray],
    r2: dict[str, float],
    tokens: int,
    labels: list[str] | None = None,
) -> bytes:
    """Side by side: true beliefs (n, S) and each probe's predictions (n, S), same point colours."""
    colors = belief_colors(true)
    n = 1 + len(predictions)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.4))
    size = _point_size(len(true))
    # few distinct beliefs (RRXOR: 36) each stack on one spot: size true points by distinct count
    distinct = len(np.unique(np.round(true, 6), axis=0))
    plot_simplex(axes[0], true, colors, "exact belief states (held-out prefixes)",
                 s=max(size, _point_size(distinct)), labels=labels)
    for ax, (name, pred) in zip(axes[1:], predictions.items(), strict=True):
        plot_simplex(ax, pred, colors, f"probe from {name}\nheld-out R² = {r2[name]:.4f}",
                     s=size, labels=labels)
    fig.suptitle(
        "A linear probe of the residual stream recovers the belief geometry "
        f"({tokens:,} training tokens)",
        fontsize=11,
    )
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.82, wspace=0.05)
    return _png(fig)


def layer_bars(record: dict, ceiling: dict) -> bytes:
    """Held-out R² (unweighted, probability-weighted) per hook and concat; control; ceiling."""
    names = list(record["layers"])
    layers = record["layers"]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(names) + 2), 5.6))
    width = 0.27
    ax.bar(x - width, [layers[h]["r2_heldout"] for h in names], width, color=OKABE_ITO[5],
           label="held-out R² (each sequence position counts once)")
    ax.bar(x, [layers[h]["r2_heldout_weighted"] for h in names], width, color=OKABE_ITO[2],
           label="held-out R², weighted by prefix probability")
    ax.bar(x + width, [max(layers[h]["r2_shuffle"], 0.0) for h in names], width, color=OKABE_ITO[6],
           label="shuffled-belief control (negative shown as 0)")
    ax.axhline(ceiling["optimal_logits_r2_heldout"], color=OKABE_ITO[0], ls="--", lw=1,
               label=f"logit ceiling = {ceiling['optimal_logits_r2_heldout']:.4f}")
    nt = record.get("next_token", {})
    if "r2_heldout" in nt:
        ax.axhline(nt["r2_heldout"], color=OKABE_ITO[1], ls=":", lw=1.2,
                   label=f"probe from the model's next-token distribution = {nt['r2_heldout']:.4f}")
    for xi, h in zip(x, names, strict=True):
        ax.text(xi - width, layers[h]["r2_heldout"] + 0.01, f"{layers[h]['r2_heldout']:.3f}",
                ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(x, [hook_label(h) for h in names], rotation=20, ha="right")
    ax.set_ylabel("R² (mean over belief coordinates)")
    ax.set_ylim(0, 1.1)
    ax.set_title(
        f"Beliefs are linearly decodable from the residual stream ({record['tokens']:,} tokens)",
        fontsize=11,
    )
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    fig.text(0.01, 0.01, CEILING_NOTE, fontsize=7, color="0.3")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _png(fig)


def emergence(checkpoints: list[dict], ceiling: dict) -> bytes:
    """Held-out R² vs training tokens (symlog x, 0 = initialisation): hooks, concat, control."""
    tokens = np.array([c["tokens"] for c in checkpoints], dtype=float)
    names = list(checkpoints[-1]["layers"])
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    cmap = plt.get_cmap("viridis")
    singles = [h for h in names if h != "concat"]
    for i, h in enumerate(singles):
        r2 = [c["layers"].get(h, {}).get("r2_heldout", np.nan) for c in checkpoints]
        ax.plot(tokens, _none_to_nan(r2), marker=".", ms=3, lw=1.2,
                color=cmap(i / max(1, len(singles) - 1) * 0.9), label=hook_label(h))
    if "concat" in names:
        ax.plot(tokens, _none_to_nan([c["layers"]["concat"]["r2_heldout"] for c in checkpoints]),
                color=OKABE_ITO[0], lw=2, label="concat (all hooks)")
    shuffle = [max(c["layers"][h]["r2_shuffle"] or 0.0 for h in c["layers"]) for c in checkpoints]
    ax.plot(tokens, shuffle, color=OKABE_ITO[6], ls="--", lw=1.2,
            label="shuffled-belief control (max over hooks)")
    ax.axhline(ceiling["optimal_logits_r2_heldout"], color="0.4", ls=":", lw=1,
               label="logit ceiling (probe from optimal logits)")
    positive = tokens[tokens > 0]
    ax.set_xscale("symlog", linthresh=positive.min() if len(positive) else 1.0)
    ax.set_xlim(left=0)
    ax.set_xlabel("training tokens (symlog; 0 = initialisation)")
    ax.set_ylabel("held-out R² (mean over belief coordinates)")
    ax.set_ylim(min(-0.05, min(shuffle) - 0.05), 1.02)
    ax.set_title("Belief geometry emerges in the residual stream during training", fontsize=11)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def simplex_animation(
    true: np.ndarray,
    frames: list[tuple[int, np.ndarray, dict]],
    labels: list[str] | None = None,
    fps: int = 4,
) -> bytes:
    """GIF of the predicted simplex over checkpoints: frames = [(tokens, pred (n, S), scores)]."""
    colors = belief_colors(true)
    fig, ax = plt.subplots(figsize=(5, 5))
    plot_simplex(ax, frames[0][1], colors, s=_point_size(len(true)) * 2, labels=labels)
    scatter = ax.collections[-1]
    title = ax.set_title("")

    def draw(i: int):
        tokens, pred, scores = frames[i]
        scatter.set_offsets(simplex_xy(pred))
        title.set_text(f"probe-predicted beliefs after {tokens:,} tokens\n"
                       f"held-out R² = {scores['r2_heldout']:.4f}")
        return scatter, title

    anim = FuncAnimation(fig, draw, frames=len(frames), blit=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "anim.gif"
        anim.save(path, writer=PillowWriter(fps=fps), dpi=90)
        plt.close(fig)
        return path.read_bytes()


def _point_size(n: int) -> float:
    return float(np.clip(3000.0 / max(n, 1), 0.3, 6.0))


def _none_to_nan(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130)
    plt.close(fig)
    return buffer.getvalue()
