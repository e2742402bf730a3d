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
        make_model_config("mamba")
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
    # gradients land on the bridge's own parameters and equal the bridge's own gradients
    model(tokens).logsumexp(-1).sum().backward()
    reference = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    forward(tokens).logsumexp(-1).sum().backward()
    for param, expected in zip(model.parameters(), reference, strict=True):
        torch.testing.assert_close(param.grad, expected, atol=1e-5, rtol=1e-4)


def test_training_forward_of_rnn_is_the_rnn():
    from models import RNNConfig
    from models.architectures import training_forward

    model = build_model(RNNConfig(hidden=4))
    assert training_forward(model) is model


def test_hook_label_names_every_probed_hook_for_a_reader():
    from models.architectures import hook_label

    assert hook_label("blocks.0.hook_resid_pre") == "block 0 (embed)"
    assert hook_label("blocks.3.hook_resid_post") == "block 3"
    assert hook_label("ln_final.hook_normalized") == "ln_final"
    assert hook_label("blocks.1.hook_hidden") == "block 1 hidden"
    assert hook_label("concat") == "concat"
    assert hook_label("blocks.12.hook_resid_post") == "block 12"


def test_final_layer_hook_is_the_last_block_output_of_either_family(tiny_transformer):
    from models import RNNConfig
    from models.architectures import final_layer_hook

    tiny_transformer.n_layers = 3
    transformer_hooks = residual_hooks(build_model(tiny_transformer))
    # ln_final comes after the last block in the probe list but is not a block output
    assert transformer_hooks[-1] == "ln_final.hook_normalized"
    assert final_layer_hook(transformer_hooks) == "blocks.2.hook_resid_post"
    rnn_hooks = residual_hooks(build_model(RNNConfig(hidden=3, n_layers=2)))
    assert final_layer_hook(rnn_hooks) == "blocks.1.hook_hidden"
    assert final_layer_hook(["blocks.0.hook_resid_pre", "concat"]) == "concat"


@pytest.mark.parametrize("act_fn", ["gelu", "silu"])
def test_unit_hooks_of_gelu_and_silu_transformers_name_the_mlp_input(tiny_transformer, act_fn):
    from models.nonlinearities import nonlinearity

    tiny_transformer.act_fn, tiny_transformer.n_layers = act_fn, 2
    model = build_model(tiny_transformer)
    units = unit_hooks(model)
    assert units == {
        "blocks.0.mlp": ("blocks.0.mlp.hook_pre", act_fn),
        "blocks.1.mlp": ("blocks.1.mlp.hook_pre", act_fn),
    }
    tokens = torch.randint(0, 3, (2, 4), generator=torch.Generator().manual_seed(5))
    _, cache = model.run_with_cache(tokens)
    state = model.state_dict()
    for layer in range(2):
        hook, act = units[f"blocks.{layer}.mlp"]
        # the hook holds the MLP's pre-activation: W_in of the normalised residual stream
        resid_mid = cache[f"blocks.{layer}.hook_resid_mid"]
        b = f"blocks.{layer}."
        normed = torch.nn.functional.layer_norm(
            resid_mid, (8,), state[b + "ln2.weight"], state[b + "ln2.bias"], 1e-5
        )
        pre = normed @ state[b + "mlp.in.weight"].T + state[b + "mlp.in.bias"]
        torch.testing.assert_close(cache[hook], pre, atol=1e-5, rtol=1e-5)
        # and applying the named unit function to it, then W_out, gives the MLP's output
        post = nonlinearity(act)(cache[hook]) @ state[b + "mlp.out.weight"].T
        torch.testing.assert_close(
            post + state[b + "mlp.out.bias"],
            cache[f"blocks.{layer}.hook_mlp_out"],
            atol=1e-5,
            rtol=1e-5,
        )


def test_every_family_has_a_config_class_with_its_sizes_and_default_unit():
    """And the family list is torch-free: the command line reads it at parse time."""
    import subprocess
    import sys

    from models.architectures import ARCHITECTURES
    from models.families import FAMILIES

    assert list(FAMILIES) == list(ARCHITECTURES) == ["transformer", "rnn", "lstm", "gru"]
    for name, family in FAMILIES.items():
        fields = ARCHITECTURES[name].__dataclass_fields__
        assert set(family.sizes) <= set(fields), name
        if family.activations:
            assert fields["act_fn"].default == family.default_activation, name
        else:  # an LSTM or GRU: no act_fn field, none to choose
            assert "act_fn" not in fields and family.default_activation is None, name
    code = "import sys; import models.families; print('torch' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"


@pytest.mark.parametrize("arch,sizes", [
    ("transformer", {"d_model": 8, "n_layers": 2, "d_mlp": 16}),
    ("rnn", {"hidden": 5, "n_layers": 2}), ("lstm", {"hidden": 5, "n_layers": 2}),
    ("gru", {"hidden": 5, "n_layers": 2}),
])  # fmt: skip
def test_residual_width_is_the_width_of_every_residual_hook_side_by_side(arch, sizes):
    """From the config alone (probe-hmm sizes the context with it before any model exists): the
    activations' widths summed over residual_hooks, an LSTM's cell state included."""
    from models.architectures import residual_width

    config = make_model_config(arch, d_vocab=3, n_ctx=4, **sizes)
    model = build_model(config)
    _, cache = model.run_with_cache(torch.zeros((1, 4), dtype=torch.long))
    assert residual_width(config) == sum(cache[h].shape[-1] for h in residual_hooks(model))
