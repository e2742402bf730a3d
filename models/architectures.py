"""One entry point over the model families: build a model from its config, and name its hooks.

Probes and phase diagnostics talk to models only through these hook names, so the transformer
and the recurrent networks (Elman RNN, LSTM, GRU) are interchangeable to them (the TransformerLens
way); what hooks cannot give (a recurrent layer's step function, for recurrent Jacobians) they
reach through `recurrent_layers`, `recurrent_state_hooks`, `recurrent_step`, `recurrent_weight`
and `layer_input_hook` below, never through models.rnn or models.gated.
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
from models.families import FAMILIES, check_act_fn
from models.gated import LAYERS as GATED_LAYERS
from models.gated import GatedConfig, GatedRNN, GRUConfig, LSTMConfig, build_gated
from models.rnn import ElmanLayer, RNNConfig, StackedRNN, build_rnn
from models.transformer import (
    PlainForward,
    TransformerConfig,
    build_transformer,
    transformer_residual_hooks,
)

# each family's config class (models/families.py names the families, their units and sizes)
ARCHITECTURES: dict[str, type] = {
    "transformer": TransformerConfig,
    "rnn": RNNConfig,
    "lstm": LSTMConfig,
    "gru": GRUConfig,
}
DEFAULT_ACT_FN = {name: family.default_activation for name, family in FAMILIES.items()}

ModelConfig = TransformerConfig | RNNConfig | LSTMConfig | GRUConfig


def build_model(config: ModelConfig) -> nn.Module:
    """TransformerBridge, ElmanRNN or GatedRNN (LSTM, GRU) seeded by `config.seed`:
    model(tokens (n, L)) -> (n, L, V)."""
    if isinstance(config, TransformerConfig):
        return build_transformer(config)
    if isinstance(config, RNNConfig):
        return build_rnn(config)
    if isinstance(config, GatedConfig):
        return build_gated(config)
    raise InvalidInput(f"not a model config: {type(config).__name__}")


def move_model(model: nn.Module, device: str | torch.device) -> nn.Module:
    """model.to(device), without TransformerLens's "Moving model to device" print on stdout."""
    if all(p.device == torch.device(device) for p in model.parameters()):
        return model
    with contextlib.redirect_stdout(io.StringIO()):
        return model.to(device)


def training_forward(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """tokens (n, L) -> logits (n, L, V): the model's function on its own parameters, fastest path.

    LayerNorm transformers get `PlainForward` (no hook dispatch), LSTMs and GRUs torch's fused
    recurrence (`GatedRNN.fused_forward`); everything else is the model.
    """
    if isinstance(model, TransformerBridge):
        try:
            return PlainForward(model)
        except InvalidInput:
            return model
    if isinstance(model, GatedRNN):
        return model.fused_forward
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
    PlainForward or fused_forward, not bad input). A forward that is the model itself passes
    without computing.
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
        where = (
            "models/gated.py fused_forward no longer computes the hooked LSTM/GRU's function"
            if isinstance(model, GatedRNN)
            else "models/transformer.py PlainForward no longer computes the TransformerBridge's "
            "function"
        )
        raise RuntimeError(
            f"the training forward ({getattr(forward, '__name__', type(forward).__name__)}) "
            f"differs from the model on the first batch: largest |logit difference| {worst:.3g} "
            f"> {atol:g} (shapes {tuple(plain.shape)} vs {tuple(reference.shape)}); {where} — "
            "fix it before training"
        )


def arch_of(config: ModelConfig) -> str:
    """The ARCHITECTURES name of a model config: 'transformer', 'rnn', 'lstm' or 'gru'."""
    return next(arch for arch, cls in ARCHITECTURES.items() if type(config) is cls)


def make_model_config(arch: str, **settings: Any) -> ModelConfig:
    """Model config of `arch` from keyword settings; unknown arch or fields -> InvalidInput.

    The one check every entry point (train flags, recipe files, sweep specs, compare-phases run
    lists) passes through: the act_fn must be one of the family's (models.families.check_act_fn;
    an LSTM or GRU has none, and None counts as not given).
    """
    if arch not in ARCHITECTURES:
        raise InvalidInput(f"unknown arch {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    cls = ARCHITECTURES[arch]
    check_act_fn(arch, settings.get("act_fn"))
    if not FAMILIES[arch].activations:
        settings.pop("act_fn", None)
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
    if isinstance(model, StackedRNN):  # every layer's full recurrent state, hidden first
        layers = range(model.config.n_layers)
        return [hook for layer in layers for hook in recurrent_state_hooks(model, layer)]
    raise InvalidInput(f"not a beliefgeo model: {type(model).__name__}")


def residual_width(config: ModelConfig) -> int:
    """Features of every `residual_hooks` side by side (the `concat` probe), from the config
    alone: d_model per transformer hook; per recurrent layer its full state (an LSTM's: h and c)."""
    if isinstance(config, TransformerConfig):
        return len(transformer_residual_hooks(config.n_layers)) * config.d_model
    if isinstance(config, GatedConfig):
        return config.n_layers * len(GATED_LAYERS[config.cell].STATE_HOOKS) * config.hidden
    if isinstance(config, RNNConfig):
        return config.n_layers * len(ElmanLayer.STATE_HOOKS) * config.hidden
    raise InvalidInput(f"not a model config: {type(config).__name__}")


def hook_label(hook: str) -> str:
    """A reader's name for a hook or unit layer: `blocks.2.hook_resid_post` -> `block 2`,
    `blocks.0.hook_cell` -> `block 0 cell`, `blocks.0.forget_gate` -> `block 0 forget gate`,
    `concat` unchanged."""
    return (
        hook.replace("blocks.", "block ")
        .replace(".hook_resid_post", "")
        .replace(".hook_resid_pre", " (embed)")
        .replace("ln_final.hook_normalized", "ln_final")
        .replace(".hook_hidden", " hidden")
        .replace(".hook_cell", " cell")
        .replace("_gate", " gate")
        .replace(".", " ")
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
    RNN: {"blocks.{l}": ("blocks.{l}.hook_pre", act_fn)}; LSTM: per layer five unit
    populations of H units, {"blocks.{l}.input_gate": ("blocks.{l}.hook_input_gate_pre",
    "sigmoid"), forget_gate, output_gate (sigmoid), candidate (tanh of hook_candidate_pre), cell
    (tanh of hook_cell)}; GRU: reset_gate, update_gate (sigmoid), candidate (tanh).
    """
    if isinstance(model, TransformerBridge):
        act = str(model.cfg.act_fn)
        return {
            f"blocks.{layer}.mlp": (f"blocks.{layer}.mlp.hook_pre", act)
            for layer in range(model.cfg.n_layers)
        }
    if isinstance(model, StackedRNN):
        return {
            f"blocks.{layer}" + (f".{name}" if name else ""): (f"blocks.{layer}.{hook}", act)
            for layer, block in enumerate(model.blocks)
            for name, (hook, act) in block.units().items()
        }
    raise InvalidInput(f"not a beliefgeo model: {type(model).__name__}")


# The recurrence, for diagnostics that need more than the hooks ------------------------------
# Hooks sit after the recurrence (models/rnn.py), so a per-step map (the recurrent Jacobian, a
# Lyapunov exponent) needs the step function itself. These few names are the whole interface
# probes use for it; they never import models.rnn or models.gated. A layer's recurrent state s_t
# is everything the next step reads of the past: h_t for the Elman RNN and the GRU, (h_t, c_t)
# for the LSTM; its first H entries are always h_t.


def recurrent_layers(model: nn.Module) -> int:
    """How many recurrent layers `model` has: the RNN's n_layers, 0 for a transformer."""
    if isinstance(model, StackedRNN):
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


def recurrent_state_hooks(model: nn.Module, layer: int) -> list[str]:
    """The hooks whose concatenation on the last axis is layer `layer`'s recurrent state s_t
    (n, L, D): [blocks.{layer}.hook_hidden] (Elman, GRU; D = H) or [blocks.{layer}.hook_hidden,
    blocks.{layer}.hook_cell] (LSTM; D = 2H)."""
    block = _recurrent_layer(model, layer)
    return [f"blocks.{layer}.{hook}" for hook in block.STATE_HOOKS]


RecurrentStep = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def recurrent_step(model: nn.Module, layer: int) -> RecurrentStep:
    """Layer `layer`'s recurrence as a function (s_prev (..., D), u (..., In)) -> (h, s).

    s is the layer's full recurrent state after the token (`recurrent_state_hooks`: the hidden
    state for an Elman RNN or GRU, (h, c) for an LSTM) and h (..., H) its hidden state, what the
    layer above reads (hook `blocks.{layer}.hook_hidden`, also s[..., :H]); u is what this layer
    reads at that token, the tensor at `layer_input_hook(model, layer)`. It uses the model's live
    parameters and works under torch.func (jacrev, vmap), so the recurrent Jacobian ds/ds_prev
    (diag(f'(z)) W_rec for an Elman layer) is `jacrev(lambda s: step(s, u)[1])(s_prev)`.
    """
    return _recurrent_layer(model, layer).step


def recurrent_weight(model: nn.Module, layer: int) -> Tensor:
    """The square recurrent matrix of layer `layer`, (H, H) (detached; shares storage): W_rec of
    an Elman layer; the candidate's block of W_hh for an LSTM (W_hg) or GRU (W_hn)."""
    return _recurrent_layer(model, layer).recurrent_weight().detach()


def layer_input_hook(model: nn.Module, layer: int) -> str:
    """Hook holding what layer `layer` of a recurrent model reads at each token: the embedding for
    layer 0, the previous layer's hidden state above it."""
    _recurrent_layer(model, layer)
    return "hook_embed" if layer == 0 else f"blocks.{layer - 1}.hook_hidden"
