"""Training recipes: the TrainConfig dataclass, the built-in recipes, and recipe files.

`default` is the project's fast recipe (AdamW 3e-3, 100-step warm-up, cosine to 0, batch 128;
FINDINGS.md measured 0.00014 nats excess loss after 10 M Mess3 tokens). `paper` is the setting of
the reference runs (Shai et al. 2024): plain SGD, lr 0.01, batch 64, no weight decay, constant rate.

A recipe file is JSON holding any TrainConfig field plus, optionally, `"base"` (a built-in recipe to
start from, default `default`), `"arch"`, `"act_fn"` and `"model"` (model-config fields such as
`d_model` or `hidden`). Command-line flags override the recipe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hmm.errors import InvalidInput
from hmm.files import read_json

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")


@dataclass
class TrainConfig:
    """Optimiser, learning-rate schedule, data stream and bookkeeping of one training run.

    tokens counts input tokens: one step consumes batch_size * n_ctx of them. `seed` seeds the data
    stream (batch k is `process.sample(batch_size, n_ctx, seed=data_seed(seed, k))`).
    """

    recipe: str = "default"
    optimizer: str = "adamw"
    lr: float = 3e-3
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.0
    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup_steps: int = 100
    batch_size: int = 128
    tokens: int = 10_000_000
    seed: int = 0
    grad_clip: float | None = None
    n_checkpoints: int = 40
    log_every: int = 10
    loss_by_position_every: int = 100
    exact_eval: bool = True
    extra: dict = field(default_factory=dict)  # free-form notes carried into config.json

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # JSON gives lists
        if self.optimizer not in OPTIMIZERS:
            raise InvalidInput(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if self.schedule not in SCHEDULES:
            raise InvalidInput(
                f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"
            )
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise InvalidInput(f"betas must be two numbers in [0, 1), got {list(self.betas)}")
        if not self.lr > 0:
            raise InvalidInput(f"lr must be > 0, got {self.lr}")
        counts = {
            "batch_size": 1,
            "tokens": 1,
            "n_checkpoints": 1,
            "log_every": 1,
            "loss_by_position_every": 1,
            "warmup_steps": 0,
            "seed": 0,
        }
        for name, minimum in counts.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InvalidInput(f"{name} must be an integer >= {minimum}, got {value!r}")
        for name in ("lr", "weight_decay", "momentum"):
            if isinstance(getattr(self, name), bool) or not isinstance(
                getattr(self, name), float | int
            ):
                raise InvalidInput(f"{name} must be a number, got {getattr(self, name)!r}")
        if self.weight_decay < 0 or self.momentum < 0:
            raise InvalidInput("weight_decay and momentum must be >= 0")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise InvalidInput(f"grad_clip must be > 0 or null, got {self.grad_clip}")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["betas"] = list(self.betas)
        return out


RECIPES: dict[str, TrainConfig] = {
    "default": TrainConfig(),
    "paper": TrainConfig(
        recipe="paper",
        optimizer="sgd",
        lr=0.01,
        momentum=0.0,
        weight_decay=0.0,
        schedule="constant",
        warmup_steps=0,
        batch_size=64,
        tokens=3_200_000,
    ),
}
TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}
RECIPE_FILE_KEYS = TRAIN_FIELDS | {"base", "arch", "act_fn", "model"}


def resolve_recipe(config: str | Path | None, **overrides: Any) -> tuple[TrainConfig, dict]:
    """Recipe name or JSON file, then non-None `overrides` -> (TrainConfig, model/arch settings).

    The second value holds what the recipe file says about the model: keys `arch`, `act_fn`,
    `model` (a dict), each only when given.
    """
    name = "default" if config is None else str(config)
    model_settings: dict = {}
    if name in RECIPES:
        train = RECIPES[name]
    elif name.endswith(".json") or Path(name).is_file():
        spec = read_json(name)
        if not isinstance(spec, dict):
            raise InvalidInput(f"recipe file {name} must hold a JSON object")
        unknown = sorted(set(spec) - RECIPE_FILE_KEYS)
        if unknown:
            raise InvalidInput(
                f"recipe file {name} has unknown keys {unknown}; "
                f"allowed: {sorted(RECIPE_FILE_KEYS)}"
            )
        base = spec.get("base", "default")
        if base not in RECIPES:
            raise InvalidInput(
                f"recipe file {name}: base must be one of {sorted(RECIPES)}, got {base!r}"
            )
        model_settings = {k: spec[k] for k in ("arch", "act_fn", "model") if k in spec}
        if "model" in model_settings and not isinstance(model_settings["model"], dict):
            raise InvalidInput(
                f"recipe file {name}: 'model' must be an object of model-config fields"
            )
        given = {k: v for k, v in spec.items() if k in TRAIN_FIELDS}
        train = _replace(RECIPES[base], {"recipe": f"{base}+{Path(name).name}", **given}, name)
    else:
        raise InvalidInput(
            f"unknown recipe {name!r}: use one of {', '.join(RECIPES)} or a recipe .json file"
        )
    return _replace(
        train, {k: v for k, v in overrides.items() if v is not None}, "the flags"
    ), model_settings


def _replace(train: TrainConfig, changes: dict, source: str) -> TrainConfig:
    try:
        changed = replace(train, **changes)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{source}: {exc}") from None
    changed.extra = dict(changed.extra)  # never share the built-in recipe's dict
    return changed
