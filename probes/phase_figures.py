"""RUN/figures/phases.png: the phase diagnostics of a run on one shared log-token axis.

Panels, top to bottom: excess loss; Jacobian spectral radius / norm (full map and per block, y = 1
line, the seed rule's checkpoint marked); unit-regime fractions per layer with phase ribbons;
update sign-flip fraction; sharpness against the optimiser's stability threshold; and, when
RUN/probes.json exists, the belief probe's held-out R^2. The x axis is symlog with its linear
part below the first non-zero checkpoint, so the initial model (tokens 0) is drawn at 0.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hmm.files import write_atomic  # noqa: E402
from hmm.plots import OKABE_ITO_HEX  # noqa: E402
from models.architectures import final_layer_hook  # noqa: E402
from models.run_files import read_metrics  # noqa: E402

# Okabe-Ito, colour-blind safe
OKABE_ITO = [OKABE_ITO_HEX[i] for i in (4, 0, 2, 5, 6, 1, 3, 7)]  # blue first
PHASE_COLOURS = {"linear": "#56B4E9", "hybrid": "#F0E442", "saturated": "#D55E00"}


def plot_phases(run: str | Path, phases: dict) -> Path:
    """Draw the multi-panel phase figure of `phases` (phases_run's result) into RUN/figures/."""
    run = Path(run)
    entries = phases["checkpoints"]
    tokens = np.array([e["tokens"] for e in entries], dtype=float)
    probes = _probe_curve(run)
    n_panels = 6 if probes else 5
    fig, axes = plt.subplots(n_panels, 1, figsize=(12, 2.3 * n_panels + 0.8), sharex=True)
    kind = entries[0]["jacobian"]["kind"]

    loss_panel(axes[0], read_metrics(run))
    flagged = _jacobian_panel(axes[1], entries, tokens, kind, phases)
    _units_panel(axes[2], entries, tokens)
    _sign_flip_panel(axes[3], entries, tokens)
    _sharpness_panel(axes[4], entries, tokens)
    if probes:
        _probe_panel(axes[5], probes)
    for ax in axes:
        if flagged is not None:
            ax.axvline(flagged, color="#000000", lw=1.0, ls=":", alpha=0.8)
        ax.grid(alpha=0.25, lw=0.5)
    positive = tokens[tokens > 0]
    axes[-1].set_xscale("symlog", linthresh=float(positive.min()) if positive.size else 1.0)
    axes[-1].set_xlim(0, tokens.max() * 1.05 if tokens.max() > 0 else 1)
    axes[-1].set_xlabel(
        "training tokens (symlog axis: linear below the first checkpoint, 0 = init; "
        "dotted line = seed-rule checkpoint)"
    )
    fig.suptitle(_title(run, phases, flagged, kind), fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return write_atomic(run / "figures" / "phases.png", buffer.getvalue())


def _title(run: Path, phases: dict, flagged: float | None, kind: str) -> str:
    """A title that states what the run shows: the seed rule's checkpoint and the unit phases."""
    entries = phases["checkpoints"]
    first = [u["phase"] for u in entries[0]["units"].values()]
    last = [u["phase"] for u in entries[-1]["units"].values()]

    def summary(labels: list[str]) -> str:
        return ", ".join(f"{labels.count(p)} {p}" for p in PHASE_COLOURS if labels.count(p))

    where = "never" if flagged is None else f"at {int(flagged):,} tokens"
    what = "full map" if kind == "residual" else "recurrent map"
    return (
        f"{run.name}: mean {what} spectral radius first > 1 {where}; unit layers "
        f"{summary(first)} at init -> {summary(last)} at the end"
    )


def loss_panel(ax, records: list[dict]) -> None:
    """Excess loss over training from metrics.jsonl records: smoothed batch losses and the exact
    excess at checkpoints (log y; the caller chooses the x scale)."""
    if records:
        x = np.array([r["tokens"] for r in records], dtype=float)
        y = np.array([r["excess_loss"] for r in records], dtype=float)
        window = max(1, len(y) // 100)  # batch losses are noisy (and dip below the optimum)
        smooth = np.convolve(y, np.ones(window) / window, mode="same")
        keep = smooth > 0
        ax.plot(
            x[keep],
            smooth[keep],
            color=OKABE_ITO[5],
            lw=0.8,
            alpha=0.8,
            label=f"batch loss - optimal (moving mean of {window} logs)",
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
    ax.set_ylabel("excess loss (nats)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _jacobian_panel(ax, entries, tokens, kind: str, phases: dict) -> float | None:
    jac = [e["jacobian"] for e in entries]
    full_label = "full map J_t" if kind == "residual" else "stacked-state map ds_t/ds_(t-1)"
    ax.plot(
        tokens,
        [j["spectral_radius_mean"] for j in jac],
        "o-",
        ms=3,
        color=OKABE_ITO[7],
        label=f"{full_label}: radius (mean)",
    )
    ax.plot(
        tokens,
        [j["spectral_norm_mean"] for j in jac],
        "--",
        color=OKABE_ITO[7],
        lw=1,
        label=f"{full_label}: norm (mean)",
    )
    n_blocks = len(jac[0]["blocks"])
    if kind == "residual" or n_blocks > 1:
        what = "update U_l" if kind == "residual" else "recurrent"
        for b in range(n_blocks):
            ax.plot(
                tokens,
                [j["blocks"][b]["spectral_radius_mean"] for j in jac],
                "-",
                lw=1.2,
                color=OKABE_ITO[b % 7],
                label=f"{what} {jac[0]['blocks'][b]['hook']}: radius",
            )
    ax.axhline(1.0, color="#666666", lw=1, ls="-.", label="radius 1")
    flagged = phases.get("first_spectral_radius_above_1")
    if flagged is not None:
        at = [
            j["spectral_radius_mean"]
            for e, j in zip(entries, jac, strict=True)
            if e["tokens"] == flagged
        ]
        ax.plot([flagged], at[:1], "*", ms=12, color=OKABE_ITO[3], label="seed rule: first > 1")
    ax.set_yscale("log")
    ax.set_ylabel("spectral radius /\nnorm (mean)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return None if flagged is None else float(flagged)


def _units_panel(ax, entries, tokens) -> None:
    layers = list(entries[0]["units"])
    ribbon = 0.07
    edges = _edges(tokens)
    handles, labels = [], []
    for i, layer in enumerate(layers):
        colour = OKABE_ITO[i % 7]
        series = [e["units"][layer] for e in entries]
        ax.plot(tokens, [u["linear_frac"] for u in series], "-", color=colour, lw=1.3)
        ax.plot(tokens, [u["saturated_frac"] for u in series], "--", color=colour, lw=1.3)
        ax.plot(tokens, [u["dead_frac"] for u in series], ":", color=colour, lw=1.6)
        handles.append(plt.Line2D([], [], color=colour, lw=2))
        labels.append(f"{layer} ({series[0]['act']})")
        bottom = 1.02 + i * ribbon
        for k, u in enumerate(series):
            ax.fill_between(
                [edges[k], edges[k + 1]],
                bottom,
                bottom + ribbon * 0.8,
                color=PHASE_COLOURS[u["phase"]],
                lw=0,
            )
    for style, what in (("-", "linear frac"), ("--", "saturated frac"), (":", "dead frac")):
        handles.append(plt.Line2D([], [], color="#444444", ls=style))
        labels.append(what)
    for phase, colour in PHASE_COLOURS.items():
        handles.append(plt.Rectangle((0, 0), 1, 1, color=colour))
        labels.append(f"phase ribbon: {phase}")
    ax.set_ylim(0, 1.02 + len(layers) * ribbon + 0.02)
    ax.set_ylabel("fraction of\nunit x input")
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(
        "unit regimes per layer; ribbons above 1 = phase label (bottom ribbon = first layer)",
        fontsize=8,
    )


def _sign_flip_panel(ax, entries, tokens) -> None:
    pairs = [
        (t, e["sign_flip_frac"])
        for t, e in zip(tokens, entries, strict=True)
        if e["sign_flip_frac"] is not None
    ]
    if pairs:
        ax.plot(*zip(*pairs, strict=True), "o-", ms=3, color=OKABE_ITO[4])
    ax.axhline(0.5, color="#666666", lw=0.8, ls="-.")
    ax.set_ylim(0, 1)
    ax.set_ylabel("update sign-flip\nfraction")
    ax.set_title(
        "fraction of parameters whose update sign reverses between consecutive intervals "
        "(0.5 = uncorrelated)",
        fontsize=8,
    )


def _sharpness_panel(ax, entries, tokens) -> None:
    details = [e["sharpness_detail"] for e in entries]
    compared = details[0]["compared"]
    ax.plot(
        tokens,
        [d["raw"] for d in details],
        "o-",
        ms=3,
        color=OKABE_ITO[0],
        label="raw sharpness lambda_max(H)",
    )
    if compared == "preconditioned":
        pre = [
            (t, d["preconditioned"])
            for t, d in zip(tokens, details, strict=True)
            if d["preconditioned"] is not None
        ]
        if pre:
            ax.plot(
                *zip(*pre, strict=True),
                "s-",
                ms=3,
                color=OKABE_ITO[3],
                label="preconditioned lambda_max(P^-1 H) (Adam)",
            )
    thr = [(t, d["threshold"]) for t, d in zip(tokens, details, strict=True) if d["threshold"]]
    if thr:
        rule = "38/lr (Adam, vs preconditioned)" if compared == "preconditioned" else "2/lr (SGD)"
        ax.plot(*zip(*thr, strict=True), "-", color="#666666", lw=1.2, label=f"threshold {rule}")
    ax.set_yscale("log")
    ax.set_ylabel("sharpness\n(top Hessian eig.)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _probe_panel(ax, probes: dict) -> None:
    for i, (label, (x, y)) in enumerate(probes.items()):
        ax.plot(x, y, "o-", ms=3, color=OKABE_ITO[i], label=label)
    ax.set_ylabel("belief probe\nheld-out R^2")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _probe_curve(run: Path) -> dict[str, tuple[list, list]]:
    """Held-out R^2 of the concat and last-layer probes from RUN/probes.json (empty when absent)."""
    path = run / "probes.json"
    if not path.is_file():
        return {}
    try:
        checkpoints = json.loads(path.read_text())["checkpoints"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return {}
    if not checkpoints:
        return {}
    layers = [k for k in checkpoints[0].get("layers", {}) if k != "concat"]
    wanted = (["concat"] if "concat" in checkpoints[0].get("layers", {}) else []) + (
        [final_layer_hook(layers)] if layers else []
    )
    out = {}
    for layer in wanted:
        pairs = [
            (c["tokens"], c["layers"][layer]["r2_heldout"])
            for c in checkpoints
            if layer in c.get("layers", {}) and c["layers"][layer].get("r2_heldout") is not None
        ]
        if pairs:
            out[layer] = tuple(map(list, zip(*pairs, strict=True)))
    return out


def _edges(tokens: np.ndarray) -> np.ndarray:
    """Band edges halfway (geometrically where possible) between consecutive checkpoints."""
    mids = []
    for a, b in zip(tokens[:-1], tokens[1:], strict=True):
        mids.append(np.sqrt(a * b) if a > 0 else b / 2)
    first = tokens[0]
    last = tokens[-1] * 1.05 if tokens[-1] > 0 else 1.0
    return np.array([first, *mids, last])
