"""Jacobians against independent computations: direct autograd, closed forms, known scalings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmm.errors import InvalidInput
from models.rnn import RNNConfig, build_rnn
from models.transformer import TransformerConfig, build_transformer
from probes.jacobian import (
    chain_blocks,
    first_spectral_radius_above_1,
    jacobian_diagnostics,
    recurrent_jacobians,
    residual_block_jacobians,
    spectral_norm,
    spectral_radius,
)

N_CTX = 5


@pytest.fixture(scope="module")
def transformer():
    model = build_transformer(
        TransformerConfig(n_layers=2, d_model=8, d_head=4, d_mlp=16, n_ctx=N_CTX, seed=3)
    )
    return model.eval()


@pytest.fixture(scope="module")
def tokens():
    return torch.tensor([[0, 1, 2, 1, 0], [2, 2, 0, 1, 1], [1, 0, 0, 2, 1]])


def _direct_jacobian(model, tokens, t, layer_in, layer_out, update=False):
    """d resid_post_{layer_out}[t] / d resid_pre_{layer_in}[t] for one sequence, by replacing the
    hooked activation at position t with an input and taking torch.autograd.functional.jacobian."""
    _, cache = model.run_with_cache(tokens)
    x0 = cache[f"blocks.{layer_in}.hook_resid_pre"][0, t].detach()

    def f(x):
        out = []

        def put(resid, hook):
            return torch.cat([resid[:, :t], x[None, None], resid[:, t + 1 :]], dim=1)

        def read(resid, hook):
            out.append(resid[0, t])
            return resid

        hooks = [(f"blocks.{layer_in}.hook_resid_pre", put)]
        hooks.append((f"blocks.{layer_out}.hook_resid_post", read))
        with model.hooks(fwd_hooks=hooks):
            model(tokens)
        return out[0] - x if update else out[0]

    return torch.autograd.functional.jacobian(f, x0)


def test_full_map_radius_matches_autograd_and_numpy(transformer, tokens):
    blocks = residual_block_jacobians(transformer, tokens)
    assert blocks.shape == (2, 3, N_CTX, 8, 8)
    full = chain_blocks(blocks)
    for i, t in [(0, 0), (1, 3), (2, 4)]:
        direct = _direct_jacobian(transformer, tokens[i : i + 1], t, 0, 1)
        torch.testing.assert_close(full[i, t], direct, atol=1e-5, rtol=1e-4)
        expected = np.abs(np.linalg.eigvals(direct.double().numpy())).max()
        assert spectral_radius(full[i, t]).item() == pytest.approx(expected, rel=1e-4)
        expected_norm = np.linalg.svd(direct.double().numpy(), compute_uv=False).max()
        assert spectral_norm(full[i, t]).item() == pytest.approx(expected_norm, rel=1e-4)


def test_block_update_jacobian_matches_autograd(transformer, tokens):
    blocks = residual_block_jacobians(transformer, tokens)
    direct = _direct_jacobian(transformer, tokens[1:2], 2, 1, 1, update=True)
    torch.testing.assert_close(blocks[1, 1, 2] - torch.eye(8), direct, atol=1e-5, rtol=1e-4)
    summary = jacobian_diagnostics(transformer, tokens)
    radii = spectral_radius(blocks[1] - torch.eye(8))
    assert summary["blocks"][1]["spectral_radius_mean"] == pytest.approx(float(radii.mean()))
    assert summary["blocks"][1]["spectral_radius_max"] == pytest.approx(float(radii.max()))
    assert summary["kind"] == "residual"


def test_rnn_recurrent_jacobian_is_diag_fprime_times_w_rec(tokens):
    model = build_rnn(RNNConfig(hidden=6, n_layers=2, act_fn="sigmoid", n_ctx=N_CTX, seed=1)).eval()
    per_layer, joint = recurrent_jacobians(model, tokens)
    _, cache = model.run_with_cache(tokens)
    for layer in range(2):
        s = torch.sigmoid(cache[f"blocks.{layer}.hook_pre"])
        w_rec = model.blocks[layer].W_rec.weight
        closed = (s * (1 - s))[..., :, None] * w_rec
        torch.testing.assert_close(per_layer[layer], closed.detach(), atol=1e-6, rtol=1e-5)
    # the stacked-state map is block lower-triangular: its radius is the largest layer radius
    layer_radius = spectral_radius(per_layer).amax(dim=0)
    torch.testing.assert_close(spectral_radius(joint), layer_radius, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(joint[..., :6, 6:], torch.zeros_like(joint[..., :6, 6:]))


def test_rnn_radius_scales_with_recurrent_weights(tokens):
    """ReLU units kept active by a large bias: dh_t/dh_{t-1} = W_rec exactly, so scaling W_rec by c
    scales the recurrent spectral radius by c."""
    model = build_rnn(RNNConfig(hidden=5, act_fn="relu", n_ctx=N_CTX, seed=2)).eval()
    state = model.state_dict()
    state["blocks.0.W_in.bias"] = torch.full((5,), 10.0)
    w_rec = torch.randn(5, 5, generator=torch.Generator().manual_seed(0)) * 0.05
    radii = []
    for factor in (1.0, 3.0):
        state["blocks.0.W_rec.weight"] = factor * w_rec
        model.load_state_dict(state)
        radii.append(jacobian_diagnostics(model, tokens)["spectral_radius_mean"])
    expected = np.abs(np.linalg.eigvals(w_rec.double().numpy())).max()
    assert radii[0] == pytest.approx(expected, rel=1e-5)
    assert radii[1] == pytest.approx(3.0 * radii[0], rel=1e-5)


def test_seed_rule_picks_first_checkpoint_above_one():
    entries = [
        {"tokens": t, "jacobian": {"spectral_radius_mean": r}}
        for t, r in [(0, 0.5), (10, 0.99), (20, 1.2), (40, 0.8), (80, 1.5)]
    ]
    assert first_spectral_radius_above_1(entries) == 20
    assert first_spectral_radius_above_1(entries[:2]) is None


def test_model_without_known_hooks_is_invalid_input(tokens):
    from transformer_lens import HookedRootModule

    class Bare(HookedRootModule):
        def __init__(self):
            super().__init__()
            self.setup()

    with pytest.raises(InvalidInput, match="hook_resid_pre"):
        jacobian_diagnostics(Bare(), tokens)
