"""The model families by name: THE list the command line, recipes and sweeps read.

Importable without torch, so `beliefgeo` checks `--arch`, `--act-fn` and the size flags before it
loads anything heavy (an error in well under a second). Adding a family is one entry here plus its
config class in `models.architectures.ARCHITECTURES`; the CLI's `--arch` choices, its size flags
and their checks follow from this table (tests/models/test_architectures.py checks the two agree).
An LSTM or GRU has no unit function to choose (its cell fixes σ gates and tanh): `check_act_fn`
refuses one, for the command line and for models.architectures.make_model_config alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from hmm.errors import InvalidInput


@dataclass(frozen=True)
class Family:
    """activations: the unit functions it supports, the default first; sizes: model-config field
    -> what it sets (the `train` flag `--<field with - for _>`)."""

    activations: tuple[str, ...]
    sizes: dict[str, str]

    @property
    def default_activation(self) -> str | None:
        """The unit function when none is given; None for a family without a choice."""
        return self.activations[0] if self.activations else None


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
    "lstm": Family(  # σ gates, tanh candidate and cell: fixed by the cell
        activations=(),
        sizes={
            "hidden": "hidden units per layer (default 64)",
            "n_layers": "stacked recurrent layers (default 1)",
        },
    ),
    "gru": Family(  # σ gates, tanh candidate: fixed by the cell
        activations=(),
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


def describe_model(arch: str, model: dict) -> str:
    """A reader's one line for a run's model, from config.json's `arch` and `model`:
    "4-layer transformer (d_model 64, relu)", "1-layer LSTM (hidden 32)"."""
    layers = model.get("n_layers") or 1
    if arch == "transformer":
        return f"{layers}-layer transformer (d_model {model.get('d_model')}, {model.get('act_fn')})"
    if arch == "rnn":
        return f"{layers}-layer Elman RNN (hidden {model.get('hidden')}, {model.get('act_fn')})"
    return f"{layers}-layer {arch.upper()} (hidden {model.get('hidden')})"


def check_act_fn(arch: str, act_fn: str | None) -> None:
    """InvalidInput (one line) when unit function `act_fn` is not one of family `arch`'s; None
    (not given) always passes. The message says which families have it, or, for an LSTM or GRU,
    that its cell fixes its units."""
    family = FAMILIES[arch]
    if act_fn is None or act_fn in family.activations:
        return
    if not family.activations:
        raise InvalidInput(
            f"--act-fn {act_fn} does not apply to --arch {arch}: its gates are sigmoid and its "
            "candidate tanh, fixed by the cell; leave --act-fn (act_fn) out"
        )
    others = [a for a in families_with_activation(act_fn) if a != arch]
    use = f"; {act_fn} needs --arch {' or '.join(others)}" if others else ""
    raise InvalidInput(
        f"--act-fn {act_fn} is not a unit of --arch {arch} ({', '.join(family.activations)}){use}"
    )
