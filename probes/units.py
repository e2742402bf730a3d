"""Unit regimes (linear / hybrid / saturated) and weight norms over training.

The seed's phase picture: sigmoid-like networks start *linear* (small weights, pre-activations
near 0, f'(z) ~ f'(0)), pass through a *hybrid* phase, and end *saturated* (units pinned at the
flat ends, f'(z) ~ 0, the net acting as a binary decision graph, learning stalls). ReLU has no
flat end on the active side; its analogue of saturation is units that are off.

One criterion for every activation, the layer's gain: with s_ref the slope of the unit's linear
regime (f'(0) for sigmoid-like units - tanh, sigmoid, identity - and 1, the slope of the positive
linear piece, for ReLU-like units - relu, gelu, silu - whose f'(0) is 0.5 or undefined),

    gain = E[f'(z)] / s_ref   over the (input, unit) pairs of the probe batch,

1 for a layer that acts as its linear part, 0 for one whose units pass no gradient. For ReLU it
is the fraction of (input, unit) pairs that are on. Per unit the gain is the mean over inputs;
`gain_quantiles` are the 10/25/50/75/90 % quantiles of the per-unit gains.

Phase label of a layer (`phase_label`, thresholds are options): "linear" if gain >= 0.8,
"saturated" if gain <= 0.2, else "hybrid". Also reported, per (input, unit) pair:
linear_frac (f'(z) / s_ref >= 0.9), saturated_frac (f'(z) / max f' <= 0.1; for relu: off) and
dead_frac (the fraction of units saturated on every input of the batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

import torch
from torch import Tensor
from torch.func import jvp

from hmm.errors import InvalidInput
from models.nonlinearities import nonlinearity

RELU_LIKE = ("relu", "gelu", "gelu_new", "silu")


def activation_derivative(z: Tensor, act: str) -> Tensor:
    """Exact elementwise f'(z) by forward-mode autodiff: (...,) -> (...,). relu'(0) = 0."""
    f = nonlinearity(act)
    return jvp(f, (z,), (torch.ones_like(z),))[1]


@cache
def reference_slopes(act: str) -> tuple[float, float]:
    """(s_ref, max f') of the activation: the linear-regime slope and the largest derivative.

    max f' is taken on a grid of 200,001 points in [-20, 20] (exact derivatives at each point).
    """
    grid = torch.linspace(-20.0, 20.0, 200_001, dtype=torch.float64)
    max_slope = float(activation_derivative(grid, act).max())
    if act in RELU_LIKE:
        return 1.0, max_slope
    return float(activation_derivative(torch.zeros(1, dtype=torch.float64), act)[0]), max_slope


GAIN_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def unit_regimes(
    pre: Tensor,
    act: str,
    linear_threshold: float = 0.9,
    saturated_threshold: float = 0.1,
    linear_gain: float = 0.8,
    saturated_gain: float = 0.2,
) -> dict:
    """Regimes of one layer from its pre-activations pre (..., units) over a probe batch.

    Returns {"gain_mean", "gain_quantiles": {"q10", "q25", "q50", "q75", "q90"}, "linear_frac",
    "saturated_frac", "dead_frac", "phase", "act"}; definitions in the module doc.
    """
    if pre.ndim < 2:
        raise InvalidInput(f"pre-activations need shape (..., units), got {tuple(pre.shape)}")
    s_ref, max_slope = reference_slopes(act)
    slope = activation_derivative(pre.detach().double().reshape(-1, pre.shape[-1]), act)
    relative = slope / s_ref
    saturated = slope / max_slope <= saturated_threshold
    per_unit = relative.mean(dim=0)
    levels = torch.tensor(GAIN_QUANTILES, dtype=torch.float64)
    quantiles = torch.quantile(per_unit, levels)
    result = {
        "gain_mean": float(relative.mean()),
        "gain_quantiles": {
            f"q{round(100 * q)}": float(v) for q, v in zip(GAIN_QUANTILES, quantiles, strict=True)
        },
        "linear_frac": float((relative >= linear_threshold).double().mean()),
        "saturated_frac": float(saturated.double().mean()),
        "dead_frac": float(saturated.all(dim=0).double().mean()),
        "act": act,
    }
    result["phase"] = phase_label(result["gain_mean"], linear_gain, saturated_gain)
    return result


def phase_label(gain: float, linear_gain: float = 0.8, saturated_gain: float = 0.2) -> str:
    """'linear' (gain >= linear_gain) / 'saturated' (gain <= saturated_gain) / 'hybrid'."""
    if gain >= linear_gain:
        return "linear"
    if gain <= saturated_gain:
        return "saturated"
    return "hybrid"


def parameter_groups(state: Mapping[str, Tensor]) -> dict[str, list[str]]:
    """Group state-dict entries by layer: 'blocks.{l}' for block entries, else the first name part.

    Only floating-point entries count (buffers such as masks are skipped by dtype or by the caller).
    """
    groups: dict[str, list[str]] = {}
    for name, value in state.items():
        if not torch.is_floating_point(value):
            continue
        parts = name.split(".")
        key = ".".join(parts[:2]) if parts[0] == "blocks" and len(parts) > 2 else parts[0]
        groups.setdefault(key, []).append(name)
    return groups


def weight_norms(
    state: Mapping[str, Tensor], initial: Mapping[str, Tensor] | None = None
) -> dict[str, dict[str, float | None]]:
    """Per-layer Frobenius norm of the weights and relative change since initialisation.

    -> {layer: {"norm": ||w||, "rel_change_from_init": ||w - w0|| / ||w0|| (None without `initial`
    or when ||w0|| = 0)}}; the whole model is under "all".
    """
    out: dict[str, dict[str, float | None]] = {}
    groups = parameter_groups(state)
    groups["all"] = [name for names in groups.values() for name in names]
    for layer, names in groups.items():
        w = torch.cat([state[n].detach().double().reshape(-1) for n in names])
        entry: dict[str, float | None] = {"norm": float(w.norm()), "rel_change_from_init": None}
        if initial is not None and all(n in initial for n in names):
            w0 = torch.cat([initial[n].detach().double().reshape(-1) for n in names])
            if float(w0.norm()) > 0:
                entry["rel_change_from_init"] = float((w - w0).norm() / w0.norm())
        out[layer] = entry
    return out
