"""Do different networks build the same geometry? Linear CKA between runs on the same inputs.

Linear centred kernel alignment (Kornblith et al. 2019, "Similarity of neural network
representations revisited", eq. 5 in feature space):
    CKA(X, Y) = ||X_c^T W Y_c||_F^2 / (||X_c^T W X_c||_F ||Y_c^T W Y_c||_F),
X (n, d1) and Y (n, d2) activations of the same n rows (prefixes), W = diag(row weights), X_c
and Y_c centred by the weighted mean. It is 1 for identical activations, invariant to
orthogonal transforms and isotropic scaling of either side (not to arbitrary invertible maps),
and near 0 for independent random activations (≈ d1 d2 / n-sized bias for finite n).

Between runs: every pair of hooks of two runs on one process, on the rows of the probe inputs
(every prefix of the trained positions, weighted by its probability; above `MAX_ROWS` rows, a
seeded draw of rows by probability with equal weights). Beside each value, its null (the two
architectures untrained, same rows: how alike inputs alone make them) and each hook's CKA with
the exact beliefs (how belief-like each side is).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hmm.errors import InvalidInput
from models.architectures import build_model, residual_hooks
from models.checkpoints import (
    load_checkpoint,
    load_run_process,
    model_config_of_run,
    read_run_config,
    trained_positions,
)
from models.run_files import list_checkpoints
from probes.activations import collect_activations, probe_inputs

MAX_ROWS = 8192


@dataclass
class Centred:
    """Activations of several hooks over the same rows, ready for CKA: z (n, D) float32 torch
    (centred in float64 first; CKA good to ~1e-6), the hooks side by side, centred by their
    weighted means and scaled by sqrt(w / sum w) (so z^T z is the weighted covariance); blocks
    {hook: column slice}; norms {hook: ||z_h^T z_h||_F}."""

    z: torch.Tensor
    blocks: dict[str, slice]
    norms: dict[str, float]


def centred(acts: dict[str, np.ndarray], weights: np.ndarray | None = None) -> Centred:
    """`Centred` of {hook: (n, d)} activations with row weights (n,) (default equal)."""
    arrays = [np.asarray(a) for a in acts.values()]
    n = len(arrays[0])
    if any(a.ndim != 2 or len(a) != n for a in arrays) or n < 2:
        raise InvalidInput(
            "CKA needs (n, d) activation arrays of the same n >= 2 rows; got shapes "
            f"{[a.shape for a in arrays]}"
        )
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or (w < 0).any() or not np.isfinite(w).all() or not w.sum() > 0:
        raise InvalidInput(f"CKA weights must be ({n},) finite, non-negative, not all zero")
    X = np.concatenate([a.astype(np.float64) for a in arrays], axis=1)
    p = w / w.sum()
    z = torch.from_numpy(((X - p @ X) * np.sqrt(p)[:, None]).astype(np.float32))
    edges = np.cumsum([0] + [a.shape[1] for a in arrays])
    blocks = {h: slice(int(edges[i]), int(edges[i + 1])) for i, h in enumerate(acts)}
    norms = {h: float(torch.linalg.norm(z[:, b].double().T @ z[:, b].double()))
             for h, b in blocks.items()}
    return Centred(z, blocks, norms)


def cka_of(a: Centred, b: Centred) -> dict[str, dict[str, float]]:
    """{hook_a: {hook_b: CKA}} between two `Centred` sets of the same rows (NaN where either
    hook has no variance)."""
    cross = (a.z.double().T @ b.z.double()).numpy()
    out: dict[str, dict[str, float]] = {}
    for ha, ra in a.blocks.items():
        out[ha] = {}
        for hb, rb in b.blocks.items():
            norms = a.norms[ha] * b.norms[hb]
            value = np.linalg.norm(cross[ra, rb]) ** 2 / norms if norms > 0 else np.nan
            out[ha][hb] = float(value)
    return out


def cka_matrix(
    acts_a: dict[str, np.ndarray], acts_b: dict[str, np.ndarray],
    weights: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """{hook_a: {hook_b: CKA}} for every pair of hooks (activations (n, d) of the same rows)."""
    return cka_of(centred(acts_a, weights), centred(acts_b, weights))


def linear_cka(X: np.ndarray, Y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Weighted linear CKA of X (n, d1) and Y (n, d2) (module doc); NaN if either is constant."""
    if np.ndim(X) != 2 or np.ndim(Y) != 2 or len(X) != len(Y):
        raise InvalidInput(
            f"CKA needs two (n, d) activation arrays of the same n rows; got {np.shape(X)}, "
            f"{np.shape(Y)}"
        )
    return cka_matrix({"x": X}, {"y": Y}, weights)["x"]["y"]


def shared_process(runs: list[Path]):
    """The process every run was trained on (InvalidInput if they differ) and the number of
    positions all of them trained."""
    processes = [load_run_process(run) for run in runs]
    first = processes[0]
    for run, other in zip(runs[1:], processes[1:], strict=True):
        same = (other.T.shape == first.T.shape and np.allclose(other.T, first.T, atol=1e-12)
                and np.allclose(other.initial, first.initial, atol=1e-12))
        if not same:
            raise InvalidInput(
                f"{run} was trained on {other.name}, {runs[0]} on {first.name}: CKA compares "
                "runs on the same inputs, so give runs of one process"
            )
    positions = min(trained_positions(read_run_config(run)) for run in runs)
    return first, positions


def comparison_rows(inputs, max_rows: int = MAX_ROWS, seed: int = 0):
    """(row indices, weights): every row with its prefix probability, or above `max_rows` rows a
    seeded draw of max_rows rows by probability (with replacement) with equal weights."""
    prob = inputs.fit_prob + inputs.heldout_prob
    if inputs.n_rows <= max_rows:
        return np.arange(inputs.n_rows), prob
    rows = np.random.default_rng(seed).choice(inputs.n_rows, size=max_rows, p=prob / prob.sum())
    return np.sort(rows), np.ones(max_rows)


def run_activations(run: Path, inputs, rows: np.ndarray, trained: bool = True) -> dict:
    """{hook: (len(rows), d) float32} of the run's newest checkpoint at its residual hooks, or
    (trained=False) of the same architecture untrained (init seed = the run's seed + 1)."""
    if trained:
        model = load_checkpoint(list_checkpoints(run)[-1][1])
    else:
        base = model_config_of_run(read_run_config(run))
        model = build_model(dataclasses.replace(base, seed=base.seed + 1)).eval()
    hooks = residual_hooks(model)
    acts = collect_activations(model, inputs, hooks)
    return {hook: acts.hooks[hook][rows] for hook in hooks}


def cka_between_runs(
    runs: list[str | Path], labels: list[str] | None = None, max_rows: int = MAX_ROWS,
    max_sequences: int | None = 20_000, seed: int = 0,
) -> dict:
    """Linear CKA for every pair of runs (same process) and every pair of their residual hooks,
    newest checkpoints, with nulls: {"rows", "weights", "positions", "runs": {label: run},
    "cka_beliefs": {label: {hook: CKA with the exact beliefs}}, "pairs": [{"run_a", "run_b",
    "cka": {hook_a: {hook_b: CKA}}, "cka_untrained": {...}}]}. Activations are collected once
    per run (trained and untrained)."""
    runs = [Path(run) for run in runs]
    labels = labels or [run.name for run in runs]
    if len(runs) < 2 or len(labels) != len(runs) or len(set(labels)) != len(labels):
        raise InvalidInput("CKA compares at least two runs with distinct labels")
    process, positions = shared_process(runs)
    inputs = probe_inputs(process, positions, max_sequences=max_sequences, seed=seed)
    rows, weights = comparison_rows(inputs, max_rows, seed)
    named = dict(zip(labels, runs, strict=True))
    trained = {label: centred(run_activations(run, inputs, rows), weights)
               for label, run in named.items()}
    untrained = {label: centred(run_activations(run, inputs, rows, trained=False), weights)
                 for label, run in named.items()}
    beliefs = centred({"beliefs": inputs.beliefs[rows]}, weights)
    pairs = [
        {"run_a": a, "run_b": b, "cka": cka_of(trained[a], trained[b]),
         "cka_untrained": cka_of(untrained[a], untrained[b])}
        for i, a in enumerate(labels) for b in labels[i + 1 :]
    ]
    return {
        "rows": int(len(rows)),
        "weights": "prefix probability" if len(rows) == inputs.n_rows else "equal (rows drawn "
        "by probability)",
        "positions": positions,
        "runs": {label: str(run) for label, run in named.items()},
        "cka_beliefs": {label: {h: v["beliefs"] for h, v in cka_of(acts, beliefs).items()}
                        for label, acts in trained.items()},
        "pairs": pairs,
    }
