"""Belief-probe figures (PNG/GIF bytes) drawn from probes.json: simplex, layers, emergence,
positions, and the simplex animation. Each PNG carries a caption under the plot that defines every
line, band and marker. Accuracy is drawn as the unexplained variance 1 - R² on a log axis, where
the change between 0.99 and 0.999 is as visible as the one between 0.7 and 0.9.

Points are coloured by their TRUE belief (hmm.plots.state_colors) in every panel and frame, so a
predicted point sits in the colour of the belief it should be at. No backend is switched at import:
figures are `matplotlib.figure.Figure` objects on an Agg canvas.
"""

from __future__ import annotations

import io
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from matplotlib import colormaps, ticker
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hmm.figure_style import LINES as OKABE_ITO  # black first
from hmm.figure_style import token_axis as _token_axis
from hmm.msp import merge_beliefs
from hmm.plots import (
    StateChart,
    plot_states,
    simplex_chart,
    simplex_vertices,
    state_colors,
)
from models.architectures import CONCAT, final_layer_hook, hook_label
from probes.belief_probe import probe_method

KGRAM_SHOWN = 3  # k-gram lookup baselines drawn as lines: k = 1..KGRAM_SHOWN
FLOOR = 1e-6  # 1 - R² is drawn no lower than this (log axis)
MAX_FRAMES = 20  # animation frames: encoding costs ~0.2 CPU s each
BASELINE_COLORS = [OKABE_ITO[1], OKABE_ITO[6], OKABE_ITO[7]]  # orange, vermillion, pink
R2_AXIS = "held-out R²  (axis: log of 1 − R²)"
SPLIT_NAMES = {"subtree": "held-out prefix subtrees", "random": "held-out random half of sequences"}


def simplex_comparison(
    true: np.ndarray,
    predictions: dict[str, np.ndarray],
    r2: dict[str, float],
    tokens: int,
    labels: list[str] | StateChart | None = None,
) -> bytes:
    """Side by side: true beliefs (n, S) and each probe's predictions (n, S), same point colours.

    labels: the simplex's corner names, or the chart the states live in (hmm.plots.state_chart)."""
    chart = _chart(true, labels)
    colors = state_colors(chart, true)
    n = 1 + len(predictions)
    fig = _figure(4.3 * n, 5.3)
    axes = fig.subplots(1, n)
    size = _point_size(len(true))
    # few distinct beliefs (RRXOR: 36) each stack on one spot: size true points by distinct count
    distinct = len(merge_beliefs(true, np.ones(len(true))).probs)
    _simplex(axes[0], true, colors, "exact beliefs", max(size, _point_size(distinct)), chart)
    for ax, (name, pred) in zip(axes[1:], predictions.items(), strict=True):
        _simplex(ax, pred, colors, f"probe from {hook_label(name)}\nheld-out R² = {r2[name]:.4f}",
                 size, chart)
    fig.suptitle(f"Exact beliefs of held-out prefixes and their linear-probe predictions "
                 f"({tokens:,} training tokens)", fontsize=11)
    _caption(fig, (
        ("Each point is one held-out prefix, coloured by its exact belief (with three states, "
         "RGB = the state probabilities), placed at its exact belief (left) or at the belief "
         if chart.kind == "simplex" else
         "Each point is one held-out prefix, coloured by the first chart coordinate of its exact "
         f"state ({chart.axis_labels[0]}), placed at its exact state (left) or at the state ")
        + f"read from the named layer by {probe_method()}. R² is the held-out R², mean over "
        "belief coordinates."
    ))
    if chart.kind == "simplex":
        fig.subplots_adjust(left=0.01, right=0.99, bottom=0.17, top=0.83, wspace=0.05)
    else:  # axes with ticks and names need room
        fig.subplots_adjust(left=0.07, right=0.98, bottom=0.2, top=0.83, wspace=0.3)
    return _png(fig)


def layer_bars(probes: dict) -> bytes:
    """Newest checkpoint: 1 - held-out R² per hook (log) beside the untrained model and k-gram
    lookups; right panel: within-k-gram R² of the final layer (and concat) against k."""
    last = probes["checkpoints"][-1]
    names = list(last["layers"])
    base = probes.get("baselines", {})
    fig = _figure(max(8.5, 0.9 * len(names) + 6), 6.6)
    ax, ax_k = fig.subplots(1, 2, gridspec_kw={"width_ratios": [max(len(names), 3), 3]})
    x = np.arange(len(names))
    ax.plot(x, _error([last["layers"][h]["r2_heldout"] for h in names]), "o", color=OKABE_ITO[5],
            ms=7, label="trained model", zorder=3)
    untrained = base.get("random_init", {})
    if untrained:
        mean = np.array([untrained.get(h, {}).get("r2_mean", np.nan) for h in names], dtype=float)
        sd = np.array([untrained.get(h, {}).get("r2_sd") or 0.0 for h in names], dtype=float)
        low, high = _error(mean + sd), _error(mean - sd)
        centre = _error(mean)
        ax.errorbar(x, centre, yerr=[centre - low, high - centre], fmt="s", mfc="white",
                    color="0.35", ms=6, capsize=3, label="untrained model, mean ± sd over seeds")
    _kgram_lines(ax, base, horizontal=True)
    nt = last.get("next_token", {}).get("r2_heldout")
    if nt is not None:
        ax.axhline(_error1(nt), color=OKABE_ITO[0], ls="-.", lw=1,
                   label="probe from the model's next-token distribution")
    _r2_axis(ax, R2_AXIS)
    ax.set_xticks(x, [hook_label(h) for h in names])
    ax.set_title("Held-out R² by layer", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=3, frameon=False)
    ax.grid(alpha=0.3, axis="y", which="both")
    _within_panel(ax_k, probes, last)
    fig.suptitle(f"Linear probes of the beliefs at each layer ({last['tokens']:,} training tokens, "
                 f"{SPLIT_NAMES.get(probes['split']['kind'], probes['split']['kind'])})",
                 fontsize=11)
    _caption(fig, _baseline_caption(probes) + (
        " Right: within-k-gram R² = 1 − SSE(probe) / SSE(best lookup of the last k tokens) on the "
        "held-out prefixes: 0 = no better than a table of the last k tokens, 1 = exact. The "
        "resolution depth is the largest k at or above the dotted 0.5 line."
    ))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.36, top=0.9, wspace=0.25)
    return _png(fig)


def emergence(probes: dict) -> bytes:
    """1 - held-out R² vs training tokens per hook with baselines; within-k-gram R² of the final
    layer vs training tokens."""
    checkpoints = probes["checkpoints"]
    tokens = np.array([c["tokens"] for c in checkpoints], dtype=float)
    names = list(checkpoints[-1]["layers"])
    final = final_layer_hook(probes["hooks"])
    fig = _figure(13, 7.0)
    ax, ax_k = fig.subplots(1, 2)
    singles = [h for h in names if h != CONCAT]
    cmap = colormaps["viridis"]
    for i, h in enumerate(singles):
        r2 = [c["layers"].get(h, {}).get("r2_heldout") for c in checkpoints]
        ax.plot(tokens, _error(r2), marker=".", ms=3, lw=2 if h == final else 1.1,
                color=cmap(i / max(1, len(singles) - 1) * 0.9), label=hook_label(h))
    if CONCAT in names:
        ax.plot(tokens, _error([c["layers"][CONCAT]["r2_heldout"] for c in checkpoints]),
                color=OKABE_ITO[0], lw=1.5, ls="--", label="concat (all hooks)")
    untrained = probes.get("baselines", {}).get("random_init", {}).get(final)
    if untrained:
        mean, sd = untrained["r2_mean"], untrained["r2_sd"] or 0.0
        ax.axhspan(_error1(mean + sd), _error1(mean - sd), color="0.6", alpha=0.35,
                   label=f"untrained {hook_label(final)}, mean ± sd")
    _kgram_lines(ax, probes.get("baselines", {}), horizontal=True)
    _token_axis(ax, tokens)
    _r2_axis(ax, R2_AXIS)
    ax.set_title("Held-out R² during training", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, frameon=False)
    ax.grid(alpha=0.3, which="both")
    within = [c["layers"][final]["r2_within_kgram"] for c in checkpoints]
    for i, k in enumerate(sorted(within[-1], key=int)):
        ax_k.plot(tokens, _none_to_nan([w.get(k) for w in within]), marker=".", ms=3,
                  color=OKABE_ITO[1 + i % 7], label=f"k = {k}")
    ax_k.axhline(0.5, color="0.3", ls=":", lw=1, label="0.5 (resolution threshold)")
    ax_k.axhline(0.0, color="0.6", lw=0.8)
    _token_axis(ax_k, tokens)
    ax_k.set_ylim(max(-1.0, ax_k.get_ylim()[0]), 1.02)
    ax_k.set_ylabel(f"within-k-gram R² of {hook_label(final)}")
    ax_k.set_title("Fine structure: beyond a table of the last k tokens", fontsize=10)
    ax_k.legend(fontsize=7, loc="lower right")
    ax_k.grid(alpha=0.3)
    fig.suptitle("Belief probes over training "
                 f"({SPLIT_NAMES.get(probes['split']['kind'], probes['split']['kind'])})",
                 fontsize=11)
    _caption(fig, _baseline_caption(probes) + (
        " Right: within-k-gram R² (values below −1 are cut off) = 1 − SSE(probe) / SSE(best "
        "lookup of the last k tokens) on the held-out prefixes; the dotted line is the 0.5 "
        "threshold of the resolution depth."
    ))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.38, top=0.9, wspace=0.22)
    return _png(fig)


def position_heatmap(probes: dict) -> bytes:
    """Final layer: 1 - held-out R² at each position t (one line per t) vs training tokens."""
    checkpoints = probes["checkpoints"]
    final = final_layer_hook(probes["hooks"])
    probed = probes["positions"]["probed"]
    tokens = np.array([c["tokens"] for c in checkpoints], dtype=float)
    by_position = np.array(
        [_none_to_nan(c["layers"][final]["r2_by_position"]) for c in checkpoints]
    )
    fig = _figure(8.5, 6.0)
    ax = fig.subplots()
    cmap = colormaps["viridis"]
    n = by_position.shape[1]
    for t in range(n):
        ax.plot(tokens, _error(by_position[:, t]), marker=".", ms=3, lw=1.2,
                color=cmap(t / max(1, n - 1) * 0.95), label=f"t = {t}")
    _token_axis(ax, tokens)
    _r2_axis(ax, "held-out R² at position t  (axis: log of 1 − R²)")
    ax.legend(fontsize=7, ncol=2, loc="lower left", title="position", title_fontsize=7)
    ax.grid(alpha=0.3, which="both")
    ax.set_title(f"Probe of {hook_label(final)} by context position", fontsize=11)
    _caption(fig, (
        f"Held-out R² of the {hook_label(final)} probe (one probe for all positions) computed on "
        "the held-out prefixes of length t + 1 only; t is the depth in the belief fractal. "
        f"Positions probed: {probed[0]}..{probed[-1]} "
        f"(trained: 0..{probes['positions']['trained'] - 1}). "
        "Prefixes no longer than the split prefix are shared with the fit half (see probes.json "
        "split.shared_prefix_weight)."
    ))
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.24, top=0.92)
    return _png(fig)


def simplex_animation(
    true: np.ndarray,
    frames: list[tuple[int, np.ndarray, dict]],
    labels: list[str] | StateChart | None = None,
    fps: int = 4,
) -> bytes:
    """GIF of the predicted simplex over checkpoints: frames = [(tokens, pred (n, S), scores)];
    at most MAX_FRAMES of them, evenly spread, first and last kept."""
    if len(frames) > MAX_FRAMES:
        keep = np.unique(np.linspace(0, len(frames) - 1, MAX_FRAMES).round().astype(int))
        frames = [frames[i] for i in keep]
    chart = _chart(true, labels)
    colors = state_colors(chart, true)
    fig = _figure(5, 5.4)
    ax = fig.subplots()
    _simplex(ax, frames[0][1], colors, None, _point_size(len(true)) * 2, chart)
    scatter = ax.collections[-1]
    title = ax.set_title("")

    def draw(i: int):
        tokens, pred, scores = frames[i]
        scatter.set_offsets(chart.xy(pred))
        title.set_text(f"probe-predicted beliefs after {tokens:,} tokens\n"
                       f"held-out R² = {scores['r2_heldout']:.4f}")
        return scatter, title

    anim = FuncAnimation(fig, draw, frames=len(frames), blit=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "anim.gif"
        anim.save(path, writer=PillowWriter(fps=fps), dpi=90)
        return path.read_bytes()


def _chart(true: np.ndarray, labels) -> StateChart:
    return labels if isinstance(labels, StateChart) else simplex_chart(true.shape[1], labels)


def _simplex(ax, beliefs, colors, title, size, chart: StateChart) -> None:
    """States in their chart (hmm.plots.plot_states); in the simplex, corner labels moved outside
    the point cloud on a white box."""
    plot_states(ax, chart, beliefs, colors, title, s=size)
    if chart.kind != "simplex":
        return
    for text in list(ax.texts):
        text.remove()
    verts = simplex_vertices(beliefs.shape[1])
    centre = verts.mean(axis=0)
    for label, v in zip(chart.corner_labels, verts, strict=False):  # none past 8 corners
        ax.annotate(f"P({label}) = 1", v + (v - centre) * 0.28, ha="center", va="center",
                    fontsize=8, zorder=5,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.7", "alpha": 0.9})
    pad = 0.35
    ax.set_xlim(verts[:, 0].min() - pad, verts[:, 0].max() + pad)
    ax.set_ylim(verts[:, 1].min() - pad, verts[:, 1].max() + pad)


def _within_panel(ax, probes: dict, last: dict) -> None:
    final = final_layer_hook(probes["hooks"])
    shown = [final] + ([CONCAT] if CONCAT in last["layers"] else [])
    for i, h in enumerate(shown):
        within = last["layers"][h]["r2_within_kgram"]
        ks = sorted(within, key=int)
        ax.plot([int(k) for k in ks], _none_to_nan([within[k] for k in ks]), "o-",
                color=OKABE_ITO[5] if i == 0 else OKABE_ITO[0], ms=5,
                label=f"{hook_label(h)} (depth {last['layers'][h]['resolution_depth']})")
    untrained = probes.get("baselines", {}).get("random_init", {}).get(final, {})
    mean = untrained.get("r2_within_kgram_mean")
    if mean:
        ks = sorted(mean, key=int)
        ax.plot([int(k) for k in ks], [mean[k] for k in ks], "s--", mfc="white", color="0.35",
                ms=5, label=f"untrained {hook_label(final)} (mean)")
    ax.axhline(0.5, color="0.3", ls=":", lw=1)
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_ylim(max(-1.0, ax.get_ylim()[0]), 1.02)
    ax.set_xlabel("k (tokens in the lookup table)")
    ax.set_ylabel("within-k-gram R²")
    ax.set_title("Fine structure (below −1 cut off)", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)


def _kgram_lines(ax, baselines: dict, horizontal: bool) -> None:
    """k = 1..KGRAM_SHOWN: the table of held-out cell means where probes.json has it (the best
    any table of the last k tokens scores), else the lookup fit on the fit half."""
    oracle = baselines.get("kgram_oracle") or {}
    kgram = oracle or baselines.get("kgram", {})
    features = baselines.get("kgram_features", {})
    styles = ["--", ":", (0, (5, 1, 1, 1))]
    for i, k in enumerate(sorted(kgram, key=int)[:KGRAM_SHOWN]):
        if kgram[k] is None:
            continue
        name = "best table of the last" if oracle else "lookup of the last"
        ax.axhline(_error1(kgram[k]), color=BASELINE_COLORS[i], ls=styles[i % 3], lw=1.3,
                   label=f"{name} {k} token{'s' * (k != '1')} ({features.get(k, '?')} features)")


def _baseline_caption(probes: dict) -> str:
    base = probes.get("baselines", {})
    n_seeds = next(iter(base.get("random_init", {}).values()), {}).get("n_seeds")
    split = probes["split"]
    where = ("prefixes whose first " f"{split.get('prefix_len')} tokens were held out"
             if split["kind"] == "subtree" else "a random half of the sequences")
    text = (
        f"Left: held-out R² of {probe_method()} from each layer to the exact "
        "belief, drawn on a log scale of 1 − R² (0.99 → 0.999 shows as clearly as 0.9 → 0.99), "
        f"scored on {where} "
        f"(held-out weight on prefixes also fitted: {split['shared_prefix_weight']:.2f}). "
    )
    if n_seeds:
        text += f"Grey: the same architecture untrained ({n_seeds} init seeds, mean ± sd). "
    if base.get("kgram_oracle"):
        text += ("Coloured lines: the best table of the last k tokens (no network): each "
                 "held-out prefix predicted by the mean belief of the held-out prefixes ending in "
                 "the same k tokens, i.e. fit on the scored rows, a generous baseline "
                 "(probes.json also has the table fit on the fit half). ")
    elif base.get("kgram"):
        text += ("Coloured lines: the k-gram lookup, OLS on one-hot cells of the last k tokens "
                 "(no network), same split. ")
    return text + (f"The optimal next-token logits give R² {probes.get('optimal_logit_r2', 0):.4f}"
                   " (a reference, not a bound).")


def _r2_axis(ax, label: str) -> None:
    """y = 1 - R² on a log axis, inverted (better is higher), ticks labelled with R² itself."""
    ax.set_yscale("log")
    ax.invert_yaxis()
    low, high = sorted(ax.get_ylim())
    decades = np.log10(high / max(low, FLOOR))
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades < 3.5
                                                 else (1.0,)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{1 - v:.6g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_ylabel(label)


def _error(r2) -> np.ndarray:
    """1 - R² of a sequence of R² values, floored at FLOOR for the log axis (None -> NaN)."""
    return np.maximum(1.0 - _none_to_nan(r2), FLOOR)


def _error1(r2: float) -> float:
    """1 - R² of one value (see `_error`)."""
    return float(_error([r2])[0])


def _caption(fig, text: str) -> None:
    width = int(fig.get_figwidth() * 15)
    fig.text(0.01, 0.01, textwrap.fill(text, width), fontsize=7.5, color="0.2", va="bottom")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _point_size(n: int) -> float:
    return float(np.clip(3000.0 / max(n, 1), 0.3, 6.0))


def _none_to_nan(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130)
    return buffer.getvalue()
