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
    text += f" at {final.get('tokens', 0):,} tokens"
    return text + _evidence_part(probes)


def _evidence_part(probes: dict) -> str:
    """'; next-token probe 0.9976; beyond the next token 0.12 (untrained 0.04); WARNING: ...'
    from probes.json "headline" (absent in older files: nothing)."""
    h = probes.get("headline")
    if not isinstance(h, dict) or "sentence" not in h:
        return ""
    text = ""
    if isinstance(h.get("next_token_r2"), float):
        text += f"; next-token probe {h['next_token_r2']:.4f}"
    if h.get("case") == "implied_by_loss":
        text += " (belief affine in the next-token distribution: geometry implied by the loss)"
    if isinstance(h.get("r2_beyond_prediction"), float):
        text += f"; beyond the next token {h['r2_beyond_prediction']:.2f}"
        if isinstance(h.get("r2_beyond_prediction_untrained"), float):
            text += f" (untrained {h['r2_beyond_prediction_untrained']:.2f})"
    return text + "".join(f"; WARNING: {w}" for w in h.get("warnings") or [])


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
