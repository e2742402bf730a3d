"""Sign flips of successive updates, counted inside the training loop every step.

For updates k-1 and k (u = parameters after minus before the optimiser step), the pair's flip
fraction is the share of parameter entries whose sign(u_k) differs from sign(u_{k-1}), over the
entries whose update is non-zero both times. A checkpoint's `sign_flip_frac` is the mean of the
pair fractions whose later update falls in the interval since the previous checkpoint, and
`sign_flip_steps` how many pairs that is (null fraction when none). A random walk flips half.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class SignFlips:
    """One int8 buffer with the signs of the previous update, plus the interval's running sums."""

    def __init__(self, params: Iterable[torch.Tensor]) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.previous: torch.Tensor | None = None  # int8 signs of the last update
        self.before: torch.Tensor | None = None
        self.total, self.pairs = 0.0, 0

    @torch.no_grad()
    def snapshot(self) -> None:
        """Call right before the optimiser step."""
        self.before = torch.cat([p.detach().reshape(-1) for p in self.params])

    @torch.no_grad()
    def record(self) -> None:
        """Call right after the optimiser step."""
        after = torch.cat([p.detach().reshape(-1) for p in self.params])
        signs = torch.sign(after - self.before).to(torch.int8)
        if self.previous is not None:
            both = (signs != 0) & (self.previous != 0)
            counted = int(both.sum())
            if counted:
                self.total += int(((signs != self.previous) & both).sum()) / counted
                self.pairs += 1
        self.previous, self.before = signs, None

    def summary(self) -> dict:
        """{"sign_flip_frac", "sign_flip_steps"} of the interval so far; starts the next one."""
        out = {
            "sign_flip_frac": self.total / self.pairs if self.pairs else None,
            "sign_flip_steps": self.pairs,
        }
        self.total, self.pairs = 0.0, 0
        return out

    def state(self) -> dict:
        """What a checkpoint keeps (taken right after `summary`, so the sums are zero)."""
        return {"previous": self.previous.cpu() if self.previous is not None else None}

    def load_state(self, state: dict | None) -> None:
        previous = (state or {}).get("previous")
        device = self.params[0].device if self.params else "cpu"
        self.previous = previous.to(device) if previous is not None else None
