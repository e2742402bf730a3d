"""The transformer under study: a TransformerLens 4.x native model built from a plain config.

Defaults are the paper's Mess3 model (Shai et al. 2024): 4 layers, d_model 64, 1 head of width 8,
d_mlp 256, context 10, ReLU, LayerNorm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
import transformer_lens.model_bridge.sources  # noqa: F401  (attaches TransformerBridge.boot_native)
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from hmm.errors import InvalidInput
from models.init_scale import check_init_scale, scale_weight_matrices
from models.nonlinearities import TRANSFORMER_ACTIVATIONS, nonlinearity


@dataclass
class TransformerConfig:
    """Shape of the transformer; `d_vocab` is the process's number of symbols.

    `init_scale` multiplies every initial weight matrix (models/init_scale.py says which).
    """

    d_vocab: int = 3
    n_layers: int = 4
    d_model: int = 64
    n_heads: int = 1
    d_head: int = 8
    d_mlp: int = 256
    n_ctx: int = 10
    act_fn: str = "relu"
    normalization: str = "LN"
    seed: int = 0
    init_scale: float = 1.0

    def __post_init__(self) -> None:
        self.init_scale = check_init_scale(self.init_scale)
        if self.act_fn not in TRANSFORMER_ACTIVATIONS:
            raise InvalidInput(
                f"the transformer's native MLP supports act-fn "
                f"{', '.join(TRANSFORMER_ACTIVATIONS)}, "
                f"not {self.act_fn!r}; for tanh or sigmoid units use --arch rnn"
            )
        for name in ("d_vocab", "n_layers", "d_model", "n_heads", "d_head", "d_mlp", "n_ctx"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"transformer {name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


def build_transformer(config: TransformerConfig) -> TransformerBridge:
    """Boot the TransformerLens native model offline (no hub), seeded by `config.seed`, with its
    weight matrices multiplied by `config.init_scale`."""
    tl_config = TransformerBridgeConfig(
        d_model=config.d_model,
        d_head=config.d_head,
        n_layers=config.n_layers,
        n_ctx=config.n_ctx,
        n_heads=config.n_heads,
        d_mlp=config.d_mlp,
        d_vocab=config.d_vocab,
        act_fn=config.act_fn,
        normalization_type=config.normalization,
        seed=config.seed,
    )
    bridge = TransformerBridge.boot_native(tl_config)
    scale_weight_matrices(bridge, config.init_scale)
    return bridge


def transformer_residual_hooks(n_layers: int) -> list[str]:
    """Residual-stream hooks probed for beliefs, in depth order: the embedding, every block's
    output, the final LayerNorm's normalised stream (before its gain and bias)."""
    return (
        ["blocks.0.hook_resid_pre"]
        + [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]
        + ["ln_final.hook_normalized"]
    )


# TransformerBridgeConfig fields PlainForward reads and computes with, whatever their value.
_PLAIN_SIZES = ("d_model", "d_head", "n_layers", "n_ctx", "n_heads", "d_mlp", "d_vocab")
_PLAIN_READS = frozenset(_PLAIN_SIZES) | {"eps", "use_attn_scale", "attn_scale"}
# Fields that name, seed, place or hook the model without changing the function it computes.
_PLAIN_IGNORES = frozenset(
    {
        "architecture",
        "model_name",
        "original_architecture",
        "seed",
        "init_mode",
        "init_weights",
        "initializer_range",
        "device",
        "n_devices",
        "dtype",
        "n_params",
        "from_checkpoint",
        "checkpoint_index",
        "checkpoint_label_type",
        "checkpoint_value",
        "tokenizer_name",
        "tokenizer_prepends_bos",
        "tokenizer_appends_eos",
        "default_prepend_bos",
        "default_padding_side",
        "decoder_start_token_id",
        "trust_remote_code",
        "use_attn_result",
        "use_split_qkv_input",
        "use_hook_mlp_in",
        "use_attn_in",
        "use_hook_tokens",
        "split_attention_weights",
    }
)
_PLAIN_ACTIVATIONS = ("relu", "gelu", "gelu_new", "silu")


def _plain_forward_refusals(cfg: TransformerBridgeConfig) -> list[str]:
    """`field=value` for every setting of `cfg` that changes the function and PlainForward lacks.

    Fields with a value PlainForward supports are checked by value; every other field must keep
    TransformerBridgeConfig's default, so a setting TransformerLens adds later is refused until
    someone implements or reviews it here.
    """
    checked = {
        "act_fn": str(cfg.act_fn).lower() in _PLAIN_ACTIVATIONS,
        "normalization_type": str(cfg.normalization_type).upper() == "LN",
        "positional_embedding_type": str(cfg.positional_embedding_type or "standard").lower()
        == "standard",
        "d_vocab_out": cfg.d_vocab_out in (-1, cfg.d_vocab),
        "n_key_value_heads": cfg.n_key_value_heads in (None, cfg.n_heads),
    }
    reference = vars(TransformerBridgeConfig(**{k: getattr(cfg, k) for k in _PLAIN_SIZES}))
    refused = [name for name, ok in checked.items() if not ok]
    for name, value in vars(cfg).items():
        if name in checked or name in _PLAIN_READS or name in _PLAIN_IGNORES:
            continue
        if name not in reference or not _same(value, reference[name]):
            refused.append(name)
    return [f"{name}={getattr(cfg, name)!r}" for name in refused]


def _same(a: object, b: object) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError, RuntimeError):  # e.g. tensors: not a value we can vouch for
        return False


# how a block's heads combine: (layer, q, k, v), each (..., heads, d_head) -> (..., heads * d_head)
Attend = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class PlainForward:
    """The bridge's forward pass in plain PyTorch over the bridge's own parameters, for training.

    Same tensors (gradients land on the TransformerBridge's parameters), same function as the native
    model (pre-LN blocks, causal softmax attention scaled by sqrt(d_head), MLP, final LN, unembed),
    without hook dispatch and with fused layer norms: on one busy CPU core the bridge's hooked
    forward cost 24-41 % more per training step than a plain twin at batch 128
    (benchmarks/bench_training.py). Analysis keeps using the bridge and its hooks.

    It refuses (InvalidInput naming the fields) a bridge whose config asks for anything else
    (soft caps, RMS or no normalisation, rotary positions, gated MLPs, grouped heads, ...): see
    `_plain_forward_refusals`. Build it after moving the model to its device (it holds the
    bridge's tensors, and `.to()` replaces buffers). Tests compare it with the bridge on perturbed
    parameters and several shapes; `models.architectures.check_training_forward` compares the two on
    the first batch of every run.
    """

    def __init__(self, bridge: TransformerBridge) -> None:
        cfg = bridge.cfg
        refused = _plain_forward_refusals(cfg)
        if refused:
            raise InvalidInput(
                f"PlainForward does not implement {', '.join(refused)}; "
                "train this model through the TransformerBridge itself"
            )
        self.params = bridge.state_dict(keep_vars=True)  # the live Parameter objects, TL names
        self.n_layers, self.n_heads, self.d_head = cfg.n_layers, cfg.n_heads, cfg.d_head
        self.d_model, self.eps = cfg.d_model, cfg.eps
        self.scale = (
            cfg.attn_scale if cfg.use_attn_scale and cfg.attn_scale > 0 else cfg.d_head**0.5
        )
        self.act = nonlinearity(str(cfg.act_fn).lower())

    def _ln(self, x: torch.Tensor, name: str) -> torch.Tensor:
        p = self.params
        return F.layer_norm(x, (self.d_model,), p[f"{name}.weight"], p[f"{name}.bias"], self.eps)

    def embed(self, tokens: torch.Tensor, positions: int | slice) -> torch.Tensor:
        """Token plus positional embedding: tokens (...,) at `positions` -> (..., d_model)."""
        p = self.params
        return F.embedding(tokens, p["embed.weight"]) + p["pos_embed.weight"][positions]

    def block(self, x: torch.Tensor, layer: int, attend: Attend) -> torch.Tensor:
        """THE transformer block (pre-LN), for training and for the prefix tree alike:
        x + attention(ln1 x), then + MLP(ln2 ·). x (..., d_model); `attend(layer, q, k, v)` mixes
        the heads' queries, keys and values (..., n_heads, d_head) into (..., n_heads * d_head):
        causal softmax over the sequence here, over cached ancestors in models.prefix_forward."""
        p, b = self.params, f"blocks.{layer}."
        h = self._ln(x, b + "ln1")
        q, k, v = (
            F.linear(h, p[f"{b}attn.{w}.weight"], p[f"{b}attn.{w}.bias"]).unflatten(
                -1, (self.n_heads, self.d_head)
            )
            for w in "qkv"
        )
        x = x + F.linear(attend(layer, q, k, v), p[b + "attn.o.weight"], p[b + "attn.o.bias"])
        h = F.linear(self._ln(x, b + "ln2"), p[b + "mlp.in.weight"], p[b + "mlp.in.bias"])
        return x + F.linear(self.act(h), p[b + "mlp.out.weight"], p[b + "mlp.out.bias"])

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """Final LayerNorm and unembedding: (..., d_model) -> logits (..., V)."""
        p = self.params
        return F.linear(self._ln(x, "ln_final"), p["unembed.weight"], p.get("unembed.bias"))

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (n, L) int64 -> logits (n, L, V)."""
        n, length = tokens.shape
        mask = torch.ones(length, length, dtype=torch.bool, device=tokens.device).triu(1)

        def causal(layer: int, q, k, v) -> torch.Tensor:  # (n, L, heads, d_head) each
            q, k, v = (a.transpose(1, 2) for a in (q, k, v))
            scores = ((q @ k.transpose(-2, -1)) / self.scale).masked_fill(mask, float("-inf"))
            return (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, length, -1)

        x = self.embed(tokens, slice(0, length))
        for layer in range(self.n_layers):
            x = self.block(x, layer, causal)
        return self.unembed(x)
