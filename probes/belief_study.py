"""Belief probes over a run's checkpoints: RUN/probes.json and the belief figures (docs/probes.md).

Only positions the run trained are probed (models.checkpoints.trained_positions): a format-1 run's
last position never carried a loss and is left out, and probes.json says so under "positions".
Per checkpoint and hook (and `concat`, the hooks side by side): least squares with intercept and
a ridge penalty chosen by cross-validation over subtrees of the fit half (0, plain OLS, is one of
the choices; probes.belief_probe.cv_ridge), fit on the fit half, scored on the held-out half
(probes.activations: split by prefix subtree by default), with the same probe on row-shuffled
beliefs as a control, the in-sample R² (the paper's kind of metric), held-out R² on the prefixes
the fit half never saw, per-position scores, and two scores of what the layer adds:
  r2_beyond_prediction  the layer (with the model's next-token distribution beside it) fit to the
                        remainder of the belief once its least-squares fit on the model's
                        next-token distribution (fit half) is removed, scored held out:
                        1 - SSE / sum |remainder|^2 (belief_probe.r2_of_remainder). 0 when the
                        layer adds nothing linear to the next-token output, 1 when it holds the
                        exact belief.
  r2_fine.<k>           R² of within-cell deviations (cells = last k tokens, truncated at the
                        sequence start), the cell means of the truth and of the predictions each
                        removed (belief_probe.fine_structure), and `fine_corr.<k>` their
                        correlation; not a function of the MSE.
One place builds a probe's record (`hook_record`); analyses that add per-probe scores add them
there. The geometry of each hook's activations (effective dimension, read-out subspaces) is added
beside it per checkpoint by probes.geometry_study, which also draws its figures.
Baselines, once per run: the same architecture untrained (other init seeds; its beyond-prediction
score uses the trained model's newest next-token distribution, so the target is the same), tables
of the last k tokens (fitted on the fit half, and the oracle of held-out cell means) for every
k = 1..KGRAM_MAX, and probes from the exact optimal next-token distribution. The headline
(probes.belief_evidence.headline) names the case: belief affine in the next-token distribution
(optimal_probs_r2 >= AFFINE_R2: geometry implied by the loss) or the share carried beyond the
next token; bootstrap intervals over held-out subtrees say whether a fine-structure depth is
robust. `readability` warns when the fit half has few rows per probe feature or a probe's
held-out score falls far below its in-sample one (probes.belief_evidence).
Inputs, targets, split, shuffle and k-gram cells are built once and shared by every checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hmm.errors import InvalidInput
from hmm.files import read_json, write_atomic
from hmm.plots import state_chart
from hmm.progress import progress
from hmm.records import write_record
from models.architectures import (
    CONCAT,
    build_model,
    final_layer_hook,
    residual_hooks,
    residual_width,
)
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
    sample_sequences,
)
from probes.belief_evidence import (
    bootstrap_intervals,
    headline,
    r2_scorer,
    readability,
    score_bands,
)
from probes.belief_probe import (
    CONSTANT_VARIANCE,
    GRAM_CHUNK,
    BeliefProbe,
    Moments,
    cv_ridge,
    fine_structure,
    gram_scale,
    leave_one_out_cell_means,
    lookup_predictions,
    merge_moments,
    moments,
    mse,
    pairwise_distance_correlation,
    r2_insample,
    r2_of_remainder,
    r2_pooled,
    r2_score,
    remainder_beyond,
    within_cell_deviations,
)
from probes.geometry_study import add_checkpoint_geometry, add_run_geometry, geometry_figures
from probes.run_files import ProbesFile

LOG_FLOOR = 1e-9  # optimal log-probabilities of impossible symbols are clipped here (no -inf)
ANIMATION_POINTS = 6000
KGRAM_MAX = 6  # k = 1..KGRAM_MAX (at most probed length - 1) for tables and r2_fine
INIT_SEEDS = 3
NEXT_TOKEN = "next_token"  # the next-token probe's key among a checkpoint's fits


@dataclass
class References:
    """What every checkpoint's scores share, computed once per run (`references`).

    rows (R_ho,) held-out row indices; beliefs (R_ho, S); count, prob (R_ho,) their weights;
    by_position [index arrays into rows, one per position]; unseen: index array into rows of the
    held-out rows no fit sequence shares; cells {k: (R,) k-gram cell per row} and heldout_cells
    {k: (R_ho,) the held-out rows' cells}; deviations {k:
    (R_ho, S) held-out beliefs minus their k-gram cell mean (count weights), None when they are
    <= CONSTANT_VARIANCE x the total variation (every cell holds one belief: r2_fine undefined)};
    oracle {k: R² (coordinate mean) of the table of held-out cell means on the held-out rows};
    targets {name: (R_ho, k)} the held-out rows' probe targets beyond the belief
    (inputs.targets); optimal (R_ho, V) the exact optimal next-token distribution of the held-out
    rows (None when not given: no excess loss)."""

    rows: np.ndarray
    beliefs: np.ndarray
    count: np.ndarray
    prob: np.ndarray
    by_position: list[np.ndarray]
    unseen: np.ndarray
    cells: dict[int, np.ndarray]
    heldout_cells: dict[int, np.ndarray]
    deviations: dict[int, np.ndarray | None]
    oracle: dict[int, float | None]
    targets: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    optimal: np.ndarray | None = None


def references(
    inputs: ProbeInputs, k_max: int = KGRAM_MAX, optimal: np.ndarray | None = None
) -> References:
    """Held-out targets, weights, position groups, k-gram cells and deviations of `inputs`;
    optimal (R, V): the exact optimal next-token distribution of every row (for the excess
    loss)."""
    rows = inputs.heldout_rows
    count = inputs.heldout_count[rows]
    positions = inputs.positions[rows]
    Y = inputs.beliefs[rows]
    sst = count @ (Y - count @ Y / count.sum()) ** 2
    cells, deviations, oracle = {}, {}, {}
    for k in range(1, min(k_max, inputs.tokens.shape[1] - 1) + 1):
        cells[k] = kgram_cells(inputs, k)
        dev = within_cell_deviations(cells[k][rows], Y, count)
        ssw = count @ dev**2
        deviations[k] = dev if ssw.sum() > CONSTANT_VARIANCE * sst.sum() else None
        oracle[k] = oracle_r2(cells[k][rows], Y, count, leave_one_out=not inputs.every_input)
    return References(
        rows=rows, beliefs=Y, count=count, prob=inputs.heldout_prob[rows],
        by_position=[np.flatnonzero(positions == t) for t in range(inputs.tokens.shape[1])],
        unseen=np.flatnonzero(inputs.fit_count[rows] == 0),
        cells=cells, heldout_cells={k: c[rows] for k, c in cells.items()},
        deviations=deviations, oracle=oracle,
        targets={name: Y[rows] for name, Y in inputs.targets.items()},
        optimal=None if optimal is None else np.asarray(optimal, dtype=np.float64)[rows],
    )


def oracle_r2(
    cells: np.ndarray, Y: np.ndarray, weights: np.ndarray, leave_one_out: bool = False
) -> float | None:
    """R² (coordinate mean over non-constant coordinates) of the table of cell means of Y (n, S)
    on the very rows it is the mean of (cells (n,)); None when every coordinate is constant.

    Over every enumerated input that table is the exact conditional mean given the cell. Over a
    sample, a cell holding one sampled sequence would "predict" it exactly whatever the last k
    tokens say, so with `leave_one_out` (weights: copies) each copy is predicted from the other
    copies of its cell (`leave_one_out_cell_means`)."""
    sst = weights @ (Y - weights @ Y / weights.sum()) ** 2
    defined = sst > CONSTANT_VARIANCE * max(sst.max(initial=0.0), np.finfo(float).tiny)
    if not defined.any():
        return None
    if leave_one_out:
        ssw = weights @ (Y - leave_one_out_cell_means(cells, Y, weights)) ** 2
    else:
        ssw = weights @ within_cell_deviations(cells, Y, weights) ** 2
    return float(np.mean(1.0 - ssw[defined] / sst[defined]))


def excess_loss(optimal: np.ndarray, model: np.ndarray, weights: np.ndarray) -> float:
    """Weighted mean over rows of KL(optimal || model) in nats (optimal, model (n, V) next-token
    distributions): the expected excess of the model's loss over the exact optimum at those
    prefixes (model probabilities floored at LOG_FLOOR)."""
    p = np.asarray(optimal, dtype=np.float64)
    q = np.maximum(np.asarray(model, dtype=np.float64), LOG_FLOOR)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(q)), 0.0).sum(axis=1)
    return float(weights @ kl / weights.sum())


def heldout_scores(pred: np.ndarray, refs: References) -> dict:
    """Held-out scores of predictions (R_ho, S) of refs.beliefs (keys in docs/probes.md)."""
    Y, count, unseen = refs.beliefs, refs.count, refs.unseen
    fine, corr = {}, {}
    for k, dev in refs.deviations.items():
        fine[str(k)], corr[str(k)] = (None, None) if dev is None else fine_structure(
            dev, pred, refs.heldout_cells[k], count
        )
    return {
        "r2_heldout": r2_score(Y, pred, count),
        "r2_heldout_weighted": r2_score(Y, pred, refs.prob),
        "r2_heldout_unseen": r2_score(Y[unseen], pred[unseen], count[unseen]) if len(unseen)
        else None,
        "r2_pooled": r2_pooled(Y, pred, count),
        "mse_heldout": mse(Y, pred, count),
        "r2_by_position": [r2_score(Y[i], pred[i], count[i]) if len(i) else None
                           for i in refs.by_position],
        "mse_by_position": [mse(Y[i], pred[i], count[i]) if len(i) else None
                            for i in refs.by_position],
        "r2_fine": fine,
        "fine_corr": corr,
    }


def centred_log(probs: np.ndarray) -> np.ndarray:
    """Logits of distributions (n, V): log-probabilities (floored at LOG_FLOOR) minus row mean."""
    logp = np.log(np.maximum(probs, LOG_FLOOR))
    return logp - logp.mean(axis=1, keepdims=True)


def probe_features(
    X: np.ndarray, inputs: ProbeInputs, refs: References | None = None,
    next_token: np.ndarray | None = None,
) -> tuple[dict, np.ndarray]:
    """Fit a probe on the fit rows of X (R, d) and score it held-out: (scores, held-out
    predictions). next_token (R, V): also score it beyond that next-token distribution."""
    refs = refs if refs is not None else references(inputs)
    fit = _probe_blocks([X], {"x": slice(0, X.shape[1])}, inputs, refs, next_token)["x"]
    return fit.record, fit.pred


def score_activations(
    acts: Activations, inputs: ProbeInputs, hooks: list[str], seed: int = 0,
    refs: References | None = None, next_token: np.ndarray | None = None,
) -> tuple[dict, dict[str, BlockFit]]:
    """One checkpoint's record {"layers", "next_token"} and each probe's held-out fit (the
    next-token probe's under NEXT_TOKEN).

    One Gram matrix of all hooks side by side serves every single-hook probe (diagonal blocks).
    next_token (R, V): the distribution the beyond-prediction score is measured against (default:
    this model's own, acts.next_token; the untrained baselines pass the trained model's)."""
    refs = refs if refs is not None else references(inputs)
    reference = acts.next_token if next_token is None else next_token
    widths = [acts.hooks[name].shape[1] for name in hooks]
    edges = np.concatenate([[0], np.cumsum(widths)])
    blocks = {name: slice(edges[i], edges[i + 1]) for i, name in enumerate(hooks)}
    if len(hooks) > 1:
        blocks[CONCAT] = slice(0, int(edges[-1]))
    fits = _probe_blocks([acts.hooks[name] for name in hooks], blocks, inputs, refs, reference)
    layers = {name: fit.record for name, fit in fits.items()}

    next_scores, next_pred = probe_features(acts.next_token, inputs, refs, reference)
    fits[NEXT_TOKEN] = BlockFit(next_scores, next_pred)
    logit_scores, _ = probe_features(centred_log(acts.next_token), inputs, refs)
    geometry = CONCAT if CONCAT in fits else hooks[-1]
    corr_probe, corr_next = pairwise_distance_correlation(
        refs.beliefs, fits[geometry].pred, acts.next_token[refs.rows], seed=seed
    )
    next_record = {
        **next_scores,
        "r2_heldout_logits": logit_scores["r2_heldout"],
        "distance_corr_probe": corr_probe,
        "distance_corr_next_token": corr_next,
        "distance_probe": geometry,
    }
    if refs.optimal is not None:
        next_record["excess_loss"] = excess_loss(refs.optimal, acts.next_token[refs.rows],
                                                 refs.prob)
    return {"layers": layers, "next_token": next_record}, fits


def optimal_logit_r2(
    process, inputs: ProbeInputs, refs: References, keep: dict | None = None
) -> dict:
    """Held-out R² of probes from the exact optimal next-token logits (centred log-probabilities)
    and from the optimal next-token probabilities (references, not bounds: module doc). keep:
    receives their held-out predictions under "optimal_logits" and "optimal_probs"."""
    optimal = process.predictive(inputs.beliefs)
    logits, logit_pred = probe_features(centred_log(optimal), inputs, refs)
    probs, prob_pred = probe_features(optimal, inputs, refs)
    if keep is not None:
        keep.update(optimal_logits=logit_pred, optimal_probs=prob_pred)
    return {"optimal_logit_r2": logits["r2_heldout"], "optimal_probs_r2": probs["r2_heldout"]}


def kgram_baselines(inputs: ProbeInputs, refs: References) -> dict:
    """Held-out R² of tables of the last k tokens (truncated at the start), every k of `refs`:
    {"kgram": {k: r2 of the table fit on the fit rows (OLS on one-hot cells)}, "kgram_weighted":
    {k: the same, probability weights}, "kgram_features": {k: cells}, "kgram_oracle": {k: r2 of
    the table of held-out cell means, i.e. fit on the held-out rows}}. The oracle is the best any
    table of the last k tokens can score on these rows. Lookups are closed-form cell means, so
    every k is computed whatever its number of cells."""
    out: dict[str, dict] = {"kgram": {}, "kgram_weighted": {}, "kgram_features": {},
                            "kgram_oracle": {}}
    fit = inputs.fit_rows
    for k, cells in refs.cells.items():
        pred = lookup_predictions(
            cells[fit], inputs.beliefs[fit], inputs.fit_count[fit], cells[refs.rows]
        )
        out["kgram"][str(k)] = r2_score(refs.beliefs, pred, refs.count)
        out["kgram_weighted"][str(k)] = r2_score(refs.beliefs, pred, refs.prob)
        out["kgram_features"][str(k)] = int(cells.max()) + 1
        out["kgram_oracle"][str(k)] = refs.oracle[k]
    return out


def random_init_baselines(
    config: dict, inputs: ProbeInputs, hooks: list[str], refs: References, n_seeds: int,
    next_token: np.ndarray | None = None, keep: dict | None = None,
) -> dict:
    """The run's architecture untrained, `n_seeds` init seeds other than the run's: per hook
    {"r2_mean", "r2_sd" (ddof 1), "n_seeds", "seeds", "r2_weighted_mean", "r2_beyond_prediction"
    and "r2_beyond_prediction_sd" (against `next_token` (R, V), the trained model's distribution;
    None without it), "r2_fine": {k: mean}}. keep {hook: []}: receives each seed's held-out
    predictions (float32) of those hooks."""
    base = model_config_of_run(config)
    seeds = [base.seed + 1 + i for i in range(n_seeds)]
    records = []
    for seed in seeds:
        model = build_model(dataclasses.replace(base, seed=seed)).eval()
        acts = collect_activations(model, inputs, hooks)
        record, fits = score_activations(acts, inputs, hooks, refs=refs,
                                         next_token=next_token if next_token is not None
                                         else acts.next_token)
        records.append(record["layers"])
        for name, preds in (keep or {}).items():
            preds.append(fits[name].pred.astype(np.float32))
    out = {}
    for name in records[0]:
        r2 = np.array([r[name]["r2_heldout"] for r in records])
        beyond = np.array([r[name]["r2_beyond_prediction"] for r in records])
        fine = {k: float(np.mean([r[name]["r2_fine"][k] for r in records]))
                for k in records[0][name]["r2_fine"]
                if all(r[name]["r2_fine"][k] is not None for r in records)}
        out[name] = {
            "r2_mean": float(r2.mean()),
            "r2_sd": float(r2.std(ddof=1)) if len(r2) > 1 else None,
            "n_seeds": len(seeds),
            "seeds": seeds,
            "r2_weighted_mean": float(np.mean([r[name]["r2_heldout_weighted"] for r in records])),
            "r2_beyond_prediction": float(beyond.mean()) if next_token is not None else None,
            "r2_beyond_prediction_sd": float(beyond.std(ddof=1))
            if next_token is not None and len(beyond) > 1 else None,
            "r2_fine": fine,
        }
    return out


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
    seeded subset of the enumerated inputs (a sample, when the inputs cannot be enumerated, has
    enough sequences for ROWS_PER_FEATURE fit rows per feature of the widest probe). Returns the
    probes.json content. Bad input raises InvalidInput before anything is written.
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
    length = len(position_record["probed"])
    inputs = probe_inputs(
        process, length, max_sequences=max_sequences, split=split, prefix_len=prefix_len,
        n_samples=sample_sequences(residual_width(model_config_of_run(config)), length),
    )
    refs = references(inputs, optimal=process.predictive(inputs.beliefs))
    records, frames, final_fits, hooks, widths, final_next = _probe_checkpoints(
        checkpoints, inputs, refs, hooks, process
    )
    kept = {"untrained": {h: [] for h in (final_layer_hook(hooks), CONCAT) if h in final_fits}}
    result = {
        "inputs": inputs.summary(),
        "positions": position_record,
        "split": inputs.split,
        "hooks": list(hooks),
        "hook_widths": widths,
        **optimal_logit_r2(process, inputs, refs, keep=kept),
        "baselines": {
            "random_init": (random_init_baselines(config, inputs, hooks, refs, init_seeds,
                                                  final_next, keep=kept["untrained"])
                            if init_seeds else {}),
            **kgram_baselines(inputs, refs),
        },
    }
    add_run_geometry(result, config, inputs, hooks, init_seeds)  # probes.geometry_study
    result["checkpoints"] = _merged(run / "probes.json", records, result, last)
    _add_evidence(result, inputs, refs, final_fits, records[-1], {**kept, "next": final_next})
    _write_result(run, result, refs, final_fits, frames, process)
    return result


def _write_result(
    run: Path, result: dict, refs: References, fits: dict[str, BlockFit], frames: list, process
) -> None:
    """RUN/probes.json, written before the figures too, so a figure's failure loses no number."""
    write_record(run / "probes.json", ProbesFile, result)
    result["figures"] = _write_figures(
        run, result, refs.beliefs, {h: fit.pred for h, fit in fits.items()}, frames, process,
        factors=_factor_views(process, refs, fits, result["hooks"]),
    )
    write_record(run / "probes.json", ProbesFile, result)


def _add_evidence(
    result: dict, inputs: ProbeInputs, refs: References, fits: dict[str, BlockFit],
    newest: dict, kept: dict,
) -> None:
    """result["bootstrap"] (final layer and concat of the newest checkpoint `newest`),
    ["intervals"] (every score shown, `score_intervals`; the targets' ci95 go into `newest`),
    ["readability"] and ["headline"] (probes.belief_evidence)."""
    tokens = newest["tokens"]
    shown = [h for h in (final_layer_hook(result["hooks"]), CONCAT) if h in fits]
    result["bootstrap"] = bootstrap_intervals(inputs, refs, {h: fits[h] for h in shown}, tokens)
    result["intervals"] = score_intervals(inputs, refs, fits, kept, newest)
    result["readability"] = readability(result)
    result["headline"] = headline(result)


def score_intervals(
    inputs: ProbeInputs, refs: References, fits: dict[str, BlockFit], kept: dict, newest: dict
) -> dict:
    """probes.json "intervals": 95 % bootstrap intervals (belief_evidence.score_bands: held-out
    sequences of a sample, held-out subtrees of an enumeration) of the newest checkpoint's
    held-out R² per probe and of its next-token probe, the optimal-prediction probes, every
    k-gram table (fitted and oracle), the untrained baseline's seed mean (final layer and
    concat) and the excess loss; each target's ci95 is written into `newest`'s records."""
    out = score_bands(inputs, refs, _interval_scorers(inputs, refs, fits, kept))
    bands = out.pop("bands")

    def record_of(hook: str) -> dict:
        return newest["next_token"] if hook == NEXT_TOKEN else newest["layers"][hook]

    for (group, key), value in bands.items():
        if group == "targets":
            hook, name = key.split("|")
            record_of(hook)["targets"][name]["ci95"] = value
        elif key is None:
            out[group] = value
        else:
            out.setdefault(group, {})[key] = value
    for h, fit in fits.items():  # the belief target's interval is the probe's own
        if fit.targets:
            own = out["next_token"] if h == NEXT_TOKEN else out["layers"][h]
            record_of(h)["targets"]["belief"]["ci95"] = own
    return {"tokens": newest["tokens"], **out}


def _interval_scorers(
    inputs: ProbeInputs, refs: References, fits: dict[str, BlockFit], kept: dict
) -> dict[tuple, object]:
    """{(group, key or None): score_bands scorer} for every score score_intervals bands."""
    scores = {("layers", h): r2_scorer(refs.beliefs, fit.pred) for h, fit in fits.items()
              if h != NEXT_TOKEN}
    scores["next_token", None] = r2_scorer(refs.beliefs, fits[NEXT_TOKEN].pred)
    for name in ("optimal_probs", "optimal_logits"):
        scores[name, None] = r2_scorer(refs.beliefs, kept[name])
    for k, cells in refs.cells.items():
        fitted = lookup_predictions(cells[inputs.fit_rows], inputs.beliefs[inputs.fit_rows],
                                    inputs.fit_count[inputs.fit_rows], cells[refs.rows])
        scores["kgram", str(k)] = r2_scorer(refs.beliefs, fitted)
        scores["kgram_oracle", str(k)] = _oracle_scorer(refs.heldout_cells[k], refs.beliefs,
                                                        leave_one_out=not inputs.every_input)
    for h, preds in kept["untrained"].items():
        if preds:
            scores["random_init", h] = _mean_scorer([r2_scorer(refs.beliefs, p) for p in preds])
    if refs.optimal is not None and kept.get("next") is not None:
        scores["excess_loss", None] = _excess_scorer(refs, kept["next"][refs.rows])
    for h, fit in fits.items():
        for name, pred in fit.targets.items():
            scores["targets", f"{h}|{name}"] = r2_scorer(refs.targets[name], pred)
    return scores


def _oracle_scorer(cells: np.ndarray, Y: np.ndarray, leave_one_out: bool):
    return lambda rows, w: oracle_r2(cells[rows], Y[rows], w, leave_one_out)


def _mean_scorer(scorers: list):
    return lambda rows, w: float(np.mean([f(rows, w) for f in scorers]))


def _excess_scorer(refs: References, model: np.ndarray):
    """Excess loss under resampled count weights, probability-weighted as the score itself."""
    per_count = refs.prob / refs.count
    return lambda rows, w: excess_loss(refs.optimal[rows], model[rows], w * per_count[rows])


def _probe_checkpoints(checkpoints, inputs: ProbeInputs, refs: References, hooks, process):
    """Score every checkpoint: (records, animation frames, the newest checkpoint's fits, hooks,
    hook widths, the newest checkpoint's next-token distribution (R, V))."""
    frame_rows = np.random.default_rng(0).permutation(len(refs.rows))[:ANIMATION_POINTS]
    records, frames, final_fits, widths, next_token = [], [], {}, {}, None
    for tokens, path in progress(checkpoints, "probing checkpoints", unit="ckpt"):
        model = load_checkpoint(path)
        if hooks is None:
            hooks = residual_hooks(model)
        check_hooks(model, hooks, run=path.parent.parent)
        acts = collect_activations(model, inputs, hooks)
        record, fits = score_activations(acts, inputs, hooks, refs=refs)
        add_checkpoint_geometry(record, acts, inputs, process)  # probes.geometry_study
        records.append({"tokens": int(tokens), **record})
        headline_probe = CONCAT if CONCAT in fits else hooks[-1]
        frames.append((int(tokens), fits[headline_probe].pred[frame_rows],
                       record["layers"][headline_probe], frame_rows))
        final_fits, next_token = fits, acts.next_token
        widths = {h: int(acts.hooks[h].shape[1]) for h in hooks}
    if len(hooks) > 1:
        widths[CONCAT] = sum(widths.values())
    return records, frames, final_fits, hooks, widths, next_token


@dataclass
class BlockFit:
    """One probe's held-out outcome: record (its probes.json entry), pred (R_ho, S) held-out
    predictions, remainder and remainder_pred (R_ho, S) the belief beyond the next-token
    distribution and the probe's prediction of it (None without a next-token reference); targets
    {name: (R_ho, k)} held-out predictions of the process's other targets (target_fits)."""

    record: dict
    pred: np.ndarray
    remainder: np.ndarray | None = None
    remainder_pred: np.ndarray | None = None
    targets: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def _probe_blocks(
    features: list[np.ndarray], blocks: dict[str, slice], inputs: ProbeInputs, refs: References,
    next_token: np.ndarray | None = None,
) -> dict[str, BlockFit]:
    """Fit, score and shuffle-control a probe on column blocks of the features (R, d_i) side by
    side, sharing one Gram matrix per fold of the fit half (their merge is the fit half's) and one
    held-out matrix. With next_token (R, V) its columns join the Gram and the belief's remainder
    beyond it (fit half's least squares) joins the targets: targets are [beliefs, shuffled
    beliefs, remainder]."""
    targets = [inputs.beliefs, inputs.shuffled_beliefs]
    beyond = None
    if next_token is not None:
        width = sum(f.shape[1] for f in features)
        beyond = slice(width, width + next_token.shape[1])
        features = [*features, next_token]
        targets.append(remainder_beyond(next_token, inputs.beliefs, inputs.fit_count))
    extras, start = {}, sum(t.shape[1] for t in targets)
    for name, values in inputs.targets.items():  # the process's other targets (none: plain HMM)
        extras[name] = slice(start, start + values.shape[1])
        targets.append(values)
        start += values.shape[1]
    Y = np.concatenate(targets, axis=1)
    folds = []
    for weights in inputs.fold_count:  # one Gram per fold; together they are the fit half's
        rows = np.flatnonzero(weights > 0)
        X_fold = np.concatenate([f[rows] for f in features], axis=1)
        folds.append(moments(X_fold, Y[rows], weights[rows]))
        del X_fold
    shared = merge_moments(folds)
    X_heldout = np.concatenate([f[refs.rows] for f in features], axis=1)  # float32, as captured
    S = refs.beliefs.shape[1]
    remainder = Y[refs.rows, 2 * S : 3 * S] if beyond is not None else None
    fits = {name: hook_record(shared, folds, X_heldout, cols, refs, beyond, remainder)
            for name, cols in blocks.items()}
    for name, cols in blocks.items() if extras else ():
        target_fits(fits[name], shared, folds, X_heldout, cols, refs, extras)
    return fits


def target_fits(
    fit: BlockFit, shared: Moments, folds: list[Moments], X_heldout: np.ndarray, cols: slice,
    refs: References, extras: dict[str, slice],
) -> None:
    """The probe on X[:, cols] fitted to each of the process's other targets (their columns
    `extras` in the moments; ridge by cross-validation per target), scored held out: adds
    record["targets"] {name: {"r2_heldout", "ci95": None}} ("belief" the probe's own score;
    ci95 is filled for the newest checkpoint by _add_evidence) and fit.targets (held-out
    predictions)."""
    coefs, intercepts = [], []
    for target in extras.values():
        m = shared.select(cols, target)
        ridge = cv_ridge([f.select(cols, target) for f in folds], slice(None))
        probe = BeliefProbe(ridge * gram_scale(m)).fit_moments(m)
        coefs.append(probe.coef_)
        intercepts.append(probe.intercept_)
    predicted = _predict(X_heldout, [cols], np.concatenate(coefs, 1), np.concatenate(intercepts))
    fit.record["targets"] = {"belief": {"r2_heldout": fit.record["r2_heldout"], "ci95": None}}
    start = 0
    for name, target in extras.items():
        width = target.stop - target.start
        fit.targets[name] = predicted[:, start : start + width]
        start += width
        fit.record["targets"][name] = {
            "r2_heldout": r2_score(refs.targets[name], fit.targets[name], refs.count),
            "ci95": None,
        }


def hook_record(
    shared: Moments, folds: list[Moments], X_heldout: np.ndarray, cols: slice, refs: References,
    beyond: slice | None = None, remainder: np.ndarray | None = None,
) -> BlockFit:
    """THE place a probe's record is built: fit on the fit half's moments `shared` (ridge by
    cross-validation over `folds`), predict the held-out rows X_heldout[:, cols], score.

    Targets in the moments: [beliefs, shuffled beliefs] (S each), then the remainder beyond the
    next-token distribution, whose feature columns are `beyond`; remainder (R_ho, S) held out;
    then the process's other targets (target_fits)."""
    S = refs.beliefs.shape[1]
    beliefs, both = slice(0, S), slice(0, 2 * S)
    m = shared.select(cols, both)  # probe and control in one solve, same ridge
    ridge = cv_ridge([f.select(cols, both) for f in folds], beliefs)
    probe = BeliefProbe(ridge * gram_scale(m)).fit_moments(m)
    record = {"r2_insample": r2_insample(m.select(slice(None), beliefs), probe.coef_[:, beliefs],
                                         probe.intercept_[beliefs]), "ridge": ridge}
    parts, coef, intercept = [cols], probe.coef_, probe.intercept_
    if beyond is not None:
        # the layer with the next-token distribution beside it, on what that distribution misses
        rest, parts = slice(2 * S, 3 * S), [cols, beyond]
        columns = np.r_[cols, beyond]
        m = shared.select(columns, rest)
        ridge_rest = cv_ridge([f.select(columns, rest) for f in folds], slice(None))
        rest_probe = BeliefProbe(ridge_rest * gram_scale(m)).fit_moments(m)
        extra = beyond.stop - beyond.start
        coef = np.concatenate([np.pad(coef, ((0, extra), (0, 0))), rest_probe.coef_], 1)
        intercept = np.concatenate([intercept, rest_probe.intercept_])
    predicted = _predict(X_heldout, parts, coef, intercept)  # one pass for every target
    fit = BlockFit(record, predicted[:, beliefs])
    record.update(heldout_scores(fit.pred, refs))
    record["r2_shuffle"] = r2_score(refs.beliefs, predicted[:, S : 2 * S], refs.count)
    if beyond is not None:
        fit.remainder, fit.remainder_pred = remainder, predicted[:, 2 * S :]
        record["r2_beyond_prediction"] = r2_of_remainder(remainder, fit.remainder_pred,
                                                         refs.count)
        record["ridge_beyond_prediction"] = ridge_rest
    return fit


def _predict(
    X: np.ndarray, parts: list[slice], coef: np.ndarray, intercept: np.ndarray
) -> np.ndarray:
    """X[:, parts side by side] @ coef + intercept in float64, converting GRAM_CHUNK rows at a
    time (no float64 copy of the whole held-out matrix, no fancy-indexed copy of its columns)."""
    coef, intercept = torch.from_numpy(coef), torch.from_numpy(intercept)
    out = np.empty((len(X), coef.shape[1]))
    for start in range(0, len(X), GRAM_CHUNK):
        total, row = intercept.clone(), 0
        for part in parts:
            chunk = torch.from_numpy(np.ascontiguousarray(X[start : start + GRAM_CHUNK, part]))
            total = total + chunk.double() @ coef[row : row + chunk.shape[1]]
            row += chunk.shape[1]
        out[start : start + GRAM_CHUNK] = total.numpy()
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


def _factor_views(process, refs: References, fits: dict[str, BlockFit], hooks) -> tuple | None:
    """A product's (exact factor beliefs, the final layer's read-out of them, weights, {factor:
    columns}, hook) for `belief_figures.factor_comparison`; None for any other process."""
    groups = process.target_groups().get("factors")
    hook = final_layer_hook(list(hooks))
    fit = fits.get(hook)
    if not groups or fit is None or "factors" not in fit.targets:
        return None
    return refs.targets["factors"], fit.targets["factors"], refs.count, groups, hook


def _write_figures(
    run: Path, result: dict, true: np.ndarray, predictions: dict[str, np.ndarray], frames: list,
    process, factors: tuple | None = None,
) -> dict[str, str]:
    """Render the belief and geometry figures into RUN/figures/ (atomically); returns name -> path
    in RUN.

    true (R_ho, S) held-out beliefs and predictions {probe: (R_ho, S)} of the newest checkpoint;
    frames [(tokens, pred (n, S), scores, rows (n,) into true)]: the animation's fixed subsample;
    factors: `_factor_views` of a product."""
    chart = state_chart(process, true)
    figures = run / "figures"
    last = result["checkpoints"][-1]
    hooks = result["hooks"]
    best = max(hooks, key=lambda h: _finite(last["layers"][h]["r2_heldout"]))
    shown = {h: predictions[h] for h in dict.fromkeys([best, final_layer_hook(hooks)])}
    if CONCAT in predictions:
        shown[CONCAT] = predictions[CONCAT]
    out = {"simplex": _save(figures / "probe_simplex.png", belief_figures.simplex_comparison(
        true, shown, {h: last["layers"][h]["r2_heldout"] for h in shown}, last["tokens"], chart,
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
        gif = belief_figures.simplex_animation(true[frames[0][3]], [f[:3] for f in frames], chart)
        out["animation"] = _save(figures / "probe_simplex.gif", gif, run)
    if factors is not None:
        out["factors"] = _save(figures / "probe_factors.png", belief_figures.factor_comparison(
            *factors, last["tokens"]), run)  # fmt: skip
    out.update(geometry_figures(run, result, true, predictions, process.states,
                                process.is_classical))  # probes.geometry_study
    return out


def _save(path: Path, data: bytes, run: Path) -> str:
    write_atomic(path, data)
    return str(path.relative_to(run))


def _finite(value: float | None) -> float:
    return value if value is not None and value == value else -np.inf
