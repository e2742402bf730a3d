"""Sign flips of successive updates, counted inside the training loop every step, and the flip
fraction the run's own optimiser gives on pure-noise gradients (the null they are read against).

For updates k-1 and k (u = parameters after minus before the optimiser step), the pair's flip
fraction is the share of parameter entries whose sign(u_k) differs from sign(u_{k-1}), over the
entries whose update is non-zero both times. A checkpoint's `sign_flip_frac` is the mean of the
pair fractions whose later update falls in the interval since the previous checkpoint, and
`sign_flip_steps` how many pairs that is (null fraction when none).

The null is not 0.5. An optimiser with momentum averages gradients, so even on pure noise its
successive updates are correlated: heavy-ball SGD's buffer m_k = mu m_(k-1) + g_k and Adam's
m_k = beta1 m_(k-1) + (1 - beta1) g_k have lag-one correlation mu (beta1) once stationary, and two
jointly Gaussian numbers with correlation rho differ in sign with probability arccos(rho) / pi
(Sheppard 1899): 0.1436 for beta1 = 0.9, 0.5 only without momentum (`flip_reference`).
`noise_null` measures it instead of assuming it: the run's optimiser (class, betas / momentum,
weight decay, learning-rate schedule, as configured) is stepped on pure Gaussian noise gradients
over a seeded sample of the run's initial parameter entries, with the same flip count per
checkpoint interval as training. Adam's flips do not depend on the noise scale (up to eps) nor
on the learning rate; SGD's depend on the scale only through weight decay.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from models.recipes import TrainConfig, build_optimizer
from models.schedules import lr_multiplier

NULL_COORDINATES = 2048  # sampled parameter entries; an interval mean's sd is ~0.35/sqrt(2048 k)


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


def flip_reference(optimizer: str, betas: Iterable[float] = (0.9, 0.999), momentum: float = 0.0):
    """arccos(rho) / pi, the stationary flip fraction on Gaussian noise of an optimiser whose
    update has lag-one correlation rho: beta1 for Adam / AdamW, the momentum for SGD."""
    rho = float(list(betas)[0]) if optimizer in ("adam", "adamw") else float(momentum)
    return math.acos(rho) / math.pi


def noise_null(
    train: TrainConfig,
    initial: torch.Tensor,
    checkpoint_steps: Iterable[int],
    total_steps: int,
    noise_scale: float = 1.0,
    seed: int = 0,
) -> dict:
    """The flip fraction of the run's optimiser on pure-noise gradients, per checkpoint interval.

    initial (P,): the parameter entries to simulate (a sample of the run's initial weights; every
    entry is updated on its own, so a sample of entries is a sample of the fraction). Each of the
    run's `total_steps` updates gets fresh N(0, noise_scale^2) gradients; optimiser, weight decay
    and learning-rate schedule are the run's (train), so warm-up and the momentum transient of
    the first steps count as in training. Gradient clipping is not simulated (it rescales a noise
    gradient as a whole). -> {"by_step": {checkpoint step: fraction | None}, "null": the mean
    over every update pair, "pairs": their number}.
    """
    holder = torch.nn.Module()
    holder.weight = torch.nn.Parameter(initial.detach().double().clone())
    optimizer = build_optimizer(holder, train)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_multiplier(step, train.schedule, train.warmup_steps, total_steps),
    )
    generator = torch.Generator().manual_seed(seed)
    flips, wanted = SignFlips(holder.parameters()), set(checkpoint_steps)
    by_step: dict[int, float | None] = {}
    total, pairs = 0.0, 0
    for step in range(1, total_steps + 1):
        noise = torch.randn(initial.shape, generator=generator, dtype=torch.float64)
        holder.weight.grad = noise_scale * noise
        flips.snapshot()
        optimizer.step()
        flips.record()
        schedule.step()
        if step in wanted or step == total_steps:
            summary = flips.summary()
            if summary["sign_flip_frac"] is not None:
                total += summary["sign_flip_frac"] * summary["sign_flip_steps"]
                pairs += summary["sign_flip_steps"]
            by_step[step] = summary["sign_flip_frac"]
    return {"by_step": by_step, "null": total / pairs if pairs else None, "pairs": pairs}
