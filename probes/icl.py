"""The in-context-learning curve of a run (RUN/icl.json, figures/icl.png).

Next-token training on a non-ergodic Mixture implies in-context learning: the Bayes-optimal loss at
position t, hmm.information.optimal_loss, falls as the component posterior concentrates, so a
model that learned the process follows that exact curve. Here the model's expected loss at each
input position t (its logits after tokens 0..t against token t+1, the training positions) is set
beside the exact curve `optimal_loss(process, n_ctx + 1)[1:]` and, for a Mixture, beside the loss
of the best single component's exact filter (the component's own belief update run on the
mixture's sequences): what a predictor that never learns in context gets. An ergodic process gets
the same model-against-exact comparison (the excess per position) without the third curve.

Each loss is the cross-entropy against the process's exact next-token distribution after the
prefix, so the expectation is exact over enumerated inputs (weighted by probability) and, on a
fixed sampled set, an average of exact conditional expectations with a 95 % bootstrap interval
over sequences. The final checkpoint is evaluated here; the checkpoints whose metrics line has
`exact_loss_by_position` (models/training.py, `--exact-eval every`) bring their curves for free.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hmm import HMM
from hmm.files import write_atomic
from hmm.msp import enumerable
from hmm.records import write_record
from probes.run_files import IclFile

ICL_FILE = "icl.json"
ICL_FORMAT = "beliefgeo-icl/1"
FIGURE = "figures/icl.png"
SAMPLED_SEQUENCES = 4096  # inputs when the process's sequences cannot be enumerated
N_BOOT = 1000
CLOSE_NATS = 0.01  # "within" in the report's sentence
BATCH = 2048


def icl_inputs(process: HMM, n_ctx: int, seed: int = 0,
               n_sampled: int = SAMPLED_SEQUENCES) -> tuple[np.ndarray, np.ndarray, str]:
    """(tokens (N, n_ctx), weights (N,) summing to 1, mode): every sequence with its probability
    when enumerable (hmm.msp.enumerable), else `n_sampled` sequences drawn from `seed`, equal
    weights."""
    if enumerable(process, n_ctx):
        tokens, probs = process.enumerate(n_ctx)
        return tokens, probs / probs.sum(), "enumerated"
    tokens, _ = process.sample(n_sampled, n_ctx, seed=seed)
    return tokens, np.full(len(tokens), 1.0 / len(tokens)), "sampled"


def cross_entropy(true_next: np.ndarray, logq: np.ndarray) -> np.ndarray:
    """-sum_x p(x) log q(x) over the last axis, 0 log 0 = 0 (q = 0 where p > 0 gives inf)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(true_next > 0, -true_next * logq, 0.0)
    return terms.sum(axis=-1)


def model_losses(process: HMM, tokens: np.ndarray,
                 forward: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
    """(N, L) loss of `forward` (tokens (n, L) -> logits (n, L, V)) at every input position of
    `tokens`, against the exact next-token distribution after each prefix."""
    true_next = process.predictive(process.beliefs(tokens))
    out = np.empty(tokens.shape)
    with torch.inference_mode():
        for start in range(0, len(tokens), BATCH):
            chunk = slice(start, start + BATCH)
            logits = forward(torch.from_numpy(tokens[chunk])).cpu().double()
            out[chunk] = cross_entropy(true_next[chunk], F.log_softmax(logits, -1).numpy())
    return out


def filter_losses(process: HMM, component: HMM, tokens: np.ndarray) -> np.ndarray:
    """(N, L) loss of `component`'s exact filter (its belief update from its initial state) on the
    mixture's `tokens`; inf where the component gives the next symbol, or the prefix, zero
    probability."""
    V = process.n_symbols
    foreign = (tokens >= component.n_symbols).any(axis=1)
    safe = np.where(tokens < component.n_symbols, tokens, 0)
    beliefs = component.beliefs(safe, on_zero="nan")
    q = np.zeros((*tokens.shape, V))
    q[..., : component.n_symbols] = component.predictive(beliefs)
    with np.errstate(divide="ignore", invalid="ignore"):
        losses = cross_entropy(process.predictive(process.beliefs(tokens)), np.log(q))
    losses[~np.isfinite(losses) | foreign[:, None]] = np.inf
    return losses


def weighted_curve(losses: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The expected loss per position: weights (N,) @ losses (N, L), inf kept as inf."""
    finite = np.where(weights[:, None] > 0, losses, 0.0)
    curve = weights @ np.where(np.isfinite(finite), finite, 0.0)
    return np.where(np.isfinite(finite).all(axis=0), curve, np.inf)


def bootstrap_interval(losses: np.ndarray, n_boot: int = N_BOOT,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """95 % percentile interval of the per-position mean over `losses`' rows (sequences)
    resampled with replacement: (low (L,), high (L,))."""
    n = len(losses)
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot)
    means = counts @ losses / n
    return np.percentile(means, 2.5, axis=0), np.percentile(means, 97.5, axis=0)


def never_learns(process: HMM, tokens: np.ndarray, weights: np.ndarray) -> dict | None:
    """For a Mixture: the best single component's filter (the lowest mean loss over positions)
    and its per-position loss; None for any other process."""
    components = getattr(process, "components", None)
    if process.kind != "mixture" or not components:
        return None
    curves = [weighted_curve(filter_losses(process, c, tokens), weights) for c in components]
    means = [float(c.mean()) for c in curves]
    best = int(np.argmin(means))
    return {"component": best, "name": components[best].name,
            "loss_by_position": _listed(curves[best]), "mean_by_component": _listed(means)}


def icl_curve(process: HMM, n_ctx: int, forward: Callable[[torch.Tensor], torch.Tensor],
              seed: int = 0, n_sampled: int = SAMPLED_SEQUENCES) -> dict:
    """The comparison of one model (`forward`) on `process` at input positions 0..n_ctx-1: the
    exact curve, the model's curve (with its bootstrap interval when sampled), the never-learns
    curve of a Mixture, and the numbers the report's sentence quotes (`closeness`)."""
    from hmm.information import optimal_loss

    tokens, weights, mode = icl_inputs(process, n_ctx, seed, n_sampled)
    losses = model_losses(process, tokens, forward)
    model = weighted_curve(losses, weights)
    low, high = bootstrap_interval(losses, seed=seed) if mode == "sampled" else (None, None)
    exact = optimal_loss(process, n_ctx + 1)[1:]
    never = never_learns(process, tokens, weights)
    out = {
        "process": process.name, "kind": process.kind,
        "inputs": {"mode": mode, "sequences": len(tokens), "length": n_ctx, "seed": seed},
        "positions": list(range(n_ctx)),
        "exact_loss_by_position": _listed(exact), "model_loss_by_position": _listed(model),
        "model_ci95_low": None if low is None else _listed(low),
        "model_ci95_high": None if high is None else _listed(high),
        "excess_by_position": _listed(model - exact),
        "never_learns": never,
    }
    return {**out, **closeness(model, exact, never)}


def closeness(model: np.ndarray, exact: np.ndarray, never: dict | None,
              tol: float = CLOSE_NATS) -> dict:
    """close_from: the first position from which the model stays within `tol` nats of the exact
    curve (None: not even at the last); the largest excess and where; for a Mixture,
    gain_closed: the fraction of the never-learns filter's gap above the exact curve that the
    model closes at the last position."""
    excess = np.asarray(model) - np.asarray(exact)
    within = excess <= tol
    close_from = next((t for t in range(len(excess)) if within[t:].all()), None)
    worst = int(np.argmax(excess))
    gain = None
    if never is not None and never["loss_by_position"][-1] is not None:
        gap = never["loss_by_position"][-1] - float(exact[-1])
        gain = float((never["loss_by_position"][-1] - model[-1]) / gap) if gap > 0 else None
    return {"close_nats": tol, "close_from": close_from, "max_excess": float(excess[worst]),
            "max_excess_position": worst, "gain_closed": gain}


def icl_sentence(icl: dict) -> str:
    """The report's computed sentence about the curve."""
    tol, start = icl["close_nats"], icl["close_from"]
    last = icl["excess_by_position"][-1]
    if start is None:
        head = (f"At the last position (t = {len(icl['positions']) - 1}) the model is still "
                f"{last:.4f} nats above the exact curve (more than {tol:g})")
    else:
        head = (f"From position t = {start} on, the model's loss is within {tol:g} nats of the "
                f"exact in-context-learning curve (largest excess {icl['max_excess']:.4f} nats, "
                f"at t = {icl['max_excess_position']})")
    never = icl.get("never_learns")
    if never and never["loss_by_position"][-1] is not None:
        gap = never["loss_by_position"][-1] - icl["exact_loss_by_position"][-1]
        closed = icl.get("gain_closed")
        share = "" if closed is None else (
            f"; the model closes {100 * closed:.1f} % of that gap" if closed >= 0 else
            "; the model is above even that filter there")
        head += (f". A predictor that never learns in context (the best single component's "
                 f"filter, {never['name']}) stays {gap:.4f} nats above it at the last "
                 f"position{share}")
    return head + "."


def _listed(values) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values, dtype=float)]


# ---- a run ----------------------------------------------------------------------------------
def icl_run(run: str | Path, seed: int = 0, n_sampled: int = SAMPLED_SEQUENCES) -> dict:
    """Compute RUN/icl.json (its newest checkpoint, and the curves its metrics already hold) and
    figures/icl.png; returns the file's object."""
    from models.architectures import training_forward
    from models.checkpoints import load_checkpoint, load_run_process
    from models.run_files import list_checkpoints, read_config, read_metrics_lines

    run = Path(run)
    config = read_config(run)
    process = load_run_process(run)
    tokens, path = list_checkpoints(run)[-1]
    model = load_checkpoint(path)
    out = icl_curve(process, config.data.n_ctx, training_forward(model), seed, n_sampled)
    lines = read_metrics_lines(run)
    step = next((m.step for m in lines if m.tokens == tokens), None)
    checkpoints = [{"step": m.step, "tokens": m.tokens,
                    "loss_by_position": m.exact_loss_by_position}
                   for m in lines if m.exact_loss_by_position]
    out = {"format": ICL_FORMAT, **out, "tokens": tokens, "step": step,
           "checkpoints": checkpoints, "figure": FIGURE}
    out["sentence"] = icl_sentence(out)
    from probes.icl_figures import icl_figure

    write_atomic(run / FIGURE, icl_figure(out))
    write_record(run / ICL_FILE, IclFile, out)
    return out
