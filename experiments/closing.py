"""The one closing line each command prints: what it wrote and the headline number.

Formatted from the run's RunSummary (experiments/summary.py), read back from the files the command
wrote, so the line states what is on disk: `wrote RUN: 10,000,640 tokens, exact excess loss
0.00017 nats`. A number a file lacks drops that part of the line; it never raises.
"""

from __future__ import annotations

from pathlib import Path

from experiments.summary import (
    LlcSummary,
    LossSummary,
    PhaseSummary,
    ProbeSummary,
    summarize_run,
)
from hmm.errors import InvalidInput
from hmm.files import read_json


def loss_part(loss: LossSummary) -> str:
    """'exact excess loss 0.00017 nats' (or the batch estimate when no exact evaluation ran)."""
    if loss.exact_excess is not None:
        return f"exact excess loss {loss.exact_excess:.5f} nats"
    if loss.batch_excess is not None:
        return (f"excess loss {loss.batch_excess:.5f} nats (mean of the last {loss.batch_window} "
                "logged batches; no exact evaluation)")
    return "no loss logged"


def probe_part(probes: ProbeSummary | None) -> str | None:
    """'final-layer (block 3) held-out R² 0.9784, all layers 0.9820 at 10,000,640 tokens'."""
    if probes is None or probes.r2 is None:
        return None
    from models.architectures import hook_label

    text = f"final-layer ({hook_label(probes.hook)}) held-out R² {probes.r2:.4f}"
    if probes.r2_concat is not None:
        text += f", all layers {probes.r2_concat:.4f}"
    return text + f" at {probes.tokens:,} tokens" + evidence_part(probes)


def evidence_part(probes: ProbeSummary) -> str:
    """'; next-token probe 0.9976; beyond the next token 0.12 (untrained 0.04); WARNING: ...'
    (probes.json's headline; a file written before it: nothing)."""
    text = ""
    if probes.next_token_r2 is not None:
        text += f"; next-token probe {probes.next_token_r2:.4f}"
    if probes.case == "implied_by_loss":
        text += " (belief affine in the next-token distribution: geometry implied by the loss)"
    if probes.r2_beyond_prediction is not None:
        text += f"; beyond the next token {probes.r2_beyond_prediction:.2f}"
        if probes.beyond_untrained is not None:
            text += f" (untrained {probes.beyond_untrained:.2f})"
    return text + "".join(f"; WARNING: {w}" for w in probes.warnings)


def radius_rule_text(phases: PhaseSummary) -> str:
    """When the seed rule fired: a token count, 'never', or that it does not apply."""
    if not phases.iterated:
        return "not applied (a transformer iterates no map)"
    flagged = phases.first_radius_above_1
    return f"at {flagged:,} tokens" if isinstance(flagged, int) else "never"


def phases_part(phases: PhaseSummary | None) -> str | None:
    """'5 checkpoints; first mean spectral radius > 1 at 81,920 tokens; final unit phases: ...'."""
    if phases is None:
        return None
    text = f"{phases.n_checkpoints} checkpoints"
    if phases.iterated:
        text += f"; first mean spectral radius > 1 {radius_rule_text(phases)}"
    else:
        text += " (transformer: no iterated map, so no spectral-radius rule)"
    final = [f"{k} {u.phase}" for k, u in phases.final.units.items() if u.phase]
    if final:
        text += "; final unit phases: " + ", ".join(final)
    return text


def train_line(run: Path) -> str:
    summary = summarize_run(run)
    return f"wrote {run}: {summary.tokens_trained:,} tokens, {loss_part(summary.loss)}"


def probe_line(run: Path) -> str:
    part = probe_part(summarize_run(run).probes)
    return f"wrote {run / 'probes.json'}" + (f": {part}" if part else "")


def phases_line(run: Path) -> str:
    part = phases_part(summarize_run(run).phases)
    return f"wrote {run / 'phases.json'}" + (f": {part}" if part else "")


def llc_part(llc: LlcSummary | None) -> str | None:
    """'LLC at 10 checkpoints (ε 0.001, γ 300, nβ 15, calibrated): final 0.40 ± 0.04; 1 stage
    boundary (peak at 11,520); geometry emerges at 92,411 tokens; 3 of 10 flagged'."""
    if llc is None or not llc.checkpoints:
        return None
    entries, final = llc.checkpoints, llc.checkpoints[-1]
    text = f"LLC at {len(entries)} checkpoints ({llc.settings_text()})"
    if final.llc_mean is not None:
        text += f": final {final.llc_mean:.3g} ± {final.llc_sd or 0:.2g}"
    bounds = llc.boundaries
    if llc.structure is None:
        text += "; too few unflagged estimates for stages"
    else:
        where = ", ".join(f"{b.kind} at {b.tokens:,}" for b in bounds)
        text += f"; {len(bounds)} stage boundar{'y' if len(bounds) == 1 else 'ies'}" + (
            f" ({where})" if where else " (no stage structure)"
        )
    if llc.emergence_tokens:
        text += f"; geometry emerges at {llc.emergence_tokens:,.0f} tokens"
    flagged = sum(bool(e.flags) for e in entries)
    return text + (f"; {flagged} of {len(entries)} flagged" if flagged else "")


def llc_line(run: Path) -> str:
    part = llc_part(summarize_run(run).llc)
    return f"wrote {run / 'llc.json'}" + (f": {part}" if part else "")


def intervene_line(run: Path) -> str:
    """'wrote RUN/interventions.json: at block 3 the probe move closes 2 % of the next-token gap
    (random 1 %), the move along the encoding 99 % (random 29 %); ...' (final layer)."""
    text = f"wrote {run / 'interventions.json'} and {run / 'figures' / 'interventions.png'}"
    try:
        result = read_json(run / "interventions.json")
        from models.architectures import final_layer_hook, hook_label

        hook = final_layer_hook(result["hooks"])
        r = result["layers"][hook]
        moves = [(r, "the probe move"), (r["encoding"], "the move along the encoding")]
    except (InvalidInput, TypeError, KeyError, IndexError):
        return text

    def pct(value) -> str:
        return "n/a" if value is None else f"{100 * value:.0f} %"

    told = ", ".join(f"{name} {pct(m['gap_closed_next'])} (random direction "
                     f"{pct(m['null_random']['gap_closed_next'])})" for m, name in moves)
    return (f"{text}: at {hook_label(hook)} the share of the next-token gap closed: {told}; "
            f"{r['n_prefixes']} held-out prefixes")


def report_line(path: Path) -> str:
    summary = summarize_run(path.parent)
    trained = summary.loss.batch_window or summary.loss.exact_excess is not None
    parts = [probe_part(summary.probes), loss_part(summary.loss) if trained else None]
    parts = [p for p in parts if p]
    return f"wrote {path}" + (f": {'; '.join(parts)}" if parts else "") + " (open it in a browser)"


def fractal_line(out: Path, summary: dict) -> str:
    return (
        f"wrote {out / 'fractal.png'} and fractal.json: {summary['n_distinct_beliefs']:,} distinct "
        f"beliefs to depth {summary['depth']}, entropy rate {summary['entropy_rate']:.4f} "
        "nats/symbol"
    )
