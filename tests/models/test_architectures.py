import pytest
import torch

from hmm.errors import InvalidInput
from models import TransformerConfig, build_model, residual_hooks, unit_hooks
from models.architectures import make_model_config


def test_transformer_hooks_are_in_the_cache(tiny_transformer):
    model = build_model(tiny_transformer)
    tokens = torch.randint(0, 3, (2, 4), generator=torch.Generator().manual_seed(0))
    logits, cache = model.run_with_cache(tokens)
    assert logits.shape == (2, 4, 3)
    hooks = residual_hooks(model)
    assert hooks == [
        "blocks.0.hook_resid_pre",
        "blocks.0.hook_resid_post",
        "ln_final.hook_normalized",
    ]
    for name in hooks:
        assert cache[name].shape == (2, 4, 8)
    units = unit_hooks(model)
    assert units == {"blocks.0.mlp": ("blocks.0.mlp.hook_pre", "relu")}
    assert cache["blocks.0.mlp.hook_pre"].shape == (2, 4, 16)


def test_transformer_is_seeded(tiny_transformer):
    tokens = torch.tensor([[0, 1, 2, 1]])
    a, b = build_model(tiny_transformer), build_model(tiny_transformer)
    tiny_transformer.seed = 1
    c = build_model(tiny_transformer)
    assert torch.equal(a(tokens), b(tokens))
    assert not torch.equal(a(tokens), c(tokens))


def test_transformer_refuses_tanh_and_points_to_rnn():
    with pytest.raises(InvalidInput, match="--arch rnn"):
        TransformerConfig(act_fn="tanh")


def test_make_model_config_checks_arch_and_fields():
    assert make_model_config("rnn", hidden=3).hidden == 3
    with pytest.raises(InvalidInput, match="unknown arch"):
        make_model_config("lstm")
    with pytest.raises(InvalidInput, match="no field"):
        make_model_config("transformer", hidden=3)


def test_hook_lists_refuse_foreign_models():
    with pytest.raises(InvalidInput):
        residual_hooks(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("act_fn", ["relu", "gelu", "silu"])
def test_training_forward_is_the_bridge_function_on_its_parameters(tiny_transformer, act_fn):
    from models.architectures import training_forward
    from models.transformer import PlainForward

    tiny_transformer.act_fn = act_fn
    model = build_model(tiny_transformer)
    forward = training_forward(model)
    assert isinstance(forward, PlainForward)
    tokens = torch.randint(0, 3, (16, 4), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(forward(tokens), model(tokens), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(forward(tokens[:, :3]), model(tokens[:, :3]), atol=1e-5, rtol=1e-5)
    # gradients land on the bridge's own parameters, so optimising through it trains the bridge
    forward(tokens).logsumexp(-1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_training_forward_of_rnn_is_the_rnn():
    from models import RNNConfig
    from models.architectures import training_forward

    model = build_model(RNNConfig(hidden=4))
    assert training_forward(model) is model
