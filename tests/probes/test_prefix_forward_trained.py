"""The prefix-tree forward gives run_with_cache's activations for a model whose every parameter
(LayerNorm gains and biases included) is off its initial value, as after training."""

from __future__ import annotations

import numpy as np
import torch

from hmm import load_process
from models.transformer import TransformerConfig, build_transformer, transformer_residual_hooks
from probes.activations import collect_activations, probe_inputs


def test_prefix_tree_activations_match_run_with_cache_off_initialisation():
    config = TransformerConfig(n_layers=2, d_model=12, n_heads=2, d_head=4, d_mlp=16, n_ctx=5)
    model = build_transformer(config)
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for tensor in model.state_dict(keep_vars=True).values():
            if tensor.is_floating_point() and tensor.ndim >= 1:
                tensor.add_(0.5 * torch.randn(tensor.shape, generator=gen, dtype=tensor.dtype))
    inputs = probe_inputs(load_process("mess3"), 5, seed=0, split="random")
    hooks = transformer_residual_hooks(2)
    assert "ln_final.hook_normalized" in hooks
    acts = collect_activations(model, inputs, hooks)
    tokens = torch.from_numpy(inputs.tokens[:40])
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    rows = inputs.row_of[:40]
    for name in hooks:
        np.testing.assert_allclose(acts.hooks[name][rows], cache[name].numpy(), atol=1e-4)
    np.testing.assert_allclose(acts.next_token[rows], torch.softmax(logits, -1).numpy(), atol=1e-5)
