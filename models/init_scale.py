"""The initial-weight scale both model families share (`init_scale` in their configs).

Seed 001: "start with small initial values" — units begin in their linear regime and training
moves them toward saturation. `init_scale` multiplies every weight *matrix* after the family's
normal initialisation: embeddings, attention and MLP projections, the RNN's input and recurrent
maps, the unembedding (every parameter with two or more dimensions). LayerNorm gains and biases
are left alone: a LayerNorm gain scaled down would only rescale what the next matrix already
scales, and biases start at zero in the transformer (scaling them does nothing) while in the RNN
they are the offsets of the units, not a gain.
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import nn

from hmm.errors import InvalidInput


def check_init_scale(value: object) -> float:
    """`value` as a float if it is a finite number > 0, else InvalidInput naming --init-scale."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InvalidInput(f"--init-scale must be a number > 0, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidInput(f"--init-scale must be > 0, got {value:g}")
    return float(value)


def scale_weight_matrices(model: nn.Module, scale: float) -> None:
    """Multiply, in place, every parameter of `model` with ndim >= 2 by `scale`.

    `model.parameters()` yields a shared (tied) tensor once, so nothing is scaled twice.
    """
    if scale == 1.0:
        return
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim >= 2:
                param.mul_(scale)
