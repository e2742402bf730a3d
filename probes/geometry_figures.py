"""Geometry figures (PNG bytes): effective dimension over training from probes.json, and the
intervention gaps closed per hook from interventions.json. Each carries a caption under the plot
that defines every line, band and bar (the style of probes.belief_figures)."""

from __future__ import annotations

import numpy as np
from matplotlib import ticker

from models.architectures import hook_label
from probes.belief_figures import OKABE_ITO, _caption, _figure, _png, _token_axis


def dimension_over_training(probes: dict) -> bytes | None:
    """Effective dimension (95 %) of each hook against training tokens, beside the
    belief set's affine dimension and each hook's untrained value; None without the keys."""
    checkpoints = probes["checkpoints"]
    hooks = [h for h in probes["hooks"] if "effective_dim" in checkpoints[-1]["layers"].get(h, {})]
    if not hooks:
        return None
    tokens = np.array([c["tokens"] for c in checkpoints], dtype=float)
    fig = _figure(8.5, 5.6)
    ax = fig.subplots()
    untrained = probes.get("baselines", {}).get("random_init", {})
    for i, hook in enumerate(hooks):
        colour = OKABE_ITO[i % len(OKABE_ITO)]
        dims = np.array([c["layers"].get(hook, {}).get("effective_dim", {}).get("95") or np.nan
                         for c in checkpoints], dtype=float)  # --last keeps older records
        ax.plot(tokens, dims, "o-", color=colour, ms=3, label=hook_label(hook))
        null = untrained.get(hook, {}).get("effective_dim_mean", {}).get("95")
        if null is not None:
            ax.axhline(null, color=colour, ls=":", lw=1.2)
    belief = probes.get("belief_geometry", {})
    if belief.get("affine_dim") is not None:
        ax.axhline(belief["affine_dim"], color="black", ls="--", lw=1.5,
                   label=f"belief set's affine dimension ({belief['affine_dim']})")
    ax.set_yscale("log", base=2)
    ax.yaxis.set_major_locator(ticker.LogLocator(base=2))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_ylabel("directions holding 95 % of the variance")
    _token_axis(ax, tokens)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("How many dimensions each layer spends, over training")
    _caption(fig, (
        "Probability-weighted PCA of each hook's activations over every probed prefix (weights: "
        "prefix probabilities). Line: the fewest principal directions holding 95 % of the "
        "variance (probes.json also has 90 % and 99 %); dotted: the same hook of the "
        "untrained network (mean over init seeds); dashed: the affine dimension of the exact "
        "belief set, the dimensions a network needs to spend on the belief geometry alone."
    ))
    ax.grid(alpha=0.3, which="both")
    fig.subplots_adjust(left=0.09, right=0.97, bottom=0.24, top=0.92)
    return _png(fig)


def intervention_bars(result: dict) -> bytes:
    """Gap closed per hook, next token and later positions: the probe move and the encoding move,
    each beside its random and orthogonal nulls, with 95 % intervals."""
    hooks = result["hooks"]
    fig = _figure(10, 6.4)
    axes = fig.subplots(1, 2, sharey=True)
    bars = [("probe move", lambda r: r, OKABE_ITO[0]),
            ("random, same norm", lambda r: r["null_random"], OKABE_ITO[2]),
            ("orthogonal, same norm", lambda r: r["null_orthogonal"], OKABE_ITO[7]),
            ("encoding move", lambda r: r["encoding"], OKABE_ITO[1]),
            ("its random null", lambda r: r["encoding"]["null_random"], OKABE_ITO[3]),
            ("its orthogonal null", lambda r: r["encoding"]["null_orthogonal"], OKABE_ITO[6])]
    width = 0.8 / len(bars)
    y = np.arange(len(hooks))
    for ax, key, title in ((axes[0], "gap_closed_next", "next token (the moved position)"),
                           (axes[1], "gap_closed_later", "later positions")):
        for j, (label, pick, colour) in enumerate(bars):
            records = [pick(result["layers"][h]) for h in hooks]
            values = np.array([np.nan if r[key] is None else r[key] for r in records])
            ci = [r[key + "_ci95"] or [np.nan, np.nan] for r in records]
            err = np.abs(np.array(ci).T - values)
            ax.barh(y + (j - len(bars) / 2 + 0.5) * width, values, width, xerr=err,
                    color=colour, label=label, error_kw={"lw": 0.8})
        ax.axvline(0, color="black", lw=0.8)
        ax.axvline(1, color="black", lw=0.8, ls="--")
        ax.set_xlabel("fraction of the gap closed (1: all the way)")
        ax.set_title(title, fontsize=10)
    axes[0].set_yticks(y, [hook_label(h) for h in hooks])
    axes[0].invert_yaxis()
    axes[1].legend(fontsize=7, loc="lower right")  # later gaps are mostly small: room there
    fig.suptitle(f"Does moving the probed belief move the prediction? ({result['process']}, "
                 f"{result['tokens']:,} tokens, {result['n_prefixes']} held-out prefixes)",
                 fontsize=11)
    _caption(fig, (
        "Each held-out prefix's activation at the hook is moved so that the belief probe reads a "
        "target belief taken from another prefix; the network runs on, and its predictions are "
        "scored by KL to the exact predictions from the target belief. Gap closed = 1 − "
        "ΣKL(moved) / ΣKL(not moved). Probe move: the least-norm move (in the probe's read-out "
        "subspace). Encoding move: the least-norm move inside the span of how activations vary "
        "with the belief. Nulls: random directions of the same norm, anywhere or orthogonal to "
        "the move's subspace. Whiskers: 95 % bootstrap intervals over prefixes. "
        + result["later_positions"][0].upper() + result["later_positions"][1:] + "."
    ))
    fig.subplots_adjust(left=0.13, right=0.98, bottom=0.3, top=0.9, wspace=0.06)
    return _png(fig)
