"""Unit regimes (linear / hybrid / saturated), update sign flips and weight norms over training.

The seed's phase picture: sigmoid-like networks start *linear* (small weights, pre-activations
near 0, f'(z) ~ f'(0)), pass through a *hybrid* phase, and end *saturated* (units pinned at the
flat ends, f'(z) ~ 0, the net acting as a binary decision graph, learning stalls; update signs
flip between epochs). ReLU has no flat end on the active side, so it does not saturate in that
sense.

Per unit and input, from the pre-activation z (DESIGN.md section 5; thresholds are options):

* linear:    f'(z) / s_ref >= linear_threshold (0.9). s_ref is the slope of the unit's linear
             regime: f'(0) for sigmoid-like units (tanh, sigmoid, identity), and the slope of the
             positive linear piece, 1, for ReLU-like units (relu, gelu, silu), whose f'(0) is 0.5
             or undefined.
             For relu this is z > 0 (the unit is on).
* saturated: f'(z) / max f' <= saturated_threshold (0.1). For relu this is z <= 0 (the unit is off).
* dead:      a unit saturated on every input of the probe batch (for relu: never on); `dead_frac` is
             the fraction of units, the other two are fractions of (unit, input) pairs.

Phase label of a layer (`phase_label`):
* sigmoid-like: "linear" if linear_frac >= 0.8, "saturated" if saturated_frac >= 0.5, else "hybrid".
* ReLU-like: "linear" if linear_frac >= 0.8 (almost every unit on its linear piece for almost every
  input: the layer is an affine map); "saturated" if dead_frac >= 0.5 (half the units can no longer
  learn, the ReLU analogue of saturation); else "hybrid" (a piecewise-linear map whose on/off
  pattern depends on the input - the normal working state). An off ReLU unit on one input is
  sparsity, not saturation: its gradient returns as soon as another input turns it on, so the
  saturated_frac of a healthy ReLU layer sits near 0.5 and is not used for the label.
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


def unit_regimes(
    pre: Tensor,
    act: str,
    linear_threshold: float = 0.9,
    saturated_threshold: float = 0.1,
    linear_phase: float = 0.8,
    saturated_phase: float = 0.5,
) -> dict:
    """Regime fractions of one layer from its pre-activations pre (..., units) over a probe batch.

    Returns {"linear_frac", "saturated_frac", "dead_frac", "phase", "act"}; rules in the module doc.
    """
    if pre.ndim < 2:
        raise InvalidInput(f"pre-activations need shape (..., units), got {tuple(pre.shape)}")
    s_ref, max_slope = reference_slopes(act)
    slope = activation_derivative(pre.detach().double().reshape(-1, pre.shape[-1]), act)
    linear = slope / s_ref >= linear_threshold
    saturated = slope / max_slope <= saturated_threshold
    result = {
        "linear_frac": float(linear.double().mean()),
        "saturated_frac": float(saturated.double().mean()),
        "dead_frac": float(saturated.all(dim=0).double().mean()),
        "act": act,
    }
    result["phase"] = phase_label(result, act, linear_phase, saturated_phase)
    return result


def phase_label(
    fractions: Mapping[str, float],
    act: str,
    linear_phase: float = 0.8,
    saturated_phase: float = 0.5,
) -> str:
    """'linear' / 'hybrid' / 'saturated' from a layer's fractions (rule in the module doc)."""
    if fractions["linear_frac"] >= linear_phase:
        return "linear"
    key = "dead_frac" if act in RELU_LIKE else "saturated_frac"
    if fractions[key] >= saturated_phase:
        return "saturated"
    return "hybrid"


def sign_flip_fraction(before: Tensor, middle: Tensor, after: Tensor) -> float:
    """Fraction of parameters whose update sign flips between two consecutive intervals.

    before, middle, after: flat parameter vectors (P,) at three consecutive checkpoints. Counts
    entries with sign(after - middle) = -sign(middle - before) among entries whose two updates are
    both non-zero (a parameter that did not move, e.g. a frozen bias, has no sign).
    """
    first, second = middle - before, after - middle
    moved = (first != 0) & (second != 0)
    if not bool(moved.any()):
        return 0.0
    flipped = (torch.sign(first) != torch.sign(second)) & moved
    return float(flipped.sum() / moved.sum())


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


def flat_parameters(state: Mapping[str, Tensor]) -> Tensor:
    """All floating-point state-dict entries in name order as one float64 vector (P,)."""
    return torch.cat(
        [
            state[n].detach().double().reshape(-1)
            for n in sorted(state)
            if torch.is_floating_point(state[n])
        ]
    )
