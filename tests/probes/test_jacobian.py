"""Jacobians against independent computations: direct autograd, closed forms, known scalings,
a linear RNN's Lyapunov exponents (long-run and over the window), random-matrix theory. The
on-manifold comparison with the filter is tested in test_secant.py."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from hmm import load_process
from hmm.errors import InvalidInput
from models.rnn import RNNConfig, build_rnn
from models.transformer import TransformerConfig, build_transformer
from probes.jacobian import (
    chain_blocks,
    circular_law_radius,
    cross_position_jacobians,
    first_spectral_radius_above_1,
    jacobian_diagnostics,
    recurrent_jacobians,
    recurrent_lyapunov,
    residual_block_jacobians,
    spectral_norm,
    spectral_radius,
    update_scales,
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


def _direct_jacobian(model, tokens, t, layer_in, layer_out, update=False, t_in=None):
    """d resid_post_{layer_out}[t] / d resid_pre_{layer_in}[t_in] for one sequence, by replacing
    the hooked activation at t_in (default t) and taking torch.autograd.functional.jacobian."""
    t_in = t if t_in is None else t_in
    _, cache = model.run_with_cache(tokens)
    x0 = cache[f"blocks.{layer_in}.hook_resid_pre"][0, t_in].detach()

    def f(x):
        out = []

        def put(resid, hook):
            return torch.cat([resid[:, :t_in], x[None, None], resid[:, t_in + 1 :]], dim=1)

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


def test_block_update_and_its_normalised_form_match_autograd(transformer, tokens):
    blocks = residual_block_jacobians(transformer, tokens)
    direct = _direct_jacobian(transformer, tokens[1:2], 2, 1, 1, update=True)
    torch.testing.assert_close(blocks[1, 1, 2] - torch.eye(8), direct, atol=1e-5, rtol=1e-4)
    _, cache = transformer.run_with_cache(tokens[1:2])
    x = cache["blocks.1.hook_resid_pre"][0, 2]
    u = cache["blocks.1.hook_resid_post"][0, 2] - x
    scales = update_scales(transformer, tokens)
    assert float(scales[1, 1, 2]) == pytest.approx(float(x.norm() / u.norm()), rel=1e-5)
    summary = jacobian_diagnostics(transformer, tokens)
    radii = spectral_radius(blocks[1] - torch.eye(8))
    gains = spectral_norm(scales[1, ..., None, None] * (blocks[1] - torch.eye(8)))
    assert summary["blocks"][1]["spectral_radius_mean"] == pytest.approx(float(radii.mean()))
    assert summary["blocks"][1]["normalised_spectral_norm_mean"] == pytest.approx(
        float(gains.mean()), rel=1e-6
    )
    assert summary["kind"] == "residual"


def test_normalised_update_ignores_the_residual_stream_scale(transformer, tokens):
    """With block 0's attention output zeroed, block 0 is x + mlp(LN(x)): scaling resid_pre_0 by 7
    divides its raw update Jacobian by 7 and leaves the normalised one unchanged. (With attention
    the MLP reads x + attn(LN x), which does not scale with x, so the invariance is approximate.)"""
    model = copy.deepcopy(transformer)
    state = model.state_dict()
    state["blocks.0.attn.o.weight"].zero_()
    state["blocks.0.attn.o.bias"].zero_()
    model.load_state_dict(state)
    plain = residual_block_jacobians(model, tokens)
    plain_summary = jacobian_diagnostics(model, tokens)["blocks"][0]

    def scale(resid, hook):
        return 7.0 * resid

    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", scale)]):
        scaled = residual_block_jacobians(model, tokens)
        scaled_summary = jacobian_diagnostics(model, tokens)["blocks"][0]
    identity = torch.eye(8)
    torch.testing.assert_close(
        scaled[0] - identity, (plain[0] - identity) / 7, atol=1e-5, rtol=1e-3
    )
    for key in ("spectral_radius_mean", "spectral_norm_mean"):  # raw: divided by 7
        assert scaled_summary[key] == pytest.approx(plain_summary[key] / 7, rel=1e-3)
        normalised = "normalised_" + key  # what phases.json reports: unchanged
        assert scaled_summary[normalised] == pytest.approx(plain_summary[normalised], rel=1e-3)


def test_cross_position_jacobian_matches_autograd(transformer, tokens):
    cross = cross_position_jacobians(transformer, tokens)
    assert cross.shape == (3, N_CTX - 1, 8, 8)
    for i, t in [(0, 1), (2, 4)]:
        direct = _direct_jacobian(transformer, tokens[i : i + 1], t, 0, 1, t_in=t - 1)
        torch.testing.assert_close(cross[i, t - 1], direct, atol=1e-5, rtol=1e-4)


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


def _linear_rnn(gain: float, hidden: int = 5):
    """ReLU RNN kept in its linear piece (positive bias, positive W_rec): dh_t/dh_{t-1} = W_rec
    = gain * a symmetric doubly stochastic matrix, whose spectral radius is `gain`."""
    model = build_rnn(RNNConfig(hidden=hidden, act_fn="relu", n_ctx=N_CTX, seed=2)).eval()
    state = model.state_dict()
    rng = np.random.default_rng(0)
    a = rng.random((hidden, hidden))
    sym = a + a.T
    for _ in range(200):  # Sinkhorn on a symmetric matrix -> symmetric doubly stochastic
        sym = sym / sym.sum(1, keepdims=True)
        sym = (sym + sym.T) / 2
    state["blocks.0.W_in.bias"] = torch.full((hidden,), 10.0)
    state["blocks.0.W_in.weight"] = torch.rand(
        hidden, hidden, generator=torch.Generator().manual_seed(0)
    )
    state["embed.weight"] = torch.rand(3, hidden, generator=torch.Generator().manual_seed(1))
    state["blocks.0.W_rec.weight"] = torch.tensor(gain * sym, dtype=torch.float32)
    model.load_state_dict(state)
    return model, gain * sym


@pytest.mark.parametrize("gain", [0.7, 1.3])
def test_lyapunov_of_a_linear_rnn_is_log_of_its_spectral_radius(gain):
    model, w_rec = _linear_rnn(gain)
    assert np.abs(np.linalg.eigvals(w_rec)).max() == pytest.approx(gain, rel=1e-9)
    long = torch.from_numpy(load_process("mess3").sample(2, 60, seed=0)[0])
    assert recurrent_lyapunov(model, long, burn_in=20) == pytest.approx(np.log(gain), abs=1e-5)
    found = jacobian_diagnostics(model, long[:, :N_CTX])
    assert found["spectral_radius_mean"] == pytest.approx(gain, rel=1e-5)
    assert found["spectral_radius_quantiles"]["q10"] == pytest.approx(gain, rel=1e-5)
    assert found["spectral_radius_quantiles"]["q90"] == pytest.approx(gain, rel=1e-5)
    # over the window the product is W_rec^L, symmetric: its top singular value is gain^L
    assert found["lyapunov_window"] == pytest.approx(np.log(gain), abs=1e-5)


def test_circular_law_radius_of_a_large_random_matrix():
    """sigma sqrt(N) (Girko); at N = 500 the largest |eigenvalue| of a Gaussian matrix exceeds it
    by about sqrt(log(N / 2 pi) / 4N) = 4.7 % (Rider 2003), within the issue's 5 %."""
    generator = torch.Generator().manual_seed(0)
    matrix = torch.randn(500, 500, generator=generator, dtype=torch.float64) * 0.05
    expected = 0.05 * np.sqrt(500)
    assert circular_law_radius(matrix) == pytest.approx(expected, rel=0.01)
    largest = np.abs(np.linalg.eigvals(matrix.numpy())).max()
    assert largest == pytest.approx(circular_law_radius(matrix), rel=0.05)


def test_seed_rule_applies_to_recurrent_maps_only():
    entries = [
        {"tokens": t, "jacobian": {"kind": "recurrent", "spectral_radius_mean": r}}
        for t, r in [(0, 0.5), (10, 0.99), (20, 1.2), (40, 0.8), (80, 1.5)]
    ]
    assert first_spectral_radius_above_1(entries) == 20
    assert first_spectral_radius_above_1(entries[:2]) is None
    residual = [{"tokens": 0, "jacobian": {"kind": "residual", "spectral_radius_mean": 5.0}}]
    assert first_spectral_radius_above_1(residual) is None


def test_model_without_known_hooks_is_invalid_input(tokens):
    from transformer_lens import HookedRootModule

    class Bare(HookedRootModule):
        def __init__(self):
            super().__init__()
            self.setup()

    with pytest.raises(InvalidInput, match="hook_resid_pre"):
        jacobian_diagnostics(Bare(), tokens)


# ---- gated cells: the recurrent Jacobian of the full state (h, c) -----------------------------
def _gated(cell: str, n_layers: int = 2):
    from models.architectures import build_model, make_model_config

    config = make_model_config(cell, hidden=4, n_layers=n_layers, n_ctx=N_CTX, seed=1)
    return build_model(config).double().eval()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_joint_jacobian_is_autograd_of_one_step_of_torchs_stacked_module(cell, tokens):
    """d s_t / d s_{t-1} of the stacked full state against torch.autograd through one token of an
    independent 2-layer nn.LSTM / nn.GRU holding the same weights, started from its own states."""
    model, hidden = _gated(cell), 4
    reference = getattr(torch.nn, cell.upper())(hidden, hidden, num_layers=2, batch_first=True)
    reference = reference.double()
    with torch.no_grad():
        for b, block in enumerate(model.blocks):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(reference, f"{name}_l{b}").copy_(getattr(block.cell, f"{name}_l0"))
    per_layer, joint = recurrent_jacobians(model, tokens)
    width = 2 * hidden if cell == "lstm" else hidden
    assert joint.shape == (3, N_CTX, 2 * width, 2 * width)
    embedded = model.embed(tokens)

    def one_token(x, flat):  # flat: [layer 0 state, layer 1 state], each (h) or (h, c)
        s = flat.view(2, 1, width)
        hx = (s[..., :hidden].contiguous(), s[..., hidden:].contiguous()) if cell == "lstm" else s
        _, out = reference(x[None, None], hx)
        return (torch.cat(out, -1) if cell == "lstm" else out).reshape(-1)

    for i, t in [(0, 0), (1, 2), (2, 4)]:
        with torch.no_grad():
            _, before = reference(embedded[i : i + 1, :t]) if t else (None, None)
        if before is None:
            previous = torch.zeros(2 * width, dtype=torch.float64)
        else:
            previous = (torch.cat(before, -1) if cell == "lstm" else before).reshape(-1)
        x = embedded[i, t].detach()
        direct = torch.autograd.functional.jacobian(lambda s, x=x: one_token(x, s), previous)
        torch.testing.assert_close(joint[i, t], direct, rtol=0, atol=1e-12)
        for b in range(2):
            block = direct[b * width : (b + 1) * width, b * width : (b + 1) * width]
            torch.testing.assert_close(per_layer[b, i, t], block, rtol=0, atol=1e-12)
    # the stacked map is block lower-triangular: its radius is the largest layer radius
    torch.testing.assert_close(
        spectral_radius(joint), spectral_radius(per_layer).amax(dim=0), atol=1e-9, rtol=1e-9
    )


@pytest.mark.parametrize(("cell", "keep"), [("lstm", 0.9), ("gru", 0.8)])
def test_gated_cell_with_a_constant_keep_gate_has_that_radius_and_log_as_lyapunov(cell, keep):
    """No recurrent weights and a constant forget gate σ(f) = keep (LSTM) or update gate
    σ(z) = keep (GRU): the full state's map is [[0, D], [0, keep·I]] (LSTM; the hidden state
    alone would give 0) or keep·I (GRU), so radius = keep and the Lyapunov exponent = log keep."""
    model, hidden = _gated(cell, n_layers=1), 4
    gate = slice(hidden, 2 * hidden)  # torch's row blocks: LSTM (i, f, g, o), GRU (r, z, n)
    with torch.no_grad():
        cell_module = model.blocks[0].cell
        cell_module.weight_hh_l0.zero_()
        cell_module.weight_ih_l0[gate] = 0.0
        cell_module.bias_ih_l0[gate] = float(np.log(keep / (1 - keep)))
        cell_module.bias_hh_l0[gate] = 0.0
    long = torch.from_numpy(load_process("mess3").sample(2, 60, seed=0)[0])
    result = jacobian_diagnostics(model, long[:, :N_CTX], lyapunov_tokens=long)
    assert result["spectral_radius_mean"] == pytest.approx(keep, rel=1e-9)
    assert result["spectral_radius_max"] == pytest.approx(keep, rel=1e-9)
    # exact for the GRU; the LSTM's tangent vector also has an h part, D_t c, whose varying
    # ratio to the c part adds a boundary term O(1/T) to the renormalised estimate (T = 40 here)
    assert result["lyapunov"] == pytest.approx(np.log(keep), abs=1e-9 if cell == "gru" else 1e-3)
    assert result["blocks"][0]["w_rec_spectral_radius"] == 0.0
