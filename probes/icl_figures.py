"""figures/icl.png: the model's loss by position beside the exact in-context-learning curve and,
for a Mixture, the best single component's filter (probes/icl.py), on one position axis; the right
panel shows each curve's excess above the exact one."""

from __future__ import annotations

import numpy as np

MAX_CHECKPOINT_CURVES = 6  # earlier checkpoints drawn faintly, evenly chosen


def icl_figure(icl: dict) -> bytes:
    """PNG bytes of the two panels."""
    from hmm.figure_style import LINES, NULL_GREY, new_figure, png_bytes

    t = np.array(icl["positions"])
    exact = _array(icl["exact_loss_by_position"])
    model = _array(icl["model_loss_by_position"])
    never = icl.get("never_learns")
    fig = new_figure(11, 4.2)
    left, right = fig.subplots(1, 2)
    for c in _some(icl.get("checkpoints") or []):
        left.plot(t, _array(c["loss_by_position"]), color=LINES[2], lw=0.8, alpha=0.35)
    left.plot(t, exact, "o-", color=LINES[0], ms=3, lw=1.6, label="exact Bayes-optimal")
    left.plot(t, model, "s-", color=LINES[1], ms=3, lw=1.4,
              label=f"model at {icl.get('tokens') or 0:,} tokens")
    if icl.get("model_ci95_low"):
        left.fill_between(t, _array(icl["model_ci95_low"]), _array(icl["model_ci95_high"]),
                          color=LINES[1], alpha=0.25, lw=0, label="95 % bootstrap interval")
    if never:
        left.plot(t, _array(never["loss_by_position"]), "--", color=NULL_GREY, lw=1.4,
                  label=f"never learns in context ({never['name']})")
    if icl.get("checkpoints"):
        left.plot([], [], color=LINES[2], lw=0.8, alpha=0.35, label="earlier checkpoints (exact)")
    left.set(xlabel="input position t (tokens 0..t seen)", ylabel="loss (nats/token)",
             title="Next-token loss by position")
    left.legend(fontsize=7)
    floor = 1e-6
    right.plot(t, np.maximum(model - exact, floor), "s-", color=LINES[1], ms=3, label="model")
    if never:
        right.plot(t, np.maximum(_array(never["loss_by_position"]) - exact, floor), "--",
                   color=NULL_GREY, label="never learns in context")
    right.axhline(icl["close_nats"], color=LINES[0], ls=":", lw=1,
                  label=f"{icl['close_nats']:g} nats")
    right.set(yscale="log", xlabel="input position t", ylabel="excess over exact (nats/token)",
              title="Excess above the exact curve")
    right.legend(fontsize=7)
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return png_bytes(fig, dpi=110)


def _array(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _some(checkpoints: list[dict]) -> list[dict]:
    """Up to MAX_CHECKPOINT_CURVES of the checkpoints before the last, evenly spaced."""
    earlier = checkpoints[:-1]
    if len(earlier) <= MAX_CHECKPOINT_CURVES:
        return earlier
    picks = np.linspace(0, len(earlier) - 1, MAX_CHECKPOINT_CURVES).round().astype(int)
    return [earlier[i] for i in sorted(set(picks))]
