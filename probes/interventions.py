"""Exact-counterfactual interventions: does the network use the direction its probe finds?

For a held-out prefix with belief b (position t) and a target belief b' taken from another
held-out prefix at the same position, the activation x at hook l is moved by the minimum-norm
change in the probe's subspace that makes the probe read b':
    delta = (W^T)^+ (b' - p(x)),   p(x) = W^T x + c   (W (d, S), the probe's coefficients),
the least-norm solution of W^T delta = b' - p(x), which lies in the column space of W. The rest
of the network runs on the moved activation (hook replacement), and its next-token distribution
q is scored by KL(P(. | b') || q) against the exact prediction from b' (hmm's `predictive`), at
position t and at every later position s, where the exact answer is the filter started from b'
after t and updated with the tokens that actually follow (hmm's `joint`; positions after a token
that is impossible under that filter are not scored). Per hook and condition:
    gap_closed = 1 - sum KL(moved) / sum KL(no intervention)
(a ratio of sums over prefixes: 1 = the prediction moved all the way to the exact prediction
from b', 0 = not at all, < 0 = away from it), with a 95 % bootstrap interval over prefixes,
beside two nulls of the same norm per prefix: a uniformly random direction, and a random
direction orthogonal to the probe's subspace.

A second move answers why a probe move may fail: regression coefficients weight directions in
which the activations hardly vary (they cancel correlated noise), so the least-norm move leaves
the set of activations the network ever sees. The *encoding* move is the least-norm move inside
the span of E = Cov(X, b) Cov(b)^+ (the least-squares map from beliefs to activations: how the
activations actually change with the belief) that makes the same probe read b', with its own
nulls of its own norm.

What later positions test depends on the architecture (docs/geometry.md):
  RNN (hooks blocks.{l}.hook_hidden, and an LSTM's blocks.{l}.hook_cell): the moved state is the
      state the layer's recurrence continues from (models.architectures.recurrent_step; the other
      part of an LSTM's state kept), so later predictions test whether the network's own
      dynamics update the moved state like the filter updates b'.
  transformer: only the residual at position t changes; later positions read it only through
      attention in the blocks after hook l, and still see every original token. A network that
      recomputes the belief from the tokens at every position leaves later predictions unchanged
      (gap closed 0), and the final hook (no attention after it) cannot move them at all.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from hmm.errors import InvalidInput
from hmm.files import write_atomic, write_json
from models.architectures import (
    hook_label,
    layer_input_hook,
    recurrent_layers,
    recurrent_state_hooks,
    recurrent_step,
    residual_hooks,
)
from models.checkpoints import load_checkpoint, load_run_process, read_run_config, trained_positions
from models.run_files import list_checkpoints
from probes.activations import check_hooks, collect_activations, probe_inputs
from probes.belief_probe import r2_score
from probes.geometry import RANK_TOL, fit_probe, orthonormal_basis, overlap
from probes.geometry_figures import intervention_bars

FORMAT = 1
N_PREFIXES = 2000
N_BOOT = 1000
RECURRENT_STATE = re.compile(r"blocks\.(\d+)\.hook_(hidden|cell)")


# ---- the moves ---------------------------------------------------------------------------------
def subspace_moves(
    coef: np.ndarray, basis: np.ndarray, readings: np.ndarray, targets: np.ndarray
) -> np.ndarray:
    """(n, d) least-norm deltas inside the column space of `basis` (d, r) with
    coef^T delta = targets - readings: coef (d, S), readings and targets (n, S). With basis =
    coef's own columns this is (coef^T)^+ (targets - readings), the least-norm move of all."""
    basis = orthonormal_basis(basis)
    solve = np.linalg.pinv(np.asarray(coef, dtype=np.float64).T @ basis, rcond=RANK_TOL)
    return (np.asarray(targets) - np.asarray(readings)) @ (basis @ solve).T


def minimum_norm_moves(coef: np.ndarray, readings: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(n, d) least-norm deltas with coef^T delta = targets - readings (they lie in the probe's
    subspace, the column space of coef)."""
    return subspace_moves(coef, coef, readings, targets)


def null_moves(subspace: np.ndarray, norms: np.ndarray, rng: np.random.Generator) -> tuple:
    """(random (n, d), orthogonal (n, d)) moves with the given norms (n,): uniformly random
    directions, and uniformly random directions orthogonal to the columns of subspace (d, k)."""
    basis = orthonormal_basis(subspace)
    n, d = len(norms), subspace.shape[0]
    if basis.shape[1] >= d:
        raise InvalidInput(f"the move's subspace fills all {d} dimensions: no orthogonal null")
    random = rng.standard_normal((n, d))
    orthogonal = rng.standard_normal((n, d))
    orthogonal -= (orthogonal @ basis) @ basis.T

    def scaled(v: np.ndarray) -> np.ndarray:
        return v * (norms / np.linalg.norm(v, axis=1))[:, None]

    return scaled(random), scaled(orthogonal)


# ---- the rest of the network -------------------------------------------------------------------
def counterfactual_logits(
    model, tokens: torch.Tensor, hook: str, positions: np.ndarray, deltas: np.ndarray
) -> torch.Tensor:
    """Log next-token probabilities (n, L, V) float64 of `model` on tokens (n, L) with deltas
    (n, d) added to the activation at `hook`, row i at position positions[i] only; for an RNN's
    hidden-state hook the layer's recurrence then runs on from the moved state (module doc)."""
    rows = torch.arange(len(tokens))
    t = torch.from_numpy(np.asarray(positions, dtype=np.int64))
    match = RECURRENT_STATE.fullmatch(hook)
    recurrent = _n_recurrent(model) > 0
    if recurrent and match:  # the layer's hidden state, run on from the moved state, replaces it
        layer = int(match.group(1))
        moved = _propagated_hidden(model, tokens, layer, hook, t, deltas)
        hook = f"blocks.{layer}.hook_hidden"

        def fn(act, hook):
            return moved

    else:
        if recurrent and hook.endswith("hook_pre"):
            raise InvalidInput(
                f"{hook} is applied after the recurrence; intervene on the hidden state "
                f"{hook.replace('hook_pre', 'hook_hidden')} instead"
            )

        def fn(act, hook):
            act = act.clone()
            act[rows, t] += torch.as_tensor(deltas, dtype=act.dtype)
            return act

    with torch.no_grad(), model.hooks(fwd_hooks=[(hook, fn)]):
        logits = model(tokens)
    return torch.log_softmax(logits.double(), dim=-1)


def _n_recurrent(model) -> int:
    """Recurrent layers of a beliefgeo model; 0 for any other hooked model (its hooks are taken
    to act in place, like a transformer's: tests use hand-built ones)."""
    try:
        return recurrent_layers(model)
    except InvalidInput:
        return 0


def _propagated_hidden(
    model, tokens, layer: int, hook: str, t: torch.Tensor, deltas
) -> torch.Tensor:
    """blocks.{layer}.hook_hidden (n, L, H) after deltas are added to the state part `hook` (the
    hidden state, or an LSTM's cell) at positions t and the layer's recurrence runs on from the
    moved state; the rest of the state at t and the layer's inputs stay as they were."""
    states, source = recurrent_state_hooks(model, layer), layer_input_hook(model, layer)
    gate = f"blocks.{layer}.hook_output_gate_pre"  # an LSTM's: h_t = sigmoid(o_t) tanh(c_t)
    rows = torch.arange(len(tokens))
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in (*states, source, gate))
        state, u = torch.cat([cache[n] for n in states], dim=-1), cache[source]
        width = cache[states[0]].shape[-1]  # the hidden state first, an LSTM's cell after it
        part = slice(width * states.index(hook), width * (states.index(hook) + 1))
        state[rows, t, part] += torch.as_tensor(deltas, dtype=state.dtype)
        if hook.endswith("hook_cell"):  # the moved cell state reaches h_t as it would have
            state[rows, t, :width] = torch.sigmoid(cache[gate][rows, t]) * torch.tanh(
                state[rows, t, width:])
        step = recurrent_step(model, layer)
        for s in range(int(t.min()) + 1, state.shape[1]):
            later = (t < s)[:, None]
            state[:, s] = torch.where(later, step(state[:, s - 1], u[:, s])[1], state[:, s])
    return state[..., :width]


# ---- the exact answer --------------------------------------------------------------------------
def exact_predictions(
    process, start: np.ndarray, tokens: np.ndarray, positions: np.ndarray
) -> np.ndarray:
    """(n, L, V) exact next-token distributions of the filter started from start (n, S) after
    position positions[i] and updated with tokens[i, s] for s > positions[i]; NaN before
    positions[i] and from the first token the filter gives probability zero on."""
    n, length = tokens.shape
    out = np.full((n, length, process.n_symbols), np.nan)
    belief = np.asarray(start, dtype=np.float64).copy()
    rows = np.arange(n)
    for s in range(int(positions.min()), length):
        later = positions < s
        if later.any():  # the process's own update: eta' = joint(eta)[x] / P(x | eta)
            step = process.joint(belief[later])[np.arange(later.sum()), tokens[later, s]]
            norm = process.mass(step)[:, None]
            with np.errstate(invalid="ignore", divide="ignore"):
                belief[later] = np.where(norm > process.zero_mass, step / norm, np.nan)
        active = rows[positions <= s]
        out[active, s] = process.predictive(belief[active])
    return out


def kl_divergence(p: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """KL(p || q) in nats over the last axis, 0 log 0 = 0; NaN where p is NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - log_q), 0.0)
    out = terms.sum(axis=-1)
    out[np.isnan(p).any(axis=-1)] = np.nan
    return out


def gap_closed(
    kl_none: np.ndarray, kl_moved: np.ndarray, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float | None, list[float] | None]:
    """1 - sum(kl_moved) / sum(kl_none) over prefixes (n,), and its 95 % bootstrap interval over
    prefixes (None with n_boot 0); (None, None) when there is no gap."""
    if not kl_none.sum() > 0:
        return None, None
    value = 1.0 - kl_moved.sum() / kl_none.sum()
    if n_boot == 0:
        return float(value), None
    draws = np.random.default_rng(seed).integers(0, len(kl_none), size=(n_boot, len(kl_none)))
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = 1.0 - kl_moved[draws].sum(axis=1) / kl_none[draws].sum(axis=1)
    boot = boot[np.isfinite(boot)]
    return float(value), [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))]


# ---- one hook ----------------------------------------------------------------------------------
def choose_prefixes(inputs, n_prefixes: int, seed: int = 0) -> dict:
    """Recipient and donor held-out sequences drawn by probability (with replacement, seeded),
    one position t uniform in 0..L-2 per pair (every recipient has a later position):
    {"recipients" (n,), "donors" (n,), "positions" (n,)} sequence indices and positions."""
    held = np.flatnonzero(~inputs.fit_sequences)
    length = inputs.tokens.shape[1]
    if length < 2 or len(held) == 0:
        raise InvalidInput("interventions need held-out sequences of at least 2 positions")
    p = inputs.seq_probs[held] / inputs.seq_probs[held].sum()
    rng = np.random.default_rng(seed)
    return {"recipients": rng.choice(held, size=n_prefixes, p=p),
            "donors": rng.choice(held, size=n_prefixes, p=p),
            "positions": rng.integers(0, length - 1, size=n_prefixes)}


def intervene_hook(model, process, inputs, X_rows: np.ndarray, hook: str, pairs: dict,
                   n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Interventions at one hook: the interventions.json record of that hook (docs/geometry.md).

    X_rows (R, d): the hook's activation per probe row (for the probe fit); pairs:
    `choose_prefixes`. Two moves that make the probe read b', each beside its own nulls of the
    same norm: the least-norm move (in the probe's subspace), and the least-norm move inside the
    encoding subspace (probe.encoding_'s columns)."""
    probe = fit_probe(X_rows, inputs)
    ho = inputs.heldout_rows
    r2 = r2_score(inputs.beliefs[ho], probe.predict(X_rows[ho]), inputs.heldout_count[ho])
    t, seqs = pairs["positions"], pairs["recipients"]
    n = len(seqs)
    tokens = torch.from_numpy(inputs.tokens[seqs])
    target = inputs.beliefs[inputs.row_of[pairs["donors"], t]]
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=lambda name: name == hook)
    x = cache[hook][torch.arange(n), torch.from_numpy(t)].double().numpy()
    exact = exact_predictions(process, target, inputs.tokens[seqs], t)
    log_none = torch.log_softmax(logits.double(), dim=-1).numpy()
    kl_none = kl_divergence(exact, log_none)
    kl_floor = kl_divergence(process.predictive(inputs.beliefs[inputs.row_of[seqs]]), log_none)
    later = (np.arange(kl_none.shape[1])[None, :] > t[:, None]) & np.isfinite(kl_none)
    rng = np.random.default_rng(seed + 1)

    def scored(subspace: np.ndarray) -> dict:
        move = subspace_moves(probe.coef_, subspace, probe.predict(x), target)
        norms = np.linalg.norm(move, axis=1)
        random, orthogonal = null_moves(subspace, norms, rng)
        out = {}
        for name, delta in (("move", move), ("null_random", random),
                            ("null_orthogonal", orthogonal)):
            log_q = counterfactual_logits(model, tokens, hook, t, delta).numpy()
            out[name] = gap_scores(kl_none, kl_divergence(exact, log_q), t, later, n_boot, seed)
        return {**out.pop("move"), **out, "move_norm_mean": float(norms.mean()),
                "probe_reads_target_max_error": float(
                    np.abs(probe.predict(x + move) - target).max())}

    record = scored(probe.coef_)
    record["encoding"] = scored(probe.encoding_)
    record["encoding"]["overlap_with_probe"] = overlap(probe.coef_, probe.encoding_)
    record.update({
        "n_prefixes": n, "n_later": int(later.sum()), "probe_r2_heldout": r2,
        "ridge": probe.ridge_factor_,
        "activation_norm_mean": float(np.linalg.norm(x, axis=1).mean()),
        "kl_none": _mean_kl(kl_none, t, later), "kl_floor": _mean_kl(kl_floor, t, later),
    })
    return record


def _per_prefix(kl: np.ndarray, t: np.ndarray, later: np.ndarray) -> tuple:
    """(KL at each prefix's moved position (n,), its sum over the scored later positions (n,))."""
    return kl[np.arange(len(t)), t], np.where(later, kl, 0.0).sum(axis=1)


def _mean_kl(kl: np.ndarray, t: np.ndarray, later: np.ndarray) -> dict:
    first, rest = _per_prefix(kl, t, later)
    return {"next": float(first.mean()), "later": float(rest.sum() / max(later.sum(), 1))}


def gap_scores(kl_none: np.ndarray, kl_moved: np.ndarray, t: np.ndarray, later: np.ndarray,
               n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Gap closed at the moved position, over the later positions (their KL summed per prefix),
    and by offset k = 1, 2, ... after it; mean KLs of the moved network. kl_none, kl_moved (n, L)
    per position; t (n,) moved positions; later (n, L) the scored later positions."""
    none_next, none_later = _per_prefix(kl_none, t, later)
    moved_next, moved_later = _per_prefix(kl_moved, t, later)
    next_value, next_ci = gap_closed(none_next, moved_next, n_boot, seed)
    later_value, later_ci = gap_closed(none_later, moved_later, n_boot, seed)
    rows, length = np.arange(len(t)), kl_none.shape[1]
    by_offset = []
    for k in range(1, length - int(t.min())):
        cols = np.minimum(t + k, length - 1)
        ok = (t + k < length) & later[rows, cols]
        by_offset.append(gap_closed(kl_none[rows, cols][ok], kl_moved[rows, cols][ok], 0)[0])
    return {"gap_closed_next": next_value, "gap_closed_next_ci95": next_ci,
            "gap_closed_later": later_value, "gap_closed_later_ci95": later_ci,
            "gap_closed_by_offset": by_offset, "kl_mean": _mean_kl(kl_moved, t, later)}


# ---- a run -------------------------------------------------------------------------------------
def later_positions_note(model) -> str:
    """What the later-position score tests for this architecture (module doc)."""
    if _n_recurrent(model):
        return ("RNN: the moved hidden state is the state its layer's recurrence continues from; "
                "later positions test whether the network's own dynamics update it like the "
                "filter updates the target belief")
    return ("transformer: only the residual at the moved position changes; later positions read "
            "it through attention in the blocks after the hook and still see every original "
            "token, so a network that recomputes the belief from the tokens leaves them "
            "unchanged, and the final hook cannot move them at all")


def intervene_run(
    run: str | Path,
    hooks: list[str] | None = None,
    n_prefixes: int = N_PREFIXES,
    tokens: int | None = None,
    max_sequences: int | None = None,
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> dict:
    """Exact-counterfactual interventions at every residual hook (or `hooks`) of RUN's newest
    checkpoint (or the one after `tokens` training tokens): writes RUN/interventions.json and
    RUN/figures/interventions.png and returns the JSON content. Bad input raises InvalidInput
    before anything is written."""
    run = Path(run)
    checkpoints = dict(list_checkpoints(run))
    if n_prefixes < 2:
        raise InvalidInput(f"--prefixes must be >= 2, got {n_prefixes}")
    if tokens is not None and tokens not in checkpoints:
        raise InvalidInput(f"{run} has no checkpoint after {tokens} tokens; it has "
                           f"{', '.join(str(k) for k in sorted(checkpoints))}")
    tokens = max(checkpoints) if tokens is None else tokens
    config = read_run_config(run)
    model = load_checkpoint(checkpoints[tokens])
    hooks = list(hooks) if hooks else residual_hooks(model)
    check_hooks(model, hooks)
    process = load_run_process(run)
    inputs = probe_inputs(process, trained_positions(config), max_sequences=max_sequences,
                          seed=seed)
    acts = collect_activations(model, inputs, hooks)
    pairs = choose_prefixes(inputs, n_prefixes, seed)
    layers = {hook: intervene_hook(model, process, inputs, acts.hooks[hook].astype(np.float64),
                                   hook, pairs, n_boot, seed) for hook in hooks}
    result = {
        "format": FORMAT, "tokens": int(tokens), "arch": config["arch"],
        "process": process.name, "hooks": hooks, "n_prefixes": n_prefixes,
        "positions": {"intervened": list(range(inputs.tokens.shape[1] - 1)),
                      "length": int(inputs.tokens.shape[1])},
        "seed": seed,
        "interval": f"95 % bootstrap over prefixes ({n_boot} resamples)",
        "later_positions": later_positions_note(model),
        "layers": layers,
    }
    result["headline"] = headline_lines(result)
    result["figure"] = "figures/interventions.png"
    write_atomic(run / result["figure"], intervention_bars(result))
    write_json(run / "interventions.json", result)
    return result


def headline_lines(result: dict) -> list[str]:
    """One sentence per hook: how far each move takes the prediction, beside its nulls."""
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.0f} %"

    def told(r: dict, key: str) -> str:
        return (f"{pct(r[key])} (random direction {pct(r['null_random'][key])}, orthogonal "
                f"{pct(r['null_orthogonal'][key])})")

    lines = []
    for hook, r in result["layers"].items():
        lines.append(
            f"moving the belief along the probe direction at {hook_label(hook)} moves the "
            f"next-token prediction {told(r, 'gap_closed_next')} of the way, later positions "
            f"{told(r, 'gap_closed_later')}; along the encoding direction "
            f"{told(r['encoding'], 'gap_closed_next')}, later "
            f"{told(r['encoding'], 'gap_closed_later')}"
        )
    return lines
