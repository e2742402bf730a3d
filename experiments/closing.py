"""The one closing line each command prints: what it wrote and the headline number.

Read back from the files the command wrote (never from its return value), so the line states what
is on disk: `wrote RUN: 10,000,640 tokens, exact excess loss 0.00017 nats`. Every reader is
defensive: a key a file lacks drops that part of the line, it never raises.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _metrics(run: Path) -> list[dict]:
    from models.run_files import read_metrics

    return read_metrics(run)


def loss_part(run: Path) -> str:
    """'exact excess loss 0.00017 nats' (or the batch estimate when no exact evaluation ran)."""
    metrics = _metrics(run)
    exact = [m for m in metrics if m.get("exact_excess_loss") is not None]
    if exact:
        return f"exact excess loss {exact[-1]['exact_excess_loss']:.5f} nats"
    tail = [m["excess_loss"] for m in metrics[-20:] if m.get("excess_loss") is not None]
    if tail:
        return (
            f"excess loss {sum(tail) / len(tail):.5f} nats (mean of the last {len(tail)} "
            "logged batches; no exact evaluation)"
        )
    return "no loss logged"


def train_line(run: Path) -> str:
    metrics = _metrics(run)
    tokens = metrics[-1]["tokens"] if metrics else 0
    return f"wrote {run}: {tokens:,} tokens, {loss_part(run)}"


def probe_part(run: Path) -> str | None:
    """'final-layer (block 3) held-out R² 0.9784, all layers 0.9820' from RUN/probes.json."""
    probes = _read(run / "probes.json")
    try:
        final = probes["checkpoints"][-1]
        layers = final["layers"]
    except (TypeError, KeyError, IndexError):
        return None
    from models.architectures import final_layer_hook, hook_label
    from probes.belief_study import CONCAT

    hooks = [h for h in layers if h != CONCAT]
    if not hooks:
        return None
    head = final_layer_hook(hooks)
    text = f"final-layer ({hook_label(head)}) held-out R² {layers[head]['r2_heldout']:.4f}"
    concat = layers.get(CONCAT, {}).get("r2_heldout")
    if concat is not None:
        text += f", all layers {concat:.4f}"
    return text + f" at {final.get('tokens', 0):,} tokens"


def probe_line(run: Path) -> str:
    part = probe_part(run)
    return f"wrote {run / 'probes.json'}" + (f": {part}" if part else "")


def phases_part(run: Path) -> str | None:
    """'first mean spectral radius > 1 at 81,920 tokens; final units: blocks.0.mlp hybrid'."""
    phases = _read(run / "phases.json")
    if not isinstance(phases, dict) or not phases.get("checkpoints"):
        return None
    from experiments.report import radius_rule_applies

    flagged = phases.get("first_spectral_radius_above_1")
    text = f"{len(phases['checkpoints'])} checkpoints; first mean spectral radius > 1 " + (
        f"at {flagged:,} tokens" if isinstance(flagged, int) else "never"
    )
    if not radius_rule_applies(phases):
        text = f"{len(phases['checkpoints'])} checkpoints (transformer: no iterated map, so no "
        text += "spectral-radius rule)"
    units = phases["checkpoints"][-1].get("units") or {}
    final = [f"{k} {v['phase']}" for k, v in units.items() if isinstance(v, dict) and "phase" in v]
    if final:
        text += "; final unit phases: " + ", ".join(final)
    return text


def phases_line(run: Path) -> str:
    part = phases_part(run)
    return f"wrote {run / 'phases.json'}" + (f": {part}" if part else "")


def llc_part(run: Path) -> str | None:
    """'LLC at 10 checkpoints (ε 0.001, γ 300, nβ 15, calibrated): final 0.40 ± 0.04; 1 stage
    boundary (peak at 11,520); geometry emerges at 92,411 tokens; 3 of 10 flagged'."""
    llc = _read(run / "llc.json")
    try:
        entries, s, stages = llc["checkpoints"], llc["settings"], llc["stages"]
        final = entries[-1]
    except (TypeError, KeyError, IndexError):
        return None
    text = (f"LLC at {len(entries)} checkpoints (ε {s['lr']:g}, γ {s['localization']:g}, "
            f"nβ {s['n_beta']:g}, {s['source']})")  # fmt: skip
    if final.get("llc_mean") is not None:
        text += f": final {final['llc_mean']:.3g} ± {final.get('llc_sd') or 0:.2g}"
    bounds = stages.get("boundaries") or []
    if stages.get("structure") is None:
        text += "; too few unflagged estimates for stages"
    else:
        where = ", ".join(f"{b['kind']} at {b['tokens']:,}" for b in bounds)
        text += f"; {len(bounds)} stage boundar{'y' if len(bounds) == 1 else 'ies'}" + (
            f" ({where})" if where else " (no stage structure)"
        )
    emerged = (llc.get("emergence") or {}).get("tokens")
    if emerged:
        text += f"; geometry emerges at {emerged:,.0f} tokens"
    flagged = sum(bool(e.get("flags")) for e in entries)
    return text + (f"; {flagged} of {len(entries)} flagged" if flagged else "")


def llc_line(run: Path) -> str:
    part = llc_part(run)
    return f"wrote {run / 'llc.json'}" + (f": {part}" if part else "")


def intervene_line(run: Path) -> str:
    """'wrote RUN/interventions.json: at block 3 the probe move closes 2 % of the next-token gap
    (random 1 %), the move along the encoding 99 % (random 29 %); ...' (final layer)."""
    result = _read(run / "interventions.json")
    text = f"wrote {run / 'interventions.json'} and {run / 'figures' / 'interventions.png'}"
    try:
        from models.architectures import final_layer_hook, hook_label

        hook = final_layer_hook(result["hooks"])
        r = result["layers"][hook]
        moves = [(r, "the probe move"), (r["encoding"], "the move along the encoding")]
    except (TypeError, KeyError, IndexError):
        return text

    def pct(value) -> str:
        return "n/a" if value is None else f"{100 * value:.0f} %"

    told = ", ".join(f"{name} {pct(m['gap_closed_next'])} (random direction "
                     f"{pct(m['null_random']['gap_closed_next'])})" for m, name in moves)
    return (f"{text}: at {hook_label(hook)} the share of the next-token gap closed: {told}; "
            f"{r['n_prefixes']} held-out prefixes")


def report_line(path: Path) -> str:
    run = path.parent
    parts = [probe_part(run), loss_part(run) if (run / "metrics.jsonl").is_file() else None]
    parts = [p for p in parts if p]
    return f"wrote {path}" + (f": {'; '.join(parts)}" if parts else "") + " (open it in a browser)"


def fractal_line(out: Path, summary: dict) -> str:
    return (
        f"wrote {out / 'fractal.png'} and fractal.json: {summary['n_distinct_beliefs']:,} distinct "
        f"beliefs to depth {summary['depth']}, entropy rate {summary['entropy_rate']:.4f} "
        "nats/symbol"
    )
