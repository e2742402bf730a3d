"""The model families by name: THE list the command line, recipes and sweeps read.

Importable without torch, so `beliefgeo` checks `--arch`, `--act-fn` and the size flags before it
loads anything heavy (an error in well under a second). Adding a family (say `lstm`) is one entry
here plus its config class in `models.architectures.ARCHITECTURES`; the CLI's `--arch` choices,
its size flags and their checks follow from this table (tests/models/test_architectures.py checks
the two agree).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """activations: the unit functions it supports, the default first; sizes: model-config field
    -> what it sets (the `train` flag `--<field with - for _>`)."""

    activations: tuple[str, ...]
    sizes: dict[str, str]


FAMILIES: dict[str, Family] = {
    "transformer": Family(
        activations=("relu", "gelu", "silu"),  # TransformerLens's native MLP supports these
        sizes={
            "d_model": "residual stream width (default 64)",
            "n_layers": "blocks (default 4)",
            "n_heads": "attention heads per block, 8 wide each (default 1)",
            "d_mlp": "MLP width (default 256)",
        },
    ),
    "rnn": Family(
        activations=("tanh", "sigmoid", "relu"),
        sizes={
            "hidden": "hidden units per layer (default 64)",
            "n_layers": "stacked recurrent layers (default 1)",
        },
    ),
}
DEFAULT_FAMILY = "transformer"


def size_fields() -> list[str]:
    """Every size field of any family, in table order (one `train` flag each)."""
    return list(dict.fromkeys(f for family in FAMILIES.values() for f in family.sizes))


def families_with(field: str) -> list[str]:
    """The families whose model config takes size `field`."""
    return [name for name, family in FAMILIES.items() if field in family.sizes]


def families_with_activation(act_fn: str) -> list[str]:
    """The families that support unit function `act_fn`."""
    return [name for name, family in FAMILIES.items() if act_fn in family.activations]
