"""Jacobians of a model's maps, exact (torch.func), their eigenvalues and singular values.

Which map, by the model's hook names (docs/phases.md defines every number):

* recurrent (Elman RNN, hooks `blocks.{l}.hook_hidden`): the recurrence is iterated, token after
  token, so its Jacobian is the dynamics. Per layer R_{l,t} = d h^l_t / d h^l_{t-1}
  (= diag(f'(z_t)) W_rec, Elman 1990) and the transition of the stacked state
  s_t = (h^0_t, ..., h^{L-1}_t), J_t = d s_t / d s_{t-1} (block lower-triangular, so its spectral
  radius is the largest layer radius). Along a sequence the product J_n ... J_1 decides whether a
  perturbation of the state grows or fades: its largest Lyapunov exponent (renormalised products,
  hmm.belief_dynamics.largest_lyapunov) is the stability measure; the mean one-step radius is
  not (a product of matrices of radius < 1 can grow when they are non-normal), so the radius is
  reported by its quantiles over the batch, and the exponent both over the trained window
  (finite-time, from the initial state: hmm.belief_dynamics.finite_time_lyapunov) and long-run.
  Whether the network's recurrence does what the filter does is decided on the belief manifold,
  by the secant test (probes.secant: pairs of reachable states fed the same future tokens); the
  old projection W J W^+ on the probe's subspace is retired (it fails on a network that carries
  the filter exactly, because W^+ points along directions in which beliefs never vary).
* residual (transformer, hooks `blocks.{l}.hook_resid_pre/post`): nothing is iterated; each
  position goes through each block once. The same-position block map B_{l,t} = d resid_post_l[t]
  / d resid_pre_l[t], the block update U_{l,t} = B_{l,t} - I and the full map
  J_t = d resid_final[t] / d resid_pre_0[t] = B_{L-1,t} ... B_{0,t} (causal attention: a change at
  position t reaches only positions >= t). Pre-LayerNorm makes U scale like 1 / ||x||, so U is
  reported scale-normalised, N_{l,t} = (||x|| / ||u||) U_{l,t} with x = resid_pre_l[t] and
  u = U's block output resid_post_l[t] - resid_pre_l[t]: the relative change of the update per
  relative change of the input, unchanged when the residual stream is rescaled. Its largest
  singular value (the gain) is the number to read: gain > 1 means some relative perturbation of
  the input changes the update by more, relatively. The eigenvalues of a feed-forward map govern
  nothing (they describe repeated application, which never happens, and for a non-normal U they
  can be far below its gain). The transformer's analogue of a recurrence is the cross-position
  Jacobian C_t = d resid_final[t] / d resid_pre_0[t-1]: how the previous token's residual
  stream moves the current one's output.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import torch
from torch import Tensor
from torch.func import jacrev, vjp, vmap

from hmm.belief_dynamics import finite_time_lyapunov, largest_lyapunov, quantile_summary
from hmm.errors import InvalidInput
from models.architectures import (
    layer_input_hook,
    map_kind,
    n_blocks,
    recurrent_state_hooks,
    recurrent_step,
    recurrent_weight,
)
from probes.belief_probe import moments, solve
from probes.secant import SecantPairs, secant_test

# Text for phases.json: which map the seed rule (first mean radius > 1) is applied to, and why.
SEED_RULE = {
    "residual": (
        "Not applied: a transformer's maps are feed-forward (each position passes each block "
        "once), so no eigenvalue of them is iterated and 'radius > 1' predicts nothing; "
        "first_spectral_radius_above_1 is null. The block updates are reported scale-normalised "
        "with their largest singular value (gain), and the cross-position Jacobian "
        "d resid_final[t] / d resid_pre0[t-1] stands in for a recurrence."
    ),
    "recurrent": (
        "Applied to the recurrent Jacobian d s_t / d s_(t-1) of the stacked recurrent state (h, "
        "or (h, c) for an LSTM), the map iterated token after token: "
        "first_spectral_radius_above_1 is the first checkpoint whose "
        "mean one-step spectral radius exceeds 1. Whether perturbations grow along a sequence is "
        "decided by the largest Lyapunov exponent (jacobian.lyapunov > 0: they grow; "
        "jacobian.lyapunov_window over the trained window), which is reported beside it; the "
        "belief update's own radius and exponents are under belief_update, and whether the "
        "network forgets at the filter's rate on the belief manifold under jacobian.secant."
    ),
}
LYAPUNOV_BURN_IN = 20
CROSS_POSITIONS = 3  # positions t at which the cross-position Jacobian is summarised


def spectral_radius(matrices: Tensor) -> Tensor:
    """Largest |eigenvalue| of each square matrix: (..., d, d) -> (...,)."""
    return torch.linalg.eigvals(matrices).abs().amax(dim=-1)


def spectral_norm(matrices: Tensor) -> Tensor:
    """Largest singular value of each matrix: (..., m, d) -> (...,)."""
    return torch.linalg.matrix_norm(matrices, ord=2)


def _require(model: torch.nn.Module, kind: str, what: str) -> None:
    if map_kind(model) != kind:
        hook = "blocks.{l}.hook_resid_pre" if kind == "residual" else "blocks.{l}.hook_hidden"
        raise InvalidInput(
            f"{what} needs a {'transformer' if kind == 'residual' else 'RNN'} ({hook})"
        )


# ---- residual (transformer) maps -----------------------------------------------------------
def _pull_back_rows(forward, n_in: int, n_rows: int, d_model: int, dtype) -> Tensor:
    """Every row of the Jacobian of forward: v (n_in, n_rows, d) -> (n_in, n_rows, d), whose
    output k depends only on input k of the same copy; -> (d_out, n_in, n_rows, d_in)."""
    _, pull_back = vjp(forward, torch.zeros(n_in, n_rows, d_model, dtype=dtype))

    def row(direction: Tensor) -> Tensor:
        return pull_back(direction.expand(n_in, n_rows, d_model))[0]

    return vmap(row)(torch.eye(d_model, dtype=dtype)).detach()


def _d_model(model: torch.nn.Module, tokens: Tensor) -> tuple[int, torch.dtype]:
    _, cache = model.run_with_cache(tokens[:1, :1], names_filter="blocks.0.hook_resid_pre")
    resid = cache["blocks.0.hook_resid_pre"]
    return resid.shape[-1], resid.dtype


def residual_block_jacobians(model: torch.nn.Module, tokens: Tensor) -> Tensor:
    """Same-position block Jacobians B_{l,t} = d resid_post_l[t] / d resid_pre_l[t].

    tokens (n, L) -> (n_layers, n, L, d_model, d_model), B[l, i, t] @ v = change of resid_post_l at
    position t of sequence i when resid_pre_l[t] moves by v (every other input held fixed).

    How: the batch is repeated once per position t (copy t of sequence i is row t*n + i); in copy
    t each `blocks.{l}.hook_resid_pre` is replaced by its detached value plus a variable v_l at
    position t, and each `blocks.{l}.hook_resid_post` is read at t. Causal attention keeps later
    positions out of position t, and the detach restarts the derivative at every block, so one
    forward, one reverse-mode `torch.func.vjp` and a pull-back vmapped over the d_model basis
    cotangents give every block's rows at every position at once.
    """
    _require(model, "residual", "residual_block_jacobians")
    n_layers = n_blocks(model, "residual")
    n, length = tokens.shape
    d_model, dtype = _d_model(model, tokens)
    copies = tokens.repeat(length, 1)  # (length * n, length)
    position = torch.arange(length).repeat_interleave(n)  # the position each copy perturbs
    at_position = torch.nn.functional.one_hot(position, length).to(dtype)
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

    rows = _pull_back_rows(block_outputs, n_layers, length * n, d_model, dtype)
    rows = rows.reshape(d_model, n_layers, length, n, d_model)
    return rows.permute(1, 3, 2, 0, 4)  # (n_layers, n, length, d_out, d_in)


def chain_blocks(blocks: Tensor) -> Tensor:
    """Full map J_t = B_{L-1,t} ... B_{0,t}: (n_layers, ..., d, d) -> (..., d, d)."""
    full = blocks[0]
    for block in blocks[1:]:
        full = block @ full
    return full


def update_scales(model: torch.nn.Module, tokens: Tensor) -> Tensor:
    """r_{l,t} = ||x|| / ||u|| with x = resid_pre_l[t], u = resid_post_l[t] - x: tokens (n, L) ->
    (n_layers, n, L)."""
    n_layers = n_blocks(model, "residual")
    names = [f"blocks.{b}.hook_resid_{w}" for b in range(n_layers) for w in ("pre", "post")]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=names)
    ratios = []
    for b in range(n_layers):
        x = cache[f"blocks.{b}.hook_resid_pre"]
        u = cache[f"blocks.{b}.hook_resid_post"] - x
        ratios.append(x.norm(dim=-1) / u.norm(dim=-1).clamp_min(1e-30))
    return torch.stack(ratios)


def cross_position_jacobians(
    model: torch.nn.Module, tokens: Tensor, positions: list[int] | None = None
) -> Tensor:
    """C_t = d resid_final[t] / d resid_pre_0[t-1] at positions t (default 1..L-1): tokens (n, L)
    -> (n, len(positions), d_model, d_model); resid_final = blocks.{L-1}.hook_resid_post.

    One copy of the batch per position t gets a variable added to resid_pre_0 at t-1 and is read
    at t; one vjp and a pull-back vmapped over the basis, as residual_block_jacobians.
    """
    _require(model, "residual", "cross_position_jacobians")
    last = n_blocks(model, "residual") - 1
    n, length = tokens.shape
    positions = list(range(1, length)) if positions is None else positions
    if length < 2 or not all(1 <= t < length for t in positions):
        raise InvalidInput(f"cross-position Jacobians need positions in 1..{length - 1}")
    d_model, dtype = _d_model(model, tokens)
    copies = tokens.repeat(len(positions), 1)
    source = (torch.tensor(positions) - 1).repeat_interleave(n)
    at_source = torch.nn.functional.one_hot(source, length).to(dtype)
    rows_index = torch.arange(len(positions) * n)

    def final_at_next(v: Tensor) -> Tensor:
        outputs: list[Tensor] = []

        def inject(resid: Tensor, hook: object) -> Tensor:
            return resid + at_source[:, :, None] * v[0][:, None, :]

        def read(resid: Tensor, hook: object) -> Tensor:
            outputs.append(resid[rows_index, source + 1])
            return resid

        hooks = [("blocks.0.hook_resid_pre", inject), (f"blocks.{last}.hook_resid_post", read)]
        with model.hooks(fwd_hooks=hooks):
            model(copies)
        return outputs[0][None]

    rows = _pull_back_rows(final_at_next, 1, len(positions) * n, d_model, dtype)[:, 0]
    rows = rows.reshape(d_model, len(positions), n, d_model)
    return rows.permute(2, 1, 0, 3)  # (n, positions, d_out, d_in)


# ---- recurrent (RNN) maps ------------------------------------------------------------------
def stacked_states(model: torch.nn.Module, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """(input of layer 0 (n, L, d_in), stacked recurrent state s_t (n, L, n_layers, D)) from
    hooks; D = H, or 2H for an LSTM's (h, c) (models.architectures.recurrent_state_hooks)."""
    _require(model, "recurrent", "stacked_states")
    n_layers = n_blocks(model, "recurrent")
    first = layer_input_hook(model, 0)
    state_hooks = [recurrent_state_hooks(model, b) for b in range(n_layers)]
    names = [first] + [hook for hooks in state_hooks for hook in hooks]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=names)
    states = [torch.cat([cache[hook] for hook in hooks], dim=-1) for hooks in state_hooks]
    return cache[first], torch.stack(states, dim=2)


def recurrent_jacobians(model: torch.nn.Module, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """Recurrent Jacobians of an Elman RNN along the sequences tokens (n, L).

    -> (per_layer (n_layers, n, L, D, D), per_layer[l, i, t] = d s^l_t / d s^l_{t-1};
        joint (n, L, n_layers*D, n_layers*D) = d s_t / d s_{t-1} of the stacked state), with s^l
    the layer's full recurrent state (h, or (h, c) for an LSTM: D = 2H).
    The per-step map is models.architectures.recurrent_step, differentiated with
    `torch.func.jacrev` and vmapped over sequences and positions; h_{-1} = 0, so position 0 is the
    derivative with respect to the initial state.
    """
    u0, hidden = stacked_states(model, tokens)
    n, length, n_layers, width = hidden.shape
    steps = [recurrent_step(model, b) for b in range(n_layers)]
    previous = torch.cat([torch.zeros_like(hidden[:, :1]), hidden[:, :-1]], dim=1)

    def transition(u0_t: Tensor, state_prev: Tensor) -> Tensor:
        """(d_in,), (n_layers, D) -> (n_layers, D): one token through the whole stack."""
        u, out = u0_t, []
        for b in range(n_layers):
            u, state = steps[b](state_prev[b], u)  # u: the hidden state the layer above reads
            out.append(state)
        return torch.stack(out)

    joint = vmap(vmap(jacrev(transition, argnums=1)))(u0, previous)  # (n, L, nl, H, nl, H)
    per_layer = torch.stack([joint[:, :, b, :, b, :] for b in range(n_layers)])
    joint = joint.reshape(n, length, n_layers * width, n_layers * width)
    return per_layer.detach(), joint.detach()


def recurrent_lyapunov(
    model: torch.nn.Module, tokens: Tensor, burn_in: int = LYAPUNOV_BURN_IN
) -> float:
    """Largest Lyapunov exponent of the stacked-state recurrence along tokens (n, T), nats per
    token, mean over sequences; steps before `burn_in` align the tangent vector."""
    _, joint = recurrent_jacobians(model, tokens)
    return float(largest_lyapunov(joint.double().numpy(), burn_in=burn_in).mean())


def circular_law_radius(matrix: Tensor) -> float:
    """sigma sqrt(N) for an N x N matrix whose entries have variance sigma^2: the spectral radius
    a random matrix of that entry variance has for large N (Girko's circular law)."""
    entries = matrix.detach().double().reshape(-1)
    return float(entries.var(unbiased=False).sqrt() * np.sqrt(matrix.shape[-1]))


def recurrent_weight_spectra(model: torch.nn.Module) -> list[dict]:
    """Per layer: spectral radius of W_rec and the circular-law radius of its entry variance."""
    out = []
    for b in range(n_blocks(model, "recurrent")):
        w = recurrent_weight(model, b)
        out.append(
            {
                "hook": f"blocks.{b}.hook_hidden",
                "w_rec_spectral_radius": float(spectral_radius(w.double())),
                "w_rec_circular_law_radius": circular_law_radius(w),
            }
        )
    return out


def network_secant(
    model: torch.nn.Module, pairs: SecantPairs, fit_tokens: Tensor, fit_beliefs: np.ndarray
) -> dict:
    """probes.secant.secant_test of the model's stacked state on `pairs`, in float64 (pair
    separations fall to ~1e-7 of the state inside a window, float32's resolution), with the
    read-out W s + w0 fitted by least squares on every position of fit_tokens (n_fit, L) against
    their exact beliefs fit_beliefs (n_fit, L, S)."""
    exact = copy.deepcopy(model).double()

    def flat_states(tokens) -> np.ndarray:
        hidden = stacked_states(exact, torch.as_tensor(tokens))[1]
        return hidden.flatten(2).numpy()

    fit_states = flat_states(fit_tokens)
    coef, intercept = solve(
        moments(
            fit_states.reshape(-1, fit_states.shape[-1]),
            fit_beliefs.reshape(-1, fit_beliefs.shape[-1]),
        )
    )
    states = flat_states(pairs.first), flat_states(pairs.second)
    readouts = tuple(s @ coef + intercept for s in states)
    return secant_test(pairs, states, readouts)


# ---- summaries -----------------------------------------------------------------------------
def _summary(matrices: Tensor, prefix: str = "") -> dict[str, float]:
    """Mean and max spectral radius and norm (largest singular value) over the leading indices."""
    return _stats(spectral_radius(matrices), spectral_norm(matrices), prefix)


def _quantiles(matrices: Tensor) -> dict[str, float]:
    """Quantiles of the spectral radius over the leading indices (a mean hides a bimodal batch)."""
    return quantile_summary(spectral_radius(matrices).double().numpy())


def _stats(radius: Tensor, norm: Tensor, prefix: str = "") -> dict[str, float]:
    return {
        f"{prefix}spectral_radius_mean": float(radius.mean()),
        f"{prefix}spectral_radius_max": float(radius.max()),
        f"{prefix}spectral_norm_mean": float(norm.mean()),
        f"{prefix}spectral_norm_max": float(norm.max()),
    }


def residual_diagnostics(model: torch.nn.Module, tokens: Tensor) -> dict:
    """The `jacobian` entry for a transformer on tokens (n, L): full map J_t at the top level,
    per block the update U_l raw and scale-normalised (`normalised_*`: N_l = r U_l with the
    scalar r = ||x|| / ||u|| of each position, so its radius and gain are r times U_l's), and
    `cross_position` (C_t)."""
    block_maps = residual_block_jacobians(model, tokens)
    identity = torch.eye(block_maps.shape[-1], dtype=block_maps.dtype)
    updates = block_maps - identity
    scales = update_scales(model, tokens)
    radius, norm = spectral_radius(updates), spectral_norm(updates)
    blocks = []
    for b in range(len(block_maps)):
        entry = {"hook": f"blocks.{b}", "map": "update U = d(resid_post-resid_pre)/d resid_pre"}
        entry.update(_stats(radius[b], norm[b]))
        entry.update(_stats(scales[b] * radius[b], scales[b] * norm[b], "normalised_"))
        blocks.append(entry)
    out = {"kind": "residual", **_summary(chain_blocks(block_maps)), "blocks": blocks}
    length = tokens.shape[1]
    if length > 1:  # a few evenly spaced positions: the summary, at a quarter of the cost
        positions = sorted({int(t) for t in np.linspace(1, length - 1, CROSS_POSITIONS)})
        cross = cross_position_jacobians(model, tokens, positions)
        out["cross_position"] = {**_summary(cross), "positions": positions}
    return out


def recurrent_diagnostics(
    model: torch.nn.Module,
    tokens: Tensor,
    lyapunov_tokens: Tensor | None = None,
    pairs: SecantPairs | None = None,
    fit: tuple[Tensor, np.ndarray] | None = None,
) -> dict:
    """The `jacobian` entry for an RNN: the stacked-state recurrent map on tokens (n, L) at the
    top level (radius mean, max and quantiles; `lyapunov_window`, the finite-time exponent over
    the window from the initial state), per layer `blocks` (with W_rec's radius and circular-law
    radius), `lyapunov` along lyapunov_tokens (n, T) (default tokens), and, given secant pairs and
    the read-out's fit set (fit tokens, their beliefs), `secant` (network_secant)."""
    per_layer, joint = recurrent_jacobians(model, tokens)
    spectra = recurrent_weight_spectra(model)
    blocks = []
    for b, layer in enumerate(per_layer):
        entry = {"hook": f"blocks.{b}.hook_hidden", "map": "recurrent dh_t/dh_(t-1)"}
        entry.update(_summary(layer))
        entry.update({k: v for k, v in spectra[b].items() if k != "hook"})
        blocks.append(entry)
    out = {"kind": "recurrent", **_summary(joint), "blocks": blocks}
    out["spectral_radius_quantiles"] = _quantiles(joint)
    window = finite_time_lyapunov(joint.double().numpy())
    out["lyapunov_window"] = float(window.mean()) if np.isfinite(window).all() else None
    long = tokens if lyapunov_tokens is None else lyapunov_tokens
    out["lyapunov"] = recurrent_lyapunov(
        model, long, burn_in=min(LYAPUNOV_BURN_IN, long.shape[1] // 2)
    )
    if pairs is not None and fit is not None:
        out["secant"] = network_secant(model, pairs, *fit)
    return out


def jacobian_diagnostics(model: torch.nn.Module, tokens: Tensor, **recurrent: object) -> dict:
    """The `jacobian` entry of phases.json for one checkpoint on the probe batch tokens (n, L):
    residual_diagnostics or recurrent_diagnostics (keyword arguments go to the latter)."""
    if map_kind(model) == "residual":
        return residual_diagnostics(model, tokens)
    return recurrent_diagnostics(model, tokens, **recurrent)


def first_spectral_radius_above_1(checkpoints: list[dict], threshold: float = 1.0) -> int | None:
    """Seed rule: tokens of the first checkpoint whose mean recurrent spectral radius exceeds 1.

    checkpoints: phases.json entries, oldest first, each with `tokens` and `jacobian`. Applies to
    iterated maps only (SEED_RULE): None for residual networks and when no checkpoint crosses.
    """
    for entry in checkpoints:
        if entry["jacobian"].get("kind", "recurrent") == "residual":
            return None
        if entry["jacobian"]["spectral_radius_mean"] > threshold:
            return int(entry["tokens"])
    return None
