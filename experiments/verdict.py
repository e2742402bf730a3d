"""The answer a run gives, in sentences computed from its RunSummary (never typed): what was
trained and how close it came to the Bayes optimum; the headline probe score beside its strongest
null (the model's own next-token probe among them); whether that geometry is implied by the loss
or what the layer carries beyond the next token (probes.belief_evidence.case_sentence); what the
phase diagnostics did while the belief geometry emerged — and, when the run has llc.json, the
stages the local learning coefficient shows and where the geometry emerges against them. The
report opens with them and the studies print them.
"""

from __future__ import annotations

from experiments.closing import radius_rule_text
from experiments.summary import EMERGENCE, RunSummary

RELATIVE_CHANGE = 0.05  # below this a diagnostic "stayed near" its value


def verdict(summary: RunSummary) -> list[str]:
    """The sentences, in order (the beyond-prediction one only for files that have it, the LLC's
    only for runs with llc.json)."""
    sentences = [trained_sentence(summary), probe_sentence(summary), beyond_sentence(summary),
                 phases_sentence(summary), llc_sentence(summary) if summary.llc else None]
    return [s for s in sentences if s]


def trained_sentence(s: RunSummary) -> str:
    loss = s.loss
    head = (f"A {s.model_shape} trained on {s.process} for {s.tokens_trained:,} tokens")
    if loss.exact_excess is not None:
        return (f"{head} ends {loss.exact_excess:.5f} nats/token above the Bayes-optimal loss "
                f"of {loss.optimal:.5f} (exact, over every input sequence, at "
                f"{loss.exact_tokens:,} tokens).")
    if loss.batch_excess is not None:
        return (f"{head} ends {loss.batch_excess:.5f} nats/token above the Bayes-optimal loss "
                f"of {loss.optimal:.5f} (a batch estimate: the mean of the last "
                f"{loss.batch_window} logged batches; the exact loss was not evaluated).")
    return f"{s.title}: no training step is logged yet."


def probe_sentence(s: RunSummary) -> str:
    p = s.probes
    if p is None or p.r2 is None:
        return f"Belief probes were not run (beliefgeo probe {s.run})."
    from models.architectures import hook_label

    text = (f"A linear probe reads the exact belief state from the final layer "
            f"({hook_label(p.hook)}) with held-out R² {p.r2:.4f} at {p.tokens:,} tokens")
    if p.best_baseline is None or p.baseline_r2 is None:
        return text + "; no baseline was computed."
    text += f"; the strongest null, {p.best_baseline}, scores {p.baseline_r2:.4f}"
    if p.r2 > p.baseline_r2 and p.r2 < 1:
        text += (f": the probe leaves {(1 - p.baseline_r2) / (1 - p.r2):.1f}× less variance "
                 "unexplained")
    elif p.r2 <= p.baseline_r2:
        text += ": the probe does not beat it"
    others = [(name, v) for name, v, kind in (
        ("the model's own next-token probe", p.next_token_r2, "next-token"),
        ("an untrained network of the same shape", p.untrained_r2, "untrained"),
    ) if v is not None and kind not in p.best_baseline]
    if others:
        text += f" ({'; '.join(f'{name}: {v:.4f}' for name, v in others)})"
    return text + _tables_clause(p) + "."


def _tables_clause(p) -> str:
    """'; a table of the last k tokens beats it from k = 5 (0.9963)', or that none does."""
    tables = p.headline.kgram if p.headline else {}
    if not tables:
        return ""
    k = p.headline.oracle_beats_layer_at
    if k is None:
        return f"; no table of the last k ≤ {max(map(int, tables))} tokens beats it"
    if f"the last {k} tokens (held-out cell means)" in (p.best_baseline or ""):
        return ""  # the strongest null is already that table
    return (f"; a table of the last k tokens (held-out cell means) beats it from k = {k} "
            f"({tables[str(k)].oracle:.4f})")


def beyond_sentence(s: RunSummary) -> str:
    """Whether the geometry is implied by the loss, and what the final layer carries beyond the
    next token (probes.belief_evidence.case_sentence); empty for files that predate it."""
    from probes.belief_evidence import case_sentence

    p = s.probes
    text = case_sentence(p.headline) if p and p.headline else ""
    return f"{text[0].upper()}{text[1:]}." if text else ""


def phases_sentence(s: RunSummary) -> str:
    ph = s.phases
    if ph is None:
        return f"Phase diagnostics were not run (beliefgeo phases {s.run})."
    window = s.emergence()
    if window is None:
        start = s.probes.curve[0][1] if s.probes and s.probes.curve else None
        if start is None:
            return "Without probes over training there is no emergence window to set the " \
                   f"phase diagnostics against; at the end: {_end_state(s)}."
        return (f"The final-layer R² did not rise during training (from {start:.3f}), so there "
                f"is no emergence window; at the end: {_end_state(s)}.")
    t1, t2, r1, r2 = window
    low, high = (f"{round(100 * f)} %" for f in EMERGENCE)
    moves = _moves(s, t1, t2)
    return (f"While the geometry emerged — final-layer R² rose from {r1:.3f} to {r2:.3f} between "
            f"{t1:,} and {t2:,} tokens ({low} to {high} of its rise) — {moves}; at the end: "
            f"{_end_state(s)}.")


def _moves(s: RunSummary, t1: int, t2: int) -> str:
    """How the family's diagnostics changed across the emergence window."""
    ph = s.phases
    a, b, init = ph.at(t1), ph.at(t2), ph.checkpoints[0]
    main = ph.radius if ph.iterated else ph.block_gain
    what = "the recurrent map's mean spectral radius" if ph.iterated else (
        "the mean block-update gain")
    parts = [_change(what, main(a), main(b))]
    if parts[0] and init.tokens == 0 and main(init) is not None:
        parts[0] += f" ({main(init):.2f} at initialisation)"
    units = f"the {'' if ph.iterated else 'MLP '}units' mean {ph.unit_measure}"
    parts.append(_change(units, ph.unit_level(a), ph.unit_level(b)))
    return " and ".join(p for p in parts if p) or "no phase diagnostic was measured there"


def _change(what: str, before: float | None, after: float | None) -> str:
    if before is None or after is None:
        return ""
    if abs(after - before) <= RELATIVE_CHANGE * max(abs(before), 1e-12):
        return f"{what} stayed near {before:.2f}"
    verb = "fell" if after < before else "rose"
    return f"{what} {verb} from {before:.2f} to {after:.2f}"


def _end_state(s: RunSummary) -> str:
    ph = s.phases
    parts = []
    if ph.iterated:
        parts.append(f"recurrent spectral radius {ph.radius():.2f} (first mean above 1: "
                     f"{radius_rule_text(ph)})")
    elif ph.block_gain() is not None:
        parts.append(f"block-update gain {ph.block_gain():.2f}")
    phases = sorted({u.phase for u in ph.final.units.values() if u.phase})
    level = ph.unit_level()
    if level is not None:
        parts.append(f"unit {ph.unit_measure} {level:.2f} ({', '.join(phases)} by the "
                     f"{ph.unit_measure} rule)")
    return ", ".join(parts) or "no diagnostics"


def llc_sentence(s: RunSummary) -> str:
    """The stages of the local learning coefficient and where the geometry emerges among them."""
    llc = s.llc
    n, usable = len(llc.checkpoints), len(llc.usable)
    head = f"The local learning coefficient at {n} checkpoints ({llc.settings_text()})"
    bounds = llc.boundaries
    if llc.structure is None:
        shape = (f"has too few estimates that are LLCs ({usable} of {n}; the others were not at "
                 "a minimum or left the loss basin) to read stages")
    elif not bounds:
        first, last = llc.usable[0], llc.usable[-1]
        shape = (f"shows no stage structure by the stage rule: it goes from "
                 f"{first.llc_mean:.3g} at {first.tokens:,} to {last.llc_mean:.3g} at "
                 f"{last.tokens:,} tokens")
    else:
        where = ", ".join(f"a {b.kind} at {b.tokens:,}" for b in bounds)
        shape = f"has {len(bounds)} stage boundar{'y' if len(bounds) == 1 else 'ies'} ({where})"
    return f"{head} {shape}; {_emergence_words(s)}{_flag_words(llc, n)}."


def _emergence_words(s: RunSummary) -> str:
    llc, place = s.llc, s.llc.emergence_place()
    if place is not None:
        return (f"the belief geometry emerges (final-layer R² halfway from the untrained network "
                f"to its end) at {llc.emergence_tokens:,.0f} tokens, {place}")
    if llc.above_halfway_from_start:
        return ("the final-layer probe R² is above its halfway line from the first probed "
                "checkpoint on, so no emergence is set against the stages")
    if llc.file.emergence is not None:
        return "the final-layer probe R² never rose above the untrained network's"
    return "no emergence is set against it (probes.json did not exist when llc.json was written)"


def _flag_words(llc, n: int) -> str:
    flagged = sum(bool(e.flags) for e in llc.checkpoints)
    return f" ({flagged} of {n} estimates flagged)" if flagged else ""
