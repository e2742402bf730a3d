"""The transformer under study: a TransformerLens 4.x native model built from a plain config.

Defaults are the paper's Mess3 model (Shai et al. 2024): 4 layers, d_model 64, 1 head of width 8,
d_mlp 256, context 10, ReLU, LayerNorm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import transformer_lens.model_bridge.sources  # noqa: F401  (attaches TransformerBridge.boot_native)
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from hmm.errors import InvalidInput

TRANSFORMER_ACTIVATIONS = ("relu", "gelu", "silu")


@dataclass
class TransformerConfig:
    """Shape of the transformer; `d_vocab` is the process's number of symbols."""

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

    def __post_init__(self) -> None:
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
    """Boot the TransformerLens native model offline (no hub), seeded by `config.seed`."""
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
    return TransformerBridge.boot_native(tl_config)


def transformer_residual_hooks(n_layers: int) -> list[str]:
    """Residual-stream hooks probed for beliefs, in depth order (DESIGN.md section 4)."""
    return (
        ["blocks.0.hook_resid_pre"]
        + [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]
        + ["ln_final.hook_normalized"]
    )
