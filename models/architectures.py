"""One entry point over both model families: build a model from its config, and name its hooks.

Probes and phase diagnostics talk to models only through these hook names, so the transformer
and the RNN are interchangeable to them (the TransformerLens way); what hooks cannot give (the
RNN's step function, for recurrent Jacobians) they reach through `recurrent_layers`,
`recurrent_step`, `recurrent_weight` and `layer_input_hook` below, never through models.rnn.
Training takes the fastest forward on the same parameters (`training_forward`), checked against the
model on a run's first batch (`check_training_forward`).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from transformer_lens.model_bridge import TransformerBridge

from hmm.errors import InvalidInput
from models.families import FAMILIES
from models.rnn import ElmanRNN, RNNConfig, build_rnn, rnn_residual_hooks
from models.transformer import (
    PlainForward,
    TransformerConfig,
    build_transformer,
    transformer_residual_hooks,
)

# each family's config class (models/families.py names the families, their units and sizes)
ARCHITECTURES: dict[str, type] = {"transformer": TransformerConfig, "rnn": RNNConfig}
DEFAULT_ACT_FN = {name: family.activations[0] for name, family in FAMILIES.items()}
ARCH_ACTIVATIONS = {name: family.activations for name, family in FAMILIES.items()}

ModelConfig = TransformerConfig | RNNConfig


def build_model(config: ModelConfig) -> nn.Module:
    """TransformerBridge or ElmanRNN seeded by `config.seed`: model(tokens (n, L)) -> (n, L, V)."""
    if isinstance(config, TransformerConfig):
        return build_transformer(config)
    if isinstance(config, RNNConfig):
        return build_rnn(config)
    raise InvalidInput(f"not a model config: {type(config).__name__}")


def move_model(model: nn.Module, device: str | torch.device) -> nn.Module:
    """model.to(device), without TransformerLens's "Moving model to device" print on stdout."""
    if all(p.device == torch.device(device) for p in model.parameters()):
        return model
    with contextlib.redirect_stdout(io.StringIO()):
        return model.to(device)


def training_forward(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """tokens (n, L) -> logits (n, L, V): the model's function on its own parameters, fastest path.

    LayerNorm transformers get `PlainForward` (no hook dispatch); everything else is the model.
    """
    if isinstance(model, TransformerBridge):
        try:
            return PlainForward(model)
        except InvalidInput:
            return model
    return model


def check_training_forward(
    model: nn.Module,
    tokens: torch.Tensor,
    atol: float = 1e-4,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> None:
    """Stop a run whose training forward does not compute the model's function.

    Compares `forward` (default `training_forward(model)`) with the model itself on `tokens`
    (n, L): every logit must agree within atol + atol·|logit|. Costs one extra forward pass; the
    trainer calls it on its first batch. Raises RuntimeError naming the largest difference (a bug in
    PlainForward, not bad input). A forward that is the model itself passes without computing.
    """
    forward = training_forward(model) if forward is None else forward
    if forward is model:
        return
    with torch.no_grad():
        plain, reference = forward(tokens), model(tokens)
    same_shape = plain.shape == reference.shape
    gap = (plain - reference).abs() if same_shape else None
    if gap is None or not bool((gap <= atol + atol * reference.abs()).all()):
        worst = float("nan") if gap is None else float(gap.max())
        raise RuntimeError(
            f"the training forward ({type(forward).__name__}) differs from the model on the first "
            f"batch: largest |logit difference| {worst:.3g} > {atol:g} (shapes "
            f"{tuple(plain.shape)} vs {tuple(reference.shape)}); models/transformer.py "
            "PlainForward no longer computes the TransformerBridge's function — fix it before "
            "training"
        )


def arch_of(config: ModelConfig) -> str:
    """'transformer' or 'rnn'."""
    return "transformer" if isinstance(config, TransformerConfig) else "rnn"


def make_model_config(arch: str, **settings: Any) -> ModelConfig:
    """Model config of `arch` from keyword settings; unknown arch or fields -> InvalidInput."""
    if arch not in ARCHITECTURES:
        raise InvalidInput(f"unknown arch {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    cls = ARCHITECTURES[arch]
    unknown = sorted(set(settings) - set(cls.__dataclass_fields__))
    if unknown:
        raise InvalidInput(
            f"{arch} model config has no field(s) {unknown}; "
            f"known: {sorted(cls.__dataclass_fields__)}"
        )
    try:
        return cls(**settings)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InvalidInput):
            raise
        raise InvalidInput(f"{arch} model config: {exc}; give integers for sizes") from None


# the probe key of all residual hooks side by side (probes.json, reports, sweep summaries)
CONCAT = "concat"


def residual_hooks(model: nn.Module) -> list[str]:
    """THE hook-name list probed for beliefs, in depth order."""
    if isinstance(model, TransformerBridge):
        return transformer_residual_hooks(model.cfg.n_layers)
    if isinstance(model, ElmanRNN):
        return rnn_residual_hooks(model.config.n_layers)
    raise InvalidInput(f"not a beliefgeo model: {type(model).__name__}")


def hook_label(hook: str) -> str:
    """A reader's name for a hook: `blocks.2.hook_resid_post` -> `block 2`, `concat` unchanged."""
    return (
        hook.replace("blocks.", "block ")
        .replace(".hook_resid_post", "")
        .replace(".hook_resid_pre", " (embed)")
        .replace("ln_final.hook_normalized", "ln_final")
        .replace(".hook_hidden", " hidden")
    )


def final_layer_hook(hooks: list[str]) -> str:
    """The "final layer" of issue targets: blocks.{L-1}.hook_resid_post, or the RNN's last
    hidden hook, among `hooks` (the last hook when neither is there)."""
    blocks = [h for h in hooks if h.endswith(("hook_resid_post", "hook_hidden"))]
    return blocks[-1] if blocks else hooks[-1]


# The hook-name structure every family follows: blocks.{l}.hook_resid_pre/post for a residual
# stream, blocks.{l}.hook_hidden for a recurrence. Probes read a model's kind and depth from its
# hook names (so hand-built HookedRootModules with these names work too), through these two.
def map_kind(model: nn.Module) -> str:
    """'residual' with a blocks.0.hook_resid_pre hook, 'recurrent' with blocks.0.hook_hidden."""
    hooks = model.hook_dict
    if "blocks.0.hook_resid_pre" in hooks:
        return "residual"
    if "blocks.0.hook_hidden" in hooks:
        return "recurrent"
    raise InvalidInput(
        "the model has neither blocks.0.hook_resid_pre (transformer) nor blocks.0.hook_hidden "
        "(RNN); Jacobian diagnostics need one of them"
    )


def n_blocks(model: nn.Module, kind: str) -> int:
    """Number of residual blocks / recurrent layers, counted from the hook names."""
    name = "blocks.{}.hook_resid_post" if kind == "residual" else "blocks.{}.hook_hidden"
    count = 0
    while name.format(count) in model.hook_dict:
        count += 1
    return count


def unit_hooks(model: nn.Module) -> dict[str, tuple[str, str]]:
    """Layer label -> (pre-activation hook, activation name) for every nonlinear layer.

    Transformer: {"blocks.{l}.mlp": ("blocks.{l}.mlp.hook_pre", act_fn)};
    RNN: {"blocks.{l}": ("blocks.{l}.hook_pre", act_fn)}.
    """
    if isinstance(model, TransformerBridge):
        act = str(model.cfg.act_fn)
        return {
            f"blocks.{layer}.mlp": (f"blocks.{layer}.mlp.hook_pre", act)
            for layer in range(model.cfg.n_layers)
        }
    if isinstance(model, ElmanRNN):
        act = model.config.act_fn
        return {
            f"blocks.{layer}": (f"blocks.{layer}.hook_pre", act)
            for layer in range(model.config.n_layers)
        }
    raise InvalidInput(f"not a beliefgeo model: {type(model).__name__}")


# The recurrence, for diagnostics that need more than the hooks ------------------------------
# Hooks sit after the recurrence (models/rnn.py), so a per-step map (the recurrent Jacobian, a
# Lyapunov exponent) needs the step function itself. These few names are the whole interface
# probes use for it; they never import models.rnn.


def recurrent_layers(model: nn.Module) -> int:
    """How many recurrent layers `model` has: the RNN's n_layers, 0 for a transformer."""
    if isinstance(model, ElmanRNN):
        return model.config.n_layers
    if isinstance(model, TransformerBridge):
        return 0
    raise InvalidInput(f"not a beliefgeo model: {type(model).__name__}")


def _recurrent_layer(model: nn.Module, layer: int) -> nn.Module:
    n_layers = recurrent_layers(model)
    if n_layers == 0:
        raise InvalidInput("a transformer has no recurrence; use an RNN (--arch rnn)")
    if not 0 <= layer < n_layers:
        raise InvalidInput(f"the RNN has layers 0..{n_layers - 1}, not {layer}")
    return model.blocks[layer]


RecurrentStep = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def recurrent_step(model: nn.Module, layer: int) -> RecurrentStep:
    """Layer `layer`'s recurrence as a function (h_prev (..., H), u (..., In)) -> (z, h).

    z = W_in u + b + W_rec h_prev is the pre-activation (hook `blocks.{layer}.hook_pre`) and
    h = f(z) the new hidden state (hook `blocks.{layer}.hook_hidden`); u is what the layer reads at
    that token, the tensor at `layer_input_hook(model, layer)`. It uses the model's live parameters
    and works under torch.func (jacrev, vmap), so d h / d h_prev = diag(f'(z)) W_rec is
    `jacrev(lambda h: step(h, u)[1])(h_prev)`.
    """
    block = _recurrent_layer(model, layer)

    def step(h_prev: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        return block.step(u, h_prev)

    return step


def recurrent_weight(model: nn.Module, layer: int) -> Tensor:
    """W_rec of layer `layer`, (H, H), as `recurrent_step` uses it (detached; shares storage)."""
    return _recurrent_layer(model, layer).W_rec.weight.detach()


def layer_input_hook(model: nn.Module, layer: int) -> str:
    """Hook holding what layer `layer` of the RNN reads at each token: the embedding for layer 0,
    the previous layer's hidden state above it."""
    _recurrent_layer(model, layer)
    return "hook_embed" if layer == 0 else f"blocks.{layer - 1}.hook_hidden"
