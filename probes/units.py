"""Unit regimes over training: the gain of sigmoid-like layers (linear / hybrid / saturated), the
active fraction of ReLU-like layers (dense / mixed / sparse), and weight norms.

The seed's phase picture: sigmoid-like networks start *linear* (small weights, pre-activations
near 0, f'(z) ~ f'(0)), pass through a *hybrid* phase, and end *saturated* (units pinned at the
flat ends, f'(z) ~ 0, the net acting as a binary decision graph, learning stalls). That picture
needs a unit with two flat ends; a ReLU has one, so it gets its own measure and its own words.

Sigmoid-like units (tanh, sigmoid, identity): the layer's gain

    gain = E[f'(z)] / f'(0)   over the (input, unit) pairs of the probe batch,

1 for a layer that acts as its linear part, 0 for one whose units pass no gradient. Per unit the
gain is the mean over inputs; `gain_quantiles` are the 10/25/50/75/90 % quantiles of the per-unit
gains. Phase label (`phase_label`, thresholds are options): "linear" if gain >= 0.8,
"saturated" if gain <= 0.2, else "hybrid". Also, per (input, unit) pair: linear_frac
(f'(z) / f'(0) >= 0.9) and saturated_frac (f'(z) / max f' <= 0.1).

ReLU-like units (relu, gelu, silu): a unit is *active* on an input when z > 0 (for relu exactly
where it passes gradient; gelu and silu are the smooth versions of the same switch). The layer's
`active_frac` is the share of (input, unit) pairs that are active (0.5 at a symmetric
initialisation), `active_quantiles` the quantiles of the per-unit active fractions, and its label
(`sparsity_label`) is "dense" if active_frac >= 0.8 (the layer acts as one affine map on most
inputs), "sparse" if active_frac <= 0.2 (few units carry each input), else "mixed". No gain, no
"linear" or "saturated": an active ReLU is exactly linear and an inactive one is off, whatever z.

Every layer: dead_frac, the share of units that pass no gradient on any input of the batch
(sigmoid-like: saturated on every input; ReLU-like: never active). One criterion per family, the
same thresholds (options linear_gain and saturated_gain) for both.
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

    Sigmoid-like: {"measure": "gain", "gain_mean", "gain_quantiles": {"q10", ..., "q90"},
    "linear_frac", "saturated_frac", "dead_frac", "phase", "act"}; ReLU-like: {"measure":
    "active fraction", "active_frac", "active_quantiles", "dead_frac", "phase", "act"}.
    Definitions in the module doc.
    """
    if pre.ndim < 2:
        raise InvalidInput(f"pre-activations need shape (..., units), got {tuple(pre.shape)}")
    z = pre.detach().double().reshape(-1, pre.shape[-1])
    s_ref, max_slope = reference_slopes(act)  # also refuses unknown activations
    if act in RELU_LIKE:
        active = (z > 0).double()
        return {
            "measure": "active fraction",
            "active_frac": float(active.mean()),
            "active_quantiles": _quantiles(active.mean(dim=0)),
            "dead_frac": float((active.sum(dim=0) == 0).double().mean()),
            "phase": sparsity_label(float(active.mean()), linear_gain, saturated_gain),
            "act": act,
        }
    slope = activation_derivative(z, act)
    relative = slope / s_ref
    saturated = slope / max_slope <= saturated_threshold
    return {
        "measure": "gain",
        "gain_mean": float(relative.mean()),
        "gain_quantiles": _quantiles(relative.mean(dim=0)),
        "linear_frac": float((relative >= linear_threshold).double().mean()),
        "saturated_frac": float(saturated.double().mean()),
        "dead_frac": float(saturated.all(dim=0).double().mean()),
        "phase": phase_label(float(relative.mean()), linear_gain, saturated_gain),
        "act": act,
    }


def _quantiles(per_unit: Tensor) -> dict[str, float]:
    levels = torch.tensor(GAIN_QUANTILES, dtype=torch.float64)
    values = torch.quantile(per_unit, levels)
    return {f"q{round(100 * q)}": float(v) for q, v in zip(GAIN_QUANTILES, values, strict=True)}


def phase_label(gain: float, linear_gain: float = 0.8, saturated_gain: float = 0.2) -> str:
    """Sigmoid-like layers: 'linear' (gain >= linear_gain) / 'saturated' (<= saturated_gain) /
    'hybrid'."""
    if gain >= linear_gain:
        return "linear"
    if gain <= saturated_gain:
        return "saturated"
    return "hybrid"


def sparsity_label(active: float, dense: float = 0.8, sparse: float = 0.2) -> str:
    """ReLU-like layers: 'dense' (active fraction >= dense) / 'sparse' (<= sparse) / 'mixed'."""
    if active >= dense:
        return "dense"
    if active <= sparse:
        return "sparse"
    return "mixed"


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
