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


# PlainForward against the bridge ------------------------------------------------------------

SHAPES = {
    "two layers, heads*d_head != d_model": dict(
        n_layers=2, d_model=8, n_heads=3, d_head=2, d_mlp=12
    ),
    "three layers, wide heads": dict(n_layers=3, d_model=6, n_heads=2, d_head=5, d_mlp=7),
    "paper": dict(n_layers=4, d_model=64, n_heads=1, d_head=8, d_mlp=256),
}


def _perturbed(config: TransformerConfig):
    """A bridge whose every weight, bias, LayerNorm gain and unembedding bias (a buffer) is random,
    so a missing bias, a swapped ln1/ln2 or a hard-coded block index changes the logits."""
    model = build_transformer(config)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if tensor.is_floating_point() and tensor.ndim >= 1:
                noise = torch.randn(tensor.shape, generator=gen, dtype=tensor.dtype)
                offset = 1.0 if name.endswith(("ln1.weight", "ln2.weight", "final.weight")) else 0.0
                tensor.copy_(offset + 0.5 * noise)
    return model


@pytest.mark.parametrize("act_fn", ["relu", "gelu", "silu"])
@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_plain_forward_equals_the_bridge_on_perturbed_parameters(shape, act_fn):
    from models.transformer import PlainForward

    config = TransformerConfig(**SHAPES[shape], n_ctx=10, act_fn=act_fn)
    model = _perturbed(config)
    assert float(model.state_dict()["unembed.bias"].abs().sum()) > 0  # the buffer was perturbed
    tokens = torch.randint(0, 3, (6, 10), generator=torch.Generator().manual_seed(1))
    plain = PlainForward(model)
    logits, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(plain(tokens), logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(plain(tokens), model(tokens), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(plain(tokens[:, :7]), model(tokens[:, :7]), atol=1e-5, rtol=1e-5)
    # ln_final.hook_normalized is the normalised stream before the final gain and bias
    p = model.state_dict()
    final = cache["ln_final.hook_normalized"] * p["ln_final.weight"] + p["ln_final.bias"]
    unembedded = final @ p["unembed.weight"].T + p["unembed.bias"]
    torch.testing.assert_close(unembedded, logits, atol=1e-5, rtol=1e-5)


def test_plain_forward_gradients_equal_the_bridge_gradients():
    from models.transformer import PlainForward

    model = _perturbed(TransformerConfig(**SHAPES["two layers, heads*d_head != d_model"], n_ctx=5))
    tokens = torch.randint(0, 3, (4, 5), generator=torch.Generator().manual_seed(2))
    model(tokens).logsumexp(-1).sum().backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    PlainForward(model)(tokens).logsumexp(-1).sum().backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, reference[name], atol=1e-5, rtol=1e-4)


REFUSED = {
    "attn_scores_soft_cap": 30.0,
    "output_logits_soft_cap": 5.0,
    "normalization_type": "RMS",
    "positional_embedding_type": "rotary",
    "gated_mlp": True,
    "attn_only": True,
    "final_rms": True,
    "attention_dir": "bidirectional",
    "act_fn": "solu_ln",
    "n_key_value_heads": 1,
    "parallel_attn_mlp": True,
}


@pytest.mark.parametrize("field", REFUSED)
def test_plain_forward_refuses_what_it_does_not_compute(field):
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    from models.architectures import training_forward
    from models.transformer import PlainForward

    settings = dict(d_model=8, d_head=4, n_heads=2, n_layers=1, n_ctx=4, d_vocab=3, d_mlp=16)
    cfg = TransformerBridgeConfig(**settings, seed=0, **{field: REFUSED[field]})
    bridge = TransformerBridge.boot_native(cfg)
    with pytest.raises(InvalidInput, match=rf"PlainForward does not implement {field}="):
        PlainForward(bridge)
    assert training_forward(bridge) is bridge  # such a model trains through its own forward


def test_plain_forward_takes_the_settings_it_computes():
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    from models.transformer import PlainForward

    settings = dict(d_model=8, d_head=4, n_heads=2, n_layers=2, n_ctx=4, d_vocab=3, d_mlp=16)
    tokens = torch.tensor([[0, 1, 2, 1], [2, 2, 0, 1]])
    for extra in ({"act_fn": "gelu_new"}, {"attn_scale": 3.0}, {"eps": 1e-3}):
        bridge = TransformerBridge.boot_native(TransformerBridgeConfig(**settings, seed=0, **extra))
        torch.testing.assert_close(PlainForward(bridge)(tokens), bridge(tokens))


def test_check_training_forward_passes_the_plain_forward_and_stops_a_drifted_one():
    from models.architectures import check_training_forward
    from models.transformer import PlainForward

    model = _perturbed(TransformerConfig(**SHAPES["two layers, heads*d_head != d_model"], n_ctx=5))
    tokens = torch.randint(0, 3, (4, 5), generator=torch.Generator().manual_seed(3))
    check_training_forward(model, tokens)
    drifted = PlainForward(model)
    # swap ln1 and ln2 of block 1: the bug a test at initialisation (every gain 1) cannot see
    p = drifted.params = dict(drifted.params)
    p["blocks.1.ln1.weight"], p["blocks.1.ln2.weight"] = (
        p["blocks.1.ln2.weight"],
        p["blocks.1.ln1.weight"],
    )
    with pytest.raises(RuntimeError, match="differs from the model on the first batch"):
        check_training_forward(model, tokens, forward=drifted)


def test_check_training_forward_of_an_rnn_is_free():
    from models.architectures import build_model, check_training_forward
    from models.rnn import RNNConfig

    model = build_model(RNNConfig(hidden=4))
    check_training_forward(model, torch.tensor([[0, 1, 2]]))
