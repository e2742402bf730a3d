"""Run options: the TrainConfig dataclass, the built-in recipes, recipe files, and how flags,
recipe and (on --resume) the run's config.json combine into one model and training config.

`default` is the project's fast recipe (AdamW 3e-3, 100-step warm-up, cosine to 0, batch 128;
0.00014 nats excess loss measured after 10 M Mess3 tokens). `paper` is the setting of the
reference runs (Shai et al. 2024): plain SGD, lr 0.01, batch 64, no weight decay, constant rate.
`memorize` is seed 001's saturation regime: small initial weights (model init_scale 0.1) and a
finite training set (512 sequences) revisited for many epochs; it needs a process whose inputs
can be enumerated, so the exact loss over every sequence shows what memorising costs.

A recipe file is JSON holding any TrainConfig field plus, optionally, `"base"` (a built-in recipe to
start from, default `default`), `"arch"`, `"act_fn"` and `"model"` (model-config fields such as
`d_model` or `hidden`). Command-line flags override the recipe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hmm import HMM
from hmm.errors import InvalidInput
from hmm.files import read_json
from hmm.msp import ENUMERABLE_SEQUENCES, enumerable
from models.architectures import ARCHITECTURES, DEFAULT_ACT_FN, ModelConfig, make_model_config
from models.compute import DEVICES
from models.data import MAX_TRAIN_TOKENS

MEMORIZE_TOKENS = 5_000_000  # tanh RNN, hidden 64, Mess3: about 1 CPU minute (docs/training.md)
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")
EXACT_EVAL = ("every", "final", "off")
COUNTS = {  # integer fields and their minimum
    "batch_size": 1,
    "tokens": 1,
    "n_checkpoints": 1,
    "log_every": 1,
    "loss_by_position_every": 1,
    "warmup_steps": 0,
    "seed": 0,
}


@dataclass
class TrainConfig:
    """Optimiser, learning-rate schedule, data stream and bookkeeping of one training run.

    tokens counts input tokens: one step consumes batch_size * n_ctx of them (each carries a loss;
    the step draws n_ctx + 1 per sequence, the last only as a target). `seed` seeds the data
    stream (models/data.py). train_sequences: None for fresh sequences every step, or the size of
    a fixed training set revisited epoch after epoch. exact_eval: the exact loss over every
    sequence at every checkpoint, at the last only (default: one evaluation of Mess3 at context
    10 costs about as much CPU as training 200k tokens), or never. device: auto|cpu|cuda.
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
    exact_eval: str = "final"
    train_sequences: int | None = None
    device: str = "auto"
    extra: dict = field(default_factory=dict)  # free-form notes carried into config.json

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # JSON gives lists
        if isinstance(self.exact_eval, bool):  # older recipes and runs: true / false
            self.exact_eval = "every" if self.exact_eval else "off"
        for name, choices in (
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("exact_eval", EXACT_EVAL),
            ("device", DEVICES),
        ):
            if getattr(self, name) not in choices:
                raise InvalidInput(
                    f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}"
                )
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise InvalidInput(f"betas must be two numbers in [0, 1), got {list(self.betas)}")
        counts = dict(
            COUNTS, **({"train_sequences": 1} if self.train_sequences is not None else {})
        )
        for name, minimum in counts.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                flag = "--train-sequences" if name == "train_sequences" else name
                raise InvalidInput(f"{flag} must be an integer >= {minimum}, got {value!r}")
        for name in ("lr", "weight_decay", "momentum"):
            if isinstance(getattr(self, name), bool) or not isinstance(
                getattr(self, name), float | int
            ):
                raise InvalidInput(f"{name} must be a number, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise InvalidInput(f"lr must be > 0, got {self.lr}")
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
    "memorize": TrainConfig(
        recipe="memorize",
        lr=3e-3,
        weight_decay=0.0,  # nothing pulls the weights back: they may grow toward saturation
        schedule="constant",
        batch_size=64,
        tokens=MEMORIZE_TOKENS,
        train_sequences=512,
        exact_eval="every",  # the population loss beside the training loss: what memorising costs
    ),
}
# what a built-in recipe says about the model (recipe files say it under "arch"/"act_fn"/"model")
RECIPE_MODELS: dict[str, dict] = {"memorize": {"model": {"init_scale": 0.1}}}
# recipes whose point is the exact loss over every input: refused on processes too large for it
ENUMERATED_RECIPES = ("memorize",)
TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}
RECIPE_FILE_KEYS = TRAIN_FIELDS | {"base", "arch", "act_fn", "model"}
MODEL_FIELDS = set().union(*(cls.__dataclass_fields__ for cls in ARCHITECTURES.values()))


def resolve_recipe(config: str | Path | None, **overrides: Any) -> tuple[TrainConfig, dict]:
    """Recipe name or JSON file, then non-None `overrides` -> (TrainConfig, model/arch settings).

    The second value holds what the recipe file says about the model: keys `arch`, `act_fn`,
    `model` (a dict), each only when given.
    """
    name = "default" if config is None else str(config)
    model_settings: dict = dict(RECIPE_MODELS.get(name, {}))
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
        if "model" in spec and not isinstance(spec["model"], dict):
            raise InvalidInput(
                f"recipe file {name}: 'model' must be an object of model-config fields"
            )
        model_settings = {**RECIPE_MODELS.get(base, {})}
        model_settings.update({k: spec[k] for k in ("arch", "act_fn") if k in spec})
        if "model" in spec:
            model_settings["model"] = {**model_settings.get("model", {}), **spec["model"]}
        given = {k: v for k, v in spec.items() if k in TRAIN_FIELDS}
        train = _replace(RECIPES[base], {"recipe": f"{base}+{Path(name).name}", **given}, name)
    else:
        raise InvalidInput(
            f"unknown recipe {name!r}: use one of {', '.join(RECIPES)} or a recipe .json file"
        )
    return _replace(
        train, {k: v for k, v in overrides.items() if v is not None}, "the flags"
    ), model_settings


def build_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser a TrainConfig names, over the model's parameters."""
    if train.optimizer == "adamw":
        return torch.optim.AdamW(
            model.parameters(), lr=train.lr, betas=train.betas, weight_decay=train.weight_decay
        )
    return torch.optim.SGD(
        model.parameters(), lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay
    )


def _replace(train: TrainConfig, changes: dict, source: str) -> TrainConfig:
    try:
        changed = replace(train, **changes)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{source}: {exc}") from None
    changed.extra = dict(changed.extra)  # never share the built-in recipe's dict
    return changed


# ---- one run's settings: recipe, flags and (on --resume) the run's own config.json -------------
def resolve_run(
    process: HMM,
    recipe: str | Path | None = None,
    stored: dict | None = None,
    arch: str | None = None,
    act_fn: str | None = None,
    **options: Any,
) -> tuple[ModelConfig, TrainConfig]:
    """The model and training config of a run: the recipe (default `default`), then the non-None
    `options` (TrainConfig fields such as tokens, seed, train_sequences, exact_eval, device, and
    model-config fields such as init_scale, d_model, hidden, n_layers).

    On resume `stored` (the run's config.json) takes the recipe's place unless a recipe is named,
    and the flags apply on top, so `resume_clashes` names every flag that contradicts the run.
    When `arch` names another family than the recipe's, the recipe's model fields that family
    lacks (d_mlp for an RNN, say) are dropped.
    """
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - TRAIN_FIELDS - MODEL_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown run options {unknown}")
    train_flags = {k: v for k, v in options.items() if k in TRAIN_FIELDS}
    model_flags = {k: v for k, v in options.items() if k not in TRAIN_FIELDS}
    if stored is None:
        train, settings = resolve_recipe(recipe, **train_flags)
    else:
        if recipe is None:
            train = _replace(TrainConfig(), {**stored["train"], **train_flags}, "config.json")
        else:  # the named recipe as the run would have used it: its own tokens and seed
            keep = {k: stored["train"][k] for k in ("tokens", "seed")}
            train, _ = resolve_recipe(recipe, **{**keep, **train_flags})
        settings = {"arch": stored["arch"]}
    arch = arch or settings.get("arch", "transformer")
    if arch not in ARCHITECTURES:
        raise InvalidInput(f"unknown arch {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if stored is None:
        model = {"seed": train.seed, **settings.get("model", {})}
        if arch != settings.get("arch", "transformer"):  # the recipe's model is another family
            known = ARCHITECTURES[arch].__dataclass_fields__
            model = {k: v for k, v in model.items() if k in known}
    else:  # the run's own model, unless the flags name another architecture
        model = dict(stored["model"]) if arch == stored["arch"] else {"seed": train.seed}
    model.update(model_flags)
    if "seed" in options:
        model["seed"] = options["seed"]
    if act_fn or settings.get("act_fn") or "act_fn" not in model:  # None for lstm, gru
        model["act_fn"] = act_fn or settings.get("act_fn") or DEFAULT_ACT_FN[arch]
    model["d_vocab"] = process.n_symbols
    return make_model_config(arch, **model), train


def check_fits(process: HMM, n_ctx: int, train: TrainConfig) -> None:
    """Refuse a run whose recipe needs what the process cannot give (InvalidInput)."""
    base = train.recipe.split("+")[0]
    if base in ENUMERATED_RECIPES and not enumerable(process, n_ctx):
        raise InvalidInput(
            f"recipe {train.recipe} needs every input enumerable: {process.name} has "
            f"{process.n_symbols}**{n_ctx} inputs of length {n_ctx} > {ENUMERABLE_SEQUENCES:,}; "
            "use a shorter context (model n_ctx) or a process with fewer symbols"
        )
    if train.train_sequences is not None and train.train_sequences * (n_ctx + 1) > MAX_TRAIN_TOKENS:
        raise InvalidInput(
            f"--train-sequences {train.train_sequences} holds more than {MAX_TRAIN_TOKENS:,} "
            f"tokens; at context {n_ctx} use at most {MAX_TRAIN_TOKENS // (n_ctx + 1):,}"
        )


# the run config's parts a resume must match; derived numbers (optimal_loss) may differ in the
# last digit, and where the run computes (train.device) may change between segments
RESUME_KEYS = ("process", "arch", "model", "train", "format", "data", "checkpoints")
RESUME_FREE = {"train.device"}
FLAG_NAMES = {
    "arch": "--arch",
    "train.tokens": "--tokens",
    "train.seed": "--seed",
    "model.seed": "--seed",
    "model.act_fn": "--act-fn",
    "train.recipe": "--config",
    **{f"train.{k}": f"--{k.replace('_', '-')}" for k in ("train_sequences", "exact_eval")},
    **{
        f"model.{k}": f"--{k.replace('_', '-')}"
        for k in ("init_scale", "d_model", "n_layers", "n_heads", "d_mlp", "hidden")
    },
}


def resume_clashes(stored: dict, fresh: dict, typed: set[str] | None = None) -> list[str]:
    """Where this invocation's run config `fresh` contradicts the run's config.json `stored`,
    each as "<flag or field> <given> (run has <stored>)"; [] when the run may continue.

    typed: the flags the user gave (e.g. {"--config", "--seed"}); when some of them clash, only
    theirs are named (a new --config or --arch changes many fields the user never typed)."""
    if stored.get("process") != fresh["process"]:
        return [f"process {fresh['process']['name']} (run has {stored['process']['name']})"]
    clashes = []
    for key in RESUME_KEYS:
        old, new = stored.get(key), fresh[key]
        if isinstance(old, dict) and key in ("model", "train"):
            for name in sorted(set(old) | set(new)):
                path = f"{key}.{name}"
                if path not in RESUME_FREE and old.get(name) != new.get(name):
                    label = FLAG_NAMES.get(path, path)
                    clashes.append(f"{label} {new.get(name)} (run has {old.get(name)})")
        elif old != new and key == "arch":
            clashes.append(f"--arch {new} (run has {old})")
        elif old != new and not clashes:  # derived from the settings: this code computes them anew
            clashes.append(f"{key} (this beliefgeo derives a different {key} from the settings)")
    clashes = list(dict.fromkeys(clashes))
    theirs = [c for c in clashes if typed and c.split(" ", 1)[0] in typed]
    return theirs or clashes
