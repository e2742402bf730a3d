"""The report's LLC section, drawn from the run's LlcSummary (llc.json; docs/llc.md): the timeline
figure, how the SGLD settings were chosen, every flag stated as a warning, the stage boundaries and
where the probe's R² emergence falls among them — computed sentences, not typed. Kept apart from
report.py, which calls it in one line; a run without llc.json gets no section (the folder table
names the command).
"""

from __future__ import annotations

import html
from pathlib import Path

from experiments.page import embed_image, num, table
from experiments.summary import LlcSummary, RunSummary
from probes.llc_settings import FLAG_MEANINGS, NOT_AN_LLC
from probes.run_files import Calibration


def llc_section(run: Path, summary: RunSummary) -> list[str]:
    """HTML parts of the LLC section; [] when the run has no llc.json."""
    llc = summary.llc
    if llc is None or not llc.checkpoints:
        return []
    figures = llc.file.figures
    parts = [
        "<h2 id='llc'>Local learning coefficient: stages of training beside the geometry</h2>",
        "<p>The local learning coefficient (LLC) λ̂ = nβ (E[L_n(w)] − L_n(w*)) is estimated by "
        "SGLD around each checkpoint's weights w* (devinterp "
        f"{html.escape(llc.file.devinterp or '?')}; docs/llc.md). Plateaus and turns of the LLC "
        "mark stages of training (Hoogland et al. 2025). Values compare across checkpoints and "
        "runs measured at the same settings, not as absolute λ.</p>",
        f"<p>{html.escape(settings_sentence(llc))}</p>",
        *(f"<p class='note'>{html.escape(w)}</p>" for w in flag_warnings(llc)),
        f"<p>{html.escape(stages_sentence(llc))}</p>",
        f"<p>{html.escape(emergence_sentence(summary))}</p>",
        embed_image(run / (figures.timeline if figures and figures.timeline else
                           "figures/llc_timeline.png"),
                    "The LLC (± 1 sd across chains; hollow: flagged) beside the final layer's "
                    "probe R², the excess loss and the phase diagnostics on one token axis; "
                    "dashed: stage boundaries, purple: where the geometry emerges"),
        _checkpoint_table(llc),
    ]
    if figures and figures.calibration:
        parts.append(embed_image(run / figures.calibration, "The calibration grid: every cell's "
                                 "estimate (hollow: flagged), the chosen cell starred, its traces"))
    return parts


def settings_sentence(llc: LlcSummary) -> str:
    """How the settings were chosen: calibrated (the grid, the rule's pick), or given."""
    s, calibration = llc.file.settings, llc.file.calibration
    counts = (f"{s.chains} chains × {s.draws} draws at batch {s.batch_size} over {s.windows:,} "
              f"fixed windows of the run's process" if s else "")
    if calibration is not None:
        return _calibrated(calibration, llc) + f" Each estimate: {counts}."
    source = s.source if s and s.source else "given"
    return (f"Settings {source}, not calibrated on this run ({llc.settings_text(False)}): "
            "taken from the command line or an earlier llc.json, so this run is measured like the "
            f"runs it is compared with. Each estimate: {counts}.")


def _calibrated(calibration: Calibration, llc: LlcSummary) -> str:
    cells = len(calibration.grid or [])
    where = f"the checkpoint at {calibration.checkpoint_tokens:,} tokens" if (
        calibration.checkpoint_tokens is not None) else "the final checkpoint"
    grid = "grid cells (step size ε × localization γ × nβ)"
    chosen = calibration.chosen
    if chosen is None:
        return (f"The calibration on {where} found none of its {cells} {grid} usable (finite, "
                f"settled, positive, loss at or below ln V), so the settings given were used "
                f"unchecked ({llc.settings_text(False)}).")
    head = (f"Settings calibrated on {where}: {calibration.usable} of {cells} {grid} were usable "
            "(finite, settled, positive, loss at or below ln V).")
    picked = next((c for c in calibration.grid or [] if c.picked), None)
    value = f" (λ̂ there {picked.llc_mean:.3g})" if picked and picked.llc_mean is not None else ""
    return head + (f" The rule picked ε {chosen.lr:g}, γ {chosen.localization:g}, nβ "
                   f"{chosen.n_beta:g} (γ/nβ = {chosen.localization / chosen.n_beta:.3g}: the "
                   f"least localized usable cell, ties to the smaller step){value}.")


def flag_warnings(llc: LlcSummary) -> list[str]:
    """One warning per flag raised, naming the checkpoints that carry it."""
    out = []
    for flag, tokens in llc.flagged().items():
        where = ", ".join(f"{t:,}" for t in tokens)
        left_out = " Left out of the stage rule." if flag in NOT_AN_LLC else ""
        meaning = FLAG_MEANINGS.get(flag, "see docs/llc.md")
        out.append(f"Flag {flag} at {len(tokens)} of {len(llc.checkpoints)} checkpoints "
                   f"({where} tokens): {meaning}.{left_out}")
    return out


def stages_sentence(llc: LlcSummary) -> str:
    """The stage boundaries the rule found, or why there are none."""
    used, n = len(llc.usable), len(llc.checkpoints)
    if llc.structure is None:
        return (f"Stages: only {used} of {n} estimates are LLCs; the stage rule needs three, so "
                "no stage structure can be read here.")
    bounds = llc.boundaries
    if not bounds:
        return (f"Stages: the stage rule finds no boundary among the {used} estimates that are "
                "LLCs — no stage structure at these checkpoints (changes stay within the chain "
                "noise or 5 % of the curve's range).")
    where = "; ".join(f"a {b.kind} at {b.tokens:,} tokens (λ̂ {b.llc:.3g})" for b in bounds)
    return (f"Stages: the stage rule finds {len(bounds)} boundar"
            f"{'y' if len(bounds) == 1 else 'ies'} among the {used} estimates that are LLCs: "
            f"{where}. A boundary is only as fine as the checkpoints measured: the turn lies "
            "between the neighbours of the checkpoint named.")


def emergence_sentence(summary: RunSummary) -> str:
    """Where the final layer's probe R² emergence falls relative to the stage boundaries."""
    llc = summary.llc
    emergence = llc.file.emergence
    if emergence is None:
        return ("Emergence: llc.json sets none against the stages — probes.json did not exist "
                f"when it was written (beliefgeo probe {summary.run}, then beliefgeo llc again).")
    if llc.above_halfway_from_start:
        return (f"Emergence: the final layer's probe R² is above its halfway line "
                f"({emergence.halfway_r2:.3f}, between the untrained network's "
                f"{emergence.untrained_r2:.3f} and the end's {emergence.final_r2:.3f}) from the "
                f"first probed checkpoint ({emergence.bracket[0]:,} tokens) on: no emergence is "
                "seen to set against the stages.")
    if emergence.tokens is None:
        return (f"Emergence: the final layer's probe R² ({emergence.final_r2:.3f} at the end) "
                f"never rose above the untrained network's ({emergence.untrained_r2:.3f}).")
    return (f"Emergence: the final layer's probe R² crosses halfway ({emergence.halfway_r2:.3f}) "
            f"between the untrained network ({emergence.untrained_r2:.3f}) and its end "
            f"({emergence.final_r2:.3f}) at {emergence.tokens:,.0f} tokens, "
            f"{llc.emergence_place()}.")


def _checkpoint_table(llc: LlcSummary) -> str:
    rows = []
    for e in llc.checkpoints:
        trace = e.trace
        rows.append([f"{e.tokens:,}", num(e.llc_mean, 3), num(e.llc_sd, 3),
                     str(len(e.llc_per_chain or [])), num(e.init_loss, 4),
                     num(trace.drift if trace else None, 3), ", ".join(e.flags) or "—"])
    return table(["tokens", "λ̂ (mean of chains)", "sd across chains", "chains kept",
                  "L_n(w*) (nats)", "last − middle quarter", "flags"], rows)
