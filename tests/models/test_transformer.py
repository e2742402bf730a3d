"""The transformer config, its initial scale, and the plain training forward against the bridge."""

from __future__ import annotations

import pytest
import torch

from hmm.errors import InvalidInput
from models.transformer import TransformerConfig, build_transformer


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_init_scale_multiplies_every_weight_matrix_and_nothing_else(tiny_transformer):
    base = _weights(build_transformer(tiny_transformer))
    tiny_transformer.init_scale = 0.25
    model = build_transformer(tiny_transformer)
    scaled = _weights(model)
    assert scaled.keys() == base.keys()
    n_matrices = 0
    for name, value in base.items():
        if value.ndim >= 2:  # embeddings, q/k/v/o, mlp in/out, unembed
            n_matrices += 1
            assert torch.equal(scaled[name], value * 0.25), name
        else:  # LayerNorm gains and biases, attention biases, the unembed bias buffer
            assert torch.equal(scaled[name], value), name
    assert n_matrices == 2 + 6 * tiny_transformer.n_layers + 1
    # the bridge still runs with hooks on the scaled parameters
    tokens = torch.tensor([[0, 1, 2, 1]])
    logits, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(logits, model(tokens))
    embed = scaled["embed.weight"][tokens] + scaled["pos_embed.weight"][:4]
    torch.testing.assert_close(cache["blocks.0.hook_resid_pre"], embed)


@pytest.mark.parametrize("bad", [-1, 0, 0.0, float("nan"), float("inf"), True, "0.1"])
def test_init_scale_refuses_what_is_not_a_positive_number(bad):
    with pytest.raises(InvalidInput, match="--init-scale must be"):
        TransformerConfig(init_scale=bad)


def test_init_scale_message_names_the_value():
    with pytest.raises(InvalidInput, match=r"^--init-scale must be > 0, got -1$"):
        TransformerConfig(init_scale=-1)
