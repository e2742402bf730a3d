"""When a run checkpoints and how its learning rate moves (pure functions of the step)."""

from __future__ import annotations

import math

import numpy as np

from hmm.errors import InvalidInput


def checkpoint_steps(total_steps: int, n_checkpoints: int = 40) -> list[int]:
    """Steps to checkpoint: 0, log-spaced up to total/10, then evenly spaced to total_steps.

    About half the checkpoints fall in the first tenth of training, where belief geometry emerges.
    Returns at most max(n_checkpoints, 2) sorted distinct steps, always including 0 and total_steps.
    """
    if total_steps < 1:
        raise InvalidInput(f"a run needs at least one step, got {total_steps}")
    n = max(int(n_checkpoints), 2)
    if total_steps + 1 <= n:
        return list(range(total_steps + 1))
    switch = max(1, total_steps // 10)
    n_log = (n - 1) // 2
    n_lin = n - 1 - n_log
    early = np.geomspace(1, switch, n_log) if n_log else np.array([])
    late = np.linspace(switch, total_steps, n_lin + 1)[1:]
    steps = {
        0,
        total_steps,
        *np.rint(early).astype(int).tolist(),
        *np.rint(late).astype(int).tolist(),
    }
    return sorted(s for s in steps if 0 <= s <= total_steps)


def lr_multiplier(step: int, schedule: str, warmup_steps: int, total_steps: int) -> float:
    """LR factor for update `step` (0-based): linear warm-up, then cosine to 0 or constant."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
