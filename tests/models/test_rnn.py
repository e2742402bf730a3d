import pytest
import torch

from hmm.errors import InvalidInput
from models import RNNConfig, build_model, residual_hooks, unit_hooks


@pytest.mark.parametrize("act_fn", ["tanh", "sigmoid", "relu"])
def test_rnn_hooks_shapes_and_recurrence(act_fn):
    config = RNNConfig(hidden=6, n_layers=2, act_fn=act_fn, n_ctx=5)
    model = build_model(config)
    tokens = torch.randint(0, 3, (4, 5), generator=torch.Generator().manual_seed(0))
    logits, cache = model.run_with_cache(tokens)
    assert logits.shape == (4, 5, 3)
    assert torch.equal(logits, model(tokens))
    assert residual_hooks(model) == ["blocks.0.hook_hidden", "blocks.1.hook_hidden"]
    assert unit_hooks(model) == {
        "blocks.0": ("blocks.0.hook_pre", act_fn),
        "blocks.1": ("blocks.1.hook_pre", act_fn),
    }
    for layer in range(2):
        assert cache[f"blocks.{layer}.hook_pre"].shape == (4, 5, 6)
        assert cache[f"blocks.{layer}.hook_hidden"].shape == (4, 5, 6)
    # the cached hidden states obey the Elman recurrence step by step
    block, u = model.blocks[1], cache["blocks.0.hook_hidden"]
    h = torch.zeros(4, 6)
    f = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}[act_fn]
    for t in range(5):
        z = u[:, t] @ block.W_in.weight.T + block.W_in.bias + h @ block.W_rec.weight.T
        torch.testing.assert_close(z, cache["blocks.1.hook_pre"][:, t])
        h, state = block.step(h, u[:, t])
        assert state is h  # an Elman layer's recurrent state is its hidden state
        torch.testing.assert_close(h, f(z))
        torch.testing.assert_close(h, cache["blocks.1.hook_hidden"][:, t])
    # the logits read the last layer's hidden state and nothing else
    torch.testing.assert_close(model.unembed(cache["blocks.1.hook_hidden"]), logits)


def test_rnn_is_causal_and_seeded():
    model = build_model(RNNConfig(hidden=5))
    a = torch.tensor([[0, 1, 2, 0, 1]])
    b = torch.tensor([[0, 1, 2, 2, 2]])
    assert torch.equal(model(a)[:, :3], model(b)[:, :3])
    assert not torch.equal(model(a)[:, 3:], model(b)[:, 3:])
    again = build_model(RNNConfig(hidden=5))
    other = build_model(RNNConfig(hidden=5, seed=1))
    assert torch.equal(model(a), again(a))
    assert not torch.equal(model(a), other(a))


def test_rnn_seeding_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model(RNNConfig(hidden=4))
    assert torch.equal(torch.rand(3), expected)


def test_rnn_hook_pre_intervention_reaches_logits():
    model = build_model(RNNConfig(hidden=4, act_fn="relu"))
    tokens = torch.tensor([[0, 1, 2]])
    # ReLU of a negative pre-activation is 0, so the logits fall back to the unembedding bias
    negative = model.run_with_hooks(
        tokens, fwd_hooks=[("blocks.0.hook_pre", lambda z, hook: torch.full_like(z, -1.0))]
    )
    torch.testing.assert_close(negative, model.unembed.bias.expand(1, 3, 3))


@pytest.mark.parametrize("bad", ["gelu", "softplus", ""])
def test_rnn_refuses_unknown_activation(bad):
    with pytest.raises(InvalidInput, match="tanh, sigmoid, relu"):
        RNNConfig(act_fn=bad)


def test_rnn_refuses_bad_shape():
    with pytest.raises(InvalidInput, match="hidden"):
        RNNConfig(hidden=0)


def test_rnn_init_scale_multiplies_every_weight_matrix_and_nothing_else():
    base = build_model(RNNConfig(hidden=5, n_layers=2)).state_dict()
    model = build_model(RNNConfig(hidden=5, n_layers=2, init_scale=0.1))
    scaled = model.state_dict()
    matrices = {name for name, value in base.items() if value.ndim >= 2}
    assert matrices == {
        "embed.weight",
        "blocks.0.W_in.weight",
        "blocks.0.W_rec.weight",
        "blocks.1.W_in.weight",
        "blocks.1.W_rec.weight",
        "unembed.weight",
    }
    for name, value in base.items():
        expected = value * 0.1 if name in matrices else value
        assert torch.equal(scaled[name], expected), name
    tokens = torch.tensor([[0, 1, 2]])
    logits, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(logits, model.unembed(cache["blocks.1.hook_hidden"]))


def test_rnn_refuses_bad_init_scale():
    with pytest.raises(InvalidInput, match=r"^--init-scale must be > 0, got -1$"):
        RNNConfig(init_scale=-1)


@pytest.mark.parametrize("act_fn", ["tanh", "sigmoid", "relu"])
def test_recurrent_step_reproduces_the_hooks_and_its_jacobian_is_diag_fprime_w_rec(act_fn):
    from torch.func import jacrev, vmap

    from models.architectures import (
        layer_input_hook,
        recurrent_layers,
        recurrent_state_hooks,
        recurrent_step,
        recurrent_weight,
    )

    model = build_model(RNNConfig(hidden=5, n_layers=2, act_fn=act_fn, n_ctx=4))
    tokens = torch.randint(0, 3, (3, 4), generator=torch.Generator().manual_seed(4))
    _, cache = model.run_with_cache(tokens)
    assert recurrent_layers(model) == 2
    assert [layer_input_hook(model, b) for b in range(2)] == ["hook_embed", "blocks.0.hook_hidden"]
    assert recurrent_state_hooks(model, 1) == ["blocks.1.hook_hidden"]
    for layer in range(2):
        step, w_rec = recurrent_step(model, layer), recurrent_weight(model, layer)
        u, hidden = cache[layer_input_hook(model, layer)], cache[f"blocks.{layer}.hook_hidden"]
        h = torch.zeros(3, 5)
        for t in range(4):
            z = cache[f"blocks.{layer}.hook_pre"][:, t]
            h_next, state = step(h, u[:, t])
            assert state is h_next
            torch.testing.assert_close(h_next, hidden[:, t])
            # d h_t / d h_{t-1} = diag(f'(z_t)) W_rec, with f' from the formula, not autograd
            s = torch.sigmoid(z)
            fprime = {
                "tanh": 1 - torch.tanh(z) ** 2,
                "sigmoid": s * (1 - s),
                "relu": (z > 0).to(z.dtype),
            }[act_fn]
            jac = vmap(jacrev(lambda hp, ut, f=step: f(hp, ut)[1]))(h, u[:, t])
            torch.testing.assert_close(jac, fprime[:, :, None] * w_rec)
            h = h_next


def test_recurrent_interface_refuses_transformers_and_missing_layers(tiny_transformer):
    from models.architectures import recurrent_layers, recurrent_step

    transformer = build_model(tiny_transformer)
    assert recurrent_layers(transformer) == 0
    with pytest.raises(InvalidInput, match="no recurrence"):
        recurrent_step(transformer, 0)
    with pytest.raises(InvalidInput, match="layers 0..0, not 1"):
        recurrent_step(build_model(RNNConfig(hidden=3)), 1)
