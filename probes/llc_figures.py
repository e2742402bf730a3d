"""RUN/figures/llc_timeline.png and RUN/figures/llc_calibration.png, from llc.json's content.

The timeline puts on one symlog token axis (the phase figure's): the LLC with its chain spread and
flags, the stage boundaries found (dashed) and the tokens where the belief geometry emerges (the
final layer's probe R² crossing halfway between the untrained network and the end; solid purple),
the probe R² itself (RUN/probes.json), the excess loss (metrics.jsonl) and the main phase
diagnostics (RUN/phases.json: unit gain per layer, sharpness). Panels whose file is missing are
left out. The calibration figure shows every grid cell's estimate and the chosen cell's traces.
Drawn on bare matplotlib Figures; a caption inside each PNG defines every mark.
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from hmm.files import read_json, write_atomic
from models.architectures import hook_label
from models.run_files import read_metrics
from probes.llc_settings import not_an_llc
from probes.phase_figures import (
    BELIEF_COLOUR,
    CAPTION_WIDTH,
    LEGEND,
    NULL_GREY,
    OKABE_ITO,
    _gain_panel,
    _sharpness_panel,
    _token_axis,
    loss_panel,
)
from probes.run_files import NearestBoundary, ProbesFile, read_probes

LLC_COLOUR = OKABE_ITO[0]
FLAG_COLOUR = OKABE_ITO[3]  # vermillion
FLAG_MARKS = {"not_at_minimum": "λ̂<0", "not_settled": "unsettled", "loss_nonfinite": "non-finite",
              "loss_above_uniform": ">ln V", "calibration_failed": "uncalibrated"}  # fmt: skip


def plot_llc_timeline(run: str | Path, llc: dict) -> Path:
    """Draw RUN/figures/llc_timeline.png from `llc` (llc_run's result) and the run's other files."""
    run = Path(run)
    probes = read_probes(run)
    phases = _read(run / "phases.json")
    emergence = llc.get("emergence")
    panels = [lambda ax: _llc_panel(ax, llc)]
    tokens = [e["tokens"] for e in llc["checkpoints"]]
    if probes is not None and emergence is not None:
        panels.append(lambda ax: _r2_panel(ax, probes, emergence))
        tokens += [c.tokens for c in probes.checkpoints]
    panels.append(lambda ax: loss_panel(ax, read_metrics(run)))
    if phases is not None:
        phase_tokens = np.array([e["tokens"] for e in phases["checkpoints"]], dtype=float)
        panels += [
            lambda ax: _gain_panel(ax, phase_tokens, phases),
            lambda ax: _sharpness_panel(ax, phase_tokens, phases),
        ]
    caption = _timeline_caption(llc)
    caption_in = 0.125 * (caption.count("\n") + 1) + 0.45
    height = 2.1 * len(panels) + caption_in + 0.5
    fig = Figure(figsize=(12.5, height))
    axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=True))
    for draw, ax in zip(panels, axes, strict=True):
        draw(ax)
        _marks(ax, llc, label=ax is axes[0])
        ax.grid(alpha=0.25, lw=0.5)
    axes[0].legend(**LEGEND)
    _token_axis(axes[-1], np.array(tokens, dtype=float))
    fig.suptitle(textwrap.fill(_timeline_title(run, llc), 130), fontsize=11)
    fig.text(0.01, 0.1 / height, caption, fontsize=7.5, va="bottom", ha="left")
    fig.tight_layout(rect=(0, (caption_in - 0.35) / height, 1, 1 - 0.55 / height))
    return _save(fig, run / "figures" / "llc_timeline.png")


def _llc_panel(ax, llc: dict) -> None:
    """LLC mean, ± 1 sd band and single chains; flagged points hollow with their flags. The y
    range follows the estimates that are LLCs; one far off it (an early checkpoint's large
    negative λ̂) sits on the frame as a triangle labelled with its value."""
    entries = llc["checkpoints"]
    x = np.array([e["tokens"] for e in entries], dtype=float)
    mean = np.array([_nan(e["llc_mean"]) for e in entries])
    sd = np.array([_nan(e["llc_sd"]) for e in entries])
    low, high = _llc_range(entries)
    shown = np.clip(mean, low, high)
    ax.fill_between(x, np.clip(mean - sd, low, high), np.clip(mean + sd, low, high),
                    color=LLC_COLOUR, alpha=0.2, lw=0, label="± 1 sd across chains")  # fmt: skip
    ax.plot(x, shown, "-", color=LLC_COLOUR, lw=1.4)
    for e in entries:
        chains = [c for c in e["llc_per_chain"] if low <= c <= high]
        ax.plot([e["tokens"]] * len(chains), chains, ".", ms=2.5, color=LLC_COLOUR, alpha=0.5)
    clean = np.array([not e["flags"] for e in entries])
    ax.plot(x[clean], shown[clean], "o", ms=5, color=LLC_COLOUR, label="LLC (mean of chains)")
    if (~clean).any():
        ax.plot(x[~clean], shown[~clean], "o", ms=7, mfc="white", mec=FLAG_COLOUR, mew=1.5,
                label="flagged (see caption)")  # fmt: skip
    for e, value, drawn in zip(entries, mean, shown, strict=True):
        text = " ".join(FLAG_MARKS.get(f, f) for f in e["flags"])
        if value != drawn:  # off the frame: its value says enough
            ax.plot(e["tokens"], drawn, "v" if value < drawn else "^", ms=9, color=FLAG_COLOUR)
            text = f"{value:.3g}"
        if text:
            offset = (4, 4 if value < drawn else -10)
            ax.annotate(text, (e["tokens"], drawn), fontsize=6, color=FLAG_COLOUR,
                        xytext=offset, textcoords="offset points")  # fmt: skip
    ax.axhline(0, color="#333333", lw=0.6)
    ax.set_ylim(low, high)
    ax.set_ylabel("local learning\ncoefficient")


def _llc_range(entries: list[dict]) -> tuple[float, float]:
    """Y limits around the estimates that are LLCs (0 included), else around all of them."""

    def values(use: list[dict]) -> list[float]:
        out = []
        for e in use:
            if e["llc_mean"] is not None and np.isfinite(e["llc_mean"]):
                out += [e["llc_mean"] - _zero(e["llc_sd"]), e["llc_mean"] + _zero(e["llc_sd"])]
        return out

    found = values([e for e in entries if not not_an_llc(e["flags"])])
    found = found or values(entries) or [0.0, 1.0]
    low, high = min(min(found), 0.0), max(max(found), 0.0)
    pad = 0.12 * ((high - low) or 1.0)
    return low - pad, high + pad


def _r2_panel(ax, probes: ProbesFile, emergence: dict) -> None:
    hook = emergence["hook"]
    curve = [(c.tokens, c.layers[hook].r2_heldout) for c in probes.checkpoints
             if hook in c.layers and c.layers[hook].r2_heldout is not None]  # fmt: skip
    ax.plot(*zip(*curve, strict=True), "o-", ms=3, color=OKABE_ITO[2],
            label=f"{hook_label(hook)} probe, held-out R²")  # fmt: skip
    ax.axhline(emergence["untrained_r2"], color=NULL_GREY, lw=1.2, ls=":",
               label=f"untrained network {emergence['untrained_r2']:.3f}")  # fmt: skip
    ax.axhline(emergence["halfway_r2"], color=BELIEF_COLOUR, lw=0.8, ls="-.",
               label=f"halfway to final {emergence['halfway_r2']:.3f}")  # fmt: skip
    ax.set_ylabel("belief probe\nheld-out R²")
    ax.legend(**LEGEND)


def _marks(ax, llc: dict, label: bool) -> None:
    """Stage boundaries (dashed) and the emergence of the geometry (solid) on one panel."""
    for i, b in enumerate(llc["stages"]["boundaries"]):
        ax.axvline(b["tokens"], color="#333333", ls="--", lw=1.0,
                   label="stage boundary (LLC)" if label and i == 0 else None)  # fmt: skip
        if label:
            ax.annotate(b["kind"], (b["tokens"], 1.0), xycoords=("data", "axes fraction"),
                        fontsize=7, rotation=90, va="top", ha="right")  # fmt: skip
    tokens = (llc.get("emergence") or {}).get("tokens")
    if tokens:
        ax.axvline(tokens, color=BELIEF_COLOUR, lw=2.0, alpha=0.8,
                   label="belief geometry emerges (R² halfway)" if label else None)  # fmt: skip


def _timeline_title(run: Path, llc: dict) -> str:
    stages, emergence = llc["stages"], llc.get("emergence") or {}
    n = len(stages["boundaries"])
    if stages["structure"] is None:
        what = "too few unflagged estimates to read stages"
    elif n:
        what = f"{n} stage boundar{'y' if n == 1 else 'ies'} in the LLC curve"
    else:
        what = "no stage structure in the LLC curve"
    where = ""
    if emergence.get("tokens"):
        where = f"; the geometry emerges at {emergence['tokens']:,.0f} tokens"
        near = emergence.get("nearest_boundary")
        if near:
            where += f" ({NearestBoundary.from_json(near).relation} the {near['kind']} at "
            where += f"{near['tokens']:,})"
    return f"{run.name}: local learning coefficient at {len(llc['checkpoints'])} checkpoints, " + (
        f"{what}{where}"
    )


def _timeline_caption(llc: dict) -> str:
    s = llc["settings"]
    lines = [
        f"LLC: λ̂ = nβ (E[L_n(w)] − L_n(w*)) by SGLD around each checkpoint's weights w* "
        f"(devinterp {llc['devinterp']}; step {s['lr']:g}, localization γ {s['localization']:g}, "
        f"nβ {s['n_beta']:g}, {s['chains']} chains × {s['draws']} draws, first "
        f"{s['burnin_frac']:.0%} left out; settings {s['source']}). Band: ± 1 sd across chains "
        "(each chain on its own shuffle of the windows); small dots: single chains.",
        "Hollow marks are flagged: λ̂<0 not at a minimum; unsettled: last vs middle quarter of "
        "the trace differ; non-finite loss; >ln V: a stretch of a chain predicted worse than "
        "uniform; uncalibrated: no calibration cell was usable. λ̂<0, non-finite and >ln V points "
        "are not read as LLCs (left out of the stage rule).",
        "Dashed lines: stage boundaries of the LLC curve (trend changes beyond the chain noise; "
        "docs/llc.md). Purple line: the first crossing of the final layer's probe R² halfway "
        "between the untrained network and the last checkpoint.",
        "Other panels as in phases.png: exact excess loss; unit gain per MLP/recurrent layer with "
        "its re-initialised null; sharpness (top Hessian eigenvalue of the training loss).",
    ]
    return "\n".join(textwrap.fill(line, CAPTION_WIDTH, subsequent_indent="    ") for line in lines)


# ---- calibration -----------------------------------------------------------------------------


def plot_calibration(run: str | Path, llc: dict) -> Path:
    """Draw RUN/figures/llc_calibration.png: the LLC of every grid cell against the step size,
    one panel per nβ, one line per localization γ (hollow: flagged), the chosen cell starred, and
    the chosen cell's loss traces."""
    run = Path(run)
    calibration = llc["calibration"]
    cells = calibration["grid"]
    n_betas = sorted({c["n_beta"] for c in cells})
    gammas = sorted({c["localization"] for c in cells})
    fig = Figure(figsize=(3.6 * max(len(n_betas), 2), 7.6))
    grid = fig.add_gridspec(2, len(n_betas), height_ratios=(1.2, 1.0))
    first = None
    for col, n_beta in enumerate(n_betas):
        ax = fig.add_subplot(grid[0, col], sharey=first)
        first = first or ax
        for i, gamma in enumerate(gammas):
            line = sorted((c for c in cells if c["n_beta"] == n_beta
                           and c["localization"] == gamma), key=lambda c: c["lr"])  # fmt: skip
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            x = [c["lr"] for c in line]
            y = [_nan(c["llc_mean"]) for c in line]
            ax.plot(x, y, "-", color=colour, lw=1, label=f"γ {gamma:g}")
            for c in line:
                filled = colour if c["usable"] else "white"
                ax.plot(c["lr"], _nan(c["llc_mean"]), "o", ms=6, mfc=filled, mec=colour)
                if c["picked"]:
                    ax.plot(c["lr"], _nan(c["llc_mean"]), "*", ms=16, color="black")
        ax.set_xscale("log")
        ax.set_xticks(sorted({c["lr"] for c in cells}), [f"{v:g}" for v in
                      sorted({c["lr"] for c in cells})])  # fmt: skip
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.set_yscale("symlog", linthresh=0.1)
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_title(f"nβ = {n_beta:g}", fontsize=9)
        ax.set_xlabel("SGLD step size ε")
        if col == 0:
            ax.set_ylabel("LLC estimate (symlog)")
            ax.legend(fontsize=7, title="localization", title_fontsize=7)
        ax.grid(alpha=0.25, lw=0.5)
    _chosen_traces(fig.add_subplot(grid[1, :]), calibration, llc["settings"])
    fig.suptitle(_calibration_title(run, calibration), fontsize=10)
    caption = textwrap.fill(
        "Filled marks: usable cells (finite, settled, positive, loss at or below ln V); hollow: "
        "flagged. Star: the chosen cell. Rule: " + calibration["rule"] + ".",
        int(3.6 * max(len(n_betas), 2) * 16),
    )
    fig.text(0.01, 0.01, caption, fontsize=7, va="bottom", ha="left")
    fig.tight_layout(rect=(0, 0.03 + 0.017 * caption.count("\n"), 1, 0.95))
    return _save(fig, run / "figures" / "llc_calibration.png")


def _chosen_traces(ax, calibration: dict, settings: dict) -> None:
    chosen = next((c for c in calibration["grid"] if c["picked"]), None)
    if chosen is None:
        ax.text(0.5, 0.5, "no usable cell: the given settings were used, every estimate flagged",
                transform=ax.transAxes, ha="center")  # fmt: skip
        ax.set_axis_off()
        return
    trace = chosen["trace"]
    draws = trace["draws"]
    for i, row in enumerate(trace["loss"]):
        ax.plot(trace["bin_centres"], np.array(row) - chosen["init_loss"], "o-", ms=3,
                color=OKABE_ITO[i % len(OKABE_ITO)], label=f"chain {i}")  # fmt: skip
    ax.axvspan(0, settings["burnin_frac"] * draws, color=NULL_GREY, alpha=0.2, lw=0,
               label="burn-in (left out)")  # fmt: skip
    ax.axvspan(3 * draws / 8, 5 * draws / 8, color=OKABE_ITO[2], alpha=0.12, lw=0,
               label="middle quarter")  # fmt: skip
    ax.axvspan(3 * draws / 4, draws, color=OKABE_ITO[3], alpha=0.15, lw=0, label="last quarter")
    ax.axhline(0, color="#333333", lw=0.6)
    ax.set_xlabel("SGLD draw")
    ax.set_ylabel("batch loss − L_n(w*)\n(nats, mean per stretch)")
    ax.set_title(
        f"chosen cell: ε {chosen['lr']:g}, γ {chosen['localization']:g}, nβ {chosen['n_beta']:g}"
        f" — λ̂ {chosen['llc_mean']:.3g}, last − middle quarter {trace['drift']:+.3g}",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(alpha=0.25, lw=0.5)


def _calibration_title(run: Path, calibration: dict) -> str:
    usable = sum(c["usable"] for c in calibration["grid"])
    return (
        f"{run.name}: LLC calibration on the checkpoint at {calibration['checkpoint_tokens']:,} "
        f"tokens — {usable} of {len(calibration['grid'])} settings usable"
    )


def _read(path: Path) -> dict | None:
    return read_json(path) if path.is_file() else None


def _zero(value: float | None) -> float:
    return 0.0 if value is None or not np.isfinite(value) else float(value)


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _save(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return write_atomic(path, buffer.getvalue())


def plot_llc_groups(result: dict, path: str | Path) -> Path:
    """compare_llc's figure: per group the LLC mean across its runs with a ± 1 sd band, its runs
    thin, its stage boundaries (dashed) and each run's emergence tokens (ticks at the top)."""
    fig = Figure(figsize=(11, 5.2))
    ax = fig.subplots()
    tokens_all = []
    low, high = _llc_range([e for g in result["groups"].values() for e in g["checkpoints"]])
    for i, (label, group) in enumerate(result["groups"].items()):
        colour = OKABE_ITO[i % len(OKABE_ITO)]
        entries = group["checkpoints"]
        x = np.array([e["tokens"] for e in entries], dtype=float)
        raw = np.array([_nan(e["llc_mean"]) for e in entries])
        mean = np.clip(raw, low, high)
        sd = np.nan_to_num(np.array([_nan(e["llc_sd"]) for e in entries]))
        tokens_all += list(x)
        n = len(group["runs"])
        for off, marker in ((raw < low, "v"), (raw > high, "^")):  # off the frame: not LLCs
            ax.plot(x[off], mean[off], marker, ms=9, color=colour)
        ax.fill_between(x, np.clip(mean - sd, low, high), np.clip(mean + sd, low, high),
                        color=colour, alpha=0.2, lw=0)  # fmt: skip
        ax.plot(
            x, mean, "o-", color=colour, ms=4, lw=1.6, label=f"{label} ({n} run{'s' * (n > 1)})"
        )
        flagged = np.array([not_an_llc(e["flags"]) for e in entries])
        ax.plot(x[flagged], mean[flagged], "o", ms=6, mfc="white", color=colour)
        for k in range(n):
            single = np.clip([_nan(e["llc_runs"][k]) for e in entries], low, high)
            ax.plot(x, single, "-", color=colour, lw=0.6, alpha=0.5)
        for b in group["stages"]["boundaries"]:
            ax.axvline(b["tokens"], color=colour, ls="--", lw=1.0)
            ax.annotate(f"{b['kind']}", (b["tokens"], 1.0 - 0.06 * i),
                        xycoords=("data", "axes fraction"), fontsize=7, color=colour,
                        rotation=90, va="top", ha="right")  # fmt: skip
        for t in group["emergence_tokens"]:
            if t:
                ax.plot(t, 0.02 + 0.03 * i, "|", ms=14, mew=2, color=colour,
                        transform=ax.get_xaxis_transform())  # fmt: skip
    ax.axhline(0, color="#333333", lw=0.6)
    ax.set_ylim(low, high)
    _token_axis(ax, np.array(tokens_all, dtype=float))
    ax.set_ylabel("local learning coefficient")
    ax.grid(alpha=0.25, lw=0.5)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.13), ncol=2)
    s = result["settings"]
    ax.set_title(
        f"LLC across runs at one setting (ε {s['lr']:g}, γ {s['localization']:g}, nβ "
        f"{s['n_beta']:g}, {s['chains']} chains × {s['draws']} draws): band ± 1 sd across runs",
        fontsize=10,
    )
    fig.text(0.01, 0.01, textwrap.fill(
        "Thin lines: single runs; hollow: flagged estimates, not LLCs (not at a minimum, or the "
        "loss above the uniform guess); triangles on an edge: such estimates outside the frame. "
        "Dashed: stage boundaries of each group's mean curve (trend "
        "changes beyond the spread across runs; docs/llc.md). Ticks at the bottom: where each "
        "run's final-layer probe R² crossed halfway from the untrained network to its end.", 160),
        fontsize=7.5, va="bottom")  # fmt: skip
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return _save(fig, Path(path))
