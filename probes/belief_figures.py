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
from probes.belief_probe import probe_method, r2_score

FLOOR = 1e-6  # 1 - R² is drawn no lower than this (log axis)
MAX_FRAMES = 20  # animation frames: encoding costs ~0.2 CPU s each
# one colour per k (tables of the last k tokens, r2_fine per k): orange, vermillion, pink, green,
# sky blue, yellow
KGRAM_COLORS = [OKABE_ITO[i] for i in (1, 6, 7, 3, 2, 4)]
R2_AXIS = "held-out R²  (axis: log of 1 − R²)"
SPLIT_NAMES = {"subtree": "held-out prefix subtrees", "random": "held-out random half of sequences"}


def _colour_rule(beliefs: np.ndarray) -> str:
    """How hmm.plots.belief_colors colours a belief, in words."""
    if beliefs.shape[-1] == 3:
        return "RGB = the three state probabilities"
    return "the states' colours at the corners, mixed by the state probabilities"


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
        (f"Each point is one held-out prefix, coloured by its exact belief ({_colour_rule(true)}"
         "), placed at its exact belief (left) or at the belief "
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


def factor_comparison(
    true: np.ndarray, pred: np.ndarray, weights: np.ndarray, groups: dict[str, slice], hook: str,
    tokens: int,
) -> bytes:
    """A product's factors, one row each: the exact factor beliefs (columns `groups` of true
    (n, sum d_k)) beside what the probe of the `factors` target reads from `hook` (pred); R²
    with the rows' weights (n,)."""
    height = 4.4 * len(groups) + 1.4
    fig = _figure(9.0, height)
    axes = np.atleast_2d(fig.subplots(len(groups), 2))
    size = _point_size(len(true))
    for row, (name, cols) in zip(axes, groups.items(), strict=True):
        exact, read = true[:, cols], pred[:, cols]
        chart = _chart(exact, None)
        colors = state_colors(chart, exact)
        r2 = r2_score(exact, read, weights)
        _simplex(row[0], exact, colors, f"{name}\nexact beliefs", size, chart)
        _simplex(row[1], read, colors, f"probe from {hook_label(hook)}\nheld-out R² = {r2:.4f}",
                 size, chart)  # fmt: skip
    fig.suptitle(f"Factor beliefs of held-out prefixes, exact and read by one linear probe of "
                 f"all factors ({tokens:,} training tokens)", fontsize=11,
                 y=1 - 0.25 / height)  # fmt: skip
    _caption(fig, "Each point is one held-out prefix, coloured by its exact factor belief, placed "
             "at it (left) or at the factor belief read from the named layer by the probe of all "
             f"factors side by side ({probe_method()}). R²: held-out, mean over this factor's "
             "coordinates.")  # fmt: skip
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.9 / height, top=1 - 1.2 / height,
                        hspace=0.3)
    return _png(fig)


def layer_bars(probes: dict) -> bytes:
    """Newest checkpoint: 1 - held-out R² per hook (log) beside the untrained model, every table of
    the last k tokens, the next-token probes; the beyond-prediction score per hook beside the
    untrained model's; r2_fine of the final layer (and concat) against k with bootstrap bands."""
    last = probes["checkpoints"][-1]
    names = list(last["layers"])
    base = probes.get("baselines", {})
    fig = _figure(max(14.0, 1.6 * len(names) + 7), 7.0)
    ax, ax_b, ax_k = fig.subplots(
        1, 3, gridspec_kw={"width_ratios": [max(len(names), 3), max(len(names), 3) * 0.75, 3.2]}
    )
    x = np.arange(len(names))
    ax.plot(x, _error([last["layers"][h]["r2_heldout"] for h in names]), "o", color=OKABE_ITO[5],
            ms=7, label="trained model", zorder=3)
    untrained = base.get("random_init", {})
    _untrained_marks(ax, x, names, untrained, "r2_mean", "r2_sd", log=True)
    _kgram_lines(ax, base, horizontal=True)
    _prediction_lines(ax, probes, last)
    _r2_axis(ax, R2_AXIS)
    ax.set_xticks(x, [hook_label(h) for h in names], rotation=30, ha="right")
    ax.set_title("Held-out R² by layer", fontsize=10)
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2,
              frameon=False)
    ax.grid(alpha=0.3, axis="y", which="both")
    _beyond_panel(ax_b, x, names, last, untrained)
    _fine_panel(ax_k, probes, last)
    fig.suptitle(f"Linear probes of the beliefs at each layer ({last['tokens']:,} training tokens, "
                 f"{SPLIT_NAMES.get(probes['split']['kind'], probes['split']['kind'])})",
                 fontsize=11)
    _caption(fig, _baseline_caption(probes) + (
        " Middle: beyond the next token = held-out R² of the layer (with the model's next-token "
        "distribution beside it) on the part of the belief that the model's next-token "
        "distribution does not linearly explain: 0 = nothing beyond the prediction, 1 = all of "
        "it; grey: untrained networks on the same remainder. Right: fine structure r2_fine = R² "
        "of the deviations from the mean of each group of held-out prefixes sharing their last k "
        "tokens, the truth's and the probe's group means removed separately (not a function of "
        "the MSE; 0 = no better than predicting each group's mean); bars: 95 % bootstrap over "
        "held-out subtrees."
    ))
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.42, top=0.9, wspace=0.3)
    return _png(fig)


def emergence(probes: dict) -> bytes:
    """1 - held-out R² vs training tokens per hook with baselines; the final layer's r2_fine per k
    and its beyond-prediction score vs training tokens."""
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
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3,
              frameon=False)
    ax.grid(alpha=0.3, which="both")
    fine = [c["layers"][final].get("r2_fine") or {} for c in checkpoints]
    for i, k in enumerate(sorted(fine[-1], key=int)):
        ax_k.plot(tokens, _none_to_nan([f.get(k) for f in fine]), marker=".", ms=3,
                  color=KGRAM_COLORS[i % len(KGRAM_COLORS)], label=f"r2_fine, k = {k}")
    beyond = [c["layers"][final].get("r2_beyond_prediction") for c in checkpoints]
    if any(b is not None for b in beyond):
        ax_k.plot(tokens, _none_to_nan(beyond), color=OKABE_ITO[0], lw=1.8, ls="--",
                  label="beyond the next token")
    ax_k.axhline(0.0, color="0.6", lw=0.8)
    _token_axis(ax_k, tokens)
    ax_k.set_ylim(max(-1.0, ax_k.get_ylim()[0]), 1.02)
    ax_k.set_ylabel(f"score of {hook_label(final)} (below −1 cut off)")
    ax_k.set_title("What the layer adds: fine structure and beyond the next token", fontsize=10)
    ax_k.legend(fontsize=7, loc="best")
    ax_k.grid(alpha=0.3)
    fig.suptitle("Belief probes over training "
                 f"({SPLIT_NAMES.get(probes['split']['kind'], probes['split']['kind'])})",
                 fontsize=11)
    _caption(fig, _baseline_caption(probes, predictions=False) + (
        " Right: r2_fine for each k = R² of the within-group deviations of the held-out beliefs "
        "(groups = prefixes sharing their last k tokens; the truth's and the probe's group means "
        "removed separately), and the beyond-next-token score (held-out R² on the part of the "
        "belief the model's own next-token distribution does not linearly explain)."
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
        + _shared_note(probes["split"])
    ))
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.24, top=0.92)
    return _png(fig)


def _shared_note(split: dict) -> str:
    """What a score at position t generalises over, by split."""
    if split["kind"] == "subtree":
        m = split.get("prefix_len") or 1
        if m == 1:
            return "No prefix occurs in both halves: every score is on unseen branches."
        return (f"Prefixes shorter than the split prefix (t < {m - 1}) occur in both halves; from "
                f"t = {m - 1} on every held-out prefix lies in a branch of the belief tree the "
                "probe never saw.")
    return ("Random split: short prefixes occur in both halves (probes.json "
            "split.shared_prefix_weight), so early positions mostly re-score fitted prefixes.")


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


def _untrained_marks(ax, x, names, untrained: dict, mean_key: str, sd_key: str, log: bool):
    """Untrained networks per hook: mean ± sd over init seeds (on the 1 - R² axis when log)."""
    if not untrained:
        return
    mean = _none_to_nan([untrained.get(h, {}).get(mean_key) for h in names])
    sd = np.nan_to_num(_none_to_nan([untrained.get(h, {}).get(sd_key) for h in names]))
    if np.isnan(mean).all():
        return
    centre, low, high = (_error(mean), _error(mean + sd), _error(mean - sd)) if log \
        else (mean, mean - sd, mean + sd)
    ax.errorbar(x, centre, yerr=[np.abs(centre - low), np.abs(high - centre)], fmt="s",
                mfc="white", color="0.35", ms=6, capsize=3,
                label="untrained model, mean ± sd over seeds")


def _prediction_lines(ax, probes: dict, last: dict) -> None:
    """The probes from the model's own next-token distribution and the exact optimal one."""
    nt = last.get("next_token", {}).get("r2_heldout")
    if nt is not None:
        ax.axhline(_error1(nt), color=OKABE_ITO[0], ls="-.", lw=1.2,
                   label=f"the model's next-token distribution ({nt:.4f})")
    optimal = probes.get("optimal_probs_r2")
    if optimal is None:
        return
    label = f"exact optimal next-token probabilities ({optimal:.4f})"
    shown = [_error1(v["r2_heldout"]) for v in last["layers"].values()]
    if _error1(optimal) < 0.3 * min(shown, default=1.0):  # far above every layer: say it
        ax.plot([], [], " ", label=label + ", above the axis")
        return
    ax.axhline(_error1(optimal), color=OKABE_ITO[0], ls=(0, (1, 1)), lw=1.4, label=label)


def _beyond_panel(ax, x, names, last: dict, untrained: dict) -> None:
    beyond = _none_to_nan([last["layers"][h].get("r2_beyond_prediction") for h in names])
    ax.plot(x, beyond, "o", color=OKABE_ITO[5], ms=7, label="trained model", zorder=3)
    _untrained_marks(ax, x, names, untrained, "r2_beyond_prediction", "r2_beyond_prediction_sd",
                     log=False)
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_ylim(max(-0.5, min(-0.05, np.nanmin(beyond, initial=0.0) - 0.05)), 1.02)
    ax.set_xticks(x, [hook_label(h) for h in names], rotation=30, ha="right")
    ax.set_ylabel("held-out R² of the remainder")
    ax.set_title("Beyond the next token", fontsize=10)
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    ax.grid(alpha=0.3, axis="y")


def _fine_panel(ax, probes: dict, last: dict) -> None:
    final = final_layer_hook(probes["hooks"])
    shown = [final] + ([CONCAT] if CONCAT in last["layers"] else [])
    bands = (probes.get("bootstrap") or {}).get("probes") or {}
    for i, h in enumerate(shown):
        fine = last["layers"][h].get("r2_fine") or {}
        ks = sorted(fine, key=int)
        values = _none_to_nan([fine[k] for k in ks])
        color = OKABE_ITO[5] if i == 0 else OKABE_ITO[0]
        band = (bands.get(h) or {}).get("r2_fine") or {}
        low = _none_to_nan([(band.get(k) or [None])[0] for k in ks])
        high = _none_to_nan([(band.get(k) or [None, None])[1] for k in ks])
        offset = 0.08 * (i - 0.5 * (len(shown) - 1))
        x = [int(k) + offset for k in ks]
        ax.plot(x, values, "o-", color=color, ms=5, label=hook_label(h))
        # a percentile interval need not contain the estimate (bootstrap bias): drawn as it is
        ax.vlines(x, low, high, color=color, lw=1.2)
    mean = (probes.get("baselines", {}).get("random_init", {}).get(final) or {}).get("r2_fine")
    if mean:
        ks = sorted(mean, key=int)
        ax.plot([int(k) for k in ks], [mean[k] for k in ks], "s--", mfc="white", color="0.35",
                ms=5, label=f"untrained {hook_label(final)} (mean)")
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_ylim(max(-1.0, ax.get_ylim()[0]), 1.02)
    ax.set_xlabel("k (last tokens defining a group)")
    ax.set_ylabel("r2_fine: R² of within-group deviations")
    ax.set_title("Fine structure (below −1 cut off)", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)


def _kgram_lines(ax, baselines: dict, horizontal: bool) -> None:
    """Every k: the table of held-out cell means where probes.json has it (the best any table of
    the last k tokens scores), else the lookup fit on the fit half."""
    oracle = baselines.get("kgram_oracle") or {}
    kgram = oracle or baselines.get("kgram", {})
    features = baselines.get("kgram_features", {})
    styles = ["--", ":", (0, (5, 1, 1, 1))]
    for i, k in enumerate(sorted(kgram, key=int)):
        if kgram[k] is None:
            continue
        name = "best table of the last" if oracle else "lookup of the last"
        ax.axhline(_error1(kgram[k]), color=KGRAM_COLORS[i % len(KGRAM_COLORS)],
                   ls=styles[i % 3], lw=1.2,
                   label=f"{name} {k} token{'s' * (k != '1')} ({features.get(k, '?')} cells)")


def _baseline_caption(probes: dict, predictions: bool = True) -> str:
    """The left panel's caption; `predictions`: the next-token probe lines are drawn."""
    base = probes.get("baselines", {})
    n_seeds = next(iter(base.get("random_init", {}).values()), {}).get("n_seeds")
    split = probes["split"]
    text = (
        f"Left: held-out R² of the exact belief read from each layer by {probe_method(split)} "
        f"(held-out weight on prefixes also fitted: {split['shared_prefix_weight']:.2f}), drawn "
        "on a log scale of 1 − R² (0.99 → 0.999 shows as clearly as 0.9 → 0.99). "
    )
    if n_seeds:
        text += f"Grey: the same architecture untrained ({n_seeds} init seeds, mean ± sd). "
    if base.get("kgram_oracle"):
        text += ("Coloured lines: the best table of the last k tokens, every k (no network): each "
                 "held-out prefix predicted by the mean belief of the held-out prefixes ending in "
                 "the same k tokens, i.e. fit on the scored rows, a generous baseline "
                 "(probes.json also has the table fit on the fit half). ")
    elif base.get("kgram"):
        text += ("Coloured lines: the k-gram lookup, OLS on one-hot cells of the last k tokens "
                 "(no network), same split. ")
    if not predictions:
        return text
    return text + ("Dash-dot and dotted black: the same probe from the model's own next-token "
                   "distribution and from the exact optimal next-token probabilities (a "
                   "reference, not a bound: where the belief is affine in them, any model that "
                   "predicts well scores high).")


def _r2_axis(ax, label: str) -> None:
    """y = 1 - R² on a log axis, inverted (better is higher), ticks labelled with R² itself."""
    ax.set_yscale("log")
    ax.invert_yaxis()
    low, high = sorted(ax.get_ylim())
    decades = np.log10(high / max(low, FLOOR))
    subs = (tuple(range(1, 10)) if decades < 1.5 else (1.0, 2.0, 5.0) if decades < 3.5
            else (1.0,))
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
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
