"""RUN/figures/phases.png: each phase diagnostic beside its reference and its null band.

Panels on one shared token axis (symlog: linear below the first non-zero checkpoint, so the
initial model sits at 0, inside the frame): excess loss; the map that is iterated (RNN: quantiles
of the one-step spectral radius of the recurrent map, its Lyapunov exponents over the trained
window and long-run, and the secant test's contraction rates of state, read-out and belief;
transformer: the scale-normalised block-update gains and the cross-position Jacobian, never a
radius against 1); unit gain per layer (sigmoid-like) or active fraction (ReLU-like); update sign
flips beside the optimiser's own noise level; sharpness against the optimiser's threshold (Adam's
preconditioned value only once v_hat has settled); and, when RUN/probes.json exists, the belief
probe's held-out R^2. Grey bands are the range over networks
of the same shape re-initialised with other seeds; a caption inside the PNG defines every symbol.
Drawn on a bare matplotlib Figure (no pyplot state, no backend switch).
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from hmm.errors import InvalidInput
from hmm.figure_style import LINES as OKABE_ITO
from hmm.figure_style import NULL_GREY
from hmm.figure_style import token_axis as _token_axis
from hmm.files import write_atomic
from models.architectures import final_layer_hook, hook_label
from models.run_files import read_metrics
from probes.run_files import read_probes

BELIEF_COLOUR = "#CC79A7"  # Okabe-Ito reddish purple: the belief update's exact references
CAPTION_WIDTH = 190
LEGEND = {"fontsize": 7, "loc": "upper left", "bbox_to_anchor": (1.01, 1.0)}


def plot_phases(run: str | Path, phases: dict) -> Path:
    """Draw the phase figure of `phases` (phases_run's result) into RUN/figures/phases.png."""
    run = Path(run)
    entries = phases["checkpoints"]
    tokens = np.array([e["tokens"] for e in entries], dtype=float)
    kind = entries[0]["jacobian"]["kind"]
    probes = _probe_curve(run)
    panels = [lambda ax: loss_panel(ax, read_metrics(run))]
    if kind == "recurrent":
        panels += [
            lambda ax: _recurrent_radius_panel(ax, tokens, phases),
            lambda ax: _lyapunov_panel(ax, tokens, phases),
            lambda ax: _secant_panel(ax, tokens, phases),
        ]
    else:
        panels += [
            lambda ax: _block_gain_panel(ax, tokens, phases),
            lambda ax: _cross_position_panel(ax, tokens, phases),
        ]
    panels += [
        lambda ax: _gain_panel(ax, tokens, phases),
        lambda ax: _sign_flip_panel(ax, tokens, phases),
        lambda ax: _sharpness_panel(ax, tokens, phases),
    ]
    if probes:
        panels.append(lambda ax: _probe_panel(ax, probes))
    caption = _caption(kind, phases)
    caption_in = 0.125 * (caption.count("\n") + 1) + 0.45  # caption lines and the x label
    height = 2.1 * len(panels) + caption_in + 0.5
    fig = Figure(figsize=(12.5, height))
    axes = fig.subplots(len(panels), 1, sharex=True)
    for draw, ax in zip(panels, axes, strict=True):
        draw(ax)
        ax.grid(alpha=0.25, lw=0.5)
    _token_axis(axes[-1], tokens)
    fig.suptitle(_title(run, phases, kind), fontsize=11)
    fig.text(0.01, 0.1 / height, caption, fontsize=7.5, va="bottom", ha="left")
    fig.tight_layout(rect=(0, (caption_in - 0.35) / height, 1, 1 - 0.35 / height))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return write_atomic(run / "figures" / "phases.png", buffer.getvalue())


def _title(run: Path, phases: dict, kind: str) -> str:
    entries = phases["checkpoints"]
    what = "recurrent network" if kind == "recurrent" else "transformer"
    return (
        f"{run.name}: phase diagnostics of a {what} at {len(entries)} checkpoints "
        f"(0 to {int(entries[-1]['tokens']):,} tokens), each beside its null"
    )


def _caption(kind: str, phases: dict) -> str:
    """Definitions of every symbol, line and band in the figure (drawn inside the PNG)."""
    null = phases.get("null", {})
    seeds = len(null.get("seeds", []))
    lines = [
        f"Grey band (or a light band of a curve's colour): range over {seeds} networks of this "
        "shape re-initialised with other seeds "
        "(the null: what an untrained network shows). Dotted line of a curve's colour: its "
        "value at initialisation (tokens 0).",
    ]
    if kind == "recurrent":
        lines += [
            "J_t = d s_t / d s_(t-1): the recurrent Jacobian of the stacked recurrent state s (h, "
            "or (h, c) for an LSTM; the map iterated token after token); radius = largest "
            "|eigenvalue|: median over the "
            "probe batch with its 10-90 % band, and the mean the seed rule reads. The belief "
            "update b' = bT[x]/(bT[x]1) has its own radius and exponents (purple), exact from "
            "the HMM.",
            "Lyapunov exponent: growth rate (nats/token) of a perturbation carried by the product "
            "of the J_t, long-run (along 200-token sequences) and over the trained window "
            "(finite-time, from the initial state); > 0 perturbations grow, < 0 they fade.",
            "Secant rates: mean log shrinkage per token of the distance between two reachable "
            "states fed the same future tokens (network state, probe read-out, exact belief); "
            "filled markers: the state's rate agrees with the belief's within the embedding's "
            "distortion (the secant test passes), open: it does not (docs/phases.md).",
            "Circular law: sigma sqrt(H), the radius of a random H x H matrix with W_rec's entry "
            "variance.",
        ]
    else:
        lines += [
            "U_l = d(resid_post_l - resid_pre_l)/d resid_pre_l: Jacobian of block l's update at "
            "the same position. Gain of N_l = (|x|/|u|) U_l: largest singular value of U_l "
            "rescaled by the "
            "input and update norms (relative change of the update per relative change of the "
            "input; free of the LayerNorm 1/|x| scaling). Nothing is iterated in a transformer, so "
            "no 'radius > 1' rule is applied.",
            "C_t = d resid_final[t] / d resid_pre0[t-1]: how the previous position's residual "
            "stream moves this position's output (the transformer's analogue of a recurrence); "
            "largest singular value.",
        ]
    high = phases["probe_batch"].get("linear_gain", 0.8)
    low = phases["probe_batch"].get("saturated_gain", 0.2)
    flips = phases.get("sign_flips") or {}
    lines += [
        f"Units: tanh/sigmoid layers by their gain E[f'(z)] / f'(0) (linear >= {high}, "
        f"saturated <= {low}); ReLU-like layers by their active fraction, the share of (input, "
        f"unit) pairs with z > 0 (dense >= {high}, sparse <= {low}); band = 25-75 % quantiles "
        "over units.",
        "Sign flips: share of parameters whose update sign reverses between consecutive updates, "
        "mean over the updates since the previous checkpoint, beside the same count for the "
        f"run's optimiser ({flips.get('optimizer', '?')}) on pure-noise gradients (the null; "
        f"stationary value arccos(rho)/pi = {flips.get('reference', float('nan')):.4f}). "
        "Sharpness: top Hessian eigenvalue of the training loss ("
        f"{phases.get('sharpness_loss', {}).get('description', 'see phases.json')}); Adam's "
        "preconditioned value only from the step at which v_hat has settled.",
    ]
    return "\n".join(textwrap.fill(line, CAPTION_WIDTH, subsequent_indent="    ") for line in lines)


def _null_band(
    ax, phases: dict, key: str, label: str | None = "null: re-initialised", colour=NULL_GREY
) -> list:
    """Band over the null range of `key`; returns the values it spans (for zooming)."""
    band = phases.get("null", {}).get("reinit", {}).get(key)
    if not band:
        return []
    alpha = 0.25 if colour == NULL_GREY else 0.15
    ax.axhspan(band["min"], band["max"], color=colour, alpha=alpha, lw=0, label=label)
    if band["max"] - band["min"] < 1e-9:  # a band of zero width is a line
        ax.axhline(band["min"], color=NULL_GREY, lw=2, alpha=0.6)
    return [band["min"], band["max"]]


def _series(ax, tokens, values, colour, label, init=True, style="o-") -> list:
    """A curve (None values skipped) and, when asked, a dotted line at its initial value."""
    pairs = [(t, v) for t, v in zip(tokens, values, strict=True) if v is not None]
    if not pairs:
        return []
    x, y = zip(*pairs, strict=True)
    ax.plot(x, y, style, ms=3, color=colour, lw=1.4, label=label)
    if init and x[0] == 0:
        ax.axhline(y[0], color=colour, lw=0.8, ls=":", label=f"{label}: at init")
    return list(y)


def _zoom(ax, values: list, log: bool = False, pad: float = 0.08) -> None:
    """Y limits around the plotted values (log when asked and all positive)."""
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return
    low, high = min(values), max(values)
    if log and low > 0:
        ax.set_yscale("log")
        ax.set_ylim(low / (1 + 4 * pad), high * (1 + 4 * pad))
        return
    span = (high - low) or max(abs(high), 1e-3)
    ax.set_ylim(low - pad * span, high + pad * span)


def loss_panel(ax, records: list[dict]) -> None:
    """Excess loss over training from metrics.jsonl records: batch losses (smoothed when there are
    many) and the exact excess at checkpoints (log y; the caller chooses the x scale)."""
    if records:
        x = np.array([r["tokens"] for r in records], dtype=float)
        y = np.array(
            [np.nan if r.get("excess_loss") is None else r["excess_loss"] for r in records],
            dtype=float,
        )
        window = max(1, len(y) // 100)  # batch losses are noisy (and dip below the optimum)
        smooth = np.convolve(y, np.ones(window) / window, mode="same") if window > 1 else y
        keep = smooth > 0
        what = f"moving mean over {window} logged steps" if window > 1 else "each logged step"
        ax.plot(
            x[keep],
            smooth[keep],
            color=OKABE_ITO[5],
            lw=0.8,
            alpha=0.8,
            label=f"batch loss - optimal ({what})",
        )
    exact = [(r["tokens"], r.get("exact_excess_loss")) for r in records]
    exact = [(t, v) for t, v in exact if v is not None and v > 0]
    if exact:
        ax.plot(
            *zip(*exact, strict=True),
            "o-",
            ms=3,
            color=OKABE_ITO[0],
            label="exact expected loss - optimal (checkpoints)",
        )
    ax.set_yscale("log")
    ax.set_ylabel("excess loss\n(nats)")
    ax.legend(**LEGEND)


def _recurrent_radius_panel(ax, tokens, phases: dict) -> None:
    jac = [e["jacobian"] for e in phases["checkpoints"]]
    values = _null_band(ax, phases, "jacobian.spectral_radius_quantiles.q50")
    quantiles = [j.get("spectral_radius_quantiles") or {} for j in jac]
    if all("q10" in q for q in quantiles):
        low, high = [q["q10"] for q in quantiles], [q["q90"] for q in quantiles]
        ax.fill_between(tokens, low, high, color=OKABE_ITO[0], alpha=0.15, lw=0,
                        label="J_t radius: 10-90 % of the batch")  # fmt: skip
        values += low + high
        values += _series(
            ax, tokens, [q["q50"] for q in quantiles], OKABE_ITO[0], "J_t radius (median)"
        )
    values += _series(
        ax,
        tokens,
        [j["spectral_radius_mean"] for j in jac],
        OKABE_ITO[2],
        "J_t radius (mean: the seed rule)",
        init=False,
        style="s--",
    )
    values += _series(
        ax,
        tokens,
        [j["blocks"][0].get("w_rec_circular_law_radius") for j in jac],
        OKABE_ITO[5],
        "circular law sigma sqrt(H), layer 0",
        init=False,
        style="--",
    )
    belief = phases.get("belief_update", {})
    middle = (belief.get("spectral_radius_quantiles") or {}).get("q50")
    if middle is not None:
        ax.axhline(middle, color=BELIEF_COLOUR, lw=1.4, ls="-.",
                   label="belief update radius (median, exact)")  # fmt: skip
        values.append(middle)
    ax.axhline(1.0, color="#333333", lw=0.8, ls="--", label="radius 1 (seed rule)")
    flagged = phases.get("first_spectral_radius_above_1")
    if flagged is not None:
        ax.axvline(flagged, color="#333333", lw=0.8, ls=":", label="seed rule: first mean > 1")
    _zoom(ax, values + [1.0])
    ax.set_ylabel("one-step\nspectral radius")
    ax.legend(**LEGEND)


def _lyapunov_panel(ax, tokens, phases: dict) -> None:
    jac = [e["jacobian"] for e in phases["checkpoints"]]
    belief = phases.get("belief_update", {})
    window = belief.get("window", "n_ctx")
    values = _null_band(ax, phases, "jacobian.lyapunov")
    values += _series(
        ax, tokens, [j.get("lyapunov") for j in jac], OKABE_ITO[0], "network: long-run"
    )
    values += _series(
        ax,
        tokens,
        [j.get("lyapunov_window") for j in jac],
        OKABE_ITO[2],
        f"network: trained window ({window} tokens)",
        init=False,
        style="s-",
    )
    for key, style, label in (
        ("lyapunov", "-.", "belief update: long-run (exact)"),
        ("lyapunov_window", ":", f"belief update: window of {window} (exact)"),
    ):
        if belief.get(key) is not None:
            ax.axhline(belief[key], color=BELIEF_COLOUR, lw=1.4, ls=style, label=label)
            values.append(belief[key])
    ax.axhline(0.0, color="#333333", lw=0.8, ls="--", label="0: neutral")
    _zoom(ax, values + [0.0])
    ax.set_ylabel("Lyapunov exp.\n(nats/token)")
    ax.legend(**LEGEND)


def _secant_panel(ax, tokens, phases: dict) -> None:
    secants = [e["jacobian"].get("secant") or {} for e in phases["checkpoints"]]
    if not any(s.get("rate_state") is not None for s in secants):
        ax.text(0.5, 0.5, "no secant test (windows of one token, or the filter synchronises)",
                transform=ax.transAxes, ha="center", fontsize=8)  # fmt: skip
        ax.set_ylabel("secant rate\n(nats/token)")
        return
    values = _null_band(ax, phases, "jacobian.secant.rate_state")
    band = [(t, s["rate_belief"], s["state_vs_belief"]["tolerance"]) for t, s in
            zip(tokens, secants, strict=True) if s.get("state_vs_belief")]  # fmt: skip
    if band:
        x, middle, width = (np.array(v) for v in zip(*band, strict=True))
        ax.fill_between(x, middle - width, middle + width, color=BELIEF_COLOUR, alpha=0.12, lw=0,
                        label="state passes inside: belief rate +- tolerance")  # fmt: skip
        values += list(middle - width) + list(middle + width)
    for name, colour, marker in (("state", OKABE_ITO[0], "o"), ("readout", OKABE_ITO[3], "^")):
        rates = [s.get(f"rate_{name}") for s in secants]
        passed = [(s.get(f"{name}_vs_belief") or {}).get("passes") for s in secants]
        what = "network state" if name == "state" else "probe read-out"
        values += _series(ax, tokens, rates, colour, what, init=False, style="-")
        for fill, label in ((True, "passes"), (False, "fails")):
            points = [(t, r) for t, r, p in zip(tokens, rates, passed, strict=True)
                      if r is not None and p is fill]  # fmt: skip
            if points:
                ax.plot(*zip(*points, strict=True), marker, ms=5, color=colour,
                        mfc=colour if fill else "white", ls="none",
                        label=f"{what}: secant test {label}")  # fmt: skip
    belief = [s.get("rate_belief") for s in secants]
    values += _series(ax, tokens, belief, BELIEF_COLOUR, "exact belief (same pairs)", init=False,
                      style="-.")  # fmt: skip
    _zoom(ax, values)
    ax.set_ylabel("secant rate\n(nats/token)")
    ax.legend(**LEGEND)


def _block_gain_panel(ax, tokens, phases: dict) -> None:
    blocks = phases["checkpoints"][0]["jacobian"]["blocks"]
    values = []
    for b, block in enumerate(blocks):
        key = f"jacobian.blocks.{b}.normalised_spectral_norm_mean"
        name = hook_label(block["hook"])
        values += _null_band(
            ax, phases, key, f"{name}: null band (re-initialised)", OKABE_ITO[b % 7]
        )
        series = [
            e["jacobian"]["blocks"][b]["normalised_spectral_norm_mean"]
            for e in phases["checkpoints"]
        ]
        values += _series(
            ax,
            tokens,
            series,
            OKABE_ITO[b % 7],
            f"{hook_label(block['hook'])}: gain of N_l",
            init=False,
        )
    ax.axhline(1.0, color="#333333", lw=0.8, ls="--", label="gain 1")
    _zoom(ax, values + [1.0])
    ax.set_ylabel("block update\ngain (mean)")
    ax.legend(**LEGEND)


def _cross_position_panel(ax, tokens, phases: dict) -> None:
    entries = phases["checkpoints"]
    if "cross_position" not in entries[0]["jacobian"]:
        ax.text(
            0.5,
            0.5,
            "single-position inputs: no cross-position Jacobian",
            transform=ax.transAxes,
            ha="center",
        )
        return
    values = _null_band(ax, phases, "jacobian.cross_position.spectral_norm_mean")
    values += _series(
        ax,
        tokens,
        [e["jacobian"]["cross_position"]["spectral_norm_mean"] for e in entries],
        OKABE_ITO[0],
        "C_t: largest singular value",
    )
    _zoom(ax, values)
    ax.set_ylabel("cross-position\ngain (mean)")
    ax.legend(**LEGEND)


def _gain_panel(ax, tokens, phases: dict) -> None:
    """Sigmoid-like layers on the gain scale, ReLU-like ones by their active fraction: each
    model has one family, so the panel has one scale and one set of labels."""
    entries = phases["checkpoints"]
    layers = list(entries[0]["units"])
    relu = entries[0]["units"][layers[0]].get("measure") == "active fraction"
    level, spread = ("active_frac", "active_quantiles") if relu else ("gain_mean", "gain_quantiles")
    reinit = phases.get("null", {}).get("reinit", {})
    bands = [reinit[f"units.{layer}.{level}"] for layer in layers
             if f"units.{layer}.{level}" in reinit]  # fmt: skip
    values = []
    if bands:
        low, high = min(b["min"] for b in bands), max(b["max"] for b in bands)
        ax.axhspan(
            low, high, color=NULL_GREY, alpha=0.25, lw=0, label="null: re-initialised (all layers)"
        )
        values += [low, high]
    for i, layer in enumerate(layers):
        units = [e["units"][layer] for e in entries]
        colour = OKABE_ITO[i % 7]
        q25, q75 = [u[spread]["q25"] for u in units], [u[spread]["q75"] for u in units]
        ax.fill_between(tokens, q25, q75, color=colour, alpha=0.15, lw=0)
        what = "active fraction" if relu else "gain"
        values += _series(ax, tokens, [u[level] for u in units], colour,
                          f"{hook_label(layer)} ({units[0]['act']}): {what}, 25-75 % band",
                          init=False)  # fmt: skip
        values += q25 + q75
    probe = phases["probe_batch"]
    names = ("dense", "sparse") if relu else ("linear", "saturated")
    for bound, name, sign in (
        (probe.get("linear_gain", 0.8), names[0], ">="),
        (probe.get("saturated_gain", 0.2), names[1], "<="),
    ):
        ax.axhline(bound, color="#333333", lw=0.8, ls="--")
        ax.text(0.005, bound, f"{name} {sign} {bound:g}", transform=ax.get_yaxis_transform(),
                fontsize=7, va="bottom")  # fmt: skip
        values.append(bound)
    _zoom(ax, values)
    ax.set_ylabel("active fraction\nP(z > 0)" if relu else "unit gain\nE[f'(z)]/f'(0)")
    ax.legend(**LEGEND)


def _sign_flip_panel(ax, tokens, phases: dict) -> None:
    entries = phases["checkpoints"]
    values = _series(
        ax,
        tokens,
        [e.get("sign_flip_frac") for e in entries],
        OKABE_ITO[0],
        "update sign-flip fraction (training)",
        init=False,
    )
    flips = phases.get("sign_flips") or {}
    optimizer = flips.get("optimizer", "the optimiser")
    values += _series(ax, tokens, [e.get("sign_flip_null") for e in entries], NULL_GREY,
                      f"null: {optimizer} on pure-noise gradients, same intervals", init=False,
                      style="s--")  # fmt: skip
    if flips.get("reference") is not None:
        ax.axhline(flips["reference"], color="#333333", lw=0.8, ls=":",
                   label=f"arccos(rho)/pi = {flips['reference']:.4f} (rho {flips['rho']:g})")
        values.append(flips["reference"])
    if not any(e.get("sign_flip_frac") is not None for e in entries):
        ax.text(
            0.5,
            0.5,
            "not recorded for this run (trained before sign flips were logged)",
            transform=ax.transAxes,
            ha="center",
            fontsize=8,
        )
    _zoom(ax, values)
    ax.set_ylabel("update sign-flip\nfraction")
    ax.legend(**LEGEND)


def _sharpness_panel(ax, tokens, phases: dict) -> None:
    details = [e["sharpness_detail"] for e in phases["checkpoints"]]
    compared = details[0]["compared"]
    values = _series(
        ax,
        tokens,
        [d["raw"] for d in details],
        OKABE_ITO[0],
        "raw sharpness lambda_max(H)",
        init=False,
    )
    if compared == "preconditioned":
        values += _series(
            ax,
            tokens,
            [d["preconditioned"] if d.get("settled", True) else None for d in details],
            OKABE_ITO[3],
            "preconditioned lambda_max(P^-1 H) (Adam)",
            init=False,
            style="s-",
        )
        settled = phases.get("sharpness_settled") or {}
        if settled.get("first_shown_tokens") is not None:
            ax.axvline(settled["first_shown_tokens"], color=OKABE_ITO[3], lw=0.8, ls=":",
                       label=f"preconditioned shown from step {settled['step']} (v_hat settled)")
    threshold = [d["threshold"] for d in details]
    if any(threshold):
        rule = "38/lr (Adam, vs preconditioned)" if compared == "preconditioned" else "2/lr (SGD)"
        values += _series(
            ax, tokens, threshold, "#333333", f"threshold {rule}", init=False, style="--"
        )
    _zoom(ax, values, log=True)
    ax.set_ylabel("sharpness\n(top Hessian eig.)")
    ax.legend(**LEGEND)


def _probe_panel(ax, probes: dict) -> None:
    values = []
    for i, (label, (x, y)) in enumerate(probes.items()):
        ax.plot(x, y, "o-", ms=3, color=OKABE_ITO[i], label=f"{hook_label(label)} probe")
        values += list(y)
    _zoom(ax, values)
    ax.set_ylabel("belief probe\nheld-out R^2")
    ax.legend(**LEGEND)


def _probe_curve(run: Path) -> dict[str, tuple[list, list]]:
    """Held-out R^2 of the concat and last-layer probes from RUN/probes.json (empty when absent)."""
    try:
        probes = read_probes(run)
    except (InvalidInput, TypeError):  # a broken probes.json leaves the panel out, not the figure
        return {}
    if probes is None or not probes.checkpoints:
        return {}
    from probes.belief_study import CONCAT

    first = probes.checkpoints[0].layers
    layers = [k for k in first if k != CONCAT]
    wanted = ([CONCAT] if CONCAT in first else []) + ([final_layer_hook(layers)] if layers else [])
    out = {}
    for layer in wanted:
        pairs = [
            (c.tokens, c.layers[layer].r2_heldout)
            for c in probes.checkpoints
            if layer in c.layers and c.layers[layer].r2_heldout is not None
        ]
        if pairs:
            out[layer] = tuple(map(list, zip(*pairs, strict=True)))
    return out
