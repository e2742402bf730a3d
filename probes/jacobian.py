"""Jacobians of a model's maps, exact (torch.func), and their spectral radius and norm.

Two kinds of map, chosen by the model's hook names (DESIGN.md section 5):

* residual (transformer, hooks `blocks.{l}.hook_resid_pre/post`): the same-position block map
  B_{l,t} = d resid_post_l[t] / d resid_pre_l[t] (d_model x d_model), the block *update*
  U_{l,t} = B_{l,t} - I = d (resid_post_l - resid_pre_l)[t] / d resid_pre_l[t], and the full
  map J_t = d resid_final[t] / d resid_pre_0[t]. Under causal attention a change of
  resid_pre_0[t] reaches only positions >= t, and position t reads only positions <= t, so
  J_t = B_{L-1,t} ... B_{0,t} exactly (tested against a direct autograd Jacobian).
* recurrent (Elman RNN, hooks `blocks.{l}.hook_hidden`): per layer R_{l,t} = d h^l_t / d h^l_{t-1}
  (= diag(f'(z_t)) W_rec, Elman 1990) and the full transition d s_t / d s_{t-1} of the stacked
  state s_t = (h^0_t, ..., h^{L-1}_t); it is block lower-triangular with diagonal blocks R_{l,t},
  so its spectral radius is the largest layer radius.

Why "spectral radius > 1" (the seed's "feedback starts to dominate") reads differently for the
two: a residual block computes x + u(x), so B = I + U and the full map carries the identity path
from initialisation; its radius at or above 1 mostly says the residual stream carries (and grows)
its input, and the block-update Jacobians U_l are the informative ones. For the RNN the recurrent
map is the dynamics itself: radius > 1 means a perturbation of the hidden state is amplified
along the sequence, radius < 1 that it fades.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.func import jacrev, vjp, vmap

from hmm.errors import InvalidInput

# Text for reports and phases.json: what the seed rule's "radius > 1" means for each kind of map.
SPECTRAL_RADIUS_MEANING = {
    "residual": (
        "Residual network: each block computes x + u(x), so its Jacobian is I + U and the full "
        "map resid_final <- resid_pre0 carries the identity path from initialisation; its "
        "spectral radius sits near or above 1 from the start, so the seed rule (first checkpoint "
        "with mean full-map radius > 1) marks the skip path and the growth of the residual "
        "stream's scale rather than the onset of feedback. The block-update Jacobians "
        "U_l = d(resid_post_l - resid_pre_l)/d resid_pre_l are the informative ones: "
        "radius(U_l) > 1 means block l's update amplifies a perturbation of its input at least "
        "as much as the skip path passes it on."
    ),
    "recurrent": (
        "Recurrent network: the recurrent Jacobian dh_t/dh_{t-1} is the dynamics itself; "
        "spectral radius > 1 means a perturbation of the hidden state is amplified from one "
        "token to the next (the seed's 'feedback starts to dominate'), < 1 that it fades along "
        "the sequence."
    ),
}


def spectral_radius(matrices: Tensor) -> Tensor:
    """Largest |eigenvalue| of each square matrix: (..., d, d) -> (...,)."""
    return torch.linalg.eigvals(matrices).abs().amax(dim=-1)


def spectral_norm(matrices: Tensor) -> Tensor:
    """Largest singular value of each matrix: (..., m, d) -> (...,)."""
    return torch.linalg.matrix_norm(matrices, ord=2)


def map_kind(model: torch.nn.Module) -> str:
    """'residual' with a blocks.0.hook_resid_pre hook, 'recurrent' with blocks.0.hook_hidden."""
    hooks = model.hook_dict
    if "blocks.0.hook_resid_pre" in hooks:
        return "residual"
    if "blocks.0.hook_hidden" in hooks:
        return "recurrent"
    raise InvalidInput(
        "the model has neither blocks.0.hook_resid_pre (transformer) nor blocks.0.hook_hidden "
        "(RNN); Jacobian diagnostics need one of them"
    )


def n_blocks(model: torch.nn.Module, kind: str) -> int:
    """Number of residual blocks / recurrent layers, counted from the hook names."""
    name = "blocks.{}.hook_resid_post" if kind == "residual" else "blocks.{}.hook_hidden"
    count = 0
    while name.format(count) in model.hook_dict:
        count += 1
    return count


def residual_block_jacobians(model: torch.nn.Module, tokens: Tensor) -> Tensor:
    """Same-position block Jacobians B_{l,t} = d resid_post_l[t] / d resid_pre_l[t].

    tokens (n, L) -> (n_layers, n, L, d_model, d_model), B[l, i, t] @ v = change of resid_post_l at
    position t of sequence i when resid_pre_l[t] moves by v (every other input held fixed).

    How: the batch is repeated once per position t (copy t of sequence i is row t*n + i); in copy
    t each `blocks.{l}.hook_resid_pre` is replaced by its detached value plus a variable v_l at
    position t, and each `blocks.{l}.hook_resid_post` is read at t. Causal attention keeps later
    positions out of position t, and the detach restarts the derivative at every block, so one
    forward, one `torch.func.vjp` and a pull-back vmapped over the d_model basis cotangents give
    every block's rows at every position at once. (Reverse mode: forward-mode `jvp` through the
    bridge gives the same numbers but spends most of its time in Python decompositions.)
    """
    kind = map_kind(model)
    if kind != "residual":
        raise InvalidInput(
            "residual_block_jacobians needs a transformer (blocks.{l}.hook_resid_pre)"
        )
    n_layers = n_blocks(model, kind)
    n, length = tokens.shape
    _, cache = model.run_with_cache(tokens[:1, :1], names_filter="blocks.0.hook_resid_pre")
    d_model = cache["blocks.0.hook_resid_pre"].shape[-1]
    dtype = cache["blocks.0.hook_resid_pre"].dtype
    basis = torch.eye(d_model, dtype=dtype)
    copies = tokens.repeat(length, 1)  # (length * n, length)
    position = torch.arange(length).repeat_interleave(n)  # the position each copy perturbs
    at_position = torch.nn.functional.one_hot(position, length).to(dtype)  # (length * n, length)
    rows_index = torch.arange(length * n)

    def block_outputs(v: Tensor) -> Tensor:
        """v (n_layers, length*n, d_model) -> resid_post_l at each copy's position, same shape."""
        outputs: list[Tensor] = []

        def restart(resid: Tensor, hook: object, block: int) -> Tensor:
            return resid.detach() + at_position[:, :, None] * v[block][:, None, :]

        def read(resid: Tensor, hook: object) -> Tensor:
            outputs.append(resid[rows_index, position])
            return resid

        fwd_hooks = [
            (f"blocks.{b}.hook_resid_pre", functools.partial(restart, block=b))
            for b in range(n_layers)
        ]
        fwd_hooks += [(f"blocks.{b}.hook_resid_post", read) for b in range(n_layers)]
        with model.hooks(fwd_hooks=fwd_hooks):
            model(copies)
        return torch.stack(outputs)

    _, pull_back = vjp(block_outputs, torch.zeros(n_layers, length * n, d_model, dtype=dtype))

    def row(direction: Tensor) -> Tensor:
        return pull_back(direction.expand(n_layers, length * n, d_model))[0]

    rows = vmap(row)(basis).detach()  # (d_out, n_layers, length * n, d_in)
    rows = rows.reshape(d_model, n_layers, length, n, d_model)
    return rows.permute(1, 3, 2, 0, 4)  # (n_layers, n, length, d_out, d_in)


def chain_blocks(blocks: Tensor) -> Tensor:
    """Full map J_t = B_{L-1,t} ... B_{0,t}: (n_layers, ..., d, d) -> (..., d, d)."""
    full = blocks[0]
    for block in blocks[1:]:
        full = block @ full
    return full


def recurrent_jacobians(model: torch.nn.Module, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """Recurrent Jacobians of an Elman RNN along the probe sequences.

    tokens (n, L) -> (per_layer, joint): per_layer (n_layers, n, L, H, H) with
    per_layer[l, i, t] = d h^l_t / d h^l_{t-1}; joint (n, L, n_layers*H, n_layers*H) =
    d s_t / d s_{t-1} for the stacked state s_t.

    The states and inputs come from the hooks `hook_embed` and `blocks.{l}.hook_hidden`; the hook
    points sit after the recurrence (models/rnn.py), so the per-step map is the layer's public
    `step(u_t, h_prev)`, differentiated with `torch.func.jacrev` and vmapped over sequences and
    positions. h_{-1} = 0, so position 0 is the derivative with respect to the initial state.
    """
    kind = map_kind(model)
    if kind != "recurrent":
        raise InvalidInput("recurrent_jacobians needs an RNN (blocks.{l}.hook_hidden)")
    n_layers = n_blocks(model, kind)
    names = ["hook_embed"] + [f"blocks.{b}.hook_hidden" for b in range(n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=names)
    hidden = [cache[f"blocks.{b}.hook_hidden"] for b in range(n_layers)]  # (n, L, H) each
    previous = [torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1) for h in hidden]
    steps = [model.blocks[b].step for b in range(n_layers)]

    def transition(u0_t: Tensor, state_prev: Tensor) -> Tensor:
        """(d_in,), (n_layers, H) -> (n_layers, H): one token through the whole stack."""
        u, out = u0_t, []
        for b in range(n_layers):
            u = steps[b](u, state_prev[b])[1]
            out.append(u)
        return torch.stack(out)

    state_prev = torch.stack(previous, dim=2)  # (n, L, n_layers, H)
    u0 = cache["hook_embed"]
    joint = vmap(vmap(jacrev(transition, argnums=1)))(u0, state_prev)  # (n, L, nl, H, nl, H)
    n, length, _, width = state_prev.shape
    per_layer = torch.stack([joint[:, :, b, :, b, :] for b in range(n_layers)])
    joint = joint.reshape(n, length, n_layers * width, n_layers * width)
    return per_layer.detach(), joint.detach()


def _summary(matrices: Tensor) -> dict[str, float]:
    """Mean and max spectral radius and norm over every leading index: (..., d, d) -> dict."""
    radius, norm = spectral_radius(matrices), spectral_norm(matrices)
    return {
        "spectral_radius_mean": float(radius.mean()),
        "spectral_radius_max": float(radius.max()),
        "spectral_norm_mean": float(norm.mean()),
        "spectral_norm_max": float(norm.max()),
    }


def jacobian_diagnostics(model: torch.nn.Module, tokens: Tensor) -> dict:
    """The `jacobian` entry of phases.json for one checkpoint on the probe batch tokens (n, L).

    Top level: the full map (residual: J_t; recurrent: the stacked-state transition), mean and max
    over sequences x positions. `blocks`: one entry per block / layer with the same statistics of
    the block-update Jacobian U_l = B_l - I (residual; the block map B_l itself under `block_map_*`)
    or of the layer's recurrent Jacobian (recurrent).
    """
    kind = map_kind(model)
    blocks = []
    if kind == "residual":
        block_maps = residual_block_jacobians(model, tokens)
        full = chain_blocks(block_maps)
        identity = torch.eye(block_maps.shape[-1], dtype=block_maps.dtype)
        for b, block in enumerate(block_maps):
            entry = {"hook": f"blocks.{b}", "map": "update d(resid_post-resid_pre)/d resid_pre"}
            entry.update(_summary(block - identity))
            mapped = _summary(block)
            entry["block_map_spectral_radius_mean"] = mapped["spectral_radius_mean"]
            entry["block_map_spectral_norm_mean"] = mapped["spectral_norm_mean"]
            blocks.append(entry)
    else:
        per_layer, full = recurrent_jacobians(model, tokens)
        for b, layer in enumerate(per_layer):
            entry = {"hook": f"blocks.{b}.hook_hidden", "map": "recurrent dh_t/dh_{t-1}"}
            entry.update(_summary(layer))
            blocks.append(entry)
    return {"kind": kind, **_summary(full), "blocks": blocks}


def first_spectral_radius_above_1(checkpoints: list[dict], threshold: float = 1.0) -> int | None:
    """Seed rule: tokens of the first checkpoint whose mean full-map spectral radius exceeds 1.

    checkpoints: phases.json entries, oldest first, each with `tokens` and `jacobian`.
    Returns None when no checkpoint crosses. See SPECTRAL_RADIUS_MEANING for how to read it.
    """
    for entry in checkpoints:
        if entry["jacobian"]["spectral_radius_mean"] > threshold:
            return int(entry["tokens"])
    return None
