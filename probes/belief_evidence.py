"""What the probe scores add up to: the headline, readability warnings, bootstrap intervals.

`headline` reads probes.json alone (so it can be recomputed from the file) and names the case
(`case_sentence` words it, for probes.json and the report's verdict alike):
  implied_by_loss     the exact optimal next-token probabilities explain the belief linearly
                      (held-out R² optimal_probs_r2 >= AFFINE_R2): any model that predicts well
                      carries the geometry in its output, so the layer's R² says little beyond
                      its loss; the headline says so.
  beyond_next_token   otherwise: the layer's `r2_beyond_prediction`, the share of what the
                      model's own next-token distribution leaves unexplained that the layer
                      recovers, beside the untrained network's.
It compares the layer with its strongest null (the model's own next-token probe, the untrained
network, every table of the last k tokens, fitted and oracle, no feature-count matching) and
states the smallest k whose oracle beats it.
`bootstrap_intervals` resamples held-out subtrees (the held-out sequences grouped by their first
j tokens, j the smallest >= the split prefix giving BOOTSTRAP_UNITS groups) with the probes fixed:
the intervals say how much a score depends on which unseen branches were drawn. Sampled inputs
resample held-out sequences instead (`resampler`); `score_bands` bands any score on the same
draws (belief_study.score_intervals: every score the report shows). The
fine-structure depth (the leading k with r2_fine >= FINE_THRESHOLD) is reported only when every
replicate's 95 % interval agrees on it.
`readability` flags probes fit on fewer than ROWS_PER_FEATURE distinct prefixes per feature and
probes whose held-out R² falls more than HELDOUT_GAP below their in-sample R².
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from models.architectures import CONCAT, final_layer_hook, hook_label
from probes.activations import ROWS_PER_FEATURE, ProbeInputs
from probes.belief_probe import fine_structure, r2_of_remainder, r2_score, within_cell_deviations
from probes.run_files import Headline

if TYPE_CHECKING:
    from probes.belief_study import BlockFit, References

AFFINE_R2 = 0.999  # optimal_probs_r2 at or above: the belief is affine in the next-token law
FINE_THRESHOLD = 0.5  # fine-structure depth: the leading k with r2_fine >= this
BOOTSTRAP_REPLICATES = 100
BOOTSTRAP_UNITS = 30  # held-out subtrees resampled: first-j-token prefixes, at least this many
HELDOUT_GAP = 0.05  # in-sample minus held-out R² above this: the probe does not generalise


def fine_depth(r2_fine: dict) -> int:
    """The largest k such that r2_fine.<k'> >= FINE_THRESHOLD for every k' <= k (0 if none)."""
    depth = 0
    for k in sorted(r2_fine, key=int):
        value = r2_fine[k]
        if value is None or not value >= FINE_THRESHOLD:
            break
        depth = int(k)
    return depth


def bootstrap_units(tokens: np.ndarray, start: int) -> tuple[int, np.ndarray]:
    """(j, group (n,) of each sequence): sequences (n, L) grouped by their first j tokens, j the
    smallest >= start with at least BOOTSTRAP_UNITS groups (else L)."""
    for j in range(max(start, 1), tokens.shape[1] + 1):
        _, group = np.unique(tokens[:, :j], axis=0, return_inverse=True)
        if group.max() + 1 >= BOOTSTRAP_UNITS:
            break
    return j, group.ravel()


@dataclass
class Resampler:
    """Bootstrap replicates of the held-out rows' weights: units (held-out subtrees of an
    enumeration, or held-out sequences of a sample) drawn with replacement. flat (n_ho * L,)
    the held-out (sequence, position)'s index into refs.rows; unit_of (n_ho * L,) its unit;
    n_rows len(refs.rows); meta the probes.json description {"unit", "units",
    "unit_prefix_len"}."""

    flat: np.ndarray
    unit_of: np.ndarray
    n_units: int
    n_rows: int
    meta: dict

    def weights(self, replicates: int, seed: int) -> Iterator[np.ndarray]:
        """`replicates` (R_ho,) count weights, the same draws for the same seed (so every score
        shares them)."""
        rng = np.random.default_rng(seed)
        for _ in range(replicates):
            counts = rng.multinomial(self.n_units, np.full(self.n_units, 1.0 / self.n_units))
            yield np.bincount(self.flat, weights=counts[self.unit_of].astype(float),
                              minlength=self.n_rows)


def resampler(inputs: ProbeInputs, refs: References) -> Resampler:
    """The bootstrap's units (module doc): sampled inputs resample held-out sequences (drawn
    independently from the process), enumerated ones held-out subtrees (sequences grouped by
    their first j tokens, `bootstrap_units`)."""
    held = np.flatnonzero(~inputs.fit_sequences)
    if inputs.exact:
        j, unit = bootstrap_units(inputs.tokens[held], inputs.split.get("prefix_len") or 1)
        kind = "subtree"
    else:
        j, unit, kind = None, np.arange(len(held)), "sequence"
    lookup = np.full(inputs.n_rows, -1)
    lookup[refs.rows] = np.arange(len(refs.rows))
    n_units = int(unit.max()) + 1 if len(unit) else 0
    return Resampler(flat=lookup[inputs.row_of[held]].ravel(),
                     unit_of=np.repeat(unit, inputs.tokens.shape[1]), n_units=n_units,
                     n_rows=len(refs.rows),
                     meta={"unit": kind, "units": n_units, "unit_prefix_len": j})


def score_bands(
    inputs: ProbeInputs, refs: References, scores: dict[Any, Callable], replicates: int =
    BOOTSTRAP_REPLICATES, seed: int = 0,
) -> dict:
    """95 % percentile intervals of scores {name: f(rows (n,) into refs.rows, weights (n,)) ->
    float | None} over bootstrap replicates of the held-out units (`resampler`), the same draws
    for every score: {"replicates", "seed", "unit", "units", "unit_prefix_len", "bands": {name:
    [lo, hi] | None}}. Bands are None when fewer than two units are held out."""
    draws = resampler(inputs, refs)
    out = {"replicates": replicates, "seed": seed, **draws.meta}
    if draws.n_units < 2:
        return {**out, "bands": {name: None for name in scores}}
    samples: dict[Any, list] = {name: [] for name in scores}
    for w in draws.weights(replicates, seed):
        rows = np.flatnonzero(w > 0)
        for name, score in scores.items():
            samples[name].append(score(rows, w[rows]))
    return {**out, "bands": {name: band(values) for name, values in samples.items()}}


def r2_scorer(truth: np.ndarray, pred: np.ndarray) -> Callable:
    """A `score_bands` score: held-out R² (coordinate mean) of pred (R_ho, k) against truth."""
    return lambda rows, w: r2_score(truth[rows], pred[rows], w)


def band(values) -> list[float] | None:
    """[2.5, 97.5] percentiles of the finite values; None when there are none."""
    values = [v for v in values if v is not None and np.isfinite(v)]
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] \
        if values else None


def bootstrap_intervals(
    inputs: ProbeInputs, refs: References, fits: dict[str, BlockFit], tokens: int,
    replicates: int = BOOTSTRAP_REPLICATES, seed: int = 0,
) -> dict:
    """95 % percentile intervals of r2_heldout, r2_beyond_prediction, r2_fine.<k> and the
    fine-structure depth of each fit {probe: BlockFit} over `replicates` resamplings (with
    replacement) of the held-out units (`resampler`); predictions stay fixed. None when fewer
    than two units are held out."""
    draws = resampler(inputs, refs)
    out = {"tokens": int(tokens), "replicates": replicates, "units": draws.n_units,
           "unit_prefix_len": draws.meta["unit_prefix_len"], "unit": draws.meta["unit"],
           "seed": seed, "probes": {}}
    if draws.n_units < 2:
        out["probes"] = {name: None for name in fits}
        return out
    ks = sorted(refs.deviations)
    samples = {name: [] for name in fits}
    for w in draws.weights(replicates, seed):
        rows = np.flatnonzero(w > 0)
        w, Y = w[rows], refs.beliefs[rows]
        cells = {k: refs.heldout_cells[k][rows] for k in ks}
        deviations = {k: within_cell_deviations(cells[k], Y, w) for k in ks}
        for name, fit in fits.items():
            fine = {str(k): fine_structure(deviations[k], fit.pred[rows], cells[k], w)[0]
                    if (w @ deviations[k] ** 2).sum() > 0 else None for k in ks}
            beyond = (r2_of_remainder(fit.remainder[rows], fit.remainder_pred[rows], w)
                      if fit.remainder is not None else None)
            samples[name].append((r2_score(Y, fit.pred[rows], w), beyond, fine, fine_depth(fine)))
    out["probes"] = {name: _intervals(draws, ks) for name, draws in samples.items()}
    return out


def _intervals(draws: list[tuple], ks: list[int]) -> dict:
    return {
        "r2_heldout": band(d[0] for d in draws),
        "r2_beyond_prediction": band(d[1] for d in draws),
        "r2_fine": {str(k): band(d[2][str(k)] for d in draws) for k in ks},
        "fine_depth": band(d[3] for d in draws),
    }


def readability(probes: dict) -> dict:
    """Rows per probe feature of the fit half, held-out vs in-sample gaps at the newest
    checkpoint, and the warnings they raise (module doc)."""
    prefixes = probes["inputs"]["fit_prefixes"]
    widths = probes["hook_widths"]
    per = {h: prefixes / (w + 1) for h, w in widths.items()}
    layers = probes["checkpoints"][-1]["layers"]
    gaps = {h: v["r2_insample"] - v["r2_heldout"] for h, v in layers.items()
            if _number(v.get("r2_insample")) and _number(v.get("r2_heldout"))}
    warnings = []
    few = {h: v for h, v in per.items() if v < ROWS_PER_FEATURE}
    if few:
        worst = min(few, key=few.get)
        warnings.append(
            f"few fit rows per probe feature: {prefixes:,} distinct fit-half prefixes, "
            f"{per[worst]:.1f} per feature for {_label(worst)} ({widths[worst]} features; "
            f"{len(few)} of {len(per)} probes below {ROWS_PER_FEATURE}), so their held-out "
            "scores are unreliable; probe a longer context (probe-hmm --n-ctx) or fewer features"
        )
    far = {h: g for h, g in gaps.items() if g > HELDOUT_GAP}
    if far:
        worst = max(far, key=far.get)
        warnings.append(
            f"held-out R² far below in-sample: {_label(worst)} {layers[worst]['r2_heldout']:.4f} "
            f"held-out vs {layers[worst]['r2_insample']:.4f} in-sample ({len(far)} of "
            f"{len(gaps)} probes more than {HELDOUT_GAP} apart): the probe does not generalise "
            "to unseen prefixes"
        )
    return {"fit_prefixes": prefixes, "rows_per_feature": per,
            "min_rows_per_feature": ROWS_PER_FEATURE, "heldout_gap": gaps,
            "max_heldout_gap": HELDOUT_GAP, "warnings": warnings}


def headline(probes: dict) -> dict:
    """The final layer at the newest checkpoint against what it must beat (module doc)."""
    hooks = probes["hooks"]
    final = final_layer_hook(hooks)
    last = probes["checkpoints"][-1]
    layer = last["layers"][final]
    r2 = layer["r2_heldout"]
    baselines = probes.get("baselines", {})
    untrained = baselines.get("random_init", {}).get(final) or {}
    next_token = last.get("next_token", {}).get("r2_heldout")
    optimal = probes.get("optimal_probs_r2")
    tables = _tables(baselines, r2)
    candidates = {"the probe from the model's own next-token distribution": next_token}
    if untrained.get("r2_mean") is not None:
        candidates[f"an untrained model ({untrained['n_seeds']} seeds)"] = untrained["r2_mean"]
    for k, table in tables.items():
        candidates[f"the table of the last {k} tokens (held-out cell means)"] = table["oracle"]
        candidates[f"the lookup of the last {k} tokens (fit half)"] = table["fitted"]
    candidates = {name: v for name, v in candidates.items() if _number(v)}
    best = max(candidates, key=candidates.get, default=None)
    base = candidates.get(best)
    interval = (probes.get("bootstrap", {}).get("probes") or {}).get(final) or {}
    depth_band = interval.get("fine_depth")
    h = {
        "tokens": last["tokens"],
        "hook": final,
        "width": probes["hook_widths"][final],
        "r2_heldout": r2,
        "r2_heldout_unseen": layer.get("r2_heldout_unseen"),
        "untrained_r2": untrained.get("r2_mean"),
        "next_token_r2": next_token,
        "optimal_probs_r2": optimal,
        "optimal_logit_r2": probes.get("optimal_logit_r2"),
        "belief_affine_in_prediction": None if optimal is None else bool(optimal >= AFFINE_R2),
        "r2_beyond_prediction": layer.get("r2_beyond_prediction"),
        "r2_beyond_prediction_untrained": untrained.get("r2_beyond_prediction"),
        "r2_beyond_prediction_concat": last["layers"].get(CONCAT, {}).get("r2_beyond_prediction"),
        "kgram": tables,
        "oracle_beats_layer_at": next((int(k) for k, t in tables.items()
                                       if _number(t["oracle"]) and t["oracle"] > r2), None),
        "fitted_beats_layer_at": next((int(k) for k, t in tables.items()
                                       if _number(t["fitted"]) and t["fitted"] > r2), None),
        "best_baseline": best,
        "baseline_r2": base,
        "margin": None if base is None else r2 - base,
        "error_ratio": _ratio(base, r2),
        "r2_fine": layer.get("r2_fine", {}),
        "fine_depth": {
            "value": fine_depth(layer.get("r2_fine", {}))
            if depth_band and depth_band[0] == depth_band[1] else None,
            "interval": depth_band,
            "threshold": FINE_THRESHOLD,
        },
        "split": probes["split"]["kind"],
        "warnings": list(probes.get("readability", {}).get("warnings", [])),
    }
    h["case"] = None if h["belief_affine_in_prediction"] is None else (
        "implied_by_loss" if h["belief_affine_in_prediction"] else "beyond_next_token")
    h["sentence"] = case_sentence(Headline.from_json(h))
    return h


def _tables(baselines: dict, r2: float) -> dict:
    """{k: {"oracle", "fitted", "cells", "error_ratio_oracle", "error_ratio_fitted"}}: every
    table of the last k tokens beside the layer; error ratio = (1 - table R²) / (1 - layer R²)."""
    oracle, fitted = baselines.get("kgram_oracle", {}), baselines.get("kgram", {})
    return {k: {"oracle": oracle.get(k), "fitted": fitted.get(k),
                "cells": baselines.get("kgram_features", {}).get(k),
                "error_ratio_oracle": _ratio(oracle.get(k), r2),
                "error_ratio_fitted": _ratio(fitted.get(k), r2)}
            for k in sorted(set(oracle) | set(fitted), key=int)}


def case_sentence(h: Headline) -> str:
    """THE words for the headline's case (probes.json headline.sentence; the report's verdict):
    whether the geometry is implied by the loss, and what the layer adds beyond the next token.
    Empty when the file predates the case."""
    label, stream = hook_label(h.hook), _stream(h.hook)
    others = (f"untrained {_fmt(h.r2_beyond_prediction_untrained, 2)}, all layers "
              f"{_fmt(h.r2_beyond_prediction_concat, 2)}")
    beyond = _fmt(h.r2_beyond_prediction, 2)
    if h.case == "implied_by_loss":
        return (f"belief affine in the next-token distribution: geometry implied by the loss (the "
                f"exact optimal next-token probabilities give held-out R² "
                f"{_fmt(h.optimal_probs_r2)} ≥ {AFFINE_R2}); beyond the next token {label} "
                f"recovers {beyond} of what the model's next-token distribution leaves unexplained "
                f"({others})")
    if h.case == "beyond_next_token":
        return (f"{stream} carries {beyond} of the belief beyond the next token ({label}, held "
                f"out, on what the model's next-token distribution leaves unexplained; {others})"
                f"; the exact optimal next-token probabilities give held-out R² "
                f"{_fmt(h.optimal_probs_r2)}")
    return ""


def _stream(hook: str) -> str:
    return "the residual stream" if "resid" in hook or "ln_final" in hook else "the hidden state"


def _label(hook: str) -> str:
    return "all layers side by side" if hook == CONCAT else hook_label(hook)


def _ratio(base: float | None, r2: float) -> float | None:
    return None if not _number(base) or not _number(r2) or r2 >= 1 else (1 - base) / (1 - r2)


def _number(value) -> bool:
    return isinstance(value, int | float) and value == value


def _fmt(value, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if _number(value) else "n/a"
