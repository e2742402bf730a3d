"""Belief probes over a run's checkpoints: RUN/probes.json and the belief figures (docs/probes.md).

Only positions the run trained are probed (models.checkpoints.trained_positions): a format-1 run's
last position never carried a loss and is left out, and probes.json says so under "positions".
Per checkpoint and hook (and `concat`, the hooks side by side): least squares with intercept and
a ridge penalty chosen by cross-validation over subtrees of the fit half (0, plain OLS, is one of
the choices; probes.belief_probe.cv_ridge), fit on the fit half, scored on the held-out half
(probes.activations: split by prefix subtree by default), with the same probe on row-shuffled
beliefs as a control, the in-sample R² (the probe scored on the rows it was fit on, the paper's
kind of metric), per-position scores and the fine structure: the within-k-gram R²
1 - SSE(probe) / SSE(lookup), where the lookup predicts each held-out row by the mean exact belief
of the held-out rows that share its last k tokens (truncated at the sequence start; count weights),
i.e. the least squared error any table of the last k tokens reaches on those rows; and the
resolution depth, the largest k whose within-k-gram R² >= 0.5.
Baselines, once per run: the same architecture untrained (other init seeds), OLS on one-hot
k-gram cells (a lookup table, no network), and the probe from the exact optimal next-token logits
(`optimal_logit_r2`: what a linear read-out of the optimal prediction gives; for Mess3 the belief
is affine in the predictive probabilities, so a model can pass it with its prediction alone).
Inputs, targets, split, shuffle and k-gram cells are built once and shared by every checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hmm.errors import InvalidInput
from hmm.files import read_json, write_atomic, write_json
from hmm.plots import state_chart
from hmm.progress import progress
from models.architectures import CONCAT, build_model, final_layer_hook, residual_hooks
from models.checkpoints import (
    load_checkpoint,
    load_run_process,
    model_config_of_run,
    read_run_config,
    trained_positions,
)
from models.run_files import list_checkpoints
from probes import belief_figures
from probes.activations import (
    DEFAULT_PREFIX_LEN,
    DEFAULT_SPLIT,
    Activations,
    ProbeInputs,
    check_hooks,
    collect_activations,
    kgram_cells,
    probe_inputs,
)
from probes.belief_probe import (
    CONSTANT_VARIANCE,
    GRAM_CHUNK,
    BeliefProbe,
    cv_ridge,
    gram_scale,
    lookup_predictions,
    merge_moments,
    moments,
    mse,
    pairwise_distance_correlation,
    r2_insample,
    r2_pooled,
    r2_score,
    within_cell_sse,
)
from probes.geometry_study import add_checkpoint_geometry, add_run_geometry, geometry_figures

LOG_FLOOR = 1e-9  # optimal log-probabilities of impossible symbols are clipped here (no -inf)
ANIMATION_POINTS = 6000
KGRAM_MAX = 6  # k = 1..KGRAM_MAX (at most probed length - 1) for lookups and within-k-gram R²
KGRAM_MAX_CELLS = 5000  # one-hot lookups with more cells than this are not fitted
RESOLUTION_THRESHOLD = 0.5
INIT_SEEDS = 3


@dataclass
class References:
    """What every checkpoint's scores share, computed once per run (`references`).

    rows (R_ho,) held-out row indices; beliefs (R_ho, S); count, prob (R_ho,) their weights;
    by_position [index arrays into rows, one per position]; cells {k: (R,) k-gram cell per row};
    within_sse {k: sum over held-out rows of count * |belief - its k-gram cell mean|^2, None when
    that is <= 1e-12 x the total sum of squares (every cell holds one belief: undefined)};
    oracle {k: R² (coordinate mean) of that cell-mean lookup itself on the held-out rows}."""

    rows: np.ndarray
    beliefs: np.ndarray
    count: np.ndarray
    prob: np.ndarray
    by_position: list[np.ndarray]
    cells: dict[int, np.ndarray]
    within_sse: dict[int, float | None]
    oracle: dict[int, float]


def references(inputs: ProbeInputs, k_max: int = KGRAM_MAX) -> References:
    """Held-out targets, weights, position groups and k-gram cells of `inputs`."""
    rows = inputs.heldout_rows
    count = inputs.heldout_count[rows]
    positions = inputs.positions[rows]
    cells, within, oracle = {}, {}, {}
    Y = inputs.beliefs[rows]
    sst = count @ (Y - count @ Y / count.sum()) ** 2
    defined = sst > CONSTANT_VARIANCE * max(sst.max(initial=0.0), np.finfo(float).tiny)
    for k in range(1, min(k_max, inputs.tokens.shape[1] - 1) + 1):
        cells[k] = kgram_cells(inputs, k)
        ssw = within_cell_sse(cells[k][rows], Y, count)
        within[k] = float(ssw.sum()) if ssw.sum() > 1e-12 * sst.sum() else None
        oracle[k] = float(np.mean(1.0 - ssw[defined] / sst[defined])) if defined.any() else None
    return References(
        rows=rows, beliefs=inputs.beliefs[rows], count=count, prob=inputs.heldout_prob[rows],
        by_position=[np.flatnonzero(positions == t) for t in range(inputs.tokens.shape[1])],
        cells=cells, within_sse=within, oracle=oracle,
    )


def heldout_scores(pred: np.ndarray, refs: References) -> dict:
    """Held-out scores of predictions (R_ho, S) of refs.beliefs (keys in docs/probes.md)."""
    Y, count = refs.beliefs, refs.count
    sse = float(count @ ((Y - pred) ** 2).sum(axis=1))
    within = {}
    for k, ssw in refs.within_sse.items():
        within[str(k)] = None if ssw is None else 1.0 - sse / ssw
    resolved = [int(k) for k, v in within.items() if v is not None and v >= RESOLUTION_THRESHOLD]
    return {
        "r2_heldout": r2_score(Y, pred, count),
        "r2_heldout_weighted": r2_score(Y, pred, refs.prob),
        "r2_pooled": r2_pooled(Y, pred, count),
        "mse_heldout": mse(Y, pred, count),
        "r2_by_position": [r2_score(Y[i], pred[i], count[i]) if len(i) else None
                           for i in refs.by_position],
        "mse_by_position": [mse(Y[i], pred[i], count[i]) if len(i) else None
                            for i in refs.by_position],
        "r2_within_kgram": within,
        "resolution_depth": max(resolved, default=0),
    }


def centred_log(probs: np.ndarray) -> np.ndarray:
    """Logits of distributions (n, V): log-probabilities (floored at LOG_FLOOR) minus row mean."""
    logp = np.log(np.maximum(probs, LOG_FLOOR))
    return logp - logp.mean(axis=1, keepdims=True)


def probe_features(
    X: np.ndarray, inputs: ProbeInputs, refs: References | None = None
) -> tuple[dict, np.ndarray]:
    """Fit a probe on the fit rows of X (R, d) and score it held-out: (scores, held-out
    predictions)."""
    refs = refs if refs is not None else references(inputs)
    return _probe_blocks([X], {"x": slice(None)}, inputs, refs)["x"]


def score_activations(
    acts: Activations, inputs: ProbeInputs, hooks: list[str], seed: int = 0,
    refs: References | None = None,
) -> tuple[dict, dict[str, np.ndarray]]:
    """One checkpoint's record {"layers", "next_token"} and held-out predictions {probe: (R_ho, S)}.

    One Gram matrix of all hooks side by side serves every single-hook probe (diagonal blocks)."""
    refs = refs if refs is not None else references(inputs)
    widths = [acts.hooks[name].shape[1] for name in hooks]
    edges = np.concatenate([[0], np.cumsum(widths)])
    blocks = {name: slice(edges[i], edges[i + 1]) for i, name in enumerate(hooks)}
    if len(hooks) > 1:
        blocks[CONCAT] = slice(None)
    fitted = _probe_blocks([acts.hooks[name] for name in hooks], blocks, inputs, refs)
    layers = {name: scores for name, (scores, _) in fitted.items()}
    predictions = {name: pred for name, (_, pred) in fitted.items()}

    next_scores, _ = probe_features(acts.next_token, inputs, refs)
    logit_scores, _ = probe_features(centred_log(acts.next_token), inputs, refs)
    geometry = CONCAT if CONCAT in predictions else hooks[-1]
    corr_probe, corr_next = pairwise_distance_correlation(
        refs.beliefs, predictions[geometry], acts.next_token[refs.rows], seed=seed
    )
    next_token = {
        **next_scores,
        "r2_heldout_logits": logit_scores["r2_heldout"],
        "distance_corr_probe": corr_probe,
        "distance_corr_next_token": corr_next,
        "distance_probe": geometry,
    }
    return {"layers": layers, "next_token": next_token}, predictions


def optimal_logit_r2(process, inputs: ProbeInputs, refs: References) -> dict:
    """Held-out R² of probes from the exact optimal next-token logits (centred log-probabilities)
    and from the optimal next-token probabilities (references, not bounds: module doc)."""
    optimal = process.predictive(inputs.beliefs)
    logits, _ = probe_features(centred_log(optimal), inputs, refs)
    probs, _ = probe_features(optimal, inputs, refs)
    return {"optimal_logit_r2": logits["r2_heldout"], "optimal_probs_r2": probs["r2_heldout"]}


def kgram_baselines(inputs: ProbeInputs, refs: References) -> dict:
    """Held-out R² of OLS on one-hot cells of the last k tokens (truncated at the start), fit on
    the fit rows: {"kgram": {k: r2}, "kgram_weighted": {k: r2}, "kgram_features": {k: cells},
    "kgram_oracle": {k: r2 of the table of held-out cell means, i.e. fit on the held-out rows}}.
    The oracle is the best any table of the last k tokens can score on these rows."""
    out: dict[str, dict] = {"kgram": {}, "kgram_weighted": {}, "kgram_features": {},
                            "kgram_oracle": {}}
    fit = inputs.fit_rows
    for k, cells in refs.cells.items():
        n_cells = int(cells.max()) + 1
        if n_cells > KGRAM_MAX_CELLS:
            break
        pred = lookup_predictions(
            cells[fit], inputs.beliefs[fit], inputs.fit_count[fit], cells[refs.rows]
        )
        out["kgram"][str(k)] = r2_score(refs.beliefs, pred, refs.count)
        out["kgram_weighted"][str(k)] = r2_score(refs.beliefs, pred, refs.prob)
        out["kgram_features"][str(k)] = n_cells
        out["kgram_oracle"][str(k)] = refs.oracle[k]
    return out


def random_init_baselines(
    config: dict, inputs: ProbeInputs, hooks: list[str], refs: References, n_seeds: int
) -> dict:
    """The run's architecture untrained, `n_seeds` init seeds other than the run's: per hook
    {"r2_mean", "r2_sd" (ddof 1), "n_seeds", "seeds", "r2_weighted_mean",
    "r2_within_kgram_mean"}."""
    base = model_config_of_run(config)
    seeds = [base.seed + 1 + i for i in range(n_seeds)]
    records = []
    for seed in seeds:
        model = build_model(dataclasses.replace(base, seed=seed)).eval()
        record, _ = score_activations(collect_activations(model, inputs, hooks), inputs, hooks,
                                      refs=refs)
        records.append(record["layers"])
    out = {}
    for name in records[0]:
        r2 = np.array([r[name]["r2_heldout"] for r in records])
        within = {k: float(np.mean([r[name]["r2_within_kgram"][k] for r in records]))
                  for k in records[0][name]["r2_within_kgram"]
                  if all(r[name]["r2_within_kgram"][k] is not None for r in records)}
        out[name] = {
            "r2_mean": float(r2.mean()),
            "r2_sd": float(r2.std(ddof=1)) if len(r2) > 1 else None,
            "n_seeds": len(seeds),
            "seeds": seeds,
            "r2_weighted_mean": float(np.mean([r[name]["r2_heldout_weighted"] for r in records])),
            "r2_within_kgram_mean": within,
        }
    return out


def headline(probes: dict) -> dict:
    """The final layer's held-out R² at the newest checkpoint against the best baseline with no
    more features than that layer has: the untrained model, and for every k with <= width cells
    the k-gram lookup fit on the fit half and the table of held-out cell means (the best any
    table of the last k tokens can do on the held-out rows)."""
    hooks = probes["hooks"]
    final = final_layer_hook(hooks)
    last = probes["checkpoints"][-1]
    layer = last["layers"][final]
    width = probes["hook_widths"][final]
    baselines = probes["baselines"]
    candidates = {}
    untrained = baselines.get("random_init", {}).get(final)
    if untrained:
        candidates[f"untrained model ({untrained['n_seeds']} seeds)"] = untrained["r2_mean"]
    for k, r2 in baselines.get("kgram", {}).items():
        cells = baselines["kgram_features"][k]
        if cells <= width:
            candidates[f"{k}-gram lookup ({cells} features)"] = r2
            oracle = baselines.get("kgram_oracle", {}).get(k)
            if oracle is not None:
                candidates[f"{k}-gram table of held-out cell means ({cells} features)"] = oracle
    best = max(candidates, key=lambda name: _finite(candidates[name]), default=None)
    base = candidates.get(best)
    r2 = layer["r2_heldout"]
    return {
        "tokens": last["tokens"],
        "hook": final,
        "width": width,
        "r2_heldout": r2,
        "best_baseline": best,
        "baseline_r2": base,
        "margin": None if base is None else r2 - base,
        "error_ratio": None if base is None or r2 >= 1 else (1 - base) / (1 - r2),
        "resolution_depth": layer["resolution_depth"],
        "r2_within_kgram": layer["r2_within_kgram"],
        "next_token_r2": last.get("next_token", {}).get("r2_heldout"),
        "split": probes["split"]["kind"],
    }


def probed_positions(config: dict, positions: int | None) -> dict:
    """probes.json "positions": {"trained", "probed", "n_ctx", "note"}; InvalidInput when
    `positions` asks for a position the run never trained."""
    trained = trained_positions(config)
    n_ctx = int(config["data"]["n_ctx"])
    count = trained if positions is None else positions
    if count < 1:
        raise InvalidInput(f"--positions must be >= 1, got {count}")
    if count > trained:
        raise InvalidInput(
            f"--positions {count} asks for position {count - 1}, which this run never trained "
            f"(it trained positions 0..{trained - 1}); give --positions {trained} or fewer"
        )
    note = None
    if trained < n_ctx:
        note = (f"positions {trained}..{n_ctx - 1} carried no training loss (a format-1 run) and "
                "are not probed")
    return {"trained": trained, "probed": list(range(count)), "n_ctx": n_ctx, "note": note}


def probe_run(
    run: str | Path,
    last: bool = False,
    hooks: list[str] | None = None,
    max_sequences: int | None = None,
    positions: int | None = None,
    split: str = DEFAULT_SPLIT,
    prefix_len: int = DEFAULT_PREFIX_LEN,
    init_seeds: int = INIT_SEEDS,
) -> dict:
    """Probe every checkpoint of RUN (or only the newest) and write RUN/probes.json + RUN/figures/.

    positions: probe positions 0..positions-1 (default: every trained position); split / prefix_len:
    probes.activations; init_seeds: untrained models for the baseline (0: none); max_sequences: a
    seeded subset of the enumerated sequences. Returns the probes.json content. Bad input raises
    InvalidInput before anything is written.
    """
    run = Path(run)
    checkpoints = list_checkpoints(run)
    if last:
        checkpoints = checkpoints[-1:]
    config = read_run_config(run)
    position_record = probed_positions(config, positions)
    if init_seeds < 0:
        raise InvalidInput(f"init_seeds must be >= 0, got {init_seeds}")
    process = load_run_process(run)
    inputs = probe_inputs(process, len(position_record["probed"]), max_sequences=max_sequences,
                          split=split, prefix_len=prefix_len)
    refs = references(inputs)
    records, frames, final_predictions, hooks, widths = _probe_checkpoints(
        checkpoints, inputs, refs, hooks, process
    )
    result = {
        "inputs": inputs.summary(),
        "positions": position_record,
        "split": inputs.split,
        "hooks": list(hooks),
        "hook_widths": widths,
        **optimal_logit_r2(process, inputs, refs),
        "baselines": {
            "random_init": (random_init_baselines(config, inputs, hooks, refs, init_seeds)
                            if init_seeds else {}),
            **kgram_baselines(inputs, refs),
        },
    }
    add_run_geometry(result, config, inputs, hooks, init_seeds)  # probes.geometry_study
    result["checkpoints"] = _merged(run / "probes.json", records, result, last)
    result["headline"] = headline(result)
    frame_true = refs.beliefs[frames[0][3]] if frames else None
    result["figures"] = _write_figures(
        run, result, refs.beliefs, final_predictions, frame_true,
        [f[:3] for f in frames], state_chart(process, refs.beliefs),
    )
    result["figures"].update(geometry_figures(run, result, refs.beliefs, final_predictions,
                                              process.states, process.is_classical))
    write_json(run / "probes.json", result)
    return result


def _probe_checkpoints(checkpoints, inputs: ProbeInputs, refs: References, hooks, process):
    """Score every checkpoint: (records, animation frames, the newest checkpoint's held-out
    predictions, hooks, hook widths)."""
    frame_rows = np.random.default_rng(0).permutation(len(refs.rows))[:ANIMATION_POINTS]
    records, frames, final_predictions, widths = [], [], {}, {}
    for tokens, path in progress(checkpoints, "probing checkpoints", unit="ckpt"):
        model = load_checkpoint(path)
        if hooks is None:
            hooks = residual_hooks(model)
        check_hooks(model, hooks, run=path.parent.parent)
        acts = collect_activations(model, inputs, hooks)
        record, predictions = score_activations(acts, inputs, hooks, refs=refs)
        add_checkpoint_geometry(record, acts, inputs, process)  # probes.geometry_study
        records.append({"tokens": int(tokens), **record})
        headline_probe = CONCAT if CONCAT in predictions else hooks[-1]
        frames.append((int(tokens), predictions[headline_probe][frame_rows],
                       record["layers"][headline_probe], frame_rows))
        final_predictions = predictions
        widths = {h: int(acts.hooks[h].shape[1]) for h in hooks}
    if len(hooks) > 1:
        widths[CONCAT] = sum(widths.values())
    return records, frames, final_predictions, hooks, widths


def _probe_blocks(
    features: list[np.ndarray], blocks: dict[str, slice], inputs: ProbeInputs, refs: References
) -> dict[str, tuple[dict, np.ndarray]]:
    """Fit, score and shuffle-control a probe on column blocks of the features (R, d_i) side by
    side, sharing one Gram matrix per fold of the fit half (their merge is the fit half's) and one
    held-out matrix: {block: (scores, held-out predictions (R_ho, S))}."""
    ho, S = refs.rows, inputs.beliefs.shape[1]
    targets = np.concatenate([inputs.beliefs, inputs.shuffled_beliefs], axis=1)
    folds = []
    for weights in inputs.fold_count:  # one Gram per fold; together they are the fit half's
        rows = np.flatnonzero(weights > 0)
        X_fold = np.concatenate([f[rows] for f in features], axis=1)
        folds.append(moments(X_fold, targets[rows], weights[rows]))
        del X_fold
    shared = merge_moments(folds)
    X_heldout = np.concatenate([f[ho] for f in features], axis=1)  # float32, as captured
    beliefs = slice(0, S)
    out = {}
    for name, cols in blocks.items():
        # probe and control in one solve: targets are [beliefs, shuffled beliefs]
        m = shared.select(cols)
        ridge = cv_ridge([f.select(cols) for f in folds], beliefs)
        probe = BeliefProbe(ridge * gram_scale(m)).fit_moments(m)
        both = _predict(X_heldout, cols, probe)
        pred, control = both[:, beliefs], both[:, S:]
        scores = heldout_scores(pred, refs)
        scores["r2_shuffle"] = r2_score(refs.beliefs, control, refs.count)
        scores["r2_insample"] = r2_insample(
            m.select(slice(None), beliefs), probe.coef_[:, beliefs], probe.intercept_[beliefs]
        )
        scores["ridge"] = ridge
        out[name] = (scores, pred)
    return out


def _predict(X: np.ndarray, cols: slice, probe: BeliefProbe) -> np.ndarray:
    """probe.predict(X[:, cols]) in float64, converting GRAM_CHUNK rows at a time (no float64
    copy of the whole held-out matrix)."""
    coef, intercept = torch.from_numpy(probe.coef_), torch.from_numpy(probe.intercept_)
    out = np.empty((len(X), coef.shape[1]))
    for start in range(0, len(X), GRAM_CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(X[start : start + GRAM_CHUNK, cols]))
        out[start : start + GRAM_CHUNK] = (chunk.double() @ coef + intercept).numpy()
    return out


def _merged(path: Path, records: list[dict], result: dict, last: bool) -> list[dict]:
    """With --last, keep the other checkpoints of an existing probes.json probed the same way
    (same hooks, positions and split)."""
    if not (last and path.is_file()):
        return records
    try:
        old = read_json(path)
    except InvalidInput:
        return records
    same = ("hooks", "positions", "split")
    if not isinstance(old, dict) or any(old.get(key) != result[key] for key in same):
        return records
    new_tokens = {r["tokens"] for r in records}
    kept = [r for r in old.get("checkpoints", []) if r.get("tokens") not in new_tokens]
    return sorted(kept + records, key=lambda r: r["tokens"])


def _write_figures(
    run: Path,
    result: dict,
    true: np.ndarray,
    predictions: dict[str, np.ndarray],
    frame_true: np.ndarray | None,
    frames: list,
    labels: list[str],
) -> dict[str, str]:
    """Render the belief figures into RUN/figures/ (atomically); returns name -> path in RUN.

    true (R_ho, S) held-out beliefs and predictions {probe: (R_ho, S)} of the newest checkpoint;
    frame_true (n, S) the animation's fixed subsample and frames [(tokens, pred (n, S), scores)]."""
    figures = run / "figures"
    last = result["checkpoints"][-1]
    hooks = result["hooks"]
    best = max(hooks, key=lambda h: _finite(last["layers"][h]["r2_heldout"]))
    shown = {h: predictions[h] for h in dict.fromkeys([best, final_layer_hook(hooks)])}
    if CONCAT in predictions:
        shown[CONCAT] = predictions[CONCAT]
    out = {"simplex": _save(figures / "probe_simplex.png", belief_figures.simplex_comparison(
        true, shown, {h: last["layers"][h]["r2_heldout"] for h in shown}, last["tokens"], labels,
    ), run)}
    out["layers"] = _save(figures / "probe_layers.png", belief_figures.layer_bars(result), run)
    if len(result["checkpoints"]) > 1:
        out["emergence"] = _save(
            figures / "probe_emergence.png", belief_figures.emergence(result), run
        )
        out["positions"] = _save(
            figures / "probe_positions.png", belief_figures.position_heatmap(result), run
        )
    if len(frames) > 1:
        gif = belief_figures.simplex_animation(frame_true, frames, labels)
        out["animation"] = _save(figures / "probe_simplex.gif", gif, run)
    return out


def _save(path: Path, data: bytes, run: Path) -> str:
    write_atomic(path, data)
    return str(path.relative_to(run))


def _finite(value: float | None) -> float:
    return value if value is not None and value == value else -np.inf
