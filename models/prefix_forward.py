"""Residual activations of every prefix in a prefix tree, one token step per prefix (a KV cache).

A causal transformer's activation at position t depends only on the prefix x_0..x_t. When the
inputs are every sequence of a length (or any set of prefixes closed under taking prefixes), the
tree is computed level by level: each prefix runs only its last token through the blocks and
attends to the keys and values its ancestors cached. Mess3's 3^10 inputs then cost 88,572 token
steps instead of 590,490 for a batched forward over whole sequences. Same function as the
TransformerBridge (PlainForward.block, the one transformer block, with cached attention); tests
compare every hook and the logits with `run_with_cache`. Models or hooks it does not cover
return None: use run_with_cache.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from transformer_lens.model_bridge import TransformerBridge

from hmm.errors import InvalidInput
from models.transformer import PlainForward

LEVEL_CHUNK = 16_384  # prefixes per step: bounds the MLP's intermediate memory


def covered_hooks(model) -> set[str] | None:
    """Hook names `prefix_activations` can give for `model`, or None if it cannot run it."""
    if not isinstance(model, TransformerBridge):
        return None
    try:
        plain = PlainForward(model)
    except InvalidInput:
        return None
    n = plain.n_layers
    return (
        {f"blocks.{layer}.hook_resid_pre" for layer in range(n)}
        | {f"blocks.{layer}.hook_resid_post" for layer in range(n)}
        | {"ln_final.hook_normalized"}
    )


def prefix_activations(
    model, last_token: np.ndarray, position: np.ndarray, ancestors: np.ndarray, hooks: list[str]
) -> tuple[dict[str, torch.Tensor], torch.Tensor] | None:
    """Activations {hook: (R, d_model)} and logits (R, V) of R prefixes, or None if not covered.

    last_token (R,) the prefix's last token; position (R,) its last position t; ancestors (R, >=t)
    int, ancestors[r, j] = the row of r's prefix of length j + 1 for j < t (rows of every earlier
    level must be present). No gradients; float32 like the model.
    """
    covered = covered_hooks(model)
    if covered is None or not set(hooks) <= covered:
        return None
    plain = PlainForward(model)
    n_rows = len(last_token)
    out = {h: torch.empty((n_rows, plain.d_model)) for h in hooks}
    logits = None
    caches = [
        (torch.empty((n_rows, plain.n_heads, plain.d_head)),
         torch.empty((n_rows, plain.n_heads, plain.d_head)))
        for _ in range(plain.n_layers)
    ]
    tokens, anc = torch.from_numpy(last_token), torch.from_numpy(ancestors)
    with torch.no_grad():
        for t in range(int(position.max()) + 1 if n_rows else 0):
            level = np.flatnonzero(position == t)
            for start in range(0, len(level), LEVEL_CHUNK):
                rows = torch.from_numpy(level[start : start + LEVEL_CHUNK])
                acts, step_logits = _step(plain, tokens[rows], t, anc[rows, :t], caches, rows)
                for h in hooks:
                    out[h][rows] = acts[h]
                if logits is None:
                    logits = torch.empty((n_rows, step_logits.shape[-1]))
                logits[rows] = step_logits
    return out, logits


def _step(plain: PlainForward, tokens, t: int, earlier, caches, rows):
    """One level of the tree: the new tokens (n,) at position t, ancestors `earlier` (n, t)."""
    path = torch.cat([earlier, rows[:, None]], dim=1)  # the rows of every prefix, itself last

    def cached(layer: int, q, k, v) -> torch.Tensor:  # (n, heads, d_head) each
        k_cache, v_cache = caches[layer]
        k_cache[rows], v_cache[rows] = k, v
        keys, values = k_cache[path], v_cache[path]  # (n, t + 1, heads, d_head)
        pattern = (torch.einsum("nhd,nthd->nht", q, keys) / plain.scale).softmax(-1)
        return torch.einsum("nht,nthd->nhd", pattern, values).reshape(len(q), -1)

    x, acts = plain.embed(tokens, t), {}
    for layer in range(plain.n_layers):
        acts[f"blocks.{layer}.hook_resid_pre"] = x
        x = plain.block(x, layer, cached)
        acts[f"blocks.{layer}.hook_resid_post"] = x
    # the bridge's hook holds the stream normalised *before* the final LayerNorm's gain and bias
    acts["ln_final.hook_normalized"] = F.layer_norm(x, (plain.d_model,), eps=plain.eps)
    return acts, plain.unembed(x)
