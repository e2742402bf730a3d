"""Belief probes over a run's checkpoints: RUN/probes.json and the belief figures (DESIGN.md s. 4).

Per checkpoint and hook (and `concat`, the hooks side by side): OLS with intercept fit on the fit
half of the sequences, scored on the held-out half (R² unweighted = every (sequence, position) row
counts once; weighted = rows weighted by prefix probability; MSE unweighted), plus the same probe
fit on row-shuffled beliefs and scored on the true held-out beliefs (control, ~0). Inputs, targets,
split and shuffle are built once and shared by every checkpoint. The next-token probe maps the
model's next-token distribution to the belief (`r2_heldout_logits`: from its centred log-probs);
`logit_ceiling` is what a probe from the *optimal* logits (centred log predictive probabilities)
reaches: a model whose residual holds only what its unembedding needs sits near it (FINDINGS.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from hmm.errors import InvalidInput
from hmm.files import read_json, write_atomic, write_json
from models.architectures import final_layer_hook, residual_hooks
from models.checkpoints import load_checkpoint, load_run_process, read_run_config
from models.run_files import list_checkpoints
from probes import belief_figures
from probes.activations import (
    Activations,
    ProbeInputs,
    check_hooks,
    collect_activations,
    probe_inputs,
)
from probes.belief_probe import (
    BeliefProbe,
    heldout_scores,
    moments,
    pairwise_distance_correlation,
    r2_score,
)

CONCAT = "concat"
LOG_FLOOR = 1e-9  # optimal log-probabilities of impossible symbols are clipped here (no -inf)
ANIMATION_POINTS = 6000


def centred_log(probs: np.ndarray) -> np.ndarray:
    """Logits of distributions (n, V): log-probabilities (floored at LOG_FLOOR) minus row mean."""
    logp = np.log(np.maximum(probs, LOG_FLOOR))
    return logp - logp.mean(axis=1, keepdims=True)


def probe_features(X: np.ndarray, inputs: ProbeInputs) -> tuple[dict, np.ndarray]:
    """Fit OLS on the fit rows of X (R, d) and score it held-out: (scores, held-out predictions)."""
    return _probe_blocks([X], {"x": slice(None)}, inputs)["x"]


def score_activations(
    acts: Activations, inputs: ProbeInputs, hooks: list[str], seed: int = 0
) -> tuple[dict, dict[str, np.ndarray]]:
    """One checkpoint's record {"layers", "next_token"} and held-out predictions {probe: (R_ho, S)}.

    One Gram matrix of all hooks side by side serves every single-hook probe (diagonal blocks)."""
    widths = [acts.hooks[name].shape[1] for name in hooks]
    edges = np.concatenate([[0], np.cumsum(widths)])
    blocks = {name: slice(edges[i], edges[i + 1]) for i, name in enumerate(hooks)}
    if len(hooks) > 1:
        blocks[CONCAT] = slice(None)
    fitted = _probe_blocks([acts.hooks[name] for name in hooks], blocks, inputs)
    layers = {name: scores for name, (scores, _) in fitted.items()}
    predictions = {name: pred for name, (_, pred) in fitted.items()}

    next_scores, _ = probe_features(acts.next_token, inputs)
    logit_scores, _ = probe_features(centred_log(acts.next_token), inputs)
    geometry = CONCAT if CONCAT in predictions else hooks[-1]
    ho = inputs.heldout_rows
    corr_probe, corr_next = pairwise_distance_correlation(
        inputs.beliefs[ho], predictions[geometry], acts.next_token[ho], seed=seed
    )
    next_token = {
        **next_scores,
        "r2_heldout_logits": logit_scores["r2_heldout"],
        "distance_corr_probe": corr_probe,
        "distance_corr_next_token": corr_next,
        "distance_probe": geometry,
    }
    return {"layers": layers, "next_token": next_token}, predictions


def logit_ceiling(process, inputs: ProbeInputs) -> dict:
    """Held-out R² of probes from the exact optimal next-token distribution and its logits."""
    optimal = process.predictive(inputs.beliefs)
    logits, _ = probe_features(centred_log(optimal), inputs)
    probs, _ = probe_features(optimal, inputs)
    return {
        "optimal_logits_r2_heldout": logits["r2_heldout"],
        "optimal_probs_r2_heldout": probs["r2_heldout"],
    }


def probe_run(
    run: str | Path,
    last: bool = False,
    hooks: list[str] | None = None,
    max_sequences: int | None = None,
) -> dict:
    """Probe every checkpoint of RUN (or only the newest) and write RUN/probes.json + RUN/figures/.

    max_sequences: probe a seeded subset of that many enumerated sequences instead of all of them
    (recorded under "inputs"; default all). Returns the probes.json content. Bad input (no
    checkpoints, corrupt checkpoint, unknown hook) raises InvalidInput before anything is written.
    """
    run = Path(run)
    checkpoints = list_checkpoints(run)
    if last:
        checkpoints = checkpoints[-1:]
    config = read_run_config(run)
    process = load_run_process(run)
    inputs = probe_inputs(process, int(config["model"]["n_ctx"]), max_sequences=max_sequences)
    ceiling = logit_ceiling(process, inputs)

    ho = inputs.heldout_rows
    frame_rows = np.random.default_rng(0).permutation(len(ho))[:ANIMATION_POINTS]
    records, frames, final_predictions = [], [], None
    for tokens, path in tqdm(checkpoints, desc="probing checkpoints", unit="ckpt", disable=None):
        model = load_checkpoint(path)
        if hooks is None:
            hooks = residual_hooks(model)
        check_hooks(model, hooks)
        acts = collect_activations(model, inputs, hooks)
        record, predictions = score_activations(acts, inputs, hooks)
        records.append({"tokens": int(tokens), **record})
        headline = CONCAT if CONCAT in predictions else hooks[-1]
        frames.append((int(tokens), predictions[headline][frame_rows], record["layers"][headline]))
        final_predictions = predictions

    result = {
        "inputs": inputs.summary(),
        "hooks": list(hooks),
        "logit_ceiling": ceiling,
        "checkpoints": _merged(run / "probes.json", records, hooks, last),
    }
    result["figures"] = _write_figures(
        run, result, inputs.beliefs[ho], final_predictions, inputs.beliefs[ho][frame_rows], frames,
        process.states,
    )
    write_json(run / "probes.json", result)
    return result


def _probe_blocks(
    features: list[np.ndarray], blocks: dict[str, slice], inputs: ProbeInputs
) -> dict[str, tuple[dict, np.ndarray]]:
    """Fit, score and shuffle-control a probe on column blocks of the features (R, d_i) side by
    side, sharing one Gram matrix: {block: (scores, held-out predictions (R_ho, S))}."""
    fit, ho = inputs.fit_rows, inputs.heldout_rows
    Y, Y_ho = inputs.beliefs, inputs.beliefs[inputs.heldout_rows]
    S = Y.shape[1]
    X_fit = np.concatenate([f[fit] for f in features], axis=1)
    targets = np.concatenate([Y[fit], inputs.shuffled_beliefs[fit]], axis=1)
    shared = moments(X_fit, targets, inputs.fit_count[fit])
    del X_fit
    X_heldout = np.concatenate([f[ho] for f in features], axis=1, dtype=np.float64)
    count, prob = inputs.heldout_count[ho], inputs.heldout_prob[ho]
    out = {}
    for name, cols in blocks.items():
        m = shared.select(cols)
        # probe and control in one solve: targets are [beliefs, shuffled beliefs]
        both = BeliefProbe().fit_moments(m).predict(X_heldout[:, cols])
        pred, control = both[:, :S], both[:, S:]
        scores = heldout_scores(Y_ho, pred, count, prob)
        scores["r2_shuffle"] = r2_score(Y_ho, control, count)
        out[name] = (scores, pred)
    return out


def _merged(path: Path, records: list[dict], hooks: list[str], last: bool) -> list[dict]:
    """With --last, keep the other checkpoints of an existing probes.json with the same hooks."""
    if not (last and path.is_file()):
        return records
    try:
        old = read_json(path)
    except InvalidInput:
        return records
    if not isinstance(old, dict) or old.get("hooks") != list(hooks):
        return records
    new_tokens = {r["tokens"] for r in records}
    kept = [r for r in old.get("checkpoints", []) if r.get("tokens") not in new_tokens]
    return sorted(kept + records, key=lambda r: r["tokens"])


def _write_figures(
    run: Path,
    result: dict,
    true: np.ndarray,
    predictions: dict[str, np.ndarray],
    frame_true: np.ndarray,
    frames: list,
    labels: list[str],
) -> dict[str, str]:
    """Render the belief figures into RUN/figures/ (atomically); returns name -> path in RUN.

    true (R_ho, S) held-out beliefs and predictions {probe: (R_ho, S)} of the newest checkpoint;
    frame_true (n, S) the animation's fixed subsample and frames [(tokens, pred (n, S), scores)]."""
    figures = run / "figures"
    last = result["checkpoints"][-1]
    out = {}
    hooks = result["hooks"]
    best = max(hooks, key=lambda h: _finite(last["layers"][h]["r2_heldout"]))
    shown = {h: predictions[h] for h in dict.fromkeys([best, final_layer_hook(hooks)])}
    if CONCAT in predictions:
        shown[CONCAT] = predictions[CONCAT]
    png = belief_figures.simplex_comparison(
        true, shown, {h: last["layers"][h]["r2_heldout"] for h in shown}, last["tokens"], labels
    )
    out["simplex"] = _save(figures / "probe_simplex.png", png, run)
    out["layers"] = _save(
        figures / "probe_layers.png",
        belief_figures.layer_bars(last, result["logit_ceiling"]),
        run,
    )
    if len(result["checkpoints"]) > 1:
        out["emergence"] = _save(
            figures / "probe_emergence.png",
            belief_figures.emergence(result["checkpoints"], result["logit_ceiling"]),
            run,
        )
    if len(frames) > 1:
        gif = belief_figures.simplex_animation(frame_true, frames, labels)
        out["animation"] = _save(figures / "probe_simplex.gif", gif, run)
    return out


def _save(path: Path, data: bytes, run: Path) -> str:
    write_atomic(path, data)
    return str(path.relative_to(run))


def _finite(value: float) -> float:
    return value if value == value else -np.inf
